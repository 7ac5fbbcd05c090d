"""GalSim mocks of one galaxy seen in several bands, at different pixel scales and PSFs.

The galaxy is defined on the sky (arcsec) and drawn by GalSim in each band at
that band's pixel scale, centred on the cutout's centre, with a Moffat PSF of
the band's FWHM (arcsec); the PSF image holds the pixel response, as a star's.
"""

from __future__ import annotations

import numpy as np

galsim = __import__("pytest").importorskip("galsim")

M0 = 30.0


def sersic_bands(bands: dict, *, n=1.5, q=0.6, pa=30.0, re_arcsec=1.2, dx=0.0, dy=0.0, count=1, seed=0):
    """Images, sigmas and PSFs (dicts by band) of ``count`` noise realisations of one Sersic galaxy.

    ``bands``: ``{name: dict(scale=arcsec/px, size=pixels, fwhm=arcsec, mag=..., sigma=noise, re=arcsec or None)}``;
    a band's ``re`` overrides ``re_arcsec`` (a size that varies with wavelength), its ``turn`` (degrees) turns
    the band's pixel grid counter-clockwise against the sky frame of ``pa``, ``dx`` and ``dy`` (GalSim rotates
    the galaxy, offset included, by that angle about the cutout centre). ``dx``, ``dy``: offset of the galaxy
    from the cutout centre in arcsec (along x and y).
    """
    rng = np.random.default_rng(seed)
    images, sigmas, psfs = {}, {}, {}
    for name, b in bands.items():
        re = b.get("re") or re_arcsec
        flux = 10 ** (-0.4 * (b["mag"] - M0))
        gal = galsim.Sersic(n=n, half_light_radius=re * np.sqrt(q), flux=flux)
        gal = gal.shear(q=q, beta=(pa + 90.0) * galsim.degrees).shift(dx, dy)
        if b.get("turn"):
            gal = gal.rotate(b["turn"] * galsim.degrees)
        psf = galsim.Moffat(beta=3.5, fwhm=b["fwhm"])
        size, scale = b["size"], b["scale"]
        clean = galsim.Convolve(gal, psf).drawImage(nx=size, ny=size, scale=scale).array.astype(np.float64)
        # a stamp 6.6 arcsec wide: a Moffat's wings beyond it hold < 0.3 % of its light (a narrower stamp,
        # normalised to unit sum, makes galaxies brighter in the model than in the data)
        psf_size = 2 * int(3.3 / scale) + 1
        kernel = psf.drawImage(nx=psf_size, ny=psf_size, scale=scale).array.astype(np.float64)
        images[name] = clean[None] + rng.normal(0.0, b["sigma"], (count, size, size))
        sigmas[name] = np.full((count, size, size), float(b["sigma"]))
        psfs[name] = kernel / kernel.sum()
    return images, sigmas, psfs


def bulge_disk_bands(bands: dict, *, bulge_re=0.5, disk_re=1.6, pa=30.0, count=1, seed=0):
    """A de Vaucouleurs bulge (q 0.8) plus an exponential disk (q 0.6) in several bands, as :func:`sersic_bands`.

    ``bands``: ``{name: dict(scale=, size=, fwhm=, bulge=mag, disk=mag, sigma=)}``; sizes in arcsec.
    """
    rng = np.random.default_rng(seed)
    images, sigmas, psfs = {}, {}, {}
    for name, b in bands.items():
        parts = []
        for n, re, q, mag in ((4.0, bulge_re, 0.8, b["bulge"]), (1.0, disk_re, 0.6, b["disk"])):
            gal = galsim.Sersic(n=n, half_light_radius=re * np.sqrt(q), flux=10 ** (-0.4 * (mag - M0)))
            parts.append(gal.shear(q=q, beta=(pa + 90.0) * galsim.degrees))
        psf = galsim.Moffat(beta=3.5, fwhm=b["fwhm"])
        size, scale = b["size"], b["scale"]
        clean = galsim.Convolve(parts[0] + parts[1], psf).drawImage(nx=size, ny=size, scale=scale).array
        psf_size = 2 * int(3.3 / scale) + 1
        kernel = psf.drawImage(nx=psf_size, ny=psf_size, scale=scale).array.astype(np.float64)
        images[name] = clean[None] + rng.normal(0.0, b["sigma"], (count, size, size))
        sigmas[name] = np.full((count, size, size), float(b["sigma"]))
        psfs[name] = kernel / kernel.sum()
    return images, sigmas, psfs


def neighbour_bands(bands: dict, *, dx: float, dy: float, re=0.5, q=0.9):
    """Clean images (a dict by band) of a round exponential neighbour ``dx``, ``dy`` arcsec from the centre.

    ``bands``: as :func:`sersic_bands` (``turn`` included), with ``nb`` the neighbour's magnitude in each band.
    """
    out = {}
    for name, b in bands.items():
        gal = galsim.Exponential(half_light_radius=re, flux=10 ** (-0.4 * (b["nb"] - M0))).shear(q=q, beta=0.0 *
                                                                                                   galsim.degrees)
        psf = galsim.Moffat(beta=3.5, fwhm=b["fwhm"])
        gal = gal.shift(dx, dy)
        if b.get("turn"):  # the band's grid turned, as in sersic_bands
            gal = gal.rotate(b["turn"] * galsim.degrees)
        out[name] = galsim.Convolve(gal, psf).drawImage(
            nx=b["size"], ny=b["size"], scale=b["scale"]).array.astype(np.float64)
    return out
