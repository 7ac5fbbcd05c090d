"""GALFIT input files as people write them: GALFIT's own restarts, files a run must survive, headers.

Truths: the numbers in the files (toggles, constraint offsets, paths), GALFIT's
documented header keys (EXPTIME, GAIN or ATODGAIN with 7 when missing,
NCOMBINE; the GALFIT advisory page) with hand-computed magnitudes and sigmas,
and the run's own contract (a row per file, exit codes 0 / 1 / 2).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

import galmoss as gm
from galmoss.cli import main
from galmoss.galfit import build_profiles, galfit_sigma, load_galaxy, parse_feedme

from .helpers.galfit_mocks import (
    ZP, expdisk_block, galsim, galsim_profile, observe, sersic_block, sersic_feedme, write_image, write_psf,
)

SHAPE = (40, 40)


def _truth():
    return dict(x=20.3, y=20.8, mag=18.5, re=4.0, n=1.5, q=0.7, pa=30.0)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A mock galaxy, its sigma image and a PSF, shared by the feedmes of this file."""
    tmp = tmp_path_factory.mktemp("galfit_inputs")
    rng = np.random.default_rng(3)
    write_psf(tmp)
    write_image(tmp / "g.fits", observe(galsim_profile(_truth(), SHAPE), SHAPE, rng))
    write_image(tmp / "sig.fits", np.full(SHAPE, 0.02))
    return tmp


# ------------------------------------------------------------------ toggle 2
def test_galfits_toggle_2_is_a_coupled_free_parameter(folder, tmp_path):
    """GALFIT writes toggle 2 for parameters its constraint file couples and reads such files back."""
    flux = 10 ** (-0.4 * (18.6 - ZP))
    bulge = galsim.Sersic(n=3.0, half_light_radius=1.5, flux=flux)
    disk = galsim.Exponential(scale_radius=4.0, flux=2 * flux).shear(q=0.6, beta=20 * galsim.degrees)
    rng = np.random.default_rng(8)
    write_psf(tmp_path)
    write_image(tmp_path / "bd.fits", observe((bulge + disk).shift(-0.2, 0.3), SHAPE, rng))
    write_image(tmp_path / "sig.fits", np.full(SHAPE, 0.02))
    (tmp_path / "c.cons").write_text("1_2 x offset\n1_2 y offset\n")
    comps = sersic_block(1, 20.6, 20.1, 18.8, 1.8, 3.0, 0.9, 10.0) + expdisk_block(2, 20.6, 20.1, 18.0, 3.5, 0.55, 25.0)
    comps = comps.replace(" 1) 20.600\t20.100\t1 1", " 1) 20.600\t20.100\t2 2")  # as GALFIT writes its restart
    feedme_text = sersic_feedme("bd", image="bd.fits", block="bd_out.fits", sigma="sig.fits", constraints="c.cons",
                                comps=comps)
    assert "2 2" in feedme_text
    (tmp_path / "bd.feedme").write_text(feedme_text)
    parsed = parse_feedme(tmp_path / "bd.feedme")
    assert parsed.components[1].params["1"].fit == [True, True]
    assert main(["galfit", str(tmp_path / "bd.feedme"), "--output", str(tmp_path), "--iteration", "30"]) == 0
    h = fits.getheader(tmp_path / "bd_out.fits", 2)
    value = {k: float(h[k].strip("[]*{}").split("+/-")[0]) for k in ("1_XC", "1_YC", "2_XC", "2_YC")}
    assert h["2_XC"] == "{" + f"{value['2_XC']:.4f}" + "}"  # GALFIT's braces: set by the constraint, no error
    assert value["2_XC"] - value["1_XC"] == pytest.approx(0.0, abs=1e-4)  # the start's offset, kept
    assert value["2_YC"] - value["1_YC"] == pytest.approx(0.0, abs=1e-4)
    restart = (tmp_path / "bd_out.galfit.01").read_text()
    lines = [ln for ln in restart.splitlines() if ln.strip().startswith("1)")]
    assert lines[0].split()[3:5] == ["1", "1"] and lines[1].split()[3:5] == ["2", "2"]
    again = parse_feedme(tmp_path / "bd_out.galfit.01")  # galmoss reads its own (and GALFIT's) restart back
    assert again.components[1].params["1"].values == pytest.approx([value["2_XC"], value["2_YC"]], abs=1e-4)


def test_toggle_2_without_a_constraint_file_is_free(tmp_path):
    (tmp_path / "a.feedme").write_text(sersic_feedme("a", image="g.fits", block="o.fits",
                                                     comps=sersic_block(1, 20, 20, 18, 4, 1.5, 0.7, 30, fit="2")))
    prof = build_profiles([parse_feedme(tmp_path / "a.feedme")])["sersic_1"]
    assert all(prm.fit for prm in prof.parameters().values() if prm is not prof.box)


# ---------------------------------------------------------- one bad file
def test_a_start_galfit_accepts_widens_the_range_of_its_batch_only(tmp_path):
    """Sersic n = 0.06 lies below galmoss's usual [0.1, 20]: its range becomes [0.03, 20] (half the start),
    and it is batched apart from a feedme with n = 1.5, which keeps [0.1, 20]."""
    from galmoss.galfit.run import group_key

    feedmes = []
    for name, n in (("low", 0.06), ("usual", 1.5)):
        (tmp_path / f"{name}.feedme").write_text(sersic_feedme(name, image="g.fits", block=f"{name}.fits",
                                                               comps=sersic_block(1, **dict(_truth(), n=n))))
        feedmes.append(parse_feedme(tmp_path / f"{name}.feedme"))
    assert group_key(feedmes[0], []) != group_key(feedmes[1], [])
    low = build_profiles([feedmes[0]])["sersic_1"].ser_n
    assert low.value_range == pytest.approx((0.03, 20.0)) and 0.03 < float(low.initial[0]) <= 0.06
    assert build_profiles([feedmes[1]])["sersic_1"].ser_n.value_range is None  # the slot's own [0.1, 20]


def test_one_bad_file_never_stops_the_others(folder, capsys):
    t = _truth()
    start = dict(t, x=t["x"] + 0.4, re=t["re"] * 1.2)
    (folder / "range.cons").write_text("1 re 4.8 to 10\n")  # the start sits exactly on the lower bound
    specs = {
        "small_n": dict(comps=sersic_block(1, **dict(start, n=0.06))),     # GALFIT accepts n = 0.06
        "on_bound": dict(comps=sersic_block(1, **start), constraints="range.cons"),
        "bad_line": dict(comps=sersic_block(1, **start).replace(" Z) 0", "R0) power\n Z) 0")),
        "no_comp": dict(comps=""),
        "own_input": dict(comps=sersic_block(1, **start), block="g.fits"),  # B) is its own A)
        "other_input": dict(comps=sersic_block(1, **start), block="sig.fits", sigma="none"),  # B) is the others' C)
        "bad_block": dict(comps=sersic_block(1, **start), block="g.fits/inside.fits"),  # a folder that is a file
    }
    files = []
    for name, spec in specs.items():
        spec.setdefault("block", f"{name}_out.fits")
        spec.setdefault("sigma", "sig.fits")
        path = folder / f"{name}.feedme"
        path.write_text(sersic_feedme(name, image="g.fits", **spec))
        files.append(path)
    before = (folder / "g.fits").read_bytes()
    rc = main(["galfit", *map(str, files), "--output", str(folder / "run"), "--iteration", "40"])
    assert rc == 1  # some fitted, some not
    err = capsys.readouterr().err
    table = Table.read(folder / "run" / "results.fits", mask_invalid=False)
    assert list(table["feedme"]) == [str(f) for f in files]  # a row for every file, in order
    row = {name: table[i] for i, name in enumerate(specs)}
    for name in ("small_n", "on_bound"):
        flags = gm.flags.decode(int(row[name]["flag"]))
        assert not {"read_error", "fit_error"} & set(flags), (name, row[name]["message"])
        assert math.isfinite(row[name]["1_N"]) and (folder / f"{name}_out.fits").is_file()
    assert 4.8 <= row["on_bound"]["1_RE"] <= 10
    refused = {"bad_line": "coordinate rotation", "no_comp": "has no component", "own_input": "its own A) file",
               "other_input": "the C) file of"}
    for name, words in refused.items():
        assert "read_error" in gm.flags.decode(int(row[name]["flag"])), name
        assert str(files[list(specs).index(name)]) in row[name]["message"] and words in row[name]["message"], name
        assert math.isnan(row[name]["chi2"]) and f"{name}.feedme" in err
    assert "g.fits" in row["own_input"]["message"] and "sig.fits" in row["other_input"]["message"]
    # the one whose B) cannot be written was fitted: its numbers are kept, the block is flagged
    assert "block_not_written" in gm.flags.decode(int(row["bad_block"]["flag"]))
    assert math.isfinite(row["bad_block"]["1_RE"]) and "not written" in row["bad_block"]["message"]
    assert (folder / "g.fits").read_bytes() == before  # nothing written over an input
    log = (folder / "run" / "fit.log").read_text()
    assert log.count("Init. par. file") == len(files)
    # a script that reads the model line after a file's 'Init. par. file' gets that file's numbers, or nan
    lines = log.splitlines()
    for name in ("own_input", "small_n"):
        at = next(i for i, ln in enumerate(lines) if ln.startswith("Init. par. file") and f"{name}.feedme" in ln)
        model = next(ln for ln in lines[at : at + 10] if ln.lstrip().startswith("sersic"))
        assert ("nan" in model) == (name == "own_input") and (_FLOAT.findall(model) == []) == (name == "own_input")


# ------------------------------------------------------ the image's header
def test_exptime_makes_magnitudes_of_counts_per_second(tmp_path):
    """GALFIT divides the data by EXPTIME before the zero point: the same magnitude is EXPTIME times
    the counts (P) 2 draws the given values), i.e. the same pixels with EXPTIME 100 are 5 mag fainter."""
    write_psf(tmp_path)
    write_image(tmp_path / "sig.fits", np.ones(SHAPE))
    t = _truth()
    sums = {}
    for exptime in (None, 100.0):
        name = "t1" if exptime is None else "t100"
        write_image(tmp_path / f"{name}.fits", np.zeros(SHAPE), header={} if exptime is None else {"EXPTIME": exptime})
        (tmp_path / f"{name}.feedme").write_text(sersic_feedme(name, image=f"{name}.fits", block=f"{name}_out.fits",
                                                               sigma="sig.fits", comps=sersic_block(1, **dict(t, re=2.0)),
                                                               mode=2))
        assert main(["galfit", str(tmp_path / f"{name}.feedme"), "--output", str(tmp_path)]) == 0
        sums[exptime] = float(fits.getdata(tmp_path / f"{name}_out.fits", 2).astype(np.float64).sum())
    expected = 10 ** (-0.4 * (t["mag"] - ZP))  # counts of an EXPTIME-1 image, all inside the 40 x 40 cutout
    assert sums[None] == pytest.approx(expected, rel=2e-3)
    assert sums[100.0] == pytest.approx(100.0 * expected, rel=2e-3)
    gal = load_galaxy(parse_feedme(tmp_path / "t100.feedme"), [])
    assert gal.zeropoint == pytest.approx(ZP + 5.0, abs=1e-12)


def _checkerboard_sky():
    """Sky 100 +/- 5 exactly (clipped mean 100, RMS 5) and four source pixels of 800."""
    yy, xx = np.mgrid[0:32, 0:32]
    image = 100.0 + 5.0 * np.where((xx + yy) % 2 == 0, 1.0, -1.0)
    image[15:17, 15:17] = 800.0
    return image


@pytest.mark.parametrize("header, gain, ncombine", [
    ({}, 7.0, 1.0),                                  # GALFIT's defaults: GAIN 7, NCOMBINE 1
    ({"ATODGAIN": 2.5}, 2.5, 1.0),                   # HST's key when GAIN is missing
    ({"GAIN": 3.0, "ATODGAIN": 2.5, "NCOMBINE": 4}, 3.0, 4.0),
    ({"GAIN": 2.0, "RDNOISE": 50.0}, 2.0, 1.0),       # RDNOISE: measured with the sky, not used
])
def test_sigma_from_the_header_as_galfit_reads_it(header, gain, ncombine):
    image = _checkerboard_sky()
    sigma = galfit_sigma(image, fits.Header(header))
    # hand-computed: sigma^2 = max(d - sky, 0) / (GAIN NCOMBINE) + sky_rms^2, sky 100, sky_rms 5
    assert sigma[16, 16] == pytest.approx(math.sqrt(700.0 / (gain * ncombine) + 25.0), rel=1e-9)
    assert sigma[0, 0] == pytest.approx(math.sqrt(5.0 / (gain * ncombine) + 25.0), rel=1e-9)  # sky pixel 105
    assert sigma[0, 1] == pytest.approx(5.0, rel=1e-9)  # sky pixel 95: no source counts


# -------------------------------------------------------- small leniencies
def test_small_things_galfit_accepts(folder, tmp_path):
    """A non-integer I), an H) starting at 0, a FITS mask named without .fits."""
    mask = np.zeros(SHAPE, dtype=np.int16)
    mask[2:5, 30:35] = 1
    fits.PrimaryHDU(mask).writeto(tmp_path / "badpix.pl")  # FITS content, another extension
    (tmp_path / "list.txt").write_text("3 3\n")  # an ASCII list stays ASCII
    text = sersic_feedme("s", image=str(folder / "g.fits"), block="s_out.fits", sigma=str(folder / "sig.fits"),
                         psf=str(folder / "psf.fits"), mask="badpix.pl", region="0 40 0 40",
                         comps=sersic_block(1, **_truth())).replace("I) 50 50", "I) 60.5 60.5")
    (tmp_path / "s.feedme").write_text(text)
    feedme = parse_feedme(tmp_path / "s.feedme")
    assert feedme.region == (1, 40, 1, 40) and feedme.conv_box == (60.5, 60.5)
    gal = load_galaxy(feedme, [])
    assert gal.image is not None and gal.image.shape == SHAPE
    np.testing.assert_array_equal(gal.weight == 0, mask != 0)
    (tmp_path / "a.feedme").write_text(text.replace("badpix.pl", "list.txt"))
    gal = load_galaxy(parse_feedme(tmp_path / "a.feedme"), [])
    assert np.count_nonzero(gal.weight == 0) == 1 and gal.weight[2, 2] == 0


def test_a_mask_over_the_galaxy_centre_is_bad_pixels(folder, tmp_path):
    """GALFIT's F): every non-zero pixel is left out, also where it covers the galaxy (a saturated core); galmoss
    never reads it as a segmentation map that keeps the label under the galaxy."""
    mask = np.zeros(SHAPE, dtype=np.int16)
    mask[19:22, 19:22] = 1  # the core
    mask[2:4, 30:33] = 1
    fits.PrimaryHDU(mask).writeto(tmp_path / "core.fits")
    (tmp_path / "c.feedme").write_text(sersic_feedme("c", image=str(folder / "g.fits"), block="c_out.fits",
                                                     sigma=str(folder / "sig.fits"), psf=str(folder / "psf.fits"),
                                                     mask="core.fits", comps=sersic_block(1, **_truth())))
    dataset, _ = gm.read_galfit(tmp_path / "c.feedme")
    gal = dataset.load(0)
    assert np.count_nonzero(np.asarray(gal.weight) == 0) == 15
    from galmoss.flags import Flag

    assert int(gal.flags) & int(Flag.target_masked)  # and the galaxy says its core was masked


# ------------------------------------------------------ GALFIT's convolution
def test_galfit_convolution_counts_the_pixel_twice(tmp_path):
    """pixel_response="galfit" is GalSim's (profile * pixel) * PSF image, the pixel counted twice; the
    default is profile * PSF image, a star's image holding the pixel once. Measured: each matches its
    GalSim drawing to 7e-4 of the peak and differs from the other by 2.4 % of it; a point source is
    the PSF image either way. ``galmoss galfit --galfit-convolution`` draws the same."""
    from .helpers.galsim_mocks import GSPARAMS, draw, galsim_sersic, moffat_psf, psf_image

    import torch

    moffat = moffat_psf(3.5, 3.0)
    psf = psf_image(moffat, 25)
    t = _truth()
    flux = 10 ** (-0.4 * (t["mag"] - ZP))
    prof = galsim_sersic(2.0, 3.0, t["q"], t["pa"], t["x"], t["y"], flux, SHAPE)
    once = draw(prof, SHAPE, moffat)
    twice = draw(galsim.Convolve(prof, galsim.Pixel(1.0), gsparams=GSPARAMS), SHAPE, moffat)
    peak = once.max()
    sersic = gm.lp.Sersic(cen_x=gm.p(t["x"]), cen_y=gm.p(t["y"]), pa=gm.p(t["pa"]), axis_r=gm.p(t["q"]),
                          eff_r=gm.p(3.0), mag=gm.p(t["mag"], M0=ZP), ser_n=gm.p(2.0))
    star = gm.lp.PointSource(cen_x=gm.p(t["x"]), cen_y=gm.p(t["y"]), mag=gm.p(t["mag"], M0=ZP))
    star_truth = draw(moffat.shift(t["x"] - 20.5, t["y"] - 20.5).withFlux(flux), SHAPE)
    images = {}
    for response in ("psf", "galfit"):
        settings = gm.RenderSettings(pixel_response=response)
        images[response] = gm.render(sersic, SHAPE, psf=psf, dtype=torch.float64, settings=settings).numpy()[0]
        point = gm.render(star, SHAPE, psf=psf, dtype=torch.float64, settings=settings).numpy()[0]
        assert np.abs(point - star_truth).max() < 2e-3 * star_truth.max()
    assert np.abs(images["psf"] - once).max() < 1.5e-3 * peak
    assert np.abs(images["galfit"] - twice).max() < 1.5e-3 * peak
    assert np.abs(images["psf"] - twice).max() > 1.5e-2 * peak
    assert np.abs(images["galfit"] - once).max() > 1.5e-2 * peak
    # the command line: P) 2 draws the feedme's values with GALFIT's convention
    fits.PrimaryHDU(psf.astype(np.float32)).writeto(tmp_path / "psf.fits")
    write_image(tmp_path / "g.fits", once)
    write_image(tmp_path / "sig.fits", np.full(SHAPE, 0.02))
    (tmp_path / "p.feedme").write_text(sersic_feedme("p", image="g.fits", block="p_out.fits", sigma="sig.fits", mode=2,
                                                     comps=sersic_block(1, **dict(t, re=3.0, n=2.0))))
    assert main(["galfit", str(tmp_path / "p.feedme"), "--output", str(tmp_path), "--galfit-convolution"]) == 0
    model = fits.getdata(tmp_path / "p_out.fits", 2).astype(np.float64)
    assert np.abs(model - twice).max() < 2e-3 * peak
    with pytest.raises(ValueError, match="pixel_response must be 'psf' or 'galfit'"):
        gm.RenderSettings(pixel_response="twice")


# ------------------------------------------------------------ the outputs
_FLOAT = re.compile(r"[-+]?\d+\.\d+(?:e[-+]?\d+)?")
_GALFIT_INPUT_KEYS = ["INITFILE", "DATAIN", "SIGMA", "PSF", "CONSTRNT", "MASK", "FITSECT", "CONVBOX", "MAGZPT"]


def _read_block_like_galfit_readers(path):
    """What the widely copied GALFIT block readers do: 4 HDUs, 'GALFIT' in a COMMENT of the model,
    COMP_k, the input keys, '[value]' fixed or 'value +/- error' (``*`` marks a problem)."""
    with fits.open(path) as hdul:
        assert len(hdul) == 4
        h = hdul[2].header
    assert any("GALFIT" in str(c) for c in h["COMMENT"]) and "COMP_1" in h
    keys = [k for k in h.keys() if k != "COMMENT"]
    inputs = keys[keys.index("INITFILE") : keys.index("MAGZPT") + 1]  # the header slice scripts take
    out = {"inputs": inputs, "chisq": h["CHISQ"], "ndof": h["NDOF"], "nfree": h["NFREE"], "chi2nu": h["CHI2NU"],
           "flags": h["FLAGS"].split(" ")}
    k = 1
    while f"COMP_{k}" in h:
        comp = {"type": h[f"COMP_{k}"]}
        for key in (key for key in keys if key.startswith(f"{k}_")):
            text = h[key].replace("*", "")
            if "[" in text:
                comp[key.split("_", 1)[1].lower()] = (float(text.strip("[]")), None)
            else:
                value, _, error = text.split()
                comp[key.split("_", 1)[1].lower()] = (float(value), float(error))
        out[k] = comp
        k += 1
    return out


def _read_fit_log(text):
    """A fit.log reader as scripts write them: model lines by component name, numbers by regex,
    the error line right below (the same count of numbers), Chi^2/nu."""
    lines = text.splitlines()
    comps = []
    for i, line in enumerate(lines):
        m = re.match(r"^\s*(sersic|expdisk|devauc|gaussian|moffat|king|ferrer|psf|sky)\s*:", line)
        if m:
            comps.append((m.group(1), [float(x) for x in _FLOAT.findall(line)],
                          [float(x) for x in _FLOAT.findall(lines[i + 1])], line, lines[i + 1]))
    chi2nu = float(re.search(r"Chi\^2/nu\s*=\s*([\d.]+)", text).group(1))
    return comps, chi2nu


def test_outputs_read_by_galfit_users_scripts(folder):
    """The model header and fit.log parse with the common readers' rules, and agree with each other."""
    t = _truth()
    comps = (sersic_block(1, **dict(t, x=t["x"] + 0.3, re=t["re"] * 1.1)).replace(" 9) 0.700 1", " 9) 0.700 0")
             + " 0) sky\n 1) 0.0100 1\n 2) 0.0 0\n 3) 0.0 0\n Z) 0\n")
    (folder / "out.feedme").write_text(sersic_feedme("out", image="g.fits", block="out_block.fits", sigma="sig.fits",
                                                     comps=comps))
    assert main(["galfit", str(folder / "out.feedme"), "--output", str(folder / "outrun"), "--iteration", "30"]) == 0
    block = _read_block_like_galfit_readers(folder / "out_block.fits")
    assert block["inputs"] == _GALFIT_INPUT_KEYS  # GALFIT's keys in GALFIT's order
    sersic, sky = block[1], block[2]
    assert sersic["type"] == "sersic" and sersic["ar"] == (0.7, None) and sersic["re"][1] > 0
    assert sky["type"] == "sky" and sky["xc"] == (20.5, None) and sky["yc"] == (20.5, None)  # the section's centre
    assert sky["dsdx"] == (0.0, None)
    log, chi2nu = _read_fit_log((folder / "outrun" / "fit.log").read_text())
    assert [c[0] for c in log] == ["sersic", "sky"]
    _, values, errors, line, below = log[0]
    assert re.match(r"^ sersic\s+: \(\s*[-\d.]+,\s*[-\d.]+\)", line)  # the ( x, y) grouping
    assert len(values) == len(errors) == 7  # x, y, mag, re, n, q, pa; q fixed: [0.70] on both lines
    assert "[0.70]" in line and "[0.70]" in below
    for got, key in zip(values, ("xc", "yc", "mag", "re", "n", "ar", "pa")):
        assert got == pytest.approx(sersic[key][0], abs=0.0051)
    for got, key in zip(errors[:5], ("xc", "yc", "mag", "re", "n")):
        assert got == pytest.approx(sersic[key][1], abs=0.0051)
    _, values, errors, line, below = log[1]
    assert re.match(r"^ sky\s+: \[\s*20\.50,\s*20\.50\]", line)  # the sky's [xc, yc]
    assert values[:3] == [20.5, 20.5, pytest.approx(sky["sky"][0], abs=0.0051)] and "[0.00e+00]" in below
    assert chi2nu == pytest.approx(block["chi2nu"], abs=5e-4)
    body = (folder / "outrun" / "fit.log").read_text()
    assert not re.search(r"^\s*galmoss:", body, re.M)  # galmoss's notes are '#' comments only
    # the card layout of a GALFIT-written model header (GALFIT 3, a Sersic and a sky): keys and comment lines in
    # GALFIT's order; galmoss adds one COMMENT naming the block, after OBJECT
    h = fits.getheader(folder / "out_block.fits", 2)
    cards = [c.keyword if c.keyword != "COMMENT" else f"COMMENT {c.value}" for c in h.cards][h.index("OBJECT"):]
    cards.remove("COMMENT GALFIT-compatible image block written by galmoss")
    rule = "COMMENT " + "-" * 72
    assert cards == [
        "OBJECT", "COMMENT ========== GALFIT Input Parameters ==========", *_GALFIT_INPUT_KEYS,
        "COMMENT ========== GALFIT Final Parameters ==========",
        "COMP_1", "1_XC", "1_YC", "1_MAG", "1_RE", "1_N", "1_AR", "1_PA", rule,
        "COMP_2", "2_XC", "2_YC", "2_SKY", "2_DSDX", "2_DSDY", rule,
        "FLAGS", rule, "CHISQ", "NDOF", "NFREE", "NFIX", "CHI2NU", "LOGFILE", "COMMENT " + "=" * 45, "COMMENT ",
    ]
    assert h["OBJECT"] == "model" and h["LOGFILE"] == "out_block.galfit.01"  # GALFIT's LOGFILE names its restart
    assert h.comments["1_MAG"] == "Integrated magnitude [mag]" and h.comments["2_DSDX"] == "x sky gradient [ADUs]"


def test_usage_errors_exit_2(tmp_path, capsys):
    assert main(["galfit", f"@{tmp_path / 'missing.txt'}", "--output", str(tmp_path)]) == 2
    assert "missing.txt' does not exist" in capsys.readouterr().err
    (tmp_path / "empty.txt").write_text("# nothing\n")
    assert main(["galfit", f"@{tmp_path / 'empty.txt'}", "--output", str(tmp_path)]) == 2


def test_galmoss_priors_ride_in_a_feedme_as_comments_galfit_skips(tmp_path):
    """'# galmoss prior <comp> <param> normal <mu> <sigma> [space [lo hi]]' puts a gm.prior.Normal on that free
    parameter; '# galmoss priors sourcextractor' switches the preset on; both are comments to GALFIT. A prior
    on a fixed parameter, on a component the file lacks, or written wrongly is refused naming the line."""
    from galmoss.galfit import FeedmeError
    from galmoss.model import Model

    from .helpers.galfit_mocks import sersic_block, sersic_feedme

    comps = sersic_block(1, 30.0, 31.0, 17.0, 4.0, 2.0, 0.7, 20.0)
    extra = ("# galmoss prior 1 re normal 1.2 0.3\n"
             "#galmoss prior 1 n normal -1.0 0.5 logit 0.3 8   # logit-normal over [0.3, 8]\n"
             "# galmoss priors sourcextractor\n")
    path = tmp_path / "g.feedme"
    path.write_text(sersic_feedme("g", image="g.fits", block="out.fits", comps=comps) + extra)
    feedme = parse_feedme(path)
    assert feedme.prior_preset == "sourcextractor" and [p.parameter for p in feedme.priors] == ["re", "n"]
    profiles = build_profiles([feedme])
    model = Model(profiles)
    re_prior = next(t.prior for t in model.priors if t.label.endswith("eff_r"))
    assert (float(re_prior.mu[0]), float(re_prior.sigma[0])) == (1.2, 0.3)
    n_prior = next(t.prior for t in model.priors if t.label.endswith("ser_n"))
    assert n_prior.space == "logit" and n_prior.bounds == (0.3, 8.0)
    n_param = next(t.parameter for t in model.priors if t.label.endswith("ser_n"))
    assert model.transforms[n_param].lower == pytest.approx(0.3)  # a logit prior's bounds are the fit's range
    bad = {
        "# galmoss prior 2 re normal 1 0.3\n": "names component 2",
        "# galmoss prior 1 re normal 1 -0.3\n": "sigma > 0",
        "# galmoss prior 1 re gauss 1 0.3\n": "normal <mu> <sigma>",
        "# galmoss priors emc\n": "takes one of",
    }
    for line, match in bad.items():
        path.write_text(sersic_feedme("g", image="g.fits", block="out.fits", comps=comps) + line)
        with pytest.raises(FeedmeError, match=match):
            parse_feedme(path)
    fixed = sersic_block(1, 30.0, 31.0, 17.0, 4.0, 2.0, 0.7, 20.0).replace(" 4) 4.000 1", " 4) 4.000 0")
    path.write_text(sersic_feedme("g", image="g.fits", block="out.fits", comps=fixed) + "# galmoss prior 1 re normal 1 0.3\n")
    with pytest.raises(FeedmeError, match="not a free parameter"):
        build_profiles([parse_feedme(path)])
