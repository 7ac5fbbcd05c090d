"""GALFIT's nuker and edgedisk components, read from feedmes, drawn and fitted.

Every image here is checked against GALFIT's formula evaluated directly in numpy (the
formulas of the GALFIT user's manual and Peng et al. 2002, 2010), fluxes against scipy
quadrature of the same formulas, and mocks are fitted back to their injected values.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from astropy.io import fits
from scipy.integrate import quad

import galmoss as gm
from galmoss.galfit import FeedmeUnsupportedError, build_profiles, parse_feedme
from galmoss.galfit.profiles import NukerSB
from galmoss.galfit.run import run_galfit
from galmoss.testing import check_profile

H = 48
ZP = 25.0
PSF_SIGMA = 1.3


def _psf() -> np.ndarray:
    yy, xx = np.mgrid[:15, :15] - 7.0
    psf = np.exp(-(xx**2 + yy**2) / (2 * PSF_SIGMA**2))
    return psf / psf.sum()


def _feedme(folder, body: str, name="gal.feedme", mode=0, psf="psf.fits", extra="") -> str:
    lines = ["A) gal.fits", f"B) {name}.block.fits", "C) sig.fits", f"D) {psf}", f"J) {ZP}", "K) 1 1", f"P) {mode}",
             extra, body, ""]
    path = folder / name
    path.write_text("\n".join(lines))
    return str(path)


def _frame(cx, cy, pa_deg, fine, lo=1.0, hi=float(H)):
    """Major- and minor-axis offsets of sub-pixel points (1-based pixel frame), ``fine`` x ``fine`` per pixel.

    GALFIT's PA runs from up (+y) towards left (-x); the major axis points that way.
    """
    offsets = (np.arange(fine) + 0.5) / fine - 0.5
    axis = (np.arange(lo, hi + 0.5)[:, None] + offsets[None, :]).reshape(-1)
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    pa = math.radians(pa_deg)
    dx, dy = xx - cx, yy - cy
    return -dx * math.sin(pa) + dy * math.cos(pa), dx * math.cos(pa) + dy * math.sin(pa)


def _pixel_means(sub: np.ndarray, fine: int) -> np.ndarray:
    n = sub.shape[0] // fine
    return sub.reshape(n, fine, n, fine).mean(axis=(1, 3))


# -------------------------------------------------------------------- nuker
def _nuker_sb(r, i_b, r_b, alpha, beta, gamma):
    """GALFIT's Nuker law (user's manual): I_b 2^((beta-gamma)/alpha) (r/r_b)^-gamma [1 + (r/r_b)^alpha]^((gamma-beta)/alpha)."""
    u = r / r_b
    return i_b * 2.0 ** ((beta - gamma) / alpha) * u ** (-gamma) * (1.0 + u**alpha) ** ((gamma - beta) / alpha)


NUKER = dict(x=24.3, y=23.8, mu_b=18.0, r_b=4.0, alpha=2.0, beta=2.6, gamma=0.4, q=0.7, pa=30.0)


def _nuker_body(t=NUKER, fit=1, **override) -> str:
    t = {**t, **override}
    return "\n".join([
        "0) nuker", f"1) {t['x']} {t['y']} {fit} {fit}", f"3) {t['mu_b']} {fit}", f"4) {t['r_b']} {fit}",
        f"5) {t['alpha']} {fit}", f"6) {t['beta']} {fit}", f"7) {t['gamma']} {fit}", f"9) {t['q']} {fit}",
        f"10) {t['pa']} {fit}", "Z) 0",
    ])


def test_nuker_total_flux_is_scipy_s_integral_of_galfit_s_formula():
    """Total flux of mu_b at r_b (K) 0.05 arcsec pixels) against quad of the formula; beta <= 2 diverges."""
    area = 0.05**2
    mu_b, r_b, alpha, beta, gamma, q = 19.0, 3.5, 1.5, 3.2, 0.7, 0.6
    prof = NukerSB(cen_x=gm.p(20.0), cen_y=gm.p(20.0), pa=gm.p(10.0), axis_r=gm.p(q), mu_b=gm.p(mu_b, M0=ZP),
                   break_r=gm.p(r_b), alpha=gm.p(alpha), beta=gm.p(beta), gamma=gm.p(gamma), pixel_area=area)
    i_b = 10 ** (-0.4 * (mu_b - ZP)) * area
    inner, _ = quad(lambda r: _nuker_sb(r, i_b, r_b, alpha, beta, gamma) * r, 0.0, r_b, epsrel=1e-12, limit=200)
    outer, _ = quad(lambda r: _nuker_sb(r, i_b, r_b, alpha, beta, gamma) * r, r_b, np.inf, epsrel=1e-12, limit=200)
    truth = 2.0 * math.pi * q * (inner + outer)
    v = {k: torch.tensor([[[float(p.initial[0])]]], dtype=torch.float64) for k, p in prof.parameters().items()}
    v["mu_b"] = v["mu_b"] - ZP
    v["pa"] = torch.deg2rad(v["pa"])
    assert float(prof.total_flux(v)) == pytest.approx(truth, rel=1e-9)
    # the brightness at r_b is I_b whatever beta; the total of beta <= 2 is infinite, not NaN
    v["beta"] = torch.tensor([[[1.8]]], dtype=torch.float64)
    assert math.isinf(float(prof.total_flux(v)))
    r = torch.tensor([[[r_b]]], dtype=torch.float64)
    assert float(prof.radial(r, v)) == pytest.approx(i_b, rel=1e-12)


def test_nuker_feedme_image_is_galfit_s_formula_over_the_pixels(tmp_path):
    """No PSF: each pixel is the mean of the formula over its square (numpy, 24x24 samples, 120x120 at the cusp)."""
    path = _feedme(tmp_path, _nuker_body(beta=1.8), psf="none", mode=1)  # beta < 2: GALFIT's divergent total is fine
    prof = build_profiles([parse_feedme(path)])["nuker_1"]
    assert isinstance(prof, NukerSB)
    image = gm.render({"n": prof}, (H, H), dtype=torch.float64)[0].numpy()
    t = {**NUKER, "beta": 1.8}
    i_b = 10 ** (-0.4 * (t["mu_b"] - ZP))

    def means(fine, lo=1.0, hi=float(H)):
        xm, xn = _frame(t["x"], t["y"], t["pa"], fine, lo, hi)
        return _pixel_means(_nuker_sb(np.hypot(xm, xn / t["q"]), i_b, t["r_b"], t["alpha"], t["beta"], t["gamma"]), fine)

    truth = means(24)
    core = means(120, 21.0, 26.0)  # rows/columns 21..26 (1-based): the cusp at (24.3, 23.8)
    truth[20:26, 20:26] = core
    err = np.abs(image - truth).max() / truth.max()
    assert err < 2e-3, err


def test_nuker_profiles_keep_the_contract():
    geometry = dict(cen_x=gm.p([24.3, 25.0]), cen_y=gm.p([24.8, 23.9]), pa=gm.p([30.0, -60.0]), axis_r=gm.p([0.7, 0.4]))
    # (gm.lp.Nuker is in tests/test_profiles_contract.py; a steep beta keeps the flux quadrature short)
    shape = dict(break_r=gm.p([3.0, 5.0]), alpha=gm.p([2.0, 4.0]), beta=gm.p([5.0, 4.5]), gamma=gm.p([0.5, 0.0]))
    check_profile(NukerSB(**geometry, mu_b=gm.p([17.0, 18.0], M0=22.5), **shape), shape=(32, 32), name="galfit_nuker")


def test_nuker_mock_fitted_back_and_written_in_galfit_s_keys(tmp_path):
    """A PSF-convolved nuker with 0.5 % of peak noise, started 5-15 % off, is fitted back within its errors."""
    truth = build_profiles([parse_feedme(_feedme(tmp_path, _nuker_body(fit=0), name="truth.feedme"))])
    image = gm.render(truth, (H, H), psf=_psf(), dtype=torch.float64)[0].numpy()
    sigma = np.full_like(image, 0.005 * image.max())
    data = image + np.random.default_rng(3).normal(0.0, 1.0, image.shape) * sigma
    fits.writeto(tmp_path / "gal.fits", data)
    fits.writeto(tmp_path / "sig.fits", sigma)
    fits.writeto(tmp_path / "psf.fits", _psf())
    start = _nuker_body(x=24.8, y=23.2, mu_b=18.3, r_b=3.6, alpha=1.8, beta=2.8, gamma=0.3, q=0.75, pa=35.0)
    table = run_galfit([_feedme(tmp_path, start)], output=tmp_path / "run", iteration=100)
    row = table[0]
    assert row["flag"] == 0, row["message"]
    for key, value in (("1_XC", 24.3), ("1_YC", 23.8), ("1_MU_B", 18.0), ("1_RB", 4.0), ("1_ALPHA", 2.0),
                       ("1_BETA", 2.6), ("1_GAMMA", 0.4), ("1_AR", 0.7), ("1_PA", 30.0)):
        assert abs(row[key] - value) < 4.0 * row[f"{key}_err"], (key, row[key], row[f"{key}_err"])
    header = fits.getheader(tmp_path / "gal.feedme.block.fits", 2)
    assert header["COMP_1"] == "nuker"
    assert float(header["1_GAMMA"].split()[0]) == pytest.approx(row["1_GAMMA"], abs=1e-4)
    restart = parse_feedme(row["restart"])
    comp = restart.components[0]
    assert comp.kind == "nuker" and comp.params["7"].values[0] == pytest.approx(row["1_GAMMA"], abs=1e-4)
