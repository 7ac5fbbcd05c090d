"""Run folders of GALFIT feedmes as batches: ``galmoss galfit FILE... | @list.txt``.

1. Every feedme (and its constraint file) is parsed first; one that does not
   parse, uses what galmoss lacks, has no component, or whose B) block would
   overwrite an input or another feedme's block is refused (a row with
   ``read_error`` and the reason, naming the file) and the others run.
2. Each galaxy's data are read (only the H) section of A), C) and F)); a
   missing file, an H) region outside the image or an E) > 1 without a PSF flags
   that galaxy (``read_error``) and the others run. EXPTIME joins J) in the zero point.
3. Feedmes whose models share one structure (components, fit toggles,
   constraints, zero point, plate scale, P) mode) are fitted together through
   the public API (``gm.Dataset.from_arrays`` -> ``gm.Fitting`` -> ``fit`` ->
   ``uncertainty("covar_mat")``), in batches of ``batch_size``; a batch that
   fails as a whole is fitted galaxy by galaxy, so only the bad feedme is refused.
4. For every galaxy: the image block at B), its restart file next to it, an
   entry in ``fit.log`` (in the output folder), and one results table for the
   run (``results.fits`` / ``results.csv`` in the output folder). Blocks are
   drawn again from the fitted values with ``gm.render``: no optimiser needed.

``P) 1`` and ``P) 2`` (and a model with no free parameter) evaluate the model at
the given values; nothing is fitted.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..flags import Flag, decode
from .constraints import Constraint, parse_constraints
from .convert import (SLOTS, build_profiles, component_labels, component_name, coupled_keys, free_and_fixed,
                      header_key, row_values, starts, truncation_slot, widened_slots)
from .feedme import Feedme, FeedmeError, parse_feedme
from .galfitm import is_galfitm, parse_galfitm, parse_galfitm_constraints, run_galfitm
from .images import ascii_mask, exposure_time, galfit_sigma, is_fits, read_section
from ..io.naming import open_append
from .output import (failed_row, fit_log_entry, format_feedme, model_header_cards, refused_row, restart_path,
                     write_block)

log = logging.getLogger("galmoss")


@dataclass
class GalaxyInput:
    """One feedme and its data (the H) section), or why it could not be read."""

    feedme: Feedme
    constraints: list[Constraint]
    image: np.ndarray | None = None
    sigma: np.ndarray | None = None
    psf: np.ndarray | None = None
    weight: np.ndarray | None = None
    origin: tuple[int, int] = (1, 1)
    zeropoint: float = 0.0  # J) + 2.5 log10(EXPTIME): GALFIT's magnitudes are of counts per second
    flags: int = 0
    messages: list[str] = field(default_factory=list)


def expand_arguments(files: Iterable[str]) -> list[Path]:
    """Feedme paths from arguments; ``@list.txt`` holds one path a line (relative to the list's folder)."""
    out: list[Path] = []
    for arg in files:
        if str(arg).startswith("@"):
            listing = Path(str(arg)[1:])
            if not listing.is_file():
                raise FileNotFoundError(f"list of feedmes '{listing}' does not exist")
            for line in listing.read_text().splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    p = Path(line)
                    out.append(p if p.is_absolute() else listing.parent / p)
        else:
            out.append(Path(arg))
    return out


def load_galaxy(feedme: Feedme, constraints: list[Constraint]) -> GalaxyInput:
    """Read one feedme's data; problems become flags and messages, never exceptions."""
    gal = GalaxyInput(feedme, constraints)
    region = feedme.region
    gal.origin = (region[0], region[2]) if region is not None else (1, 1)
    gal.zeropoint = feedme.zeropoint
    try:
        if feedme.psf_sampling > 1 and feedme.psf is None:
            raise ValueError(f"{feedme.where('E')}: E) {feedme.psf_sampling} needs a D) PSF (sampled that much finer)")
        image, header, _ = read_section(feedme.image, region, "A) input image")
        gal.zeropoint = feedme.zeropoint + 2.5 * math.log10(exposure_time(header))
        weight = np.isfinite(image).astype(np.float64)
        if feedme.mask is not None:
            if not feedme.mask.is_file():
                raise FileNotFoundError(f"F) bad-pixel mask '{feedme.mask}' does not exist")
            if is_fits(feedme.mask):
                mask, _, _ = read_section(feedme.mask, region, "F) bad-pixel mask")
                if mask.shape != image.shape:
                    raise ValueError(f"F) mask '{feedme.mask}' is {mask.shape}, the image {image.shape}")
                weight[mask != 0] = 0.0
            else:
                weight[ascii_mask(feedme.mask, image.shape, gal.origin)] = 0.0
        if feedme.sigma is not None:
            sigma, _, _ = read_section(feedme.sigma, region, "C) sigma image")
            if sigma.shape != image.shape:
                raise ValueError(f"C) sigma image '{feedme.sigma}' is {sigma.shape}, the image {image.shape}")
        else:
            sigma = galfit_sigma(image, header, weight)
            gal.flags |= Flag.sigma_estimated
            gal.messages.append("sigma made from the data (C) none: GAIN or ATODGAIN, NCOMBINE)")
        if feedme.psf is not None:
            gal.psf, _, _ = read_section(feedme.psf, None, "D) PSF")
    except (OSError, ValueError, NotImplementedError) as exc:
        gal.flags |= Flag.read_error
        gal.messages.append(str(exc))
        return gal
    bad = ~np.isfinite(image) | ~np.isfinite(sigma) | ~(sigma > 0)
    weight[bad] = 0.0
    gal.image = np.where(bad, 0.0, image)
    gal.sigma = np.where(bad, 1.0, sigma)
    gal.weight = weight
    if not np.any(weight > 0):
        gal.flags |= Flag.fully_masked
        gal.messages.append("every pixel is masked or bad")
    return gal


@dataclass
class Entry:
    """One feedme of a run: parsed (``feedme``, ``constraints``; None when it does not parse) and, when refused,
    ``error`` saying why (naming the file)."""

    path: Path
    feedme: Feedme | None = None
    constraints: list[Constraint] = field(default_factory=list)
    error: str = ""


def _inputs(feedme: Feedme) -> dict[Path, str]:
    """The files a feedme reads, by absolute path, with the line naming each."""
    if hasattr(feedme, "inputs"):  # a GalfitM file: a list of files per line
        return feedme.inputs()
    named = {"A": feedme.image, "C": feedme.sigma, "D": feedme.psf, "F": feedme.mask, "G": feedme.constraints}
    out = {Path(os.path.abspath(feedme.path)): "feedme"}
    for key, p in named.items():
        if p is not None:
            out.setdefault(Path(os.path.abspath(p)), f"{key}) file")
    return out


def parse_all(paths: Sequence[Path], base: str = "feedme") -> list[Entry]:
    """Parse every feedme and constraint file; a file that cannot be used is refused, never the run.

    Refused (each naming the file): a line that does not parse, a feature galmoss
    lacks, a missing feedme or constraint file, no component, and a ``B)``
    block that would overwrite an input of this or another feedme of the run
    (both named) or the block of another feedme (all of them are refused).
    """
    entries: list[Entry] = []
    for path in paths:
        try:
            where = Path.cwd() if base == "cwd" else None
            if is_galfitm(path):
                feedme = parse_galfitm(path, base=where)
                cons = parse_galfitm_constraints(feedme)
            else:
                feedme = parse_feedme(path, base=where)
                cons = parse_constraints(feedme.constraints, feedme.components) if feedme.constraints is not None else []
            entries.append(Entry(Path(path), feedme, cons))
        except (FeedmeError, OSError) as exc:
            entries.append(Entry(Path(path), error=str(exc)))
    parsed = [e for e in entries if e.feedme is not None]
    blocks: dict[Path, list[Entry]] = {}
    for e in parsed:
        blocks.setdefault(Path(os.path.abspath(e.feedme.output)), []).append(e)
    reads: dict[Path, tuple[Entry, str]] = {}
    for e in parsed:
        for p, what in _inputs(e.feedme).items():
            reads.setdefault(p, (e, what))
    for block, users in blocks.items():
        if len(users) > 1:
            for e in users:
                others = ", ".join(str(o.path) for o in users if o is not e)
                e.error = (f"{e.feedme.where('B')}: B) '{e.feedme.output}' is also the image block of {others}; one would "
                           "overwrite the other: give each feedme its own B) path (not fitted)")
            continue
        e = users[0]
        own = _inputs(e.feedme)
        if block in own or block in reads:
            owner, what = (e, own[block]) if block in own else reads[block]
            if owner is e:
                target = "the feedme itself" if what == "feedme" else f"its own {what}"
            else:
                target = f"the feedme {owner.path}" if what == "feedme" else f"the {what} of {owner.path}"
            e.error = (f"{e.feedme.where('B')}: B) '{e.feedme.output}' would overwrite {target}; galmoss never "
                       "writes over an input: give B) another path (not fitted)")
    return entries


def group_key(feedme: Feedme, constraints: Sequence[Constraint]) -> tuple:
    """What feedmes fitted as one batch share: the model's structure, zero point, plate scale, constraints,
    and the parameters whose starts widen galmoss's usual range."""
    return (feedme.structure, feedme.zeropoint, feedme.plate_scale, tuple(c.key for c in constraints),
            widened_slots(feedme))


def run_galfit(
    files: Iterable[str | os.PathLike],
    *,
    output: str | os.PathLike = ".",
    batch_size: int = 64,
    iteration: int = 200,
    device=None,
    base: str = "feedme",
    galfit_convolution: bool = False,
):
    """Fit every feedme and write GALFIT's outputs; return the run's results table.

    Parameters
    ----------
    files
        Feedme paths, or ``@list.txt`` naming one per line.
    output
        Folder of ``fit.log`` and the run's ``results.fits``/``results.csv``
        (image blocks and restart files go where each feedme's B) says).
    batch_size, iteration, device
        Passed to :class:`galmoss.Fitting`.
    base
        ``"feedme"``: relative paths in a feedme are taken from its folder;
        ``"cwd"``: from the current folder (GALFIT's own rule).
    galfit_convolution
        Draw the models as GALFIT does: integrated over pixels, then convolved
        with the PSF image (``RenderSettings(pixel_response="galfit")``).

    Returns
    -------
    astropy.table.Table
        One row per feedme: ``feedme``, ``output``, ``restart``, ``group``,
        ``flag``, ``message``, ``chi2``, ``ndof``, ``chi2nu``, and ``<k>_<KEY>`` /
        ``<k>_<KEY>_err`` per component parameter (GALFIT units, full frame).
    """
    paths = expand_arguments([str(f) for f in files])
    if not paths:
        raise ValueError("galmoss galfit: no feedme given")
    entries = parse_all(paths, base)
    out_dir = Path(output)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows: list[dict] = [dict() for _ in entries]
    for i, e in enumerate(entries):
        if e.error:
            rows[i].update(refused_row(e.path, e.error, out_dir / "fit.log", feedme=e.feedme))
    # group on the feedmes alone, then read each group's data a chunk at a time:
    # memory holds one chunk's sections, never the whole catalogue's
    groups: dict[tuple, list[int]] = {}
    multiband = [i for i, e in enumerate(entries) if not e.error and getattr(e.feedme, "galfitm", False)]
    for i, e in enumerate(entries):
        if not e.error and i not in multiband:
            groups.setdefault(group_key(e.feedme, e.constraints), []).append(i)
    chunk = max(4 * batch_size, 256)
    settings = _settings_factory(galfit_convolution)
    if multiband:  # GalfitM's multi-band files: joint fits (galfitm.py)
        run_galfitm([entries[i] for i in multiband], [rows[i] for i in multiband], out_dir, batch_size, iteration,
                    device, settings)
    g = -1
    for members in groups.values():
        first = entries[members[0]].feedme
        log.info("%d feedmes, components %s", len(members), ", ".join(c.kind for c in first.components))
        for start in range(0, len(members), chunk):
            part = members[start : start + chunk]
            loaded = {i: load_galaxy(entries[i].feedme, entries[i].constraints) for i in part}
            good = [i for i in part if loaded[i].image is not None and not (loaded[i].flags & Flag.fully_masked)]
            for i in part:
                if i not in good:
                    rows[i].update(failed_row(loaded[i], out_dir / "fit.log"))
            # the image's EXPTIME is part of the zero point: one batch per value
            by_zeropoint: dict[float, list[int]] = {}
            for i in good:
                by_zeropoint.setdefault(loaded[i].zeropoint, []).append(i)
            for same in by_zeropoint.values():
                g += 1
                _run_safely(g, [loaded[i] for i in same], [rows[i] for i in same], batch_size, iteration, device, out_dir,
                            settings)
    table = _results_table(entries, rows)
    from ..io.results import write_results

    write_results(table, out_dir)
    table.meta["elapsed"] = time.perf_counter() - t0
    return table


def _run_safely(g, gals, rows, batch_size, iteration, device, out_dir, settings) -> None:
    """Fit a group; if it fails as a whole, fit each galaxy alone so that only the bad ones are refused."""
    try:
        _run_group(g, gals, rows, batch_size, iteration, device, out_dir, settings)
    except (ValueError, NotImplementedError, RuntimeError) as exc:
        if len(gals) == 1:
            gal = gals[0]
            gal.flags |= Flag.fit_error
            gal.messages.append(f"{gal.feedme.path}: {exc}")
            rows[0].update(failed_row(gal, out_dir / "fit.log"))
            return
        log.info("a group of %d feedmes failed (%s): fitting them one by one", len(gals), exc)
        for gal, row in zip(gals, rows):
            row.clear()
            _run_safely(g, [gal], [row], batch_size, iteration, device, out_dir, settings)


def _run_group(g, gals: list[GalaxyInput], rows: list[dict], batch_size, iteration, device, out_dir: Path,
               settings) -> None:
    from ..data import Dataset
    from ..pipeline.fitting import Fitting

    feedmes = [gal.feedme for gal in gals]
    origins = [gal.origin for gal in gals]
    first = feedmes[0]
    n_free, n_fix = free_and_fixed(first, gals[0].constraints)
    profiles = build_profiles(feedmes, [gal.constraints for gal in gals], origins, zeropoint=gals[0].zeropoint)
    model_free = any(prm.fit for prof in profiles.values() for prm in prof.parameters().values())
    names = [str(f.path) for f in feedmes]
    if first.mode in (1, 2) or not model_free:
        fitted = _evaluate(profiles, gals, settings)
    else:
        dataset = Dataset.from_arrays(
            [gal.image for gal in gals],
            [gal.sigma for gal in gals],
            [gal.psf for gal in gals] if gals[0].psf is not None else None,
            [(gal.weight == 0).astype(np.int8) for gal in gals],
            galaxy_index=names,
            mask_index=0,  # GALFIT's F): every non-zero pixel is bad, even one under the galaxy (never a segmentation map)
        )
        dataset.define_profiles(**profiles)
        fitting = Fitting(dataset=dataset, batch_size=batch_size, iteration=iteration, device=device, progress=False,
                          render_settings=settings(first), priors=first.prior_preset)
        fitting.fit()
        fitted = fitting.uncertainty("covar_mat")
    for i, (gal, row) in enumerate(zip(gals, rows)):
        try:
            _write_outputs(g, gal, fitted[i], row, n_free, n_fix, out_dir, settings)
        except (ValueError, NotImplementedError, RuntimeError) as exc:  # this galaxy's outputs only
            gal.flags |= Flag.fit_error
            gal.messages.append(f"{gal.feedme.path}: {exc}")
            row.clear()
            row.update(failed_row(gal, out_dir / "fit.log"))


def _settings_factory(galfit_convolution: bool = False):
    """``feedme -> RenderSettings``: its E) PSF oversampling, and GALFIT's pixel convention when asked."""
    from ..settings import RenderSettings

    response = "galfit" if galfit_convolution else "psf"

    def settings(feedme: Feedme) -> RenderSettings:
        return RenderSettings(psf_oversampling=feedme.psf_sampling, pixel_response=response)

    return settings




def _evaluate(profiles, gals: list[GalaxyInput], settings):
    """Results-like rows for a model that is evaluated, not fitted (P) 1, 2 or nothing free)."""
    from astropy.table import Table

    from ..render import render

    table = Table()
    table["galaxy_index"] = [str(gal.feedme.path) for gal in gals]
    for name, prof in profiles.items():
        for slot, prm in prof.parameters().items():
            shape = (len(gals), prm.initial.shape[-1]) if prm.is_vector else (len(gals),)
            table[f"{name}_{slot}"] = np.broadcast_to(prm.initial, shape).astype(np.float64)
            table[f"{name}_{slot}_err"] = np.full(shape, np.nan)
    chi2 = np.full(len(gals), np.nan)
    dof = np.zeros(len(gals), dtype=np.int64)
    for i, gal in enumerate(gals):
        single = build_profiles([gal.feedme], values=_values_of(table[i], gal.feedme, gal.origin), origins=[gal.origin],
                                zeropoint=gal.zeropoint)
        model = render(single, gal.image.shape, psf=gal.psf, dtype=__import__("torch").float64,
                       settings=settings(gal.feedme)).numpy()[0]
        chi2[i] = float(np.sum(((gal.image - model) / gal.sigma) ** 2 * (gal.weight > 0)))
        dof[i] = int(np.count_nonzero(gal.weight > 0))
    table["chi2"] = chi2
    table["dof"] = dof
    table["flag"] = np.zeros(len(gals), dtype=np.int64)
    table["message"] = [""] * len(gals)
    return table


def _values_of(row, feedme: Feedme, origin) -> dict:
    """(component, label) -> value in GALFIT's frame (full image) from a results row."""
    out = {}
    for comp in feedme.components:
        for label, v in row_values(row, comp, origin).items():
            if label == "C0" and "C0" not in comp.params:
                continue  # C0 appears in GALFIT's outputs only when the feedme gives it
            out[(comp.index, label)] = np.array([v])
    return out


def _write_outputs(g, gal: GalaxyInput, row, out: dict, n_free: int, n_fix: int, out_dir: Path, settings) -> None:
    import torch

    from ..render import render

    feedme = gal.feedme
    vals = _values_of(row, feedme, gal.origin)
    values = {k: float(v[0]) for k, v in vals.items()}
    errors = {(comp.index, label): e for comp in feedme.components
              for label, e in row_values(row, comp, gal.origin, errors=True).items()}
    tab = starts(feedme)
    # fit toggles as the feedme gives them (a coupled parameter keeps its 1 and gets the tie's error);
    # an evaluated model (P) 1, 2) has every value given, none fitted
    free = {key: bool(fit) and feedme.mode not in (1, 2) for key, (_, fit, _) in tab.items()}
    message = str(row["message"]) if "message" in row.colnames else ""
    flags = int(row["flag"]) | gal.flags
    problems = set()
    for key, v in values.items():
        comp = feedme.components[key[0] - 1]
        if free.get(key) and (not math.isfinite(v) or not math.isfinite(errors.get(key, math.nan))
                              or _column(comp, key[1]) in message):
            problems.add(key)
    messages = [m for m in [*gal.messages, message] if m]
    chi2 = float(row["chi2"])
    ndof = int(row["dof"])
    stats = {"chi2": chi2, "ndof": ndof, "nfree": n_free, "nfix": n_fix,
             "chi2nu": chi2 / ndof if ndof > 0 else math.nan, "flags_text": ",".join(decode(flags))}
    restart = None
    if all(math.isfinite(v) for v in values.values()):
        single = build_profiles([feedme], values=vals, origins=[gal.origin], zeropoint=gal.zeropoint)
        shown = {name: prof for (name, prof), comp in zip(single.items(), feedme.components) if not comp.skip}
        shape = gal.image.shape
        if shown:
            model, parts = render(shown, shape, psf=gal.psf, dtype=torch.float64, components=True,
                                  settings=settings(feedme))
            model = model.numpy()[0]
            parts = {name: im.numpy()[0] for name, im in parts.items()}
        else:
            model, parts = np.zeros(shape), {}
        restart = restart_path(feedme.output) if feedme.mode in (0, 3) else None
        cards = model_header_cards(feedme, shape, values, errors, free, problems, stats,
                                   logfile=restart.name if restart is not None else "none",
                                   coupled=coupled_keys(gal.constraints))
        try:
            write_block(feedme.output, feedme.mode, gal.image, model, parts if feedme.mode == 3 else None, cards)
            if restart is not None:
                restart.write_text(format_feedme(feedme, values, free, title=f"galmoss restart file of {feedme.path}",
                                                 coupled=coupled_keys(gal.constraints)))
        except OSError as exc:  # the fit is kept: the row and fit.log say what is missing
            flags |= Flag.block_not_written
            messages.append(f"{feedme.where('B')}: image block or restart file not written: {exc}")
            restart = None
    else:
        messages.append("no finite fit: no image block written")
    with open_append(out_dir / "fit.log") as fh:  # never through a symlink
        fh.write(fit_log_entry(feedme, gal.image.shape, restart, values, errors, free, chi2, ndof, "; ".join(messages),
                               coupled=coupled_keys(gal.constraints)))
    out.update({"group": g, "flag": flags, "message": "; ".join(messages), "restart": "" if restart is None else str(restart),
                "chi2": chi2, "ndof": ndof, "chi2nu": stats["chi2nu"]})
    order = {(comp.index, lab): i for comp in feedme.components for i, lab in enumerate(component_labels(comp))}
    for key, v in sorted(values.items(), key=lambda kv: (kv[0][0], order.get(kv[0], 999))):
        comp = feedme.components[key[0] - 1]
        col = f"{key[0]}_{header_key(comp.kind, key[1])}"
        out[col] = v
        out[col + "_err"] = errors.get(key, math.nan) if free.get(key) else math.nan


def _column(comp, label: str) -> str:
    """The results column (of the Fitting table) that holds GALFIT parameter ``label``."""
    name = component_name(comp.kind, comp.index)
    if label.startswith("F"):
        return f"{name}_fourier_{'phi' if label.endswith('PA') else 'a'}"
    if label.startswith("B"):
        return f"{name}_bending_a"
    return f"{name}_{SLOTS[comp.kind].get(label) or truncation_slot(comp, label)}"


def _results_table(entries: list[Entry], rows: list[dict]):
    from astropy.table import Table

    table = Table()
    table["feedme"] = [str(e.feedme.path if e.feedme is not None else e.path) for e in entries]
    table["output"] = [str(e.feedme.output) if e.feedme is not None else "" for e in entries]
    table["restart"] = [r.get("restart", "") for r in rows]
    table["group"] = np.array([r.get("group", -1) for r in rows], dtype=np.int64)
    table["flag"] = np.array([r.get("flag", 0) for r in rows], dtype=np.int64)
    for col in ("chi2", "ndof", "chi2nu"):
        table[col] = np.array([r.get(col, math.nan) for r in rows], dtype=np.float64)
    keys: list[str] = []
    for r in rows:
        for k in r:
            if k[0].isdigit() and k not in keys:
                keys.append(k)
    for k in keys:
        table[k] = np.array([r.get(k, math.nan) for r in rows], dtype=np.float64)
    table["message"] = [r.get("message", "") for r in rows]
    return table
