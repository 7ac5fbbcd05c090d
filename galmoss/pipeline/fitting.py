"""``gm.Fitting``: the seed's facade over the stream, the batch fit, the store and the sinks.

The seed's API::

    fitting = gm.Fitting(dataset=dataset, batch_size=64, iteration=1000)
    fitting.fit()
    fitting.uncertainty(method="covar_mat")     # or "bootstrap"
    fitting.results                             # astropy Table, one row per galaxy

What happens in ``fit()``:

1. configuration is checked and output folders are created and proven
   writable (an error here means nothing was fitted);
2. a :class:`~galmoss.pipeline.stream.BatchStream` reads galaxies ahead in
   background threads and groups them into batches;
3. each batch goes through :func:`~galmoss.fitting.batch.fit_batch_safely` (a
   pure function, locally or as dask tasks);
4. its rows go into the :class:`~galmoss.pipeline.store.ResultStore`, then, outside
   the fault barrier, to the sinks: a Parquet part in ``result_path/parts`` and
   the image blocks. A sink that fails flags the galaxy, never loses its fit;
5. ``results.fits`` / ``results.csv`` are written from the store.

``fit(resume=True)`` reads the parts already in ``result_path`` and fits only
the galaxies missing from them; ``fit(shard=(k, n))`` fits the k-th of n parts of
the dataset and writes only parts (``galmoss collate`` merges them).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from astropy.table import Table

from .._compat import torch_threads, tune_cpu_allocator
from ..data import Dataset
from ..flags import Flag
from ..errors import ConfigError, OutputError
from ..fitting.adam import AdamSettings
from ..fitting.batch import FitSettings
from ..fitting.lm import LMSettings
from ..fitting.starts import with_auto_starts
from ..model import Model
from ..settings import RenderSettings
from .options import RunOptions, default_device
from .parts import PartWriter, read_parts
from .run import (
    Progress,
    iterate_results,
    read_run_description,
    shard_positions,
    write_run_description,
)
from .sinks import BlockWriter, SinkReport, check_output_folder
from .store import ResultStore, TableOptions

log = logging.getLogger("galmoss")

__all__ = ["Fitting", "default_device"]



def _positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"Fitting: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class Fitting:
    """Fit the profiles of a dataset to each of its galaxies.

    Parameters
    ----------
    dataset
        A :class:`~galmoss.Dataset` with profiles attached (``define_profiles``).
    batch_size
        Galaxies fitted together. Larger batches use a GPU better; on a CPU 32-128.
    iteration
        Iteration limit per galaxy (default 200, or ``lm_settings.max_iterations``
        when those are given; giving both, different, is an error).
    method
        ``"LM"`` (Levenberg-Marquardt, default) or ``"adam"``.
    likelihood
        ``"chi2"`` (default), ``"poisson"`` (Cash, images in counts) or
        ``"student_t"`` (robust); see :mod:`galmoss.fitting.likelihoods`.
    device, dtype
        Where and in what precision to compute (default: CUDA if present, else CPU;
        float32). Strings (``"cuda"``, ``"float64"``) are accepted.
    render_settings
        Accuracy settings of the renderer (default: the dataset's own, e.g. a GALFIT
        feedme's PSF oversampling, else :class:`~galmoss.RenderSettings()`).
    lm_settings, adam_settings
        Tolerances of the optimisers.
    jacobian_chunk
        Galaxies per forward-mode Jacobian pass (memory bound; default 32 on the
        CPU, 512 on a GPU).
    progress
        Show a progress bar of galaxies fitted (None: when writing to a terminal).
    restarts
        Fit again, from starts estimated on the image, every galaxy whose first fit
        did not converge, ended at a bound, or whose size ran away; the fit with
        the lower chi2 is kept.
    client
        A ``dask.distributed.Client``: chunks of the dataset are fitted as dask
        tasks (results equal a local run's).
    read_workers
        Threads reading files ahead of the fit.
    pad_shapes
        Pad cutouts of similar sizes into full batches when sizes are mixed.
    priors
        A preset of priors switched on by name (``"sourcextractor"``: the Euclid
        Morphology Challenge's SourceXtractor++ priors on sizes, indices,
        ellipticities and B/T; docs/priors.md); None: only the priors given on
        parameters (``gm.p(..., prior=...)``).
    threads
        Torch's intra-op threads while fitting on the CPU (restored afterwards).
        Default 1: on 2 cores, 2 threads gave the same wall time for twice the CPU
        time (idle), and threads that wait spin, so CPU time balloons on a shared
        machine. Use the cores with processes instead (``--dask local:N``,
        shards): batches are independent. None leaves torch's setting alone.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int = 64,
        iteration: int | None = None,
        method: str = "LM",
        likelihood: str = "chi2",
        device=None,
        dtype: torch.dtype | str | None = None,
        *,
        render_settings: RenderSettings | None = None,
        lm_settings: LMSettings | None = None,
        adam_settings: AdamSettings | None = None,
        jacobian_chunk: int | None = None,
        progress: bool | None = None,
        restarts: bool = True,
        client=None,
        read_workers: int = 2,
        pad_shapes: bool = True,
        threads: int | None = 1,
        priors: str | None = None,
    ) -> None:
        from ..fitting.likelihoods import get_likelihood

        from ..multiband_data import MultiBandDataset

        if not isinstance(dataset, (Dataset, MultiBandDataset)):
            raise TypeError(f"Fitting: dataset must be a gm.Dataset, got {type(dataset).__name__}")
        # every option is checked in one place, the same for a job file (galmoss fit --dry-run)
        self.options = options = RunOptions(
            batch_size=batch_size, iteration=iteration, method=method, likelihood=likelihood, device=device,
            dtype=dtype, render_settings=render_settings, lm_settings=lm_settings, adam_settings=adam_settings,
            jacobian_chunk=jacobian_chunk, progress=progress, restarts=restarts, read_workers=read_workers,
            pad_shapes=pad_shapes, threads=threads, priors=priors,
        )
        self.dataset = dataset
        self.batch_size = options.batch_size
        self.iteration = options.iteration
        self.method = options.method
        self.likelihood = get_likelihood(options.likelihood)
        self.device = options.device
        self.dtype = options.dtype
        self.render_settings = options.render_settings or getattr(dataset, "render_settings", None) or RenderSettings()
        self.lm_settings = options.lm_settings
        self.adam_settings = options.adam_settings
        self.jacobian_chunk = options.jacobian_chunk
        self.progress = options.progress
        self.restarts = options.restarts
        self.client = client
        self.read_workers = options.read_workers
        self.pad_shapes = options.pad_shapes
        self.threads = options.threads
        self.priors = options.priors
        self.model: Model | None = None
        self.store: ResultStore | None = None
        self._errors_shown = False
        self._results: Table | None = None
        self._positions: np.ndarray | None = None
        self.timing: dict[str, float] = {}

    # ----------------------------------------------------------------- public
    @property
    def results(self) -> Table:
        """One row per galaxy, in dataset order (see docs/design.md)."""
        if self._results is None:
            raise RuntimeError("Fitting.results: call fit() first")
        return self._results

    def settings(self, *, covariance: bool = True) -> FitSettings:
        """The :class:`~galmoss.fitting.batch.FitSettings` a batch is fitted with."""
        return FitSettings(
            method=self.method,
            likelihood=self.likelihood.name,
            lm=self.lm_settings,
            adam=self.adam_settings,
            device=str(self.device),
            dtype="float64" if self.dtype == torch.float64 else "float32",
            render=self.render_settings,
            jacobian_chunk=self.jacobian_chunk,
            restarts=self.restarts,
            covariance=covariance,
            model_images=self.dataset.img_block_path is not None,
        )

    def fit(self, *, resume: bool = False, shard: tuple[int, int] | None = None) -> Table:
        """Fit every galaxy (or the shard's); return (and keep in ``results``) the results table.

        Parameters
        ----------
        resume
            Keep the galaxies whose rows are already in ``result_path/parts`` and
            fit only the others; the files at the end are those an uninterrupted
            run writes.
        shard
            ``(k, n)``: fit only the k-th (1-based) of n contiguous parts of the
            dataset and write only its result parts (merge with ``galmoss collate``).

        Calling it again (without ``resume``) starts again from the start values.
        """
        with torch_threads(self.threads if self.device.type == "cpu" else None):
            if hasattr(self.dataset, "bands"):
                return self._fit_bands(resume, shard)
            return self._fit(resume, shard)

    def _fit_bands(self, resume: bool, shard) -> Table:
        """A multi-band dataset: every band fitted jointly (pipeline/multiband.py)."""
        from .multiband import MultiBandRun

        for name, given in (("resume", resume), ("shard", shard is not None), ("client", self.client is not None)):
            if given:
                raise NotImplementedError(f"Fitting.fit: {name} with a multi-band dataset is not supported yet")
        self._bands_run = run = MultiBandRun(self)
        self.model = run.model
        self._results = run.run()
        self._positions = np.arange(len(self.dataset))
        self._write_results()
        return self._results

    def _fit(self, resume: bool, shard) -> Table:
        if not self.dataset.profiles:
            raise ValueError("Fitting.fit: the dataset has no profiles; call dataset.define_profiles(name=profile)")
        shard = _check_shard(shard)
        if resume and self.dataset.result_path is None:
            raise ValueError("Fitting.fit(resume=True) needs the dataset's result_path (where the parts are)")
        if getattr(self.dataset, "neighbours", "mask") == "fit":
            from ..fitting.neighbours import neighbour_model

            # the user's profiles are the target's; the neighbours' components are added here
            self.model = model = neighbour_model(self.dataset.profiles, self.dataset.max_neighbours, auto_starts=True,
                                                 dtype=self.dtype, priors=self.priors)
        else:
            self.model = model = Model(with_auto_starts(self.dataset.profiles), dtype=self.dtype, priors=self.priors)
        model.check_galaxies(len(self.dataset))
        n = len(self.dataset)
        positions = shard_positions(n, shard)
        self._positions = positions
        self.store = store = ResultStore(model, self.dataset.names)
        self._errors_shown = False
        # ---- outputs checked before the first galaxy is fitted
        block_writer = self._block_writer(model)
        part_writer = None
        result_path = self.dataset.result_path
        if result_path is not None:
            check_output_folder(result_path, "result_path")
            description = self._description(model)
            if resume:
                self._resume(store, description)
            part_writer = PartWriter(result_path, store.columns, _shard_label(shard), vectors=store.vectors)
            write_run_description(result_path, description, self.dataset.names)
        if self.device.type == "cpu":
            tune_cpu_allocator()
        todo = positions[~store.done[positions]]
        settings = self.settings(covariance=True)
        progress = Progress(len(positions), self.progress)
        progress.update(int(store.done[positions].sum()))
        write_failures: list[OutputError] = []

        def sink(batch, result, counts) -> SinkReport:
            """Blocks, then the part (which carries the blocks' flags); runs in the writer thread.

            It never touches the store: what it did comes back as a report that
            the fitting thread applies.
            """
            report = SinkReport()
            if block_writer is not None and batch is not None:
                report = block_writer.write(batch, result)
            if part_writer is not None and not write_failures:
                try:
                    part_writer.write(report.apply_to(result),
                                      [report.blocks.get(int(p), store_blocks[int(p)]) for p in result.positions],
                                      counts)
                except OutputError as exc:
                    write_failures.append(exc)
                    log.error("%s; the run goes on and keeps every fit in memory", exc)
            return report

        store_blocks = list(store.image_block)  # blocks of resumed galaxies (read-only for the writer)
        log.info("fitting %d galaxies (%d already done) on %s, batches of %d, %s likelihood%s",
                 len(todo), len(positions) - len(todo), self.device, self.batch_size, self.likelihood.name,
                 f", shard {shard[0]}/{shard[1]}" if shard else "")
        t0 = time.perf_counter()
        # writing overlaps with the next batch's fit (one writer thread keeps parts in order);
        # at most a few batches wait to be written, so memory stays bounded
        pending: deque = deque()
        try:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="galmoss-write") as writer:
                for batch, result in iterate_results(self.dataset, model, settings, todo, self.batch_size,
                                                     read_workers=self.read_workers, pad=self.pad_shapes,
                                                     client=self.client, threads=self.threads):
                    store.add(result)
                    if batch is not None and batch.n_masked is not None:
                        store.n_masked[batch.positions] = batch.n_masked
                    if batch is not None and batch.neighbours is not None:
                        store.n_neighbours[batch.positions] = [len(x) for x in batch.neighbours]
                    counts = {"n_masked": store.n_masked[result.positions],
                              "n_neighbours_fitted": store.n_neighbours[result.positions]}
                    pending.append(writer.submit(sink, batch, result, counts))
                    while len(pending) > 2:
                        pending.popleft().result().apply(store)
                    progress.update(len(result))
                while pending:
                    pending.popleft().result().apply(store)
        finally:
            self.timing = {"fit_s": time.perf_counter() - t0, "galaxies": int(len(todo))}
            progress.close()
        write_failure = write_failures[0] if write_failures else None
        fitted = positions[np.isfinite(store.loss[positions])]
        if result_path is not None:
            before = read_run_description(result_path)
            timing = dict(before.get("timing") or {})
            timing[_shard_label(shard)] = {"fit_s": round(self.timing["fit_s"], 3), "galaxies": len(todo),
                                           "galaxies_per_s": round(len(todo) / max(self.timing["fit_s"], 1e-9), 3),
                                           "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
            write_run_description(result_path, {**description, "timing": timing}, self.dataset.names)
        log.info("fitted %d galaxies in %.1f s; %d with a result, %d flagged", len(todo), self.timing["fit_s"],
                 len(fitted), int(np.count_nonzero(store.flags[positions])))
        self._results = self._table(errors=False)
        if shard is None:
            self._write_results()
        if write_failure is not None:
            raise OutputError(f"result parts could not be written during the run ({write_failure}); the fits are in "
                              "Fitting.results" + (" and results.fits" if shard is None else ""))
        return self._results

    def uncertainty(self, method: str = "covar_mat", n_resample: int = 100, iteration: int | None = None,
                    seed: int = 0) -> Table:
        """Add ``<column>_err`` to the results.

        Parameters
        ----------
        method
            ``"covar_mat"``: sigma from the inverse Fisher matrix (J^T W J)^-1 at the
            best fit, J through the PSF convolution, mapped to the reported units by
            the delta method (computed with each batch's fit). ``"bootstrap"``: the
            standard deviation of refits of ``n_resample`` pixel resamplings of each
            galaxy (a pixel drawn k times weighs k), warm-started from the best fit.
        n_resample
            Bootstrap resamplings per galaxy (at least 2).
        iteration
            Iteration limit of each bootstrap refit (default: the fit's).
        seed
            Random seed of the resampling.
        """
        if self.store is None and getattr(self, "_bands_run", None) is None:
            raise RuntimeError("Fitting.uncertainty: call fit() first")
        if method not in ("covar_mat", "bootstrap"):
            raise ValueError(f"uncertainty(method={method!r}): choose 'covar_mat' or 'bootstrap'")
        if getattr(self, "_bands_run", None) is not None:
            if method == "bootstrap":
                n_resample = _positive_int(n_resample, "n_resample", 2)
                iteration = _positive_int(iteration, "iteration") if iteration is not None else self.iteration
                with torch_threads(self.threads if self.device.type == "cpu" else None):
                    self._bands_run.bootstrap(n_resample, iteration, seed)
            self._results = self._bands_run.table(errors=True)
            self._write_results()
            return self._results
        if method == "bootstrap":
            n_resample = _positive_int(n_resample, "n_resample", 2)
            iteration = _positive_int(iteration, "iteration") if iteration is not None else self.iteration
            with torch_threads(self.threads if self.device.type == "cpu" else None):
                self._bootstrap(n_resample, iteration, seed)
        self._errors_shown = True
        self._results = self._table(errors=True)
        if self._positions is not None and len(self._positions) == len(self.dataset):
            self._write_results()
        if method == "bootstrap" and self.dataset.img_block_path is not None:
            self._block_writer(self.model, check=False).update_headers(self.store).apply(self.store)
        return self._results

    # -------------------------------------------------------------- internals
    def _block_writer(self, model: Model, check: bool = True) -> BlockWriter | None:
        folder = self.dataset.img_block_path
        if folder is None:
            return None
        from ..io.naming import safe_file_names

        if check:
            check_output_folder(folder, "img_block_path")
        names = safe_file_names(self.dataset.names)
        if check:
            _refuse_inputs_as_outputs(self.dataset, Path(folder), names)
        return BlockWriter(Path(folder), model, names)

    def _description(self, model: Model) -> dict:
        from .._version import __version__

        img = self.dataset.img_block_path
        return {
            "galmoss": __version__,
            "n_galaxies": len(self.dataset),
            **ResultStore(model, []).description(),
            "free": model.free_names(),
            "profiles": {name: type(p).__name__ for name, p in model.profiles.items()},
            "method": self.method,
            "likelihood": self.likelihood.name,
            "img_block_path": None if img is None else os.path.abspath(img),
            "table": dataclasses.asdict(self._table_options()),
            "settings": self.options.describe(),
            "priors": _prior_names(model),
        }

    def _resume(self, store: ResultStore, description: dict) -> None:
        folder = self.dataset.result_path
        try:
            before = read_run_description(folder)
        except OutputError:
            return  # nothing run here yet
        keys = ("columns", "free", "profiles", "method", "likelihood", "n_galaxies")
        changed = [k for k in keys if before.get(k) != json_round_trip(description[k])]
        if changed:
            raise ValueError(
                f"Fitting.fit(resume=True): the parts in '{folder}' come from a different run ({', '.join(changed)} "
                "differ); resume with the same model and dataset, or give a new result_path"
            )
        found = read_parts(folder, store.columns)
        counts = store.add_parts(found.rows)
        if found.rows:
            log.info("resume: %d galaxies already fitted in '%s'", int(np.count_nonzero(counts)), folder)

    def _table_options(self) -> TableOptions:
        return TableOptions(likelihood=self.likelihood.name, method=self.method,
                            blocks=self.dataset.img_block_path is not None,
                            n_masked=bool(getattr(self.dataset, "auto_mask", False)),
                            neighbours=getattr(self.dataset, "neighbours", "mask") == "fit",
                            priors=bool(self.model is not None and self.model.priors))

    def _table(self, errors: bool) -> Table:
        rows = None
        if self._positions is not None and len(self._positions) != len(self.dataset):
            rows = self._positions
        table = self.store.table(errors=errors, rows=rows, **dataclasses.asdict(self._table_options()))
        if self.model is not None and self.model.priors:
            table.meta["priors"] = "; ".join(_prior_names(self.model))
        return table

    def _write_results(self) -> None:
        if self.dataset.result_path is None:
            return
        from ..io.results import write_results

        write_results(self._results, self.dataset.result_path)

    def _bootstrap(self, n_resample: int, iteration: int, seed: int) -> None:
        from ..fitting.solve import make_objective
        from ..fitting.uncertainty import bootstrap_batch
        from .stream import BatchStream

        store, model = self.store, self.model
        # a fitted galaxy has a finite loss; its unused neighbour columns are NaN by design (checked per batch below)
        fitted = np.flatnonzero(np.isfinite(store.loss))
        fitted = np.intersect1d(fitted, self._positions)
        store.errors[fitted] = np.nan
        settings = self.settings(covariance=False)
        lm = dataclasses.replace(self.lm_settings, max_iterations=iteration)
        generator = torch.Generator().manual_seed(seed)
        rows_per_pass = max(n_resample, self.batch_size * (4 if self.device.type == "cpu" else 32))
        stream = BatchStream(self.dataset, fitted, self.batch_size, read_workers=self.read_workers,
                             pad=self.pad_shapes, likelihood=self.likelihood.name)
        for batch in stream:
            if not hasattr(batch, "image"):
                continue
            bmodel, cols, free = model, np.arange(len(store.columns)), np.arange(model.n_free)
            if getattr(model, "neighbour_layout", None) is not None:
                from ..fitting.neighbours import batch_model, signature, sub_indices

                # the stream groups galaxies by neighbour signature: one sub-model per batch
                bmodel = batch_model(model, signature((batch.neighbours or [[]])[0]))
                cols, free = sub_indices(bmodel, model)
            usable = np.all(np.isfinite(store.theta[batch.positions][:, free]), axis=1)
            if not usable.all():
                batch = batch.take(np.flatnonzero(usable))
                if not len(batch):
                    continue
            start = bmodel.start_values(batch.positions)
            objective = make_objective(bmodel, batch, start, settings)
            theta = torch.as_tensor(store.theta[batch.positions][:, free], dtype=self.dtype, device=self.device)
            spread, split = bootstrap_batch(bmodel, objective, theta, store.values[batch.positions][:, cols],
                                            n_resample, lm, generator, rows_per_pass)
            errors = np.full((len(batch), len(store.columns)), np.nan)
            errors[:, cols] = spread
            store.errors[batch.positions] = errors
            for i in np.flatnonzero(split):
                pos = int(batch.positions[i])
                store.flags[pos] |= int(Flag.bootstrap_split)
                note = (f"{int(split[i])} of {n_resample} bootstrap refits went to another minimum; the errors are the "
                        "spread of the others")
                store.messages[pos] = f"{store.messages[pos]}; {note}" if store.messages[pos] else note


def _prior_names(model: Model) -> list[str]:
    """Each prior of the model as '<component>.<slot>: <prior>' (results' meta and run.json)."""
    return [f"{term.label}: {term.prior.describe()}" for term in model.priors]


def json_round_trip(value):
    import json

    return json.loads(json.dumps(value, default=str))


def _check_shard(shard):
    if shard is None:
        return None
    try:
        k, n = (int(x) for x in shard)
    except (TypeError, ValueError):
        raise ValueError(f"Fitting.fit: shard={shard!r}; give (k, n) with 1 <= k <= n, e.g. shard=(2, 8)") from None
    if not 1 <= k <= n:
        raise ValueError(f"Fitting.fit: shard=({k}, {n}); k must be between 1 and n")
    return (k, n)


def _shard_label(shard) -> str:
    return "0of1" if shard is None else f"{shard[0]}of{shard[1]}"


def _refuse_inputs_as_outputs(dataset: Dataset, folder: Path, file_names: list[str]) -> None:
    """No image block may replace an input file (img_block_path set to the cutout folder, say)."""
    if dataset._arrays is not None:
        return
    base = os.path.abspath(folder)
    inputs: set[str] = set()
    for pos in range(len(dataset)):
        inputs.update(os.path.normcase(os.path.abspath(p)) for p in dataset.input_paths(pos))
    for pos, fname in enumerate(file_names):
        target = os.path.normcase(os.path.join(base, fname))
        if target in inputs:
            raise OutputError(
                f"the image block of galaxy {dataset.names[pos]!r} would be '{target}', which is an input file; "
                "give img_block_path a folder of its own (nothing has been fitted yet)"
            )
