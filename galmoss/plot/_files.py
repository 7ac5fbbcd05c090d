"""Finding a run's files: the results table, ``run.json`` and the image blocks.

Everything the plots need is read from the files a fit wrote, so a run done on
another machine can be looked at with nothing but its folder.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
from astropy.table import Row, Table

from ..errors import DataError, DataFileNotFoundError
from ..io.results import is_uncertainty_column

logger = logging.getLogger("galmoss")

PathLike = Union[str, os.PathLike]

#: Columns of a results table that are not fitted parameters.
META_COLUMNS = frozenset(
    {"galaxy_index", "chi2", "deviance", "dof", "reduced_chi2", "reduced_deviance", "n_iter", "converged", "flag",
     "message", "status", "image_block", "group"}
)


def loss_columns(colnames) -> tuple[str | None, str | None]:
    """The loss and reduced-loss columns: ``chi2``/``reduced_chi2``, or
    ``deviance``/``reduced_deviance`` for the other likelihoods."""
    names = set(colnames)
    loss = "chi2" if "chi2" in names else "deviance" if "deviance" in names else None
    reduced = "reduced_chi2" if "reduced_chi2" in names else "reduced_deviance" if "reduced_deviance" in names else None
    return loss, reduced
#: Image-block extensions that are not model components.
BLOCK_IMAGES = frozenset({"PRIMARY", "DATA", "INPUT", "MODEL", "RESIDUAL", "MASK", "SIGMA"})

#: Units of GALFIT's parameter keys, for the tables ``galmoss galfit`` writes.
GALFIT_UNITS = {"XC": "pix", "YC": "pix", "MAG": "mag", "MU0": "mag / arcsec2", "RE": "pix", "RS": "pix",
                "FWHM": "pix", "RC": "pix", "RT": "pix", "PA": "deg"}


@dataclass
class Run:
    """A results folder as read from disk.

    Attributes
    ----------
    folder
        The results folder (None for a table given in memory).
    table
        The results table.
    blocks
        The image-block folder, or None when none was found.
    info
        The contents of ``run.json`` (empty when the file is absent).
    """

    folder: Path | None
    table: Table
    blocks: Path | None
    info: dict = field(default_factory=dict)


def read_table(folder: Path) -> Table:
    """The results table of ``folder``: ``results.fits`` if present, else ``results.csv``."""
    fits_path, csv_path = folder / "results.fits", folder / "results.csv"
    if fits_path.exists():
        # NaN stays NaN (astropy would mask it), so columns are plain arrays.
        try:
            table = Table.read(fits_path, format="fits", mask_invalid=False)
        except TypeError:  # astropy < 5.3 has no mask_invalid and never masked NaN
            table = Table.read(fits_path, format="fits")
        # Text columns come as bytes; numpy's cast decodes them in C, where
        # astropy's character_as_bytes=False decodes element by element (4 s
        # for 10^6 names and messages).
        for name in table.colnames:
            col = table[name]
            if col.dtype.kind == "S":
                try:
                    text = np.asarray(col).astype("U")
                except UnicodeDecodeError:
                    text = np.char.decode(np.asarray(col), "utf-8", "backslashreplace")
                table.replace_column(name, text)
    elif csv_path.exists():
        table = Table.read(csv_path, format="ascii.csv", guess=False, fast_reader=True)
    else:
        raise DataFileNotFoundError(
            f"'{folder}' holds neither results.fits nor results.csv; give the result_path of a galmoss run"
        )
    if "galaxy_index" not in table.colnames and {"feedme", "output"} <= set(table.colnames):
        return galfit_table(table, folder)
    if "galaxy_index" not in table.colnames:
        raise DataError(
            f"the results table in '{folder}' has no 'galaxy_index' column (columns: {', '.join(table.colnames[:8])}"
            f"{', ...' if len(table.colnames) > 8 else ''}); give a table written by galmoss fit or galmoss galfit"
        )
    return table


def is_galfit(table: Table) -> bool:
    """Whether ``table`` is the results table of ``galmoss galfit`` (read through :func:`galfit_table`)."""
    return "feedme" in table.colnames and "output" in table.colnames


def galfit_table(table: Table, folder: Path) -> Table:
    """The results table of ``galmoss galfit`` in the columns the plots read.

    Each row is a feedme: ``galaxy_index`` is the feedme's stem (its path when
    two stems are the same), ``image_block`` its B) block, found as written,
    else relative to the feedme's folder or to ``folder``; ``ndof`` and
    ``chi2nu`` read as ``dof`` and ``reduced_chi2``. The parameter columns keep
    GALFIT's names (``1_XC``, ``2_MAG``) and get GALFIT's units.
    """
    table = table.copy(copy_data=False)
    feedmes = np.asarray(table["feedme"]).astype(str)
    stems = np.array([Path(f).stem for f in feedmes])
    table.add_column(stems if np.unique(stems).size == stems.size else feedmes, name="galaxy_index", index=0)
    blocks = []
    for feedme, output in zip(feedmes, np.asarray(table["output"]).astype(str)):
        path = Path(output)
        if not path.is_absolute():
            tries = [path, Path(feedme).parent / path, folder / path]
            path = next((t for t in tries if t.exists()), tries[1])
        blocks.append(str(path))
    table["image_block"] = blocks
    for old, new in (("ndof", "dof"), ("chi2nu", "reduced_chi2")):
        if old in table.colnames and new not in table.colnames:
            table.rename_column(old, new)
    for name in table.colnames:
        key = name.removesuffix("_err").partition("_")[2]
        if key in GALFIT_UNITS or (key.startswith("F") and key.endswith("PA")):
            table[name].unit = GALFIT_UNITS.get(key, "deg")
    return table


def column_units(table: Table | None, info: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Column -> unit: run.json's ``columns`` entries, else the table's column units."""
    out = {}
    for name in table.colnames if table is not None else []:
        unit = getattr(table[name], "unit", None)
        if unit is not None and str(unit):
            out[name] = str(unit)
    for entry in (info or {}).get("columns") or []:
        if isinstance(entry, Mapping) and entry.get("name") and entry.get("unit"):
            out[str(entry["name"])] = str(entry["unit"])
    return out


def read_run_info(folder: Path) -> dict:
    """``run.json`` of a results folder, or ``{}`` when there is none."""
    path = folder / "run.json"
    if not path.exists():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read '{path}' ({exc}); fix or delete the file") from exc
    if not isinstance(info, dict):
        raise DataError(f"'{path}' holds a {type(info).__name__}, not an object; fix or delete the file")
    return info


def find_blocks(folder: Path | None, info: Mapping[str, Any], blocks: PathLike | None = None) -> Path | None:
    """The image-block folder of a run.

    In order: ``blocks`` when given (it must exist), ``img_block_path`` of
    ``run.json`` (relative paths are relative to the results folder), then
    ``RESULT/../image_blocks`` and ``RESULT/image_blocks``. None when none exists.
    """
    if blocks is not None:
        path = Path(os.fspath(blocks))
        if not path.is_dir():
            raise DataFileNotFoundError(f"image-block folder '{path}' (blocks=) does not exist; give the run's img_block_path")
        return path
    candidates = []
    recorded = info.get("img_block_path")
    if recorded:
        path = Path(str(recorded))
        candidates.append(path if path.is_absolute() or folder is None else folder / path)
    if folder is not None:
        candidates += [folder.parent / "image_blocks", folder / "image_blocks"]
    for path in candidates:
        if path.is_dir():
            return path.resolve()
    return None


def open_run(folder: PathLike, blocks: PathLike | None = None) -> Run:
    """Read a results folder: its table, ``run.json`` and where its image blocks are.

    Parameters
    ----------
    folder
        The ``result_path`` of a run.
    blocks
        The image-block folder, when it is not where ``run.json`` says or next
        to the results.

    Returns
    -------
    Run

    Raises
    ------
    DataFileNotFoundError
        If the folder, its table or the given ``blocks`` folder does not exist.
    DataError
        If the table or ``run.json`` cannot be read.
    """
    path = Path(os.fspath(folder))
    if not path.is_dir():
        raise DataFileNotFoundError(f"results folder '{path}' does not exist; give the result_path of a galmoss run")
    info = read_run_info(path)
    table = read_table(path)
    meta = {str(k).upper(): v for k, v in table.meta.items()}
    if "img_block_path" not in info and meta.get("IMGBLOCK"):  # a multi-band run records it in its table
        info = {**info, "img_block_path": str(meta["IMGBLOCK"])}
    found = find_blocks(path, info, blocks)
    if found is None and is_galfit(table) and len(table):
        # GALFIT writes each block where its feedme's B) says: the table names them
        found = Path(os.path.commonpath([str(Path(b).parent) for b in table["image_block"]]))
    return Run(path, table, found, info)


def names_of(table: Table) -> np.ndarray:
    """The galaxy names of a table as a numpy str array."""
    return np.asarray(table["galaxy_index"]).astype(str)


def find_row(table: Table, galaxy: Any, where: str = "the results") -> Row:
    """The row of ``galaxy`` (a name from ``galaxy_index``)."""
    names = names_of(table)
    hits = np.flatnonzero(names == str(galaxy))
    if not hits.size:
        shown = ", ".join(names[:5]) + (", ..." if names.size > 5 else "")
        raise KeyError(f"galaxy {galaxy!r} is not in {where} ({names.size} galaxies: {shown}); give a galaxy_index value")
    return table[int(hits[0])]


def block_file(row: Row | Mapping[str, Any], blocks: Path | None) -> Path | None:
    """The image block of a results row: its ``image_block`` entry, else ``<galaxy_index>.fits``."""
    name = None
    keys = row.colnames if isinstance(row, Row) else list(row)
    if "image_block" in keys:
        name = str(row["image_block"]).strip() or None
    if name is not None and Path(name).is_absolute():
        return Path(name)  # as galmoss galfit records them
    if blocks is None:
        return None
    return blocks / (name or f"{row['galaxy_index']}.fits")


def bands_of(table: Table) -> tuple[list[str], np.ndarray] | None:
    """A multi-band run's band names and wavelengths (its table's ``BANDS`` and ``WAVELEN``), or None."""
    meta = {str(k).upper(): v for k, v in table.meta.items()}
    if not meta.get("BANDS"):
        return None
    names = [b.strip() for b in str(meta["BANDS"]).split(",")]
    try:
        waves = np.array([float(w) for w in str(meta.get("WAVELEN", "")).split(",")])
    except ValueError:
        waves = np.full(len(names), np.nan)
    if waves.size != len(names):
        waves = np.full(len(names), np.nan)
    return names, waves


def parameter_columns(table: Table) -> list[str]:
    """The fitted-parameter columns of a results table, in table order.

    Every numeric column that is not one of the fixed columns (chi2, flag, ...,
    and a multi-band run's ``chi2_<band>`` and ``dof_<band>``) and not an ``_err``
    column is a parameter ``<profile>_<slot>``.
    """
    bands = bands_of(table)
    per_band = {f"{k}_{b}" for b in bands[0] for k in ("chi2", "deviance", "dof")} if bands else set()
    out = []
    for name in table.colnames:
        if name in META_COLUMNS or name in per_band or is_uncertainty_column(name, table.colnames):
            continue
        kind = np.asarray(table[name]).dtype.kind
        if kind in "fiu":
            out.append(name)
    return out


def component_of(column: str, components: list[str]) -> str | None:
    """The component a parameter column belongs to (the longest matching prefix)."""
    best = None
    for comp in components:
        if column.startswith(comp + "_") and (best is None or len(comp) > len(best)):
            best = comp
    return best


def components_in(table_columns: list[str], block_names: list[str] | None = None) -> list[str]:
    """Component names, from the block's extensions when known, else from ``<c>_cen_x``-style columns."""
    if block_names:
        return [n.lower() for n in block_names if n.upper() not in BLOCK_IMAGES]
    comps: list[str] = []
    from ..profiles.base import registered_profiles

    slots = {s for cls in registered_profiles().values() for s in cls.parameter_specs}
    for col in table_columns:
        for slot in sorted(slots, key=len, reverse=True):
            if col.endswith("_" + slot):
                comp = col[: -len(slot) - 1]
                if comp and comp not in comps:
                    comps.append(comp)
                break
    return comps


def decode_status(value: int) -> str:
    """Text for a ``status`` value (the fitter's status registry, when this galmoss has it)."""
    try:
        from ..fitting.status import decode_status as decode  # type: ignore[import-not-found]
    except ImportError:
        return str(int(value))
    try:
        text = decode(int(value))
    except (ValueError, KeyError):
        return str(int(value))
    if isinstance(text, (list, tuple)):
        text = ", ".join(map(str, text))
    return f"{int(value)}: {text}" if str(text) != str(int(value)) else str(text)
