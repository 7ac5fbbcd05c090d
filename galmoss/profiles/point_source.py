"""An unresolved source: the PSF, scaled and shifted."""

from __future__ import annotations

import torch

from ..params import ParamSpec, Role
from .base import LightProfile

Tensor = torch.Tensor


class PointSource(LightProfile):
    """A point source (star, AGN): ``10**(-0.4 (mag - M0)) * PSF(x - cen_x, y - cen_y)``.

    The PSF is shifted by sub-pixel amounts through its band-limited (sinc)
    interpolation, done exactly as a phase ramp in Fourier space, which is the
    same interpretation of the sampled PSF that every other profile is convolved
    with. A point source needs a PSF.

    Parameters
    ----------
    cen_x, cen_y
        Position, 1-based pixels.
    mag
        Total magnitude.
    """

    parameter_specs = {
        "cen_x": ParamSpec(Role.POSITION, description="x of the source, 1-based pixels"),
        "cen_y": ParamSpec(Role.POSITION, description="y of the source, 1-based pixels"),
        "mag": ParamSpec(Role.MAGNITUDE, description="total magnitude"),
    }

    def __init__(self, cen_x=None, cen_y=None, mag=None):
        super().__init__()
        self._check_parameters({"cen_x": cen_x, "cen_y": cen_y, "mag": mag})
        self.cen_x = cen_x
        self.cen_y = cen_y
        self.mag = mag

    def total_flux(self, v) -> Tensor:
        return torch.pow(10.0, -0.4 * v["mag"])

    def image_via_grid_from(self, grid, mode: str = "updating_model") -> Tensor:
        raise NotImplementedError(
            "PointSource has no surface brightness to sample on a grid: it is the PSF itself. "
            "Render it with gm.render(..., psf=...) or fit it with a Dataset that has a PSF."
        )
