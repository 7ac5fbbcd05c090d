"""gm.tie: offset and ratio couplings between parameters, fitted (GALFIT's hard and ratio constraints).

Truth: injected parameters of mocks (the fit recovers them within 5 sigma), and
the tie itself, which must hold exactly at the solution; the delta-method error
of a parameter tied by a constant offset equals its base's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import galmoss as gm
from galmoss.params.ties import Tied


def _bulge_disk(x, y, dx, dy, re_b, ratio, mags, fit_ratio=None):
    bx, by = gm.p(x), gm.p(y)
    bre = gm.p(re_b)
    bulge = gm.lp.Sersic(cen_x=bx, cen_y=by, pa=gm.p(20.0), axis_r=gm.p(0.8), eff_r=bre, mag=gm.p(mags[0], M0=22.5),
                         ser_n=gm.p(3.0, fit=False))
    disk = gm.lp.ExpDisk(cen_x=gm.tie(bx, offset=dx), cen_y=gm.tie(by, offset=dy), pa=gm.p(35.0), axis_r=gm.p(0.5),
                         scale_l=gm.tie(bre, ratio=fit_ratio if fit_ratio is not None else ratio), mag=gm.p(mags[1], M0=22.5))
    return {"bulge": bulge, "disk": disk}


def test_tie_validates_its_arguments():
    base = gm.p(1.0)
    with pytest.raises(ValueError, match="exactly one of offset= or ratio="):
        gm.tie(base)
    with pytest.raises(ValueError, match="plain gm.p"):
        gm.tie(base, offset=gm.p(0.1, M0=20.0))
    t = gm.tie(base, ratio=[2.0, 3.0])
    assert isinstance(t, Tied) and list(t.initial) == [2.0, 3.0]


def test_fit_with_offset_and_bounded_ratio_ties_recovers_the_truth():
    rng = np.random.default_rng(4)
    n, shape, sigma = 2, (32, 32), 0.01
    yy, xx = np.mgrid[-6:7, -6:7]
    psf = (1 + (xx**2 + yy**2) / 1.8**2) ** -3.5
    truth_x, truth_y = 16.3 + rng.uniform(-1, 1, n), 16.6 + rng.uniform(-1, 1, n)
    truth_ratio = np.array([2.0, 3.0])
    truth = _bulge_disk(truth_x, truth_y, 0.7, -0.4, 2.0, truth_ratio, (18.5, 18.0))
    clean = gm.render(truth, shape, psf=psf, dtype=torch.float64).numpy()
    images = clean + rng.normal(0.0, sigma, clean.shape)
    start = _bulge_disk(truth_x + 0.3, truth_y - 0.3, 0.7, -0.4, 2.4, None, (18.8, 17.8),
                        fit_ratio=gm.p(2.2, value_range=(1.5, 4.0)))
    ds = gm.Dataset.from_arrays(images, np.full(images.shape, sigma), psf)
    ds.define_profiles(**start)
    fitting = gm.Fitting(ds, batch_size=n, iteration=100, device="cpu", dtype=torch.float64, progress=False)
    fitting.fit()
    r = fitting.uncertainty("covar_mat")
    # the ties hold exactly at the solution
    np.testing.assert_allclose(r["disk_cen_x"] - r["bulge_cen_x"], 0.7, atol=1e-9)
    np.testing.assert_allclose(r["disk_cen_y"] - r["bulge_cen_y"], -0.4, atol=1e-9)
    # a constant offset moves the value, not its error
    np.testing.assert_allclose(r["disk_cen_x_err"], r["bulge_cen_x_err"], rtol=1e-6)
    ratio = r["disk_scale_l"] / r["bulge_eff_r"]
    assert np.all((ratio > 1.5) & (ratio < 4.0))
    for col, want in (("bulge_cen_x", truth_x), ("bulge_cen_y", truth_y), ("bulge_eff_r", 2.0),
                      ("disk_scale_l", 2.0 * truth_ratio), ("bulge_mag", 18.5), ("disk_mag", 18.0)):
        pull = (np.asarray(r[col]) - want) / np.asarray(r[col + "_err"])
        assert np.all(np.abs(pull) < 5), (col, pull)
    assert np.all(r["converged"])
