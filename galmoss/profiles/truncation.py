"""GALFIT's truncation functions: an elliptical profile multiplied by a soft step in radius.

Peng et al. (2010, AJ 139, 2097) truncate a profile by multiplying it with a
hyperbolic tangent of the radius,

    P(r) = (1 + tanh((2 - B) r / r_break + B)) / 2,
    B = 2.65 - 4.98 r_break / (r_break - r_1),

``r_break`` the break radius, where the truncated profile keeps about 99 % of the
untruncated one (98.2 %: tanh(2)), and ``r_1 = r_break -+ dr_soft`` the radius
where it keeps about 1 % (``dr_soft`` GALFIT's softening length; minus for an
inner truncation, which removes the light inside, plus for an outer one, which
removes the light outside). The same expression gives both: B < 2 makes P rise
with r (inner), B > 2 makes it fall (outer).

:func:`with_truncation` applies it to any elliptical profile, on the profile's
own (generalised) elliptical radius, so the truncation shares the profile's
centre, axis ratio, position angle and boxiness. The magnitude stays the total
of the untruncated profile (as for Fourier modes): the truncated profile is that
profile times P at every radius.
"""

from __future__ import annotations

import math

import torch

from ..params import Parameter, ParamSpec, Role
from .base import EllipticalProfile

Tensor = torch.Tensor

_CLASSES: dict[tuple[type, tuple[str, ...]], type] = {}
#: The slots each kind of truncation adds: (break radius, softening length).
SLOTS = {"inner": ("break_in", "soft_in"), "outer": ("break_out", "soft_out")}


def truncation_factor(r: Tensor, r_break: Tensor, soft: Tensor, kind: str) -> Tensor:
    """GALFIT's hyperbolic-tangent truncation P(r) (module docstring) for ``kind`` "inner" or "outer"."""
    sign = 1.0 if kind == "inner" else -1.0
    b = 2.65 - sign * 4.98 * r_break / soft
    return 0.5 * (1.0 + torch.tanh((2.0 - b) * r / r_break + b))


def _rebuild(base: type, kinds: tuple[str, ...], state: dict):
    """Unpickle a truncated profile: its class is made again from the base class (it lives in no module)."""
    out = object.__new__(_truncated_class(base, kinds))
    out.__dict__.update(state)
    return out


class _Truncated:
    """Mixin: the brightness of an elliptical profile times the truncation functions."""

    truncations: tuple[str, ...] = ()

    def __reduce__(self):
        return _rebuild, (type(self).__bases__[1], self.truncations, dict(self.__dict__))

    def radial(self, r: Tensor, v) -> Tensor:
        out = super().radial(r, v)  # type: ignore[misc]
        for kind in self.truncations:
            brk, soft = SLOTS[kind]
            out = out * truncation_factor(r, v[brk], v[soft], kind)
        return out


def _truncated_class(base: type, kinds: tuple[str, ...]) -> type:
    """The subclass of ``base`` truncated by ``kinds``, made once."""
    cls = _CLASSES.get((base, kinds))
    if cls is None:
        specs = dict(base.parameter_specs)
        for kind in kinds:
            brk, soft = SLOTS[kind]
            specs[brk] = ParamSpec(Role.LENGTH, domain=(0.0, math.inf),
                                   description=f"{kind} truncation break radius (99 % of the untruncated brightness)")
            specs[soft] = ParamSpec(Role.LENGTH, domain=(0.0, math.inf),
                                    description=f"{kind} truncation softening length (1 % at break -+ softening)")
        cls = type(f"Truncated{base.__name__}", (_Truncated, base), {
            "parameter_specs": specs,
            "profile_name": f"_truncated_{'_'.join(kinds)}_{base.__name__.lower()}",  # built by with_truncation
            "__module__": __name__,
        })
        _CLASSES[(base, kinds)] = cls
    return cls


def with_truncation(
    profile: EllipticalProfile,
    *,
    inner: tuple[Parameter, Parameter] | None = None,
    outer: tuple[Parameter, Parameter] | None = None,
) -> EllipticalProfile:
    """``profile`` truncated inside and/or outside (GALFIT's ``Ti)`` / ``To)`` truncations).

    Parameters
    ----------
    profile
        Any elliptical profile (``gm.lp.Sersic(...)``, ...); it is not changed.
    inner, outer
        ``(break radius, softening length)`` as ``gm.p`` (pixels along the major
        axis). The break radius is where about 99 % of the untruncated
        brightness is kept, ``break -+ softening`` where about 1 % is (module
        docstring). Give at least one.

    Returns
    -------
    EllipticalProfile
        A copy of ``profile`` of a subclass with the slots ``break_in``,
        ``soft_in`` (inner) and/or ``break_out``, ``soft_out`` (outer); its
        magnitude is the untruncated profile's total.

    Raises
    ------
    TypeError
        ``profile`` is not elliptical, or a radius is not a ``gm.p``.
    ValueError
        Neither ``inner`` nor ``outer`` given.

    Notes
    -----
    The truncated profile is drawn like any elliptical profile (exact core,
    sampled outer part): a softening length below about two pixels in the
    outer part makes an edge sharper than the pixel grid resolves.
    """
    if not isinstance(profile, EllipticalProfile):
        raise TypeError(f"with_truncation: {type(profile).__name__} is not an elliptical profile")
    given = {kind: pair for kind, pair in (("inner", inner), ("outer", outer)) if pair is not None}
    if not given:
        raise ValueError("with_truncation: give inner=(break, softening) and/or outer=(break, softening)")
    for kind, pair in given.items():
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(p, Parameter) for p in pair)):
            raise TypeError(f"with_truncation({kind}={pair!r}): give a pair (gm.p(break radius), gm.p(softening length))")
    base = type(profile)
    kinds = tuple(given)
    already = getattr(profile, "truncations", ())
    if already:
        raise ValueError(f"with_truncation: the profile is already truncated ({', '.join(already)}); give both at once")
    out = object.__new__(_truncated_class(base, kinds))
    out.__dict__.update(profile.__dict__)
    out.truncations = kinds
    for kind, (brk, soft) in given.items():
        setattr(out, SLOTS[kind][0], brk)
        setattr(out, SLOTS[kind][1], soft)
    return out
