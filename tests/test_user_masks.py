"""User masks without mask_index: segmentation maps keep the galaxy's own label; a mask over the galaxy is flagged."""

from __future__ import annotations

import numpy as np
import torch

import galmoss as gm
from galmoss.flags import Flag

SHAPE = (64, 64)
TRUTH = dict(cx=32.7, cy=32.2, pa=25.0, q=0.7, re=5.0, mag=17.0, n=2.0)


def _psf():
    yy, xx = np.mgrid[:15, :15] - 7.0
    return (1 + (xx**2 + yy**2) / 2.5**2) ** -3.5


def _scene(label: int, seed: int, noise=0.2):
    """A Sersic target with a brighter neighbour 15 px away, and a segmentation map: target ``label``, neighbour 3."""
    t = TRUTH
    target = gm.lp.Sersic(cen_x=gm.p(t["cx"]), cen_y=gm.p(t["cy"]), pa=gm.p(t["pa"]), axis_r=gm.p(t["q"]),
                          eff_r=gm.p(t["re"]), mag=gm.p(t["mag"], M0=22.5), ser_n=gm.p(t["n"]))
    other = gm.lp.Sersic(cen_x=gm.p(t["cx"] + 13.0), cen_y=gm.p(t["cy"] + 8.0), pa=gm.p(-40.0), axis_r=gm.p(0.8),
                         eff_r=gm.p(3.0), mag=gm.p(16.5, M0=22.5), ser_n=gm.p(1.0))
    psf = _psf()
    light = gm.render(target, SHAPE, psf=psf, dtype=torch.float64)[0].numpy()
    nb = gm.render(other, SHAPE, psf=psf, dtype=torch.float64)[0].numpy()
    rng = np.random.default_rng(seed)
    image = light + nb + rng.normal(0.0, noise, SHAPE)
    seg = np.zeros(SHAPE, dtype=np.int32)
    seg[light > noise] = label
    seg[(nb > noise) & (nb > light)] = 3  # the neighbour's segment wins where it is the brighter
    return image, np.full(SHAPE, noise), psf, seg


def _fit(images, sigmas, psf, masks, tmp_path):
    n = len(images)
    dataset = gm.Dataset.from_arrays(np.array(images), np.array(sigmas), psf, np.array(masks),
                                     galaxy_index=[f"g{i}" for i in range(n)], result_path=str(tmp_path))
    dataset.define_profiles(sersic=gm.lp.Sersic(
        cen_x=gm.p(33.0), cen_y=gm.p(32.0), pa=gm.p(10.0, angle=True), axis_r=gm.p(0.6), eff_r=gm.p(4.0),
        mag=gm.p(17.4, M0=22.5), ser_n=gm.p(1.5, log=True)))
    fitting = gm.Fitting(dataset=dataset, batch_size=n, iteration=150, device="cpu", progress=False)
    fitting.fit()
    fitting.uncertainty(method="covar_mat")
    return dataset, fitting.results


def test_segmentation_map_without_mask_index_keeps_the_target_label(tmp_path):
    """Target labelled 1 or 2, neighbour 3, no mask_index: the label under the start is kept, r_e and mag recovered."""
    scenes = [_scene(1, seed=1), _scene(2, seed=2)]
    images, sigmas, psfs, masks = zip(*scenes)
    dataset, res = _fit(images, sigmas, psfs[0], masks, tmp_path)
    for i, seg in enumerate(masks):
        gal = dataset.load(i)
        # the target's segment and the sky are fitted, the neighbour's segment only is masked
        assert np.array_equal(gal.weight == 0, seg == 3)
        assert "kept label" in " ".join(gal.messages)
        assert not res["flag"][i] & Flag.target_masked
        for key, col in (("re", "sersic_eff_r"), ("mag", "sersic_mag"), ("n", "sersic_ser_n")):
            value, err = float(res[col][i]), float(res[col + "_err"][i])
            # the injected value within 4 sigma of the fit (the errors are calibrated: docs/validation.md)
            assert abs(value - TRUTH[key]) < 4 * err, (i, key, value, err)


def test_binary_mask_over_the_centre_is_flagged(tmp_path):
    """A mask whose bad pixels cover the galaxy (mask_index=0: every non-zero pixel is bad): flagged target_masked
    with a message; a mask off the galaxy is not; the same 0/1 mask without mask_index, its 1s under the galaxy, is
    the galaxy's segment (as GalMOSS 2 and the talk's masks read): kept, no flag, a message says how it was read."""
    image, sigma, psf, seg = _scene(1, seed=3)
    over = seg > 0  # every source's pixels, the target's included: bad pixels
    off = seg == 3  # the neighbour only
    ring = np.zeros(SHAPE, dtype=bool)  # most of the light, the centre pixel left free
    yy, xx = np.indices(SHAPE)
    r = np.hypot(xx + 1 - TRUTH["cx"], yy + 1 - TRUTH["cy"])
    ring[(r > 1.0) & (r < 12.0)] = True
    dataset = gm.Dataset.from_arrays(np.array([image] * 3), np.array([sigma] * 3), psf,
                                     np.array([over, off, ring]).astype(np.int16), galaxy_index=["over", "off", "ring"],
                                     mask_index=0)
    over_gal, off_gal, ring_gal = (dataset.load(i) for i in range(3))
    assert over_gal.flags & Flag.target_masked and "centre pixel" in " ".join(over_gal.messages)
    assert "mask_index" in " ".join(over_gal.messages)
    assert not off_gal.flags & Flag.target_masked
    assert ring_gal.flags & Flag.target_masked and "most of the galaxy's light" in " ".join(ring_gal.messages)
    # the flagged galaxy is still fitted with what is left (a saturated core may be masked on purpose)
    assert over_gal.usable
    # the galaxy's own segment as 0/1 integers without mask_index: kept; with mask_index=0: every non-zero pixel bad
    own = (seg == seg[int(TRUTH["cy"]) - 1, int(TRUTH["cx"]) - 1]).astype(np.int16)
    kept = gm.Dataset.from_arrays(image[None], sigma[None], psf, own[None]).load(0)
    assert not kept.flags & Flag.target_masked and "one label 1" in " ".join(kept.messages)
    assert kept.weight[own > 0].min() > 0
    bad = gm.Dataset.from_arrays(image[None], sigma[None], psf, own[None], mask_index=0).load(0)
    assert bad.flags & Flag.target_masked and bad.weight[own > 0].max() == 0
