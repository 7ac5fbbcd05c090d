"""``galmoss collate FOLDER``: merge the result parts of shards into one results table.

Shards of one run (``fit(shard=(k, n))``, ``galmoss fit JOB --shard k/n``) write
Parquet parts into one result folder. Collating reads every complete part, keeps
one row per galaxy (the newest fit, when a galaxy was fitted twice: two shards
given the same part, or a shard run again), puts the rows in input order, writes ``results.fits`` / ``results.csv`` and reports which
galaxies are missing, which were fitted more than once, and which parts could
not be read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.table import Table

from .parts import read_parts
from .run import GALAXIES_FILE, read_run_description

__all__ = ["CollateReport", "collate"]


@dataclass
class CollateReport:
    """What :func:`collate` found and wrote."""

    table: Table
    missing: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    written: tuple[Path, Path] | None = None

    def summary(self, limit: int = 10) -> str:
        def names(items):
            shown = ", ".join(repr(x) for x in items[:limit])
            return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")

        lines = [f"{len(self.table)} galaxies in the results"]
        if self.missing:
            lines.append(f"{len(self.missing)} galaxies have no result yet: {names(self.missing)}")
        if self.doubled:
            lines.append(f"{len(self.doubled)} galaxies fitted more than once (the newest result kept): "
                         f"{names(self.doubled)}")
        if self.unreadable:
            lines.append(f"{len(self.unreadable)} parts could not be read (their galaxies count as missing): "
                         f"{names(self.unreadable)}")
        if self.written:
            lines.append(f"wrote {self.written[0]} and {self.written[1]}")
        return "\n".join(lines)


def collate(folder, *, write: bool = True) -> CollateReport:
    """Merge the parts in ``folder`` (a result_path) into one table in input order.

    Parameters
    ----------
    folder
        The result folder the shards wrote into.
    write
        Write ``results.fits`` and ``results.csv`` there.
    """
    import pyarrow.parquet as pq

    folder = Path(folder)
    description = read_run_description(folder)
    names = [str(x) for x in pq.read_table(folder / GALAXIES_FILE).column("galaxy_index").to_pylist()]
    columns = description["columns"]
    found = read_parts(folder, [c["name"] for c in columns])
    rows = found.rows
    n = len(names)
    if rows:
        pos = rows["position"].astype(np.int64)
        counts = np.bincount(pos, minlength=n)
        # rows come oldest run first: a galaxy fitted twice keeps its newest row
        _, last = np.unique(pos[::-1], return_index=True)
        last = len(pos) - 1 - last
        order = last[np.argsort(pos[last])]
    else:
        pos = np.zeros(0, dtype=np.int64)
        counts = np.zeros(n, dtype=np.int64)
        order = np.zeros(0, dtype=np.int64)
    table = Table()
    table["galaxy_index"] = np.array([names[p] for p in pos[order]], dtype=str)
    with_errors = bool(rows) and bool(np.all(rows["has_errors"][order]))
    for col in columns:
        table[col["name"]] = rows[col["name"]][order].astype(np.float64) if rows else np.zeros(0)
        table[col["name"]].meta.update(col.get("meta") or {})
        if col.get("unit"):
            table[col["name"]].unit = col["unit"]
        if with_errors:
            table[f"{col['name']}_err"] = rows[f"{col['name']}_err"][order].astype(np.float64)
            if col.get("unit"):
                table[f"{col['name']}_err"].unit = col["unit"]
    chi2 = description.get("likelihood", "chi2") == "chi2"
    get = lambda k, dt: rows[k][order].astype(dt) if rows else np.zeros(0, dt)  # noqa: E731
    loss, dof = get("loss", np.float64), get("dof", np.int64)
    table["chi2" if chi2 else "deviance"] = loss
    table["dof"] = dof
    with np.errstate(divide="ignore", invalid="ignore"):
        table["reduced_chi2" if chi2 else "reduced_deviance"] = np.where(dof > 0, loss / dof, np.nan)
    table["n_iter"] = get("n_iter", np.int64)
    table["converged"] = get("converged", bool)
    table["status"] = get("status", np.int64)
    table["flag"] = get("flag", np.int64)
    table["message"] = np.array([str(x) for x in rows["message"][order]] if rows else [], dtype=str)
    if description.get("img_block_path"):
        table["image_block"] = np.array([str(x) for x in rows["image_block"][order]] if rows else [], dtype=str)
    table.meta["method"] = description.get("method", "lm")
    table.meta["likeliho"] = description.get("likelihood", "chi2")
    report = CollateReport(
        table=table,
        missing=[names[i] for i in np.flatnonzero(counts == 0)],
        doubled=[names[i] for i in np.flatnonzero(counts > 1)],
        unreadable=[str(p) for p, _ in found.unreadable],
    )
    if write:
        from ..io.results import write_results

        report.written = write_results(table, folder)
    return report
