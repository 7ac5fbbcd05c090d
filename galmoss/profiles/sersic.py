"""The Sersic profile (and de Vaucouleurs, its n = 4 case)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from ..params import ParamSpec, Role
from .base import EllipticalProfile, _GEOMETRY_SPECS, box_area_factor
from .special import exp_limit, sersic_b, sersic_b_and_slope

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
        # exp(log(x) / n), not pow: the same (r/r_e)^(1/n) at a fraction of pow's cost
        u = torch.exp(torch.log(r / v["eff_r"]) / n)
        return torch.exp((log_amp - b * (u - 1.0)).clamp_min(-exp_limit(u.dtype)))

    def radial_derivatives(self, r: Tensor, v: Mapping[str, Tensor], slots: list[str]):
        """``radial`` at ``r``, its derivatives with respect to ``slots`` at fixed ``r``, and d/dr.

        Analytic, for the Jacobian (see :meth:`Renderer.spectrum_and_shape_derivatives`):
        forward mode through this function costs ten times its arithmetic in
        torch 2.x (every operation with a constant goes through a Python
        fallback). Returns None -- use forward mode -- for a subclass that
        changes the profile, boxy isophotes, or a slot it does not know.
        """
        kind = type(self)
        if not (kind.radial is Sersic.radial and kind.profile_function is Sersic.profile_function
                and kind.log_circular_integral is Sersic.log_circular_integral
                and kind._index in (Sersic._index, DeVaucouleurs._index)):
            return None
        known = {"eff_r", "pa", "axis_r"} | ({"ser_n"} if kind._index is Sersic._index else set())
        if not set(slots) <= known or "box" in v and bool((v["box"] != 0).any()):
            return None
        n = self._index(v)
        b, db = sersic_b_and_slope(n)
        re, q = v["eff_r"], v["axis_r"]
        log_amp = (
            -0.4 * math.log(10.0) * v[self.amplitude_parameter]
            - torch.log(q)
            - self.log_circular_integral(v, b)
        )  # (the box-area factor is 1 for elliptical isophotes)
        log_ratio = torch.log(r / re)
        u = torch.exp(log_ratio / n)
        brightness = torch.exp((log_amp - b * (u - 1.0)).clamp_min(-exp_limit(u.dtype)))
        bu = brightness * u  # I (r/re)^(1/n)
        out = []
        for slot in slots:
            if slot == "eff_r":  # d log I / d re = -2/re + b u / (n re)
                out.append(brightness * (-2.0 / re) + bu * (b / (n * re)))
            elif slot == "ser_n":
                # d log(circular integral) / dn = 1/n + b' - 2 ln b - 2 n b'/b + 2 psi(2n)
                d_log_ci = 1.0 / n + db - 2.0 * torch.log(b) - 2.0 * n * db / b + 2.0 * torch.digamma(2.0 * n)
                out.append(brightness * (db - d_log_ci) + bu * (-db + (b / (n * n)) * log_ratio))
            elif slot == "axis_r":
                out.append(brightness * (-1.0 / q))
            else:  # "pa": the profile function does not depend on it
                out.append(torch.zeros_like(brightness))
        slope = bu * (-b / n) / r
        return brightness, out, slope


class DeVaucouleurs(Sersic):
    """De Vaucouleurs profile: a Sersic profile with n = 4 (parameters as Sersic, no ser_n)."""

    parameter_specs = {k: s for k, s in Sersic.parameter_specs.items() if k != "ser_n"}

    def __init__(self, cen_x=None, cen_y=None, pa=None, axis_r=None, eff_r=None, mag=None, box=None):
        EllipticalProfile.__init__(self, cen_x, cen_y, pa, axis_r, box, eff_r=eff_r, mag=mag)

    def _index(self, v: Mapping[str, Tensor]) -> Tensor:
        return torch.full_like(v["eff_r"], 4.0)
