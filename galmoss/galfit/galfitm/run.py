"""The joint fits of GalfitM files (``galmoss galfit`` hands them here; see :func:`run_galfitm`).

Files that share one structure (bands, components, degrees of freedom, PSFs,
plate scales, constraints) and, once read, one zero point and image shapes are
fitted together as a :class:`galmoss.data.MultiBandDataset` through
``gm.Fitting``; a group that fails as a whole is fitted file by file, so only
the bad file is refused.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ...flags import Flag
from ..output import failed_row
from .convert import GalfitmInput, galfitm_profiles, load_galfitm
from .output import write_outputs


def run_galfitm(entries, rows, out_dir: Path, batch_size: int, iteration: int, device, settings_factory) -> None:
    """Fit the GalfitM files among ``entries`` (parsed, not refused) and fill their ``rows`` (see run_galfit)."""
    groups: dict[tuple, list[int]] = {}
    for i, e in enumerate(entries):
        groups.setdefault(e.feedme.structure, []).append(i)
    for members in groups.values():
        for start in range(0, len(members), max(4 * batch_size, 64)):
            part = members[start : start + max(4 * batch_size, 64)]
            loaded = {i: load_galfitm(entries[i].feedme, entries[i].constraints) for i in part}
            by_zp: dict[tuple, list[int]] = {}
            for i in part:
                if not loaded[i].usable:
                    rows[i].update(failed_row(loaded[i], out_dir / "fit.log"))
                    continue
                shapes = tuple(im.shape for im in loaded[i].images)
                by_zp.setdefault((loaded[i].zeropoint, shapes), []).append(i)
            for same in by_zp.values():
                _fit_safely([loaded[i] for i in same], [rows[i] for i in same], batch_size, iteration, device, out_dir,
                            settings_factory)


def _fit_safely(gals, rows, batch_size, iteration, device, out_dir, settings_factory) -> None:
    try:
        _fit_group(gals, rows, batch_size, iteration, device, out_dir, settings_factory)
    except (ValueError, NotImplementedError, RuntimeError) as exc:
        if len(gals) == 1:
            gals[0].flags |= Flag.fit_error
            gals[0].messages.append(f"{gals[0].feedme.path}: {exc}")
            rows[0].clear()
            rows[0].update(failed_row(gals[0], out_dir / "fit.log"))
            return
        for gal, row in zip(gals, rows):
            row.clear()
            _fit_safely([gal], [row], batch_size, iteration, device, out_dir, settings_factory)


def _fit_group(gals: list[GalfitmInput], rows, batch_size, iteration, device, out_dir, settings_factory) -> None:
    from ...data import Dataset
    from ...pipeline.fitting import Fitting

    fm = gals[0].feedme
    bands = fm.bands
    profiles = galfitm_profiles(gals)
    names = [str(g.feedme.path) for g in gals]
    dataset = Dataset.from_arrays(
        {b: [g.images[i] for g in gals] for i, b in enumerate(bands)},
        {b: [g.sigmas[i] for g in gals] for i, b in enumerate(bands)},
        {b: [g.psfs[i] for g in gals] for i, b in enumerate(bands)} if gals[0].psfs[0] is not None else None,
        {b: [(g.weights[i] == 0).astype(np.int8) for g in gals] for i, b in enumerate(bands)},
        galaxy_index=names, wavelength=dict(zip(bands, fm.wavelength)),
        mask_index=0,  # F): every non-zero pixel is bad, even one under the galaxy (never a segmentation map)
        pix_scale={b: fm.plate_scales[i][0] for i, b in enumerate(bands)},
    )
    dataset.define_profiles(**profiles)
    settings = settings_factory(fm)
    fitting = Fitting(dataset=dataset, batch_size=batch_size, iteration=iteration, device=device, progress=False,
                      render_settings=settings)
    t0 = time.perf_counter()
    fitting.fit()
    table = fitting.uncertainty("covar_mat")
    elapsed = (time.perf_counter() - t0) / len(gals)
    run = getattr(fitting, "_bands_run", None)  # the joint covariance of the reported columns, for GalfitM's CHEB errors
    cov = run.result.result.covariance if run is not None and run.result is not None else None
    columns = [c.name for c in run.model.columns] if run is not None else list(table.colnames)
    for i, (gal, row) in enumerate(zip(gals, rows)):
        try:
            write_outputs(gal, table[i], None if cov is None else cov[i], columns, row, out_dir, settings, elapsed)
        except (ValueError, NotImplementedError, RuntimeError, OSError) as exc:
            gal.flags |= Flag.fit_error
            gal.messages.append(f"{gal.feedme.path}: {exc}")
            row.clear()
            row.update(failed_row(gal, out_dir / "fit.log"))
