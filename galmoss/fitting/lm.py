r"""Batched Levenberg-Marquardt: every galaxy its own damping, steps and convergence.

The solver sees two functions of a fitting-space tensor ``theta`` (b, P) and
the indices (b,) of the galaxies it holds -- residuals ``r`` (b, M), and
residuals with their Jacobian ``J`` (b, M, P) -- and nothing of profiles, data or
likelihoods. It minimises ``sum(r^2)`` per galaxy.

One iteration, for every galaxy still active:

1. solve :math:`(J^TJ + \lambda\,\mathrm{diag}(J^TJ))\,\delta = -J^Tr` (Marquardt
   scaling, batched Cholesky in float64);
2. evaluate the residuals at :math:`\theta + \delta`; a step is accepted when the
   sum of squares decreases and is finite (a non-finite trial is rejected);
3. damping follows Nielsen (1999): after an accepted step
   :math:`\lambda \leftarrow \lambda \max(1/3, 1 - (2\rho - 1)^3)`, with
   :math:`\rho` the ratio of actual to predicted decrease; after a rejected one
   :math:`\lambda \leftarrow \nu\lambda`, :math:`\nu \leftarrow 2\nu`;
4. the Jacobian is recomputed only for galaxies whose step was accepted -- or,
   when the quadratic model predicted that step well, updated instead (below).

Jacobian updates. A Jacobian costs several residual evaluations (each of its
columns is an image). When an accepted step achieved at least
``update_ratio`` of the decrease the model predicted, the model is good along
that step and the next Jacobian is Broyden's rank-one update of the current
one, :math:`J \leftarrow J + (y - Js)\,(Ds)^T / (s^TDs)` with :math:`y` the
change of the residuals over the step :math:`s` (already evaluated) and
:math:`D = \mathrm{diag}(J^TJ)` (Marquardt's scaling, so that the update does not
depend on the parameters' units), for at most ``jacobian_updates`` steps in a
row. A step rejected on an updated Jacobian recomputes it (the damping is left
as it was), and a galaxy is only ever declared converged on a recomputed one:
when a test passes on an updated Jacobian, the Jacobian is recomputed there and
the test is repeated with the exact gradient and the step it gives (the
recomputed normal matrix is the one the covariance needs anyway).

A galaxy has converged when (``ftol``) an accepted step, or the best step the
damped model predicts, lowers the sum of squares by less than ``ftol`` relative;
or (``xtol``) an accepted step moves ``theta`` by less than
``xtol * (xtol + |theta|)``; or (``gtol``) the gradient is orthogonal to the
residuals to ``gtol`` (the largest cosine between ``r`` and a column of ``J``).
Converged galaxies leave the batch and cost nothing more; the rest continue
until ``max_iterations``. How each galaxy ended is a
:class:`~galmoss.fitting.status.Status` code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..batched import matvec, transposed_matvec
from .status import Status, is_converged

Tensor = torch.Tensor

# The status codes by their old names (fitting code and user scripts import them from here).
RUNNING = Status.RUNNING
CONVERGED_FTOL = Status.CONVERGED_FTOL
CONVERGED_XTOL = Status.CONVERGED_XTOL
CONVERGED_GTOL = Status.CONVERGED_GTOL
MAX_ITERATIONS = Status.MAX_ITERATIONS
NON_FINITE = Status.NON_FINITE
STALLED = Status.STALLED
#: code -> message, derived from :class:`~galmoss.fitting.status.Status`
STATUS_TEXT = {int(s): s.message for s in Status}


def _check_count(owner: str, name: str, value, minimum: int = 1) -> None:
    # bool is an int subclass: max_iterations=True is a typo, not a count
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{owner}({name}={value!r}): {name} must be an integer >= {minimum}")


def _check_number(owner: str, name: str, value, *, positive: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > 0 if positive else value >= 0)
    if not ok:
        kind = "a finite number > 0" if positive else "a finite number >= 0"
        raise ValueError(f"{owner}({name}={value!r}): {name} must be {kind}")


@dataclass(frozen=True)
class LMSettings:
    """Tolerances and limits of :func:`levenberg_marquardt` (see the module docstring).

    Change a field with ``dataclasses.replace(settings, ftol=1e-8)``.

    Parameters
    ----------
    max_iterations
        Iterations at most per galaxy (integer >= 1); a galaxy that has not
        converged by then ends with status ``MAX_ITERATIONS``.
    ftol
        Converged when the relative decrease of the loss, the one an accepted step
        achieved and the one the damped model predicts, is at most ``ftol`` (>= 0).
    xtol
        Converged when an accepted step moves every fitting-space coordinate by
        at most ``xtol * (xtol + |theta|)`` (>= 0).
    gtol
        Converged when the largest cosine between the residuals and a Jacobian
        column is at most ``gtol`` (>= 0): the gradient is orthogonal to them.
    initial_damping
        Starting Marquardt damping lambda (> 0), relative to diag(J^T J).
    final_normal_matrix
        Recompute the normal equations at the step a galaxy converges with, so
        that ``normal_matrix`` is at the solution (the covariance uses it). False
        saves one Jacobian per galaxy where nothing needs them (bootstrap
        replicas); ``normal_matrix`` is then that of the step before.
    max_damping
        A galaxy whose damping grows beyond this (> ``initial_damping``) without
        a successful step ends with status ``STALLED``.
    jacobian_updates
        At most this many Broyden rank-one updates of the Jacobian in a row
        (integer >= 0; 0: every Jacobian is computed). Only with
        ``residuals_and_jacobian`` (the large-P route never holds J).
    update_ratio
        An accepted step is followed by an update instead of a computed Jacobian
        when it achieved at least this share of the predicted decrease, in (0, 1].

    Raises
    ------
    ValueError
        A field of the wrong type or out of range, naming the field and what it must be.
    """

    max_iterations: int = 100
    ftol: float = 1e-6
    xtol: float = 1e-8
    gtol: float = 1e-8
    initial_damping: float = 0.1
    max_damping: float = 1e12
    final_normal_matrix: bool = True
    jacobian_updates: int = 3
    update_ratio: float = 0.5

    def __post_init__(self) -> None:
        _check_count("LMSettings", "max_iterations", self.max_iterations)
        _check_count("LMSettings", "jacobian_updates", self.jacobian_updates, minimum=0)
        if not (isinstance(self.update_ratio, (int, float)) and not isinstance(self.update_ratio, bool)
                and 0.0 < self.update_ratio <= 1.0):
            raise ValueError(f"LMSettings(update_ratio={self.update_ratio!r}): update_ratio must be a number in (0, 1]")
        for name in ("ftol", "xtol", "gtol"):
            _check_number("LMSettings", name, getattr(self, name))
        _check_number("LMSettings", "initial_damping", self.initial_damping, positive=True)
        _check_number("LMSettings", "max_damping", self.max_damping, positive=True)
        if not isinstance(self.final_normal_matrix, bool):
            raise TypeError(f"LMSettings(final_normal_matrix={self.final_normal_matrix!r}): must be True or False")
        if not self.max_damping > self.initial_damping:
            raise ValueError(
                f"LMSettings(max_damping={self.max_damping!r}): max_damping must exceed "
                f"initial_damping={self.initial_damping!r}"
            )


@dataclass
class OptimizeResult:
    """Per-galaxy outcome of an optimiser.

    Attributes
    ----------
    theta
        Best fitting-space parameters (B, P).
    loss
        Sum of squared residuals at ``theta`` (B,), float64: the chi2 for the chi2
        likelihood, a deviance (-2 ln L up to a constant) for the others.
    n_iter
        Iterations each galaxy took (B,).
    status
        A :class:`~galmoss.fitting.status.Status` code per galaxy (B,), int64.
    normal_matrix
        ``J^T J`` of the residuals at ``theta`` (B, P, P), float64, when the
        optimiser has it (Levenberg-Marquardt); for a chi2 objective this is the
        Fisher information.
    n_skipped
        Steps skipped because they were not finite (B,), when the optimiser
        counts them (Adam).
    """

    theta: Tensor
    loss: Tensor
    n_iter: Tensor
    status: Tensor
    normal_matrix: Tensor | None = None
    n_skipped: Tensor | None = None

    @property
    def chi2(self) -> Tensor:
        """The same tensor as :attr:`loss` (the old name; a chi2 only for the chi2 likelihood)."""
        return self.loss

    @property
    def converged(self) -> Tensor:
        """Boolean (B,): the status is one of the converged codes (see :func:`~galmoss.fitting.status.is_converged`)."""
        return is_converged(self.status)


def _normal_equations(r: Tensor, jac: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """J^T J (b, P, P), J^T r (b, P) in float64, and the sum of squares (b,)."""
    a = torch.bmm(jac.transpose(1, 2), jac).double()
    g = transposed_matvec(jac, r).double()
    return a, g, sum_of_squares(r)


def _eigen_solve(lhs: Tensor, rhs: Tensor) -> Tensor:
    """``lhs^+ rhs`` (b, P) for symmetric ``lhs`` (b, P, P), eigenvalues below 1e-12 of the largest dropped."""
    out = torch.full_like(rhs, float("nan"))  # NaN: the step is rejected and the damping grows
    finite = torch.isfinite(lhs).flatten(1).all(1) & torch.isfinite(rhs).all(1)
    if not bool(finite.any()):
        return out
    try:
        w, v = torch.linalg.eigh(lhs[finite])
    except RuntimeError:  # pragma: no cover - eigh did not converge
        return out
    keep = w > 1e-12 * w.abs().amax(1, keepdim=True)
    inv = torch.where(keep, 1.0 / torch.where(keep, w, torch.ones_like(w)), torch.zeros_like(w))
    coef = inv * (v.transpose(1, 2) @ rhs[finite].unsqueeze(-1)).squeeze(-1)
    out[finite] = (v @ coef.unsqueeze(-1)).squeeze(-1)
    return out


def sum_of_squares(r: Tensor) -> Tensor:
    """Per-galaxy sum of squares in float64; non-finite becomes +inf."""
    s = (r.double() ** 2).sum(-1)
    return torch.where(torch.isfinite(s), s, torch.full_like(s, float("inf")))


def levenberg_marquardt(
    residuals: Callable[[Tensor, Tensor], Tensor],
    residuals_and_jacobian: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None,
    theta0: Tensor,
    settings: LMSettings = LMSettings(),
    start: tuple[Tensor, Tensor] | None = None,
    normal_equations: Callable[[Tensor, Tensor], tuple[Tensor, Tensor, Tensor]] | None = None,
) -> OptimizeResult:
    """Minimise ``sum(residuals(theta)^2)`` for every galaxy of a batch independently.

    Parameters
    ----------
    residuals
        ``f(theta (b, P), index (b,)) -> r (b, M)``; ``index`` says which galaxies
        of the batch the rows are.
    residuals_and_jacobian
        ``f(theta, index) -> (r (b, M), J (b, M, P))``; may be None when
        ``normal_equations`` is given.
    theta0
        Start values (B, P).
    settings
        Tolerances and limits.
    start
        ``(r, J)`` at ``theta0`` when the caller has them already (bootstrap
        replicas share their galaxy's model Jacobian at the best fit).
    normal_equations
        ``f(theta, index) -> (J^T J (b, P, P), J^T r (b, P), sum r^2 (b,))``, all
        float64: the large-P route, which never holds J (b, M, P) whole
        (:meth:`galmoss.fitting.objective.BatchObjective.normal_equations`).
        Used instead of ``residuals_and_jacobian`` when given.

    Returns
    -------
    OptimizeResult

    Notes
    -----
    A damped system whose Cholesky factorisation fails (ill-conditioned at
    large P: pixels the data barely constrain) is solved by an eigen
    decomposition that drops eigenvalues below 1e-12 of the largest; a step
    that is still not finite is rejected, which raises the damping.
    """
    # rank-one updates need J and r at hand: only on the route that computes J whole
    hold = normal_equations is None and settings.jacobian_updates > 0
    if normal_equations is None:
        def normal_equations(th, ix):
            r_, jac_ = residuals_and_jacobian(th, ix)
            return _normal_equations(r_, jac_)

    theta = theta0.clone()
    batch, n_par = theta.shape
    device = theta.device
    everyone = torch.arange(batch, device=device)
    r_held = jac_held = None
    if hold:
        # held and updated in place: the caller's start is copied, never changed
        r_held, jac_held = ((start[0].clone(), start[1].clone()) if start is not None
                            else residuals_and_jacobian(theta, everyone))
        a, g, chi2 = _normal_equations(r_held, jac_held)
    elif start is not None:
        a, g, chi2 = _normal_equations(*start)
    else:
        a, g, chi2 = normal_equations(theta, everyone)
    status = torch.where(torch.isfinite(chi2), int(RUNNING), int(NON_FINITE)).to(device)
    damping = torch.full((batch,), settings.initial_damping, dtype=torch.float64, device=device)
    nu = torch.full((batch,), 2.0, dtype=torch.float64, device=device)
    n_iter = torch.zeros(batch, dtype=torch.long, device=device)
    updates = torch.zeros(batch, dtype=torch.long, device=device)  # rank-one updates since J was computed
    eye = torch.eye(n_par, dtype=torch.float64, device=device)
    if n_par == 0:
        status = torch.where(status == RUNNING, int(Status.EVALUATED), status)
        return OptimizeResult(theta, chi2, n_iter, status, a)

    def damped_step(a_i, g_i, lam):
        """The damped Gauss-Newton step, whether it is finite, Marquardt's scale and the predicted decrease."""
        diag = torch.diagonal(a_i, dim1=1, dim2=2)
        # Marquardt scaling; a column with no leverage (a PA of a round galaxy)
        # still gets a little damping so the system stays solvable
        scale = torch.maximum(diag, 1e-9 * diag.mean(1, keepdim=True) + 1e-300)
        lhs = a_i + (lam[:, None] * scale)[:, :, None] * eye
        chol, info = torch.linalg.cholesky_ex(lhs)
        step = torch.cholesky_solve(-g_i.unsqueeze(-1), chol).squeeze(-1)
        failed = torch.nonzero(info != 0).squeeze(1)
        if failed.numel():  # rare: an eigen decomposition with small eigenvalues dropped
            step[failed] = _eigen_solve(lhs[failed], -g_i[failed])
        solvable = torch.isfinite(step).all(1)
        step = torch.where(solvable[:, None], step, torch.zeros_like(step))
        predicted = (step * matvec(a_i, step)).sum(1) + 2.0 * lam * (step * step * scale).sum(1)
        return step, solvable, scale, predicted

    for _ in range(settings.max_iterations):
        idx = torch.nonzero(status == RUNNING).squeeze(1)  # a host sync; the fallback and the refresh below add two
        if idx.numel() == 0:
            break
        n_iter[idx] += 1
        a_i, g_i, lam = a[idx], g[idx], damping[idx]
        diag = torch.diagonal(a_i, dim1=1, dim2=2)
        step, solvable, scale, predicted = damped_step(a_i, g_i, lam)
        trial = theta[idx] + step.to(theta.dtype)
        r_trial = residuals(trial, idx)
        chi2_trial = sum_of_squares(r_trial)
        chi2_i = chi2[idx]
        decrease = chi2_i - chi2_trial
        accepted = solvable & (decrease > 0)
        rho = decrease / predicted.clamp_min(1e-300)
        stale = updates[idx] > 0
        # damping (Nielsen 1999); a step rejected on an updated Jacobian says nothing
        # about the damping: the Jacobian is recomputed instead
        shrink = torch.clamp(1.0 - (2.0 * rho - 1.0) ** 3, min=1.0 / 3.0)
        rejected_stale = stale & ~accepted
        damping[idx] = torch.where(accepted, lam * shrink, torch.where(rejected_stale, lam, lam * nu[idx]))
        nu[idx] = torch.where(accepted, torch.full_like(lam, 2.0), torch.where(rejected_stale, nu[idx], nu[idx] * 2.0))
        # convergence
        rel_actual = decrease / chi2_i.clamp_min(1e-300)
        rel_predicted = predicted / chi2_i.clamp_min(1e-300)
        small_step = step.abs().le(settings.xtol * (settings.xtol + theta[idx].abs().double())).all(1)
        cosine = (g_i.abs() / torch.sqrt(diag.clamp_min(1e-300) * chi2_i.clamp_min(1e-300)[:, None])).amax(1)
        new_status = torch.full_like(idx, int(RUNNING))
        new_status = torch.where(cosine <= settings.gtol, int(CONVERGED_GTOL), new_status)
        new_status = torch.where(accepted & small_step, int(CONVERGED_XTOL), new_status)
        new_status = torch.where(
            (accepted & (rel_actual <= settings.ftol) & (rel_predicted <= settings.ftol))
            | (~accepted & solvable & (rel_predicted <= settings.ftol)),
            int(CONVERGED_FTOL),
            new_status,
        )
        new_status = torch.where(
            (new_status == RUNNING) & (damping[idx] > settings.max_damping), int(STALLED), new_status
        )
        # a test passed on an updated Jacobian is repeated on the computed one (below)
        verify = stale & (new_status != RUNNING) & (new_status != STALLED)
        status[idx] = torch.where(verify, int(RUNNING), new_status)
        # move the galaxies whose step was accepted and refresh their normal equations
        # masked updates, not boolean indexing, except the rows to refresh (one sync)
        theta[idx] = torch.where(accepted[:, None], trial, theta[idx])
        refresh = accepted if settings.final_normal_matrix else accepted & (new_status == RUNNING)
        if not settings.final_normal_matrix:  # converged with this step: its chi2 is the trial's
            chi2[idx] = torch.where(accepted & ~refresh & ~verify, chi2_trial.to(chi2.dtype), chi2[idx])
        if hold:
            update = (accepted & (new_status == RUNNING) & (rho >= settings.update_ratio)
                      & (updates[idx] < settings.jacobian_updates))
            computed = (refresh & ~update) | rejected_stale | verify
            _rank_one_update(jac_held, r_held, a, g, chi2, updates, idx, update, step, scale, r_trial, chi2_trial)
            moved = idx[computed]
            if moved.numel():
                r_m, jac_m = residuals_and_jacobian(theta[moved], moved)
                r_held[moved], jac_held[moved] = r_m, jac_m
                a[moved], g[moved], chi2[moved] = _normal_equations(r_m, jac_m)
                updates[moved] = 0
                checked = verify[computed]
                if bool(checked.any()):
                    _verify(status, moved[checked], new_status[computed][checked], a, g, chi2, damping, damped_step,
                            settings)
            continue
        moved = idx[refresh]
        if moved.numel():
            a_m, g_m, chi2_m = normal_equations(theta[moved], moved)
            a[moved], g[moved], chi2[moved] = a_m, g_m, chi2_m
    status = torch.where(status == RUNNING, int(MAX_ITERATIONS), status)
    return OptimizeResult(theta, chi2, n_iter, status, a)


def _rank_one_update(jac, r, a, g, chi2, updates, idx, update, step, scale, r_trial, chi2_trial) -> None:
    """Broyden's update of the held Jacobian of galaxies ``idx[update]`` over their accepted ``step``, in place.

    ``J + (y - J s) (D s)^T / (s^T D s)`` satisfies ``J s = y`` (y: the residuals'
    change over the step) and changes J along ``D s`` only, D Marquardt's scaling.
    """
    which = torch.nonzero(update).squeeze(1)
    if which.numel() == 0:
        return
    rows = idx[which]
    s = step[which]
    ds = scale[which] * s
    jac_u = jac[rows]
    r_new = r_trial[which]
    u = (r_new - r[rows]) - matvec(jac_u, s.to(jac_u.dtype))
    v = (ds / (ds * s).sum(1, keepdim=True).clamp_min(1e-300)).to(jac_u.dtype)
    jac_u = jac_u + u.unsqueeze(-1) * v.unsqueeze(1)
    jac[rows], r[rows] = jac_u, r_new
    a[rows], g[rows], _ = _normal_equations(r_new, jac_u)
    chi2[rows] = chi2_trial[which].to(chi2.dtype)
    updates[rows] += 1


def _verify(status, rows, found, a, g, chi2, damping, damped_step, settings) -> None:
    """Repeat the convergence test of galaxies ``rows`` on their computed normal equations.

    Converged (with the code ``found`` on the updated Jacobian) when the step the
    damped model now gives would lower the loss by at most ``ftol`` relative, or
    the gradient is orthogonal to the residuals to ``gtol``; otherwise running.
    """
    a_r, g_r, chi2_r = a[rows], g[rows], chi2[rows]
    _, solvable, _, predicted = damped_step(a_r, g_r, damping[rows])
    diag = torch.diagonal(a_r, dim1=1, dim2=2)
    cosine = (g_r.abs() / torch.sqrt(diag.clamp_min(1e-300) * chi2_r.clamp_min(1e-300)[:, None])).amax(1)
    done = (solvable & (predicted / chi2_r.clamp_min(1e-300) <= settings.ftol)) | (cosine <= settings.gtol)
    status[rows] = torch.where(done, found, torch.full_like(found, int(RUNNING)))
