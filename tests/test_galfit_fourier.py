"""GALFIT's azimuthal Fourier modes ``F<m>) a phi fit_a fit_phi`` read from feedmes (issue 10, item 3).

The convention (galmoss/galfit/convert.py): GALFIT's r' = r (1 + sum a_m cos(m (theta_G + phi_m))),
theta_G = arctan(y' / (x' q)) counter-clockwise from the major axis; galmoss's theta runs the other
way, so a feedme's phase is galmoss's. The images here are checked against a numpy formula written
in GALFIT's frame (not galmoss's), and a lopsided mock is recovered through ``run_galfit``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from astropy.io import fits
from scipy.signal import fftconvolve
from scipy.special import gamma, gammaincinv

import galmoss as gm
from galmoss.galfit import FeedmeError, FeedmeUnsupportedError, build_profiles, parse_constraints, parse_feedme
from galmoss.galfit.run import group_key, run_galfit

H = 40
PSF_SIGMA = 1.3
ZP = 25.0


def _psf() -> np.ndarray:
    yy, xx = np.mgrid[:15, :15] - 7.0
    psf = np.exp(-(xx**2 + yy**2) / (2 * PSF_SIGMA**2))
    return psf / psf.sum()


START = {"1": "20.0 20.0 1 1", "3": "15.2 1", "4": "5.5 1", "5": "1.2 1", "9": "0.65 1", "10": "25 1"}


def _feedme(folder, name="gal.feedme", fourier="F1) 0.05 60 1 1", mode=0, constraints="none", **params) -> str:
    """A one-Sersic feedme; ``fourier`` lines start on line 17. ``params``: replace parameter lines (``p10="0 1"``)."""
    values = {**START, **{k[1:]: v for k, v in params.items()}}
    lines = ["", "A) gal.fits", f"B) {name}.block.fits", "C) sig.fits", "D) psf.fits", f"G) {constraints}", f"J) {ZP}",
             "K) 1 1", f"P) {mode}", "0) sersic"]
    lines += [f"{k}) {values[k]}" for k in ("1", "3", "4", "5", "9", "10")]
    lines += fourier.splitlines() + ["Z) 0", ""]
    path = folder / name
    path.write_text("\n".join(lines))
    return str(path)


def _galfit_frame_image(cx, cy, pa_deg, q, re, n, flux, modes, amps, phis_deg, fine=5, pad=10):
    """A Fourier-moded Sersic drawn as GALFIT defines it (Peng et al. 2010), PSF-convolved, numpy only.

    Frame: x' along the major axis towards the PA (up = 0, left = 90), y' a quarter turn
    counter-clockwise from x'; theta_G = arctan2(y' / q, x'); r' = r (1 + sum a cos(m (theta_G + phi))).
    Point samples 5x finer than the pixels, convolved with the Gaussian PSF, sampled at the pixel
    centres (1-based pixel coordinates, as GALFIT's).
    """
    step = 1.0 / fine
    axis = np.arange(1 - pad, H + pad + 1e-9, step)
    Y, X = np.meshgrid(axis, axis, indexing="ij")
    pa = math.radians(pa_deg)
    dx, dy = X - cx, Y - cy
    major = np.array([-math.sin(pa), math.cos(pa)])  # PA 0 points up, PA 90 left
    minor = np.array([-major[1], major[0]])  # a quarter turn counter-clockwise
    xp = dx * major[0] + dy * major[1]
    yp = dx * minor[0] + dy * minor[1]
    r = np.hypot(xp, yp / q)
    theta = np.arctan2(yp / q, xp)
    rp = r * (1.0 + sum(a * np.cos(m * (theta + math.radians(p))) for m, a, p in zip(modes, amps, phis_deg)))
    b = gammaincinv(2 * n, 0.5)
    ie = flux / (2 * math.pi * n * math.exp(b) * b ** (-2 * n) * gamma(2 * n) * re**2 * q)
    img = ie * np.exp(-b * ((rp / re) ** (1 / n) - 1))
    k = np.arange(-6 * fine, 6 * fine + 1) * step
    g = np.exp(-k**2 / (2 * PSF_SIGMA**2))
    g /= g.sum()
    img = fftconvolve(img, g[:, None], mode="same")
    img = fftconvolve(img, g[None, :], mode="same")
    i0 = pad * fine
    return img[i0 : i0 + H * fine : fine, i0 : i0 + H * fine : fine]


def _truth_profile(pa=30.0, modes=(1,), amps=(0.15,), phis=(40.0,)):
    return gm.lp.with_fourier(
        gm.lp.Sersic(cen_x=gm.p(20.3), cen_y=gm.p(19.8), pa=gm.p(pa, angle=True), axis_r=gm.p(0.7), eff_r=gm.p(5.0),
                     mag=gm.p(15.0, M0=ZP), ser_n=gm.p(1.5)),
        modes, gm.p(list(amps), dim="2d"), gm.p(list(phis), dim="2d"))


def _write_mock(folder, seed=1, noise=0.01):
    image = gm.render(_truth_profile(), (H, H), psf=_psf(), dtype=torch.float64)[0].numpy()
    sigma = np.full_like(image, noise * image.max())
    data = image + np.random.default_rng(seed).normal(0.0, 1.0, image.shape) * sigma
    fits.writeto(folder / "gal.fits", data.astype(np.float32))
    fits.writeto(folder / "sig.fits", sigma.astype(np.float32))
    fits.writeto(folder / "psf.fits", _psf().astype(np.float32))
    return image


# ------------------------------------------------------------------ parsing
def test_fourier_lines_become_vector_parameters(tmp_path):
    path = _feedme(tmp_path, fourier="F4) 0.03 10 1 1\nF1) 0.0 -20 1 1")
    feedme = parse_feedme(path)
    comp = feedme.components[0]
    assert comp.params["F1"].values == [0.0, -20.0] and comp.params["F4"].fit == [True, True]
    prof = build_profiles([feedme])["sersic_1"]
    assert prof.fourier_modes == (1, 4)  # ordered by m, whatever the file's order
    # GALFIT restarts a free zero amplitude at 0.01; phases pass unchanged (same convention)
    np.testing.assert_allclose(prof.fourier_a.initial.reshape(-1), [0.01, 0.03])
    np.testing.assert_allclose(prof.fourier_phi.initial.reshape(-1), [-20.0, 10.0])
    assert prof.fourier_a.fit and prof.fourier_phi.fit
    # fixed modes stay fixed
    fixed = build_profiles([parse_feedme(_feedme(tmp_path, "fixed.feedme", fourier="F1) 0.1 30 0 0"))])["sersic_1"]
    assert not fixed.fourier_a.fit and not fixed.fourier_phi.fit
    # the set of modes is part of the structure: different modes are never one batch
    other = parse_feedme(_feedme(tmp_path, "other.feedme", fourier="F1) 0.1 30 1 1\nF3) 0.02 0 1 1"))
    assert group_key(feedme, []) != group_key(other, [])
    same = parse_feedme(_feedme(tmp_path, "same.feedme", fourier="F4) 0.05 0 1 1\nF1) 0.2 5 1 1"))
    assert group_key(feedme, []) == group_key(same, [])
    # one batch of both: one row of modes per galaxy
    batch = build_profiles([feedme, same])["sersic_1"]
    np.testing.assert_allclose(batch.fourier_a.initial, [[0.01, 0.03], [0.2, 0.05]])
    np.testing.assert_allclose(batch.fourier_phi.initial, [[-20.0, 10.0], [5.0, 0.0]])


@pytest.mark.parametrize("line, cls, words", [
    ("F0) 0.1 30 1 1", FeedmeError, "Fourier mode numbers start at 1"),
    ("F1) 0.1 abc 1 1", FeedmeError, "phase angle must be a number, got 'abc'"),
    ("F1) 0.1 30 1", FeedmeError, "needs an amplitude, a phase angle"),
    ("F1) 0.1 30 1 3", FeedmeError, "fit toggle must be 0 (fixed), 1 (free) or 2 (coupled)"),
    ("F1) 0.1 30 1 1\nF1) 0.2 10 1 1", FeedmeError, "given twice"),
    ("F1) 0.1 30 1 1\nF4) 0.02 0 0 1", FeedmeUnsupportedError, "same amplitude toggle"),
    ("F1) 0.1 30 1 1\nF4) 0.02 0 1 0", FeedmeUnsupportedError, "same phase toggle"),
    ("Fx) 0.1 30 1 1", FeedmeError, "unknown parameter line Fx)"),
    ("R0) powerlaw", FeedmeUnsupportedError, "coordinate rotation"),
])
def test_bad_fourier_lines_name_the_file_and_line(tmp_path, line, cls, words):
    path = _feedme(tmp_path, fourier=line)
    with pytest.raises(cls, match=r"gal\.feedme, line 1[78]: .*" + words.replace("(", r"\(").replace(")", r"\)")):
        parse_feedme(path)


@pytest.mark.parametrize("kind, body", [("psf", "1) 20 20 1 1\n3) 16 1"), ("sky", "1) 0.1 1")])
def test_fourier_lines_on_psf_and_sky_are_refused_by_name(tmp_path, kind, body):
    path = tmp_path / "gal.feedme"
    path.write_text(f"A) gal.fits\nB) out.fits\n0) {kind}\n{body}\nF1) 0.1 30 1 1\n")
    line = 4 + body.count("\n") + 1
    with pytest.raises(FeedmeError, match=rf"line {line}: component 1 \({kind}\): a {kind} component has no Fourier modes"):
        parse_feedme(path)


@pytest.mark.parametrize("text, a_range, phi_range", [
    ("1 f1a 0 to 0.5\n", (0.0, 0.5), None),              # an absolute range on the amplitude
    ("1 f1p -30 to 30\n", None, (-30.0, 30.0)),          # on the phase
    ("1 f1p -10 20\n", None, (50.0, 80.0)),              # relative to the start phase 60
    ("1 f1p -180 to 180\n", None, None),                 # 360 degrees wide: every phase of mode 1, no constraint
])
def test_ranges_on_fourier_modes_bound_the_vectors(tmp_path, text, a_range, phi_range):
    """The constraint file's numbers become the amplitude / phase vector's value_range; the fit stays inside."""
    (tmp_path / "cons.txt").write_text(text)
    feedme = parse_feedme(_feedme(tmp_path, constraints="cons.txt"))
    prof = build_profiles([feedme], [parse_constraints(feedme.constraints, feedme.components)])["sersic_1"]
    assert prof.fourier_a.value_range == a_range and prof.fourier_phi.value_range == phi_range
    for vector, rng in ((prof.fourier_a, a_range), (prof.fourier_phi, phi_range)):
        if rng is not None:
            assert rng[0] < float(vector.initial.reshape(-1)[0]) < rng[1]


def test_fourier_couplings_and_uneven_ranges_are_refused(tmp_path):
    (tmp_path / "cons.txt").write_text("1 f1a 0 to 0.5\n1 f3a 0 to 0.2\n")
    feedme = parse_feedme(_feedme(tmp_path, fourier="F1) 0.05 60 1 1\nF3) 0.02 10 1 1", constraints="cons.txt"))
    with pytest.raises(FeedmeUnsupportedError, match=r"component 1: .*Fourier amplitudes different ranges"):
        build_profiles([feedme], [parse_constraints(feedme.constraints, feedme.components)])
    (tmp_path / "cons.txt").write_text("1 f1 0 to 0.5\n")
    with pytest.raises(FeedmeError, match=r"cons\.txt, line 1 .*write f1a or f1p"):
        parse_constraints(feedme.constraints, feedme.components)


def test_axis_ratio_range_up_to_one_stays_below_one(tmp_path):
    """A Fourier-moded ellipse is fitted with q < 1 (with_fourier): 'q 0.5 to 1' becomes (0.5, 1 - 1e-6)."""
    (tmp_path / "cons.txt").write_text("1 q 0.5 to 1\n")
    feedme = parse_feedme(_feedme(tmp_path, constraints="cons.txt"))
    prof = build_profiles([feedme], [parse_constraints(feedme.constraints, feedme.components)])["sersic_1"]
    assert prof.axis_r.value_range == (0.5, 1.0 - 1e-6)
    assert prof.fourier_modes == (1,)


# --------------------------------------------------------------- convention
def test_phase_convention_puts_the_light_where_galfit_does(tmp_path):
    """PA 0 (major axis up), F1) 0.2 90: GALFIT's radius is 1.2 r on the right (theta_G = -90 deg)
    and 0.8 r on the left, so the left half is brighter; galmoss's image is GALFIT's formula."""
    path = _feedme(tmp_path, fourier="F1) 0.2 90 0 0", p10="0 1")
    feedme = parse_feedme(path)
    feedme.components[0].params["1"].values = [20.5, 20.5]
    feedme.components[0].params["9"].values = [0.8]
    prof = build_profiles([feedme])["sersic_1"]
    image = gm.render(prof, (H, H), psf=_psf(), dtype=torch.float64)[0].numpy()
    flux = 10 ** (-0.4 * (15.2 - ZP))
    ref = _galfit_frame_image(20.5, 20.5, 0.0, 0.8, 5.5, 1.2, flux, (1,), (0.2,), (90.0,))
    left, right = image[:, :20].sum(), image[:, 20:].sum()  # columns x = 1..20 and 21..40, centre x = 20.5
    assert left > 1.2 * right, (left, right)
    assert abs(image[:20].sum() - image[20:].sum()) < 1e-3 * image.sum()  # no up/down asymmetry
    assert np.abs(image - ref).max() < 5e-4 * ref.max()
    # a general case: tilted, q < 1, odd and even modes
    feedme.components[0].params["10"].values = [35.0]
    feedme.components[0].params.update({k: v for k, v in parse_feedme(_feedme(
        tmp_path, "m.feedme", fourier="F1) 0.12 -50 0 0\nF3) 0.05 20 0 0\nF4) 0.04 10 0 0")).components[0].params.items()
        if k.startswith("F")})
    image = gm.render(build_profiles([feedme])["sersic_1"], (H, H), psf=_psf(), dtype=torch.float64)[0].numpy()
    ref = _galfit_frame_image(20.5, 20.5, 35.0, 0.8, 5.5, 1.2, flux, (1, 3, 4), (0.12, 0.05, 0.04), (-50.0, 20.0, 10.0))
    mirrored = _galfit_frame_image(20.5, 20.5, 35.0, 0.8, 5.5, 1.2, flux, (1, 3, 4), (0.12, 0.05, 0.04),
                                   (50.0, -20.0, -10.0))
    assert np.abs(image - mirrored).max() > 0.02 * ref.max()  # the sign of the phase matters
    assert np.abs(image - ref).max() < 5e-4 * ref.max()


def test_reported_phases_follow_a_half_turned_major_axis():
    """A fit ending at PA 120 is reported at PA -60: odd modes' phases move by 180 degrees with it."""
    from galmoss.model import Model

    model = Model({"g": _truth_profile(pa=120.0, modes=(1, 2, 3), amps=(0.1, 0.05, 0.04), phis=(40.0, 20.0, 10.0))})
    start = model.start_values(np.arange(1))
    theta = model.theta_from_values(start, torch.float64, "cpu")
    rep = {k: float(v[0]) for k, v in model.report(model.values(theta, model.fixed_tensors(start, torch.float64, "cpu"))).items()}
    assert rep["g_pa"] == pytest.approx(-60.0)
    # phi + turn, wrapped to (-180/m, 180/m]: 40 - 180 = -140; 20 - 180 = -160 = 20 (m = 2); 10 - 180 = -50 (m = 3)
    assert [rep[f"g_fourier_phi_{i}"] for i in (1, 2, 3)] == pytest.approx([-140.0, 20.0, -50.0])
    again = _truth_profile(pa=rep["g_pa"], modes=(1, 2, 3), amps=[rep[f"g_fourier_a_{i}"] for i in (1, 2, 3)],
                           phis=[rep[f"g_fourier_phi_{i}"] for i in (1, 2, 3)])
    one = gm.render(_truth_profile(pa=120.0, modes=(1, 2, 3), amps=(0.1, 0.05, 0.04), phis=(40.0, 20.0, 10.0)), (H, H),
                    psf=_psf(), dtype=torch.float64)[0].numpy()
    two = gm.render(again, (H, H), psf=_psf(), dtype=torch.float64)[0].numpy()
    assert np.abs(one - two).max() < 1e-9 * one.max()


# ----------------------------------------------------------------- end to end
def test_lopsided_mock_recovered_and_round_tripped(tmp_path):
    """m = 1 lopsided Sersic (a = 0.15, phi = 40), 1 % of peak noise, start a = 0.05, phi = 60."""
    _write_mock(tmp_path)
    path = _feedme(tmp_path)
    table = run_galfit([path], output=tmp_path / "run", iteration=100)
    row = table[0]
    assert row["flag"] == 0, row["message"]
    for key, truth in (("1_F1", 0.15), ("1_F1PA", 40.0)):
        assert row[f"{key}_err"] > 0
        assert abs(row[key] - truth) < 3.5 * row[f"{key}_err"], (key, row[key], row[f"{key}_err"])
    assert row["1_F1"] / row["1_F1_err"] > 10  # the mode is detected, not just allowed

    # the image block's header in GALFIT's keys, with errors
    header = fits.getheader(tmp_path / "gal.feedme.block.fits", 2)
    value, _, error = header["1_F1PA"].split()
    assert float(value) == pytest.approx(row["1_F1PA"], abs=1e-4) and float(error) == pytest.approx(row["1_F1PA_err"], abs=1e-4)
    assert "+/-" in header["1_F1"]
    assert "fourier : (1:" in (tmp_path / "run" / "fit.log").read_text()

    # the restart file carries the fitted F1 line; read again it gives the same mode
    restart = parse_feedme(row["restart"])
    line = restart.components[0].params["F1"]
    assert line.values == pytest.approx([row["1_F1"], row["1_F1PA"]], abs=1e-4) and line.fit == [True, True]
    prof = build_profiles([restart])["sersic_1"]
    assert prof.fourier_modes == (1,)

    # the Python API: gm.read_galfit(restart) -> fit -> gm.write_galfit -> read keeps the modes
    # (started at the optimum, the fit stays there: the same modes to well within their errors)
    dataset, _ = gm.read_galfit(row["restart"])
    fitting = gm.Fitting(dataset=dataset, batch_size=1, iteration=20, progress=False)
    fitting.fit()
    results = fitting.uncertainty("covar_mat")
    written = parse_feedme(gm.write_galfit(tmp_path / "again.feedme", row["restart"], results))
    a, phi = written.components[0].params["F1"].values
    assert abs(a - row["1_F1"]) < 0.05 * row["1_F1_err"] and abs(phi - row["1_F1PA"]) < 0.05 * row["1_F1PA_err"]


def test_evaluated_feedme_draws_the_fixed_modes(tmp_path):
    """P) 2 with the truth's values: the block's model is the truth's image, F1 written as fixed."""
    image = _write_mock(tmp_path)
    path = _feedme(tmp_path, "model.feedme", fourier="F1) 0.15 40 0 0", mode=2, p1="20.3 19.8 0 0", p3="15.0 0",
                   p4="5.0 0", p5="1.5 0", p9="0.7 0", p10="30 0")
    table = run_galfit([path], output=tmp_path / "run")
    model = fits.getdata(tmp_path / "model.feedme.block.fits", 2)
    assert np.abs(model - image).max() < 1e-5 * image.max()
    assert fits.getheader(tmp_path / "model.feedme.block.fits", 2)["1_F1PA"] == "[40.0000]"
    assert table[0]["1_F1"] == pytest.approx(0.15) and np.isnan(table[0]["1_F1_err"])
