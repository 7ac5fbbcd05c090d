"""The sky background: a plane, not blurred by the PSF."""

from __future__ import annotations

import torch

from ..params import ParamSpec, Role
from .base import LightProfile

Tensor = torch.Tensor


class Sky(LightProfile):
    """Flat sky with optional gradients, ``sky_bg + grad_x (x - x_c) + grad_y (y - y_c)``.

    ``(x_c, y_c)`` is the centre of the cutout, ``((W + 1)/2, (H + 1)/2)`` in 1-based
    pixels. The sky is added after PSF convolution.

    Parameters
    ----------
    sky_bg
        Sky level at the cutout centre (image units per pixel).
    grad_x, grad_y
        Gradients per pixel along x and y; leave out for a flat sky.
    """

    parameter_specs = {
        "sky_bg": ParamSpec(Role.REAL, description="sky level"),
        "grad_x": ParamSpec(Role.REAL, description="sky gradient along x per pixel"),
        "grad_y": ParamSpec(Role.REAL, description="sky gradient along y per pixel"),
    }

    def __init__(self, sky_bg=None, grad_x=None, grad_y=None):
        super().__init__()
        self._check_parameters({"sky_bg": sky_bg, "grad_x": grad_x, "grad_y": grad_y})
        self.psf = False
        self.sky_bg = sky_bg
        self.grad_x = grad_x
        self.grad_y = grad_y

    def missing_parameters(self) -> list[str]:
        return [] if self.sky_bg is not None else ["sky_bg"]

    def image_via_grid_from(self, grid, mode: str = "updating_model") -> Tensor:
        y, x = grid[0], grid[1]
        h, w = y.shape[-2], y.shape[-1]
        image = self.sky_bg.value(mode) + torch.zeros_like(x)
        if self.grad_x is not None:
            image = image + self.grad_x.value(mode) * (x - (w + 1) / 2.0)
        if self.grad_y is not None:
            image = image + self.grad_y.value(mode) * (y - (h + 1) / 2.0)
        return image
