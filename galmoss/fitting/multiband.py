r"""Joint fits of several bands: one fitting-space vector, one single-band objective per band.

Every band gets its own single-band :class:`~galmoss.model.Model` (copies of the
profiles whose parameters are the band's values in the band's own pixels,
fitted as they are) and its own :class:`~galmoss.fitting.objective.BatchObjective`
(its grid, PSF and structured Jacobian, unchanged). The joint fitting-space
vector ``theta`` (B, P) reaches band b through a constant matrix: the band's
coordinate of each parameter of the reference model is

.. math:: u_b = A_b \theta,

the reference value is that coordinate through the parameter's own transform,
:math:`v = T(u_b)` (so ranges, log spaces and the axis ratio's ln q act as in a
single-band fit), and the band's value is :math:`v_b = a_b v + c_b` with the
band's scale and offset of the slot's role: a length in reference pixels is
``s_ref / s_b`` band pixels, a position maps
:math:`x_b = (x - c_{ref}) s_{ref}/s_b + c_b` (the cutout centres ``c`` are one
sky point), everything else is unchanged. A shared parameter's row of
:math:`A_b` copies its column of theta, a free one selects the band's column,
and a Chebyshev polynomial of degree k holds :math:`T_k(w_b)`, ``w_b`` the
band's wavelength mapped to [-1, 1]: the polynomial lives in the fitting space
(ln r_e for a size, the magnitude itself).

The joint residuals are the bands' residuals side by side and the joint Jacobian
is :math:`[J_1 D_1 A_1; J_2 D_2 A_2; ...]` with :math:`D_b = \mathrm{diag}(a_b T'(u_b))`;
the Fisher matrix is the sum of the bands' :math:`(D_b A_b)^T F_b (D_b A_b)`.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError
from ..flags import Flag
from ..model import Model
from ..params import Parameter, ParamSpec, Role
from ..params.auto import AutoStart
from ..params.transforms import Identity
from .lm import levenberg_marquardt, sum_of_squares
from .measure import batch_estimates
from .records import Batch, BatchResult
from .solve import make_objective
from .status import Status

Tensor = torch.Tensor

__all__ = ["Bands", "JointModel", "MultiBandObjective", "fit_multiband_batch", "make_bands"]

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

    def __len__(self) -> int:
        return len(self.names)

    @property
    def mapped(self) -> np.ndarray:
        """Wavelengths mapped linearly to [-1, 1] (0 for a single wavelength)."""
        w = np.asarray(self.wavelength, dtype=np.float64)
        span = w.max() - w.min()
        return np.zeros_like(w) if span == 0 else 2.0 * (w - w.min()) / span - 1.0


def _positive(value, what: str) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or float(value) <= 0:
        raise ConfigError(f"Dataset: {what} must be a positive number, got {value!r}")
    return float(value)


def make_bands(wavelength, pix_scale) -> Bands:
    """Check ``wavelength`` (a dict band -> wavelength, in band order) and ``pix_scale`` (a dict, or one number).

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
    return Bands(names, waves, scales)


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


def band_mode(prm: Parameter, role: Role):
    """``"shared"``, ``"free"`` or a Chebyshev degree: the parameter's own, else its role's default."""
    mode = getattr(prm, "bands", None)
    if mode is None and isinstance(prm, AutoStart) and prm.like is not None:
        mode = getattr(prm.like, "bands", None)
    if mode is None:
        mode = "free" if role in BAND_VARYING_ROLES else "shared"
    return mode


class JointModel:
    """The joint parameters of a multi-band fit and their map to every band (see the module docstring).

    Parameters
    ----------
    profiles
        The user's profiles, every slot filled (the start policy's output).
    bands
        The bands, reference first.

    Raises
    ------
    ConfigError
        A Chebyshev degree k >= the number of bands, or ``bands=k`` with two
        bands of the same wavelength.
    NotImplementedError
        Tied or vector parameters with bands.
    """

    def __init__(self, profiles: Mapping[str, object], bands: Bands) -> None:
        self.bands = bands
        self.ref = ref = Model(profiles)
        if ref.ties:
            raise NotImplementedError("multi-band fits: gm.tie parameters with bands are not supported yet")
        if ref.has_vectors:
            raise NotImplementedError("multi-band fits: vector parameters (dim='2d') with bands are not supported yet")
        if ref.priors:
            raise NotImplementedError(
                f"multi-band fits: priors ({', '.join(t.label for t in ref.priors)}) with bands are not supported yet; "
                "fit each band alone to use them"
            )
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
        for prm in ref.free:
            mode = self.modes[prm]
            width = 1 if mode == "shared" else nb if mode == "free" else mode + 1
            self.slices[prm] = slice(offset, offset + width)
            offset += width
        self.n_free = offset
        q = len(ref.free)
        a = np.zeros((nb, q, offset))
        cheb = np.polynomial.chebyshev.chebvander(bands.mapped, max([m for m in self.modes.values()
                                                                     if isinstance(m, int)] or [0]))
        for j, prm in enumerate(ref.free):
            s, mode = self.slices[prm].start, self.modes[prm]
            for b in range(nb):
                if mode == "shared":
                    a[b, j, s] = 1.0
                elif mode == "free":
                    a[b, j, s + b] = 1.0
                else:
                    a[b, j, s : s + mode + 1] = cheb[b, : mode + 1]
        self.A = a
        # per band: a single-band model whose parameters are the band's values, fitted as they are
        self.band_models: list[Model] = []
        self.band_params: list[dict[Parameter, Parameter]] = []
        for b in range(nb):
            # a fixed copy keeps its start: the renderer reads some of them (a box of exactly 0
            # is drawn as a plain ellipse); the values drawn come from the objective's fixed tensors
            mapping = {prm: Parameter(1.0) if prm.fit else Parameter(self._fixed_start(prm, b), fit=False)
                       for prm in ref.parameters}
            copies = {}
            for name, profile in ref.profiles.items():
                c = copy.copy(profile)
                for slot, prm in profile.parameters().items():
                    setattr(c, slot, mapping[prm])
                copies[name] = c
            model = Model(copies)
            model.transforms = {p: Identity() for p in model.free}
            assert [mapping[p] for p in ref.free] == model.free
            self.band_models.append(model)
            self.band_params.append(mapping)
        self.columns: list[JointColumn] = []
        self._report_source: list[tuple[int, str | None, int | None]] = []  # (band, ref column, theta column)
        for col in ref.columns:
            mode = self.modes[col.parameter]
            if mode == "shared":
                self.columns.append(JointColumn(col.name, col.spec))
                self._report_source.append((0, col.name, None))
                continue
            for b, band in enumerate(bands.names):
                self.columns.append(JointColumn(f"{col.name}_{band}", col.spec, band))
                self._report_source.append((b, col.name, None))
        for prm in ref.free:
            mode = self.modes[prm]
            if isinstance(mode, int):
                pname, slot = ref.uses[prm][0]
                for k in range(mode + 1):
                    self.columns.append(JointColumn(f"{pname}_{slot}_cheb{k}", ParamSpec(Role.REAL)))
                    self._report_source.append((0, None, self.slices[prm].start + k))

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
            base = f"{pname}_{slot}"
            out.extend([base] if mode == "shared" else [f"{base}_{b}" for b in self.bands.names] if mode == "free"
                       else [f"{base}_cheb{k}" for k in range(mode + 1)])
        return out

    def gauge_directions(self, theta):  # no profile with a gauge slot takes bands (vectors are refused)
        return None

    def band_matrix(self, dtype, device) -> Tensor:
        """(n_bands, Q, P): the constant maps from joint theta to each band's coordinates."""
        return torch.as_tensor(self.A, dtype=dtype, device=device)

    def scales(self) -> np.ndarray:
        """(n_bands, Q): the factor from reference profile units to each band's, per free parameter."""
        return np.stack([[self._scale(prm, b) for prm in self.ref.free] for b in range(len(self.bands))]) \
            if self.ref.free else np.zeros((len(self.bands), 0))

    def _scale(self, prm: Parameter, b: int) -> float:
        role = self.ref.specs[prm].role
        if role in (Role.POSITION, Role.LENGTH):
            return self.bands.pix_scale[0] / self.bands.pix_scale[b]
        return 1.0

    def _axis(self, prm: Parameter) -> int | None:
        """0 for an x position, 1 for a y position, None for anything else."""
        if self.ref.specs[prm].role is not Role.POSITION:
            return None
        slot = self.ref.uses[prm][0][1]
        return 1 if slot.endswith("y") else 0

    def offsets(self, prm_list, shapes: list[list[tuple[int, int]]]) -> np.ndarray:
        """(n_bands, B, len(prm_list)): each band's offset c_b - a_b c_ref per galaxy (positions only)."""
        nb, n = len(self.bands), len(shapes[0])
        out = np.zeros((nb, n, len(prm_list)))
        for j, prm in enumerate(prm_list):
            axis = self._axis(prm)
            if axis is None:
                continue
            ref_centre = np.array([(s[1 - axis] + 1) / 2.0 for s in shapes[0]])
            for b in range(nb):
                centre = np.array([(s[1 - axis] + 1) / 2.0 for s in shapes[b]])
                out[b, :, j] = centre - self._scale(prm, b) * ref_centre
        return out

    # ----------------------------------------------------------------- starts
    def band_starts(self, prm: Parameter, positions: np.ndarray, estimates: list[list[dict]] | None) -> np.ndarray:
        """(B, n_bands) starts of ``prm`` in reference profile units."""
        n, nb = len(positions), len(self.bands)
        if isinstance(prm, AutoStart):
            if estimates is None:
                return np.full((n, nb), np.nan)
            per_band = prm.kind in _BAND_ESTIMATES and self.modes[prm] != "shared"
            return np.array([[prm.start_from(estimates[b if per_band else 0][i]) for b in range(nb)]
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
        n = len(positions)
        cols = []
        for prm in self.ref.free:
            v = torch.as_tensor(self.band_starts(prm, positions, estimates))
            u = self.ref.transforms[prm].start_coordinate(v).double()  # (B, nb)
            mode = self.modes[prm]
            if mode == "shared":
                cols.append(u[:, :1])
            elif mode == "free":
                cols.append(u)
            else:
                vander = torch.as_tensor(np.polynomial.chebyshev.chebvander(self.bands.mapped, mode))
                cols.append(torch.linalg.lstsq(vander, u.T).solution.T)
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
        return {k: torch.as_tensor(np.asarray(v, dtype=np.float64), dtype=dtype, device=device).reshape(-1, 1, 1)
                for k, v in values.items()}

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

        def one(th, fx):
            rep = self.report(th[None], {k: t[None] for k, t in fx.items()})
            return torch.stack([rep[n].reshape(-1)[0] for n in names])

        jac = torch.func.vmap(torch.func.jacfwd(one), in_dims=(0, 0))(theta, dict(fixed))
        with torch.no_grad():
            rep = self.report(theta, fixed)
        return rep, jac


# ----------------------------------------------------------------- objective
class MultiBandObjective:
    """Residuals and Jacobians of a batch in every band, as functions of the joint theta."""

    def __init__(self, jm: JointModel, objectives: list, offsets: Tensor) -> None:
        self.jm = jm
        self.objectives = objectives
        first = objectives[0].data
        self.A = jm.band_matrix(first.dtype, first.device)
        self.scale = torch.as_tensor(jm.scales(), dtype=first.dtype, device=first.device)
        self.offsets = offsets  # (nb, B, Q)

    def _values(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """Reference profile-unit values T(u) and T'(u), (B, Q) each."""
        ref = self.jm.ref
        if not ref.free:
            return u, u
        v = torch.cat([ref.transforms[p].forward(u[:, j : j + 1]) for j, p in enumerate(ref.free)], dim=1)
        return v, ref.value_derivatives(u)

    def band_theta(self, b: int, theta: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        """Band b's values (B, Q) (its model's theta) and their derivative (B, Q, P) by the joint theta."""
        u = theta @ self.A[b].T
        v, dv = self._values(u)
        s = self.scale[b]
        return s * v + self.offsets[b][index], (s * dv)[:, :, None] * self.A[b][None]

    def residuals(self, theta: Tensor, index: Tensor) -> Tensor:
        return torch.cat([obj.residuals(self.band_theta(b, theta, index)[0], index)
                          for b, obj in enumerate(self.objectives)], dim=1)

    def band_losses(self, theta: Tensor, index: Tensor) -> Tensor:
        """(B, n_bands): each band's sum of squared residuals."""
        return torch.stack([sum_of_squares(obj.residuals(self.band_theta(b, theta, index)[0], index))
                            for b, obj in enumerate(self.objectives)], dim=1)

    def residuals_and_jacobian(self, theta: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        rs, js = [], []
        for b, obj in enumerate(self.objectives):
            tb, d = self.band_theta(b, theta, index)
            r, j = obj.residuals_and_jacobian(tb, index)
            rs.append(r)
            js.append(torch.bmm(j, d.to(j.dtype)))
        return torch.cat(rs, dim=1), torch.cat(js, dim=1)

    def fisher(self, theta: Tensor, index: Tensor) -> Tensor:
        total = None
        for b, obj in enumerate(self.objectives):
            tb, d = self.band_theta(b, theta, index)
            d = d.double()
            f = d.transpose(1, 2) @ obj.fisher(tb, index) @ d
            total = f if total is None else total + f
        return total

    def model_images(self, theta: Tensor, index: Tensor) -> list[Tensor]:
        return [obj.model_images(self.band_theta(b, theta, index)[0], index) for b, obj in enumerate(self.objectives)]


# ------------------------------------------------------------------ the fit
@dataclass
class MultiBandResult:
    """A joint batch fit: the rows (values, errors, chi2 of all bands) and each band's chi2 and dof."""

    result: BatchResult
    band_loss: np.ndarray  # (B, n_bands)
    band_dof: np.ndarray  # (B, n_bands): the band's usable pixels (free parameters are joint)


def make_multiband_objective(jm: JointModel, batches: list[Batch], fixed: dict, settings) -> MultiBandObjective:
    """Each band's objective (its renderer, pixels, band-unit fixed values) joined into one of the joint theta."""
    dt, dev = settings.torch_dtype, settings.torch_device
    objectives = []
    for b, batch in enumerate(batches):
        bm, mapping = jm.band_models[b], jm.band_params[b]
        start = {mapping[prm]: jm._scale(prm, b) * fixed[(b, prm)] for prm in jm.ref.fixed}
        objectives.append(make_objective(bm, batch, start, settings))
    # fixed positions take the band's offset too (the objective holds band-unit values)
    fixed_offsets = jm.offsets(jm.ref.fixed, [bt.shapes for bt in batches])
    for b, obj in enumerate(objectives):
        for j, prm in enumerate(jm.ref.fixed):
            key = jm.band_params[b][prm]
            obj.fixed[key] = obj.fixed[key] + torch.as_tensor(fixed_offsets[b, :, j], dtype=dt, device=dev).reshape(-1, 1, 1)
    offsets = torch.as_tensor(jm.offsets(jm.ref.free, [bt.shapes for bt in batches]), dtype=dt, device=dev)
    return MultiBandObjective(jm, objectives, offsets)


def bootstrap_multiband(jm: JointModel, batches: list[Batch], theta_best: np.ndarray, best: np.ndarray,
                        n_resample: int, settings, lm_settings, generator: torch.Generator,
                        rows_per_pass: int) -> np.ndarray:
    """Bootstrap standard deviations (B, C) of the reported columns: every band's pixels resampled.

    As :func:`~galmoss.fitting.uncertainty.bootstrap_batch`, band by band: each
    band's usable pixels of a galaxy are drawn with replacement (a pixel drawn k
    times weighs k), independently per band and replica, and all replicas are
    refitted jointly from the best fit.
    """
    import dataclasses

    from .objective import BatchObjective
    from .uncertainty import resample_weights

    dt, dev = settings.torch_dtype, settings.torch_device
    fixed = jm.fixed_values(batches[0].positions)
    base = make_multiband_objective(jm, batches, fixed, settings)
    lm_settings = dataclasses.replace(lm_settings, initial_damping=min(lm_settings.initial_damping, 1e-3),
                                      final_normal_matrix=False)
    counts = [resample_weights(obj.weight, n_resample, generator) for obj in base.objectives]
    n = len(batches[0])
    galaxy = torch.arange(n, device=dev).repeat_interleave(n_resample)
    theta = torch.as_tensor(theta_best, dtype=dt, device=dev)
    fixed_t = {k: torch.as_tensor(v, dtype=dt, device=dev).reshape(-1, 1, 1) for k, v in fixed.items()}
    names = [c.name for c in jm.columns]
    reported = []
    for start in range(0, galaxy.numel(), rows_per_pass):
        g = galaxy[start : start + rows_per_pass]
        replicas = [
            BatchObjective(model=obj.model, renderer=obj.renderer, likelihood=obj.likelihood, data=obj.data,
                           sigma=obj.sigma, weight=counts[b][start : start + rows_per_pass],
                           fixed={k: v[g] for k, v in obj.fixed.items()}, galaxy=g,
                           jacobian_chunk=obj.jacobian_chunk)
            for b, obj in enumerate(base.objectives)
        ]
        joint = MultiBandObjective(jm, replicas, base.offsets[:, g])
        result = levenberg_marquardt(joint.residuals, joint.residuals_and_jacobian, theta[g], lm_settings)
        with torch.no_grad():
            rep = jm.report(result.theta, {k: v[g] for k, v in fixed_t.items()})
        ok = torch.isfinite(result.loss)
        reported.append(torch.stack([torch.where(ok, rep[name], torch.nan) for name in names], dim=1).double().cpu())
    values = torch.cat(reported).reshape(n, n_resample, len(names)).numpy()
    deviation = values - best[:, None, :]
    for j, col in enumerate(jm.columns):
        if col.spec.role is Role.ANGLE:  # position angles live on a half circle
            deviation[..., j] = (deviation[..., j] + 90.0) % 180.0 - 90.0
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a galaxy whose replicas all failed: NaN
        return np.nanstd(deviation, axis=1, ddof=1)


def fit_multiband_batch(jm: JointModel, batches: list[Batch], settings) -> MultiBandResult:
    """Fit every galaxy of a multi-band batch (one :class:`Batch` per band, same galaxies, same order).

    A pure function of its arguments, like :func:`~galmoss.fitting.batch.fit_batch`.
    Restarts are not run for joint fits (the two-component policies are single-band).
    """
    dev, dt = settings.torch_device, settings.torch_dtype
    ref = batches[0]
    n, nb = len(ref), len(batches)
    positions = ref.positions
    estimates = [batch_estimates(b) for b in batches] if jm.auto_parameters else None
    theta0 = jm.start_theta(positions, estimates, dt, dev)
    fixed = jm.fixed_values(positions)
    objective = make_multiband_objective(jm, batches, fixed, settings)
    objectives = objective.objectives
    everyone = torch.arange(n, device=dev)
    flags = np.bitwise_or.reduce(np.stack([b.flags for b in batches]), axis=0).astype(np.int64)
    messages = [list(m) for m in ref.messages]
    for b in range(1, nb):
        for i, m in enumerate(batches[b].messages):
            messages[i].extend(f"{jm.bands.names[b]}: {x}" for x in m)
    if jm.n_free:
        if settings.method == "lm":
            result = levenberg_marquardt(objective.residuals, objective.residuals_and_jacobian, theta0, settings.lm)
        else:
            from .adam import adam

            result = adam(objective.residuals, theta0, settings.adam, None)
    else:
        from .solve import evaluate

        result = evaluate(objective, theta0, everyone)
    fixed_t = {k: torch.as_tensor(v, dtype=dt, device=dev).reshape(-1, 1, 1) for k, v in fixed.items()}
    with torch.no_grad():
        reported = {k: v.double().cpu().numpy() for k, v in jm.report(result.theta, fixed_t).items()}
        band_loss = objective.band_losses(result.theta, everyone).double().cpu().numpy()
    loss = result.loss.double().cpu().numpy()
    finite = np.isfinite(loss)
    status = result.status.cpu().numpy().astype(np.int64)
    converged = result.converged.cpu().numpy()
    band_used = np.stack([o.weight.flatten(1).gt(0).sum(1).cpu().numpy() for o in objectives], axis=1)
    dof = (band_used.sum(1) - jm.n_free).astype(np.int64)
    theta = result.theta.double().cpu().numpy()
    theta[~finite] = np.nan
    for col in reported.values():
        col[~finite] = np.nan
    band_loss[~finite] = np.nan
    for i in range(n):
        if not finite[i]:
            flags[i] |= int(Flag.non_finite)
            messages[i].append("the model or chi2 became non-finite")
        elif status[i] == int(Status.MAX_ITERATIONS):
            flags[i] |= int(Flag.no_convergence)
        if dof[i] <= 0:
            flags[i] |= int(Flag.no_dof)
    if jm.n_free:
        # judged in the fitting space of each band's coordinates, as in a single-band fit
        with torch.no_grad():
            near = torch.stack([jm.ref.near_bound(jm.band_coordinates(result.theta, b)) for b in range(nb)])
        near = near.any(0).any(1).cpu().numpy() & finite
        flags[near] |= int(Flag.near_bound)
    errors = covariance = None
    if settings.covariance:
        from .uncertainty import covariance_errors

        if not jm.n_free:
            fisher = np.zeros((n, 0, 0))
        elif result.normal_matrix is not None and settings.likelihood == "chi2":
            fisher = result.normal_matrix.double().cpu().numpy()
        else:
            fisher = objective.fisher(result.theta, everyone).detach().double().cpu().numpy()
        errors, no_cov, covariance = covariance_errors(jm, theta, fisher, dt, full=True, positions=positions)
        for i in np.flatnonzero(no_cov & finite):
            flags[i] |= int(Flag.no_covariance)
            messages[i].append("singular Fisher matrix: errors that depend on an unconstrained parameter are NaN")
    out = BatchResult(
        positions=positions.copy(), names=list(ref.names), values=reported, errors=errors, covariance=covariance,
        theta=theta, loss=np.where(finite, loss, np.nan), prior_loss=np.where(finite, 0.0, np.nan),
        dof=np.where(finite, dof, 0),
        n_iter=result.n_iter.cpu().numpy().astype(np.int64), status=status, converged=converged & finite,
        flags=flags, messages=["; ".join(m) for m in messages],
    )
    return MultiBandResult(out, band_loss, band_used.astype(np.int64))
