"""GalSim mocks written as GALFIT would be given them: FITS files and feedmes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

from .galsim_mocks import GSPARAMS, draw, galsim, galsim_sersic, moffat_psf, psf_image

ZP = 25.0
SKY_SIGMA = 0.02


def sersic_feedme(name: str, *, image: str, block: str, sigma="none", psf="psf.fits", mask="none", constraints="none",
                  region: str = "", comps: str, mode: int = 0, sampling: int = 1) -> str:
    return f"""
# galmoss test feedme {name}
A) {image}          # Input data image (FITS file)
B) {block}          # Output data image block
C) {sigma}          # Sigma image name
D) {psf}            # Input PSF image
E) {sampling}       # PSF fine sampling factor
F) {mask}           # Bad pixel mask
G) {constraints}    # constraints
H) {region}         # Image region to fit
I) 50 50            # convolution box
J) {ZP}             # zero point
K) 0.1 0.1          # plate scale
O) regular          # display
P) {mode}           # mode
{comps}
"""


def sersic_block(k, x, y, mag, re, n, q, pa, fit="1") -> str:
    return f"""
# Object number: {k}
 0) sersic
 1) {x:.3f} {y:.3f} {fit} {fit}
 3) {mag:.3f} {fit}
 4) {re:.3f} {fit}
 5) {n:.3f} {fit}
 9) {q:.3f} {fit}
10) {pa:.3f} {fit}
 Z) 0
"""


def expdisk_block(k, x, y, mag, rs, q, pa) -> str:
    return f"""
# Component number: {k}
 0) expdisk
 1) {x:.3f}\t{y:.3f}\t1 1
 3) {mag:.3f} 1
 4) {rs:.3f} 1
 9) {q:.3f} 1
10) {pa:.3f} 1
 Z) 0
"""


def sky_block(k, sky, fit=1) -> str:
    return f"""
 0) sky
 1) {sky:.4f} {fit}
 2) 0.0 0
 3) 0.0 0
 Z) 0
"""


def write_psf(folder: Path, size=25, fwhm=3.0, beta=3.5, oversample=1) -> np.ndarray:
    psf = moffat_psf(beta, fwhm)
    if oversample == 1:
        arr = psf_image(psf, size)
    else:
        arr = psf.drawImage(nx=size, ny=size, scale=1.0 / oversample, method="auto").array.astype(np.float64)
    fits.PrimaryHDU(arr.astype(np.float32)).writeto(folder / "psf.fits", overwrite=True)
    return arr


def observe(profile, shape, rng, sky=0.0, psf_fwhm=3.0) -> np.ndarray:
    clean = draw(profile, shape, moffat_psf(3.5, psf_fwhm))
    return clean + sky + rng.normal(0.0, SKY_SIGMA, shape)


def sersic_truth(rng, cx, cy):
    return dict(x=cx + rng.uniform(-1, 1), y=cy + rng.uniform(-1, 1), mag=rng.uniform(18.0, 19.0),
                re=rng.uniform(3.0, 6.0), n=rng.uniform(1.0, 3.0), q=rng.uniform(0.5, 0.9), pa=rng.uniform(-60, 60))


def galsim_profile(t, shape):
    """The GalSim Sersic of truth ``t`` placed on an image of ``shape`` (1-based centre)."""
    return galsim_sersic(t["n"], t["re"], t["q"], t["pa"], t["x"], t["y"], 10 ** (-0.4 * (t["mag"] - ZP)), shape)


def write_image(path: Path, image: np.ndarray, header: dict | None = None) -> None:
    hdu = fits.PrimaryHDU(image.astype(np.float32))
    for k, v in (header or {}).items():
        hdu.header[k] = v
    hdu.writeto(path, overwrite=True)


def perturbed_start(t, rng):
    return dict(x=t["x"] + 0.5, y=t["y"] - 0.4, mag=t["mag"] + 0.2, re=t["re"] * 1.2, n=t["n"] * 1.2,
                q=min(t["q"] + 0.05, 0.95), pa=t["pa"] + 5.0)


__all__ = ["GSPARAMS", "SKY_SIGMA", "ZP", "expdisk_block", "galsim", "galsim_profile", "observe", "perturbed_start",
           "sersic_block", "sersic_feedme", "sersic_truth", "sky_block", "write_image", "write_psf"]
