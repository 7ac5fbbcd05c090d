"""Neighbours fitted with the target (``Dataset(auto_mask=True, neighbours="fit")``).

The user defines the target's profiles only. :func:`neighbour_model` adds
``max_neighbours`` Sersic components (``nb1``, ``nb2``, ...) and as many point
sources (``nbstar1``, ...) whose every parameter starts from the neighbour's
own segment (:class:`galmoss.params.auto.NeighbourStart`); that full model names the
result columns, so every row has the same columns (NaN where a galaxy has
fewer neighbours) and the target's columns keep their names.

Galaxies of one batch share a neighbour *signature* (how many Sersic and point
neighbours they have): the stream groups by it, as it groups by cutout shape
(:mod:`galmoss.pipeline.stream`). A batch is fitted with the sub-model of the
components its signature uses (:func:`batch_model`, cached), so a galaxy pays
only for its own neighbours: no padded components are rendered, differentiated
or carried through the normal equations. :func:`expand` puts the sub-model's
values, fitting-space parameters and covariances back into the full model's
columns. Grouping was chosen over zero-flux padding with a Jacobian mask: the
padded columns would still cost a rendering and a Jacobian column each (a
single Sersic with 3 + 3 padded neighbours has 38 free parameters instead of 8,
about 5x the work), and their singular normal-matrix rows need special cases
in LM and in the covariance; grouping costs only batches that fill more slowly
(at most (max_neighbours + 1)(max_neighbours + 2) / 2 signatures per shape).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..model import Model
from ..params.auto import NeighbourStart
from ..params import Parameter, Role
from ..profiles import PointSource, Sersic
from ..profiles.base import LightProfile

__all__ = ["SERSIC_PREFIX", "POINT_PREFIX", "batch_model", "expand", "neighbour_estimates", "neighbour_model",
           "signature", "sub_indices"]

SERSIC_PREFIX = "nb"
POINT_PREFIX = "nbstar"
#: a fitted neighbour galaxy's Sersic index starts here (neighbours in the mocks span 0.7-3)
NEIGHBOUR_SER_N = 1.5


def signature(rows: list[dict] | None) -> tuple[int, int]:
    """(number of Sersic neighbours, number of point-source neighbours) of one galaxy."""
    rows = rows or []
    points = sum(1 for r in rows if r.get("kind") == "point")
    return len(rows) - points, points


def neighbour_estimates(rows: list[dict] | None) -> dict[str, float]:
    """The start estimates ``"<component>.<kind>"`` of one galaxy's fitted neighbours, in component order."""
    out: dict[str, float] = {}
    k_s = k_p = 0
    for row in rows or []:
        if row.get("kind") == "point":
            k_p += 1
            name = f"{POINT_PREFIX}{k_p}"
            keys = ("cen_x", "cen_y", "flux")
        else:
            k_s += 1
            name = f"{SERSIC_PREFIX}{k_s}"
            keys = ("cen_x", "cen_y", "flux", "eff_r", "axis_r", "pa")
            out[f"{name}.ser_n"] = NEIGHBOUR_SER_N
        for key in keys:
            out[f"{name}.{key}"] = float(row[key])
    return out


def _zero_point(profiles: Mapping[str, LightProfile]) -> float | None:
    """The target's magnitude zero point, so the neighbours' magnitudes are on the same scale."""
    for p in profiles.values():
        for slot in p.parameter_specs:
            prm = getattr(p, slot, None)
            if p.spec(slot).role is Role.MAGNITUDE and prm is not None and prm.M0 is not None:
                return float(prm.M0)
    return None


def neighbour_profiles(profiles: Mapping[str, LightProfile], max_neighbours: int) -> dict[str, LightProfile]:
    """``max_neighbours`` Sersic and point-source components whose parameters start from the neighbours' segments."""
    taken = [f"{prefix}{k}" for prefix in (SERSIC_PREFIX, POINT_PREFIX) for k in range(1, max_neighbours + 1)]
    clash = sorted(set(taken) & set(profiles))
    if clash:
        raise ValueError(f"component name(s) {', '.join(clash)} are used by neighbours='fit' for the neighbours' "
                         "components; rename the target's components")
    m0 = _zero_point(profiles)
    out: dict[str, LightProfile] = {}

    def mag(name):
        return NeighbourStart(name, "flux", like=Parameter(None, M0=m0) if m0 is not None else None)

    for k in range(1, max_neighbours + 1):
        name = f"{SERSIC_PREFIX}{k}"
        out[name] = Sersic(cen_x=NeighbourStart(name, "cen_x"), cen_y=NeighbourStart(name, "cen_y"),
                           pa=NeighbourStart(name, "pa"), axis_r=NeighbourStart(name, "axis_r"),
                           eff_r=NeighbourStart(name, "eff_r"), mag=mag(name), ser_n=NeighbourStart(name, "ser_n"))
    for k in range(1, max_neighbours + 1):
        name = f"{POINT_PREFIX}{k}"
        out[name] = PointSource(cen_x=NeighbourStart(name, "cen_x"), cen_y=NeighbourStart(name, "cen_y"), mag=mag(name))
    return out


def neighbour_model(profiles: Mapping[str, LightProfile], max_neighbours: int, *, auto_starts: bool = False,
                    **kwargs) -> Model:
    """The full model: the target's profiles plus ``max_neighbours`` Sersic and point-source neighbours.

    ``auto_starts``: fill the parameters left out by the start policy
    (:func:`galmoss.fitting.starts.with_auto_starts`); ``kwargs`` go to
    :class:`~galmoss.model.Model` (``dtype``).
    The result has ``neighbour_layout`` = ``(sersic names, point names)``,
    which tells :func:`galmoss.fitting.batch.fit_batch` to fit each batch with
    the sub-model of its neighbour signature.
    """
    extra = neighbour_profiles(profiles, max_neighbours)
    profiles = {**dict(profiles), **extra}
    if auto_starts:
        from .starts import with_auto_starts

        profiles = with_auto_starts(profiles)
    model = Model(profiles, **kwargs)
    model.neighbour_layout = ([f"{SERSIC_PREFIX}{k}" for k in range(1, max_neighbours + 1)],
                              [f"{POINT_PREFIX}{k}" for k in range(1, max_neighbours + 1)])
    model.batch_models = {}
    return model


def batch_model(model: Model, sig: tuple[int, int]) -> Model:
    """The sub-model of ``model`` (a :func:`neighbour_model`) with the components of signature ``sig``."""
    sersic, point = model.neighbour_layout
    if sig[0] > len(sersic) or sig[1] > len(point):
        raise ValueError(f"a galaxy has {sig[0]} Sersic and {sig[1]} point-source neighbours to fit, more than the "
                         f"model's max_neighbours={len(sersic)}")
    if sig not in model.batch_models:
        unused = set(sersic[sig[0]:]) | set(point[sig[1]:])
        profiles = {name: p for name, p in model.profiles.items() if name not in unused}
        model.batch_models[sig] = Model(profiles)  # parameters shared by identity with the full model
    return model.batch_models[sig]


def sub_indices(sub: Model, full: Model) -> tuple[np.ndarray, np.ndarray]:
    """Where ``sub``'s reported columns and theta columns sit in ``full``'s: two index arrays.

    Theta columns, not parameters: a vector parameter takes K of them (``Model.slices``).
    """
    at = {c.name: j for j, c in enumerate(full.columns)}
    theta_columns = np.arange(full.n_free)
    free = [theta_columns[full.slices[prm]] for prm in sub.free]
    return (np.array([at[c.name] for c in sub.columns], dtype=np.int64),
            np.concatenate(free).astype(np.int64) if free else np.zeros(0, dtype=np.int64))


def expand(result, sub: Model, full: Model):
    """A :class:`~galmoss.fitting.batch.BatchResult` of ``sub`` in the columns of ``full`` (NaN elsewhere)."""
    n = len(result)
    cols = [c.name for c in full.columns]
    values = {c: result.values[c] if c in result.values else np.full(n, np.nan) for c in cols}
    errors = None
    if result.errors is not None:
        errors = {c: result.errors[c] if c in result.errors else np.full(n, np.nan) for c in cols}
    idx, free = sub_indices(sub, full)
    covariance = None
    if result.covariance is not None:
        covariance = np.full((n, len(cols), len(cols)), np.nan)
        covariance[:, idx[:, None], idx[None, :]] = result.covariance
    theta = np.full((n, full.n_free), np.nan)
    theta[:, free] = result.theta
    result.values, result.errors, result.covariance, result.theta = values, errors, covariance, theta
    return result
