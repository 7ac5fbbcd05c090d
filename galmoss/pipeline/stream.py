"""The stream: galaxies read ahead in background threads, grouped into batches.

Galaxies of one cutout shape (and, with fitted neighbours, one neighbour
signature: :mod:`galmoss.fitting.neighbours`) go into one batch. When shapes are mixed and no
shape fills a batch, galaxies of similar shapes (within one step of a size
ladder, at most about 25 % larger) are padded with zero-weight pixels to the
largest of them, so batches fill and memory stays bounded: at most
``4 * batch_size`` galaxies wait in groups, plus ``read_ahead`` being read.
Padding adds pixels on the high-x and high-y sides only, so the 1-based pixel
frame of every galaxy is unchanged; padded pixels carry no weight, and outputs
are cut back to each galaxy's own shape.

Galaxies that cannot be fitted (unreadable files, fully masked, no source, ...)
pass through as :class:`Unfitted` records so their rows are written too.

With ``prepare_workers`` > 0 the host work (reading, checks, stacking and the
``prepare`` step, the image-based starts) runs in that many worker processes
instead of this process's threads, each on a block of ``batch_size`` galaxies at
a time, so that it scales with the cores a machine has (threads share one
interpreter's lock). Blocks come back in order, at most two per worker ahead of
the consumer; galaxies are grouped into batches within a block, so with mixed
cutout sizes a block can end in a part-filled batch (a galaxy's fit does not
depend on its batch).
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import queue
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np

from ..data import Dataset, GalaxyData
from ..fitting.batch import Batch
from ..fitting.neighbours import signature
from ..flags import Flag

__all__ = ["BatchStream", "Unfitted", "bucket_size"]

log = logging.getLogger("galmoss")


@dataclass
class Unfitted:
    """Galaxies that are not fitted, with their flags and messages."""

    positions: np.ndarray
    names: list[str]
    flags: np.ndarray
    messages: list[list[str]]


_LADDER = [8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512]


def bucket_size(n: int) -> int:
    """The ladder step a cutout side of ``n`` pixels pads up to."""
    for step in _LADDER:
        if n <= step:
            return step
    return int(np.ceil(n / 128.0) * 128)


class BatchStream:
    """Iterate over the batches of ``positions`` of a dataset.

    Parameters
    ----------
    dataset
        Where the galaxies come from.
    positions
        Which galaxies (dataset positions), in the order to read them.
    batch_size
        Galaxies per batch.
    read_workers
        Threads reading files (FITS decoding releases the GIL for the I/O).
    read_ahead
        Galaxies read ahead of the fit (default ``2 * batch_size``).
    pad
        Pad galaxies of similar shapes into full batches when shapes are mixed.
    likelihood
        The likelihood's name: with ``"poisson"`` negative pixels are masked and
        flagged (a Poisson likelihood needs counts >= 0).
    prepare
        A function applied to every batch (e.g.
        :func:`galmoss.fitting.measure.with_estimates`). With it the batches are
        stacked and prepared in a background thread, ``prefetch`` batches ahead
        of the consumer, so that this host work overlaps the fit of the batch
        before.
    prefetch
        Batches prepared ahead (with ``prepare``).
    prepare_workers
        Worker processes that read, stack and prepare the batches (0: this
        process's threads). Workers are started by ``spawn``: a script that
        fits with them keeps its fitting code under ``if __name__ ==
        "__main__":`` (Python's rule for processes it starts).
    """

    def __init__(
        self,
        dataset: Dataset,
        positions: np.ndarray,
        batch_size: int,
        *,
        read_workers: int = 2,
        read_ahead: int | None = None,
        pad: bool = True,
        likelihood: str = "chi2",
        prepare: Callable[[Batch], Batch] | None = None,
        prefetch: int = 2,
        prepare_workers: int = 0,
    ) -> None:
        self.dataset = dataset
        self.positions = np.asarray(positions, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.read_workers = max(1, int(read_workers))
        self.read_ahead = int(read_ahead or 2 * self.batch_size)
        self.pad = pad
        self.likelihood = likelihood
        self.max_waiting = 4 * self.batch_size
        self.prepare = prepare
        self.prefetch = max(1, int(prefetch))
        self.prepare_workers = max(0, int(prepare_workers))

    def galaxies(self) -> Iterator[GalaxyData]:
        """Galaxies in order, each read by a background thread ahead of its use."""
        try:
            with ThreadPoolExecutor(max_workers=self.read_workers, thread_name_prefix="galmoss-read") as pool:
                pending: deque = deque()
                it = iter(self.positions.tolist())
                exhausted = False
                while True:
                    while not exhausted and len(pending) < self.read_ahead:
                        try:
                            pending.append(pool.submit(self.dataset.load, next(it)))
                        except StopIteration:
                            exhausted = True
                    if not pending:
                        return
                    yield pending.popleft().result()
        finally:
            self.dataset.close()

    def __iter__(self) -> Iterator[Batch | Unfitted]:
        return self._from_workers() if self.prepare_workers else self._in_threads()

    def _in_threads(self) -> Iterator[Batch | Unfitted]:
        """The batches read by this process's threads, prepared ahead in one of them (with ``prepare``)."""
        return self._batches() if self.prepare is None else _ahead(self._batches(), self.prepare, self.prefetch)

    def _from_workers(self) -> Iterator[Batch | Unfitted]:
        """The batches of blocks of ``batch_size`` galaxies, each read and prepared in a worker process."""
        if getattr(multiprocessing.current_process(), "_inheriting", False):
            # a spawned worker still starting, re-running the script that started it (the flag is the one
            # Python's own check reads): said plainly, in the worker
            raise RuntimeError(_UNGUARDED)
        pool, shared = self._start_workers()
        if pool is None:
            log.warning("prepare_workers: this machine's shared memory cannot hold the worker processes' start "
                        "(a small or read-only /dev/shm); the batches are prepared in this process's threads")
            yield from self._in_threads()
            return
        blocks = (self.positions[i : i + self.batch_size] for i in range(0, len(self.positions), self.batch_size))
        try:
            with pool:
                try:
                    pending: deque = deque()
                    for block in blocks:
                        pending.append(pool.submit(_prepare_block, block))
                        if len(pending) >= 2 * self.prepare_workers:
                            yield from _block_result(pending.popleft())
                    while pending:
                        yield from _block_result(pending.popleft())
                finally:
                    # a consumer that stops early: the blocks queued are not prepared
                    pool.shutdown(wait=True, cancel_futures=True)
        finally:
            _release(shared)
            self.dataset.close()

    def _start_workers(self) -> tuple[ProcessPoolExecutor | None, shared_memory.SharedMemory | None]:
        """The worker pool and the shared memory that hands them the dataset; (None, None) where it cannot start.

        A worker's start arguments go into a pipe whose reading end Python holds itself, so a worker that
        dies while starting (killed for memory, a script without a main guard) would leave that write, and
        the run, hanging once they pass the pipe's 64 KB: a larger dataset goes through shared memory.
        """
        dataset = pickle.dumps(self.dataset, protocol=pickle.HIGHEST_PROTOCOL)
        shared = None
        if len(dataset) > _INLINE_BYTES:
            shared = _shared_copy(dataset)
            if shared is None:
                return None, None
        handle = ("shared", shared.name, len(dataset)) if shared is not None else ("bytes", dataset)
        options = dict(batch_size=self.batch_size, read_workers=1, pad=self.pad, likelihood=self.likelihood)
        try:
            pool = ProcessPoolExecutor(self.prepare_workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_start_worker, initargs=(handle, options, self.prepare))
        except OSError:  # no semaphores (a read-only /dev/shm)
            _release(shared)
            return None, None
        return pool, shared

    def _batches(self) -> Iterator[Batch | Unfitted]:
        groups: dict[tuple, list[GalaxyData]] = {}
        waiting = 0
        for gal in self.galaxies():
            if self.likelihood == "poisson" and gal.usable:
                _mask_negative(gal)
            if not gal.usable:
                yield Unfitted(np.array([gal.position]), [gal.name], np.array([gal.flags], dtype=np.int64),
                               [list(gal.messages)])
                continue
            # galaxies with fitted neighbours: one batch per neighbour signature (galmoss.fitting.neighbours)
            key = (gal.shape, gal.psf is not None, signature(gal.neighbours))
            group = groups.setdefault(key, [])
            group.append(gal)
            waiting += 1
            if len(group) == self.batch_size:
                waiting -= len(group)
                yield make_batch(groups.pop(key))
            elif self.pad and waiting > self.max_waiting:
                batch = self._padded(groups)
                waiting -= len(batch)
                yield batch
        while groups:
            if self.pad and len(groups) > 1:
                batch = self._padded(groups)
            else:
                key = next(iter(groups))
                gals = groups.pop(key)
                batch = make_batch(gals[: self.batch_size])
                if len(gals) > self.batch_size:
                    groups[key] = gals[self.batch_size:]
            yield batch

    def _padded(self, groups: dict[tuple, list[GalaxyData]]) -> Batch:
        """One batch from the bucket of similar shapes with the most galaxies waiting."""
        buckets: dict[tuple, list[tuple]] = {}
        for key in groups:
            (h, w), has_psf, sig = key
            buckets.setdefault((bucket_size(h), bucket_size(w), has_psf, sig), []).append(key)
        best = max(buckets.values(), key=lambda keys: sum(len(groups[k]) for k in keys))
        chosen: list[GalaxyData] = []
        for key in sorted(best, key=lambda k: -len(groups[k])):
            room = self.batch_size - len(chosen)
            if room <= 0:
                break
            gals = groups[key]
            chosen += gals[:room]
            if len(gals) > room:
                groups[key] = gals[room:]
            else:
                del groups[key]
        return make_batch(chosen)


def _ahead(items: Iterator, prepare: Callable[[Batch], Batch], depth: int) -> Iterator:
    """``items`` with ``prepare`` applied to each :class:`Batch`, produced by a background thread ``depth`` ahead.

    An error in the thread is raised to the consumer at the item where it
    happened; a consumer that stops early stops the thread (and closes ``items``,
    which closes the dataset).
    """
    out: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand_over(entry) -> bool:
        while not stop.is_set():
            try:
                out.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if isinstance(item, Batch):
                    item = prepare(item)
                if not hand_over(("item", item)):
                    return
            hand_over(("done", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            hand_over(("error", exc))
        finally:
            items.close()

    worker = threading.Thread(target=produce, name="galmoss-batches", daemon=True)
    worker.start()
    try:
        while True:
            kind, item = out.get()
            if kind == "done":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        # it stops after the item in hand; a read that hangs (a stalled network disk) must not hold
        # an interrupted run: the thread is a daemon and ends with the process
        worker.join(timeout=10.0)


_UNGUARDED = ("prepare_workers: a worker process is re-running the script that started it; keep the script's "
              "fitting code under 'if __name__ == \"__main__\":' (Python's rule for the processes it spawns)")


def _block_result(future) -> list[Batch | Unfitted]:
    try:
        return future.result()
    except BrokenProcessPool:
        raise RuntimeError(
            "prepare_workers: a worker process ended abruptly: killed for memory (fewer prepare_workers or a "
            "smaller batch_size), or a script whose fitting code is not under 'if __name__ == \"__main__\":' "
            "(spawned workers re-run it)"
        ) from None


#: a dataset description up to this size goes with a worker's start (a pipe holds 64 KB), a larger one through
#: shared memory
_INLINE_BYTES = 32 * 1024

#: a worker process's dataset, stream options and preparation (set once, by :func:`_start_worker`)
_WORKER: dict = {}


def _start_worker(handle: tuple, options: dict, prepare: Callable[[Batch], Batch] | None) -> None:
    import torch

    torch.set_num_threads(1)  # one core per worker: the workers are the parallelism
    # Ctrl-C is the fitting process's to handle (it stops the workers); a worker whose fitting process
    # is gone (killed) ends too, not holding its copy of the dataset
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_end_with, args=(parent.sentinel,), daemon=True).start()
    if handle[0] == "bytes":
        dataset = pickle.loads(handle[1])
    else:
        shared = shared_memory.SharedMemory(name=handle[1])
        try:
            dataset = pickle.loads(shared.buf[: handle[2]])
        finally:
            shared.close()  # the fitting process removes the block
    _WORKER.update(dataset=dataset, options=options, prepare=prepare)


def _end_with(sentinel) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(0)


def _shared_copy(data: bytes) -> shared_memory.SharedMemory | None:
    """``data`` in a new shared-memory block, or None where the shared memory cannot hold it."""
    try:  # a full tmpfs would not fail the copy but kill this process (SIGBUS) at the first page it lacks
        free = os.statvfs("/dev/shm")
        if free.f_bavail * free.f_frsize < 2 * len(data):
            return None
    except OSError:
        pass  # no /dev/shm (macOS): shm_open has its own store
    try:
        shared = shared_memory.SharedMemory(create=True, size=len(data))
    except OSError:
        return None
    shared.buf[: len(data)] = data
    return shared


def _release(shared: shared_memory.SharedMemory | None) -> None:
    if shared is not None:
        shared.close()
        shared.unlink()


def _prepare_block(positions: np.ndarray) -> list[Batch | Unfitted]:
    """The batches of one block of galaxies, read and prepared in a worker process."""
    stream = BatchStream(_WORKER["dataset"], positions, **_WORKER["options"])
    prepare = _WORKER["prepare"]
    return [prepare(item) if prepare is not None and isinstance(item, Batch) else item for item in stream._batches()]


def _mask_negative(gal: GalaxyData) -> None:
    negative = (gal.image < 0) & (gal.weight > 0)
    count = int(negative.sum())
    if not count:
        return
    rows, cols = np.nonzero(negative)
    where = ", ".join(f"({c + 1}, {r + 1})" for r, c in zip(rows[:5], cols[:5])) + (", ..." if count > 5 else "")
    gal.weight = np.where(negative, 0.0, gal.weight)
    gal.flags |= Flag.negative_pixels
    gal.messages.append(
        f"{count} negative pixels masked for the Poisson likelihood (x, y 1-based: {where}); give images in counts "
        "with the sky included, or use likelihood='chi2'"
    )
    if not np.any(gal.weight > 0):
        gal.flags |= Flag.fully_masked


def make_batch(gals: list[GalaxyData]) -> Batch:
    """Stack galaxies into a batch, padding cutouts (weight 0) and PSFs (centre kept) to common shapes."""
    h = max(g.image.shape[0] for g in gals)
    w = max(g.image.shape[1] for g in gals)
    n = len(gals)
    if all(g.image.shape == (h, w) for g in gals):  # one shape (the common case): each plane copied once
        image = np.stack([g.image for g in gals]).astype(np.float64, copy=False)
        sigma = np.stack([g.sigma for g in gals]).astype(np.float64, copy=False)
        weight = np.stack([g.weight for g in gals]).astype(np.float64, copy=False)
    else:
        image = np.zeros((n, h, w))
        sigma = np.ones((n, h, w))
        weight = np.zeros((n, h, w))
        for i, g in enumerate(gals):
            gh, gw = g.image.shape
            image[i, :gh, :gw] = g.image
            sigma[i, :gh, :gw] = g.sigma
            weight[i, :gh, :gw] = g.weight
    psf = None
    if gals[0].psf is not None:
        psf = np.stack(_pad_psfs([g.psf for g in gals]))
    segments = None
    if any(getattr(g, "segment", None) is not None for g in gals):
        # automatic masks: the target's segment seeds the image-based starts (zero = none found)
        segments = np.zeros((n, h, w), dtype=bool)
        for i, g in enumerate(gals):
            if getattr(g, "segment", None) is not None:
                gh, gw = g.segment.shape
                segments[i, :gh, :gw] = g.segment
    neighbours = neighbour_pixels = None
    if any(getattr(g, "neighbour_pixels", None) is not None for g in gals):
        neighbours = [list(getattr(g, "neighbours", None) or []) for g in gals]
        neighbour_pixels = np.zeros((n, h, w), dtype=bool)
        for i, g in enumerate(gals):
            if getattr(g, "neighbour_pixels", None) is not None:
                gh, gw = g.neighbour_pixels.shape
                neighbour_pixels[i, :gh, :gw] = g.neighbour_pixels
    return Batch(
        positions=np.array([g.position for g in gals], dtype=np.int64),
        names=[g.name for g in gals],
        image=image,
        sigma=sigma,
        weight=weight,
        psf=psf,
        shapes=[tuple(g.image.shape) for g in gals],
        flags=np.array([int(g.flags) for g in gals], dtype=np.int64),
        messages=[list(g.messages) for g in gals],
        segments=segments,
        n_masked=np.array([int(getattr(g, "n_masked", 0)) for g in gals], dtype=np.int64),
        neighbours=neighbours,
        neighbour_pixels=neighbour_pixels,
    )


def _pad_psfs(psfs: list[np.ndarray]) -> list[np.ndarray]:
    """Pad PSFs to a common shape keeping each centre pixel (h//2, w//2) in place."""
    h = max(p.shape[0] for p in psfs)
    w = max(p.shape[1] for p in psfs)
    out = []
    for p in psfs:
        if p.shape == (h, w):
            out.append(p)
            continue
        top = h // 2 - p.shape[0] // 2
        left = w // 2 - p.shape[1] // 2
        out.append(np.pad(p, ((top, h - p.shape[0] - top), (left, w - p.shape[1] - left))))
    return out
