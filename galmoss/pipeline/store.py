"""The results store: one row per galaxy, filled batch by batch.

Holds only per-galaxy scalars (values, errors, fitting-space parameters, chi2,
flags, messages): about (2C + P + 8) x 8 bytes a galaxy, 40 MB for 200,000
single-Sersic galaxies. Per-galaxy covariance matrices never sit here; they go
into the part files with each batch (:mod:`galmoss.pipeline.parts`).
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from ..fitting.batch import BatchResult
from ..fitting.status import Status
from ..model import Model

__all__ = ["ResultStore", "column_units"]


class ResultStore:
    """Results of one run, in dataset order.

    Parameters
    ----------
    model
        The model being fitted (its columns name the values).
    names
        The dataset's ``galaxy_index`` values.
    """

    def __init__(self, model: Model, names: list[str]) -> None:
        self.model = model
        self.names = list(names)
        n = len(self.names)
        self.columns = [c.name for c in model.columns]
        #: vector parameter -> its element columns (one array-valued column in the table and the parts)
        self.vectors = {col.group: [model.columns[j].name for j in idx]
                        for col, idx in model.column_groups() if col.element is not None}
        c, p = len(self.columns), model.n_free
        self.values = np.full((n, c), np.nan)
        self.errors = np.full((n, c), np.nan)
        self.has_errors = False
        self.theta = np.full((n, p), np.nan)
        self.loss = np.full(n, np.nan)
        self.dof = np.zeros(n, dtype=np.int64)
        self.n_iter = np.zeros(n, dtype=np.int64)
        self.status = np.full(n, int(Status.NOT_FITTED), dtype=np.int64)
        self.converged = np.zeros(n, dtype=bool)
        self.flags = np.zeros(n, dtype=np.int64)
        self.messages = [""] * n
        self.image_block = [""] * n
        self.n_masked = np.zeros(n, dtype=np.int64)
        self.n_neighbours = np.zeros(n, dtype=np.int64)
        self.done = np.zeros(n, dtype=bool)

    def __len__(self) -> int:
        return len(self.names)

    def add(self, result: BatchResult) -> None:
        """Take the rows of one batch (overwriting earlier rows of the same galaxies)."""
        rows = result.positions
        self.values[rows] = np.stack([result.values[c] for c in self.columns], axis=1) if self.columns else 0.0
        if result.errors is not None:
            self.errors[rows] = np.stack([result.errors[c] for c in self.columns], axis=1) if self.columns else 0.0
        self.theta[rows] = result.theta
        self.loss[rows] = result.loss
        self.dof[rows] = result.dof
        self.n_iter[rows] = result.n_iter
        self.status[rows] = result.status
        self.converged[rows] = result.converged
        self.flags[rows] = result.flags
        for i, pos in enumerate(rows):
            self.messages[pos] = result.messages[i]
        self.done[rows] = True

    def add_flag(self, position: int, flag: int, message: str) -> None:
        """OR a flag into one galaxy's row and append a message."""
        self.flags[position] |= int(flag)
        self.messages[position] = "; ".join(filter(None, [self.messages[position], message]))

    def value(self, column: str) -> np.ndarray:
        return self.values[:, self.columns.index(column)]

    def table(self, *, errors: bool, likelihood: str = "chi2", method: str = "lm", blocks: bool = False,
              n_masked: bool = False, neighbours: bool = False) -> Table:
        """The results table (docs/design.md): one row per galaxy, in dataset order.

        A vector parameter (K values per galaxy) is one column ``<profile>_<slot>``
        of shape (N, K), its errors ``<profile>_<slot>_err`` likewise.

        ``chi2`` holds the minimised objective only for the chi2 likelihood; for
        the others it is called ``deviance`` (-2 ln L up to a constant).
        """
        table = Table()
        table["galaxy_index"] = np.array(self.names, dtype=str)
        for col, idx in self.model.column_groups():
            # a vector parameter is one array-valued column, shape (K,) per row
            name = col.group if col.element is not None else col.name
            take = idx if col.element is not None else idx[0]
            table[name] = self.values[:, take]
            unit, meta = column_units(col)
            table[name].meta.update(meta)
            if unit:
                table[name].unit = unit
            if errors:
                table[f"{name}_err"] = self.errors[:, take]
                if unit:
                    table[f"{name}_err"].unit = unit
        loss_name = "chi2" if likelihood == "chi2" else "deviance"
        table[loss_name] = self.loss
        table["dof"] = self.dof
        with np.errstate(divide="ignore", invalid="ignore"):
            reduced = np.where(self.dof > 0, self.loss / self.dof, np.nan)
        table["reduced_chi2" if likelihood == "chi2" else "reduced_deviance"] = reduced
        table["n_iter"] = self.n_iter
        table["converged"] = self.converged
        table["status"] = self.status
        table["flag"] = self.flags
        table["message"] = np.array(self.messages, dtype=str) if self.messages else np.array([], dtype=str)
        if n_masked:
            table["n_masked"] = self.n_masked  # pixels the automatic mask took out
        if neighbours:
            table["n_neighbours_fitted"] = self.n_neighbours  # neighbours fitted with their own component
        if blocks:
            table["image_block"] = np.array(self.image_block, dtype=str)
        table.meta["method"] = method
        table.meta["likeliho"] = likelihood
        return table


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
