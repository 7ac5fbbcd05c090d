"""GalfitM's constraint files: ranges on a parameter in every band (couplings are refused)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..constraints import Constraint, constraint_lines, parameter_label
from ..feedme import FeedmeError, FeedmeUnsupportedError
from .feedme import GalfitmFeedme


def parse_galfitm_constraints(fm: GalfitmFeedme) -> list[Constraint]:
    """The constraint file of a GalfitM file: the ranges galmoss applies to every band (see :func:`band_ranges`).

    Read: ``k par lo to hi`` (absolute), ``k par lo hi`` and ``k par lo in hi``
    (about the start), ``k par factor f`` (within a factor f of the start).
    Refused naming the line: couplings (``1_2 x offset``, ``3-2 mag``, ``3/2 re``),
    ranges about the reference band's value (``ref``), and ranges on one band
    (``re_B``) or one Chebyshev coefficient (``n_1``).
    """
    if fm.constraints is None:
        return []
    path = Path(fm.constraints)
    by_index = {c.index: c for c in fm.components}
    out: list[Constraint] = []
    for number, raw, where, tokens in constraint_lines(path, "GalfitM"):
        if len(tokens) < 3 or not tokens[0].isdigit():
            raise FeedmeUnsupportedError(f"{where}: galmoss reads ranges on one component's parameter in a GalfitM "
                                         "constraint file ('k par lo to hi', 'k par lo hi', 'k par factor f'), not "
                                         "couplings of components (its multi-band fits have no ties yet)")
        k, name, rest = int(tokens[0]), tokens[1].lower(), [t.lower() for t in tokens[2:]]
        if "_" in name:
            raise FeedmeUnsupportedError(f"{where}: a range on one band or one Chebyshev coefficient ({tokens[1]}) is "
                                         "not supported; give the range for the parameter in every band")
        if k not in by_index:
            raise FeedmeError(f"{where}: the file has no component {k} (it has {len(by_index)})")
        label = parameter_label(name, by_index[k], where)
        if not (len(rest) == 3 and rest[1] in ("to", "in") or len(rest) == 2):
            raise FeedmeUnsupportedError(f"{where}: galmoss reads 'lo to hi', 'lo hi', 'lo in hi' and 'factor f' here "
                                         "(not a range about the reference band's value, 'ref')")
        try:
            if len(rest) == 3 and rest[1] == "to":
                kind, lo, hi = "range", float(rest[0]), float(rest[2])
            elif len(rest) == 3 and rest[1] == "in":
                kind, lo, hi = "relative", float(rest[0]), float(rest[2])
            elif len(rest) == 2 and rest[0] == "factor":
                kind, lo, hi = "factor", 1.0 / float(rest[1]), float(rest[1])
            else:
                kind, lo, hi = "relative", float(rest[0]), float(rest[1])
        except ValueError:
            raise FeedmeError(f"{where}: the range must be numbers") from None
        if not lo < hi:
            raise FeedmeError(f"{where}: the range needs lo < hi (a factor above 1)")
        out.append(Constraint(kind, (k,), label, lo, hi, path, number, raw))
    band_ranges(fm, out)  # refuse what galmoss cannot apply before any data is read
    return out


def band_ranges(fm: GalfitmFeedme, constraints) -> dict[tuple[int, str], tuple[float, float]]:
    """Absolute ranges (``1 n 0.5 to 8``) and ranges about one start shared by every band (``2 x -5 5``)."""
    out = {}
    for c in constraints:
        if c.kind not in ("range", "relative", "factor"):
            raise FeedmeUnsupportedError(f"{c.where}: galmoss reads ranges in a GalfitM constraint file, not "
                                         "couplings (its multi-band fits have no ties yet)")
        comp = fm.components[c.components[0] - 1]
        p = comp.bparams.get(c.label)
        if p is None:
            continue
        if c.kind in ("relative", "factor"):
            if np.ptp(p.values) > 0:
                raise FeedmeUnsupportedError(f"{c.where}: a range about the start of a parameter whose start differs "
                                             "between bands; give an absolute range (lo to hi)")
            start = float(p.values[0])
            if c.kind == "factor" and not start > 0:
                raise FeedmeUnsupportedError(f"{c.where}: a range by a factor needs a positive start")
            lo, hi = (start + c.lo, start + c.hi) if c.kind == "relative" else (start * c.lo, start * c.hi)
        else:
            lo, hi = c.lo, c.hi
        if (c.components[0], c.label) in out:
            old = out[(c.components[0], c.label)]
            lo, hi = max(lo, old[0]), min(hi, old[1])
            if not lo < hi:
                raise FeedmeError(f"{c.where}: this range does not overlap another on the same parameter")
        out[(c.components[0], c.label)] = (lo, hi)
    return out
