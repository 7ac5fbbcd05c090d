"""The bands of a multi-band fit and the joint model: how one fitting-space vector reaches every band.

See :mod:`galmoss.fitting.multiband` for the maps (``u_b = A_b theta``, ``v_b = a_b T(u_b) + c_b``);
this module holds the bands (:class:`Bands`) and the :class:`JointModel` that builds them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from ..batched import rowwise_jacobian
from ..errors import ConfigError
from ..model import Model
from ..params import Parameter, ParamSpec, Role
from ..params.auto import AutoStart
from ..params.transforms import Identity
from ..params.ties import Tied

Tensor = torch.Tensor


__all__ = ["BAND_VARYING_ROLES", "Bands", "JointColumn", "JointModel", "band_dict", "band_mode", "make_bands"]

#: roles whose parameters differ between bands unless the user says otherwise
#: (a magnitude; a sky level or gradient, in each band's image units)
BAND_VARYING_ROLES = (Role.MAGNITUDE, Role.REAL)
#: AutoStart kinds started from each band's own image (the others from the reference band)
_BAND_ESTIMATES = ("flux", "sky")


# ------------------------------------------------------------------ the bands
@dataclass(frozen=True)
class Bands:
    """Band names (the first is the reference frame), their wavelengths and pixel scales."""

    names: tuple[str, ...]
    wavelength: tuple[float, ...]
    pix_scale: tuple[float, ...]
    #: each band's magnitude zero point (None: every magnitude uses its gm.p's M0 in every band)
    zero_point: tuple[float, ...] | None = None
    #: each band's pixel grid turned against the reference band's, degrees counter-clockwise (x right, y up):
    #: a position angle measured in reference pixels is ``pa + rotation[b]`` in band b's (None: all 0)
    rotation: tuple[float, ...] | None = None

    def __len__(self) -> int:
        return len(self.names)

    @property
    def mapped(self) -> np.ndarray:
        """Wavelengths mapped linearly to [-1, 1] (0 for a single wavelength)."""
        w = np.asarray(self.wavelength, dtype=np.float64)
        span = w.max() - w.min()
        return np.zeros_like(w) if span == 0 else 2.0 * (w - w.min()) / span - 1.0

    def turn(self, b: int) -> float:
        """Band b's rotation against the reference band, in radians."""
        return 0.0 if self.rotation is None else math.radians(self.rotation[b])

    def grid_map(self, b: int) -> np.ndarray:
        """(2, 2): an offset (dx, dy) from the cutout centre in reference pixels -> band b's pixels (s R)."""
        s, a = self.pix_scale[0] / self.pix_scale[b], self.turn(b)
        return s * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])


def _positive(value, what: str) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or float(value) <= 0:
        raise ConfigError(f"Dataset: {what} must be a positive number, got {value!r}")
    return float(value)


def make_bands(wavelength, pix_scale, zero_point=None, rotation=None) -> Bands:
    """Check ``wavelength`` (a dict band -> wavelength, in band order) and ``pix_scale`` (a dict, or one number).

    ``zero_point``: optional ``{band: magnitude zero point}`` (finite numbers).
    ``rotation``: optional ``{band: degrees}``, each band's pixel grid turned
    counter-clockwise against the reference band's (the reference's is 0); bands
    whose images carry a FITS WCS get it from there.

    Raises
    ------
    ConfigError
        A wavelength or pixel scale missing or not positive, band names that
        differ between them.
    """
    if not isinstance(wavelength, Mapping) or not wavelength:
        raise ConfigError(
            f"Dataset: wavelength must be a dict {{band: wavelength}} naming every band in order, got {wavelength!r}"
        )
    names = tuple(str(k) for k in wavelength)
    waves = tuple(_positive(v, f"wavelength of band {k!r}") for k, v in wavelength.items())
    if pix_scale is None:
        raise ConfigError("Dataset: pix_scale is missing; give {band: arcsec per pixel} for every band of wavelength")
    if isinstance(pix_scale, Mapping):
        given = {str(k) for k in pix_scale}
        if given != set(names):
            raise ConfigError(
                f"Dataset: pix_scale names bands {sorted(given)} but wavelength names {list(names)}; give one "
                "pixel scale for every band of wavelength, by the same names"
            )
        scales = tuple(_positive(pix_scale[k] if k in pix_scale else pix_scale[_key(pix_scale, k)],
                                 f"pix_scale of band {k!r}") for k in names)
    else:
        scales = (_positive(pix_scale, "pix_scale"),) * len(names)
    zps = _per_band_numbers(zero_point, names, "zero_point", "magnitude zero point", "")
    return Bands(names, waves, scales, None if zps is None else tuple(zps), _rotation(rotation, names))


def _per_band_numbers(value, names: tuple[str, ...], what: str, unit: str, note: str) -> list[float] | None:
    """``{band: finite number}`` for every band, in band order (None when not given)."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or {str(k) for k in value} != set(names):
        given = sorted(str(k) for k in value) if isinstance(value, Mapping) else value
        raise ConfigError(f"Dataset: {what} names {given!r} but wavelength names {list(names)}; give "
                          f"{{band: {unit}}} for every band, by the same names{note}")
    out = []
    for k in names:
        v = value[_key(value, k)]
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not math.isfinite(float(v)):
            raise ConfigError(f"Dataset: {what} of band {k!r} must be a finite number, got {v!r}")
        out.append(float(v))
    return out


def _rotation(rotation, names: tuple[str, ...]) -> tuple[float, ...] | None:
    out = _per_band_numbers(rotation, names, "rotation", "degrees", " (0 for the reference band)")
    if out is None:
        return None
    if out[0] != 0.0:
        raise ConfigError(f"Dataset: rotation of the reference band {names[0]!r} is {out[0]:g}; rotations are against "
                          "the reference band's grid, so its own must be 0")
    return tuple(out) if any(out) else None


def _key(mapping: Mapping, name: str):
    return next(k for k in mapping if str(k) == name)


def band_dict(value, bands: Bands, what: str, *, optional: bool = False) -> dict:
    """``value`` as ``{band: item}`` in band order; a non-dict is the same item for every band.

    Raises
    ------
    ConfigError
        A dict whose keys are not exactly the bands of ``wavelength``.
    """
    if not isinstance(value, Mapping):
        return {b: value for b in bands.names}
    keys = {str(k) for k in value}
    if keys != set(bands.names):
        missing, extra = sorted(set(bands.names) - keys), sorted(keys - set(bands.names))
        detail = "; ".join(x for x in (f"missing {missing}" if missing else "", f"unknown {extra}" if extra else "") if x)
        raise ConfigError(f"Dataset: {what} names bands {sorted(keys)} ({detail}); wavelength names {list(bands.names)}: "
                          "give one entry per band, by the same names")
    return {b: value[_key(value, b)] for b in bands.names}


# -------------------------------------------------------------- joint model
@dataclass(frozen=True)
class JointColumn:
    """A reported column of a joint fit: a band's value, a shared value or a Chebyshev coefficient."""

    name: str
    spec: ParamSpec
    band: str | None = None
    #: the parameter it reports (None for a Chebyshev coefficient)
    parameter: Parameter | None = None


def band_mode(prm: Parameter, role: Role):
    """``"shared"``, ``"free"`` or a Chebyshev degree: the parameter's own, else its role's default."""
    mode = getattr(prm, "bands", None)
    if mode is None and isinstance(prm, AutoStart) and prm.like is not None:
        mode = getattr(prm.like, "bands", None)
    if mode is None:  # a vector (Fourier modes) is a shape: shared, though its role is REAL
        mode = "free" if role in BAND_VARYING_ROLES and not getattr(prm, "is_vector", False) else "shared"
    return mode


class JointModel:
    """The joint parameters of a multi-band fit and their map to every band (see the module docstring).

    Parameters
    ----------
    profiles
        The user's profiles, every slot filled (the start policy's output).
    bands
        The bands, reference first.

    priors
        A preset of priors by name (as :class:`~galmoss.model.Model`'s).

    Raises
    ------
    ConfigError
        A Chebyshev degree k >= the number of bands, or ``bands=k`` with two
        bands of the same wavelength.
    NotImplementedError
        Vector parameters of profiles whose vectors depend on the pixel grid (a
        pixel map, bending amplitudes in pixels, a free-form profile's knots) with
        bands.

    Notes
    -----
    A prior (``gm.p(..., prior=)`` or a preset's) acts once on a shared
    parameter and, on a band-varying one (or one it relates to a band-varying
    one, as a B/T prior relates two magnitudes), on its value in every band.
    """

    def __init__(self, profiles: Mapping[str, object], bands: Bands, priors: str | None = None) -> None:
        self.bands = bands
        self.ref = ref = Model(profiles, priors=priors)
        _check_band_vectors(ref)
        nb = len(bands)
        self.modes: dict[Parameter, object] = {}
        for prm in ref.parameters:
            mode = band_mode(prm, ref.specs[prm].role)
            where = "{}.{}".format(*ref.uses[prm][0])
            if isinstance(mode, int):
                if mode >= nb:
                    raise ConfigError(f"{where}: bands={mode} needs more than {mode} bands (a Chebyshev polynomial of "
                                      f"degree k is set by k + 1 bands), the dataset has {nb}; give bands < {nb}")
                if len(set(bands.wavelength)) < nb:
                    raise ConfigError(f"{where}: bands={mode} (a polynomial in wavelength) but two bands share a "
                                      f"wavelength ({dict(zip(bands.names, bands.wavelength))}); give distinct "
                                      "wavelengths or bands='free'")
            self.modes[prm] = mode
            given = getattr(prm, "band_starts", None)
            if isinstance(given, dict) and set(given) != set(bands.names):
                raise ConfigError(f"{where}: the start names bands {sorted(given)}, the dataset's bands are "
                                  f"{list(bands.names)}; give one start per band, by the same names")
            if isinstance(given, np.ndarray) and given.shape[1] != nb:
                raise ConfigError(f"{where}: the start has {given.shape[1]} columns for {nb} bands; give an "
                                  "(N, n_bands) array in wavelength order, or a dict by band")
        # the joint columns of theta
        self.slices: dict[Parameter, slice] = {}
        offset = 0
        for prm in ref.free:  # a vector of K values takes K columns per band or coefficient, band-major
            mode = self.modes[prm]
            width = 1 if mode == "shared" else nb if mode == "free" else mode + 1
            self.slices[prm] = slice(offset, offset + width * prm.size)
            offset += width * prm.size
        self.n_free = offset
        a = np.zeros((nb, ref.n_free, offset))
        cheb = np.polynomial.chebyshev.chebvander(bands.mapped, max([m for m in self.modes.values()
                                                                     if isinstance(m, int)] or [0]))
        for prm in ref.free:
            s, mode, size = self.slices[prm].start, self.modes[prm], prm.size
            for k in range(size):
                j = ref.slices[prm].start + k
                for b in range(nb):
                    if mode == "shared":
                        a[b, j, s + k] = 1.0
                    elif mode == "free":
                        a[b, j, s + b * size + k] = 1.0
                    else:
                        a[b, j, s + k : s + (mode + 1) * size : size] = cheb[b, : mode + 1]
        self.A = a
        #: the bands each prior acts in: once (the reference band) when it and the parameters it
        #: relates are shared, else in every band, on that band's values
        self.prior_bands = [
            [0] if all(self.modes[p] == "shared" for p in (t.parameter, *t.others)) else list(range(nb))
            for t in ref.priors
        ]
        # per band: a single-band model whose parameters are the band's values, fitted as they are
        self.band_models: list[Model] = []
        self.band_params: list[dict[Parameter, Parameter]] = []
        for b in range(nb):
            # a fixed copy keeps its start: the renderer reads some of them (a box of exactly 0
            # is drawn as a plain ellipse); the values drawn come from the objective's fixed tensors
            # a tied parameter is a variable of the band's model: its value comes from the tie in
            # reference units (Model.values), mapped to the band like any other
            mapping = {prm: (Parameter([1.0] * prm.size, dim="2d") if prm.is_vector else Parameter(1.0))
                       if prm.fit or isinstance(prm, Tied)
                       else Parameter(self._fixed_start(prm, b), fit=False, dim="2d" if prm.is_vector else None)
                       for prm in ref.parameters}
            copies = {}
            for name, profile in ref.profiles.items():
                c = copy.copy(profile)
                for slot, prm in profile.parameters().items():
                    setattr(c, slot, mapping[prm])
                copies[name] = c
            model = Model(copies)
            model.transforms = {p: Identity() for p in model.free}
            inverse = {id(v): k for k, v in mapping.items()}
            sources = [inverse[id(p)] for p in model.free]
            if b == 0:
                #: the reference parameters whose band values are the band models' free columns, in their
                #: order: the free parameters the profiles use and the tied ones
                self.sources = sources
            assert sources == self.sources
            self.band_models.append(model)
            self.band_params.append(mapping)
        #: each position parameter's other coordinate (a component's cen_x <-> cen_y), with rotated bands only
        self.partner = self._rotated_partners()
        self.columns: list[JointColumn] = []
        self._report_source: list[tuple[int, str | None, int | None]] = []  # (band, ref column, theta column)
        for col in ref.columns:
            mode = self.modes[col.parameter]
            if mode == "shared":
                self.columns.append(JointColumn(col.name, col.spec, parameter=col.parameter))
                self._report_source.append((0, col.name, None))
                continue
            for b, band in enumerate(bands.names):
                self.columns.append(JointColumn(f"{col.name}_{band}", col.spec, band, col.parameter))
                self._report_source.append((b, col.name, None))
        for prm in ref.free:
            mode = self.modes[prm]
            if isinstance(mode, int):
                pname, slot = ref.uses[prm][0]
                for d in range(mode + 1):
                    for k in range(prm.size):
                        element = f"_{k + 1}" if prm.is_vector else ""
                        self.columns.append(JointColumn(f"{pname}_{slot}{element}_cheb{d}", ParamSpec(Role.REAL)))
                        self._report_source.append((0, None, self.slices[prm].start + d * prm.size + k))

    def _fixed_start(self, prm: Parameter, b: int) -> np.ndarray:
        given = getattr(prm, "band_starts", None)
        if given is None or self.modes[prm] == "shared":
            return prm.initial_values()
        return given[self.bands.names[b]] if isinstance(given, dict) else given[:, b]

    # ------------------------------------------------------------- plumbing
    @property
    def auto_parameters(self):
        return self.ref.auto_parameters

    def free_names(self) -> list[str]:
        out = []
        for prm in self.ref.free:
            pname, slot = self.ref.uses[prm][0]
            mode = self.modes[prm]
            bases = [f"{pname}_{slot}_{k + 1}" for k in range(prm.size)] if prm.is_vector else [f"{pname}_{slot}"]
            out.extend(bases if mode == "shared" else [f"{base}_{b}" for b in self.bands.names for base in bases]
                       if mode == "free" else [f"{base}_cheb{d}" for d in range(mode + 1) for base in bases])
        return out

    def gauge_directions(self, theta):  # no profile with a gauge slot takes bands (_check_band_vectors)
        return None

    def coordinates(self, prms) -> list[tuple[Parameter, int]]:
        """``(parameter, element)`` of each value of ``prms`` in order: K for a vector, one for a scalar."""
        return [(prm, k) for prm in prms for k in range(prm.size)]

    def band_matrix(self, dtype, device) -> Tensor:
        """(n_bands, Q, P): the constant maps from joint theta to each band's coordinates."""
        return torch.as_tensor(self.A, dtype=dtype, device=device)

    def _scale(self, prm: Parameter, b: int) -> float:
        role = self.ref.specs[prm].role
        if role in (Role.POSITION, Role.LENGTH):
            return self.bands.pix_scale[0] / self.bands.pix_scale[b]
        return 1.0

    def _partners(self) -> dict[Parameter, Parameter]:
        """Each position parameter's other coordinate (a component's cen_x <-> its cen_y)."""
        out: dict[Parameter, Parameter] = {}
        for profile in self.ref.profiles.values():
            slots = profile.parameters()
            for slot, prm in slots.items():
                if self._axis(prm) is None:
                    continue
                other = slot[:-1] + ("x" if slot.endswith("y") else "y")
                if other in slots:
                    out.setdefault(prm, set()).add(slots[other])
        return out

    def _rotated_partners(self) -> dict[Parameter, Parameter]:
        """With rotated bands x and y mix: each position's other coordinate, fitted (or fixed) as it is."""
        if self.bands.rotation is None:
            return {}
        partner, pairs = {}, self._partners()
        for prm in self.ref.parameters:
            if self._axis(prm) is None:
                continue
            where = "{}.{}".format(*self.ref.uses[prm][0])
            others = pairs.get(prm, set())
            if len(others) != 1:
                raise NotImplementedError(f"{where}: rotated bands need each position paired with exactly one other "
                                          "coordinate (a component's cen_x with its cen_y)")
            other = next(iter(others))
            if (prm in self.ref.fixed) != (other in self.ref.fixed):
                raise NotImplementedError(
                    f"{where}: with bands rotated against each other a centre's x and y mix, so both must be fitted "
                    "or both fixed; give the other coordinate the same fit= (rotated bands with one coordinate "
                    "fixed are not supported)")
            partner[prm] = other
        return partner

    def mixing(self, prms, b: int) -> np.ndarray:
        """(Q, Q): band b's values of ``prms`` from their reference values (before the offsets): the pixel
        scales' ratio for lengths and positions, and with rotated bands a centre's x and y turned together."""
        coords = self.coordinates(prms)
        out = np.diag([self._scale(prm, b) for prm, _ in coords]) if coords else np.zeros((0, 0))
        if not self.partner or self.bands.turn(b) == 0.0:
            return out
        index = {prm: j for j, (prm, _) in enumerate(coords) if not prm.is_vector}
        grid = self.bands.grid_map(b)
        for prm, j in index.items():
            other = self.partner.get(prm)
            if other is None:
                continue
            a = self._axis(prm)
            out[j, j] = grid[a, a]
            out[j, index[other]] = grid[a, 1 - a]
        return out

    def band_values(self, prms, values: np.ndarray, b: int) -> np.ndarray:
        """(B, Q): band b's values of ``prms`` (Q values: K for a vector) from reference values ``values``
        (B, Q) (offsets not added)."""
        return values @ self.mixing(prms, b).T

    def _axis(self, prm: Parameter) -> int | None:
        """0 for an x position, 1 for a y position, None for anything else."""
        if self.ref.specs[prm].role is not Role.POSITION:
            return None
        slot = self.ref.uses[prm][0][1]
        return 1 if slot.endswith("y") else 0

    def zero_point_offset(self, prm: Parameter, b: int) -> float:
        """A magnitude's offset in band b's profile units: M0 - zp_b (0 without per-band zero points).

        The reference value is m - M0 (the gm.p's M0), the band's m - zp_b: the band's
        zero point replaces M0 in that band, so every band reports calibrated magnitudes.
        """
        if self.bands.zero_point is None or self.ref.specs[prm].role is not Role.MAGNITUDE:
            return 0.0
        return -float(self.ref.units[prm].offset) - self.bands.zero_point[b]

    def offsets(self, prm_list, shapes: list[list[tuple[int, int]]]) -> np.ndarray:
        """(n_bands, B, len(prm_list)): each band's offset per galaxy: ``c_b - M_b c_ref`` for positions
        (``M_b`` the pixel scales' ratio, times the rotation with rotated bands), the band's rotation for
        position angles, M0 - zp_b for magnitudes with per-band zero points, 0 otherwise."""
        nb, n = len(self.bands), len(shapes[0])
        coords = self.coordinates(prm_list)
        out = np.zeros((nb, n, len(coords)))
        centres = [np.array([[(w + 1) / 2.0, (h + 1) / 2.0] for h, w in band_shapes]) for band_shapes in shapes]
        for j, (prm, _) in enumerate(coords):
            if prm.is_vector:  # a vector (Fourier modes) means the same in every band
                continue
            role = self.ref.specs[prm].role
            for b in range(nb):
                out[b, :, j] = self.zero_point_offset(prm, b) + (self.bands.turn(b) if role is Role.ANGLE else 0.0)
            axis = self._axis(prm)
            if axis is None:
                continue
            for b in range(nb):  # the grid map is the scales' ratio times the band's rotation (1 unturned)
                out[b, :, j] = centres[b][:, axis] - centres[0] @ self.bands.grid_map(b)[axis]
        return out

    # ----------------------------------------------------------------- starts
    def band_starts(self, prm: Parameter, positions: np.ndarray, estimates: list[list[dict]] | None) -> np.ndarray:
        """(B, n_bands) starts of ``prm`` in reference profile units; (B, n_bands, K) for a vector."""
        n, nb = len(positions), len(self.bands)
        if prm.is_vector:
            if isinstance(prm, AutoStart):
                return np.full((n, nb, prm.size), np.nan)
            units = self.ref.units[prm]
            given = getattr(prm, "band_starts", None)
            if given is not None and self.modes[prm] != "shared":
                raise NotImplementedError("{}.{}: per-band starts of a vector parameter are not supported; give one "
                                          "start for every band".format(*self.ref.uses[prm][0]))
            vals = units.to_profile(prm.initial_values())
            vals = vals[positions] if vals.shape[0] > 1 else np.broadcast_to(vals, (n, prm.size))
            return np.repeat(np.asarray(vals, dtype=np.float64)[:, None, :], nb, axis=1)
        if isinstance(prm, AutoStart):
            if estimates is None:
                return np.full((n, nb), np.nan)
            per_band = prm.kind in _BAND_ESTIMATES and self.modes[prm] != "shared"
            # an estimate is the band's own value; the reference value lies its zero-point offset away
            return np.array([[prm.start_from(estimates[b if per_band else 0][i])
                              - self.zero_point_offset(prm, b if per_band else 0) for b in range(nb)]
                             for i in range(n)], dtype=np.float64).reshape(n, nb)
        units = self.ref.units[prm]
        given = getattr(prm, "band_starts", None)
        if given is None or self.modes[prm] == "shared":
            vals = units.to_profile(prm.initial_values())
            vals = vals[positions] if vals.shape[0] > 1 else np.broadcast_to(vals, (n,))
            return np.repeat(np.asarray(vals, dtype=np.float64).reshape(n, 1), nb, axis=1)
        # names and widths were checked when the model was built
        cols = [given[b] for b in self.bands.names] if isinstance(given, dict) else [given[:, b] for b in range(nb)]
        out = np.empty((n, nb))
        for b, c in enumerate(cols):
            c = units.to_profile(np.asarray(c, dtype=np.float64).reshape(-1))
            out[:, b] = c[positions] if c.shape[0] > 1 else c[0]
        return out

    def start_theta(self, positions, estimates, dtype, device) -> Tensor:
        """Joint theta (B, P) at the starts: band coordinates, Chebyshev coefficients by least squares."""
        values = {prm: self.band_starts(prm, positions, estimates) for prm in self.ref.free}
        return self._theta_of(values, len(positions), dtype, device)

    def restart_theta(self, positions, estimates: list[list[dict]], dtype, device) -> Tensor:
        """Joint theta (B, P) of a second start for fits gone astray (:func:`~galmoss.fitting.starts.restart_values`).

        The centre, angles, axis ratios and sizes come from the reference band's image
        (its pixels are the reference frame); a band-varying magnitude (or sky) from
        each band's own image, its zero-point offset taken off; the rest keeps its start.
        """
        from .starts import restart_values

        nb = len(self.bands)
        start = {prm: self.band_starts(prm, positions, estimates)[:, 0] for prm in self.ref.free}
        by_band = [restart_values(self.ref, start, estimates[b]) for b in range(nb)]
        values = {}
        for prm in self.ref.free:
            role = self.ref.specs[prm].role
            own = self.modes[prm] != "shared" and (role is Role.MAGNITUDE
                                                   or getattr(prm, "kind", None) in _BAND_ESTIMATES)
            cols = [by_band[b if own else 0][prm] - (self.zero_point_offset(prm, b) if own else 0.0) for b in range(nb)]
            values[prm] = np.stack([np.asarray(c, dtype=np.float64) for c in cols], axis=1)
        return self._theta_of(values, len(positions), dtype, device)

    def _theta_of(self, values: dict, n: int, dtype, device) -> Tensor:
        """Joint theta (B, P) of reference profile-unit values ``{parameter: (B, n_bands) or (B, n_bands, K)}``."""
        cols = []
        for prm in self.ref.free:
            v = torch.as_tensor(values[prm])
            transform = self.ref.transforms[prm]
            if prm.is_vector:  # (B, nb, K): each band's K coordinates, band-major
                u = torch.stack([transform.start_coordinate(v[:, b]) for b in range(v.shape[1])], dim=1).double()
            else:
                u = transform.start_coordinate(v).double()[:, :, None]  # (B, nb, 1)
            mode, size = self.modes[prm], u.shape[2]
            if mode == "shared":
                cols.append(u[:, 0])
            elif mode == "free":
                cols.append(u.reshape(n, -1))
            else:
                vander = torch.as_tensor(np.polynomial.chebyshev.chebvander(self.bands.mapped, mode))
                coef = torch.stack([torch.linalg.lstsq(vander, u[:, :, k].T).solution.T for k in range(size)], dim=2)
                cols.append(coef.reshape(n, -1))  # (B, (mode + 1) K), degree-major
        if not cols:
            return torch.zeros((n, 0), dtype=dtype, device=device)
        return torch.cat(cols, dim=1).to(dtype=dtype, device=device)

    def fixed_values(self, positions) -> dict[tuple[int, Parameter], np.ndarray]:
        """``{(band, parameter): (B,)}`` of the fixed parameters, reference profile units."""
        out = {}
        for prm in self.ref.fixed:
            v = self.band_starts(prm, np.asarray(positions), None)
            for b in range(len(self.bands)):
                out[(b, prm)] = v[:, b]
        return out

    # the names covariance_errors reads (it asks a model for the fixed values of rows)
    def start_values(self, positions, estimates=None):
        """The fixed values of rows ``positions`` (what :func:`covariance_errors` needs of a model)."""
        return self.fixed_values(positions)

    def fixed_tensors(self, values, dtype, device) -> dict:
        """``{(band, parameter): (B, 1, 1)}`` tensors of fixed values ((B, K) for a vector)."""
        return {k: _fixed_tensor(v, k[1], dtype, device) for k, v in values.items()}

    # -------------------------------------------------------------- reporting
    def band_coordinates(self, theta: Tensor, b: int) -> Tensor:
        """(B, Q): band b's fitting-space coordinates of the reference model's free parameters."""
        return theta @ torch.as_tensor(self.A[b], dtype=theta.dtype, device=theta.device).T

    def report(self, theta: Tensor, fixed: Mapping) -> dict[str, Tensor]:
        """Every reported column (B,) at ``theta``: per-band values in reference user units, shared ones once."""
        per_band = []
        for b in range(len(self.bands)):
            fx = {prm: fixed[(b, prm)] for prm in self.ref.fixed}
            per_band.append(self.ref.report(self.ref.values(self.band_coordinates(theta, b), fx)))
        out = {}
        for col, (b, name, j) in zip(self.columns, self._report_source):
            out[col.name] = per_band[b][name] if name is not None else theta[:, j]
        return out

    def report_jacobian(self, theta: Tensor, fixed: Mapping) -> tuple[dict[str, Tensor], Tensor]:
        """Reported values and their derivatives (B, C, P) by theta (for the delta method)."""
        names = [c.name for c in self.columns]

        def reported(th):
            rep = self.report(th, fixed)
            return torch.stack([rep[n].reshape(-1) for n in names], 1)

        jac = rowwise_jacobian(reported, theta)
        with torch.no_grad():
            rep = self.report(theta, fixed)
        return rep, jac


# ----------------------------------------------------------------- objective


def _fixed_tensor(value, prm: Parameter, dtype, device) -> Tensor:
    t = torch.as_tensor(np.asarray(value, dtype=np.float64), dtype=dtype, device=device)
    return t.reshape(t.shape[0], -1) if prm.is_vector else t.reshape(-1, 1, 1)


#: vector slots that mean the same on every band's grid (Fourier modes: relative amplitudes, phases from the
#: major axis); the others are in pixels of one grid (a pixel map's pixels, bending shifts in pixels, a
#: free-form profile's log surface brightness per pixel at knots in pixels)
_BAND_FREE_VECTORS = ("fourier_a", "fourier_phi")


def _check_band_vectors(ref: Model) -> None:
    for prm, uses in ref.uses.items():
        if not prm.is_vector:
            continue
        for pname, slot in uses:
            if slot not in _BAND_FREE_VECTORS:
                raise NotImplementedError(
                    f"{pname}.{slot}: a vector parameter in the pixels of one grid "
                    f"({type(ref.profiles[pname]).__name__}) is not supported with bands yet (it would need mapping to each band's pixels); Fourier modes are")
