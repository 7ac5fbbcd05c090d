"""The pure batch fit: ``fit_batch(model, batch, settings) -> BatchResult``.

A batch is a stack of galaxies of one cutout shape (tensors with a leading
galaxy dimension) plus their dataset positions, flags and messages. Fitting it
does no I/O and keeps no state: the same inputs give the same result on any
machine, which is what lets the pipeline run it in a background thread, in a
loop over a catalogue, or as a dask task (:mod:`galmoss.pipeline`).

:func:`fit_batch_safely` is the fault barrier: when a batch raises, it is split
in halves until the galaxy that raises is alone; that galaxy gets ``fit_error``
and NaN values, and every other galaxy's fit is kept.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import GalmossError, ProfileOutputError
from ..flags import Flag
from ..model import Model
from ..params import Role
from ..render import Renderer
from ..settings import RenderSettings
from .adam import AdamSettings, adam
from .likelihoods import get_likelihood
from .lm import LMSettings, levenberg_marquardt
from .objective import BatchObjective
from .status import Status, decode_status

log = logging.getLogger("galmoss")

Tensor = torch.Tensor

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class FitMemoryError(GalmossError, MemoryError):
    """A batch would need more memory than the device has (too many free values per galaxy)."""


def memory_per_galaxy(n_free: int, n_columns: int, shape: tuple[int, int], dtype: torch.dtype = torch.float32) -> int:
    """Bytes one galaxy of a batch needs while it is fitted with ``n_free`` free values (an upper estimate).

    Levenberg-Marquardt holds about six P x P float64 matrices a galaxy (J^T J,
    the damped system, its factor, the normal matrix of the trial, the inverse
    and the covariance); the delta method adds the C x P derivative of the
    reported values and the C x C covariance; the images (data, sigma, weight,
    model, residuals) are a few times H x W. The forward-mode tangents are
    bounded apart (``BatchObjective.tangent_memory``, shared by the batch).
    """
    p, c = int(n_free), int(n_columns)
    pixels = int(shape[0]) * int(shape[1])
    itemsize = torch.empty((), dtype=dtype).element_size()
    return 8 * (6 * p * p + 2 * c * p + c * c) + 16 * pixels * itemsize


def available_memory(device: torch.device) -> int:
    """Bytes the device can give: free GPU memory, or the machine's physical memory on the CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not a POSIX system
        return 2**63 - 1


def check_memory(model: Model, n_galaxies: int, shape: tuple[int, int], settings: "FitSettings") -> int:
    """Raise :class:`FitMemoryError` before fitting when a batch cannot fit in memory; return the bytes needed."""
    from .objective import BatchObjective

    per = memory_per_galaxy(model.n_free, len(model.columns), shape, settings.torch_dtype)
    need = n_galaxies * per + BatchObjective.tangent_memory
    have = available_memory(settings.torch_device)
    if need > have:
        raise FitMemoryError(
            f"fitting {n_galaxies} galaxies of {shape[0]}x{shape[1]} pixels with {model.n_free} free values each "
            f"needs about {need / 2**30:.3g} GiB ({per / 2**20:.4g} MiB per galaxy: six {model.n_free}x{model.n_free} "
            f"float64 matrices and the covariance of {len(model.columns)} columns), but {settings.device} has "
            f"{have / 2**30:.3g} GiB; use fewer free values (a coarser vector parameter), a smaller batch_size, "
            "or a device with more memory"
        )
    return need


@dataclass(frozen=True)
class FitSettings:
    """How a batch is fitted (a frozen value, picklable, so dask can ship it).

    Parameters
    ----------
    method
        ``"lm"`` (Levenberg-Marquardt) or ``"adam"``.
    likelihood
        ``"chi2"``, ``"poisson"`` or ``"student_t"``.
    lm, adam
        Optimiser settings (their ``max_iterations`` is the iteration limit).
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    dtype
        ``"float32"`` or ``"float64"``.
    render
        Renderer accuracy settings.
    jacobian_chunk
        Galaxies per forward-mode Jacobian pass.
    restarts
        Refit galaxies whose first fit went astray from image-based starts.
    covariance
        Compute covariance-matrix errors of the reported values with the fit
        (cheap: the Fisher matrix is at hand).
    model_images
        Return the model and component images (for image blocks).
    """

    method: str = "lm"
    likelihood: str = "chi2"
    lm: LMSettings = field(default_factory=LMSettings)
    adam: AdamSettings = field(default_factory=AdamSettings)
    device: str = "cpu"
    dtype: str = "float32"
    render: RenderSettings = field(default_factory=RenderSettings)
    jacobian_chunk: int = 32
    restarts: bool = True
    covariance: bool = True
    model_images: bool = False

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)


@dataclass
class Batch:
    """Galaxies of one (possibly padded) cutout shape, ready to fit.

    Attributes
    ----------
    positions
        (B,) dataset positions (rows of the results).
    names
        Their ``galaxy_index``.
    image, sigma, weight
        (B, H, W) float arrays; padded pixels have weight 0.
    psf
        (B, h, w) or None.
    shapes
        Each galaxy's own cutout shape (the padded area is cut off on output).
    flags
        (B,) int64 flags set while reading.
    messages
        One list of messages per galaxy.
    """

    positions: np.ndarray
    names: list[str]
    image: np.ndarray
    sigma: np.ndarray
    weight: np.ndarray
    psf: np.ndarray | None
    shapes: list[tuple[int, int]]
    flags: np.ndarray
    messages: list[list[str]]
    segments: np.ndarray | None = None
    n_masked: np.ndarray | None = None
    #: neighbours fitted with the target (``neighbours="fit"``): one list of dicts per galaxy, and their pixels
    neighbours: list[list[dict]] | None = None
    neighbour_pixels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.positions)

    def take(self, rows: np.ndarray) -> "Batch":
        """The sub-batch of ``rows``."""
        rows = np.asarray(rows, dtype=np.int64)
        return Batch(
            positions=self.positions[rows],
            names=[self.names[i] for i in rows],
            image=self.image[rows],
            sigma=self.sigma[rows],
            weight=self.weight[rows],
            psf=None if self.psf is None else self.psf[rows],
            shapes=[self.shapes[i] for i in rows],
            flags=self.flags[rows].copy(),
            messages=[list(self.messages[i]) for i in rows],
            segments=None if self.segments is None else self.segments[rows],
            n_masked=None if self.n_masked is None else self.n_masked[rows],
            neighbours=None if self.neighbours is None else [self.neighbours[i] for i in rows],
            neighbour_pixels=None if self.neighbour_pixels is None else self.neighbour_pixels[rows],
        )


@dataclass
class BatchResult:
    """What a batch fit gives, one row per galaxy (numpy only, picklable).

    Attributes
    ----------
    positions, names
        Which galaxies.
    values
        ``{column: (B,)}`` reported values in the user's units (NaN where not fitted).
    errors
        ``{column: (B,)}`` covariance-matrix errors, or None when not computed.
    covariance
        (B, C, C) covariance of the reported columns (model order), or None.
    theta
        (B, P) best fitting-space parameters (float64; NaN where not fitted).
    loss
        (B,) the minimised sum of squared likelihood residuals (chi2 for the chi2
        likelihood, a deviance otherwise).
    dof, n_iter, status, converged, flags
        Per galaxy.
    messages
        One string per galaxy.
    model_image, components
        (B, H, W) float32 images, each galaxy cut to its own shape on output; only
        with ``FitSettings.model_images``.
    """

    positions: np.ndarray
    names: list[str]
    values: dict[str, np.ndarray]
    errors: dict[str, np.ndarray] | None
    covariance: np.ndarray | None
    theta: np.ndarray
    loss: np.ndarray
    dof: np.ndarray
    n_iter: np.ndarray
    status: np.ndarray
    converged: np.ndarray
    flags: np.ndarray
    messages: list[str]
    model_image: list[np.ndarray] | None = None
    components: list[dict[str, np.ndarray]] | None = None

    def __len__(self) -> int:
        return len(self.positions)

    @classmethod
    def empty(cls, model: Model, positions, names, flags, messages, with_errors: bool) -> "BatchResult":
        """Rows of galaxies that were not fitted: NaN values, their flags and messages."""
        n = len(positions)
        cols = [c.name for c in model.columns]
        nan = lambda: np.full(n, np.nan)  # noqa: E731
        return cls(
            positions=np.asarray(positions, dtype=np.int64),
            names=list(names),
            values={c: nan() for c in cols},
            errors={c: nan() for c in cols} if with_errors else None,
            covariance=np.full((n, len(cols), len(cols)), np.nan) if with_errors else None,
            theta=np.full((n, model.n_free), np.nan),
            loss=nan(),
            dof=np.zeros(n, dtype=np.int64),
            n_iter=np.zeros(n, dtype=np.int64),
            status=np.full(n, int(Status.NOT_FITTED), dtype=np.int64),
            converged=np.zeros(n, dtype=bool),
            flags=np.asarray(flags, dtype=np.int64).copy(),
            messages=["; ".join(m) if isinstance(m, list) else str(m) for m in messages],
            model_image=None,
            components=None,
        )

    @classmethod
    def concatenate(cls, parts: list["BatchResult"]) -> "BatchResult":
        """One result of several (in the given order)."""
        parts = [p for p in parts if len(p)]
        first = parts[0]
        cat = np.concatenate

        def maybe(get):
            vals = [get(p) for p in parts]
            return None if any(v is None for v in vals) else vals

        errs = maybe(lambda p: p.errors)
        covs = maybe(lambda p: p.covariance)
        images = maybe(lambda p: p.model_image)
        comps = maybe(lambda p: p.components)
        return cls(
            positions=cat([p.positions for p in parts]),
            names=[n for p in parts for n in p.names],
            values={k: cat([p.values[k] for p in parts]) for k in first.values},
            errors=None if errs is None else {k: cat([e[k] for e in errs]) for k in first.values},
            covariance=None if covs is None else cat(covs),
            theta=cat([p.theta for p in parts]),
            loss=cat([p.loss for p in parts]),
            dof=cat([p.dof for p in parts]),
            n_iter=cat([p.n_iter for p in parts]),
            status=cat([p.status for p in parts]),
            converged=cat([p.converged for p in parts]),
            flags=cat([p.flags for p in parts]),
            messages=[m for p in parts for m in p.messages],
            model_image=None if images is None else [im for x in images for im in x],
            components=None if comps is None else [c for x in comps for c in x],
        )


# ------------------------------------------------------------------ the fit
def fit_batch_safely(model: Model, batch: Batch, settings: FitSettings) -> BatchResult:
    """:func:`fit_batch` behind a fault barrier: a galaxy whose fit raises is flagged, the rest kept.

    A batch that raises is split in halves (log2(B) extra fits to isolate one bad
    galaxy, not B). Configuration errors (:class:`ProfileOutputError`) are not
    caught: they would fail every galaxy the same way.
    """
    try:
        return fit_batch(model, batch, settings)
    except (ProfileOutputError, FitMemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - one galaxy must not stop a catalogue
        if len(batch) == 1:
            log.warning("galaxy %r: fit raised %s: %s", batch.names[0], type(exc).__name__, exc)
            msgs = [batch.messages[0] + [f"fit raised {type(exc).__name__}: {exc}"]]
            return BatchResult.empty(model, batch.positions, batch.names, batch.flags | int(Flag.fit_error), msgs,
                                     settings.covariance)
        log.warning("a batch of %d galaxies raised %s; splitting it to find the culprit", len(batch), exc)
        half = len(batch) // 2
        rows = np.arange(len(batch))
        return BatchResult.concatenate([
            fit_batch_safely(model, batch.take(rows[:half]), settings),
            fit_batch_safely(model, batch.take(rows[half:]), settings),
        ])


def fit_batch(model: Model, batch: Batch, settings: FitSettings) -> BatchResult:
    """Fit every galaxy of ``batch``; a pure function of its arguments.

    Parameters
    ----------
    model
        The profiles and their parameter layout (start values per dataset position).
    batch
        The galaxies' pixels, PSFs, positions and reading flags.
    settings
        Optimiser, likelihood, device, precision and what to compute.

    Returns
    -------
    BatchResult
        One row per galaxy of ``batch``, in its order.
    """
    if getattr(model, "neighbour_layout", None) is not None:
        return _fit_with_neighbours(model, batch, settings)
    dev, dt = settings.torch_device, settings.torch_dtype
    check_memory(model, len(batch), tuple(batch.image.shape[1:]), settings)
    estimates = _estimates(batch) if model.auto_parameters else None
    start = model.start_values(batch.positions, estimates)
    keep, flags, messages = _check_starts(model, batch, start)
    if not keep.all():
        skipped = np.flatnonzero(~keep)
        out = [BatchResult.empty(model, batch.positions[skipped], [batch.names[i] for i in skipped],
                                 flags[skipped], [messages[i] for i in skipped], settings.covariance)]
        if keep.any():
            rows = np.flatnonzero(keep)
            sub = batch.take(rows)
            sub.flags, sub.messages = flags[rows], [messages[i] for i in rows]
            out.append(fit_batch(model, sub, settings))
        result = BatchResult.concatenate(out)
        order = np.argsort(np.concatenate([skipped, np.flatnonzero(keep)]), kind="stable")
        return _reorder(result, order)

    objective = _objective(model, batch, start, settings)
    theta0 = model.theta_from_values(start, dt, dev)
    everyone = torch.arange(len(batch), device=dev)
    if model.n_free:
        result = _optimise(model, objective, theta0, everyone, settings)
    else:
        result = _evaluate(objective, theta0, everyone)
    if settings.restarts and model.n_free:
        result = _restart_strays(model, objective, batch, start, estimates, result, settings)
        result = _restart_components(model, objective, batch, start, estimates, result, settings)
    with torch.no_grad():
        values = model.values(result.theta, objective.fixed)
        reported = {k: v.double().cpu().numpy() for k, v in model.report(values).items()}
    loss = result.loss.double().cpu().numpy()
    finite = np.isfinite(loss)
    status = result.status.cpu().numpy().astype(np.int64)
    converged = result.converged.cpu().numpy()
    n_used = objective.weight.flatten(1).gt(0).sum(1).cpu().numpy()
    dof = (n_used - model.n_free).astype(np.int64)
    near = _near_bound(model, result.theta)

    flags = batch.flags.copy()
    messages = [list(m) for m in batch.messages]
    for i in range(len(batch)):
        if not converged[i]:
            flags[i] |= int(Flag.non_finite if not finite[i] else Flag.no_convergence)
            messages[i].append(decode_status(int(status[i])))
        if near[i]:
            flags[i] |= int(Flag.near_bound)
            messages[i].append("a parameter ended within 0.1% of its bound: " + ", ".join(near[i]))
        if finite[i] and dof[i] <= 0:
            flags[i] |= int(Flag.no_dof)
    if model.n_free:
        _quality(model, start, reported, loss, dof, finite, tuple(batch.image.shape[1:]), flags, messages,
                 settings.likelihood == "chi2")
    theta = result.theta.double().cpu().numpy()
    theta[~finite] = np.nan
    for col in reported.values():
        col[~finite] = np.nan
    loss = np.where(finite, loss, np.nan)

    errors = covariance = None
    if settings.covariance:
        errors, covariance, no_cov = _covariance(model, objective, result, theta, batch.positions, settings)
        for i in np.flatnonzero(no_cov & finite):
            flags[i] |= int(Flag.no_covariance)
            messages[i].append("singular Fisher matrix: errors that depend on an unconstrained parameter are NaN")

    out = BatchResult(
        positions=batch.positions.copy(),
        names=list(batch.names),
        values=reported,
        errors=errors,
        covariance=covariance,
        theta=theta,
        loss=loss,
        dof=np.where(finite, dof, 0),
        n_iter=result.n_iter.cpu().numpy().astype(np.int64),
        status=status,
        converged=converged & finite,
        flags=flags,
        messages=["; ".join(m) for m in messages],
    )
    if settings.model_images:
        with torch.no_grad():
            total, parts = objective.model_images(result.theta, everyone, components=True)
        total = total.float().cpu().numpy()
        parts = {k: v.float().cpu().numpy() for k, v in parts.items() if model.profiles[k].saving}
        out.model_image = [total[i, : h, : w] for i, (h, w) in enumerate(batch.shapes)]
        out.components = [{k: v[i, : h, : w] for k, v in parts.items()} for i, (h, w) in enumerate(batch.shapes)]
    return out


def check_model_output(model: Model, batch: Batch, settings: FitSettings) -> None:
    """Render the first galaxies of ``batch`` at their starts and check every component's image.

    Called once, on the first batch of a run: a user profile that returns the
    wrong shape, or that cannot be drawn for any of the first three galaxies,
    is a configuration error, not a catalogue of flagged galaxies. A failure
    for some galaxies only is left to the fault barrier (it flags them).

    Raises
    ------
    ProfileOutputError
        Naming the profile, the shape it returned and the shape needed.
    """
    if getattr(model, "neighbour_layout", None) is not None:
        from .neighbours import batch_model, signature

        sigs = [signature(x) for x in (batch.neighbours or [[]] * len(batch))]
        model, batch = batch_model(model, sigs[0]), batch.take(np.flatnonzero([s == sigs[0] for s in sigs]))
    tried = batch.take(np.arange(min(3, len(batch))))
    estimates = _estimates(tried) if model.auto_parameters else None
    start = model.start_values(tried.positions, estimates)
    objective = _objective(model, tried, start, settings)
    theta0 = model.theta_from_values(start, settings.torch_dtype, settings.torch_device)
    want = tuple(batch.image.shape[1:])
    failure = None
    with torch.no_grad():
        values = model.values(theta0, objective.fixed)
        try:  # together first: a profile that drops the galaxy axis only shows with B > 1
            objective.renderer(model.profiles, values, components=True)
        except ProfileOutputError:
            raise
        except Exception:  # noqa: BLE001 - which galaxy cannot be drawn is judged one by one below
            pass
        for i in range(len(tried)):
            index = torch.tensor([i], dtype=torch.long, device=settings.torch_device)
            one = {k: v[index] for k, v in values.items()}
            try:
                _, parts = objective.renderer(model.profiles, one, index=index, components=True)
            except ProfileOutputError:
                raise
            except Exception as exc:  # noqa: BLE001 - judged below: systematic or this galaxy's
                failure = failure or exc
                continue
            for name, image in parts.items():
                if tuple(image.shape) != (1,) + want:
                    raise ProfileOutputError(
                        f"profile {name!r} ({type(model.profiles[name]).__name__}) returned an image of shape "
                        f"{tuple(image.shape)[1:]} for cutouts of shape {want}; a profile must return one "
                        "(H, W) image per galaxy of the batch"
                    )
            return
        # every galaxy tried failed: find the profile that cannot be drawn
        index = torch.tensor([0], dtype=torch.long, device=settings.torch_device)
        one = {k: v[index] for k, v in values.items()}
        for name, profile in model.profiles.items():
            try:
                objective.renderer({name: profile}, one, index=index, components=True)
            except Exception as exc:  # noqa: BLE001 - reported as the configuration error it is
                raise ProfileOutputError(
                    f"profile {name!r} ({type(profile).__name__}) cannot be drawn for any of the first {len(tried)} "
                    f"galaxies ({type(exc).__name__}: {exc}); a profile must return one (H, W) image of shape "
                    f"{want} per galaxy"
                ) from exc
    if failure is not None:
        raise ProfileOutputError(
            f"the model cannot be drawn for any of the first {len(tried)} galaxies "
            f"({type(failure).__name__}: {failure}); check the profiles"
        ) from failure


# --------------------------------------------------------------- internals
def _reorder(result: BatchResult, order: np.ndarray) -> BatchResult:
    take = lambda a: a[order]  # noqa: E731
    return BatchResult(
        positions=take(result.positions),
        names=[result.names[i] for i in order],
        values={k: take(v) for k, v in result.values.items()},
        errors=None if result.errors is None else {k: take(v) for k, v in result.errors.items()},
        covariance=None if result.covariance is None else take(result.covariance),
        theta=take(result.theta),
        loss=take(result.loss),
        dof=take(result.dof),
        n_iter=take(result.n_iter),
        status=take(result.status),
        converged=take(result.converged),
        flags=take(result.flags),
        messages=[result.messages[i] for i in order],
        model_image=None if result.model_image is None else [result.model_image[i] for i in order],
        components=None if result.components is None else [result.components[i] for i in order],
    )


def _fit_with_neighbours(model: Model, batch: Batch, settings: FitSettings) -> BatchResult:
    """Fit a batch with fitted neighbours: each neighbour signature with its own sub-model (fitting.neighbours)."""
    from .neighbours import batch_model, expand, signature

    sigs = [signature(x) for x in (batch.neighbours or [[]] * len(batch))]
    parts, order = [], []
    for sig in sorted(set(sigs)):
        rows = np.flatnonzero([s == sig for s in sigs])
        sub = batch_model(model, sig)
        parts.append(expand(fit_batch(sub, batch.take(rows), settings), sub, model))
        order.append(rows)
    result = BatchResult.concatenate(parts)
    if len(parts) == 1:
        return result
    return _reorder(result, np.argsort(np.concatenate(order), kind="stable"))


def _estimates(batch: Batch) -> list[dict]:
    """Image-based starts of every galaxy of the batch, in one vectorised pass (padding has weight 0).

    Fitted neighbours' pixels are left out of the target's estimates (its flux
    and size would take their light); the neighbours' own starts come from
    their segments (``"<component>.<kind>"`` keys, :mod:`galmoss.fitting.neighbours`).
    """
    from .starts import estimate_starts

    weight = batch.weight if batch.neighbour_pixels is None else np.where(batch.neighbour_pixels, 0.0, batch.weight)
    est = estimate_starts(batch.image, weight, batch.sigma, segments=batch.segments)
    out = [{k: float(v[i]) for k, v in est.items()} for i in range(len(batch))]
    if batch.neighbours is not None:
        from .neighbours import neighbour_estimates

        for row, rows in zip(out, batch.neighbours):
            row.update(neighbour_estimates(rows))
    return out


def _check_starts(model: Model, batch: Batch, start: dict):
    """Which galaxies start inside every profile's domain; the others get ``bad_start``."""
    keep = np.ones(len(batch), dtype=bool)
    flags = batch.flags.copy()
    messages = [list(m) for m in batch.messages]
    for pname, profile in model.profiles.items():
        for slot, prm in profile.parameters().items():
            spec = profile.spec(slot)
            ok = spec.allows(start[prm])
            vector = ok.ndim == 2
            if vector:  # a vector parameter: every element must be inside
                ok = ok.all(axis=1)
            for i in np.flatnonzero(~ok & keep):
                keep[i] = False
                flags[i] |= int(Flag.bad_start)
                shown = f"{start[prm][i]:g}" if not vector else (
                    f"outside at element {int(np.flatnonzero(~spec.allows(start[prm][i]))[0]) + 1}")
                messages[i].append(f"start value of {pname}.{slot} is {shown}, outside {spec.domain_text()}")
    return keep, flags, messages


def _objective(model: Model, batch: Batch, start: dict, settings: FitSettings) -> BatchObjective:
    dt, dev = settings.torch_dtype, settings.torch_device
    as_tensor = lambda x: torch.as_tensor(np.ascontiguousarray(x), dtype=dt, device=dev)  # noqa: E731
    psf = None if batch.psf is None else as_tensor(batch.psf)
    renderer = Renderer(tuple(batch.image.shape[1:]), psf, batch=len(batch), dtype=dt, device=dev,
                        settings=settings.render)
    return BatchObjective(
        model=model,
        renderer=renderer,
        likelihood=get_likelihood(settings.likelihood),
        data=as_tensor(batch.image),
        sigma=as_tensor(batch.sigma),
        weight=as_tensor(batch.weight),
        fixed=model.fixed_tensors(start, dt, dev),
        jacobian_chunk=settings.jacobian_chunk,
    )


def _optimise(model: Model, objective: BatchObjective, theta0: Tensor, rows: Tensor, settings: FitSettings):
    def residuals(theta, index):
        return objective.residuals(theta, rows[index])

    def residuals_and_jacobian(theta, index):
        return objective.residuals_and_jacobian(theta, rows[index])

    if settings.method == "lm":
        if model.has_vectors:  # large P: J^T J in chunks, never J (b, M, P) whole
            def normal_equations(theta, index):
                return objective.normal_equations(theta, rows[index])

            return levenberg_marquardt(residuals, None, theta0, settings.lm, normal_equations=normal_equations)
        return levenberg_marquardt(residuals, residuals_and_jacobian, theta0, settings.lm)
    scales = torch.tensor([float(p.step_length) / 0.02 if p.step_length else 1.0
                           for p in model.free for _ in range(p.size)],
                          device=theta0.device, dtype=theta0.dtype)
    return adam(residuals, theta0, settings.adam, scales)


def _quality(model: Model, start: dict, reported: dict, loss, dof, finite, shape, flags, messages, chi2: bool) -> None:
    """Flags that never hide a bad fit (:func:`galmoss.auto.quality.quality_flags`), ORed into ``flags``."""
    from ..auto.quality import quality_flags

    with torch.no_grad():
        start_tensors = {prm: torch.as_tensor(np.asarray(v, dtype=np.float64)) for prm, v in start.items()}
        start_tensors = {prm: t if t.ndim == 2 else t.reshape(-1, 1, 1) for prm, t in start_tensors.items()}
        start_rep = {k: v.double().numpy() for k, v in model.report(start_tensors).items()}
    free = {c.name for c in model.columns if c.parameter.fit}
    # flags judge the target: a fitted neighbour is no component of it (negligible share, merged, ...)
    neighbours = set(model.neighbour_components)
    if neighbours:
        own = {c.name for c in model.columns if c.profile not in neighbours}
        reported = {k: v for k, v in reported.items() if k in own}
        start_rep = {k: v for k, v in start_rep.items() if k in own}
    with np.errstate(divide="ignore", invalid="ignore"):
        reduced = np.where(finite & (dof > 0) & chi2, loss / np.maximum(dof, 1), np.nan)
    scales = {c.name: c.parameter.pix_scale for c in model.columns if c.parameter.pix_scale is not None}
    q_flags, q_messages = quality_flags(
        reduced, dof, reported, {k: v for k, v in start_rep.items() if k in free}, shape,
        pixel_scale=scales or None, components={c.name: c.profile for c in model.columns if c.name in reported},
    )
    for i in np.flatnonzero(finite & (q_flags != 0)):
        flags[i] |= int(q_flags[i])
        messages[i].append(q_messages[i])


def _evaluate(objective: BatchObjective, theta0: Tensor, rows: Tensor):
    """A model with no free parameter is evaluated, not fitted (GALFIT's P) 1): its loss at the given values."""
    from .lm import OptimizeResult, sum_of_squares

    with torch.no_grad():
        loss = sum_of_squares(objective.residuals(theta0, rows))
    status = torch.where(torch.isfinite(loss), int(Status.EVALUATED), int(Status.NON_FINITE))
    return OptimizeResult(theta0, loss, torch.zeros_like(rows), status.to(rows.device), None)


def _near_bound(model: Model, theta: Tensor) -> list[list[str]]:
    """Free parameters within 0.1 % of a bound, judged in the space that is fitted (:meth:`Model.near_bound`)."""
    names = model.free_names()
    close = model.near_bound(theta).cpu().numpy()
    return [[names[j] for j in np.flatnonzero(row)] for row in close]


def _strays(model: Model, result, shape) -> np.ndarray:
    """Galaxies whose fit went astray: not converged, at a bound, or a size run away."""
    theta = result.theta
    stray = ~result.converged.cpu().numpy()
    stray |= np.array([bool(x) for x in _near_bound(model, theta)])
    diagonal = math.hypot(*shape)
    for prm in model.free:
        role = model.specs[prm].role
        if prm.is_vector or role not in (Role.LENGTH, Role.AXIS_RATIO):
            continue
        value = model.transforms[prm].forward(theta[:, model.slices[prm]][:, 0].double()).cpu().numpy()
        if role is Role.LENGTH:
            stray |= ~(value < 4.0 * diagonal)
        elif role is Role.AXIS_RATIO:  # a needle: q < 0.01 either way round
            stray |= ~((value > 0.01) & (value < 100.0))
    return stray


def _restart_strays(model, objective, batch, start, estimates, result, settings):
    """Fit strays again from image-based starts; keep whichever fit has the lower loss."""
    stray = np.flatnonzero(_strays(model, result, batch.image.shape[1:]))
    if stray.size == 0:
        return result
    if estimates is None:
        estimates = _estimates(batch)
    sub_start = {prm: v[stray] for prm, v in start.items()}
    second = model.restart_values(sub_start, [estimates[i] for i in stray])
    theta0 = model.theta_from_values(second, settings.torch_dtype, settings.torch_device)
    rows = torch.as_tensor(stray, device=settings.torch_device)
    again = _optimise(model, objective, theta0, rows, settings)
    taken = _keep_better(result, rows, again, torch.arange(rows.numel(), device=rows.device))
    log.info("restarted %d galaxies from image-based starts; %d improved", stray.size, taken)
    return result


#: slots that describe a component's shape and brightness, swapped between two components
_SWAP_SLOTS = ("eff_r", "axis_r", "pa", "ser_n", "mag", "scale_l", "fwhm")


def _component_pair(model: Model):
    """The two luminous extended components of the target (compact one first), or None.

    Only models with exactly two such components (a bulge + disk, two Sersics)
    are judged: their wrong minima are known (docs/validation.md, issue 8).
    """
    from .starts import assign_roles

    neighbours = set(model.neighbour_components)
    extended = [name for name, p in model.profiles.items() if name not in neighbours
                and any(p.spec(s).role is Role.LENGTH for s in p.parameter_specs)
                and any(p.spec(s).role is Role.MAGNITUDE for s in p.parameter_specs)]
    if len(extended) != 2:
        return None

    def given_n(p):
        prm = getattr(p, "ser_n", None) if "ser_n" in p.parameter_specs else None
        if prm is None or not getattr(prm, "has_start", False):
            return None
        return float(np.median(np.ravel(prm.initial_values())))

    roles = assign_roles([(n, type(model.profiles[n]).__name__, given_n(model.profiles[n])) for n in extended])
    order = {"bulge": 0, "point": 0, "bar": 1, "disk": 2, "halo": 3}
    return tuple(sorted(extended, key=lambda n: order.get(roles.get(n), 2)))


def _suspicious_pairs(model: Model, pair, values: dict, loss: np.ndarray, dof: np.ndarray, converged: np.ndarray):
    """Two-component fits that may sit in a wrong minimum (item 8 of issue 8), as a bool array (B,).

    Suspicious: not converged; chi2 above dof + 3 sqrt(2 dof); the compact
    component ended larger than the extended one (they traded places); one
    component collapsed (r_e below 0.5 px, or under 2 % of the flux); an axis
    ratio at 1 or below 0.05; a Sersic index beyond 0.3-7.
    """
    a, b = pair
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        flux = {c: 10.0 ** (-0.4 * values[f"{c}_mag"]) for c in pair if f"{c}_mag" in values}
        total = sum(flux.values()) if flux else None
        out = ~converged | ~np.isfinite(loss)
        out |= np.isfinite(loss) & (dof > 0) & (loss > dof + 3.0 * np.sqrt(2.0 * np.maximum(dof, 1)))
        length = next((s for s in ("eff_r", "scale_l", "fwhm") if f"{a}_{s}" in values and f"{b}_{s}" in values), None)
        if length is not None:
            out |= values[f"{a}_{length}"] > values[f"{b}_{length}"]
        for c in pair:
            for s in ("eff_r", "scale_l", "fwhm"):
                if f"{c}_{s}" in values:
                    out |= values[f"{c}_{s}"] < 0.5
            if total is not None and c in flux:
                out |= flux[c] / total < 0.02
            if f"{c}_axis_r" in values:
                q = values[f"{c}_axis_r"]
                out |= (q > 0.999) | (q < 0.05)
            if f"{c}_ser_n" in values:
                n = values[f"{c}_ser_n"]
                out |= (n < 0.3) | (n > 7.0)
    return out


def _restart_components(model, objective, batch, start, estimates, result, settings):
    """Two-component fits that may have ended in a wrong minimum: try the alternatives, keep the lowest chi2.

    For the suspicious fits (:func:`_suspicious_pairs`), three restarts are fitted
    together as one batch: the two components' shape parameters swapped (they
    traded places); both restarted apart from the image (the rules of
    :func:`galmoss.fitting.starts.component_rules`); and each component in
    turn reset from those rules while the other keeps its fitted values (one
    component collapsed or stuck). Parameters of neither component (the sky,
    fitted neighbours) keep their fitted values. The fit with the lowest loss
    is kept.
    """
    pair = _component_pair(model)
    if pair is None or not len(batch):
        return result
    with torch.no_grad():
        values = model.values(result.theta, objective.fixed)
        reported = {k: v.double().cpu().numpy() for k, v in model.report(values).items()}
    loss = result.loss.double().cpu().numpy()
    n_used = objective.weight.flatten(1).gt(0).sum(1).cpu().numpy()
    dof = n_used - model.n_free
    rows = np.flatnonzero(_suspicious_pairs(model, pair, reported, loss, dof, result.converged.cpu().numpy()))
    if rows.size == 0:
        return result
    if estimates is None:
        estimates = _estimates(batch)
    # one value (B,) per galaxy for a scalar, a row (B, K) for a vector parameter
    fitted = {prm: (values[prm].reshape(-1) if not prm.is_vector else values[prm].reshape(values[prm].shape[0], -1))
              .double().cpu().numpy()[rows] for prm in model.free}
    rules = model.restart_values({prm: v[rows] for prm, v in start.items()}, [estimates[i] for i in rows])
    a, b = (model.profiles[c].parameters() for c in pair)
    candidates = []
    swapped = dict(fitted)
    for slot in _SWAP_SLOTS:
        pa_, pb_ = a.get(slot), b.get(slot)
        if pa_ is None or pb_ is None or pa_ is pb_ or pa_ not in fitted or pb_ not in fitted:
            continue
        swapped[pa_], swapped[pb_] = fitted[pb_], fitted[pa_]
    candidates.append(swapped)
    # both components restarted apart; everything else (sky, fitted neighbours) keeps its fit
    both = set(a.values()) | set(b.values())
    candidates.append({prm: (rules[prm] if prm in both else v) for prm, v in fitted.items()})
    for comp in (a, b):  # one component reset from the rules, the other kept
        own = set(comp.values())
        candidates.append({prm: (rules[prm] if prm in own else v) for prm, v in fitted.items()})
    theta0 = torch.cat([model.theta_from_values(c, settings.torch_dtype, settings.torch_device) for c in candidates])
    galaxies = torch.as_tensor(np.tile(rows, len(candidates)), device=settings.torch_device)
    again = _optimise(model, objective, theta0, galaxies, settings)
    tries = again.loss.reshape(len(candidates), rows.size)
    tries = torch.where(torch.isfinite(tries), tries, torch.full_like(tries, float("inf")))
    best_try = torch.argmin(tries, dim=0)
    pick = best_try * rows.size + torch.arange(rows.size, device=tries.device)
    taken = _keep_better(result, torch.as_tensor(rows, device=settings.torch_device), again, pick)
    log.info("two-component restarts: %d suspicious fits, %d improved", rows.size, taken)
    return result


def _keep_better(result, rows: Tensor, again, pick: Tensor) -> int:
    """Where refit ``again[pick]`` has a lower (or the only finite) loss than ``result[rows]``, take it; how many."""
    old, new = result.loss[rows], again.loss[pick]
    better = (new < old) | (~torch.isfinite(old) & torch.isfinite(new))
    take, chosen = rows[better], pick[better]
    if take.numel():
        result.theta[take] = again.theta[chosen]
        result.loss[take] = again.loss[chosen]
        result.status[take] = again.status[chosen]
        result.n_iter[take] = result.n_iter[take] + again.n_iter[chosen]
        if result.normal_matrix is not None and again.normal_matrix is not None:
            result.normal_matrix[take] = again.normal_matrix[chosen]
    return int(take.numel())


def _covariance(model, objective, result, theta: np.ndarray, positions: np.ndarray, settings: FitSettings):
    """Covariance-matrix errors of the batch (see :mod:`galmoss.fitting.uncertainty`)."""
    from .uncertainty import covariance_errors

    if not model.n_free:
        fisher = np.zeros((len(theta), 0, 0))
    elif result.normal_matrix is not None and settings.likelihood == "chi2":
        fisher = result.normal_matrix.double().cpu().numpy()  # J^T W J at the solution, already at hand
    else:
        everyone = torch.arange(len(theta), device=settings.torch_device)
        fisher = objective.fisher(result.theta, everyone).detach().double().cpu().numpy()
    errors, no_cov, cov = covariance_errors(model, theta, fisher, settings.torch_dtype, full=True, positions=positions)
    return errors, cov, no_cov
