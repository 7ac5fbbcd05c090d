"""Azimuthal Fourier modes (GALFIT's ``F1`` .. ``Fn``) for any elliptical profile.

As GALFIT (Peng et al. 2010), the modes perturb the radius of a profile's isophotes,

    r' = r (1 + sum_m a_m cos(m (theta - phi_m))),

``r`` the (generalised) elliptical radius, ``theta`` the azimuth in the frame of
the ellipse (``atan2(x_min / q, x_maj)``, from the major axis, clockwise on the
image), ``a_m`` the amplitude and ``phi_m`` the phase of mode ``m`` (degrees,
relative to the major axis). GALFIT writes ``cos(m (theta_G + phi_m))`` with its
theta_G counter-clockwise, i.e. -theta: the same phases (galmoss/galfit/convert.py). m = 1 makes a galaxy lopsided, m = 3 and 4 triangular and boxy/disky,
and m = 2 changes its ellipticity (first-order degenerate with q and PA). The
amplitudes and phases are vector parameters (one value per mode and galaxy).

:func:`with_fourier` adds modes to any elliptical profile. The magnitude stays
the total of the unperturbed profile (the modes move light, and the integral of
the perturbed profile differs from it by second order in the amplitudes). The
renderer draws the unperturbed core exactly and adds the perturbed-minus-
elliptical difference as supersampled pixel means, as for boxy isophotes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from functools import lru_cache

import torch

from ..params import Parameter, ParamSpec, Role
from .base import EllipticalProfile

Tensor = torch.Tensor

_CLASSES: dict[type, type] = {}


@lru_cache(maxsize=64)
def _mode_numbers(modes: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """The mode numbers as a tensor, made once per dtype and device (the radius is perturbed dozens of times a render)."""
    return torch.as_tensor(modes, dtype=dtype, device=device)


class _FourierModes:
    """Mixin: the radius of an elliptical profile perturbed by azimuthal Fourier modes."""

    fourier_modes: tuple[int, ...] = ()

    def expected_size(self, slot: str) -> int | None:
        if slot in ("fourier_a", "fourier_phi"):
            return len(self.fourier_modes)
        return super().expected_size(slot)

    def _perturbation(self, x_maj: Tensor, x_min: Tensor, q: Tensor) -> Tensor:
        """``1 + sum_m a_m cos(m (theta - phi_m))`` at every pixel, shape (B, H, W)."""
        a = self.fourier_a.value()  # (B, K): the values being rendered
        phi = self.fourier_phi.value() * (math.pi / 180.0)
        theta = torch.atan2(x_min / q, x_maj)
        m = _mode_numbers(self.fourier_modes, theta.dtype, theta.device)
        shape = (a.shape[0], len(self.fourier_modes)) + (1,) * (theta.dim() - 1)
        angle = m.reshape((1, -1) + (1,) * (theta.dim() - 1)) * (theta.unsqueeze(1) - phi.reshape(shape))
        return 1.0 + (a.reshape(shape) * torch.cos(angle)).sum(1)

    def canonical_vectors(self, v: dict[str, Tensor], scalars, turn: Tensor | None = None) -> dict[str, Tensor]:
        """Reported modes: ``a cos(m (theta - phi)) = -a cos(m (theta - phi - 180/m))``, so a_m >= 0
        and phi_m in (-180/m, 180/m] degrees name each perturbation once.

        ``turn`` (B,): degrees the reported PA differs from the fitted one (the
        ellipse's canonical form turns it by half turns, or a quarter turn when
        q > 1). The phases are measured from the major axis, so they move with
        it: theta runs clockwise on the image (``atan2(x_min / q, x_maj)``) while
        the PA runs counter-clockwise, so turning the axis by ``turn`` adds
        ``turn`` to every theta and the same image needs phi + turn.
        """
        v = dict(super().canonical_vectors(v, scalars, turn=turn))  # type: ignore[misc]  # the base profile's vectors
        a, phi = v["fourier_a"], v["fourier_phi"]
        if turn is not None:
            phi = phi + turn.reshape(-1, 1).to(phi.dtype)
        m = _mode_numbers(self.fourier_modes, phi.dtype, phi.device)
        period = 360.0 / m
        phi = torch.where(a < 0, phi + period / 2.0, phi)
        v["fourier_a"] = a.abs()
        v["fourier_phi"] = phi - period * torch.ceil((phi - period / 2.0) / period)
        return v

    def boxy_radius(self, x_maj: Tensor, x_min: Tensor, q: Tensor, box: Tensor) -> Tensor:  # type: ignore[override]
        return EllipticalProfile.boxy_radius(x_maj, x_min, q, box) * self._perturbation(x_maj, x_min, q)


def with_fourier(
    profile: EllipticalProfile,
    modes: Sequence[int],
    amplitudes: Parameter | None = None,
    phases: Parameter | None = None,
) -> EllipticalProfile:
    """``profile`` with azimuthal Fourier modes ``modes`` (GALFIT's ``F<m>``).

    Parameters
    ----------
    profile
        Any elliptical profile (``gm.lp.Sersic(...)``, ...); it is not changed.
    modes
        Mode numbers m, integers >= 1, each at most once (e.g. ``(1, 3, 4)``).
    amplitudes, phases
        Vector parameters of K = len(modes) values per galaxy (``gm.p(values,
        dim="2d")``), the amplitudes a_m and the phases phi_m in degrees from the
        major axis. Left out: amplitudes start at 0.01 and phases at 0, free.

    Returns
    -------
    EllipticalProfile
        A copy of ``profile`` of a subclass that adds the slots ``fourier_a`` and
        ``fourier_phi`` (results columns ``<name>_fourier_a``, array-valued).

    Raises
    ------
    ValueError
        A mode number below 1, repeated, or not an integer; an ``axis_r`` whose
        ``value_range`` reaches 1 (a Fourier-moded ellipse is fitted with q < 1,
        since turning it by 90 degrees would change the phases' meaning).
    TypeError
        ``profile`` is not elliptical, or amplitudes/phases are not ``gm.p``.
    """
    if not isinstance(profile, EllipticalProfile):
        raise TypeError(f"with_fourier: {type(profile).__name__} is not an elliptical profile")
    modes = tuple(modes)
    if not modes:
        raise ValueError("with_fourier(modes=()): give at least one mode number m >= 1")
    for m in modes:
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ValueError(
                f"with_fourier(modes={modes!r}): Fourier mode numbers must be integers >= 1 (GALFIT's F1, F2, ...), "
                f"got {m!r}"
            )
    if len(set(modes)) != len(modes):
        raise ValueError(f"with_fourier(modes={modes!r}): each mode number may appear only once")
    for name, prm in (("amplitudes", amplitudes), ("phases", phases)):
        if prm is not None and not isinstance(prm, Parameter):
            raise TypeError(f"with_fourier({name}={prm!r}): give gm.p(values, dim='2d') with one value per mode")
    q = profile.axis_r
    if isinstance(q, Parameter) and q.value_range is not None and (q.value_range[1] is None or q.value_range[1] >= 1.0):
        raise ValueError(
            f"with_fourier: axis_r has value_range={q.value_range}; a Fourier-moded profile is fitted with q < 1 "
            "(give an upper end below 1, e.g. 0.999)"
        )
    base = type(profile)
    cls = _CLASSES.get(base)
    if cls is None:
        specs = dict(base.parameter_specs)
        specs["axis_r"] = dataclasses.replace(specs["axis_r"], fit_bounds=(1e-3, 1.0 - 1e-6))
        specs["fourier_a"] = ParamSpec(Role.REAL, description="Fourier mode amplitudes a_m (vector, one per mode)")
        specs["fourier_phi"] = ParamSpec(Role.REAL, description="Fourier mode phases phi_m, degrees from the major axis")
        cls = type(f"Fourier{base.__name__}", (_FourierModes, base), {
            "parameter_specs": specs,
            "profile_name": f"_fourier_{base.__name__.lower()}",  # built by with_fourier, not by name
            "__module__": __name__,
        })
        _CLASSES[base] = cls
    out = object.__new__(cls)
    out.__dict__.update(profile.__dict__)
    out.fourier_modes = modes
    k = len(modes)
    out.fourier_a = amplitudes if amplitudes is not None else Parameter([0.01] * k, dim="2d")
    out.fourier_phi = phases if phases is not None else Parameter([0.0] * k, dim="2d")
    return out
