r"""68.3 % intervals of reported values, from each value and its error.

A symmetric ``value +- err`` is the delta method's statement about the fitting
space mapped linearly to the reported units. Where the likelihood has a fold it
misstates the interval: the axis ratio is the case that matters, and the results
give it a 68.3 % interval (``<column>_lo``, ``<column>_hi``) beside its error.
Where it is skewed in the reported units but not in the space that is fitted, the
interval is the fitting space's: an index (a Sersic n, a Moffat beta: the slots of
role ``POSITIVE``, fitted in log space) gets ``[v e^{-s}, v e^{s}]``, ``s = err / v``
(:func:`log_interval`), which covers the truth of a faint galaxy's n as often as it
should where ``n +- err`` covers it too often.

The shape of an ellipse is a two-component quantity, the ellipticity
:math:`\eta = -\ln q` along the position angle. Noise in its two components makes
a round galaxy look elongated (the fitted modulus of a vector measured with noise
:math:`\sigma` follows a Rice distribution, whose mean exceeds the truth by up to
:math:`1.25\sigma`), so that ``q +- err`` of a faint round galaxy does not reach
q = 1 when it should. The interval of :math:`\eta` is the Feldman & Cousins
(1998) unified 68.3 % interval of a Rice-distributed modulus in units of its
noise, :math:`\sigma_\eta = \mathrm{err}_q / q` (the fitted ``ln q``'s own error),
mapped to q. Where the measured :math:`\eta` is within about 1.5 sigma of round
the interval reaches q = 1; at high S/N it is :math:`\ln q \pm \sigma_\eta`. It
covers the truth 68.3 % of the time for any true shape when the two ellipticity
components' errors are Gaussian with one width (the test suite checks this by
sampling).

Where a prior enters the axis ratio's posterior the interval is
:math:`\ln q \pm \sigma_{\ln q}` mapped back, ``[q e^{-s}, min(q e^{s}, 1)]``
with ``s = err / q`` (:func:`log_interval`): the unified construction is a
likelihood's, and the posterior's Gaussian approximation lives in the fitting
space.

Like every unified interval, the interval of a shape measured rounder than noise
usually makes it (eta below half its error: one fit in eight of a round galaxy)
is narrower than the error: ``[0.94, 1]`` for q = 1.0 +- 0.3. Over repeated
measurements such intervals still cover the truth 68.3 % of the time, but a
single one understates the elongation the data allow; ``_err`` beside it says how
noisy the shape is. Which columns get an interval, and of which kind, is decided here once
(:func:`interval_kind`).

A value with error 0 (held fixed) has the interval [v, v]; one without a finite
error has none (NaN), as its error has none.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy.special import i0e, i1e

from ..params import Role

#: the interval kinds a results column can have: an axis ratio's unified interval (the likelihood's), its
#: ln q +- sigma (a posterior's, with a prior on it), and an index's ln v +- sigma (the fitting space's)
KINDS = ("axis_ratio", "axis_ratio_prior", "log")

#: the probability content of the intervals: that of +-1 sigma of a normal distribution
LEVEL = math.erf(1.0 / math.sqrt(2.0))

#: beyond this modulus (in units of its noise) the Rice distribution is normal to < 1e-3
_T_MAX = 25.0
_STEP = 0.02


def interval_kind(column) -> str | None:
    """The kind of 68.3 % interval the results give for a model column (None: the error alone)."""
    if column.spec.role is Role.POSITIVE:
        return "log"
    if column.spec.role is not Role.AXIS_RATIO:
        return None
    return "axis_ratio_prior" if getattr(column.parameter, "prior", None) is not None else "axis_ratio"


def interval(kind: str, value, err) -> tuple[np.ndarray, np.ndarray]:
    """The ends of the 68.3 % interval of ``kind`` (:data:`KINDS`) for values and their errors."""
    value, err = np.asarray(value, dtype=np.float64), np.asarray(err, dtype=np.float64)
    if kind == "axis_ratio":
        lo, hi = axis_ratio_interval(value, err)
    elif kind == "axis_ratio_prior":
        lo, hi = log_interval(value, err)
        hi = np.minimum(hi, 1.0)  # a reported axis ratio is b/a <= 1
    elif kind == "log":
        lo, hi = log_interval(value, err)
    else:
        raise ValueError(f"interval kind {kind!r}: one of {', '.join(KINDS)}")
    fixed = err == 0  # a value held fixed is its own interval
    return np.where(fixed, value, lo), np.where(fixed, value, hi)


def log_interval(value: np.ndarray, err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[v e^{-s}, v e^{s}]``, ``s = err / v``: a positive value's interval fitted on a log scale."""
    value, err = np.asarray(value, dtype=np.float64), np.asarray(err, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        s = err / value
        ok = (value > 0) & (err > 0) & np.isfinite(s)
        lo = np.where(ok, value * np.exp(-s), np.nan)
        hi = np.where(ok, value * np.exp(s), np.nan)
    return lo, hi


def axis_ratio_interval(q: np.ndarray, err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The unified 68.3 % interval of an axis ratio ``q <= 1`` with delta-method error ``err``.

    ``eta = -ln q`` measured with noise ``sigma = err / q`` is treated as the
    modulus of a two-component ellipticity with that noise in each component;
    its Feldman-Cousins interval ``[eta_lo, eta_hi]`` gives ``[exp(-eta_hi),
    exp(-eta_lo)]`` (the upper end 1 where round is inside).
    """
    q, err = np.asarray(q, dtype=np.float64), np.asarray(err, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma = err / q
        ok = (q > 0) & (q <= 1) & (err > 0) & np.isfinite(sigma)
        x = np.where(ok, -np.log(np.where(ok, q, 1.0)) / np.where(ok, sigma, 1.0), 0.0)
    t_lo, t_hi = rice_interval(x)
    with np.errstate(over="ignore", invalid="ignore"):
        lo = np.where(ok, np.exp(-t_hi * sigma), np.nan)
        hi = np.where(ok, np.exp(-t_lo * sigma), np.nan)
    return lo, hi


def rice_interval(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Feldman-Cousins 68.3 % interval of the true modulus ``t`` for a measured modulus ``x``.

    Both in units of the noise of each of the vector's two components (the
    measured modulus follows a Rice distribution of parameter ``t``). Exact on a
    grid of 0.02 in ``t`` (0.01 in ``x``) up to ``t = 25``, normal beyond (where
    the two agree to < 0.01).
    """
    x = np.asarray(x, dtype=np.float64)
    t, x_lo, x_hi = _acceptance()
    # the confidence set {t : x_lo(t) <= x <= x_hi(t)}; both ends increase with t
    t_lo = np.interp(x, x_hi, t, left=0.0, right=np.nan)
    t_hi = np.interp(x, x_lo, t, left=0.0, right=np.nan)
    far = ~(x <= x_lo[-1])
    centre = np.sqrt(np.maximum(x * x - 1.0, 0.0))  # the Rice mean sqrt(t^2 + 1) inverted
    t_lo = np.where(far, centre - 1.0, np.where(x <= x_hi[0], 0.0, t_lo))
    t_hi = np.where(far, centre + 1.0, t_hi)
    return t_lo, t_hi


@functools.cache
def _acceptance() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per true modulus ``t``, the measured moduli ``[x_lo, x_hi]`` the unified ordering accepts."""
    t = np.arange(0.0, _T_MAX + _STEP / 2, _STEP)
    dx = _STEP / 2
    offsets = np.arange(-6.0, 6.0 + dx / 2, dx)
    x = t[:, None] + offsets[None, :]  # each row: the measured moduli within 6 sigma of its t
    inside = x >= 0
    x = np.where(inside, x, 0.0)
    p = np.where(inside, _rice_pdf(x, t[:, None]), 0.0)
    grid = np.arange(0.0, _T_MAX + 6.0 + dx, dx)
    best = np.interp(x, grid, _best_t(grid))  # the best physically allowed t >= 0 for each x
    ratio = p / np.maximum(_rice_pdf(x, best), 1e-300)
    order = np.argsort(-np.where(inside, ratio, -1.0), axis=1, kind="stable")
    mass = np.cumsum(np.take_along_axis(p, order, axis=1), axis=1) * dx
    count = (mass < LEVEL).sum(axis=1) + 1
    taken = np.arange(order.shape[1])[None, :] < count[:, None]
    chosen = np.take_along_axis(x, order, axis=1)
    x_lo = np.where(taken, chosen, np.inf).min(axis=1)
    x_hi = np.where(taken, chosen, -np.inf).max(axis=1)
    # an acceptance region that starts at x = 0 begins there exactly
    x_lo = np.maximum.accumulate(np.where(x_lo <= _STEP, 0.0, x_lo))
    return t, x_lo, np.maximum.accumulate(x_hi)


def _rice_pdf(x: np.ndarray, t) -> np.ndarray:
    """The Rice density of a measured modulus ``x`` given the true ``t`` (unit noise)."""
    return x * np.exp(-0.5 * (x - t) ** 2) * i0e(x * t)


def _best_t(x: np.ndarray) -> np.ndarray:
    """The maximum-likelihood ``t >= 0`` for each measured ``x``: 0 up to sqrt(2), else t = x I1(xt) / I0(xt)."""
    t = np.where(x > math.sqrt(2.0), np.sqrt(np.maximum(x * x - 2.0, 0.0)), 0.0)
    for _ in range(60):  # a contraction from above; slow only just above sqrt(2), where t is small anyway
        t = np.where(x > math.sqrt(2.0), x * i1e(x * t) / i0e(x * t), 0.0)
    return t
