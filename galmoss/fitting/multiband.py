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
single-band fit), and the band's values are :math:`v_b = M_b v + c_b` with the
band's map and offset of the slots' roles: a length in reference pixels is
``s_ref / s_b`` band pixels; a centre maps
:math:`(x, y)_b = s_{ref}/s_b\,R(\phi_b)\,((x, y) - c_{ref}) + c_b` (the cutout
centres ``c`` are one sky point, :math:`\phi_b` the band's rotation, 0 unless the
bands' grids are turned against each other); a position angle is
:math:`pa + \phi_b`; everything else is unchanged. :math:`M_b` is diagonal but for
the 2 x 2 blocks of a centre's x and y in a rotated band. A shared parameter's row of
:math:`A_b` copies its column of theta, a free one selects the band's column,
and a Chebyshev polynomial of degree k holds :math:`T_k(w_b)`, ``w_b`` the
band's wavelength mapped to [-1, 1]: the polynomial lives in the fitting space
(ln r_e for a size, the magnitude itself).

The joint residuals are the bands' residuals side by side and the joint Jacobian
is :math:`[J_1 D_1 A_1; J_2 D_2 A_2; ...]` with :math:`D_b = M_b\,\mathrm{diag}(T'(u_b))`;
the Fisher matrix is the sum of the bands' :math:`(D_b A_b)^T F_b (D_b A_b)`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from ..flags import Flag
from .lm import levenberg_marquardt, sum_of_squares
from .measure import batch_estimates
from .priors import PriorRows
from .records import Batch, BatchResult
from .solve import make_objective
from .status import Status

Tensor = torch.Tensor
log = logging.getLogger("galmoss")


from .bands import (  # noqa: F401 - the joint model and the bands, re-exported
    BAND_VARYING_ROLES, Bands, JointColumn, JointModel, band_dict, band_mode, make_bands,
)

__all__ = ["Bands", "JointModel", "MultiBandObjective", "fit_multiband_batch", "make_bands"]


class MultiBandObjective:
    """Residuals and Jacobians of a batch in every band, as functions of the joint theta."""

    def __init__(self, jm: JointModel, objectives: list, offsets: Tensor, priors=None, fixed=None) -> None:
        self.jm = jm
        self.objectives = objectives
        first = objectives[0].data
        self.A = jm.band_matrix(first.dtype, first.device)
        #: maps and offsets of the band models' free columns (jm.sources: the free and the tied parameters):
        #: (n_bands, Q', Q'), diagonal but for a centre's x and y in rotated bands
        self.mix = torch.as_tensor(np.stack([jm.mixing(jm.sources, b) for b in range(len(jm.bands))]),
                                   dtype=first.dtype, device=first.device)
        self.offsets = offsets  # (nb, B, Q')
        #: the reference model's priors (a PriorRows of the batch's rows) and the fixed values they read,
        #: ``{(band, parameter): (B, 1, 1)}`` in reference units; None without priors
        self.priors = priors
        self.fixed = fixed

    def _prior_rows(self, theta: Tensor, index: Tensor, jacobian: bool):
        """The prior rows (B, R') of every band they act in, and their Jacobian (B, R', P) by theta."""
        rs, js = [], []
        for b in sorted({b for bands in self.jm.prior_bands for b in bands}):
            terms = [k for k, bands in enumerate(self.jm.prior_bands) if b in bands]
            u = self.jm.band_coordinates(theta, b)
            fixed = {prm: self.fixed[(b, prm)][index] for prm in self.jm.ref.fixed}
            if jacobian:
                r, j = self.priors.residuals_and_jacobian(u, fixed, index)
                js.append(j[:, terms] @ self.A[b].to(j.dtype))
            else:
                r = self.priors.residuals(u, fixed, index)
            rs.append(r[:, terms])
        return torch.cat(rs, dim=1), (torch.cat(js, dim=1) if jacobian else None)

    def prior_term(self, theta: Tensor, index: Tensor) -> Tensor:
        """``-2 ln(prior)`` up to a constant (B,): the sum of squares of the prior rows (0 without priors)."""
        if self.priors is None:
            return theta.new_zeros(theta.shape[0])
        with torch.no_grad():
            return (self._prior_rows(theta, index, False)[0].double() ** 2).sum(dim=1)

    def _values(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """Reference profile-unit values T(u) and T'(u), (B, Q) each."""
        ref = self.jm.ref
        if not ref.free:
            return u, u
        v = torch.cat([ref.transforms[p].forward(u[:, ref.slices[p]]) for p in ref.free], dim=1)
        return v, ref.value_derivatives(u)

    def band_theta(self, b: int, theta: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        """Band b's values (B, Q') (its model's theta) and their derivative (B, Q', P) by the joint theta."""
        u = theta @ self.A[b].T
        mix = self.mix[b]
        if not self.jm.ref.ties:
            v, dv = self._values(u)
            return v @ mix.T + self.offsets[b][index], mix @ (dv[:, :, None] * self.A[b][None])
        v, dv = self._tied_values(b, u, index)
        return v @ mix.T + self.offsets[b][index], mix @ (dv @ self.A[b])

    def _tied_values(self, b: int, u: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        """Reference values (B, Q') of the band models' columns (free and tied) and their derivative by u."""
        from .._compat import prepare_forward_mode

        prepare_forward_mode()
        jm = self.jm
        fixed = {prm: self.fixed[(b, prm)][index] for prm in jm.ref.fixed}

        def one(u1, fx):
            values = jm.ref.values(u1[None], {k: t[None] for k, t in fx.items()})
            return torch.cat([values[p].reshape(-1) for p in jm.sources])

        dv = torch.func.vmap(torch.func.jacfwd(one), in_dims=(0, 0))(u, fixed)
        values = jm.ref.values(u, fixed)
        return torch.cat([values[p].reshape(values[p].shape[0], -1) for p in jm.sources], dim=1), dv

    def residuals(self, theta: Tensor, index: Tensor) -> Tensor:
        rs = [obj.residuals(self.band_theta(b, theta, index)[0], index) for b, obj in enumerate(self.objectives)]
        if self.priors is not None:
            rs.append(self._prior_rows(theta, index, False)[0].to(rs[0].dtype))
        return torch.cat(rs, dim=1)

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
        if self.priors is not None:
            r, j = self._prior_rows(theta, index, True)
            rs.append(r.to(rs[0].dtype))
            js.append(j.to(js[0].dtype))
        return torch.cat(rs, dim=1), torch.cat(js, dim=1)

    def fisher(self, theta: Tensor, index: Tensor) -> Tensor:
        total = None
        for b, obj in enumerate(self.objectives):
            tb, d = self.band_theta(b, theta, index)
            d = d.double()
            f = d.transpose(1, 2) @ obj.fisher(tb, index) @ d
            total = f if total is None else total + f
        if self.priors is not None:  # the posterior's curvature: the priors' adds to the data's
            j = self._prior_rows(theta, index, True)[1].double()
            total = total + j.transpose(1, 2) @ j
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
        # the fixed values in the band's units, one column each (K for a vector, which keeps its (B, K))
        ref_values = [np.asarray(fixed[(b, prm)], dtype=np.float64).reshape(len(batch), -1) for prm in jm.ref.fixed]
        values = jm.band_values(jm.ref.fixed, np.concatenate(ref_values, axis=1), b) if ref_values else None
        split = np.split(values, np.cumsum([prm.size for prm in jm.ref.fixed])[:-1], axis=1) if ref_values else []
        start = {mapping[prm]: v if prm.is_vector else v[:, 0] for prm, v in zip(jm.ref.fixed, split)}
        objectives.append(make_objective(bm, batch, start, settings))
    # fixed positions take the band's offset too (the objective holds band-unit values)
    fixed_offsets = jm.offsets(jm.ref.fixed, [bt.shapes for bt in batches])
    for b, obj in enumerate(objectives):
        for j, (prm, _) in enumerate(jm.coordinates(jm.ref.fixed)):
            key = jm.band_params[b][prm]
            if key not in obj.fixed or prm.is_vector:  # a fixed offset or ratio of a tie: read in reference
                continue  # units only; a vector (Fourier modes) takes no offset
            obj.fixed[key] = obj.fixed[key] + torch.as_tensor(fixed_offsets[b, :, j], dtype=dt, device=dev).reshape(-1, 1, 1)
    offsets = torch.as_tensor(jm.offsets(jm.sources, [bt.shapes for bt in batches]), dtype=dt, device=dev)
    priors = PriorRows.for_batch(jm.ref, batches[0].positions, dt, dev)
    fixed_t = jm.fixed_tensors(fixed, dt, dev)
    return MultiBandObjective(jm, objectives, offsets, priors, fixed_t)


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
    from .uncertainty import refit_deviations, resample_weights, robust_spread

    dt, dev = settings.torch_dtype, settings.torch_device
    fixed = jm.fixed_values(batches[0].positions)
    base = make_multiband_objective(jm, batches, fixed, settings)
    lm_settings = dataclasses.replace(lm_settings, initial_damping=min(lm_settings.initial_damping, 1e-3),
                                      final_normal_matrix=False)
    counts = [resample_weights(obj.weight, n_resample, generator) for obj in base.objectives]
    n = len(batches[0])
    galaxy = torch.arange(n, device=dev).repeat_interleave(n_resample)
    theta = torch.as_tensor(theta_best, dtype=dt, device=dev)
    fixed_t = jm.fixed_tensors(fixed, dt, dev)
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
        priors = None if base.priors is None else PriorRows(jm.ref, base.priors.mu[g], base.priors.sigma[g])
        joint = MultiBandObjective(jm, replicas, base.offsets[:, g], priors,
                                   None if base.fixed is None else {k: v[g] for k, v in base.fixed.items()})
        result = levenberg_marquardt(joint.residuals, joint.residuals_and_jacobian, theta[g], lm_settings)
        with torch.no_grad():
            rep = jm.report(result.theta, {k: v[g] for k, v in fixed_t.items()})
        ok = torch.isfinite(result.loss)
        reported.append(torch.stack([torch.where(ok, rep[name], torch.nan) for name in names], dim=1).double().cpu())
    values = torch.cat(reported).reshape(n, n_resample, len(names)).numpy()
    # the spread of the refits that stayed in the best fit's minimum, as for one band
    return robust_spread(refit_deviations(jm.columns, values, best))[0]


def _reference_quality(jm: JointModel, ref: Batch, theta0: Tensor, theta: Tensor, fixed: dict, loss, dof, finite,
                       flags, messages, chi2: bool, psf_sampling: int = 1) -> None:
    """The single-band quality flags (:func:`galmoss.auto.quality.quality_flags`), judged on the reference band.

    Its values (the shared ones and its own), the joint reduced chi2, its cutout and PSF.
    """
    from .assess import _quality

    fixed0 = {prm: fixed[(0, prm)] for prm in jm.ref.fixed}
    band0 = jm.bands.names[0]
    with torch.no_grad():
        start = {prm: v.double().cpu().numpy().reshape(v.shape[0], -1) if prm.is_vector
                 else v.double().cpu().numpy().reshape(-1)
                 for prm, v in jm.ref.values(jm.band_coordinates(theta0, 0), fixed0).items()}
        joint = jm.report(theta, fixed)
    reported = {}
    for col in jm.ref.columns:
        name = col.name if jm.modes[col.parameter] == "shared" else f"{col.name}_{band0}"
        reported[col.name] = joint[name].double().cpu().numpy()
    if np.isfinite(loss).any():
        _quality(jm.ref, start, reported, np.where(finite, loss, np.nan), dof, finite, tuple(ref.image.shape[1:]),
                 flags, messages, chi2, psf=ref.psf, psf_sampling=psf_sampling)


def _restart_strays(jm: JointModel, objective: MultiBandObjective, batches: list[Batch], estimates, result,
                    settings) -> None:
    """Fit again, from image-based starts, the joint fits that went astray; keep the lower loss (in place).

    Astray as for one band (:func:`galmoss.fitting.restarts.restart_strays`), judged on
    the reference band's values: not converged, at a bound, a size run away or a needle.
    """
    from .restarts import gone_astray, keep_better

    stray = np.flatnonzero(gone_astray(jm.ref, jm.band_coordinates(result.theta, 0), result.converged,
                                       tuple(batches[0].image.shape[1:]), settings.restart_policy))
    if stray.size == 0:
        return
    if estimates is None:
        estimates = [batch_estimates(b) for b in batches]
    rows = torch.as_tensor(stray, device=result.theta.device)
    theta0 = jm.restart_theta(batches[0].positions[stray], [[e[i] for i in stray] for e in estimates],
                              result.theta.dtype, result.theta.device)
    again = levenberg_marquardt(lambda th, ix: objective.residuals(th, rows[ix]),
                                lambda th, ix: objective.residuals_and_jacobian(th, rows[ix]), theta0, settings.lm)
    taken = keep_better(result, rows, again, torch.arange(rows.numel(), device=rows.device))
    log.info("multi-band: restarted %d galaxies from image-based starts; %d improved", stray.size, taken)


def fit_multiband_batch(jm: JointModel, batches: list[Batch], settings) -> MultiBandResult:
    """Fit every galaxy of a multi-band batch (one :class:`Batch` per band, same galaxies, same order).

    A pure function of its arguments, like :func:`~galmoss.fitting.batch.fit_batch`.
    Fits gone astray are fitted again from image-based starts (``settings.restarts``);
    the two-component restarts are single-band and not run.
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
    from .assess import take_back_psf_size

    take_back_psf_size(batches, settings.render.psf_oversampling, flags, messages)
    if jm.n_free:
        if settings.method == "lm":
            result = levenberg_marquardt(objective.residuals, objective.residuals_and_jacobian, theta0, settings.lm)
            if settings.restarts:
                _restart_strays(jm, objective, batches, estimates, result, settings)
        else:
            from .adam import adam

            result = adam(objective.residuals, theta0, settings.adam, None)
    else:
        from .solve import evaluate

        result = evaluate(objective, theta0, everyone)
    fixed_t = jm.fixed_tensors(fixed, dt, dev)
    with torch.no_grad():
        reported = {k: v.double().cpu().numpy() for k, v in jm.report(result.theta, fixed_t).items()}
        band_loss = objective.band_losses(result.theta, everyone).double().cpu().numpy()
    prior_term = objective.prior_term(result.theta, everyone).double().cpu().numpy()
    loss = result.loss.double().cpu().numpy() - prior_term  # the likelihood's part; the priors' is prior_loss
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
        _reference_quality(jm, ref, theta0, result.theta, fixed_t, loss, dof, finite, flags, messages,
                           settings.likelihood == "chi2", settings.render.psf_oversampling)
        # every band's PSF is judged: the worst band decides
        from .assess import mark_psf_undersampled, psf_sampling_bias, worst_psf_bias

        mark_psf_undersampled(worst_psf_bias([
            psf_sampling_bias(obj, objective.band_theta(b, result.theta, everyone)[0], settings.render.psf_oversampling)
            for b, obj in enumerate(objectives)]), finite, flags, messages)
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
        theta=theta, loss=np.where(finite, loss, np.nan), prior_loss=np.where(finite, prior_term, np.nan),
        dof=np.where(finite, dof, 0),
        n_iter=result.n_iter.cpu().numpy().astype(np.int64), status=status, converged=converged & finite,
        flags=flags, messages=["; ".join(m) for m in messages],
    )
    return MultiBandResult(out, band_loss, band_used.astype(np.int64))
