"""Catalogue tables: one row per galaxy, naming its files and start values.

CSV, FITS binary tables and Parquet are read into an :class:`astropy.table.Table`;
the format is chosen by the file's suffix (``.csv``/``.txt``, ``.ecsv``,
``.fits``/``.fit``/``.fts``/``.fits.gz``, ``.parquet``/``.pq``).

What a catalogue says is kept as written:

- A CSV is read as text (a leading byte-order mark is dropped). The columns named
  in ``text_columns`` (galaxy names, file paths) stay text exactly as written
  (``00123`` stays ``00123``, ``1e5`` stays ``1e5``); any other column whose cells are
  all numbers becomes a number column.
- An empty cell, a FITS null (TNULL), a Parquet null, or ``nan`` in a text column is
  missing; the table marks it (a masked cell), and :func:`text_column` and
  :func:`number_column` refuse it with the file, row and column, unless the column
  is optional.
- Parquet binary columns are decoded as UTF-8 text.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from astropy.table import MaskedColumn, Table

from ..errors import DataError, DataFileNotFoundError

__all__ = ["number_column", "read_catalog", "text_column"]

#: cells that mean "no value" in a text column
_NULL_TEXT = {"", "nan", "--", "null"}


def read_catalog(catalog, text_columns: Iterable[str] = ()) -> tuple[Table, Path]:
    """The catalogue as a Table, and the folder its relative paths are relative to.

    Parameters
    ----------
    catalog
        An astropy Table (paths relative to the current folder) or a file path.
    text_columns
        Columns to keep as text exactly as written in a CSV (names, paths).

    Returns
    -------
    (Table, Path)
        The table (``table.meta["catalogue"]`` names its source) and the folder.

    Raises
    ------
    DataFileNotFoundError
        If the file does not exist.
    DataError
        If its format is unknown or it cannot be read (the message names the file).
    """
    if isinstance(catalog, Table):
        catalog.meta.setdefault("catalogue", "the catalogue table")
        return catalog, Path.cwd()
    path = Path(os.fspath(catalog)).expanduser()
    if not path.is_file():
        raise DataFileNotFoundError(f"catalogue '{path}' does not exist; give a CSV, FITS or Parquet table")
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq

            arrow = pq.read_table(path)
            table = Table([_arrow_column(arrow.column(col), col) for col in arrow.column_names])
        elif name.endswith((".fits", ".fit", ".fits.gz", ".fts")):
            table = Table.read(path)
            table.convert_bytestring_to_unicode()  # FITS strings arrive as bytes
        elif name.endswith(".ecsv"):
            table = Table.read(path, format="ascii.ecsv")
        elif name.endswith((".csv", ".txt")):
            table = _read_csv(path, set(text_columns))
        else:
            raise DataError(
                f"catalogue '{path}': unknown format (suffix {path.suffix!r}); use .csv, .fits or .parquet"
            )
    except DataError:
        raise
    except UnicodeDecodeError as exc:
        raise DataError(f"catalogue '{path}' is not UTF-8 text (byte {exc.start}); save it as UTF-8") from exc
    except Exception as exc:  # astropy and pyarrow raise many types for a bad file
        raise DataError(f"catalogue '{path}' cannot be read ({type(exc).__name__}: {exc})") from exc
    table.meta["catalogue"] = f"catalogue '{path}'"
    return table, path.parent


def _read_csv(path: Path, text_columns: set[str]) -> Table:
    """A CSV as text cells; columns all numbers (and not named text) become numbers; empty cells masked."""
    with open(path, encoding="utf-8-sig", newline="") as fh:  # utf-8-sig: drop a byte-order mark
        rows = list(csv.reader(fh))
    rows = [r for r in rows if any(cell.strip() for cell in r)]  # blank lines are not galaxies
    if not rows:
        raise DataError(f"catalogue '{path}' is empty; give a header line of column names and one row per galaxy")
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header) or "" in header:
        raise DataError(f"catalogue '{path}': the header line {','.join(header)!r} has an empty or repeated column "
                        "name; give each column its own name")
    columns: list[list[str]] = [[] for _ in header]
    for i, row in enumerate(rows[1:], start=1):
        if len(row) != len(header):
            raise DataError(f"catalogue '{path}': row {i} has {len(row)} cells but the header has {len(header)} "
                            f"columns ({', '.join(header)}); give every row one cell per column")
        for cells, cell in zip(columns, row):
            cells.append(cell.strip())
    table = Table()
    for name, cells in zip(header, columns):
        missing = np.array([c == "" for c in cells], dtype=bool)
        values = np.array(cells, dtype=str) if cells else np.array([], dtype=str)
        if name not in text_columns:
            values = _as_numbers(cells, missing)
        table[name] = MaskedColumn(values, mask=missing) if missing.any() else values
    return table


def _as_numbers(cells: list[str], missing: np.ndarray):
    """The cells as int64 or float64 when every present one is a number, else the text."""
    present = [c for c, m in zip(cells, missing) if not m]
    if not present:
        return np.array(cells, dtype=str)
    try:
        ints = [int(c) for c in present]
    except ValueError:
        pass
    else:
        out = np.zeros(len(cells), dtype=np.int64)
        out[~missing] = ints
        return out
    try:
        floats = [float(c) for c in present]
    except ValueError:
        return np.array(cells, dtype=str)
    out = np.full(len(cells), np.nan)
    out[~missing] = floats
    return out


def _arrow_column(column, name: str):
    """A pyarrow column as a (masked) numpy column: binary decoded as UTF-8, nulls masked."""
    import pyarrow as pa

    kind = column.type
    missing = np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        values = np.array(["" if v is None else v.decode("utf-8") for v in column.to_pylist()], dtype=str)
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        values = np.array(["" if v is None else v for v in column.to_pylist()], dtype=str)
    else:
        values = column.to_numpy(zero_copy_only=False)
        if values.dtype == object:
            values = np.array(["" if v is None else str(v) for v in values], dtype=str)
        elif missing.any() and values.dtype.kind in "iub":
            values = values.astype(np.float64)
    if values.size == 0:
        values = np.array([], dtype=str)
    return MaskedColumn(values, name=name, mask=missing) if missing.any() else _named(values, name)


def _named(values: np.ndarray, name: str):
    from astropy.table import Column

    return Column(values, name=name)


def _where(table: Table, row: int, column: str) -> str:
    return f"{table.meta.get('catalogue', 'the catalogue table')}, row {row + 1}, column {column!r}"


def _mask(col) -> np.ndarray:
    return np.broadcast_to(np.asarray(getattr(col, "mask", False), dtype=bool), (len(col),))


def text_column(table: Table, column: str, what: str, *, optional: bool = False) -> list[str | None]:
    """A column's cells as text, exactly as stored (names, file paths).

    Parameters
    ----------
    table
        The catalogue (from :func:`read_catalog`).
    column
        The column's name.
    what
        What the column holds, for messages (``"galaxy names"``).
    optional
        Whether a cell may be missing (it becomes None); else a missing cell is an error.

    Raises
    ------
    KeyError
        If the column is not in the table (the message lists the columns there are).
    DataError
        If a cell is missing (empty, null or NaN) and the column is not optional.
    """
    col = _column(table, column, what)
    values = np.asarray(col)
    if values.dtype.kind == "S":
        values = np.char.decode(values, "utf-8")
    elif values.dtype.kind == "O":
        values = np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values.tolist()], dtype=str)
    elif values.dtype.kind != "U":
        values = values.astype(str)  # integer names (objid); a NaN float becomes "nan", a missing value
    texts = np.char.strip(values) if values.size else values.astype(str)
    missing = _mask(col) | np.isin(np.char.lower(texts), list(_NULL_TEXT))
    if missing.any() and not optional:
        i = int(np.flatnonzero(missing)[0])
        raise DataError(f"{_where(table, i, column)} ({what}) is empty or null; give a value in every row "
                        f"(or drop the row){_more(missing)}")
    out = texts.tolist()
    if missing.any():
        for i in np.flatnonzero(missing):
            out[i] = None
    return out


def number_column(table: Table, column: str, what: str, *, optional: bool = False) -> np.ndarray:
    """A column's cells as float64 (start values, FWHMs); missing cells are NaN only when ``optional``.

    Raises
    ------
    KeyError
        If the column is not in the table (the message lists the columns there are).
    DataError
        If a cell is not a number, or is missing and the column is not optional.
    """
    col = _column(table, column, what)
    missing = _mask(col)
    values = np.asarray(col)
    try:
        out = values.astype(np.float64)
    except (TypeError, ValueError):
        for i, value in enumerate(values.tolist()):
            try:
                float(value)
            except (TypeError, ValueError):
                if not missing[i]:
                    raise DataError(f"{_where(table, i, column)} ({what}) is {value!r}, not a number; give a "
                                    "number") from None
        out = np.where(missing, "nan", values).astype(np.float64)
    out = np.where(missing, np.nan, out)
    bad = np.isnan(out)
    if bad.any() and not optional:
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{_where(table, i, column)} ({what}) is empty or NaN; give a number in every row"
                        f"{_more(bad)}")
    return out


def _more(bad: np.ndarray) -> str:
    n = int(np.count_nonzero(bad))
    return "" if n <= 1 else f" ({n - 1} more rows like it)"


def _column(table: Table, column: str, what: str):
    if column not in table.colnames:
        raise KeyError(f"{table.meta.get('catalogue', 'catalogue')}: no column {column!r} for {what}; the columns "
                       f"are {', '.join(table.colnames)}")
    return table[column]
