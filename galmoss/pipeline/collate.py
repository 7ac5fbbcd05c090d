"""``galmoss collate FOLDER``: merge the result parts of shards into one results table.

Shards of one run (``fit(shard=(k, n))``, ``galmoss fit JOB --shard k/n``) write
Parquet parts into one result folder. Collating reads every complete part, keeps
one row per galaxy (the newest fit, when a galaxy was fitted twice: two shards
given the same part, or a shard run again), puts the rows in input order, writes ``results.fits`` / ``results.csv`` and reports which
galaxies are missing, which were fitted more than once, and which parts could
not be read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.table import Table

from .parts import PartsRead, part_vectors, read_parts
from ..errors import OutputError
from .run import GALAXIES_FILE, read_galaxies, read_run_description
from .store import ResultStore, TableOptions

__all__ = ["CollateReport", "collate", "table_options"]


def table_options(description: dict) -> TableOptions:
    """The table options of the run described by ``run.json`` (older files: from their other keys)."""
    saved = description.get("table")
    if saved:
        return TableOptions(**saved)
    return TableOptions(likelihood=description.get("likelihood", "chi2"), method=description.get("method", "lm"),
                        blocks=bool(description.get("img_block_path")))


@dataclass
class CollateReport:
    """What :func:`collate` found and wrote."""

    table: Table
    missing: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    #: parts a run of another model wrote into the folder (skipped)
    foreign: list[str] = field(default_factory=list)
    #: rows of galaxies not in this run's catalogue, and rows fitted on other input files (skipped)
    other_galaxies: int = 0
    other_inputs: int = 0
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
        if self.foreign:
            lines.append(f"{len(self.foreign)} parts were written by a run of another model and were skipped: "
                         f"{names(self.foreign)}")
        if self.other_galaxies:
            lines.append(f"{self.other_galaxies} rows in the parts are of galaxies not in this run's catalogue "
                         "(another job wrote into this folder?); they were skipped")
        if self.other_inputs:
            lines.append(f"{self.other_inputs} rows were fitted on input files other than this run's "
                         "(refitted since, or another job's); they were skipped")
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
    folder = Path(folder)
    description = read_run_description(folder)
    galaxies = read_galaxies(folder)
    if galaxies is None:
        raise OutputError(f"'{folder}' is not a complete galmoss result folder ({GALAXIES_FILE} is missing or "
                          "cannot be read); run the job's shards again into it, or give the right folder")
    names, inputs = galaxies
    # the store and its table are those of fit(): the same columns, dtypes and layout
    store = ResultStore.from_description(description, names,
                                         None if "vectors" in description else part_vectors(folder))
    counts = np.zeros(len(names), dtype=np.int64)
    other_galaxies = other_inputs = 0

    def take(rows: dict) -> None:  # one part at a time, oldest first: the newest row of a galaxy wins
        nonlocal other_galaxies, other_inputs
        # only rows of this run's galaxies, fitted on its input files
        kept, galaxies, files = PartsRead(rows, [], []).select(names, inputs)
        other_galaxies, other_inputs = other_galaxies + galaxies, other_inputs + files
        store.add_parts(kept, counts)

    found = read_parts(folder, [c["name"] for c in description["columns"]], model_id=description.get("model_id"),
                       each=take)
    fitted = np.flatnonzero(counts > 0)
    options = table_options(description)
    with_errors = bool(fitted.size) and bool(np.all(store.with_errors[fitted]))
    if description.get("bands"):  # a multi-band run: its own table (per-band columns, chi2_<band>)
        from .multiband import collate_table

        table = collate_table(store, description, fitted)
    else:
        table = store.table(errors=with_errors, rows=fitted, **dataclasses.asdict(options))
    report = CollateReport(
        table=table,
        missing=[names[i] for i in np.flatnonzero(counts == 0)],
        doubled=[names[i] for i in np.flatnonzero(counts > 1)],
        unreadable=[str(p) for p, _ in found.unreadable],
        foreign=[str(p) for p in found.foreign],
        other_galaxies=other_galaxies,
        other_inputs=other_inputs,
    )
    if write:
        from ..io.results import write_results

        report.written = write_results(table, folder)
    return report
