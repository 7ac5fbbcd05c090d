"""68.3 % intervals: the unified interval of a noisy shape covers the truth 68.3 % of the time for
any true shape, and the results tables carry the axis ratios' intervals through files and collate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from astropy.table import Table

import galmoss as gm
from galmoss.fitting.intervals import LEVEL, axis_ratio_interval, interval, log_interval, rice_interval


@pytest.mark.parametrize("true_modulus", [0.0, 0.4, 1.0, 1.6, 2.5, 4.0, 8.0, 30.0])
def test_unified_interval_of_a_noisy_modulus_covers_the_truth_at_its_level(true_modulus):
    # The truth: a two-component vector measured with unit Gaussian noise in each component,
    # sampled. 40,000 draws give a coverage to +-0.0023 (1 sigma); tolerance 0.01.
    rng = np.random.default_rng(int(true_modulus * 10))
    draws = rng.normal(size=(40_000, 2)) + [true_modulus, 0.0]
    lo, hi = rice_interval(np.hypot(draws[:, 0], draws[:, 1]))
    covered = np.mean((lo <= true_modulus) & (true_modulus <= hi))
    assert abs(covered - LEVEL) < 0.01, covered


def test_unified_interval_reaches_round_and_becomes_the_normal_one_at_high_signal():
    # a measured modulus below 1.515 sigma (the Rayleigh distribution's 68.3 % point, sqrt(-2 ln(1 - 0.683))):
    # round is inside
    lo, hi = rice_interval(np.array([0.0, 1.0, 1.5]))
    assert np.all(lo == 0.0)
    assert math.sqrt(-2 * math.log(1 - LEVEL)) == pytest.approx(1.515, abs=1e-3)
    # far from round: t +- 1 around the Rice mean inverted, sqrt(x^2 - 1)
    lo, hi = rice_interval(np.array([20.0, 40.0]))
    np.testing.assert_allclose(lo, np.sqrt([399.0, 1599.0]) - 1, atol=0.02)
    np.testing.assert_allclose(hi, np.sqrt([399.0, 1599.0]) + 1, atol=0.02)


def test_axis_ratio_interval_in_q():
    # a faint round-looking galaxy: q = 0.9 +- 0.1 is eta = -ln q = 0.105 measured with sigma 0.111 (0.95
    # sigma from round): the interval reaches q = 1 and, its upper side taken by round, ends below at
    # eta = 1.43 sigma (q = 0.853), higher than the symmetric q - err
    lo, hi = axis_ratio_interval(np.array([0.9, 0.5, 0.03]), np.array([0.1, 0.002, 0.01]))
    assert hi[0] == 1.0 and 0.84 < lo[0] < 0.87
    # high S/N: the interval in ln q, q e^(+-err/q), to the Rice mean's shift (sigma_eta / 2 eta ~ 1e-5 here)
    np.testing.assert_allclose([lo[1], hi[1]], [0.5 * math.exp(-0.004), 0.5 * math.exp(0.004)], rtol=2e-4)
    assert lo[2] < 0.03 < hi[2]
    # a value held fixed (error 0) is its own interval; no error, no interval
    lo, hi = interval("axis_ratio", [0.7, 0.7], [0.0, np.nan])
    assert lo[0] == hi[0] == 0.7 and np.isnan(lo[1]) and np.isnan(hi[1])
    lo, hi = log_interval(np.array([2.0]), np.array([0.2]))
    np.testing.assert_allclose([lo[0], hi[0]], [2 * math.exp(-0.1), 2 * math.exp(0.1)])
    # with a prior: ln q +- err / q, its upper end held at b/a = 1
    lo, hi = interval("axis_ratio_prior", [0.95, 0.5], [0.1, 0.05])
    np.testing.assert_allclose(lo, [0.95 * math.exp(-0.1 / 0.95), 0.5 * math.exp(-0.1)])
    np.testing.assert_allclose(hi, [1.0, 0.5 * math.exp(0.1)])


def test_results_carry_the_axis_ratio_intervals_through_files_collate_and_init(tmp_path):
    from galmoss.cli import main

    rng = np.random.default_rng(4)
    n, shape = 6, (28, 28)
    yy, xx = np.mgrid[:9, :9] - 4.0
    psf = np.exp(-0.5 * (xx**2 + yy**2) / 1.3**2)
    axis_r = np.array([1.0, 0.95, 0.8, 0.6, 0.5, 0.4])
    truth = gm.lp.Sersic(cen_x=gm.p(14.3), cen_y=gm.p(13.8), pa=gm.p(25.0), axis_r=gm.p(axis_r),
                         eff_r=gm.p(3.5), mag=gm.p(19.5, M0=22.5), ser_n=gm.p(1.0))
    clean = gm.render(truth, shape, psf=psf, dtype=torch.float64).numpy()
    noise = 0.05
    images = (clean + rng.normal(0, noise, clean.shape)).astype(np.float32)
    for prior in (None, gm.prior.Normal(0.0, 0.3, space="ellipticity")):
        folder = tmp_path / ("prior" if prior else "plain")
        ds = gm.Dataset.from_arrays(images, np.full_like(images, noise), psf, result_path=folder)
        ds.define_profiles(sersic=gm.lp.Sersic(axis_r=gm.p(0.7, prior=prior), eff_r=gm.p(3.0), ser_n=gm.p(1.2)))
        fitting = gm.Fitting(ds, batch_size=4, iteration=80, device="cpu", progress=False)
        fitting.fit()
        res = fitting.uncertainty()
        q, err = np.asarray(res["sersic_axis_r"]), np.asarray(res["sersic_axis_r_err"])
        lo, hi = np.asarray(res["sersic_axis_r_lo"]), np.asarray(res["sersic_axis_r_hi"])
        assert np.all(np.isfinite(err)) and np.all((lo <= q) & (q <= hi)) and np.all(hi <= 1.0)
        if prior is None:
            np.testing.assert_array_equal([lo, hi], axis_ratio_interval(q, err))
        else:
            np.testing.assert_allclose([lo, hi], [q * np.exp(-err / q), np.minimum(q * np.exp(err / q), 1.0)])
        assert "sersic_eff_r_lo" not in res.colnames  # other columns: the error alone
        assert str(res["sersic_axis_r_lo"].unit) == str(res["sersic_axis_r"].unit)
        back = Table.read(folder / "results.fits")
        np.testing.assert_array_equal(back["sersic_axis_r_hi"], hi)
        # an interval column is no parameter to start from
        slots = set(gm.results_to_init(back, "sersic"))
        assert "axis_r" in slots and not {"axis_r_lo", "axis_r_hi", "axis_r_err"} & slots
        # collate rebuilds the table from the parts and run.json, intervals included
        (folder / "results.fits").unlink()
        assert main(["collate", str(folder)]) == 0
        np.testing.assert_allclose(Table.read(folder / "results.fits")["sersic_axis_r_lo"], lo, rtol=1e-12)
