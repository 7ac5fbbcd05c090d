"""A pixelised component: a free h x w image (K = h w values per galaxy), PSF-convolved.

The non-parametric residual that GalfitM and AstroPhot offer: every map pixel
is a free flux, so the component can take any shape the data ask for (a bar, a
tidal feature, a star-forming clump), next to analytic profiles.
"""

from __future__ import annotations

import numpy as np
import torch

from ..params import ParamSpec, Role
from .base import LightProfile

Tensor = torch.Tensor


class PixelMap(LightProfile):
    """A free image of ``shape = (h, w)`` map pixels, each ``scale x scale`` data pixels, at a centre.

    ``pixels`` is a vector parameter of K = h w values per galaxy (row-major:
    map row 0 is the lowest y), each the total flux of one map pixel (image
    units), spread evenly over its ``scale x scale`` data pixels; the
    component's total flux is ``sum(pixels)``. The map is convolved with the
    PSF like any luminous component.

    Parameters
    ----------
    pixels
        ``gm.p(values, dim="2d")`` with values of shape (K,) or (N, K); any
        real numbers (a residual map may be negative), or give a ``value_range``.
    shape
        ``(h, w)`` map pixels.
    cen_x, cen_y
        The map's centre in 1-based data pixels (fixed: a map has no smooth
        dependence on its position). Its edges are put on the data-pixel
        edges nearest to ``centre -/+ scale * (w, h) / 2``, so every data pixel
        lies wholly in one map pixel or outside the map.
    scale
        Data pixels per map pixel along each axis (an integer >= 1: the map's
        grid is the data grid or a coarser one).

    Raises
    ------
    ValueError
        ``shape`` or ``scale`` not positive integers, a free centre, or (when
        the model is built) ``pixels`` not holding h w values per galaxy.
    """

    parameter_specs = {
        "pixels": ParamSpec(Role.REAL, description="flux of each map pixel (vector, h*w per galaxy)"),
        "cen_x": ParamSpec(Role.POSITION, fit_default=False, description="x of the map centre, 1-based pixels"),
        "cen_y": ParamSpec(Role.POSITION, fit_default=False, description="y of the map centre, 1-based pixels"),
    }

    def __init__(self, pixels=None, shape=None, cen_x=None, cen_y=None, scale: int = 1) -> None:
        super().__init__()
        self._check_parameters({"pixels": pixels, "cen_x": cen_x, "cen_y": cen_y})
        if shape is None or len(tuple(shape)) != 2 or not all(
            isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1 for n in shape
        ):
            raise ValueError(f"PixelMap(shape={shape!r}): shape must be (h, w), two integers >= 1")
        if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
            raise ValueError(f"PixelMap(scale={scale!r}): scale must be an integer >= 1 (data pixels per map pixel)")
        for slot, prm in (("cen_x", cen_x), ("cen_y", cen_y)):
            if prm is not None and prm.fit:
                raise ValueError(
                    f"PixelMap({slot}=...): the centre of a pixel map is fixed; give gm.p(value, fit=False)"
                )
        self.pixels = pixels
        self.cen_x = cen_x
        self.cen_y = cen_y
        self.map_shape = (int(shape[0]), int(shape[1]))
        self.scale = int(scale)

    def expected_size(self, slot: str) -> int | None:
        return self.map_shape[0] * self.map_shape[1] if slot == "pixels" else None

    def missing_parameters(self) -> list[str]:
        return [] if self.pixels is not None else ["pixels"]

    def image_via_grid_from(self, grid, mode: str = "updating_model") -> Tensor:
        y, x = grid[0], grid[1]
        v = self.pixels.value(mode)  # (B, K)
        h, w = self.map_shape
        s = self.scale
        cx = self.cen_x.value(mode).reshape(-1, 1, 1) if self.cen_x is not None else None
        cy = self.cen_y.value(mode).reshape(-1, 1, 1) if self.cen_y is not None else None
        if cx is None or cy is None:
            raise ValueError("PixelMap needs cen_x and cen_y (gm.p(value, fit=False)): where the map is placed")
        # lower-left map edge on the nearest data-pixel edge (pixel edges at k + 0.5)
        x0 = torch.round(cx.detach() - s * w / 2.0 - 0.5) + 0.5
        y0 = torch.round(cy.detach() - s * h / 2.0 - 0.5) + 0.5
        ix = torch.floor((x - x0) / s).long()
        iy = torch.floor((y - y0) / s).long()
        inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
        flat = (iy.clamp(0, h - 1) * w + ix.clamp(0, w - 1))  # (B or 1, H, W)
        b = v.shape[0]
        flat = torch.broadcast_to(flat, (b,) + tuple(x.shape[-2:])).reshape(b, -1)
        image = torch.gather(v, 1, flat).reshape((b,) + tuple(x.shape[-2:]))
        return image * inside.to(v.dtype) / float(s * s)
