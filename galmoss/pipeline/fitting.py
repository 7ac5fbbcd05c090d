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
import weakref
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
from .options import RunOptions, check_uncertainty, default_device
from .parts import PartsRead, PartWriter, read_parts
from .preflight import check_dataset
from .run import (
    LostResult,
    Progress,
    clear_outputs,
    galaxy_inputs,
    iterate_results,
    model_changes,
    model_id,
    other_run,
    probe_model,
    read_run_description,
    refuse_other_run,
    shard_positions,
    write_run_description,
)
from .sinks import BlockWriter, SinkReport, check_output_folder
from .store import ResultStore, TableOptions

log = logging.getLogger("galmoss")

#: result folders this process's runs wrote -> the dataset they fitted (a weak reference): refitting
#: the same dataset object with another model, as in an interactive session, replaces that run
_WRITTEN: dict[str, weakref.ref] = {}

__all__ = ["Fitting", "default_device"]


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
    prepare_workers
        Processes that read the galaxies, check them, stack the batches and
        measure their image-based starts ahead of the fit (0: this process's
        threads do it). The host work then scales with the cores: a GPU fits
        faster than one core prepares (docs/benchmarks.md). Workers are started
        by ``spawn``, so a script using them keeps its fitting code under ``if
        __name__ == "__main__":``. Not with ``client`` (dask's tasks read their
        own galaxies).
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
        prepare_workers: int = 0,
    ) -> None:
        from ..fitting.likelihoods import get_likelihood

        from ..data.multiband import MultiBandDataset

        if not isinstance(dataset, (Dataset, MultiBandDataset)):
            raise TypeError(f"Fitting: dataset must be a gm.Dataset, got {type(dataset).__name__}")
        # every option is checked in one place, the same for a job file (galmoss fit --dry-run)
        self.options = options = RunOptions(
            batch_size=batch_size, iteration=iteration, method=method, likelihood=likelihood, device=device,
            dtype=dtype, render_settings=render_settings, lm_settings=lm_settings, adam_settings=adam_settings,
            jacobian_chunk=jacobian_chunk, progress=progress, restarts=restarts, read_workers=read_workers,
            prepare_workers=prepare_workers, pad_shapes=pad_shapes, threads=threads, priors=priors,
        )
        if options.prepare_workers and client is not None:
            raise ConfigError(f"Fitting: prepare_workers={options.prepare_workers} with a dask client: dask's tasks "
                              "read and prepare their own galaxies; leave prepare_workers at 0")
        if options.prepare_workers and isinstance(dataset, MultiBandDataset):
            raise ConfigError(f"Fitting: prepare_workers={options.prepare_workers} with a multi-band dataset: its "
                              "bands are read together in this process; leave prepare_workers at 0")
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
        self.prepare_workers = options.prepare_workers
        self.pad_shapes = options.pad_shapes
        self.threads = options.threads
        self.priors = options.priors
        self.model: Model | None = None
        self.store: ResultStore | None = None
        self._errors_shown = False
        self._results: Table | None = None
        self._positions: np.ndarray | None = None
        self.timing: dict[str, float] = {}
        #: how to resume this run, said in the log when it stops early (the command line sets its own)
        self.resume_command: str | None = None

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

    def fit(self, *, resume: bool = False, shard: tuple[int, int] | None = None, overwrite: bool = False) -> Table:
        """Fit every galaxy (or the shard's); return (and keep in ``results``) the results table.

        Parameters
        ----------
        resume
            Keep the galaxies whose rows are already in ``result_path/parts`` and
            fit only the others; the files at the end are those an uninterrupted
            run writes. A galaxy whose input files (or name) changed since its
            fit is fitted again.
        shard
            ``(k, n)``: fit only the k-th (1-based) of n contiguous parts of the
            dataset and write only its result parts (merge with ``galmoss collate``).
        overwrite
            Remove galmoss's own outputs in ``result_path`` (``parts/``,
            ``run.json``, ``galaxies.parquet``, ``results.*``; nothing else) before
            fitting; with ``shard``, only when they are another run's, so every
            shard of a job array may be given it. Without ``resume`` or
            ``overwrite``, a ``result_path`` holding the parts of another run
            (another model, other galaxies or input files) is refused before
            anything is fitted.

        Calling it again (without ``resume``) starts again from the start values.

        Raises
        ------
        ConfigError, OutputError
            A configuration or output-folder mistake, before anything is fitted.
        OutputError
            At the end, when result parts or the results table could not be
            written (a full disk): every fit is in :attr:`results`, and the
            message says how to resume.
        KeyboardInterrupt, Exception
            Ctrl-C, or an error after some galaxies were fitted, raised again
            once the finished galaxies are kept (:attr:`results`, the parts,
            ``results.fits``), the others marked ``not fitted``, and the log
            says how to resume.
        """
        with torch_threads(self.threads if self.device.type == "cpu" else None):
            if hasattr(self.dataset, "bands"):
                return self._fit_bands(resume, shard, overwrite)
            return self._fit(resume, shard, overwrite)

    def _fit_bands(self, resume: bool, shard, overwrite: bool = False) -> Table:
        """A multi-band dataset: every band fitted jointly (pipeline/multiband.py)."""
        from .multiband import MultiBandRun

        shard = _check_shard(shard)
        self._bands_run = run = MultiBandRun(self)
        self.model = run.model
        self._results = run.run(resume=resume, shard=shard, overwrite=overwrite)
        self._positions = shard_positions(len(self.dataset), shard)
        if shard is None:
            self._write_results()
        return self._results

    def check(self, *, resume: bool = False, shard: tuple[int, int] | None = None, overwrite: bool = False) -> Model:
        """Make every configuration check ``fit()`` makes before its first fit; fit and write nothing.

        The options (checked at construction), the dataset's settings (HDU
        selectors, PSF kind), the model against the number of galaxies, the
        output folders (a file where a folder should be; a result folder
        holding another run's parts, unless ``resume`` or ``overwrite``; a
        resume of another model), and the profiles' output on the first
        readable galaxies (at most 8 are read). ``galmoss fit --dry-run`` runs it.

        Returns
        -------
        Model
            The model a fit would use.
        """
        if hasattr(self.dataset, "bands"):
            from .multiband import MultiBandRun

            _check_shard(shard)
            return MultiBandRun(self).check(resume=resume, overwrite=overwrite)
        model = self._checked_model(resume, shard, overwrite)
        folders = ((self.dataset.result_path, "result_path"), (self.dataset.img_block_path, "img_block_path"))
        for folder, what in folders:
            if folder is None:
                continue
            if Path(folder).exists() and not Path(folder).is_dir():
                raise OutputError(f"{what} '{folder}' exists and is a file, not a folder; give a folder path")
            # the folder, or the nearest folder above it that exists (a run creates the rest)
            existing = next(p for p in (Path(folder).absolute(), *Path(folder).absolute().parents) if p.exists())
            if not (existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)):
                raise OutputError(f"{what} '{folder}' cannot be written ('{existing}' is not a folder you may write "
                                  "to); give a folder you may write to")
        if self.dataset.img_block_path is not None:
            from ..io.naming import safe_file_names

            _refuse_inputs_as_outputs(self.dataset, Path(self.dataset.img_block_path),
                                      safe_file_names(self.dataset.names))
        result_path = self.dataset.result_path
        if result_path is not None and Path(result_path).is_dir() and not overwrite:
            description = self._description(model)
            if resume:
                self._refuse_other_model(description)
            else:
                refuse_other_run(result_path, description, self.dataset.names,
                                 galaxy_inputs(self.dataset, result_path))
        probe_model(self.dataset, model, self.settings(covariance=True), shard_positions(len(self.dataset), shard),
                    self.pad_shapes, self.batch_size)
        return model

    def _checked_model(self, resume: bool, shard, overwrite: bool) -> Model:
        """The arguments and the dataset's settings checked, and the model built (nothing read)."""
        if not self.dataset.profiles:
            raise ValueError("Fitting.fit: the dataset has no profiles; call dataset.define_profiles(name=profile)")
        _check_shard(shard)
        if resume and self.dataset.result_path is None:
            raise ValueError("Fitting.fit(resume=True) needs the dataset's result_path (where the parts are)")
        if resume and overwrite:
            raise ValueError("Fitting.fit: resume=True keeps the parts that overwrite=True removes; give one of them")
        check_dataset(self.dataset, psf_oversampling=self.render_settings.psf_oversampling)
        if getattr(self.dataset, "neighbours", "mask") == "fit":
            from ..fitting.neighbours import neighbour_model

            # the user's profiles are the target's; the neighbours' components are added here
            model = neighbour_model(self.dataset.profiles, self.dataset.max_neighbours, auto_starts=True,
                                    dtype=self.dtype, priors=self.priors)
        else:
            model = Model(with_auto_starts(self.dataset.profiles), dtype=self.dtype, priors=self.priors)
        model.check_galaxies(len(self.dataset))
        return model

    def _fit(self, resume: bool, shard, overwrite: bool = False) -> Table:
        self.model = model = self._checked_model(resume, shard, overwrite)
        shard = _check_shard(shard)
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
            inputs = galaxy_inputs(self.dataset, result_path)
            own = _WRITTEN.get(os.path.abspath(result_path))
            if not overwrite and not resume and own is not None and own() is self.dataset \
                    and other_run(result_path, description, self.dataset.names, inputs):
                # this session's own run of this dataset, fitted again with another model: replaced, never mixed
                log.warning("'%s' holds this dataset's earlier run, of another model; its outputs are replaced",
                            result_path)
                overwrite = True
            if overwrite and (shard is None or other_run(result_path, description, self.dataset.names, inputs)):
                # a shard clears only another run's outputs: every shard of a job array may be given overwrite
                removed = clear_outputs(result_path)
                if removed:
                    log.info("overwrite: removed %d galmoss outputs in '%s'", len(removed), result_path)
            elif resume:
                self._resume(store, description, inputs)
            else:
                refuse_other_run(result_path, description, self.dataset.names, inputs)
            _WRITTEN[os.path.abspath(result_path)] = weakref.ref(self.dataset)
            part_writer = PartWriter(result_path, store.columns, _shard_label(shard), vectors=store.vectors,
                                     inputs=inputs, model_id=description["model_id"])
            write_run_description(result_path, description, self.dataset.names, inputs)
        if self.device.type == "cpu":
            tune_cpu_allocator()
        todo = positions[~store.done[positions]]
        settings = self.settings(covariance=True)
        progress = Progress(len(positions), self.progress)
        progress.update(int(store.done[positions].sum()))
        #: (error, galaxies) of each part that could not be written (a full disk, say)
        write_failures: list[tuple[OutputError, int]] = []

        def sink(batch, result, counts) -> SinkReport:
            """Blocks, then the part (which carries the blocks' flags); runs in the writer thread.

            It never touches the store: what it did comes back as a report that
            the fitting thread applies.
            """
            report = SinkReport()
            if block_writer is not None and batch is not None:
                report = block_writer.write(batch, result)
            if part_writer is not None:
                try:
                    part_writer.write(report.apply_to(result),
                                      [report.blocks.get(int(p), store_blocks[int(p)]) for p in result.positions],
                                      counts)
                except OutputError as exc:
                    if not write_failures:
                        log.error("%s; the run goes on and keeps every fit in memory (Fitting.results)", exc)
                    write_failures.append((exc, len(result)))
            return report

        store_blocks = list(store.image_block)  # blocks of resumed galaxies (read-only for the writer)
        log.info("fitting %d galaxies (%d already done) on %s, batches of %d, %s likelihood%s",
                 len(todo), len(positions) - len(todo), self.device, self.batch_size, self.likelihood.name,
                 f", shard {shard[0]}/{shard[1]}" if shard else "")
        t0 = time.perf_counter()
        # writing overlaps with the next batch's fit (one writer thread keeps parts in order);
        # at most a few batches wait to be written, so memory stays bounded
        pending: deque = deque()
        #: what stopped the run early (Ctrl-C, or an error after some galaxies were fitted)
        stopped: BaseException | None = None

        def drain(keep: int) -> None:
            # a report leaves the queue only once applied, so a Ctrl-C here loses no block name
            while len(pending) > keep:
                pending[0].result().apply(store)
                pending.popleft()

        batches = iterate_results(self.dataset, model, settings, todo, self.batch_size,
                                  read_workers=self.read_workers, pad=self.pad_shapes,
                                  client=self.client, threads=self.threads, prepare_workers=self.prepare_workers)
        try:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="galmoss-write") as writer:
                try:
                    for batch, result in batches:
                        store.add(result)
                        if isinstance(result, LostResult):  # flagged in the results, left out of the parts
                            progress.update(len(result))
                            continue
                        if batch is not None and batch.n_masked is not None:
                            store.n_masked[batch.positions] = batch.n_masked
                        if batch is not None and batch.neighbours is not None:
                            store.n_neighbours[batch.positions] = [len(x) for x in batch.neighbours]
                        counts = {"n_masked": store.n_masked[result.positions],
                                  "n_neighbours_fitted": store.n_neighbours[result.positions]}
                        pending.append(writer.submit(sink, batch, result, counts))
                        drain(2)
                        progress.update(len(result))
                except (KeyboardInterrupt, Exception) as exc:
                    # Ctrl-C or a crash: what is fitted is kept, written and said; then the exception goes on
                    stopped = exc
                    batches.close()
                drain(0)
        finally:
            self.timing = {"fit_s": time.perf_counter() - t0, "galaxies": int(len(todo))}
            progress.close()
        if stopped is not None and not isinstance(stopped, KeyboardInterrupt) and not store.done[todo].any():
            raise stopped  # nothing fitted (a configuration error found on the first batch): nothing to keep
        fitted = positions[np.isfinite(store.loss[positions])]
        if result_path is not None:
            try:
                before = read_run_description(result_path)
                timing = dict(before.get("timing") or {})
                timing[_shard_label(shard)] = {"fit_s": round(self.timing["fit_s"], 3), "galaxies": len(todo),
                                               "galaxies_per_s": round(len(todo) / max(self.timing["fit_s"], 1e-9), 3),
                                               "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
                write_run_description(result_path, {**description, "timing": timing}, self.dataset.names, inputs)
            except (OSError, ValueError) as exc:  # the fits matter more than the timing notes
                log.error("run.json could not be updated (%s); the fits are kept", exc)
        why = None
        if stopped is not None:
            why = ("interrupted" if isinstance(stopped, KeyboardInterrupt)
                   else f"the run stopped ({type(stopped).__name__}: {stopped})")
            for pos in positions[~store.done[positions]]:
                store.messages[int(pos)] = f"not fitted: {why}"
        log.info("fitted %d galaxies in %.1f s; %d with a result, %d flagged", len(todo), self.timing["fit_s"],
                 len(fitted), int(np.count_nonzero(store.flags[positions])))
        self._results = self._table(errors=False)
        table_error = None
        if shard is None:
            try:
                self._write_results()
            except OSError as exc:  # a full disk: the table stays in memory
                table_error = exc
                log.error("results.fits / results.csv could not be written (%s); the fits are in Fitting.results",
                          exc)
        written = " and results.fits" if shard is None and table_error is None and result_path is not None else ""
        again = self.resume_command or ("Fitting.fit(resume=True" + (f", shard={shard}" if shard else "") + ")")
        if stopped is not None:
            kept = int(np.count_nonzero(store.done[positions]))
            if result_path is None:
                log.warning("%s: %d of %d galaxies fitted and kept in Fitting.results (no result_path: "
                            "nothing to resume from)", why, kept, len(positions))
            else:
                log.warning("%s: %d of %d galaxies fitted and kept (in Fitting.results%s and the parts in "
                            "'%s'); the other %d are marked 'not fitted'; resume with: %s", why, kept,
                            len(positions), written, Path(result_path) / "parts", len(positions) - kept, again)
            raise stopped
        if write_failures:
            lost = sum(count for _, count in write_failures)
            raise OutputError(
                f"the result parts of {lost} galaxies could not be written ({write_failures[0][0]}); their fits are "
                f"in Fitting.results{written}; free space, then resume with: {again} (galaxies without a part are "
                "fitted again)"
            )
        if table_error is not None:
            raise OutputError(f"results.fits / results.csv could not be written ({table_error}); the fits are in "
                              f"Fitting.results and the parts; free space, then resume with: {again}")
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
        try:  # the options first: a mistake is said before any work
            method, n_resample, iteration, seed = check_uncertainty(method, n_resample, iteration, seed)
        except ConfigError as exc:
            raise type(exc)(f"Fitting.uncertainty: {exc}") from None
        if self.store is None and getattr(self, "_bands_run", None) is None:
            raise RuntimeError("Fitting.uncertainty: call fit() first")
        if getattr(self, "_bands_run", None) is not None:
            if method == "bootstrap":
                iteration = iteration if iteration is not None else self.iteration
                with torch_threads(self.threads if self.device.type == "cpu" else None):
                    self._bands_run.bootstrap(n_resample, iteration, seed)
                if self.dataset.img_block_path is not None:
                    self._bands_run.update_block_headers()
            self._results = self._bands_run.table(errors=True)
            if self._bands_run.rows is None:
                self._write_results()
            return self._results
        if method == "bootstrap":
            iteration = iteration if iteration is not None else self.iteration
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
        description = {
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
        description["model_id"] = model_id(json_round_trip(description))
        return description

    def _refuse_other_model(self, description: dict, before: dict | None = None) -> None:
        """A resume of a run of another model (or number of galaxies) is refused."""
        folder = self.dataset.result_path
        if before is None:
            try:
                before = read_run_description(folder)
            except (OutputError, ValueError):
                return  # nothing run here yet
        changed = model_changes(before, description)
        if changed:
            raise ValueError(
                f"Fitting.fit(resume=True): the parts in '{folder}' come from a different run ({', '.join(changed)} "
                "differ); resume with the same model and dataset, or give a new result_path"
            )

    def _refuse_other_options(self, description: dict, before: dict) -> None:
        """A resume with options that change the fitted values (RunOptions.ANSWER_OPTIONS) is refused, naming them.

        A run.json written before the options were stored says nothing: nothing is compared.
        """
        old, new = before.get("settings"), json_round_trip(description.get("settings", {}))
        if not isinstance(old, dict):
            return
        changed = [k for k in RunOptions.ANSWER_OPTIONS if k in old and old.get(k) != new.get(k)]
        if changed:
            shown = ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
            raise ValueError(
                f"Fitting.fit(resume=True): the parts in '{self.dataset.result_path}' were fitted with other options "
                f"({shown}); resume with the same options, refit with overwrite=True (--overwrite), or give a new "
                "result_path"
            )

    def _resume(self, store: ResultStore, description: dict, inputs: list[str]) -> None:
        folder = self.dataset.result_path
        try:
            before = read_run_description(folder)
        except OutputError:
            return  # nothing run here yet
        self._refuse_other_model(description, before)
        self._refuse_other_options(description, before)
        counts = np.zeros(len(store), dtype=np.int64)
        other_names = other_inputs = 0

        def take(rows: dict) -> None:  # one part at a time, oldest first: the newest row of a galaxy wins
            nonlocal other_names, other_inputs
            kept, names, files = PartsRead(rows, [], []).select(self.dataset.names, inputs)
            other_names, other_inputs = other_names + names, other_inputs + files
            store.add_parts(kept, counts)

        read_parts(folder, store.columns, model_id=description["model_id"], each=take)
        if other_names:
            log.warning("resume: %d rows in '%s' are of galaxies not in this dataset; they are ignored",
                        other_names, folder)
        if other_inputs:
            log.info("resume: %d rows in '%s' were fitted on other input files; those galaxies are fitted again",
                     other_inputs, folder)
        blocks = self.dataset.img_block_path
        if blocks is not None:
            # a fit whose image block was never written (a full disk, say) is fitted again for its block
            fitted = np.flatnonzero(store.done & np.isfinite(store.loss))
            present = set(os.listdir(blocks)) if Path(blocks).is_dir() else set()
            lacking = [int(p) for p in fitted if store.image_block[p] not in present]
            if lacking:
                log.info("resume: %d fitted galaxies have no image block in '%s'; they are fitted again",
                         len(lacking), blocks)
                store.done[lacking] = False
                counts[lacking] = 0
        if counts.any():
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
