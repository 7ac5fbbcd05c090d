"""A user profile's mistakes are refused before anything is fitted, naming the profile.

Two classes of mistake that used to pass silently or late:

* an image of the wrong shape (an (H, W) image, or (1, H, W) for a batch of B > 1)
  was broadcast over the batch, so the batched fit differed from the one-by-one fit;
* a slot left None (``NewSky(gm.p(0.3), None, gm.p(1.0))``) failed only when drawn.
"""

from __future__ import annotations

import numpy as np
import pytest

import galmoss as gm
from galmoss.errors import ProfileOutputError

from .helpers.user_profiles import NewSky

SHAPE = (20, 24)


class FirstGalaxySky(NewSky):
    """NewSky that keeps only the first galaxy's image: (H, W) for any batch (the bug)."""

    def image_via_grid_from(self, grid, mode="updating_model"):
        return super().image_via_grid_from(grid, mode)[0]


class SharedSky(NewSky):
    """NewSky that returns (1, H, W) whatever the batch: one image shared by every galaxy (the bug)."""

    def image_via_grid_from(self, grid, mode="updating_model"):
        return super().image_via_grid_from(grid, mode)[:1]


class FlatSky(gm.LightProfile):
    """A flat sky returned as (B, 1, 1): legitimately broadcast over the pixels."""

    def __init__(self, level):
        super().__init__()
        self.psf = False
        self.level = level

    def image_via_grid_from(self, grid, mode="updating_model"):
        return self.level.value(mode)


def _skies(n=3, seed=1, noise=0.05):
    """Images of a tilted sky, the same model NewSky draws: I0 + kx (x - x0) + ky (y - y0)."""
    rng = np.random.default_rng(seed)
    h, w = SHAPE
    yy, xx = np.mgrid[1 : h + 1, 1 : w + 1].astype(float)
    level = np.array([0.3, 0.8, 1.3])[:n]
    gx, gy = np.array([0.01, -0.02, 0.03])[:n], np.array([0.02, 0.0, -0.01])[:n]
    clean = level[:, None, None] + gx[:, None, None] * (xx - (w + 1) / 2) + gy[:, None, None] * (yy - (h + 1) / 2)
    images = clean + rng.normal(0, noise, clean.shape)
    return images.astype(np.float32), np.full(images.shape, noise, np.float32), (level, gx, gy)


@pytest.mark.parametrize("cls, got", [(FirstGalaxySky, "(20, 24)"), (SharedSky, "(1, 20, 24)")])
def test_a_profile_that_drops_the_galaxy_axis_is_refused_before_fitting(cls, got):
    images, sigmas, _ = _skies()
    ds = gm.Dataset.from_arrays(images, sigmas)
    ds.define_profiles(sky=cls(gm.p(0.5), gm.p(0.0), gm.p(0.0)))
    fitting = gm.Fitting(ds, batch_size=3, iteration=20, device="cpu", progress=False)
    expect = (f"profile 'sky' ({cls.__name__}): image_via_grid_from returned shape {got} "
              "for a batch of 3 galaxies on a 20x24 grid; expected (3, 20, 24)")
    with pytest.raises(ProfileOutputError, match=expect.replace("(", r"\(").replace(")", r"\)")):
        fitting.fit()


def test_newsky_and_a_flat_sky_still_fit_to_their_injected_values():
    images, sigmas, (level, gx, gy) = _skies()
    ds = gm.Dataset.from_arrays(images, sigmas)
    ds.define_profiles(sky=NewSky(gm.p(0.5), gm.p(0.0), gm.p(0.0)))
    fitting = gm.Fitting(ds, batch_size=3, iteration=50, device="cpu", progress=False)
    fitting.fit()
    res = fitting.uncertainty()
    # a linear model: the fit is the least-squares solution, within 4 sigma of the truth
    for col, true in (("sky_sky_0", level), ("sky_grad_x", gx), ("sky_grad_y", gy)):
        assert np.all(np.abs(np.asarray(res[col]) - true) < 4 * np.asarray(res[f"{col}_err"])), col

    ds.define_profiles(sky=FlatSky(gm.p(0.5)))
    res = gm.Fitting(ds, batch_size=3, iteration=50, device="cpu", progress=False).fit()
    # a flat level fitted to a tilted sky with a zero-mean tilt is the image mean
    np.testing.assert_allclose(np.asarray(res["sky_level"]), images.reshape(3, -1).mean(1), atol=1e-4)


def test_a_user_profile_slot_left_none_is_refused_when_the_profiles_are_given():
    images, sigmas, _ = _skies()
    ds = gm.Dataset.from_arrays(images, sigmas)
    msg = r"profile 'sky' \(NewSky\): grad_x is None but NewSky reads it when drawn; give gm.p\(...\) for it"
    with pytest.raises(ValueError, match=msg):
        ds.define_profiles(sky=NewSky(gm.p(0.3), None, gm.p(1.0)))
    with pytest.raises(ValueError, match=msg):  # gm.render builds the model too, before drawing
        gm.render({"sky": NewSky(gm.p(0.3), None, gm.p(1.0))}, SHAPE)


def test_none_still_means_left_out_for_built_in_profiles_and_unread_attributes():
    sky = NewSky(gm.p(0.3), gm.p(0.0), gm.p(0.0))
    sky.note = None  # an attribute the profile never reads may be None
    assert sky.unset_slots() == []
    assert gm.lp.Sersic(cen_x=gm.p(10.0)).unset_slots() == []  # built-ins: None is "start it from the image"
