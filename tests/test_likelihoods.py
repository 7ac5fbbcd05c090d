"""Likelihood residuals: sum of squares = -2 ln L + const, and what each buys in a fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

import galmoss as gm
from galmoss.fitting import LMSettings
from galmoss.fitting.likelihoods import Chi2, Poisson, StudentT, get_likelihood


def test_sum_of_squares_is_minus_two_log_likelihood():
    rng = np.random.default_rng(0)
    model = torch.tensor(rng.uniform(0.5, 20.0, 500))
    counts = torch.tensor(rng.poisson(model.numpy()).astype(float))
    sigma = torch.tensor(rng.uniform(0.5, 2.0, 500))
    weight = torch.ones(500, dtype=torch.float64)
    # chi2
    r = Chi2().residuals(counts, model, sigma, weight)
    assert float((r**2).sum()) == pytest.approx(float((((counts - model) / sigma) ** 2).sum()), rel=1e-12)
    # Poisson: -2 ln L = 2 sum(m - d ln m + ln d!) ; the deviance drops the model-independent part
    r = Poisson().residuals(counts, model, sigma, weight)
    minus2logl = -2 * stats.poisson.logpmf(counts.numpy(), model.numpy()).sum()
    saturated = -2 * stats.poisson.logpmf(counts.numpy(), np.maximum(counts.numpy(), 1e-300)).sum()
    assert float((r**2).sum()) == pytest.approx(minus2logl - saturated, rel=1e-10)
    # Student-t of scale sigma, nu = 5
    z = (counts - model) / sigma
    r = StudentT(5.0).residuals(counts, model, sigma, weight)
    minus2logl = -2 * (stats.t.logpdf(z.numpy(), df=5.0) - np.log(sigma.numpy())).sum()
    const = -2 * (stats.t.logpdf(0.0, df=5.0) - np.log(sigma.numpy())).sum()
    assert float((r**2).sum()) == pytest.approx(minus2logl - const, rel=1e-10)


def test_weights_count_pixels_and_zero_weight_drops_them():
    d, m, s = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.5, 2.5, 1.0]), torch.ones(3)
    for lik in (Chi2(), Poisson(), StudentT()):
        full = (lik.residuals(d, m, s, torch.ones(3)) ** 2)
        twice = (lik.residuals(d, m, s, torch.tensor([2.0, 0.0, 1.0])) ** 2)
        assert torch.allclose(twice, torch.stack([2 * full[0], torch.zeros(()), full[2]]).to(twice.dtype), atol=1e-12)


def test_unknown_likelihood_is_refused():
    with pytest.raises(ValueError, match="choose one of"):
        get_likelihood("gauss")


def _star_dataset(counts_image, psf, weight=None):
    ds = gm.Dataset.from_arrays(counts_image[None], np.ones_like(counts_image)[None], psf, None if weight is None else weight[None])
    return ds


def test_poisson_fit_conserves_counts():
    """With the amplitude the only free parameter, the Cash MLE makes the model's total equal the counts.

    (m = F t, so d(-ln L)/dF = sum(t) - sum(d)/F = 0: an exact property of the Poisson MLE.)
    """
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:11, :11] - 5.0
    psf = np.exp(-0.5 * (xx**2 + yy**2) / 1.8**2)

    def galaxy(mag, fit):
        return gm.lp.Sersic(cen_x=gm.p(16.2, fit=False), cen_y=gm.p(15.7, fit=False), pa=gm.p(20.0, fit=False),
                            axis_r=gm.p(0.7, fit=False), eff_r=gm.p(3.0, fit=False), mag=gm.p(mag, M0=22.5, fit=fit),
                            ser_n=gm.p(1.5, fit=False))

    truth = gm.render(galaxy(16.0, False), (32, 32), psf=psf, dtype=torch.float64)[0].numpy()
    counts = rng.poisson(truth).astype(float)
    ds = gm.Dataset.from_arrays(counts[None], np.ones_like(counts)[None], psf)
    ds.define_profiles(galaxy=galaxy(16.4, True))
    res = gm.Fitting(ds, batch_size=1, iteration=100, likelihood="poisson", device="cpu", dtype=torch.float64,
                     progress=False, lm_settings=LMSettings(ftol=1e-13, xtol=1e-13)).fit()
    assert res["converged"][0]
    fitted = gm.render(galaxy(float(res["galaxy_mag"][0]), False), (32, 32), psf=psf, dtype=torch.float64)[0].numpy()
    assert fitted.sum() == pytest.approx(counts.sum(), rel=1e-6)


def test_student_t_resists_unmasked_junk():
    """A bright unmasked neighbour on the galaxy's outskirts drags a chi2 fit, not a Student-t one."""
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:11, :11] - 5.0
    psf = np.exp(-0.5 * (xx**2 + yy**2) / 1.8**2)
    make = lambda mag: gm.lp.Sersic(cen_x=gm.p(24.3, fit=False), cen_y=gm.p(23.8, fit=False), pa=gm.p(30.0, fit=False),  # noqa: E731
                                    axis_r=gm.p(0.6, fit=False), eff_r=gm.p(4.0, fit=False), mag=gm.p(mag, M0=22.5),
                                    ser_n=gm.p(1.0, fit=False))
    truth = gm.render(make(17.0), (48, 48), psf=psf, dtype=torch.float64)[0].numpy()
    sigma = np.full_like(truth, 0.5)
    clean = truth + rng.normal(0, 0.5, truth.shape)
    junk = clean.copy()
    junk[27:32, 28:33] += 20.0  # a compact neighbour 6 px from the centre
    mags = {}
    for name, image in (("clean", clean), ("junk", junk)):
        for lik in ("chi2", "student_t"):
            ds = gm.Dataset.from_arrays(image[None], sigma[None], psf)
            ds.define_profiles(galaxy=make(17.3))
            mags[name, lik] = gm.Fitting(ds, batch_size=1, iteration=200, likelihood=lik, device="cpu",
                                         dtype=torch.float64, progress=False).fit()["galaxy_mag"][0]
    shift_t = abs(mags["junk", "student_t"] - mags["clean", "student_t"])
    shift_chi2 = abs(mags["junk", "chi2"] - mags["clean", "chi2"])
    assert shift_t < 0.01
    assert shift_chi2 > 10 * shift_t and shift_chi2 > 0.05
