"""The Moffat profile."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from ..params import ParamSpec, Role
from .base import EllipticalProfile, _GEOMETRY_SPECS

Tensor = torch.Tensor


class Moffat(EllipticalProfile):
    r"""Moffat profile, :math:`I(r) = I_0 [1 + (r/r_d)^2]^{-\beta}`.

    ``r_d = fwhm / (2 sqrt(2^(1/beta) - 1))``.

    Parameters
    ----------
    cen_x, cen_y, pa, axis_r, box
        Geometry, as for :class:`~galmoss.lp.Sersic`.
    mag
        Total magnitude (finite for beta > 1).
    con
        Concentration index beta (GALFIT's "powerlaw"), > 1.
    fwhm
        Full width at half maximum along the major axis (pixels).
    """

    parameter_specs = {
        **_GEOMETRY_SPECS,
        "mag": ParamSpec(Role.MAGNITUDE, description="total magnitude"),
        "con": ParamSpec(Role.POSITIVE, domain=(1.0, math.inf), default=3.0, description="power-law index beta (> 1 for a finite flux)"),
        "fwhm": ParamSpec(Role.LENGTH, domain=(0.0, math.inf), description="FWHM along the major axis"),
    }

    def __init__(self, cen_x=None, cen_y=None, pa=None, axis_r=None, mag=None, con=None, fwhm=None, box=None):
        super().__init__(cen_x, cen_y, pa, axis_r, box, mag=mag, con=con, fwhm=fwhm)

    @staticmethod
    def _core_radius(v: Mapping[str, Tensor]) -> Tensor:
        return v["fwhm"] / (2.0 * torch.sqrt(torch.pow(2.0, 1.0 / v["con"]) - 1.0))

    def profile_function(self, r: Tensor, v: Mapping[str, Tensor]) -> Tensor:
        return torch.pow(1.0 + (r / self._core_radius(v)) ** 2, -v["con"])

    def circular_integral(self, v: Mapping[str, Tensor]) -> Tensor:
        return math.pi * self._core_radius(v) ** 2 / (v["con"] - 1.0)
