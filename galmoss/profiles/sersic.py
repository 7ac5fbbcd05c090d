"""The Sersic profile (and de Vaucouleurs, its n = 4 case)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from ..params import ParamSpec, Role
from .base import EllipticalProfile, _GEOMETRY_SPECS, box_area_factor
from .special import sersic_b

Tensor = torch.Tensor


class Sersic(EllipticalProfile):
    r"""Sersic profile, :math:`I(r) = I_e \exp\{-b_n[(r/r_e)^{1/n} - 1]\}`.

    Parameters
    ----------
    cen_x, cen_y
        Centre, 1-based pixel coordinates.
    pa
        Position angle of the major axis, degrees from +y towards -x.
    axis_r
        Axis ratio b/a in (0, 1].
    eff_r
        Half-light radius along the major axis (pixels, or arcsec with ``pix_scale``).
    mag
        Total magnitude (integral to infinity), ``M0 - 2.5 log10(flux)``.
    ser_n
        Sersic index, 0 < n <= 20.
    box
        GALFIT boxiness C0 (default 0, fixed).
    """

    parameter_specs = {
        **_GEOMETRY_SPECS,
        "eff_r": ParamSpec(Role.LENGTH, domain=(0.0, math.inf), description="half-light radius along the major axis"),
        "mag": ParamSpec(Role.MAGNITUDE, description="total magnitude"),
        "ser_n": ParamSpec(
            Role.POSITIVE, domain=(0.0, 20.0), upper_closed=True, fit_bounds=(0.1, 20.0), default=2.0,
            description="Sersic index"
        ),
    }

    def __init__(self, cen_x=None, cen_y=None, pa=None, axis_r=None, eff_r=None, mag=None, ser_n=None, box=None):
        super().__init__(cen_x, cen_y, pa, axis_r, box, eff_r=eff_r, mag=mag, ser_n=ser_n)

    def _index(self, v: Mapping[str, Tensor]) -> Tensor:
        return v["ser_n"]

    def profile_function(self, r: Tensor, v: Mapping[str, Tensor]) -> Tensor:
        n = self._index(v)
        b = sersic_b(n)
        return torch.exp(-b * (torch.pow(r / v["eff_r"], 1.0 / n) - 1.0))

    def log_circular_integral(self, v: Mapping[str, Tensor], b: Tensor | None = None) -> Tensor:
        """log of ``2 pi r_e^2 n e^b b^(-2n) Gamma(2n)`` (``b`` = b_n if already known)."""
        n = self._index(v)
        b = sersic_b(n) if b is None else b
        re = v["eff_r"]
        return math.log(2.0 * math.pi) + 2.0 * torch.log(re) + torch.log(n) + b - 2.0 * n * torch.log(b) + torch.lgamma(2.0 * n)

    def circular_integral(self, v: Mapping[str, Tensor]) -> Tensor:
        return torch.exp(self.log_circular_integral(v))

    def radial(self, r: Tensor, v: Mapping[str, Tensor]) -> Tensor:
        # In log space: e^b and b^(-2n) Gamma(2n) over- and underflow float32 for large n.
        n = self._index(v)
        b = sersic_b(n)
        log_amp = (
            -0.4 * math.log(10.0) * v[self.amplitude_parameter]
            - torch.log(v["axis_r"])
            - self.log_circular_integral(v, b)
            - torch.log(box_area_factor(2.0 + v["box"]))
        )
        return torch.exp(log_amp - b * (torch.pow(r / v["eff_r"], 1.0 / n) - 1.0))


class DeVaucouleurs(Sersic):
    """De Vaucouleurs profile: a Sersic profile with n = 4 (parameters as Sersic, no ser_n)."""

    parameter_specs = {k: s for k, s in Sersic.parameter_specs.items() if k != "ser_n"}

    def __init__(self, cen_x=None, cen_y=None, pa=None, axis_r=None, eff_r=None, mag=None, box=None):
        EllipticalProfile.__init__(self, cen_x, cen_y, pa, axis_r, box, eff_r=eff_r, mag=mag)

    def _index(self, v: Mapping[str, Tensor]) -> Tensor:
        return torch.full_like(v["eff_r"], 4.0)
