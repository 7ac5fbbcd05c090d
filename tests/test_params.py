"""gm.p: values, units, bounds and the fitting-space bijections."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import galmoss as gm
from galmoss.params import Compose, Exp, Identity, Logistic, ParamSpec, Pow10, Role, parameter_values
from galmoss.params.parameter import _HalfBounded

TRANSFORMS = [
    Identity(),
    Exp(),
    Pow10(),
    Logistic(-2.0, 5.0),
    Compose(Exp(), Logistic(math.log(0.05), -math.log(0.05))),
    Compose(Pow10(), Logistic(-1.0, 1.0)),
    _HalfBounded(3.0, from_above=False),
    _HalfBounded(3.0, from_above=True, log=True),
]


@pytest.mark.parametrize("transform", TRANSFORMS, ids=lambda t: type(t).__name__)
def test_transform_is_a_bijection_with_the_right_derivative(transform):
    u = torch.linspace(-3.0, 3.0, 61, dtype=torch.float64)
    v = transform.forward(u)
    assert torch.allclose(transform.inverse(v), u, atol=1e-10, rtol=1e-10)
    h = 1e-6
    fd = (transform.forward(u + h) - transform.forward(u - h)) / (2 * h)
    assert torch.allclose(transform.derivative(u), fd, rtol=1e-7, atol=1e-12)
    assert bool(transform.contains(v).all())


def test_scalar_broadcasts_and_array_gives_one_value_per_galaxy():
    assert gm.p(3.0).param_length == 1
    prm = gm.p([1.0, 2.0, 3.0])
    assert prm.param_length == 3
    assert prm.value().shape == (3, 1, 1)
    assert torch.equal(prm.value().reshape(-1), torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))


def test_units_pix_scale_magnitude_and_angle():
    re = gm.p(7.92, pix_scale=0.396)
    assert float(re.value()) == pytest.approx(20.0)
    mag = gm.p(17.5, M0=22.5)
    assert float(mag.value()) == pytest.approx(-5.0)  # flux = 10**(-0.4 * value) = 100
    pa = gm.p(90.0, angle=True)
    assert float(pa.value()) == pytest.approx(math.pi / 2)
    assert float(re.units.to_user(re.value())) == pytest.approx(7.92)


def test_value_modes_and_the_evaluation_context():
    prm = gm.p([1.0, 2.0])
    other = torch.full((2, 1, 1), 5.0)
    with parameter_values({prm: other}):
        for mode in ("updating_model", "best_model", "initial_model"):
            assert prm.value(mode) is other
    assert float(prm.value()[1]) == 2.0  # outside the context: start values again
    with pytest.raises(ValueError, match="mode must be one of"):
        prm.value("nonsense")


def test_start_value_outside_range_is_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"galaxy index 1.*outside value_range.*widen the range"):
        gm.p([0.5, 1.5], value_range=(0.0, 1.0))
    with pytest.raises(ValueError, match="lower 2.0 must be below upper 1.0"):
        gm.p(1.5, value_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="not finite"):
        gm.p([1.0, float("nan")])
    with pytest.raises(ValueError, match=r"dim='2d'.*shape \(K,\)"):
        gm.p(1.0, dim="2d")


def test_fitting_transforms_respect_bounds_and_roles():
    bounded = gm.p(0.5, value_range=(0.2, 0.9)).fitting_transform(Role.REAL)
    assert isinstance(bounded, Logistic) and (bounded.lower, bounded.upper) == (0.2, 0.9)
    assert isinstance(gm.p(3.0).fitting_transform(Role.POSITIVE), Exp)
    assert isinstance(gm.p(3.0, log=True).fitting_transform(Role.POSITIVE), Pow10)
    assert isinstance(gm.p(3.0).fitting_transform(Role.POSITION), Identity)
    # without a range, a slot's own bounds hold: the Moffat index stays above 1
    moffat_con = gm.p(2.5).fitting_transform(ParamSpec(Role.POSITIVE, domain=(1.0, math.inf)))
    assert float(moffat_con.forward(torch.tensor(-5.0, dtype=torch.float64))) > 1.0
    assert float(moffat_con.forward(torch.tensor(-500.0, dtype=torch.float64))) >= 1.0
    # a huge step can never leave the range
    u = torch.tensor([-1e3, 0.0, 1e3], dtype=torch.float64)
    v = bounded.forward(u)
    assert float(v.min()) >= 0.2 and float(v.max()) <= 0.9


def test_axis_ratio_has_no_wall_at_one():
    """q = 1 is an interior point of the fitting space: q > 1 is the same ellipse turned by 90 degrees."""
    t = gm.p(0.9, value_range=(0.1, 1.0)).fitting_transform(Role.AXIS_RATIO)
    u1 = t.inverse(torch.tensor(1.0, dtype=torch.float64))
    assert abs(float(u1)) < 1e-12  # q = 1 sits in the middle, not at an edge
    assert float(t.derivative(u1)) > 0.5  # and the map is not flat there
    assert float(t.forward(torch.tensor(50.0, dtype=torch.float64))) == pytest.approx(10.0)


def test_position_angle_is_degrees_by_role_and_the_users_object_is_untouched():
    pa = gm.p(90.0)  # no angle=True
    before = dict(vars(pa))
    geometry = dict(cen_x=gm.p(16.3), cen_y=gm.p(15.8), axis_r=gm.p(0.5), eff_r=gm.p(3.0), mag=gm.p(20.0), ser_n=gm.p(1.0))
    plain = gm.lp.Sersic(pa=pa, **geometry)
    assert vars(pa) == before and not pa.angle  # building a profile changed nothing
    assert float(pa.value()) == 90.0  # outside a rendering: its own units
    # rendered as 90 degrees: the same image as angle=True, not as 90 radians
    flagged = gm.lp.Sersic(pa=gm.p(90.0, angle=True), **geometry)
    radians = gm.lp.Sersic(pa=gm.p(90.0 * 180 / math.pi, angle=True), **geometry)  # 90 rad
    image = gm.render(plain, (32, 32), dtype=torch.float64)
    assert torch.equal(image, gm.render(flagged, (32, 32), dtype=torch.float64))
    assert float((image - gm.render(radians, (32, 32), dtype=torch.float64)).abs().max()) > 1e-3 * float(image.max())
    # the model starts it at pi/2 and reports it in degrees again
    from galmoss.model import Model

    model = Model({"s": plain})
    start = model.start_values(np.array([0]))
    assert float(start[pa][0]) == pytest.approx(math.pi / 2)
    values = {prm: torch.as_tensor(v).reshape(-1, 1, 1) for prm, v in start.items()}
    assert float(model.report(values)["s_pa"][0]) == pytest.approx(90.0)
    assert vars(pa) == before


def test_value_outside_a_rendering_gives_starts_only_for_current_modes():
    prm = gm.p([1.0, 2.0])
    assert prm.value("initial_model").flatten().tolist() == [1.0, 2.0]
    for mode in ("best_model", "load_best_in_optim_list", "load_initial_in_jacobian"):
        with pytest.raises(ValueError, match=r"outside a rendering.*no fit state.*fitting\.results"):
            prm.value(mode)
        with parameter_values({prm: torch.zeros(2, 1, 1)}):
            assert float(prm.value(mode).abs().sum()) == 0.0  # inside one, every mode is the rendered values


def test_no_fit_state_on_parameter_objects():
    prm = gm.p([1.0, 2.0])
    before = dict(vars(prm))
    with parameter_values({prm: torch.zeros(2, 1, 1)}):
        prm.value()
    assert set(vars(prm)) == set(before)
    assert np.array_equal(prm.initial, [1.0, 2.0])
