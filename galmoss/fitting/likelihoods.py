r"""Likelihoods, written as residuals whose squares sum to ``-2 ln L`` (+ const).

Every likelihood turns data ``d``, model ``m``, noise ``sigma`` and pixel weights
``k`` (the mask: 1 for used pixels, 0 for masked ones; bootstrap resampling
draws other integers) into a residual vector ``r``. The optimisers minimise
``sum(r^2)``, so a Levenberg-Marquardt step is a Gauss-Newton step of the
likelihood, and none of them needs to know which likelihood it fits.

``chi2`` (Gaussian noise, the default)
    :math:`r_i = \sqrt{k_i}\,(d_i - m_i)/\sigma_i`, so
    :math:`\sum r^2 = \sum k_i (d_i - m_i)^2/\sigma_i^2 = \chi^2`.

``poisson`` (Cash 1979 statistic, for images in counts)
    :math:`r_i = \mathrm{sign}(d_i - m_i)\sqrt{2 k_i [m_i - d_i + d_i \ln(d_i/m_i)]}`,
    the Poisson deviance, :math:`C = 2\sum k_i [m_i - d_i \ln m_i] + \text{const}`.
    Data must be counts (>= 0) and the model positive; ``sigma`` is not used.

``student_t`` (robust against unmasked junk; ``nu`` degrees of freedom, 5 by default)
    :math:`r_i = \mathrm{sign}(z_i)\sqrt{k_i(\nu + 1)\ln(1 + z_i^2/\nu)}`,
    :math:`z_i = (d_i - m_i)/\sigma_i`: the negative log-likelihood of a Student-t
    of scale sigma. Pixels far off the model weigh logarithmically, not
    quadratically.

Each also gives the per-pixel weight of its Fisher information,
``F = J_m^T diag(fisher_weight) J_m`` with ``J_m`` the model's Jacobian: what the
covariance-matrix uncertainties invert.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

Tensor = torch.Tensor


class Likelihood:
    """Base class: residuals and Fisher weights of one noise model."""

    name: str = ""

    def residuals(self, data: Tensor, model: Tensor, sigma: Tensor, weight: Tensor) -> Tensor:
        raise NotImplementedError

    def fisher_weights(self, data: Tensor, model: Tensor, sigma: Tensor, weight: Tensor) -> Tensor:
        raise NotImplementedError

    def residuals_and_slope(self, data: Tensor, model: Tensor, sigma: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
        """Residuals and their derivative with respect to the model, pixel by pixel (forward mode)."""
        return torch.func.jvp(lambda m: self.residuals(data, m, sigma, weight), (model,), (torch.ones_like(model),))


@dataclass(frozen=True)
class Chi2(Likelihood):
    """Gaussian noise of known sigma."""

    name: str = "chi2"

    def residuals(self, data, model, sigma, weight):
        return (data - model) * torch.sqrt(weight) / sigma

    def residuals_and_slope(self, data, model, sigma, weight):
        scale = torch.sqrt(weight) / sigma
        return (data - model) * scale, -scale

    def fisher_weights(self, data, model, sigma, weight):
        return weight / (sigma * sigma)


@dataclass(frozen=True)
class Poisson(Likelihood):
    """Poisson counts (Cash statistic)."""

    name: str = "poisson"

    def residuals(self, data, model, sigma, weight):
        deviance = 2.0 * (torch.special.xlogy(data, data) - torch.special.xlogy(data, model) - data + model)
        return torch.sign(data - model) * torch.sqrt((weight * deviance).clamp_min(1e-30))

    def fisher_weights(self, data, model, sigma, weight):
        return weight / model.clamp_min(1e-30)


@dataclass(frozen=True)
class StudentT(Likelihood):
    """Student-t noise of scale sigma and ``nu`` degrees of freedom."""

    nu: float = 5.0
    name: str = "student_t"

    def residuals(self, data, model, sigma, weight):
        z = (data - model) / sigma
        u = z * z / self.nu
        # log1p(u)/u -> 1 as u -> 0: keeps r ~ z sqrt((nu+1)/nu) smooth through z = 0
        ratio = torch.where(u < 1e-6, 1.0 - 0.5 * u, torch.log1p(u) / u.clamp_min(1e-30))
        return z * torch.sqrt(weight * (self.nu + 1.0) / self.nu * ratio)

    def fisher_weights(self, data, model, sigma, weight):
        return weight * (self.nu + 1.0) / ((self.nu + 3.0) * sigma * sigma)


def get_likelihood(name: str | Likelihood) -> Likelihood:
    """The likelihood called ``name`` ("chi2", "poisson", "student_t")."""
    if isinstance(name, Likelihood):
        return name
    table = {"chi2": Chi2(), "poisson": Poisson(), "student_t": StudentT(), "cash": Poisson()}
    try:
        return table[name.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"likelihood={name!r}: choose one of 'chi2', 'poisson', 'student_t'") from None
