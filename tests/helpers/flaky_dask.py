"""A dask task that loses its worker: ``fit_chunk`` raising ``KilledWorker`` (state kept here, by reference)."""

from __future__ import annotations

from types import SimpleNamespace

from galmoss.pipeline.run import fit_chunk

#: calls per chunk (keyed by its first position)
CALLS: dict[int, int] = {}
#: chunks (first positions) whose worker is lost on every try
ALWAYS_LOST: set[int] = set()


def flaky_fit_chunk(dataset, model, settings, positions, *args):
    from distributed import KilledWorker

    key = int(positions[0])
    CALLS[key] = CALLS.get(key, 0) + 1
    if key in ALWAYS_LOST or CALLS[key] == 1:
        raise KilledWorker(f"fit_chunk-{key}", SimpleNamespace(address="tcp://lost-worker:1"), 3)
    return fit_chunk(dataset, model, settings, positions, *args)
