"""User-defined profiles written exactly as the seed shows them."""

from __future__ import annotations

import galmoss as gm


class NewSky(gm.LightProfile):
    """The seed's user-defined sky, verbatim: I = I0 + kx (x - x0) + ky (y - y0)."""

    def __init__(self, sky_0, grad_x, grad_y):
        super().__init__()
        self.psf = False
        self.sky_0 = sky_0
        self.grad_x = grad_x
        self.grad_y = grad_y

    def image_via_grid_from(self, grid, mode="updating_model"):
        return (self.sky_0.value(mode)
                + self.grad_x.value(mode) * (grid[1] - (grid[0].shape[1] + 1) / 2)
                + self.grad_y.value(mode) * (grid[0] - (grid[0].shape[0] + 1) / 2))
