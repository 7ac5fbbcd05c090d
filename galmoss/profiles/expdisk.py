"""The exponential disk."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from ..params import ParamSpec, Role
from .base import EllipticalProfile, _GEOMETRY_SPECS

Tensor = torch.Tensor


class ExpDisk(EllipticalProfile):
    r"""Exponential disk, :math:`I(r) = I_0 \exp(-r / h)`.

    Parameters
    ----------
    cen_x, cen_y, pa, axis_r, box
        Geometry, as for :class:`~galmoss.lp.Sersic`.
    mag
        Total magnitude.
    scale_l
        Scale length ``h`` along the major axis (pixels); r_e = 1.678 h.
    """

    parameter_specs = {
        **_GEOMETRY_SPECS,
        "mag": ParamSpec(Role.MAGNITUDE, description="total magnitude"),
        "scale_l": ParamSpec(Role.LENGTH, domain=(0.0, math.inf), description="scale length along the major axis", start_scale=1.0 / 1.678),
    }

    def __init__(self, cen_x=None, cen_y=None, pa=None, axis_r=None, mag=None, scale_l=None, box=None):
        super().__init__(cen_x, cen_y, pa, axis_r, box, mag=mag, scale_l=scale_l)

    def profile_function(self, r: Tensor, v: Mapping[str, Tensor]) -> Tensor:
        return torch.exp(-r / v["scale_l"])

    def circular_integral(self, v: Mapping[str, Tensor]) -> Tensor:
        return 2.0 * math.pi * v["scale_l"] ** 2
