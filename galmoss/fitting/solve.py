"""The objective of a batch and the solver dispatch: LM (whole or chunked normal equations), Adam, or evaluation.

:func:`make_objective` turns a batch and its start values into the
:class:`~galmoss.fitting.objective.BatchObjective` every solver and the
bootstrap minimise; :func:`optimise` hands it to the solver the settings name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from ..model import Model
from ..render import Renderer
from .adam import adam
from .likelihoods import get_likelihood
from .lm import levenberg_marquardt
from .objective import BatchObjective
from .priors import PriorRows
from .records import Batch
from .status import Status

if TYPE_CHECKING:
    from .fit_settings import FitSettings

__all__ = ["evaluate", "make_objective", "optimise"]

Tensor = torch.Tensor


def make_objective(model: Model, batch: Batch, start: dict, settings: FitSettings) -> BatchObjective:
    """The batch's objective: its renderer, likelihood, pixels, weights and the fixed values of ``start``."""
    dt, dev = settings.torch_dtype, settings.torch_device
    as_tensor = lambda x: torch.as_tensor(np.ascontiguousarray(x), dtype=dt, device=dev)  # noqa: E731
    psf = None if batch.psf is None else as_tensor(batch.psf)
    renderer = Renderer(tuple(batch.image.shape[1:]), psf, batch=len(batch), dtype=dt, device=dev,
                        settings=settings.render)
    return BatchObjective(
        model=model,
        renderer=renderer,
        likelihood=get_likelihood(settings.likelihood),
        data=as_tensor(batch.image),
        sigma=as_tensor(batch.sigma),
        weight=as_tensor(batch.weight),
        fixed=model.fixed_tensors(start, dt, dev),
        jacobian_chunk=settings.jacobian_chunk,
        priors=PriorRows.for_batch(model, batch.positions, dt, dev),
    )


def optimise(model: Model, objective: BatchObjective, theta0: Tensor, rows: Tensor, settings: FitSettings):
    """Minimise the objective of galaxies ``rows`` from ``theta0`` with the settings' solver."""
    def residuals(theta, index):
        return objective.residuals(theta, rows[index])

    def residuals_and_jacobian(theta, index):
        return objective.residuals_and_jacobian(theta, rows[index])

    if settings.method == "lm":
        if model.has_vectors:  # large P: J^T J in chunks, never J (b, M, P) whole
            def normal_equations(theta, index):
                return objective.normal_equations(theta, rows[index])

            return levenberg_marquardt(residuals, None, theta0, settings.lm, normal_equations=normal_equations)
        return levenberg_marquardt(residuals, residuals_and_jacobian, theta0, settings.lm)
    scales = torch.tensor([float(p.step_length) / 0.02 if p.step_length else 1.0
                           for p in model.free for _ in range(p.size)],
                          device=theta0.device, dtype=theta0.dtype)
    return adam(residuals, theta0, settings.adam, scales)


def evaluate(objective: BatchObjective, theta0: Tensor, rows: Tensor):
    """A model with no free parameter is evaluated, not fitted (GALFIT's P) 1): its loss at the given values."""
    from .lm import OptimizeResult, sum_of_squares

    with torch.no_grad():
        loss = sum_of_squares(objective.residuals(theta0, rows))
    status = torch.where(torch.isfinite(loss), int(Status.EVALUATED), int(Status.NON_FINITE))
    return OptimizeResult(theta0, loss, torch.zeros_like(rows), status.to(rows.device), None)
