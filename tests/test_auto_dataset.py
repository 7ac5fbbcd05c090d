"""gm.Dataset(..., auto_mask=True, psf_fwhm=...) end to end (issue 8): a survey-like cutout with
neighbours, stars and NaN patches, no mask, no sigma, no starts, fitted to the true chi2 level.

Truth: GalSim cutouts (tests/helpers/neighbour_mocks.py) with their noiseless images and noise.
"""

from __future__ import annotations

import numpy as np
import pytest

import galmoss as gm
from galmoss.auto import auto_mask, psf_from_fwhm
from galmoss.flags import Flag
from tests.helpers.neighbour_mocks import SKY, neighbour_mocks

pytest.importorskip("photutils")


@pytest.fixture(scope="module")
def mocks():
    return neighbour_mocks(4, seed=31)


def test_load_masks_the_neighbours_and_takes_sigma_from_the_sky(mocks):
    user = np.zeros(mocks.images.shape, dtype=int)
    user[:, :4, :] = 1  # the user's own mask: a bad strip
    ds = gm.Dataset.from_arrays(mocks.images, None, mocks.psf, user, auto_mask=True)
    for i in range(len(mocks.images)):
        gal = ds.load(i)
        direct = auto_mask(mocks.images[i], (user[i] == 0).astype(float))
        assert gal.n_masked == direct.n_masked > 0
        assert "auto mask" in " ".join(gal.messages)
        assert np.all(gal.weight[:4] == 0)  # combined with the user's mask, never replacing it
        assert np.all(gal.weight[direct.mask] == 0) and np.all(gal.weight[~np.isfinite(mocks.images[i])] == 0)
        assert gal.flags & Flag.sigma_estimated
        assert gal.sigma[50, 50] == pytest.approx(mocks.sky_sigma[i], rel=0.04)


def test_psf_from_fwhm_when_no_psf_image(mocks):
    ds = gm.Dataset.from_arrays(mocks.images[:2], mocks.sigmas[:2], psf_fwhm=[3.0, 4.0])
    assert np.allclose(ds.load(1).psf, psf_from_fwhm(4.0)[0])
    with pytest.raises(ValueError, match="psf_fwhm has 3 entries for 2 galaxies"):
        gm.Dataset.from_arrays(mocks.images[:2], psf_fwhm=[3.0, 4.0, 5.0])
    with pytest.raises(ValueError, match="psf_fwhm of galaxy 0 is -1"):
        gm.Dataset.from_arrays(mocks.images[:2], psf_fwhm=-1.0)


def test_no_mask_no_sigma_no_starts_reaches_the_true_chi2(mocks):
    blank = np.random.default_rng(2).normal(SKY, 0.05, mocks.images.shape[1:])
    images = np.concatenate([mocks.images, blank[None]])
    ds = gm.Dataset.from_arrays(images, None, mocks.psf, auto_mask=True)
    ds.define_profiles(g=gm.lp.Sersic(), sky=gm.lp.Sky())
    fitting = gm.Fitting(ds, batch_size=8, iteration=300, device="cpu", progress=False)
    fitting.fit()
    res = fitting.results
    # the blank cutout: no_source, not fitted, never "converged with flag 0"
    assert res["flag"][-1] & Flag.no_source and not res["converged"][-1]
    # the others: the validation test of docs/validation.md, on the pixels free of neighbour light
    g = gm.lp.Sersic(**{s: gm.p(np.asarray(res[f"g_{s}"][:-1], dtype=float)) for s in
                        ("cen_x", "cen_y", "pa", "axis_r", "eff_r", "ser_n")},
                     mag=gm.p(np.asarray(res["g_mag"][:-1], dtype=float), M0=0.0))
    sky = gm.lp.Sky(sky_bg=gm.p(np.asarray(res["sky_sky_bg"][:-1], dtype=float)))
    import torch

    model = gm.render({"g": g, "sky": sky}, mocks.images.shape[1:], psf=mocks.psf, dtype=torch.float64).numpy()
    clean = np.isfinite(mocks.images) & (mocks.hand_masks == 0)
    data = np.nan_to_num(mocks.images)
    chi2_fit = (np.where(clean, (data - model) / mocks.sigmas, 0) ** 2).sum(axis=(1, 2))
    chi2_true = (np.where(clean, (data - mocks.target_images - SKY) / mocks.sigmas, 0) ** 2).sum(axis=(1, 2))
    assert np.all(chi2_fit < chi2_true + 25), chi2_fit - chi2_true
    assert np.all(np.abs(np.asarray(res["g_eff_r"][:-1]) / mocks.truth["re"] - 1) < 0.15)
    # what the automatic mask took out is counted in the results
    from galmoss.data import Dataset

    loaded = [Dataset.load(ds, i).n_masked for i in range(len(mocks.images))]
    np.testing.assert_array_equal(np.asarray(res["n_masked"][:-1]), loaded)
    assert np.any(np.asarray(res["n_masked"][:-1]) > 0)


def test_a_resumed_run_keeps_the_masked_pixel_counts(mocks, tmp_path):
    """``n_masked`` travels in the result parts: a resumed run reports the first run's counts."""
    def run(resume):
        ds = gm.Dataset.from_arrays(mocks.images[:2], None, mocks.psf, auto_mask=True, result_path=tmp_path / "out")
        ds.define_profiles(g=gm.lp.Sersic(), sky=gm.lp.Sky())
        return gm.Fitting(ds, batch_size=2, iteration=60, device="cpu", progress=False).fit(resume=resume)

    first = run(False)
    direct = [auto_mask(mocks.images[i]).n_masked for i in range(2)]
    assert list(first["n_masked"]) == direct and min(direct) > 0
    again = run(True)  # every galaxy is found in the parts: nothing is refitted
    assert list(again["n_masked"]) == direct
    assert np.array_equal(np.asarray(again["g_eff_r"]), np.asarray(first["g_eff_r"]))
