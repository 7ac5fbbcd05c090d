"""What GalfitM writes for a joint fit: its image block, restart file and fit.log entries.

The block at ``B)``: an empty primary HDU; per band ``INPUT_<band>``,
``MODEL_<band>`` (GALFIT's model header with ``BAND`` and ``WL``),
``RESIDUAL_<band>`` and ``COMPONENT_<name>_<band>``; then GalfitM's tables
``BAND_INFO``, ``FIT_INFO``, ``FINAL_BAND`` (per-band values and errors) and
``FINAL_CHEB`` (their Chebyshev coefficients in wavelength, :func:`chebyshev_table`).
The restart file is a GalfitM input file with the fitted values; fit.log gets
GALFIT's entry for each band.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..._version import __version__
from ...flags import Flag, decode
from ...io.naming import open_append
from ...params import Role
from ..convert import CLASSES, HEADER_KEYS, SLOTS, SURFACE_BRIGHTNESS_CLASSES, component_name, ordered_labels
from ..feedme import COMPONENT_PARAMETERS
from ..output import (_card, atomic_write_fits, fit_log_entry, galfit_number, model_header_cards, not_fitted_log_entry,
                      restart_path)
from .convert import IMAGE_UNITS, GalfitmInput
from .feedme import CONTROL_KEYS, GalfitmFeedme, mapped_wavelengths

#: GalfitM's comment on each control line (its restart files carry them: GALAPAGOS-2 reads A1) as the line after
#: A) and cuts each line's value at its '#')
CONTROL_COMMENTS = {
    "A": "Input data images (CSL of FITS filenames)", "A1": "Band labels (CSL)", "A2": "Band wavelengths (CSL)",
    "B": "Output data image block", "C": "Sigma images (CSL, or none)", "D": "Input PSF images (CSL)",
    "E": "PSF fine sampling factor relative to data", "F": "Bad pixel masks (CSL, or none)",
    "G": "File with parameter constraints (ASCII file)", "H": "Image region to fit (xmin xmax ymin ymax)",
    "I": "Size of the convolution box (x y)", "J": "Magnitude photometric zeropoints (CSL)",
    "K": "Plate scale (dx dy)   [arcsec per pixel]", "O": "Display type (regular, curses, both)",
    "P": "Choose: 0=optimize, 1=model, 2=imgblock, 3=subcomps", "S": "Modify/create objects interactively?",
    "U": "Non-parametric component (0: off)", "V": "MultiNest (0: Levenberg-Marquardt)", "W": "Output options",
}


def chebyshev_table(values: np.ndarray, cov: np.ndarray | None, wavelength) -> tuple[np.ndarray, np.ndarray]:
    """GalfitM's Chebyshev coefficients (value space) of per-band values, and their errors.

    The coefficients c of the series through the ``nbands`` values at the
    wavelengths mapped to [-1, 1] (``numpy.polynomial.Chebyshev(c, domain=(min,
    max))`` evaluated at each wavelength gives the band's value back); their
    errors from the values' covariance ``cov`` (nbands x nbands) by the same
    linear map. Two bands of one wavelength: NaN.
    """
    nb = len(values)
    vander = np.polynomial.chebyshev.chebvander(mapped_wavelengths(wavelength), nb - 1)
    if nb > 1 and len(set(wavelength)) < nb:
        return np.full(nb, np.nan), np.full(nb, np.nan)
    inv = np.linalg.inv(vander)
    coef = inv @ values
    if cov is None:
        return coef, np.full(nb, np.nan)
    with np.errstate(invalid="ignore"):
        err = np.sqrt(np.clip(np.diagonal(inv @ cov @ inv.T), 0.0, None))
    return coef, np.where(np.all(np.isfinite(cov)), err, np.nan)


def _restart_text(fm: GalfitmFeedme, values: dict[tuple[int, str], np.ndarray]) -> str:
    """A GalfitM input file with the fitted per-band values (its control lines and toggles kept)."""
    lines = ["", f"#  Input menu file: {fm.path}", "#  galmoss restart file (GalfitM format)", "",
             "=" * 80, "# IMAGE and GALFIT CONTROL PARAMETERS"]
    for key in CONTROL_KEYS:
        if key in fm.lines:
            lines.append(f"{key}) {' '.join(fm.lines[key].fields)}".ljust(40) + f" # {CONTROL_COMMENTS[key]}")
    lines += ["", "# INITIAL FITTING PARAMETERS", ""]
    for comp in fm.components:
        k = comp.index
        lines.append(f"# Component number: {k}")
        lines.append(f" 0) {comp.kind:<22s} #  Component type")
        for label in ordered_labels(comp.kind):
            if label not in comp.bparams:
                continue
            p = comp.bparams[label]
            number = "1" if label == "1x" else "2" if label == "1y" and comp.kind != "sky" else label
            text = ",".join(galfit_number(v) for v in values[(k, label)])
            desc = COMPONENT_PARAMETERS[comp.kind].get("1" if label in ("1x", "1y") else label, "")
            lines.append(f"{number:>2s}) {text} {p.toggle} band".ljust(40) + f" #  {desc}")
        lines.append(f" Z) {int(comp.skip):<22d} #  Skip this model in output image?  (yes=1, no=0)")
        lines.append("")
    lines.append("=" * 80)
    return "\n".join(lines) + "\n"


def _table_hdu(name: str, columns: dict[str, np.ndarray]):
    cols = []
    for key, arr in columns.items():
        arr = np.asarray(arr)
        if arr.dtype.kind in "US":
            width = max(1, max((len(str(s)) for s in arr), default=1))
            cols.append(fits.Column(name=key, format=f"{width}A", array=arr.astype(str)))
        elif arr.dtype.kind in "iub":
            cols.append(fits.Column(name=key, format="K", array=arr.astype(np.int64)))
        else:
            cols.append(fits.Column(name=key, format="D", array=arr.astype(np.float64)))
    return fits.BinTableHDU.from_columns(cols, name=name)


def _band_values(gal: GalfitmInput, rec, cov, columns):
    """``(k, label) -> (nb,) values, errors`` in GalfitM's units (full frame, each band's image units), and the
    Chebyshev coefficients with their errors."""
    fm = gal.feedme
    nb = fm.nbands
    values, errors, cheb, cheb_err = {}, {}, {}, {}
    names = rec.colnames
    index = {name: j for j, name in enumerate(columns)}
    for comp in fm.components:
        k = comp.index
        base = component_name(comp.kind, comp.index)
        for label in comp.bparams:
            slot = SLOTS[comp.kind][label]
            col = f"{base}_{slot}"
            band_cols = [f"{col}_{b}" for b in fm.bands]
            if all(c in names for c in band_cols):
                v = np.array([float(rec[c]) for c in band_cols])
                e = np.array([float(rec[c + "_err"]) if c + "_err" in names else np.nan for c in band_cols])
                at = [index.get(c) for c in band_cols]
            else:
                v = np.full(nb, float(rec[col]))
                e = np.full(nb, float(rec[col + "_err"]) if col + "_err" in names else np.nan)
                at = [index.get(col)] * nb
            if label == "1x":
                v = v + gal.origin[0] - 1
            elif label == "1y":
                v = v + gal.origin[1] - 1
            factor = 1.0 / gal.scale if slot in IMAGE_UNITS else np.ones(nb)
            v, e = v * factor, e * factor
            c = None
            if cov is not None and None not in at:
                c = cov[np.ix_(at, at)] * np.outer(factor, factor)
            if comp.bparams[label].degree == 0:
                e = np.full(nb, np.nan)
                c = np.zeros((nb, nb))
            values[(k, label)], errors[(k, label)] = v, e
            cheb[(k, label)], cheb_err[(k, label)] = chebyshev_table(v, c, fm.wavelength)
    return values, errors, cheb, cheb_err


def _render_band(gal: GalfitmInput, b: int, values, settings):
    """Band ``b``'s model and component images in its own image units, from the fitted values."""
    import torch

    from ...params import Parameter
    from ...render import render

    fm = gal.feedme
    shape = gal.images[b].shape
    ratio = fm.plate_scales[0][0] / fm.plate_scales[b][0]
    ref_shape = gal.images[0].shape
    shown = {}
    for comp in fm.components:
        if comp.skip:
            continue
        kwargs = {}
        for label in comp.bparams:
            slot = SLOTS[comp.kind][label]
            v = float(values[(comp.index, label)][b])
            if label == "1x":
                x = v - (gal.origin[0] - 1)
                v = (x - (ref_shape[1] + 1) / 2) * ratio + (shape[1] + 1) / 2
            elif label == "1y":
                y = v - (gal.origin[1] - 1)
                v = (y - (ref_shape[0] + 1) / 2) * ratio + (shape[0] + 1) / 2
            elif _length_slot(comp.kind, slot):
                v = v * ratio
            elif slot in IMAGE_UNITS:
                v = v * gal.scale[b]
            kw = {"M0": gal.zeropoint} if slot in ("mag", "mu0", "mu_b") else {}
            kwargs[slot] = Parameter(v, fit=False, angle=slot == "pa", **kw)
        cls = CLASSES[comp.kind]
        if cls in SURFACE_BRIGHTNESS_CLASSES:
            kwargs["pixel_area"] = fm.plate_scales[b][0] * fm.plate_scales[b][1]
        shown[component_name(comp.kind, comp.index)] = cls(**kwargs)
    if not shown:
        return np.zeros(shape), {}
    model, parts = render(shown, shape, psf=gal.psfs[b], dtype=torch.float64, components=True, settings=settings)
    s = gal.scale[b]
    return model.numpy()[0] / s, {name: im.numpy()[0] / s for name, im in parts.items()}


def write_outputs(gal: GalfitmInput, rec, cov, columns, row: dict, out_dir: Path, settings, elapsed: float) -> None:
    """One fitted GalfitM file's image block, restart file and fit.log entries, and its results ``row``.

    ``rec`` is its row of the fit's table, ``cov`` the covariance of the table's ``columns`` (None: not known).
    A write that fails flags the file (``block_not_written``); the fit is kept.
    """
    fm = gal.feedme
    nb = fm.nbands
    values, errors, cheb, cheb_err = _band_values(gal, rec, cov, columns)
    message = str(rec["message"]) if "message" in rec.colnames else ""
    flags = int(rec["flag"]) | gal.flags
    messages = [m for m in [*gal.messages, message] if m]
    chi2, ndof = float(rec["chi2"]), int(rec["dof"])
    n_free = sum(min(p.degree, nb) for c in fm.components for p in c.bparams.values())
    n_given = sum(nb for c in fm.components for _ in c.bparams)
    stats = {"chi2": chi2, "ndof": ndof, "nfree": n_free, "nfix": n_given - n_free,
             "chi2nu": chi2 / ndof if ndof > 0 else math.nan, "flags_text": ",".join(decode(flags))}
    finite = all(np.all(np.isfinite(v)) for v in values.values())
    restart = None
    log_entries = []
    if finite:
        hdus = [fits.PrimaryHDU()]
        restart = restart_path(fm.output)
        for b, band in enumerate(fm.bands):
            view = fm.band_view(b)
            vb = {key: float(v[b]) for key, v in values.items()}
            eb = {key: float(e[b]) for key, e in errors.items()}
            free = {key: fm.components[key[0] - 1].bparams[key[1]].degree > 0 for key in values}
            problems = {key for key in values if free[key] and not math.isfinite(eb[key])}
            model, parts = _render_band(gal, b, values, settings)
            cards = model_header_cards(view, gal.raw[b].shape, vb, eb, free, problems, stats, logfile=restart.name)
            cards.insert(2, ("BAND", band, "Band label (A1)"))
            cards.insert(3, ("WL", float(fm.wavelength[b]), "Band wavelength (A2)"))
            model_hdu = fits.ImageHDU(model.astype(np.float32), name=f"MODEL_{band}")
            for key, value, comment in cards:
                model_hdu.header.append(_card(key, value, comment), bottom=True)
            hdus += [fits.ImageHDU(gal.raw[b].astype(np.float32), name=f"INPUT_{band}"), model_hdu,
                     fits.ImageHDU((gal.raw[b] - model).astype(np.float32), name=f"RESIDUAL_{band}")]
            for name, image in parts.items():
                hdus.append(fits.ImageHDU(image.astype(np.float32), name=f"COMPONENT_{name.upper()}_{band}"))
            log_entries.append(fit_log_entry(view, gal.raw[b].shape, restart, vb, eb, free,
                                             float(rec[f"chi2_{band}"]) if f"chi2_{band}" in rec.colnames else chi2,
                                             int(rec[f"dof_{band}"]) if f"dof_{band}" in rec.colnames else ndof,
                                             f"band {band} of a joint fit" if b == 0 else f"band {band}"))
        final_band, final_cheb = {}, {}
        for comp in fm.components:
            for label in ordered_labels(comp.kind):
                if (comp.index, label) not in values:
                    continue
                key = f"COMP{comp.index}_{HEADER_KEYS[SLOTS[comp.kind][label]]}"
                final_band[key] = values[(comp.index, label)]
                final_band[key + "_ERR"] = errors[(comp.index, label)]
                final_cheb[key] = cheb[(comp.index, label)]
                final_cheb[key + "_ERR"] = cheb_err[(comp.index, label)]
                degree = min(comp.bparams[label].degree, nb)
                final_cheb[key + "_FIT"] = (np.arange(nb) < degree).astype(np.int64)
        w = np.asarray(fm.wavelength, dtype=np.float64)
        section = f"[{gal.origin[0]}:{gal.origin[0] + gal.raw[0].shape[1] - 1},{gal.origin[1]}:" \
                  f"{gal.origin[1] + gal.raw[0].shape[0] - 1}]"
        fit_info = {
            "INITFILE": np.array([str(fm.path)]), "LOGFILE": np.array([str(restart)]),
            "CONSTRNT": np.array([str(fm.constraints) if fm.constraints else "none"]),
            "FITSECT": np.array([section]),
            "CONVBOX": np.array(["none" if fm.conv_box is None else f"{fm.conv_box[0]:g}, {fm.conv_box[1]:g}"]),
            "CHISQ": np.array([chi2]), "NDOF": np.array([ndof]), "NFREE": np.array([n_free]),
            "NFIX": np.array([n_given - n_free]), "CHI2NU": np.array([stats["chi2nu"]]),
            "NITER": np.array([int(rec["n_iter"]) if "n_iter" in rec.colnames else -1]),
            "FIRSTCON": np.array([-1]), "LASTCON": np.array([-1]),
            "CPUTIME_SETUP": np.array([0.0]), "CPUTIME_FIT": np.array([elapsed]), "CPUTIME_TOTAL": np.array([elapsed]),
            "VERSION": np.array([f"galmoss {__version__}"]), "FLAGS": np.array([stats["flags_text"] or "none"]),
            "REFWLBAND": np.array([w[0]]), "LOWDWLBAND": np.array([w.min() - w[0]]),
            "HIGHDWLBAND": np.array([w.max() - w[0]]),
        }
        band_info = {
            "BAND": np.array(fm.bands), "WL": w,
            "DATAIN": np.array([str(p) for p in fm.images]),
            "SIGMA": np.array([str(p) if p else "none" for p in fm.sigmas]),
            "PSF": np.array([str(p) if p else "none" for p in fm.psfs]),
            "MASK": np.array([str(p) if p else "none" for p in fm.masks]),
            "MAGZPT": np.asarray(fm.zeropoints, dtype=np.float64),
            "NGOOD": np.array([int(np.count_nonzero(wt > 0)) for wt in gal.weights]),
            "NMASK": np.array([int(np.count_nonzero(wt == 0)) for wt in gal.weights]),
            "CHISQ": np.array([float(rec[f"chi2_{b}"]) if f"chi2_{b}" in rec.colnames else np.nan for b in fm.bands]),
        }
        hdus += [_table_hdu("BAND_INFO", band_info), _table_hdu("FIT_INFO", fit_info),
                 _table_hdu("FINAL_BAND", final_band), _table_hdu("FINAL_CHEB", final_cheb)]
        try:
            atomic_write_fits(fm.output, fits.HDUList(hdus))
            restart.write_text(_restart_text(fm, values))
        except OSError as exc:
            flags |= Flag.block_not_written
            messages.append(f"{fm.where('B')}: image block or restart file not written: {exc}")
            restart = None
    else:
        messages.append("no finite fit: no image block written")
    with open_append(out_dir / "fit.log") as fh:
        for entry in log_entries:
            fh.write(entry)
        if not log_entries:
            fh.write(not_fitted_log_entry(fm.path, fm.band_view(0), "; ".join(messages)))
    row.update({"group": 0, "flag": flags, "message": "; ".join(messages),
                "restart": "" if restart is None else str(restart), "chi2": chi2, "ndof": ndof,
                "chi2nu": stats["chi2nu"]})
    for comp in fm.components:
        for label in ordered_labels(comp.kind):
            if (comp.index, label) not in values:
                continue
            key = f"{comp.index}_{HEADER_KEYS[SLOTS[comp.kind][label]]}"
            for b, band in enumerate(fm.bands):
                row[f"{key}_{band}"] = float(values[(comp.index, label)][b])
                row[f"{key}_{band}_err"] = float(errors[(comp.index, label)][b])



def _length_slot(kind: str, slot: str) -> bool:
    spec = CLASSES[kind].parameter_specs.get(slot)
    return spec is not None and spec.role is Role.LENGTH
