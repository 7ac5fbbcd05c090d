"""Feedmes to galmoss profiles, and fitted values back to GALFIT's parameters.

Each GALFIT component becomes one galmoss profile named ``<type>_<k>`` (k its
number in the feedme): ``sersic_1``, ``sky_2``. The mapping of parameter lines:

=========  ==========  =========================================================
GALFIT     galmoss     note
=========  ==========  =========================================================
1) x y     cen_x/cen_y pixels; shifted to the H) cutout's frame for the fit and
                       back to the full image's frame in every output
3)         mag         ``gm.p(mag, M0=J)``; king/ferrer/edgedisk: ``mu0``
                       (mag/arcsec^2, :mod:`galmoss.galfit.profiles`); nuker:
                       ``mu_b`` (at R_b)
4)         eff_r       sersic/devauc R_e; expdisk ``scale_l`` (R_s);
                       gaussian/moffat ``fwhm``; king ``core_r``; ferrer ``trunc_r``;
                       nuker ``break_r`` (R_b); edgedisk ``scale_h`` (h_s)
5)         ser_n       sersic n; moffat ``con`` (powerlaw); king ``trunc_r``;
                       ferrer ``trunc_a`` (alpha); nuker ``alpha``;
                       edgedisk ``scale_l`` (R_s)
6)                     king ``pow_n`` (alpha, default 2 fixed); ferrer ``trunc_b``
                       (beta, default 0 fixed); nuker ``beta``
7)                     nuker ``gamma``
9)         axis_r      default 1, fixed (edgedisk has none)
10)        pa          degrees, up = 0, left = 90 (galmoss's own convention)
C0)        box         default 0, fixed
F<m>)      fourier_a,  :func:`galmoss.lp.with_fourier`: one vector of amplitudes
           fourier_phi and one of phases (degrees) per component, in the
                       order of m; GALFIT's phase is galmoss's (see below)
B<m>)      bending_a   :func:`galmoss.lp.with_bending`: one vector of amplitudes
                       (pixels) per component, in the order of m
Ti)/To) k  break_in/   :func:`galmoss.lp.with_truncation` (inner / outer): T4)
T4), T5)   soft_in,... the break radius, T5) the softening length; the
                       truncation's T lines are in component k itself
sky 1/2/3  sky_bg,     galmoss's sky gradients are about the cutout centre
           grad_x/y
=========  ==========  =========================================================

Values stay in pixels whatever K) says (as GALFIT); K) enters only the
surface brightness of king and ferrer.

Fourier modes, GALFIT's and galmoss's phases. Source: Peng, Ho, Impey & Rix
(2010, AJ 139, 2097), the section on azimuthal Fourier modes, and the GALFIT
user's manual (line ``F1) amplitude phase`` "Azim. Fourier mode 1, amplitude, &
phase angle"; header keys ``k_F1``, ``k_F1PA``). GALFIT perturbs the radius as

    r'(x, y) = r(x, y) (1 + sum_m a_m cos(m (theta_G + phi_m))),
    theta_G = arctan(y' / (x' q)),

x', y' the pixel offsets in the frame turned to the component, x' along the
major axis. The papers give the formula and say x' is along the major axis;
that the turn is a proper rotation by the PA (x' towards the PA, measured from
up through left, and y' a quarter turn counter-clockwise from x', so theta_G
runs counter-clockwise from the major axis as the PA does) is this module's
reading, not a quoted line: were GALFIT's theta_G clockwise, the phases would
change sign, and were x' towards PA + 180, odd modes would move by 180 degrees.
Both would be one line here (``_phase_from_galfit``). galmoss
(:mod:`galmoss.profiles.fourier`) writes ``cos(m (theta - phi_m))`` with
``theta = atan2(x_min / q, x_maj)``, and its minor-axis coordinate ``x_min`` is
-y': galmoss's theta is -theta_G, so ``cos(m (theta_G + phi)) = cos(m (theta -
phi))`` and the phase of a feedme is galmoss's phase unchanged, in degrees, for
every m. Example: ``10) 0`` (major axis up), ``F1) 0.2 90``: the radius is
largest (the light fainter) at theta_G = -90 degrees, the right-hand side, so
the galaxy is brighter on its left (tests/test_galfit_fourier.py checks this and
galmoss's image against a numpy formula written in GALFIT's frame).
A free amplitude that starts at exactly 0 starts at 0.01, as GALFIT does (the
phase has no derivative at zero amplitude).
"""

from __future__ import annotations

from collections.abc import Sequence
import numpy as np

from .. import profiles as lp
from ..io.results import GALFIT_KEYS
from ..params import Parameter
from ..params.ties import tie
from .constraints import Constraint
from .feedme import (Component, Feedme, FeedmeError, FeedmeUnsupportedError, bending_modes, fourier_modes,
                     truncation_kind)
from .slots import SLOTS
from .profiles import EdgeDiskSB, FerrerSB, KingSB, NukerSB

#: Values of parameters a feedme may leave out (all fixed).
DEFAULTS: dict[str, dict[str, float]] = {
    "king": {"6": 2.0}, "ferrer": {"5": 2.0, "6": 0.0},
}
_GEOMETRY_DEFAULTS = {"9": 1.0, "10": 0.0, "C0": 0.0}
#: Components without an axis ratio or boxiness (only their PA defaults to 0).
_NO_ELLIPSE = ("edgedisk",)
CLASSES = {
    "sersic": lp.Sersic, "devauc": lp.DeVaucouleurs, "expdisk": lp.ExpDisk, "gaussian": lp.Gaussian,
    "moffat": lp.Moffat, "king": KingSB, "ferrer": FerrerSB, "nuker": NukerSB, "edgedisk": EdgeDiskSB, "psf": lp.PointSource, "sky": lp.Sky,
}
#: Classes whose amplitude is a surface brightness (they take the K) pixel area).
SURFACE_BRIGHTNESS_CLASSES = (KingSB, FerrerSB, NukerSB, EdgeDiskSB)
#: GALFIT's header key of each galmoss slot (one table, kept with the image-block writer).
HEADER_KEYS = GALFIT_KEYS


def fourier_labels(comp: Component) -> list[str]:
    """GALFIT's keys of a component's Fourier modes: ``F<m>`` (amplitude), ``F<m>PA`` (phase), by m."""
    return [lab for m in fourier_modes(comp) for lab in (f"F{m}", f"F{m}PA")]


def is_fourier(label: str) -> bool:
    return label.startswith("F")


def is_bending(label: str) -> bool:
    return label.startswith("B")


def bending_labels(comp: Component) -> list[str]:
    """GALFIT's keys of a component's bending modes, ``B<m>``, by m."""
    return [f"B{m}" for m in bending_modes(comp)]


#: GALFIT's truncation lines and the galmoss slot of each (by kind of truncation).
TRUNCATION_LABELS = ("T4", "T5")


def truncation_slot(comp: Component, label: str) -> str | None:
    """The galmoss slot of truncation line ``label`` (T4, T5) of ``comp`` (None: not truncated / not one)."""
    kind = truncation_kind(comp)
    if kind is None or label not in TRUNCATION_LABELS:
        return None
    return lp.truncation.SLOTS[kind][TRUNCATION_LABELS.index(label)]


def truncation_labels(comp: Component) -> list[str]:
    """GALFIT's keys of a truncated component's break radius and softening length (T4, T5)."""
    return list(TRUNCATION_LABELS) if truncation_kind(comp) is not None else []


def header_key(kind: str, label: str) -> str:
    """GALFIT's header key (without the ``k_``) of parameter ``label`` of a ``kind`` component."""
    return label if is_fourier(label) or is_bending(label) or label in TRUNCATION_LABELS else HEADER_KEYS[SLOTS[kind][label]]


def component_labels(comp: Component) -> list[str]:
    """Every parameter label of a component in GALFIT's order; Fourier modes, bending modes, truncation last."""
    return ordered_labels(comp.kind) + fourier_labels(comp) + bending_labels(comp) + truncation_labels(comp)


def row_values(rec, comp: Component, origin: tuple[int, int], errors: bool = False) -> dict[str, float]:
    """``label -> value`` (or error) of one component from a results row (GALFIT units, full frame).

    Scalars come from ``<name>_<slot>`` columns, Fourier modes from the vector
    columns ``<name>_fourier_a`` / ``<name>_fourier_phi`` (one element per mode).
    """
    name = component_name(comp.kind, comp.index)
    names = rec.colnames
    tail = "_err" if errors else ""
    out: dict[str, float] = {}
    for label, slot in SLOTS[comp.kind].items():
        col = f"{name}_{slot}{tail}"
        if col in names:
            v = float(rec[col])
            if not errors and label in ("1x", "1y"):
                v += origin[0 if label == "1x" else 1] - 1
            out[label] = v
    for label in truncation_labels(comp):
        col = f"{name}_{truncation_slot(comp, label)}{tail}"
        if col in names:
            out[label] = float(rec[col])
    col = f"{name}_bending_a{tail}"
    if bending_modes(comp) and col in names:
        vec = np.asarray(rec[col], dtype=np.float64).reshape(-1)
        out.update({f"B{m}": float(v) for m, v in zip(bending_modes(comp), vec)})
    modes = fourier_modes(comp)
    for slot, suffix in (("fourier_a", ""), ("fourier_phi", "PA")):
        col = f"{name}_{slot}{tail}"
        if modes and col in names:
            vec = np.asarray(rec[col], dtype=np.float64).reshape(-1)
            for m, v in zip(modes, vec):
                out[f"F{m}{suffix}"] = phase_to_galfit(float(v)) if suffix and not errors else float(v)
    return out


def ordered_labels(kind: str) -> list[str]:
    """A component's parameter labels in GALFIT's order (x, y, 3, 4, ..., 9, 10, C0)."""
    def rank(label: str) -> float:
        return {"1x": 1.0, "1y": 1.5, "C0": 99.0}.get(label, float(label) if label.isdigit() else 50.0)

    return sorted(SLOTS[kind], key=rank)


def component_name(kind: str, index: int) -> str:
    return f"{kind}_{index}"


def starts(feedme: Feedme) -> dict[tuple[int, str], tuple[float, bool, bool]]:
    """``(component, label) -> (value, fit, given)`` for every parameter of every component."""
    out = {}
    for comp in feedme.components:
        for label in SLOTS[comp.kind]:
            key = label[0] if label in ("1x", "1y") else label
            prm = comp.params.get(key)
            if prm is not None:
                i = 1 if label == "1y" else 0
                out[(comp.index, label)] = (prm.values[i], prm.fit[i], True)
                continue
            default = DEFAULTS.get(comp.kind, {}).get(label)
            if default is None and comp.kind not in ("psf", "sky"):
                if comp.kind not in _NO_ELLIPSE or label == "10":
                    default = _GEOMETRY_DEFAULTS.get(label)
            if default is not None:
                out[(comp.index, label)] = (default, False, False)
        for label in truncation_labels(comp) + bending_labels(comp):
            prm = comp.params[label]
            out[(comp.index, label)] = (prm.values[0], prm.fit[0], True)
        for m in fourier_modes(comp):
            prm = comp.params[f"F{m}"]
            out[(comp.index, f"F{m}")] = (prm.values[0], prm.fit[0], True)
            out[(comp.index, f"F{m}PA")] = (prm.values[1], prm.fit[1], True)
    return out


def _clip(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip(values, lo, hi)


def build_profiles(
    feedmes: Sequence[Feedme],
    constraints: Sequence[Sequence[Constraint]] | None = None,
    origins: Sequence[tuple[int, int]] | None = None,
    values: dict[tuple[int, str], np.ndarray] | None = None,
    zeropoint: float | None = None,
) -> dict[str, object]:
    """The galmoss profiles of feedmes that share one model structure.

    Parameters
    ----------
    feedmes
        Feedmes with the same components, fit toggles, zero point and plate
        scale (one galaxy each; parameters hold one value per feedme).
    constraints
        Each feedme's constraints (the same structure for all).
    origins
        ``(xmin, ymin)`` of each galaxy's fitting region (1-based; (1, 1) when
        there is none): centres are moved to the cutout's frame.
    values
        Replace the start values (``(component, label) -> per-galaxy values`` in
        the full frame), all fixed and without constraints: how fitted results
        are turned back into profiles to draw image blocks.
    zeropoint
        The magnitudes' zero point (default J)); GALFIT's is J) + 2.5 log10(EXPTIME)
        of the image (:func:`galmoss.galfit.images.exposure_time`).

    Returns
    -------
    dict
        ``{"<type>_<k>": profile}`` in component order; skipped components
        (``Z) 1``) included (the caller leaves them out of the output image).
    """
    first = feedmes[0]
    n = len(feedmes)
    origins = origins or [(1, 1)] * n
    table = [starts(f) for f in feedmes]
    zeropoint = first.zeropoint if zeropoint is None else zeropoint
    area = first.plate_scale[0] * first.plate_scale[1]
    params: dict[tuple[int, str], Parameter] = {}
    for key, (_, fit, _) in table[0].items():
        comp_index, label = key
        if is_fourier(label) or is_bending(label):
            continue  # vectors, one per component: below
        kind = first.components[comp_index - 1].kind
        if values is not None and key in values:
            vals = np.asarray(values[key], dtype=np.float64)
            fit = False
        elif values is not None:  # a default the outputs leave out (C0 = 0)
            vals = np.array([t[key][0] for t in table], dtype=np.float64)
            fit = False
        else:
            vals = np.array([t[key][0] for t in table], dtype=np.float64)
        if label == "1x":
            vals = vals - np.array([o[0] - 1 for o in origins], dtype=np.float64)
        elif label == "1y":
            vals = vals - np.array([o[1] - 1 for o in origins], dtype=np.float64)
        slot = SLOTS[kind].get(label) or truncation_slot(first.components[comp_index - 1], label)
        params[key] = _parameter(vals, fit, slot, zeropoint, CLASSES[kind].parameter_specs.get(slot))
    fourier_ranges: dict[tuple[int, str], tuple[float, float]] = {}
    if values is None and constraints is not None and constraints[0]:
        fourier_ranges = _fourier_ranges(first, table, constraints[0])
        _apply_constraints(params, feedmes, table, [[c for c in cons if not is_fourier(c.label)] for cons in constraints])
    if values is None:
        _apply_priors(params, first)
    out: dict[str, object] = {}
    for comp in first.components:
        kwargs = {SLOTS[comp.kind][label]: prm for (k, label), prm in params.items()
                  if k == comp.index and label in SLOTS[comp.kind]}
        cls = CLASSES[comp.kind]
        if cls in SURFACE_BRIGHTNESS_CLASSES:
            kwargs["pixel_area"] = area
        profile = cls(**kwargs)
        kind = truncation_kind(comp)
        if kind is not None:
            profile = lp.with_truncation(profile, **{kind: tuple(params[(comp.index, lab)] for lab in TRUNCATION_LABELS)})
        if bending_modes(comp):
            profile = _with_bending(profile, comp, table, values)
        if fourier_modes(comp):
            profile = _with_fourier(profile, comp, table, values, fourier_ranges)
        out[component_name(comp.kind, comp.index)] = profile
    return out


def _axis_ratio_below_one(profile) -> None:
    """A constraint "q lo to 1" becomes "lo to 1 - 1e-6": Fourier-moded and bent ellipses are fitted with q < 1."""
    q = getattr(profile, "axis_r", None)
    if type(q) is Parameter and q.value_range is not None and q.value_range[1] is not None and q.value_range[1] >= 1.0:
        lo, hi = q.value_range[0], 1.0 - 1e-6
        start = np.clip(q.initial, lo, hi)
        profile.axis_r = Parameter(start if start.size > 1 else start[0], value_range=(lo, hi), fit=q.fit)


def _vector_values(keys, table, values) -> tuple[np.ndarray, bool]:
    """(N, K) values of the component lines ``keys`` (one vector parameter) and whether it is fitted.

    From ``values`` when it holds them all (fixed: a model redrawn from a fit),
    else the feedmes' starts, with one toggle for the vector (feedme.py refuses a mix).
    """
    if values is not None and all(key in values for key in keys):
        return np.stack([np.asarray(values[key], dtype=np.float64).reshape(-1) for key in keys], axis=1), False
    vals = np.array([[t[key][0] for key in keys] for t in table], dtype=np.float64)
    return vals, bool(table[0][keys[0]][1]) and values is None


def _with_bending(profile, comp: Component, table, values) -> object:
    """``profile`` with the component's ``B<m>)`` modes: one vector of amplitudes (pixels)."""
    vals, fit = _vector_values([(comp.index, lab) for lab in bending_labels(comp)], table, values)
    amplitudes = Parameter(vals[0] if vals.shape[0] == 1 else vals, fit=fit, dim="2d")
    _axis_ratio_below_one(profile)
    try:
        return lp.with_bending(profile, bending_modes(comp), amplitudes)
    except (TypeError, ValueError) as exc:
        raise FeedmeError(f"component {comp.index} ({comp.kind}) with bending modes {bending_modes(comp)}: {exc}") from None


def _phase_from_galfit(phi: np.ndarray) -> np.ndarray:
    """galmoss's Fourier phases (degrees) from GALFIT's: the same numbers (module docstring)."""
    return phi


def phase_to_galfit(phi: float) -> float:
    """GALFIT's Fourier phase (degrees) from galmoss's: the inverse of ``_phase_from_galfit``."""
    return phi


def _fourier_ranges(feedme: Feedme, table, constraints: Sequence[Constraint]) -> dict[tuple[int, str], tuple[float, float]]:
    """``(component, "a" | "phi") -> value_range`` of a component's Fourier vector from its constraint lines.

    galmoss fits a component's amplitudes as one vector and its phases as
    another, with one range each: ranges (absolute, or relative to the start)
    are applied when they give every mode of the vector, and every galaxy, the
    same range. A phase range 360/m wide or wider allows every phase of mode m
    and is no constraint. Couplings of Fourier parameters are refused.
    """
    per_mode: dict[tuple[int, str], dict[int, tuple[float, float] | None]] = {}
    for c in constraints:
        if not is_fourier(c.label):
            continue
        if c.kind not in ("range", "relative"):
            raise FeedmeUnsupportedError(f"{c.where}: galmoss reads ranges on Fourier modes, not couplings of them")
        k = c.components[0]
        phase = c.label.endswith("PA")
        m = int(c.label[1:].removesuffix("PA"))
        start = np.array([t[(k, c.label)][0] for t in table], dtype=np.float64)
        lo, hi = (c.lo, c.hi) if c.kind == "range" else (start + c.lo, start + c.hi)
        lo, hi = np.broadcast_to(lo, start.shape), np.broadcast_to(hi, start.shape)
        if phase and float(np.min(hi - lo)) >= 360.0 / m:
            rng = None  # every phase of mode m lies in it
        elif np.ptp(lo) > 1e-9 * max(1.0, abs(float(lo[0]))) or np.ptp(hi) > 1e-9 * max(1.0, abs(float(hi[0]))):
            raise FeedmeUnsupportedError(f"{c.where}: this range relative to the start differs between the galaxies "
                                         "of the batch; galmoss gives a Fourier vector one range")
        else:
            rng = (float(lo[0]), float(hi[0]))
        per_mode.setdefault((k, "phi" if phase else "a"), {})[m] = rng
    out = {}
    for (k, what), ranges in per_mode.items():
        given = {r for r in ranges.values() if r is not None}
        if not given:
            continue
        modes = fourier_modes(feedme.components[k - 1])
        if len(given) > 1 or set(ranges) != set(modes) or None in ranges.values():
            raise FeedmeUnsupportedError(
                f"component {k}: the constraint file gives its Fourier {'phases' if what == 'phi' else 'amplitudes'} "
                f"different ranges (modes {sorted(ranges)} of {modes}); galmoss fits them as one vector with one "
                "range: give every mode the same range")
        out[(k, what)] = given.pop()
    return out


def _with_fourier(profile, comp: Component, table, values, ranges=None) -> object:
    """``profile`` with the component's ``F<m>)`` modes: one vector of amplitudes, one of phases."""
    modes = fourier_modes(comp)
    k = comp.index
    vectors = []
    for suffix in ("", "PA"):
        vals, fit = _vector_values([(k, f"F{m}{suffix}") for m in modes], table, values)
        if suffix == "" and fit:
            vals = np.where(vals == 0.0, 0.01, vals)  # GALFIT's restart of a zero amplitude
        if suffix == "PA":
            vals = _phase_from_galfit(vals)
        value_range = (ranges or {}).get((k, "phi" if suffix else "a")) if fit else None
        if value_range is not None:
            vals = inside(vals, *value_range)
        vectors.append(Parameter(vals[0] if vals.shape[0] == 1 else vals, fit=fit, dim="2d", value_range=value_range))
    _axis_ratio_below_one(profile)
    try:
        return lp.with_fourier(profile, modes, *vectors)
    except ValueError as exc:
        raise FeedmeError(f"component {k} ({comp.kind}) with Fourier modes {modes}: {exc}") from None


def widened_range(spec, vals: np.ndarray) -> tuple[float, float] | None:
    """A slot's fit range widened to take starts GALFIT accepts outside galmoss's usual one (None: not needed).

    galmoss fits some slots within narrower bounds than the profile is defined
    for (a Sersic n in [0.1, 20]); a start outside them but inside the domain (a
    GALFIT restart's n = 0.06) widens the range to half (twice) that start.
    """
    bounds = getattr(spec, "fit_bounds", None)
    if bounds is None:
        return None
    lo, hi = bounds
    d_lo, d_hi = spec.domain
    low, high = float(np.min(vals)), float(np.max(vals))
    if not (d_lo < low and high <= d_hi) or (lo <= low and high <= hi):
        return None  # outside the domain (refused when the model is built), or inside the usual range
    new_lo = lo if low >= lo else (0.5 * low if d_lo >= 0 else low - (hi - lo))
    new_hi = hi if high <= hi else (min(2.0 * high, d_hi) if high > 0 else high + (hi - lo))
    return new_lo, new_hi


def widened_slots(feedme: Feedme) -> tuple[tuple[int, str], ...]:
    """The free parameters whose start needs :func:`widened_range` (feedmes with them are batched apart)."""
    out = []
    for (k, label), (value, fit, _) in starts(feedme).items():
        if not fit or is_fourier(label):
            continue
        kind = feedme.components[k - 1].kind
        slot = SLOTS[kind].get(label)
        if slot is None:  # a bending or truncation line: the modifier's own range applies
            continue
        spec = CLASSES[kind].parameter_specs.get(slot)
        if widened_range(spec, np.array([value])) is not None:
            out.append((k, label))
    return tuple(out)


def inside(vals: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Starts clipped into (lo, hi), 1e-6 of its width from either end.

    A start exactly on a bound (GALFIT's restart files hold them) does not survive
    the round trip through a logarithmic fitting space in floating point.
    """
    margin = 1e-6 * (hi - lo)
    return np.clip(vals, lo + margin, hi - margin)


def _parameter(vals: np.ndarray, fit: bool, slot: str, zeropoint: float, spec=None) -> Parameter:
    kwargs = {}
    if slot in ("mag", "mu0", "mu_b"):
        kwargs["M0"] = zeropoint
    if slot == "pa":
        kwargs["angle"] = True
    if fit:
        kwargs["value_range"] = widened_range(spec, vals)
        if kwargs["value_range"] is not None:
            vals = inside(vals, *kwargs["value_range"])
    return Parameter(vals if vals.size > 1 else vals[0], fit=fit, **kwargs)


def _apply_priors(params, feedme: Feedme) -> None:
    """galmoss's ``# galmoss prior`` lines (feedme.py): a normal prior on each named free parameter.

    The parameters here are galmoss's own (built from the feedmes), so the prior is set on them.
    """
    from ..params.priors import Normal
    from .constraints import parameter_label

    for line in feedme.priors:
        comp = feedme.components[line.component - 1]
        where = f"{feedme.path}, line {line.line}"
        label = parameter_label(line.parameter, comp, where)
        prm = params.get((comp.index, label))
        if prm is None or not prm.fit or type(prm) is not Parameter:
            raise FeedmeError(f"{where}: '# galmoss prior' on {line.parameter} of component {comp.index}, which is "
                              "not a free parameter of its own (fixed, coupled by a constraint, or not read)")
        prm.prior = Normal(line.mu, line.sigma, space=line.space, bounds=line.bounds)


def _apply_constraints(params, feedmes, table, constraints) -> None:
    """Ranges become value_range, couplings become ties (see constraints.py)."""
    ranged: dict[tuple[int, str], str] = {}
    tied: dict[tuple[int, str], str] = {}
    bases: dict[tuple[int, str], str] = {}  # parameters another one is tied to: never replaced later
    order = {"range": 0, "relative": 1, "difference": 2, "quotient": 2, "offset": 3, "ratio": 3}
    rows = sorted(range(len(constraints[0])), key=lambda j: order[constraints[0][j].kind])
    followers = {(k, c.label): (c.components[0], c.kind) for c in constraints[0] if c.kind in ("offset", "ratio")
                 for k in c.components[1:]}
    for j in rows:
        c = constraints[0][j]
        label = c.label
        if c.kind in ("range", "relative") and (c.components[0], label) in followers:
            # a range on a parameter a hard coupling makes follow another is a range on that one
            c = _onto_base(c, followers[(c.components[0], label)], table)
        if c.kind == "range":
            key = (c.components[0], label)
            prm = params[key]
            if key in tied:
                raise FeedmeUnsupportedError(f"{c.where}: a range on a parameter that is already coupled ({tied[key]})")
            if not prm.fit:
                continue  # GALFIT: a fixed parameter ignores its range
            lo, hi = c.lo, c.hi
            if prm.value_range is not None:
                lo, hi = max(lo, prm.value_range[0]), min(hi, prm.value_range[1])
                if not lo < hi:
                    raise FeedmeError(f"{c.where}: this range does not overlap the one of {ranged[key]}")
            user = inside(prm.initial, lo, hi)
            params[key] = Parameter(user if user.size > 1 else user[0], value_range=(lo, hi), fit=True,
                                    M0=prm.M0, angle=prm.angle)
            ranged[key] = c.where
        elif c.kind == "relative":
            key = (c.components[0], label)
            prm = params[key]
            if key in tied or key in ranged:
                raise FeedmeUnsupportedError(
                    f"{c.where}: a range relative to the start on a parameter that already has a range or coupling; "
                    "give one constraint per parameter"
                )
            if not prm.fit:
                continue
            base = Parameter(prm.initial if prm.initial.size > 1 else prm.initial[0], fit=False, M0=prm.M0, angle=prm.angle)
            link = Parameter(0.0 if 0.0 > c.lo and 0.0 < c.hi else 0.5 * (c.lo + c.hi), value_range=(c.lo, c.hi))
            params[key] = tie(base, offset=link)
            tied[key] = c.where
        elif c.kind in ("difference", "quotient"):
            a, b = ((c.components[0], label), (c.components[1], label))
            if a in tied or a in ranged:
                raise FeedmeUnsupportedError(
                    f"{c.where}: component {c.components[0]}'s parameter already has a range or coupling; a range on a "
                    "difference or ratio needs it free"
                )
            start_a, start_b = params[a].initial, params[b].initial
            lo, hi = c.lo, c.hi
            width = hi - lo
            if c.kind == "difference":
                link0 = _clip(start_a - start_b, lo + 1e-3 * width, hi - 1e-3 * width)
                params[a] = tie(params[b], offset=Parameter(link0 if link0.size > 1 else link0[0], value_range=(lo, hi)))
            else:
                link0 = _clip(start_a / start_b, lo + 1e-3 * width, hi - 1e-3 * width)
                params[a] = tie(params[b], ratio=Parameter(link0 if link0.size > 1 else link0[0], value_range=(lo, hi)))
            tied[a] = c.where
            bases[b] = c.where
        else:  # hard offset / ratio: every component after the first follows the first
            base_key = (c.components[0], label)
            for k in c.components[1:]:
                key = (k, label)
                if key in tied or key in ranged or key in bases:
                    raise FeedmeUnsupportedError(
                        f"{c.where}: component {k}'s {label}) already has a range or coupling "
                        f"({tied.get(key) or ranged.get(key) or bases.get(key)}); a coupled parameter follows its "
                        "first component: put the constraint on that one"
                    )
                start = np.array([t[key][0] for t in table], dtype=np.float64)
                base_start = np.array([t[base_key][0] for t in table], dtype=np.float64)
                if c.kind == "offset":
                    link = start - base_start
                else:
                    if np.any(base_start == 0):
                        raise FeedmeError(f"{c.where}: a ratio coupling needs a non-zero start of component {c.components[0]}")
                    link = start / base_start
                if np.all(link == (0.0 if c.kind == "offset" else 1.0)):
                    # the same value: one shared gm.p is the same model, and the fitter's
                    # structured Jacobian handles it (a tie takes the general route)
                    params[key] = params[base_key]
                else:
                    params[key] = tie(params[base_key], **{c.kind: link if link.size > 1 else link[0]})
                tied[key] = c.where
            bases[base_key] = c.where


def _onto_base(c: Constraint, follows: tuple[int, str], table) -> Constraint:
    """A range on a coupled parameter p_k turned into the same range on the parameter p_b it follows.

    ``offset``: p_k = p_b + d, so ``lo <= p_k <= hi`` is ``lo - d <= p_b <= hi - d``
    and a range relative to the start is the same on p_b; ``ratio``: p_k = r p_b,
    so both ends divide by r. d and r are each galaxy's starts: a range that
    then differs between the galaxies of a batch is refused (those feedmes are
    fitted one by one).
    """
    import dataclasses

    base, kind = follows
    k = c.components[0]
    start_k = np.array([t[(k, c.label)][0] for t in table], dtype=np.float64)
    start_b = np.array([t[(base, c.label)][0] for t in table], dtype=np.float64)
    if kind == "offset":
        shift = np.zeros_like(start_k) if c.kind == "relative" else start_k - start_b
        lo, hi = c.lo - shift, c.hi - shift
    else:
        if np.any(start_b == 0) or np.any(start_k / start_b <= 0):
            raise FeedmeUnsupportedError(f"{c.where}: a range on a parameter coupled by a ratio needs positive starts")
        ratio = start_k / start_b
        lo, hi = c.lo / ratio, c.hi / ratio
    if np.ptp(lo) > 1e-9 * max(1.0, float(np.max(np.abs(lo)))) or np.ptp(hi) > 1e-9 * max(1.0, float(np.max(np.abs(hi)))):
        raise FeedmeUnsupportedError(f"{c.where}: this range on a coupled parameter is a different range on component "
                                     f"{base}'s for each galaxy of the batch")
    return dataclasses.replace(c, components=(base,), lo=float(lo[0]), hi=float(hi[0]))


def coupled_keys(constraints: Sequence[Constraint]) -> set[tuple[int, str]]:
    """``(component, label)`` of the parameters a hard coupling makes follow another (GALFIT's toggle 2)."""
    return {(k, c.label) for c in constraints if c.kind in ("offset", "ratio") for k in c.components[1:]}


def free_and_fixed(feedme: Feedme, constraints: Sequence[Constraint] = ()) -> tuple[int, int]:
    """GALFIT's NFREE and NFIX: parameters fitted and parameters held (couplings count as fixed)."""
    tab = starts(feedme)
    coupled = coupled_keys(constraints)
    given = {key: fit for key, (_, fit, was_given) in tab.items() if was_given}
    n_free = sum(1 for key, fit in given.items() if fit and key not in coupled)
    return n_free, len(given) - n_free

