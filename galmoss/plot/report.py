"""An HTML report of a whole run: one self-contained page.

:func:`write_report` reads a results folder and writes one HTML file with every
picture embedded as a base64 PNG (it can be mailed or archived alone):

* the run: galaxies, converged, median reduced chi2, settings and timing from
  ``run.json``;
* counts by flag (decoded with :mod:`galmoss.flags`) and by ``status`` when the
  table has it;
* histograms of every fitted parameter and of reduced chi2;
* errors against values for every parameter with an ``_err`` column;
* a gallery of :func:`~galmoss.plot.plot_fit` panels for the worst fits by each
  criterion: highest reduced chi2, each flag present, each parameter at a bound;
* for a multi-band run, its colours (:func:`band_summary`): every band-varying
  parameter, and each component's share of the flux (B/T with a bulge and a
  disk), against wavelength.

Tables of 10^6 rows are handled with vectorised numpy on the columns (counts by
bit, ``np.histogram``, ``np.histogram2d``); only the gallery draws galaxies, and
it draws at most ``per_criterion`` per criterion and ``max_gallery`` in all.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import logging
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

import numpy as np

from ..errors import OutputError
from ..flags import Flag
from ..io.results import _atomic_write
from . import _files

__all__ = ["band_summary", "gallery_selection", "write_report"]

logger = logging.getLogger("galmoss")

PathLike = Union[str, os.PathLike]

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ccc}
h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0} td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto;display:block}
.gallery{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #ddd;padding:6px;width:100%;max-width:980px;box-sizing:border-box}
.card p{font-size:12px;margin:4px 0}
.summary{font-size:14px} .missing{color:#a00;font-size:13px}
code{font-size:12px}
"""


# ------------------------------------------------------------------ helpers
def _png(fig, dpi: int) -> str:
    """A figure as a base64 PNG ``data:`` URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _img(uri: str, alt: str, cls: str) -> str:
    return f'<img class="{cls}" alt="{html.escape(alt)}" src="{uri}">'


def _float_column(table, name: str) -> np.ndarray:
    col = table[name]
    values = np.ma.filled(np.ma.asarray(col).astype(np.float64), np.nan)
    return np.asarray(values)


def _int_column(table, name: str) -> np.ndarray:
    col = np.ma.asarray(table[name])
    return np.asarray(np.ma.filled(col, 0)).astype(np.int64)


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.6g}"
    if isinstance(x, (dict, list)):
        return json.dumps(x)
    return str(x)


def _dict_table(d: Mapping[str, Any]) -> str:
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td><code>{html.escape(_fmt(v))}</code></td></tr>" for k, v in d.items())
    return f"<table>{rows}</table>"


def _range(values: np.ndarray) -> tuple[float, float, int]:
    """A histogram range without the extreme 0.1 % on each side, and how many fall outside."""
    lo, hi = np.percentile(values, [0.1, 99.9]) if values.size >= 1000 else (values.min(), values.max())
    lo, hi = float(lo), float(hi)
    if hi <= lo:
        pad = max(abs(lo) * 1e-3, 1e-12)
        lo, hi = lo - pad, hi + pad
    outside = int(np.count_nonzero((values < lo) | (values > hi)))
    return lo, hi, outside


def _grid(n: int, ncols: int = 4) -> tuple[int, int]:
    ncols = max(1, min(ncols, n))
    return math.ceil(n / ncols), ncols


def _panel_grid(ncols: int, nrows: int, height: float):
    """A figure for a grid of small plots, with fixed margins (in inches).

    Constrained layout would measure every tick label of every panel, which
    took most of a report's drawing time.
    """
    from .panels import new_figure

    width, total = 3.4 * ncols, height * nrows
    fig = new_figure((width, total), layout=None)
    fig.subplots_adjust(left=0.95 / width, right=1 - 0.15 / width, bottom=0.45 / total, top=1 - 0.3 / total,
                        wspace=0.5, hspace=0.55)
    return fig


# ----------------------------------------------------------------- sections
def _flag_counts(flag: np.ndarray) -> tuple[str, list[str]]:
    """HTML table of counts by flag, and the names of the flags present."""
    n = flag.size
    rows = [("fine (no flag)", int(np.count_nonzero(flag == 0)), "")]
    present = []
    known = 0
    from ..flags import describe

    absent = []
    for member in sorted(Flag.__members__.values(), key=int):
        count = int(np.count_nonzero(flag & int(member)))
        known |= int(member)
        if count:
            rows.append((f"{member.name} ({int(member)})", count, describe(member.name)))
            present.append(member.name)
        else:
            absent.append(member.name)
    unknown = int(np.count_nonzero(flag & ~known))
    if unknown:
        rows.append(("bits this galmoss does not define", unknown, "written by a newer galmoss"))
    body = "".join(
        f"<tr><td>{html.escape(name)}</td><td class='num'>{count}</td>"
        f"<td class='num'>{100 * count / max(n, 1):.2f} %</td><td>{html.escape(text)}</td></tr>"
        for name, count, text in rows
    )
    # A galaxy may carry several flags, so the counts can add up to more than n.
    note = f"<p>set on no galaxy: {html.escape(', '.join(absent))}</p>" if absent else ""
    table = f"<table><tr><th>flag</th><th>galaxies</th><th>fraction</th><th>meaning</th></tr>{body}</table>{note}"
    return table, present


def _status_counts(status: np.ndarray) -> str:
    values, counts = np.unique(status, return_counts=True)
    body = "".join(
        f"<tr><td>{html.escape(_files.decode_status(int(v)))}</td><td class='num'>{int(c)}</td>"
        f"<td class='num'>{100 * c / max(status.size, 1):.2f} %</td></tr>"
        for v, c in zip(values, counts)
    )
    return f"<table><tr><th>status</th><th>galaxies</th><th>fraction</th></tr>{body}</table>"


def _label(name: str, units: Mapping[str, str]) -> str:
    return f"{name} [{units[name]}]" if name in units else name


def _histograms(columns: dict[str, np.ndarray], dpi: int, units: Mapping[str, str]) -> tuple[str | None, list[str]]:
    """One figure of histograms, and notes on columns left out (fixed or all NaN)."""
    shown, notes = [], []
    for name, values in columns.items():
        finite = values[np.isfinite(values)]
        if not finite.size:
            notes.append(f"{name}: no finite value")
        elif finite.min() == finite.max():
            notes.append(f"{name}: {finite.min():.6g} for every galaxy (fixed)")
        else:
            shown.append((name, finite, values.size - finite.size))
    if not shown:
        return None, notes
    nrows, ncols = _grid(len(shown))
    fig = _panel_grid(ncols, nrows, 2.6)
    for k, (name, finite, n_bad) in enumerate(shown):
        ax = fig.add_subplot(nrows, ncols, k + 1, label=f"hist:{name}")
        lo, hi, outside = _range(finite)
        bins = int(np.clip(2 * math.sqrt(finite.size), 8, 60))
        counts, edges = np.histogram(finite, bins=bins, range=(lo, hi))
        ax.stairs(counts, edges, fill=True, color="tab:blue", alpha=0.75)
        ax.set_ylabel("galaxies", fontsize=7)
        extra = ", ".join(filter(None, [f"{outside} outside" if outside else "", f"{n_bad} NaN" if n_bad else ""]))
        ax.set_title(_label(name, units) + (f" ({extra})" if extra else ""), fontsize=9)
        ax.tick_params(labelsize=7)
    return _png(fig, dpi), notes


def _errors_vs_values(pairs: dict[str, tuple[np.ndarray, np.ndarray]], dpi: int, units: Mapping[str, str]) -> str | None:
    """Error against value for every parameter: points for small runs, a 2-D histogram for large ones."""
    from matplotlib.colors import LogNorm

    shown = []
    for name, (value, error) in pairs.items():
        good = np.isfinite(value) & np.isfinite(error) & (error > 0)
        if np.count_nonzero(good) >= 2:
            shown.append((name, value[good], error[good]))
    if not shown:
        return None
    nrows, ncols = _grid(len(shown))
    fig = _panel_grid(ncols, nrows, 2.8)
    for k, (name, value, error) in enumerate(shown):
        ax = fig.add_subplot(nrows, ncols, k + 1, label=f"err:{name}")
        if value.size <= 5000:
            ax.scatter(value, error, s=12, alpha=0.7, color="tab:blue", linewidths=0)
            ax.set_yscale("log")
        else:
            # 10^6 points are unreadable as dots and slow to draw: bin them.
            x_lo, x_hi, _ = _range(value)
            log_err = np.log10(error)
            y_lo, y_hi, _ = _range(log_err)
            counts, xe, ye = np.histogram2d(value, log_err, bins=60, range=[[x_lo, x_hi], [y_lo, y_hi]])
            masked = np.ma.masked_equal(counts.T, 0)
            if masked.count():
                ax.pcolormesh(xe, 10.0**ye, masked, norm=LogNorm(vmin=1, vmax=max(float(counts.max()), 1.0)), cmap="viridis")
            ax.set_yscale("log")
        ax.set_title(_label(name, units), fontsize=9)
        ax.set_xlabel("value", fontsize=7)
        ax.set_ylabel("error", fontsize=7)
        ax.tick_params(labelsize=7)
    return _png(fig, dpi)


def band_summary(table) -> dict[str, np.ndarray] | None:
    """A multi-band run's values against wavelength: the median and 16th and 84th percentiles over galaxies.

    Returns None for a single-band table, else ``{"bands": names, "wavelength":
    (n_bands,), <parameter>: (3, n_bands)}`` with every band-varying parameter
    (columns ``<parameter>_<band>`` in every band, e.g. ``disk_mag``) and, when two
    or more components have a magnitude per band, ``<component>_fraction``: the
    component's share of the summed flux 10^(-0.4 mag) (a bulge's B/T), over the
    galaxies fitted without flags (all fitted galaxies when none is unflagged).
    """
    found = _files.bands_of(table)
    if found is None:
        return None
    bands, waves = found
    names = set(table.colnames)
    bases = []
    for col in table.colnames:
        if col.endswith("_" + bands[0]) and not col.startswith(("chi2_", "deviance_", "dof_")):
            base = col[: -len(bands[0]) - 1]
            if all(f"{base}_{b}" in names for b in bands):
                bases.append(base)
    fitted = np.ones(len(table), bool)
    if "flag" in names:
        clean = _int_column(table, "flag") == 0
        fitted = clean if clean.any() else fitted
    out: dict[str, np.ndarray] = {"bands": np.array(bands), "wavelength": waves}

    def spread(values: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.array([np.nanpercentile(v, (50, 16, 84)) if np.isfinite(v).any() else [np.nan] * 3
                             for v in values.T]).T

    for base in bases:
        out[base] = spread(np.stack([_float_column(table, f"{base}_{b}")[fitted] for b in bands], axis=1))
    mags = [b for b in bases if b.endswith("_mag")]
    if len(mags) >= 2:
        flux = {m: 10 ** (-0.4 * np.stack([_float_column(table, f"{m}_{b}")[fitted] for b in bands], axis=1))
                for m in mags}
        total = sum(flux.values())
        for m, f in flux.items():
            out[f"{m[: -len('_mag')]}_fraction"] = spread(f / total)
    return out


def _colours(summary: dict[str, np.ndarray], dpi: int) -> str | None:
    """One panel per band-varying parameter and per flux fraction, against wavelength."""
    keys = [k for k in summary if k not in ("bands", "wavelength")]
    if not keys:
        return None
    waves, bands = summary["wavelength"], list(summary["bands"])
    x = waves if np.all(np.isfinite(waves)) else np.arange(len(bands), dtype=float)
    nrows, ncols = _grid(len(keys))
    fig = _panel_grid(ncols, nrows, 2.6)
    for k, key in enumerate(keys):
        med, lo, hi = summary[key]
        ax = fig.add_subplot(nrows, ncols, k + 1, label=f"colour:{key}")
        ax.errorbar(x, med, yerr=[med - lo, hi - med], fmt="o-", ms=4, capsize=2, color="tab:red")
        for xi, b in zip(x, bands):
            ax.annotate(b, (xi, 0), xycoords=("data", "axes fraction"), ha="center", va="bottom", fontsize=7)
        if key.endswith("_mag"):
            ax.invert_yaxis()  # brighter up
        title = key.replace("_fraction", ": share of the flux") if key.endswith("_fraction") else key
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("wavelength" if x is waves else "band", fontsize=7)
        ax.tick_params(labelsize=7)
    return _png(fig, dpi)


def gallery_selection(table, per_criterion: int = 6, max_gallery: int = 40) -> list[tuple[str, np.ndarray]]:
    """Rows to show for each criterion of the report's gallery.

    Parameters
    ----------
    table
        A results table.
    per_criterion
        At most this many rows per criterion (at least 1).
    max_gallery
        At most this many different galaxies over all criteria (criteria later
        in the list get what is left; 0 for none).

    Returns
    -------
    list of (str, numpy.ndarray)
        ``(criterion, row indices)``, worst first: ``"highest reduced chi2"``;
        ``"flag: <name>"`` for every flag set on some galaxy (the highest reduced
        chi2 among them; a NaN chi2 counts as worst); ``"at a bound: <parameter>"``
        for every parameter the ``near_bound`` messages name.
    """
    if not isinstance(per_criterion, (int, np.integer)) or per_criterion < 1:
        raise ValueError(f"gallery per_criterion={per_criterion!r}; give a positive number of galaxies per criterion")
    if not isinstance(max_gallery, (int, np.integer)) or max_gallery < 0:
        raise ValueError(f"gallery max_gallery={max_gallery!r}; give the most galaxies to draw (0 for none)")
    n = len(table)
    red_name = _files.loss_columns(table.colnames)[1]
    red = _float_column(table, red_name) if red_name else np.full(n, np.nan)
    flag = _int_column(table, "flag") if "flag" in table.colnames else np.zeros(n, np.int64)
    badness = np.where(np.isfinite(red), red, np.inf)

    def worst(rows: np.ndarray, k: int) -> np.ndarray:
        if rows.size > k:
            rows = rows[np.argpartition(-badness[rows], k - 1)[:k]]
        return rows[np.argsort(-badness[rows], kind="stable")]

    criteria: list[tuple[str, np.ndarray]] = []
    finite = np.flatnonzero(np.isfinite(red))
    if finite.size:
        criteria.append((f"highest {red_name.replace('_', ' ')}", worst(finite, per_criterion)))
    for member in sorted(Flag.__members__.values(), key=int):
        rows = np.flatnonzero(flag & int(member))
        if rows.size:
            criteria.append((f"flag: {member.name}", worst(rows, per_criterion)))
    near = np.flatnonzero(flag & int(Flag.near_bound))
    if near.size and "message" in table.colnames:
        messages = np.asarray(table["message"][near]).astype(str)
        for name in _files.parameter_columns(table):
            hit = near[np.char.find(messages, name) >= 0]
            if hit.size:
                criteria.append((f"at a bound: {name}", worst(hit, per_criterion)))

    chosen: set[int] = set()
    out = []
    for title, rows in criteria:
        keep = []
        for r in rows.tolist():
            if r not in chosen and len(chosen) >= max_gallery:
                continue
            keep.append(r)
            chosen.add(r)
        if keep:
            out.append((title, np.array(keep, dtype=np.int64)))
    return out


def _gallery(run: _files.Run, selection: list[tuple[str, np.ndarray]], dpi: int, units: Mapping[str, str]) -> str:
    from .panels import plot_fit

    table = run.table
    red_name = _files.loss_columns(table.colnames)[1]
    rendered: dict[int, str] = {}
    parts = []
    for title, rows in selection:
        cards = []
        for r in rows.tolist():
            row = table[r]
            name = str(row["galaxy_index"])
            red = f", {red_name.replace('_', ' ')} {float(row[red_name]):.4g}" if red_name else ""
            caption = f"<p><b>{html.escape(name)}</b> (row {r}){html.escape(red)}</p>"
            if r not in rendered:
                path = _files.block_file(row, run.blocks)
                if path is None or not path.exists():
                    where = "no image-block folder was found (pass --blocks)" if path is None else f"'{path}' does not exist"
                    rendered[r] = f"<p class='missing'>no image block: {html.escape(where)}</p>"
                else:
                    try:
                        fig = plot_fit(row, block=path, units=units)
                        rendered[r] = _img(_png(fig, dpi), f"fit of {name}", "panel")
                    except (OSError, ValueError, KeyError) as exc:  # one bad block must not lose the report
                        rendered[r] = f"<p class='missing'>cannot draw {html.escape(str(path))}: {html.escape(str(exc))}</p>"
            cards.append(f"<div class='card'>{caption}{rendered[r]}</div>")
        parts.append(f"<h3>{html.escape(title)}</h3><div class='gallery'>{''.join(cards)}</div>")
    return "".join(parts)


# -------------------------------------------------------------------- entry
def write_report(
    results: PathLike,
    out: PathLike | None = None,
    *,
    blocks: PathLike | None = None,
    per_criterion: int = 6,
    max_gallery: int = 40,
    dpi: int = 80,
) -> Path:
    """Write the HTML report of a run.

    Parameters
    ----------
    results
        The run's results folder (its ``result_path``).
    out
        The HTML file to write (default ``<results>/report.html``).
    blocks
        The image-block folder, when neither ``run.json`` nor the usual places
        (``RESULT/../image_blocks``, ``RESULT/image_blocks``) have it. Without
        blocks the report still has everything but the gallery pictures.
    per_criterion, max_gallery
        Gallery size: galaxies per criterion, and different galaxies in all.
    dpi
        Resolution of the embedded pictures.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    DataFileNotFoundError
        If the folder or its results table does not exist.
    OutputError
        If the report cannot be written.
    """
    t0 = time.perf_counter()
    run = _files.open_run(results, blocks)
    table = run.table
    n = len(table)
    target = Path(os.fspath(out)) if out is not None else run.folder / "report.html"

    flag = _int_column(table, "flag") if "flag" in table.colnames else np.zeros(n, np.int64)
    flags_html, _ = _flag_counts(flag)
    params = _files.parameter_columns(table)
    columns = {name: _float_column(table, name) for name in params}
    red_name = _files.loss_columns(table.colnames)[1]
    red = _float_column(table, red_name) if red_name else np.full(n, np.nan)
    units = _files.column_units(table, run.info)
    hist_png, hist_notes = _histograms({**columns, **({red_name: red} if red_name else {})}, dpi, units)
    pairs = {name: (columns[name], _float_column(table, f"{name}_err")) for name in params if f"{name}_err" in table.colnames}
    err_png = _errors_vs_values(pairs, dpi, units) if pairs else None
    selection = gallery_selection(table, per_criterion, max_gallery)
    gallery_html = _gallery(run, selection, dpi, units) if selection else "<p>no galaxy to show</p>"

    converged = int(np.count_nonzero(np.asarray(table["converged"]).astype(str) == "True")) if "converged" in table.colnames else None
    finite_red = red[np.isfinite(red)]
    summary = [f"{n} galaxies"]
    if converged is not None:
        summary.append(f"{converged} converged ({100 * converged / max(n, 1):.1f} %)")
    if finite_red.size:
        summary.append(f"median {red_name.replace('_', ' ')} {np.median(finite_red):.4g}")
    summary.append(f"{int(np.count_nonzero(flag == 0))} without flags")

    info = dict(run.info)
    sections = [
        f"<h1>galmoss run report</h1><p class='summary'>{html.escape(' · '.join(summary))}</p>",
        f"<p>results: <code>{html.escape(str(run.folder))}</code>; image blocks: "
        f"<code>{html.escape(str(run.blocks) if run.blocks else 'not found')}</code></p>",
    ]
    sections.append("<h2>Run</h2>")
    if info:
        for key in ("settings", "timing"):
            value = info.pop(key, None)
            if isinstance(value, Mapping) and value:
                sections.append(f"<h3>{key}</h3>{_dict_table(value)}")
        info.pop("img_block_path", None)
        info.pop("columns", None)  # shown as the units of the plots
        if info:
            sections.append(f"<h3>other</h3>{_dict_table(info)}")
    else:
        sections.append("<p>no run.json in the results folder: settings and timing unknown</p>")
    sections.append(f"<h2>Flags</h2>{flags_html}")
    if "status" in table.colnames:
        sections.append(f"<h2>Status</h2>{_status_counts(_int_column(table, 'status'))}")
    sections.append("<h2>Distributions</h2>")
    if hist_png:
        sections.append(_img(hist_png, "histograms of the fitted parameters and reduced chi2", "figure"))
    if hist_notes:
        sections.append("<ul>" + "".join(f"<li>{html.escape(t)}</li>" for t in hist_notes) + "</ul>")
    sections.append("<h2>Errors against values</h2>")
    sections.append(_img(err_png, "errors against values", "figure") if err_png else "<p>no error columns (run uncertainty())</p>")
    summary_bands = band_summary(table)
    if summary_bands is not None:
        colours_png = _colours(summary_bands, dpi)
        sections.append("<h2>Colours</h2><p>bands " + html.escape(", ".join(summary_bands["bands"])) +
                        ": median over the galaxies without flags, bars from the 16th to the 84th percentile</p>")
        sections.append(_img(colours_png, "band-varying parameters against wavelength", "figure") if colours_png
                        else "<p>no parameter varies between the bands</p>")
    sections.append(f"<h2>Worst fits</h2><p>at most {per_criterion} per criterion, {max_gallery} in all</p>{gallery_html}")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    from .._version import __version__

    sections.append(f"<p style='color:#888;font-size:12px'>galmoss {__version__}, {stamp}, "
                    f"made in {time.perf_counter() - t0:.1f} s</p>")
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>galmoss report: {html.escape(str(run.folder))}</title><style>{_CSS}</style></head>"
        f"<body>{''.join(sections)}</body></html>"
    )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the folder of the report '{target}' ({exc.strerror or exc}); choose another --out") from exc
    # atomically, as every file galmoss writes: a killed run never leaves half a page
    _atomic_write(target, lambda fh: fh.write(page.encode("utf-8")))
    logger.info("report of %d galaxies written to %s in %.1f s", n, target, time.perf_counter() - t0)
    return target
