"""A run: the stream mapped through the pure batch fit, into the store and the sinks.

Locally, batches are fitted one after the other while the stream's threads read
the next galaxies. With a ``dask.distributed`` client, the galaxies are cut into
chunks; each chunk is a task that reads, fits and returns its rows (the same
:func:`~galmoss.fitting.batch.fit_batch_safely` on the same batches), and the
driver writes parts and blocks as tasks finish.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .._compat import torch_threads
from ..data import Dataset
from ..errors import OutputError
from ..fitting.batch import Batch, BatchResult, FitSettings, check_model_output, fit_batch_safely
from ..model import Model
from .stream import BatchStream, Unfitted

log = logging.getLogger("galmoss")

__all__ = ["fit_chunk", "iterate_results", "shard_positions", "write_run_description"]

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


def fit_chunk(dataset: Dataset, model: Model, settings: FitSettings, positions: np.ndarray, batch_size: int,
              read_workers: int = 1, pad: bool = True, threads: int | None = None) -> list[tuple[Batch | None, BatchResult]]:
    """Read and fit the galaxies ``positions`` (a dask task; pure but for reading the inputs).

    ``threads``: torch's intra-op threads for the task on a CPU (a dask worker
    process otherwise takes one per core, whatever its own thread count).
    """
    stream = BatchStream(dataset, positions, batch_size, read_workers=read_workers, pad=pad,
                         likelihood=settings.likelihood)
    with torch_threads(threads if settings.torch_device.type == "cpu" else None):
        return list(_results_of(stream, model, settings, check_first=False))


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
) -> Iterator[tuple[Batch | None, BatchResult]]:
    """Fitted batches (and their inputs) of ``positions``, locally or on a dask cluster.

    The first batch is checked for profiles that draw the wrong shape before
    anything else is fitted (a configuration error raises here).
    """
    if client is None:
        stream = BatchStream(dataset, positions, batch_size, read_workers=read_workers, pad=pad,
                             likelihood=settings.likelihood)
        yield from _results_of(stream, model, settings, check_first=True)
        return
    from dask.distributed import as_completed

    # check the model once on the driver, on the first readable galaxy
    probe = BatchStream(dataset, positions[: min(len(positions), 8)], batch_size, read_workers=1, pad=pad)
    for item in probe:
        if isinstance(item, Batch):
            check_model_output(model, item, settings)  # it tries the first 3 together and one by one
            break
    size = int(chunk_size or max(batch_size, 4 * batch_size))
    chunks = [positions[i : i + size] for i in range(0, len(positions), size)]
    data_f, model_f = client.scatter([dataset, model], broadcast=True)
    futures = [client.submit(fit_chunk, data_f, model_f, settings, chunk, batch_size, 1, pad, threads, pure=False)
               for chunk in chunks]
    for future in as_completed(futures):
        for pair in future.result():
            yield pair
        future.release()


def write_run_description(folder: Path, description: dict, names: list[str]) -> None:
    """``run.json`` and ``galaxies.parquet`` (position -> galaxy_index) in the result folder.

    Every shard writes the same bytes, atomically, so concurrent shards never
    corrupt them.
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
    if not target.exists():
        tmp = folder / f".{GALAXIES_FILE}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        pq.write_table(pa.table({"position": np.arange(len(names), dtype=np.int64),
                                 "galaxy_index": pa.array(names, type=pa.string())}), tmp)
        os.replace(tmp, target)


def read_run_description(folder: Path) -> dict:
    path = Path(folder) / RUN_FILE
    if not path.is_file():
        raise OutputError(f"'{folder}' holds no {RUN_FILE}: it is not a galmoss result folder")
    return json.loads(path.read_text())


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
