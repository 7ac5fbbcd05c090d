"""Restarts of fits that went astray, and of two-component fits that may sit in a wrong minimum.

Every threshold is a field of :class:`RestartPolicy` (a frozen value carried by
:class:`~galmoss.fitting.fit_settings.FitSettings`); the numbers behind the
defaults are in docs/validation.md ("Bulge + disk: the right minimum").
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

from ..model import Model
from ..params import Role
from .assess import near_bound
from .solve import optimise
from .measure import batch_estimates
from .starts import assign_roles, restart_values
from .status import Status

log = logging.getLogger("galmoss")

__all__ = ["RestartPolicy", "gone_astray", "keep_better", "restart_components", "restart_strays"]

Tensor = torch.Tensor


@dataclass(frozen=True)
class RestartPolicy:
    """When a fit is refitted, and from what.

    Parameters
    ----------
    max_size_diagonals
        A length beyond this many cutout diagonals has run away (a stray).
    min_axis_ratio
        An axis ratio below this (either way round: q or 1/q) is a needle (a stray).
    pair_chi2_sigmas
        A two-component fit whose chi2 exceeds dof + k sqrt(2 dof) is suspicious.
    min_length
        A component whose size ends below this many pixels collapsed.
    min_flux_share
        A component with less than this share of the pair's flux collapsed.
    round_axis_ratio, flat_axis_ratio
        A component's axis ratio above the first (stuck at q = 1) or below the
        second is suspicious.
    ser_n_range
        A Sersic index outside it is suspicious.
    swap_slots
        The slots that describe a component's shape and brightness, swapped
        between the two components (they traded places).
    size_slots
        The lengths (``Role.LENGTH``) that are a component's size, compared
        between the two (a truncation or core radius is not).
    race_iterations
        A restart still running after this many iterations goes on only where its
        loss is already below the fit it is to replace (a try above it then has
        rarely ended below it; what that costs at the faint end is in
        docs/validation.md); None: every try runs to the end. Levenberg-Marquardt only.
    """

    max_size_diagonals: float = 4.0
    min_axis_ratio: float = 0.01
    pair_chi2_sigmas: float = 3.0
    min_length: float = 0.5
    min_flux_share: float = 0.02
    round_axis_ratio: float = 0.999
    flat_axis_ratio: float = 0.05
    ser_n_range: tuple[float, float] = (0.3, 7.0)
    swap_slots: tuple[str, ...] = ("eff_r", "axis_r", "pa", "ser_n", "mag", "scale_l", "fwhm")
    size_slots: tuple[str, ...] = ("eff_r", "scale_l", "fwhm")
    race_iterations: int | None = 15

    def __post_init__(self) -> None:
        k = self.race_iterations
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ValueError(f"RestartPolicy(race_iterations={k!r}): give a whole number of iterations >= 1, "
                             "or None to run every restart to the end")


DEFAULT_POLICY = RestartPolicy()


def gone_astray(model: Model, theta: Tensor, converged: Tensor, shape, policy: RestartPolicy = DEFAULT_POLICY
                ) -> np.ndarray:
    """Galaxies whose fit (``theta`` in ``model``'s fitting space) went astray: not converged, at a bound, or a
    size run away or a needle, as a bool array (B,)."""
    stray = ~converged.cpu().numpy()
    stray |= np.array([bool(x) for x in near_bound(model, theta)])
    diagonal = math.hypot(*shape)
    for prm in model.free:
        role = model.specs[prm].role
        if prm.is_vector or role not in (Role.LENGTH, Role.AXIS_RATIO):
            continue
        value = model.transforms[prm].forward(theta[:, model.slices[prm]][:, 0].double()).cpu().numpy()
        if role is Role.LENGTH:
            stray |= ~(value < policy.max_size_diagonals * diagonal)
        elif role is Role.AXIS_RATIO:  # a needle: q < 0.01 either way round
            stray |= ~((value > policy.min_axis_ratio) & (value < 1.0 / policy.min_axis_ratio))
    return stray


def restart_strays(model, objective, batch, start, estimates, result, settings):
    """Fit strays again from image-based starts; keep whichever fit has the lower loss.

    Returns the result and the indices of the galaxies refitted (strays).
    """
    stray = np.flatnonzero(gone_astray(model, result.theta, result.converged, batch.image.shape[1:],
                                       settings.restart_policy))
    if stray.size == 0:
        return result, stray
    if estimates is None:
        estimates = batch_estimates(batch)
    sub_start = {prm: v[stray] for prm, v in start.items()}
    second = restart_values(model, sub_start, [estimates[i] for i in stray])
    theta0 = model.theta_from_values(second, settings.torch_dtype, settings.torch_device)
    rows = torch.as_tensor(stray, device=settings.torch_device)
    again = _race(model, objective, theta0, rows, settings, result.loss[rows])
    taken = keep_better(result, rows, again, torch.arange(rows.numel(), device=rows.device))
    log.info("restarted %d galaxies from image-based starts; %d improved", stray.size, taken)
    return result, stray


def _component_pair(model: Model):
    """The two luminous extended components of the target (compact one first), or None.

    Only models with exactly two such components (a bulge + disk, two Sersics)
    are judged: their wrong minima are known (docs/validation.md).
    """
    neighbours = set(model.neighbour_components)
    extended = [name for name, p in model.profiles.items() if name not in neighbours
                and any(p.spec(s).role is Role.LENGTH for s in p.parameter_specs)
                and any(p.spec(s).role is Role.MAGNITUDE for s in p.parameter_specs)]
    if len(extended) != 2:
        return None

    def given_n(p):
        prm = getattr(p, "ser_n", None) if "ser_n" in p.parameter_specs else None
        if prm is None or not getattr(prm, "has_start", False):
            return None
        return float(np.median(np.ravel(prm.initial_values())))

    roles = assign_roles([(n, type(model.profiles[n]).__name__, given_n(model.profiles[n])) for n in extended])
    order = {"bulge": 0, "point": 0, "bar": 1, "disk": 2, "halo": 3}
    return tuple(sorted(extended, key=lambda n: order.get(roles.get(n), 2)))


def _traded_places(pair, values: dict, policy: RestartPolicy = DEFAULT_POLICY) -> np.ndarray | None:
    """Which fits ended with the compact component larger than the extended one (they traded places), as a
    bool array; None when the two share no size slot (a Sersic's r_e and an exponential's scale length):
    then it is not known."""
    a, b = pair
    length = next((s for s in policy.size_slots if f"{a}_{s}" in values and f"{b}_{s}" in values), None)
    if length is None:
        return None
    with np.errstate(invalid="ignore"):
        return values[f"{a}_{length}"] > values[f"{b}_{length}"]


def _suspicious_pairs(model: Model, pair, values: dict, loss: np.ndarray, dof: np.ndarray, converged: np.ndarray,
                      policy: RestartPolicy = DEFAULT_POLICY):
    """Two-component fits that may sit in a wrong minimum, as a bool array (B,).

    Suspicious: not converged; chi2 above dof + 3 sqrt(2 dof); the compact
    component ended larger than the extended one (they traded places); one
    component collapsed (r_e below 0.5 px, or under 2 % of the flux); an axis
    ratio at 1 or below 0.05; a Sersic index beyond 0.3-7.
    """
    a, b = pair
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        flux = {c: 10.0 ** (-0.4 * values[f"{c}_mag"]) for c in pair if f"{c}_mag" in values}
        total = sum(flux.values()) if flux else None
        out = ~converged | ~np.isfinite(loss)
        out |= np.isfinite(loss) & (dof > 0) & (loss > dof + policy.pair_chi2_sigmas * np.sqrt(2.0 * np.maximum(dof, 1)))
        traded = _traded_places(pair, values, policy)
        if traded is not None:
            out |= traded
        for c in pair:
            for s in policy.size_slots:
                if f"{c}_{s}" in values:
                    out |= values[f"{c}_{s}"] < policy.min_length
            if total is not None and c in flux:
                out |= flux[c] / total < policy.min_flux_share
            if f"{c}_axis_r" in values:
                q = values[f"{c}_axis_r"]
                out |= (q > policy.round_axis_ratio) | (q < policy.flat_axis_ratio)
            if f"{c}_ser_n" in values:
                n = values[f"{c}_ser_n"]
                out |= (n < policy.ser_n_range[0]) | (n > policy.ser_n_range[1])
    return out


def restart_components(model, objective, batch, start, estimates, result, settings, refitted=()):
    """Two-component fits that may have ended in a wrong minimum: try the alternatives, keep the lowest chi2.

    For the suspicious fits (:func:`_suspicious_pairs`), up to four restarts are
    fitted together as one batch: the two components' shape parameters swapped
    (only where they traded places, :func:`_traded_places`, when their sizes
    compare: elsewhere the swap never found the lower minimum,
    docs/benchmarks.md); both restarted apart from the image (the rules of
    :func:`galmoss.fitting.starts.component_rules`); and each component in
    turn reset from those rules while the other keeps its fitted values (one
    component collapsed or stuck). Parameters of neither component (the sky,
    fitted neighbours) keep their fitted values. The fit with the lowest loss
    is kept. The galaxies in ``refitted`` (indices) were just refitted from
    image-based starts (:func:`restart_strays`): the restart of both
    components apart would start them from the same values again, so they skip it.
    """
    pair = _component_pair(model)
    if pair is None or not len(batch):
        return result
    with torch.no_grad():
        values = model.values(result.theta, objective.fixed)
        reported = {k: v.double().cpu().numpy() for k, v in model.report(values).items()}
    loss = result.loss.double().cpu().numpy()
    n_used = objective.weight.flatten(1).gt(0).sum(1).cpu().numpy()
    dof = n_used - model.n_free
    rows = np.flatnonzero(_suspicious_pairs(model, pair, reported, loss, dof, result.converged.cpu().numpy(),
                                            settings.restart_policy))
    if rows.size == 0:
        return result
    if estimates is None:
        estimates = batch_estimates(batch)
    # one value (B,) per galaxy for a scalar, a row (B, K) for a vector parameter
    fitted = {prm: (values[prm].reshape(-1) if not prm.is_vector else values[prm].reshape(values[prm].shape[0], -1))
              .double().cpu().numpy()[rows] for prm in model.free}
    rules = restart_values(model, {prm: v[rows] for prm, v in start.items()}, [estimates[i] for i in rows])
    a, b = (model.profiles[c].parameters() for c in pair)
    candidates = []  # (values at `rows`, which of `rows` try them)
    everyone = np.arange(rows.size)
    swapped = dict(fitted)
    for slot in settings.restart_policy.swap_slots:
        pa_, pb_ = a.get(slot), b.get(slot)
        if pa_ is None or pb_ is None or pa_ is pb_ or pa_ not in fitted or pb_ not in fitted:
            continue
        swapped[pa_], swapped[pb_] = fitted[pb_], fitted[pa_]
    # the swap where they traded places; every suspicious fit tries it where that is not known
    traded = _traded_places(pair, reported, settings.restart_policy)
    traded = everyone if traded is None else np.flatnonzero(traded[rows])
    if traded.size:
        candidates.append(({prm: v[traded] for prm, v in swapped.items()}, traded))
    # both components restarted apart; everything else (sky, fitted neighbours) keeps its fit
    both = set(a.values()) | set(b.values())
    apart = np.flatnonzero(~np.isin(rows, np.asarray(refitted, dtype=int)))
    if apart.size:
        candidates.append(({prm: (rules[prm] if prm in both else v)[apart] for prm, v in fitted.items()}, apart))
    for comp in (a, b):  # one component reset from the rules, the other kept
        own = set(comp.values())
        candidates.append(({prm: (rules[prm] if prm in own else v) for prm, v in fitted.items()}, everyone))
    theta0 = torch.cat([model.theta_from_values(c, settings.torch_dtype, settings.torch_device) for c, _ in candidates])
    which = np.concatenate([who for _, who in candidates])  # the index into `rows` of each try
    galaxies = torch.as_tensor(rows[which], device=settings.torch_device)
    again = _race(model, objective, theta0, galaxies, settings, result.loss[galaxies])
    loss = torch.where(torch.isfinite(again.loss), again.loss, torch.full_like(again.loss, float("inf")))
    # per galaxy the try of lowest loss: sort by loss, then the first try of each galaxy (a stable sort by galaxy)
    by_loss = torch.argsort(loss, stable=True)
    which_t = torch.as_tensor(which, device=loss.device)
    by_galaxy = by_loss[torch.argsort(which_t[by_loss], stable=True)]
    first = torch.ones_like(by_galaxy, dtype=torch.bool)
    first[1:] = which_t[by_galaxy][1:] != which_t[by_galaxy][:-1]
    pick = by_galaxy[first]  # one per galaxy, in the order of `rows` (every galaxy has the resets)
    taken = keep_better(result, torch.as_tensor(rows, device=settings.torch_device), again, pick)
    log.info("two-component restarts: %d suspicious fits, %d improved", rows.size, taken)
    return result


def _race(model, objective, theta0: Tensor, rows: Tensor, settings, incumbent: Tensor):
    """:func:`optimise` of restart tries of galaxies ``rows``, each to replace a fit of loss ``incumbent``.

    After ``restart_policy.race_iterations`` iterations a try still running goes on
    (from where it stands, with the iterations left) only if its loss is already
    below ``incumbent``: a try above it is kept as it stands, and loses.
    """
    first = settings.restart_policy.race_iterations
    limit = settings.lm.max_iterations
    if settings.method != "lm" or first is None or first >= limit:
        return optimise(model, objective, theta0, rows, settings)
    short = dataclasses.replace(settings, lm=dataclasses.replace(settings.lm, max_iterations=first))
    out = optimise(model, objective, theta0, rows, short)
    going = torch.nonzero((out.status == int(Status.MAX_ITERATIONS)) & (out.loss < incumbent.to(out.loss.dtype)))
    going = going.squeeze(1)
    if going.numel():
        rest = dataclasses.replace(settings, lm=dataclasses.replace(settings.lm, max_iterations=limit - first))
        more = optimise(model, objective, out.theta[going], rows[going], rest)
        _take(out, going, more, torch.arange(going.numel(), device=going.device))
    return out


def keep_better(result, rows: Tensor, again, pick: Tensor) -> int:
    """Where refit ``again[pick]`` has a lower (or the only finite) loss than ``result[rows]``, take it; how many."""
    old, new = result.loss[rows], again.loss[pick]
    better = (new < old) | (~torch.isfinite(old) & torch.isfinite(new))
    take, chosen = rows[better], pick[better]
    if take.numel():
        _take(result, take, again, chosen)
    return int(take.numel())


def _take(result, rows: Tensor, again, pick: Tensor) -> None:
    """``result[rows]`` becomes refit ``again[pick]`` (in place), its iterations added to those before."""
    result.theta[rows] = again.theta[pick]
    result.loss[rows] = again.loss[pick]
    result.status[rows] = again.status[pick]
    result.n_iter[rows] = result.n_iter[rows] + again.n_iter[pick]
    if result.normal_matrix is not None and again.normal_matrix is not None:
        result.normal_matrix[rows] = again.normal_matrix[pick]


