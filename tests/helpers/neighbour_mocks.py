"""Survey-like cutouts drawn by GalSim: a target galaxy, neighbours, stars, NaN patches.

For the automatic-fitting tests and ``benchmarks/validate_auto.py`` (issue 8).
Each cutout: a Sersic target near the centre (n 0.7-4, r_e 3-10 px, q 0.3-1, any
PA, magnitude 16-17.5 at zero point 22.5), one or two neighbours 10-40 px from it
(a Sersic galaxy or, one time in three, a star) with flux ratio neighbour /
target log-uniform in 0.1-5, all convolved with a Moffat PSF (FWHM 3.5 px,
beta 3.5) and the pixel; a flat sky of 0.2; Gaussian noise whose sigma is set by
the target's half-light S/N (log-uniform 30-300); half of the cutouts carry a
NaN patch (a bad column or a chip gap) away from the target's centre.

``hand_masks`` is what a careful human gives: every pixel where a neighbour's
noiseless light exceeds half the noise sigma (the NaN patches need no mask).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .galsim_mocks import GSPARAMS, galsim, psf_image

ZERO_POINT = 22.5
SKY = 0.2


@dataclass
class NeighbourSet:
    images: np.ndarray  # (N, H, W), NaN in the bad patches
    sigmas: np.ndarray  # (N, H, W), the true noise sigma (constant per cutout)
    sky_sigma: np.ndarray  # (N,)
    psf: np.ndarray  # (h, w), pixel-convolved, unit sum
    target_images: np.ndarray  # noiseless target alone, sky not included
    neighbour_images: np.ndarray  # noiseless neighbours alone
    hand_masks: np.ndarray  # (N, H, W) int, 1 on neighbour pixels
    truth: dict  # target: n, re, q, pa, cx, cy, mag, flux
    neighbours: list  # per cutout: list of dicts (kind, x, y, flux, re, n, q, pa)
    snr: np.ndarray


def _sersic(n, re, q, pa, cx, cy, flux, shape):
    h, w = shape
    prof = galsim.Sersic(n=n, half_light_radius=re * np.sqrt(q), flux=flux, gsparams=GSPARAMS)
    prof = prof.shear(q=q, beta=(pa + 90.0) * galsim.degrees)
    return prof.shift(cx - (w / 2 + 0.5), cy - (h / 2 + 0.5))


def _draw(prof, psf, shape):
    h, w = shape
    return galsim.Convolve(prof, psf, gsparams=GSPARAMS).drawImage(nx=w, ny=h, scale=1.0, method="auto").array.astype(float)


def neighbour_mocks(count: int, seed: int = 0, shape=(96, 96), neighbours=(1, 2), nan_fraction=0.5,
                    ratio=(0.1, 5.0), distance=(10.0, 40.0), snr=(30.0, 300.0)) -> NeighbourSet:
    rng = np.random.default_rng(seed)
    h, w = shape
    psf = galsim.Moffat(beta=3.5, fwhm=3.5, gsparams=GSPARAMS)
    psf_img = psf_image(psf, 25)
    psf_img /= psf_img.sum()
    keys = ("n", "re", "q", "pa", "cx", "cy", "mag", "flux")
    truth = {k: np.zeros(count) for k in keys}
    images, targets, others, masks, sigmas, snrs, sky_sigma, all_nb = [], [], [], [], [], [], [], []
    for i in range(count):
        n = float(np.exp(rng.uniform(np.log(0.7), np.log(4.0))))
        re = rng.uniform(3.0, 10.0)
        q = rng.uniform(0.3, 1.0)
        pa = rng.uniform(-90.0, 90.0)
        cx, cy = (w + 1) / 2 + rng.uniform(-1, 1), (h + 1) / 2 + rng.uniform(-1, 1)
        mag = rng.uniform(16.0, 17.5)
        flux = 10 ** (-0.4 * (mag - ZERO_POINT))
        for k, v in zip(keys, (n, re, q, pa, cx, cy, mag, flux)):
            truth[k][i] = v
        target = _draw(_sersic(n, re, q, pa, cx, cy, flux, shape), psf, shape)
        nbs = []
        scene_nb = np.zeros(shape)
        for _ in range(int(rng.integers(neighbours[0], neighbours[1] + 1))):
            d = rng.uniform(*distance)
            phi = rng.uniform(0, 2 * np.pi)
            x, y = cx + d * np.cos(phi), cy + d * np.sin(phi)
            f = flux * float(np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]))))
            if rng.uniform() < 1 / 3:
                prof = galsim.DeltaFunction(flux=f).shift(x - (w / 2 + 0.5), y - (h / 2 + 0.5))
                nb = dict(kind="star", x=x, y=y, flux=f, re=0.0, n=np.nan, q=1.0, pa=0.0)
            else:
                nn, nre, nq, npa = rng.uniform(0.7, 3.0), rng.uniform(2.0, 6.0), rng.uniform(0.3, 1.0), rng.uniform(-90, 90)
                prof = _sersic(nn, nre, nq, npa, x, y, f, shape)
                nb = dict(kind="galaxy", x=x, y=y, flux=f, re=nre, n=nn, q=nq, pa=npa)
            scene_nb += _draw(prof, psf, shape)
            nbs.append(nb)
        # noise from the target's half-light S/N (the fewest pixels holding half its light)
        s = float(np.exp(rng.uniform(np.log(snr[0]), np.log(snr[1]))))
        values = np.sort(target.ravel())[::-1]
        n_half = int(np.searchsorted(np.cumsum(values), 0.5 * target.sum())) + 1
        sig = 0.5 * target.sum() / (s * np.sqrt(n_half))
        image = SKY + target + scene_nb + rng.normal(0.0, sig, shape)
        if rng.uniform() < nan_fraction:
            ph, pw = (int(rng.integers(3, 10)), int(rng.integers(20, 60))) if rng.uniform() < 0.5 else (int(rng.integers(20, 60)), int(rng.integers(3, 10)))
            while True:
                y0, x0 = int(rng.integers(0, h - ph)), int(rng.integers(0, w - pw))
                yy, xx = np.mgrid[y0 : y0 + ph, x0 : x0 + pw]
                if np.min(np.hypot(xx + 1 - cx, yy + 1 - cy)) > 2.0 * re + 4:
                    break
            image[y0 : y0 + ph, x0 : x0 + pw] = np.nan
        images.append(image)
        targets.append(target)
        others.append(scene_nb)
        masks.append((scene_nb > 0.5 * sig).astype(int))
        sigmas.append(np.full(shape, sig))
        sky_sigma.append(sig)
        snrs.append(s)
        all_nb.append(nbs)
    return NeighbourSet(np.array(images), np.array(sigmas), np.array(sky_sigma), psf_img, np.array(targets),
                        np.array(others), np.array(masks), truth, all_nb, np.array(snrs))


def neighbour_scene(target: dict | None, neighbours: list[dict], shape=(80, 80), noise: float = 0.02, seed: int = 0,
                    psf_fwhm: float = 3.5):
    """One GalSim cutout of given sources: (image, sigma image, PSF, noiseless target).

    ``target``: n, re, q, pa, cx, cy, flux (or None: no target); each neighbour:
    kind ("galaxy" or "star"), x, y, flux and, for a galaxy, n, re, q, pa.
    A flat sky of :data:`SKY`, Gaussian noise of ``noise``, the Moffat PSF of
    :func:`neighbour_mocks` (FWHM ``psf_fwhm`` pixels).
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    psf = galsim.Moffat(beta=3.5, fwhm=psf_fwhm, gsparams=GSPARAMS)
    psf_img = psf_image(psf, 25)
    psf_img /= psf_img.sum()
    clean = np.zeros(shape)
    if target is not None:
        t = target
        clean = _draw(_sersic(t["n"], t["re"], t["q"], t["pa"], t["cx"], t["cy"], t["flux"], shape), psf, shape)
    scene = clean.copy()
    for nb in neighbours:
        if nb["kind"] == "star":
            prof = galsim.DeltaFunction(flux=nb["flux"]).shift(nb["x"] - (w / 2 + 0.5), nb["y"] - (h / 2 + 0.5))
        else:
            prof = _sersic(nb["n"], nb["re"], nb["q"], nb["pa"], nb["x"], nb["y"], nb["flux"], shape)
        scene += _draw(prof, psf, shape)
    image = SKY + scene + rng.normal(0.0, noise, shape)
    return image, np.full(shape, noise), psf_img, clean


def clumpy_disk(seed: int, shape=(128, 128), n_clumps: int = 8, clump_frac: float = 0.03, noise: float = 0.1,
                neighbour_distance: float = 30.0, neighbour_ratio: float = 0.3):
    """A large exponential disk with bright knots (HII regions) and one real neighbour galaxy, by GalSim.

    The disk: n = 1, r_e = 14 px, q = 0.6, PA 30, flux 2000, at (64.3, 64.7);
    ``n_clumps`` Gaussian knots (sigma 1 px, each ``clump_frac`` x 0.6-1.4 of the
    disk's flux) on its ellipse at 0.5-1.8 r_e; the neighbour a Sersic (n 1.5,
    r_e 4 px, q 0.8) of ``neighbour_ratio`` times the disk's flux,
    ``neighbour_distance`` px away. Moffat PSF (FWHM 3.5, beta 3.5), sky
    :data:`SKY`, Gaussian noise ``noise``.

    Returns (image, sigma image, PSF, truth, clumps, neighbour); truth holds the
    disk's ``flux`` and ``clump_flux`` (the knots' total).
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    psf = galsim.Moffat(beta=3.5, fwhm=3.5, gsparams=GSPARAMS)
    psf_img = psf_image(psf, 25)
    psf_img /= psf_img.sum()
    cx, cy, q, pa, re, flux = 64.3, 64.7, 0.6, 30.0, 14.0, 2000.0
    t = np.radians(pa)
    clumps = []
    for k in range(n_clumps):
        r = re * rng.uniform(0.5, 1.8)
        phi = 2 * np.pi * (k + rng.uniform(0, 0.6)) / n_clumps
        u, v = r * np.cos(phi), r * q * np.sin(phi)  # along the major and minor axes
        clumps.append(dict(x=cx - u * np.sin(t) + v * np.cos(t), y=cy + u * np.cos(t) + v * np.sin(t),
                           flux=flux * clump_frac * rng.uniform(0.6, 1.4)))
    knots = [galsim.Gaussian(sigma=1.0, flux=c["flux"]).shift(c["x"] - (w / 2 + 0.5), c["y"] - (h / 2 + 0.5))
             for c in clumps]
    scene = _draw(galsim.Add([_sersic(1.0, re, q, pa, cx, cy, flux, shape)] + knots), psf, shape)
    phi = np.radians(200.0)
    nb = dict(x=cx + neighbour_distance * np.cos(phi), y=cy + neighbour_distance * np.sin(phi),
              flux=flux * neighbour_ratio)
    scene += _draw(_sersic(1.5, 4.0, 0.8, -20.0, nb["x"], nb["y"], nb["flux"], shape), psf, shape)
    image = SKY + scene + rng.normal(0.0, noise, shape)
    truth = dict(cx=cx, cy=cy, q=q, pa=pa, re=re, flux=flux, clump_flux=sum(c["flux"] for c in clumps))
    return image, np.full(shape, noise), psf_img, truth, clumps, nb
