"""Joint multi-band fit against band-by-band fits, on GalSim mocks.

One Sersic galaxy (n = 1.5, r_e = 1.2 arcsec, q = 0.6) is drawn by GalSim in
three bands: g (faint) and r at 0.2 arcsec per pixel, i at 0.4 arcsec per pixel,
each with its own Moffat PSF, in ``N`` noise realisations. The same cutouts are
fitted jointly (one shape, a magnitude per band) and band by band, and the
table compares the magnitude errors in each band.

Run from a clone: ``python examples/multiband.py`` (needs ``pip install galsim``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

# run from a clone without installing: the clone's galmoss comes first
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

try:
    import galsim
except ImportError:  # pragma: no cover - a message, not a traceback
    sys.exit("examples/multiband.py draws its mocks with GalSim: pip install galsim")

import galmoss as gm

N = 16
M0 = 30.0
WAVELENGTH = {"g": 477.0, "r": 623.1, "i": 762.5}
PIX_SCALE = {"g": 0.2, "r": 0.2, "i": 0.4}
BANDS = {  # cutout size (pixels), PSF FWHM (arcsec), magnitude, noise sigma
    "g": dict(size=48, fwhm=0.9, mag=24.0, sigma=1.0),
    "r": dict(size=48, fwhm=0.8, mag=21.0, sigma=1.0),
    "i": dict(size=24, fwhm=1.0, mag=20.5, sigma=1.0),
}
N_SERSIC, RE, Q, PA = 1.5, 1.2, 0.6, 30.0


def mocks(seed: int = 0):
    rng = np.random.default_rng(seed)
    images, sigmas, psfs = {}, {}, {}
    for band, b in BANDS.items():
        scale = PIX_SCALE[band]
        gal = galsim.Sersic(n=N_SERSIC, half_light_radius=RE * np.sqrt(Q), flux=10 ** (-0.4 * (b["mag"] - M0)))
        gal = gal.shear(q=Q, beta=(PA + 90.0) * galsim.degrees)
        psf = galsim.Moffat(beta=3.5, fwhm=b["fwhm"])
        clean = galsim.Convolve(gal, psf).drawImage(nx=b["size"], ny=b["size"], scale=scale).array
        # 6.6 arcsec wide: the Moffat's wings beyond hold < 0.3 % of its light
        size = 2 * int(3.3 / scale) + 1
        kernel = psf.drawImage(nx=size, ny=size, scale=scale).array
        images[band] = clean[None] + rng.normal(0.0, b["sigma"], (N, b["size"], b["size"]))
        sigmas[band] = np.full_like(images[band], b["sigma"])
        psfs[band] = kernel / kernel.sum()
    return images, sigmas, psfs


def sersic(centre: float, scale: float):
    # starts off the truth: r_e 5 reference pixels, n = 2.5, q = 0.8
    return gm.lp.Sersic(cen_x=gm.p(centre), cen_y=gm.p(centre), pa=gm.p(10.0), axis_r=gm.p(0.8),
                        eff_r=gm.p(1.0 / scale), ser_n=gm.p(2.5), mag=gm.p(22.0, M0=M0))


def fitted(dataset):
    fit = gm.Fitting(dataset, dtype="float64", progress=False)
    fit.fit()
    return fit.uncertainty()


def main() -> None:
    images, sigmas, psfs = mocks()
    joint = gm.Dataset.from_arrays(images, sigmas, psfs, wavelength=WAVELENGTH, pix_scale=PIX_SCALE)
    joint.define_profiles(gal=sersic(24.5, PIX_SCALE["g"]))
    c0 = time.process_time()
    tj = fitted(joint)
    cost_joint, cost_alone = time.process_time() - c0, 0.0
    print(f"{N} galaxies, bands {list(BANDS)}; truth r_e = {RE} arcsec")
    print(f"{'band':>4} {'true mag':>8} | {'joint: rms error':>16} {'median sigma':>12} | "
          f"{'alone: rms error':>16} {'median sigma':>12}")
    for band, b in BANDS.items():
        alone = gm.Dataset.from_arrays(images[band], sigmas[band], psfs[band])
        alone.define_profiles(gal=sersic((b["size"] + 1) / 2, PIX_SCALE[band]))
        c0 = time.process_time()
        ts = fitted(alone)
        cost_alone += time.process_time() - c0
        rj = np.sqrt(np.nanmean((tj[f"gal_mag_{band}"] - b["mag"]) ** 2))
        rs = np.sqrt(np.nanmean((ts["gal_mag"] - b["mag"]) ** 2))
        print(f"{band:>4} {b['mag']:8.2f} | {rj:16.4f} {np.nanmedian(tj[f'gal_mag_{band}_err']):12.4f} | "
              f"{rs:16.4f} {np.nanmedian(ts['gal_mag_err']):12.4f}")
    re = tj["gal_eff_r"] * PIX_SCALE["g"]
    print(f"joint r_e: {np.mean(re):.4f} +- {np.std(re):.4f} arcsec (median error "
          f"{np.median(tj['gal_eff_r_err']) * PIX_SCALE['g']:.4f})")
    print(f"cost: the joint fit {cost_joint / N:.3f} CPU-s per galaxy, the three bands alone {cost_alone / N:.3f} "
          f"(ratio {cost_joint / cost_alone:.2f})")


if __name__ == "__main__":
    main()
