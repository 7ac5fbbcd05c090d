"""The objective of one batch: data, a renderer and a model, as functions of theta.

This is where profiles meet data: residuals ``r(theta)`` (b, M) of the galaxies
``index`` of a batch, their forward-mode Jacobians through the PSF convolution,
and the Fisher information at a solution. The optimisers see only the functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._compat import prepare_forward_mode
from ..model import Model
from ..params import Parameter
from ..render import Renderer
from .likelihoods import Likelihood

Tensor = torch.Tensor


@dataclass
class BatchObjective:
    """Residuals of a batch of galaxies.

    Attributes
    ----------
    model, renderer, likelihood
        What is fitted, how it is drawn, and the noise model.
    data, sigma, weight
        (B, H, W) tensors; ``weight`` is 1 for used pixels, 0 for masked ones (or a
        bootstrap count).
    fixed
        Profile-unit values (B, 1, 1) of the fixed parameters.
    galaxy
        For each row, the row of ``data`` (and PSF) it fits; lets bootstrap
        replicas share one copy of the data. None: row i fits galaxy i.
    jacobian_chunk
        Galaxies per forward-mode pass (bounds the memory of P tangents).
    """

    model: Model
    renderer: Renderer
    likelihood: Likelihood
    data: Tensor
    sigma: Tensor
    weight: Tensor
    fixed: dict[Parameter, Tensor]
    galaxy: Tensor | None = None
    jacobian_chunk: int = 64

    def _rows(self, index: Tensor) -> Tensor:
        return index if self.galaxy is None else self.galaxy[index]

    def model_images(self, theta: Tensor, index: Tensor, components: bool = False):
        """Model images (b, H, W) of rows ``index`` at ``theta`` (b, P)."""
        fixed = {k: v[index] for k, v in self.fixed.items()}
        values = self.model.values(theta, fixed)
        return self.renderer(self.model.profiles, values, index=self._rows(index), components=components)

    def residuals(self, theta: Tensor, index: Tensor) -> Tensor:
        rows = self._rows(index)
        model = self.model_images(theta, index)
        r = self.likelihood.residuals(self.data[rows], model, self.sigma[rows], self.weight[index])
        return r.reshape(r.shape[0], -1)

    def _forward_jacobian(self, fn, theta: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        """``fn(theta, index)`` (b, M) and its Jacobian (b, M, P), by forward mode in chunks."""
        prepare_forward_mode()
        n_par = theta.shape[1]
        values, jacobians = [], []
        for start in range(0, theta.shape[0], self.jacobian_chunk):
            th = theta[start : start + self.jacobian_chunk]
            ix = index[start : start + self.jacobian_chunk]
            basis = torch.eye(n_par, dtype=theta.dtype, device=theta.device)[:, None, :].expand(n_par, th.shape[0], n_par)

            def column(tangent, th=th, ix=ix):
                return torch.func.jvp(lambda t: fn(t, ix), (th,), (tangent,))

            value, jac = torch.func.vmap(column, out_dims=(None, 0))(basis)
            values.append(value)
            jacobians.append(jac.permute(1, 2, 0))
        return torch.cat(values), torch.cat(jacobians)

    def residuals_and_jacobian(self, theta: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        return self._forward_jacobian(self.residuals, theta, index)

    def fisher(self, theta: Tensor, index: Tensor) -> Tensor:
        """Fisher information ``J_m^T diag(w) J_m`` (b, P, P) of the model at ``theta``."""
        rows = self._rows(index)

        def flat_model(t, ix):
            m = self.model_images(t, ix)
            return m.reshape(m.shape[0], -1)

        model, jac = self._forward_jacobian(flat_model, theta, index)
        w = self.likelihood.fisher_weights(
            self.data[rows].reshape(model.shape), model, self.sigma[rows].reshape(model.shape), self.weight[index].reshape(model.shape)
        )
        jac = jac.double()
        return torch.einsum("bmp,bm,bmq->bpq", jac, w.double(), jac)
