"""Parameters that enter the model linearly, solved exactly before the fit starts.

A sky level and its gradients (and any user parameter the model is linear in)
can start far off: the talk's tutorial starts a tilted sky with gradients of 2
and 3 counts per pixel, which puts hundreds of counts at the cutout's edges,
and Levenberg-Marquardt from there pushes the galaxy's components off the image
before the sky comes down. With every other parameter held at its start, the
weighted least-squares problem in the linear parameters has a closed-form
solution; one Gauss-Newton step reaches it (IMFIT's tilted plane converges
from the same starts for the same reason).

Which parameters are linear is measured, not declared: a free parameter
fitted as is (no transform: sky levels, gradients, a user profile's
amplitudes) is linear when moving it alone changes the residuals by exactly
its Jacobian column times the move. The step is kept for a galaxy only where it lowers the loss.
"""

from __future__ import annotations

import torch

from ..model import Model
from ..params import Identity, Role
from .objective import BatchObjective

Tensor = torch.Tensor

#: a candidate is linear when moving it changes the residuals by its Jacobian column times the move, to this
#: fraction of the change (float32 rendering round-off is ~1e-7 of it; a non-linear move misses by O(1))
LINEAR_TOLERANCE = 1e-4


def linear_columns(model: Model) -> list[int]:
    """Columns of theta that may enter the model linearly: free, fitted as is, of no geometric role."""
    out = []
    for prm in model.free:
        if prm.is_vector or not isinstance(model.transforms[prm], Identity):
            continue
        if model.specs[prm].role is not Role.REAL:
            continue
        out.append(model.slices[prm].start)
    return out


def solve_linear_parameters(model: Model, objective: BatchObjective, theta: Tensor, rows: Tensor) -> Tensor:
    """``theta`` (b, P) with its linear parameters set to their least-squares values given the others.

    Costs one Jacobian and two residual evaluations of the batch when the model
    has candidate columns (the moves of the k candidates are one evaluation of
    k x b rows), nothing otherwise.
    """
    cols = linear_columns(model)
    b = theta.shape[0]
    if not cols or model.has_vectors or b == 0:
        return theta
    at = torch.as_tensor(cols, dtype=torch.long, device=theta.device)
    k = len(cols)
    with torch.no_grad():
        r, jac = objective.residuals_and_jacobian(theta, rows)
        j_l = jac[:, :, at].double()  # (b, M, k)
        # move each candidate alone (k copies of the batch in one evaluation): a linear one moves the residuals
        # by exactly its Jacobian column times the move
        delta = 1.0 + theta[:, at].abs()  # (b, k)
        moved = theta.repeat(k, 1)
        for j, c in enumerate(cols):
            moved[j * b:(j + 1) * b, c] += delta[:, j]
        shift = (objective.residuals(moved, rows.repeat(k)).double() - r.double().repeat(k, 1)).reshape(k, b, -1)
        predicted = (j_l * delta.double()[:, None, :]).permute(2, 0, 1)  # (k, b, M)
        size = predicted.abs().amax(dim=2).clamp_min(1e-300)
        linear = ((shift - predicted).abs().amax(dim=2) <= LINEAR_TOLERANCE * size).all(dim=1)  # per column
        if not bool(linear.any()):
            return theta
        at, j_l = at[linear], j_l[:, :, linear]
        lhs = torch.bmm(j_l.transpose(1, 2), j_l)
        rhs = torch.bmm(j_l.transpose(1, 2), r.double().unsqueeze(-1))
        ridge = 1e-12 * torch.diagonal(lhs, dim1=1, dim2=2).mean(dim=1).clamp_min(1e-300)
        lhs = lhs + ridge[:, None, None] * torch.eye(lhs.shape[1], dtype=lhs.dtype, device=lhs.device)
        step = -torch.linalg.solve(lhs, rhs).squeeze(-1)
        trial = theta.clone()
        trial[:, at] = trial[:, at] + step.to(theta.dtype)
        before = (r.double() ** 2).sum(dim=1)
        after = (objective.residuals(trial, rows).double() ** 2).sum(dim=1)
        better = torch.isfinite(after) & torch.isfinite(step).all(dim=1) & (after < before)
        return torch.where(better[:, None], trial, theta)
