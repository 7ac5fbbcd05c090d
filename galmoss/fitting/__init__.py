"""Fitting: the seed's ``Fitting``, optimisers, likelihoods and uncertainties."""

from .adam import AdamSettings, adam
from .fitting import Fitting
from .likelihoods import Chi2, Likelihood, Poisson, StudentT, get_likelihood
from .lm import LMSettings, OptimizeResult, levenberg_marquardt

__all__ = [
    "AdamSettings",
    "Chi2",
    "Fitting",
    "LMSettings",
    "Likelihood",
    "OptimizeResult",
    "Poisson",
    "StudentT",
    "adam",
    "get_likelihood",
    "levenberg_marquardt",
]
