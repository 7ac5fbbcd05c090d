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
import time

import numpy as np
from astropy.table import Table

from ..fitting.multiband import JointModel, MultiBandResult, fit_multiband_batch
from ..fitting.records import BatchResult
from ..fitting.starts import with_auto_starts
from ..flags import Flag
from ..fitting.fit_settings import ProfileOutputError
from ..fitting.memory import FitMemoryError
from ..pipeline.stream import make_batch

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

    ``on_batch(batches, result)`` runs after each batch's fit (the image blocks).
    """
    from .._compat import torch_threads

    parts: list[MultiBandResult] = []
    with torch_threads(threads if settings.torch_device.type == "cpu" else None):
        try:
            for rows in group_galaxies(ds, jm, positions, batch_size, unusable=parts):
                batches = [make_batch([gals[b] for gals in rows]) for b in range(len(jm.bands))]
                parts.append(fit_multiband_safely(jm, batches, settings))
                if on_batch is not None:
                    on_batch(batches, parts[-1])
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
        self.model.ref.check_precision(fitting.dtype)  # ranges the fit's dtype cannot resolve: refused now
        self.result: MultiBandResult | None = None

    def check(self, n_probe: int = 8):
        """The checks a run makes before its first fit (output folder, the first readable galaxies); fits nothing.

        Returns the reference band's model.
        """
        import os
        from pathlib import Path

        from ..errors import OutputError

        ds = self.fitting.dataset
        folder = ds.result_path
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

    def run(self) -> Table:
        from .._compat import tune_cpu_allocator
        from .sinks import check_output_folder

        fitting, ds, jm = self.fitting, self.fitting.dataset, self.model
        if fitting.client is not None and ds.img_block_path is not None:
            raise NotImplementedError("Fitting.fit: image blocks (img_block_path) of a multi-band dataset fitted with "
                                      "a dask client are not written yet; leave img_block_path or the client out")
        if ds.result_path is not None:
            check_output_folder(ds.result_path, "result_path")
        if fitting.device.type == "cpu":
            tune_cpu_allocator()
        settings = fitting.settings(covariance=True)
        blocks = self._block_names() if ds.img_block_path is not None else None
        #: each galaxy's image block file name ('' where none was written)
        self.image_block = [""] * len(ds) if blocks is not None else None
        t0 = time.perf_counter()
        if fitting.client is not None:
            parts = self._fit_with_client(settings)
        else:
            writer = None if blocks is None else (lambda batches, res: self._write_blocks(batches, res, blocks, settings))
            parts = fit_multiband_positions(ds, jm, settings, range(len(ds)), fitting.batch_size, writer)
        result = _join(parts)
        order = np.argsort(result.result.positions, kind="stable")
        self.result = MultiBandResult(result.result.reorder(order), result.band_loss[order], result.band_dof[order])
        fitting.timing = {"fit_s": time.perf_counter() - t0, "galaxies": len(ds)}
        log.info("fitted %d galaxies in %d bands jointly in %.1f s", len(ds), len(jm.bands), fitting.timing["fit_s"])
        return self.table(errors=False)

    def _groups(self, positions, unusable: list | None = None):
        return group_galaxies(self.fitting.dataset, self.model, positions, self.fitting.batch_size, unusable)

    def _fit_with_client(self, settings) -> list[MultiBandResult]:
        """Chunks of the dataset fitted as dask tasks (read and fitted on the workers); a failed task is flagged."""
        import math

        fitting, ds, jm = self.fitting, self.fitting.dataset, self.model
        client = fitting.client
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        size = max(fitting.batch_size, math.ceil(len(ds) / (4 * workers)))
        chunks = [np.arange(start, min(start + size, len(ds))) for start in range(0, len(ds), size)]
        data_f, model_f = client.scatter([ds, jm], broadcast=True)
        futures = [client.submit(fit_multiband_positions, data_f, model_f, settings, chunk, fitting.batch_size,
                                 None, fitting.threads, pure=False) for chunk in chunks]
        parts: list[MultiBandResult] = []
        for chunk, future in zip(chunks, futures):
            try:
                parts.extend(future.result())
            except Exception as exc:  # noqa: BLE001 - a lost worker must not lose the other chunks
                log.warning("a dask task of %d galaxies failed: %s: %s", len(chunk), type(exc).__name__, exc)
                message = [f"not fitted: its dask task failed ({type(exc).__name__}: {exc})"]
                parts.append(_empty(jm, chunk, [ds.names[i] for i in chunk], [int(Flag.fit_error)] * len(chunk),
                                    [list(message) for _ in chunk], True))
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
        band_dof = self._band_dof(fitted)
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
                        header_cards=self.band_cards(values, errors, b, fitted.band_loss[i, b], band_dof[i, b],
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
        band_dof = self._band_dof(res)
        for i, fname in enumerate(self.image_block or []):
            if not fname:
                continue
            values = {c: v[i] for c, v in r.values.items()}
            errors = {c: v[i] for c, v in r.errors.items()}
            cards = {f"MODEL_{band}": self.band_cards(values, errors, b, res.band_loss[i, b], band_dof[i, b],
                                                      r.n_iter[i], r.flags[i])
                     for b, band in enumerate(self.model.bands.names)}
            try:
                update_image_block_headers(ds.img_block_path / fname, cards)
            except Exception as exc:  # noqa: BLE001 - the results table is already safe
                log.warning("image block %s: header not updated: %s", fname, exc)

    def _band_dof(self, res: MultiBandResult) -> np.ndarray:
        """(B, n_bands): each band's usable pixels less its share of the joint free parameters."""
        used = res.band_dof.astype(np.float64)
        total = used.sum(1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(total > 0, used - self.model.n_free * used / np.maximum(total, 1), 0.0)
        return np.where(np.isfinite(res.result.loss)[:, None], np.rint(share), 0).astype(np.int64)

    def table(self, errors: bool) -> Table:
        """The results table (see the module docstring); ``errors`` adds ``<column>_err``."""
        jm, res = self.model, self.result
        r = res.result
        t = Table()
        t["galaxy_index"] = list(r.names)
        for col in jm.columns:
            t[col.name] = r.values[col.name]
            if errors:
                t[f"{col.name}_err"] = r.errors[col.name] if r.errors is not None else np.full(len(r), np.nan)
        chi2 = self.fitting.likelihood.name == "chi2"
        name = "chi2" if chi2 else "deviance"
        t[name] = r.loss
        t["dof"] = r.dof
        with np.errstate(divide="ignore", invalid="ignore"):
            t[f"reduced_{name}"] = np.where(r.dof > 0, r.loss / np.maximum(r.dof, 1), np.nan)
        if jm.ref.priors:
            t[f"{name}_prior"] = r.prior_loss  # the priors' term, apart from the likelihood's
            t.meta["priors"] = "; ".join(f"{term.label}: {term.prior.describe()}" for term in jm.ref.priors)
        band_dof = self._band_dof(res)
        for b, band in enumerate(jm.bands.names):
            t[f"{name}_{band}"] = res.band_loss[:, b]
            t[f"dof_{band}"] = band_dof[:, b]
        t["n_iter"] = r.n_iter
        t["converged"] = r.converged
        t["status"] = r.status
        t["flag"] = r.flags
        t["message"] = [m if m else "" for m in r.messages]
        if getattr(self, "image_block", None) is not None:
            t["image_block"] = self.image_block
        # FITS keywords (8 characters) in results.fits: the bands in order, their wavelengths and pixel scales
        t.meta["BANDS"] = ",".join(jm.bands.names)
        t.meta["WAVELEN"] = ",".join(f"{w:g}" for w in jm.bands.wavelength)
        t.meta["PIXSCALE"] = ",".join(f"{s:g}" for s in jm.bands.pix_scale)
        if getattr(self, "image_block", None) is not None:  # where galmoss plot / report find the blocks
            t.meta["IMGBLOCK"] = str(self.fitting.dataset.img_block_path.absolute())
        return t
