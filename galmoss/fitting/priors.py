"""Priors as residual rows: what the optimisers see of ``gm.p(..., prior=)``.

A normal prior N(mu, sigma) on a coordinate c(theta) of the parameters adds the
row ``(c(theta) - mu) / sigma`` to a galaxy's residuals, so the sum of squares
Levenberg-Marquardt minimises is chi2 - 2 ln(prior) + const (the maximum a
posteriori) and ``J^T J`` at the solution holds the prior's curvature: the
covariance is the posterior's. The rows are few (one per prior), so their
Jacobian is taken by forward mode over theta.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..model import Model
from ..params import Parameter

Tensor = torch.Tensor

__all__ = ["PriorRows"]


@dataclass
class PriorRows:
    """The prior rows of a batch: the model's priors with their centres and widths per galaxy.

    Attributes
    ----------
    model
        The model whose ``priors`` these are.
    mu, sigma
        (B, R) tensors: each galaxy's centre and width of each of the R priors.
    """

    model: Model
    mu: Tensor
    sigma: Tensor

    @classmethod
    def for_batch(cls, model: Model, positions: np.ndarray, dtype, device) -> "PriorRows | None":
        """The rows of the galaxies at dataset ``positions``; None when the model has no prior."""
        if not model.priors:
            return None

        def column(values: np.ndarray) -> np.ndarray:
            return np.broadcast_to(values, (len(positions),)) if values.size == 1 else values[positions]

        mu = np.stack([column(t.prior.mu) for t in model.priors], axis=1)
        sigma = np.stack([column(t.prior.sigma) for t in model.priors], axis=1)
        as_tensor = lambda x: torch.as_tensor(np.ascontiguousarray(x), dtype=dtype, device=device)  # noqa: E731
        return cls(model, as_tensor(mu), as_tensor(sigma))

    def __len__(self) -> int:
        return len(self.model.priors)

    def coordinates(self, theta: Tensor, fixed: dict[Parameter, Tensor]) -> Tensor:
        """Each prior's coordinate (b, R) at ``theta`` (b, P); ``fixed`` holds (b, 1, 1) fixed values."""
        values = self.model.values(theta, fixed)
        cols = []
        for term in self.model.priors:
            user = lambda prm: self.model.units[prm].to_user(values[prm].reshape(-1))  # noqa: E731
            others = tuple(user(o) for o in term.others)
            cols.append(term.prior.coordinate(user(term.parameter), others, term.parameter, term.role))
        return torch.stack(cols, dim=1)

    def residuals(self, theta: Tensor, fixed: dict[Parameter, Tensor], rows: Tensor) -> Tensor:
        """Prior rows (b, R) of the galaxies ``rows`` of the batch."""
        return (self.coordinates(theta, fixed) - self.mu[rows]) / self.sigma[rows]

    def residuals_and_jacobian(self, theta: Tensor, fixed: dict[Parameter, Tensor], rows: Tensor) -> tuple[Tensor, Tensor]:
        """Prior rows (b, R) and their Jacobian (b, R, P) with respect to ``theta``."""

        def one(th, fx, mu, sigma):
            coords = self.coordinates(th[None], {k: v[None] for k, v in fx.items()})[0]
            return (coords - mu) / sigma

        mu, sigma = self.mu[rows], self.sigma[rows]
        jac = torch.func.vmap(torch.func.jacfwd(one), in_dims=(0, 0, 0, 0))(theta, dict(fixed), mu, sigma)
        with torch.no_grad():
            r = self.residuals(theta, fixed, rows)
        return r, jac
