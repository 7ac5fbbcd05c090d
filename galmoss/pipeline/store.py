"""The results store: one row per galaxy, and the one place a results table is built.

Holds only per-galaxy scalars (values, errors, fitting-space parameters, chi2,
flags, messages): about (2C + P + 8) x 8 bytes a galaxy, 40 MB for 200,000
single-Sersic galaxies. Per-galaxy covariance matrices never sit here; they go
into the part files with each batch (:mod:`galmoss.pipeline.parts`).

``fit()`` fills a store batch by batch; a resumed run and ``galmoss collate``
fill one from the part files (:meth:`ResultStore.add_parts`). All three then
call :meth:`ResultStore.table`, so their tables have the same columns, dtypes
and layout (a vector parameter is one array-valued column either way).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from astropy.table import Table

from ..fitting.intervals import interval, interval_kind
from ..fitting.records import BatchResult
from ..io.results import UNCERTAINTY_SUFFIXES
from ..fitting.status import Status
from ..model import Model

log = logging.getLogger("galmoss")

__all__ = ["ROW_FIELDS", "ResultColumn", "ResultStore", "RowField", "TableOptions", "add_interval", "column_units"]


@dataclass(frozen=True)
class RowField:
    """A per-galaxy scalar of a fit: a :class:`BatchResult` attribute, stored, written to parts and read back.

    ``attr`` names it on :class:`BatchResult` and :class:`ResultStore`, ``part``
    its column in the part files; ``fill`` is the value of a galaxy not fitted
    (and of parts written before the field existed).
    """

    attr: str
    part: str
    dtype: type
    fill: object


#: The per-galaxy scalars every fit gives. A new one is a field of BatchResult,
#: a row here, and (if it is shown) a column in ResultStore.table.
ROW_FIELDS: tuple[RowField, ...] = (
    RowField("loss", "loss", np.float64, np.nan),
    RowField("prior_loss", "prior_loss", np.float64, np.nan),
    RowField("dof", "dof", np.int64, 0),
    RowField("n_iter", "n_iter", np.int64, 0),
    RowField("status", "status", np.int64, int(Status.NOT_FITTED)),
    RowField("converged", "converged", np.bool_, False),
    RowField("flags", "flag", np.int64, 0),
)


@dataclass(frozen=True)
class ResultColumn:
    """One value column of the store: its name, unit, ``gm.p`` keywords, vector group and interval.

    ``group`` is the results-table column a vector parameter's elements are
    gathered into (None for a scalar). ``interval`` names the 68.3 % interval the
    table gives beside the error (``<name>_lo``, ``<name>_hi``;
    :data:`galmoss.fitting.intervals.KINDS`), None for none.
    """

    name: str
    unit: str | None = None
    meta: dict = field(default_factory=dict)
    group: str | None = None
    interval: str | None = None


@dataclass(frozen=True)
class TableOptions:
    """Which optional columns a run's results table has, and how its loss is named.

    Written into ``run.json`` (key ``"table"``) so that ``galmoss collate``
    builds the table a single run would have.
    """

    likelihood: str = "chi2"
    method: str = "lm"
    blocks: bool = False
    n_masked: bool = False
    neighbours: bool = False
    #: the model has priors: a ``chi2_prior`` column (the priors' term) beside ``chi2``
    priors: bool = False


class ResultStore:
    """Results of one run, in dataset order.

    Parameters
    ----------
    model
        The model being fitted (its columns name the values), or a list of
        :class:`ResultColumn` (a store filled from part files).
    names
        The dataset's ``galaxy_index`` values.
    n_free
        Fitting-space parameters per galaxy; only with a list of columns.
    """

    def __init__(self, model: Model | list[ResultColumn], names: list[str], n_free: int | None = None) -> None:
        if isinstance(model, Model):
            n_free = model.n_free
            model = [ResultColumn(c.name, *column_units(c), group=None if c.element is None else c.group,
                                  interval=None if c.element is not None else interval_kind(c))
                     for c in model.columns]
        self.info: list[ResultColumn] = list(model)
        self.names = list(names)
        n = len(self.names)
        self.columns = [c.name for c in self.info]
        #: vector parameter -> its element columns (one array-valued column in the table and the parts)
        self.vectors: dict[str, list[str]] = {}
        for c in self.info:
            if c.group is not None:
                self.vectors.setdefault(c.group, []).append(c.name)
        c, p = len(self.columns), int(n_free or 0)
        self.values = np.full((n, c), np.nan)
        self.errors = np.full((n, c), np.nan)
        self.theta = np.full((n, p), np.nan)
        for f in ROW_FIELDS:
            setattr(self, f.attr, np.full(n, f.fill, dtype=f.dtype))
        self.messages = [""] * n
        self.image_block = [""] * n
        self.n_masked = np.zeros(n, dtype=np.int64)
        self.n_neighbours = np.zeros(n, dtype=np.int64)
        self.done = np.zeros(n, dtype=bool)
        #: whether every stored row has errors (covariance errors come with each batch fit)
        self.with_errors = np.zeros(n, dtype=bool)

    @classmethod
    def from_description(cls, description: dict, names: list[str],
                         vectors: dict[str, list[str]] | None = None) -> "ResultStore":
        """An empty store for the run described by ``run.json``.

        ``vectors``: the vector groups when ``run.json`` predates its
        ``"vectors"`` key (read from the parts' schema metadata).
        """
        vectors = description.get("vectors", vectors) or {}
        group_of = {name: group for group, elements in vectors.items() for name in elements}
        intervals = description.get("intervals") or {}  # absent from a run.json written before intervals
        columns = [ResultColumn(c["name"], c.get("unit"), dict(c.get("meta") or {}), group_of.get(c["name"]),
                                intervals.get(c["name"]))
                   for c in description["columns"]]
        return cls(columns, names, n_free=len(description.get("free", [])))

    def description(self) -> dict:
        """The columns as ``run.json`` lists them (``"columns"``, ``"vectors"`` and ``"intervals"``)."""
        # the interval kinds apart from "columns": they shape the table, not the model (run.MODEL_KEYS)
        return {"columns": [{"name": c.name, "unit": c.unit, "meta": c.meta} for c in self.info],
                "vectors": self.vectors,
                "intervals": {c.name: c.interval for c in self.info if c.interval is not None}}

    def __len__(self) -> int:
        return len(self.names)

    def add(self, result: BatchResult) -> None:
        """Take the rows of one batch (overwriting earlier rows of the same galaxies)."""
        rows = result.positions
        self.values[rows] = np.stack([result.values[c] for c in self.columns], axis=1) if self.columns else 0.0
        if result.errors is not None:
            self.errors[rows] = np.stack([result.errors[c] for c in self.columns], axis=1) if self.columns else 0.0
        self.with_errors[rows] = result.errors is not None
        self.theta[rows] = result.theta
        for f in ROW_FIELDS:
            getattr(self, f.attr)[rows] = getattr(result, f.attr)
        for i, pos in enumerate(rows):
            self.messages[pos] = result.messages[i]
        self.done[rows] = True

    def add_flag(self, position: int, flag: int, message: str) -> None:
        """OR a flag into one galaxy's row and append a message."""
        self.flags[position] |= int(flag)
        self.messages[position] = "; ".join(filter(None, [self.messages[position], message]))

    def add_parts(self, rows: dict, counts: np.ndarray | None = None) -> np.ndarray:
        """Take the rows read from part files (:func:`~galmoss.pipeline.parts.read_parts`).

        Rows whose position and ``galaxy_index`` do not match this store's
        galaxies are ignored (with a warning); a galaxy with several rows keeps
        the last (rows come oldest run first), so the parts may be given one
        at a time, oldest first.

        Parameters
        ----------
        counts
            (N,) rows counted so far, added to in place (when the parts come
            one at a time); None: a new count.

        Returns
        -------
        numpy.ndarray
            (N,) how many rows each galaxy had.
        """
        n = len(self)
        if counts is None:
            counts = np.zeros(n, dtype=np.int64)
        if not rows or not len(rows["position"]):
            return counts
        pos = rows["position"].astype(np.int64)
        inside = (pos >= 0) & (pos < n)
        ok = inside & np.array([bool(i) and self.names[p] == name for i, p, name in
                                zip(inside, pos, rows["galaxy_index"])], dtype=bool)
        if not ok.all():
            log.warning("%d rows in the parts do not match this dataset's galaxies; they are ignored",
                        int((~ok).sum()))
        idx = np.flatnonzero(ok)
        np.add.at(counts, pos[idx], 1)
        _, last = np.unique(pos[idx][::-1], return_index=True)
        idx = idx[::-1][last]
        self.add(_result_from_rows(self, rows, idx))
        for i, p in zip(idx, pos[idx]):
            self.image_block[int(p)] = str(rows["image_block"][i])
        # parts written before these columns existed leave them at 0
        for key, target in (("n_masked", self.n_masked), ("n_neighbours_fitted", self.n_neighbours)):
            if key in rows:
                target[pos[idx]] = np.nan_to_num(np.asarray(rows[key][idx], dtype=np.float64)).astype(np.int64)
        return counts

    def value(self, column: str) -> np.ndarray:
        return self.values[:, self.columns.index(column)]

    def groups(self) -> list[tuple[ResultColumn, list[int]]]:
        """The table's value columns: (first column, indices into :attr:`columns`), a vector's elements as one."""
        out: list[tuple[ResultColumn, list[int]]] = []
        for j, col in enumerate(self.info):
            if col.group is not None and out and out[-1][0].group == col.group:
                out[-1][1].append(j)
            else:
                out.append((col, [j]))
        return out

    def table(self, *, errors: bool, likelihood: str = "chi2", method: str = "lm", blocks: bool = False,
              n_masked: bool = False, neighbours: bool = False, priors: bool = False, rows=None) -> Table:
        """The results table (docs/design.md): one row per galaxy, in dataset order.

        A vector parameter (K values per galaxy) is one column ``<profile>_<slot>``
        of shape (N, K), its errors ``<profile>_<slot>_err`` likewise. With
        errors, a column that has an interval kind gets its 68.3 % interval
        ``<name>_lo``, ``<name>_hi`` (:mod:`galmoss.fitting.intervals`).

        ``chi2`` holds the minimised objective only for the chi2 likelihood; for
        the others it is called ``deviance`` (-2 ln L up to a constant).
        ``rows``: the dataset positions to include (all when None).
        """
        take = slice(None) if rows is None else np.asarray(rows, dtype=np.int64)
        table = Table()
        table["galaxy_index"] = np.array(self.names, dtype=str)[take]
        for col, idx in self.groups():
            # a vector parameter is one array-valued column, shape (K,) per row
            name = col.group if col.group is not None else col.name
            cols = idx if col.group is not None else idx[0]
            table[name] = self.values[take][:, cols]
            table[name].meta.update(col.meta)
            if col.unit:
                table[name].unit = col.unit
            if errors:
                table[f"{name}_err"] = self.errors[take][:, cols]
                if col.interval is not None and col.group is None:
                    add_interval(table, name, col.interval)
                for suffix in UNCERTAINTY_SUFFIXES if col.unit else ():
                    if f"{name}{suffix}" in table.colnames:
                        table[f"{name}{suffix}"].unit = col.unit
        loss_name = "chi2" if likelihood == "chi2" else "deviance"
        loss, dof = self.loss[take], self.dof[take]
        table[loss_name] = loss
        table["dof"] = dof
        with np.errstate(divide="ignore", invalid="ignore"):
            reduced = np.where(dof > 0, loss / dof, np.nan)
        table["reduced_chi2" if likelihood == "chi2" else "reduced_deviance"] = reduced
        if priors:
            table[f"{loss_name}_prior"] = self.prior_loss[take]  # the priors' term, apart from the likelihood's
        table["n_iter"] = self.n_iter[take]
        table["converged"] = self.converged[take]
        table["status"] = self.status[take]
        table["flag"] = self.flags[take]
        table["message"] = _strings(self.messages, take)
        if n_masked:
            table["n_masked"] = self.n_masked[take]  # pixels the automatic mask took out
        if neighbours:
            table["n_neighbours_fitted"] = self.n_neighbours[take]  # neighbours fitted with their own component
        if blocks:
            table["image_block"] = _strings(self.image_block, take)
        table.meta["method"] = method
        table.meta["likeliho"] = likelihood
        return table


def add_interval(table: Table, name: str, kind: str) -> None:
    """Add ``<name>_lo`` and ``<name>_hi``, the 68.3 % interval of ``kind``, right after ``<name>_err``."""
    lo, hi = interval(kind, table[name], table[f"{name}_err"])
    at = table.colnames.index(f"{name}_err") + 1
    table.add_columns([lo, hi], indexes=[at, at], names=[f"{name}_lo", f"{name}_hi"])


def _strings(items: list[str], take) -> np.ndarray:
    chosen = items if isinstance(take, slice) else [items[int(i)] for i in take]
    return np.array(chosen, dtype=str) if len(chosen) else np.array([], dtype=str)


def _result_from_rows(store: ResultStore, rows: dict, idx: np.ndarray) -> BatchResult:
    """The rows ``idx`` of a :func:`~galmoss.pipeline.parts.read_parts` dict as a :class:`BatchResult`."""
    cols = store.columns
    n_free = store.theta.shape[1]

    def matrix(name, width):
        out = np.full((len(idx), width), np.nan)
        for j, i in enumerate(idx):
            vals = rows[name][i]
            if vals is not None and len(vals) == width:
                out[j] = vals
        return out

    has_errors = bool(np.all(rows["has_errors"][idx])) if "has_errors" in rows else True
    return BatchResult(
        positions=rows["position"][idx].astype(np.int64),
        names=[str(x) for x in rows["galaxy_index"][idx]],
        values={k: rows[k][idx].astype(np.float64) for k in cols},
        errors={k: rows[f"{k}_err"][idx].astype(np.float64) for k in cols} if has_errors else None,
        covariance=None,  # the store keeps none: covariances stay in the parts
        theta=matrix("theta", n_free),
        messages=[str(x) for x in rows["message"][idx]],
        # a part written before a field existed gives the field's fill value
        **{f.attr: (rows[f.part][idx].astype(f.dtype) if f.part in rows else np.full(len(idx), f.fill, f.dtype))
           for f in ROW_FIELDS},
    )


def column_units(column) -> tuple[str | None, dict]:
    """The unit (for TUNIT) and the ``gm.p`` keywords that travel with a results column."""
    from ..params import Role

    prm = column.parameter
    meta: dict = {}
    if prm.M0 is not None:
        meta["M0"] = float(prm.M0)
    if prm.pix_scale is not None:
        meta["pix_scale"] = float(prm.pix_scale)
    role = column.spec.role
    angle = bool(getattr(prm, "angle", False)) or role is Role.ANGLE
    if angle:
        meta["angle"] = True
    if role is Role.MAGNITUDE:
        unit = "mag"
    elif role is Role.ANGLE:
        unit = "deg"
    elif role is Role.POSITION or role is Role.LENGTH:
        unit = "arcsec" if prm.pix_scale is not None and role is Role.LENGTH else "pix"
    else:
        unit = None
    return unit, meta
