"""gm.Fitting behaviour: results layout, re-fitting, Adam, ellipse canonicalisation, bootstrap, init round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import galmoss as gm

from .helpers.user_profiles import NewSky

YY, XX = np.mgrid[:15, :15] - 7.0
PSF = (1 + (XX**2 + YY**2) / 2.2**2) ** -3.0


def _mock(count=3, seed=0, q=0.6, pa=30.0, n=1.5, re=4.0, mag=16.5, shape=(48, 48), noise=0.15):
    rng = np.random.default_rng(seed)
    truth = gm.lp.Sersic(cen_x=gm.p(np.full(count, 24.3)), cen_y=gm.p(np.full(count, 23.8)), pa=gm.p(np.full(count, pa)),
                         axis_r=gm.p(np.full(count, q)), eff_r=gm.p(np.full(count, re)), mag=gm.p(np.full(count, mag), M0=22.5),
                         ser_n=gm.p(np.full(count, n)))
    clean = gm.render(truth, shape, psf=PSF, dtype=torch.float64).numpy()
    images = clean + rng.normal(0, noise, clean.shape)
    return images, np.full(images.shape, noise), clean


def _start(count=3, q=0.5, pa=40.0):
    return gm.lp.Sersic(cen_x=gm.p(np.full(count, 25.0)), cen_y=gm.p(np.full(count, 23.0)), pa=gm.p(pa, angle=True),
                        axis_r=gm.p(q), eff_r=gm.p(5.0), mag=gm.p(16.8, M0=22.5), ser_n=gm.p(2.0))


def test_results_layout_and_refit_gives_the_same_answer():
    images, sigmas, _ = _mock()
    ds = gm.Dataset.from_arrays(images, sigmas, PSF)
    ds.define_profiles(galaxy=_start())
    fitting = gm.Fitting(ds, batch_size=2, iteration=100, device="cpu", progress=False)
    first = fitting.fit()
    second = fitting.fit()
    expected = ["galaxy_index"] + [f"galaxy_{k}" for k in ("cen_x", "cen_y", "pa", "axis_r", "box", "eff_r", "mag", "ser_n")]
    expected += ["chi2", "dof", "reduced_chi2", "n_iter", "converged", "status", "flag", "message"]
    assert first.colnames == expected
    for col in expected[1:-1]:
        np.testing.assert_array_equal(first[col], second[col])
    assert np.all(first["dof"] == 48 * 48 - 7)
    np.testing.assert_allclose(first["reduced_chi2"], first["chi2"] / first["dof"])
    with_err = fitting.uncertainty()
    assert "galaxy_mag_err" in with_err.colnames and with_err.colnames.index("galaxy_mag_err") == with_err.colnames.index("galaxy_mag") + 1
    assert np.all(with_err["galaxy_box_err"] == 0.0)  # fixed and not affected by a free one


def test_adam_reaches_the_lm_optimum_and_reports_its_best_chi2():
    images, sigmas, _ = _mock(count=2, seed=3)
    results = {}
    for method in ("LM", "adam"):
        ds = gm.Dataset.from_arrays(images, sigmas, PSF)
        ds.define_profiles(galaxy=_start(count=2))
        results[method] = gm.Fitting(ds, batch_size=2, iteration=3000, method=method, device="cpu", dtype=torch.float64,
                                     progress=False).fit()
    lm, ad = results["LM"], results["adam"]
    assert np.all(ad["chi2"] <= lm["chi2"] + 0.5)  # Adam gets within a fraction of one chi2 unit
    np.testing.assert_allclose(ad["galaxy_mag"], lm["galaxy_mag"], atol=0.01)


@pytest.mark.parametrize("q_true, pa_true", [(1.0, 0.0), (0.8, 88.0)])
def test_no_wall_at_q_one_and_canonical_reporting(q_true, pa_true):
    """A round galaxy, and one whose fit must cross q = 1 (start turned by ~90 degrees)."""
    images, sigmas, clean = _mock(count=2, seed=5, q=q_true, pa=pa_true, noise=0.05)
    ds = gm.Dataset.from_arrays(images, sigmas, PSF)
    ds.define_profiles(galaxy=_start(count=2, q=0.7, pa=-5.0))
    fitting = gm.Fitting(ds, batch_size=2, iteration=200, device="cpu", dtype=torch.float64, progress=False)
    fitting.fit()
    res = fitting.uncertainty()
    chi2_true = (((images - clean) / sigmas) ** 2).sum(axis=(1, 2))
    assert np.all(res["converged"])
    assert np.all(res["chi2"] <= chi2_true + 1.0)  # the optimum, not stuck at a wall
    assert np.all(res["galaxy_axis_r"] <= 1.0) and np.all(np.abs(res["galaxy_axis_r"] - q_true) < 0.02)
    assert np.all((res["galaxy_pa"] > -90.0) & (res["galaxy_pa"] <= 90.0))
    if q_true < 1:
        turn = (res["galaxy_pa"] - pa_true + 90.0) % 180.0 - 90.0
        assert np.all(np.abs(turn) < 4 * res["galaxy_pa_err"])
        assert np.all(np.abs(res["galaxy_eff_r"] - 4.0) < 4 * res["galaxy_eff_r_err"])  # along the true major axis


def test_bootstrap_errors_agree_with_covariance_errors():
    images, sigmas, _ = _mock(count=2, seed=9, shape=(40, 40))
    ds = gm.Dataset.from_arrays(images, sigmas, PSF)
    ds.define_profiles(galaxy=gm.lp.Sersic(cen_x=gm.p(np.full(2, 20.5)), cen_y=gm.p(np.full(2, 20.0)), pa=gm.p(35.0),
                                           axis_r=gm.p(0.55), eff_r=gm.p(4.5), mag=gm.p(16.7, M0=22.5), ser_n=gm.p(1.7)))
    fitting = gm.Fitting(ds, batch_size=2, iteration=50, device="cpu", progress=False)
    fitting.fit()
    cov = fitting.uncertainty("covar_mat")
    cov_err = {c: np.array(cov[c]) for c in cov.colnames if c.endswith("_err")}
    boot = fitting.uncertainty("bootstrap", n_resample=60)
    for name in ("galaxy_mag_err", "galaxy_eff_r_err", "galaxy_cen_x_err", "galaxy_pa_err"):
        ratio = np.asarray(boot[name]) / cov_err[name]
        assert np.all((ratio > 0.6) & (ratio < 1.6)), (name, ratio)


def test_results_to_init_feeds_a_bulge_disk_fit():
    rng = np.random.default_rng(11)
    count = 2
    xc, yc = gm.p(np.full(count, 24.4)), gm.p(np.full(count, 23.7))
    bulge_true = gm.lp.Sersic(cen_x=xc, cen_y=yc, pa=gm.p(10.0), axis_r=gm.p(0.9), eff_r=gm.p(1.8), mag=gm.p(17.2, M0=22.5),
                              ser_n=gm.p(4.0))
    disk_true = gm.lp.Sersic(cen_x=xc, cen_y=yc, pa=gm.p(40.0), axis_r=gm.p(0.5), eff_r=gm.p(6.0), mag=gm.p(16.4, M0=22.5),
                             ser_n=gm.p(1.0))
    clean = gm.render({"b": bulge_true, "d": disk_true}, (48, 48), psf=PSF, dtype=torch.float64).numpy()
    images = clean + rng.normal(0, 0.05, clean.shape)
    sigmas = np.full(images.shape, 0.05)
    single_ds = gm.Dataset.from_arrays(images, sigmas, PSF)
    single_ds.define_profiles(sersic=_start(count=count))
    single = gm.Fitting(single_ds, batch_size=2, iteration=100, device="cpu", progress=False)
    single.fit()
    init = gm.results_to_init(single.results, "sersic")
    xcen, ycen = init["cen_x"], init["cen_y"]
    bulge = gm.lp.Sersic(cen_x=xcen, cen_y=ycen, pa=init["pa"], axis_r=gm.p(0.8), eff_r=init.scaled("eff_r", 0.4),
                         mag=init.magnitude_share("mag", 0.3), ser_n=gm.p(4.0, fit=False))
    disk = gm.lp.Sersic(cen_x=xcen, cen_y=ycen, pa=init["pa"], axis_r=init["axis_r"], eff_r=init.scaled("eff_r", 1.3), mag=init.magnitude_share("mag", 0.7),
                        ser_n=gm.p(1.0, fit=False))
    bd_ds = gm.Dataset.from_arrays(images, sigmas, PSF)
    bd_ds.define_profiles(bulge=bulge, disk=disk)
    res = gm.Fitting(bd_ds, batch_size=2, iteration=200, device="cpu", progress=False).fit()
    chi2_true = (((images - clean) / sigmas) ** 2).sum(axis=(1, 2))
    assert np.all(res["chi2"] <= chi2_true + 25)
    bt = 1 / (1 + 10 ** (-0.4 * (res["disk_mag"] - res["bulge_mag"])))
    bt_true = 1 / (1 + 10 ** (-0.4 * (16.4 - 17.2)))
    assert np.all(np.abs(bt - bt_true) < 0.06)
    assert bulge.pa is not disk.pa and xcen is bulge.cen_x is disk.cen_x  # each indexing gives a new gm.p


def test_seed_user_profile_fits_unchanged():
    images, sigmas, clean = _mock(count=2, seed=13)
    yy, xx = np.mgrid[1:49, 1:49]
    sky = 0.8 + 0.01 * (xx - 24.5) - 0.02 * (yy - 24.5)
    images = images + sky
    ds = gm.Dataset.from_arrays(images, sigmas, PSF)
    ds.define_profiles(galaxy=_start(count=2), sky=NewSky(gm.p(0.5), gm.p(0.0), gm.p(0.0)))
    fitting = gm.Fitting(ds, batch_size=2, iteration=100, device="cpu", progress=False)
    fitting.fit()
    res = fitting.uncertainty()
    assert np.all(res["converged"])
    for col, true in (("sky_sky_0", 0.8), ("sky_grad_x", 0.01), ("sky_grad_y", -0.02)):
        assert np.all(np.abs(res[col] - true) < 4 * res[f"{col}_err"]), col
