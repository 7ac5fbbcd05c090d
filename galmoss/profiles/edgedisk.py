"""GALFIT's edge-on disk: van der Kruit & Searle's disk seen exactly edge-on."""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache

import numpy as np
import torch

from ..params import ParamSpec, Role
from .base import LightProfile

Tensor = torch.Tensor

#: Gauss-Legendre points per pixel side of the pixel means. sech^2(z/h_s) has its
#: nearest poles at z = +-i pi h_s / 2, so for h_s >= 0.5 px six points reach
#: 1e-6 of the peak (3e-5 at h_s = 0.3 px); the weak u^2 ln u kink of u K1(u) at the
#: centre is what is left (measured in tests/test_galfit_profiles.py).
SAMPLES_PER_SIDE = 6


@lru_cache(maxsize=16)
def _pixel_nodes(n: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """Offsets in (-1/2, 1/2) and weights (summing to 1) of an n-point Gauss-Legendre rule."""
    t, w = np.polynomial.legendre.leggauss(n)
    return (torch.as_tensor(t / 2.0, dtype=dtype, device=device),
            torch.as_tensor(w / 2.0, dtype=dtype, device=device))


class _XK1(torch.autograd.Function):
    """``u K1(u)`` (1 at u = 0) with its derivative ``-u K0(u)``, in reverse and forward mode.

    torch's ``modified_bessel_k1`` has no derivative of its own.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(u: Tensor) -> Tensor:
        tiny = 1e-30 if u.dtype == torch.float64 else 1e-12
        safe = u.clamp_min(tiny)
        return torch.where(u > tiny, safe * torch.special.modified_bessel_k1(safe), torch.ones_like(u))

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(inputs[0])
        ctx.save_for_forward(inputs[0])

    @staticmethod
    def _slope(u: Tensor) -> Tensor:
        tiny = 1e-30 if u.dtype == torch.float64 else 1e-12
        safe = u.clamp_min(tiny)
        return torch.where(u > tiny, -safe * torch.special.modified_bessel_k0(safe), torch.zeros_like(u))

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (u,) = ctx.saved_tensors
        return grad * _XK1._slope(u)

    @staticmethod
    def jvp(ctx, tangent: Tensor) -> Tensor:
        (u,) = ctx.saved_tensors
        return tangent * _XK1._slope(u)


def xk1(u: Tensor) -> Tensor:
    """``u K1(u)``, differentiable (``K1`` the modified Bessel function of the second kind)."""
    return _XK1.apply(u)


class EdgeDisk(LightProfile):
    r"""An exponential disk seen edge-on (GALFIT's ``edgedisk``; van der Kruit & Searle 1981):

    .. math::

        I(r, z) = I_0 \frac{|r|}{r_s} K_1\!\left(\frac{|r|}{r_s}\right) \mathrm{sech}^2\!\left(\frac{z}{h_s}\right),

    ``r`` along the disk's major axis (position angle ``pa``), ``z`` across it,
    ``K1`` the modified Bessel function of the second kind. It has no axis ratio:
    the thickness is ``h_s``. The total flux is ``2 pi I_0 r_s h_s``
    (``int_0^inf u K1(u) du = pi/2`` and ``int sech^2 = 2``).

    The profile is not a function of an elliptical radius, so the renderer does
    not draw it through the exact elliptical core. :meth:`image_via_grid_from`
    gives each pixel's mean brightness over its square (``SAMPLES_PER_SIDE``
    Gauss-Legendre points a side, ``pixel_integrated = True``): without a PSF
    that is the model; with a PSF, whose samples already hold the pixel, the
    renderer divides the means by the pixel response in the sampling band (as it
    does for boxy isophotes), which leaves the band-limited samples of the disk.

    Parameters
    ----------
    cen_x, cen_y
        Centre, 1-based pixels.
    pa
        Position angle of the disk's plane, degrees from +y towards -x.
    mag
        Total magnitude.
    scale_h
        Scale height h_s (pixels).
    scale_l
        Scale length r_s along the plane (pixels).
    """

    parameter_specs = {
        "cen_x": ParamSpec(Role.POSITION, description="x of the centre, 1-based pixels"),
        "cen_y": ParamSpec(Role.POSITION, description="y of the centre, 1-based pixels"),
        "pa": ParamSpec(Role.ANGLE, description="position angle of the disk plane, degrees from +y towards -x"),
        "mag": ParamSpec(Role.MAGNITUDE, description="total magnitude"),
        "scale_h": ParamSpec(Role.LENGTH, domain=(0.0, math.inf), description="disk scale height h_s"),
        "scale_l": ParamSpec(Role.LENGTH, domain=(0.0, math.inf), description="disk scale length r_s"),
    }
    amplitude_parameter = "mag"
    #: :meth:`image_via_grid_from` returns pixel means, not point samples (see the class docstring).
    pixel_integrated = True

    def __init__(self, cen_x=None, cen_y=None, pa=None, mag=None, scale_h=None, scale_l=None):
        super().__init__()
        self._check_parameters({"cen_x": cen_x, "cen_y": cen_y, "pa": pa, "mag": mag, "scale_h": scale_h,
                                "scale_l": scale_l})
        self.cen_x = cen_x
        self.cen_y = cen_y
        self.pa = pa
        self.mag = mag
        self.scale_h = scale_h
        self.scale_l = scale_l

    def for_finer_grid(self, factor: int) -> "EdgeDisk":
        """This profile on a grid ``factor`` times finer: the same (lengths and centre are moved by their roles)."""
        return self

    def total_flux(self, v: Mapping[str, Tensor]) -> Tensor:
        """Total flux in image units implied by the amplitude parameter."""
        return torch.pow(10.0, -0.4 * v[self.amplitude_parameter])

    def central_brightness(self, v: Mapping[str, Tensor]) -> Tensor:
        """``I_0``, the brightness at the centre (flux per pixel area)."""
        return self.total_flux(v) / (2.0 * math.pi * v["scale_l"] * v["scale_h"])

    def brightness(self, r: Tensor, z: Tensor, v: Mapping[str, Tensor]) -> Tensor:
        """Surface brightness at offsets ``r`` along and ``z`` across the plane (pixels)."""
        # sech^2(s) = 1 / cosh^2(s), written with exp(-2|s|) so that it cannot overflow
        e = torch.exp(-2.0 * (z / v["scale_h"]).abs())
        return self.central_brightness(v) * xk1(r.abs() / v["scale_l"]) * 4.0 * e / (1.0 + e) ** 2

    def image_via_grid_from(self, grid, mode: str = "updating_model") -> Tensor:
        """Mean brightness over each pixel of ``grid`` (1-based pixel centres), shape (B, H, W)."""
        v = {k: prm.value(mode) for k, prm in self.parameters().items()}
        y, x = grid[0], grid[1]
        t, w = _pixel_nodes(SAMPLES_PER_SIDE, x.dtype, x.device)
        n = t.numel()
        # sub-pixel points: (H, W) -> (H, W, n, n), the batch in front after broadcasting
        ys = y[..., None, None] + t[:, None]
        xs = x[..., None, None] + t[None, :]
        v5 = {k: val.reshape(val.shape[0], 1, 1, 1, 1) for k, val in v.items()}
        dx, dy = xs - v5["cen_x"], ys - v5["cen_y"]
        sin, cos = torch.sin(v5["pa"]), torch.cos(v5["pa"])
        along = -dx * sin + dy * cos
        across = dx * cos + dy * sin
        sb = self.brightness(along, across, v5)
        weights = (w[:, None] * w[None, :]).reshape(1, 1, 1, n, n)
        return (sb * weights).sum(dim=(-2, -1))
