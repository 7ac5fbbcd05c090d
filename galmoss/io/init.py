"""Results back into start values: feed one fit's results to the next.

>>> init = gm.results_to_init(single.results, "sersic")
>>> bulge = gm.lp.Sersic(cen_x=init["cen_x"], cen_y=init["cen_y"], ..., eff_r=init.scaled("eff_r", 0.5))
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from astropy.table import Table

from ..params import Parameter
from .results import is_uncertainty_column


class StartValues(Mapping):
    """``{slot: gm.p}`` of one profile's fitted values, with helpers to derive new starts.

    Indexing gives a fresh :class:`~galmoss.params.Parameter` per slot (one value
    per galaxy, in the units the first fit used: ``M0``, ``pix_scale``, degrees).
    """

    def __init__(self, values: dict[str, np.ndarray], units: dict[str, dict], fit: bool) -> None:
        self.values = values
        self.units = units
        self.fit = fit

    def __getitem__(self, slot: str) -> Parameter:
        return self.scaled(slot)

    def __iter__(self):
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def scaled(self, slot: str, factor: float = 1.0, offset: float = 0.0, **kwargs) -> Parameter:
        """A new parameter starting at ``factor * value + offset`` (e.g. half the radius).

        ``kwargs`` go to :func:`galmoss.p` (``value_range``, ``fit``, ...).
        """
        if slot not in self.values:
            raise KeyError(f"results_to_init: no column for {slot!r}; have {', '.join(self.values)}")
        opts = {**self.units.get(slot, {}), "fit": self.fit, **kwargs}
        return Parameter(self.values[slot] * factor + offset, **opts)

    def magnitude_share(self, slot: str, fraction: float, **kwargs) -> Parameter:
        """A magnitude holding ``fraction`` of the fitted flux (to split a galaxy into components)."""
        return self.scaled(slot, 1.0, -2.5 * np.log10(fraction), **kwargs)


def results_to_init(results: Table, profile: str, *, fit: bool = True, fill: str | float = "median") -> StartValues:
    """Start values for the next fit from a results table.

    Parameters
    ----------
    results
        A :attr:`galmoss.Fitting.results` table (or one read from ``results.fits``).
    profile
        The profile name whose columns ``<profile>_<slot>`` to take.
    fit
        Whether the new parameters are free.
    fill
        Galaxies whose fit failed have NaN values; they start from the median of the
        column (``"median"``) or from the number given.

    Returns
    -------
    StartValues
        ``{slot: gm.p}``; see :meth:`StartValues.scaled` and
        :meth:`StartValues.magnitude_share`.
    """
    prefix = f"{profile}_"
    values, units = {}, {}
    for name in results.colnames:
        if not name.startswith(prefix) or is_uncertainty_column(name, results.colnames):
            continue
        slot = name[len(prefix):]
        col = np.asarray(results[name], dtype=np.float64).copy()
        bad = ~np.isfinite(col)
        if bad.all():
            raise ValueError(f"results_to_init: column {name!r} has no finite value; nothing to start from")
        if fill == "median":  # per element for an array-valued column (a vector parameter)
            col[bad] = np.broadcast_to(np.nanmedian(col, axis=0), col.shape)[bad]
        else:
            col[bad] = float(fill)
        values[slot] = col
        meta = dict(getattr(results[name], "meta", {}) or {})
        units[slot] = {k: meta[k] for k in ("M0", "pix_scale", "angle") if k in meta}
    if not values:
        raise ValueError(
            f"results_to_init: no column starts with {prefix!r}; profiles in the table: "
            + ", ".join(sorted({c.split('_')[0] for c in results.colnames if '_' in c}))
        )
    return StartValues(values, units, fit)
