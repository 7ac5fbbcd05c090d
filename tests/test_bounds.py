"""Bounds live in the fitting space: log-space ranges, starts kept, near-bound judged where it is fitted."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import galmoss as gm
from galmoss.model import Model
from galmoss.params import Compose, Exp, Logistic, ParamSpec, Pow10, Role


def _sersic(**over):
    kw = dict(cen_x=gm.p(24.6), cen_y=gm.p(24.3), pa=gm.p(30.0), axis_r=gm.p(0.7), eff_r=gm.p(5.0),
              mag=gm.p(17.0, M0=22.5), ser_n=gm.p(1.5))
    kw.update(over)
    return gm.lp.Sersic(**kw)


def test_a_wide_length_range_is_a_logistic_of_log_r():
    t = gm.p(5.0, value_range=(1e-3, 1e12)).fitting_transform(ParamSpec(Role.LENGTH, domain=(0.0, math.inf)))
    assert isinstance(t, Compose) and isinstance(t.outer, Exp) and isinstance(t.inner, Logistic)
    assert (t.inner.lower, t.inner.upper) == pytest.approx((math.log(1e-3), math.log(1e12)))
    t10 = gm.p(5.0, value_range=(1e-3, 1e12), log=True).fitting_transform(Role.REAL)
    assert isinstance(t10.outer, Pow10) and (t10.inner.lower, t10.inner.upper) == pytest.approx((-3.0, 12.0))


def test_starts_inside_a_range_are_never_moved():
    """The old clamp (1e-3 of the linear width = 1e9 px) moved a 5 px start to 1e9 px."""
    model = Model({"s": _sersic(eff_r=gm.p(5.0, value_range=(1e-3, 1e12)))})
    start = model.start_values(np.array([0]))
    theta = model.theta_from_values(start, torch.float64, "cpu")
    values = model.values(theta, model.fixed_tensors(start, torch.float64, "cpu"))
    re = model.profiles["s"].eff_r
    assert float(values[re]) == pytest.approx(5.0, rel=1e-12)
    assert not bool(model.near_bound(theta).any())


def test_a_start_on_a_bound_is_moved_inside_by_a_fraction_of_the_fitted_width():
    t = Compose(Exp(), Logistic(math.log(1e-3), math.log(1e12)))
    v = torch.tensor([1e-3, 1e12, 5.0, float("nan")], dtype=torch.float64)
    u = t.start_coordinate(v)
    assert bool(torch.isfinite(u[:3]).all()) and bool(torch.isnan(u[3]))
    back = t.forward(u)
    width = math.log(1e12) - math.log(1e-3)
    # 1e-6 of 34.5 e-folds: a relative move of 3.5e-5, not 1e9 px
    assert float(torch.log(back[0] / 1e-3)) == pytest.approx(1e-6 * width, rel=1e-3)
    assert float(torch.log(1e12 / back[1])) == pytest.approx(1e-6 * width, rel=1e-3)
    assert float(back[2]) == pytest.approx(5.0, rel=1e-12)


def test_near_bound_is_judged_in_the_fitted_coordinate():
    t = Compose(Exp(), Logistic(math.log(1e-3), math.log(1e12)))
    width = math.log(1e12) - math.log(1e-3)
    # 1e8 px is 0.13 of the fitted width below the top: not near, though within 1e-3 of the linear width
    far = t.start_coordinate(torch.tensor([1e8, 5.0], dtype=torch.float64))
    assert not bool(t.near_bound(far).any())
    near = t.start_coordinate(torch.tensor([1e-3 * math.exp(0.5e-3 * width), 1e12 * math.exp(-0.5e-3 * width)],
                                           dtype=torch.float64))
    assert bool(t.near_bound(near).all())
    assert not bool(t.near_bound(near, rel=1e-4).any())
    # linear ranges: the same fraction of their width; unbounded maps are never near a bound
    lin = Logistic(0.0, 10.0)
    assert lin.near_bound(lin.inverse(torch.tensor([0.005, 5.0, 9.995], dtype=torch.float64))).tolist() == [True, False, True]
    assert not bool(Exp().near_bound(torch.tensor([-50.0, 50.0])).any())


def test_a_range_too_wide_for_the_precision_is_an_error_at_model_build():
    wide = _sersic(cen_x=gm.p(24.6, value_range=(-1e9, 1e9)))
    with pytest.raises(ValueError, match=(
        r"s.cen_x: value_range=\(-1000000000.0, 1000000000.0\) is too wide for float32 fits: the start 24.6 is "
        r"resolved only to .*give a narrower value_range or fit in float64"
    )):
        Model({"s": wide}, dtype=torch.float32)
    Model({"s": wide}, dtype=torch.float64)  # float64 resolves it
    # theta_from_values checks too (the dtype is known there at the latest)
    model = Model({"s": wide})
    with pytest.raises(ValueError, match="too wide for float32"):
        model.theta_from_values(model.start_values(np.array([0])), torch.float32, "cpu")
    # a wide range of a length is fitted in log space, where float32 resolves it
    Model({"s": _sersic(eff_r=gm.p(5.0, value_range=(1e-3, 1e12)))}, dtype=torch.float32)


def test_a_start_outside_the_fitted_range_is_named_at_model_build():
    # an axis ratio's fitted range starts at 0: a negative start is the user's mistake, not a precision problem
    bad = _sersic(axis_r=gm.p([0.7, -0.2]))
    with pytest.raises(ValueError, match=r"s.axis_r: the start -0.2 \(galaxy 1\) lies outside the range the fit "
                                         r"allows, \[0, inf\]"):
        Model({"s": bad}, dtype=torch.float64)


def test_a_wide_log_space_range_fits_the_true_radius():
    """Issue 9: eff_r with value_range (1e-3, 1e12) and a start of 5 px froze at ~1e9; it must fit r_e.

    float32, the default and the dtype where a range too wide in linear units bites.
    """
    rng = np.random.default_rng(3)
    truth = dict(cen_x=24.6, cen_y=24.3, pa=30.0, axis_r=0.7, eff_r=3.0, mag=17.0, ser_n=1.5)
    mock = _sersic(**{k: gm.p(v, M0=22.5) if k == "mag" else gm.p(v) for k, v in truth.items()})
    yy, xx = np.mgrid[:11, :11] - 5.0
    psf = np.exp(-0.5 * (xx**2 + yy**2) / 1.2**2)
    noise = 0.05
    image = gm.render(mock, (48, 48), psf=psf, dtype=torch.float64)[0].numpy() + rng.normal(0, noise, (48, 48))
    data = gm.Dataset.from_arrays(image[None], np.full((1, 48, 48), noise), psf)
    data.define_profiles(s=_sersic(eff_r=gm.p(5.0, value_range=(1e-3, 1e12))))
    fit = gm.Fitting(dataset=data, batch_size=1, iteration=200, dtype=torch.float32)
    fit.fit()
    fit.uncertainty(method="covar_mat")
    res = fit.results
    err = float(res["s_eff_r_err"][0])
    assert 0 < err < 0.1
    # the injected radius, within 5 sigma of the fit's own error
    assert abs(float(res["s_eff_r"][0]) - 3.0) < 5 * err
    assert not int(res["flag"][0]) & int(gm.flags.Flag.near_bound)


def test_a_parameter_pinned_at_its_bound_has_no_error_rather_than_a_zero_one():
    """Sersic n of 1.5 fitted inside value_range (0.5, 1): it ends at a wall, near_bound is set and its error is NaN
    (the transform's slope there would give ~0, which reads as "fixed"); the free magnitude keeps a finite error."""
    from .test_fitting import PSF, _mock

    images, sigmas, _ = _mock(count=1, seed=3, shape=(40, 40), re=4.0)
    ds = gm.Dataset.from_arrays(images, sigmas, PSF)
    ds.define_profiles(s=gm.lp.Sersic(cen_x=gm.p(20.5), cen_y=gm.p(20.0), pa=gm.p(30.0), axis_r=gm.p(0.6),
                                      eff_r=gm.p(4.0), mag=gm.p(16.5, M0=22.5), ser_n=gm.p(0.8, value_range=(0.5, 1.0))))
    fitting = gm.Fitting(ds, batch_size=1, iteration=100, device="cpu", progress=False, restarts=False)
    fitting.fit()
    res = fitting.uncertainty("covar_mat")
    assert int(res["flag"][0]) & int(gm.flags.Flag.near_bound)
    assert min(abs(float(res["s_ser_n"][0]) - b) for b in (0.5, 1.0)) < 5e-3
    assert np.isnan(res["s_ser_n_err"][0])
    assert np.isfinite(res["s_mag_err"][0]) and res["s_mag_err"][0] > 0


def test_the_plot_says_at_bound_where_the_results_say_so():
    """The message's list of parameters at a bound is read back: the value is drawn '(at bound)', not '(fixed)'."""
    from galmoss.fitting.assess import AT_BOUND_NOTE, at_bound
    from galmoss.plot.panels import _text_lines

    row = {"galaxy_index": "g1", "s_ser_n": 1.0, "s_ser_n_err": np.nan, "s_mag": 16.5, "s_mag_err": 0.01,
           "message": f"converged; {AT_BOUND_NOTE}s_ser_n; reduced chi2 1.02"}
    assert at_bound(row["message"]) == ["s_ser_n"]
    lines = _text_lines(row, ["s_ser_n", "s_mag"])
    assert "1 (at bound)" in lines[1] and "(fixed)" not in "".join(lines)
    assert "16.500 ± 0.010" in lines[2]
