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

__all__ = ["MultiBandRun", "fit_multiband_safely"]


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


class MultiBandRun:
    """Fit a multi-band dataset with a :class:`~galmoss.pipeline.fitting.Fitting`'s options."""

    def __init__(self, fitting) -> None:
        self.fitting = fitting
        ds = fitting.dataset
        if not ds.profiles:
            raise ValueError("Fitting.fit: the dataset has no profiles; call dataset.define_profiles(name=profile)")
        if getattr(fitting, "priors", None) is not None:
            raise NotImplementedError(f"multi-band fits: priors={fitting.priors!r} with bands is not supported yet; "
                                      "fit each band alone to use a preset of priors")
        self.model = JointModel(with_auto_starts(ds.profiles), ds.bands)
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
        if ds.result_path is not None:
            check_output_folder(ds.result_path, "result_path")
        if fitting.device.type == "cpu":
            tune_cpu_allocator()
        settings = fitting.settings(covariance=True)
        t0 = time.perf_counter()
        parts: list[MultiBandResult] = []
        try:
            for rows in self._groups(range(len(ds)), unusable=parts):
                parts.append(self._fit(rows, settings))
        finally:
            ds.close()  # image sets hold a file open between reads
        result = _join(parts)
        order = np.argsort(result.result.positions, kind="stable")
        self.result = MultiBandResult(result.result.reorder(order), result.band_loss[order], result.band_dof[order])
        fitting.timing = {"fit_s": time.perf_counter() - t0, "galaxies": len(ds)}
        log.info("fitted %d galaxies in %d bands jointly in %.1f s", len(ds), len(jm.bands), fitting.timing["fit_s"])
        return self.table(errors=False)

    def _groups(self, positions, unusable: list | None = None):
        """Lists of galaxies (each a list of its bands' records) of one shape signature, at most a batch each.

        Galaxies unusable in some band go to ``unusable`` as flagged empty rows.
        """
        ds, jm = self.fitting.dataset, self.model
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
            if len(groups[key]) >= self.fitting.batch_size:
                yield groups.pop(key)
        yield from groups.values()

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

    def _fit(self, rows: list[list], settings) -> MultiBandResult:
        batches = [make_batch([gals[b] for gals in rows]) for b in range(len(self.model.bands))]
        return fit_multiband_safely(self.model, batches, settings)

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
        # a band's dof: its usable pixels less its share of the joint free parameters
        used = res.band_dof.astype(np.float64)
        total = used.sum(1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(total > 0, used - jm.n_free * used / np.maximum(total, 1), 0.0)
        for b, band in enumerate(jm.bands.names):
            t[f"{name}_{band}"] = res.band_loss[:, b]
            t[f"dof_{band}"] = np.where(np.isfinite(r.loss), np.rint(share[:, b]), 0).astype(np.int64)
        t["n_iter"] = r.n_iter
        t["converged"] = r.converged
        t["status"] = r.status
        t["flag"] = r.flags
        t["message"] = [m if m else "" for m in r.messages]
        # FITS keywords (8 characters) in results.fits: the bands in order, their wavelengths and pixel scales
        t.meta["BANDS"] = ",".join(jm.bands.names)
        t.meta["WAVELEN"] = ",".join(f"{w:g}" for w in jm.bands.wavelength)
        t.meta["PIXSCALE"] = ",".join(f"{s:g}" for s in jm.bands.pix_scale)
        return t
