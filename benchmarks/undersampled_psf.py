"""How far a PSF given at the pixels' sampling biases a galaxy, against the ``psf_undersampled`` flag's estimate.

Noiseless GalSim mocks: a Sersic (n 1 and 4, r_e 0.3-7 px, q 0.7) convolved with a Moffat (beta 3, FWHM
1.2-3 px) and integrated over 48x48 pixels, sigma set for S/N 100 (the square root of the sum of (model /
sigma)^2). galmoss fits each from its true values with the Moffat's 41x41 image at the pixels' sampling:
what moves the fit is the misdrawn PSF alone. A parameter's bias in errors grows as S/N, so the S/N at which
the worst of n, r_e, q and the magnitude moves by one error is 100 over its pull here. The flag's estimate of
that S/N is 1 / (a s): a the PSF's DFT modulus at the sampling band's edge over its sum, s the same share of
the galaxy's image without the PSF (:func:`galmoss.fitting.assess.psf_sampling_bias`).

Usage::

    python benchmarks/undersampled_psf.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

import galmoss as gm
from galmoss.fitting.assess import PSF_BIAS_LIMIT, _band_edge_share

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers.galsim_mocks import GSPARAMS, galsim, galsim_sersic, moffat_psf  # noqa: E402

SHAPE = (48, 48)
SNR = 100.0
FLUX = 1000.0
CENTRE = (24.3, 23.8)  # x, y


def measure(fwhm: float, cases: list[tuple[float, float]], q: float = 0.7):
    """(worst pull at S/N 100, the galaxy's band-edge share s) of each (n, r_e), and the PSF's share a."""
    psf = moffat_psf(3.0, fwhm)
    stamp = psf.drawImage(nx=41, ny=41, scale=1.0, method="auto").array
    images, sigmas = [], []
    for n, re in cases:
        galaxy = galsim_sersic(n, re, q, 30.0, CENTRE[0], CENTRE[1], FLUX, SHAPE)
        clean = galsim.Convolve(galaxy, psf, gsparams=GSPARAMS).drawImage(nx=SHAPE[1], ny=SHAPE[0], scale=1.0,
                                                                          method="auto").array.astype(np.float64)
        images.append(clean)
        sigmas.append(np.full(SHAPE, np.sqrt(np.sum(clean**2)) / SNR))
    ns, res_ = np.array([c[0] for c in cases]), np.array([c[1] for c in cases])
    sersic = gm.lp.Sersic(cen_x=gm.p(CENTRE[0]), cen_y=gm.p(CENTRE[1]), pa=gm.p(30.0), axis_r=gm.p(q),
                          eff_r=gm.p(res_), mag=gm.p(-2.5 * np.log10(FLUX), M0=0.0), ser_n=gm.p(ns))
    ds = gm.Dataset.from_arrays(np.array(images), np.array(sigmas), stamp)
    ds.define_profiles(galaxy=sersic)
    fitting = gm.Fitting(ds, batch_size=len(cases), device="cpu", progress=False)
    fitting.fit()
    res = fitting.uncertainty("covar_mat")
    a = lambda name: np.asarray(res[name], dtype=np.float64)  # noqa: E731
    truths = {"ser_n": ns, "eff_r": res_, "axis_r": np.full(len(cases), q),
              "mag": np.full(len(cases), -2.5 * np.log10(FLUX))}
    pulls = np.stack([(a(f"galaxy_{k}") - t) / a(f"galaxy_{k}_err") for k, t in truths.items()], axis=1)
    plain = gm.render(sersic, SHAPE, dtype=torch.float64).numpy()
    return np.nanmax(np.abs(pulls), axis=1), _band_edge_share(plain), float(_band_edge_share(stamp[None])[0])


def main() -> None:
    torch.set_num_threads(1)
    cases = [(n, re) for n in (1.0, 4.0) for re in (0.3, 0.6, 1.0, 1.5, 2.5, 4.0, 7.0)]
    print("| PSF FWHM (px) | PSF's share a | n | r_e (px) | galaxy's share s | S/N of a 1-error bias, measured | "
          "estimate 1 / (a s) | measured / estimate | flagged from S/N |")
    print("|---|---|---|---|---|---|---|---|---|")
    for fwhm in (1.2, 1.7, 2.2, 3.0):
        worst, share, aliasing = measure(fwhm, cases)
        for (n, re), w, s in zip(cases, worst, share):
            measured, estimate = SNR / w, 1.0 / (aliasing * s)
            print(f"| {fwhm:g} | {aliasing:.3g} | {n:g} | {re:g} | {s:.3g} | {measured:.0f} | {estimate:.0f} | "
                  f"{measured / estimate:.2f} | {PSF_BIAS_LIMIT * estimate:.0f} |", flush=True)


if __name__ == "__main__":
    main()
