"""The Nuker law (Lauer et al. 1995): a double power law with a break, for galaxy centres."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from ..params import ParamSpec, Role
from .base import EllipticalProfile, _GEOMETRY_SPECS
from .special import log_beta

Tensor = torch.Tensor

_LN2 = math.log(2.0)


class Nuker(EllipticalProfile):
    r"""Nuker profile, as GALFIT writes it:

    .. math::

        I(r) = I_b\, 2^{(\beta - \gamma)/\alpha} \left(\frac{r}{r_b}\right)^{-\gamma}
               \left[1 + \left(\frac{r}{r_b}\right)^\alpha\right]^{(\gamma - \beta)/\alpha},

    ``I_b`` the surface brightness at the break radius ``r_b``; the inner slope is
    ``-gamma``, the outer ``-beta`` and ``alpha`` sets how sharp the break is.
    The total flux is ``I_b q 2^{(beta-gamma)/alpha} (2 pi r_b^2 / alpha)
    B((2 - gamma)/alpha, (beta - 2)/alpha)``: finite only for gamma < 2 < beta.
    This class is parametrised by that total (``mag``), so it needs beta > 2;
    GALFIT's own parametrisation by the surface brightness at r_b, which allows
    any beta, is :class:`galmoss.galfit.profiles.NukerSB`.

    Parameters
    ----------
    cen_x, cen_y, pa, axis_r, box
        Geometry, as for :class:`~galmoss.lp.Sersic`.
    mag
        Total magnitude.
    break_r
        Break radius r_b along the major axis (pixels).
    alpha
        Sharpness of the break (> 0).
    beta
        Outer power-law slope (> 2 for a finite total).
    gamma
        Inner power-law slope (< 2; 0 is a flat core).
    """

    parameter_specs = {
        **_GEOMETRY_SPECS,
        "mag": ParamSpec(Role.MAGNITUDE, description="total magnitude"),
        "break_r": ParamSpec(Role.LENGTH, domain=(0.0, math.inf), description="break radius r_b"),
        "alpha": ParamSpec(Role.POSITIVE, domain=(0.0, math.inf), description="sharpness of the break alpha"),
        "beta": ParamSpec(Role.REAL, domain=(2.0, math.inf), description="outer power-law slope beta"),
        "gamma": ParamSpec(Role.REAL, domain=(-math.inf, 2.0), description="inner power-law slope gamma"),
    }

    def __init__(self, cen_x=None, cen_y=None, pa=None, axis_r=None, mag=None, break_r=None, alpha=None, beta=None,
                 gamma=None, box=None):
        super().__init__(cen_x, cen_y, pa, axis_r, box, mag=mag, break_r=break_r, alpha=alpha, beta=beta, gamma=gamma)

    def profile_function(self, r: Tensor, v: Mapping[str, Tensor]) -> Tensor:
        """The shape normalised to 1 at the break radius."""
        alpha, beta, gamma = v["alpha"], v["beta"], v["gamma"]
        log_u = torch.log(r / v["break_r"])
        # ln(1 + u^alpha) as a softplus: no overflow far out, no loss of digits inside
        return torch.exp((beta - gamma) / alpha * _LN2 - gamma * log_u
                         + (gamma - beta) / alpha * F.softplus(alpha * log_u))

    def circular_integral(self, v: Mapping[str, Tensor]) -> Tensor:
        # with t = (r/r_b)^alpha: int_0^inf u^(1-gamma) (1+u^alpha)^((gamma-beta)/alpha) du
        #   = B((2-gamma)/alpha, (beta-2)/alpha) / alpha
        alpha, beta, gamma = v["alpha"], v["beta"], v["gamma"]
        return (2.0 * math.pi * v["break_r"] ** 2 / alpha
                * torch.exp((beta - gamma) / alpha * _LN2 + log_beta((2.0 - gamma) / alpha, (beta - 2.0) / alpha)))
