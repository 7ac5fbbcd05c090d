"""Parameters whose starts come from each galaxy's image (slots left out, ``gm.p`` without a value).

They are parameters like any other (``Model`` lays them out, fits and reports
them); only their start values differ: :meth:`AutoStart.start_from` turns one
galaxy's image estimates (:mod:`galmoss.fitting.measure`) into a start. Which
slot gets which kind is the start policy's choice (:mod:`galmoss.fitting.starts`).
"""

from __future__ import annotations

import math

import numpy as np

from .parameter import Parameter

__all__ = ["AutoStart", "ImageStart", "NeighbourStart"]


class AutoStart(Parameter):
    """A free parameter with per-galaxy starts from the image: a slot left out, or a ``gm.p`` without a value.

    ``kind`` names the image estimate it starts from ("cen_x", "cen_y", "pa",
    "axis_r", "eff_r", "flux", "sky", or "default" for the slot's default value
    ``constant``), ``factor`` scales a length and ``share`` is the fraction of
    the flux for a magnitude. ``like`` is the user's ``gm.p`` it stands for, whose
    units (``M0``, ``pix_scale``), ``value_range``, ``log`` and step length it keeps.
    """

    def __init__(
        self,
        kind: str,
        factor: float = 1.0,
        share: float = 1.0,
        angle: bool = False,
        *,
        like: Parameter | None = None,
        constant: float | None = None,
        power: float = 1.0,
    ) -> None:
        if like is None:
            super().__init__(None, angle=angle)
        else:
            super().__init__(
                None, value_range=like.value_range, step_length=like.step_length, M0=like.M0,
                pix_scale=like.pix_scale, angle=like.angle or angle, log=like.log, name=like.name,
                prior=getattr(like, "prior", None),
            )
        self.kind = kind
        self.factor = factor
        self.share = share
        self.constant = constant
        self.like = like
        self.power = power  # axis ratio of a component: the galaxy's q ** power (a bulge starts rounder)

    def start_from(self, estimate: dict) -> float:
        """The start value in profile units (pixels, radians, m - M0) given one galaxy's image estimates."""
        if self.kind == "default":
            return float(self.constant)
        if self.kind == "flux":
            return -2.5 * math.log10(max(estimate["flux"] * self.share, 1e-30))
        if self.kind == "pa":
            return math.radians(estimate["pa"])
        if self.power != 1.0:
            return estimate[self.kind] ** self.power * self.factor
        return estimate[self.kind] * self.factor


class NeighbourStart(AutoStart):
    """A free parameter of a fitted neighbour's component, started from the neighbour's own segment.

    ``neighbours="fit"`` (:mod:`galmoss.fitting.neighbours`): the start of
    component ``component``'s ``kind`` ("cen_x", "cen_y", "pa", "axis_r",
    "eff_r", "flux", "ser_n") is the image estimate ``"<component>.<kind>"``
    (photutils' catalogue row of that neighbour). Restarts keep it.
    """

    def __init__(self, component: str, kind: str, *, like: Parameter | None = None) -> None:
        super().__init__(kind, angle=kind == "pa", like=like)
        self.component = component

    def start_from(self, estimate: dict) -> float:
        value = float(estimate[f"{self.component}.{self.kind}"])
        if self.kind == "flux":
            return -2.5 * math.log10(max(value, 1e-30))
        if self.kind == "pa":
            return math.radians(value)
        return value


class ImageStart(AutoStart):
    """A vector slot left out, started from the image by its profile (``LightProfile.start_from_image``).

    Holds K values per galaxy (``expected_size``); ``start_from`` gives them in
    profile units for one galaxy's image estimates (e.g. a free-form profile's
    ``log_sb``: a Sersic of the image's r_e and concentration index at its radii).
    """

    def __init__(self, profile, slot: str, size: int) -> None:
        super().__init__("image")
        self.profile = profile
        self.slot = slot
        self._size = int(size)

    @property
    def is_vector(self) -> bool:  # type: ignore[override]
        return True

    @property
    def size(self) -> int:  # type: ignore[override]
        return self._size

    def start_from(self, estimate: dict) -> np.ndarray:  # type: ignore[override]
        values = np.asarray(self.profile.start_from_image(self.slot, estimate), dtype=np.float64)
        if values.shape != (self._size,):
            raise ValueError(
                f"{type(self.profile).__name__}.start_from_image({self.slot!r}) gave shape {values.shape}; "
                f"the slot holds {self._size} values"
            )
        return values
