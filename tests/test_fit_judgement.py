"""Starting and judging a fit: degenerate components are flagged, linear parameters solved first, memory planned."""

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


def test_parameters_that_enter_linearly_start_at_their_least_squares_values():
    """The talk's NewSky started at sky 0.3 and gradients 2 and 3: before LM moves, the three sky values are the
    weighted least-squares solution given the Sersic at its start (numpy's lstsq on the plane's design matrix, to
    1e-8); the Sersic's parameters (not linear) are not touched; and the whole fit converges to the injected sky."""
    import galmoss as gm
    import torch
    from galmoss.fitting.fit_settings import FitSettings
    from galmoss.fitting.linear import linear_columns, solve_linear_parameters
    from galmoss.fitting.records import Batch
    from galmoss.fitting.solve import make_objective
    from galmoss.model import Model

    from .helpers.user_profiles import NewSky

    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[-7:8, -7:8]
    psf = (1 + (xx**2 + yy**2) / 2.2**2) ** -3.0
    shape = (48, 48)
    sersic = dict(cen_x=24.3, cen_y=23.8, pa=30.0, axis_r=0.6, eff_r=5.0, mag=17.0, ser_n=1.5)
    truth = {**{k: gm.p(v, M0=22.5) if k == "mag" else gm.p(v) for k, v in sersic.items()}}
    clean = gm.render(gm.lp.Sersic(**truth), shape, psf=psf, dtype=torch.float64).numpy()[0]
    y, x = np.mgrid[1:49, 1:49]
    sky = 0.05 + 0.002 * (x - 24.5) - 0.001 * (y - 24.5)
    sig = 0.02
    image = clean + sky + rng.normal(0, sig, shape)
    start = {k: gm.p(v * 1.1, M0=22.5) if k == "mag" else gm.p(v * 1.1) for k, v in sersic.items()}
    model = Model({"s": gm.lp.Sersic(**start), "sky": NewSky(gm.p(0.3), gm.p(2.0), gm.p(3.0))})
    assert [model.free_names()[j] for j in linear_columns(model)] == ["sky_sky_0", "sky_grad_x", "sky_grad_y"]
    batch = Batch(np.arange(1), ["g"], image[None], np.full((1,) + shape, sig), np.ones((1,) + shape), psf[None],
                  [shape], np.zeros(1, np.int64), [[]])
    settings = FitSettings(dtype="float64")
    values = model.start_values(batch.positions)
    objective = make_objective(model, batch, values, settings)
    theta0 = model.theta_from_values(values, torch.float64, "cpu")
    theta = solve_linear_parameters(model, objective, theta0, torch.arange(1))
    # the truth of the linear sub-problem: the data minus the Sersic at its start, fitted by a plane
    galaxy = gm.render(gm.lp.Sersic(**start), shape, psf=psf, dtype=torch.float64).numpy()[0]
    design = np.stack([np.ones(shape), x - 24.5, y - 24.5], axis=-1).reshape(-1, 3)
    expected = np.linalg.lstsq(design / sig, (image - galaxy).reshape(-1) / sig, rcond=None)[0]
    np.testing.assert_allclose(theta[0, linear_columns(model)].numpy(), expected, rtol=1e-8, atol=1e-10)
    others = [j for j in range(model.n_free) if j not in linear_columns(model)]
    np.testing.assert_array_equal(theta[0, others].numpy(), theta0[0, others].numpy())
    ds = gm.Dataset.from_arrays(image[None], np.full((1,) + shape, sig), psf)
    ds.define_profiles(s=gm.lp.Sersic(**start), sky=NewSky(gm.p(0.3), gm.p(2.0), gm.p(3.0)))
    res = gm.Fitting(ds, device="cpu", progress=False).fit()
    assert res["converged"][0] and abs(res["sky_grad_x"][0] - 0.002) < 3e-4 and abs(res["sky_sky_0"][0] - 0.05) < 5e-3
