"""The seed's ``gm.lp.Sersic()`` with no arguments: parameters started from the image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import galmoss as gm
from galmoss.fitting.starts import moment_estimates

YY, XX = np.mgrid[:15, :15] - 7.0
PSF = (1 + (XX**2 + YY**2) / 2.2**2) ** -3.0


def _galaxies(count=3, seed=0):
    rng = np.random.default_rng(seed)
    truth = dict(cx=rng.uniform(30, 35, count), cy=rng.uniform(30, 35, count), pa=np.array([30.0, -60.0, 75.0])[:count],
                 q=np.array([0.5, 0.8, 0.35])[:count], re=np.array([5.0, 3.0, 7.0])[:count],
                 mag=np.array([16.0, 16.5, 15.8])[:count], n=np.array([1.0, 2.5, 1.5])[:count])
    sersic = gm.lp.Sersic(cen_x=gm.p(truth["cx"]), cen_y=gm.p(truth["cy"]), pa=gm.p(truth["pa"]), axis_r=gm.p(truth["q"]),
                          eff_r=gm.p(truth["re"]), mag=gm.p(truth["mag"], M0=22.5), ser_n=gm.p(truth["n"]))
    clean = gm.render({"g": sersic, "sky": gm.lp.Sky(sky_bg=gm.p(0.3))}, (64, 64), psf=PSF, dtype=torch.float64).numpy()
    images = clean + rng.normal(0, 0.05, clean.shape)
    return images, np.full(images.shape, 0.05), truth


def test_moment_estimates_land_near_the_truth():
    images, sigmas, truth = _galaxies()
    for i in range(3):
        est = moment_estimates(images[i], np.ones((64, 64)), sigmas[i])
        assert est["sky"] == pytest.approx(0.3, abs=0.02)
        assert abs(est["cen_x"] - truth["cx"][i]) < 0.5 and abs(est["cen_y"] - truth["cy"][i]) < 0.5
        turn = (est["pa"] - truth["pa"][i] + 90) % 180 - 90
        assert abs(turn) < 10
        assert abs(est["axis_r"] - truth["q"][i]) < 0.15
        assert 0.5 < est["eff_r"] / truth["re"][i] < 1.5
        flux = 10 ** (-0.4 * (truth["mag"][i] - 22.5))
        assert 0.7 < est["flux"] / flux < 1.1


def test_seed_form_without_arguments_fits():
    images, sigmas, truth = _galaxies(seed=1)
    ds = gm.Dataset.from_arrays(images, sigmas, PSF)
    ds.define_profiles(sersic=gm.lp.Sersic(), sky=gm.lp.Sky())
    fitting = gm.Fitting(ds, batch_size=3, iteration=200, device="cpu", progress=False)
    fitting.fit()
    res = fitting.uncertainty()
    assert np.all(res["converged"])
    zero_point_shift = 22.5  # left-out magnitudes have zero point 0
    for col, key, shift in (("sersic_eff_r", "re", 0.0), ("sersic_ser_n", "n", 0.0), ("sersic_axis_r", "q", 0.0),
                            ("sersic_mag", "mag", -zero_point_shift), ("sersic_cen_x", "cx", 0.0)):
        assert np.all(np.abs(res[col] - (truth[key] + shift)) < 5 * res[f"{col}_err"]), col
    assert np.all(np.abs(res["sky_sky_bg"] - 0.3) < 5 * res["sky_sky_bg_err"])


def test_a_parameter_that_cannot_be_started_from_the_image_is_named():
    class Odd(gm.LightProfile):
        parameter_specs = {"wobble": gm.params.ParamSpec()}

        def __init__(self, wobble=None):
            super().__init__()
            self.wobble = wobble

        def image_via_grid_from(self, grid, mode="updating_model"):
            return self.wobble.value(mode) + 0 * grid[0]

    ds = gm.Dataset.from_arrays(np.zeros((1, 8, 8)))
    ds.define_profiles(odd=Odd())
    with pytest.raises(ValueError, match=r"leaves out 'wobble'.*give wobble=gm.p"):
        gm.Fitting(ds, device="cpu", progress=False).fit()
