"""GALFIT's bending modes (``B1`` .. ``Bn``) for any elliptical profile.

Peng et al. (2010, AJ 139, 2097) bend a profile by shifting the coordinate
across its major axis by a polynomial of the coordinate along it,

    y'' = y' + sum_m a_m (x' / r_scale)^m,

``x'`` along the major axis, ``y'`` across it (GALFIT's frame: ``y'`` a quarter
turn counter-clockwise from ``x'``), ``a_m`` the amplitude of mode m in pixels
(the shift at ``x' = r_scale``) and ``r_scale`` the profile's own size (the
Sersic's R_e, the disk's R_s, ...: :data:`SCALE_SLOTS`). B1 shears the
isophotes, B2 bends them into a banana, B3 into an S. galmoss's minor-axis
offset ``x_min`` is ``-y'``, so the bent radius is the profile's radius at
``(x_maj, x_min - sum_m a_m (x_maj / r_scale)^m)``. The amplitudes are one
vector parameter (one value per mode and galaxy); the magnitude is the
unbent profile's total (a shear across the axis moves light without changing
it). The renderer draws the unbent core exactly and adds the bent-minus-
unbent difference as supersampled pixel means, as for boxy isophotes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from ..params import Parameter, ParamSpec, Role
from .base import EllipticalProfile
from .fourier import _mode_numbers

Tensor = torch.Tensor

#: The slot whose length scales the bending of each profile class (by class name).
SCALE_SLOTS = {
    "Sersic": "eff_r", "DeVaucouleurs": "eff_r", "ExpDisk": "scale_l", "Gaussian": "fwhm", "Moffat": "fwhm",
    "King": "core_r", "KingSB": "core_r", "Ferrer": "trunc_r", "FerrerSB": "trunc_r", "Nuker": "break_r",
    "NukerSB": "break_r",
}

_CLASSES: dict[type, type] = {}


def _scale_slot(cls: type) -> str | None:
    for klass in cls.__mro__:
        if klass.__name__ in SCALE_SLOTS:
            return SCALE_SLOTS[klass.__name__]
    return None


def _rebuild(base: type, state: dict):
    """Unpickle a bent profile: its class is made again from the base class (it lives in no module)."""
    out = object.__new__(_bent_class(base))
    out.__dict__.update(state)
    return out


def _bent_class(base: type) -> type:
    """The subclass of ``base`` with bending modes, made once."""
    cls = _CLASSES.get(base)
    if cls is None:
        specs = dict(base.parameter_specs)
        # fitted with q < 1, as Fourier modes: a quarter turn of the ellipse would change the modes' meaning
        specs["axis_r"] = dataclasses.replace(specs["axis_r"], fit_bounds=(1e-3, 1.0 - 1e-6))
        specs["bending_a"] = ParamSpec(Role.REAL, description="bending mode amplitudes a_m, pixels (vector, one per mode)")
        cls = type(f"Bent{base.__name__}", (_Bending, base), {
            "parameter_specs": specs,
            "profile_name": f"_bent_{base.__name__.lower()}",  # built by with_bending, not by name
            "__module__": __name__,
        })
        _CLASSES[base] = cls
    return cls


class _Bending:
    """Mixin: the minor-axis coordinate of an elliptical profile bent by a polynomial of the major-axis one."""

    def __reduce__(self):
        return _rebuild, (type(self).__bases__[1], dict(self.__dict__))

    def canonical_vectors(self, v: dict[str, Tensor], scalars, turn: Tensor | None = None) -> dict[str, Tensor]:
        """Reported amplitudes: a half turn of the major axis (x' -> -x', y' -> -y') flips the even modes' sign.

        ``turn`` (B,): degrees the reported PA differs from the fitted one (whole
        half turns: the axis ratio is fitted below 1).
        """
        v = dict(super().canonical_vectors(v, scalars, turn=turn))  # type: ignore[misc]
        if turn is not None:
            a = v["bending_a"]
            odd_turns = torch.remainder(torch.round(turn.reshape(-1, 1).to(a.dtype) / 180.0), 2.0) == 1.0
            m = _mode_numbers(self.bending_modes, a.dtype, a.device)
            even = torch.remainder(m, 2.0) == 0.0
            v["bending_a"] = torch.where(odd_turns & even, -a, a)
        return v

    bending_modes: tuple[int, ...] = ()
    bending_scale: str = "eff_r"
    #: Grid pixels per data pixel: the amplitudes are lengths (see :meth:`for_finer_grid`).
    bending_factor: float = 1.0

    def for_finer_grid(self, factor: int):
        """This profile on a grid ``factor`` times finer: the amplitudes, in pixels, are ``factor`` times longer."""
        import copy

        base = getattr(super(), "for_finer_grid", None)
        fine = base(factor) if base is not None else copy.copy(self)
        fine.bending_factor = self.bending_factor * factor
        return fine

    def expected_size(self, slot: str) -> int | None:
        if slot == "bending_a":
            return len(self.bending_modes)
        return super().expected_size(slot)  # type: ignore[misc]

    def boxy_radius(self, x_maj: Tensor, x_min: Tensor, q: Tensor, box: Tensor) -> Tensor:  # type: ignore[override]
        a = self.bending_a.value() * self.bending_factor  # (B, K): the values being rendered
        scale = getattr(self, self.bending_scale).value()
        u = x_maj / scale
        m = _mode_numbers(self.bending_modes, u.dtype, u.device)
        shape = (a.shape[0], len(self.bending_modes)) + (1,) * (u.dim() - 1)
        shift = (a.reshape(shape) * u.unsqueeze(1) ** m.reshape((1, -1) + (1,) * (u.dim() - 1))).sum(1)
        return super().boxy_radius(x_maj, x_min - shift, q, box)  # type: ignore[misc]


def with_bending(profile: EllipticalProfile, modes: Sequence[int], amplitudes: Parameter | None = None) -> EllipticalProfile:
    """``profile`` with GALFIT's bending modes ``modes`` (``B<m>``; module docstring).

    Parameters
    ----------
    profile
        An elliptical profile with a size slot (:data:`SCALE_SLOTS`); it is not changed.
    modes
        Mode numbers m, integers >= 1, each at most once (B1 shear, B2 banana, B3 S-shape).
    amplitudes
        A vector parameter of K = len(modes) values per galaxy (``gm.p(values,
        dim="2d")``), the shift in pixels at ``x' = r_scale``. Left out: 0.01, free.

    Returns
    -------
    EllipticalProfile
        A copy of ``profile`` of a subclass that adds the slot ``bending_a``.

    Raises
    ------
    TypeError
        ``profile`` is not elliptical or has no size slot; ``amplitudes`` is not ``gm.p``.
    ValueError
        A mode number below 1, repeated, or not an integer; an ``axis_r`` whose
        ``value_range`` reaches 1 (a bent profile is fitted with q < 1, since
        a quarter turn of the ellipse would change the modes' meaning).
    """
    if not isinstance(profile, EllipticalProfile):
        raise TypeError(f"with_bending: {type(profile).__name__} is not an elliptical profile")
    scale = _scale_slot(type(profile))
    if scale is None:
        raise TypeError(f"with_bending: {type(profile).__name__} has no size slot to scale the bending "
                        f"(known: {', '.join(sorted(SCALE_SLOTS))})")
    modes = tuple(modes)
    if not modes or any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in modes):
        raise ValueError(f"with_bending(modes={modes!r}): give bending mode numbers, integers >= 1 (GALFIT's B1, B2, ...)")
    if len(set(modes)) != len(modes):
        raise ValueError(f"with_bending(modes={modes!r}): each mode number may appear only once")
    if amplitudes is not None and not isinstance(amplitudes, Parameter):
        raise TypeError(f"with_bending(amplitudes={amplitudes!r}): give gm.p(values, dim='2d') with one value per mode")
    q = profile.axis_r
    if isinstance(q, Parameter) and q.value_range is not None and (q.value_range[1] is None or q.value_range[1] >= 1.0):
        raise ValueError(
            f"with_bending: axis_r has value_range={q.value_range}; a bent profile is fitted with q < 1 "
            "(give an upper end below 1, e.g. 0.999)"
        )
    out = object.__new__(_bent_class(type(profile)))
    out.__dict__.update(profile.__dict__)
    out.bending_modes = modes
    out.bending_scale = scale
    out.bending_a = amplitudes if amplitudes is not None else Parameter([0.01] * len(modes), dim="2d")
    return out
