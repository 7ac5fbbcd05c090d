"""Configuration errors raise at once, naming the argument and the fix (gm.p, profiles, the registry)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import galmoss as gm
from galmoss.fitting.starts import with_auto_starts
from galmoss.model import AutoStart, Model
from galmoss.profiles import registered_profiles


# ----------------------------------------------------------------------- gm.p
@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"parameters": "3.0"}, TypeError, "start value must be a number or a sequence of numbers"),
        ({"parameters": True}, TypeError, "start value must be a number"),
        ({"parameters": [1.0, None]}, TypeError, "start value must be a number"),
        # a 2-D array is a vector parameter (issue 10); with dim="1d", or 3-D, it is refused
        ({"parameters": [[1.0, 2.0]], "dim": "1d"}, ValueError, "scalar or a 1-D sequence"),
        ({"parameters": [[[1.0, 2.0]]]}, ValueError, "scalar or a 1-D sequence"),
        ({"parameters": []}, ValueError, "is empty"),
        ({"parameters": [1.0, np.inf]}, ValueError, "not finite for galaxy index \\[1\\]"),
        ({"parameters": 1.0, "fit": "yes"}, TypeError, "fit must be True or False"),
        ({"parameters": 1.0, "log": 1}, TypeError, "log must be True or False"),
        ({"parameters": 1.0, "angle": None}, TypeError, "angle must be True or False"),
        ({"parameters": 1.0, "value_range": 5.0}, TypeError, "value_range must be a pair"),
        ({"parameters": 1.0, "value_range": (0.0, 1.0, 2.0)}, TypeError, "value_range must be a pair"),
        ({"parameters": 1.0, "value_range": "01"}, TypeError, "value_range must be a pair"),
        ({"parameters": 1.0, "value_range": ("0", 2.0)}, TypeError, "lower end must be a number or None"),
        ({"parameters": 1.0, "value_range": (0.0, float("nan"))}, ValueError, "upper end nan is not a valid bound"),
        ({"parameters": 1.0, "value_range": (2.0, 1.0)}, ValueError, "lower 2.0 must be below upper 1.0"),
        ({"parameters": 1.5, "value_range": (0.0, 1.0)}, ValueError, "outside value_range.*widen the range"),
        ({"parameters": 1.0, "M0": "22.5"}, ValueError, "M0 must be a finite number"),
        ({"parameters": 1.0, "M0": float("inf")}, ValueError, "M0 must be a finite number"),
        ({"parameters": 1.0, "pix_scale": 0.0}, ValueError, "pix_scale must be a positive finite number"),
        ({"parameters": 1.0, "pix_scale": -0.4}, ValueError, "pix_scale must be a positive finite number"),
        ({"parameters": 1.0, "step_length": 0.0}, ValueError, "step_length must be a positive finite number"),
        ({"parameters": -1.0, "log": True}, ValueError, "log=True needs positive start values"),
        ({"parameters": 1.0, "log": True, "value_range": (0.0, 2.0)}, ValueError, "log=True needs a positive lower bound"),
        ({"fit": False}, ValueError, r"fit=False\) needs a start value"),
        ({"parameters": 1.0, "name": 3}, TypeError, "name must be a string"),
    ],
)
def test_gm_p_refuses_bad_arguments_naming_them(kwargs, error, message):
    with pytest.raises(error, match=message):
        gm.p(**kwargs)


def test_gm_p_accepts_what_users_pass():
    assert gm.p(np.float32(3.0)).initial.tolist() == [3.0]
    assert gm.p(np.arange(3)).initial.tolist() == [0.0, 1.0, 2.0]
    assert gm.p(torch.tensor([1.0, 2.0])).param_length == 2
    assert gm.p(2.0, value_range=[1, None]).value_range == (1.0, None)
    assert gm.p(2.0, value_range=(-math.inf, math.inf)).value_range is None  # infinite ends are no bound
    assert gm.p(2.0, fit=np.bool_(False)).fit is False


def test_sharing_is_identity_not_value():
    a, b = gm.p(3.0), gm.p(3.0)
    assert a != b and len({a, b}) == 2 and hash(a) == object.__hash__(a)


# --------------------------------------------------- gm.p without a start value
def test_a_parameter_without_value_keeps_its_units_and_cannot_be_rendered():
    mag = gm.p(M0=22.5)
    assert not mag.has_start and mag.param_length == 1 and repr(mag) == "gm.p(M0=22.5)"
    with pytest.raises(ValueError, match=r"has no start value.*gm.Fitting, which starts it from each galaxy's image"):
        mag.value()
    sersic = gm.lp.Sersic(cen_x=gm.p(16.0), cen_y=gm.p(16.0), pa=gm.p(0.0), axis_r=gm.p(0.7), eff_r=gm.p(3.0),
                          mag=mag, ser_n=gm.p(1.0))
    with pytest.raises(ValueError, match="has no start value"):
        gm.render(sersic, (32, 32))
    with pytest.raises(ValueError, match=r"s.mag has no start value .*gm.Fitting"):
        Model({"s": sersic})


def test_auto_start_of_a_valueless_parameter_keeps_units_range_and_sharing():
    mag, re, centre = gm.p(M0=22.5), gm.p(pix_scale=0.5, value_range=(0.1, 10.0)), gm.p()
    bulge = gm.lp.Sersic(cen_x=centre, cen_y=gm.p(16.0), pa=gm.p(0.0), axis_r=gm.p(0.7), eff_r=re, mag=mag,
                         ser_n=gm.p(ser_n := 4.0))
    disk = gm.lp.ExpDisk(cen_x=centre, cen_y=gm.p(16.0), pa=gm.p(0.0), axis_r=gm.p(0.7), scale_l=gm.p(4.0), mag=gm.p(17.0))
    model = Model(with_auto_starts({"b": bulge, "d": disk}))
    autos = model.auto_parameters
    assert len(autos) == 3  # centre is one parameter, shared by both profiles
    assert model.profiles["b"].cen_x is model.profiles["d"].cen_x
    assert bulge.mag is mag and not mag.has_start  # the user's objects are untouched
    estimate = {"cen_x": 15.5, "cen_y": 16.5, "pa": 10.0, "axis_r": 0.8, "eff_r": 4.0, "flux": 100.0, "sky": 0.0}
    start = model.start_values(np.array([0]), [estimate])
    values = {prm: torch.as_tensor(v).reshape(-1, 1, 1) for prm, v in start.items()}
    reported = model.report(values)
    # the magnitude is reported in the M0 system, the size in arcsec, as the gm.p said (the starts
    # themselves -- a share of the flux, a fraction of the galaxy's size -- are the start rules' business)
    b_re, b_mag = model.profiles["b"].eff_r, model.profiles["b"].mag
    assert float(start[b_mag][0]) < 0 < float(start[b_re][0])
    assert float(reported["b_mag"][0]) == pytest.approx(22.5 + float(start[b_mag][0]))
    assert float(reported["b_eff_r"][0]) == pytest.approx(0.5 * float(start[b_re][0]))
    assert float(reported["b_cen_x"][0]) == float(reported["d_cen_x"][0]) == 15.5
    assert isinstance(b_re, AutoStart) and b_re.pix_scale == 0.5 and b_re.value_range == (0.1, 10.0)
    # the range is in arcsec: (0.2, 20) px, fitted in log space
    t = model.transforms[b_re]
    assert (t.lower, t.upper) == pytest.approx((0.2, 20.0))
    assert ser_n == 4.0


# --------------------------------------------------------------- profiles
@pytest.mark.parametrize(
    "make, slot",
    [
        (lambda: gm.lp.Sersic(eff_r=3.0), "eff_r"),
        (lambda: gm.lp.ExpDisk(pa=np.array([10.0, 20.0])), "pa"),
        (lambda: gm.lp.Moffat(con="2.5"), "con"),
        (lambda: gm.lp.Sky(sky_bg=0.1), "sky_bg"),
        (lambda: gm.lp.PointSource(mag=17.0), "mag"),
    ],
)
def test_a_profile_given_a_number_says_gm_p(make, slot):
    with pytest.raises(TypeError, match=rf"\({slot}=.*\): {slot} must be a parameter object, gm.p\(\.\.\.\)"):
        make()


def test_a_user_profile_with_a_number_in_a_declared_slot_fails_before_rendering():
    from galmoss.params import ParamSpec, Role

    class _FlatSky(gm.LightProfile):
        parameter_specs = {"level": ParamSpec(Role.REAL)}

        def __init__(self, level):
            super().__init__()
            self.level = level

        def image_via_grid_from(self, grid, mode="updating_model"):
            return self.level.value(mode) + torch.zeros_like(grid[0])

    with pytest.raises(TypeError, match=r"_FlatSky\(level=0.5\): level must be a parameter object, gm.p"):
        gm.render(_FlatSky(0.5), (8, 8))
    assert float(gm.render(_FlatSky(gm.p(0.5)), (8, 8)).mean()) == pytest.approx(0.5)


# --------------------------------------------------------------- registry
def test_registry_holds_usable_classes_only():
    names = registered_profiles()
    assert "ellipticalprofile" not in names and "lightprofile" not in names
    for name in ("sersic", "devaucouleurs", "expdisk", "gaussian", "moffat", "ferrer", "king", "sky", "pointsource"):
        assert names[name].is_usable()

    class _Abstract(gm.EllipticalProfile):  # "_": never registered
        pass

    class HalfDone(gm.EllipticalProfile):  # no profile_function: not usable
        pass

    class Intermediate(gm.lp.Sersic):
        usable = False
        profile_name = "intermediate_base_for_a_test"

    class Concrete(Intermediate):
        profile_name = "concrete_from_a_test"

    names = registered_profiles()
    assert "halfdone" not in names and "intermediate_base_for_a_test" not in names
    assert names["concrete_from_a_test"] is Concrete


def test_registry_refuses_a_name_clash_naming_both_classes():
    with pytest.raises(TypeError, match=(
        r"tests.test_contracts.*Sersic would be registered as 'sersic', which already names "
        r"galmoss.profiles.sersic.Sersic; rename the class or give it its own name with profile_name = 'my_sersic'"
    )):
        class Sersic(gm.lp.Sersic):
            pass
    assert registered_profiles()["sersic"] is gm.lp.Sersic

    class MySersic(gm.lp.Sersic):
        profile_name = "my_sersic_for_a_test"

    assert registered_profiles()["my_sersic_for_a_test"] is MySersic


def test_the_same_class_defined_again_replaces_itself():
    # a notebook cell run twice defines a new class with the same module and name
    made = []
    for _ in range(2):
        class Redefined(gm.lp.ExpDisk):
            profile_name = "redefined_for_a_test"

        made.append(Redefined)
    assert registered_profiles()["redefined_for_a_test"] is made[1]


def test_a_valueless_gm_p_is_started_from_the_image_and_reported_in_its_units():
    """Issue 8: gm.p(M0=22.5) (no value) is fitted like a slot left out, in the M0 and arcsec the gm.p gave."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:11, :11] - 5.0
    psf = np.exp(-0.5 * (xx**2 + yy**2) / 1.2**2)
    truth = gm.lp.Sersic(cen_x=gm.p(20.4), cen_y=gm.p(20.8), pa=gm.p(20.0), axis_r=gm.p(0.6), eff_r=gm.p(3.0),
                         mag=gm.p(17.0, M0=22.5), ser_n=gm.p(1.0))
    noise = 0.05
    image = gm.render(truth, (40, 40), psf=psf, dtype=torch.float64)[0].numpy() + rng.normal(0, noise, (40, 40))
    data = gm.Dataset.from_arrays(image[None], np.full((1, 40, 40), noise), psf)
    data.define_profiles(s=gm.lp.Sersic(cen_x=gm.p(20.0), cen_y=gm.p(20.0), pa=gm.p(0.0), axis_r=gm.p(0.8),
                                        eff_r=gm.p(pix_scale=0.4), mag=gm.p(M0=22.5), ser_n=gm.p(1.0, fit=False)))
    fit = gm.Fitting(dataset=data, batch_size=1, iteration=100)
    fit.fit()
    fit.uncertainty(method="covar_mat")
    res = fit.results
    assert int(res["flag"][0]) == 0
    # the injected values, within 5 sigma of the fit's own errors, in the gm.p's units
    assert abs(float(res["s_mag"][0]) - 17.0) < 5 * float(res["s_mag_err"][0])
    assert abs(float(res["s_eff_r"][0]) - 3.0 * 0.4) < 5 * float(res["s_eff_r_err"][0])
