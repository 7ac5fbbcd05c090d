"""Writing fit results: the results table and the per-galaxy image blocks.

Every file is written atomically: the bytes go to a hidden temporary file in
the destination folder, which then replaces the destination in one
``os.replace``. A run killed while writing leaves the previous file (or none),
never a truncated one; a leftover ``.<name>.*.tmp`` file may be deleted.

Results table
    :func:`write_results` writes ``results.fits`` (a binary table) and
    ``results.csv`` (plain comma-separated values, UTF-8, one header line of
    column names, booleans as ``True``/``False``, floats in the shortest form
    that reads back to the same value, NaN as ``nan``, masked cells empty),
    which pandas, Excel and ``csv`` read directly.

Image blocks are written by :mod:`galmoss.io.blocks` (its names are re-exported here).
"""

from __future__ import annotations

import csv
import io
import logging
import os
from pathlib import Path
from typing import Union

import numpy as np
from astropy.table import Table

from ..errors import DataError
from ._atomic import _atomic_write, _make_folder
from .blocks import GALFIT_KEYS, galfit_header_cards, read_image_block, update_image_block_header, write_image_block

__all__ = [
    "GALFIT_KEYS",
    "galfit_header_cards",
    "read_image_block",
    "update_image_block_header",
    "write_image_block",
    "write_results",
]

logger = logging.getLogger("galmoss")

PathLike = Union[str, os.PathLike]

RESULTS_FITS = "results.fits"
RESULTS_CSV = "results.csv"


# ------------------------------------------------------------------- helpers
def _csv_cells(table: Table, name: str) -> np.ndarray:
    """Column ``name`` as CSV text, one string per row."""
    col = table[name]
    values = np.asarray(col)  # plain values: units and masks are dropped here
    if values.dtype.kind == "S":
        text = np.char.decode(values, "utf-8", "replace")
    else:
        # numpy's float->str is the shortest text that reads back to the same
        # value (float32 columns included); bools become True/False.
        text = values.astype(str)
    mask = np.ma.getmaskarray(col) if isinstance(col, np.ma.MaskedArray) else None
    if mask is not None and mask.any():
        text = text.astype(object)
        text[mask] = ""
    return text


def _vector_csv_name(name: str, element: str) -> str:
    """CSV name of one element of an array-valued column: ``P_X_3`` and, for errors, ``P_X_3_err``."""
    if name.endswith("_err"):
        base = name[: -len("_err")]
        return f"{base}_{element[len(name) + 1:]}_err"
    return element


def _check_columns(table: Table, path: Path) -> None:
    for name in table.colnames:
        values = np.asarray(table[name])
        if values.ndim > 2 or (values.ndim == 2 and values.dtype.kind not in "biuf"):
            raise DataError(
                f"results column '{name}' holds arrays of shape {values.shape[1:]} per row; results.fits/.csv in "
                f"'{path}' hold numbers, or one 1-D numeric array per row: split it into such columns"
            )
        if values.dtype.kind not in "biufUS":
            raise DataError(
                f"results column '{name}' has dtype {values.dtype}, which results.fits/.csv in "
                f"'{path}' cannot hold; convert it to bool, int, float or str"
            )


def _fits_bytes(table: Table) -> bytes:
    """The table as a FITS file in memory; column units (TUNIT) and column meta (``M0``,
    ``pix_scale``, ``angle``) travel in astropy's serialised-metadata header comments."""
    out = _ascii_table(table)
    buffer = io.BytesIO()
    out.write(buffer, format="fits")
    return buffer.getvalue()


def _ascii_table(table: Table) -> Table:
    out = table
    for name in table.colnames:
        values = np.asarray(table[name])
        if values.dtype.kind != "U" or values.size == 0:
            continue
        encoded = np.char.encode(values, "ascii", "backslashreplace")
        if np.any(np.char.str_len(encoded) != np.char.str_len(values)):
            # FITS strings are ASCII only; escape the rest rather than lose the file.
            logger.warning(
                "results column '%s' holds non-ASCII text; results.fits stores it with backslash escapes "
                "(results.csv keeps it as UTF-8)",
                name,
            )
            if out is table:
                out = table.copy(copy_data=False)
            out.replace_column(name, encoded)
    return out


def write_results(table: Table, result_path: PathLike) -> tuple[Path, Path]:
    """Write a results table as ``results.fits`` and ``results.csv``.

    Parameters
    ----------
    table
        The results, one row per galaxy. Columns must be of bool, integer,
        float or string type, scalar per row or (numbers) one 1-D array per
        row (a vector parameter): ``results.fits`` holds it as a vector column
        (TFORM ``KD``), ``results.csv`` as ``<name>_1`` .. ``<name>_K`` (errors
        ``<name>_1_err`` ..).
    result_path
        Folder to write into; created (with parents) if missing. Existing
        ``results.fits`` / ``results.csv`` there are replaced.

    Returns
    -------
    (pathlib.Path, pathlib.Path)
        The paths of ``results.fits`` and ``results.csv``.

    Raises
    ------
    DataError
        If a column cannot be written (vector-valued or of an unsupported type).
    OutputError
        If the folder cannot be created or written to.

    Notes
    -----
    Both files are written atomically (see the module docs). Strings that are
    not ASCII are kept as UTF-8 in the CSV; FITS cannot hold them, so
    ``results.fits`` stores them with Python backslash escapes and a warning
    is logged.
    """
    if not isinstance(table, Table):
        raise TypeError(f"write_results needs an astropy.table.Table, got {type(table).__name__}")
    folder = Path(os.fspath(result_path))
    _check_columns(table, folder)
    _make_folder(folder, "result_path")
    fits_path = folder / RESULTS_FITS
    csv_path = folder / RESULTS_CSV

    data = _fits_bytes(table)
    _atomic_write(fits_path, lambda fh: fh.write(data))

    # CSV is flat: an array-valued column (a vector parameter) becomes <name>_1 .. <name>_K
    names, columns = [], []
    for name in table.colnames:
        if np.ndim(table[name]) == 2:
            flat = Table({f"{name}_{k + 1}": np.asarray(table[name])[:, k] for k in range(table[name].shape[1])})
            for sub in flat.colnames:
                names.append(_vector_csv_name(name, sub))
                columns.append(_csv_cells(flat, sub))
        else:
            names.append(name)
            columns.append(_csv_cells(table, name))

    def write_csv(fh: IO[bytes]) -> None:
        text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(names)
        writer.writerows(zip(*columns))
        text.flush()
        text.detach()  # leave closing the file to _atomic_write

    _atomic_write(csv_path, write_csv)
    return fits_path, csv_path


# -------------------------------------------------------------- image blocks
