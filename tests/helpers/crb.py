"""Cramer-Rao bounds from the Fisher matrix of the TRUE model (our renderer, checked against GalSim)."""

from __future__ import annotations

import numpy as np
import torch

from galmoss.fitting.likelihoods import Chi2
from galmoss.fitting.objective import BatchObjective
from galmoss.fitting.uncertainty import covariance_errors
from galmoss.model import Model
from galmoss.render import Renderer


def crb_errors(profiles: dict, sigmas: np.ndarray, psfs: np.ndarray, full: bool = False):
    """sigma_CRB of every reported column, for profiles whose parameters hold the true values.

    With ``full``, also the CRB covariance of the columns (N, C, C) and their names.
    """
    model = Model(profiles)
    count, h, w = sigmas.shape
    start = model.start_values(np.arange(count))
    f64 = torch.float64
    renderer = Renderer((h, w), torch.as_tensor(psfs, dtype=f64), batch=count, dtype=f64)
    theta = model.theta_from_values(start, f64, "cpu")
    objective = BatchObjective(model, renderer, Chi2(), torch.zeros((count, h, w), dtype=f64),
                               torch.as_tensor(sigmas, dtype=f64), torch.ones((count, h, w), dtype=f64),
                               model.fixed_tensors(start, f64, "cpu"))
    fisher = objective.fisher(theta, torch.arange(count)).numpy()
    errors, _, cov = covariance_errors(model, theta.numpy(), fisher, f64, full=True)
    if full:
        return errors, cov, [c.name for c in model.columns]
    return errors


def bt_sigma(cov: np.ndarray, names: list[str], bt: np.ndarray, bulge: str = "bulge", disk: str = "disk") -> np.ndarray:
    """sigma of B/T from the covariance of the two magnitudes (delta method)."""
    ib, idisk = names.index(f"{bulge}_mag"), names.index(f"{disk}_mag")
    k = 0.4 * np.log(10.0) * bt * (1 - bt)
    var = k**2 * (cov[:, ib, ib] + cov[:, idisk, idisk] - 2 * cov[:, ib, idisk])
    return np.sqrt(var)
