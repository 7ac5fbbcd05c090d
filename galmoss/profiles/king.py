"""GALFIT's empirical King profile (globular clusters, dwarf spheroidals)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from ..params import ParamSpec, Role
from .base import EllipticalProfile, _GEOMETRY_SPECS
from .special import gauss_legendre

Tensor = torch.Tensor


class King(EllipticalProfile):
    r"""Empirical King profile (Elson 1999 form used by GALFIT).

    .. math::

        I(r) = I_0 \left[\frac{(1 + (r/r_c)^2)^{-1/\alpha} - (1 + (r_t/r_c)^2)^{-1/\alpha}}
                              {1 - (1 + (r_t/r_c)^2)^{-1/\alpha}}\right]^\alpha,
        \quad r < r_t,

    and zero beyond the tidal radius ``r_t``. ``alpha = 2`` is King (1962).

    Parameters
    ----------
    cen_x, cen_y, pa, axis_r, box
        Geometry, as for :class:`~galmoss.lp.Sersic`.
    mag
        Total magnitude (the profile's integral, computed by 64-point Gauss
        quadrature, exact to rounding).
    core_r
        Core radius r_c along the major axis (pixels).
    trunc_r
        Truncation (tidal) radius r_t along the major axis (pixels).
    pow_n
        Power alpha (> 0; 2 for the classical King profile).
    """

    parameter_specs = {
        **_GEOMETRY_SPECS,
        "mag": ParamSpec(Role.MAGNITUDE, description="total magnitude"),
        "core_r": ParamSpec(Role.LENGTH, domain=(0.0, math.inf), description="core radius", start_scale=0.5),
        "trunc_r": ParamSpec(Role.LENGTH, domain=(0.0, math.inf), description="truncation radius", start_scale=2.5),
        "pow_n": ParamSpec(Role.POSITIVE, domain=(0.0, math.inf), default=2.0, fit_default=False, description="power alpha"),
    }

    def __init__(self, cen_x=None, cen_y=None, pa=None, axis_r=None, mag=None, core_r=None, trunc_r=None, pow_n=None, box=None):
        super().__init__(cen_x, cen_y, pa, axis_r, box, mag=mag, core_r=core_r, trunc_r=trunc_r, pow_n=pow_n)

    @staticmethod
    def _a_t(v: Mapping[str, Tensor]) -> Tensor:
        return torch.pow(1.0 + (v["trunc_r"] / v["core_r"]) ** 2, -1.0 / v["pow_n"])

    def profile_function(self, r: Tensor, v: Mapping[str, Tensor]) -> Tensor:
        alpha = v["pow_n"]
        a_t = self._a_t(v)
        a = torch.pow(1.0 + (r / v["core_r"]) ** 2, -1.0 / alpha)
        base = ((a - a_t) / (1.0 - a_t)).clamp_min(1e-30)
        return torch.where(r < v["trunc_r"], torch.pow(base, alpha), torch.zeros_like(base))

    def circular_integral(self, v: Mapping[str, Tensor]) -> Tensor:
        # With s = (A - A_t)/(1 - A_t), A = (1 + (r/r_c)^2)^(-1/alpha):
        #   2 pi int f r dr = pi r_c^2 alpha (1 - A_t) int_0^1 s^alpha A^(-alpha-1) ds,
        # and s = t^4 makes the integrand smooth at s = 0 for any alpha.
        alpha = v["pow_n"]
        a_t = self._a_t(v)
        t, w = gauss_legendre(64, alpha.dtype, alpha.device)
        s = t**4
        a = a_t[..., None] + (1.0 - a_t[..., None]) * s
        integrand = torch.exp(alpha[..., None] * torch.log(s) - (alpha[..., None] + 1.0) * torch.log(a)) * 4.0 * t**3
        integral = (integrand * w).sum(-1)
        return math.pi * v["core_r"] ** 2 * alpha * (1.0 - a_t) * integral

    def truncation_radius(self, v: Mapping[str, Tensor]) -> Tensor:
        return v["trunc_r"]
