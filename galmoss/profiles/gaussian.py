"""The elliptical Gaussian."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from ..params import ParamSpec, Role
from .base import EllipticalProfile, _GEOMETRY_SPECS

Tensor = torch.Tensor

_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


class Gaussian(EllipticalProfile):
    r"""Gaussian, :math:`I(r) = I_0 \exp(-r^2 / 2\sigma^2)`, ``sigma = fwhm / 2.3548``.

    Parameters
    ----------
    cen_x, cen_y, pa, axis_r, box
        Geometry, as for :class:`~galmoss.lp.Sersic`.
    mag
        Total magnitude.
    fwhm
        Full width at half maximum along the major axis (pixels).
    """

    parameter_specs = {
        **_GEOMETRY_SPECS,
        "mag": ParamSpec(Role.MAGNITUDE, description="total magnitude"),
        "fwhm": ParamSpec(Role.LENGTH, domain=(0.0, math.inf), description="FWHM along the major axis"),
    }

    def __init__(self, cen_x=None, cen_y=None, pa=None, axis_r=None, mag=None, fwhm=None, box=None):
        super().__init__(cen_x, cen_y, pa, axis_r, box, mag=mag, fwhm=fwhm)

    def profile_function(self, r: Tensor, v: Mapping[str, Tensor]) -> Tensor:
        sigma = v["fwhm"] * _FWHM_TO_SIGMA
        return torch.exp(-0.5 * (r / sigma) ** 2)

    def circular_integral(self, v: Mapping[str, Tensor]) -> Tensor:
        return 2.0 * math.pi * (v["fwhm"] * _FWHM_TO_SIGMA) ** 2
