"""Error bars that mean what they say (issue 3, item 6).

Three galaxies drawn by GalSim -- a compact high-n one, an extended disk and a
faint one (S/N 20) -- each observed in 200 independent noise realisations and
fitted from perturbed starts. For every parameter the scatter of the fitted values
over the realisations must equal the covariance-matrix sigma (their ratio within
[0.85, 1.15]), and |fit - truth| / sigma must have the median of a unit normal,
0.674 (within [0.55, 0.85]). For the faint galaxy, where r_e, n and the flux have
heavy tails, the 1-sigma coverage is the test (see its docstring). The bootstrap
is checked the same way on fewer realisations.
"""

from __future__ import annotations

import numpy as np
import pytest

import galmoss as gm

from .helpers.galsim_mocks import GSPARAMS, galsim, moffat_psf, psf_image

# hundreds of fits: the quick run (-m "not slow") leaves them out; CI runs them
pytestmark = pytest.mark.slow

GALAXIES = {
    # name: (n, r_e, q, pa, mag, half-light S/N, cutout)
    "compact_high_n": (4.0, 2.0, 0.7, 30.0, 16.5, 120.0, 48),
    "extended_disk": (1.0, 10.0, 0.4, -50.0, 15.5, 80.0, 80),
    "faint": (1.5, 4.0, 0.6, 70.0, 18.0, 20.0, 48),
}
KEYS = {"cen_x": "cx", "cen_y": "cy", "pa": "pa", "axis_r": "q", "eff_r": "re", "mag": "mag", "ser_n": "n"}


def realisations(name, count, seed):
    n, re, q, pa, mag, snr, size = GALAXIES[name]
    shape = (size, size)
    cx, cy = size / 2 + 0.3, size / 2 - 0.2
    psf = moffat_psf(3.5, 3.5)
    prof = galsim.Sersic(n=n, half_light_radius=re * np.sqrt(q), flux=10 ** (-0.4 * (mag - 22.5)), gsparams=GSPARAMS)
    prof = prof.shear(q=q, beta=(pa + 90) * galsim.degrees).shift(cx - (size / 2 + 0.5), cy - (size / 2 + 0.5))
    clean = galsim.Convolve(prof, psf, gsparams=GSPARAMS).drawImage(nx=size, ny=size, scale=1.0).array.astype(float)
    values = np.sort(clean.ravel())[::-1]
    n_half = int(np.searchsorted(np.cumsum(values), 0.5 * clean.sum())) + 1
    sigma = 0.5 * clean.sum() / (snr * np.sqrt(n_half))
    rng = np.random.default_rng(seed)
    images = clean + rng.normal(0, sigma, (count,) + shape)
    truth = {"n": n, "re": re, "q": q, "pa": pa, "mag": mag, "cx": cx, "cy": cy}
    sign = lambda: rng.choice([-1.0, 1.0], count)  # noqa: E731
    start = gm.lp.Sersic(
        cen_x=gm.p(cx + sign() * rng.uniform(0.3, 1.0, count)), cen_y=gm.p(cy + sign() * rng.uniform(0.3, 1.0, count)),
        pa=gm.p(pa + sign() * rng.uniform(5, 15, count), angle=True), axis_r=gm.p(np.clip(q + sign() * 0.08, 0.1, 1.0)),
        eff_r=gm.p(re * (1 + sign() * rng.uniform(0.1, 0.2, count))), mag=gm.p(mag + sign() * 0.15, M0=22.5),
        ser_n=gm.p(n * (1 + sign() * rng.uniform(0.1, 0.2, count))),
    )
    ds = gm.Dataset.from_arrays(images, np.full(images.shape, sigma), psf_image(psf, 25))
    ds.define_profiles(sersic=start)
    return ds, truth


def _deviation(res, slot, truth):
    d = np.asarray(res[f"sersic_{slot}"]) - truth[KEYS[slot]]
    return (d + 90.0) % 180.0 - 90.0 if slot == "pa" else d


@pytest.fixture(scope="module")
def covariance_runs():
    out = {}
    for k, name in enumerate(GALAXIES):
        ds, truth = realisations(name, 200, seed=100 + k)
        fitting = gm.Fitting(ds, batch_size=100, iteration=200, device="cpu", progress=False)
        fitting.fit()
        out[name] = (fitting.uncertainty("covar_mat"), truth)
    return out


@pytest.mark.parametrize("name", ["compact_high_n", "extended_disk"])
def test_covariance_errors_match_the_scatter(covariance_runs, name):
    res, truth = covariance_runs[name]
    assert np.mean(res["converged"]) >= 0.99
    for slot in KEYS:
        dev = _deviation(res, slot, truth)
        ratio = np.std(dev, ddof=1) / np.mean(res[f"sersic_{slot}_err"])
        print(f"{name:15s} {slot:7s} scatter / mean sigma = {ratio:.3f}")
        assert 0.85 <= ratio <= 1.15, (slot, ratio)


def test_faint_galaxy_errors_cover_the_truth(covariance_runs):
    """At S/N 20 the n - r_e degeneracy gives r_e, n and flux heavy tails.

    A few realisations land far out (n ~ 10, r_e ~ 30 px for a true n = 1.5,
    r_e = 4 px) with correspondingly large error bars, so the standard deviation
    of the values exceeds the mean sigma (1.7 for r_e) although the error bars
    are right where it counts: 68 % of fits lie within 1 sigma of the truth for
    every parameter. Centre, PA and q keep the scatter test too.
    """
    res, truth = covariance_runs["faint"]
    assert np.mean(res["converged"]) >= 0.99
    for slot in KEYS:
        dev = _deviation(res, slot, truth)
        err = np.asarray(res[f"sersic_{slot}_err"])
        coverage = np.mean(np.abs(dev) < err)
        ratio = np.std(dev, ddof=1) / np.mean(err)
        print(f"faint           {slot:7s} within 1 sigma {coverage:.3f}, scatter / mean sigma = {ratio:.3f}")
        assert 0.60 <= coverage <= 0.76, (slot, coverage)
        if slot in ("cen_x", "cen_y", "pa", "axis_r"):
            assert 0.85 <= ratio <= 1.15, (slot, ratio)


def test_pulls_have_unit_normal_median(covariance_runs):
    for slot in KEYS:
        pulls = np.concatenate([_deviation(res, slot, truth) / np.asarray(res[f"sersic_{slot}_err"])
                                for res, truth in covariance_runs.values()])
        median = np.median(np.abs(pulls))
        print(f"{slot:7s} median |fit - truth| / sigma = {median:.3f}")
        assert 0.55 <= median <= 0.85


def test_bootstrap_errors_match_the_scatter():
    """Fewer realisations (30, each with 40 resamplings): a looser band for the sample size."""
    ds, truth = realisations("compact_high_n", 30, seed=200)
    fitting = gm.Fitting(ds, batch_size=30, iteration=100, device="cpu", progress=False)
    fitting.fit()
    res = fitting.uncertainty("bootstrap", n_resample=40)
    for slot in ("cen_x", "axis_r", "eff_r", "mag", "ser_n"):
        dev = _deviation(res, slot, truth)
        ratio = np.std(dev, ddof=1) / np.mean(res[f"sersic_{slot}_err"])
        median_pull = np.median(np.abs(dev / np.asarray(res[f"sersic_{slot}_err"])))
        print(f"bootstrap {slot:7s} scatter / mean sigma = {ratio:.3f}, median |pull| = {median_pull:.3f}")
        assert 0.65 <= ratio <= 1.5
