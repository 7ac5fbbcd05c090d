"""The start policy: which parameters start from the image, and from what.

A parameter the user leaves out (a slot not given, or a ``gm.p`` without a
value) becomes an :class:`~galmoss.params.auto.AutoStart` whose start is read
off each galaxy's image measurements (:mod:`galmoss.fitting.measure`):

* a centre from the measured centre, an angle from the measured position
  angle, an axis ratio from the measured one (raised to the role's power);
* a length (``Role.LENGTH``) from the measured half-light radius times the
  slot's ``ParamSpec.start_scale`` and the role's size factor;
* a magnitude from the measured flux, split between the components;
* a slot with a declared default from that default; a vector slot from its
  profile (``LightProfile.start_from_image``); the sky from the measured sky.

Several luminous components get different starts (components that start equal
stay equal): each is given a role (bulge, disk, bar, point, halo: from its
name, type and given Sersic index, :func:`assign_roles`) and the role's rule
(:func:`component_rules`). :func:`restart_values` applies the same rules to
galaxies whose first fit went astray.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ..params import Parameter, Role
from ..params.auto import AutoStart, ImageStart, NeighbourStart
from ..profiles.base import LightProfile
from .measure import batch_estimates, estimate_starts, moment_estimates, sersic_n_from_concentration  # noqa: F401 - their home before measure.py

__all__ = ["ROLES", "assign_roles", "component_rules", "component_starts", "estimate_starts", "moment_estimates",
           "restart_values", "start_rules", "with_auto_starts"]


#: roles a component can take in :func:`component_starts`
ROLES = ("single", "bulge", "disk", "bar", "point", "halo")

# start of each role relative to the whole galaxy's estimates:
# (share of the flux before normalisation, r_e factor, power of the galaxy's q, Sersic n)
# Bulges are compact and rounder (q^0.5), disks extended and as flat as the galaxy
# looks, bars flat (q^1.5) and mid-sized, halos the most extended; a bulge takes
# 0.3 of a bulge + disk (a typical B/T). NaN n: the galaxy's own estimate.
_ROLE_TABLE: dict[str, tuple[float, float, float, float]] = {
    "single": (1.0, 1.0, 1.0, np.nan),
    "bulge": (0.3, 0.35, 0.5, 4.0),
    "disk": (0.7, 1.25, 1.0, 1.0),
    "bar": (0.15, 0.6, 1.5, 0.5),
    "point": (0.1, 0.0, 0.0, np.nan),
    "halo": (0.2, 2.5, 0.5, 1.0),
}


def component_rules(roles: Mapping[str, str]) -> dict[str, dict[str, float]]:
    """How each component's start derives from the whole galaxy's estimates (constants).

    Parameters
    ----------
    roles
        ``{component name: role}``, roles from :data:`ROLES` (see :func:`assign_roles`).

    Returns
    -------
    dict
        ``{name: {"share", "length", "q_power", "ser_n"}}``: the component starts
        with ``share`` of the flux (shares sum to 1), its lengths at ``length``
        times the galaxy's (0 for a point source), axis ratio ``q ** q_power``
        and Sersic index ``ser_n`` (NaN: the galaxy's estimate). A lone component
        gets the galaxy's own values. Components of one role are spread in size
        by a factor 1.6 between them, so that no two start equal.
    """
    for name, role in roles.items():
        if role not in _ROLE_TABLE:
            raise ValueError(f"component_starts: role {role!r} of component {name!r} is not one of {ROLES}")
    names = list(roles)
    if len(names) == 1:
        point = roles[names[0]] == "point"
        return {names[0]: {"share": 1.0, "length": 0.0 if point else 1.0, "q_power": 0.0 if point else 1.0,
                           "ser_n": float("nan")}}
    shares = np.array([_ROLE_TABLE[roles[n]][0] for n in names])
    shares = shares / shares.sum()
    count = {role: sum(1 for n in names if roles[n] == role) for role in set(roles.values())}
    seen: dict[str, int] = {}
    out: dict[str, dict[str, float]] = {}
    for name, share in zip(names, shares):
        role = roles[name]
        _, factor, q_power, n_start = _ROLE_TABLE[role]
        k = seen.get(role, 0)
        seen[role] = k + 1
        spread = 1.6 ** (k - (count[role] - 1) / 2)  # same-role components straddle the role's size
        out[name] = {"share": float(share), "length": factor * spread, "q_power": q_power, "ser_n": n_start}
    return out


def component_starts(estimates: Mapping[str, np.ndarray], roles: Mapping[str, str]) -> dict[str, dict[str, np.ndarray]]:
    """Different starts for the components of one model, from whole-galaxy estimates.

    Two components that start equal stay equal (their gradients are identical),
    so each role starts elsewhere (:func:`component_rules`): a bulge compact
    (0.35 r_e), rounder (q^0.5) and n = 4, a disk extended (1.25 r_e), as flat as
    the galaxy and n = 1, sharing the flux 0.3 : 0.7; bars, point sources and
    halos likewise. Components of the same role are spread in size.

    Parameters
    ----------
    estimates
        Output of :func:`estimate_starts` (arrays (B,)).
    roles
        ``{component name: role}``, roles from :data:`ROLES` (see :func:`assign_roles`).

    Returns
    -------
    dict
        ``{component name: {"cen_x", "cen_y", "pa", "axis_r", "eff_r", "flux",
        "ser_n": array (B,)}}``. The fluxes sum to the galaxy's; ``eff_r`` of a
        point source is 0 (it has none). The sky is not a component.
    """
    est = {k: np.asarray(v, dtype=float) for k, v in estimates.items() if k != "detected"}
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, rule in component_rules(roles).items():
        q = est["axis_r"]
        out[name] = {
            "cen_x": est["cen_x"].copy(),
            "cen_y": est["cen_y"].copy(),
            "pa": est["pa"].copy(),
            "axis_r": np.clip(q ** rule["q_power"], 0.1, 1.0),
            "eff_r": np.maximum(est["eff_r"] * rule["length"], 0.5) if rule["length"] > 0 else np.zeros_like(q),
            "flux": est["flux"] * rule["share"],
            "ser_n": np.full_like(q, rule["ser_n"]) if np.isfinite(rule["ser_n"]) else est["ser_n"].copy(),
        }
    return out


_NAME_HINTS = (("bulge", "bulge"), ("bar", "bar"), ("disk", "disk"), ("disc", "disk"), ("halo", "halo"),
               ("star", "point"), ("psf", "point"), ("point", "point"), ("agn", "point"), ("nucleus", "point"))


def assign_roles(components: Sequence[tuple[str, str, float | None]]) -> dict[str, str]:
    """Roles of a model's components, from their names, profile types and fixed indices.

    Parameters
    ----------
    components
        ``(name, profile type name, Sersic n given by the user or None)`` per
        component, sky excluded, in model order.

    Returns
    -------
    dict of str to str
        ``{name: role}``. A component named like its role ("bulge", "disk",
        "bar", "halo", "star"/"psf"/"point") takes it; a point source is
        "point"; an exponential disk is "disk"; a Sersic with a given n >= 2.5
        is a "bulge", <= 1.5 a "disk"; a lone component is "single"; remaining
        extended components are bulge, then disk, then halo, in model order
        (two plain Sersics become a compact bulge and an extended disk).
    """
    roles: dict[str, str] = {}
    for name, kind, n in components:
        low, kind_low = name.lower(), kind.lower()
        role = next((r for hint, r in _NAME_HINTS if hint in low), None)
        if role is None:
            if "point" in kind_low or kind_low in ("psf",):
                role = "point"
            elif "exp" in kind_low or "disk" in kind_low:
                role = "disk"
            elif n is not None and np.isfinite(n):
                role = "bulge" if n >= 2.5 else "disk" if n <= 1.5 else None
        roles[name] = role
    free = [name for name, role in roles.items() if role is None]
    if len(components) == 1 and free:
        return {free[0]: "single"}
    ladder = [r for r in ("bulge", "disk", "halo") if r not in roles.values()] + ["disk", "halo"]
    for name, role in zip(free, ladder):
        roles[name] = role
    for name in free[len(ladder):]:
        roles[name] = "disk"
    return roles


def _auto_start(
    name: str, profile: LightProfile, slot: str, share: float, like: Parameter | None, rule: dict | None = None
) -> Parameter:
    """The parameter that fills ``slot`` of ``profile`` from the image (``like``: the user's gm.p without value).

    ``rule`` (from :func:`galmoss.fitting.starts.component_rules`) sets this
    component apart from the others of the model: its share of the flux, its
    size, axis ratio and Sersic index relative to the whole galaxy's.
    """
    spec = profile.spec(slot)
    role = spec.role
    size = profile.expected_size(slot)
    if size is not None and like is None:
        if profile.start_from_image(slot, None) is NotImplemented:
            raise ValueError(
                f"profile {name!r} ({type(profile).__name__}) has no start value for its vector slot {slot!r}, "
                f"which cannot be started from the image; give {slot}=gm.p(values, dim='2d') with {size} values"
            )
        return ImageStart(profile, slot, size)
    if rule is not None and slot == "ser_n" and math.isfinite(rule["ser_n"]):
        if like is None:
            return Parameter(rule["ser_n"], fit=spec.fit_default)
        return AutoStart("default", like=like, constant=rule["ser_n"])
    if spec.default is not None:
        if like is None:
            return Parameter(spec.default, fit=spec.fit_default)
        return AutoStart("default", like=like, constant=float(spec.default))
    if role is Role.POSITION and slot in ("cen_x", "cen_y"):
        return AutoStart(slot, like=like)
    if role is Role.ANGLE:
        return AutoStart("pa", angle=True, like=like)
    if role is Role.AXIS_RATIO:
        return AutoStart("axis_r", like=like, power=rule["q_power"] if rule else 1.0)
    if role is Role.LENGTH:
        size = rule["length"] if rule and rule["length"] > 0 else 1.0
        return AutoStart("eff_r", factor=spec.start_scale * size, like=like)
    if role is Role.MAGNITUDE:
        return AutoStart("flux", share=rule["share"] if rule else share, like=like)
    if slot == "sky_bg":
        return AutoStart("sky", like=like)
    raise ValueError(
        f"profile {name!r} ({type(profile).__name__}) has no start value for {slot!r}, which cannot be started "
        f"from the image; give {slot}=gm.p(value, ...)"
    )


def start_rules(profiles: Mapping[str, LightProfile]) -> dict[str, dict]:
    """Per-component start rules when two or more luminous components leave starts out.

    Components that start equal stay equal, so each gets a role (bulge, disk,
    point, ... from its name, type and given Sersic index:
    :func:`galmoss.fitting.starts.assign_roles`) and the role's rule; the
    flux shares are renormalised over the components whose magnitude is
    started from the image. ``{}`` for a single component.
    """
    luminous = {name: p for name, p in profiles.items() if any(p.spec(s).role is Role.MAGNITUDE for s in p.parameter_specs)
                and not any(isinstance(getattr(p, s, None), NeighbourStart) for s in p.parameter_specs)}
    if len(luminous) < 2:
        return {}

    def given_n(p: LightProfile) -> float | None:
        prm = getattr(p, "ser_n", None) if "ser_n" in p.parameter_specs else None
        if prm is None or not getattr(prm, "has_start", False):
            return None
        vals = np.asarray(prm.initial_values(), dtype=float).ravel()
        return float(np.median(vals)) if vals.size else None

    roles = assign_roles([(name, type(p).__name__, given_n(p)) for name, p in luminous.items()])
    rules = component_rules(roles)
    auto_mag = [name for name, p in luminous.items() for s in p.parameter_specs if p.spec(s).role is Role.MAGNITUDE
                and (getattr(p, s, None) is None or not getattr(p, s).has_start)]
    total = sum(rules[name]["share"] for name in auto_mag) or 1.0
    for name in auto_mag:
        rules[name] = {**rules[name], "share": rules[name]["share"] / total}
    return rules


def with_auto_starts(profiles: Mapping[str, LightProfile]) -> dict[str, LightProfile]:
    """Copies of the profiles with every left-out or start-less parameter filled in (see galmoss.fitting.starts).

    A start-less ``gm.p`` shared by several slots stays one parameter: every slot
    gets the same :class:`AutoStart`. The user's profiles are not changed.
    """
    import copy

    def startless(profile: LightProfile) -> list[str]:
        return [slot for slot, prm in profile.parameters().items() if not prm.has_start and not isinstance(prm, AutoStart)]

    magnitudes = {
        (id(prm) if prm is not None else (name, slot))
        for name, p in profiles.items()
        for slot in p.missing_parameters() + startless(p)
        if p.spec(slot).role is Role.MAGNITUDE
        for prm in [getattr(p, slot, None)]
    }
    share = 1.0 / max(len(magnitudes), 1)
    rules = start_rules(profiles)
    replaced: dict[int, Parameter] = {}  # id(user's gm.p) -> its AutoStart, so sharing survives
    out: dict[str, LightProfile] = {}
    for name, profile in profiles.items():
        missing = profile.missing_parameters()
        unstarted = startless(profile)
        if not missing and not unstarted:
            out[name] = profile
            continue
        filled = copy.copy(profile)
        rule = rules.get(name)
        for slot in missing:
            setattr(filled, slot, _auto_start(name, profile, slot, share, None, rule))
        for slot in unstarted:
            like = getattr(profile, slot)
            if id(like) not in replaced:
                replaced[id(like)] = _auto_start(name, profile, slot, share, like, rule)
            setattr(filled, slot, replaced[id(like)])
        out[name] = filled
    return out


def restart_values(model, start: Mapping[Parameter, np.ndarray], estimates: list[dict]) -> dict[Parameter, np.ndarray]:
    """A second start for galaxies whose first fit went astray (profile units).

    Free parameters that the image can estimate take that estimate (centre,
    position angle, axis ratio, sizes, magnitudes splitting the flux evenly,
    sky); shape indices go back to their profile's default (Sersic n = 2);
    everything else keeps its start.
    """
    out = {prm: np.array(v, dtype=np.float64, copy=True) for prm, v in start.items()}
    # fitted neighbours keep their starts (from their own segments); the target's components restart
    neighbours = set(model.neighbour_components)
    targets = {name: p for name, p in model.profiles.items() if name not in neighbours}
    free_mags = {(pname, prm) for pname, p in targets.items() for slot, prm in p.parameters().items()
                 if prm.fit and p.spec(slot).role is Role.MAGNITUDE}
    share = 1.0 / max(len(free_mags), 1)
    # several components restart apart (galmoss.fitting.starts.component_rules), never equal
    rules = start_rules(targets)
    rule_total = sum(rules[pname]["share"] for pname, _ in free_mags if pname in rules) or 1.0
    est = {key: np.array([e[key] for e in estimates]) for key in estimates[0]}
    done: set = set(prm for name in neighbours for prm in model.profiles[name].parameters().values())
    for pname, profile in targets.items():
        rule = rules.get(pname)
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
                out[prm] = est["axis_r"] ** (rule["q_power"] if rule else 1.0)
            elif spec.role is Role.LENGTH:
                size = rule["length"] if rule and rule["length"] > 0 else 1.0
                out[prm] = est["eff_r"] * spec.start_scale * size
            elif spec.role is Role.MAGNITUDE:
                part = rule["share"] / rule_total if rule else share
                out[prm] = -2.5 * np.log10(np.maximum(est["flux"] * part, 1e-30))
            elif isinstance(prm, ImageStart):
                out[prm] = np.array([prm.start_from(e) for e in estimates], dtype=np.float64)
            elif rule is not None and slot == "ser_n" and math.isfinite(rule["ser_n"]):
                out[prm] = np.full(len(estimates), rule["ser_n"])
            elif spec.default is not None:
                out[prm] = np.full(len(estimates), float(spec.default))
            elif slot == "sky_bg":
                out[prm] = est["sky"].copy()
    return out
