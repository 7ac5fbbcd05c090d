"""Result parts: each finished batch's rows, one Parquet file each, written atomically.

A run with ``result_path`` writes ``<result_path>/parts/part-<shard>-<run>-<seq>-<token>.parquet``
(``<run>`` the run's start time in microseconds, so later runs sort later)
after every batch, through a temporary file and ``os.replace``: a killed run
leaves complete parts (and perhaps a hidden ``.part-*.tmp`` that is ignored),
never a truncated part. A part that cannot be read (cut short by a disk that
filled up, say) is reported and its galaxies are fitted again; it is never read
as data.

Columns of a part: ``position`` (the galaxy's row in the dataset), ``galaxy_index``,
every value column and its ``_err``, ``loss``, ``dof``, ``n_iter``, ``status``,
``converged``, ``flag``, ``message``, ``image_block``, and two list columns,
``theta`` (the fitting-space parameters, P values) and ``covariance`` (the C x C
covariance of the reported columns, row-major; empty when not computed, or when
it would exceed :data:`MAX_PART_COVARIANCE` values a row). A vector parameter
(K values a galaxy) is one fixed-size-list column ``<profile>_<slot>`` of K
values and ``<profile>_<slot>_err`` likewise; the schema metadata
``galmoss_vectors`` lists them, and :func:`read_parts` gives their elements back
as ``<profile>_<slot>_1`` .. ``_K``. The run's description (columns, model,
settings) is in ``<result_path>/run.json``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import OutputError
from ..fitting.records import BatchResult
from .store import ROW_FIELDS

log = logging.getLogger("galmoss")

__all__ = ["PartWriter", "PartsRead", "part_vectors", "read_parts"]

PARTS_FOLDER = "parts"
#: Covariance matrices with more values than this (C x C, C > 1448) are not
#: written into parts (128 MB a galaxy at C = 4000); the errors still are.
MAX_PART_COVARIANCE = 2**21
_PART = re.compile(r"^part-(?P<shard>[A-Za-z0-9_]+)-(?P<run>\d+)-(?P<seq>\d+)-[0-9a-f]+\.parquet$")


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow is a dependency
        raise ImportError("writing result parts needs pyarrow: pip install pyarrow") from exc
    return pa, pq


class PartWriter:
    """Writes each batch's rows as one Parquet part in ``<folder>/parts``.

    Parameters
    ----------
    folder
        The run's result folder (must exist and be writable: checked before the run).
    columns
        The value columns, in model order.
    shard
        A label for this process's parts (``"0of1"``, ``"3of8"``), so shards
        writing into one folder never collide.
    """

    def __init__(self, folder: Path, columns: list[str], shard: str = "0of1",
                 vectors: dict[str, list[str]] | None = None, *, inputs: list[str] | None = None,
                 model_id: str | None = None) -> None:
        self.folder = Path(folder) / PARTS_FOLDER
        self.columns = columns
        #: vector parameter name -> its element columns, written as one list column
        self.vectors = dict(vectors or {})
        self.shard = shard
        #: each galaxy's input files, by dataset position (a row records those it was fitted on)
        self.inputs = inputs
        self.model_id = model_id
        self.run = time.time_ns() // 1000
        self.seq = 0
        self.folder.mkdir(parents=True, exist_ok=True)

    def write(self, result: BatchResult, image_block: list[str], counts: dict[str, np.ndarray] | None = None) -> Path:
        """Write one part; raises :class:`OutputError` when it cannot.

        ``counts``: per-galaxy integer columns the results table carries besides
        the fit (``n_masked``, ``n_neighbours_fitted``), so a resumed run keeps them.
        """
        pa, pq = _pyarrow()
        self.seq += 1
        data = {
            "position": pa.array(result.positions.astype(np.int64)),
            "galaxy_index": pa.array(result.names, type=pa.string()),
        }
        in_vector = {c for names in self.vectors.values() for c in names}
        first = {names[0]: group for group, names in self.vectors.items()}
        nan = np.full(len(result), np.nan)
        for c in self.columns:
            if c in first:
                group, names = first[c], self.vectors[first[c]]
                vals = np.stack([result.values[n] for n in names], axis=1).astype(np.float64)
                errs = (np.stack([result.errors[n] for n in names], axis=1).astype(np.float64)
                        if result.errors is not None else np.full(vals.shape, np.nan))
                data[group] = _fixed_lists(pa, vals)
                data[f"{group}_err"] = _fixed_lists(pa, errs)
                continue
            if c in in_vector:
                continue
            data[c] = pa.array(result.values[c].astype(np.float64))
            err = result.errors[c] if result.errors is not None else nan
            data[f"{c}_err"] = pa.array(np.asarray(err, dtype=np.float64))
        for f in ROW_FIELDS:
            data[f.part] = pa.array(np.asarray(getattr(result, f.attr)).astype(f.dtype))
        data["message"] = pa.array(result.messages, type=pa.string())
        data["image_block"] = pa.array(image_block, type=pa.string())
        data["has_errors"] = pa.array(np.full(len(result), result.errors is not None))
        data["theta"] = _lists(pa, result.theta.reshape(len(result), -1))
        if result.covariance is not None and result.covariance[:1].size <= MAX_PART_COVARIANCE:
            data["covariance"] = _lists(pa, result.covariance.reshape(len(result), -1))
        else:
            data["covariance"] = _lists(pa, np.zeros((len(result), 0)))
        for key, value in (counts or {}).items():
            data[key] = pa.array(np.asarray(value, dtype=np.int64))
        if self.inputs is not None:
            data["inputs"] = pa.array([self.inputs[int(p)] for p in result.positions], type=pa.string())
        table = pa.table(data)
        meta = {}
        if self.vectors:
            meta["galmoss_vectors"] = json.dumps(self.vectors)
        if self.model_id is not None:
            meta["galmoss_model"] = self.model_id
        if meta:
            table = table.replace_schema_metadata(meta)
        name = f"part-{self.shard}-{self.run:017d}-{self.seq:06d}-{secrets.token_hex(4)}.parquet"
        target = self.folder / name
        tmp = self.folder / f".{name}.tmp"
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, target)
        except OSError as exc:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise OutputError(
                f"cannot write result part '{target}' ({exc.strerror or exc}); check the disk and permissions"
            ) from exc
        return target


@dataclass
class PartsRead:
    """What :func:`read_parts` found."""

    rows: dict[str, np.ndarray]
    files: list[Path]
    unreadable: list[tuple[Path, str]]
    #: vector parameter -> its element columns, from the parts' schema metadata
    vectors: dict[str, list[str]] = field(default_factory=dict)
    #: parts written by a run of another model (schema metadata ``galmoss_model``)
    foreign: list[Path] = field(default_factory=list)

    def select(self, names: list[str], inputs: list[str] | None = None) -> tuple[dict, int, int]:
        """The rows that belong to these galaxies and these input files.

        A row belongs when its ``position`` is a galaxy of ``names`` with the
        same ``galaxy_index`` and (when the part records them and ``inputs`` is
        given) the same input files as ``inputs[position]``.

        Returns
        -------
        (dict, int, int)
            The rows kept, the number of rows of other galaxies (another
            catalogue), and the number of rows fitted on other input files.
        """
        if not self.rows:
            return {}, 0, 0
        n = len(names)
        pos = self.rows["position"]
        inside = (pos >= 0) & (pos < n)
        at = np.clip(pos, 0, max(n - 1, 0))
        # row by row: an array of every name would cost O(N) for each part of a streamed resume
        same_name = inside & np.array([bool(i) and names[p] == name for i, p, name in
                                       zip(inside, at, self.rows["galaxy_index"])], dtype=bool) if n else inside
        same_inputs = np.ones(len(pos), dtype=bool)
        if inputs is not None and n:
            recorded = self.rows["inputs"]
            # parts written before inputs were recorded (None) are taken on their names alone
            same_inputs = np.array([r is None or r == inputs[int(p)] for r, p in zip(recorded, at)], dtype=bool)
        keep = same_name & same_inputs
        rows = {k: v[keep] for k, v in self.rows.items()}
        return rows, int(np.count_nonzero(~same_name)), int(np.count_nonzero(same_name & ~same_inputs))


#: columns a part may lack (written before they existed): the value a row takes then
_OPTIONAL = {f.part: f.fill for f in ROW_FIELDS if f.part not in ("loss", "flag")}
_OPTIONAL.update({"message": "", "image_block": "", "has_errors": True, "inputs": None,
                  "covariance": (), "n_masked": 0, "n_neighbours_fitted": 0})


def read_parts(folder: Path, columns: list[str] | None = None, model_id: str | None = None,
               each: Callable[[dict[str, np.ndarray]], None] | None = None) -> PartsRead:
    """Read every complete part under ``<folder>/parts``, oldest run first.

    Rows come in the order the runs wrote them (run start time, then batch), so
    where a galaxy was fitted more than once the LAST row is the newest fit.
    Parts that do not read (truncated, not Parquet, foreign or wrong columns)
    are listed in ``unreadable`` and skipped, with a warning naming them: their
    galaxies count as not fitted. With ``model_id``, parts that a run of
    another model wrote are listed in ``foreign`` and skipped likewise.

    ``each``: called with each part's rows in turn (every optional column
    filled), which are then dropped: the parts are streamed, and the
    :class:`PartsRead` returned holds no rows. A resume or ``galmoss collate``
    of 10^7 galaxies so never holds every row's theta and covariance at once.
    """
    pa, pq = _pyarrow()
    parts_dir = Path(folder) / PARTS_FOLDER
    found = [(_PART.match(p.name), p) for p in parts_dir.glob("part-*.parquet")] if parts_dir.is_dir() else []
    files = [p for m, p in sorted(((m, p) for m, p in found if m),
                                  key=lambda mp: (int(mp[0]["run"]), mp[0]["shard"], int(mp[0]["seq"]), mp[1].name))]
    chunks, good, bad, foreign, vectors = [], [], [], [], {}
    for path in files:
        try:
            raw = pq.read_table(path)
            meta = raw.schema.metadata or {}
            written_by = meta.get(b"galmoss_model")
            if model_id is not None and written_by is not None and written_by.decode() != model_id:
                log.warning("result part '%s' was written by a run of another model; it is skipped", path)
                foreign.append(path)
                continue
            chunk = _part_rows(pa, _expand_vectors(pa, raw), columns)
        except Exception as exc:  # noqa: BLE001 - any unreadable part is refitted, never read as data
            log.warning("result part '%s' cannot be read (%s); it is skipped and its galaxies count as not fitted",
                        path, exc)
            bad.append((path, f"{type(exc).__name__}: {exc}"))
            continue
        good.append(path)
        if meta.get(b"galmoss_vectors"):
            vectors.update(json.loads(meta[b"galmoss_vectors"]))
        if each is not None:
            each(_with_optional(chunk))
            continue
        chunks.append(chunk)
    if not chunks:
        return PartsRead({}, good, bad, vectors, foreign)
    keys = dict.fromkeys(k for chunk in chunks for k in chunk)
    rows = {}
    for key in keys:
        pieces = []
        for chunk in chunks:
            if key in chunk:
                pieces.append(chunk[key])
            else:
                fill = _OPTIONAL.get(key, np.nan)
                size = len(chunk["position"])
                filled = np.empty(size, dtype=object) if isinstance(fill, tuple) or fill is None else None
                if filled is not None:
                    filled[:] = [fill] * size
                pieces.append(filled if filled is not None else np.full(size, fill))
        rows[key] = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
    return PartsRead(rows, good, bad, vectors, foreign)


def _with_optional(chunk: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One part's rows with the optional columns it lacks (written before they existed) filled."""
    size = len(chunk["position"])
    for key, fill in _OPTIONAL.items():
        if key not in chunk:
            if isinstance(fill, tuple) or fill is None:
                chunk[key] = np.empty(size, dtype=object)
                chunk[key][:] = [fill] * size
            else:
                chunk[key] = np.full(size, fill)
    return chunk


def part_vectors(folder: Path) -> dict[str, list[str]]:
    """The vector parameters the parts' schema metadata lists (``galmoss_vectors``), read from the schemas alone."""
    _, pq = _pyarrow()
    vectors: dict[str, list[str]] = {}
    parts_dir = Path(folder) / PARTS_FOLDER
    for path in sorted(parts_dir.glob("part-*.parquet")) if parts_dir.is_dir() else []:
        try:
            meta = pq.read_schema(path).metadata or {}
        except Exception:  # noqa: BLE001 - an unreadable part is reported when it is read
            continue
        if meta.get(b"galmoss_vectors"):
            vectors.update(json.loads(meta[b"galmoss_vectors"]))
    return vectors


def _part_rows(pa, table, columns: list[str] | None) -> dict[str, np.ndarray]:
    """One part's columns as arrays of the types a run writes; raises when the part is not one of ours."""
    need = ["position", "galaxy_index", "loss", "flag", "theta"]
    if columns is not None:
        need += [c + suffix for c in columns for suffix in ("", "_err")]
    missing = sorted(set(need) - set(table.column_names))
    if missing:
        raise ValueError(f"missing columns {missing[:6]}{' ...' if len(missing) > 6 else ''}")
    rows: dict[str, np.ndarray] = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type):
            rows[name] = _list_rows(col.combine_chunks())
        elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            rows[name] = np.array(col.to_pylist(), dtype=object)
        else:
            rows[name] = col.to_numpy(zero_copy_only=False)
    if not (pa.types.is_integer(table.column("position").type)
            and pa.types.is_string(table.column("galaxy_index").type)):
        raise ValueError("position or galaxy_index is not of the type galmoss writes")
    if table.column("position").null_count or table.column("galaxy_index").null_count:
        raise ValueError("a position or galaxy_index is empty (null)")
    kinds = {f.part: f.dtype for f in ROW_FIELDS}
    kinds.update({"n_masked": np.int64, "n_neighbours_fitted": np.int64, "has_errors": np.bool_})
    for name, kind in kinds.items():
        if name not in rows:
            continue
        arrow = table.column(name).type
        fits = (pa.types.is_boolean(arrow) if kind is np.bool_ else pa.types.is_integer(arrow) if kind is np.int64
                else pa.types.is_floating(arrow) or pa.types.is_integer(arrow))
        if not fits or table.column(name).null_count:
            raise ValueError(f"column {name!r} is not of the type galmoss writes ({arrow}, or with nulls)")
        rows[name] = rows[name].astype(kind)
    if rows["theta"].dtype != object:
        raise ValueError("theta is not a list column")
    rows["position"] = rows["position"].astype(np.int64)
    for name in ["loss"] + need[5:]:
        rows[name] = rows[name].astype(np.float64)
    for key in ("message", "image_block"):
        if key in rows:
            rows[key] = np.array(["" if x is None else str(x) for x in rows[key]], dtype=object)
    return rows


def _list_rows(col) -> np.ndarray:
    """A list column as an object array of float64 rows (views of one buffer, no Python floats)."""
    out = np.empty(len(col), dtype=object)
    if col.null_count:
        out[:] = [np.asarray(x if x is not None else (), dtype=np.float64) for x in col.to_pylist()]
        return out
    flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    if hasattr(col, "offsets"):
        offsets = col.offsets.to_numpy() - col.offsets[0].as_py()
    else:  # a fixed-size list
        offsets = np.arange(len(col) + 1) * col.type.list_size
    out[:] = np.split(flat, offsets[1:-1]) if len(col) else []
    return out


def _lists(pa, rows: np.ndarray):
    """A list<float64> column of the rows of a 2-D array, built from its buffer (no Python lists)."""
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    offsets = np.arange(rows.shape[0] + 1, dtype=np.int32) * rows.shape[1]
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(rows.reshape(-1)))


def _fixed_lists(pa, rows: np.ndarray):
    """A fixed_size_list<float64, K> column: one vector parameter, K values a row."""
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    return pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1)), rows.shape[1])


def _expand_vectors(pa, table):
    """A part with each vector column (schema metadata ``galmoss_vectors``) split into its element columns."""
    meta = table.schema.metadata or {}
    raw = meta.get(b"galmoss_vectors")
    if not raw:
        return table
    for group, names in json.loads(raw).items():
        for suffix in ("", "_err"):
            if group + suffix not in table.column_names:
                continue
            col = table.column(group + suffix).combine_chunks()
            values = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), len(names))
            table = table.drop_columns([group + suffix])
            for k, name in enumerate(names):
                table = table.append_column(name + suffix, pa.array(values[:, k]))
    return table.replace_schema_metadata(None)
