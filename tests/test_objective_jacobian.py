"""The structured Jacobian of the fitting objective equals plain forward mode through everything."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import galmoss as gm
from galmoss.fitting.likelihoods import Chi2, StudentT
from galmoss.fitting.objective import BatchObjective
from galmoss.model import Model
from galmoss.render import Renderer


class Tilt(gm.LightProfile):
    """A grid-sampled user profile convolved with the PSF (no shortcuts apply)."""

    def __init__(self, amp, slope):
        super().__init__()
        self.amp = amp
        self.slope = slope

    def image_via_grid_from(self, grid, mode="updating_model"):
        return self.amp.value(mode) * torch.exp(-((grid[1] - 20.0) ** 2 + (grid[0] - 18.0) ** 2) / 30.0) * (
            1.0 + self.slope.value(mode) * (grid[1] - 20.0))


def _objective(profiles, psf, likelihood=Chi2(), count=3, settings=gm.RenderSettings()):
    model = Model(profiles)
    f64 = torch.float64
    renderer = Renderer((40, 40), psf, batch=count, dtype=f64, settings=settings)
    start = model.start_values(np.arange(count))
    theta = model.theta_from_values(start, f64, "cpu")
    rng = np.random.default_rng(0)
    data = torch.tensor(rng.normal(0, 1, (count, 40, 40)), dtype=f64)
    obj = BatchObjective(model, renderer, likelihood, data, torch.full((count, 40, 40), 0.3, dtype=f64),
                         torch.ones((count, 40, 40), dtype=f64), model.fixed_tensors(start, f64, "cpu"))
    return obj, theta


def _psf():
    yy, xx = np.mgrid[:11, :11] - 5.0
    return np.exp(-0.5 * ((xx - 0.3) ** 2 + yy**2 / 1.5) / 1.6**2)


def _sersic(x, y, **kw):
    args = dict(cen_x=x, cen_y=y, pa=gm.p([20.0, -40.0, 80.0]), axis_r=gm.p([0.6, 0.9, 0.4]), eff_r=gm.p([3.0, 2.0, 5.0]),
                mag=gm.p([17.0, 17.5, 16.5], M0=22.5), ser_n=gm.p([1.5, 3.0, 0.8]))
    args.update(kw)
    return gm.lp.Sersic(**args)


CASES = {
    "sersic": lambda: {"s": _sersic(gm.p([20.3, 19.6, 21.0]), gm.p([18.8, 20.2, 19.1]))},
    "bulge_disk_shared_centre_and_sky": lambda: (lambda x, y: {
        "bulge": _sersic(x, y, ser_n=gm.p(4.0, fit=False)),
        "disk": _sersic(x, y, axis_r=gm.p([0.5, 0.7, 0.3]), eff_r=gm.p([6.0, 5.0, 7.0]), ser_n=gm.p(1.0, fit=False)),
        "sky": gm.lp.Sky(sky_bg=gm.p([0.1, 0.0, -0.2]), grad_x=gm.p([0.01, 0.0, 0.0])),
    })(gm.p([20.3, 19.6, 21.0]), gm.p([18.8, 20.2, 19.1])),
    # a flattened galaxy near the cutout's edge: its window radii shrink with
    # the room left (and so depend on q): the PA and q columns must follow
    "flat_sersic_near_edge": lambda: {"s": _sersic(gm.p([5.2, 36.0, 20.0]), gm.p([20.0, 4.6, 37.3]),
                                                   axis_r=gm.p([0.25, 0.3, 0.95]), ser_n=gm.p([4.0, 6.0, 2.5]))},
    # the PA the only free shape parameter: its column is the geometry term alone (a Sersic's
    # written-out radial derivatives, a Moffat's by forward mode)
    "pa_only_free_shape": lambda: {
        "s": _sersic(gm.p([20.3, 19.6, 21.0]), gm.p([18.8, 20.2, 19.1]), axis_r=gm.p([0.6, 0.9, 0.4], fit=False),
                     eff_r=gm.p([3.0, 2.0, 5.0], fit=False), ser_n=gm.p([1.5, 3.0, 0.8], fit=False)),
        "m": gm.lp.Moffat(cen_x=gm.p([19.0, 21.0, 20.5]), cen_y=gm.p([21.0, 18.5, 20.0]), pa=gm.p([10.0, 50.0, -60.0]),
                          axis_r=gm.p(0.5, fit=False), fwhm=gm.p(3.0, fit=False), con=gm.p(2.5, fit=False),
                          mag=gm.p(18.0, M0=22.5)),
    },
    "star_and_user_profile": lambda: {
        "star": gm.lp.PointSource(cen_x=gm.p([10.2, 25.7, 30.1]), cen_y=gm.p([30.4, 9.9, 12.0]), mag=gm.p(18.0, M0=22.5)),
        "tilt": Tilt(gm.p([1.0, 2.0, 0.5]), gm.p([0.01, -0.02, 0.0])),
    },
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("likelihood", [Chi2(), StudentT()], ids=["chi2", "student_t"])
def test_structured_jacobian_equals_forward_mode(case, likelihood):
    obj, theta = _objective(CASES[case](), _psf(), likelihood)
    index = torch.arange(theta.shape[0])
    r_ref, j_ref = obj._forward_jacobian(obj.residuals, theta, index)
    r, j = obj.residuals_and_jacobian(theta, index)
    assert torch.allclose(r, r_ref, rtol=0, atol=1e-10 * float(r_ref.abs().max()))
    scale = j_ref.abs().amax(dim=1, keepdim=True).clamp_min(1e-300)
    error = ((j - j_ref).abs() / scale).amax(dim=(0, 1))  # per parameter, relative to its column's peak
    centre = [k for k, name in enumerate(obj.model.free_names()) if name.endswith(("cen_x", "cen_y"))
              and not name.startswith("tilt")]
    others = [k for k in range(len(error)) if k not in centre]
    # every column but the centres' is the same derivative computed another way
    assert float(error[others].max()) < 1e-8
    # a centre's column is the spectral derivative of the component (its shift):
    # it differs from the derivative of the samples by the sampled image's
    # aliasing, measured here at a few 1e-3 of the column's peak
    if centre:
        assert float(error[centre].max()) < 5e-3


def test_structured_jacobian_without_psf_uses_forward_mode_for_the_centre():
    profiles = {"s": _sersic(gm.p([20.3, 19.6, 21.0]), gm.p([18.8, 20.2, 19.1]))}
    model = Model(profiles)
    f64 = torch.float64
    renderer = Renderer((40, 40), None, batch=3, dtype=f64)
    start = model.start_values(np.arange(3))
    theta = model.theta_from_values(start, f64, "cpu")
    obj = BatchObjective(model, renderer, Chi2(), torch.zeros((3, 40, 40), dtype=f64), torch.ones((3, 40, 40), dtype=f64),
                         torch.ones((3, 40, 40), dtype=f64), model.fixed_tensors(start, f64, "cpu"))
    index = torch.arange(3)
    _, j_ref = obj._forward_jacobian(obj.residuals, theta, index)
    _, j = obj.residuals_and_jacobian(theta, index)
    scale = j_ref.abs().amax(dim=1, keepdim=True).clamp_min(1e-300)
    assert float(((j - j_ref).abs() / scale).max()) < 1e-8  # no shortcut for pixel-integrated centres


@pytest.mark.parametrize("case", ["sersic", "bulge_disk_shared_centre_and_sky", "flat_sersic_near_edge"])
def test_written_out_columns_without_psf_equal_forward_mode(case):
    """No PSF: the smooth part's columns written out, the core's by forward mode; every column, centres included."""
    obj, theta = _objective(CASES[case](), None)
    index = torch.arange(theta.shape[0])
    r_ref, j_ref = obj._forward_jacobian(obj.residuals, theta, index)
    r, j = obj.residuals_and_jacobian(theta, index)
    assert torch.allclose(r, r_ref, rtol=0, atol=1e-12 * float(r_ref.abs().max()))
    scale = j_ref.abs().amax(dim=1, keepdim=True).clamp_min(1e-300)
    assert float(((j - j_ref).abs() / scale).max()) < 1e-8


def test_written_out_columns_without_psf_are_the_derivatives_of_the_image():
    """No PSF: every column (core and smooth part, all written out) against central differences of the float64 image.

    Sersic n 0.5-6, q 0.2-0.97, r_e 0.8-5 px, sub-pixel centres. Fourth-order
    central differences with steps of 1e-4 are within 2.1e-9 of each column's
    peak (measured; 1e-3 steps leave 8e-8 of truncation error).
    """
    count = 6
    profile = gm.lp.Sersic(cen_x=gm.p([20.3, 19.72, 21.0, 20.43, 19.9, 20.15]),
                           cen_y=gm.p([20.1, 20.45, 19.6, 20.0, 20.77, 19.35]),
                           pa=gm.p([20.0, -40.0, 80.0, 0.0, 33.0, -75.0]),
                           axis_r=gm.p([0.2, 0.35, 0.6, 0.97, 0.8, 0.5]),
                           eff_r=gm.p([1.5, 3.0, 2.0, 5.0, 0.8, 2.5]), mag=gm.p(17.0, M0=22.5),
                           ser_n=gm.p([0.5, 1.0, 4.0, 2.5, 6.0, 1.5]))
    model = Model({"s": profile})
    f64 = torch.float64
    renderer = Renderer((40, 40), None, batch=count, dtype=f64)
    start = model.start_values(np.arange(count))
    values = model.values(model.theta_from_values(start, f64, "cpu"), model.fixed_tensors(start, f64, "cpu"))
    slots = ["cen_x", "cen_y", "pa", "axis_r", "eff_r", "ser_n"]
    image, columns = renderer.pixel_image_and_derivatives(profile, values, slots)
    step = 1e-4
    for column, slot in zip(columns, slots):
        prm = profile.parameters()[slot]

        def at(offset, prm=prm):
            return renderer.pixel_image_and_derivatives(profile, {**values, prm: values[prm] + offset}, slots)[0]

        differences = (8.0 * (at(step) - at(-step)) - (at(2 * step) - at(-2 * step))) / (12.0 * step)
        scale = torch.maximum(column.abs().amax((1, 2)), 1e-6 * image.abs().amax((1, 2)))
        error = (column - differences).abs().amax((1, 2)) / scale
        assert float(error.max()) < 1e-8, (slot, error)


def test_memory_check_counts_a_frame_without_psf(monkeypatch):
    """A frame without a PSF is sized by its pixels and tangents: a 2048x1489 frame fits, a 30000^2 one is refused."""
    from galmoss.fitting import memory
    from galmoss.fitting.fit_settings import FitSettings
    from galmoss.fitting.memory import FitMemoryError, check_memory

    monkeypatch.setattr(memory, "available_memory", lambda device: 64 * 2**30)  # a 64 GiB machine

    model = Model({"s": _sersic(gm.p(20.0), gm.p(20.0), pa=gm.p(20.0), axis_r=gm.p(0.6), eff_r=gm.p(3.0),
                                mag=gm.p(17.0, M0=22.5), ser_n=gm.p(1.5)), "sky": gm.lp.Sky(sky_bg=gm.p(0.0))})
    need = check_memory(model, 1, (1489, 2048), FitSettings())
    # measured: 3.9-4.3 GB peak resident for this fit (docs/benchmarks.md); the check must not predict less
    assert 4.3e9 < need < 8e9
    with pytest.raises(FitMemoryError, match=r"30000x30000 pixels with 8 free values each needs about"):
        check_memory(model, 1, (30000, 30000), FitSettings())


def _fine_psf(factor: int):
    yy, xx = (np.mgrid[: 11 * factor, : 11 * factor] - (11 * factor) // 2) / factor
    return np.exp(-0.5 * ((xx - 0.3) ** 2 + yy**2 / 1.5) / 1.2**2)


@pytest.mark.parametrize("case", ["sersic", "bulge_disk_shared_centre_and_sky", "flat_sersic_near_edge", "star"])
def test_structured_jacobian_with_a_finer_psf_equals_forward_mode(case):
    """With the PSF sampled 3x finer the model folds every alias of the fine band into the data's: the
    centre's column shifts each alias by its own frequency, the others are as on the data grid."""
    cases = dict(CASES, star=lambda: {"star": gm.lp.PointSource(cen_x=gm.p([10.2, 25.7, 30.1]),
                                                                 cen_y=gm.p([30.4, 9.9, 12.0]), mag=gm.p(18.0, M0=22.5))})
    obj, theta = _objective(cases[case](), _fine_psf(3), settings=gm.RenderSettings(psf_oversampling=3))
    index = torch.arange(theta.shape[0])
    assert obj.renderer.structured(obj.model.profiles) is not None
    r_ref, j_ref = obj._forward_jacobian(obj.residuals, theta, index)
    r, j = obj.residuals_and_jacobian(theta, index)
    assert torch.allclose(r, r_ref, rtol=0, atol=1e-10 * float(r_ref.abs().max()))
    scale = j_ref.abs().amax(dim=1, keepdim=True).clamp_min(1e-300)
    error = ((j - j_ref).abs() / scale).amax(dim=(0, 1))
    centre = [k for k, name in enumerate(obj.model.free_names()) if name.endswith(("cen_x", "cen_y"))]
    others = [k for k in range(len(error)) if k not in centre]
    assert float(error[others].max()) < 1e-8
    assert float(error[centre].max()) < 5e-3
