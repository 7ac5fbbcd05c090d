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

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from .batched import rowwise_jacobian
from .params import Parameter, ParamSpec, Role, Transform, UnitMap
from .params.auto import AutoStart, ImageStart, NeighbourStart  # noqa: F401 - their home before params.auto
from .params.priors import apply_preset
from .params.ties import Tied, order_ties as _order_ties
from .profiles.base import EllipticalProfile, LightProfile, parameter_uses

#: Fitted coordinates within this fraction of a range's fitted width from a bound
#: are "near the bound" (Flag.near_bound; see Transform.near_bound).
NEAR_BOUND = 1e-3
#: A start must survive the trip into the fitting space and back in the fit's
#: dtype to this relative accuracy, or its range is too wide for the precision.
PRECISION = 1e-4

Tensor = torch.Tensor


@dataclass(frozen=True)
class Column:
    """One reported quantity: a parameter slot of a profile (``<profile>_<slot>``).

    A vector parameter of K values gives K columns, ``element`` 0..K-1, named
    ``<profile>_<slot>_1`` .. ``_K`` inside galmoss; the results table and files
    gather them into one array-valued column named :attr:`group`.
    """

    profile: str
    slot: str
    parameter: Parameter
    spec: ParamSpec
    element: int | None = None
    size: int = 1

    @property
    def name(self) -> str:
        base = f"{self.profile}_{self.slot}"
        return base if self.element is None else f"{base}_{self.element + 1}"

    @property
    def group(self) -> str:
        """The column's name in the results table (a vector's elements share it)."""
        return f"{self.profile}_{self.slot}"


@dataclass(frozen=True)
class PriorTerm:
    """One prior of a model: the parameter it is on, the prior, the slot's role, the other parameters it reads."""

    parameter: Parameter
    prior: object
    role: object
    others: tuple
    label: str


class Model:
    """Named light profiles and the layout of their parameters.

    Parameters
    ----------
    profiles
        ``{name: profile}``; the names prefix result columns.

        Slots left out, and parameters given without a start value
        (``gm.p(M0=22.5)``), are filled by the start policy before a model is
        built (:func:`galmoss.fitting.starts.with_auto_starts`).
    dtype
        The dtype the model will be fitted in; given, every value_range is
        checked against its precision at once (:meth:`check_precision`).

    Raises
    ------
    ValueError
        A profile lacks a parameter, parameters hold different numbers of
        galaxies, one parameter object is used in slots of different meaning, a
        parameter has no start value (and was not filled by the start policy), or a
        value_range is too wide for ``dtype``.
    """

    def __init__(
        self, profiles: Mapping[str, LightProfile], *, dtype: torch.dtype | None = None, priors: str | None = None
    ) -> None:
        if not profiles:
            raise ValueError("a model needs at least one profile; call dataset.define_profiles(name=profile, ...)")
        self.profiles = dict(profiles)
        if priors is not None:
            neighbours = [name for name, p in self.profiles.items()
                          if any(isinstance(prm, NeighbourStart) for prm in p.parameters().values())]
            self.profiles = apply_preset(self.profiles, priors, skip=neighbours)
        #: the prior preset the model was built with (None: only the priors given on parameters)
        self.prior_preset = priors
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
        startless = [
            f"{slots[0][0]}.{slots[0][1]}" for prm, slots in self.uses.items()
            if not prm.has_start and not isinstance(prm, AutoStart)
        ]
        if startless:
            raise ValueError(
                f"{', '.join(startless)} has no start value (gm.p(...) without one); give a value, or fit with "
                "gm.Fitting, which starts such parameters from each galaxy's image"
            )
        # Angle slots take degrees whatever the gm.p says (the user's object is not changed).
        self.units: dict[Parameter, UnitMap] = {prm: prm.units_for(self.specs[prm].role) for prm in self.parameters}
        self.free: list[Parameter] = [prm for prm in self.parameters if prm.fit]
        self.fixed: list[Parameter] = [prm for prm in self.parameters if not prm.fit and not isinstance(prm, Tied)]
        self.transforms: dict[Parameter, Transform] = {prm: prm.fitting_transform(_prior_spec(prm, self.specs[prm]))
                                                       for prm in self.free}
        _check_vector_sizes(self.profiles, self.uses)
        # a vector parameter of K values takes K consecutive columns of theta
        self.slices: dict[Parameter, slice] = {}
        offset = 0
        for prm in self.free:
            self.slices[prm] = slice(offset, offset + prm.size)
            offset += prm.size
        self._n_free = offset
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
            Column(pname, slot, prm, self.profiles[pname].spec(slot),
                   element=k if prm.is_vector else None, size=prm.size)
            for pname, profile in self.profiles.items()
            for slot, prm in profile.parameters().items()
            for k in range(prm.size)
        ]
        self._precision_checked: set[torch.dtype] = set()
        if dtype is not None:
            self.check_precision(dtype)
        self.priors: list[PriorTerm] = self._collect_priors()

    def _collect_priors(self) -> list["PriorTerm"]:
        """The priors of the model's parameters (``gm.p(..., prior=)``), each checked before any fit."""
        by_user: dict[int, Parameter] = {}
        for prm in self.parameters:
            by_user[id(prm)] = prm
            like = getattr(prm, "like", None)
            if like is not None:
                by_user.setdefault(id(like), prm)  # a gm.p without a start stands in the model as an AutoStart
        terms = []
        for prm in self.parameters:
            prior = getattr(prm, "prior", None)
            if prior is None:
                continue
            label = "{}.{}".format(*self.uses[prm][0])
            others = []
            for other in prior.others:
                found = by_user.get(id(other))
                if found is None:
                    raise ValueError(
                        f"{label}: its prior relates it to a gm.p that no profile of the model uses; give that "
                        "gm.p to a profile, or remove the prior"
                    )
                others.append(found)
            spec = self.specs[prm]
            prior.check(prm, label, self.n_values, role=spec.role, transform=self.transforms.get(prm),
                        units=self.units[prm])
            terms.append(PriorTerm(prm, prior, spec.role, tuple(others), label))
        return terms

    # ------------------------------------------------------------------ sizes
    @property
    def n_free(self) -> int:
        """Columns of theta: free values per galaxy (a vector parameter counts K)."""
        return self._n_free

    @property
    def has_vectors(self) -> bool:
        """Whether any parameter is a vector (K values per galaxy)."""
        return any(prm.is_vector for prm in self.parameters)

    @property
    def neighbour_components(self) -> list[str]:
        """Components that fit a neighbour of the target (``neighbours="fit"``; :class:`NeighbourStart`)."""
        return [name for name, p in self.profiles.items()
                if any(isinstance(prm, NeighbourStart) for prm in p.parameters().values())]

    def free_names(self) -> list[str]:
        """A readable name per column of theta (the parameter's first use; ``_k`` for vector elements)."""
        out = []
        for prm in self.free:
            base = f"{self.uses[prm][0][0]}_{self.uses[prm][0][1]}"
            out.extend([base] if not prm.is_vector else [f"{base}_{k + 1}" for k in range(prm.size)])
        return out

    def column_groups(self) -> list[tuple[Column, list[int]]]:
        """The results-table columns: (first column, indices into :attr:`columns`) per group.

        A scalar slot is a group of one; a vector slot's K element columns form
        one group, reported as one array-valued column named ``Column.group``.
        """
        groups: list[tuple[Column, list[int]]] = []
        for j, col in enumerate(self.columns):
            if col.element is not None and col.element > 0:
                groups[-1][1].append(j)
            else:
                groups.append((col, [j]))
        return groups

    def check_galaxies(self, n_galaxies: int) -> None:
        """Raise if parameters hold a number of values other than 1 or ``n_galaxies``."""
        if self.n_values is not None and self.n_values != n_galaxies:
            raise ValueError(
                f"the parameters hold {self.n_values} values per parameter but the dataset has {n_galaxies} "
                "galaxies; give one value per galaxy, or a single value for all"
            )
        for term in self.priors:
            for what in ("mu", "sigma"):
                size = getattr(term.prior, what).size
                if size not in (1, n_galaxies):
                    raise ValueError(
                        f"{term.label}: the prior's {what} holds {size} values but the dataset has {n_galaxies} "
                        "galaxies; give one value, or one per galaxy"
                    )

    # ------------------------------------------------------------ start values
    @property
    def auto_parameters(self) -> list["AutoStart"]:
        """Parameters the user left out, started from each galaxy's image."""
        return [prm for prm in self.parameters if isinstance(prm, AutoStart)]

    def start_values(self, index: np.ndarray, estimates: list[dict] | None = None) -> dict[Parameter, np.ndarray]:
        """Start values in profile units for galaxies ``index`` (float64 arrays).

        ``estimates`` (one dict per galaxy, from
        :func:`galmoss.fitting.measure.moment_estimates`) fill the parameters that
        were left out; without them those are NaN.
        """
        out = {}
        for prm in self.parameters:
            if isinstance(prm, AutoStart):
                out[prm] = (
                    np.array([prm.start_from(e) for e in estimates], dtype=np.float64)
                    if estimates is not None else np.full((len(index),) + ((prm.size,) if prm.is_vector else ()), np.nan)
                )
                continue
            vals = self.units[prm].to_profile(prm.initial_values())
            if vals.shape[0] > 1:
                out[prm] = vals[index]
            else:
                out[prm] = np.broadcast_to(vals, (len(index),) + vals.shape[1:]).copy()
        return out

    def theta_from_values(self, values: Mapping[Parameter, np.ndarray | Tensor], dtype, device) -> Tensor:
        """Fitting-space vector (B, P) of profile-unit values.

        A start strictly inside its range keeps its value; only one on (or
        beyond) a bound is moved inside it, by a fraction of the fitted width
        (:meth:`~galmoss.params.Transform.start_coordinate`), so a log-space
        range is never clamped by its linear width.
        """
        self.check_precision(dtype)
        cols = []
        for prm in self.free:
            t = self.transforms[prm]
            v = torch.as_tensor(np.asarray(values[prm], dtype=np.float64))
            u = t.start_coordinate(v)
            cols.append(u if u.ndim == 2 else u[:, None])
        if not cols:
            return torch.zeros((len(next(iter(values.values()))) if values else 0, 0), dtype=dtype, device=device)
        return torch.cat(cols, dim=1).to(dtype=dtype, device=device)

    def fixed_tensors(self, values: Mapping[Parameter, np.ndarray], dtype, device) -> dict[Parameter, Tensor]:
        """Profile-unit tensors (B, 1, 1) of the fixed parameters ((B, K) for a vector)."""
        out = {}
        for prm in self.fixed:
            t = torch.as_tensor(np.asarray(values[prm], dtype=np.float64), dtype=dtype, device=device)
            out[prm] = t if prm.is_vector else t.reshape(-1, 1, 1)
        return out

    def check_precision(self, dtype: torch.dtype) -> None:
        """Raise if a value_range is too wide for fits in ``dtype``.

        Every free parameter's start values (those the user gave) are taken into
        the fitting space in ``dtype`` and back: if that moves one by more than
        1e-4 of its size (at least 1e-6 of the range's width), a fit cannot
        resolve values there -- it would freeze, not fit.
        """
        if dtype in self._precision_checked:
            return
        for prm in self.free:
            if isinstance(prm, AutoStart) or not prm.has_start:
                continue
            t = self.transforms[prm]
            v = torch.as_tensor(self.units[prm].to_profile(prm.initial_values()), dtype=torch.float64).reshape(-1)
            error = t.round_trip_error(v, dtype)
            width = (t.upper - t.lower) if math.isfinite(t.upper - t.lower) else 0.0
            allowed = PRECISION * torch.clamp(v.abs(), min=1e-6 * width)
            slot = "{}.{}".format(*self.uses[prm][0])
            outside = ~((v >= t.lower) & (v <= t.upper))
            if bool(outside.any()):
                i = int(torch.nonzero(outside)[0])
                raise ValueError(
                    f"{slot}: the start {float(self.units[prm].to_user(v[i])):g} (galaxy {i}) lies outside the range "
                    f"the fit allows, [{t.lower:g}, {t.upper:g}] in profile units; give a start inside it"
                )
            if bool((error > allowed).any()):
                i = int(torch.argmax(error / allowed.clamp_min(1e-300)))
                raise ValueError(
                    f"{slot}: value_range={prm.value_range} is too wide for {str(dtype).replace('torch.', '')} fits: "
                    f"the start {float(self.units[prm].to_user(v[i])):g} is resolved only to "
                    f"{float(error[i]):.3g} (profile units); give a narrower value_range"
                    + (", log=True" if not prm.log and t.lower >= 0 else "")
                    + (" or fit in float64 (dtype=torch.float64)" if dtype != torch.float64 else "")
                )
        self._precision_checked.add(dtype)

    def near_bound(self, theta: Tensor, rel: float = NEAR_BOUND) -> Tensor:
        """Boolean (B, P): which fitted coordinates lie within ``rel`` of a bound, judged in the fitting space."""
        if not self.free:
            return torch.zeros(theta.shape, dtype=torch.bool, device=theta.device)
        return torch.cat([self.transforms[prm].near_bound(theta[:, self.slices[prm]], rel) for prm in self.free], dim=1)

    # ------------------------------------------------------- theta <-> values
    def values(self, theta: Tensor, fixed: Mapping[Parameter, Tensor]) -> dict[Parameter, Tensor]:
        """Profile-unit values (B, 1, 1) of every parameter at ``theta`` (B, P); (B, K) for a vector."""
        out = dict(fixed)
        for prm in self.free:
            v = self.transforms[prm].forward(theta[:, self.slices[prm]])
            out[prm] = v if prm.is_vector else v.reshape(-1, 1, 1)
        for tied in self.ties:
            out[tied] = tied.value_from(out[tied.base], out[tied.link], getattr(self, "units", None))
        return out

    def gauge_directions(self, theta: Tensor) -> Tensor | None:
        """Null directions of the Fisher matrix that the profiles declare (``LightProfile.gauge_slots``).

        Each is the fitting-space direction (B, P) that moves every element of one
        vector parameter by the same amount in profile units (a free-form profile's
        ``log_sb``: only differences set its shape, ``mag`` its flux). Returns
        (B, P, G) unit vectors, or None when there is none.
        """
        columns = []
        for prm in self.free:
            if any(slot in self.profiles[pname].gauge_slots for pname, slot in self.uses[prm]):
                u = torch.zeros_like(theta)
                cols = self.slices[prm]
                # theta moves by dv / (dv/dtheta) for the same dv in every element
                u[:, cols] = 1.0 / self.transforms[prm].derivative(theta[:, cols])
                columns.append(u / torch.linalg.vector_norm(u, dim=1, keepdim=True))
        return torch.stack(columns, dim=-1) if columns else None

    def value_derivatives(self, theta: Tensor) -> Tensor:
        """``dv/dtheta`` of each free parameter, shape (B, P)."""
        if not self.free:
            return theta
        return torch.cat([self.transforms[prm].derivative(theta[:, self.slices[prm]]) for prm in self.free], dim=1)

    # --------------------------------------------------------------- reporting
    def report(self, values: Mapping[Parameter, Tensor]) -> dict[str, Tensor]:
        """User-unit value of every column, shape (B,), with ellipses canonicalised.

        A vector parameter gives one column per element (``<profile>_<slot>_k``).
        """
        out: dict[str, Tensor] = {}
        for pname, profile in self.profiles.items():
            params = profile.parameters()
            raw = {slot: values[prm].reshape(-1) for slot, prm in params.items() if not prm.is_vector}
            scalars = raw
            turn = None
            if isinstance(profile, EllipticalProfile) and "axis_r" in scalars:
                before = scalars.get("pa")
                scalars = _canonical_ellipse(profile, scalars)
                if before is not None:
                    turn = (scalars["pa"] - before) * (180.0 / math.pi)  # degrees the major axis was turned by
            vectors = {slot: values[prm].reshape(values[prm].shape[0], -1) for slot, prm in params.items() if prm.is_vector}
            if vectors:
                # e.g. Fourier modes: a_m >= 0, phases wrapped, and moved with the major axis when PA was
                # turned; a free-form profile's absolute surface brightness (from the values as fitted:
                # q may exceed 1 before canonicalisation)
                vectors = profile.canonical_vectors(vectors, raw, turn=turn)
            for slot, prm in params.items():
                if prm.is_vector:
                    user = self.units[prm].to_user(vectors[slot])
                    for k in range(prm.size):
                        out[f"{pname}_{slot}_{k + 1}"] = user[:, k]
                else:
                    out[f"{pname}_{slot}"] = self.units[prm].to_user(scalars[slot])
        return out

    def report_jacobian(self, theta: Tensor, fixed: Mapping[Parameter, Tensor]) -> tuple[dict[str, Tensor], Tensor]:
        """Reported values and their derivatives with respect to ``theta``: (B, C, P).

        Used by the delta method: the covariance of the reported values is
        ``G Cov(theta) G^T``.
        """
        names = [c.name for c in self.columns]

        def reported(th):
            rep = self.report(self.values(th, fixed))
            return torch.stack([rep[n].reshape(-1) for n in names], 1)

        jac = rowwise_jacobian(reported, theta)
        with torch.no_grad():
            rep = self.report(self.values(theta, fixed))
        return rep, jac


def _prior_spec(prm: Parameter, spec: ParamSpec) -> ParamSpec:
    """The slot's spec with a logit prior's bounds as the fit's range when the user gave none.

    A logit-normal prior is defined inside its bounds only: the fit must not leave them.
    """
    prior = getattr(prm, "prior", None)
    if prior is None or prm.value_range is not None or getattr(prior, "bounds", None) is None:
        return spec
    if prior.resolved_space(prm, spec.role) != "logit":
        return spec
    lo, hi = (float(b) for b in prm.units_for(spec.role).to_profile(np.asarray(prior.bounds)))
    flo, fhi = spec.fit_bounds if spec.fit_bounds is not None else spec.domain
    return dataclasses.replace(spec, fit_bounds=(max(lo, flo), min(hi, fhi)))


def _check_vector_sizes(profiles: Mapping[str, LightProfile], uses: Mapping[Parameter, list]) -> None:
    """Raise if a parameter holds a number of values per galaxy other than its slot expects."""
    for prm, slots in uses.items():
        for pname, slot in slots:
            profile = profiles[pname]
            want = profile.expected_size(slot)
            if want is None and prm.is_vector and _scalar_slot(profile, slot):
                raise ValueError(
                    f"{pname}.{slot}: the parameter holds {prm.size} values per galaxy but {type(profile).__name__}'s "
                    f"{slot} is one number per galaxy; give gm.p(values) with values of shape (N,) or a single value"
                )
            if want is not None and prm.size != want:
                kind = f"{prm.size} values per galaxy" if prm.is_vector else "one value per galaxy (a scalar gm.p)"
                raise ValueError(
                    f"{pname}.{slot}: the parameter holds {kind} but {type(profiles[pname]).__name__} expects {want}; "
                    f"give gm.p(values, dim='2d') with values of shape ({want},) or (N, {want})"
                )


def _scalar_slot(profile: LightProfile, slot: str) -> bool:
    """Whether ``slot`` takes one number per galaxy: a built-in profile's declared slots that are not vectors,
    and the geometry and amplitude of any profile the renderer draws itself."""
    if slot not in type(profile).parameter_specs:
        return False
    if type(profile).__module__.startswith("galmoss."):
        return True
    return slot in ("cen_x", "cen_y", "pa", "axis_r", "box") or slot == getattr(profile, "amplitude_parameter", None)


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
