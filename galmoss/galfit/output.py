"""What GALFIT writes: image blocks, restart files (its input format) and fit.log.

Image block (the B) file), as GALFIT lays it out: an empty primary HDU, then
extension 1 the input data (the H) section), 2 the model, 3 the residual
(data - model); with ``P) 3`` one more extension per component. The model's
header holds the fit in GALFIT's keys, order and comment lines: ``OBJECT``, a
COMMENT naming the block GALFIT-compatible, ``INITFILE``, ``DATAIN``, ``SIGMA``,
``PSF``, ``CONSTRNT``, ``MASK``, ``FITSECT``, ``CONVBOX``, ``MAGZPT``, per component
``COMP_k`` and ``k_XC``, ``k_YC``, ``k_MAG``, ``k_RE``, ..., the Fourier modes'
``k_F<m>`` (amplitude) and ``k_F<m>PA`` (phase, degrees), as ``'value +/- error'``
(a fixed value as ``'[value]'``, a problem value between ``*``), then ``FLAGS``,
``CHISQ``, ``NDOF``, ``NFREE``, ``NFIX``, ``CHI2NU``, ``LOGFILE``.
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

from ..flags import Flag
from ..io.naming import open_append
from .convert import (HEADER_KEYS, SLOTS, TRUNCATION_LABELS, bending_labels, component_labels, is_fourier,
                      ordered_labels)
from .feedme import COMPONENT_PARAMETERS, TRUNCATION_LINES, Component, Feedme, fourier_modes, truncation_kind


def galfit_number(x: float) -> str:
    """A value as GALFIT prints it: 4 decimals, or ``%.4e`` for very small or large numbers."""
    x = float(x)
    if not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if x == 0.0 or 1e-3 <= abs(x) < 1e6:
        return f"{x:.4f}"
    return f"{x:.4e}"


def header_value(value: float, error: float | None, fixed: bool, problem: bool = False, coupled: bool = False) -> str:
    """``'value +/- error'``, ``'[value]'`` when fixed, ``'{value}'`` when a hard constraint couples it to
    another parameter (GALFIT's notation: no error of its own), ``'*value* +/- *error*'`` for a problem."""
    v = galfit_number(value)
    if fixed:
        return f"[{v}]"
    if coupled:
        return f"{{{v}}}"
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


#: GALFIT's comment of each model-header key (a component key without its ``k_``).
KEY_COMMENTS = {
    "XC": "X center [pixel]", "YC": "Y center [pixel]", "MAG": "Integrated magnitude [mag]",
    "MU0": "Central surface brightness [mag/arcsec^2]", "RE": "Effective radius Re [pixels]",
    "RS": "Disk scale-length Rs [pixels]", "FWHM": "FWHM [pixels]", "N": "Sersic index", "C": "Powerlaw",
    "RC": "Core radius Rc [pixels]", "RT": "Truncation radius [pixels]", "ALPHA": "alpha", "BETA": "beta",
    "AR": "Axis ratio (b/a)", "PA": "Position Angle (PA) [degrees: Up=0, Left=90]",
    "C0": "Diskiness (<0) or Boxiness (>0)", "SKY": "Sky background [ADUs]",
    "DSDX": "x sky gradient [ADUs]", "DSDY": "y sky gradient [ADUs]",
}
#: GALFIT's separators in the model header, as a GALFIT-written block has them
INPUT_RULE = "========== GALFIT Input Parameters =========="
FINAL_RULE = "========== GALFIT Final Parameters =========="
COMPONENT_RULE = "-" * 72
END_RULE = "=" * 45
#: Identifies galmoss's blocks; GALFIT's readers look for 'GALFIT' in a COMMENT card of the model.
BLOCK_COMMENT = "GALFIT-compatible image block written by galmoss"


def sky_centre(feedme: Feedme, shape: tuple[int, int]) -> tuple[float, float]:
    """The centre of the fitted section in the full frame: the point galmoss's sky gradients are about."""
    x0, y0 = (feedme.region[0], feedme.region[2]) if feedme.region is not None else (1, 1)
    return x0 - 1 + (shape[1] + 1) / 2, y0 - 1 + (shape[0] + 1) / 2


def model_header_cards(
    feedme: Feedme,
    shape: tuple[int, int],
    values: Mapping[tuple[int, str], float],
    errors: Mapping[tuple[int, str], float],
    free: Mapping[tuple[int, str], bool],
    problems: set[tuple[int, str]],
    stats: Mapping[str, float],
    logfile: str = "none",
    coupled: set[tuple[int, str]] = frozenset(),
) -> list[tuple[str, object, str]]:
    """The cards of the model extension, in GALFIT's order (values in its units, full-frame centres).

    ``("COMMENT", text, "")`` entries are COMMENT cards. GALFIT's layout: the
    input parameters (INITFILE ... MAGZPT), the final parameters component by
    component (the sky with its centre), FLAGS, then CHISQ ... LOGFILE, set
    apart by GALFIT's comment lines, as a GALFIT-written block has them.
    ``logfile`` is the restart file's name (GALFIT's LOGFILE names its
    ``galfit.NN``), "none" when none is written.
    """
    section = fit_section(feedme, shape)
    comment = lambda text: ("COMMENT", text, "")  # noqa: E731
    cards: list[tuple[str, object, str]] = [
        ("OBJECT", "model", "Component type"),
        comment(BLOCK_COMMENT),
        comment(INPUT_RULE),
        ("INITFILE", str(feedme.path), "GALFIT input file"),
        ("DATAIN", _name(feedme.image), "Input data image"),
        ("SIGMA", _name(feedme.sigma), "Input sigma image"),
        ("PSF", _name(feedme.psf), "Convolution PSF and kernel"),
        ("CONSTRNT", _name(feedme.constraints), "Parameter constraint file"),
        ("MASK", _name(feedme.mask), "Input mask image"),
        ("FITSECT", section, "Image section fitted"),
        ("CONVBOX", "none" if feedme.conv_box is None else f"{feedme.conv_box[0]}, {feedme.conv_box[1]}",
         "Convolution box size (unused by galmoss)"),
        ("MAGZPT", float(feedme.zeropoint), "Magnitude zeropoint"),
        comment(FINAL_RULE),
    ]
    for comp in feedme.components:
        k = comp.index
        cards.append((f"COMP_{k}", comp.kind, f"Component type{' (skipped in the model image)' if comp.skip else ''}"))
        if comp.kind == "sky":
            xc, yc = sky_centre(feedme, shape)
            cards += [(f"{k}_XC", f"[{galfit_number(xc)}]", KEY_COMMENTS["XC"]),
                      (f"{k}_YC", f"[{galfit_number(yc)}]", KEY_COMMENTS["YC"])]
        for label in component_labels(comp):
            key = (k, label)
            if key not in values:
                continue
            text = header_value(values[key], errors.get(key), not free.get(key, False), key in problems,
                                key in coupled)
            if is_fourier(label):
                m = label[1:].removesuffix("PA")
                what = "phase angle" if label.endswith("PA") else "amplitude"  # GALFIT's words
                cards.append((f"{k}_{label}"[:8], text, f"Azimuthal Fourier mode {m} {what}"))
                continue
            if label.startswith("B"):
                cards.append((f"{k}_{label}"[:8], text, f"Bending mode {label[1:]} amplitude [pixels]"))
                continue
            if label in TRUNCATION_LABELS:
                cards.append((f"{k}_{label}"[:8], text, TRUNCATION_LINES[label]))
                continue
            name = HEADER_KEYS[SLOTS[comp.kind][label]]
            fallback = COMPONENT_PARAMETERS[comp.kind].get(label[0] if label in ("1x", "1y") else label, name)
            cards.append((f"{k}_{name}"[:8], text, KEY_COMMENTS.get(name, fallback)))
        cards.append(comment(COMPONENT_RULE))
    cards += [
        ("FLAGS", str(stats.get("flags_text", "")), "galmoss flags (galmoss flags <value>)"),
        comment(COMPONENT_RULE),
        ("CHISQ", _finite(stats.get("chi2")), "Chi^2 of fit"),
        ("NDOF", int(stats.get("ndof", 0)), "Degrees of freedom"),
        ("NFREE", int(stats.get("nfree", 0)), "Number of free parameters"),
        ("NFIX", int(stats.get("nfix", 0)), "Number of fixed parameters"),
        ("CHI2NU", _finite(stats.get("chi2nu")), "Reduced Chi^2"),
        ("LOGFILE", logfile, "Output logfile"),
        comment(END_RULE),
        comment(""),
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
            hdu.header.append(_card(key, value, comment), bottom=True)
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
    """A card whose comment is cut to fit 80 characters (astropy would warn and cut it); COMMENT cards as given."""
    if key == "COMMENT":
        return fits.Card("COMMENT", str(value)[:72])
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
    coupled: set[tuple[int, str]] = frozenset(),
) -> str:
    """GALFIT input text for ``feedme``'s setup with the given parameter values (full frame).

    A free parameter in ``coupled`` (one a hard constraint makes follow another)
    gets GALFIT's toggle 2, as GALFIT writes its restart files.
    """
    def toggle(key) -> int:
        return 2 if free.get(key, False) and key in coupled else int(free.get(key, False))

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
        "#       sersic, expdisk, devauc, king, psf, gaussian, moffat, ferrer, nuker, edgedisk, and sky.",
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
            fx, fy = toggle((k, "1x")), toggle((k, "1y"))
            lines.append(f" 1) {x:.4f} {y:.4f} {fx} {fy}".ljust(27) + f" #  {desc['1']}")
        for lab in sorted((lab for lab in labels if lab not in ("1x", "1y", "C0")), key=int):
            lines.append(f"{lab:>2s}) {galfit_number(values[(k, lab)]):<14s} {toggle((k, lab))}".ljust(27)
                         + f" #  {desc.get(lab, '')}")
        c0 = comp.params.get("C0")
        if (k, "C0") in values and (c0 is not None or values[(k, "C0")] != 0.0):
            lines.append(f"C0) {galfit_number(values[(k, 'C0')]):<14s} {toggle((k, 'C0'))}".ljust(27)
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


def truncation_lines(comp: Component, values, free) -> list[str]:
    """The feedme lines of a truncated component (``To) k``, ``T0) radial``, ``T4)``, ``T5)``) at ``values``."""
    kind = truncation_kind(comp)
    k = comp.index
    if kind is None or not all((k, lab) in values for lab in TRUNCATION_LABELS):
        return []
    ref = "Ti" if kind == "inner" else "To"
    lines = [f"{ref}) {k}".ljust(27) + f" #  {kind.capitalize()} truncation by component {k}",
             "T0) radial".ljust(27) + " #  truncation type"]
    for lab in TRUNCATION_LABELS:
        lines.append(f"{lab}) {galfit_number(values[(k, lab)]):<14s} {int(free.get((k, lab), False))}".ljust(27)
                     + f" #  {TRUNCATION_LINES[lab]}")
    return lines


def bending_lines(comp: Component, values, free) -> list[str]:
    """The feedme lines ``B<m>) amplitude fit`` of a component at ``values``."""
    k = comp.index
    return [f"{lab}) {galfit_number(values[(k, lab)]):<14s} {int(free.get((k, lab), False))}".ljust(27)
            + f" #  Bending mode {lab[1:]} amplitude [pixels]" for lab in bending_labels(comp) if (k, lab) in values]


def _log_number(v: float, exponent: bool = False) -> str:
    """A value as GALFIT's fit.log prints it: 2 decimals, or ``%.2e`` for sky gradients and tiny/huge values."""
    v = float(v)
    if not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if exponent or (v != 0.0 and not 5e-3 <= abs(v) < 1e5):
        return f"{v:.2e}"
    return f"{v:.2f}"


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
    coupled: set[tuple[int, str]] = frozenset(),
) -> str:
    """One galaxy's entry of fit.log, in GALFIT's layout.

    A component is one line of values and one of errors below: the centre as
    ``( x, y)`` (the sky's as ``[xc, yc]``, the point its gradients are about),
    fixed values in ``[ ]`` on both lines (GALFIT's readers count the numbers
    of both), then ``Chi^2 = ..,  ndof = ..`` and ``Chi^2/nu = ..``. galmoss's
    own messages are ``#`` comment lines, which readers of model lines skip.
    """
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
        labels = [lab for lab in ordered_labels(comp.kind) if (k, lab) in values and lab not in ("1x", "1y", "C0")]
        if (k, "C0") in values and values[(k, "C0")] != 0.0:
            labels.append("C0")
        gradient = comp.kind == "sky"

        def cell(lab, err=False):
            fixed = not free.get((k, lab), False)
            if fixed:  # the value, bracketed, on both lines
                return f"[{_log_number(values[(k, lab)], gradient and lab != '1')}]"
            if (k, lab) in coupled:  # GALFIT's braces: set by a hard constraint, on both lines
                return f"{{{_log_number(values[(k, lab)], gradient and lab != '1')}}}"
            if err and not gradient:  # GALFIT prints errors with 2 decimals
                return _log_number(round(errors.get((k, lab), math.nan), 2))
            v = errors.get((k, lab), math.nan) if err else values[(k, lab)]
            return _log_number(v, gradient and lab != "1")

        def line(err: bool) -> str:
            if comp.kind == "sky":
                xc, yc = sky_centre(feedme, shape)
                centre = f"[{xc:7.2f}, {yc:7.2f}]" if not err else " " * 18
            elif (k, "1x") in values:
                centre = f"({cell('1x', err):>8s}, {cell('1y', err):>8s})"
            else:
                centre = ""
            rest = " ".join(f"{cell(lab, err):>9s}" for lab in labels)
            head = f" {comp.kind:<10s}: " if not err else " " * 14
            return f"{head}{centre} {rest}".rstrip()

        out.append(line(False))
        out.append(line(True))
        modes = [m for m in fourier_modes(comp) if (k, f"F{m}") in values and (k, f"F{m}PA") in values]
        if modes:  # GALFIT's layout: "fourier : (1:  0.06,   -6.67)   (3:  0.05,    0.18)", errors below
            out.append("   fourier : " + "   ".join(
                f"({m}: {cell(f'F{m}'):>7s}, {cell(f'F{m}PA'):>9s})" for m in modes))
            out.append("             " + "   ".join(
                f"({'':{len(str(m))}s}  {cell(f'F{m}', True):>7s}, {cell(f'F{m}PA', True):>9s})" for m in modes))
        # bending modes and truncation: GALFIT's fit.log layout for them is not public, so they are comment
        # lines (which fit.log readers skip), value and error together
        extra = [lab for lab in bending_labels(comp) + list(TRUNCATION_LABELS) if (k, lab) in values]
        if extra:
            out.append("#  " + ("bending " if extra[0].startswith("B") else "truncation") + ": " + ", ".join(
                f"{lab} = {cell(lab)} +/- {cell(lab, True)}" for lab in extra))
    chi2nu = chi2 / ndof if ndof > 0 else math.nan
    out += [f" Chi^2 = {chi2:.5f},  ndof = {ndof}", f" Chi^2/nu = {chi2nu:.3f}"]
    if message:
        out.append(f"# galmoss: {message}")
    out.append("")
    return "\n".join(out) + "\n"


def not_fitted_log_entry(path: Path, feedme: Feedme | None, message: str) -> str:
    """The fit.log entry of a feedme that was not fitted: GALFIT's layout with ``nan`` values.

    Each component gets its line (``nan`` where numbers would be), so a script that
    reads the lines after an ``Init. par. file`` never takes the next entry's
    numbers for this file's.
    """
    out = ["-" * 77, "",
           f"Input image     : {feedme.image if feedme is not None else 'none'}",
           f"Init. par. file : {path}",
           "Restart file    : none",
           f"Output image    : {feedme.output if feedme is not None else 'none'}",
           ""]
    for comp in feedme.components if feedme is not None else []:
        labels = [lab for lab in ordered_labels(comp.kind) if lab not in ("1x", "1y", "C0")]
        centre = "[    nan,     nan]" if comp.kind == "sky" else "(     nan,      nan)" if "1x" in SLOTS[comp.kind] else ""
        cells = " ".join(f"{'nan':>9s}" for _ in labels)
        out.append(f" {comp.kind:<10s}: {centre} {cells}".rstrip())
        out.append(f"{'':14s}{centre if comp.kind != 'sky' else ' ' * len(centre)} {cells}".rstrip())
    out += [" Chi^2 = nan,  ndof = 0", " Chi^2/nu = nan", f"# galmoss: not fitted: {message}", ""]
    return "\n".join(out) + "\n"


def refused_row(path: Path, message: str, log_file: Path, flags: int = int(Flag.read_error),
                feedme: Feedme | None = None) -> dict:
    """The results row (and fit.log entry) of a feedme that was not fitted."""
    with open_append(log_file) as fh:  # never through a symlink
        fh.write(not_fitted_log_entry(path, feedme, message))
    return {"group": -1, "flag": flags, "message": message, "restart": ""}


def failed_row(gal, log_file: Path) -> dict:
    """:func:`refused_row` of a galaxy whose data could not be read or fitted (its flags and messages)."""
    return refused_row(gal.feedme.path, "; ".join(gal.messages), log_file, int(gal.flags), feedme=gal.feedme)
