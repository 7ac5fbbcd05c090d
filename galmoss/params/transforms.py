"""Bijections between the fitting space and the values profiles compute with.

A free parameter lives in three spaces:

* **user units** -- what the user typed into :func:`galmoss.p` (arcsec, degrees,
  magnitudes);
* **profile units** -- what a light profile computes with (pixels, radians,
  magnitudes relative to the zero point); :class:`UnitMap` converts between the two;
* **fitting space** -- an unbounded coordinate ``u`` the optimiser moves freely;
  a :class:`Transform` maps it to profile units, ``v = forward(u)``.

Every transform is an explicit bijection with its derivative ``dv/du``. The
optimisers use ``forward`` (bounds can never be crossed), the uncertainty code
uses ``derivative`` (delta method), and start values enter through
``start_coordinate`` (``inverse``, moved just inside a bound they sit on).

Bounds live in the fitting space. A range is a :class:`Logistic` of the
coordinate that is fitted -- the value itself, its natural logarithm (sizes,
positive quantities) or its log10 (``log=True``) -- so a range of (1e-3, 1e12)
for a radius is 35 e-folds wide, not 1e12 pixels. Closeness to a bound
(:meth:`Transform.near_bound`) and the nudge that keeps a start off one are
measured as fractions of that fitted width, never of the linear width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

Tensor = torch.Tensor

#: How far inside an open bound a start that sits on it is put, as a fraction
#: of the fitted width (well below the 1e-3 at which a fit is flagged near a bound).
START_MARGIN = 1e-6


class Transform:
    """A bijection from the fitting space ``u`` to profile units ``v``."""

    #: Whether the image of ``forward`` is bounded below / above.
    lower: float = -math.inf
    upper: float = math.inf

    def forward(self, u: Tensor) -> Tensor:
        """Map fitting-space values to profile units."""
        raise NotImplementedError

    def inverse(self, v: Tensor) -> Tensor:
        """Map profile-unit values to the fitting space."""
        raise NotImplementedError

    def derivative(self, u: Tensor) -> Tensor:
        """Return ``dv/du`` at ``u``."""
        raise NotImplementedError

    def contains(self, v: Tensor) -> Tensor:
        """Whether ``v`` lies strictly inside the image of ``forward``."""
        return (v > self.lower) & (v < self.upper)

    def near_bound(self, theta: Tensor, rel: float = 1e-3) -> Tensor:
        """Whether fitting-space values ``theta`` lie within ``rel`` of a bound.

        Closeness is judged in the space that is fitted: for a range, ``rel`` is a
        fraction of the logistic's width in its own coordinate (the value, or its
        logarithm for a parameter fitted in log space). A transform without a
        two-sided range is never near a bound. Returns a boolean tensor shaped
        like ``theta``.
        """
        return torch.zeros_like(theta, dtype=torch.bool)

    def start_coordinate(self, v: Tensor, margin: float = START_MARGIN) -> Tensor:
        """The fitting-space coordinate of start values ``v`` (profile units).

        A start strictly inside the range keeps its value exactly; one on (or
        beyond) an open bound is moved to ``margin`` of the fitted width inside
        it, so that the coordinate is finite. NaN stays NaN.
        """
        return self.inverse(v)

    def round_trip_error(self, v: Tensor, dtype: torch.dtype) -> Tensor:
        """``|forward(u) - v|`` with ``u`` the coordinate of ``v`` held in ``dtype``.

        The resolution with which a fit in ``dtype`` can represent values near
        ``v``: a range too wide for the precision shows up here as an error
        comparable to ``v`` itself.
        """
        v64 = v.to(torch.float64)
        u = self.start_coordinate(v64).to(dtype)
        return (self.forward(u).to(torch.float64) - v64).abs()


def _above_zero(v: Tensor) -> Tensor:
    # A log-space start at or below 0 (an image estimate of nothing) is put just
    # above it, as a half-open bound's start is; NaN stays NaN.
    return torch.where(torch.isnan(v) | (v > 0), v, torch.full_like(v, 1e-6))


@dataclass(frozen=True)
class Identity(Transform):
    """``v = u``: unbounded real parameters (centres, magnitudes, angles)."""

    def forward(self, u: Tensor) -> Tensor:
        return u

    def inverse(self, v: Tensor) -> Tensor:
        return v

    def derivative(self, u: Tensor) -> Tensor:
        return torch.ones_like(u)


@dataclass(frozen=True)
class Exp(Transform):
    """``v = exp(u)``: strictly positive parameters with no upper bound."""

    lower: float = 0.0

    def forward(self, u: Tensor) -> Tensor:
        return torch.exp(u)

    def inverse(self, v: Tensor) -> Tensor:
        return torch.log(v)

    def derivative(self, u: Tensor) -> Tensor:
        return torch.exp(u)

    def start_coordinate(self, v: Tensor, margin: float = START_MARGIN) -> Tensor:
        return self.inverse(_above_zero(v))


@dataclass(frozen=True)
class Pow10(Transform):
    """``v = 10**u``: the seed's ``log=True`` (the optimiser sees log10 of the value)."""

    lower: float = 0.0

    def forward(self, u: Tensor) -> Tensor:
        return torch.pow(10.0, u)

    def inverse(self, v: Tensor) -> Tensor:
        return torch.log10(v)

    def start_coordinate(self, v: Tensor, margin: float = START_MARGIN) -> Tensor:
        return self.inverse(_above_zero(v))

    def derivative(self, u: Tensor) -> Tensor:
        return math.log(10.0) * torch.pow(10.0, u)


@dataclass(frozen=True)
class Logistic(Transform):
    """``v = lower + (upper - lower) * sigmoid(u)``: a value bounded on both sides.

    The bounds are open: no finite ``u`` reaches them, so a step can never leave
    the allowed range.
    """

    lower: float = 0.0
    upper: float = 1.0

    def forward(self, u: Tensor) -> Tensor:
        return self.lower + (self.upper - self.lower) * torch.sigmoid(u)

    def inverse(self, v: Tensor) -> Tensor:
        s = (v - self.lower) / (self.upper - self.lower)
        return torch.log(s) - torch.log1p(-s)

    def derivative(self, u: Tensor) -> Tensor:
        s = torch.sigmoid(u)
        return (self.upper - self.lower) * s * (1.0 - s)

    def near_bound(self, theta: Tensor, rel: float = 1e-3) -> Tensor:
        s = torch.sigmoid(theta)
        return (s < rel) | (s > 1.0 - rel)

    def start_coordinate(self, v: Tensor, margin: float = START_MARGIN) -> Tensor:
        s = (v - self.lower) / (self.upper - self.lower)
        s = torch.where(torch.isnan(s), s, s.clamp(margin, 1.0 - margin))
        return torch.log(s) - torch.log1p(-s)


@dataclass(frozen=True)
class Compose(Transform):
    """``v = outer(inner(u))``, e.g. a logistic bound applied in log space."""

    outer: Transform
    inner: Transform

    @property
    def lower(self) -> float:  # type: ignore[override]
        return float(self.outer.forward(torch.tensor(self.inner.lower, dtype=torch.float64)))

    @property
    def upper(self) -> float:  # type: ignore[override]
        return float(self.outer.forward(torch.tensor(self.inner.upper, dtype=torch.float64)))

    def forward(self, u: Tensor) -> Tensor:
        return self.outer.forward(self.inner.forward(u))

    def inverse(self, v: Tensor) -> Tensor:
        return self.inner.inverse(self.outer.inverse(v))

    def derivative(self, u: Tensor) -> Tensor:
        return self.outer.derivative(self.inner.forward(u)) * self.inner.derivative(u)

    def near_bound(self, theta: Tensor, rel: float = 1e-3) -> Tensor:
        return self.inner.near_bound(theta, rel) | self.outer.near_bound(self.inner.forward(theta), rel)

    def start_coordinate(self, v: Tensor, margin: float = START_MARGIN) -> Tensor:
        # The outer map (exp, 10**) is unbounded in its argument: a start at or
        # below its lower end (0) is -inf there, which the inner range moves inside.
        c = self.outer.inverse(v)
        c = torch.where(v <= self.outer.lower, torch.full_like(c, -math.inf), c)
        return self.inner.start_coordinate(c, margin)


@dataclass(frozen=True)
class UnitMap:
    """Affine map from user units to profile units: ``v = scale * user + offset``.

    ``pix_scale`` gives ``scale = 1 / pix_scale`` (arcsec -> pixels), ``M0`` gives
    ``offset = -M0`` (a magnitude relative to its zero point), ``angle=True`` gives
    ``scale = pi / 180`` (degrees -> radians).
    """

    scale: float = 1.0
    offset: float = 0.0

    def to_profile(self, user):
        """Convert user-unit values to profile units."""
        return user * self.scale + self.offset

    def to_user(self, value):
        """Convert profile-unit values to user units."""
        return (value - self.offset) / self.scale
