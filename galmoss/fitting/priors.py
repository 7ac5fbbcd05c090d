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

from ..batched import rowwise_jacobian
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

        mu, sigma = self.mu[rows], self.sigma[rows]
        jac = rowwise_jacobian(lambda th: (self.coordinates(th, fixed) - mu) / sigma, theta)
        with torch.no_grad():
            r = self.residuals(theta, fixed, rows)
        return r, jac


#: a prior whose posterior width is above this fraction of its own carries as much information as the data
PRIOR_DOMINATED = 2**-0.5


def dominated_priors(priors: PriorRows, theta: Tensor, fixed: dict[Parameter, Tensor], fisher: Tensor) -> Tensor:
    """(b, R) boolean: which priors' coordinates have a posterior width above :data:`PRIOR_DOMINATED` of theirs.

    ``fisher`` (b, P, P) is the posterior's information (data and priors) at
    ``theta``. For prior row k with gradient a_k (its Jacobian row, which is
    dc/dtheta / sigma_k), the posterior variance of c in units of sigma_k^2 is
    a_k^T F^-1 a_k: 1 when the data add nothing, 1/2 when they add as much as
    the prior.
    """
    rows = torch.arange(theta.shape[0], device=theta.device)
    _, jac = priors.residuals_and_jacobian(theta, fixed, rows)
    jac = jac.double()
    f = fisher.double()
    solved = torch.linalg.lstsq(f, jac.transpose(1, 2)).solution  # F^-1 a_k, robust to a singular F
    ratio = (jac.transpose(1, 2) * solved).sum(dim=1)  # (b, R): a_k^T F^-1 a_k
    return torch.sqrt(ratio.clamp_min(0.0)) > PRIOR_DOMINATED
