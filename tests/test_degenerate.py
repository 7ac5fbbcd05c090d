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


def test_the_memory_model_refuses_a_fine_psf_over_a_large_region_before_fitting(monkeypatch):
    """GALFIT's E) 5 over a 1431 x 1431 region renders on a 7,155-pixel grid: about 40 GiB of forward-mode
    tangents, refused with the GiB it needs on a machine with 24 GiB (was killed by the kernel at 23.6 GB);
    a survey batch of 64 cutouts of 128 x 128 with a 51 x 51 PSF needs under 2 GiB."""
    import galmoss as gm
    from galmoss.fitting import memory
    from galmoss.fitting.fit_settings import FitSettings
    from galmoss.model import Model

    monkeypatch.setattr(memory, "available_memory", lambda device: 24 * 2**30)
    model = Model({"s": gm.lp.Sersic(cen_x=gm.p(700.0), cen_y=gm.p(700.0), pa=gm.p(0.0), axis_r=gm.p(0.7),
                                     eff_r=gm.p(20.0), mag=gm.p(15.0, M0=25.0), ser_n=gm.p(2.0)),
                   "sky": gm.lp.Sky(sky_bg=gm.p(0.0))})
    fine = FitSettings(render=gm.RenderSettings(psf_oversampling=5))
    with pytest.raises(memory.FitMemoryError, match=r"needs about (\d+\.?\d*) GiB .* on the PSF's 5x finer grid|"
                                                    r"5x finer grid .* needs about"):
        memory.check_memory(model, 1, (1431, 1431), fine, psf_shape=(75, 75))
    need = memory.check_memory(model, 64, (128, 128), FitSettings(), psf_shape=(51, 51))
    assert need < 2 * 2**30
