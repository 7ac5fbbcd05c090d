"""GalfitM's multi-band input files through ``galmoss galfit``: read, fitted jointly, GalfitM's outputs written.

Truths: GalSim mocks of one Sersic galaxy in three bands (the injected per-band
magnitudes, recovered within 4 sigma of the reported errors), GalfitM's
documented grammar (its EXAMPLE.GALFITM.INPUT) for the parser, and for the
writer its own numbers read back (FINAL_BAND against the results table, the
FINAL_CHEB series evaluated at each band's wavelength against FINAL_BAND, the
restart file parsed back).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from galmoss.cli import main
from galmoss.flags import Flag
from galmoss.galfit.feedme import FeedmeError, FeedmeUnsupportedError
from galmoss.galfit.galfitm import chebyshev_table, is_galfitm, parse_galfitm

from .helpers.multiband_mocks import M0, sersic_bands

BANDS = {"g": dict(scale=0.2, size=33, fwhm=0.7, mag=21.6, sigma=2.5),
         "r": dict(scale=0.2, size=33, fwhm=0.8, mag=21.0385, sigma=2.5),  # on g's and i's line in wavelength
         "i": dict(scale=0.2, size=33, fwhm=0.9, mag=20.5, sigma=3.5)}
WAVE = {"g": 477.0, "r": 623.0, "i": 763.0}
ZPS = {"g": 25.0, "r": 26.0, "i": 27.5}  # a zero point per band (J)): images in each band's own units


def _control(images="g.fits,r.fits,i.fits", extra="") -> str:
    return f"""
A) {images}
A1) g,r,i
A2) 477,623,763
B) block.fits
C) sg.fits,sr.fits,si.fits
D) pg.fits,pr.fits,pi.fits
E) 1
F) none
G) none
H) 1 33 1 33
I) 50 50
J) 25,26,27.5
K) 0.2 0.2
O) regular
P) 0
U) 0     # standard parametric fitting
V) 0     # Levenberg-Marquardt
W) default
{extra}
"""


SERSIC = """
 0) sersic
 1) 17.4,17.4,17.4  1 band
 2) 16.7  1
 3) 21.3,20.7,20.2  3 band
 4) 7.0,7.0,7.0  1 band
 5) 1.8  1
 9) 0.7  1
10) 25  1
 Z) 0
 0) sky
 1) 0,0,0  0,0,0 band
 2) 0.0  0
 3) 0.0  0
 Z) 0
"""


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("galfitm")
    images, sigmas, psfs = sersic_bands(BANDS, n=1.5, q=0.6, pa=30.0, re_arcsec=1.2, seed=3)
    for b in BANDS:
        factor = 10 ** (0.4 * (ZPS[b] - M0))  # counts in the band's own zero point
        fits.PrimaryHDU((images[b][0] * factor).astype(np.float64)).writeto(folder / f"{b}.fits")
        fits.PrimaryHDU((sigmas[b][0] * factor).astype(np.float64)).writeto(folder / f"s{b}.fits")
        fits.PrimaryHDU(psfs[b]).writeto(folder / f"p{b}.fits")
    feedme = folder / "gal.galfitm"
    feedme.write_text(_control() + SERSIC)
    # the same galaxy with magnitudes linear in wavelength (GalfitM's toggle 2: two Chebyshev coefficients)
    # (and a mask in one band only: 'none' entries)
    mask = np.zeros((33, 33), dtype=np.int16)
    mask[2:4, 2:7] = 1  # ten pixels in a corner
    fits.PrimaryHDU(mask).writeto(folder / "mr.fits")
    linear = folder / "linear.galfitm"
    linear.write_text(_control().replace("B) block.fits", "B) linear.fits").replace("F) none", "F) none,mr.fits,none")
                      + SERSIC.replace("3) 21.3,20.7,20.2  3 band", "3) 21.0  2"))
    # a file galmoss refuses (the non-parametric component) is named, and the others are fitted
    bad = folder / "bad.galfitm"
    bad.write_text(_control().replace("B) block.fits", "B) bad.fits").replace("U) 0 ", "U) 1 ") + SERSIC)
    code = main(["galfit", str(feedme), str(linear), str(bad), "--output", str(folder / "run")])
    return folder, code


def test_per_band_magnitudes_recovered(fitted):
    folder, code = fitted
    assert code == 1  # one of the three files was refused
    table = Table.read(folder / "run" / "results.fits")
    assert table["flag"][2] & int(Flag.read_error) and "U)" in table["message"][2] and "non-parametric" in table["message"][2]
    row = table[0]
    assert row["flag"] == 0, row["message"]
    for b, spec in BANDS.items():
        mag, err = row[f"1_MAG_{b}"], row[f"1_MAG_{b}_err"]
        assert 0 < err < 0.05
        assert abs(mag - spec["mag"]) < 4 * err, (b, mag, spec["mag"], err)
    # shared parameters: one value in every band; the truth within 4 sigma
    assert row["1_RE_g"] == row["1_RE_i"]
    assert abs(row["1_RE_g"] - 6.0) < 4 * row["1_RE_g_err"]  # 1.2 arcsec at 0.2 arcsec per pixel
    assert abs(row["1_N_g"] - 1.5) < 4 * row["1_N_g_err"]
    assert abs(row["chi2nu"] - 1.0) < 0.1


def test_magnitudes_linear_in_wavelength(fitted):
    folder, _ = fitted
    row = Table.read(folder / "run" / "results.fits")[1]
    assert row["flag"] == 0, row["message"]
    for b, spec in BANDS.items():
        assert abs(row[f"1_MAG_{b}"] - spec["mag"]) < 4 * row[f"1_MAG_{b}_err"]
    with fits.open(folder / "linear.fits") as hdul:
        cheb = hdul["FINAL_CHEB"].data
        assert hdul["BAND_INFO"].data["NMASK"].tolist() == [0, 10, 0]
    # two coefficients fitted, the third zero: a straight line (GalfitM's series, on the value)
    assert cheb["COMP1_MAG_FIT"].tolist() == [1, 1, 0]
    assert abs(cheb["COMP1_MAG"][2]) < 1e-6 and abs(cheb["COMP1_MAG"][1]) > 10 * cheb["COMP1_MAG_ERR"][1]


def test_block_holds_galfitm_outputs(fitted):
    folder, _ = fitted
    row = Table.read(folder / "run" / "results.fits")[0]
    with fits.open(folder / "block.fits") as hdul:
        names = [h.name for h in hdul]
        for b in BANDS:
            assert {f"INPUT_{b.upper()}", f"MODEL_{b.upper()}", f"RESIDUAL_{b.upper()}"} <= set(names)
            head = hdul[f"MODEL_{b}"].header
            value, error = (float(t) for t in head["1_MAG"].split("+/-"))
            assert value == pytest.approx(row[f"1_MAG_{b}"], abs=1e-4)
            assert head["MAGZPT"] == ZPS[b] and head["BAND"] == b
            assert head["2_SKY"] == "[0.0000]"  # fixed: GALFIT's brackets
            # GALFIT's comment lines stand where GALFIT puts them: before INITFILE and before COMP_1
            cards = [(c.keyword, str(c.value)) for c in head.cards]
            keys = [k for k, _ in cards]
            assert "GALFIT Input Parameters" in cards[keys.index("INITFILE") - 1][1]
            assert "GALFIT Final Parameters" in cards[keys.index("COMP_1") - 1][1]
        final = hdul["FINAL_BAND"].data
        cheb = hdul["FINAL_CHEB"].data
        info = hdul["FIT_INFO"].data[0]
        band_info = hdul["BAND_INFO"].data
        # residual = input - model in each band's own units
        res = hdul["RESIDUAL_r"].data
        assert np.allclose(res, hdul["INPUT_r"].data - hdul["MODEL_r"].data, atol=1e-4)
        # each band's model drawn in its own units (zero point): the residuals over the sigma images give the chi2
        chi2 = sum(np.sum((hdul[f"RESIDUAL_{b}"].data / fits.getdata(folder / f"s{b}.fits")) ** 2) for b in BANDS)
        assert chi2 == pytest.approx(row["chi2"], rel=1e-3)
    assert list(band_info["BAND"]) == ["g", "r", "i"]
    assert np.allclose(final["COMP1_MAG"], [row[f"1_MAG_{b}"] for b in BANDS])
    assert np.allclose(final["COMP1_MAG_ERR"], [row[f"1_MAG_{b}_err"] for b in BANDS])
    # GalfitM's series: numpy's Chebyshev on the domain FIT_INFO gives returns every band's value
    domain = (info["REFWLBAND"] + info["LOWDWLBAND"], info["REFWLBAND"] + info["HIGHDWLBAND"])
    w = np.array(list(WAVE.values()))
    for key in ("COMP1_MAG", "COMP1_RE", "COMP1_XC"):
        series = np.polynomial.Chebyshev(cheb[key], domain=domain)
        assert np.allclose(series(w), final[key], rtol=0, atol=1e-8)
    # degrees of freedom: magnitudes free (3 coefficients), the size one (a constant), the sky none
    assert cheb["COMP1_MAG_FIT"].sum() == 3 and cheb["COMP1_RE_FIT"].sum() == 1 and cheb["COMP2_SKY_FIT"].sum() == 0
    # a shared value's series is its constant, with its error
    assert cheb["COMP1_RE"][0] == pytest.approx(row["1_RE_g"]) and abs(cheb["COMP1_RE"][1]) < 1e-9
    assert cheb["COMP1_RE_ERR"][0] == pytest.approx(row["1_RE_g_err"], rel=1e-6)
    assert info["CHISQ"] == pytest.approx(row["chi2"]) and info["NDOF"] == row["ndof"]
    assert info["NFREE"] == 1 + 1 + 3 + 1 + 1 + 1 + 1  # x, y, the three magnitudes, re, n, q, pa
    # the restart file is a GalfitM file with the fitted values, read back as such
    text = Path(info["LOGFILE"].strip()).read_text().splitlines()
    at = next(i for i, ln in enumerate(text) if ln.startswith("A) "))
    assert text[at + 1].startswith("A1) g,r,i") and "#" in text[at + 1]  # as GALAPAGOS-2 reads restart files
    restart = parse_galfitm(info["LOGFILE"].strip())
    mags = restart.components[0].bparams["3"].values
    assert np.allclose(mags, final["COMP1_MAG"], atol=1e-4)
    assert restart.components[0].bparams["3"].degree == 3 and restart.components[0].bparams["4"].degree == 1


def test_chebyshev_table_against_numpy():
    w = [477.0, 623.0, 763.0, 900.0]
    values = np.array([20.0, 19.2, 18.9, 18.7])
    coef, err = chebyshev_table(values, np.diag([0.01, 0.02, 0.03, 0.04]) ** 2, w)
    series = np.polynomial.Chebyshev(coef, domain=(min(w), max(w)))
    assert np.allclose(series(np.array(w)), values, atol=1e-12)
    # errors through the same linear map, against a Monte Carlo of the values
    rng = np.random.default_rng(0)
    draws = values + rng.normal(size=(20000, 4)) * [0.01, 0.02, 0.03, 0.04]
    x = 2 * (np.array(w) - min(w)) / (max(w) - min(w)) - 1
    fit = np.polynomial.chebyshev.chebfit(x, draws.T, 3).T  # one exact series per draw
    assert np.allclose(err, fit.std(axis=0), rtol=0.03)


def _write(tmp_path, text):
    path = tmp_path / "x.feedme"
    path.write_text(text)
    return path


def test_parse_degrees_and_cheb_form(tmp_path):
    path = _write(tmp_path, _control() + """
 0) sersic
 1) 17 1
 2) 17 1
 3) 21.0,20.5,20.0  3 band
 4) 5.0,0.5  2 cheb      # r_e 5 at the middle wavelength, linear
 5) 2.0,2.0,2.0  0 band
 9) 0.7  1,0,0
10) 25  2 band          # one start: on any line
 Z) 0
""")
    assert is_galfitm(path)
    fm = parse_galfitm(path)
    comp = fm.components[0]
    x = 2 * (np.array([477, 623, 763]) - 477) / (763 - 477) - 1
    assert np.allclose(comp.bparams["4"].values, 5.0 + 0.5 * x)
    assert [comp.bparams[k].bands_mode(3) for k in ("3", "4", "5", "9", "10")] == ["free", 1, None, "shared", 1]
    assert fm.zeropoints == (25.0, 26.0, 27.5) and fm.bands == ("g", "r", "i")


@pytest.mark.parametrize("lines, words", [
    ("U) 1\n 0) sersic\n 1) 17 1\n 2) 17 1\n 3) 21 3\n 4) 5 1\n 5) 2 1\n", "non-parametric"),
    ("V) 1\n 0) sersic\n 1) 17 1\n 2) 17 1\n 3) 21 3\n 4) 5 1\n 5) 2 1\n", "MultiNest"),
    (" 0) sersic\n 1) 17 1\n 2) 17 1\n 3) 21 3\n 4) 5.0,5.5,6.0 1 band\n 5) 2 1\n", "offset"),
    (" 0) sersic\n 1) 17 1\n 2) 17 1\n 3) 21 3\n 4) 5.0,5.5,7.0 2 band\n 5) 2 1\n", "line"),
    (" 0) sersic\n 1) 17 1\n 2) 17 1\n 3) 21 3\n 4) 5 1\n 5) 2 1\n F1) 0.1 20 1 1\n", "F1)"),
    (" 0) sersic\n 1) 17 1\n 2) 17 1\n 3) 21 3\n 4) 5 1,0,1\n 5) 2 1\n", "above a fixed one"),
])
def test_unsupported_refused_naming_the_line(tmp_path, lines, words):
    path = _write(tmp_path, _control() + lines)  # a later U) or V) line replaces the first
    with pytest.raises(FeedmeUnsupportedError, match="line") as info:
        parse_galfitm(path)
    assert words in str(info.value)


def test_wrong_band_counts_refused(tmp_path):
    path = _write(tmp_path, _control().replace("J) 25,26,27.5", "J) 25,26") + SERSIC)
    with pytest.raises(FeedmeError, match="J\\) zero points needs 3"):
        parse_galfitm(path)


def test_galapagos_style_file(tmp_path):
    """What GALAPAGOS-2 writes: a diffusion kernel named but absent, the sky fixed per band with a toggle list,
    and a constraint file of absolute ranges and ranges about a start every band shares."""
    text = _control().replace("D) pg.fits,pr.fits,pi.fits", "D) pg.fits,pr.fits,pi.fits kernel").replace(
        "G) none", "G) gala.constraints") + SERSIC
    (tmp_path / "gala.constraints").write_text("1 mag 0 to 40\n1 x -3 3\n1 y -2 in 2\n1 re factor 4\n"
                                               "1 n 0.2 to 8\n")
    path = _write(tmp_path, text)
    fm = parse_galfitm(path)
    assert "kernel" in fm.kernel_note and fm.components[1].bparams["1"].degree == 0
    from galmoss.galfit.galfitm import band_ranges, parse_galfitm_constraints

    ranges = band_ranges(fm, parse_galfitm_constraints(fm))
    assert ranges[(1, "3")] == (0, 40) and ranges[(1, "1x")] == (17.4 - 3, 17.4 + 3) and ranges[(1, "5")] == (0.2, 8)
    assert ranges[(1, "1y")] == (16.7 - 2, 16.7 + 2) and ranges[(1, "4")] == pytest.approx((7.0 / 4, 7.0 * 4))
    # what galmoss cannot apply to every band is refused, naming the line
    for line in ("1_2 x offset", "1 n_1 -10 to 10", "2 re_B -1 0.5", "1 x -2.0 ref 2.0"):
        (tmp_path / "gala.constraints").write_text(line + "\n")
        with pytest.raises(FeedmeUnsupportedError, match="line 1"):
            parse_galfitm_constraints(parse_galfitm(path))


def test_galfit_files_are_not_galfitm(tmp_path):
    path = _write(tmp_path, "A) gal.fits\nB) out.fits\nJ) 25\n 0) sersic\n 1) 10 10 1 1\n 3) 20 1\n 4) 3 1\n 5) 2 1\n")
    assert not is_galfitm(path)
