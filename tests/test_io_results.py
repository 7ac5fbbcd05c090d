"""Writing results: tables round-trip through FITS and CSV, image blocks, GALFIT cards."""

from __future__ import annotations

import csv
import logging
import math

import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.table import MaskedColumn, Table

import galmoss.io.results as results_module
from galmoss.errors import DataError, DataFileNotFoundError, OutputError
from galmoss.io import (
    galfit_header_cards,
    read_header,
    read_image_block,
    update_image_block_header,
    write_image_block,
    write_results,
)


def _table() -> Table:
    return Table(
        {
            "galaxy_index": np.array([0, 1, 2, 3], dtype=np.int64),
            "flag": np.array([0, 5, 2**40, 1024], dtype=np.int64),
            "converged": np.array([True, False, True, False]),
            "bulge_mag": np.array([17.68, np.nan, 1 / 3, -np.inf]),
            "bulge_eff_r": np.array([1e-300, 5.0, 123456789.123, 2.5e17]),
            "chi2_f32": np.array([0.1, 2.5, 3.0, 1e-7], dtype=np.float32),
            "message": np.array(["ok", 'has, comma and "quotes"', "", "max_iter reached"]),
        }
    )


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def test_table_round_trips_through_fits_and_csv(tmp_path):
    table = _table()
    fits_path, csv_path = write_results(table, tmp_path / "out")
    assert fits_path == tmp_path / "out" / "results.fits"
    assert csv_path == tmp_path / "out" / "results.csv"

    back = Table.read(fits_path, mask_invalid=False)  # astropy would mask "" and NaN on reading
    assert back.colnames == table.colnames
    assert back["converged"].dtype == bool
    assert back["flag"].dtype.kind == "i" and back["galaxy_index"].dtype.kind == "i"
    for name in table.colnames:
        if table[name].dtype.kind == "U":
            assert [str(v) for v in back[name]] == list(table[name])
        else:
            np.testing.assert_array_equal(np.asarray(back[name]), np.asarray(table[name]), strict=False)
            # byte order aside, nothing widened or narrowed
            assert back[name].dtype.newbyteorder("=") == table[name].dtype

    header, rows = _read_csv(csv_path)
    assert header == table.colnames
    assert len(rows) == len(table)
    cols = dict(zip(header, zip(*rows)))
    assert [int(v) for v in cols["galaxy_index"]] == [0, 1, 2, 3]
    assert [int(v) for v in cols["flag"]] == [0, 5, 2**40, 1024]
    assert list(cols["converged"]) == ["True", "False", "True", "False"]
    mags = [float(v) for v in cols["bulge_mag"]]
    assert mags[0] == 17.68 and math.isnan(mags[1]) and mags[2] == 1 / 3 and mags[3] == -math.inf
    assert [float(v) for v in cols["bulge_eff_r"]] == [1e-300, 5.0, 123456789.123, 2.5e17]
    # float32 values are written in their own shortest form and read back bit for bit.
    assert list(cols["chi2_f32"]) == ["0.1", "2.5", "3.0", "1e-07"]
    assert [np.float32(v) for v in cols["chi2_f32"]] == list(table["chi2_f32"])
    assert list(cols["message"]) == list(table["message"])
    assert csv_path.read_bytes().startswith(b"galaxy_index,flag,converged,")  # no comment lines, no BOM


def test_overwrite_and_no_leftover_temporary_files(tmp_path):
    first = _table()
    write_results(first, tmp_path)
    second = Table({"galaxy_index": [7], "converged": [True]})
    write_results(second, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "results.fits"]
    assert Table.read(tmp_path / "results.fits").colnames == ["galaxy_index", "converged"]
    assert _read_csv(tmp_path / "results.csv") == (["galaxy_index", "converged"], [["7", "True"]])


def test_a_failed_write_leaves_the_previous_file(tmp_path, monkeypatch):
    write_results(_table(), tmp_path)
    before = (tmp_path / "results.csv").read_bytes()

    class Boom:
        def writerow(self, row):
            pass

        def writerows(self, rows):
            raise RuntimeError("disk went away")

    monkeypatch.setattr(results_module.csv, "writer", lambda *a, **k: Boom())
    with pytest.raises(RuntimeError, match="disk went away"):
        write_results(Table({"a": [1]}), tmp_path)
    assert (tmp_path / "results.csv").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "results.fits"]


def test_masked_and_empty_tables(tmp_path):
    table = Table({"x": MaskedColumn([1.5, 2.5], mask=[False, True]), "n": [1, 2]})
    _, csv_path = write_results(table, tmp_path / "masked")
    assert _read_csv(csv_path)[1] == [["1.5", "1"], ["", "2"]]

    empty = Table({"galaxy_index": np.zeros(0, dtype=np.int64), "message": np.zeros(0, dtype="U1")})
    fits_path, csv_path = write_results(empty, tmp_path / "empty")
    assert len(Table.read(fits_path)) == 0
    assert _read_csv(csv_path) == (["galaxy_index", "message"], [])


def test_non_ascii_text_is_kept_in_csv_and_escaped_in_fits(tmp_path, caplog):
    table = Table({"message": ["chi² too large", "ok"]})
    with caplog.at_level(logging.WARNING, logger="galmoss"):
        fits_path, csv_path = write_results(table, tmp_path)
    assert "non-ASCII" in caplog.text and "'message'" in caplog.text
    assert _read_csv(csv_path)[1] == [["chi² too large"], ["ok"]]
    assert [str(v) for v in Table.read(fits_path)["message"]] == ["chi\\xb2 too large", "ok"]


def test_write_results_errors(tmp_path):
    blocker = tmp_path / "taken"
    blocker.write_text("a file, not a folder")
    with pytest.raises(OutputError, match="taken' exists and is a file, not a folder") as info:
        write_results(_table(), blocker)
    assert isinstance(info.value, OSError)

    vector = Table({"cov": np.zeros((3, 2, 2))})
    with pytest.raises(DataError, match="column 'cov' holds arrays of shape \\(2, 2\\).*split it"):
        write_results(vector, tmp_path / "v")
    assert not (tmp_path / "v").exists()  # checked before anything is written
    with pytest.raises(TypeError, match="astropy.table.Table"):
        write_results({"a": [1]}, tmp_path)


# ---------------------------------------------------------------- image blocks
def _images(shape=(6, 5)):
    rng = np.random.default_rng(3)
    data = rng.normal(100.0, 10.0, shape)
    bulge = rng.uniform(0.0, 50.0, shape)
    disk = rng.uniform(0.0, 50.0, shape)
    return data, bulge, disk


def test_image_block_layout_and_values(tmp_path):
    data, bulge, disk = _images()
    model = bulge + disk
    used = np.ones(data.shape, dtype=bool)
    used[0, :2] = False
    path = write_image_block(
        tmp_path / "blocks" / "42.fits",
        data=data,
        model=model,
        components={"bulge": bulge, "Disk": disk},
        header_cards=[("CHI2", 12.5, "chi^2"), ("NOTE", float("nan"), "not finite")],
        primary_header_cards=[("ORIGIN", "galmoss", "software")],
        mask=used,
    )
    assert path == tmp_path / "blocks" / "42.fits"

    with fits.open(path, memmap=False) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "DATA", "MODEL", "RESIDUAL", "BULGE", "DISK", "MASK"]
        assert hdul[0].data is None and hdul[0].header["ORIGIN"] == "galmoss"
        assert [h.header["BITPIX"] for h in hdul[1:6]] == [-32] * 5
        assert hdul["MASK"].header["BITPIX"] == 8
        assert hdul["MODEL"].header["CHI2"] == 12.5
        assert hdul["MODEL"].header["NOTE"] == "nan"
        assert "CHI2" not in hdul["DATA"].header

    block = read_image_block(path)
    assert list(block) == ["DATA", "MODEL", "RESIDUAL", "BULGE", "DISK", "MASK"]
    assert all(a.dtype.isnative for a in block.values())
    np.testing.assert_array_equal(block["DATA"], data.astype(np.float32))
    np.testing.assert_array_equal(block["MODEL"], model.astype(np.float32))
    np.testing.assert_array_equal(block["BULGE"], bulge.astype(np.float32))
    np.testing.assert_array_equal(block["DISK"], disk.astype(np.float32))
    assert block["RESIDUAL"].dtype == np.float32
    # RESIDUAL is data - model, rounded once to float32 ...
    np.testing.assert_array_equal(block["RESIDUAL"], (data - model).astype(np.float32))
    # ... hence within float32 precision of the difference of the stored images.
    eps = np.finfo(np.float32).eps * np.maximum(np.abs(data), np.abs(model))
    diff = block["DATA"].astype(np.float64) - block["MODEL"].astype(np.float64)
    assert np.all(np.abs(block["RESIDUAL"] - diff) <= 2 * eps)
    assert block["MASK"].dtype == np.uint8
    np.testing.assert_array_equal(block["MASK"], used.astype(np.uint8))


def test_image_block_accepts_tensors_and_overwrites(tmp_path):
    data, bulge, _ = _images((4, 4))
    path = tmp_path / "0.fits"
    write_image_block(path, data=data, model=bulge, components={"bulge": bulge})
    write_image_block(
        path, data=torch.from_numpy(data), model=torch.zeros(4, 4, dtype=torch.float64), components={}
    )
    block = read_image_block(path)
    assert list(block) == ["DATA", "MODEL", "RESIDUAL"]
    np.testing.assert_array_equal(block["RESIDUAL"], data.astype(np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.fits"]


def test_image_block_errors(tmp_path):
    data, bulge, _ = _images((4, 4))
    path = tmp_path / "5.fits"
    with pytest.raises(DataError, match="component 'bulge' for image block '.*5.fits' has shape \\(3, 4\\)"):
        write_image_block(path, data=data, model=data, components={"bulge": bulge[:3]})
    with pytest.raises(DataError, match="extension MODEL, which galmoss uses itself; rename"):
        write_image_block(path, data=data, model=data, components={"model": bulge})
    with pytest.raises(DataError, match="extension BULGE, which another component already has"):
        write_image_block(path, data=data, model=data, components={"bulge": bulge, "Bulge": bulge})
    with pytest.raises(DataError, match="'NAXIS1' .* structural FITS keyword"):
        write_image_block(path, data=data, model=data, components={}, header_cards=[("NAXIS1", 3, "")])
    with pytest.raises(DataError, match="mask for image block .* has shape \\(2, 2\\)"):
        write_image_block(path, data=data, model=data, components={}, mask=np.ones((2, 2)))
    with pytest.raises(DataError, match="header card 'NOTE' .* cannot be written.*use ASCII"):
        write_image_block(path, data=data, model=data, components={}, header_cards=[("NOTE", "χ²", "")])
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind either
    (tmp_path / "6.fits").mkdir()
    with pytest.raises(OutputError, match="cannot replace '.*6.fits'.*not a folder"):
        write_image_block(tmp_path / "6.fits", data=data, model=data, components={})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["6.fits"]
    with pytest.raises(DataFileNotFoundError, match="image block file not found"):
        read_image_block(tmp_path / "missing.fits")


def test_long_keys_become_hierarch_cards_without_warnings(tmp_path):
    data = np.zeros((2, 2))
    path = write_image_block(
        tmp_path / "1.fits", data=data, model=data, components={}, header_cards=[("reduced_chi2", 1.25, "")]
    )
    assert read_header(path, "MODEL")["REDUCED_CHI2"] == 1.25


# ------------------------------------------------------------- GALFIT cards
def test_galfit_cards_for_a_bulge_disk_sky_model():
    components = {"bulge": "Sersic", "disk": "ExpDisk", "sky": "Sky"}
    values = {
        ("bulge", "cen_x"): 64.5,
        ("bulge", "cen_y"): 63.25,
        ("bulge", "mag"): 17.68,
        ("bulge", "eff_r"): 4.3,
        ("bulge", "ser_n"): 4.0,
        ("bulge", "axis_r"): 0.7,
        ("bulge", "pa"): -30.0,
        ("disk", "mag"): 16.0,
        ("disk", "scale_l"): 12.0,
        ("sky", "sky_bg"): 0.00002,
        ("sky", "grad_x"): 0.0,
        ("sky", "grad_y"): 1234567.0,
    }
    errors = {("bulge", "mag"): 0.01, ("bulge", "eff_r"): float("nan"), ("disk", "scale_l"): 0.25}
    extra = {"CHI2": 1520.5, "NDOF": 1500, "CHI2NU": float("nan"), "FLAGS": np.int64(2), "NITER": 17}
    cards = galfit_header_cards(components, values, errors, extra)
    assert [(k, v) for k, v, _ in cards] == [
        ("CHI2", 1520.5),
        ("NDOF", 1500),
        ("CHI2NU", "nan"),
        ("FLAGS", 2),
        ("NITER", 17),
        ("COMP_1", "sersic"),
        ("1_XC", "64.5000"),
        ("1_YC", "63.2500"),
        ("1_MAG", "17.6800 +/- 0.0100"),
        ("1_RE", "4.3000 +/- nan"),
        ("1_N", "4.0000"),
        ("1_AR", "0.7000"),
        ("1_PA", "-30.0000"),
        ("COMP_2", "expdisk"),
        ("2_MAG", "16.0000"),
        ("2_RS", "12.0000 +/- 0.2500"),
        ("COMP_3", "sky"),
        ("3_SKY", "2.0000e-05"),
        ("3_DSDX", "0.0000"),
        ("3_DSDY", "1.2346e+06"),
    ]
    assert cards[5][2] == "component 'bulge'"
    assert cards[8][2] == "bulge mag"
    assert isinstance(cards[3][1], int)  # numpy scalars are unwrapped for FITS


@pytest.mark.parametrize(
    ("profile", "param", "key"),
    [
        ("Moffat", "fwhm", "1_FWHM"),
        ("Moffat", "con", "1_C"),
        ("Gaussian", "fwhm", "1_FWHM"),
        ("King", "core_r", "1_RC"),
        ("King", "trunc_r", "1_RT"),
        ("King", "pow_n", "1_ALPHA"),
        ("Ferrer", "trunc_r", "1_RT"),
        ("Ferrer", "trunc_a", "1_ALPHA"),
        ("Ferrer", "trunc_b", "1_BETA"),
        ("Sersic", "box", "1_C0"),
        ("Custom", "slope", "1_SLOPE"),
        ("Custom", "inner_slope", "1_INNER_"),
    ],
)
def test_galfit_key_names(profile, param, key):
    cards = galfit_header_cards({"c": profile}, {("c", param): 2.0}, None, None)
    assert cards == [("COMP_1", profile.lower(), "component 'c'"), (key, "2.0000", f"c {param}")]


def test_many_components_keep_keys_within_eight_characters():
    components = {f"c{i}": "King" for i in range(1, 121)}
    values = {(name, p): 1.0 for name in components for p in ("cen_x", "trunc_r", "pow_n")}
    cards = galfit_header_cards(components, values, None, None)
    keys = [k for k, _, _ in cards]
    assert len(keys) == len(set(keys)) == 120 * 4
    assert all(len(k) <= 8 for k in keys)
    assert "12_ALPHA" in keys and "120_ALPH" in keys and "COMP_120" in keys


def test_cut_keys_that_collide_use_hierarch():
    cards = galfit_header_cards({"c": "Custom"}, {("c", "param_one"): 1.0, ("c", "param_two"): 2.0}, None, None)
    assert [k for k, _, _ in cards] == ["COMP_1", "1_PARAM_", "HIERARCH 1_PARAM_TWO"]


def test_galfit_card_errors():
    with pytest.raises(DataError, match="component 'halo'.*not among the components \\['bulge'\\]"):
        galfit_header_cards({"bulge": "Sersic"}, {("halo", "mag"): 1.0}, None, None)
    with pytest.raises(DataError, match="errors name component 'halo'"):
        galfit_header_cards({"bulge": "Sersic"}, {}, {("halo", "mag"): 1.0}, None)
    with pytest.raises(DataError, match="'REDUCED_CHI2' is not a free FITS keyword of at most 8 characters"):
        galfit_header_cards({}, {}, None, {"REDUCED_CHI2": 1.0})


def test_galfit_cards_survive_the_image_block(tmp_path):
    values = {("bulge", "mag"): 17.68, ("bulge", "eff_r"): 5.123456}
    errors = {("bulge", "mag"): 0.0123, ("bulge", "eff_r"): 0.5}
    cards = galfit_header_cards({"bulge": "Sersic"}, values, errors, {"CHI2": 3.5, "NDOF": 10})
    data = np.ones((3, 3))
    path = write_image_block(tmp_path / "9.fits", data=data, model=data, components={"bulge": data}, header_cards=cards)
    header = read_header(path, "MODEL")
    assert header["COMP_1"] == "sersic"
    value, _, error = header["1_RE"].split()
    assert float(value) == 5.1235 and float(error) == 0.5
    assert header["1_MAG"] == "17.6800 +/- 0.0123"
    assert header["CHI2"] == 3.5 and header["NDOF"] == 10


def test_update_image_block_header_replaces_the_fit_cards_only(tmp_path):
    data, bulge, disk = _images((4, 4))
    old = galfit_header_cards(
        {"bulge": "Sersic", "disk": "ExpDisk"},
        {("bulge", "mag"): 18.0, ("disk", "scale_l"): 3.0},
        None,
        {"CHI2": 9.0},
    )
    path = write_image_block(
        tmp_path / "3.fits",
        data=data,
        model=bulge + disk,
        components={"bulge": bulge, "disk": disk},
        header_cards=old + [("ZP", 22.5, "zero point")],
        mask=np.ones((4, 4), dtype=bool),
    )
    before = read_image_block(path)
    new = galfit_header_cards({"bulge": "Sersic"}, {("bulge", "mag"): 17.5}, {("bulge", "mag"): 0.02}, {"CHI2": 8.0})
    assert update_image_block_header(path, new) == path

    header = read_header(path, "MODEL")
    assert header["1_MAG"] == "17.5000 +/- 0.0200"
    assert header["CHI2"] == 8.0 and header["ZP"] == 22.5  # overwritten / kept
    assert "COMP_2" not in header and "2_RS" not in header  # stale component cards are gone
    assert list(header.keys()).count("1_MAG") == 1
    after = read_image_block(path)
    assert list(after) == list(before)
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])
        assert after[name].dtype == before[name].dtype
    assert sorted(p.name for p in tmp_path.iterdir()) == ["3.fits"]


def test_update_image_block_header_needs_a_model_extension(tmp_path):
    path = tmp_path / "plain.fits"
    fits.PrimaryHDU(np.zeros((2, 2))).writeto(path)
    with pytest.raises(DataError, match="plain.fits' has no MODEL extension.*write_image_block"):
        update_image_block_header(path, [])
    with pytest.raises(DataFileNotFoundError):
        update_image_block_header(tmp_path / "nope.fits", [])
