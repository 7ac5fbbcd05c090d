"""Run folders of GALFIT feedmes as batches: ``galmoss galfit FILE... | @list.txt``.

1. Every feedme (and its constraint file) is parsed first; a line that does not
   parse stops the run before anything is fitted, as do two feedmes naming the
   same B) block.
2. Each galaxy's data are read (only the H) section of A), C) and F)); a
   missing file, an H) region outside the image or an E) > 1 flags that galaxy
   (``read_error``) and the others run.
3. Feedmes whose models share one structure (components, fit toggles,
   constraints, zero point, plate scale, P) mode) are fitted together through
   the public API (``gm.Dataset.from_arrays`` -> ``gm.Fitting`` -> ``fit`` ->
   ``uncertainty("covar_mat")``), in batches of ``batch_size``.
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
from .convert import (SLOTS, build_profiles, component_labels, component_name, free_and_fixed, header_key, row_values,
                      starts, truncation_slot)
from .feedme import Feedme, FeedmeError, parse_feedme
from .output import fit_log_entry, format_feedme, model_header_cards, restart_path, write_block

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


def galfit_sigma(image: np.ndarray, header, weight: np.ndarray | None = None) -> np.ndarray:
    """GALFIT's sigma image when C) is ``none``, from the data and its header.

    ``sigma^2 = max(data - sky, 0) / (GAIN * NCOMBINE) + sigma_sky^2``: the
    source's Poisson noise in electrons turned back into image units, plus the
    sky's noise. ``sky`` and ``sigma_sky`` are the 3-sigma-clipped mean and RMS of
    the (unmasked) image, so they hold the sky's Poisson and the read noise;
    ``RDNOISE`` (electrons) sets a floor ``sigma_sky^2 >= RDNOISE^2 / (GAIN^2
    NCOMBINE)``. Missing keys: GAIN and NCOMBINE 1, RDNOISE 0.

    Parameters
    ----------
    image
        The data (image units, ADU), 2-D.
    header
        Its FITS header (or any mapping).
    weight
        Pixels to measure the sky on (non-zero = used); None: all finite pixels.
    """
    from astropy.stats import sigma_clipped_stats

    def key(name: str, default: float) -> float:
        try:
            value = float(header.get(name, default)) if header is not None else default
        except (TypeError, ValueError):
            return default
        return value if math.isfinite(value) and value > 0 else default

    gain = key("GAIN", 1.0)
    ncombine = key("NCOMBINE", 1.0)
    rdnoise = key("RDNOISE", 0.0) if header is not None and "RDNOISE" in header else 0.0
    good = np.isfinite(image) if weight is None else np.isfinite(image) & (weight > 0)
    if np.count_nonzero(good) < 10:
        return np.full(image.shape, np.nan)
    sky, _, sky_rms = sigma_clipped_stats(image[good], sigma=3.0, maxiters=10)
    sky_var = max(float(sky_rms) ** 2, rdnoise**2 / (gain**2 * ncombine))
    return np.sqrt(np.clip(np.nan_to_num(image - sky), 0.0, None) / (gain * ncombine) + sky_var)


def _read_section(path: Path, region, what: str):
    """(array, header, full shape) of the first image HDU, only the region read (memory-mapped)."""
    from astropy.io import fits

    if not path.is_file():
        raise FileNotFoundError(f"{what} '{path}' does not exist")
    with fits.open(path, memmap=True) as hdul:
        hdu = next((h for h in hdul if h.is_image and h.data is not None and h.data.ndim >= 2), None)
        if hdu is None:
            raise ValueError(f"{what} '{path}' holds no image")
        shape = hdu.data.shape[-2:]
        if region is None:
            data = np.array(hdu.data, dtype=np.float64)
        else:
            x0, x1, y0, y1 = region
            if x0 < 1 or y0 < 1 or x1 > shape[1] or y1 > shape[0]:
                raise ValueError(
                    f"H) region x {x0}-{x1}, y {y0}-{y1} lies outside the {what} '{path}', which is "
                    f"{shape[1]} x {shape[0]} pixels; give a region inside the image"
                )
            data = np.array(hdu.section[y0 - 1 : y1, x0 - 1 : x1], dtype=np.float64)
        return data, hdu.header.copy(), shape


def _ascii_mask(path: Path, shape, origin) -> np.ndarray:
    """GALFIT's ASCII bad-pixel list: one ``x y`` (1-based, full frame) a line."""
    bad = np.zeros(shape, dtype=bool)
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        body = line.split("#", 1)[0].split()
        if not body:
            continue
        try:
            x, y = int(float(body[0])), int(float(body[1]))
        except (ValueError, IndexError):
            raise ValueError(f"bad-pixel list '{path}', line {number}: expected 'x y', got {line.strip()!r}") from None
        col, row = x - origin[0], y - origin[1]
        if 0 <= row < shape[0] and 0 <= col < shape[1]:
            bad[row, col] = True
    return bad


def load_galaxy(feedme: Feedme, constraints: list[Constraint]) -> GalaxyInput:
    """Read one feedme's data; problems become flags and messages, never exceptions."""
    gal = GalaxyInput(feedme, constraints)
    region = feedme.region
    gal.origin = (region[0], region[2]) if region is not None else (1, 1)
    try:
        if feedme.psf_sampling > 1 and feedme.psf is None:
            raise ValueError(f"{feedme.where('E')}: E) {feedme.psf_sampling} needs a D) PSF (sampled that much finer)")
        image, header, _ = _read_section(feedme.image, region, "A) input image")
        weight = np.isfinite(image).astype(np.float64)
        if feedme.mask is not None:
            if not feedme.mask.is_file():
                raise FileNotFoundError(f"F) bad-pixel mask '{feedme.mask}' does not exist")
            if feedme.mask.suffix.lower() in (".fits", ".fit", ".fts") or feedme.mask.name.lower().endswith(".fits.gz"):
                mask, _, _ = _read_section(feedme.mask, region, "F) bad-pixel mask")
                if mask.shape != image.shape:
                    raise ValueError(f"F) mask '{feedme.mask}' is {mask.shape}, the image {image.shape}")
                weight[mask != 0] = 0.0
            else:
                weight[_ascii_mask(feedme.mask, image.shape, gal.origin)] = 0.0
        if feedme.sigma is not None:
            sigma, _, _ = _read_section(feedme.sigma, region, "C) sigma image")
            if sigma.shape != image.shape:
                raise ValueError(f"C) sigma image '{feedme.sigma}' is {sigma.shape}, the image {image.shape}")
        else:
            sigma = galfit_sigma(image, header, weight)
            gal.flags |= Flag.sigma_estimated
            gal.messages.append("sigma made from the data (C) none: GAIN, NCOMBINE, RDNOISE)")
        if feedme.psf is not None:
            gal.psf, _, _ = _read_section(feedme.psf, None, "D) PSF")
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


def parse_all(paths: Sequence[Path], base: str = "feedme") -> list[tuple[Feedme, list[Constraint]]]:
    """Parse every feedme and constraint file; raise one FeedmeError listing every problem."""
    parsed, problems = [], []
    for path in paths:
        try:
            feedme = parse_feedme(path, base=Path.cwd() if base == "cwd" else None)
            cons = parse_constraints(feedme.constraints, feedme.components) if feedme.constraints is not None else []
            parsed.append((feedme, cons))
        except (FeedmeError, FileNotFoundError) as exc:
            problems.append(str(exc))
    if problems:
        raise FeedmeError("cannot read these GALFIT files (nothing was fitted):\n  " + "\n  ".join(problems))
    outputs: dict[Path, Path] = {}
    for feedme, _ in parsed:
        key = Path(os.path.abspath(feedme.output))
        if key in outputs:
            raise FeedmeError(
                f"{feedme.where('B')} and {outputs[key]} both write the image block '{feedme.output}'; give each "
                "feedme its own B) path (nothing was fitted)"
            )
        outputs[key] = feedme.path
    return parsed


def group_key(feedme: Feedme, constraints: Sequence[Constraint]) -> tuple:
    return (feedme.structure, feedme.zeropoint, feedme.plate_scale, tuple(c.key for c in constraints))


def run_galfit(
    files: Iterable[str | os.PathLike],
    *,
    output: str | os.PathLike = ".",
    batch_size: int = 64,
    iteration: int = 200,
    device=None,
    base: str = "feedme",
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
    parsed = parse_all(paths, base)
    out_dir = Path(output)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    # group on the feedmes alone, then read each group's data a chunk at a time:
    # memory holds one chunk's sections, never the whole catalogue's
    groups: dict[tuple, list[int]] = {}
    for i, (feedme, cons) in enumerate(parsed):
        groups.setdefault(group_key(feedme, cons), []).append(i)
    rows: list[dict] = [dict() for _ in parsed]
    chunk = max(4 * batch_size, 256)
    for g, members in enumerate(groups.values()):
        log.info("group %d: %d feedmes, components %s", g, len(members),
                 ", ".join(c.kind for c in parsed[members[0]][0].components))
        for start in range(0, len(members), chunk):
            part = members[start : start + chunk]
            loaded = {i: load_galaxy(*parsed[i]) for i in part}
            good = [i for i in part if loaded[i].image is not None and not (loaded[i].flags & Flag.fully_masked)]
            for i in part:
                if i not in good:
                    rows[i].update(_failed_row(loaded[i], out_dir / "fit.log"))
            if good:
                _run_group(g, [loaded[i] for i in good], [rows[i] for i in good], batch_size, iteration, device, out_dir)
    table = _results_table([f for f, _ in parsed], rows)
    from ..io.results import write_results

    write_results(table, out_dir)
    table.meta["elapsed"] = time.perf_counter() - t0
    return table


def _failed_row(gal: GalaxyInput, log_file: Path) -> dict:
    feedme = gal.feedme
    with open(log_file, "a") as fh:
        fh.write("-" * 77 + f"\n\nInit. par. file : {feedme.path}\n galmoss: not fitted: {'; '.join(gal.messages)}\n\n")
    return {"group": -1, "flag": int(gal.flags), "message": "; ".join(gal.messages), "restart": ""}


def _run_group(g, gals: list[GalaxyInput], rows: list[dict], batch_size, iteration, device, out_dir: Path) -> None:
    import galmoss as gm

    feedmes = [gal.feedme for gal in gals]
    origins = [gal.origin for gal in gals]
    first = feedmes[0]
    n_free, n_fix = free_and_fixed(first, gals[0].constraints)
    profiles = build_profiles(feedmes, [gal.constraints for gal in gals], origins)
    model_free = any(prm.fit for prof in profiles.values() for prm in prof.parameters().values())
    names = [str(f.path) for f in feedmes]
    if first.mode in (1, 2) or not model_free:
        fitted = _evaluate(profiles, gals)
    else:
        dataset = gm.Dataset.from_arrays(
            [gal.image for gal in gals],
            [gal.sigma for gal in gals],
            [gal.psf for gal in gals] if gals[0].psf is not None else None,
            [(gal.weight == 0).astype(np.int8) for gal in gals],
            galaxy_index=names,
        )
        dataset.define_profiles(**profiles)
        fitting = gm.Fitting(dataset=dataset, batch_size=batch_size, iteration=iteration, device=device, progress=False,
                             render_settings=_settings(first))
        fitting.fit()
        fitted = fitting.uncertainty("covar_mat")
    for i, (gal, row) in enumerate(zip(gals, rows)):
        _write_outputs(g, gal, fitted[i], row, n_free, n_fix, out_dir)


def _settings(feedme: Feedme):
    """Render settings of a feedme: its E) PSF oversampling."""
    from ..settings import RenderSettings

    return RenderSettings(psf_oversampling=feedme.psf_sampling)


def _evaluate(profiles, gals: list[GalaxyInput]):
    """Results-like rows for a model that is evaluated, not fitted (P) 1, 2 or nothing free)."""
    from astropy.table import Table

    import galmoss as gm

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
        single = build_profiles([gal.feedme], values=_values_of(table[i], gal.feedme, gal.origin), origins=[gal.origin])
        model = gm.render(single, gal.image.shape, psf=gal.psf, dtype=__import__("torch").float64,
                          settings=_settings(gal.feedme)).numpy()[0]
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


def _write_outputs(g, gal: GalaxyInput, row, out: dict, n_free: int, n_fix: int, out_dir: Path) -> None:
    import torch

    import galmoss as gm

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
    spurious = getattr(Flag, "psf_larger_than_cutout", 0)
    if feedme.psf_sampling > 1 and gal.psf is not None and flags & spurious and all(
            p <= feedme.psf_sampling * c for p, c in zip(gal.psf.shape, gal.image.shape)):
        # the PSF is sampled E times finer: compared with the cutout in data pixels it fits
        flags &= ~int(spurious)
        message = "; ".join(m for m in message.split("; ") if "larger than the cutout" not in m)
    messages = [m for m in [*gal.messages, message] if m]
    chi2 = float(row["chi2"])
    ndof = int(row["dof"])
    stats = {"chi2": chi2, "ndof": ndof, "nfree": n_free, "nfix": n_fix,
             "chi2nu": chi2 / ndof if ndof > 0 else math.nan, "flags_text": ",".join(decode(flags))}
    restart = None
    if all(math.isfinite(v) for v in values.values()):
        single = build_profiles([feedme], values=vals, origins=[gal.origin])
        shown = {name: prof for (name, prof), comp in zip(single.items(), feedme.components) if not comp.skip}
        shape = gal.image.shape
        if shown:
            model, parts = gm.render(shown, shape, psf=gal.psf, dtype=torch.float64, components=True,
                                     settings=_settings(feedme))
            model = model.numpy()[0]
            parts = {name: im.numpy()[0] for name, im in parts.items()}
        else:
            model, parts = np.zeros(shape), {}
        cards = model_header_cards(feedme, shape, values, errors, free, problems, stats)
        data = np.where(gal.weight > 0, gal.image, gal.image)
        write_block(feedme.output, feedme.mode, data, model, parts if feedme.mode == 3 else None, cards)
        if feedme.mode in (0, 3):
            restart = restart_path(feedme.output)
            restart.write_text(format_feedme(feedme, values, free, title=f"galmoss restart file of {feedme.path}"))
    else:
        messages.append("no finite fit: no image block written")
    with open(out_dir / "fit.log", "a") as fh:
        fh.write(fit_log_entry(feedme, gal.image.shape, restart, values, errors, free, chi2, ndof, "; ".join(messages)))
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


def _results_table(feedmes: list[Feedme], rows: list[dict]):
    from astropy.table import Table

    table = Table()
    table["feedme"] = [str(f.path) for f in feedmes]
    table["output"] = [str(f.output) for f in feedmes]
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
