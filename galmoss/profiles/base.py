"""Base classes of light profiles and the registry that names them.

Two kinds of profile exist:

* :class:`LightProfile` -- the seed's base class. A subclass computes its image
  on a pixel grid in ``image_via_grid_from(grid, mode)``, reading its parameters
  through ``param.value(mode)``. The renderer samples it at pixel centres. Set
  ``self.psf = False`` for components that are not blurred by the telescope
  (a sky background).
* :class:`EllipticalProfile` -- a surface brightness that depends on position only
  through a (generalised) elliptical radius. Subclasses give a pure batched
  function of the radius, ``profile_function(r, v)``, and its analytic integral;
  the renderer then draws them exactly (see :mod:`galmoss.render.core`), which
  point sampling cannot do for steep centres.

Every usable subclass registers itself by its lower-case class name (or its
``profile_name``), so job files and the command line can name it. A class is
usable unless it sets ``usable = False`` or, for an elliptical profile, leaves
``profile_function`` / ``circular_integral`` to a base class that does not
implement them (``EllipticalProfile`` itself); names starting with ``_`` are not
registered. A name already taken by a different class is an error: two classes
must not answer to one name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import torch

from ..errors import ParameterValueError
from ..params import Parameter, ParamSpec, Role, UnitMap, p

Tensor = torch.Tensor

_REGISTRY: dict[str, type["LightProfile"]] = {}


def registered_profiles() -> dict[str, type["LightProfile"]]:
    """All registered (usable) profile classes by name, built-in and user-defined."""
    return dict(_REGISTRY)


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _register(cls: type["LightProfile"]) -> None:
    name = (cls.__dict__.get("profile_name") or cls.__name__).lower()
    if name.startswith("_") or not cls.is_usable():
        return
    known = _REGISTRY.get(name)
    # The same class defined again (a re-run notebook cell, a module reloaded)
    # replaces itself; a different class may not take a name that is in use.
    if known is not None and _qualified(known) != _qualified(cls):
        raise TypeError(
            f"light profile {_qualified(cls)} would be registered as {name!r}, which already names "
            f"{_qualified(known)}; rename the class or give it its own name with "
            f"profile_name = 'my_{name}' in the class body"
        )
    _REGISTRY[name] = cls


def profile_class(name: str) -> type["LightProfile"]:
    """The profile class registered under ``name`` (case-insensitive)."""
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        raise KeyError(
            f"no light profile is registered as {name!r}; known: {', '.join(sorted(_REGISTRY))}"
        ) from None


class LightProfile:
    """Base class of every light profile (the seed's ``gm.LightProfile``).

    A user profile subclasses it, stores its :class:`~galmoss.params.Parameter`
    objects as attributes in ``__init__`` and implements
    ``image_via_grid_from(grid, mode)``. ``grid`` is a pair ``(y, x)`` of tensors of
    shape ``(H, W)`` holding 1-based pixel-centre coordinates (the centre of the
    first pixel is (1, 1)); ``param.value(mode)`` returns a ``(B, 1, 1)`` tensor,
    so ordinary broadcasting gives a ``(B, H, W)`` image. A vector parameter
    (``gm.p(values, dim="2d")``, K values per galaxy) reads as a ``(B, K)``
    tensor; give ``expected_size`` to have its length checked.

    Attributes
    ----------
    psf : bool
        Whether the component is convolved with the PSF (False for a sky).
    saving : bool
        Whether the component gets its own extension in image blocks.
    """

    #: How each named parameter is used; subclasses may fill it in. Parameters
    #: without an entry are plain real numbers with no default.
    parameter_specs: ClassVar[dict[str, ParamSpec]] = {}
    #: Name under which the class is registered (defaults to the class name).
    profile_name: ClassVar[str | None] = None
    #: Whether the class can be instantiated and rendered (set False on an
    #: abstract intermediate class; it is then not registered).
    usable: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "usable" not in cls.__dict__:
            cls.usable = True  # not inherited: an abstract base's subclasses are usable
        _register(cls)

    @classmethod
    def is_usable(cls) -> bool:
        """Whether the class is concrete: ``usable`` and, if elliptical, with its shape implemented."""
        if not cls.usable:
            return False
        if issubclass(cls, EllipticalProfile):
            return (
                cls.profile_function is not EllipticalProfile.profile_function
                and cls.circular_integral is not EllipticalProfile.circular_integral
            )
        return True

    def __init__(self) -> None:
        self.psf = True
        self.saving = True

    # ---------------------------------------------------------------- seed API
    def image_via_grid_from(self, grid, mode: str = "updating_model") -> Tensor:
        """The surface brightness at the pixel centres of ``grid``, shape (B, H, W)."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement image_via_grid_from(grid, mode) "
            "(or derive from gm.EllipticalProfile and give profile_function)"
        )

    # -------------------------------------------------------------- parameters
    def parameters(self) -> dict[str, Parameter]:
        """The profile's parameters by attribute name, in definition order."""
        return {k: v for k, v in vars(self).items() if isinstance(v, Parameter)}

    def expected_size(self, slot: str) -> int | None:
        """Values per galaxy the slot ``slot`` needs: K for a vector slot, None for any.

        A profile with a vector parameter (K values per galaxy, read as a
        ``(B, K)`` tensor) overrides this so that a parameter of the wrong
        length is refused when the model is built, naming both lengths.
        """
        return None

    #: Vector slots whose uniform offset (every element moved by the same amount)
    #: leaves the image unchanged: a gauge freedom, a null direction of the
    #: Fisher matrix that the covariance removes (:meth:`galmoss.model.Model.gauge_directions`).
    #: The profile's reported values (:meth:`canonical_vectors`) must not depend on it.
    gauge_slots: ClassVar[tuple[str, ...]] = ()

    def canonical_vectors(self, v: dict[str, Tensor], scalars: Mapping[str, Tensor],
                          turn: Tensor | None = None) -> dict[str, Tensor]:
        """The reported values of the vector slots ``v`` ((B, K) each, profile units).

        ``scalars`` are the profile's scalar values ((B,) each, profile units,
        as fitted: an axis ratio may exceed 1); ``turn`` (B,) the degrees by which
        the reported position angle differs from the fitted one (None if none).
        The default reports the values as fitted.
        """
        return v

    def start_from_image(self, slot: str, estimate: Mapping[str, float] | None):
        """Start values (profile units) of vector slot ``slot`` from one galaxy's image estimates.

        ``estimate`` holds the keys of :func:`galmoss.fitting.measure.estimate_starts`
        (``cen_x``, ``eff_r``, ``ser_n``, ``flux``, ...). Called with None to ask
        whether the slot can be started at all: a profile that cannot returns
        ``NotImplemented`` (the default), and leaving the slot out is an error.
        """
        return NotImplemented

    def missing_parameters(self) -> list[str]:
        """Names of declared parameters that were left out (set to None)."""
        return [k for k in self.parameter_specs if getattr(self, k, None) is None]

    def unset_slots(self) -> list[str]:
        """Attributes that are None although the profile's own code reads them as parameters.

        A built-in profile declares its slots in ``parameter_specs`` and None there
        means "left out" (:meth:`missing_parameters`). A user profile declares
        nothing: an attribute that its ``__init__`` set to None and that a method
        written in the user's class (``image_via_grid_from`` or a helper it calls)
        reads as ``self.<name>`` would fail only when the model is drawn, so it is
        refused when the model is built. Attributes the user's code never reads,
        and names starting with ``_``, may be None.
        """
        unset = [k for k, v in vars(self).items()
                 if v is None and not k.startswith("_") and k not in self.parameter_specs]
        if not unset:
            return []
        read: set[str] = set()
        for cls in type(self).__mro__:
            if cls.__module__.split(".")[0] == "galmoss" or cls is object:
                continue  # built-in code reads its declared slots only
            for key, fn in vars(cls).items():
                if key != "__init__" and callable(fn) and hasattr(fn, "__code__"):
                    read |= _attribute_names(fn.__code__)
        return [k for k in unset if k in read]

    @classmethod
    def spec(cls, name: str) -> ParamSpec:
        """How this profile uses its parameter ``name``."""
        return cls.parameter_specs.get(name, ParamSpec())

    def _check_parameters(self, slots: Mapping[str, object]) -> None:
        """Raise a ``TypeError`` for a slot given something other than ``gm.p`` (or None)."""
        for slot, value in slots.items():
            if value is not None and not isinstance(value, Parameter):
                raise TypeError(
                    f"{type(self).__name__}({slot}={value!r}): {slot} must be a parameter object, "
                    f"gm.p(...) (e.g. {slot}=gm.p({value!r}) for a start value), or left out"
                )

    def validate(self, values: Mapping[str, np.ndarray], profile_label: str | None = None) -> None:
        """Raise a ``ValueError`` naming the first value outside a parameter's domain.

        ``values`` maps parameter names to per-galaxy arrays in profile units.
        """
        label = profile_label or type(self).__name__
        for name, arr in values.items():
            spec = self.spec(name)
            arr = np.asarray(arr, dtype=np.float64).reshape(-1)
            ok = spec.allows(arr)
            if not np.all(ok):
                idx = int(np.flatnonzero(~ok)[0])
                raise ParameterValueError(
                    f"profile {label!r} ({type(self).__name__}): parameter {name!r} is {arr[idx]:g} for "
                    f"galaxy index {idx}; allowed range is {spec.domain_text()}"
                    + (f" ({spec.description})" if spec.description else "")
                )

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.parameters().items())
        return f"{type(self).__name__}({inner})"


def _attribute_names(code) -> set[str]:
    """Names a code object (and the functions nested in it) loads as attributes or globals."""
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _attribute_names(const)
    return names


def check_slots(name: str, profile: "LightProfile") -> None:
    """Raise a ``ValueError`` if the user profile ``name`` has a slot set to None (:meth:`LightProfile.unset_slots`)."""
    unset = profile.unset_slots()
    if unset:
        cls = type(profile).__name__
        raise ValueError(
            f"profile {name!r} ({cls}): {', '.join(unset)} is None but {cls} reads it when drawn; "
            f"give gm.p(...) for it (e.g. {unset[0]}=gm.p(0.0), or gm.p(0.0, fit=False) to hold it fixed)"
        )


def parameter_uses(profiles: Mapping[str, "LightProfile"]) -> dict[Parameter, list[tuple[str, str]]]:
    """Each distinct parameter object and the (profile name, slot name) pairs that use it.

    A parameter object used by several profiles (a shared centre) appears once.
    Raises ``ValueError`` if a profile leaves out a required parameter.
    """
    uses: dict[Parameter, list[tuple[str, str]]] = {}
    for pname, profile in profiles.items():
        if not isinstance(profile, LightProfile):
            raise TypeError(f"profile {pname!r} is a {type(profile).__name__}, not a gm.LightProfile")
        # a user profile sets its own attributes: a number where a declared slot wants gm.p
        profile._check_parameters({slot: getattr(profile, slot, None) for slot in profile.parameter_specs})
        check_slots(pname, profile)
        missing = profile.missing_parameters()
        if missing:
            raise ValueError(
                f"profile {pname!r} ({type(profile).__name__}) has no value for {', '.join(missing)}; "
                f"give gm.p(...) for each (e.g. {type(profile).__name__}({missing[0]}=gm.p(1.0), ...))"
            )
        for slot, param in profile.parameters().items():
            uses.setdefault(param, []).append((pname, slot))
    return uses


def parameter_units(profiles: Mapping[str, "LightProfile"]) -> dict[Parameter, UnitMap]:
    """The user-to-profile unit map of each parameter, from the roles of the slots it fills.

    A parameter in an angle slot is in degrees whether or not ``angle=True`` was
    given (:meth:`galmoss.params.Parameter.units_for`); the user's object is
    never changed.
    """
    out: dict[Parameter, UnitMap] = {}
    for prm, slots in parameter_uses(profiles).items():
        roles = {profiles[pname].spec(slot).role for pname, slot in slots}
        out[prm] = prm.units_for(Role.ANGLE if Role.ANGLE in roles else None)
    return out


# Parameter specifications shared by every elliptical profile.
_GEOMETRY_SPECS = {
    "cen_x": ParamSpec(Role.POSITION, description="x of the centre, 1-based pixels"),
    "cen_y": ParamSpec(Role.POSITION, description="y of the centre, 1-based pixels"),
    "pa": ParamSpec(Role.ANGLE, description="position angle, degrees from +y towards -x"),
    "axis_r": ParamSpec(Role.AXIS_RATIO, domain=(0.0, 1.0), upper_closed=True, description="axis ratio b/a"),
    "box": ParamSpec(
        Role.BOXINESS, domain=(-2.0, math.inf), default=0.0, fit_default=False,
        description="GALFIT boxiness C0 (< 0 disky, > 0 boxy)",
    ),
}


def _radius_safe(r2: Tensor) -> Tensor:
    # sqrt has an infinite derivative at 0; a pixel centre that coincides with a
    # galaxy centre must still give finite gradients (their weight there is 0).
    tiny = 1e-20 if r2.dtype == torch.float64 else 1e-12
    return torch.sqrt(r2.clamp_min(tiny))


def box_area_factor(c: Tensor) -> Tensor:
    """Area of the generalised ellipse ``|x|^c + |y/q|^c <= 1`` over that of the ellipse.

    ``c = 2 + C0``; equals 1 for C0 = 0. This is the inverse of GALFIT's R(C0).
    """
    lg = torch.lgamma
    return 4.0 * torch.exp(2.0 * lg(1.0 + 1.0 / c) - lg(1.0 + 2.0 / c)) / math.pi


class EllipticalProfile(LightProfile):
    """A profile whose brightness depends on the generalised elliptical radius.

    ``r = (|x_maj|^c + |x_min / q|^c)^(1/c)`` with ``c = 2 + box`` (GALFIT's C0),
    where ``x_maj`` runs along the major axis at position angle ``pa`` (degrees
    from +y towards -x) and ``q = axis_r``. ``r`` is in pixels along the major axis.

    Subclasses implement the pure batched functions :meth:`profile_function`
    (the shape, dimensionless) and :meth:`circular_integral` (its integral over
    the plane for q = 1, C0 = 0), and name their amplitude parameter in
    ``amplitude_parameter`` (a total magnitude). The surface brightness is then
    ``amplitude * profile_function`` with the amplitude fixed by the total flux.

    All methods take ``v``, a mapping from parameter name to a tensor of shape
    (B, 1, 1) (or broadcastable against ``r``) in profile units: pixels, radians
    and magnitudes relative to the zero point.
    """

    parameter_specs: ClassVar[dict[str, ParamSpec]] = dict(_GEOMETRY_SPECS)
    amplitude_parameter: ClassVar[str] = "mag"
    usable: ClassVar[bool] = False

    def __init__(self, cen_x=None, cen_y=None, pa=None, axis_r=None, box=None, **shape) -> None:
        super().__init__()
        self._check_parameters({"cen_x": cen_x, "cen_y": cen_y, "pa": pa, "axis_r": axis_r, "box": box, **shape})
        self.cen_x = cen_x
        self.cen_y = cen_y
        # pa is in degrees by convention (design.md), with or without angle=True:
        # the Role.ANGLE of the slot says so, and the user's object is left as given
        self.pa = pa
        self.axis_r = axis_r
        self.box = box if box is not None else p(0.0, fit=False)
        for key, val in shape.items():
            setattr(self, key, val)

    # -- to implement ---------------------------------------------------------
    def profile_function(self, r: Tensor, v: Mapping[str, Tensor]) -> Tensor:
        """The profile shape at major-axis radius ``r`` (pixels); any normalisation."""
        raise NotImplementedError

    def circular_integral(self, v: Mapping[str, Tensor]) -> Tensor:
        """``2 pi * integral_0^inf profile_function(r) r dr`` for the same ``v``."""
        raise NotImplementedError

    def truncation_radius(self, v: Mapping[str, Tensor]) -> Tensor | None:
        """Major-axis radius beyond which the profile is exactly zero, or None."""
        return None

    # -- derived ----------------------------------------------------------------
    def total_flux(self, v: Mapping[str, Tensor]) -> Tensor:
        """Total flux in image units implied by the amplitude parameter."""
        return torch.pow(10.0, -0.4 * v[self.amplitude_parameter])

    def amplitude(self, v: Mapping[str, Tensor]) -> Tensor:
        """Multiplier of ``profile_function`` that gives the total flux."""
        c = 2.0 + v["box"]
        return self.total_flux(v) / (v["axis_r"] * self.circular_integral(v) * box_area_factor(c))

    def radial(self, r: Tensor, v: Mapping[str, Tensor]) -> Tensor:
        """Surface brightness (flux per pixel area) at major-axis radius ``r``."""
        return self.amplitude(v) * self.profile_function(r, v)

    @classmethod
    def builtin_radius(cls) -> bool:
        """Whether the class keeps the built-in :meth:`major_minor` and :meth:`elliptical_radius`.

        Then a pixel's radius is its distance along the major axis and the minor
        axis over q, and the renderer may rely on that geometry (the window's box,
        offsets from row and column coordinates, written-out PA and q columns).
        """
        return cls.major_minor is EllipticalProfile.major_minor and cls.elliptical_radius is EllipticalProfile.elliptical_radius

    @staticmethod
    def major_minor(y: Tensor, x: Tensor, v: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Offsets from the centre along the major and minor axes (pixels)."""
        dx = x - v["cen_x"]
        dy = y - v["cen_y"]
        sin, cos = torch.sin(v["pa"]), torch.cos(v["pa"])
        return -dx * sin + dy * cos, dx * cos + dy * sin

    @staticmethod
    def elliptical_radius(x_maj: Tensor, x_min: Tensor, q: Tensor) -> Tensor:
        """``sqrt(x_maj^2 + (x_min / q)^2)``."""
        return _radius_safe(x_maj * x_maj + (x_min / q) ** 2)

    @staticmethod
    def boxy_radius(x_maj: Tensor, x_min: Tensor, q: Tensor, box: Tensor) -> Tensor:
        """GALFIT's generalised radius ``(|x_maj|^c + |x_min/q|^c)^(1/c)``, c = 2 + box."""
        c = 2.0 + box
        tiny = 1e-20 if x_maj.dtype == torch.float64 else 1e-12
        a = x_maj.abs().clamp_min(tiny)
        b = (x_min / q).abs().clamp_min(tiny)
        return (a**c + b**c) ** (1.0 / c)

    def image_via_grid_from(self, grid, mode: str = "updating_model") -> Tensor:
        """Point samples of the surface brightness at the pixel centres of ``grid``.

        This is the seed-compatible entry point; :func:`galmoss.render` does not
        use it for elliptical profiles but draws them exactly (integrating the
        sub-pixel structure), which point samples cannot do near a steep centre.
        """
        v = {k: prm.value(mode) for k, prm in self.parameters().items()}
        y, x = grid[0], grid[1]
        x_maj, x_min = self.major_minor(y, x, v)
        r = self.boxy_radius(x_maj, x_min, v["axis_r"], v["box"])
        return self.radial(r, v)
