"""``Dataset(auto_mask=True, neighbours="fit")``: neighbours fitted with the target (issue 8, item 2).

GalSim scenes with injected parameters: the issue's neighbour of equal
brightness 14 px away, a star, a galaxy and a star together, no neighbour, a
target on the halo of a star 12x brighter, and a cutout with no target at all
(only a neighbour off centre). One fit of all six in one dataset: the batch
machinery meets galaxies with 0, 1 and 2 neighbours of both kinds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import galmoss as gm
from galmoss.auto import select_neighbours
from galmoss.flags import Flag

from .helpers.neighbour_mocks import neighbour_scene

pytest.importorskip("photutils")

TARGET = dict(n=1.5, re=6.0, q=0.6, pa=30.0, cx=40.3, cy=40.7, flux=400.0)
SCENES = [
    (TARGET, [dict(kind="galaxy", x=54.0, y=42.0, flux=400.0, n=1.0, re=4.0, q=0.7, pa=-40.0)]),
    (TARGET, [dict(kind="star", x=30.0, y=50.0, flux=300.0)]),
    (TARGET, [dict(kind="galaxy", x=28.0, y=32.0, flux=800.0, n=2.0, re=3.5, q=0.8, pa=10.0),
              dict(kind="star", x=55.0, y=30.0, flux=150.0)]),
    (TARGET, []),
    (TARGET, [dict(kind="star", x=52.0, y=40.0, flux=5000.0)]),
    (None, [dict(kind="galaxy", x=62.0, y=60.0, flux=800.0, n=2.0, re=5.0, q=0.8, pa=10.0)]),
]
MAG = -2.5 * math.log10(TARGET["flux"])  # no zero point given: mag = -2.5 log10(flux)


def _fitted_scenes(indices) -> gm.Fitting:
    """The scenes ``indices`` fitted with automatic masks and fitted neighbours (covariance errors not yet asked)."""
    images, sigmas = [], []
    for i in indices:
        image, sigma, psf, _ = neighbour_scene(*SCENES[i], seed=i)
        images.append(image)
        sigmas.append(sigma)
    ds = gm.Dataset.from_arrays(np.array(images), np.array(sigmas), psf, auto_mask=True, neighbours="fit")
    ds.define_profiles(g=gm.lp.Sersic(), sky=gm.lp.Sky())
    fitting = gm.Fitting(ds, batch_size=8, device="cpu", progress=False)
    fitting.fit()
    return fitting


@pytest.fixture(scope="module")
def fitted():
    return _fitted_scenes(range(len(SCENES))).uncertainty()


def _target_ok(row, rel=0.02, pulls=3.0):
    """The target's r_e, q and magnitude against the injected truth (GalSim)."""
    assert abs(row["g_eff_r"] / TARGET["re"] - 1) < rel
    assert abs(row["g_eff_r"] - TARGET["re"]) < pulls * row["g_eff_r_err"] + 0.005 * TARGET["re"]
    assert abs(row["g_axis_r"] - TARGET["q"]) < 0.02
    assert abs(row["g_mag"] - MAG) < 0.03


def test_the_target_columns_keep_their_names_and_the_count_is_a_column(fitted):
    for col in ("g_eff_r", "g_mag", "sky_sky_bg", "n_neighbours_fitted", "nb1_eff_r", "nbstar1_mag", "n_masked"):
        assert col in fitted.colnames
    assert list(fitted["n_neighbours_fitted"]) == [1, 1, 2, 0, 1, 0]


def test_the_issues_neighbour_of_equal_brightness_14_px_away_is_fitted(fitted):
    row = fitted[0]
    _target_ok(row)
    nb = SCENES[0][1][0]
    assert math.hypot(row["nb1_cen_x"] - nb["x"], row["nb1_cen_y"] - nb["y"]) < 0.2
    assert abs(row["nb1_mag"] + 2.5 * math.log10(nb["flux"])) < 0.05
    assert abs(row["nb1_eff_r"] / nb["re"] - 1) < 0.05
    assert np.isnan(row["nbstar1_mag"]) and np.isnan(row["nb2_mag"])
    assert row["flag"] == 0 and abs(row["reduced_chi2"] - 1) < 0.05


def test_a_star_is_fitted_as_a_point_source(fitted):
    row = fitted[1]
    _target_ok(row)
    star = SCENES[1][1][0]
    assert np.isnan(row["nb1_mag"])
    assert math.hypot(row["nbstar1_cen_x"] - star["x"], row["nbstar1_cen_y"] - star["y"]) < 0.1
    assert abs(row["nbstar1_mag"] + 2.5 * math.log10(star["flux"])) < 0.03


def test_a_galaxy_and_a_star_together(fitted):
    row = fitted[2]
    _target_ok(row)
    galaxy, star = SCENES[2][1]
    assert abs(row["nb1_mag"] + 2.5 * math.log10(galaxy["flux"])) < 0.05
    assert abs(row["nbstar1_mag"] + 2.5 * math.log10(star["flux"])) < 0.05
    assert abs(row["reduced_chi2"] - 1) < 0.05


def test_no_neighbour_leaves_the_neighbour_columns_nan(fitted):
    row = fitted[3]
    _target_ok(row)
    assert all(np.isnan(row[c]) for c in fitted.colnames if c.startswith("nb") and not c.endswith("_err"))


def test_a_target_on_a_bright_stars_halo(fitted):
    """A star 12x brighter 12 px away: deblended finer, fitted as a point source; the target unbiased."""
    row = fitted[4]
    _target_ok(row, rel=0.03)
    assert abs(row["nbstar1_mag"] + 2.5 * math.log10(5000.0)) < 0.02
    assert "deblended finer" in row["message"]


def test_a_cutout_that_is_all_neighbour_is_flagged_not_a_target(fitted):
    row = fitted[5]
    assert row["flag"] & int(Flag.segment_fallback)
    assert "no segment under the start" in row["message"]
    # what was fitted is the neighbour off centre, and the flag says so
    assert math.hypot(row["g_cen_x"] - 62.0, row["g_cen_y"] - 60.0) < 0.3


def test_the_rule_fits_close_or_bright_neighbours_and_masks_the_rest():
    target = {"eff_r": 5.0, "flux": 100.0}

    def row(label, distance, ratio, r_half=4.0):
        return {"label": label, "x": 10.0 + distance, "y": 10.0, "distance": distance, "flux_ratio": ratio,
                "flux": 100.0 * ratio, "eff_r": 3.0, "axis_r": 0.7, "pa": 0.0, "r_half": r_half}

    rows = [row(1, 14.0, 0.2), row(2, 16.0, 0.2), row(3, 25.0, 2.0), row(4, 35.0, 2.0), row(5, 5.0, 0.1, r_half=2.0)]
    chosen = select_neighbours(target, rows, psf_r_half=2.1)
    # < 3 r_e (15 px): 1 and 5; brighter and < 6 r_e (30 px): 3; 2 and 4 masked; nearest first
    assert [c["label"] for c in chosen] == [5, 1, 3]
    assert [c["kind"] for c in chosen] == ["point", "sersic", "sersic"]
    assert [c["label"] for c in select_neighbours(target, rows, max_neighbours=2)] == [5, 1]
    assert all(c["kind"] == "sersic" for c in select_neighbours(target, rows))  # no PSF: no point source


def test_bad_neighbour_options_are_named():
    images = np.zeros((2, 16, 16))
    with pytest.raises(ValueError, match="needs auto_mask=True"):
        gm.Dataset.from_arrays(images, neighbours="fit")
    with pytest.raises(ValueError, match="choose 'mask'"):
        gm.Dataset.from_arrays(images, auto_mask=True, neighbours="model")
    with pytest.raises(ValueError, match="max_neighbours"):
        gm.Dataset.from_arrays(images, auto_mask=True, neighbours="fit", max_neighbours=-1)


@pytest.mark.slow
def test_bootstrap_errors_with_neighbours_fitted_match_the_covariance_errors(fitted):
    """Two scenes refitted under pixel resampling: bootstrap sigma of r_e within 35 % of the Fisher sigma (k = 40)."""
    fitting = _fitted_scenes((0, 3))
    boot = fitting.uncertainty(method="bootstrap", n_resample=40, seed=1)
    for j, i in enumerate((0, 3)):
        assert abs(boot["g_eff_r_err"][j] / fitted["g_eff_r_err"][i] - 1) < 0.35
        assert boot["g_eff_r_err"][j] != fitted["g_eff_r_err"][i]  # refitted, not the covariance errors kept
    assert np.isfinite(boot["nb1_eff_r_err"][0]) and np.isnan(boot["nb1_eff_r_err"][1])
