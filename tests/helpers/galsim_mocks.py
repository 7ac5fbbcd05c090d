"""GalSim renderings used as the independent truth of the renderer tests.

GalSim is the reference renderer of the field. Conventions mapped here:
GalSim centres a drawn profile on the image's true centre, which is pixel
(W/2 + 0.5, H/2 + 0.5) in 1-based coordinates, as ours; its shear angle ``beta``
is measured from +x counter-clockwise, ours (``pa``) from +y, so beta = pa + 90;
its half-light radius is circularised, ours is along the major axis,
hlr = r_e * sqrt(q).
"""

from __future__ import annotations

import numpy as np

galsim = __import__("pytest").importorskip("galsim")

GSPARAMS = galsim.GSParams(folding_threshold=1e-3, maxk_threshold=1e-4, maximum_fft_size=16384)


def galsim_sersic(n, re, q, pa, cen_x, cen_y, flux, shape):
    """A GalSim Sersic profile placed at 1-based (cen_x, cen_y) on an image of ``shape``."""
    h, w = shape
    prof = galsim.Sersic(n=n, half_light_radius=re * np.sqrt(q), flux=flux, gsparams=GSPARAMS)
    prof = prof.shear(q=q, beta=(pa + 90.0) * galsim.degrees)
    return prof.shift(cen_x - (w / 2 + 0.5), cen_y - (h / 2 + 0.5))


def moffat_psf(beta, fwhm):
    return galsim.Moffat(beta=beta, fwhm=fwhm, gsparams=GSPARAMS)


def draw(prof, shape, psf=None):
    """GalSim's pixel-integrated image of ``prof`` (convolved with ``psf`` if given)."""
    h, w = shape
    if psf is not None:
        prof = galsim.Convolve(prof, psf, gsparams=GSPARAMS)
    return prof.drawImage(nx=w, ny=h, scale=1.0, method="auto").array.astype(np.float64)


def psf_image(psf, size):
    """The PSF as a user measures it from stars: pixel-convolved, sampled, size x size."""
    return psf.drawImage(nx=size, ny=size, scale=1.0, method="auto").array.astype(np.float64)
