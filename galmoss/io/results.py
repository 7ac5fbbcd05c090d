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
    which pandas, Excel and ``csv`` read directly. Both are written a chunk of
    rows at a time (:func:`write_result_chunks`), so writing a table of 10^7
    rows holds only one chunk's bytes and text.

Image blocks are written by :mod:`galmoss.io.blocks` (its names are re-exported here).
"""

from __future__ import annotations

import csv
import io
import logging
import os
from pathlib import Path
from collections.abc import Callable, Iterable
from typing import IO, Union

import numpy as np
from astropy.io import fits
from astropy.table import Table

from ..errors import DataError
from ._atomic import _atomic_write, _make_folder
from .blocks import GALFIT_KEYS, galfit_header_cards, read_image_block, update_image_block_header, write_image_block

__all__ = [
    "GALFIT_KEYS",
    "UNCERTAINTY_SUFFIXES",
    "galfit_header_cards",
    "is_uncertainty_column",
    "read_image_block",
    "update_image_block_header",
    "write_image_block",
    "write_result_chunks",
    "write_results",
]

logger = logging.getLogger("galmoss")

PathLike = Union[str, os.PathLike]

RESULTS_FITS = "results.fits"
RESULTS_CSV = "results.csv"

#: a results column ``<column><suffix>`` describes the uncertainty of ``<column>``: its error,
#: and the lower and upper ends of its 68.3 % interval (:mod:`galmoss.fitting.intervals`)
UNCERTAINTY_SUFFIXES = ("_err", "_lo", "_hi")


def is_uncertainty_column(name: str, colnames=None) -> bool:
    """Whether results column ``name`` is another column's error or interval end, not a value.

    With ``colnames`` (the table's), only where the column it qualifies is in the table.
    """
    for suffix in UNCERTAINTY_SUFFIXES:
        if name.endswith(suffix) and (colnames is None or name[: -len(suffix)] in colnames):
            return True
    return False


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


#: rows written at a time: results.fits and results.csv never hold more rows' bytes than this at once
CHUNK_ROWS = 65536


def _string_widths(chunks: Iterable[Table]) -> tuple[dict[str, int], set[str]]:
    """Bytes per cell of every text column over all chunks (as written to FITS), and the non-ASCII ones."""
    widths: dict[str, int] = {}
    escaped: set[str] = set()
    for chunk in chunks:
        for name in chunk.colnames:
            values = np.asarray(chunk[name])
            if values.dtype.kind not in "US":
                continue
            width = 1  # an empty or all-"" column is one character wide, as numpy makes it
            if values.size:
                encoded = _ascii(values)
                width = max(width, int(np.char.str_len(encoded).max()))
                if values.dtype.kind == "U" and np.any(np.char.str_len(encoded) != np.char.str_len(values)):
                    escaped.add(name)
            widths[name] = max(widths.get(name, 1), width)
    return widths, escaped


def _ascii(values: np.ndarray) -> np.ndarray:
    """Text as ASCII bytes; FITS strings are ASCII only, so the rest is kept as backslash escapes."""
    return values if values.dtype.kind == "S" else np.char.encode(values, "ascii", "backslashreplace")


def _fits_chunk(chunk: Table, widths: dict[str, int]) -> tuple[bytes, bytes, int]:
    """The chunk as astropy writes it (``Table.write``): its table header, its rows' bytes, and bytes per row.

    Text columns get the widths of the whole table, so every chunk's header
    is the same but for NAXIS2.
    """
    out = chunk.copy(copy_data=False)
    for name, width in widths.items():
        out.replace_column(name, _ascii(np.asarray(chunk[name])).astype(f"S{width}"))
        out[name].info.meta = chunk[name].info.meta
        out[name].info.unit = chunk[name].info.unit
    buffer = io.BytesIO()
    out.write(buffer, format="fits")
    raw = buffer.getbuffer()
    # the table's header: the 2880-byte blocks after the primary HDU's, up to its END card
    end = next(at for at in range(_BLOCK, len(raw), _CARD) if raw[at : at + _CARD] == _END_CARD)
    start, stop = _BLOCK, end + _CARD + (-(end + _CARD) % _BLOCK)
    header = bytes(raw[start:stop])
    row_bytes = int(_card(header, "NAXIS1")[0].value)
    return header, bytes(raw[stop : stop + row_bytes * len(chunk)]), row_bytes


def _card(header: bytes, keyword: str) -> tuple[fits.Card, int]:
    """The card ``keyword`` of a header's bytes, and its offset."""
    key = f"{keyword:<8}=".encode("ascii")
    at = next(at for at in range(0, len(header), _CARD) if header[at : at + 9] == key)
    return fits.Card.fromstring(header[at : at + _CARD].decode("ascii")), at


_BLOCK, _CARD = 2880, 80
_END_CARD = b"END" + b" " * 77


def _write_fits(fh: IO[bytes], chunks: Iterable[Table], n_rows: int, widths: dict[str, int]) -> None:
    """A primary HDU and one binary table of ``n_rows`` rows, written a chunk of rows at a time.

    The header is astropy's for the whole table (NAXIS2 = ``n_rows``) and
    each chunk's rows are astropy's bytes for those rows, so the file equals
    the one ``Table.write`` gives for the whole table.
    """
    written = row_bytes = 0
    for chunk in chunks:
        header, rows, row_bytes = _fits_chunk(chunk, widths)
        if fh.tell() == 0:
            # the chunk's header with the whole table's NAXIS2 card, every other card as astropy wrote it
            card, at = _card(header, "NAXIS2")
            whole = fits.Card("NAXIS2", n_rows, card.comment).image.encode("ascii")
            fh.write(fits.PrimaryHDU().header.tostring().encode("ascii") + header[:at] + whole + header[at + _CARD :])
        fh.write(rows)
        written += len(chunk)
    if written != n_rows:
        raise ValueError(f"results: {written} rows were written but the table has {n_rows}")
    fh.write(b"\0" * (-(row_bytes * n_rows) % _BLOCK))


def _write_csv(fh: IO[bytes], chunks: Iterable[Table]) -> None:
    text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
    writer = csv.writer(text, lineterminator="\n")
    header = True
    for chunk in chunks:
        # CSV is flat: an array-valued column (a vector parameter) becomes <name>_1 .. <name>_K
        names, columns = [], []
        for name in chunk.colnames:
            if np.ndim(chunk[name]) == 2:
                flat = Table({f"{name}_{k + 1}": np.asarray(chunk[name])[:, k] for k in range(chunk[name].shape[1])})
                for sub in flat.colnames:
                    names.append(_vector_csv_name(name, sub))
                    columns.append(_csv_cells(flat, sub))
            else:
                names.append(name)
                columns.append(_csv_cells(chunk, name))
        if header:
            writer.writerow(names)
            header = False
        writer.writerows(zip(*columns))
    text.flush()
    text.detach()  # leave closing the file to _atomic_write


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
    Both files are written atomically (see the module docs), :data:`CHUNK_ROWS`
    rows at a time (:func:`write_result_chunks`). Strings that are not ASCII
    are kept as UTF-8 in the CSV; FITS cannot hold them, so ``results.fits``
    stores them with Python backslash escapes and a warning is logged.
    """
    if not isinstance(table, Table):
        raise TypeError(f"write_results needs an astropy.table.Table, got {type(table).__name__}")
    n = len(table)
    return write_result_chunks(lambda: (table[lo : lo + CHUNK_ROWS] for lo in range(0, max(n, 1), CHUNK_ROWS)),
                               n, result_path)


def write_result_chunks(chunks: Callable[[], Iterable[Table]], n_rows: int,
                        result_path: PathLike) -> tuple[Path, Path]:
    """Write ``results.fits`` and ``results.csv`` from a table given as consecutive chunks of rows.

    Parameters
    ----------
    chunks
        Called (three times: text widths, FITS, CSV) to give the table's rows in
        order, as tables with the same columns, dtypes, units and meta; their
        lengths add up to ``n_rows`` (the first chunk may be empty when
        ``n_rows`` is 0). Only one chunk is held at a time.
    n_rows
        The rows of the whole table.
    result_path
        As for :func:`write_results`, which this is the streaming form of: the
        files are those :func:`write_results` writes for the whole table.
    """
    folder = Path(os.fspath(result_path))
    first = next(iter(chunks()))
    _check_columns(first, folder)
    widths, escaped = _string_widths(chunks())
    for name in sorted(escaped):
        logger.warning(
            "results column '%s' holds non-ASCII text; results.fits stores it with backslash escapes "
            "(results.csv keeps it as UTF-8)",
            name,
        )
    _make_folder(folder, "result_path")
    fits_path = folder / RESULTS_FITS
    csv_path = folder / RESULTS_CSV
    _atomic_write(fits_path, lambda fh: _write_fits(fh, chunks(), n_rows, widths))
    _atomic_write(csv_path, lambda fh: _write_csv(fh, chunks()))
    return fits_path, csv_path


# -------------------------------------------------------------- image blocks
