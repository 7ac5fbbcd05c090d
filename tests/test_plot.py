"""Pictures of fits: the panels of one galaxy and the HTML report of a run.

A small run is written straight through galmoss.io.results (two-component
Gaussian galaxies with known parameters, image blocks with and without SIGMA),
so every number the plots show has an independent value to compare with.
"""

from __future__ import annotations

import base64
import io
import json
import re
import time

import numpy as np
import pytest
from astropy.table import Table

import galmoss as gm
from galmoss.cli import main
from galmoss.flags import Flag
from galmoss.io.results import read_image_block, write_image_block, write_results
from galmoss.plot import report as report_mod
from galmoss.plot.panels import elliptical_radius, format_value, radial_profile

SIZE = 33
NAMES = ["g0", "g1", "g2", "g3", "g4"]


def _gaussian(shape, cx, cy, flux, s, q=1.0, pa=0.0):
    r = elliptical_radius(shape, cx, cy, pa, q)
    return flux / (2 * np.pi * s * s * q) * np.exp(-0.5 * (r / s) ** 2)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A results folder with run.json, a block folder beside it and 5 galaxies."""
    root = tmp_path_factory.mktemp("plotrun")
    folder, blocks = root / "results", root / "image_blocks"
    rng = np.random.default_rng(3)
    shape = (SIZE, SIZE)
    rows = []
    truth = {}
    for i, name in enumerate(NAMES):
        cx, cy = 17.0 + 0.3 * i, 16.5 - 0.2 * i
        bulge = _gaussian(shape, cx, cy, 400.0, 1.5)
        disk = _gaussian(shape, cx, cy, 900.0, 5.0, q=0.5, pa=30.0)
        sigma = np.full(shape, 0.2) + 0.01 * np.arange(SIZE)[None, :]
        data = bulge + disk + rng.normal(0, 1, shape) * sigma
        mask = np.ones(shape, bool)
        mask[2:6, 25:30] = False  # a neighbour masked out
        truth[name] = dict(data=data, model=bulge + disk, sigma=sigma, mask=mask, bulge=bulge, disk=disk)
        if name != "g4":  # g4's block is missing (its file could not be read)
            write_image_block(
                blocks / f"{name}.fits", data=data, model=bulge + disk,
                components={"bulge": bulge, "disk": disk}, mask=mask,
            )
        rows.append(
            dict(galaxy_index=name, bulge_cen_x=cx, bulge_cen_x_err=0.01, bulge_cen_y=cy, bulge_cen_y_err=0.01,
                 bulge_mag=17.0312 + i, bulge_mag_err=0.0123, disk_cen_x=cx, disk_cen_x_err=0.02, disk_cen_y=cy,
                 disk_cen_y_err=0.02, disk_pa=30.0, disk_pa_err=0.5, disk_axis_r=0.5, disk_axis_r_err=0.004,
                 disk_mag=16.2 + 0.1 * i, disk_mag_err=0.01, chi2=1000.0 * (1 + i), dof=1000,
                 reduced_chi2=1.0 + i if name != "g4" else np.nan, n_iter=8, converged=name != "g2", flag=0, message="")
        )
    table = Table(rows=rows)
    table["flag"][1] = int(Flag.near_bound)
    table["message"] = table["message"].astype("U80")
    table["message"][1] = "a parameter ended within 0.1% of its bound: disk_axis_r"
    table["flag"][2] = int(Flag.no_convergence)
    table["flag"][4] = int(Flag.read_error)
    write_results(table, folder)
    # g0's block gets a SIGMA extension, as the fitter writes when it knows sigma
    from astropy.io import fits

    with fits.open(blocks / "g0.fits", mode="append") as hdul:
        hdul.append(fits.ImageHDU(truth["g0"]["sigma"].astype(np.float32), name="SIGMA"))
    (folder / "run.json").write_text(json.dumps({
        "img_block_path": "../image_blocks",
        "settings": {"method": "lm", "batch_size": 64, "device": "cpu"},
        "timing": {"fit_s": 12.5, "total_s": 14.0},
    }))
    return dict(folder=folder, blocks=blocks, truth=truth, table=table)


def _assert_float32_residual(shown, block, sigma=1.0):
    """shown == (DATA - MODEL) / sigma to float32 precision.

    The block's images are float32; the residual was formed from the unrounded
    images, so each pixel may differ by the rounding of data and model (one
    float32 ulp of each: 2**-23 relative) plus its own rounding.
    """
    data, model = block["DATA"].astype(np.float64), block["MODEL"].astype(np.float64)
    expected = (data - model) / sigma
    bound = 2.0**-23 * (np.abs(data) + np.abs(model) + np.abs(data - model)) / sigma
    assert np.all(np.abs(np.asarray(shown, dtype=np.float64) - expected) <= bound)


def _axes(fig):
    return {ax.get_label(): ax for ax in fig.axes if ax.get_label() != "<colorbar>"}


def test_fit_panels_show_data_model_residual_in_sigma_and_components(run):
    fig = gm.plot_fit(run["folder"], "g0")
    axes = _axes(fig)
    assert list(axes) == ["data", "model", "residual", "component:bulge", "component:disk", "profile", "histogram", "values"]
    assert sum(ax.get_label() == "<colorbar>" for ax in fig.axes) == 5  # one per image panel
    block = read_image_block(run["blocks"] / "g0.fits")
    # the residual panel holds (data - model) / sigma of the block, to float32 precision
    shown = np.asarray(axes["residual"].images[0].get_array(), dtype=np.float64)
    _assert_float32_residual(shown, block, block["SIGMA"].astype(np.float64))
    # it is white noise of unit variance: the injected noise was sigma * N(0, 1)
    assert 0.9 < np.std(shown) < 1.1
    assert "sigma" in axes["residual"].get_title()
    lo, hi = axes["residual"].images[0].get_clim()
    assert lo == -hi and 2.0 < hi < 4.0  # symmetric, about the 99.5 % point of |N(0, 1)|
    np.testing.assert_array_equal(axes["data"].images[0].get_array(), block["DATA"])
    np.testing.assert_array_equal(axes["component:disk"].images[0].get_array(), block["DISK"])
    # the mask is outlined: one contour around the masked neighbour
    assert len(axes["data"].collections) == 1
    text = axes["values"].texts[0].get_text()
    assert "bulge_mag" in text and "17.031 ± 0.012" in text and "flag 0: none" in text


def test_residual_without_sigma_is_data_minus_model_in_image_units(run):
    fig = gm.plot_fit(run["folder"], "g1")
    axes = _axes(fig)
    block = read_image_block(run["blocks"] / "g1.fits")
    _assert_float32_residual(axes["residual"].images[0].get_array(), block)
    assert axes["residual"].get_title() == "data - model [image units]"
    text = axes["values"].texts[0].get_text()
    assert "near_bound" in text and "disk_axis_r" in text


def test_radial_profile_follows_the_fitted_ellipse(run):
    # On the truth, annuli of the disk's own ellipse average the disk to its
    # profile: the model curve of the disk equals the analytic Gaussian at the
    # annulus radius, to the curvature of the profile across an annulus (< 3 %).
    t = run["truth"]["g0"]
    cx, cy = 17.0, 16.5
    r = elliptical_radius(t["disk"].shape, cx, cy, 30.0, 0.5)
    prof = radial_profile(r, {"disk": t["disk"], "data": t["data"]}, t["mask"], t["sigma"])
    analytic = 900.0 / (2 * np.pi * 25.0 * 0.5) * np.exp(-0.5 * (prof["radius"] / 5.0) ** 2)
    inner = prof["radius"] < 8
    np.testing.assert_allclose(prof["disk"][inner], analytic[inner], rtol=0.03)
    # the data's error bars are sigma / sqrt(n) for a constant-ish sigma
    assert np.all(prof["data_err"] > 0.19 / np.sqrt(prof["n"]))
    # annuli turned by 90 degrees smear the disk: the comparison can fail
    wrong = radial_profile(elliptical_radius(t["disk"].shape, cx, cy, -60.0, 0.5), {"disk": t["disk"]}, t["mask"])
    wrong_analytic = 900.0 / (2 * np.pi * 25.0 * 0.5) * np.exp(-0.5 * (wrong["radius"] / 5.0) ** 2)
    assert np.max(np.abs(wrong["disk"] / wrong_analytic - 1)[wrong["radius"] < 8]) > 0.2
    # the PA convention is the renderer's: a Gaussian galmoss draws at PA 30, q 0.5
    # is constant on these ellipses, not on the turned ones
    g = gm.lp.Gaussian(cen_x=gm.p(cx), cen_y=gm.p(cy), pa=gm.p(30.0), axis_r=gm.p(0.5), fwhm=gm.p(20.0),
                       mag=gm.p(15.0, M0=22.5))
    image = gm.render(g, t["disk"].shape).numpy()[0]
    ring = (r > 6) & (r < 6.3)
    turned = elliptical_radius(t["disk"].shape, cx, cy, -60.0, 0.5)
    ring_turned = (turned > 6) & (turned < 6.3)
    assert np.std(image[ring]) / np.mean(image[ring]) < 0.02 < np.std(image[ring_turned]) / np.mean(image[ring_turned])

    fig = gm.plot_fit(run["folder"], "g0")
    ax = _axes(fig)["profile"]
    labels = [line.get_label() for line in ax.get_lines()]
    assert {"model", "bulge", "disk"} <= set(labels)
    assert "elliptical annuli of disk: q=0.50, PA=30.0" in ax.get_title()  # the bulge has no PA or q


def test_plot_from_the_csv_table_alone(run, tmp_path):
    # a run copied without results.fits: the CSV (empty message cells, True/False text) is enough
    import shutil

    folder = tmp_path / "results"
    folder.mkdir()
    shutil.copy(run["folder"] / "results.csv", folder)
    fig = gm.plot_fit(folder, "g1", blocks=run["blocks"])
    axes = _axes(fig)
    _assert_float32_residual(axes["residual"].images[0].get_array(), read_image_block(run["blocks"] / "g1.fits"))
    text = axes["values"].texts[0].get_text()
    assert "disk_axis_r 0.5000 ± 0.0040" in text and "converged True" in text
    assert "message: a parameter ended" in text
    with pytest.raises(FileNotFoundError, match="pass blocks=FOLDER"):
        gm.plot_fit(folder, "g0")  # no run.json and no image_blocks beside it


def test_importing_galmoss_does_not_import_matplotlib():
    import subprocess
    import sys

    code = "import sys, galmoss; print('matplotlib' in sys.modules, callable(galmoss.plot_fit))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "True"], out.stderr[-2000:]


def test_format_value_rounds_to_the_error():
    assert format_value(17.03124, 0.01234) == "17.031 ± 0.012"
    assert format_value(1234.4, 56.0) == "1234 ± 56"
    assert format_value(0.0, 0.0) == "0 (fixed)"
    assert format_value(float("nan"), 0.1) == "nan"


def test_plot_fit_from_a_fitting_and_the_cli(tmp_path, capsys):
    rng = np.random.default_rng(0)
    truth = gm.lp.Sersic(cen_x=gm.p([12.5, 13.0]), cen_y=gm.p([12.5, 12.0]), pa=gm.p([20.0, -40.0]),
                         axis_r=gm.p([0.6, 0.8]), eff_r=gm.p([3.0, 4.0]), mag=gm.p([17.0, 17.5], M0=22.5),
                         ser_n=gm.p([1.0, 2.0]))
    yy, xx = np.mgrid[-4:5, -4:5]
    psf = np.exp(-(xx**2 + yy**2) / (2 * 1.2**2))  # with a PSF the fit takes the fast FFT path
    psf /= psf.sum()
    clean = gm.render(truth, (24, 24), psf=psf).numpy()
    images = clean + rng.normal(0, 0.05, clean.shape)
    ds = gm.Dataset.from_arrays(images, sigmas=np.full(clean.shape, 0.05), psfs=psf, galaxy_index=["a", "b"],
                                img_block_path=tmp_path / "blocks", result_path=tmp_path / "res")
    ds.define_profiles(sersic=gm.lp.Sersic(cen_x=gm.p(12.5), cen_y=gm.p(12.5), pa=gm.p(0.0, angle=True),
                                           axis_r=gm.p(0.7), eff_r=gm.p(3.5), mag=gm.p(17.2, M0=22.5),
                                           ser_n=gm.p(1.5, log=True)))
    fitting = gm.Fitting(ds, batch_size=2, iteration=60, device="cpu", progress=False, restarts=False)
    fitting.fit()
    fig = gm.plot_fit(fitting, "b")
    axes = _axes(fig)
    block = read_image_block(fitting.dataset.img_block_path / fitting_block_name(fitting, "b"))
    np.testing.assert_allclose(np.asarray(axes["model"].images[0].get_array()), block["MODEL"])
    assert "component:sersic" in axes
    # each value carries the unit of its column: pixels, degrees, magnitudes
    text = axes["values"].texts[0].get_text()
    for col, unit in (("sersic_cen_x", "pix"), ("sersic_pa", "deg"), ("sersic_mag", "mag")):
        assert re.search(rf"{col} +\S+( ± \S+)? {unit}\n", text), col
    assert re.search(r"sersic_ser_n +[-\d.]+\n", text)  # dimensionless: no unit

    out = tmp_path / "b.png"
    assert main(["plot", str(tmp_path / "res"), "--galaxy", "b", "--out", str(out), "--blocks", str(tmp_path / "blocks")]) == 0
    from matplotlib.image import imread

    picture = imread(out)
    assert picture.shape[0] > 300 and picture.shape[1] > 600 and picture[..., :3].std() > 0.05
    capsys.readouterr()
    assert main(["plot", str(tmp_path / "res"), "--galaxy", "zz", "--blocks", str(tmp_path / "blocks")]) == 2
    assert "galmoss plot: galaxy 'zz' is not in" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def fitting_block_name(fitting, name):
    table = fitting.results
    row = table[list(table["galaxy_index"]).index(name)]
    return str(row["image_block"]) if "image_block" in table.colnames else f"{name}.fits"


# ------------------------------------------------------------------- report
@pytest.fixture(scope="module")
def report(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    assert main(["report", str(run["folder"]), "--out", str(out)]) == 0
    return out


def _images(page):
    return re.findall(r'<img class="(\w+)" alt="([^"]*)" src="data:image/png;base64,([^"]+)"', page)


def test_report_has_flag_counts_distributions_errors_gallery_and_run_info(run, report):
    page = report.read_text(encoding="utf-8")
    assert "5 galaxies · 4 converged (80.0 %)" in page
    for name, count in (("fine (no flag)", 2), ("no_convergence (1)", 1), ("near_bound (2)", 1), ("read_error (128)", 1)):
        assert f"<td>{name}</td><td class='num'>{count}</td>" in page
    assert "fit_s" in page and "12.5" in page and "batch_size" in page  # run.json settings and timing
    imgs = _images(page)
    kinds = [k for k, _, _ in imgs]
    assert kinds.count("figure") == 2  # histograms, errors against values
    from matplotlib.image import imread

    for _, alt, data in imgs:
        picture = imread(io.BytesIO(base64.b64decode(data)), format="png")
        assert picture.shape[0] > 100 and picture[..., :3].std() > 0.02, alt
    # the gallery: worst reduced chi2 first (g3 = 4.0), the flagged ones, the bound
    titles = re.findall(r"<h3>([^<]+)</h3>", page)
    assert titles[-5:] == ["highest reduced chi2", "flag: no_convergence", "flag: near_bound", "flag: read_error",
                           "at a bound: disk_axis_r"]
    gallery = page.split("<h2>Worst fits</h2>")[1]
    cards = re.findall(r"<b>(\w+)</b>", gallery)
    assert cards == ["g3", "g2", "g1", "g0", "g2", "g1", "g4", "g1"]
    assert "no image block" in gallery and "g4.fits" in gallery  # a missing block is said, not fatal
    assert kinds.count("panel") == len(cards) - 1  # every card but g4's has its picture


def test_gallery_selection_criteria(run):
    selection = dict(report_mod.gallery_selection(run["table"], per_criterion=2, max_gallery=40))
    assert list(selection["highest reduced chi2"]) == [3, 2]
    assert list(selection["flag: near_bound"]) == [1]
    assert list(selection["at a bound: disk_axis_r"]) == [1]
    assert list(selection["flag: read_error"]) == [4]
    limited = report_mod.gallery_selection(run["table"], per_criterion=6, max_gallery=2)
    assert len({int(r) for _, rows in limited for r in rows}) == 2
    # other likelihoods report a deviance in place of chi2
    table = run["table"].copy()
    table.rename_columns(["chi2", "reduced_chi2"], ["deviance", "reduced_deviance"])
    assert list(dict(report_mod.gallery_selection(table, per_criterion=2))["highest reduced deviance"]) == [3, 2]


def test_report_of_1e5_rows_counts_correctly(tmp_path):
    rng = np.random.default_rng(7)
    n = 100_000
    flag = np.where(rng.random(n) < 0.1, int(Flag.no_convergence), 0) | np.where(rng.random(n) < 0.05, int(Flag.near_bound), 0)
    table = Table({
        "galaxy_index": np.char.add("g", np.arange(n).astype(str)),
        "sersic_mag": rng.normal(18, 1, n), "sersic_mag_err": np.exp(rng.normal(-4, 0.5, n)),
        "sersic_eff_r": np.exp(rng.normal(1.5, 0.4, n)), "sersic_eff_r_err": np.exp(rng.normal(-3, 0.5, n)),
        "reduced_chi2": rng.chisquare(1000, n) / 1000, "converged": (flag & 1) == 0, "flag": flag,
        "message": np.where(flag & 2, "a parameter ended within 0.1% of its bound: sersic_eff_r", ""),
    })
    table.write(tmp_path / "results.fits")
    t0 = time.perf_counter()
    path = gm.write_report(tmp_path)
    elapsed = time.perf_counter() - t0
    print(f"report of {n} rows (no image blocks) in {elapsed:.2f} s")
    page = path.read_text(encoding="utf-8")
    count = int(np.count_nonzero(flag & int(Flag.near_bound)))
    assert f"<td>near_bound (2)</td><td class='num'>{count}</td>" in page
    assert f"<td>fine (no flag)</td><td class='num'>{int(np.count_nonzero(flag == 0))}</td>" in page
    worst = np.argsort(-table["reduced_chi2"])[:6]
    gallery = page.split("<h2>Worst fits</h2>")[1]
    assert re.findall(r"<b>(\w+)</b>", gallery)[:6] == [f"g{i}" for i in worst]
    assert gallery.count("class='card'") <= 40


# ----------------------------------------------------------------- chromium
CHROMIUM = "/usr/bin/chromium"

# Appended to a copy of the page: once loaded, a banner at the top says how
# many images decoded (naturalWidth > 0), in pure green when all did and pure
# red otherwise, so one screenshot shows both the page and the check.
_CHECK = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var d = document.createElement('div'); d.id = 'imgcheck';
  d.style.cssText = 'position:fixed;top:0;left:0;width:100%;height:40px;z-index:9;background:' +
    (ok === imgs.length && ok === EXPECTED ? 'rgb(0,255,0)' : 'rgb(255,0,0)');
  d.textContent = 'loaded ' + ok + ' of ' + imgs.length; document.body.appendChild(d);
});
</script></body>"""


def _chromium(*args, tmp_path):
    import subprocess

    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'chrome-profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not __import__("os").path.exists(CHROMIUM), reason=f"{CHROMIUM} is absent (apt-get install chromium)")
def test_report_opens_in_headless_chromium(report, tmp_path):
    page = report.read_text(encoding="utf-8")
    n_img = page.count("<img ")
    assert n_img == 2 + 7  # two figures and the seven gallery cards that have a block
    checked = tmp_path / "checked.html"
    checked.write_text(page.replace("</body>", _CHECK.replace("EXPECTED", str(n_img))), encoding="utf-8")
    shot = tmp_path / "shot.png"
    run = _chromium(f"--screenshot={shot}", "--window-size=1200,4000", "--hide-scrollbars", "--virtual-time-budget=10000",
                    checked.as_uri(), tmp_path=tmp_path)
    assert shot.exists(), run.stderr[-2000:]
    from matplotlib import colormaps
    from matplotlib.image import imread

    rgb = (imread(shot)[..., :3] * 255).round().astype(np.int32)
    assert rgb.shape[:2] == (4000, 1200)
    banner = rgb[5:35, 600:1200].reshape(-1, 3)  # right of the banner's text
    assert np.mean(np.all(banner == [0, 255, 0], axis=-1)) > 0.9, f"not all {n_img} images loaded (red banner)"
    assert np.mean(np.any(rgb[40:] < 235, axis=-1)) > 0.05  # not a blank page
    # the distinct colours and their pixel counts (packed into one integer: np.unique over rows is slow)
    codes, counts = np.unique((rgb[40:, :, 0] << 16) | (rgb[40:, :, 1] << 8) | rgb[40:, :, 2], return_counts=True)
    colours = np.stack([codes >> 16, (codes >> 8) & 255, codes & 255], axis=-1)

    def pixels_near(targets, tol):
        d = np.min(np.linalg.norm(colours[:, None, :] - np.asarray(targets)[None, :, :], axis=-1), axis=1)
        return int(counts[d <= tol].sum())

    # the histograms' bars: tab:blue at alpha 0.75 over white
    assert pixels_near([[87, 153, 199]], 6) > 2000
    # the gallery's images: magma (data, model, components), away from its near-black and near-white ends
    magma = (colormaps["magma"](np.linspace(0.15, 0.9, 64))[:, :3] * 255).round()
    assert pixels_near(magma, 4) > 5000
    # and the residuals' red-blue map, away from its white middle
    rdbu = (colormaps["RdBu_r"](np.r_[np.linspace(0.0, 0.35, 24), np.linspace(0.65, 1.0, 24)])[:, :3] * 255).round()
    assert pixels_near(rdbu, 4) > 1000


# ------------------------------------------------- residual histogram, units
def test_residual_histogram_counts_are_numpys_of_the_blocks_residual_over_sigma(run):
    from galmoss.plot.panels import HISTOGRAM_EDGES

    axes = _axes(gm.plot_fit(run["folder"], "g0"))
    block = read_image_block(run["blocks"] / "g0.fits")
    used = block["MASK"] != 0
    pull = (block["DATA"].astype(np.float64) - block["MODEL"]) / block["SIGMA"]
    expected, _ = np.histogram(pull[used], bins=HISTOGRAM_EDGES)
    counts = [patch.get_height() for patch in axes["histogram"].patches]
    np.testing.assert_array_equal(counts, expected)
    # the reference is the unit normal scaled to the pixel count: its peak is n * bin / sqrt(2 pi)
    curve = [line for line in axes["histogram"].get_lines() if line.get_label() == "unit normal"][0]
    width = HISTOGRAM_EDGES[1] - HISTOGRAM_EDGES[0]
    assert curve.get_ydata().max() == pytest.approx(used.sum() * width / np.sqrt(2 * np.pi), rel=1e-9)
    # the values carry their units: the plain table's are unknown, the fitter's run gives them (below)
    text = axes["values"].texts[0].get_text()
    assert "bulge_mag" in text and "17.031 ± 0.012" in text
    # without sigma the histogram says so instead of guessing sigma
    axes = _axes(gm.plot_fit(run["folder"], "g1"))
    assert not axes["histogram"].patches and "no sigma" in axes["histogram"].texts[0].get_text()


def test_the_report_gallery_is_one_wide_card_a_row(run, report):
    page = report.read_text()
    card = re.search(r"\.card\{([^}]*)\}", page).group(1)
    assert "width:100%" in card and "max-width:980px" in card
    # each gallery picture is drawn at least 12 inches wide at the report's 80 dpi: shown at its own size
    from matplotlib.image import imread

    uri = [b for cls, _, b in _images(page) if cls == "panel"][0]
    picture = imread(io.BytesIO(base64.b64decode(uri)), format="png")
    assert picture.shape[1] >= 12 * 80


# ------------------------------------------------------ galmoss galfit output
@pytest.fixture(scope="module")
def galfit_run(tmp_path_factory):
    """``galmoss galfit`` on two GalSim Sersics; g1 is an H) section of a larger frame."""
    from .helpers.galfit_mocks import (SKY_SIGMA, galsim_profile, observe, perturbed_start, sersic_block,
                                       sersic_feedme, sersic_truth, write_image, write_psf)

    root = tmp_path_factory.mktemp("galfitplot")
    rng = np.random.default_rng(4)
    write_psf(root)
    shape, big = (40, 40), (60, 70)
    t0, t1 = sersic_truth(rng, 20.5, 20.5), sersic_truth(rng, 45.5, 30.5)
    write_image(root / "g0.fits", observe(galsim_profile(t0, shape), shape, rng))
    write_image(root / "g1.fits", observe(galsim_profile(t1, big), big, rng))
    write_image(root / "sigma.fits", np.full(big, SKY_SIGMA))
    feedmes = []
    for name, t, region in (("g0", t0, "1 40 1 40"), ("g1", t1, "26 65 11 50")):
        path = root / f"{name}.feedme"
        path.write_text(sersic_feedme(name, image=f"{name}.fits", block=f"blocks/{name}.fits", sigma="sigma.fits",
                                      region=region, comps=sersic_block(1, **perturbed_start(t, rng))))
        feedmes.append(str(path))
    assert main(["galfit", *feedmes, "--output", str(root / "run"), "--device", "cpu"]) == 0
    return root


def test_plot_reads_galmoss_galfits_blocks_and_table(galfit_run, tmp_path):
    from galmoss.plot.panels import HISTOGRAM_EDGES

    out = tmp_path / "g1.png"
    assert main(["plot", str(galfit_run / "run"), "--galaxy", "g1", "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
    axes = _axes(gm.plot_fit(galfit_run / "run", "g1"))
    block = read_image_block(galfit_run / "blocks" / "g1.fits")  # GALFIT's layout: INPUT, MODEL, RESIDUAL
    np.testing.assert_array_equal(axes["data"].images[0].get_array(), block["INPUT"])
    # sigma is the feedme's C) image, cut to the H) section: the pull of every pixel is in the histogram
    from astropy.io import fits

    sigma = fits.getdata(galfit_run / "sigma.fits")[10:50, 25:65].astype(np.float64)
    pull = (block["INPUT"].astype(np.float64) - block["MODEL"]) / sigma
    expected, _ = np.histogram(pull, bins=HISTOGRAM_EDGES)
    np.testing.assert_array_equal([p.get_height() for p in axes["histogram"].patches], expected)
    assert axes["residual"].get_title() == "(data - model) / sigma"
    text = axes["values"].texts[0].get_text()
    assert re.search(r"1_MAG +\d+\.\d+ ± \d\.\d+ mag", text) and re.search(r"1_XC +[\d.]+ ± [\d.]+ pix", text)
    assert "reduced chi2" in text
    # the annuli follow the fitted ellipse moved from the full frame onto the H) section
    table = Table.read(galfit_run / "run" / "results.fits")
    row = table[1]
    assert f"q={row['1_AR']:.2f}, PA={row['1_PA']:.1f}" in axes["profile"].get_title()
    prof = axes["profile"].get_lines()
    model_line = [line for line in prof if line.get_label() == "model"][0]
    # the innermost annulus is the brightest: the centre is on the galaxy, 25 and 10 pixels off the frame's
    assert np.argmax(model_line.get_ydata()) == 0


def test_report_of_a_galfit_run_has_a_picture_per_galaxy(galfit_run, tmp_path):
    out = tmp_path / "report.html"
    assert main(["report", str(galfit_run / "run"), "--out", str(out)]) == 0
    page = out.read_text()
    cards = re.findall(r"<b>(\w+)</b>", page.split("Worst fits", 1)[1])
    assert set(cards) == {"g0", "g1"}
    assert "no image block" not in page
    assert sum(cls == "panel" for cls, _, _ in _images(page)) == len(set(cards))
    assert sum(cls == "figure" for cls, _, _ in _images(page)) == 2  # the parameters' histograms, errors vs values
