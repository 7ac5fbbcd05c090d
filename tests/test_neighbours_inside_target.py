"""Deblended pieces of a large disk's own light are the target's, not neighbours.

photutils' deblending cuts the knots (HII regions) of a large disk into
segments of their own. Fitted as neighbours (or masked) they took the disk's
light: its magnitude 0.15-0.6 mag too faint on these mocks, and the real
neighbour lost its component to a knot (both seeds used here failed so). GalSim mocks (tests/helpers/neighbour_mocks.py
``clumpy_disk``): an exponential disk of r_e 14 px with 8 knots of about 3 % of
its flux each and one real neighbour galaxy 30 px away, 0.3 times as bright.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import galmoss as gm
from galmoss.auto import auto_mask
from galmoss.auto.segment import part_of_target, psf_half_light_radius

from .helpers.neighbour_mocks import clumpy_disk

pytest.importorskip("photutils")

SEEDS = (3, 6)  # knots that photutils deblends into 3 segments each


@pytest.mark.parametrize("seed", SEEDS)
def test_the_knots_stay_in_the_target_and_the_real_neighbour_is_fitted(seed):
    image, sigma, psf, truth, clumps, nb = clumpy_disk(seed)
    res = auto_mask(image, None, sigma, neighbours="fit", psf_r_half=psf_half_light_radius(psf))
    assert "kept as part of it" in res.message
    for c in clumps:  # every knot's pixel is the target's, none masked
        iy, ix = int(round(c["y"])) - 1, int(round(c["x"])) - 1
        assert res.target[iy, ix] and not res.mask[iy, ix]
    assert len(res.fitted) == 1
    assert math.hypot(res.fitted[0]["x"] - nb["x"], res.fitted[0]["y"] - nb["y"]) < 1.0
    # the target's segment now holds the disk and its knots: its (isophotal) flux misses only the wings
    # below the detection threshold, within 10 % of theirs (without its pieces it missed 20-40 %)
    assert abs(res.properties["flux"] / (truth["flux"] + truth["clump_flux"]) - 1) < 0.10
    # masking instead of fitting keeps the knots too: only the neighbour is masked
    masked = auto_mask(image, None, sigma, neighbours="mask")
    assert masked.n_neighbours == 1 and not any(masked.mask[int(round(c["y"])) - 1, int(round(c["x"])) - 1] for c in clumps)


def test_the_disk_magnitude_is_recovered_with_its_knots():
    scenes = [clumpy_disk(seed) for seed in SEEDS]
    psf = scenes[0][2]
    ds = gm.Dataset.from_arrays(np.array([s[0] for s in scenes]), np.array([s[1] for s in scenes]), psf,
                                auto_mask=True, neighbours="fit")
    ds.define_profiles(disk=gm.lp.Sersic(), sky=gm.lp.Sky())
    res = gm.Fitting(ds, batch_size=2, device="cpu", progress=False).fit()
    for row, (_, _, _, truth, _, nb) in zip(res, scenes):
        assert row["n_neighbours_fitted"] == 1
        assert math.hypot(row["nb1_cen_x"] - nb["x"], row["nb1_cen_y"] - nb["y"]) < 0.3
        assert abs(row["nb1_mag"] + 2.5 * math.log10(nb["flux"])) < 0.08  # the knots' residual light is near it
        # the smooth Sersic takes the disk and its knots: within 0.05 mag of their total
        assert abs(row["disk_mag"] + 2.5 * math.log10(truth["flux"] + truth["clump_flux"])) < 0.05
        assert abs(row["disk_eff_r"] / truth["re"] - 1) < 0.15


def test_the_rule_needs_every_sign_of_a_piece():
    target = {"eff_r": 10.0, "flux": 1000.0}
    piece = {"same_island": True, "ellipse_distance": 20.0, "flux_ratio": 0.1, "peak_contrast": 8.0, "r_half": 5.0}
    assert part_of_target(target, piece) and part_of_target(target, piece, psf_r_half=2.0)
    assert not part_of_target(target, {**piece, "r_half": 2.9}, psf_r_half=2.0)  # compact: a star or a small galaxy
    for key, value in (("same_island", False), ("ellipse_distance", 31.0), ("flux_ratio", 0.25),
                       ("peak_contrast", 20.0)):
        assert not part_of_target(target, {**piece, key: value}), key
