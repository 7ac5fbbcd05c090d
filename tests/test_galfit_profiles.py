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
from galmoss.galfit.profiles import EdgeDiskSB, NukerSB
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



def _fit_mock(tmp_path, truth, start_body: str, seed: int):
    """``truth`` (a feedme body, or galmoss profiles) drawn with the PSF, 0.5 % of peak noise added, written as
    GALFIT's inputs, and fitted by ``galmoss galfit`` from ``start_body``: the results table."""
    if isinstance(truth, str):
        truth = build_profiles([parse_feedme(_feedme(tmp_path, truth, name="truth.feedme"))])
    image = gm.render(truth, (H, H), psf=_psf(), dtype=torch.float64)[0].numpy()
    sigma = np.full_like(image, 0.005 * image.max())
    data = image + np.random.default_rng(seed).normal(0.0, 1.0, image.shape) * sigma
    fits.writeto(tmp_path / "gal.fits", data)
    fits.writeto(tmp_path / "sig.fits", sigma)
    fits.writeto(tmp_path / "psf.fits", _psf())
    return run_galfit([_feedme(tmp_path, start_body)], output=tmp_path / "run", iteration=100)

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
    assert err < 5e-4, err  # measured 7e-5


def test_nuker_profiles_keep_the_contract():
    geometry = dict(cen_x=gm.p([24.3, 25.0]), cen_y=gm.p([24.8, 23.9]), pa=gm.p([30.0, -60.0]), axis_r=gm.p([0.7, 0.4]))
    # (gm.lp.Nuker is in tests/test_profiles_contract.py; a steep beta keeps the flux quadrature short)
    shape = dict(break_r=gm.p([3.0, 5.0]), alpha=gm.p([2.0, 4.0]), beta=gm.p([5.0, 4.5]), gamma=gm.p([0.5, 0.0]))
    check_profile(NukerSB(**geometry, mu_b=gm.p([17.0, 18.0], M0=22.5), **shape), shape=(32, 32), name="galfit_nuker")


def test_nuker_mock_fitted_back_and_written_in_galfit_s_keys(tmp_path):
    """A PSF-convolved nuker with 0.5 % of peak noise, started 5-15 % off, is fitted back within its errors."""
    start = _nuker_body(x=24.8, y=23.2, mu_b=18.3, r_b=3.6, alpha=1.8, beta=2.8, gamma=0.3, q=0.75, pa=35.0)
    table = _fit_mock(tmp_path, _nuker_body(fit=0), start, seed=3)
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


# ----------------------------------------------------------------- edgedisk
EDGE = dict(x=24.4, y=23.7, mu0=17.5, h_s=1.2, r_s=6.0, pa=-70.0)


def _edge_sb(along, across, i0, h_s, r_s):
    """GALFIT's edge-on disk (user's manual): I0 (r/r_s) K1(r/r_s) sech^2(z/h_s), r along the plane."""
    from scipy.special import k1

    u = np.maximum(np.abs(along) / r_s, 1e-300)
    return i0 * u * k1(u) / np.cosh(across / h_s) ** 2


def _edge_body(t=EDGE, fit=1, **override) -> str:
    t = {**t, **override}
    return "\n".join(["0) edgedisk", f"1) {t['x']} {t['y']} {fit} {fit}", f"3) {t['mu0']} {fit}", f"4) {t['h_s']} {fit}",
                      f"5) {t['r_s']} {fit}", "9) 0.5 0  # an axis ratio GALFIT's edgedisk does not read", f"10) {t['pa']} {fit}",
                      "Z) 0"])


def _edge_profile(tmp_path, psf="none", **override):
    path = _feedme(tmp_path, _edge_body(fit=0, **override), name="edge.feedme", psf=psf, mode=1)
    return build_profiles([parse_feedme(path)])["edgedisk_1"]


def test_edgedisk_flux_is_scipy_s_integral_of_galfit_s_formula(tmp_path):
    """The sum of the pixel-integrated image (no PSF) equals dblquad of the formula over the image square."""
    from scipy.integrate import dblquad

    t = {**EDGE, "h_s": 0.8, "r_s": 3.0}
    prof = _edge_profile(tmp_path, h_s=0.8, r_s=3.0)
    image = gm.render({"e": prof}, (H, H), dtype=torch.float64)[0].numpy()
    i0 = 10 ** (-0.4 * (t["mu0"] - ZP))
    pa = math.radians(t["pa"])

    def integrand(y, x):
        dx, dy = x - t["x"], y - t["y"]
        return _edge_sb(-dx * math.sin(pa) + dy * math.cos(pa), dx * math.cos(pa) + dy * math.sin(pa), i0, t["h_s"], t["r_s"])

    # the square split in strips across the disk's plane keeps the adaptive rule on the sharp sech^2
    edges = np.linspace(0.5, H + 0.5, 9)
    truth = sum(dblquad(integrand, a, b, 0.5, H + 0.5, epsabs=0.0, epsrel=1e-9)[0] for a, b in zip(edges[:-1], edges[1:]))
    assert image.sum() == pytest.approx(truth, rel=2e-6)
    # and the analytic total 2 pi I0 r_s h_s, less the light beyond the square (5e-4 of it here)
    v = {"mu0": torch.tensor([[[t["mu0"] - ZP]]], dtype=torch.float64),
         "scale_h": torch.tensor([[[t["h_s"]]]], dtype=torch.float64), "scale_l": torch.tensor([[[t["r_s"]]]], dtype=torch.float64)}
    assert float(prof.total_flux(v)) == pytest.approx(2 * math.pi * i0 * t["h_s"] * t["r_s"], rel=1e-12)
    assert 0.0 < 1.0 - truth / float(prof.total_flux(v)) < 1e-3


def test_edgedisk_image_is_galfit_s_formula_over_the_pixels(tmp_path):
    """No PSF: pixel means of the formula (numpy, 40 x 40 samples a pixel); with a PSF: 5x finer samples convolved."""
    from scipy.signal import fftconvolve

    prof = _edge_profile(tmp_path, h_s=0.6)
    image = gm.render({"e": prof}, (H, H), dtype=torch.float64)[0].numpy()
    t = {**EDGE, "h_s": 0.6}
    i0 = 10 ** (-0.4 * (t["mu0"] - ZP))
    along, across = _frame(t["x"], t["y"], t["pa"], 40)
    truth = _pixel_means(_edge_sb(along, across, i0, t["h_s"], t["r_s"]), 40)
    err = np.abs(image - truth).max() / truth.max()
    assert err < 2e-4, err  # measured 8e-5

    convolved = gm.render({"e": prof}, (H, H), psf=_psf(), dtype=torch.float64)[0].numpy()
    fine, pad = 5, 10
    axis = np.arange(1 - pad, H + pad + 1e-9, 1.0 / fine)
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    pa = math.radians(t["pa"])
    dx, dy = xx - t["x"], yy - t["y"]
    sharp = _edge_sb(-dx * math.sin(pa) + dy * math.cos(pa), dx * math.cos(pa) + dy * math.sin(pa), i0, t["h_s"], t["r_s"])
    k = np.arange(-6 * fine, 6 * fine + 1) / fine
    g = np.exp(-k**2 / (2 * PSF_SIGMA**2))
    g /= g.sum()
    blurred = fftconvolve(fftconvolve(sharp, g[:, None], mode="same"), g[None, :], mode="same")
    i0_ = pad * fine
    reference = blurred[i0_ : i0_ + H * fine : fine, i0_ : i0_ + H * fine : fine]
    err = np.abs(convolved - reference).max() / reference.max()
    assert err < 1e-3, err  # measured 6e-4


def test_edgedisk_profiles_keep_the_contract():
    geometry = dict(cen_x=gm.p([24.3, 25.0]), cen_y=gm.p([24.8, 23.9]), pa=gm.p([30.0, -60.0]))
    shape = dict(scale_h=gm.p([1.0, 0.6]), scale_l=gm.p([5.0, 3.0]))
    check_profile(EdgeDiskSB(**geometry, mu0=gm.p([17.0, 18.0], M0=22.5), **shape), shape=(32, 32), psf=_psf(),
                  name="galfit_edgedisk")


@pytest.mark.parametrize("line, words", [("C0) 0.1 1", "no C0"), ("F1) 0.1 20 1 1", "no Fourier modes")])
def test_edgedisk_refuses_boxiness_and_fourier_modes(tmp_path, line, words):
    path = _feedme(tmp_path, _edge_body().replace("Z) 0", line + "\nZ) 0"))
    with pytest.raises(Exception, match=words):
        parse_feedme(path)


def test_edgedisk_mock_fitted_back_and_written_in_galfit_s_keys(tmp_path):
    """A PSF-convolved edge-on disk with 0.5 % of peak noise, started 10-20 % off, is fitted back within its errors."""
    table = _fit_mock(tmp_path, {"e": _edge_profile(tmp_path)},
                      _edge_body(x=24.9, y=23.2, mu0=17.9, h_s=1.0, r_s=7.0, pa=-62.0), seed=5)
    row = table[0]
    assert row["flag"] == 0, row["message"]
    for key, value in (("1_XC", 24.4), ("1_YC", 23.7), ("1_MU0", 17.5), ("1_HS", 1.2), ("1_RS", 6.0), ("1_PA", -70.0)):
        assert abs(row[key] - value) < 4.0 * row[f"{key}_err"], (key, row[key], row[f"{key}_err"])
    header = fits.getheader(tmp_path / "gal.feedme.block.fits", 2)
    assert header["COMP_1"] == "edgedisk" and "1_AR" not in header
    assert float(header["1_HS"].split()[0]) == pytest.approx(row["1_HS"], abs=1e-4)
    comp = parse_feedme(row["restart"]).components[0]
    assert comp.kind == "edgedisk" and comp.params["4"].values[0] == pytest.approx(row["1_HS"], abs=1e-4)
    assert "9" not in comp.params


def test_edgedisk_with_a_finer_psf_is_galfit_s_formula_convolved(tmp_path):
    """E) 2: the model drawn on the PSF's grid and binned equals the formula convolved, averaged over 2 x 2 points."""
    from scipy.signal import fftconvolve

    from galmoss.settings import RenderSettings

    prof = _edge_profile(tmp_path)
    yy, xx = np.mgrid[:31, :31] - 15.0
    fine_psf = np.exp(-(xx**2 + yy**2) / (2 * (2 * PSF_SIGMA) ** 2))
    image = gm.render({"e": prof}, (H, H), psf=fine_psf / fine_psf.sum(), dtype=torch.float64,
                      settings=RenderSettings(psf_oversampling=2))[0].numpy()
    t = EDGE
    i0 = 10 ** (-0.4 * (t["mu0"] - ZP))
    fine, pad = 8, 10  # 8 point samples per data pixel, from its lower edge: the fine centres i -+ 1/4 are the 2nd and 6th
    axis = np.arange(1 - pad, H + pad + 1e-9, 1.0 / fine) - 0.5
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    pa = math.radians(t["pa"])
    dx, dy = xx - t["x"], yy - t["y"]
    sharp = _edge_sb(-dx * math.sin(pa) + dy * math.cos(pa), dx * math.cos(pa) + dy * math.sin(pa), i0, t["h_s"], t["r_s"])
    k = np.arange(-6 * fine, 6 * fine + 1) / fine
    g = np.exp(-k**2 / (2 * PSF_SIGMA**2))
    g /= g.sum()
    blurred = fftconvolve(fftconvolve(sharp, g[:, None], mode="same"), g[None, :], mode="same")
    # data pixel i (1-based centre i) holds fine centres i - 1/4 and i + 1/4: samples 2 and 6 of its 8
    start = pad * fine
    block = blurred[start : start + H * fine, start : start + H * fine].reshape(H, fine, H, fine)
    reference = block[:, [2, 6]][:, :, :, [2, 6]].mean(axis=(1, 3))
    err = np.abs(image - reference).max() / reference.max()
    assert err < 1e-4, err  # measured 5e-6


# --------------------------------------------------------------- truncation
TRUNC = dict(x=24.2, y=23.9, mag=14.5, re=7.0, n=1.0, q=0.7, pa=25.0, brk=9.0, soft=3.0)


def _galfit_truncation(r, r_break, soft, kind):
    """Peng et al. (2010): (1 + tanh((2 - B) r/r_break + B)) / 2, B = 2.65 - 4.98 r_break / (r_break - r_1),
    r_1 = r_break -+ soft the 1 % radius (minus: inner, plus: outer)."""
    r_1 = r_break - soft if kind == "inner" else r_break + soft
    b = 2.65 - 4.98 * r_break / (r_break - r_1)
    return 0.5 * (1.0 + np.tanh((2.0 - b) * r / r_break + b))


def _sersic_sb(r, mag, re, n, q):
    from scipy.special import gamma, gammaincinv

    b = gammaincinv(2 * n, 0.5)
    flux = 10 ** (-0.4 * (mag - ZP))
    return flux / (2 * math.pi * n * math.exp(b) * b ** (-2 * n) * gamma(2 * n) * re**2 * q) * np.exp(-b * ((r / re) ** (1 / n) - 1))


def _trunc_body(t=TRUNC, fit=1, kind="To", **override) -> str:
    t = {**t, **override}
    return "\n".join(["0) sersic", f"1) {t['x']} {t['y']} {fit} {fit}", f"3) {t['mag']} {fit}", f"4) {t['re']} {fit}",
                      f"5) {t['n']} {fit}", f"9) {t['q']} {fit}", f"10) {t['pa']} {fit}", f"{kind}) 1", "T0) radial",
                      f"T4) {t['brk']} {fit}", f"T5) {t['soft']} {fit}", "Z) 0"])


def test_truncation_is_near_99_and_1_percent_where_galfit_says():
    """GALFIT's README: the break radius keeps ~99 % of the untruncated brightness, break -+ softening ~1 %."""
    from galmoss.profiles.truncation import truncation_factor

    r = torch.tensor([11.0, 15.0, 7.0], dtype=torch.float64)
    outer = truncation_factor(r, torch.tensor(11.0, dtype=torch.float64), torch.tensor(4.0, dtype=torch.float64), "outer")
    inner = truncation_factor(r, torch.tensor(11.0, dtype=torch.float64), torch.tensor(4.0, dtype=torch.float64), "inner")
    np.testing.assert_allclose(outer.numpy(), _galfit_truncation(r.numpy(), 11.0, 4.0, "outer"), rtol=1e-12)
    np.testing.assert_allclose(inner.numpy(), _galfit_truncation(r.numpy(), 11.0, 4.0, "inner"), rtol=1e-12)
    assert 0.97 < float(outer[0]) < 0.995 and float(outer[1]) < 0.015 and float(outer[2]) > 0.999
    assert 0.97 < float(inner[0]) < 0.995 and float(inner[2]) < 0.015 and float(inner[1]) > 0.999


@pytest.mark.parametrize("kind", ["To", "Ti"])
def test_truncated_feedme_image_and_flux_are_galfit_s_formula(tmp_path, kind):
    """No PSF: pixel means of Sersic x P(r) (numpy), and the image's sum against scipy's radial integral."""
    path = _feedme(tmp_path, _trunc_body(kind=kind, fit=0), psf="none", mode=1)
    prof = build_profiles([parse_feedme(path)])["sersic_1"]
    assert prof.truncations == ("outer" if kind == "To" else "inner",)
    image = gm.render({"s": prof}, (H, H), dtype=torch.float64)[0].numpy()
    t = TRUNC
    which = "outer" if kind == "To" else "inner"

    def sb(r):
        return _sersic_sb(r, t["mag"], t["re"], t["n"], t["q"]) * _galfit_truncation(r, t["brk"], t["soft"], which)

    def means(fine, lo=1.0, hi=float(H)):
        xm, xn = _frame(t["x"], t["y"], t["pa"], fine, lo, hi)
        return _pixel_means(sb(np.hypot(xm, xn / t["q"])), fine)

    truth = means(24)
    truth[20:26, 20:26] = means(120, 21.0, 26.0)
    err = np.abs(image - truth).max() / truth.max()
    assert err < 5e-4, err  # measured 2.4e-5 (outer), 1.4e-4 (inner)
    # all the light of the outer truncation is inside the image: its sum is the radial integral
    if kind == "To":
        flux, _ = quad(lambda r: sb(r) * r, 0.0, 60.0, epsrel=1e-11, limit=200)
        assert image.sum() == pytest.approx(2 * math.pi * t["q"] * flux, rel=1e-5)


@pytest.mark.parametrize("line, words", [
    ("T1) 20 20 1 1", "its own centre"), ("T9) 0.5 1", "its own axis ratio"), ("T0) radial2", "radial truncation only"),
])
def test_truncation_lines_galmoss_does_not_have_are_refused(tmp_path, line, words):
    body = _trunc_body().replace("T0) radial", line if line.startswith("T0") else "T0) radial\n" + line)
    with pytest.raises(FeedmeUnsupportedError, match=words):
        parse_feedme(_feedme(tmp_path, body))


def test_truncation_by_another_component_or_without_its_radii_is_refused(tmp_path):
    with pytest.raises(FeedmeUnsupportedError, match=r"To\) 2 truncates it by component 2"):
        parse_feedme(_feedme(tmp_path, _trunc_body().replace("To) 1", "To) 2")))
    with pytest.raises(Exception, match=r"a truncation needs T5\)"):
        parse_feedme(_feedme(tmp_path, "\n".join(l for l in _trunc_body().splitlines() if not l.startswith("T5"))))


def test_truncated_mock_fitted_back_and_written_in_galfit_s_lines(tmp_path):
    """An outer-truncated Sersic with a PSF and 0.5 % of peak noise: break radius and softening fitted back."""
    start = _trunc_body(x=24.6, y=23.5, mag=14.8, re=6.0, n=1.3, q=0.75, pa=30.0, brk=8.0, soft=4.0)
    table = _fit_mock(tmp_path, _trunc_body(fit=0), start, seed=1)
    row = table[0]
    assert row["flag"] == 0, row["message"]
    for key, value in (("1_MAG", 14.5), ("1_RE", 7.0), ("1_N", 1.0), ("1_AR", 0.7), ("1_PA", 25.0),
                       ("1_T4", 9.0), ("1_T5", 3.0)):
        assert abs(row[key] - value) < 4.0 * row[f"{key}_err"], (key, row[key], row[f"{key}_err"])
    header = fits.getheader(tmp_path / "gal.feedme.block.fits", 2)
    assert float(header["1_T4"].split()[0]) == pytest.approx(row["1_T4"], abs=1e-4)
    comp = parse_feedme(row["restart"]).components[0]
    assert "TO" in comp.params and comp.params["T5"].values[0] == pytest.approx(row["1_T5"], abs=1e-4)
    assert build_profiles([parse_feedme(row["restart"])])["sersic_1"].truncations == ("outer",)


# ------------------------------------------------------------------ bending
BENT = dict(x=24.3, y=23.6, mag=14.0, re=5.0, n=1.0, q=0.45, pa=-35.0, b={2: 1.2, 3: -0.7})


def _bent_body(t=BENT, fit=1, **override) -> str:
    t = {**t, **override}
    return "\n".join(["0) sersic", f"1) {t['x']} {t['y']} {fit} {fit}", f"3) {t['mag']} {fit}", f"4) {t['re']} {fit}",
                      f"5) {t['n']} {fit}", f"9) {t['q']} {fit}", f"10) {t['pa']} {fit}"]
                     + [f"B{m}) {a} {fit}" for m, a in t["b"].items()] + ["Z) 0"])


def _galfit_bent_sb(fine, t=BENT, lo=1.0, hi=float(H)):
    """A bent Sersic in GALFIT's frame: x' towards the PA (up = 0, left = 90), y' a quarter turn counter-clockwise,
    y'' = y' + sum_m a_m (x' / R_e)^m, r = sqrt(x'^2 + (y''/q)^2); sub-pixel point samples."""
    offsets = (np.arange(fine) + 0.5) / fine - 0.5
    axis = (np.arange(lo, hi + 0.5)[:, None] + offsets[None, :]).reshape(-1)
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    pa = math.radians(t["pa"])
    major = np.array([-math.sin(pa), math.cos(pa)])
    minor = np.array([-major[1], major[0]])
    dx, dy = xx - t["x"], yy - t["y"]
    xp, yp = dx * major[0] + dy * major[1], dx * minor[0] + dy * minor[1]
    ypp = yp + sum(a * (xp / t["re"]) ** m for m, a in t["b"].items())
    return _sersic_sb(np.hypot(xp, ypp / t["q"]), t["mag"], t["re"], t["n"], t["q"])


def test_bent_feedme_image_is_galfit_s_formula_and_keeps_its_flux(tmp_path):
    """No PSF: pixel means of the bent Sersic (numpy, GALFIT's frame); bending moves light, the sum is the total."""
    prof = build_profiles([parse_feedme(_feedme(tmp_path, _bent_body(fit=0), psf="none", mode=1))])["sersic_1"]
    assert prof.bending_modes == (2, 3)
    image = gm.render({"s": prof}, (H, H), dtype=torch.float64)[0].numpy()
    truth = _pixel_means(_galfit_bent_sb(24), 24)
    truth[20:26, 20:26] = _pixel_means(_galfit_bent_sb(120, lo=21.0, hi=26.0), 120)
    err = np.abs(image - truth).max() / truth.max()
    assert err < 5e-4, err  # measured 1.0e-4
    # y -> y + f(x) has unit Jacobian: a compact bent galaxy's light is the Sersic's total (scipy)
    t = {**BENT, "re": 2.0, "n": 0.8, "b": {2: 0.4, 3: -0.1}}
    small = _bent_body(t, fit=0)
    prof = build_profiles([parse_feedme(_feedme(tmp_path, small, name="small.feedme", psf="none", mode=1))])["sersic_1"]
    image = gm.render({"s": prof}, (H, H), dtype=torch.float64)[0].numpy()
    total, _ = quad(lambda r: _sersic_sb(r, t["mag"], t["re"], t["n"], t["q"]) * r, 0.0, np.inf, epsrel=1e-11)
    assert image.sum() == pytest.approx(2 * math.pi * t["q"] * total, rel=1e-4)  # 2e-5 short: beyond the cutout


def test_bent_profile_keeps_the_contract():
    """Odd modes only: an even mode (a banana) is not symmetric under a half turn of the PA, as in GALFIT."""
    s = gm.lp.Sersic(cen_x=gm.p([12.3, 13.0]), cen_y=gm.p([12.8, 11.9]), pa=gm.p([30.0, -60.0]), axis_r=gm.p([0.4, 0.5]),
                     eff_r=gm.p([3.0, 2.0]), mag=gm.p([16.0, 17.0], M0=22.5), ser_n=gm.p([1.0, 2.0]))
    check_profile(gm.lp.with_bending(s, (1, 3), gm.p(np.array([[0.5, 0.8], [-0.3, 0.4]]))), shape=(24, 24), psf=_psf(),
                  name="bent")


def test_bent_mock_fitted_back_and_written_in_galfit_s_lines(tmp_path):
    """A PSF-convolved banana + S bent Sersic, 0.5 % of peak noise, amplitudes started at 0.3 and 0.3 px."""
    start = _bent_body(x=24.6, y=23.3, mag=14.2, re=4.5, n=1.2, q=0.5, pa=-30.0, b={2: 0.3, 3: 0.3})
    table = _fit_mock(tmp_path, _bent_body(fit=0), start, seed=11)
    row = table[0]
    assert row["flag"] == 0, row["message"]
    for key, value in (("1_MAG", 14.0), ("1_RE", 5.0), ("1_AR", 0.45), ("1_PA", -35.0), ("1_B2", 1.2), ("1_B3", -0.7)):
        assert abs(row[key] - value) < 4.0 * row[f"{key}_err"], (key, row[key], row[f"{key}_err"])
    assert abs(row["1_B2"]) / row["1_B2_err"] > 10  # the banana is detected, not just allowed
    header = fits.getheader(tmp_path / "gal.feedme.block.fits", 2)
    assert float(header["1_B2"].split()[0]) == pytest.approx(row["1_B2"], abs=1e-4)
    comp = parse_feedme(row["restart"]).components[0]
    assert comp.params["B3"].values[0] == pytest.approx(row["1_B3"], abs=1e-4) and comp.params["B3"].fit == [True]
    # fit.log: the modes on a comment line (GALFIT's own layout for them is not public), after the component's lines
    log = (tmp_path / "run" / "fit.log").read_text()
    bending = next(line for line in log.splitlines() if line.startswith("#  bending"))
    import re

    logged = {m.group(1): float(m.group(2)) for m in re.finditer(r"(B\d) = ([-0-9.]+) \+/- ", bending)}
    assert logged["B2"] == pytest.approx(row["1_B2"], abs=0.006) and logged["B3"] == pytest.approx(row["1_B3"], abs=0.006)


def test_constraints_name_the_nuker_s_slopes(tmp_path):
    """GALFIT's constraint names alpha, beta, gamma are the nuker's 5), 6), 7)."""
    from galmoss.galfit import parse_constraints

    (tmp_path / "c.txt").write_text("1 gamma 0 1.5\n1 beta 1.5 4\n1 alpha 0.5 5\n")
    comps = parse_feedme(_feedme(tmp_path, _nuker_body())).components
    assert [c.label for c in parse_constraints(tmp_path / "c.txt", comps)] == ["7", "6", "5"]


def test_reported_bending_follows_a_half_turned_major_axis():
    """PA + 180 is the same ellipse with x' -> -x', y' -> -y': the same image needs the even modes' sign flipped,
    and the reported amplitudes (PA wrapped to (-90, 90]) draw the image that was fitted."""
    from galmoss.model import Model

    s = gm.lp.Sersic(cen_x=gm.p(24.3), cen_y=gm.p(23.6), pa=gm.p(150.0), axis_r=gm.p(0.45), eff_r=gm.p(5.0),
                     mag=gm.p(14.0, M0=ZP), ser_n=gm.p(1.0))
    bent = gm.lp.with_bending(s, (2, 3), gm.p([1.2, -0.7], dim="2d"))
    model = Model({"g": bent})
    start = model.start_values(np.arange(1))
    theta = model.theta_from_values(start, torch.float64, "cpu")
    rep = {k: float(v[0]) for k, v in model.report(model.values(theta, model.fixed_tensors(start, torch.float64, "cpu"))).items()}
    assert rep["g_pa"] == pytest.approx(-30.0)
    assert [rep["g_bending_a_1"], rep["g_bending_a_2"]] == pytest.approx([-1.2, -0.7])
    turned = gm.lp.with_bending(
        gm.lp.Sersic(cen_x=gm.p(24.3), cen_y=gm.p(23.6), pa=gm.p(-30.0), axis_r=gm.p(0.45), eff_r=gm.p(5.0),
                     mag=gm.p(14.0, M0=ZP), ser_n=gm.p(1.0)), (2, 3), gm.p([-1.2, -0.7], dim="2d"))
    one = gm.render({"g": bent}, (H, H), dtype=torch.float64)[0]
    two = gm.render({"g": turned}, (H, H), dtype=torch.float64)[0]
    assert float((one - two).abs().max()) < 1e-9 * float(one.max())
