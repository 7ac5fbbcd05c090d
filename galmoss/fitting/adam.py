"""Batched Adam: the seed's gradient-descent path, with per-galaxy early stopping.

The objective is ``sum(r^2)`` per galaxy; galaxies are independent, so one
backward pass of the batch's total gives every galaxy's gradient. Adam
normalises each parameter's step by its own gradient history, so it needs no
step-size tuning per parameter beyond a learning rate in fitting-space units
(log space for sizes, logistic for bounded values).

Each galaxy keeps its best parameters (lowest chi2 seen); those are reported.
A galaxy stops -- and leaves the batch -- when its best chi2 has not improved by
more than ``tol`` (relative) for ``patience`` iterations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .lm import CONVERGED_FTOL, MAX_ITERATIONS, NON_FINITE, RUNNING, OptimizeResult, sum_of_squares

Tensor = torch.Tensor


@dataclass(frozen=True)
class AdamSettings:
    """Settings of :func:`adam`."""

    max_iterations: int = 1000
    learning_rate: float = 0.02
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    tol: float = 1e-6
    patience: int = 50


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
        Learning rate, early stopping.
    step_scale
        Optional per-parameter multiplier of the learning rate (P,).
    """
    batch, n_par = theta0.shape
    device = theta0.device
    theta = theta0.clone()
    best_theta = theta0.clone()
    best = torch.full((batch,), float("inf"), dtype=torch.float64, device=device)
    stale = torch.zeros(batch, dtype=torch.long, device=device)
    m = torch.zeros_like(theta)
    v = torch.zeros_like(theta)
    n_iter = torch.zeros(batch, dtype=torch.long, device=device)
    status = torch.full((batch,), RUNNING, dtype=torch.long, device=device)
    lr = settings.learning_rate * (step_scale if step_scale is not None else 1.0)
    b1, b2 = settings.betas
    for it in range(1, settings.max_iterations + 1):
        idx = torch.nonzero(status == RUNNING).squeeze(1)
        if idx.numel() == 0:
            break
        th = theta[idx].detach().requires_grad_(True)
        r = residuals(th, idx)
        chi2 = sum_of_squares(r.detach())
        (grad,) = torch.autograd.grad((r.double() ** 2).sum(), th)
        grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
        if it == 1:
            status[idx] = torch.where(torch.isfinite(chi2), RUNNING, NON_FINITE)
        improved = chi2 < best[idx] * (1.0 - settings.tol)
        better = chi2 < best[idx]
        best_theta[idx] = torch.where(better[:, None], th.detach(), best_theta[idx])
        best[idx] = torch.where(better, chi2, best[idx])
        stale[idx] = torch.where(improved, 0, stale[idx] + 1)
        n_iter[idx] += 1
        status[idx] = torch.where((status[idx] == RUNNING) & (stale[idx] >= settings.patience), CONVERGED_FTOL, status[idx])
        # Adam update of the galaxies still running
        m[idx] = b1 * m[idx] + (1 - b1) * grad
        v[idx] = b2 * v[idx] + (1 - b2) * grad * grad
        m_hat = m[idx] / (1 - b1 ** n_iter[idx].to(theta.dtype))[:, None]
        v_hat = v[idx] / (1 - b2 ** n_iter[idx].to(theta.dtype))[:, None]
        theta[idx] = th.detach() - lr * m_hat / (torch.sqrt(v_hat) + settings.eps)
    status = torch.where(status == RUNNING, MAX_ITERATIONS, status)
    return OptimizeResult(best_theta, best, n_iter, status)
