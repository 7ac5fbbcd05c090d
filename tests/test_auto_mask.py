"""Automatic masks (issue 8): photutils segmentation, the target, the sky sigma, bad input.

Truth: GalSim cutouts with a target, neighbours and stars at known places
(tests/helpers/neighbour_mocks.py), their noiseless images and true noise sigma.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from galmoss.auto import auto_mask
from galmoss.auto.segment import clipped_sigma
from galmoss.flags import Flag
from tests.helpers.neighbour_mocks import SKY, neighbour_mocks

pytest.importorskip("photutils")


@pytest.fixture(scope="module")
def mocks():
    return neighbour_mocks(16, seed=11)


@pytest.fixture(scope="module")
def results(mocks):
    return [auto_mask(img) for img in mocks.images]


def test_the_target_is_kept_and_the_neighbours_are_masked(mocks, results):
    for i, res in enumerate(results):
        cx, cy = mocks.truth["cx"][i], mocks.truth["cy"][i]
        assert res.flags & Flag.no_source == 0
        assert res.target[int(round(cy)) - 1, int(round(cx)) - 1]
        # the target's photutils centroid lies on the true centre (neighbours >= 10 px away)
        assert abs(res.properties["x"] - cx) < 0.6 and abs(res.properties["y"] - cy) < 0.6
        assert res.n_masked == int(res.mask.sum())
        assert not np.any(res.mask & res.target)
        assert np.all(res.weight[res.mask] == 0) and np.all(res.weight[~np.isfinite(mocks.images[i])] == 0)
        # the pixels a careful human masks (a neighbour brighter than 0.5 sigma) are masked, except
        # where deblending gives them to the target: a neighbour within the target's own light
        hand = mocks.hand_masks[i].astype(bool) & np.isfinite(mocks.images[i])
        covered = (res.mask | ~np.isfinite(mocks.images[i]))[hand].mean() if hand.any() else 1.0
        close = min(np.hypot(nb["x"] - cx, nb["y"] - cy) for nb in mocks.neighbours[i])
        if close > 2.5 * mocks.truth["re"][i]:
            assert covered > 0.85, (i, covered)
        # every detected neighbour is one of the injected ones (or a deblended piece near one)
        for nb in res.neighbours:
            gap = min(np.hypot(nb["x"] - t["x"], nb["y"] - t["y"]) for t in mocks.neighbours[i])
            assert gap < 6.0, (i, nb)
    # most injected neighbours are found (faint ones next to a bright target may merge into it)
    found = sum(r.n_neighbours >= 1 for r in results)
    assert found >= 14


def test_sky_sigma_from_the_sky_pixels_matches_the_truth(mocks, results):
    ratio = np.array([r.sky_sigma for r in results]) / mocks.sky_sigma
    # per-galaxy statistical error on ~4000 sky pixels is ~1.2 %; the mean of 16 is good to 0.3 %
    assert abs(ratio.mean() - 1) < 0.01
    assert np.all(np.abs(ratio - 1) < 0.045)
    sky = np.array([r.sky for r in results])
    assert np.all(np.abs(sky - SKY) < 0.1 * mocks.sky_sigma)


def test_clipped_sigma_is_unbiased_for_gaussian_noise():
    rng = np.random.default_rng(5)
    values = rng.normal(3.0, 2.0, (200, 2000))
    sigmas = np.array([clipped_sigma(v)[1] for v in values])
    # the mean of 200 estimates, each good to 1.6 %: 0.11 % standard error
    assert sigmas.mean() == pytest.approx(2.0, rel=0.004)


def test_a_user_mask_is_combined_never_replaced(mocks):
    image = mocks.images[0]
    weight = np.ones_like(image)
    weight[:10, :] = 0.0  # the user's mask
    res = auto_mask(image, weight)
    assert np.all(res.weight[:10, :] == 0)
    assert not res.mask[:10, :].any()  # n_masked counts only what auto_mask added


def test_blank_and_constant_cutouts_have_no_source():
    rng = np.random.default_rng(1)
    blank = auto_mask(rng.normal(0.1, 1.0, (64, 64)))
    assert blank.flags & Flag.no_source and blank.n_masked == 0
    assert blank.sky_sigma == pytest.approx(1.0, rel=0.05)
    constant = auto_mask(np.full((64, 64), 3.0))
    assert constant.flags & Flag.no_source


def test_no_segment_at_the_start_falls_back_to_the_brightest_near_it():
    lone = neighbour_mocks(1, seed=3, neighbours=(0, 0), nan_fraction=0.0)
    cx, cy = lone.truth["cx"][0], lone.truth["cy"][0]
    first = auto_mask(lone.images[0])
    row = first.target[int(round(cy)) - 1]
    start = (np.flatnonzero(row).max() + 1 + 4.0, cy)  # 4 px right of the segment's edge, on empty sky
    assert first.segmentation[int(round(cy)) - 1, int(start[0]) - 1] == 0
    res = auto_mask(lone.images[0], start_xy=start, search_radius=20)
    assert res.flags & Flag.segment_fallback
    assert "brightest segment" in res.message
    assert res.target[int(round(cy)) - 1, int(round(cx)) - 1]
    far = auto_mask(lone.images[0], start_xy=(3.0, 3.0), search_radius=2)
    assert far.flags & Flag.no_source and "no source within" in far.message


def test_missing_photutils_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "photutils.segmentation", None)
    with pytest.raises(ImportError, match=r"galmoss\[auto\]"):
        auto_mask(np.zeros((32, 32)))


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="weight has shape"):
        auto_mask(np.zeros((32, 32)), np.ones((31, 32)))


def test_a_faint_target_on_a_bright_stars_halo_keeps_its_own_segment():
    from tests.helpers.galsim_mocks import GSPARAMS, galsim

    psf = galsim.Moffat(beta=2.5, fwhm=3.5, gsparams=GSPARAMS)  # broad wings
    shape = (96, 96)
    galaxy = galsim.Sersic(n=1.0, half_light_radius=4.0, flux=500.0, gsparams=GSPARAMS)
    star = galsim.DeltaFunction(flux=20 * 500.0).shift(14.0, 5.0)  # 20 times brighter, 15 px away
    clean = galsim.Convolve(galaxy + star, psf, gsparams=GSPARAMS).drawImage(nx=96, ny=96, scale=1.0).array
    image = clean + np.random.default_rng(9).normal(0, 0.05, shape)
    res = auto_mask(image)
    assert res.flags == 0
    assert res.target[47, 47]  # the cutout centre (48.5, 48.5) is the galaxy's
    assert abs(res.properties["x"] - 48.5) < 1.0 and abs(res.properties["y"] - 48.5) < 1.0
    star_x, star_y = 48.5 + 14.0, 48.5 + 5.0
    assert res.mask[int(star_y) - 1, int(star_x) - 1]  # the star is masked
    assert any(np.hypot(nb["x"] - star_x, nb["y"] - star_y) < 1.5 and nb["flux_ratio"] > 5 for nb in res.neighbours)
