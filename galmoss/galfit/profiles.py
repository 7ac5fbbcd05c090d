"""King, Ferrer, Nuker and edge-on disk profiles with GALFIT's amplitude: a surface brightness.

GALFIT's parameter 3) of ``king`` and ``ferrer`` is mu(0), the central surface
brightness in mag/arcsec^2, not a total magnitude. These subclasses of
:class:`galmoss.lp.King` and :class:`galmoss.lp.Ferrer` take ``mu0`` instead of
``mag`` (with ``gm.p(mu0, M0=zeropoint)``) and ``pixel_area`` (dx * dy in
arcsec^2, GALFIT's K) line): the central brightness per pixel is
``10**(-0.4 (mu0 - M0)) * pixel_area``, so the total flux is that times the
profile's analytic integral. Fitting mu0 is then exactly what GALFIT fits (not
a conversion after the fact), and its error comes from the same delta method.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from ..params import ParamSpec, Role
from ..profiles.base import box_area_factor
from ..profiles.edgedisk import EdgeDisk
from ..profiles.ferrer import Ferrer
from ..profiles.king import King
from ..profiles.nuker import Nuker

Tensor = torch.Tensor

_MU0 = ParamSpec(Role.MAGNITUDE, description="central surface brightness mu(0), mag/arcsec^2")


class _CentralBrightness:
    amplitude_parameter = "mu0"
    pixel_area: float

    def for_finer_grid(self, factor: int):
        """This profile on a grid ``factor`` times finer (the renderer's PSF oversampling).

        Lengths there are ``factor`` times longer, so the same mu0 needs a pixel
        area ``factor**2`` times smaller to keep the flux.
        """
        import copy

        fine = copy.copy(self)
        fine.pixel_area = self.pixel_area / factor**2
        return fine

    def total_flux(self, v: Mapping[str, Tensor]) -> Tensor:
        central = torch.pow(10.0, -0.4 * v["mu0"]) * self.pixel_area
        return central * v["axis_r"] * self.circular_integral(v) * box_area_factor(2.0 + v["box"])


class KingSB(_CentralBrightness, King):
    """GALFIT's King profile: ``mu0`` (central surface brightness) instead of ``mag``.

    Parameters are those of :class:`galmoss.lp.King`, with ``mu0`` for ``mag``,
    and ``pixel_area`` in arcsec^2 (1 when the plate scale is 1).
    """

    profile_name = "galfit_king"
    parameter_specs = {**{k: s for k, s in King.parameter_specs.items() if k != "mag"}, "mu0": _MU0}

    def __init__(self, cen_x=None, cen_y=None, pa=None, axis_r=None, mu0=None, core_r=None, trunc_r=None, pow_n=None,
                 box=None, pixel_area: float = 1.0):
        King.__init__(self, cen_x, cen_y, pa, axis_r, None, core_r, trunc_r, pow_n, box)
        del self.mag
        self.mu0 = mu0
        self.pixel_area = float(pixel_area)


class FerrerSB(_CentralBrightness, Ferrer):
    """GALFIT's Ferrer profile: ``mu0`` (central surface brightness) instead of ``mag``."""

    profile_name = "galfit_ferrer"
    parameter_specs = {**{k: s for k, s in Ferrer.parameter_specs.items() if k != "mag"}, "mu0": _MU0}

    def __init__(self, cen_x=None, cen_y=None, pa=None, axis_r=None, mu0=None, trunc_r=None, trunc_a=None,
                 trunc_b=None, box=None, pixel_area: float = 1.0):
        Ferrer.__init__(self, cen_x, cen_y, pa, axis_r, None, trunc_r, trunc_a, trunc_b, box)
        del self.mag
        self.mu0 = mu0
        self.pixel_area = float(pixel_area)


class NukerSB(_CentralBrightness, Nuker):
    """GALFIT's Nuker profile: ``mu_b``, the surface brightness at the break radius, instead of ``mag``.

    Parameters are those of :class:`galmoss.lp.Nuker`, with ``mu_b``
    (mag/arcsec^2 at r_b) for ``mag`` and ``pixel_area`` in arcsec^2. The
    profile is 1 at r_b (:meth:`Nuker.profile_function`), so the amplitude is
    the brightness at r_b itself and any beta is drawn: with beta <= 2 (or
    gamma >= 2) the light diverges and :meth:`total_flux` is infinite, which
    is what GALFIT's parametrisation allows and why it does not use a total.
    """

    profile_name = "galfit_nuker"
    amplitude_parameter = "mu_b"
    parameter_specs = {
        **{k: s for k, s in Nuker.parameter_specs.items() if k not in ("mag", "beta")},
        "beta": ParamSpec(Role.REAL, description="outer power-law slope beta (any value: the total may diverge)"),
        "mu_b": ParamSpec(Role.MAGNITUDE, description="surface brightness at the break radius mu(R_b), mag/arcsec^2"),
    }

    def __init__(self, cen_x=None, cen_y=None, pa=None, axis_r=None, mu_b=None, break_r=None, alpha=None, beta=None,
                 gamma=None, box=None, pixel_area: float = 1.0):
        Nuker.__init__(self, cen_x, cen_y, pa, axis_r, None, break_r, alpha, beta, gamma, box)
        del self.mag
        self.mu_b = mu_b
        self.pixel_area = float(pixel_area)

    def amplitude(self, v: Mapping[str, Tensor]) -> Tensor:
        return torch.pow(10.0, -0.4 * v["mu_b"]) * self.pixel_area

    def total_flux(self, v: Mapping[str, Tensor]) -> Tensor:
        finite = (v["beta"] > 2.0) & (v["gamma"] < 2.0)
        # the Beta function's arguments kept positive where the total diverges (no NaN in gradients)
        safe = {**v, "beta": torch.where(finite, v["beta"], torch.full_like(v["beta"], 3.0)),
                "gamma": torch.where(finite, v["gamma"], torch.zeros_like(v["gamma"]))}
        flux = self.amplitude(v) * v["axis_r"] * self.circular_integral(safe) * box_area_factor(2.0 + v["box"])
        return torch.where(finite, flux, torch.full_like(flux, math.inf))


class EdgeDiskSB(EdgeDisk):
    """GALFIT's edge-on disk: ``mu0`` (central surface brightness, mag/arcsec^2) instead of ``mag``.

    Parameters are those of :class:`galmoss.lp.EdgeDisk`, with ``mu0`` for
    ``mag`` and ``pixel_area`` in arcsec^2: the central brightness per pixel is
    ``10**(-0.4 (mu0 - M0)) * pixel_area``, the total flux ``2 pi`` times that
    times ``r_s h_s``.
    """

    profile_name = "galfit_edgedisk"
    amplitude_parameter = "mu0"
    parameter_specs = {**{k: s for k, s in EdgeDisk.parameter_specs.items() if k != "mag"}, "mu0": _MU0}

    def __init__(self, cen_x=None, cen_y=None, pa=None, mu0=None, scale_h=None, scale_l=None, pixel_area: float = 1.0):
        EdgeDisk.__init__(self, cen_x, cen_y, pa, None, scale_h, scale_l)
        del self.mag
        self.mu0 = mu0
        self.pixel_area = float(pixel_area)

    for_finer_grid = _CentralBrightness.for_finer_grid

    def central_brightness(self, v: Mapping[str, Tensor]) -> Tensor:
        return torch.pow(10.0, -0.4 * v["mu0"]) * self.pixel_area

    def total_flux(self, v: Mapping[str, Tensor]) -> Tensor:
        return self.central_brightness(v) * 2.0 * math.pi * v["scale_l"] * v["scale_h"]
