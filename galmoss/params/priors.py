"""Priors on parameters (``gm.prior``): Gaussian priors on transformed values.

A prior is attached to the parameter it constrains, ``gm.p(..., prior=...)``,
and enters the fit as extra residual rows: Levenberg-Marquardt then finds the
maximum a posteriori, and the covariance it reports is the posterior's (the
prior's curvature is part of ``J^T J``). Every prior here is a normal
distribution on one *coordinate* of the parameter's values in user units:

=====================  ==========================================================
 prior                  coordinate that is normal (mu, sigma)
=====================  ==========================================================
 ``Normal``             ``space="auto"``: ln v for lengths and other positive
                        quantities (a log-normal prior), log10 v for ``log=True``,
                        logit((v - lo) / (hi - lo)) for a parameter with a
                        ``value_range`` (a logit-normal prior), v otherwise;
                        or the space named: ``"value"``, ``"ln"``, ``"log10"``,
                        ``"logit"`` (``bounds=(lo, hi)``, else the
                        ``value_range``), ``"ellipticity"`` (e = (1 - q) / (1 + q)
                        of an axis ratio, centred at 0: round shapes preferred)
 ``Ratio``              log(v / w**power) of this parameter v and another w
                        (``base`` e or 10): bulge to disk size
 ``FluxFraction``       logit(F / (F + F_other)) of two magnitudes, which is
                        -0.4 ln(10) (m - m_other): B/T of a bulge and a disk
=====================  ==========================================================

``mu`` and ``sigma`` are one number or one per galaxy (arrays of the
catalogue's length). A prior with ``sigma <= 0``, on a fixed parameter, or
centred outside the parameter's range is an error before any fit.

The preset :data:`SOURCEXTRACTOR` holds the priors SourceXtractor++ used in the
Euclid Morphology Challenge; :func:`with_priors` puts them on a model's
parameters by slot name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

Tensor = torch.Tensor

__all__ = ["FluxFraction", "Normal", "Prior", "Ratio", "SPACES"]

#: The coordinates a :class:`Normal` prior may be put on.
SPACES = ("auto", "value", "ln", "log10", "logit", "ellipticity")

_LN10 = math.log(10.0)


def _per_galaxy(values, what: str, *, positive: bool = False) -> np.ndarray:
    if isinstance(values, (bool, np.bool_, str, bytes)):
        raise TypeError(f"gm.prior: {what} must be a number or one number per galaxy, got {values!r}")
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise TypeError(f"gm.prior: {what} must be a number or one number per galaxy, got {values!r}") from None
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError(f"gm.prior: {what} must be finite numbers, got {values!r}")
    if positive and np.any(arr <= 0):
        bad = np.flatnonzero(arr <= 0)
        raise ValueError(
            f"gm.prior: {what} must be > 0 (galaxy index {bad[:5].tolist()} has {arr[bad[0]]:g}); a prior's width "
            "is a standard deviation"
        )
    return arr


class Prior:
    """A normal prior on a coordinate of one parameter's values (and perhaps another's).

    Subclasses give :meth:`coordinate`, a differentiable function of the
    parameters' values in user units, and :attr:`others`, the further
    parameters it reads.
    """

    mu: np.ndarray
    sigma: np.ndarray

    @property
    def others(self) -> tuple:
        """Parameters other than the one the prior is attached to that the coordinate reads."""
        return ()

    def describe(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def coordinate(self, value: Tensor, others: tuple[Tensor, ...], parameter) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def check(self, parameter, label: str, n_galaxies: int | None) -> None:
        """Raise (before any fit) if this prior cannot be used on ``parameter`` (named ``label``)."""
        for what, arr in (("mu", self.mu), ("sigma", self.sigma)):
            if arr.size not in (1,) and n_galaxies is not None and arr.size != n_galaxies:
                raise ValueError(
                    f"{label}: the prior's {what} holds {arr.size} values but the dataset has {n_galaxies} "
                    "galaxies; give one value, or one per galaxy"
                )
        if not parameter.fit:
            raise ValueError(f"{label}: a prior on a fixed parameter (fit=False) does nothing; remove it or free it")
        if parameter.is_vector:
            raise NotImplementedError(
                f"{label}: priors on vector parameters (K values per galaxy) are not implemented; put the prior "
                "on scalar parameters"
            )
        for other in self.others:
            if other.is_vector:
                raise NotImplementedError(f"{label}: a relation prior with a vector parameter is not implemented")


@dataclass(frozen=True, eq=False)
class Normal(Prior):
    """A normal prior ``N(mu, sigma)`` on a coordinate of the parameter's values.

    Parameters
    ----------
    mu, sigma
        Centre and width (sigma > 0) in the coordinate ``space``: one number, or
        one per galaxy.
    space
        ``"auto"`` (the default): ln v for a length or another positive slot
        (log-normal), log10 v for ``gm.p(log=True)``, logit((v - lo) / (hi - lo))
        for a parameter with a two-sided ``value_range``, v otherwise. Or one of
        ``"value"``, ``"ln"``, ``"log10"``, ``"logit"``, ``"ellipticity"``.
    bounds
        ``(lo, hi)`` in user units for ``space="logit"``; default the
        parameter's ``value_range``.

    Examples
    --------
    >>> import galmoss as gm
    >>> re = gm.p(3.0, prior=gm.prior.Normal(1.0, 0.4))          # ln r_e ~ N(1.0, 0.4)
    >>> n = gm.p(1.5, value_range=(0.25, 30), prior=gm.prior.Normal(-3.9, 0.6))   # logit-normal
    """

    mu: object = 0.0
    sigma: object = 1.0
    space: str = "auto"
    bounds: tuple | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mu", _per_galaxy(self.mu, "mu"))
        object.__setattr__(self, "sigma", _per_galaxy(self.sigma, "sigma", positive=True))
        if self.space not in SPACES:
            raise ValueError(f"gm.prior.Normal(space={self.space!r}): space must be one of {', '.join(SPACES)}")
        if self.bounds is not None:
            if len(self.bounds) != 2 or not float(self.bounds[0]) < float(self.bounds[1]):
                raise ValueError(f"gm.prior.Normal(bounds={self.bounds!r}): bounds must be (lo, hi) with lo < hi")
            object.__setattr__(self, "bounds", (float(self.bounds[0]), float(self.bounds[1])))

    def resolved_space(self, parameter, role) -> str:
        """The coordinate ``"auto"`` stands for on ``parameter`` in a slot of ``role``."""
        if self.space != "auto":
            return self.space
        from .parameter import Role

        if parameter.log:
            return "log10"
        if role in (Role.LENGTH, Role.POSITIVE, Role.AXIS_RATIO):
            return "ln"
        if parameter.value_range is not None and None not in parameter.value_range:
            return "logit"
        return "value"

    def _logit_bounds(self, parameter, label: str) -> tuple[float, float]:
        if self.bounds is not None:
            return self.bounds
        if parameter.value_range is None or None in parameter.value_range:
            raise ValueError(
                f"{label}: a logit prior needs bounds: give gm.prior.Normal(..., bounds=(lo, hi)) or a two-sided "
                "value_range"
            )
        return parameter.value_range

    def coordinate(self, value: Tensor, others, parameter, role=None) -> Tensor:
        space = self.resolved_space(parameter, role)
        if space == "value":
            return value
        if space == "ln":
            return torch.log(value)
        if space == "log10":
            return torch.log10(value)
        if space == "ellipticity":
            q = torch.where(value > 1, 1.0 / value, value)  # q > 1 is the same ellipse turned
            return (1.0 - q) / (1.0 + q)
        lo, hi = self._logit_bounds(parameter, "gm.prior.Normal")
        s = (value - lo) / (hi - lo)
        return torch.log(s) - torch.log1p(-s)

    def centre_value(self, parameter, role) -> np.ndarray:
        """``mu`` taken back to user units (NaN where that is not defined)."""
        space = self.resolved_space(parameter, role)
        mu = self.mu
        if space == "value":
            return mu
        if space == "ln":
            return np.exp(mu)
        if space == "log10":
            return 10.0**mu
        if space == "ellipticity":
            return (1 - mu) / (1 + mu)
        lo, hi = self._logit_bounds(parameter, "gm.prior.Normal")
        return lo + (hi - lo) / (1 + np.exp(-mu))

    def check(self, parameter, label: str, n_galaxies: int | None, role=None, transform=None, units=None) -> None:
        super().check(parameter, label, n_galaxies)
        space = self.resolved_space(parameter, role)
        if space == "logit":
            lo, hi = self._logit_bounds(parameter, label)
            if transform is not None and units is not None:
                flo, fhi = (float(units.to_user(b)) for b in (transform.lower, transform.upper))
                if flo < lo * (1 - 1e-12) - 1e-300 or fhi > hi * (1 + 1e-12):
                    raise ValueError(
                        f"{label}: the fit may reach [{flo:g}, {fhi:g}] but the logit prior is defined only inside "
                        f"({lo:g}, {hi:g}); give value_range inside the prior's bounds"
                    )
        if space == "ellipticity" and np.any(np.abs(self.mu) >= 1):
            raise ValueError(f"{label}: an ellipticity prior needs |mu| < 1, got {self.mu[:3].tolist()}")
        # a logit prior's centre is inside its bounds by construction, an ellipticity's is checked above
        if transform is not None and units is not None and space not in ("logit", "ellipticity"):
            centre = units.to_profile(self.centre_value(parameter, role))
            outside = ~((centre > transform.lower) & (centre < transform.upper))
            if np.any(outside):
                i = int(np.flatnonzero(outside)[0])
                raise ValueError(
                    f"{label}: the prior is centred at {float(units.to_user(centre[i])):g} (user units, galaxy "
                    f"{i if self.mu.size > 1 else 'all'}), outside the range the fit allows, "
                    f"[{float(units.to_user(transform.lower)):g}, {float(units.to_user(transform.upper)):g}]; "
                    "centre it inside"
                )

    def describe(self) -> str:
        mu = f"{self.mu[0]:g}" if self.mu.size == 1 else f"<{self.mu.size} values>"
        sigma = f"{self.sigma[0]:g}" if self.sigma.size == 1 else f"<{self.sigma.size} values>"
        return f"Normal(mu={mu}, sigma={sigma}, space={self.space!r})"


@dataclass(frozen=True, eq=False)
class Ratio(Prior):
    """A normal prior on ``log(v / w**power)``, v this parameter and w ``other``.

    Put it on the bulge's size with the disk's size as ``other`` to say how
    large bulges are against their disks; both in their user units.

    Parameters
    ----------
    other
        The ``gm.p`` of the denominator (of the same kind as this one).
    mu, sigma
        Centre and width of the log-ratio, in ``base`` (e or 10).
    power
        The denominator's power (1: a plain ratio).
    base
        ``math.e`` (natural log) or ``10``.
    """

    other: object = None
    mu: object = 0.0
    sigma: object = 1.0
    power: float = 1.0
    base: float = math.e

    def __post_init__(self) -> None:
        from .parameter import Parameter

        if not isinstance(self.other, Parameter):
            raise TypeError(f"gm.prior.Ratio(other={self.other!r}): other must be the gm.p of the denominator")
        if self.base not in (math.e, 10, 10.0):
            raise ValueError(f"gm.prior.Ratio(base={self.base!r}): base must be math.e or 10")
        object.__setattr__(self, "mu", _per_galaxy(self.mu, "mu"))
        object.__setattr__(self, "sigma", _per_galaxy(self.sigma, "sigma", positive=True))
        object.__setattr__(self, "power", float(self.power))

    @property
    def others(self) -> tuple:
        return (self.other,)

    def coordinate(self, value: Tensor, others, parameter, role=None) -> Tensor:
        ln = torch.log(value) - self.power * torch.log(others[0])
        return ln if self.base == math.e else ln / _LN10

    def check(self, parameter, label: str, n_galaxies: int | None, role=None, transform=None, units=None) -> None:
        super().check(parameter, label, n_galaxies)
        if not self.other.fit and not parameter.fit:  # pragma: no cover - the fixed check above catches it
            raise ValueError(f"{label}: both parameters of the ratio prior are fixed")

    def describe(self) -> str:
        unit = "ln" if self.base == math.e else "log10"
        return f"Ratio({unit}(v / other^{self.power:g}) ~ N({self.mu[0]:g}, {self.sigma[0]:g}))"


@dataclass(frozen=True, eq=False)
class FluxFraction(Prior):
    """A normal prior on logit(F / (F + F_other)) of two magnitudes.

    On a bulge's magnitude with the disk's as ``other`` it is a prior on the
    logit of B/T, which is ``-0.4 ln(10) (m_bulge - m_disk)``: linear in the two
    magnitudes. Both must share one zero point.
    """

    other: object = None
    mu: object = 0.0
    sigma: object = 1.0

    def __post_init__(self) -> None:
        from .parameter import Parameter

        if not isinstance(self.other, Parameter):
            raise TypeError(f"gm.prior.FluxFraction(other={self.other!r}): other must be the gm.p of the other magnitude")
        object.__setattr__(self, "mu", _per_galaxy(self.mu, "mu"))
        object.__setattr__(self, "sigma", _per_galaxy(self.sigma, "sigma", positive=True))

    @property
    def others(self) -> tuple:
        return (self.other,)

    def coordinate(self, value: Tensor, others, parameter, role=None) -> Tensor:
        return -0.4 * _LN10 * (value - others[0])

    def check(self, parameter, label: str, n_galaxies: int | None, role=None, transform=None, units=None) -> None:
        super().check(parameter, label, n_galaxies)
        if parameter.M0 != self.other.M0:
            raise ValueError(
                f"{label}: a flux-fraction prior needs both magnitudes on one zero point (M0 {parameter.M0} and "
                f"{self.other.M0})"
            )

    def describe(self) -> str:
        return f"FluxFraction(logit ~ N({self.mu[0]:g}, {self.sigma[0]:g}))"


# --------------------------------------------------------------------- presets
#: Priors of the SourceXtractor++ runs of the Euclid Morphology Challenge (Bretonniere et al. 2023),
#: on sizes in pixels: a single Sersic ``ln r_e ~ N(1.0, 0.4)``, the index logit-normal over
#: [0.25, 30] ``N(-3.9, 0.6)``, the ellipticity ``N(0, 0.3)``; for a bulge and a disk the disk's
#: ``ln r_e ~ N(0.7, 0.5)``, ``log10(r_e,bulge / r_e,disk^2) ~ N(-1, 0.5)`` and ``logit(B/T) ~ N(-2.2, 1.7)``.
SOURCEXTRACTOR = {
    "size": (1.0, 0.4),
    "index": (-3.9, 0.6, (0.25, 30.0)),
    "ellipticity": (0.0, 0.3),
    "disk_size": (0.7, 0.5),
    "bulge_to_disk_size": (-1.0, 0.5),
    "bulge_to_total": (-2.2, 1.7),
}

#: half-light radius per unit of a size slot (an exponential's scale length h: r_e = 1.678 h)
_HALF_LIGHT = {"eff_r": 1.0, "scale_l": 1.678347}

#: The presets :func:`apply_preset` knows, by the one word that switches them on.
PRESETS = {"sourcextractor": SOURCEXTRACTOR}


def _size_slot(profile) -> str | None:
    for slot in ("eff_r", "scale_l"):
        if slot in profile.parameters():
            return slot
    return None


def _is_disk(profile) -> bool:
    prms = profile.parameters()
    if "scale_l" in prms:
        return True
    n = prms.get("ser_n")
    return n is not None and not n.fit and n.has_start and bool(np.all(n.initial == 1.0))


def apply_preset(profiles, name: str, skip=()) -> dict:
    """Copies of ``profiles`` whose parameters carry the priors of preset ``name``.

    The user's profiles and ``gm.p`` objects are not changed: every parameter
    that gets a prior is copied once (a parameter shared by two slots stays
    shared). A model of one elliptical component with a size gets the
    single-component priors; one of exactly a disk (an exponential disk, or a
    Sersic with n fixed at 1) and one other Sersic gets the bulge + disk priors
    (none on the bulge's index: the single-component index prior describes
    whole galaxies, not bulges);
    other models, and components named in ``skip`` (fitted neighbours), get
    the size, index and ellipticity priors on each component. Free parameters
    only; a parameter that already has a prior keeps it.

    Sizes are in pixels in the preset; a size given in arcsec (``pix_scale``)
    has its prior's centre moved accordingly.
    """
    import copy

    if name not in PRESETS:
        raise ValueError(f"priors={name!r}: unknown preset; choose one of {', '.join(sorted(PRESETS))} or None")
    preset = PRESETS[name]
    out = dict(profiles)
    targets = {k: p for k, p in profiles.items() if k not in skip and _size_slot(p) is not None}
    copies: dict[int, object] = {}

    def with_prior(prm, make):
        if prm is None or not prm.fit or getattr(prm, "prior", None) is not None or prm.is_vector:
            return prm
        if id(prm) not in copies:
            new = copy.copy(prm)
            new.prior = make(prm)
            copies[id(prm)] = new
        return copies[id(prm)]

    def ln_pixels(mu, sigma, slot):
        # the preset's sizes are half-light radii in pixels: a scale length h is r_e / 1.678
        shift = -math.log(_HALF_LIGHT[slot])
        return lambda prm: Normal(mu + shift + (math.log(prm.pix_scale) if prm.pix_scale else 0.0), sigma, space="ln")

    disks = [k for k, p in targets.items() if _is_disk(p)]
    bulges = [k for k, p in targets.items() if k not in disks and "ser_n" in p.parameters()]
    bulge_disk = len(targets) == 2 and len(disks) == 1 and len(bulges) == 1
    edited: dict[str, object] = {}
    for key, profile in targets.items():
        new = copy.copy(profile)
        prms = profile.parameters()
        size = _size_slot(profile)
        if bulge_disk and key == disks[0]:
            setattr(new, size, with_prior(prms[size], ln_pixels(*preset["disk_size"], size)))
        elif not bulge_disk:
            setattr(new, size, with_prior(prms[size], ln_pixels(*preset["size"], size)))
        # the index prior describes whole galaxies (centred at n = 0.84); SourceXtractor++'s bulge + disk
        # model held its bulge at n = 4 and published no prior for a bulge's index: a free one gets none
        if "ser_n" in prms and not bulge_disk:
            mu, sigma, bounds = preset["index"]
            setattr(new, "ser_n", with_prior(prms["ser_n"], lambda prm: Normal(mu, sigma, space="logit", bounds=bounds)))
        if "axis_r" in prms:
            setattr(new, "axis_r", with_prior(prms["axis_r"], lambda prm: Normal(*preset["ellipticity"], space="ellipticity")))
        edited[key] = new
    if bulge_disk:
        bulge, disk = edited[bulges[0]], edited[disks[0]]
        disk_size = getattr(disk, _size_slot(disk))
        b_size = _size_slot(bulge)
        mu, sigma = preset["bulge_to_disk_size"]

        def size_ratio(prm):
            # log10(r_b / r_d^2) of half-light radii in pixels; in the slots' own units (a scale length,
            # arcsec) the centre moves by log10 of the factors
            b_factor = _HALF_LIGHT[b_size] / (prm.pix_scale or 1.0)
            d_factor = _HALF_LIGHT[_size_slot(disk)] / (disk_size.pix_scale or 1.0)
            shift = -math.log10(b_factor) + 2 * math.log10(d_factor)
            return Ratio(disk_size, mu + shift, sigma, power=2.0, base=10)

        setattr(bulge, b_size, with_prior(getattr(bulge, b_size), size_ratio))
        b_mag, d_mag = getattr(bulge, "mag", None), getattr(disk, "mag", None)
        if b_mag is not None and d_mag is not None and b_mag.fit and d_mag.fit:
            setattr(bulge, "mag", with_prior(b_mag, lambda prm: FluxFraction(d_mag, *preset["bulge_to_total"])))
    # a parameter shared with a component outside the edited ones must be the same object there too
    for key in out:
        profile = edited.get(key, out[key])
        shared = {slot: copies[id(prm)] for slot, prm in profile.parameters().items() if id(prm) in copies}
        if shared and key not in edited:
            profile = copy.copy(profile)
        for slot, prm in shared.items():
            setattr(profile, slot, prm)
        out[key] = profile
    return out
