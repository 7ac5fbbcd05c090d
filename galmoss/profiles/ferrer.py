"""The Ferrer profile (bars, lenses)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from ..params import ParamSpec, Role
from .base import EllipticalProfile, _GEOMETRY_SPECS
from .special import log_beta

Tensor = torch.Tensor


class Ferrer(EllipticalProfile):
    r"""Ferrer profile, :math:`I(r) = I_0 [1 - (r/r_{out})^{2-\beta}]^\alpha` inside r_out, 0 outside.

    Parameters
    ----------
    cen_x, cen_y, pa, axis_r, box
        Geometry, as for :class:`~galmoss.lp.Sersic`.
    mag
        Total magnitude.
    trunc_r
        Outer truncation radius r_out along the major axis (pixels).
    trunc_a
        Outer truncation sharpness alpha (> 0).
    trunc_b
        Central slope beta (< 2).
    """

    parameter_specs = {
        **_GEOMETRY_SPECS,
        "mag": ParamSpec(Role.MAGNITUDE, description="total magnitude"),
        "trunc_r": ParamSpec(Role.LENGTH, domain=(0.0, math.inf), description="outer truncation radius", start_scale=2.5),
        "trunc_a": ParamSpec(Role.POSITIVE, domain=(0.0, math.inf), default=2.0, description="outer truncation sharpness alpha"),
        "trunc_b": ParamSpec(Role.REAL, domain=(-math.inf, 2.0), default=0.0, fit_default=False, description="central slope beta"),
    }

    def __init__(self, cen_x=None, cen_y=None, pa=None, axis_r=None, mag=None, trunc_r=None, trunc_a=None, trunc_b=None, box=None):
        super().__init__(cen_x, cen_y, pa, axis_r, box, mag=mag, trunc_r=trunc_r, trunc_a=trunc_a, trunc_b=trunc_b)

    def profile_function(self, r: Tensor, v: Mapping[str, Tensor]) -> Tensor:
        rout = v["trunc_r"]
        u = (r / rout).clamp(max=1.0)
        tiny = 1e-30 if r.dtype == torch.float64 else 1e-30
        base = (1.0 - torch.pow(u, 2.0 - v["trunc_b"])).clamp_min(tiny)
        return torch.where(r < rout, torch.pow(base, v["trunc_a"]), torch.zeros_like(base))

    def circular_integral(self, v: Mapping[str, Tensor]) -> Tensor:
        # 2 pi r_out^2 B(2/(2 - beta), alpha + 1) / (2 - beta)
        two_minus_b = 2.0 - v["trunc_b"]
        return 2.0 * math.pi * v["trunc_r"] ** 2 * torch.exp(log_beta(2.0 / two_minus_b, v["trunc_a"] + 1.0)) / two_minus_b

    def truncation_radius(self, v: Mapping[str, Tensor]) -> Tensor:
        return v["trunc_r"]
