"""The run of a multi-band dataset: read every band, batch by cutout shapes, fit jointly, build the table.

``gm.Fitting`` hands a :class:`~galmoss.data.multiband.MultiBandDataset` here.
Galaxies are grouped by the tuple of their cutout shapes in every band (no
padding), each group is fitted by
:func:`~galmoss.fitting.multiband.fit_multiband_batch` behind the same kind of
fault barrier as single-band batches (a batch that raises is split until the
galaxy that raises is alone and flagged ``fit_error``), and the table has one
column per band of each band-varying parameter (``<comp>_<param>_<band>``),
the shared parameters once, the Chebyshev coefficients, and ``chi2_<band>``,
``dof_<band>`` beside ``chi2`` and ``dof``.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np
from astropy.table import Table
from pathlib import Path

from ..fitting.multiband import JointModel, MultiBandResult, fit_multiband_batch
from ..fitting.records import BatchResult
from ..fitting.starts import with_auto_starts
from ..flags import Flag
from ..fitting.fit_settings import ProfileOutputError
from ..fitting.memory import FitMemoryError
from ..fitting.intervals import interval_kind
from ..pipeline.stream import make_batch
from ..pipeline.store import add_interval

log = logging.getLogger("galmoss")

__all__ = ["MultiBandRun", "fit_multiband_positions", "fit_multiband_safely", "group_galaxies"]


def fit_multiband_safely(jm: JointModel, batches, settings) -> MultiBandResult:
    """:func:`fit_multiband_batch` behind a fault barrier: a galaxy whose fit raises is flagged, the rest kept."""
    try:
        return fit_multiband_batch(jm, batches, settings)
    except (ProfileOutputError, FitMemoryError, NotImplementedError):
        raise
    except Exception as exc:  # noqa: BLE001 - one galaxy must not stop a catalogue
        ref = batches[0]
        if len(ref) == 1:
            log.warning("galaxy %r: joint fit raised %s: %s", ref.names[0], type(exc).__name__, exc)
            return _empty(jm, ref.positions, ref.names, ref.flags | int(Flag.fit_error),
                          [ref.messages[0] + [f"fit raised {type(exc).__name__}: {exc}"]], settings.covariance)
        half = len(ref) // 2
        rows = np.arange(len(ref))
        parts = [fit_multiband_safely(jm, [b.take(r) for b in batches], settings) for r in (rows[:half], rows[half:])]
        return _join(parts)


def _empty(jm: JointModel, positions, names, flags, messages, with_errors: bool) -> MultiBandResult:
    result = BatchResult.empty([c.name for c in jm.columns], positions, names, flags, messages, with_errors,
                               n_free=jm.n_free)
    nb = len(jm.bands)
    return MultiBandResult(result, np.full((len(positions), nb), np.nan), np.zeros((len(positions), nb), np.int64))


def _join(parts: list[MultiBandResult]) -> MultiBandResult:
    return MultiBandResult(BatchResult.concatenate([p.result for p in parts]),
                           np.concatenate([p.band_loss for p in parts]), np.concatenate([p.band_dof for p in parts]))


def group_galaxies(ds, jm: JointModel, positions, batch_size: int, unusable: list | None = None):
    """Lists of galaxies (each a list of its bands' records) of one shape signature, at most a batch each.

    Galaxies unusable in some band go to ``unusable`` as flagged empty rows.
    """
    groups: dict[tuple, list] = {}
    for position in positions:
        gals = ds.load(int(position))
        if not all(g.usable for g in gals):
            if unusable is not None:
                flags = int(np.bitwise_or.reduce([int(g.flags) for g in gals]))
                messages = [f"{b}: {m}" for b, g in zip(ds.bands.names, gals) for m in g.messages]
                unusable.append(_empty(jm, [position], [ds.names[position]], [flags], [messages], True))
            continue
        key = tuple(g.shape for g in gals) + tuple(None if g.psf is None else g.psf.shape for g in gals)
        groups.setdefault(key, []).append(gals)
        if len(groups[key]) >= batch_size:
            yield groups.pop(key)
    yield from groups.values()


def fit_multiband_positions(ds, jm: JointModel, settings, positions, batch_size: int, on_batch=None,
                            threads: int | None = None) -> list[MultiBandResult]:
    """Read and fit the galaxies at ``positions`` (a chunk: locally, or as a dask task); one result per batch.

    ``on_batch(batches, result)`` runs after each batch's fit (the image blocks and
    parts), and with ``batches`` None for the rows of galaxies that could not be fitted.
    """
    from .._compat import torch_threads

    parts: list[MultiBandResult] = []
    with torch_threads(threads if settings.torch_device.type == "cpu" else None):
        try:
            seen = 0
            for rows in group_galaxies(ds, jm, positions, batch_size, unusable=parts):
                flagged = parts[seen:]  # galaxies unusable in some band, met while reading this batch
                batches = [make_batch([gals[b] for gals in rows]) for b in range(len(jm.bands))]
                parts.append(fit_multiband_safely(jm, batches, settings))
                if on_batch is not None:
                    for res in flagged:
                        on_batch(None, res)
                    on_batch(batches, parts[-1])
                seen = len(parts)
            if on_batch is not None:
                for res in parts[seen:]:
                    on_batch(None, res)
        finally:
            ds.close()  # image sets hold a file open between reads
    return parts


class MultiBandRun:
    """Fit a multi-band dataset with a :class:`~galmoss.pipeline.fitting.Fitting`'s options."""

    def __init__(self, fitting) -> None:
        self.fitting = fitting
        ds = fitting.dataset
        if not ds.profiles:
            raise ValueError("Fitting.fit: the dataset has no profiles; call dataset.define_profiles(name=profile)")
        self.model = JointModel(with_auto_starts(ds.profiles), ds.bands, priors=getattr(fitting, "priors", None))
        self.model.ref.check_galaxies(len(ds))
        if fitting.restarts:
            log.info("multi-band fits: fits gone astray are fitted again from image-based starts; the two-component "
                     "restarts are single-band and not run for joint fits")
        self.model.ref.check_precision(fitting.dtype)  # ranges the fit's dtype cannot resolve: refused now
        self.result: MultiBandResult | None = None

    def check(self, n_probe: int = 8, *, resume: bool = False, overwrite: bool = False):
        """The checks a run makes before its first fit (output folder, another run's parts, the first readable
        galaxies); fits nothing.

        Returns the reference band's model.
        """
        from ..errors import OutputError
        from .run import refuse_other_run

        ds = self.fitting.dataset
        folder = ds.result_path
        if resume and folder is None:
            raise ValueError("Fitting.fit(resume=True) needs the dataset's result_path (where the parts are)")
        if folder is not None and Path(folder).is_dir() and not overwrite:
            description = self.description()
            if resume:
                self._resumed(description, self.inputs(), np.arange(0))
            else:
                refuse_other_run(folder, description, list(ds.names), self.inputs())
        if folder is not None:
            if Path(folder).exists() and not Path(folder).is_dir():
                raise OutputError(f"result_path '{folder}' exists and is a file, not a folder; give a folder path")
            existing = next(p for p in (Path(folder).absolute(), *Path(folder).absolute().parents) if p.exists())
            if not (existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)):
                raise OutputError(f"result_path '{folder}' cannot be written ('{existing}' is not a folder you may "
                                  "write to); give a folder you may write to")
        try:
            for position in range(min(n_probe, len(ds))):
                if all(g.usable for g in ds.load(position)):
                    break
        finally:
            ds.close()
        return self.model.ref

    def run(self, resume: bool = False, shard=None, overwrite: bool = False) -> Table:
        """Fit the dataset (or the shard's galaxies), the galaxies already in the parts kept when resuming.

        With ``result_path`` every batch's rows are written as a part (as a
        single-band run's, :mod:`galmoss.pipeline.parts`), with ``run.json`` and
        ``galaxies.parquet``: ``resume`` keeps the galaxies whose rows are there
        (fitted by this model on these inputs), shards write parts that
        ``galmoss collate`` merges.
        """
        from .._compat import tune_cpu_allocator
        from .parts import PartWriter
        from .run import clear_outputs, other_run, refuse_other_run, shard_positions, write_run_description
        from .sinks import check_output_folder

        fitting, ds, jm = self.fitting, self.fitting.dataset, self.model
        if resume and ds.result_path is None:
            raise ValueError("Fitting.fit(resume=True) needs the dataset's result_path (where the parts are)")
        if resume and overwrite:
            raise ValueError("Fitting.fit: resume=True keeps the parts that overwrite=True removes; give one of them")
        positions = shard_positions(len(ds), shard)
        columns = [c.name for c in jm.columns]
        kept: list[MultiBandResult] = []
        writer = None
        folder = ds.result_path
        if folder is not None:
            check_output_folder(folder, "result_path")
            import weakref

            from .fitting import _WRITTEN

            description, inputs = self.description(), self.inputs()
            names = list(ds.names)
            own = _WRITTEN.get(os.path.abspath(folder))
            if not overwrite and not resume and own is not None and own() is ds \
                    and other_run(folder, description, names, inputs):
                # this session's own run of this dataset, fitted again with another model: replaced, never mixed
                log.warning("'%s' holds this dataset's earlier run, of another model; its outputs are replaced",
                            folder)
                overwrite = True
            if overwrite and (shard is None or other_run(folder, description, names, inputs)):
                clear_outputs(folder)  # a shard clears only another run's outputs
            elif resume:
                kept = self._resumed(description, inputs, positions)
            else:
                refuse_other_run(folder, description, names, inputs)
            _WRITTEN[os.path.abspath(folder)] = weakref.ref(ds)
            writer = PartWriter(folder, part_columns(columns, jm.bands),
                                "0of1" if shard is None else f"{shard[0]}of{shard[1]}", inputs=inputs,
                                model_id=description["model_id"])
            write_run_description(folder, description, names, inputs)
        if fitting.device.type == "cpu":
            tune_cpu_allocator()
        settings = fitting.settings(covariance=True)
        blocks = self._block_names() if ds.img_block_path is not None else None
        #: each galaxy's image block file name ('' where none was written)
        self.image_block = [""] * len(ds) if blocks is not None else None
        done = {int(p) for k in kept for p in k.result.positions}
        todo = np.array([p for p in positions if int(p) not in done], dtype=np.int64)
        if blocks is not None:
            for k in kept:  # a resumed galaxy keeps its block
                for p in k.result.positions:
                    self.image_block[int(p)] = self._kept_blocks.get(int(p), "")

        def on_batch(batches, res):
            if blocks is not None and batches is None and fitting.client is not None \
                    and np.isfinite(res.result.loss).any():
                batches = self._read_again(res)  # fitted on a worker: the pixels are read here for the blocks
            if blocks is not None and batches is not None:
                self._write_blocks(batches, res, blocks, settings)
            if writer is not None:
                writer.write(as_part(res, jm.bands),
                             [self.image_block[int(p)] if blocks is not None else "" for p in res.result.positions])

        t0 = time.perf_counter()
        if fitting.client is not None:
            try:
                parts = self._fit_with_client(settings, todo, on_batch)
            finally:
                ds.close()
        else:
            parts = fit_multiband_positions(ds, jm, settings, todo, fitting.batch_size, on_batch)
        result = _join(kept + parts) if kept or parts else _join([_empty(jm, [], [], [], [], True)])
        order = np.argsort(result.result.positions, kind="stable")
        self.result = MultiBandResult(result.result.reorder(order), result.band_loss[order], result.band_dof[order])
        #: the dataset positions of the table (None: every galaxy)
        self.rows = None if shard is None else positions
        fitting.timing = {"fit_s": time.perf_counter() - t0, "galaxies": int(len(todo))}
        log.info("fitted %d galaxies in %d bands jointly in %.1f s (%d kept from the parts)", len(todo),
                 len(jm.bands), fitting.timing["fit_s"], len(done))
        return self.table(errors=False)

    def description(self) -> dict:
        """``run.json`` of a multi-band run: what a resume and ``galmoss collate`` compare and rebuild."""
        import dataclasses
        import os

        from .._version import __version__
        from .fitting import json_round_trip
        from .run import model_id
        from .store import TableOptions

        fitting, ds, jm = self.fitting, self.fitting.dataset, self.model
        img = ds.img_block_path
        description = {
            "galmoss": __version__,
            "n_galaxies": len(ds),
            # a band's wavelength and pixel scale in its column's meta: part of the model id (run.MODEL_KEYS)
            "columns": [{"name": c, "unit": None,
                         "meta": self._band_meta(c[len("band_loss_"):]) if c.startswith("band_loss_") else {}}
                        for c in part_columns([c.name for c in jm.columns], jm.bands)],
            "vectors": {},
            "intervals": self.intervals(),  # not a model key: it shapes the table (run.MODEL_KEYS)
            "free": jm.free_names(),
            "profiles": {name: type(p).__name__ for name, p in jm.ref.profiles.items()},
            "bands": {"names": list(jm.bands.names), "wavelength": list(jm.bands.wavelength),
                      "pix_scale": list(jm.bands.pix_scale),
                      "zero_point": None if jm.bands.zero_point is None else list(jm.bands.zero_point),
                      "rotation": None if jm.bands.rotation is None else list(jm.bands.rotation),
                      "modes": {name: str(m) for name, m in zip(jm.free_names(), self._free_modes())}},
            "method": fitting.method,
            "likelihood": fitting.likelihood.name,
            "img_block_path": None if img is None else os.path.abspath(img),
            "table": dataclasses.asdict(TableOptions(likelihood=fitting.likelihood.name, method=fitting.method,
                                                     blocks=img is not None, priors=bool(jm.ref.priors))),
            "settings": fitting.options.describe(),
            "priors": [f"{term.label}: {term.prior.describe()}" for term in jm.ref.priors],
        }
        description["model_id"] = model_id(json_round_trip(description))
        return description

    def _band_meta(self, band: str) -> dict:
        bands = self.model.bands
        b = bands.names.index(band)
        meta = {"wavelength": bands.wavelength[b], "pix_scale": bands.pix_scale[b]}
        if bands.zero_point is not None:
            meta["zero_point"] = bands.zero_point[b]
        return meta

    def _free_modes(self) -> list:
        jm = self.model
        out = []
        for prm in jm.ref.free:
            mode = jm.modes[prm]
            out.extend([mode] * (jm.slices[prm].stop - jm.slices[prm].start))
        return out

    def inputs(self) -> list[str]:
        """Each galaxy's input files in every band (a galaxy whose files change is fitted again on resume)."""
        from .run import galaxy_inputs

        ds = self.fitting.dataset
        per_band = [galaxy_inputs(band, ds.result_path) for band in ds.datasets.values()]
        return ["|".join(f"{b}:{x}" for b, x in zip(ds.bands.names, row)) for row in zip(*per_band)]

    def _resumed(self, description: dict, inputs: list[str], positions) -> list[MultiBandResult]:
        """The rows of ``positions`` already in the parts (this model, these inputs) as results."""
        from ..errors import OutputError
        from .parts import read_parts
        from .run import model_changes, read_run_description
        from .store import ResultColumn, ResultStore

        ds, jm = self.fitting.dataset, self.model
        self._kept_blocks: dict[int, str] = {}
        try:
            before = read_run_description(ds.result_path)
        except OutputError:
            return []  # nothing run here yet
        changed = model_changes(before, description)
        if changed:
            raise ValueError(f"Fitting.fit(resume=True): the parts in '{ds.result_path}' come from a different run "
                             f"({', '.join(changed)} differ); resume with the same model and dataset, or give a new "
                             "result_path")
        columns = part_columns([c.name for c in jm.columns], jm.bands)
        found = read_parts(ds.result_path, columns, model_id=description["model_id"])
        rows, _, _ = found.select(list(ds.names), inputs)
        store = ResultStore([ResultColumn(c) for c in columns], list(ds.names), n_free=jm.n_free)
        counts = store.add_parts(rows)
        done = np.intersect1d(np.flatnonzero(counts > 0), positions)
        if ds.img_block_path is not None:
            present = set(os.listdir(ds.img_block_path)) if Path(ds.img_block_path).is_dir() else set()
            fitted = np.isfinite(store.loss[done])
            # a fit whose block is missing is fitted again for its block
            done = done[~fitted | np.isin([store.image_block[int(p)] for p in done], list(present))]
            self._kept_blocks = {int(p): store.image_block[int(p)] for p in done}
        if done.size:
            log.info("resume: %d galaxies already fitted in '%s'", done.size, ds.result_path)
        return [from_store(store, done, [c.name for c in jm.columns], jm.bands)] if done.size else []

    def _read_again(self, res: MultiBandResult) -> list | None:
        """The batches of a result fitted elsewhere (one shape group), read again; None if a galaxy is unusable."""
        gals = [self.fitting.dataset.load(int(p)) for p in res.result.positions]
        if not all(g.usable for row in gals for g in row):
            return None
        return [make_batch([row[b] for row in gals]) for b in range(len(self.model.bands))]

    def _groups(self, positions, unusable: list | None = None):
        return group_galaxies(self.fitting.dataset, self.model, positions, self.fitting.batch_size, unusable)

    def _fit_with_client(self, settings, todo, on_batch=None) -> list[MultiBandResult]:
        """Chunks of the dataset fitted as dask tasks (read and fitted on the workers); a failed task is flagged."""
        import math

        fitting, ds, jm = self.fitting, self.fitting.dataset, self.model
        client = fitting.client
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        size = max(fitting.batch_size, math.ceil(len(todo) / (4 * workers)))
        chunks = [todo[start : start + size] for start in range(0, len(todo), size)]
        data_f, model_f = client.scatter([ds, jm], broadcast=True)
        futures = [client.submit(fit_multiband_positions, data_f, model_f, settings, chunk, fitting.batch_size,
                                 None, fitting.threads, pure=False) for chunk in chunks]
        parts: list[MultiBandResult] = []
        for chunk, future in zip(chunks, futures):
            try:
                done = future.result()
            except Exception as exc:  # noqa: BLE001 - a lost worker must not lose the other chunks
                log.warning("a dask task of %d galaxies failed: %s: %s", len(chunk), type(exc).__name__, exc)
                message = [f"not fitted: its dask task failed ({type(exc).__name__}: {exc})"]
                parts.append(_empty(jm, chunk, [ds.names[i] for i in chunk], [int(Flag.fit_error)] * len(chunk),
                                    [list(message) for _ in chunk], True))
                continue
            for res in done:  # the parts of a chunk, written here (blocks are refused with a client)
                if on_batch is not None:
                    on_batch(None, res)
            parts.extend(done)
        return parts

    def bootstrap(self, n_resample: int, iteration: int, seed: int) -> None:
        """Bootstrap errors of every fitted galaxy (every band's pixels resampled), into the result's errors."""
        import dataclasses

        import torch

        from ..fitting.multiband import bootstrap_multiband

        fitting, r = self.fitting, self.result.result
        settings = fitting.settings(covariance=False)
        lm = dataclasses.replace(fitting.lm_settings, max_iterations=iteration)
        generator = torch.Generator().manual_seed(seed)
        rows_per_pass = max(n_resample, fitting.batch_size * (4 if fitting.device.type == "cpu" else 32))
        names = [c.name for c in self.model.columns]
        errors = {k: np.full(len(r), np.nan) for k in names}
        fitted = np.flatnonzero(np.isfinite(r.loss) & np.all(np.isfinite(r.theta), axis=1))
        try:
            for rows in self._groups(r.positions[fitted]):
                batches = [make_batch([gals[b] for gals in rows]) for b in range(len(self.model.bands))]
                at = np.searchsorted(r.positions, batches[0].positions)
                best = np.stack([r.values[k][at] for k in names], axis=1)
                std = bootstrap_multiband(self.model, batches, r.theta[at], best, n_resample, settings, lm,
                                          generator, rows_per_pass)
                for j, k in enumerate(names):
                    errors[k][at] = std[:, j]
        finally:
            self.fitting.dataset.close()
        r.errors = errors

    # ---------------------------------------------------------- image blocks
    def _block_names(self) -> list[str]:
        """Each galaxy's block file name; the folder checked and no input file among them."""
        import os

        from ..errors import OutputError
        from ..io.naming import safe_file_names
        from .sinks import check_output_folder

        ds = self.fitting.dataset
        folder = check_output_folder(ds.img_block_path, "img_block_path")
        names = safe_file_names(ds.names)
        inputs = {os.path.normcase(os.path.abspath(p)) for pos in range(len(ds)) for p in ds.input_paths(pos)}
        for pos, fname in enumerate(names):
            target = os.path.normcase(os.path.abspath(folder / fname))
            if target in inputs:
                raise OutputError(f"the image block of galaxy {ds.names[pos]!r} would be '{target}', which is an "
                                  "input file; give img_block_path a folder of its own (nothing has been fitted yet)")
        return names

    def band_cards(self, values: dict, errors: dict | None, band: int, loss, dof, n_iter, flag) -> list:
        """GALFIT-style cards of one band of one galaxy: its values (shared and the band's own) and chi2."""
        from ..io.blocks import galfit_header_cards

        jm = self.model
        name = jm.bands.names[band]
        cards, errs = {}, ({} if errors is not None else None)
        for col in jm.ref.columns:
            column = col.name if jm.modes[col.parameter] == "shared" else f"{col.name}_{name}"
            cards[(col.profile, col.slot)] = values[column]
            if errs is not None:
                errs[(col.profile, col.slot)] = errors[column]
        dof = int(dof)
        extra = {"BAND": name, "WAVELEN": float(jm.bands.wavelength[band]), "PIXSCALE": float(jm.bands.pix_scale[band]),
                 **({} if jm.bands.zero_point is None else {"MAGZPT": float(jm.bands.zero_point[band])}),
                 "CHISQ": float(loss), "NDOF": dof, "CHI2NU": float(loss / dof) if dof > 0 else float("nan"),
                 "NFREE": int(jm.n_free), "NITER": int(n_iter), "FLAGS": int(flag)}
        return galfit_header_cards({n: type(p).__name__ for n, p in jm.ref.profiles.items()}, cards, errs, extra)

    def _write_blocks(self, batches: list, fitted: MultiBandResult, names: list[str], settings) -> None:
        """One block per fitted galaxy: every band's data, model, residual, components, mask and sigma."""
        import torch

        from ..fitting.multiband import make_multiband_objective
        from ..io.blocks import write_band_image_block
        from .sinks import _MARK, _is_own_block

        jm, ds, r = self.model, self.fitting.dataset, fitted.result
        rows = np.flatnonzero(np.isfinite(r.loss) & np.all(np.isfinite(r.theta), axis=1))
        if not rows.size:
            return
        dt, dev = settings.torch_dtype, settings.torch_device
        fixed = jm.fixed_values(batches[0].positions)
        objective = make_multiband_objective(jm, batches, fixed, settings)
        index = torch.as_tensor(rows, device=dev)
        theta = torch.as_tensor(r.theta[rows], dtype=dt, device=dev)
        with torch.no_grad():
            rendered = [obj.model_images(objective.band_theta(b, theta, index)[0], index, components=True)
                        for b, obj in enumerate(objective.objectives)]
        dofs = band_dof(fitted, self.model.n_free)
        for k, i in enumerate(rows):
            pos = int(r.positions[i])
            target = ds.img_block_path / names[pos]
            values = {c: v[i] for c, v in r.values.items()}
            errors = None if r.errors is None else {c: v[i] for c, v in r.errors.items()}
            try:
                if target.exists() and not _is_own_block(target):
                    raise OSError(f"'{target}' exists and is not an image block galmoss wrote; it was left untouched "
                                  "(give img_block_path a folder of its own)")
                bands = {}
                for b, band in enumerate(jm.bands.names):
                    batch, (total, parts) = batches[b], rendered[b]
                    bands[band] = dict(
                        data=batch.image[i], model=total[k].double().cpu().numpy(),
                        components={n: v[k].double().cpu().numpy() for n, v in parts.items()},
                        header_cards=self.band_cards(values, errors, b, fitted.band_loss[i, b], dofs[i, b],
                                                     r.n_iter[i], r.flags[i]),
                        mask=batch.weight[i] > 0, sigma=batch.sigma[i])
                primary = [(_MARK, True, "an image block written by galmoss"),
                           ("OBJECT", str(ds.names[pos]).encode("ascii", "replace").decode()[:48], "galaxy_index"),
                           ("BANDS", ",".join(jm.bands.names), "bands, the reference first"),
                           ("CHISQ", float(r.loss[i]), "chi2 of every band"), ("NDOF", int(r.dof[i]), "")]
                write_band_image_block(target, bands, primary_header_cards=primary)
                self.image_block[pos] = names[pos]
            except Exception as exc:  # noqa: BLE001 - a failed write never erases a fit
                log.warning("image block of galaxy %r not written: %s", ds.names[pos], exc)
                r.flags[i] |= int(Flag.block_not_written)
                r.messages[i] = "; ".join(m for m in (r.messages[i], f"image block not written: {exc}") if m)

    def update_block_headers(self) -> None:
        """Rewrite every block's fit cards with the results' errors (after the bootstrap); images untouched."""
        from ..io.blocks import update_image_block_headers

        ds, res = self.fitting.dataset, self.result
        r = res.result
        dofs = band_dof(res, self.model.n_free)
        for i, pos in enumerate(r.positions if self.image_block is not None else []):
            fname = self.image_block[int(pos)]
            if not fname:
                continue
            values = {c: v[i] for c, v in r.values.items()}
            errors = {c: v[i] for c, v in r.errors.items()}
            cards = {f"MODEL_{band}": self.band_cards(values, errors, b, res.band_loss[i, b], dofs[i, b],
                                                      r.n_iter[i], r.flags[i])
                     for b, band in enumerate(self.model.bands.names)}
            try:
                update_image_block_headers(ds.img_block_path / fname, cards)
            except Exception as exc:  # noqa: BLE001 - the results table is already safe
                log.warning("image block %s: header not updated: %s", fname, exc)

    def table(self, errors: bool) -> Table:
        """The results table (see the module docstring); ``errors`` adds ``<column>_err``."""
        jm, ds = self.model, self.fitting.dataset
        rows = self.rows
        res = self.result if rows is None else _take(self.result, np.searchsorted(self.result.result.positions, rows))
        blocks = None if getattr(self, "image_block", None) is None else (
            [self.image_block[int(p)] for p in res.result.positions], ds.img_block_path)
        priors = "; ".join(f"{term.label}: {term.prior.describe()}" for term in jm.ref.priors) or None
        return band_table(res, [c.name for c in jm.columns], jm.bands, jm.n_free, self.fitting.likelihood.name,
                          errors, priors, blocks, self.intervals())

    def intervals(self) -> dict[str, str]:
        """The columns that have a 68.3 % interval, and its kind (:func:`galmoss.fitting.intervals.interval_kind`)."""
        kinds = {c.name: interval_kind(c) for c in self.model.columns if c.parameter is not None}
        return {name: kind for name, kind in kinds.items() if kind is not None}


def band_dof(res: MultiBandResult, n_free: int) -> np.ndarray:
    """(B, n_bands): each band's usable pixels less its share of the joint free parameters."""
    used = res.band_dof.astype(np.float64)
    total = used.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(total > 0, used - n_free * used / np.maximum(total, 1), 0.0)
    return np.where(np.isfinite(res.result.loss)[:, None], np.rint(share), 0).astype(np.int64)


def band_table(res: MultiBandResult, columns: list[str], bands, n_free: int, likelihood: str, errors: bool,
               priors: str | None = None, blocks: tuple[list[str], object] | None = None,
               intervals: dict[str, str] | None = None) -> Table:
    """The results table of a multi-band run (a fit's, or ``galmoss collate``'s of its parts).

    ``blocks``: each row's image-block file name and the blocks' folder.
    ``intervals``: ``{column: kind}`` of the columns given a 68.3 % interval beside the error.
    """
    r = res.result
    t = Table()
    t["galaxy_index"] = np.array(list(r.names), dtype=str)
    for name in columns:
        t[name] = r.values[name]
        if errors:
            t[f"{name}_err"] = r.errors[name] if r.errors is not None else np.full(len(r), np.nan)
            if (intervals or {}).get(name):
                add_interval(t, name, intervals[name])
    loss = "chi2" if likelihood == "chi2" else "deviance"
    t[loss] = r.loss
    t["dof"] = r.dof
    with np.errstate(divide="ignore", invalid="ignore"):
        t[f"reduced_{loss}"] = np.where(r.dof > 0, r.loss / np.maximum(r.dof, 1), np.nan)
    if priors:
        t[f"{loss}_prior"] = r.prior_loss  # the priors' term, apart from the likelihood's
        t.meta["priors"] = priors
    dof = band_dof(res, n_free)
    for b, band in enumerate(bands.names):
        t[f"{loss}_{band}"] = res.band_loss[:, b]
        t[f"dof_{band}"] = dof[:, b]
    t["n_iter"] = r.n_iter
    t["converged"] = r.converged
    t["status"] = r.status
    t["flag"] = r.flags
    t["message"] = np.array([m if m else "" for m in r.messages], dtype=str)
    if blocks is not None:
        t["image_block"] = np.array(blocks[0], dtype=str)
    # FITS keywords (8 characters) in results.fits: the bands in order, their wavelengths and pixel scales
    t.meta["BANDS"] = ",".join(bands.names)
    t.meta["WAVELEN"] = ",".join(f"{w:g}" for w in bands.wavelength)
    t.meta["PIXSCALE"] = ",".join(f"{s:g}" for s in bands.pix_scale)
    if bands.zero_point is not None:
        t.meta["MAGZPT"] = ",".join(f"{z:g}" for z in bands.zero_point)
    if blocks is not None:  # where galmoss plot / report find the blocks
        t.meta["IMGBLOCK"] = str(Path(blocks[1]).absolute())
    return t


def _take(res: MultiBandResult, idx) -> MultiBandResult:
    return MultiBandResult(res.result.take(idx), res.band_loss[idx], res.band_dof[idx])


# ------------------------------------------------------------------- parts
def part_columns(columns: list[str], bands) -> list[str]:
    """The value columns of a multi-band part: the table's, then each band's chi2 and usable pixels."""
    return list(columns) + [f"band_loss_{b}" for b in bands.names] + [f"band_pixels_{b}" for b in bands.names]


def as_part(res: MultiBandResult, bands) -> BatchResult:
    """A joint batch's rows as a part's :class:`BatchResult` (the per-band numbers as value columns)."""
    import dataclasses

    r = res.result
    extra = {f"band_loss_{b}": res.band_loss[:, i] for i, b in enumerate(bands.names)}
    extra.update({f"band_pixels_{b}": res.band_dof[:, i].astype(np.float64) for i, b in enumerate(bands.names)})
    errors = None if r.errors is None else {**r.errors, **{k: np.full(len(r), np.nan) for k in extra}}
    return dataclasses.replace(r, values={**r.values, **extra}, errors=errors, covariance=None)


def from_store(store, positions: np.ndarray, columns: list[str], bands) -> MultiBandResult:
    """The rows at ``positions`` of a :class:`~galmoss.pipeline.store.ResultStore` filled from parts."""
    from ..pipeline.store import ROW_FIELDS

    pos = np.asarray(positions, dtype=np.int64)
    at = {c: j for j, c in enumerate(store.columns)}
    errors = bool(pos.size) and bool(np.all(store.with_errors[pos]))
    r = BatchResult(
        positions=pos.copy(), names=[store.names[int(p)] for p in pos],
        values={c: store.values[pos, at[c]] for c in columns},
        errors={c: store.errors[pos, at[c]] for c in columns} if errors else None, covariance=None,
        theta=store.theta[pos], messages=[store.messages[int(p)] for p in pos],
        **{f.attr: getattr(store, f.attr)[pos] for f in ROW_FIELDS})
    band_loss = np.stack([store.values[pos, at[f"band_loss_{b}"]] for b in bands.names], axis=1)
    pixels = np.stack([store.values[pos, at[f"band_pixels_{b}"]] for b in bands.names], axis=1)
    return MultiBandResult(r, band_loss, np.nan_to_num(pixels).astype(np.int64))


def collate_table(store, description: dict, fitted: np.ndarray) -> Table:
    """``galmoss collate``'s table of a multi-band run: what the run itself writes, from its parts."""
    from ..fitting.bands import Bands

    info = description["bands"]
    bands = Bands(tuple(info["names"]), tuple(info["wavelength"]), tuple(info["pix_scale"]),
                  None if info.get("zero_point") is None else tuple(info["zero_point"]),
                  None if info.get("rotation") is None else tuple(info["rotation"]))
    columns = [c for c in store.columns if not c.startswith(("band_loss_", "band_pixels_"))]
    res = from_store(store, fitted, columns, bands)
    table_options = description.get("table") or {}
    blocks = None
    if description.get("img_block_path"):
        blocks = ([store.image_block[int(p)] for p in fitted], description["img_block_path"])
    priors = "; ".join(description.get("priors") or []) or None
    return band_table(res, columns, bands, len(description.get("free", [])), table_options.get("likelihood", "chi2"),
                      res.result.errors is not None, priors, blocks, description.get("intervals"))
