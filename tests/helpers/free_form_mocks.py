"""GalSim Sersics fitted by the free-form radial profile (tests/test_free_form_recovery.py, benchmarks).

The truth of the surface brightness along the major axis is the Sersic's
analytic ``I(r) = I_e exp(-b_n ((r / r_e)^(1/n) - 1))``, I_e from the total flux.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

import galmoss as gm

from .galsim_mocks import GSPARAMS, draw, galsim, galsim_sersic, moffat_psf, psf_image

ZERO_POINT = 22.5
MAG = 16.0
PA = 30.0


def sersic_log10_sb(r, n, re, q, flux):
    """log10 I(r) of a Sersic of total ``flux``, half-light radius ``re`` (major axis) and axis ratio ``q``."""
    from scipy.special import gamma, gammaincinv

    b = gammaincinv(2 * n, 0.5)
    ie = flux * b ** (2 * n) / (q * 2 * math.pi * n * re**2 * math.exp(b) * gamma(2 * n))
    return np.log10(ie) - b * ((np.asarray(r) / re) ** (1 / n) - 1) / math.log(10)


def mocks(galaxies, repeats, size, peak_snr, seed, psf="moffat", noise=True):
    """Noisy GalSim images of each (n, r_e, q), ``repeats`` noise realisations each.

    ``psf``: "moffat" (beta 3.5, FWHM 3.5 px) or "gaussian" (FWHM 3 px), convolved by GalSim
    with the profile and the pixel (``drawImage``); the fitter gets GalSim's pixel-convolved
    41x41 image of it (what a star gives). Noise: Gaussian, sigma = peak / ``peak_snr``
    (``noise=False``: the noiseless image, with that sigma image).
    """
    rng = np.random.default_rng(seed)
    psf = moffat_psf(3.5, 3.5) if psf == "moffat" else galsim.Gaussian(fwhm=3.0, gsparams=GSPARAMS)
    flux = 10 ** (-0.4 * (MAG - ZERO_POINT))
    centre = (size / 2 + 0.7, size / 2 + 0.2)
    images, sigmas = [], []
    for n, re, q in galaxies:
        clean = draw(galsim_sersic(n, re, q, PA, centre[0], centre[1], flux, (size, size)), (size, size), psf)
        sigma = clean.max() / peak_snr
        for _ in range(repeats):
            images.append(clean + (rng.normal(0.0, sigma, clean.shape) if noise else 0.0))
            sigmas.append(np.full_like(clean, sigma))
    return np.array(images), np.array(sigmas), psf_image(psf, 41), centre, flux


def fit_free_form(galaxies, re, k, repeats=2, size=80, peak_snr=200.0, seed=1, span=(0.3, 5.0), psf="moffat",
                  result_path=None, noise=True):
    """Fit FreeForm (K log-spaced radii over ``span`` r_e) to GalSim Sersics of one r_e.

    Every parameter free (centre, PA, q, mag, the K values), started off the truth
    (the values an exponential 20 % too large). Returns the results table, the pulls
    (fit - truth) / error of the reported log_sb (rows: galaxies x repeats), the
    pulls of mag, axis_r, pa, cen_x, cen_y, the radii, the ``radii`` tuple and the truth.
    With ``result_path`` (a folder) also ``geometry["between"]``: the pulls of the fitted
    profile at the K - 1 geometric midpoints of the radii, their errors propagated from
    the covariance of the reported values that the result parts hold, and
    ``geometry["chi2_nodes"]``, the whitened chi2 / K of the values. ``noise=False`` fits
    the noiseless images (with the same sigma): what remains is the profile's form error.
    """
    images, sigmas, psf_img, centre, flux = mocks(galaxies, repeats, size, peak_snr, seed, psf, noise)
    count = len(images)
    radii = (span[0] * re, span[1] * re, k)
    nodes = np.exp(np.linspace(math.log(radii[0]), math.log(radii[1]), k))
    start = -1.678 * nodes / (1.2 * re) / math.log(10)  # an exponential, 20 % too large: the wrong shape for n > 1
    ds = gm.Dataset.from_arrays(images, sigmas=sigmas, psfs=psf_img, result_path=result_path)
    ds.define_profiles(f=gm.lp.FreeForm(
        cen_x=gm.p(centre[0] - 0.6), cen_y=gm.p(centre[1] + 0.5), pa=gm.p(PA - 10.0), axis_r=gm.p(0.75),
        mag=gm.p(MAG + 0.3, M0=ZERO_POINT), log_sb=gm.p(start, dim="2d"), radii=radii))
    fitting = gm.Fitting(dataset=ds, batch_size=count, iteration=300, dtype=torch.float64, progress=False)
    fitting.fit()
    res = fitting.uncertainty("covar_mat")
    truth = np.array([sersic_log10_sb(nodes, n, re, q, flux) for n, _, q in galaxies for _ in range(repeats)])
    pulls = (np.asarray(res["f_log_sb"]) - truth) / np.asarray(res["f_log_sb_err"])
    qs = np.repeat([q for _, _, q in galaxies], repeats)
    geometry = {
        "mag": (res["f_mag"] - MAG) / res["f_mag_err"],
        "axis_r": (res["f_axis_r"] - qs) / res["f_axis_r_err"],
        "pa": ((res["f_pa"] - PA + 90.0) % 180.0 - 90.0) / res["f_pa_err"],
        "cen_x": (res["f_cen_x"] - centre[0]) / res["f_cen_x_err"],
        "cen_y": (res["f_cen_y"] - centre[1]) / res["f_cen_y_err"],
    }
    if result_path is not None:
        geometry["between"], geometry["chi2_nodes"] = _between_pulls(result_path, res, fitting.store.columns, galaxies,
                                                                      repeats, radii, flux, truth)
    return res, pulls, geometry, nodes, radii, truth


def _between_pulls(result_path, res, columns, galaxies, repeats, radii, flux, truth_nodes):
    """Pulls at the midpoints: the spline of the reported values there (a linear map S of
    them, since the spline reproduces constants the absolute offset passes through), error
    sqrt(diag(S C S^T)) from the parts' covariance C of the reported columns. And per fit
    the whitened chi2 / K of the node values, d^T C^-1 d / K (1 on average if C is right:
    neighbouring values are correlated, so single pulls say less)."""
    from scipy.interpolate import CubicSpline

    from galmoss.pipeline.parts import read_parts

    k = radii[2]
    x = np.linspace(math.log(radii[0]), math.log(radii[1]), k)
    mid = 0.5 * (x[1:] + x[:-1])
    s = CubicSpline(x, np.eye(k), axis=0, bc_type="not-a-knot")(mid)  # (K - 1, K)
    rows = read_parts(Path(result_path)).rows
    order = np.argsort(rows["position"])
    take = [columns.index(f"f_log_sb_{j + 1}") for j in range(k)]
    c = len(columns)
    cov = np.stack([np.asarray(rows["covariance"][i], dtype=float).reshape(c, c) for i in order])[:, take][:, :, take]
    fitted = np.asarray(res["f_log_sb"]) @ s.T
    err = np.sqrt(np.einsum("mk,bkl,ml->bm", s, cov, s))
    truth = np.array([sersic_log10_sb(np.exp(mid), n, re, q, flux) for n, re, q in galaxies for _ in range(repeats)])
    d = np.asarray(res["f_log_sb"]) - truth_nodes
    chi2 = np.einsum("bk,bk->b", d, np.linalg.solve(cov, d[:, :, None])[:, :, 0]) / k
    return (fitted - truth) / err, chi2


def interpolation_error(n, re, radii):
    """Largest |FreeForm through the true node values - Sersic| (dex) at the midpoints and out to 8 r_e."""
    k = radii[2]
    nodes = np.exp(np.linspace(math.log(radii[0]), math.log(radii[1]), k))
    profile = gm.lp.FreeForm(cen_x=gm.p(0.0), cen_y=gm.p(0.0), pa=gm.p(0.0), axis_r=gm.p(1.0), mag=gm.p(0.0),
                             log_sb=gm.p(np.zeros(k), dim="2d"), radii=radii)
    y = torch.tensor(sersic_log10_sb(nodes, n, re, 1.0, 1.0) * math.log(10))[None]
    r = np.concatenate([np.sqrt(nodes[1:] * nodes[:-1]), [6.0 * re, 8.0 * re]])
    got = profile._log_profile(torch.tensor(np.log(r))[None], y).numpy()[0] / math.log(10)
    return np.abs(got - sersic_log10_sb(r, n, re, 1.0, 1.0))
