"""The pure batch fit: ``fit_batch(model, batch, settings) -> BatchResult``.

A batch is a stack of galaxies of one cutout shape (tensors with a leading
galaxy dimension) plus their dataset positions, flags and messages. Fitting it
does no I/O and keeps no state: the same inputs give the same result on any
machine, which is what lets the pipeline run it in a background thread, in a
loop over a catalogue, or as a dask task (:mod:`galmoss.pipeline`).

:func:`fit_batch_safely` is the fault barrier: when a batch raises, it is split
in halves until the galaxy that raises is alone; that galaxy gets ``fit_error``
and NaN values, and every other galaxy's fit is kept.

The pieces live in their own modules: the records (:mod:`.records`), the
settings (:mod:`.fit_settings`), the memory model (:mod:`.memory`), the
objective and solver dispatch (:mod:`.solve`), the flags (:mod:`.assess`), the
restarts (:mod:`.restarts`) and the covariance (:mod:`.uncertainty`).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..flags import Flag
from ..model import Model
from .assess import assess, check_starts, psf_sampling_bias
from .fit_settings import FitSettings, ProfileOutputError
from .memory import FitMemoryError, available_memory, check_memory, memory_per_galaxy
from .records import Batch, BatchResult
from .linear import solve_linear_parameters
from .priors import dominated_priors
from .restarts import RestartPolicy, _suspicious_pairs, restart_components, restart_strays  # noqa: F401
from .solve import evaluate, make_objective, optimise
from .measure import batch_estimates
from .uncertainty import batch_covariance

log = logging.getLogger("galmoss")

__all__ = [
    "Batch",
    "BatchResult",
    "FitMemoryError",
    "FitSettings",
    "ProfileOutputError",
    "RestartPolicy",
    "available_memory",
    "check_memory",
    "check_model_output",
    "fit_batch",
    "fit_batch_safely",
    "make_objective",
    "memory_per_galaxy",
]

# names older code imported from here
_objective = make_objective
_optimise = optimise
_estimates = batch_estimates
_check_starts = check_starts


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
    check_memory(model, len(batch), tuple(batch.image.shape[1:]), settings,
                 None if batch.psf is None else tuple(batch.psf.shape[1:]))
    estimates = batch_estimates(batch) if model.auto_parameters else None
    start = model.start_values(batch.positions, estimates)
    keep, flags, messages = check_starts(model, batch, start)
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
        return result.reorder(order)

    objective = make_objective(model, batch, start, settings)
    theta0 = model.theta_from_values(start, dt, dev)
    everyone = torch.arange(len(batch), device=dev)
    if model.n_free:
        theta0 = solve_linear_parameters(model, objective, theta0, everyone)
        result = optimise(model, objective, theta0, everyone, settings)
    else:
        result = evaluate(objective, theta0, everyone)
    if settings.restarts and model.n_free:
        result, refitted = restart_strays(model, objective, batch, start, estimates, result, settings)
        result = restart_components(model, objective, batch, start, estimates, result, settings, refitted)
    if polishable(model, settings):
        objective, result = polish(model, batch, start, objective, result, settings)
    with torch.no_grad():
        values = model.values(result.theta, objective.fixed)
        reported = {k: v.double().cpu().numpy() for k, v in model.report(values).items()}
    # the solver minimised chi2 + the prior's term; results report the likelihood's part and the prior's apart
    prior_term = objective.prior_term(result.theta, everyone).double().cpu().numpy()
    loss = result.loss.double().cpu().numpy() - prior_term
    finite = np.isfinite(loss)
    status = result.status.cpu().numpy().astype(np.int64)
    converged = result.converged.cpu().numpy()
    n_used = objective.weight.flatten(1).gt(0).sum(1).cpu().numpy()
    dof = (n_used - model.n_free).astype(np.int64)
    flags, messages = assess(model, batch, start, reported, result.theta, loss, dof, status, converged,
                             settings.likelihood == "chi2", psf_sampling=settings.render.psf_oversampling,
                             psf_bias=psf_sampling_bias(objective, result.theta, settings.render.psf_oversampling))
    theta = result.theta.double().cpu().numpy()
    theta[~finite] = np.nan
    for col in reported.values():
        col[~finite] = np.nan
    loss = np.where(finite, loss, np.nan)

    errors = covariance = None
    if settings.covariance:
        errors, covariance, no_cov = batch_covariance(model, objective, result, theta, batch.positions, settings)
        for i in np.flatnonzero(no_cov & finite):
            flags[i] |= int(Flag.no_covariance)
            messages[i].append("singular Fisher matrix: errors that depend on an unconstrained parameter are NaN")

    if objective.priors is not None and model.n_free and finite.any():
        _flag_dominated_priors(model, objective, result, finite, settings, flags, messages)

    out = BatchResult(
        positions=batch.positions.copy(),
        names=list(batch.names),
        values=reported,
        errors=errors,
        covariance=covariance,
        theta=theta,
        loss=loss,
        prior_loss=np.where(finite, prior_term, np.nan),
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


#: at most this many Gauss-Newton steps on float64 residuals end a float32 fit (each kept only where it lowers the loss)
POLISH_STEPS = 4
#: a galaxy whose loss fell by more than this in a step (chi2 units: it moved 2e-3 of an error) takes another
POLISH_TOLERANCE = 1e-6


def polishable(model: Model, settings: FitSettings) -> bool:
    """Whether :func:`polish` ends the fit: a float32 Levenberg-Marquardt fit of scalar parameters."""
    return settings.polishes and settings.method == "lm" and settings.dtype == "float32" and bool(model.n_free) \
        and not model.has_vectors


def polish(model: Model, batch: Batch, start: dict, objective, result, settings: FitSettings):
    """The float32 solution taken to the float64 minimum: ``(float64 objective, result)``.

    On the CPU a galaxy's float32 arithmetic is the same in any batch
    (:mod:`galmoss.batched`), so its fit is too; on a GPU the FFT and matrix
    kernels choose their algorithms by batch size, and a galaxy's solution
    depends, by round-off, on which other galaxies share its batch. Each
    galaxy's own float64 residuals at that solution do not depend on its
    neighbours beyond 1e-12, and Gauss-Newton steps on them land on the float64
    minimum whatever the cut: up to :data:`POLISH_STEPS`, each from a Jacobian at
    the current point (the fit's float32 one: only the fixed point ``J^T r = 0``
    must be exact, and the float64 residuals set it) and kept only where it
    lowers the galaxy's loss; a galaxy goes on while its step lowered the loss by
    more than :data:`POLISH_TOLERANCE`. The last ``J^T J`` is the result's normal
    matrix, from which the covariance follows. Costs a float64 residual
    evaluation and a float32 Jacobian per step; most galaxies take two or three.
    """
    import dataclasses

    wide = dataclasses.replace(settings, dtype="float64")
    try:  # a frame too large to draw twice over in float64 keeps its float32 solution
        check_memory(model, len(batch), tuple(batch.image.shape[1:]), wide,
                     None if batch.psf is None else tuple(batch.psf.shape[1:]))
    except FitMemoryError:
        log.info("float64 polish skipped: the batch would not fit in memory in float64")
        return objective, result
    narrow, narrow_dtype = objective, result.theta.dtype
    objective = make_objective(model, batch, start, wide)
    theta = result.theta.detach().double()
    rows = torch.arange(len(batch), device=theta.device)
    ok = torch.isfinite(theta).all(1) & torch.isfinite(result.loss)
    theta = torch.where(ok[:, None], theta, torch.zeros_like(theta))  # a failed fit is left as it was
    final_loss = result.loss.detach().double().clone()

    # Gauss-Newton steps, each from a Jacobian at the current point: their fixed point is
    # J^T r = 0 there. (Chord steps that reuse one Jacobian stop short of the minimum by a
    # fraction of the distance they move, since the residuals are noise, not small.) A galaxy
    # goes on while its last step lowered the loss by more than POLISH_TOLERANCE.
    normal = torch.zeros(len(batch), theta.shape[1], theta.shape[1], dtype=theta.dtype, device=theta.device)
    active = rows[ok]
    with torch.no_grad():
        r_all = objective.residuals(theta[active], active)
    r_all = torch.zeros(len(batch), r_all.shape[1], dtype=r_all.dtype, device=r_all.device).index_copy_(0, active, r_all)
    final_loss[active] = (r_all[active] ** 2).sum(1)
    for _ in range(POLISH_STEPS):
        if len(active) == 0:
            break
        th, r, loss = theta[active], r_all[active], final_loss[active]
        # the Jacobian in the fit's float32 (half a float64 one's cost): the fixed point is set by
        # the float64 residuals
        jac = narrow.residuals_and_jacobian(th.to(narrow_dtype), active)[1].detach().double()
        jt = jac.transpose(1, 2)
        a = torch.bmm(jt, jac)
        normal[active] = a
        trial = th + _pseudo_solve(a, -torch.bmm(jt, r.unsqueeze(-1)).squeeze(-1))
        with torch.no_grad():
            trial_r = objective.residuals(trial, active)
        trial_loss = (trial_r**2).sum(1)
        better = torch.isfinite(trial_loss) & (trial_loss < loss)
        theta[active] = torch.where(better[:, None], trial, th)
        r_all[active] = torch.where(better[:, None], trial_r, r)
        final_loss[active] = torch.where(better, trial_loss, loss)
        active = active[better & (loss - trial_loss > POLISH_TOLERANCE)]
    loss = final_loss
    theta = torch.where(ok[:, None], theta, result.theta.double())
    loss = torch.where(ok, loss, result.loss.double())
    normal = None if result.normal_matrix is None else torch.where(ok[:, None, None], normal, result.normal_matrix.double())
    return objective, dataclasses.replace(result, theta=theta.detach(), loss=loss.detach(),
                                          normal_matrix=None if normal is None else normal.detach())


def _pseudo_solve(lhs, rhs):
    """``lhs^+ rhs`` (b, P) for symmetric ``lhs`` (b, P, P): eigenvalues below 1e-12 of the largest dropped."""
    finite = torch.isfinite(lhs).flatten(1).all(1) & torch.isfinite(rhs).all(1)
    out = torch.zeros_like(rhs)
    if not bool(finite.any()):
        return out
    w, v = torch.linalg.eigh(lhs[finite])
    keep = w > 1e-12 * w.abs().amax(1, keepdim=True)
    inv = torch.where(keep, 1.0 / torch.where(keep, w, torch.ones_like(w)), torch.zeros_like(w))
    out[finite] = (v @ (inv * (v.transpose(1, 2) @ rhs[finite].unsqueeze(-1)).squeeze(-1)).unsqueeze(-1)).squeeze(-1)
    return out


def _flag_dominated_priors(model: Model, objective, result, finite, settings: FitSettings, flags, messages) -> None:
    """``prior_dominated`` where a prior says as much about its coordinate as the data (fitting/priors.py)."""
    everyone = torch.arange(len(finite), device=result.theta.device)
    with torch.no_grad():
        if result.normal_matrix is not None and settings.likelihood == "chi2":
            fisher = result.normal_matrix  # J^T J of data and prior rows at the solution, already at hand
        else:
            fisher = objective.fisher(result.theta, everyone)
    fixed = {k: v[everyone] for k, v in objective.fixed.items()}
    dominated = dominated_priors(objective.priors, result.theta, fixed, fisher).cpu().numpy()
    labels = [term.label for term in model.priors]
    for i in np.flatnonzero(finite & dominated.any(axis=1)):
        flags[i] |= int(Flag.prior_dominated)
        names = ", ".join(labels[k] for k in np.flatnonzero(dominated[i]))
        messages[i].append(f"the prior says as much as the data about {names} (posterior width above 1/sqrt(2) of the "
                           "prior's)")


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
    estimates = batch_estimates(tried) if model.auto_parameters else None
    start = model.start_values(tried.positions, estimates)
    objective = make_objective(model, tried, start, settings)
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
    return result.reorder(np.argsort(np.concatenate(order), kind="stable"))
