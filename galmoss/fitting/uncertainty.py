r"""Uncertainties: the covariance matrix (delta method) and the pixel bootstrap.

``covar_mat``
    At the best fit, the Fisher information :math:`F = J_m^T W J_m` (``J_m`` the
    model's Jacobian through the PSF convolution, by forward mode; ``W`` the
    likelihood's Fisher weights, :math:`1/\sigma^2` for chi2) is inverted in the
    fitting space, where it is best conditioned, and mapped to the reported
    units by the delta method, :math:`\Sigma = G F^{-1} G^T` with ``G`` the
    derivative of the reported values (magnitudes, degrees, arcsec, with ellipses
    canonicalised) with respect to the fitting-space parameters. Only P x P
    matrices are formed. A singular or indefinite F gives NaN errors and the flag
    ``no_covariance``; a parameter the data do not constrain at all, or one that
    ended within 1e-3 of the fitted width from a bound of its range (the flag
    ``near_bound``; the transform's slope there would give it an error of ~0,
    which reads as "fixed"), is set aside, so that only the values depending on
    it get NaN. A null
    direction a profile declares (``LightProfile.gauge_slots``: an offset of a
    free-form profile's values, which changes nothing) is removed exactly, since
    no reported value depends on it (:meth:`galmoss.model.Model.gauge_directions`).

``bootstrap``
    Each galaxy's usable pixels are resampled with replacement (``n_resample``
    times, independently per galaxy); a pixel drawn k times weighs k in the chi2
    (its residual is multiplied by sqrt(k)). All resamplings of a batch are refitted
    together, started from the best fit, and the error of each reported value is
    the standard deviation of the refits that stayed in the best fit's minimum:
    a refit with any value more than :data:`SPLIT_SIGMAS` robust sigmas (1.4826
    times the median absolute deviation) from the refits' median went to
    another minimum (a bulge + disk decomposition can), is left out of the
    spread, and flags the galaxy ``bootstrap_split``.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import torch

from ..model import Model
from ..params import Role
from .lm import levenberg_marquardt
from .objective import BatchObjective

Tensor = torch.Tensor

#: a bootstrap refit this many robust sigmas from the replicas' median went to another minimum
SPLIT_SIGMAS = 5.0
#: the median absolute deviation of normal deviations is this fraction of their sigma
_MAD_TO_SIGMA = 1.482602218505602


def covariance_errors(
    model: Model, theta: np.ndarray, fisher: np.ndarray, dtype, *, full: bool = False,
    positions: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray] | tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Errors of every reported column from stored Fisher matrices.

    ``positions`` are the dataset positions of the rows of ``theta`` (default
    ``0..N-1``): they pick the values of fixed parameters given per galaxy.

    Returns
    -------
    errors
        ``{column: (N,) array}``; NaN where no fit or no covariance.
    no_covariance
        (N,) boolean: fitted galaxies whose Fisher matrix could not be inverted.
    covariance
        With ``full=True``: the (N, C, C) covariance of the reported columns, in
        the order of ``model.columns`` (for derived quantities such as B/T).
    """
    n = theta.shape[0]
    names = [c.name for c in model.columns]
    errors = {name: np.full(n, np.nan) for name in names}
    no_cov = np.zeros(n, dtype=bool)
    covariance = np.full((n, len(names), len(names)), np.nan) if full else None
    fitted = np.flatnonzero(np.all(np.isfinite(theta), axis=1))
    if model.n_free == 0:
        for name in names:
            errors[name][fitted] = 0.0
        if full:
            covariance[fitted] = 0.0
            return errors, no_cov, covariance
        return errors, no_cov
    for start in range(0, fitted.size, 4096):
        rows = fitted[start : start + 4096]
        f = torch.as_tensor(fisher[rows], dtype=torch.float64)
        ok = torch.isfinite(f).flatten(1).all(1)
        eye = torch.eye(f.shape[-1], dtype=torch.float64)
        f = torch.where(ok[:, None, None], f, eye)
        # A parameter the data do not constrain at all (a value pinned at a bound of
        # its range, a position angle of an exactly round galaxy) has a zero row:
        # it is set aside so that the others still get errors, and every reported
        # value that depends on it gets NaN.
        diag = torch.diagonal(f, dim1=1, dim2=2)
        dropped = diag <= 1e-12 * diag.amax(1, keepdim=True)
        keep = (~dropped).double()
        f = f * keep[:, :, None] * keep[:, None, :] + torch.diag_embed(dropped.double())
        th = torch.as_tensor(theta[rows], dtype=torch.float64)
        # A declared gauge direction u (a free-form profile's log_sb offset) is an exact
        # null direction of F. The reported values do not depend on it (G u = 0), so
        # G (F + c u u^T)^-1 G^T = G F^+ G^T for any c > 0: F is made invertible along u
        # at the scale of its own diagonal, and the covariance of everything reported is exact.
        gauge = model.gauge_directions(th)
        if gauge is not None:
            gauge = gauge * keep[:, :, None]
            scale = (diag[:, :, None] * gauge**2).sum(1)  # (B, G): F's mean diagonal along each gauge's columns
            f = f + (gauge * scale[:, None, :]) @ gauge.transpose(1, 2)
        # scale to unit diagonal before factorising: parameters differ by orders of magnitude
        d = torch.sqrt(torch.diagonal(f, dim1=1, dim2=2))
        chol, info = torch.linalg.cholesky_ex(f / (d[:, :, None] * d[:, None, :]))
        good = ok & (info == 0)
        chol = torch.where(good[:, None, None], chol, eye)  # failed rows: NaN below, no exception here
        cov = torch.cholesky_inverse(chol) / (d[:, :, None] * d[:, None, :])
        where = rows if positions is None else np.asarray(positions)[rows]
        fixed = model.fixed_tensors(model.start_values(where), torch.float64, "cpu")
        _, g = model.report_jacobian(th, fixed)
        # a value pinned near a bound of its range: the transform's slope there makes its delta-method
        # error ~0, which would read as "fixed"; the local quadratic model does not hold at a wall: NaN.
        # A value's own column counts even where that slope is exactly 0 (deep at a wall).
        # (a joint multi-band model judges its bounds per band, in its own flags)
        pinned = model.near_bound(th).cpu() if isinstance(model, Model) else torch.zeros_like(dropped)
        depends = (g.abs() > 0) | _owns(model, g.shape[-1])[None]
        affected = (depends & (dropped | pinned)[:, None, :]).any(-1)
        g = g * keep[:, None, :]
        cov_rep = g @ cov @ g.transpose(1, 2)
        var = torch.diagonal(cov_rep, dim1=1, dim2=2)
        err = torch.sqrt(var.clamp_min(0.0))
        err = torch.where(good[:, None] & ~affected & torch.isfinite(err), err, torch.full_like(err, float("nan")))
        good = good & ~dropped.any(1)
        for j, name in enumerate(names):
            errors[name][rows] = err[:, j].numpy()
        no_cov[rows] = ~good.numpy()
        if full:
            covariance[rows] = cov_rep.numpy()
    if full:
        return errors, no_cov, covariance
    return errors, no_cov


def resample_weights(weight: Tensor, n_resample: int, generator: torch.Generator) -> Tensor:
    """Bootstrap pixel counts (B * R, H, W) from usable-pixel masks (B, H, W).

    For each galaxy its N usable pixels are drawn N times with replacement,
    ``n_resample`` times; the count of each pixel is its weight.
    """
    batch = weight.shape[0]
    flat = weight.flatten(1) > 0
    out = torch.zeros((batch, n_resample, flat.shape[1]), dtype=weight.dtype, device=weight.device)
    for i in range(batch):  # setup only: the draws themselves are vectorised over resamplings
        used = torch.nonzero(flat[i]).squeeze(1)
        if used.numel() == 0:
            continue
        draws = torch.randint(0, used.numel(), (n_resample, used.numel()), generator=generator, device="cpu").to(weight.device)
        out[i].scatter_add_(1, used[draws], torch.ones(draws.shape, dtype=weight.dtype, device=weight.device))
    return out.reshape((batch * n_resample,) + tuple(weight.shape[1:]))


def bootstrap_batch(model: Model, objective: BatchObjective, theta_best: Tensor, best: np.ndarray,
                    n_resample: int, settings, generator: torch.Generator, rows_per_pass: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap spreads (B, C) of the reported columns of one batch, and how many refits split off (B,).

    Parameters
    ----------
    model, objective
        The batch's model and objective (data, PSFs, weights, fixed values).
    theta_best
        (B, P) best fit, where every replica starts (a warm start: replicas are
        a small perturbation of the data, so LM needs few iterations).
    best
        (B, C) reported best-fit values (deviations are taken from them).
    n_resample
        Resamplings per galaxy.
    settings
        :class:`~galmoss.fitting.lm.LMSettings` of the refits.
    generator
        Random generator of the resampling.
    rows_per_pass
        Replicas fitted together (memory bound).

    Returns
    -------
    spread : ndarray (B, C)
        Standard deviation of each column over the refits that did not split off (:func:`robust_spread`).
    split : ndarray (B,) of int
        How many of each galaxy's refits went to another minimum.
    """
    names = [c.name for c in model.columns]
    b = theta_best.shape[0]
    # A replica starts a fraction of a sigma from its minimum, where the
    # Gauss-Newton step is right: a catalogue start's damping (0.1) would cut
    # each step by ~10 % and cost two more iterations (Jacobians) per replica;
    # and nothing needs a replica's normal equations at its solution.
    settings = dataclasses.replace(settings, initial_damping=min(settings.initial_damping, 1e-3),
                                   final_normal_matrix=False)
    counts = resample_weights(objective.weight, n_resample, generator)
    galaxy = torch.arange(b, device=theta_best.device).repeat_interleave(n_resample)
    # every replica of a galaxy starts at its best fit: one model Jacobian there
    # serves them all (only the pixel weights differ)
    with torch.no_grad():
        model_best, jac_best = objective.model_and_jacobian(theta_best, torch.arange(b, device=theta_best.device))
    shape = model_best.shape[1:]
    reported = []
    for start in range(0, galaxy.numel(), rows_per_pass):
        g = galaxy[start : start + rows_per_pass]
        replica = BatchObjective(
            model=model,
            renderer=objective.renderer,
            likelihood=objective.likelihood,
            data=objective.data,
            sigma=objective.sigma,
            weight=counts[start : start + rows_per_pass],
            fixed={k: v[g] for k, v in objective.fixed.items()},
            galaxy=g,
            jacobian_chunk=objective.jacobian_chunk,
            priors=objective.priors,
        )
        weight = replica.weight.reshape(len(g), -1)
        rows = objective._rows(g)
        r0, slope = objective.likelihood.residuals_and_slope(
            objective.data[rows].reshape(len(g), *shape), model_best[g], objective.sigma[rows].reshape(len(g), *shape),
            weight.reshape(len(g), *shape))
        start0 = (r0.reshape(len(g), -1), slope.reshape(len(g), -1).unsqueeze(-1) * jac_best[g])
        if replica.priors is not None:  # the prior's rows are the same for every replica of a galaxy
            rp, jp = replica.priors.residuals_and_jacobian(theta_best[g], replica._fixed(torch.arange(len(g))), rows)
            start0 = (torch.cat([start0[0], rp.to(r0.dtype)], 1), torch.cat([start0[1], jp.to(start0[1].dtype)], 1))
        result = levenberg_marquardt(replica.residuals, replica.residuals_and_jacobian, theta_best[g], settings,
                                     start=start0)
        del start0
        with torch.no_grad():
            rep = model.report(model.values(result.theta, replica.fixed))
        ok = torch.isfinite(result.loss)
        reported.append(torch.stack([torch.where(ok, rep[name], torch.nan) for name in names], dim=1).double().cpu())
    values = torch.cat(reported).reshape(b, n_resample, len(names)).numpy()
    deviation = values - best[:, None, :]
    for j, col in enumerate(model.columns):
        if col.spec.role is Role.ANGLE:  # position angles live on a half circle
            deviation[..., j] = (deviation[..., j] + 90.0) % 180.0 - 90.0
    return robust_spread(deviation)


def robust_spread(deviation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spread (B, C) of refits (B, R, C) and the number (B,) of refits that split off.

    A refit splits off when any of its values lies more than
    :data:`SPLIT_SIGMAS` robust sigmas (1.4826 x the median absolute deviation)
    from the median; the spread is the standard deviation of the others (NaN
    refits ignored): as efficient as the plain one for normal refits, where
    the MAD alone has 37 % efficiency.
    """
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a galaxy whose replicas all failed: NaN
        centre = np.nanmedian(deviation, axis=1, keepdims=True)
        mad = _MAD_TO_SIGMA * np.nanmedian(np.abs(deviation - centre), axis=1)
        far = np.abs(deviation - centre) > SPLIT_SIGMAS * mad[:, None, :]
        far &= (mad[:, None, :] > 0) & np.isfinite(deviation)
        split = far.any(axis=2)
        kept = np.where(split[:, :, None], np.nan, deviation)
        spread = np.nanstd(kept, axis=1, ddof=1)
    return spread, split.sum(axis=1)


def _owns(model: Model, n_free: int) -> torch.Tensor:
    """(C, P) boolean: reported column j is (an element of) the free parameter of theta column k."""
    owns = torch.zeros((len(model.columns), n_free), dtype=torch.bool)
    if not isinstance(model, Model):
        return owns
    for j, col in enumerate(model.columns):
        cols = model.slices.get(col.parameter)
        if cols is not None:
            owns[j, cols.start + (col.element or 0)] = True
    return owns


def batch_covariance(model, objective, result, theta: np.ndarray, positions: np.ndarray, settings):
    """Covariance-matrix errors of a fitted batch: (errors, covariance, no_covariance), from the Fisher matrix at hand."""
    if not model.n_free:
        fisher = np.zeros((len(theta), 0, 0))
    elif result.normal_matrix is not None and settings.likelihood == "chi2":
        fisher = result.normal_matrix.double().cpu().numpy()  # J^T W J at the solution, already at hand
    else:
        everyone = torch.arange(len(theta), device=settings.torch_device)
        fisher = objective.fisher(result.theta, everyone).detach().double().cpu().numpy()
    errors, no_cov, cov = covariance_errors(model, theta, fisher, settings.torch_dtype, full=True, positions=positions)
    return errors, cov, no_cov
