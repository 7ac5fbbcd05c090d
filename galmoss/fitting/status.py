"""Solver status codes: how each galaxy's optimisation ended.

Every optimiser (:func:`~galmoss.fitting.lm.levenberg_marquardt`,
:func:`~galmoss.fitting.adam.adam`) returns one :class:`Status` per galaxy, and
the results table keeps it in its ``status`` column next to ``flag``. A member
is an ``int`` (what the table stores) that carries its message:

====  ======================  ==================================================
code  member                  meaning
====  ======================  ==================================================
0     ``RUNNING``             still iterating (never in a returned result)
1     ``CONVERGED_FTOL``      converged: the relative decrease of the loss, done
                              and predicted, fell below ``ftol`` (LM)
2     ``CONVERGED_XTOL``      converged: an accepted step moved every fitted
                              coordinate by less than ``xtol`` (LM)
3     ``CONVERGED_GTOL``      converged: the gradient is orthogonal to the
                              residuals to ``gtol`` (LM)
4     ``MAX_ITERATIONS``      the iteration limit came before convergence
5     ``NON_FINITE``          the loss is not finite at the start values, or
                              (Adam) too many consecutive steps were not finite
6     ``STALLED``             no step lowers the loss any more although the
                              model predicts progress (LM damping at its limit)
7     ``CONVERGED_PATIENCE``  converged: the best loss did not improve by more
                              than ``tol`` (relative) for ``patience`` iterations
                              (Adam)
8     ``EVALUATED``           nothing to fit (no free parameter): the loss of
                              the given model
9     ``NOT_FITTED``          the galaxy was not fitted (unusable data, a bad
                              start, or its fit raised): see flag and message
====  ======================  ==================================================

Codes are part of the results file format: members are only ever added, with
the next free number, never renumbered.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import torch

__all__ = ["CONVERGED", "Status", "decode_status", "is_converged"]


class Status(IntEnum):
    """How a galaxy's optimisation ended; ``int(member)`` is stored, ``.message`` explains it."""

    message: str

    def __new__(cls, value: int, message: str) -> "Status":
        obj = int.__new__(cls, value)
        obj._value_ = value
        obj.message = message
        return obj

    RUNNING = 0, "running"
    CONVERGED_FTOL = 1, "converged: relative decrease of the loss below ftol"
    CONVERGED_XTOL = 2, "converged: step below xtol"
    CONVERGED_GTOL = 3, "converged: gradient orthogonal to the residuals (gtol)"
    MAX_ITERATIONS = 4, "iteration limit reached before convergence"
    NON_FINITE = 5, "the loss is not finite (at the start values, or at too many consecutive steps)"
    STALLED = 6, "no step lowers the loss any more although the model predicts progress"
    CONVERGED_PATIENCE = 7, "converged: the best loss stopped improving by more than tol for patience iterations"
    EVALUATED = 8, "no free parameter: the given model was evaluated, not fitted"
    NOT_FITTED = 9, "not fitted: the galaxy's data could not be used or its fit raised (see flag and message)"

    @property
    def converged(self) -> bool:
        """Whether the member means a final, valid answer (see :data:`CONVERGED`)."""
        return self in CONVERGED


#: The codes that mean a final, valid answer: the three LM tests, Adam's
#: patience, and a model with nothing to fit.
CONVERGED = frozenset(
    {Status.CONVERGED_FTOL, Status.CONVERGED_XTOL, Status.CONVERGED_GTOL, Status.CONVERGED_PATIENCE, Status.EVALUATED}
)


def decode_status(code: int) -> str:
    """The message of a status code (an ``int`` from a results table, or a :class:`Status`).

    Raises
    ------
    ValueError
        ``code`` is not a known status (naming the known codes).
    """
    try:
        return Status(int(code)).message
    except ValueError:
        known = ", ".join(f"{int(s)} ({s.name})" for s in Status)
        raise ValueError(f"decode_status: {code!r} is not a galmoss status code; known: {known}") from None


def is_converged(code):
    """Whether status code(s) mean a final, valid answer.

    ``code`` is an int or :class:`Status` (returns ``bool``), a numpy array
    (returns a boolean array) or a tensor (returns a boolean tensor on its device).
    """
    values = [int(s) for s in CONVERGED]
    if isinstance(code, torch.Tensor):
        return torch.isin(code, torch.tensor(values, dtype=code.dtype, device=code.device))
    if isinstance(code, np.ndarray):
        return np.isin(code, values)
    return int(code) in values
