"""Rendering: pixel grids, sub-pixel cores, PSF convolution (``gm.render``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ..params import Parameter
from ..profiles.base import LightProfile, parameter_units, parameter_uses
from ..settings import RenderSettings
from .grid import ConvolutionLayout, fast_fft_size, pixel_grid
from .psf import prepare_psf, psf_spectrum
from .renderer import Renderer

__all__ = [
    "ConvolutionLayout",
    "Renderer",
    "fast_fft_size",
    "named_profiles",
    "pixel_grid",
    "prepare_psf",
    "psf_spectrum",
    "render",
    "start_tensors",
]


def named_profiles(profiles) -> dict[str, LightProfile]:
    """Normalise a profile, a sequence of profiles or a dict of them to ``{name: profile}``."""
    if isinstance(profiles, LightProfile):
        return {type(profiles).__name__.lower(): profiles}
    if isinstance(profiles, Mapping):
        return dict(profiles)
    if isinstance(profiles, Sequence):
        named: dict[str, LightProfile] = {}
        for prof in profiles:
            base = type(prof).__name__.lower()
            name, k = base, 1
            while name in named:
                k += 1
                name = f"{base}_{k}"
            named[name] = prof
        return named
    raise TypeError(f"render: profiles must be a LightProfile, a list or a dict of them, got {type(profiles).__name__}")


def start_tensors(parameters, batch: int, dtype, device=None, *, units=None) -> dict[Parameter, torch.Tensor]:
    """Each parameter's start values in profile units as a (batch, 1, 1) tensor ((batch, K) for a vector).

    ``units`` (parameter -> UnitMap, from :func:`galmoss.profiles.base.parameter_units`)
    gives the map of the slots each parameter fills (position angles in degrees);
    without it, each parameter's own map is used.
    """
    out = {}
    for prm in parameters:
        vals = prm.initial_profile_units() if units is None else units[prm].to_profile(prm.initial_values())
        if getattr(prm, "is_vector", False):  # (batch, K): a vector parameter
            out[prm] = torch.as_tensor(np.broadcast_to(vals, (batch, vals.shape[1])).copy(), dtype=dtype, device=device)
            continue
        out[prm] = torch.as_tensor(np.broadcast_to(vals, (batch,)).copy(), dtype=dtype, device=device).reshape(batch, 1, 1)
    return out


def render(
    profiles,
    shape: tuple[int, int],
    psf=None,
    *,
    dtype: torch.dtype | None = None,
    device=None,
    settings: RenderSettings = RenderSettings(),
    components: bool = False,
):
    """Model images of profiles at their parameters' start values.

    Parameters
    ----------
    profiles
        A profile, a list of profiles, or a dict ``{name: profile}`` (summed).
    shape
        Image shape ``(H, W)``.
    psf
        PSF ``(h, w)`` for every galaxy or ``(B, h, w)`` one per galaxy (numpy array or
        tensor, normalised here); None gives the profile integrated over pixels.
    dtype, device
        Precision and device. By default they follow a PSF given as a torch tensor,
        else float32 on the CPU.
    settings
        Accuracy settings (:class:`galmoss.RenderSettings`).
    components
        Also return ``{name: image}`` of each component.

    Returns
    -------
    Tensor
        ``(B, H, W)``, B the number of values the parameters hold (1 for scalars).

    Raises
    ------
    ValueError
        A parameter value outside its profile's domain (naming profile, parameter,
        galaxy and range), a PSF without positive pixels, or a PSF batch that does not
        match the galaxies.
    """
    named = named_profiles(profiles)
    if isinstance(psf, torch.Tensor):
        dtype = dtype or (psf.dtype if psf.is_floating_point() else None)
        device = device if device is not None else psf.device
    dtype = dtype or torch.float32
    uses = parameter_uses(named)
    lengths = {prm.param_length for prm in uses} - {1}
    if len(lengths) > 1:
        raise ValueError(
            f"render: parameters hold different numbers of galaxies {sorted(lengths)}; give one value "
            "or one value per galaxy to every gm.p"
        )
    batch = lengths.pop() if lengths else 1
    units = parameter_units(named)
    for name, profile in named.items():
        profile.validate(
            {slot: units[prm].to_profile(prm.initial_values()) for slot, prm in profile.parameters().items()
             if slot in profile.parameter_specs},
            profile_label=name,
        )
    values = start_tensors(uses, batch, dtype, device, units=units)
    renderer = Renderer(shape, psf, batch=batch, dtype=dtype, device=device, settings=settings)
    return renderer(named, values, components=components)
