"""``galmoss galfit`` end to end on GalSim mocks written as GALFIT feedmes.

Truths: the injected GalSim parameters (recovered within 5 sigma of the
reported errors), the same fit through the Python API (gm.read_galfit ->
gm.Fitting), the start offsets that hard constraints must keep, and GALFIT's
documented output layout. Runtime about 40 s on 2 cores.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.table import Table

import galmoss as gm
from galmoss.cli import main
from galmoss.galfit import galfit_sigma, parse_feedme

from .helpers.galsim_mocks import draw, moffat_psf
from .helpers.galfit_mocks import (
    SKY_SIGMA, ZP, expdisk_block, galsim, galsim_profile, observe, perturbed_start, sersic_block, sersic_feedme,
    sersic_truth, sky_block, write_image, write_psf,
)

SHAPE = (48, 48)
GOOD = (0, 1, 2, 6)  # the feedmes that can be fitted (3, 4, 5 cannot)
_VALUE = re.compile(r"^-?\d+\.\d{4}(e[-+]\d+)? \+/- \d+\.\d{4}(e[-+]\d+)?$")


def _single_sersic_run(tmp_path, rng):
    """Three good feedmes (plain, masked star, H) section of a bigger image) and three bad ones."""
    write_psf(tmp_path)
    truths, files = [], []
    sig = tmp_path / "sigma.fits"
    write_image(sig, np.full(SHAPE, SKY_SIGMA))
    # g0: plain cutout with a sigma image
    t = sersic_truth(rng, 24.5, 24.5)
    write_image(tmp_path / "g0.fits", observe(galsim_profile(t, SHAPE), SHAPE, rng))
    truths.append(t)
    # g1: a bright star that the FITS mask removes (non-zero = bad, GALFIT's rule)
    t = sersic_truth(rng, 24.5, 24.5)
    img = observe(galsim_profile(t, SHAPE), SHAPE, rng)
    yy, xx = np.mgrid[1 : SHAPE[0] + 1, 1 : SHAPE[1] + 1]
    star = (xx - 40) ** 2 + (yy - 9) ** 2 < 16
    img[star] += 5.0
    write_image(tmp_path / "g1.fits", img)
    write_image(tmp_path / "g1_mask.fits", star.astype(np.int16))
    truths.append(t)
    # g2: the galaxy sits in a 120 x 100 frame; H) fits a 48 x 48 section of it
    big = (100, 120)
    t = sersic_truth(rng, 70.5, 40.5)
    write_image(tmp_path / "field.fits", observe(galsim_profile(t, big), big, rng))
    write_image(tmp_path / "field_sigma.fits", np.full(big, SKY_SIGMA))
    truths.append(t)
    specs = [
        dict(image="g0.fits", sigma="sigma.fits"),
        dict(image="g1.fits", sigma="sigma.fits", mask="g1_mask.fits"),
        dict(image="field.fits", sigma="field_sigma.fits", region="47 94 17 64"),
    ]
    for i, (spec, truth) in enumerate(zip(specs, truths)):
        path = tmp_path / f"g{i}.feedme"
        path.write_text(sersic_feedme(f"g{i}", block=f"blocks/g{i}.fits", comps=sersic_block(1, **perturbed_start(truth, rng)), **spec))
        files.append(path)
    start = perturbed_start(truths[0], rng)
    bad = [
        dict(image="missing.fits", sigma="sigma.fits"),  # A) names no file
        dict(image="g0.fits", sigma="sigma.fits", region="30 80 1 40"),  # H) leaves the 48 x 48 image
        dict(image="g0.fits", sigma="sigma.fits", psf="none", sampling=2),  # E) 2 without a PSF
    ]
    for j, spec in enumerate(bad, start=3):
        path = tmp_path / f"g{j}.feedme"
        path.write_text(sersic_feedme(f"g{j}", block=f"blocks/g{j}.fits", comps=sersic_block(1, **start), **spec))
        files.append(path)
    # g6: the PSF is sampled 2x finer than the data (E) 2), as HST users have it
    fine = tmp_path / "fine"
    fine.mkdir()
    write_psf(fine, size=79, fwhm=2.5, beta=3.0, oversample=2)
    t = sersic_truth(rng, 24.5, 24.5)
    write_image(tmp_path / "g6.fits", draw(galsim_profile(t, SHAPE), SHAPE, moffat_psf(3.0, 2.5)) + rng.normal(0, SKY_SIGMA, SHAPE))
    truths.append(t)
    path = tmp_path / "g6.feedme"
    path.write_text(sersic_feedme("g6", image="g6.fits", block="blocks/g6.fits", sigma="sigma.fits", psf="fine/psf.fits",
                                  sampling=2, comps=sersic_block(1, **perturbed_start(t, rng))))
    files.append(path)
    (tmp_path / "list.txt").write_text("\n".join(p.name for p in files) + "\n")
    return truths, files


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("galfit_single")
    rng = np.random.default_rng(11)
    truths, files = _single_sersic_run(tmp_path, rng)
    rc = main(["galfit", f"@{tmp_path / 'list.txt'}", "--output", str(tmp_path / "run"), "--device", "cpu", "--batch-size", "8"])
    return tmp_path, truths, files, rc


def _header_number(text: str) -> tuple[float, float]:
    value, error = text.replace("*", "").split("+/-")
    return float(value), float(error)


def test_blocks_have_galfits_layout_and_keys(single_run):
    tmp_path, truths, files, rc = single_run
    assert rc == 1  # three feedmes could not be fitted, the others were
    for i in GOOD:
        with fits.open(tmp_path / "blocks" / f"g{i}.fits") as hdul:
            assert len(hdul) == 4 and hdul[0].data is None
            data, model, resid = (hdul[k].data.astype(np.float64) for k in (1, 2, 3))
            assert data.shape == SHAPE
            np.testing.assert_allclose(resid, data - model, atol=1e-5)
            h = hdul[2].header
            assert h["COMP_1"] == "sersic" and h["MAGZPT"] == ZP
            for key in ("1_XC", "1_YC", "1_MAG", "1_RE", "1_N", "1_AR", "1_PA"):
                assert _VALUE.match(h[key]), (key, h[key])
            assert "1_C0" not in h  # GALFIT writes C0 only when the feedme has it
            masked = int(np.count_nonzero(fits.getdata(tmp_path / "g1_mask.fits"))) if i == 1 else 0
            assert h["NFREE"] == 7 and h["NFIX"] == 0 and h["NDOF"] == SHAPE[0] * SHAPE[1] - masked - 7
            assert h["CHI2NU"] == pytest.approx(h["CHISQ"] / h["NDOF"], rel=1e-9)
            assert 0.8 < h["CHI2NU"] < 1.2
            assert h["INITFILE"] == str(files[i]) and h["LOGFILE"] == f"g{i}.galfit.01"  # GALFIT names its restart
            for key in ("DATAIN", "SIGMA", "PSF", "MASK", "CONSTRNT", "FITSECT", "CHISQ"):
                assert key in h
    with fits.open(tmp_path / "blocks" / "g2.fits") as hdul:
        assert hdul[2].header["FITSECT"] == "[47:94,17:64]"
    with fits.open(tmp_path / "blocks" / "g1.fits") as hdul:
        assert hdul[2].header["MASK"].endswith("g1_mask.fits")
    with fits.open(tmp_path / "blocks" / "g6.fits") as hdul:
        assert hdul[2].header["PSF"].endswith("fine/psf.fits") and hdul[2].header["FLAGS"] == ""


def test_truth_is_recovered_in_the_full_frame(single_run):
    tmp_path, truths, files, rc = single_run
    keys = {"1_XC": "x", "1_YC": "y", "1_MAG": "mag", "1_RE": "re", "1_N": "n", "1_AR": "q", "1_PA": "pa"}
    for i, truth in zip(GOOD, truths):
        h = fits.getheader(tmp_path / "blocks" / f"g{i}.fits", 2)
        for key, name in keys.items():
            value, error = _header_number(h[key])
            # 5 sigma, plus a floor for the float32 fit and the GalSim/galmoss renderer difference
            assert abs(value - truth[name]) < 5 * error + 2e-3 * max(1.0, abs(truth[name])), (i, key, value, truth[name], error)


def test_same_fit_as_the_python_api(single_run):
    tmp_path, truths, files, rc = single_run
    dataset, profiles = gm.read_galfit(files[2])  # the H) section galaxy: the frame shift is the trap
    fitting = gm.Fitting(dataset=dataset, batch_size=1, iteration=200, device="cpu", progress=False)
    fitting.fit()
    api = fitting.uncertainty("covar_mat")
    run = Table.read(tmp_path / "run" / "results.fits")
    row = run[2]
    assert row["feedme"] == str(files[2])
    # cutout frame -> full frame: x + xmin - 1, y + ymin - 1
    assert row["1_XC"] == pytest.approx(api["sersic_1_cen_x"][0] + 46, abs=0.05 * api["sersic_1_cen_x_err"][0])
    assert row["1_YC"] == pytest.approx(api["sersic_1_cen_y"][0] + 16, abs=0.05 * api["sersic_1_cen_y_err"][0])
    for col, slot in (("1_MAG", "mag"), ("1_RE", "eff_r"), ("1_N", "ser_n"), ("1_AR", "axis_r"), ("1_PA", "pa")):
        assert row[col] == pytest.approx(api[f"sersic_1_{slot}"][0], abs=0.05 * api[f"sersic_1_{slot}_err"][0]), col
        assert row[col + "_err"] == pytest.approx(api[f"sersic_1_{slot}_err"][0], rel=0.02), col
    # and the restart file written from the API's results is the run's
    out = gm.write_galfit(tmp_path / "api.galfit.01", files[2], api)
    again = parse_feedme(out)
    assert again.components[0].params["1"].values == pytest.approx([row["1_XC"], row["1_YC"]], abs=1e-3)


def test_restart_files_fit_log_and_results_table(single_run):
    tmp_path, truths, files, rc = single_run
    for i in GOOD:
        restart = tmp_path / "blocks" / f"g{i}.galfit.01"
        feedme = parse_feedme(restart)
        original = parse_feedme(files[i])
        assert feedme.output.name == original.output.name and feedme.region == original.region
        h = fits.getheader(tmp_path / "blocks" / f"g{i}.fits", 2)
        comp = feedme.components[0]
        assert comp.params["1"].values == pytest.approx([_header_number(h["1_XC"])[0], _header_number(h["1_YC"])[0]], abs=1e-4)
        assert comp.value("4") == pytest.approx(_header_number(h["1_RE"])[0], abs=1e-4)
        assert comp.params["3"].fit == [True]
    log = (tmp_path / "run" / "fit.log").read_text()
    assert log.count("Init. par. file") == 7
    assert "Chi^2/nu" in log
    table = Table.read(tmp_path / "run" / "results.fits")
    assert len(table) == 7 and list(table["feedme"]) == [str(f) for f in files]
    flags = [gm.flags.decode(int(f)) for f in table["flag"]]
    for j in (3, 4, 5):
        assert "read_error" in flags[j]
    assert "missing.fits" in table["message"][3] and "does not exist" in table["message"][3]
    assert "outside" in table["message"][4] and "48 x 48" in table["message"][4]
    assert "E) 2 needs a D) PSF" in table["message"][5]
    assert table["flag"][6] == 0 and table["group"][6] != table["group"][0]  # E) 2 is its own batch
    assert not (tmp_path / "blocks" / "g3.fits").exists()


def test_bulge_disk_with_offset_constraints_and_components(tmp_path):
    """1_2 x/y offset keep the start's offsets; P) 3 adds the components to the block."""
    rng = np.random.default_rng(5)
    write_psf(tmp_path)
    flux = lambda m: 10 ** (-0.4 * (m - ZP))  # noqa: E731
    cx, cy = 24.3, 24.8
    bulge = galsim.Sersic(n=4.0, half_light_radius=1.8 * np.sqrt(0.8), flux=flux(18.8)).shear(q=0.8, beta=110 * galsim.degrees)
    disk = galsim.Exponential(scale_radius=5.0 * np.sqrt(0.5), flux=flux(18.0)).shear(q=0.5, beta=120 * galsim.degrees)
    prof = (bulge + disk).shift(cx - 24.5, cy - 24.5)
    write_image(tmp_path / "bd.fits", observe(prof, SHAPE, rng, sky=0.3))
    write_image(tmp_path / "bd_sigma.fits", np.full(SHAPE, SKY_SIGMA))
    (tmp_path / "bd.constraints").write_text("1_2  x  offset\n1_2  y  offset\n1  n  1 to 6\n")
    comps = (sersic_block(1, cx + 0.4, cy - 0.3, 19.0, 2.2, 3.0, 0.75, 25.0)
             + expdisk_block(2, cx + 0.4, cy - 0.3, 18.2, 4.5, 0.55, 25.0) + sky_block(3, 0.25))
    (tmp_path / "bd.feedme").write_text(sersic_feedme("bd", image="bd.fits", block="bd_block.fits", sigma="bd_sigma.fits",
                                                      constraints="bd.constraints", comps=comps, mode=3))
    assert main(["galfit", str(tmp_path / "bd.feedme"), "--output", str(tmp_path), "--device", "cpu"]) == 0
    with fits.open(tmp_path / "bd_block.fits") as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "INPUT", "MODEL", "RESIDUAL", "SERSIC_1", "EXPDISK_2", "SKY_3"]
        parts = sum(hdul[k].data.astype(np.float64) for k in (4, 5, 6))
        np.testing.assert_allclose(parts, hdul[2].data, atol=1e-5)
        h = hdul[2].header
    xb, yb = _header_number(h["1_XC"])[0], _header_number(h["1_YC"])[0]
    # the disk's centre is set by the constraint: GALFIT's braces, no error of its own
    assert h["2_XC"].startswith("{") and h["2_XC"].endswith("}") and "+/-" not in h["2_XC"]
    xd, yd = float(h["2_XC"].strip("{}")), float(h["2_YC"].strip("{}"))
    assert xd == pytest.approx(xb, abs=1e-4) and yd == pytest.approx(yb, abs=1e-4)  # the start's offset: zero
    # fit.log: the coupled centre in braces on the value and the error line (both lines hold as many numbers)
    entry = (tmp_path / "fit.log").read_text()
    disk = [ln for ln in entry.splitlines() if ln.startswith(" expdisk")][0]
    below = entry.splitlines()[entry.splitlines().index(disk) + 1]
    assert disk.count("{") == 2 and below.count("{") == 2
    assert h["NFREE"] == 12 and h["NFIX"] == 4  # two coupled centres and two fixed gradients
    for key, truth in (("1_XC", cx), ("1_YC", cy), ("1_MAG", 18.8), ("2_MAG", 18.0), ("2_RS", 5.0), ("2_AR", 0.5), ("3_SKY", 0.3)):
        value, error = _header_number(h[key])
        assert abs(value - truth) < 5 * error + 2e-3, (key, value, truth, error)
    assert 0.8 < h["CHI2NU"] < 1.2


def test_model_only_and_given_values_are_evaluated(tmp_path):
    """P) 1 writes the model alone, P) 2 the block of the given values: nothing is fitted."""
    rng = np.random.default_rng(2)
    psf = write_psf(tmp_path)
    t = {k: round(v, 3) for k, v in sersic_truth(rng, 24.5, 24.5).items()}  # as the feedme writes them
    write_image(tmp_path / "g.fits", observe(galsim_profile(t, SHAPE), SHAPE, rng))
    for mode in (1, 2):
        (tmp_path / f"p{mode}.feedme").write_text(
            sersic_feedme("p", image="g.fits", block=f"p{mode}.fits", comps=sersic_block(1, **t), mode=mode))
    assert main(["galfit", str(tmp_path / "p1.feedme"), str(tmp_path / "p2.feedme"), "--output", str(tmp_path)]) == 0
    sersic = gm.lp.Sersic(cen_x=gm.p(t["x"]), cen_y=gm.p(t["y"]), pa=gm.p(t["pa"]), axis_r=gm.p(t["q"]),
                          eff_r=gm.p(t["re"]), mag=gm.p(t["mag"], M0=ZP), ser_n=gm.p(t["n"]))
    expected = gm.render(sersic, SHAPE, psf=psf.astype(np.float32), dtype=torch.float64).numpy()[0]
    with fits.open(tmp_path / "p1.fits") as hdul:
        assert len(hdul) == 1
        np.testing.assert_allclose(hdul[0].data, expected, atol=1e-6)
    with fits.open(tmp_path / "p2.fits") as hdul:
        assert len(hdul) == 4
        np.testing.assert_allclose(hdul[2].data, expected, atol=1e-6)
        assert hdul[2].header["1_RE"] == f"[{t['re']:.4f}]"  # given, not fitted
        assert hdul[2].header["SIGMA"] == "none"
    assert not list(tmp_path.glob("p*.galfit.*"))  # no restart file for an evaluation


def test_two_feedmes_with_one_block_are_both_refused(tmp_path, capsys):
    for name in ("a", "b"):
        (tmp_path / f"{name}.feedme").write_text(
            sersic_feedme(name, image="g.fits", block="same.fits", comps=sersic_block(1, 10, 10, 20, 3, 1, 0.5, 0)))
    assert main(["galfit", str(tmp_path / "a.feedme"), str(tmp_path / "b.feedme"), "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is also the image block of" in err and "a.feedme" in err and "b.feedme" in err
    table = Table.read(tmp_path / "results.fits")
    assert len(table) == 2 and all("read_error" in gm.flags.decode(int(f)) for f in table["flag"])
    assert not (tmp_path / "same.fits").exists()


def test_galfit_sigma_matches_poisson_noise():
    """GALFIT's sigma from GAIN, NCOMBINE and RDNOISE against the scatter of simulated exposures."""
    rng = np.random.default_rng(0)
    gain, ncombine, rdnoise, sky = 2.0, 3.0, 4.0, 50.0
    yy, xx = np.mgrid[0:64, 0:64]
    source = 400.0 * np.exp(-((xx - 32) ** 2 + (yy - 32) ** 2) / (2 * 3.0**2))  # compact: the image is mostly sky
    mean_e = (sky + source) * gain * ncombine  # electrons in the combined image
    def exposure():
        electrons = rng.poisson(mean_e) + rng.normal(0.0, rdnoise * np.sqrt(ncombine), mean_e.shape)
        return electrons / (gain * ncombine)
    header = fits.Header({"GAIN": gain, "NCOMBINE": ncombine, "RDNOISE": rdnoise})
    predicted = galfit_sigma(exposure(), header)
    empirical = np.std(np.stack([exposure() for _ in range(400)]), axis=0)
    bright = source > 100
    faint = source < 1
    # 400 draws: the empirical std is good to ~3.5 % (1 sigma); one exposure's sigma to the per-pixel noise
    assert np.median(predicted[bright] / empirical[bright]) == pytest.approx(1.0, abs=0.03)
    assert np.median(predicted[faint] / empirical[faint]) == pytest.approx(1.0, abs=0.03)
