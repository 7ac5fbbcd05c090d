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
uses ``derivative`` (delta method), and start values enter through ``inverse``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

Tensor = torch.Tensor


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


@dataclass(frozen=True)
class Pow10(Transform):
    """``v = 10**u``: the seed's ``log=True`` (the optimiser sees log10 of the value)."""

    lower: float = 0.0

    def forward(self, u: Tensor) -> Tensor:
        return torch.pow(10.0, u)

    def inverse(self, v: Tensor) -> Tensor:
        return torch.log10(v)

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
