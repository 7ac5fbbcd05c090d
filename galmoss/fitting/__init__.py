"""Fitting: the pure batch fit, optimisers, likelihoods and uncertainties (``gm.Fitting`` is in galmoss.pipeline)."""

from .adam import AdamSettings, adam
from .batch import Batch, BatchResult, FitSettings, fit_batch, fit_batch_safely
from .likelihoods import Chi2, Likelihood, Poisson, StudentT, get_likelihood
from .lm import LMSettings, OptimizeResult, levenberg_marquardt

__all__ = [
    "AdamSettings",
    "Batch",
    "BatchResult",
    "Chi2",
    "FitSettings",
    "LMSettings",
    "Likelihood",
    "OptimizeResult",
    "Poisson",
    "StudentT",
    "adam",
    "fit_batch",
    "fit_batch_safely",
    "get_likelihood",
    "levenberg_marquardt",
]
