"""``gm.Fitting``: fit every galaxy of a dataset, in batches, and report.

The seed's API::

    fitting = gm.Fitting(dataset=dataset, batch_size=64, iteration=1000)
    fitting.fit()
    fitting.uncertainty(method="covar_mat")     # or "bootstrap"
    fitting.results                             # astropy Table, one row per galaxy

Galaxies stream from the dataset (files read in a background thread while the
previous batch is fitted), are grouped by cutout shape into batches, and each
batch is fitted as one tensor program. Results are kept per galaxy in input
order; a galaxy that cannot be fitted gets NaN values, a flag and a message, and
never stops the others.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from astropy.table import Table

from .._compat import tune_cpu_allocator
from ..data import Dataset, GalaxyData
from ..flags import Flag
from ..model import Model
from ..params import Role
from ..render import Renderer
from ..settings import RenderSettings
from .adam import AdamSettings, adam
from .lm import STATUS_TEXT, LMSettings, levenberg_marquardt
from .likelihoods import get_likelihood
from .objective import BatchObjective

log = logging.getLogger("galmoss")

Tensor = torch.Tensor


def default_device() -> torch.device:
    """CUDA when present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class _Batch:
    galaxies: list[GalaxyData]
    objective: BatchObjective
    positions: np.ndarray


class Fitting:
    """Fit the profiles of a dataset to each of its galaxies.

    Parameters
    ----------
    dataset
        A :class:`~galmoss.Dataset` with profiles attached (``define_profiles``).
    batch_size
        Galaxies fitted together. Larger batches use a GPU better; on a CPU 32-128.
    iteration
        Iteration limit per galaxy (Levenberg-Marquardt typically converges in
        10-30; Adam needs hundreds).
    method
        ``"LM"`` (Levenberg-Marquardt, default) or ``"adam"``.
    likelihood
        ``"chi2"`` (default), ``"poisson"`` (Cash, images in counts) or
        ``"student_t"`` (robust); see :mod:`galmoss.fitting.likelihoods`.
    device, dtype
        Where and in what precision to compute (default: CUDA if present, else CPU;
        float32).
    render_settings
        Accuracy settings of the renderer.
    lm_settings, adam_settings
        Tolerances of the optimisers (``iteration`` overrides their limit).
    jacobian_chunk
        Galaxies per forward-mode Jacobian pass (memory bound; default 32 on the
        CPU, 512 on a GPU).
    progress
        Show a progress bar (None: when writing to a terminal).
    restarts
        Fit again, from starts estimated on the image, every galaxy whose first fit
        did not converge, ended at a bound, or whose size ran away; the fit with
        the lower chi2 is kept.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int = 64,
        iteration: int = 200,
        method: str = "LM",
        likelihood: str = "chi2",
        device=None,
        dtype: torch.dtype | None = None,
        *,
        render_settings: RenderSettings = RenderSettings(),
        lm_settings: LMSettings | None = None,
        adam_settings: AdamSettings | None = None,
        jacobian_chunk: int | None = None,
        progress: bool | None = None,
        restarts: bool = True,
    ) -> None:
        if not isinstance(dataset, Dataset):
            raise TypeError(f"Fitting: dataset must be a gm.Dataset, got {type(dataset).__name__}")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"Fitting: batch_size must be a positive integer, got {batch_size!r}")
        if not isinstance(iteration, (int, np.integer)) or iteration < 1:
            raise ValueError(f"Fitting: iteration must be a positive integer, got {iteration!r}")
        if str(method).lower() not in ("lm", "adam"):
            raise ValueError(f"Fitting: method={method!r}; choose 'LM' (Levenberg-Marquardt) or 'adam'")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.iteration = int(iteration)
        self.method = str(method).lower()
        self.likelihood = get_likelihood(likelihood)
        self.device = torch.device(device) if device is not None else default_device()
        self.dtype = dtype or torch.float32
        self.render_settings = render_settings
        base_lm = lm_settings or LMSettings()
        self.lm_settings = LMSettings(**{**base_lm.__dict__, "max_iterations": self.iteration})
        base_adam = adam_settings or AdamSettings()
        self.adam_settings = AdamSettings(**{**base_adam.__dict__, "max_iterations": self.iteration})
        self.jacobian_chunk = jacobian_chunk or (32 if self.device.type == "cpu" else 512)
        self.progress = progress
        self.restarts = restarts
        self.model: Model | None = None
        self._results: Table | None = None

    # ----------------------------------------------------------------- public
    @property
    def results(self) -> Table:
        """One row per galaxy, in dataset order (see docs/design.md)."""
        if self._results is None:
            raise RuntimeError("Fitting.results: call fit() first")
        return self._results

    def fit(self) -> Table:
        """Fit every galaxy; return (and keep in ``results``) the results table.

        Calling it again starts again from the parameters' start values.
        """
        if not self.dataset.profiles:
            raise ValueError("Fitting.fit: the dataset has no profiles; call dataset.define_profiles(name=profile)")
        self.model = Model(self.dataset.profiles, auto_starts=True)
        self.model.check_galaxies(len(self.dataset))
        if self.device.type == "cpu":
            tune_cpu_allocator()
        n, p = len(self.dataset), self.model.n_free
        self._theta = np.full((n, p), np.nan)
        self._fisher = np.full((n, p, p), np.nan)
        self._chi2 = np.full(n, np.nan)
        self._dof = np.zeros(n, dtype=np.int64)
        self._n_iter = np.zeros(n, dtype=np.int64)
        self._converged = np.zeros(n, dtype=bool)
        self._flags = np.zeros(n, dtype=np.int64)
        self._messages = [""] * n
        self._values = {c.name: np.full(n, np.nan) for c in self.model.columns}
        self._errors: dict[str, np.ndarray] | None = None
        for batch in self._batches():
            self._fit_batch_safely(batch)
        self._results = self._table()
        self._write_results()
        return self._results

    # --------------------------------------------------------------- batching
    def _galaxies(self) -> Iterator[GalaxyData]:
        """Galaxies in dataset order, read by a background thread a batch ahead."""
        ahead = 2 * self.batch_size
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="galmoss-read") as pool:
            pending: deque = deque()
            n = len(self.dataset)
            nxt = 0
            while nxt < n or pending:
                while nxt < n and len(pending) < ahead:
                    pending.append(pool.submit(self.dataset.load, nxt))
                    nxt += 1
                yield pending.popleft().result()

    def _batches(self, record_failures: bool = True) -> Iterator[list[GalaxyData]]:
        """Usable galaxies grouped by cutout and PSF presence; failures recorded on the way."""
        groups: dict[tuple, list[GalaxyData]] = {}
        progress = _progress(len(self.dataset), self.progress)
        for gal in self._galaxies():
            progress.update(1)
            if not gal.usable:
                if record_failures:
                    self._fail(gal.position, gal.flags, gal.messages)
                continue
            key = (gal.shape, gal.psf is not None)
            group = groups.setdefault(key, [])
            group.append(gal)
            if len(group) == self.batch_size:
                yield groups.pop(key)
        for group in groups.values():
            yield group
        progress.close()

    def _fit_batch_safely(self, gals: list[GalaxyData]) -> None:
        """Fit a batch; if it raises, fit its galaxies one by one so only the culprit is lost."""
        try:
            self._fit_batch(gals)
        except Exception as exc:  # noqa: BLE001 - one galaxy must not stop a catalogue
            if len(gals) == 1:
                gal = gals[0]
                log.warning("galaxy %r: fit raised %s", gal.name, exc)
                self._values_reset(gal.position)
                self._fail(gal.position, gal.flags | Flag.fit_error,
                           gal.messages + [f"fit raised {type(exc).__name__}: {exc}"])
                return
            log.warning("a batch of %d galaxies raised %s; fitting them one by one", len(gals), exc)
            for gal in gals:
                self._fit_batch_safely([gal])

    def _values_reset(self, position: int) -> None:
        """Forget whatever a failed fit left for one galaxy."""
        self._theta[position] = np.nan
        self._fisher[position] = np.nan
        self._chi2[position] = np.nan
        self._dof[position] = 0
        self._n_iter[position] = 0
        self._converged[position] = False
        for col in self._values.values():
            col[position] = np.nan

    def _fail(self, position: int, flags: int, messages: list[str]) -> None:
        self._flags[position] |= int(flags)
        self._messages[position] = "; ".join(messages)

    # ----------------------------------------------------------- fit a batch
    def _objective(self, gals: list[GalaxyData], start: dict | None = None) -> BatchObjective:
        """The batch's objective; ``start`` (profile units) gives the fixed values if already at hand."""
        dt, dev = self.dtype, self.device
        stack = lambda xs: torch.as_tensor(np.stack(xs), dtype=dt, device=dev)  # noqa: E731
        psf = None
        if gals[0].psf is not None:
            psf = stack(_pad_psfs([g.psf for g in gals]))
        renderer = Renderer(gals[0].shape, psf, batch=len(gals), dtype=dt, device=dev, settings=self.render_settings)
        if start is None:
            start = self.model.start_values(np.array([g.position for g in gals]))
        return BatchObjective(
            model=self.model,
            renderer=renderer,
            likelihood=self.likelihood,
            data=stack([g.image for g in gals]),
            sigma=stack([g.sigma for g in gals]),
            weight=stack([g.weight for g in gals]),
            fixed=self.model.fixed_tensors(start, dt, dev),
            jacobian_chunk=self.jacobian_chunk,
        )

    def _estimates(self, gals: list[GalaxyData]) -> list[dict] | None:
        """Image estimates for the parameters the user left out (None if none was)."""
        if not self.model.auto_parameters:
            return None
        from .starts import moment_estimates

        return [moment_estimates(g.image, g.weight, g.sigma) for g in gals]

    def _check_starts(self, gals: list[GalaxyData], start: dict) -> np.ndarray:
        """Which galaxies have start values inside every profile's domain; the others are flagged."""
        keep = np.ones(len(gals), dtype=bool)
        for pname, profile in self.model.profiles.items():
            for slot, prm in profile.parameters().items():
                spec = profile.spec(slot)
                ok = spec.allows(start[prm])
                for i in np.flatnonzero(~ok & keep):
                    keep[i] = False
                    self._fail(
                        gals[i].position,
                        gals[i].flags | Flag.bad_start,
                        gals[i].messages
                        + [f"start value of {pname}.{slot} is {start[prm][i]:g}, outside {spec.domain_text()}"],
                    )
        return keep

    def _fit_batch(self, gals: list[GalaxyData]) -> None:
        estimates = self._estimates(gals)
        start = self.model.start_values(np.array([g.position for g in gals]), estimates)
        keep = self._check_starts(gals, start)
        if not keep.any():
            return
        gals = [g for g, k in zip(gals, keep) if k]
        start = {prm: v[keep] for prm, v in start.items()}
        if estimates is not None:
            estimates = [e for e, k in zip(estimates, keep) if k]
        objective = self._objective(gals, start)
        theta0 = self.model.theta_from_values(start, self.dtype, self.device)
        result = self._optimise(objective, theta0, torch.arange(len(gals), device=self.device))
        result = self._restart_strays(objective, gals, start, estimates, result)
        everyone = torch.arange(len(gals), device=self.device)
        with torch.no_grad():
            values = self.model.values(result.theta, objective.fixed)
            reported = self.model.report(values)
        if not self.model.n_free:
            fisher = None
        elif result.normal_matrix is not None and self.likelihood.name == "chi2":
            fisher = result.normal_matrix  # J^T W J at the solution, already at hand
        else:
            fisher = objective.fisher(result.theta, everyone)
        n_used = objective.weight.flatten(1).gt(0).sum(1).cpu().numpy()
        status = result.status.cpu().numpy()
        converged = result.converged.cpu().numpy()
        chi2 = result.chi2.cpu().numpy()
        near = self._near_bound(result.theta)
        for i, gal in enumerate(gals):
            pos = gal.position
            flags = gal.flags
            messages = list(gal.messages)
            if not converged[i]:
                flags |= Flag.non_finite if not np.isfinite(chi2[i]) else Flag.no_convergence
                messages.append(STATUS_TEXT[int(status[i])])
            if near[i]:
                flags |= Flag.near_bound
                messages.append("a parameter ended within 0.1% of its bound: " + ", ".join(near[i]))
            self._flags[pos] |= int(flags)
            self._messages[pos] = "; ".join(messages)
            if not np.isfinite(chi2[i]):
                continue
            self._theta[pos] = result.theta[i].double().cpu().numpy()
            if fisher is not None:
                self._fisher[pos] = fisher[i].cpu().numpy()
            self._chi2[pos] = chi2[i]
            self._dof[pos] = int(n_used[i]) - self.model.n_free
            if self._dof[pos] <= 0:
                self._flags[pos] |= int(Flag.no_dof)
            self._n_iter[pos] = int(result.n_iter[i])
            self._converged[pos] = bool(converged[i])
            for name, col in reported.items():
                self._values[name][pos] = float(col[i])
        if self.dataset.img_block_path is not None:
            self._write_blocks(objective, result.theta, gals)

    def _optimise(self, objective: BatchObjective, theta0: Tensor, rows: Tensor):
        """Run the chosen optimiser on the galaxies ``rows`` of a batch."""

        def residuals(theta, index):
            return objective.residuals(theta, rows[index])

        def residuals_and_jacobian(theta, index):
            return objective.residuals_and_jacobian(theta, rows[index])

        if self.method == "lm":
            return levenberg_marquardt(residuals, residuals_and_jacobian, theta0, self.lm_settings)
        return adam(residuals, theta0, self.adam_settings, _adam_scales(self.model, self.device, self.dtype))

    def _strays(self, theta: Tensor, result, shape) -> np.ndarray:
        """Galaxies whose fit went astray: not converged, at a bound, or a size run away."""
        stray = ~result.converged.cpu().numpy()
        stray |= np.array([bool(x) for x in self._near_bound(theta)])
        diagonal = math.hypot(*shape)
        for j, prm in enumerate(self.model.free):
            role = self.model.specs[prm].role
            value = self.model.transforms[prm].forward(theta[:, j].double()).cpu().numpy()
            if role is Role.LENGTH:
                stray |= ~(value < 4.0 * diagonal)
            elif role is Role.AXIS_RATIO:  # a needle: q < 0.01 either way round
                stray |= ~((value > 0.01) & (value < 100.0))
        return stray

    def _restart_strays(self, objective, gals, start, estimates, result):
        """Fit strays again from image-based starts; keep whichever fit has the lower chi2."""
        if not self.restarts or not self.model.n_free:
            return result
        stray = np.flatnonzero(self._strays(result.theta, result, gals[0].shape))
        if stray.size == 0:
            return result
        if estimates is None:
            from .starts import moment_estimates

            estimates = [moment_estimates(gals[i].image, gals[i].weight, gals[i].sigma) for i in range(len(gals))]
        sub_start = {prm: v[stray] for prm, v in start.items()}
        second = self.model.restart_values(sub_start, [estimates[i] for i in stray])
        theta0 = self.model.theta_from_values(second, self.dtype, self.device)
        rows = torch.as_tensor(stray, device=self.device)
        again = self._optimise(objective, theta0, rows)
        better = (again.chi2 < result.chi2[rows]) | (~torch.isfinite(result.chi2[rows]) & torch.isfinite(again.chi2))
        take = rows[better]
        if take.numel():
            result.theta[take] = again.theta[better]
            result.chi2[take] = again.chi2[better]
            result.status[take] = again.status[better]
            result.n_iter[take] = result.n_iter[take] + again.n_iter[better]
            if result.normal_matrix is not None and again.normal_matrix is not None:
                result.normal_matrix[take] = again.normal_matrix[better]
        log.info("restarted %d galaxies from image-based starts; %d improved", stray.size, int(take.numel()))
        return result

    def _near_bound(self, theta: Tensor) -> list[list[str]]:
        names = self.model.free_names()
        out: list[list[str]] = [[] for _ in range(theta.shape[0])]
        for j, prm in enumerate(self.model.free):
            t = self.model.transforms[prm]
            lo, hi = t.lower, t.upper
            if not (math.isfinite(lo) and math.isfinite(hi)):
                continue
            v = t.forward(theta[:, j].double()).cpu().numpy()
            close = (v - lo < 1e-3 * (hi - lo)) | (hi - v < 1e-3 * (hi - lo))
            for i in np.flatnonzero(close):
                out[i].append(names[j])
        return out

    # ---------------------------------------------------------------- results
    def _table(self) -> Table:
        table = Table()
        table["galaxy_index"] = np.array(self.dataset.names, dtype=str)
        for col in self.model.columns:
            table[col.name] = self._values[col.name]
            table[col.name].meta.update(_column_units(col.parameter))
            if self._errors is not None:
                table[f"{col.name}_err"] = self._errors[col.name]
        table["chi2"] = self._chi2
        table["dof"] = self._dof
        with np.errstate(divide="ignore", invalid="ignore"):
            table["reduced_chi2"] = np.where(self._dof > 0, self._chi2 / self._dof, np.nan)
        table["n_iter"] = self._n_iter
        table["converged"] = self._converged
        table["flag"] = self._flags
        table["message"] = np.array(self._messages, dtype=str) if self._messages else np.array([], dtype=str)
        table.meta["method"] = self.method
        table.meta["likeliho"] = self.likelihood.name
        return table

    def _write_results(self) -> None:
        if self.dataset.result_path is None:
            return
        from ..io.results import write_results

        write_results(self._results, self.dataset.result_path)

    def _write_blocks(self, objective: BatchObjective, theta: Tensor, gals: list[GalaxyData]) -> None:
        from ..io.results import galfit_header_cards, write_image_block

        everyone = torch.arange(len(gals), device=self.device)
        with torch.no_grad():
            total, parts = objective.model_images(theta, everyone, components=True)
        total = total.cpu().numpy()
        parts = {k: v.cpu().numpy() for k, v in parts.items()}
        comp_types = {name: type(p).__name__ for name, p in self.model.profiles.items()}
        for i, gal in enumerate(gals):
            pos = gal.position
            values = {(c.profile, c.slot): self._values[c.name][pos] for c in self.model.columns}
            errors = None
            if self._errors is not None:
                errors = {(c.profile, c.slot): self._errors[c.name][pos] for c in self.model.columns}
            cards = galfit_header_cards(comp_types, values, errors, self._extra_cards(pos))
            write_image_block(
                self.dataset.img_block_path / f"{gal.name}.fits",
                data=gal.image,
                model=total[i],
                components={k: v[i] for k, v in parts.items() if self.model.profiles[k].saving},
                header_cards=cards,
                mask=gal.weight > 0,
            )

    def _extra_cards(self, pos: int) -> dict:
        dof = int(self._dof[pos])
        return {
            "CHISQ": float(self._chi2[pos]),
            "NDOF": dof,
            "CHI2NU": float(self._chi2[pos] / dof) if dof > 0 else float("nan"),
            "NITER": int(self._n_iter[pos]),
            "FLAGS": int(self._flags[pos]),
        }

    # ------------------------------------------------------------ uncertainty
    def uncertainty(self, method: str = "covar_mat", n_resample: int = 100, iteration: int | None = None, seed: int = 0) -> Table:
        """Add ``<column>_err`` to the results.

        Parameters
        ----------
        method
            ``"covar_mat"``: sigma from the inverse Fisher matrix (J^T W J)^-1 at the
            best fit, J through the PSF convolution, mapped to the reported units
            by the delta method. ``"bootstrap"``: the standard deviation of refits
            of ``n_resample`` pixel resamplings of each galaxy (a pixel drawn k times
            weighs k), started from the best fit.
        n_resample
            Bootstrap resamplings per galaxy.
        iteration
            Iteration limit of each bootstrap refit (default: the fit's).
        seed
            Random seed of the resampling.
        """
        if self._results is None:
            raise RuntimeError("Fitting.uncertainty: call fit() first")
        if method == "covar_mat":
            from .uncertainty import covariance_errors

            self._errors, no_cov = covariance_errors(self.model, self._theta, self._fisher, self.dtype)
            self._flags[no_cov] |= int(Flag.no_covariance)
            for i in np.flatnonzero(no_cov):
                self._messages[i] = "; ".join(filter(None, [self._messages[i], "singular Fisher matrix: errors that depend on an unconstrained parameter are NaN"]))
        elif method == "bootstrap":
            from .uncertainty import bootstrap_errors

            self._errors = bootstrap_errors(self, n_resample=n_resample, iteration=iteration or self.iteration, seed=seed)
        else:
            raise ValueError(f"uncertainty(method={method!r}): choose 'covar_mat' or 'bootstrap'")
        self._results = self._table()
        self._write_results()
        if self.dataset.img_block_path is not None:
            self._update_block_headers()
        return self._results

    def _update_block_headers(self) -> None:
        from ..io.results import galfit_header_cards, update_image_block_header

        comp_types = {name: type(p).__name__ for name, p in self.model.profiles.items()}
        for pos, name in enumerate(self.dataset.names):
            path = self.dataset.img_block_path / f"{name}.fits"
            if not np.isfinite(self._chi2[pos]) or not path.exists():
                continue
            values = {(c.profile, c.slot): self._values[c.name][pos] for c in self.model.columns}
            errors = {(c.profile, c.slot): self._errors[c.name][pos] for c in self.model.columns}
            update_image_block_header(path, galfit_header_cards(comp_types, values, errors, self._extra_cards(pos)))


def _pad_psfs(psfs: list[np.ndarray]) -> list[np.ndarray]:
    """Pad PSFs to a common shape keeping each centre pixel (h//2, w//2) in place."""
    h = max(p.shape[0] for p in psfs)
    w = max(p.shape[1] for p in psfs)
    out = []
    for p in psfs:
        if p.shape == (h, w):
            out.append(p)
            continue
        top = h // 2 - p.shape[0] // 2
        left = w // 2 - p.shape[1] // 2
        out.append(np.pad(p, ((top, h - p.shape[0] - top), (left, w - p.shape[1] - left))))
    return out


def _column_units(prm) -> dict:
    meta = {}
    if prm.M0 is not None:
        meta["M0"] = prm.M0
    if prm.pix_scale is not None:
        meta["pix_scale"] = prm.pix_scale
    if prm.angle:
        meta["angle"] = True
    return meta


def _adam_scales(model: Model, device, dtype) -> Tensor:
    """Per-parameter learning-rate multipliers (the seed's ``step_length`` when given)."""
    scales = []
    for prm in model.free:
        scales.append(float(prm.step_length) / 0.02 if prm.step_length else 1.0)
    return torch.tensor(scales, device=device, dtype=dtype)


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool | None):
    if enabled is False:
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="galaxy", desc="galmoss fit", disable=None if enabled is None else not enabled, leave=False)
