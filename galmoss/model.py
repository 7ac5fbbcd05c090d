"""A model: named profiles and the vector of their free parameters.

The optimisers work on a tensor ``theta`` of shape (B, P): one row per galaxy,
one column per distinct free parameter object, in fitting-space coordinates
(unbounded; see :mod:`galmoss.params.transforms`). :class:`Model` converts
between that vector, the profile-unit values the renderer takes, and the
user-unit values reported in results, and knows nothing of data or optimisers.

Reporting canonicalises ellipses: the fitting space lets an axis ratio exceed 1
(the same ellipse turned by 90 degrees, which keeps q = 1 an interior point),
and a reported ellipse has q <= 1, its position angle turned accordingly and
wrapped to (-90, 90] degrees, and its lengths measured along the true major axis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from .params import Parameter, ParamSpec, Role, Transform
from .params.ties import Tied, order_ties as _order_ties
from .profiles.base import EllipticalProfile, LightProfile, parameter_uses

Tensor = torch.Tensor


@dataclass(frozen=True)
class Column:
    """One reported quantity: a parameter slot of a profile (``<profile>_<slot>``)."""

    profile: str
    slot: str
    parameter: Parameter
    spec: ParamSpec

    @property
    def name(self) -> str:
        return f"{self.profile}_{self.slot}"


class Model:
    """Named light profiles and the layout of their parameters.

    Parameters
    ----------
    profiles
        ``{name: profile}``; the names prefix result columns.

    Raises
    ------
    ValueError
        A profile lacks a parameter, parameters hold different numbers of
        galaxies, or one parameter object is used in slots of different meaning.
    """

    def __init__(self, profiles: Mapping[str, LightProfile], *, auto_starts: bool = False) -> None:
        if not profiles:
            raise ValueError("a model needs at least one profile; call dataset.define_profiles(name=profile, ...)")
        self.profiles = _with_auto_starts(profiles) if auto_starts else dict(profiles)
        self.uses = parameter_uses(self.profiles)
        # gm.tie: tied parameters are computed from a base and a link (galmoss/params/ties.py)
        self.ties: list[Tied] = _order_ties(self.uses)
        self.parameters: list[Parameter] = list(self.uses)
        self.specs: dict[Parameter, ParamSpec] = {}
        for prm, slots in self.uses.items():
            specs = [self.profiles[p].spec(s) for p, s in slots]
            roles = {sp.role for sp in specs}
            if len(roles) > 1:
                where = ", ".join(f"{p}.{s}" for p, s in slots)
                raise ValueError(
                    f"one gm.p object is shared by slots of different meaning ({where}); use separate gm.p objects"
                )
            self.specs[prm] = specs[0]
        self.free: list[Parameter] = [prm for prm in self.parameters if prm.fit]
        self.fixed: list[Parameter] = [prm for prm in self.parameters if not prm.fit and not isinstance(prm, Tied)]
        self.transforms: dict[Parameter, Transform] = {prm: prm.fitting_transform(self.specs[prm]) for prm in self.free}
        lengths = {prm.param_length for prm in self.parameters} - {1}
        if len(lengths) > 1:
            detail = ", ".join(
                f"{p}.{s}: {prm.param_length}" for prm, slots in self.uses.items() for p, s in slots[:1] if prm.param_length > 1
            )
            raise ValueError(
                f"parameters hold different numbers of galaxies ({detail}); give each gm.p one value or one per galaxy"
            )
        self.n_values: int | None = lengths.pop() if lengths else None
        self.columns: list[Column] = [
            Column(pname, slot, prm, self.profiles[pname].spec(slot))
            for pname, profile in self.profiles.items()
            for slot, prm in profile.parameters().items()
        ]

    # ------------------------------------------------------------------ sizes
    @property
    def n_free(self) -> int:
        return len(self.free)

    def free_names(self) -> list[str]:
        """A readable name per free parameter (its first use)."""
        return [f"{self.uses[prm][0][0]}_{self.uses[prm][0][1]}" for prm in self.free]

    def check_galaxies(self, n_galaxies: int) -> None:
        """Raise if parameters hold a number of values other than 1 or ``n_galaxies``."""
        if self.n_values is not None and self.n_values != n_galaxies:
            raise ValueError(
                f"the parameters hold {self.n_values} values per parameter but the dataset has {n_galaxies} "
                "galaxies; give one value per galaxy, or a single value for all"
            )

    # ------------------------------------------------------------ start values
    @property
    def auto_parameters(self) -> list["AutoStart"]:
        """Parameters the user left out, started from each galaxy's image."""
        return [prm for prm in self.parameters if isinstance(prm, AutoStart)]

    def start_values(self, index: np.ndarray, estimates: list[dict] | None = None) -> dict[Parameter, np.ndarray]:
        """Start values in profile units for galaxies ``index`` (float64 arrays).

        ``estimates`` (one dict per galaxy, from
        :func:`galmoss.fitting.starts.moment_estimates`) fill the parameters that
        were left out; without them those are NaN.
        """
        out = {}
        for prm in self.parameters:
            if isinstance(prm, AutoStart):
                user = np.array([prm.start_from(e) for e in estimates]) if estimates is not None else np.full(len(index), np.nan)
                out[prm] = prm.units.to_profile(user)
                continue
            vals = prm.initial_profile_units()
            out[prm] = vals[index] if vals.size > 1 else np.full(len(index), vals[0])
        return out

    def restart_values(self, start: Mapping[Parameter, np.ndarray], estimates: list[dict]) -> dict[Parameter, np.ndarray]:
        """A second start for galaxies whose first fit went astray (profile units).

        Free parameters that the image can estimate take that estimate (centre,
        position angle, axis ratio, sizes, magnitudes splitting the flux evenly,
        sky); shape indices go back to their profile's default (Sersic n = 2);
        everything else keeps its start.
        """
        out = {prm: np.array(v, dtype=np.float64, copy=True) for prm, v in start.items()}
        free_mags = {prm for pname, p in self.profiles.items() for slot, prm in p.parameters().items()
                     if prm.fit and p.spec(slot).role is Role.MAGNITUDE}
        share = 1.0 / max(len(free_mags), 1)
        est = {key: np.array([e[key] for e in estimates]) for key in estimates[0]}
        done: set = set()
        for profile in self.profiles.values():
            for slot, prm in profile.parameters().items():
                if not prm.fit or prm in done:
                    continue
                done.add(prm)
                spec = profile.spec(slot)
                if spec.role is Role.POSITION and slot in ("cen_x", "cen_y"):
                    out[prm] = est[slot].copy()
                elif spec.role is Role.ANGLE:
                    out[prm] = np.radians(est["pa"])
                elif spec.role is Role.AXIS_RATIO:
                    out[prm] = est["axis_r"].copy()
                elif spec.role is Role.LENGTH:
                    out[prm] = est["eff_r"] * LENGTH_FACTORS.get(slot, 1.0)
                elif spec.role is Role.MAGNITUDE:
                    out[prm] = -2.5 * np.log10(np.maximum(est["flux"] * share, 1e-30))
                elif spec.default is not None:
                    out[prm] = np.full(len(estimates), float(spec.default))
                elif slot == "sky_bg":
                    out[prm] = est["sky"].copy()
        return out

    def theta_from_values(self, values: Mapping[Parameter, np.ndarray | Tensor], dtype, device) -> Tensor:
        """Fitting-space vector (B, P) of profile-unit values, nudged off open bounds."""
        cols = []
        for prm in self.free:
            t = self.transforms[prm]
            v = torch.as_tensor(np.asarray(values[prm], dtype=np.float64))
            lo, hi = t.lower, t.upper
            if math.isfinite(lo) and math.isfinite(hi):
                margin = 1e-3 * (hi - lo)
                v = v.clamp(lo + margin, hi - margin)
            elif math.isfinite(lo):
                v = torch.maximum(v, torch.tensor(lo + 1e-6 * max(1.0, abs(lo)), dtype=torch.float64))
            elif math.isfinite(hi):
                v = torch.minimum(v, torch.tensor(hi - 1e-6 * max(1.0, abs(hi)), dtype=torch.float64))
            cols.append(t.inverse(v))
        if not cols:
            return torch.zeros((len(next(iter(values.values()))) if values else 0, 0), dtype=dtype, device=device)
        return torch.stack(cols, dim=1).to(dtype=dtype, device=device)

    def fixed_tensors(self, values: Mapping[Parameter, np.ndarray], dtype, device) -> dict[Parameter, Tensor]:
        """Profile-unit tensors (B, 1, 1) of the fixed parameters."""
        return {
            prm: torch.as_tensor(np.asarray(values[prm], dtype=np.float64), dtype=dtype, device=device).reshape(-1, 1, 1)
            for prm in self.fixed
        }

    # ------------------------------------------------------- theta <-> values
    def values(self, theta: Tensor, fixed: Mapping[Parameter, Tensor]) -> dict[Parameter, Tensor]:
        """Profile-unit values (B, 1, 1) of every parameter at ``theta`` (B, P)."""
        out = dict(fixed)
        for j, prm in enumerate(self.free):
            out[prm] = self.transforms[prm].forward(theta[:, j]).reshape(-1, 1, 1)
        for tied in self.ties:
            out[tied] = tied.value_from(out[tied.base], out[tied.link])
        return out

    def value_derivatives(self, theta: Tensor) -> Tensor:
        """``dv/dtheta`` of each free parameter, shape (B, P)."""
        if not self.free:
            return theta
        return torch.stack([self.transforms[prm].derivative(theta[:, j]) for j, prm in enumerate(self.free)], dim=1)

    # --------------------------------------------------------------- reporting
    def report(self, values: Mapping[Parameter, Tensor]) -> dict[str, Tensor]:
        """User-unit value of every column, shape (B,), with ellipses canonicalised."""
        out: dict[str, Tensor] = {}
        for pname, profile in self.profiles.items():
            params = profile.parameters()
            v = {slot: values[prm].reshape(-1) for slot, prm in params.items()}
            if isinstance(profile, EllipticalProfile) and "axis_r" in v:
                v = _canonical_ellipse(profile, v)
            for slot, prm in params.items():
                out[f"{pname}_{slot}"] = prm.units.to_user(v[slot])
        return out

    def report_jacobian(self, theta: Tensor, fixed: Mapping[Parameter, Tensor]) -> tuple[dict[str, Tensor], Tensor]:
        """Reported values and their derivatives with respect to ``theta``: (B, C, P).

        Used by the delta method: the covariance of the reported values is
        ``G Cov(theta) G^T``.
        """
        names = [c.name for c in self.columns]

        def one(th, fx):
            vals = self.values(th[None], {k: t[None] for k, t in fx.items()})
            rep = self.report(vals)
            return torch.stack([rep[n][0] for n in names])

        jac = torch.func.vmap(torch.func.jacfwd(one), in_dims=(0, 0))(theta, dict(fixed))
        with torch.no_grad():
            rep = self.report(self.values(theta, fixed))
        return rep, jac


#: start of a length slot left out, in units of the galaxy's half-light radius
#: along the major axis (exponential scale length r_e / 1.678, ...)
LENGTH_FACTORS = {"eff_r": 1.0, "scale_l": 1.0 / 1.678, "fwhm": 1.0, "trunc_r": 2.5, "core_r": 0.5}


class AutoStart(Parameter):
    """A parameter left out by the user: free, with per-galaxy starts from the image.

    ``kind`` names the image estimate it starts from ("cen_x", "cen_y", "pa",
    "axis_r", "eff_r", "flux", "sky"), ``factor`` scales a length and ``share`` is
    the fraction of the flux for a magnitude.
    """

    def __init__(self, kind: str, factor: float = 1.0, share: float = 1.0, angle: bool = False) -> None:
        super().__init__(0.0, angle=angle)
        self.kind = kind
        self.factor = factor
        self.share = share

    def start_from(self, estimate: dict) -> float:
        """The start value (user units) given one galaxy's image estimates."""
        if self.kind == "flux":
            return -2.5 * math.log10(max(estimate["flux"] * self.share, 1e-30))
        return estimate[self.kind] * self.factor


def _with_auto_starts(profiles: Mapping[str, LightProfile]) -> dict[str, LightProfile]:
    """Copies of the profiles with every left-out parameter filled in (see galmoss.fitting.starts)."""
    import copy

    out: dict[str, LightProfile] = {}
    auto_mags = sum(
        1 for p in profiles.values() for slot in p.missing_parameters() if p.spec(slot).role is Role.MAGNITUDE
    )
    for name, profile in profiles.items():
        missing = profile.missing_parameters()
        if not missing:
            out[name] = profile
            continue
        filled = copy.copy(profile)
        for slot in missing:
            spec = profile.spec(slot)
            role = spec.role
            if spec.default is not None:
                prm = Parameter(spec.default, fit=spec.fit_default)
            elif role is Role.POSITION and slot in ("cen_x", "cen_y"):
                prm = AutoStart(slot)
            elif role is Role.ANGLE:
                prm = AutoStart("pa", angle=True)
            elif role is Role.AXIS_RATIO:
                prm = AutoStart("axis_r")
            elif role is Role.LENGTH:
                prm = AutoStart("eff_r", factor=LENGTH_FACTORS.get(slot, 1.0))
            elif role is Role.MAGNITUDE:
                prm = AutoStart("flux", share=1.0 / max(auto_mags, 1))
            elif slot == "sky_bg":
                prm = AutoStart("sky")
            else:
                raise ValueError(
                    f"profile {name!r} ({type(profile).__name__}) leaves out {slot!r}, which cannot be started "
                    f"from the image; give {slot}=gm.p(...)"
                )
            setattr(filled, slot, prm)
        out[name] = filled
    return out


def _canonical_ellipse(profile: EllipticalProfile, v: dict[str, Tensor]) -> dict[str, Tensor]:
    """q <= 1, PA in (-pi/2, pi/2], lengths along the major axis."""
    v = dict(v)
    q = v["axis_r"]
    turned = q > 1.0
    v["axis_r"] = torch.where(turned, 1.0 / q, q)
    for slot in v:
        if profile.spec(slot).role is Role.LENGTH:
            v[slot] = torch.where(turned, v[slot] * q, v[slot])
    if "pa" in v:
        pa = torch.where(turned, v["pa"] + math.pi / 2, v["pa"])
        # wrap to (-pi/2, pi/2]: an ellipse is symmetric under a half turn
        v["pa"] = pa - math.pi * torch.ceil((pa - math.pi / 2) / math.pi)
    return v
