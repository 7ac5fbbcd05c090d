"""The pipeline: catalogue in, batches through the pure batch fit, results out as the run goes.

``stream``  galaxies read ahead in threads, grouped (and padded) into batches
``store``   the results of a run, one row per galaxy
``parts``   each batch's rows as an atomic Parquet part (resume, shards, collate)
``sinks``   image blocks, written outside the fault barrier
``run``     the loop, locally or as dask tasks
``fitting`` ``gm.Fitting``, the seed's facade over all of it
``job``     ``galmoss fit JOB.toml``
``collate`` merge the parts of shards into one results table
"""

from .fitting import Fitting, default_device
from .store import ResultStore

__all__ = ["Fitting", "ResultStore", "default_device"]
