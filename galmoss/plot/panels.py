"""The picture of one fit: data, model, residual, components and a radial profile.

:func:`plot_fit` draws it from a results row and the galaxy's image block, so
it needs nothing but the files a run wrote. It uses ``matplotlib.figure.Figure``
with the Agg canvas directly, never pyplot: no display is needed, no global
figure state is touched, and figures are freed as soon as they are dropped.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from astropy.table import Row, Table

from ..errors import DataError, DataFileNotFoundError
from ..io.results import is_uncertainty_column
from . import _files

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["elliptical_radius", "format_value", "plot_fit", "radial_profile"]

PathLike = Union[str, os.PathLike]

#: Labels given to the axes of a fit figure (``ax.get_label()``), so tests and
#: users can find a panel: images are ``"data"``, ``"model"``, ``"residual"``
#: and ``"component:<name>"``; then ``"profile"`` and ``"values"``.
IMAGE_PANELS = ("data", "model", "residual")


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - matplotlib is a dependency
        raise ImportError(
            "galmoss plots need matplotlib; install it with `pip install matplotlib` (or `pip install galmoss[plot]`)"
        ) from exc
    return Figure, FigureCanvasAgg


def new_figure(figsize: tuple[float, float], layout: str | None = "constrained") -> "Figure":
    """A Figure on an Agg canvas (no display, no pyplot state)."""
    Figure, FigureCanvasAgg = _matplotlib()
    fig = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(fig)
    return fig


# ------------------------------------------------------------------ numbers
def format_value(value: float, error: float | None = None, at_bound: bool = False) -> str:
    """``value +/- error`` rounded to the error's two significant digits.

    Without a usable error the value is shown with 5 significant digits;
    ``at_bound``: a free value that ended at a bound of its range (its error is NaN).
    """
    if value is None or not np.isfinite(value):
        return "nan"
    if at_bound and (error is None or not np.isfinite(error)):
        return f"{value:.5g} (at bound)"
    if error is None or not np.isfinite(error) or error <= 0:
        # A zero error is what a fixed parameter gets.
        return f"{value:.5g}" + (" (fixed)" if error == 0 else "")
    decimals = max(0, 1 - int(math.floor(math.log10(error))))
    if abs(value) >= 1e6 or decimals > 8:
        return f"{value:.4e} ± {error:.2e}"
    return f"{value:.{decimals}f} ± {error:.{decimals}f}"


def elliptical_radius(shape: tuple[int, int], cen_x: float, cen_y: float, pa: float = 0.0, axis_r: float = 1.0) -> np.ndarray:
    """Elliptical radius (along the major axis) of every pixel, galmoss conventions.

    Pixel centres are 1-based (the first pixel is at (1, 1)); ``pa`` is in degrees
    from +y towards -x; ``axis_r`` is b/a.
    """
    y, x = np.mgrid[1 : shape[0] + 1, 1 : shape[1] + 1].astype(np.float64)
    dx, dy = x - cen_x, y - cen_y
    t = math.radians(pa)
    major = -dx * math.sin(t) + dy * math.cos(t)
    minor = dx * math.cos(t) + dy * math.sin(t)
    q = axis_r if np.isfinite(axis_r) and axis_r > 0 else 1.0
    return np.hypot(major, minor / q)


def radial_profile(
    radius: np.ndarray,
    images: Mapping[str, np.ndarray],
    used: np.ndarray,
    sigma: np.ndarray | None = None,
    n_bins: int = 18,
) -> dict[str, np.ndarray]:
    """Mean intensity in annuli of ``radius`` over the used pixels.

    Parameters
    ----------
    radius
        Radius of every pixel (e.g. :func:`elliptical_radius`).
    images
        Name -> image; each gets its mean per annulus over the same pixels.
    used
        Boolean image of the pixels that enter (the fit's mask).
    sigma
        Per-pixel sigma; gives the error of the mean of ``images["data"]``
        (without it, the scatter in the annulus over sqrt(n)).
    n_bins
        Annuli: one from 0 to 1 px, then logarithmic out to the largest radius.

    Returns
    -------
    dict
        ``radius`` (mean radius of the pixels in each annulus), ``n`` (pixels),
        one mean per image, and ``data_err`` when ``"data"`` is among the images;
        annuli without pixels are dropped.
    """
    r = radius[used]
    if r.size == 0:
        return {"radius": np.zeros(0), "n": np.zeros(0)}
    r_max = max(float(r.max()), 1.0) * (1 + 1e-9)
    edges = np.unique(np.concatenate([[0.0], np.geomspace(1.0, r_max, n_bins)])) if r_max > 1 else np.array([0.0, r_max])
    index = np.clip(np.searchsorted(edges, r, side="right") - 1, 0, edges.size - 2)
    n_ann = edges.size - 1
    count = np.bincount(index, minlength=n_ann).astype(np.float64)
    keep = count > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {"radius": (np.bincount(index, weights=r, minlength=n_ann) / count)[keep], "n": count[keep]}
        for name, image in images.items():
            values = np.asarray(image, dtype=np.float64)[used]
            out[name] = (np.bincount(index, weights=values, minlength=n_ann) / count)[keep]
        if "data" in images:
            values = np.asarray(images["data"], dtype=np.float64)[used]
            if sigma is not None:
                var = np.bincount(index, weights=np.asarray(sigma, dtype=np.float64)[used] ** 2, minlength=n_ann)
                out["data_err"] = (np.sqrt(var) / count)[keep]
            else:
                mean2 = np.bincount(index, weights=values**2, minlength=n_ann) / count
                spread = np.sqrt(np.maximum(mean2 - (np.bincount(index, weights=values, minlength=n_ann) / count) ** 2, 0))
                out["data_err"] = (spread / np.sqrt(np.maximum(count - 1, 1)))[keep]
    return out


# ------------------------------------------------------------------ sources
def _as_mapping(row: Row | Mapping[str, Any]) -> dict[str, Any]:
    items = {name: row[name] for name in row.colnames} if isinstance(row, Row) else dict(row)
    # Masked cells (an empty CSV field) read as NaN, or as nothing for text.
    return {k: np.nan if v is np.ma.masked else v for k, v in items.items()}


def _resolve(source: Any, galaxy: Any, block: Any, blocks: PathLike | None) -> tuple[dict, dict, dict, dict]:
    """(row, block images, run info, column units) from any of the sources plot_fit accepts."""
    info: dict = {}
    units: dict = {}
    block_dir: Path | None = Path(os.fspath(blocks)) if blocks is not None else None
    # A Fitting is recognised by what it has rather than its class, so the
    # plots do not import (or depend on the layout of) the fitting package.
    if hasattr(source, "dataset") and hasattr(source, "results"):
        if galaxy is None:
            raise ValueError("plot_fit(fitting, galaxy): name the galaxy to plot (a value of galaxy_index)")
        row = _files.find_row(source.results, galaxy, "the fit's results")
        units = _files.column_units(source.results)
        if block_dir is None and getattr(source.dataset, "img_block_path", None) is not None:
            block_dir = Path(source.dataset.img_block_path)
    elif isinstance(source, (str, os.PathLike)):
        if galaxy is None:
            raise ValueError(f"plot_fit('{source}', galaxy): name the galaxy to plot (a value of galaxy_index)")
        run = _files.open_run(source, blocks)
        row, block_dir, info = _files.find_row(run.table, galaxy, f"'{source}'"), run.blocks, run.info
        units = _files.column_units(run.table, run.info)
    elif isinstance(source, Table):
        if galaxy is None:
            raise ValueError("plot_fit(table, galaxy): name the galaxy to plot (a value of galaxy_index)")
        row = _files.find_row(source, galaxy)
        units = _files.column_units(source)
    elif isinstance(source, (Row, Mapping)):
        row = source
        units = _files.column_units(source.table) if isinstance(source, Row) else {}
    else:
        raise TypeError(
            f"plot_fit: cannot plot from a {type(source).__name__}; give a results folder, a gm.Fitting, "
            "a results Table with a galaxy name, or a results row"
        )
    row = _as_mapping(row)
    path = None
    if isinstance(block, Mapping):
        images = dict(block)
    else:
        path = Path(os.fspath(block)) if block is not None else _files.block_file(row, block_dir)
        if path is None:
            fitting_without_blocks = hasattr(source, "dataset") and getattr(source.dataset, "img_block_path", None) is None
            raise DataFileNotFoundError(
                f"no image-block folder is known for galaxy '{row.get('galaxy_index')}'; "
                + ("this fit wrote no image blocks: give the Dataset an img_block_path and fit again"
                   if fitting_without_blocks else "pass blocks=FOLDER (the run's img_block_path) or block=FILE")
            )
        if not path.exists():
            raise DataFileNotFoundError(
                f"image block '{path}' of galaxy '{row.get('galaxy_index')}' does not exist; "
                "pass blocks=FOLDER (the run's img_block_path) or block=FILE"
            )
        from ..io.results import read_image_block

        images = read_image_block(path)
    if "DATA" not in images and "INPUT" in images:  # GALFIT's layout (galmoss galfit writes it)
        images["DATA"] = images.pop("INPUT")
        if path is not None:
            info = {**info, "_galfit_origin": _galfit_origin(path)}
        if "SIGMA" not in images:
            images.update(_galfit_sigma(row))
    for needed in ("DATA", "MODEL"):
        if needed not in images and not band_names(images):
            raise DataError(
                f"the image block of galaxy '{row.get('galaxy_index')}' has no {needed} extension "
                f"(it has {', '.join(images)}); give a block written by galmoss fit or galmoss galfit"
            )
    return row, images, info, units


def _galfit_origin(path: Path) -> tuple[int, int]:
    """(x, y) of the first pixel of a GALFIT block in the full frame (its FITSECT), 1-based."""
    from astropy.io import fits

    try:
        section = str(fits.getheader(path, "MODEL").get("FITSECT", ""))
        xs, ys = section.strip("[]").split(",")
        return int(xs.split(":")[0]), int(ys.split(":")[0])
    except (OSError, KeyError, ValueError):
        return 1, 1


def _galfit_sigma(row: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """SIGMA and MASK of a ``galmoss galfit`` fit, read again from its feedme (GALFIT blocks hold neither).

    The sigma is the one the fit used: the C) image, or GALFIT's own from the
    data when C) is none; the mask is the pixels that entered the fit. Empty
    when the feedme or its files cannot be read any more.
    """
    feedme = row.get("feedme")
    if not isinstance(feedme, str) or not Path(feedme).is_file():
        return {}
    try:
        from ..galfit import parse_feedme
        from ..galfit.run import load_galaxy

        gal = load_galaxy(parse_feedme(Path(feedme)), [])
    except (OSError, ValueError):
        return {}
    if gal.sigma is None or gal.weight is None:
        return {}
    return {"SIGMA": gal.sigma, "MASK": (gal.weight > 0).astype(np.uint8)}


def _residual(images: Mapping[str, np.ndarray]) -> tuple[np.ndarray, bool]:
    """The residual image, in sigma when the block has SIGMA, and whether it is."""
    if "RESIDUAL" in images:
        res = np.asarray(images["RESIDUAL"], dtype=np.float64)
    else:
        res = np.asarray(images["DATA"], dtype=np.float64) - np.asarray(images["MODEL"], dtype=np.float64)
    if "SIGMA" not in images:
        return res, False
    sigma = np.asarray(images["SIGMA"], dtype=np.float64)
    good = np.isfinite(sigma) & (sigma > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(good, res / np.where(good, sigma, 1.0), np.nan), True


def _centre(row: Mapping[str, Any], components: list[str],
            origin: tuple[int, int] | None = None) -> tuple[float, float, float, float, str | None] | None:
    """Centre, PA and axis ratio for the annuli.

    The first component with a finite centre, PA and axis ratio gives all
    three; failing that, the first with a finite centre gives circular annuli.
    A ``galmoss galfit`` row names them ``<k>_XC``, ``<k>_YC``, ``<k>_PA``,
    ``<k>_AR`` in the full frame; ``origin`` (its block's first pixel there)
    moves them onto the block.
    """
    def finite(*values):
        return all(v is not None and np.isfinite(v) for v in values)

    slots = ("cen_x", "cen_y", "pa", "axis_r")
    names = [(comp, [f"{comp}_{s}" for s in slots]) for comp in components]
    if origin is not None:
        ks = sorted({int(k.split("_")[0]) for k in row if k.split("_")[0].isdigit() and k.endswith("_XC")})
        names += [(f"component {k}", [f"{k}_{key}" for key in ("XC", "YC", "PA", "AR")]) for k in ks]
    dx, dy = ((origin[0] - 1, origin[1] - 1) if origin is not None else (0, 0))

    def value(key):
        v = row.get(key)
        return float(v) if v is not None and np.asarray(v).dtype.kind in "fiu" else None

    for comp, keys in names:
        cx, cy, pa, q = (value(k) for k in keys)
        if finite(cx, cy, pa, q) and q > 0:
            return cx - dx, cy - dy, pa, q, comp
    for comp, keys in names:
        cx, cy = value(keys[0]), value(keys[1])
        if finite(cx, cy):
            return cx - dx, cy - dy, 0.0, 1.0, comp
    return None


def band_names(images: Mapping[str, np.ndarray]) -> list[str]:
    """The bands of a multi-band image block (``DATA_<BAND>`` extensions), in file order; [] for one band."""
    if "DATA" in images:
        return []
    return [k[5:] for k in images if k.upper().startswith("DATA_") and f"MODEL_{k[5:]}" in images]


def _band_image(images: Mapping[str, np.ndarray], kind: str, band: str) -> np.ndarray | None:
    arr = images.get(f"{kind}_{band}")
    return None if arr is None else np.asarray(arr, dtype=np.float64)


def plot_bands(row: Mapping[str, Any], images: Mapping[str, np.ndarray], *, out: PathLike | None = None,
               dpi: int = 100, units: Mapping[str, str] | None = None) -> "Figure":
    """A multi-band fit's bands side by side: one row of panels per band, and the fit's values.

    Each band's row shows its data, model, residual (in sigma when the block has
    the band's ``SIGMA``) and components, each band on its own colour scale (the
    data's percentiles) and its own pixel grid; the row's title gives the band's
    chi2 / dof (``chi2_<band>``, ``dof_<band>``). Image axes are labelled
    ``"<kind>:<BAND>"`` (``"data:G"``, ``"component:bulge:G"``), the text ``"values"``.
    Called by :func:`plot_fit` for a block of several bands.
    """
    from astropy.visualization import AsinhStretch, AsymmetricPercentileInterval, ImageNormalize

    bands = band_names(images)
    fixed = {"DATA", "MODEL", "RESIDUAL", "MASK", "SIGMA"}
    comps = [k[: -len(bands[0]) - 1] for k in images
             if k.upper().endswith("_" + bands[0].upper()) and k[: -len(bands[0]) - 1].upper() not in fixed]
    n_col = 3 + len(comps)
    width = 2.7 * n_col + 4.6
    fig = new_figure((width, 2.5 * len(bands) + 0.4), layout=None)
    grid = fig.add_gridspec(len(bands), n_col + 1, width_ratios=[1.0] * n_col + [1.6], left=0.5 / width,
                            right=1 - 0.2 / width, bottom=0.06, top=0.92, wspace=0.45, hspace=0.45)
    lowered = {str(k).lower(): k for k in row}
    for i, band in enumerate(bands):
        data, model = _band_image(images, "DATA", band), _band_image(images, "MODEL", band)
        used = np.isfinite(data)
        if f"MASK_{band}" in images:
            used &= np.asarray(images[f"MASK_{band}"]) != 0
        sub = {"DATA": data, "MODEL": model}
        for kind in ("RESIDUAL", "SIGMA"):
            if f"{kind}_{band}" in images:
                sub[kind] = images[f"{kind}_{band}"]
        residual, in_sigma = _residual(sub)
        shown = data[used & np.isfinite(data)]
        norm = (ImageNormalize(shown, interval=AsymmetricPercentileInterval(1.0, 99.8), stretch=AsinhStretch(0.1))
                if shown.size and np.ptp(shown) > 0 else None)
        finite_res = residual[used & np.isfinite(residual)]
        vmax = float(np.percentile(np.abs(finite_res), 99.5)) if finite_res.size else 1.0
        vmax = vmax if vmax > 0 else 1.0
        extent = (0.5, data.shape[1] + 0.5, 0.5, data.shape[0] + 0.5)
        panels = [("data", "data", data), ("model", "model", model),
                  ("residual", "residual / sigma" if in_sigma else "data - model", residual)]
        panels += [(f"component:{c.lower()}", c.lower(), _band_image(images, c, band)) for c in comps]
        chi2, dof = lowered.get(f"chi2_{band.lower()}"), lowered.get(f"dof_{band.lower()}")
        name = next((k[len("chi2_"):] for k in (chi2,) if k), band)
        head = f"band {name}" + (f": chi2 {float(row[chi2]):.1f} / dof {row[dof]}" if chi2 and dof else "")
        for k, (label, title, image) in enumerate(panels):
            ax = fig.add_subplot(grid[i, k], label=f"{label}:{band}")
            if label == "residual":
                im = ax.imshow(image, origin="lower", extent=extent, cmap="RdBu_r", vmin=-vmax, vmax=vmax,
                               interpolation="nearest")
            else:
                im = ax.imshow(image, origin="lower", extent=extent, cmap="magma", norm=norm, interpolation="nearest")
            ax.set_title(f"{head}\n{title}" if k == 0 else title, fontsize=9, loc="left" if k == 0 else "center")
            ax.tick_params(labelsize=7)
            ax.locator_params(nbins=3)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
    text = fig.add_subplot(grid[:, n_col], label="values")
    text.axis("off")
    per_band = {f"{k}_{b}" for b in (lowered.get(f"chi2_{x.lower()}", "")[5:] for x in bands) for k in
                ("chi2", "deviance", "dof")}
    lines = _text_lines(row, [p for p in _parameter_names(row) if p not in per_band], units)
    longest = max((len(line) for line in lines), default=1)
    text.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", family="monospace",
              fontsize=max(4.0, min(9.0, 60.0 * len(bands) / max(len(lines), 1), 420.0 / longest)),
              transform=text.transAxes)
    if out is not None:
        target = Path(os.fspath(out))
        target.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(target, dpi=dpi)
    return fig


def _parameter_names(row: Mapping[str, Any]) -> list[str]:
    """The fitted-parameter entries of a row (as :func:`_files.parameter_columns` for a table)."""
    out = []
    names = set(row.keys())
    for name, value in row.items():
        if name in _files.META_COLUMNS or is_uncertainty_column(name, names):
            continue
        if isinstance(value, (bool, np.bool_)) or np.asarray(value).dtype.kind not in "fiu":
            continue
        out.append(name)
    return out


def _text_lines(row: Mapping[str, Any], params: list[str], units: Mapping[str, str] | None = None) -> list[str]:
    from ..fitting.assess import at_bound
    from ..flags import decode

    units = units or {}
    lines = [f"galaxy {row.get('galaxy_index')}"]
    width = max((len(p) for p in params), default=0)
    walled = set(at_bound(str(row.get("message", ""))))
    for name in params:
        err = row.get(f"{name}_err")
        unit = f" {units[name]}" if units.get(name) else ""
        text = format_value(float(row[name]), None if err is None else float(err), at_bound=name in walled)
        lines.append(f"{name:<{width}s} {text}{unit}")
    loss_name, red_name = _files.loss_columns(row)
    if loss_name is not None:
        red = float(row[red_name]) if red_name else float("nan")
        lines.append(f"{loss_name} {float(row[loss_name]):.6g}   dof {row.get('dof')}   "
                     f"{red_name.replace('_', ' ') if red_name else 'reduced'} {red:.4g}")
    if row.get("n_iter") is not None:
        lines.append(f"iterations {row.get('n_iter')}   converged {row.get('converged')}")
    flag = row.get("flag")
    if flag is not None:
        try:
            names = decode(int(flag))
        except ValueError:
            names = ["(bits this galmoss does not define)"]
        lines.append(f"flag {int(flag)}: {', '.join(names) or 'none'}")
    if row.get("status") is not None:
        lines += textwrap.wrap(f"status {_files.decode_status(int(row['status']))}", 56)
    message = row.get("message")
    message = message.strip() if isinstance(message, str) else ""
    if message and message != "--":
        lines += textwrap.wrap(f"message: {message}", 56)
    return lines


#: Bin edges of the residual histogram, in sigma: outside +-5 the count is in the title.
HISTOGRAM_EDGES = np.linspace(-5.0, 5.0, 41)


def _residual_histogram(ax, residual: np.ndarray | None, used: np.ndarray) -> None:
    """Counts of residual / sigma over the pixels of the fit, and the unit normal they should follow."""
    ax.set_title("residual / sigma (pixels of the fit)", fontsize=10)
    ax.tick_params(labelsize=8)
    if residual is None:
        ax.text(0.5, 0.5, "no sigma in the image block:\nresidual / sigma unknown", ha="center", va="center",
                fontsize=9, transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    values = residual[used & np.isfinite(residual)]
    edges = HISTOGRAM_EDGES
    ax.hist(values, bins=edges, color="0.6", label=f"{values.size} pixels")
    centre = np.linspace(edges[0], edges[-1], 201)
    scale = values.size * (edges[1] - edges[0]) / math.sqrt(2 * math.pi)
    ax.plot(centre, scale * np.exp(-0.5 * centre**2), color="tab:red", lw=1.5, label="unit normal")
    beyond = int(np.count_nonzero(np.abs(values) > edges[-1]))
    mean, rms = (float(values.mean()), float(values.std())) if values.size else (math.nan, math.nan)
    ax.set_xlabel(f"mean {mean:.2f}, rms {rms:.2f}, {beyond} beyond ±5", fontsize=9)
    ax.set_ylabel("pixels", fontsize=9)
    ax.legend(fontsize=8, loc="upper right")


def plot_fit(
    source: Any,
    galaxy: Any = None,
    *,
    block: PathLike | Mapping[str, np.ndarray] | None = None,
    blocks: PathLike | None = None,
    out: PathLike | None = None,
    dpi: int = 100,
    n_bins: int = 18,
    units: Mapping[str, str] | None = None,
) -> "Figure":
    """Draw one galaxy's fit: data, model, residual, components, radial profile, residual histogram, values.

    Parameters
    ----------
    source
        Where the fit comes from: a results folder (the run's ``result_path``), a
        :class:`gm.Fitting` after ``fit()``, a results ``Table``, or one results
        row (an astropy ``Row`` or a dict of column -> value).
    galaxy
        The galaxy's name (its ``galaxy_index``); needed unless ``source`` is a row.
    block
        The galaxy's image block: a file, or the dict :func:`galmoss.io.results.read_image_block`
        returns. By default it is found from the row's ``image_block`` column (or
        ``<galaxy_index>.fits``) in the run's image-block folder.
    blocks
        The image-block folder, when it is not recorded in ``run.json`` and not
        at ``RESULT/../image_blocks`` or ``RESULT/image_blocks``.
    out
        Save the figure there too (format from the suffix, e.g. ``.png``, ``.pdf``).
    dpi
        Resolution when saving.
    n_bins
        Annuli of the radial profile.
    units
        Column -> unit shown after each value; by default the units the run
        recorded (``run.json``'s ``columns``, or the table's column units).

    Returns
    -------
    matplotlib.figure.Figure
        Image panels labelled ``"data"``, ``"model"``, ``"residual"`` and
        ``"component:<name>"`` (``ax.get_label()``), each with its colour bar, the
        ``"profile"`` axes, the ``"histogram"`` axes (residual / sigma over the
        pixels of the fit, with a unit normal) and the ``"values"`` text. The residual is
        (data - model) / sigma when the block holds a ``SIGMA`` extension (a
        symmetric colour scale either way), else data - model in image units.
        The mask (pixels used in the fit) is outlined in white on data and
        residual.

    Raises
    ------
    DataFileNotFoundError
        If the results folder or the image block cannot be found.
    KeyError
        If the galaxy is not in the results.
    """
    from astropy.visualization import AsinhStretch, AsymmetricPercentileInterval, ImageNormalize

    row, images, info, found_units = _resolve(source, galaxy, block, blocks)
    units = {**found_units, **(units or {})}
    if band_names(images):
        return plot_bands(row, images, out=out, dpi=dpi, units=units)
    data = np.asarray(images["DATA"], dtype=np.float64)
    model = np.asarray(images["MODEL"], dtype=np.float64)
    comp_exts = [k for k in images if k.upper() not in _files.BLOCK_IMAGES]
    used = np.isfinite(data)
    if "MASK" in images:
        used &= np.asarray(images["MASK"]) != 0
    residual, in_sigma = _residual(images)
    sigma = np.asarray(images["SIGMA"], dtype=np.float64) if "SIGMA" in images else None

    n_img = 3 + len(comp_exts)
    # A fixed layout: constrained layout measures every tick label and takes
    # most of the drawing time, which matters in a report's gallery.
    width = max(2.9 * n_img, 12.0)
    fig = new_figure((width, 7.4), layout=None)
    outer = fig.add_gridspec(2, 1, height_ratios=[1.0, 1.15], left=0.7 / width, right=1 - 0.3 / width,
                             bottom=0.08, top=0.95, hspace=0.3)
    top = outer[0].subgridspec(1, n_img, wspace=0.45)
    bottom = outer[1].subgridspec(1, 3, width_ratios=[1.15, 0.85, 1.3], wspace=0.3)
    extent = (0.5, data.shape[1] + 0.5, 0.5, data.shape[0] + 0.5)  # 1-based pixel centres
    shown = data[used & np.isfinite(data)]
    if shown.size and np.ptp(shown) > 0:
        norm = ImageNormalize(shown, interval=AsymmetricPercentileInterval(1.0, 99.8), stretch=AsinhStretch(0.1))
    else:
        norm = None
    finite_res = residual[used & np.isfinite(residual)]
    vmax = float(np.percentile(np.abs(finite_res), 99.5)) if finite_res.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    outline = bool(used.any() and not used.all())

    panels = [("data", "data", data), ("model", "model", model)]
    panels.append(("residual", "(data - model) / sigma" if in_sigma else "data - model [image units]", residual))
    panels += [(f"component:{ext.lower()}", f"component {ext.lower()}", np.asarray(images[ext], dtype=np.float64)) for ext in comp_exts]
    for k, (label, title, image) in enumerate(panels):
        ax = fig.add_subplot(top[0, k], label=label)
        if label == "residual":
            im = ax.imshow(image, origin="lower", extent=extent, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
        else:
            im = ax.imshow(image, origin="lower", extent=extent, cmap="magma", norm=norm, interpolation="nearest")
        if outline and label in ("data", "residual"):
            ax.contour(used.astype(float), levels=[0.5], colors="white" if label == "data" else "black",
                       linewidths=0.8, extent=extent, origin="lower")
        ax.set_title(title, fontsize=10)
        ax.tick_params(labelsize=8)
        ax.locator_params(nbins=4)  # few ticks: tick layout is most of the drawing time
        bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
        bar.ax.tick_params(labelsize=7)
        bar.ax.locator_params(nbins=5)

    ax = fig.add_subplot(bottom[0, 0], label="profile")
    components = _files.components_in(list(row), comp_exts)
    geometry = _centre(row, components, info.get("_galfit_origin"))
    if geometry is None:
        cy, cx = (np.array(data.shape, dtype=float) + 1) / 2
        geometry = (cx, cy, 0.0, 1.0, None)
    cx, cy, pa, q, comp = geometry
    radius = elliptical_radius(data.shape, cx, cy, pa, q)
    profile_images = {"data": data, "model": model, **{ext.lower(): images[ext] for ext in comp_exts}}
    prof = radial_profile(radius, profile_images, used, sigma, n_bins)
    if prof["radius"].size:
        # The central annulus (0-1 px) is drawn at 0.5 px: its mean radius is ~0
        # when the centre falls on a pixel, which a log axis would stretch to.
        r_plot = np.maximum(prof["radius"], 0.5)
        ax.errorbar(r_plot, prof["data"], yerr=prof["data_err"], fmt="o", ms=3.5, color="black", label="data", zorder=3)
        ax.plot(r_plot, prof["model"], "-", color="tab:red", lw=1.8, label="model")
        for name in (ext.lower() for ext in comp_exts):
            ax.plot(r_plot, prof[name], "--", lw=1.1, label=name)
        noise = np.nanmedian(prof["data_err"]) if np.isfinite(prof["data_err"]).any() else 0.0
        peak = np.nanmax(np.abs(prof["model"])) if np.isfinite(prof["model"]).any() else 1.0
        # symlog: the outer annuli scatter around zero, which a log axis cannot show.
        ax.set_yscale("symlog", linthresh=float(noise) if noise > 0 else max(float(peak) * 1e-3, 1e-30))
        ax.set_xscale("log")
        ax.legend(fontsize=8, loc="upper right")
    where = "circular annuli" if comp is None or (q == 1.0 and pa == 0.0) else f"elliptical annuli of {comp}: q={q:.2f}, PA={pa:.1f} deg"
    ax.set_title(f"mean intensity per pixel\n({where})", fontsize=10)
    ax.set_xlabel("radius along the major axis [px]" if comp is not None and q != 1.0 else "radius [px]", fontsize=9)
    ax.set_ylabel("image units per pixel", fontsize=9)
    ax.tick_params(labelsize=8)

    _residual_histogram(fig.add_subplot(bottom[0, 1], label="histogram"), residual if in_sigma else None, used)

    text = fig.add_subplot(bottom[0, 2], label="values")
    text.axis("off")
    lines = _text_lines(row, _parameter_names(row), units)
    longest = max((len(line) for line in lines), default=1)
    text.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", family="monospace",
              # the text axes are about 240 pt high and 300 pt wide: shrink the font so that long lists fit
              fontsize=max(4.0, min(10.0, 230.0 / max(len(lines), 1), 560.0 / longest)), transform=text.transAxes)
    if out is not None:
        target = Path(os.fspath(out))
        target.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(target, dpi=dpi)
    return fig
