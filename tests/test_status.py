"""Solver status codes, settings validation, and how the solvers end (LM and Adam)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from galmoss.fitting import lm
from galmoss.fitting.adam import AdamSettings, adam
from galmoss.fitting.lm import LMSettings, OptimizeResult, levenberg_marquardt
from galmoss.fitting.status import CONVERGED, Status, decode_status, is_converged


def test_codes_are_pinned_and_carry_their_message():
    # the codes are stored in results files: renumbering one breaks old files
    pinned = {
        "RUNNING": 0, "CONVERGED_FTOL": 1, "CONVERGED_XTOL": 2, "CONVERGED_GTOL": 3, "MAX_ITERATIONS": 4,
        "NON_FINITE": 5, "STALLED": 6, "CONVERGED_PATIENCE": 7, "EVALUATED": 8, "NOT_FITTED": 9,
    }
    assert {s.name: int(s) for s in Status} == pinned
    assert all(s.message and s.message != s.name for s in Status)
    assert len({s.message for s in Status}) == len(Status)
    assert decode_status(7) == Status.CONVERGED_PATIENCE.message and "patience" in decode_status(7)
    assert decode_status(np.int64(4)) == "iteration limit reached before convergence"
    with pytest.raises(ValueError, match=r"99 is not a galmoss status code; known: 0 \(RUNNING\)"):
        decode_status(99)


def test_is_converged_on_ints_arrays_and_tensors():
    assert CONVERGED == {Status.CONVERGED_FTOL, Status.CONVERGED_XTOL, Status.CONVERGED_GTOL,
                         Status.CONVERGED_PATIENCE, Status.EVALUATED}
    assert is_converged(1) and is_converged(Status.CONVERGED_PATIENCE) and not is_converged(Status.STALLED)
    codes = np.arange(10)
    expected = np.array([False, True, True, True, False, False, False, True, True, False])
    np.testing.assert_array_equal(is_converged(codes), expected)
    np.testing.assert_array_equal(is_converged(torch.as_tensor(codes)).numpy(), expected)
    assert Status.CONVERGED_XTOL.converged and not Status.NON_FINITE.converged


def test_old_names_stay_importable_from_lm():
    assert lm.CONVERGED_FTOL == 1 and lm.STALLED == 6 and lm.NON_FINITE == Status.NON_FINITE
    assert lm.STATUS_TEXT[int(lm.MAX_ITERATIONS)] == Status.MAX_ITERATIONS.message


def test_loss_is_the_field_and_chi2_a_read_only_alias():
    result = OptimizeResult(torch.zeros(2, 1), torch.tensor([1.0, 2.0]), torch.zeros(2), torch.ones(2, dtype=torch.long))
    assert result.chi2 is result.loss
    with pytest.raises(AttributeError):
        result.chi2 = torch.zeros(2)  # type: ignore[misc]


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("max_iterations", 0, "max_iterations must be an integer >= 1"),
        ("max_iterations", 10.5, "max_iterations must be an integer"),
        ("max_iterations", True, "max_iterations must be an integer"),
        ("ftol", -1e-6, "ftol must be a finite number >= 0"),
        ("xtol", float("nan"), "xtol must be a finite number >= 0"),
        ("gtol", "1e-8", "gtol must be a finite number >= 0"),
        ("initial_damping", 0.0, "initial_damping must be a finite number > 0"),
        ("max_damping", 0.01, "max_damping must exceed initial_damping"),
    ],
)
def test_lm_settings_name_the_bad_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        LMSettings(**{field: value})


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("max_iterations", -3, "max_iterations must be an integer >= 1"),
        ("learning_rate", 0.0, "learning_rate must be a finite number > 0"),
        ("betas", (0.9, 1.0), r"betas must be a pair \(beta1, beta2\), each in \[0, 1\)"),
        ("betas", (0.9,), "betas must be a pair"),
        ("eps", -1.0, "eps must be a finite number > 0"),
        ("tol", float("inf"), "tol must be a finite number >= 0"),
        ("patience", 0, "patience must be an integer >= 1"),
        ("max_non_finite", 2.0, "max_non_finite must be an integer"),
    ],
)
def test_adam_settings_name_the_bad_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        AdamSettings(**{field: value})


def test_settings_are_frozen_and_replaced_not_mutated():
    base = LMSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.ftol = 1.0  # type: ignore[misc]
    assert dataclasses.replace(base, ftol=1e-9).ftol == 1e-9 and base.ftol == 1e-6
    with pytest.raises(ValueError, match="ftol"):
        dataclasses.replace(base, ftol=-1.0)


def _walled_problems():
    """Row 0: (theta - 2)^2 with no value beyond a wall at 2.5; row 1: a gradient that is NaN at its start."""

    def residuals(theta, index):
        t = theta[:, 0]
        wall = torch.where(t > 2.5, torch.full_like(t, float("nan")), t - 2.0)
        kink = t.abs().sqrt() + 1.0  # d/dt sqrt|t| at t = 0 is inf * 0 = NaN
        return torch.where(index == 0, wall, kink)[:, None]

    return residuals


def test_adam_skips_non_finite_steps_counts_them_and_stops_on_too_many():
    residuals = _walled_problems()
    theta0 = torch.tensor([[0.1], [0.0]], dtype=torch.float64)  # row 0 off 0: the kink branch has NaN gradient there too
    settings = AdamSettings(max_iterations=2000, learning_rate=1.0, patience=60, tol=1e-10, max_non_finite=7)
    result = adam(residuals, theta0, settings)
    # row 0 steps over the wall (lr 1), is put back, halves its rate and converges at 2
    assert int(result.n_skipped[0]) >= 1
    assert int(result.status[0]) == Status.CONVERGED_PATIENCE
    assert abs(float(result.theta[0, 0]) - 2.0) < 1e-3
    # row 1 never has a finite gradient: exactly max_non_finite skips, then NON_FINITE,
    # with its (finite) start still reported as the best point
    assert int(result.status[1]) == Status.NON_FINITE
    assert int(result.n_skipped[1]) == 7 and int(result.n_iter[1]) == 7
    assert float(result.loss[1]) == pytest.approx(1.0)


def test_a_model_with_nothing_to_fit_is_evaluated():
    def residuals(theta, index):
        return torch.tensor([[3.0, 4.0], [1.0, 0.0]], dtype=torch.float64)[index]

    def with_jacobian(theta, index):
        return residuals(theta, index), torch.zeros(len(index), 2, 0, dtype=torch.float64)

    theta0 = torch.zeros(2, 0, dtype=torch.float64)
    for result in (levenberg_marquardt(residuals, with_jacobian, theta0), adam(residuals, theta0)):
        assert result.status.tolist() == [Status.EVALUATED] * 2
        assert result.loss.tolist() == [25.0, 1.0]
        assert bool(result.converged.all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lm_solves_rosenbrock_and_an_ill_conditioned_bowl(dtype):
    """Known optima: Rosenbrock (1, 1) from (-1.2, 1); a bowl with condition number 1e6 at (3, -2)."""
    scales = torch.tensor([1e3, 1.0], dtype=dtype)
    centre = torch.tensor([3.0, -2.0], dtype=dtype)

    def residuals(theta, index):
        x, y = theta[:, 0], theta[:, 1]
        rosen = torch.stack([10.0 * (y - x * x), 1.0 - x], 1)
        bowl = (theta - centre) * scales
        return torch.where((index == 0)[:, None], rosen, bowl)

    def with_jacobian(theta, index):
        x = theta[:, 0]
        one, zero = torch.ones_like(x), torch.zeros_like(x)
        j_rosen = torch.stack([torch.stack([-20.0 * x, 10.0 * one], 1), torch.stack([-one, zero], 1)], 1)
        j_bowl = torch.diag(scales).expand(len(x), 2, 2)
        return residuals(theta, index), torch.where((index == 0)[:, None, None], j_rosen, j_bowl)

    theta0 = torch.tensor([[-1.2, 1.0], [0.0, 0.0]], dtype=dtype)
    result = levenberg_marquardt(residuals, with_jacobian, theta0, LMSettings(max_iterations=500, ftol=1e-12, xtol=1e-10))
    tol = 1e-3 if dtype == torch.float32 else 1e-7
    assert bool(result.converged.all()), result.status
    np.testing.assert_allclose(result.theta[0].double().numpy(), [1.0, 1.0], atol=tol)
    np.testing.assert_allclose(result.theta[1].double().numpy(), [3.0, -2.0], atol=tol)
