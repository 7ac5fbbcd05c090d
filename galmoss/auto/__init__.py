"""Automatic fitting of real cutouts: masks, sky, starts, PSFs, quality flags.

Pure functions on arrays, which :class:`galmoss.Dataset` and the fitting
pipeline call:

* :func:`auto_mask` (per cutout, photutils): mask every source but the target,
  measure the sky and its sigma from sky pixels, the target's segment;
* :func:`galmoss.fitting.measure.estimate_starts` (per batch): starts from the
  target's segment; :func:`galmoss.fitting.starts.component_starts` splits them
  between components;
* :func:`psf_from_fwhm` (per batch): a Moffat or Gaussian PSF from a FWHM;
* :func:`quality_flags` (per batch, after a fit): flags that never hide a bad fit.

photutils is needed only by :func:`auto_mask` (``pip install 'galmoss[auto]'``).
"""

from .psf import psf_from_fwhm
from .quality import CHI2_SIGMAS, quality_flags
from .segment import AutoMaskResult, auto_mask, psf_half_light_radius, select_neighbours

__all__ = ["CHI2_SIGMAS", "AutoMaskResult", "auto_mask", "psf_from_fwhm", "psf_half_light_radius", "quality_flags",
           "select_neighbours"]
