"""Batched Adam: the seed's gradient-descent path, with per-galaxy early stopping.

The objective is ``sum(r^2)`` per galaxy; galaxies are independent, so one
backward pass of the batch's total gives every galaxy's gradient. Adam
normalises each parameter's step by its own gradient history, so it needs no
step-size tuning per parameter beyond a learning rate in fitting-space units
(log space for sizes, logistic for bounded values).

Each galaxy keeps its best parameters (lowest loss seen); those are reported.
A galaxy stops -- and leaves the batch -- when its best loss has not improved by
more than ``tol`` (relative) for ``patience`` iterations (status
``CONVERGED_PATIENCE``).

A step whose loss or gradient is not finite is skipped and counted, as optax's
``apply_if_finite`` does: the galaxy goes back to its last point with a finite
loss, its moment estimates are left as they were, and its learning rate is
halved (with a deterministic objective, repeating the same step would fail
again). After ``max_non_finite`` such steps in a row the galaxy stops with status
``NON_FINITE``; its best finite point is still reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .lm import OptimizeResult, _check_count, _check_number, sum_of_squares
from .status import Status

Tensor = torch.Tensor


@dataclass(frozen=True)
class AdamSettings:
    """Settings of :func:`adam`.

    Change a field with ``dataclasses.replace(settings, learning_rate=0.05)``.

    Parameters
    ----------
    max_iterations
        Iterations at most per galaxy (integer >= 1); then status ``MAX_ITERATIONS``.
    learning_rate
        Step size in fitting-space units (> 0; log space for sizes, the logistic's
        argument for bounded values), multiplied by a per-parameter ``step_scale``.
    betas
        Decay rates ``(beta1, beta2)`` of the first and second moment estimates,
        each in [0, 1).
    eps
        Added to the root of the second moment (> 0), so a flat direction takes
        no infinite step.
    tol
        Relative improvement of the best loss (>= 0) that resets the patience count.
    patience
        Iterations without such an improvement (integer >= 1) after which the
        galaxy has converged (status ``CONVERGED_PATIENCE``).
    max_non_finite
        Consecutive non-finite steps (integer >= 1) after which the galaxy stops
        with status ``NON_FINITE``.

    Raises
    ------
    ValueError
        A field of the wrong type or out of range, naming the field and what it must be.
    """

    max_iterations: int = 1000
    learning_rate: float = 0.02
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    tol: float = 1e-6
    patience: int = 50
    max_non_finite: int = 20

    def __post_init__(self) -> None:
        _check_count("AdamSettings", "max_iterations", self.max_iterations)
        _check_number("AdamSettings", "learning_rate", self.learning_rate, positive=True)
        betas = self.betas
        if not (
            isinstance(betas, (tuple, list))
            and len(betas) == 2
            and all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0.0 <= b < 1.0 for b in betas)
        ):
            raise ValueError(f"AdamSettings(betas={betas!r}): betas must be a pair (beta1, beta2), each in [0, 1)")
        _check_number("AdamSettings", "eps", self.eps, positive=True)
        _check_number("AdamSettings", "tol", self.tol)
        _check_count("AdamSettings", "patience", self.patience)
        _check_count("AdamSettings", "max_non_finite", self.max_non_finite)


def adam(
    residuals: Callable[[Tensor, Tensor], Tensor],
    theta0: Tensor,
    settings: AdamSettings = AdamSettings(),
    step_scale: Tensor | None = None,
) -> OptimizeResult:
    """Minimise ``sum(residuals(theta, index)^2)`` per galaxy with Adam.

    Parameters
    ----------
    residuals
        ``f(theta (b, P), index (b,)) -> r (b, M)``.
    theta0
        Start values (B, P).
    settings
        Learning rate, early stopping, the non-finite step limit.
    step_scale
        Optional per-parameter multiplier of the learning rate (P,).

    Returns
    -------
    OptimizeResult
        The best point of each galaxy, its loss, iterations, status and the
        number of skipped non-finite steps (``n_skipped``).
    """
    batch, n_par = theta0.shape
    device = theta0.device
    theta = theta0.clone()
    best_theta = theta0.clone()
    last_good = theta0.clone()
    best = torch.full((batch,), float("inf"), dtype=torch.float64, device=device)
    stale = torch.zeros(batch, dtype=torch.long, device=device)
    m = torch.zeros_like(theta)
    v = torch.zeros_like(theta)
    n_iter = torch.zeros(batch, dtype=torch.long, device=device)
    n_steps = torch.zeros(batch, dtype=torch.long, device=device)  # accepted updates: Adam's bias correction
    n_skipped = torch.zeros(batch, dtype=torch.long, device=device)
    streak = torch.zeros(batch, dtype=torch.long, device=device)
    rate = torch.ones(batch, dtype=theta.dtype, device=device)
    status = torch.full((batch,), int(Status.RUNNING), dtype=torch.long, device=device)
    if n_par == 0:
        with torch.no_grad():
            loss = sum_of_squares(residuals(theta, torch.arange(batch, device=device)))
        status = torch.where(torch.isfinite(loss), int(Status.EVALUATED), int(Status.NON_FINITE)).to(device)
        return OptimizeResult(theta, loss, n_iter, status, n_skipped=n_skipped)
    lr = settings.learning_rate * (step_scale if step_scale is not None else 1.0)
    b1, b2 = settings.betas
    for it in range(1, settings.max_iterations + 1):
        idx = torch.nonzero(status == int(Status.RUNNING)).squeeze(1)
        if idx.numel() == 0:
            break
        th = theta[idx].detach().requires_grad_(True)
        r = residuals(th, idx)
        loss = sum_of_squares(r.detach())
        (grad,) = torch.autograd.grad((r.double() ** 2).sum(), th)
        finite = torch.isfinite(loss)
        ok = finite & torch.isfinite(grad).all(1)
        if it == 1:
            status[idx] = torch.where(finite, int(Status.RUNNING), int(Status.NON_FINITE))
        improved = loss < best[idx] * (1.0 - settings.tol)
        better = loss < best[idx]
        best_theta[idx] = torch.where(better[:, None], th.detach(), best_theta[idx])
        best[idx] = torch.where(better, loss, best[idx])
        last_good[idx] = torch.where(finite[:, None], th.detach(), last_good[idx])
        stale[idx] = torch.where(improved, 0, stale[idx] + 1)
        n_iter[idx] += 1
        n_skipped[idx] += (~ok).long()
        streak[idx] = torch.where(ok, 0, streak[idx] + 1)
        rate[idx] = torch.where(ok, rate[idx], 0.5 * rate[idx])
        running = status[idx] == int(Status.RUNNING)
        new_status = torch.where(running & (stale[idx] >= settings.patience), int(Status.CONVERGED_PATIENCE), status[idx])
        new_status = torch.where(running & (streak[idx] >= settings.max_non_finite), int(Status.NON_FINITE), new_status)
        status[idx] = new_status
        # Adam update of the galaxies whose step is finite; the others go back to their last finite point
        grad = torch.where(ok[:, None], grad, torch.zeros_like(grad))
        n_steps[idx] += ok.long()
        t = n_steps[idx].clamp_min(1).to(theta.dtype)[:, None]
        m_new = torch.where(ok[:, None], b1 * m[idx] + (1 - b1) * grad, m[idx])
        v_new = torch.where(ok[:, None], b2 * v[idx] + (1 - b2) * grad * grad, v[idx])
        m[idx], v[idx] = m_new, v_new
        m_hat = m_new / (1 - b1**t)
        v_hat = v_new / (1 - b2**t)
        stepped = th.detach() - rate[idx, None] * lr * m_hat / (torch.sqrt(v_hat) + settings.eps)
        theta[idx] = torch.where(ok[:, None], stepped, last_good[idx])
    status = torch.where(status == int(Status.RUNNING), int(Status.MAX_ITERATIONS), status)
    return OptimizeResult(best_theta, best, n_iter, status, n_skipped=n_skipped)
