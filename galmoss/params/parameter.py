"""``gm.p``: the definition of a model parameter.

A :class:`Parameter` says what a parameter starts at (one value per galaxy, or
one value for all), which units the user speaks in, whether it is fitted, and
within which range. It holds no fit state: the values a model is evaluated at
live in :mod:`galmoss.params.context` for the duration of one rendering, and
fitted values live in the fit's results.

The same ``Parameter`` object given to two profiles is one shared free
parameter (a common centre for a bulge and a disk, say).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
import torch

from .context import active_values
from .transforms import (
    Compose,
    Exp,
    Identity,
    Logistic,
    Pow10,
    Transform,
    UnitMap,
)

#: The value modes the seed's ``param.value(mode)`` accepts. Inside a rendering
#: every mode returns the values being rendered. Outside one only the modes that
#: mean "the current values" (:data:`CURRENT_MODES`) answer, with the start
#: values; the others raise, since no fit state lives on a parameter.
VALUE_MODES = (
    "updating_model",
    "best_model",
    "initial_model",
    "load_best_in_optim_list",
    "load_best_in_jacobian",
    "load_initial_in_jacobian",
    "load_initial_in_optim_list",
)
#: Modes whose answer outside a rendering is the start values.
CURRENT_MODES = ("updating_model", "initial_model")


class Role(str, Enum):
    """What a parameter slot of a profile means; it chooses the default fitting space."""

    REAL = "real"  # any real number, fitted as is (sky level, gradients)
    POSITION = "position"  # a pixel coordinate
    MAGNITUDE = "magnitude"  # a total magnitude
    ANGLE = "angle"  # a position angle in degrees, fitted without bounds
    AXIS_RATIO = "axis_ratio"  # b/a, fitted as ln(q) with no wall at q = 1
    POSITIVE = "positive"  # a strictly positive quantity, fitted in log space
    LENGTH = "length"  # a positive length along the major axis (pixels), fitted in log space
    BOXINESS = "boxiness"  # GALFIT's C0, > -2


@dataclass(frozen=True)
class ParamSpec:
    """How a profile uses one of its parameters.

    Parameters
    ----------
    role
        The parameter's meaning; it picks the default fitting-space transform.
    domain
        The open interval ``(lower, upper)`` of values (profile units) for which the
        profile is defined; ``upper_closed`` makes the upper end part of it (q <= 1).
        Values given by the user outside it raise a ``ValueError`` at rendering.
    default
        The start value used when the user leaves the parameter out (None: required).
    fit_default
        Whether a parameter built from ``default`` is fitted.
    fit_bounds
        Bounds (profile units) the fit keeps to when the user gives no
        ``value_range``; None: the domain's finite ends.
    description
        One line for documentation and error messages.
    start_scale
        For a length (``Role.LENGTH``) left out: its start in units of the
        galaxy's half-light radius measured on the image (an exponential's
        scale length starts at r_e / 1.678, a truncation radius at 2.5 r_e).
    """

    role: Role = Role.REAL
    domain: tuple[float, float] = (-math.inf, math.inf)
    upper_closed: bool = False
    default: float | None = None
    fit_default: bool = True
    fit_bounds: tuple[float, float] | None = None
    description: str = ""
    start_scale: float = 1.0

    def allows(self, value: np.ndarray) -> np.ndarray:
        """Boolean mask: which entries of ``value`` lie in the domain."""
        lo, hi = self.domain
        upper_ok = value <= hi if self.upper_closed else value < hi
        return np.isfinite(value) & (value > lo) & upper_ok

    def domain_text(self) -> str:
        lo, hi = self.domain
        right = "]" if self.upper_closed else ")"
        return f"({lo:g}, {hi:g}{right}"


def _is_bool(value) -> bool:
    return isinstance(value, (bool, np.bool_))


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not _is_bool(value)


def _check_bands(bands, label: str):
    """``bands``: None (the role's default), ``"shared"``, ``"free"`` or a Chebyshev degree k >= 0."""
    if bands is None or bands in ("shared", "free") and isinstance(bands, str):
        return bands
    if isinstance(bands, (int, np.integer)) and not _is_bool(bands) and bands >= 0:
        return int(bands)
    raise ValueError(
        f"gm.p{label}(bands={bands!r}): bands must be 'shared' (one value for all bands), 'free' (one value per "
        "band) or an integer k >= 0 (a Chebyshev polynomial of degree k in wavelength)"
    )


def _as_array(values, what: str, dim: str | None = None) -> np.ndarray:
    """The start values as float64: (N,) for a scalar parameter, (N, K) for a vector one.

    ``dim=None`` infers the kind from the shape (a 2-D array is a vector
    parameter); ``"1d"`` insists on one number per galaxy, ``"2d"`` reads a 1-D
    sequence as the K values every galaxy starts from.
    """
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    if isinstance(values, (list, tuple)) and values and all(isinstance(v, (list, tuple, np.ndarray)) for v in values):
        lengths = [len(v) for v in values]
        if len(set(lengths)) > 1:
            first = lengths[0]
            odd = next(i for i, n in enumerate(lengths) if n != first)
            raise ValueError(
                f"gm.p: {what} has rows of different lengths (galaxy 0: {first} values, galaxy {odd}: "
                f"{lengths[odd]}); a vector parameter holds the same number K of values for every galaxy"
            )
    # numpy would read "3" as 3.0 and True as 1.0: both are mistakes in a start value
    raw = np.asarray(values) if not isinstance(values, (str, bytes)) else None
    if raw is None or raw.dtype.kind not in "iuf" or _is_bool(values):
        raise TypeError(
            f"gm.p: {what} must be a number or a sequence of numbers (one per galaxy), got {values!r}"
        )
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:  # pragma: no cover - kinds i/u/f always convert
        raise TypeError(f"gm.p: {what} must be a number or a sequence of numbers, got {values!r}") from exc
    if dim == "2d":
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)  # the same K start values for every galaxy
        if arr.ndim != 2:
            raise ValueError(
                f"gm.p(dim='2d'): {what} must have shape (K,) (the same K values for every galaxy) or "
                f"(N, K) (one row per galaxy); got shape {arr.shape}"
            )
        if arr.size == 0:
            raise ValueError(f"gm.p(dim='2d'): {what} is empty (shape {arr.shape}); give K >= 1 values per galaxy")
        return arr
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim == 2 and dim is None:
        if arr.size == 0:
            raise ValueError(f"gm.p: {what} is empty (shape {arr.shape}); give K >= 1 values per galaxy")
        return arr
    if arr.ndim != 1:
        hint = " (a vector parameter: a 2-D array (N, K), or dim='2d')" if dim == "1d" and arr.ndim == 2 else ""
        raise ValueError(
            f"gm.p: {what} must be a scalar or a 1-D sequence (one value per galaxy){hint}; got shape {arr.shape}"
        )
    if arr.size == 0:
        raise ValueError(f"gm.p: {what} is empty; give one value, or one value per galaxy")
    return arr


class Parameter:
    """A model parameter: start values, units, bounds and whether it is fitted.

    Parameters
    ----------
    parameters
        Start value(s) in user units: a number (used for every galaxy) or a
        sequence with one number per galaxy. Leave it out (``gm.p(M0=22.5)``) for
        a free parameter that :class:`~galmoss.Fitting` starts from each galaxy's
        image, as it does for a slot left out, but with this parameter's units
        and range.
    value_range
        ``(lower, upper)`` in user units; either may be None. The fit never leaves
        the open range (a logistic transform in the fitting space, applied to the
        logarithm of the value for a parameter fitted in log space).
    step_length
        Accepted for compatibility with GalMOSS 2; scales the Adam step of this
        parameter (the Levenberg-Marquardt solver needs no step length).
    M0
        Magnitude zero point: the parameter is a magnitude, ``flux = 10**(-0.4 (m - M0))``.
    pix_scale
        Arcsec per pixel (> 0): the value is given (and reported) in arcsec, fitted in pixels.
    angle
        The value is an angle in degrees (profiles compute in radians). A profile's
        position-angle slot is in degrees whether or not this is given.
    fit
        Whether the parameter is free. ``fit=False`` keeps it fixed at its start value.
    log
        Fit ``log10`` of the value instead of the value (the value must be positive).
    dim
        ``"1d"``: one number per galaxy. ``"2d"``: a vector parameter of K free
        values per galaxy -- ``parameters`` of shape (K,) (the same start for
        every galaxy) or (N, K) (one row per galaxy). Left out (None), a 2-D
        array makes a vector parameter and anything else a scalar one. The
        other keywords apply to every element; a profile reads a vector
        parameter as a (B, K) tensor.
    name
        Optional label used in messages.
    prior
        A :mod:`gm.prior <galmoss.params.priors>` object: a normal prior on a
        coordinate of the value (log-normal on sizes, logit-normal on bounded
        values, ...), fitted as the maximum a posteriori; None: no prior.
    bands
        Multi-band datasets only (docs/multiband.md): ``"shared"`` (one value
        for every band; the default but for magnitudes and sky levels),
        ``"free"`` (one value per band; their default) or an integer k (a
        Chebyshev polynomial of degree k in wavelength, in the fitting space).
        A band-varying parameter may start from one value, a dict by band
        name, or an (N, n_bands) array in wavelength order. A single-band fit
        ignores ``bands`` (and starts from the first band's values).

    Raises
    ------
    TypeError
        An argument of the wrong type (a string or a bool as a value, a
        ``value_range`` that is not a pair, ``fit="yes"``), naming it.
    ValueError
        A value out of range: non-finite starts, ``lower >= upper``, a start
        outside ``value_range``, ``pix_scale <= 0``, a non-positive start with
        ``log=True``, or ``fit=False`` without a start value.

    Notes
    -----
    ``value(mode)`` returns a tensor of shape ``(B, 1, 1)`` (a vector
    parameter: ``(B, K)``) in profile units
    (pixels, radians, magnitude minus ``M0``) that broadcasts against ``(H, W)``
    grids. Inside a rendering it holds the values being rendered (every ``mode``
    the seed knew returns them). Outside one, ``"updating_model"`` and
    ``"initial_model"`` give the start values (in this object's own units: a
    position angle given without ``angle=True`` is then still in degrees) and the
    other modes raise: fitted values are in the fit's results, never on the
    parameter.

    Two parameters are the same parameter only if they are the same object:
    sharing a ``gm.p`` between profiles is how a common centre is declared, and
    parameters are dictionary keys by identity throughout galmoss.
    """

    # Identity, not value, is what makes two slots share a parameter; a value
    # __eq__ (GalSim style) would silently merge distinct parameters.
    __hash__ = object.__hash__

    def __init__(
        self,
        parameters=None,
        value_range: Sequence[float | None] | None = (None, None),
        step_length: float | None = None,
        M0: float | None = None,
        pix_scale: float | None = None,
        angle: bool = False,
        fit: bool = True,
        log: bool = False,
        dim: str | None = None,
        name: str | None = None,
        prior=None,
        bands=None,
    ) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"gm.p(name={name!r}): name must be a string or None")
        self.name = name
        if dim is not None and not isinstance(dim, str):
            raise TypeError(f"gm.p{self._label()}(dim={dim!r}): dim must be '1d', '2d' or None")
        if dim not in (None, "1d", "2d"):
            raise ValueError(
                f"gm.p{self._label()}(dim={dim!r}): dim must be '1d' (one number per galaxy), '2d' (K numbers "
                "per galaxy: a vector parameter) or None (from the shape of the values)"
            )
        for key, flag in (("angle", angle), ("fit", fit), ("log", log)):
            if not _is_bool(flag):
                raise TypeError(f"gm.p{self._label()}({key}={flag!r}): {key} must be True or False")
        if parameters is None:
            if dim == "2d":
                raise ValueError(
                    f"gm.p{self._label()}(dim='2d') needs start values: their shape (K,) or (N, K) says how "
                    "many values the parameter holds"
                )
            self.initial = None
        self.bands = _check_bands(bands, self._label())
        #: starts of a band-varying parameter, by band name (a dict) or in wavelength order
        #: (an (N, n_bands) array); resolved against the dataset's bands by galmoss.fitting.multiband
        self.band_starts = None
        if parameters is not None and (isinstance(parameters, dict) and self.bands != "shared"
                                       or self.bands not in (None, "shared") and np.ndim(parameters) == 2):
            self.band_starts = (
                {str(k): _as_array(v, f"the start value of band {k!r}") for k, v in parameters.items()}
                if isinstance(parameters, dict) else _as_array(parameters, "the start values by band", "2d")
            )
            # a single-band model reads the first band's starts
            self.initial = (next(iter(self.band_starts.values())) if isinstance(self.band_starts, dict)
                            else self.band_starts[:, 0].copy())
        elif parameters is not None:
            self.initial = _as_array(parameters, "the start value", dim)
        if self.initial is not None:
            if not np.all(np.isfinite(self.initial)):
                bad = np.unique(np.nonzero(~np.isfinite(self.initial))[0])
                raise ValueError(
                    f"gm.p{self._label()}: start value is not finite for galaxy index {bad[:5].tolist()}; "
                    "give a finite number"
                )
        if not fit and self.initial is None:
            raise ValueError(
                f"gm.p{self._label()}(fit=False) needs a start value to stay fixed at; give gm.p(value, fit=False)"
            )
        if pix_scale is not None and not (_is_number(pix_scale) and math.isfinite(pix_scale) and pix_scale > 0):
            raise ValueError(
                f"gm.p{self._label()}: pix_scale must be a positive finite number of arcsec per pixel, got {pix_scale!r}"
            )
        if M0 is not None and not (_is_number(M0) and math.isfinite(M0)):
            raise ValueError(f"gm.p{self._label()}: M0 must be a finite number (the magnitude zero point), got {M0!r}")
        if step_length is not None and not (_is_number(step_length) and math.isfinite(step_length) and step_length > 0):
            raise ValueError(f"gm.p{self._label()}: step_length must be a positive finite number or None, got {step_length!r}")
        self.M0 = None if M0 is None else float(M0)
        self.pix_scale = None if pix_scale is None else float(pix_scale)
        self.angle = bool(angle)
        self.fit = bool(fit)
        self.log = bool(log)
        self.step_length = step_length
        self.units = self._unit_map(self.angle)
        self.value_range = self._check_range(value_range)
        from .priors import Prior

        if prior is not None and not isinstance(prior, Prior):
            raise TypeError(
                f"gm.p{self._label()}(prior={prior!r}): prior must be a gm.prior object (gm.prior.Normal(mu, sigma), ...)"
            )
        if prior is not None and not self.fit:
            raise ValueError(f"gm.p{self._label()}: a prior on a fixed parameter (fit=False) does nothing; remove it or free it")
        self.prior = prior
        if self.log and self.initial is not None and np.any(self.initial <= 0):
            raise ValueError(
                f"gm.p{self._label()}: log=True needs positive start values, got {self.initial[self.initial <= 0][:5].tolist()}"
            )

    # ------------------------------------------------------------------ helpers
    def _label(self) -> str:
        return f"({self.name!r})" if self.name else ""

    def _unit_map(self, degrees: bool) -> UnitMap:
        scale = 1.0
        offset = 0.0
        if self.pix_scale is not None:
            scale /= self.pix_scale
        if degrees:
            scale *= math.pi / 180.0
        if self.M0 is not None:
            offset = -self.M0
        return UnitMap(scale=scale, offset=offset)

    def _check_range(self, value_range) -> tuple[float | None, float | None] | None:
        if value_range is None:
            return None
        if isinstance(value_range, (str, bytes)) or not hasattr(value_range, "__len__") or len(value_range) != 2:
            raise TypeError(f"gm.p{self._label()}: value_range must be a pair (lower, upper), got {value_range!r}")
        ends = []
        for what, end, infinite in (("lower", value_range[0], -math.inf), ("upper", value_range[1], math.inf)):
            if end is None:
                ends.append(None)
                continue
            if not _is_number(end):
                raise TypeError(
                    f"gm.p{self._label()}: value_range {what} end must be a number or None, got {end!r}"
                )
            end = float(end)
            if math.isnan(end) or end == -infinite:
                raise ValueError(f"gm.p{self._label()}: value_range {what} end {end} is not a valid bound")
            ends.append(None if end == infinite else end)  # an infinite end is no bound
        lo, hi = ends
        if lo is None and hi is None:
            return None
        if lo is not None and hi is not None and not lo < hi:
            raise ValueError(f"gm.p{self._label()}: value_range lower {lo} must be below upper {hi}")
        if self.initial is not None:
            outside = np.zeros(self.initial.shape, bool)
            if lo is not None:
                outside |= self.initial < lo
            if hi is not None:
                outside |= self.initial > hi
            if outside.any():
                idx = np.argwhere(outside)
                where = f"galaxy index {idx[0][0]}" + (f", element {idx[0][1] + 1}" if self.is_vector else "")
                raise ValueError(
                    f"gm.p{self._label()}: start value {self.initial[tuple(idx[0])]:g} ({where}"
                    f"{' and ' + str(len(idx) - 1) + ' more' if len(idx) > 1 else ''}) lies outside "
                    f"value_range=({lo}, {hi}); widen the range or change the start value"
                )
        if self.log and lo is not None and lo <= 0:
            raise ValueError(f"gm.p{self._label()}: log=True needs a positive lower bound, got {lo}")
        return (lo, hi)

    @property
    def has_start(self) -> bool:
        """Whether the parameter has start values (``gm.p(M0=22.5)`` has none)."""
        return self.initial is not None

    @property
    def param_length(self) -> int:
        """Number of galaxies the start values are for (1 means: the same for every galaxy, or none given)."""
        return 1 if self.initial is None else int(self.initial.shape[0])

    @property
    def is_vector(self) -> bool:
        """Whether this is a vector parameter (K values per galaxy, ``dim='2d'``)."""
        return self.initial is not None and self.initial.ndim == 2

    @property
    def size(self) -> int:
        """Values per galaxy: K for a vector parameter, 1 for a scalar one."""
        return int(self.initial.shape[1]) if self.is_vector else 1

    def units_for(self, role: "Role | None" = None) -> UnitMap:
        """The map from user units to profile units in a slot of ``role``.

        An angle slot (``Role.ANGLE``) takes degrees whether or not ``angle=True``
        was given; this is how profiles treat their position angle without
        changing the user's object.
        """
        if role is Role.ANGLE and not self.angle:
            return self._unit_map(True)
        return self.units

    def __len__(self) -> int:
        return self.param_length

    def _require_start(self, what: str) -> np.ndarray:
        if self.initial is None:
            raise ValueError(
                f"gm.p{self._label()} has no start value, so {what} has nothing to use; give gm.p(value, ...), "
                "or fit it with gm.Fitting, which starts it from each galaxy's image"
            )
        return self.initial

    def initial_values(self) -> np.ndarray:
        """The start values in user units; ``ValueError`` if the parameter has none."""
        return self._require_start("its start value")

    def initial_profile_units(self, role: "Role | None" = None) -> np.ndarray:
        """Start values converted to profile units (pixels, radians, m - M0) for a slot of ``role``."""
        return self.units_for(role).to_profile(self.initial_values())

    def value(self, mode: str = "updating_model") -> torch.Tensor:
        """The parameter's values in profile units, shape ``(B, 1, 1)`` (a vector parameter: ``(B, K)``).

        Inside a rendering these are the values being rendered, whatever the
        mode. Outside one, ``"updating_model"`` and ``"initial_model"`` give the
        start values of every galaxy (float64) and the other modes raise.

        Raises
        ------
        ValueError
            An unknown mode; a mode other than the current values outside a
            rendering (read fitted values from ``Fitting.results``); no start value.
        """
        if mode not in VALUE_MODES:
            raise ValueError(f"value(mode={mode!r}): mode must be one of {', '.join(VALUE_MODES)}")
        active = active_values()
        if active is not None and self in active:
            return active[self]
        if mode not in CURRENT_MODES:
            raise ValueError(
                f"gm.p{self._label()}.value({mode!r}) outside a rendering: galmoss keeps no fit state on "
                "parameters, so there is no such value to give. Read fitted values from fitting.results "
                "(column '<profile>_<parameter>') or gm.results_to_init(...); value('updating_model') gives the "
                "start values"
            )
        start = torch.as_tensor(self.initial_profile_units(), dtype=torch.float64)
        return start if self.is_vector else start.reshape(-1, 1, 1)

    # ----------------------------------------------------------- fitting space
    def profile_bounds(self, role: "Role | None" = None) -> tuple[float, float]:
        """``value_range`` in profile units for a slot of ``role``, (-inf, inf) where not given."""
        if self.value_range is None:
            return (-math.inf, math.inf)
        units = self.units_for(role)
        ends = []
        for end, default in zip(self.value_range, (-math.inf, math.inf)):
            ends.append(default if end is None else float(units.to_profile(end)))
        lo, hi = ends
        if units.scale < 0:  # pragma: no cover - no unit map flips sign today
            lo, hi = hi, lo
        return lo, hi

    def fitting_transform(self, spec: "ParamSpec | Role") -> Transform:
        """The bijection from the fitting space to profile units for a slot ``spec``.

        Bounded parameters use a logistic map (open bounds); positive quantities
        and axis ratios are fitted in log space; an axis-ratio range whose upper
        end is 1 is mirrored to ``(lo, 1/lo)`` in q so that the fitting space has
        no wall at q = 1 (q > 1 is the same ellipse turned by 90 degrees, and is
        reported that way). Without a ``value_range`` the slot's own bounds apply
        (a Moffat index above 1, a Sersic index within the range b_n is valid for).
        """
        if isinstance(spec, Role):
            spec = ParamSpec(spec)
        role = spec.role
        lo, hi = self.profile_bounds(role)
        if self.value_range is None and spec.fit_bounds is not None:
            lo, hi = spec.fit_bounds
        elif self.value_range is None and role in (Role.POSITIVE, Role.LENGTH) and spec.domain[0] > 0:
            lo = spec.domain[0]
        bounded_lo, bounded_hi = math.isfinite(lo), math.isfinite(hi)
        if role is Role.AXIS_RATIO:
            lo = lo if bounded_lo and lo > 0 else None
            if lo is None and not bounded_hi:
                return Exp()
            lo = lo if lo is not None else 1e-3
            if not bounded_hi or hi >= 1.0:
                return Compose(Exp(), Logistic(math.log(lo), -math.log(lo)))
            return Compose(Exp(), Logistic(math.log(lo), math.log(hi)))
        if role is Role.BOXINESS and not (bounded_lo or bounded_hi):
            return Logistic(-1.99, 10.0)
        if bounded_lo and bounded_hi:
            if self.log:
                return Compose(Pow10(), Logistic(math.log10(lo), math.log10(hi)))
            if role in (Role.POSITIVE, Role.LENGTH) and lo > 0:
                return Compose(Exp(), Logistic(math.log(lo), math.log(hi)))
            return Logistic(lo, hi)
        if bounded_lo or bounded_hi:
            return _HalfBounded(lo if bounded_lo else hi, from_above=not bounded_lo, log=self.log)
        if self.log:
            return Pow10()
        if role in (Role.POSITIVE, Role.LENGTH):
            return Exp()
        return Identity()

    def __repr__(self) -> str:
        if self.initial is None:
            shown = None
        elif self.is_vector:
            shown = f"<{self.initial.shape[0]} x {self.initial.shape[1]} values>"
        else:
            vals = self.initial if self.initial.size <= 4 else np.r_[self.initial[:3], np.nan]
            shown = "[" + ", ".join("..." if np.isnan(v) else f"{v:g}" for v in vals) + "]"
        opts = []
        if not self.fit:
            opts.append("fit=False")
        if self.value_range is not None:
            opts.append(f"value_range={self.value_range}")
        for key in ("M0", "pix_scale"):
            if getattr(self, key) is not None:
                opts.append(f"{key}={getattr(self, key)}")
        if self.angle:
            opts.append("angle=True")
        if self.log:
            opts.append("log=True")
        if self.prior is not None:
            opts.append(f"prior={self.prior.describe()}")
        if shown is None:
            return f"gm.p({', '.join(opts)})"
        return f"gm.p({shown}{', ' if opts else ''}{', '.join(opts)})"


@dataclass(frozen=True)
class _HalfBounded(Transform):
    """``v = bound + exp(u)`` (or ``bound - exp(u)``): a range open on one side.

    With ``log=True`` the optimiser works in log10 of the distance from the bound.
    """

    bound: float = 0.0
    from_above: bool = False
    log: bool = False

    @property
    def lower(self) -> float:  # type: ignore[override]
        return -math.inf if self.from_above else self.bound

    @property
    def upper(self) -> float:  # type: ignore[override]
        return self.bound if self.from_above else math.inf

    def _sign(self) -> float:
        return -1.0 if self.from_above else 1.0

    def _base(self) -> Transform:
        return Pow10() if self.log else Exp()

    def forward(self, u):
        return self.bound + self._sign() * self._base().forward(u)

    def inverse(self, v):
        return self._base().inverse(self._sign() * (v - self.bound))

    def derivative(self, u):
        return self._sign() * self._base().derivative(u)

    def start_coordinate(self, v, margin: float = 1e-6):
        # no width to take a fraction of: a start on the bound goes 1e-6 of its size inside
        inside = self.bound + self._sign() * 1e-6 * max(1.0, abs(self.bound))
        limit = torch.tensor(inside, dtype=v.dtype, device=v.device)
        return self.inverse(torch.minimum(v, limit) if self.from_above else torch.maximum(v, limit))


def p(
    parameters=None,
    value_range: Sequence[float | None] | None = (None, None),
    step_length: float | None = None,
    M0: float | None = None,
    pix_scale: float | None = None,
    angle: bool = False,
    fit: bool = True,
    log: bool = False,
    dim: str | None = None,
    name: str | None = None,
    prior=None,
    bands=None,
) -> Parameter:
    """Make a :class:`Parameter` (the seed's ``gm.p``); see that class for the arguments."""
    return Parameter(
        parameters,
        value_range=value_range,
        step_length=step_length,
        M0=M0,
        pix_scale=pix_scale,
        angle=angle,
        fit=fit,
        log=log,
        dim=dim,
        name=name,
        prior=prior,
        bands=bands,
    )
