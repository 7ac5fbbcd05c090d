"""Priors (gm.prior): the maximum a posteriori and the posterior's errors against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import galmoss as gm

from .test_fitting import PSF, _mock, _start


def _sky_data(n_gal=4, shape=(20, 20), noise=0.5, seed=1):
    rng = np.random.default_rng(seed)
    levels = np.linspace(1.0, 4.0, n_gal)
    images = levels[:, None, None] + rng.normal(0, noise, (n_gal,) + shape)
    return images, np.full(images.shape, noise)


def test_a_normal_prior_on_a_linear_parameter_gives_the_closed_form_posterior():
    """Sky level s, M pixels of noise sigma, prior N(mu_p, sigma_p): the posterior is normal with
    mean (sum d / sigma^2 + mu_p / sigma_p^2) / (M / sigma^2 + 1 / sigma_p^2) and variance 1 / (M / sigma^2 + 1 / sigma_p^2).
    Per-galaxy prior centres and widths; the MAP to 1e-4 of the posterior's width (LM's stopping tolerance),
    the error to 1e-6."""
    images, sigmas = _sky_data()
    noise = sigmas[0, 0, 0]
    m = images[0].size
    mu_p = np.array([0.0, 2.0, 5.0, 3.0])
    sd_p = np.array([0.01, 0.05, 0.02, 1.0])
    ds = gm.Dataset.from_arrays(images, sigmas)
    ds.define_profiles(sky=gm.lp.Sky(sky_bg=gm.p(1.0, prior=gm.prior.Normal(mu_p, sd_p))))
    fitting = gm.Fitting(ds, batch_size=4, iteration=50, device="cpu", dtype=torch.float64, progress=False)
    fitting.fit()
    res = fitting.uncertainty("covar_mat")
    precision = m / noise**2 + 1 / sd_p**2
    mean = (images.reshape(4, -1).sum(1) / noise**2 + mu_p / sd_p**2) / precision
    np.testing.assert_allclose(res["sky_sky_bg"], mean, rtol=0, atol=1e-4 * precision.min() ** -0.5)
    np.testing.assert_allclose(res["sky_sky_bg_err"], precision**-0.5, rtol=1e-6)
    # chi2 is the data's alone, the prior's term is apart
    fitted = np.asarray(res["sky_sky_bg"])
    chi2 = (((images - fitted[:, None, None]) / noise) ** 2).reshape(4, -1).sum(1)
    np.testing.assert_allclose(res["chi2"], chi2, rtol=1e-9)
    assert np.all(res["dof"] == m - 1)


def test_a_log_normal_size_prior_pulls_a_faint_galaxy_by_the_posterior_weights():
    """Near the optimum the posterior of ln r_e is the product of two normals: the data's (mean and width from
    the fit without a prior) and the prior's. With the prior as wide as the data's error, the MAP lies halfway
    in ln r_e (to 0.1 of the shift: the data's likelihood is only close to normal) and the error shrinks by sqrt(2)."""
    images, sigmas, _ = _mock(count=2, seed=5, noise=0.3, re=4.0, mag=17.0)
    ds = gm.Dataset.from_arrays(images, sigmas, PSF)
    ds.define_profiles(galaxy=_start(count=2))
    free = gm.Fitting(ds, batch_size=2, iteration=200, device="cpu", dtype=torch.float64, progress=False)
    free.fit()
    free = free.uncertainty("covar_mat")
    ln_re = np.log(np.asarray(free["galaxy_eff_r"]))
    sd = np.asarray(free["galaxy_eff_r_err"]) / np.asarray(free["galaxy_eff_r"])
    mu = ln_re + sd  # a prior one data-sigma above the data's answer, as wide as the data's error
    start = _start(count=2)
    start.eff_r = gm.p(5.0, prior=gm.prior.Normal(mu, sd))
    ds = gm.Dataset.from_arrays(images, sigmas, PSF)
    ds.define_profiles(galaxy=start)
    fit = gm.Fitting(ds, batch_size=2, iteration=200, device="cpu", dtype=torch.float64, progress=False)
    fit.fit()
    post = fit.uncertainty("covar_mat")
    shift = (np.log(np.asarray(post["galaxy_eff_r"])) - ln_re) / sd
    np.testing.assert_allclose(shift, 0.5, atol=0.1)
    ratio = np.asarray(post["galaxy_eff_r_err"]) / np.asarray(post["galaxy_eff_r"]) / sd
    np.testing.assert_allclose(ratio, 1 / math.sqrt(2), atol=0.05)


def test_a_flux_fraction_prior_is_linear_in_the_two_magnitudes():
    """logit(B/T) = -0.4 ln 10 (m_b - m_d): two sky-like linear parameters stand in for the magnitudes'
    coordinate; checked directly on the prior's coordinate function."""
    mb, md = gm.p(20.0, M0=25.0), gm.p(19.0, M0=25.0)
    prior = gm.prior.FluxFraction(md, mu=-1.0, sigma=0.5)
    c = prior.coordinate(torch.tensor([20.0], dtype=torch.float64), (torch.tensor([19.0], dtype=torch.float64),), mb)
    bt = 10 ** (-0.4 * 20.0) / (10 ** (-0.4 * 20.0) + 10 ** (-0.4 * 19.0))
    assert float(c) == pytest.approx(math.log(bt / (1 - bt)), rel=1e-12)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: gm.prior.Normal(0.0, 0.0), "must be > 0"),
        (lambda: gm.prior.Normal(0.0, -1.0), "must be > 0"),
        (lambda: gm.p(1.0, fit=False, prior=gm.prior.Normal(0.0, 1.0)), "fixed parameter"),
        (lambda: gm.prior.Normal(0.0, 1.0, space="log2"), "space must be one of"),
        (lambda: gm.p(1.0, prior=(0.0, 1.0)), "must be a gm.prior object"),
    ],
)
def test_bad_priors_are_refused_when_made(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_a_prior_centred_outside_the_range_or_on_a_foreign_parameter_is_refused_before_fitting():
    images, sigmas = _sky_data(n_gal=2)
    ds = gm.Dataset.from_arrays(images, sigmas)
    ds.define_profiles(sky=gm.lp.Sky(sky_bg=gm.p(1.0, value_range=(0, 5), prior=gm.prior.Normal(7.0, 1.0, space="value"))))
    with pytest.raises(ValueError, match="outside the range the fit allows"):
        gm.Fitting(ds, device="cpu", progress=False).fit()
    stranger = gm.p(1.0)
    ds = gm.Dataset.from_arrays(images, sigmas)
    ds.define_profiles(sky=gm.lp.Sky(sky_bg=gm.p(1.0, prior=gm.prior.Ratio(stranger, 0.0, 1.0))))
    with pytest.raises(ValueError, match="no profile of the model uses"):
        gm.Fitting(ds, device="cpu", progress=False).fit()
    ds = gm.Dataset.from_arrays(images, sigmas)
    ds.define_profiles(sky=gm.lp.Sky(sky_bg=gm.p(1.0, prior=gm.prior.Normal([0.0, 1.0, 2.0], 1.0))))
    with pytest.raises(ValueError, match="holds 3 values but the dataset has 2"):
        gm.Fitting(ds, device="cpu", progress=False).fit()


def test_the_sourcextractor_preset_puts_its_priors_on_copies_of_a_bulge_and_a_disk():
    """One word switches the preset on; the user's gm.p objects are not changed, a shared centre stays
    shared, the logit prior's bounds become the index's range, sizes given in arcsec move the centres."""
    cx, cy = gm.p(24.0), gm.p(24.0)
    bulge = gm.lp.Sersic(cen_x=cx, cen_y=cy, eff_r=gm.p(0.2, pix_scale=0.1), mag=gm.p(19.0, M0=24.0), ser_n=gm.p(3.0),
                         axis_r=gm.p(0.8), pa=gm.p(0.0))
    disk = gm.lp.ExpDisk(cen_x=cx, cen_y=cy, scale_l=gm.p(0.5, pix_scale=0.1), mag=gm.p(18.0, M0=24.0), axis_r=gm.p(0.5),
                         pa=gm.p(10.0))
    model = gm.Model({"bulge": bulge, "disk": disk}, priors="sourcextractor")
    assert bulge.eff_r.prior is None and disk.scale_l.prior is None  # the user's objects are left as given
    b, d = model.profiles["bulge"], model.profiles["disk"]
    assert b.cen_x is d.cen_x and b.cen_x is cx  # a parameter without a prior is not copied
    h = 1.678347  # r_e / h of an exponential disk
    assert d.scale_l.prior.mu[0] == pytest.approx(0.7 - math.log(h) + math.log(0.1))
    assert isinstance(b.eff_r.prior, gm.prior.Ratio) and b.eff_r.prior.other is d.scale_l
    # log10(r_b / r_d^2) in pixels = log10(r_b,arcsec / h_arcsec^2) - log10(0.1) + 2 log10(h / 0.1) ... as centres:
    assert b.eff_r.prior.mu[0] == pytest.approx(-1.0 - math.log10(1 / 0.1) + 2 * math.log10(h / 0.1))
    assert isinstance(b.mag.prior, gm.prior.FluxFraction)
    # a bulge's free index gets no prior (the preset's index prior, centred at n = 0.84, is a whole galaxy's)
    assert b.ser_n.prior is None
    labels = sorted(t.label for t in model.priors)
    assert labels == ["bulge.axis_r", "bulge.eff_r", "bulge.mag", "disk.axis_r", "disk.scale_l"]
    # one component: the index's logit prior, whose bounds become its range
    single = gm.Model({"galaxy": gm.lp.Sersic(cen_x=cx, cen_y=cy, eff_r=gm.p(2.0), mag=gm.p(19.0, M0=24.0),
                                              ser_n=gm.p(3.0), axis_r=gm.p(0.8), pa=gm.p(0.0))}, priors="sourcextractor")
    n = single.profiles["galaxy"].ser_n
    assert (n.prior.mu[0], n.prior.space) == (-3.9, "logit")
    assert (single.transforms[n].lower, single.transforms[n].upper) == pytest.approx((0.25, 20.0))
    with pytest.raises(ValueError, match="unknown preset"):
        gm.Model({"bulge": bulge}, priors="emc2")


def test_the_bootstrap_spread_is_robust_to_a_refit_in_another_minimum():
    """Normal refits: the spread equals their sigma (to 6 % at 2,000 draws); one refit 100 sigma away
    changes it by < 1 % and is counted as split; a galaxy without one counts 0."""
    from galmoss.fitting.uncertainty import robust_spread

    rng = np.random.default_rng(3)
    dev = rng.normal(0.0, [0.5, 2.0], size=(2, 2000, 2))
    spread, split = robust_spread(dev.copy())
    np.testing.assert_allclose(spread, [[0.5, 2.0], [0.5, 2.0]], rtol=0.06)
    assert split.tolist() == [0, 0]
    dev[1, 7, 0] = 50.0
    spread2, split2 = robust_spread(dev)
    np.testing.assert_allclose(spread2, spread, rtol=0.01)
    assert split2.tolist() == [0, 1]


def test_the_results_name_the_priors_give_their_term_apart_and_flag_a_prior_the_data_cannot_beat(tmp_path):
    """A very faint galaxy with a tight size prior: chi2_prior equals the squared prior row at the fitted value,
    chi2 + chi2_prior is what was minimised, prior_dominated names eff_r, the table meta and run.json name the prior;
    the preset by one word on Fitting; a bad preset name is a ConfigError before any fit."""
    import json

    images, sigmas, _ = _mock(count=2, seed=8, noise=0.6, re=4.0, mag=17.0)
    start = _start(count=2)
    start.eff_r = gm.p(5.0, prior=gm.prior.Normal(math.log(4.0), 0.05))
    ds = gm.Dataset.from_arrays(images, sigmas, PSF, result_path=str(tmp_path / "out"))
    ds.define_profiles(galaxy=start)
    fit = gm.Fitting(ds, batch_size=2, iteration=100, device="cpu", dtype=torch.float64, progress=False)
    res = fit.fit()
    expected = ((np.log(np.asarray(res["galaxy_eff_r"])) - math.log(4.0)) / 0.05) ** 2
    np.testing.assert_allclose(res["chi2_prior"], expected, rtol=1e-6, atol=1e-12)
    assert np.all(np.asarray(res["flag"]) & int(gm.flags.Flag.prior_dominated))
    assert "galaxy.eff_r" in res["message"][0]
    assert "galaxy.eff_r: Normal(mu=1.38629" in res.meta["priors"]
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["priors"] == [res.meta["priors"]]
    with pytest.raises(ValueError, match="priors='emc'"):
        gm.Fitting(ds, priors="emc", device="cpu")
    ds2 = gm.Dataset.from_arrays(images, sigmas, PSF)
    ds2.define_profiles(galaxy=_start(count=2))
    res2 = gm.Fitting(ds2, batch_size=2, iteration=100, device="cpu", progress=False, priors="sourcextractor").fit()
    assert "chi2_prior" in res2.colnames and np.all(np.asarray(res2["chi2_prior"]) > 0)
