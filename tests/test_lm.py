"""The batched Levenberg-Marquardt and Adam solvers against scipy, on problems with known optima."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import least_squares

from galmoss._compat import prepare_forward_mode
from galmoss.fitting.adam import AdamSettings, adam
from galmoss.fitting.lm import MAX_ITERATIONS, NON_FINITE, LMSettings, levenberg_marquardt
from galmoss.fitting.status import Status

X = torch.linspace(0.0, 4.0, 60, dtype=torch.float64)


def make_problem(batch, seed=0):
    """Noisy decays y = a exp(-b x) + c, one per row, and scipy's solutions."""
    rng = np.random.default_rng(seed)
    truth = np.stack([rng.uniform(1, 5, batch), rng.uniform(0.3, 2.0, batch), rng.uniform(-1, 1, batch)], 1)
    y = truth[:, :1] * np.exp(-truth[:, 1:2] * X.numpy()) + truth[:, 2:] + rng.normal(0, 0.05, (batch, X.numel()))
    y = torch.tensor(y)
    calls = []

    def model(theta, index):
        return y[index] - (theta[:, :1] * torch.exp(-theta[:, 1:2] * X) + theta[:, 2:])

    def residuals(theta, index):
        calls.append(index.clone())
        return model(theta, index)

    def residuals_and_jacobian(theta, index):
        prepare_forward_mode()
        jac = torch.func.vmap(torch.func.jacfwd(lambda t, i: model(t[None], i[None])[0]))(theta, index)
        return residuals(theta, index), jac

    best = np.stack([
        least_squares(lambda p, i=i: (y[i].numpy() - (p[0] * np.exp(-p[1] * X.numpy()) + p[2])), x0=[1.0, 1.0, 0.0],
                      xtol=1e-14, ftol=1e-14, gtol=1e-14).x
        for i in range(batch)
    ])
    return residuals, residuals_and_jacobian, best, calls


def test_lm_reaches_scipy_optimum_for_every_member():
    residuals, res_jac, best, _ = make_problem(8)
    theta0 = torch.tensor([[1.0, 1.0, 0.0]] * 8, dtype=torch.float64)
    result = levenberg_marquardt(residuals, res_jac, theta0, LMSettings(ftol=1e-12, xtol=1e-12))
    assert bool(result.converged.all())
    np.testing.assert_allclose(result.theta.numpy(), best, rtol=1e-6, atol=1e-8)
    # the returned normal matrix is J^T J at the solution
    _, jac = res_jac(result.theta, torch.arange(8))
    np.testing.assert_allclose(result.normal_matrix.numpy(), (jac.transpose(1, 2) @ jac).numpy(), rtol=1e-10)


def test_non_finite_trials_are_rejected_and_bad_members_do_not_spoil_others():
    residuals, res_jac, best, calls = make_problem(4, seed=3)

    def guarded(theta, index):  # non-finite beyond b > 3: a trial there must be rejected
        r = residuals(theta, index)
        return torch.where(theta[:, 1:2] > 3.0, torch.full_like(r, float("nan")), r)

    def guarded_jac(theta, index):
        r, j = res_jac(theta, index)
        return guarded(theta, index), j

    theta0 = torch.tensor([[1.0, 2.9, 0.0], [1.0, 1.0, 0.0], [float("nan"), 1.0, 0.0], [1.0, 1.0, 0.0]], dtype=torch.float64)
    result = levenberg_marquardt(guarded, guarded_jac, theta0, LMSettings(ftol=1e-12, xtol=1e-12))
    assert int(result.status[2]) == NON_FINITE
    ok = [0, 1, 3]
    assert bool(result.converged[ok].all())
    np.testing.assert_allclose(result.theta[ok].numpy(), best[ok], rtol=1e-6, atol=1e-8)
    assert bool(torch.isfinite(result.chi2[ok]).all())


def test_converged_members_stop_costing_work():
    residuals, res_jac, _, calls = make_problem(6, seed=5)
    theta0 = torch.tensor([[1.0, 1.0, 0.0]] * 6, dtype=torch.float64)
    theta0[0] = torch.tensor(make_problem(6, seed=5)[2][0])  # member 0 starts at its optimum
    result = levenberg_marquardt(residuals, res_jac, theta0, LMSettings(ftol=1e-10, xtol=1e-12))
    per_member = torch.bincount(torch.cat(calls), minlength=6)
    assert int(result.n_iter[0]) <= 2 < int(result.n_iter[1:].min())
    assert int(per_member[0]) < int(per_member[1:].min())


def test_iteration_limit_is_reported_not_converged():
    residuals, res_jac, _, _ = make_problem(2)
    theta0 = torch.tensor([[1.0, 1.0, 0.0]] * 2, dtype=torch.float64)
    result = levenberg_marquardt(residuals, res_jac, theta0, LMSettings(max_iterations=1, ftol=1e-15, xtol=1e-15, gtol=0.0))
    assert bool((result.status == MAX_ITERATIONS).all())
    assert not bool(result.converged.any())


def test_adam_keeps_each_members_best_and_stops_early():
    residuals, _, best, _ = make_problem(3, seed=7)
    theta0 = torch.tensor([[1.0, 1.0, 0.0]] * 3, dtype=torch.float64)
    result = adam(residuals, theta0, AdamSettings(max_iterations=3000, learning_rate=0.02, patience=100, tol=1e-9))
    assert bool((result.status == int(Status.CONVERGED_PATIENCE)).all())
    assert int(result.n_iter.max()) < 3000
    chi2_best = torch.tensor([float((residuals(torch.tensor(b)[None], torch.tensor([i]))) .pow(2).sum()) for i, b in enumerate(best)],
                             dtype=torch.float64)
    # the reported chi2 is that of the reported parameters, and close to scipy's minimum
    again = (residuals(result.theta, torch.arange(3)) ** 2).sum(1)
    np.testing.assert_allclose(result.chi2.numpy(), again.numpy(), rtol=1e-12)
    assert bool((result.chi2 <= chi2_best * 1.001).all())


def test_adam_flags_non_finite_start():
    residuals, _, _, _ = make_problem(2)
    theta0 = torch.tensor([[float("nan"), 1.0, 0.0], [1.0, 1.0, 0.0]], dtype=torch.float64)
    result = adam(residuals, theta0, AdamSettings(max_iterations=50))
    assert int(result.status[0]) == NON_FINITE


def test_rank_one_updates_reach_the_same_optimum_with_fewer_jacobians():
    """Broyden updates replace computed Jacobians late in a fit; the answer and the final normal matrix are unchanged."""
    residuals, res_jac, best, _ = make_problem(8, seed=5)
    counted = []

    def counting(theta, index):
        counted.append(index.numel())
        return res_jac(theta, index)

    theta0 = torch.tensor([[1.0, 1.0, 0.0]] * 8, dtype=torch.float64)
    rows = {}
    for updates in (0, 3):
        counted.clear()
        result = levenberg_marquardt(residuals, counting, theta0,
                                     LMSettings(ftol=1e-12, xtol=1e-12, jacobian_updates=updates))
        rows[updates] = sum(counted)
        assert bool(result.converged.all())
        np.testing.assert_allclose(result.theta.numpy(), best, rtol=1e-6, atol=1e-8)
        # converged only on a computed Jacobian: the normal matrix is J^T J at the solution
        _, jac = res_jac(result.theta, torch.arange(8))
        np.testing.assert_allclose(result.normal_matrix.numpy(), (jac.transpose(1, 2) @ jac).numpy(), rtol=1e-10)
    assert rows[3] < rows[0]


@pytest.mark.parametrize("field, value", [("jacobian_updates", -1), ("jacobian_updates", 1.5), ("update_ratio", 0.0),
                                          ("update_ratio", 1.5)])
def test_update_settings_are_checked(field, value):
    with pytest.raises(ValueError, match=field):
        LMSettings(**{field: value})
