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
from .assess import assess, check_starts
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
                             settings.likelihood == "chi2")
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
