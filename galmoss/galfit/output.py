"""What GALFIT writes: image blocks, restart files (its input format) and fit.log.

Image block (the B) file), as GALFIT lays it out: an empty primary HDU, then
extension 1 the input data (the H) section), 2 the model, 3 the residual
(data - model); with ``P) 3`` one more extension per component. The model's
header holds the fit in GALFIT's keys: ``OBJECT``, ``DATAIN``, ``SIGMA``, ``PSF``,
``CONSTRNT``, ``MASK``, ``FITSECT``, ``CONVBOX``, ``MAGZPT``, per component
``COMP_k`` and ``k_XC``, ``k_YC``, ``k_MAG``, ``k_RE``, ..., the Fourier modes'
``k_F<m>`` (amplitude) and ``k_F<m>PA`` (phase, degrees), as ``'value +/- error'``
(a fixed value as ``'[value]'``, a problem value between ``*``), then ``FLAGS``,
``CHISQ``, ``NDOF``, ``NFREE``, ``NFIX``, ``CHI2NU``, ``LOGFILE``, ``INITFILE``.
``P) 1`` writes the model alone as the primary image.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from astropy.io import fits

from .convert import (HEADER_KEYS, SLOTS, TRUNCATION_LABELS, bending_lines, component_labels, is_fourier, ordered_labels,
                      truncation_lines)
from .feedme import COMPONENT_PARAMETERS, TRUNCATION_LINES, Feedme, fourier_modes


def galfit_number(x: float) -> str:
    """A value as GALFIT prints it: 4 decimals, or ``%.4e`` for very small or large numbers."""
    x = float(x)
    if not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if x == 0.0 or 1e-3 <= abs(x) < 1e6:
        return f"{x:.4f}"
    return f"{x:.4e}"


def header_value(value: float, error: float | None, fixed: bool, problem: bool = False) -> str:
    """``'value +/- error'``, ``'[value]'`` when fixed, ``'*value* +/- *error*'`` for a problem."""
    v = galfit_number(value)
    if fixed:
        return f"[{v}]"
    e = galfit_number(error) if error is not None else "nan"
    if problem:
        return f"*{v}* +/- *{e}*"
    return f"{v} +/- {e}"


def _name(path: Path | None) -> str:
    return "none" if path is None else str(path)


def fit_section(feedme: Feedme, shape: tuple[int, int]) -> str:
    if feedme.region is not None:
        x0, x1, y0, y1 = feedme.region
    else:
        x0, x1, y0, y1 = 1, shape[1], 1, shape[0]
    return f"[{x0}:{x1},{y0}:{y1}]"


def model_header_cards(
    feedme: Feedme,
    shape: tuple[int, int],
    values: Mapping[tuple[int, str], float],
    errors: Mapping[tuple[int, str], float],
    free: Mapping[tuple[int, str], bool],
    problems: set[tuple[int, str]],
    stats: Mapping[str, float],
    logfile: str = "fit.log",
) -> list[tuple[str, object, str]]:
    """The cards of the model extension (values in GALFIT's units, full-frame centres)."""
    section = fit_section(feedme, shape)
    cards: list[tuple[str, object, str]] = [
        ("OBJECT", f"{feedme.image.name}{section}", "Object name"),
        ("DATAIN", _name(feedme.image), "Input data image"),
        ("SIGMA", _name(feedme.sigma), "Input sigma image"),
        ("PSF", _name(feedme.psf), "Convolution PSF and kernel"),
        ("CONSTRNT", _name(feedme.constraints), "Parameter constraint file"),
        ("MASK", _name(feedme.mask), "Input mask image"),
        ("FITSECT", section, "Image section fitted"),
        ("CONVBOX", "none" if feedme.conv_box is None else f"{feedme.conv_box[0]}, {feedme.conv_box[1]}",
         "Convolution box size (unused by galmoss)"),
        ("MAGZPT", float(feedme.zeropoint), "Magnitude zeropoint"),
    ]
    for comp in feedme.components:
        k = comp.index
        cards.append((f"COMP_{k}", comp.kind, f"Component type{' (skipped in the model image)' if comp.skip else ''}"))
        for label in component_labels(comp):
            key = (k, label)
            if key not in values:
                continue
            text = header_value(values[key], errors.get(key), not free.get(key, False), key in problems)
            if is_fourier(label):
                m = label[1:].removesuffix("PA")
                cards.append((f"{k}_{label}"[:8], text,
                              f"Azim. Fourier mode {m}, {'phase angle [deg]' if label.endswith('PA') else 'amplitude'}"))
                continue
            if label.startswith("B"):
                cards.append((f"{k}_{label}"[:8], text, f"Bending mode {label[1:]} amplitude [pixels]"))
                continue
            if label in TRUNCATION_LABELS:
                cards.append((f"{k}_{label}"[:8], text, TRUNCATION_LINES[label]))
                continue
            slot = SLOTS[comp.kind][label]
            cards.append((f"{k}_{HEADER_KEYS[slot]}"[:8], text, COMPONENT_PARAMETERS[comp.kind].get(label[0] if label in ("1x", "1y") else label, slot)))
    cards += [
        ("FLAGS", str(stats.get("flags_text", "")), "galmoss flags (galmoss flags <value>)"),
        ("CHISQ", _finite(stats.get("chi2")), "Chi^2 of fit"),
        ("NDOF", int(stats.get("ndof", 0)), "Degrees of freedom"),
        ("NFREE", int(stats.get("nfree", 0)), "Number of free parameters"),
        ("NFIX", int(stats.get("nfix", 0)), "Number of fixed parameters"),
        ("CHI2NU", _finite(stats.get("chi2nu")), "Reduced Chi^2"),
        ("LOGFILE", logfile, "Output log file"),
        ("INITFILE", str(feedme.path), "GALFIT input file"),
    ]
    return cards


def _finite(x) -> object:
    if x is None:
        return "nan"
    x = float(x)
    return x if math.isfinite(x) else "nan"


def atomic_write_fits(path: Path, hdus: fits.HDUList) -> None:
    """Write through a temporary file and os.replace: never a truncated file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        hdus.writeto(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_block(
    path: Path,
    mode: int,
    data: np.ndarray,
    model: np.ndarray,
    components: Mapping[str, np.ndarray] | None,
    cards: Sequence[tuple[str, object, str]],
) -> None:
    """The image block at ``path`` in GALFIT's layout (see the module docs)."""
    def with_cards(hdu):
        for key, value, comment in cards:
            hdu.header.append(_card(key, value, comment))
        return hdu

    if mode == 1:
        atomic_write_fits(path, fits.HDUList([with_cards(fits.PrimaryHDU(model.astype(np.float32)))]))
        return
    hdus = [
        fits.PrimaryHDU(),
        fits.ImageHDU(data.astype(np.float32), name="INPUT"),
        with_cards(fits.ImageHDU(model.astype(np.float32), name="MODEL")),
        fits.ImageHDU((data.astype(np.float64) - model).astype(np.float32), name="RESIDUAL"),
    ]
    for name, image in (components or {}).items():
        hdus.append(fits.ImageHDU(image.astype(np.float32), name=name.upper()))
    atomic_write_fits(path, fits.HDUList(hdus))


def _card(key: str, value, comment: str) -> fits.Card:
    """A card whose comment is cut to fit 80 characters (astropy would warn and cut it)."""
    bare = len(fits.Card(key, value).image.rstrip())
    room = 80 - bare - 3
    return fits.Card(key, value, comment[: max(room, 0)] if room > 0 else "")


def restart_path(block: Path) -> Path:
    """Where the restart file of ``block`` goes: ``<block stem>.galfit.NN`` next to it, NN the next free."""
    for nn in range(1, 10000):
        candidate = block.with_name(f"{block.stem}.galfit.{nn:02d}")
        if not candidate.exists():
            return candidate
    raise FileExistsError(f"no free restart file name next to {block} (galfit.01 to galfit.9999 exist)")


def _raw(feedme: Feedme, key: str, default: str) -> str:
    line = feedme.lines.get(key)
    return " ".join(line.fields) if line is not None and line.fields else default


def format_feedme(
    feedme: Feedme,
    values: Mapping[tuple[int, str], float],
    free: Mapping[tuple[int, str], bool],
    *,
    mode: int | None = None,
    title: str = "galmoss fit",
) -> str:
    """GALFIT input text for ``feedme``'s setup with the given parameter values (full frame)."""
    p = feedme.mode if mode is None else mode
    region = (f"{feedme.region[0]} {feedme.region[1]} {feedme.region[2]} {feedme.region[3]}"
              if feedme.region is not None else _raw(feedme, "H", ""))
    lines = [
        "",
        "#  Input menu file: " + str(feedme.path),
        f"#  {title}",
        "",
        "================================================================================",
        "# IMAGE and GALFIT CONTROL PARAMETERS",
        f"A) {_raw(feedme, 'A', str(feedme.image)):<24s} # Input data image (FITS file)",
        f"B) {_raw(feedme, 'B', str(feedme.output)):<24s} # Output data image block",
        f"C) {_raw(feedme, 'C', 'none'):<24s} # Sigma image name (made from data if blank or \"none\")",
        f"D) {_raw(feedme, 'D', 'none'):<24s} # Input PSF image and (optional) diffusion kernel",
        f"E) {feedme.psf_sampling:<24d} # PSF fine sampling factor relative to data",
        f"F) {_raw(feedme, 'F', 'none'):<24s} # Bad pixel mask (FITS image or ASCII coord list)",
        f"G) {_raw(feedme, 'G', 'none'):<24s} # File with parameter constraints (ASCII file)",
        f"H) {region:<24s} # Image region to fit (xmin xmax ymin ymax)",
        f"I) {_raw(feedme, 'I', '100 100'):<24s} # Size of the convolution box (x y)",
        f"J) {feedme.zeropoint:<24.4f} # Magnitude photometric zeropoint",
        f"K) {feedme.plate_scale[0]:.4f} {feedme.plate_scale[1]:<17.4f} # Plate scale (dx dy)   [arcsec per pixel]",
        f"O) {feedme.display:<24s} # Display type (regular, curses, both)",
        f"P) {p:<24d} # Choose: 0=optimize, 1=model, 2=imgblock, 3=subcomps",
        "",
        "# INITIAL FITTING PARAMETERS",
        "#",
        "#   For component type, the allowed functions are:",
        "#       sersic, expdisk, devauc, king, psf, gaussian, moffat, ferrer, and sky.",
        "#",
        "# -----------------------------------------------------------------------------",
        "#   par)    par value(s)    fit toggle(s)    # parameter description",
        "# -----------------------------------------------------------------------------",
        "",
    ]
    for comp in feedme.components:
        k = comp.index
        desc = COMPONENT_PARAMETERS[comp.kind]
        lines.append(f"# Component number: {k}")
        lines.append(f" 0) {comp.kind:<22s} #  Component type")
        labels = [lab for lab in SLOTS[comp.kind] if (k, lab) in values]
        if (k, "1x") in values:
            x, y = values[(k, "1x")], values[(k, "1y")]
            fx, fy = int(free.get((k, "1x"), False)), int(free.get((k, "1y"), False))
            lines.append(f" 1) {x:.4f} {y:.4f} {fx} {fy}".ljust(27) + f" #  {desc['1']}")
        for lab in sorted((lab for lab in labels if lab not in ("1x", "1y", "C0")), key=int):
            lines.append(f"{lab:>2s}) {galfit_number(values[(k, lab)]):<14s} {int(free.get((k, lab), False))}".ljust(27)
                         + f" #  {desc.get(lab, '')}")
        c0 = comp.params.get("C0")
        if (k, "C0") in values and (c0 is not None or values[(k, "C0")] != 0.0):
            lines.append(f"C0) {galfit_number(values[(k, 'C0')]):<14s} {int(free.get((k, 'C0'), False))}".ljust(27)
                         + " #  diskiness (< 0) / boxiness (> 0)")
        for m in fourier_modes(comp):
            amp, pha = (k, f"F{m}"), (k, f"F{m}PA")
            if amp in values and pha in values:
                lines.append(f"F{m}) {galfit_number(values[amp])} {galfit_number(values[pha])} "
                             f"{int(free.get(amp, False))} {int(free.get(pha, False))}".ljust(27)
                             + f" #  Azim. Fourier mode {m}, amplitude, & phase angle")
        lines += bending_lines(comp, values, free)
        lines += truncation_lines(comp, values, free)
        lines.append(f" Z) {int(comp.skip):<22d} #  Skip this model in output image?  (yes=1, no=0)")
        lines.append("")
    lines.append("================================================================================")
    return "\n".join(lines) + "\n"


def fit_log_entry(
    feedme: Feedme,
    shape: tuple[int, int],
    restart: Path | None,
    values: Mapping[tuple[int, str], float],
    errors: Mapping[tuple[int, str], float],
    free: Mapping[tuple[int, str], bool],
    chi2: float,
    ndof: int,
    message: str = "",
) -> str:
    """One galaxy's entry of fit.log, in GALFIT's layout (values, errors below, fixed in [ ])."""
    out = [
        "-" * 77,
        "",
        f"Input image     : {feedme.image}{fit_section(feedme, shape)}",
        f"Init. par. file : {feedme.path}",
        f"Restart file    : {restart if restart is not None else 'none'}",
        f"Output image    : {feedme.output}",
        "",
    ]
    for comp in feedme.components:
        k = comp.index
        labels = [lab for lab in ordered_labels(comp.kind) if (k, lab) in values and lab != "C0"]
        if (k, "C0") in values and values[(k, "C0")] != 0.0:
            labels.append("C0")

        def cell(lab, err=False):
            v = errors.get((k, lab), math.nan) if err else values[(k, lab)]
            text = galfit_number(v)
            return f"[{text}]" if not free.get((k, lab), False) and not err else text

        head = " ".join(f"{cell(lab):>11s}" for lab in labels)
        tail = " ".join(f"{(cell(lab, True) if free.get((k, lab), False) else ''):>11s}" for lab in labels)
        out.append(f" {comp.kind:<9s} : {head}")
        out.append(f" {'':<9s}   {tail}")
        modes = [m for m in fourier_modes(comp) if (k, f"F{m}") in values and (k, f"F{m}PA") in values]
        if modes:  # GALFIT's layout: "fourier : (1:  0.06,   -6.67)   (3:  0.05,    0.18)", errors below
            out.append("   fourier : " + "   ".join(
                f"({m}: {cell(f'F{m}'):>7s}, {cell(f'F{m}PA'):>9s})" for m in modes))
            out.append("             " + "   ".join(
                f"({'':{len(str(m))}s}  {cell(f'F{m}', True) if free.get((k, f'F{m}'), False) else '':>7s}, "
                f"{cell(f'F{m}PA', True) if free.get((k, f'F{m}PA'), False) else '':>9s})" for m in modes))
    chi2nu = chi2 / ndof if ndof > 0 else math.nan
    out += [f" Chi^2 = {chi2:.5f},  ndof = {ndof}", f" Chi^2/nu = {chi2nu:.3f}"]
    if message:
        out.append(f" galmoss: {message}")
    out.append("")
    return "\n".join(out) + "\n"
