"""Degenerate components: a component that collapsed is never returned with flag 0."""

from __future__ import annotations

import numpy as np
import pytest

from galmoss.auto.psf import measure_fwhm, psf_from_fwhm
from galmoss.auto.quality import quality_flags
from galmoss.flags import Flag


@pytest.mark.parametrize("fwhm, kind, tolerance", [(8.0, "gaussian", 0.02), (3.0, "gaussian", 0.06), (4.5, "moffat", 0.06)])
def test_the_psf_fwhm_is_measured_from_its_image(fwhm, kind, tolerance):
    """Against the FWHM the PSF was drawn with (a sampled image is a little wider for a small FWHM)."""
    assert measure_fwhm(psf_from_fwhm(fwhm, size=41, kind=kind))[0] == pytest.approx(fwhm, rel=tolerance)


def test_a_collapsed_axis_ratio_or_a_size_far_below_the_psf_is_flagged_and_a_real_bulge_is_not():
    values = {
        "bulge_cen_x": np.array([50.0, 50.0, 50.0, 50.0]),
        "bulge_axis_r": np.array([0.8, 4e-5, 0.8, 0.7]),
        "bulge_eff_r": np.array([1.5, 2.0, 0.2, 1.2]),
        "bulge_mag": np.array([18.0, 18.0, 18.0, 18.0]),
        "disk_cen_x": np.array([50.0, 50.0, 50.0, 50.0]),
        "disk_axis_r": np.array([0.5, 0.5, 0.5, 0.12]),  # an edge-on disk of q = 0.12 is a real galaxy
        "disk_scale_l": np.array([6.0, 6.0, 6.0, 6.0]),
        "disk_mag": np.array([17.0, 17.0, 17.0, 17.0]),
    }
    flags, messages = quality_flags(np.ones(4), np.full(4, 1000), values, {}, (100, 100), psf_fwhm=np.full(4, 3.5))
    degenerate = (flags & int(Flag.degenerate_component)) != 0
    assert degenerate.tolist() == [False, True, True, False]
    assert "collapsed to a line" in messages[1] and "point source to the data" in messages[2]
    # without a PSF no size is judged against it
    flags, _ = quality_flags(np.ones(4), np.full(4, 1000), values, {}, (100, 100))
    assert ((flags & int(Flag.degenerate_component)) != 0).tolist() == [False, True, False, False]
