"""Catalogue tables: one row per galaxy, naming its files and start values.

CSV (astropy's ``ascii.csv``), FITS binary tables and Parquet (through pyarrow)
are read into an :class:`astropy.table.Table`; the format is chosen by the file's
suffix (``.csv``, ``.fits``/``.fit``/``.fits.gz``, ``.parquet``/``.pq``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from astropy.table import Table

from ..errors import DataError, DataFileNotFoundError

__all__ = ["read_catalog"]


def read_catalog(catalog) -> tuple[Table, Path]:
    """The catalogue as a Table, and the folder its relative paths are relative to.

    Parameters
    ----------
    catalog
        An astropy Table (paths relative to the current folder) or a file path.

    Raises
    ------
    DataFileNotFoundError
        If the file does not exist.
    DataError
        If its format is unknown or it cannot be read.
    """
    if isinstance(catalog, Table):
        return catalog, Path.cwd()
    path = Path(os.fspath(catalog)).expanduser()
    if not path.is_file():
        raise DataFileNotFoundError(f"catalogue '{path}' does not exist; give a CSV, FITS or Parquet table")
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq

            arrow = pq.read_table(path)
            table = Table({col: _arrow_column(arrow.column(col)) for col in arrow.column_names})
        elif name.endswith((".fits", ".fit", ".fits.gz", ".fts")):
            table = Table.read(path)
            table.convert_bytestring_to_unicode()  # FITS strings arrive as bytes
        elif name.endswith((".csv", ".txt", ".ecsv")):
            table = Table.read(path, format="ascii.ecsv" if name.endswith(".ecsv") else "ascii.csv")
        else:
            raise DataError(
                f"catalogue '{path}': unknown format (suffix {path.suffix!r}); use .csv, .fits or .parquet"
            )
    except DataError:
        raise
    except Exception as exc:  # astropy and pyarrow raise many types for a bad file
        raise DataError(f"catalogue '{path}' cannot be read ({type(exc).__name__}: {exc})") from exc
    return table, path.parent


def _arrow_column(column) -> np.ndarray:
    values = column.to_numpy(zero_copy_only=False)
    if values.dtype == object:
        return np.array(["" if v is None else str(v) for v in values])
    return values
