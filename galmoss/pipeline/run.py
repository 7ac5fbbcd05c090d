"""A run: the stream mapped through the pure batch fit, into the store and the sinks.

Locally, batches are fitted one after the other while the stream's threads read
the next galaxies. With a ``dask.distributed`` client, the galaxies are cut into
chunks; each chunk is a task that reads, fits and returns its rows (the same
:func:`~galmoss.fitting.batch.fit_batch_safely` on the same batches), and the
driver writes parts and blocks as tasks finish.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from .._compat import torch_threads
from ..data import Dataset
from ..errors import OutputError
from ..fitting.batch import Batch, BatchResult, FitSettings, check_model_output, fit_batch_safely
from ..fitting.measure import with_estimates
from ..flags import Flag
from ..model import Model
from .stream import BatchStream, Unfitted

log = logging.getLogger("galmoss")

__all__ = ["GalaxyInputs", "LostResult", "clear_outputs", "compare_galaxies", "fit_chunk", "galaxy_inputs",
           "iterate_results", "model_changes",
           "model_id", "other_run", "refuse_other_run", "shard_positions", "write_run_description"]

RUN_FILE = "run.json"
GALAXIES_FILE = "galaxies.parquet"


def shard_positions(n: int, shard: tuple[int, int] | None) -> np.ndarray:
    """The dataset positions of shard ``(k, n_shards)`` (1-based k): a contiguous k-th part."""
    if shard is None:
        return np.arange(n, dtype=np.int64)
    k, parts = shard
    lo, hi = (k - 1) * n // parts, k * n // parts
    return np.arange(lo, hi, dtype=np.int64)


def _results_of(stream: BatchStream, model: Model, settings: FitSettings, check_first: bool):
    checked = not check_first
    for item in stream:
        if isinstance(item, Unfitted):
            yield None, BatchResult.empty(model, item.positions, item.names, item.flags, item.messages,
                                          settings.covariance)
            continue
        if not checked:
            check_model_output(model, item, settings)
            checked = True
        yield item, fit_batch_safely(model, item, settings)


def _preparation(model: Model):
    """What the stream does to each batch ahead of its fit: measure the image-based starts the model needs."""
    return with_estimates if model.auto_parameters else None


def fit_chunk(dataset: Dataset, model: Model, settings: FitSettings, positions: np.ndarray, batch_size: int,
              read_workers: int = 1, pad: bool = True, threads: int | None = None) -> list[tuple[Batch | None, BatchResult]]:
    """Read and fit the galaxies ``positions`` (a dask task; pure but for reading the inputs).

    ``threads``: torch's intra-op threads for the task on a CPU (a dask worker
    process otherwise takes one per core, whatever its own thread count).
    """
    stream = BatchStream(dataset, positions, batch_size, read_workers=read_workers, pad=pad,
                         likelihood=settings.likelihood, prepare=_preparation(model))
    with torch_threads(threads if settings.torch_device.type == "cpu" else None):
        return list(_results_of(stream, model, settings, check_first=False))


def probe_model(dataset: Dataset, model: Model, settings: FitSettings, positions: np.ndarray, pad: bool = True,
                batch_size: int = 8) -> None:
    """Check the profiles' output on the first batch read from the first 8 galaxies (raises a configuration error)."""
    probe = BatchStream(dataset, positions[: min(len(positions), 8)], batch_size, read_workers=1, pad=pad,
                        likelihood=settings.likelihood)
    for item in probe:
        if isinstance(item, Batch):
            check_model_output(model, item, settings)  # it tries the first 3 together and one by one
            return


def iterate_results(
    dataset: Dataset,
    model: Model,
    settings: FitSettings,
    positions: np.ndarray,
    batch_size: int,
    *,
    read_workers: int = 2,
    pad: bool = True,
    client=None,
    chunk_size: int | None = None,
    threads: int | None = None,
    prepare_workers: int = 0,
) -> Iterator[tuple[Batch | None, BatchResult]]:
    """Fitted batches (and their inputs) of ``positions``, locally or on a dask cluster.

    The first batch is checked for profiles that draw the wrong shape before
    anything else is fitted (a configuration error raises here).
    """
    if client is None:
        stream = BatchStream(dataset, positions, batch_size, read_workers=read_workers, pad=pad,
                             likelihood=settings.likelihood, prepare=_preparation(model),
                             prepare_workers=prepare_workers)
        yield from _results_of(stream, model, settings, check_first=True)
        return
    from dask.distributed import as_completed

    # check the model once on the driver, on the first readable galaxy
    probe_model(dataset, model, settings, positions, pad, batch_size)
    size = int(chunk_size or max(batch_size, 4 * batch_size))
    chunks = [positions[i : i + size] for i in range(0, len(positions), size)]
    data_f, model_f = _scatter(client, dataset, model)
    # a task whose worker is lost is run again elsewhere (dask's retries); one that still fails
    # flags its own galaxies, never the run
    futures = {client.submit(fit_chunk, data_f, model_f, settings, chunk, batch_size, 1, pad, threads, pure=False,
                             retries=TASK_RETRIES): chunk for chunk in chunks}
    for future in as_completed(futures):
        chunk = futures[future]
        try:
            pairs = future.result()
        except Exception as exc:  # noqa: BLE001 - a lost worker or a task's error: its galaxies are flagged
            why = _describe_error(exc)
            log.error("dask task of %d galaxies failed after %d retries (%s); they are flagged fit_error",
                      len(chunk), TASK_RETRIES, why)
            pairs = [(None, LostResult.empty(model, chunk, [dataset.names[int(p)] for p in chunk],
                                             np.full(len(chunk), int(Flag.fit_error)),
                                             [f"not fitted: its dask task failed ({why}); a resume fits it"]
                                             * len(chunk), settings.covariance))]
        for pair in pairs:
            yield pair
        future.release()


class LostResult(BatchResult):
    """Rows of galaxies whose dask task failed (flag ``fit_error``).

    They go into the results, never into a part, so a resumed run fits them.
    """


#: how often dask runs a task again whose worker was lost (or that raised) before its galaxies are flagged
TASK_RETRIES = 2


def _scatter(client, dataset: Dataset, model: Model):
    """The dataset and model sent to the workers once; a worker lost meanwhile is tried again, then left to dask.

    When sending fails three times, the objects go with each task instead
    (dask moves them where the task runs), so a lost worker never stops the run.
    """
    for attempt in range(3):
        try:
            return client.scatter([dataset, model], broadcast=True)
        except Exception as exc:  # noqa: BLE001 - a worker lost while the data are sent out
            log.warning("sending the dataset to the dask workers failed (%s); %s", _describe_error(exc),
                        "trying again" if attempt < 2 else "each task carries it instead")
    return dataset, model


def _describe_error(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - an exception whose message cannot be built still has a name
        text = ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


#: the keys of run.json that say which model a run fits (a resume or a rerun must keep them)
MODEL_KEYS = ("columns", "free", "profiles", "method", "likelihood", "n_galaxies", "priors")
#: what a run.json written before a key existed means by its absence
_MODEL_DEFAULTS = {"priors": []}


def model_changes(before: dict, description: dict) -> list[str]:
    """The :data:`MODEL_KEYS` in which the run described by ``before`` (a run.json) differs from this one."""
    now = json.loads(json.dumps({k: description.get(k) for k in MODEL_KEYS}, default=str))
    return [k for k in MODEL_KEYS if before.get(k, _MODEL_DEFAULTS.get(k)) != now[k]]


def model_id(description: dict) -> str:
    """A short fingerprint of the model a run fits (its :data:`MODEL_KEYS`), stamped on every part."""
    text = json.dumps({k: description.get(k) for k in MODEL_KEYS}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def galaxy_inputs(dataset: Dataset, folder: Path) -> "GalaxyInputs":
    """Each galaxy's input files as one string (recorded per galaxy in parts and ``galaxies.parquet``).

    Paths are relative to the result folder, so a project moved whole keeps
    them; a galaxy of an image set is its file and plane; arrays have none ("").
    The strings are made when asked for (:class:`GalaxyInputs`), never held for
    every galaxy.
    """
    return GalaxyInputs(dataset, folder)


class GalaxyInputs(Sequence):
    """The input-file strings of a dataset's galaxies, made one at a time from the dataset's own paths.

    A sequence (``len``, ``inputs[i]``, slices, iteration) that holds no
    string per galaxy: a run of 10^7 galaxies would otherwise keep 10^7 of them.
    """

    def __init__(self, dataset: Dataset, folder: Path) -> None:
        self.dataset = dataset
        self.base = os.path.abspath(folder)
        self.folders: dict[str, str] = {}  # each folder of cutouts is resolved once
        self.cube = None if dataset._image_set is None else self._rel(dataset._image_set.path)

    def _rel(self, p) -> str:
        head, tail = os.path.split(os.fspath(p))
        if head not in self.folders:
            try:
                self.folders[head] = os.path.relpath(os.path.abspath(head or os.curdir), self.base)
            except ValueError:  # another drive
                self.folders[head] = os.path.abspath(head or os.curdir)
        return tail if self.folders[head] == os.curdir else os.path.join(self.folders[head], tail)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = int(index)
        if not -len(self) <= i < len(self):
            raise IndexError(f"galaxy {i} out of range")
        i %= len(self)
        ds = self.dataset
        if ds._arrays is not None:
            return ""
        if self.cube is not None:
            return f"{self.cube}[{i}]"
        return ";".join(f"{what}={'' if p is None else self._rel(p)}" for what, p in
                        (("image", ds.image_paths[i]), ("sigma", ds.sigma_paths[i]),
                         ("psf", ds.psf_paths[i]), ("mask", ds.mask_paths[i])))


#: galaxies compared or written at a time in galaxies.parquet
GALAXY_CHUNK = 16384


def compare_galaxies(folder: Path, names: Sequence[str], inputs: Sequence[str] | None) -> tuple[bool, str] | None:
    """Whether ``galaxies.parquet`` holds these names, and whether these inputs, read a chunk at a time.

    Returns
    -------
    (bool, str) or None
        Whether the names are the same, and ``"same"``, ``"differ"`` or
        ``"absent"`` (the file records no inputs) for the inputs; None when
        there is no readable file.
    """
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(Path(folder) / GALAXIES_FILE)
        columns = handle.schema_arrow.names
        if "galaxy_index" not in columns:
            return None
        same_names = handle.metadata.num_rows == len(names)
        state = "absent" if "inputs" not in columns else "same" if same_names else "differ"
        lo = 0
        wanted = ["galaxy_index"] + (["inputs"] if "inputs" in columns and inputs is not None else [])
        # one thread: the reading threads of pyarrow each keep the memory they used (tens of MB)
        chunks = handle.iter_batches(batch_size=GALAXY_CHUNK, columns=wanted, use_threads=False)
        for chunk in chunks if same_names else ():
            hi = lo + chunk.num_rows
            if [str(x) for x in chunk.column(0).to_pylist()] != list(names[lo:hi]):
                return False, state
            if len(wanted) == 2 and state == "same" and \
                    [str(x) for x in chunk.column(1).to_pylist()] != list(inputs[lo:hi]):
                state = "differ"
            lo = hi
    except Exception:  # noqa: BLE001 - absent, cut short or foreign: the folder holds no galaxies we know
        return None
    return same_names, state


def write_run_description(folder: Path, description: dict, names: list[str], inputs: list[str] | None = None) -> None:
    """``run.json`` and ``galaxies.parquet`` (position -> galaxy_index, input files) in the result folder.

    Every shard writes the same bytes, atomically, so concurrent shards never
    corrupt them; ``galaxies.parquet`` is rewritten when the galaxies or their
    inputs differ from those it holds (a resumed run with a changed catalogue).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(folder)
    text = json.dumps(description, indent=1, sort_keys=True, default=str)
    tmp = folder / f".{RUN_FILE}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)  # a link left at the temporary name is removed, never written through
    tmp.write_text(text)
    os.replace(tmp, folder / RUN_FILE)
    target = folder / GALAXIES_FILE
    if target.exists():
        held = compare_galaxies(folder, names, inputs)
        if held is not None and held[0] and held[1] == ("absent" if inputs is None else "same"):
            return
    schema = pa.schema([("position", pa.int64()), ("galaxy_index", pa.string())]
                       + ([("inputs", pa.string())] if inputs is not None else []))
    tmp = folder / f".{GALAXIES_FILE}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    with pq.ParquetWriter(tmp, schema) as writer:  # a chunk of galaxies at a time
        for lo in range(0, max(len(names), 1), GALAXY_CHUNK):
            hi = min(lo + GALAXY_CHUNK, len(names))
            columns = [pa.array(np.arange(lo, hi, dtype=np.int64)), pa.array(list(names[lo:hi]), type=pa.string())]
            if inputs is not None:
                columns.append(pa.array(list(inputs[lo:hi]), type=pa.string()))
            writer.write_table(pa.Table.from_arrays(columns, schema=schema))
    os.replace(tmp, target)


def read_galaxies(folder: Path) -> tuple[list[str], list[str] | None] | None:
    """The galaxy names and input files ``galaxies.parquet`` holds (None: no such file, or unreadable)."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(Path(folder) / GALAXIES_FILE)
        names = [str(x) for x in table.column("galaxy_index").to_pylist()]
        inputs = [str(x) for x in table.column("inputs").to_pylist()] if "inputs" in table.column_names else None
    except Exception:  # noqa: BLE001 - absent, cut short or foreign: the folder holds no galaxies we know
        return None
    return names, inputs


def read_run_description(folder: Path) -> dict:
    path = Path(folder) / RUN_FILE
    if not path.is_file():
        raise OutputError(f"'{folder}' holds no {RUN_FILE}: it is not a galmoss result folder")
    return json.loads(path.read_text())


def holds_parts(folder: Path) -> bool:
    from .parts import PARTS_FOLDER

    parts = Path(folder) / PARTS_FOLDER
    return parts.is_dir() and any(parts.glob("part-*.parquet"))


def other_run(folder: Path, description: dict, names: list[str], inputs: list[str]) -> list[str]:
    """What differs between this run and the run whose parts ``folder`` holds (empty: none, or the same run).

    Shards of one run, and the same run again, are the same run.
    """
    if not holds_parts(folder):
        return []
    try:
        before = json.loads((Path(folder) / RUN_FILE).read_text())
        changed = model_changes(before, description)
    except (OSError, ValueError, AttributeError):
        changed = [RUN_FILE]
    galaxies = compare_galaxies(folder, names, inputs)
    if galaxies is None or not galaxies[0]:
        changed.append("galaxy names")
    elif galaxies[1] == "differ":
        changed.append("input files")
    return changed


def refuse_other_run(folder: Path, description: dict, names: list[str], inputs: list[str]) -> None:
    """A plain run into a folder holding the parts of another run (model, galaxies or inputs) is refused."""
    changed = other_run(folder, description, names, inputs)
    if changed:
        raise OutputError(
            f"result folder '{folder}' holds the parts of another run ({', '.join(changed)} differ); "
            "resume it (fit(resume=True), --resume: galaxies whose model or inputs changed are fitted again), "
            "clear galmoss's outputs there (fit(overwrite=True), --overwrite), or give another result folder"
        )


def clear_outputs(folder: Path) -> list[Path]:
    """Remove galmoss's own outputs in ``folder``: parts, ``run.json``, ``galaxies.parquet``, ``results.*``.

    Nothing else is touched (a file the user keeps there stays); a link is
    removed, never followed. Returns the paths removed.
    """
    from .parts import PARTS_FOLDER

    folder = Path(folder)
    removed: list[Path] = []
    parts = folder / PARTS_FOLDER
    targets = [folder / name for name in (RUN_FILE, GALAXIES_FILE, "results.fits", "results.csv")]
    if parts.is_dir() and not parts.is_symlink():
        targets += [p for p in parts.iterdir() if p.name.startswith(("part-", ".part-"))
                    and p.name.endswith((".parquet", ".parquet.tmp"))]
    for path in targets:
        if path.is_symlink() or path.is_file():
            path.unlink()
            removed.append(path)
    if parts.is_dir() and not parts.is_symlink() and not any(parts.iterdir()):
        parts.rmdir()
    return removed


class Progress:
    """Galaxies fitted (not read), with rate and time left (tqdm)."""

    def __init__(self, total: int, enabled: bool | None) -> None:
        self.bar = None
        if enabled is not False:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="galaxy", desc="galmoss fit",
                            disable=None if enabled is None else not enabled, leave=False)
        self.start = time.perf_counter()

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> float:
        if self.bar is not None:
            self.bar.close()
        return time.perf_counter() - self.start
