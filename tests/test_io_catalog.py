"""Catalogues read as written: names as text, missing cells named by file/row/column, BOMs, Parquet binary."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import MaskedColumn, Table

import galmoss as gm
from galmoss.errors import DataError
from galmoss.io.catalog import number_column, read_catalog, text_column
from galmoss.pipeline.job import JobError, load_job

NAMES = ["00123", "1e5", "7", "J1621+3220"]


def _files(folder, n=4):
    img = np.zeros((16, 16), dtype=">f4")
    img[7:9, 7:9] = 1.0
    for i in range(n):
        fits.PrimaryHDU(img).writeto(folder / f"g{i}.fits")
    return [f"g{i}.fits" for i in range(n)]


def _csv(folder, lines, bom=False, name="cat.csv"):
    path = folder / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + ("\n".join(lines) + "\n").encode())
    return path


def test_csv_names_stay_as_written_and_a_bom_is_dropped(tmp_path):
    images = _files(tmp_path)
    lines = ["id,image,re"] + [f"{n},{im},{2.5 + i}" for i, (n, im) in enumerate(zip(NAMES, images))]
    path = _csv(tmp_path, lines, bom=True)
    ds = gm.Dataset.from_catalog(path, galaxy_index="id", image="image")
    assert ds.names == NAMES  # not 123, 100000.0, 7
    assert ds.image_paths == [str(tmp_path / im) for im in images]
    # a column not named as text becomes numbers: a start column
    assert np.array_equal(number_column(ds.catalog, "re", "re"), [2.5, 3.5, 4.5, 5.5])


@pytest.mark.parametrize("column, row_cells, where", [
    ("id", ",g1.fits,3.0", "row 2, column 'id'"),
    ("image", "b,,3.0", "row 2, column 'image'"),
    ("image", "b,nan,3.0", "row 2, column 'image'"),
    ("sigma", "b,g1.fits,", "row 2, column 'sigma'"),
])
def test_an_empty_csv_cell_in_a_name_or_path_column_names_file_row_and_column(tmp_path, column, row_cells, where):
    _files(tmp_path, 3)
    path = _csv(tmp_path, ["id,image,sigma", "a,g0.fits,g0.fits", row_cells, "c,g2.fits,g2.fits"])
    with pytest.raises(DataError, match=f"{path.name}'.*{where}"):
        gm.Dataset.from_catalog(path, galaxy_index="id", image="image", sigma="sigma")


def test_none_says_a_galaxy_has_no_such_file(tmp_path):
    _files(tmp_path, 2)
    path = _csv(tmp_path, ["id,image,sigma", "a,g0.fits,none", "b,g1.fits,g1.fits"])
    ds = gm.Dataset.from_catalog(path, galaxy_index="id", image="image", sigma="sigma")
    assert ds.sigma_paths == [None, str(tmp_path / "g1.fits")]


def test_fits_null_in_the_name_column_is_an_error(tmp_path):
    images = _files(tmp_path, 3)
    ids = MaskedColumn([101, 102, 103], name="id", mask=[False, True, False], fill_value=-99)
    Table([ids, MaskedColumn(images, name="image")]).write(tmp_path / "cat.fits")
    assert "TNULL1" in fits.getheader(tmp_path / "cat.fits", 1)
    with pytest.raises(DataError, match="cat.fits', row 2, column 'id'"):
        gm.Dataset.from_catalog(tmp_path / "cat.fits", galaxy_index="id", image="image")


def test_parquet_binary_paths_are_text_and_nulls_are_errors(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    images = _files(tmp_path, 3)
    pq.write_table(pa.table({"id": pa.array([b"001", b"002", b"003"], pa.binary()),
                             "image": pa.array([s.encode() for s in images], pa.binary())}), tmp_path / "cat.parquet")
    ds = gm.Dataset.from_catalog(tmp_path / "cat.parquet", galaxy_index="id", image="image")
    assert ds.names == ["001", "002", "003"] and ds.image_paths[0] == str(tmp_path / "g0.fits")
    pq.write_table(pa.table({"id": ["a", "b", "c"], "image": pa.array([images[0], None, images[2]], pa.string())}),
                   tmp_path / "nulls.parquet")
    with pytest.raises(DataError, match="nulls.parquet', row 2, column 'image'"):
        gm.Dataset.from_catalog(tmp_path / "nulls.parquet", galaxy_index="id", image="image")


def test_start_columns_refuse_empty_cells_unless_optional(tmp_path):
    path = _csv(tmp_path, ["id,re,fwhm", "a,2.0,1.5", "b,,", "c,3.0,2.0"])
    table, _ = read_catalog(path, text_columns=["id"])
    with pytest.raises(DataError, match="cat.csv', row 2, column 're'"):
        number_column(table, "re", "start values")
    fwhm = number_column(table, "fwhm", "psf_fwhm", optional=True)
    assert fwhm[0] == 1.5 and np.isnan(fwhm[1])
    assert text_column(table, "id", "names") == ["a", "b", "c"]


def _job(tmp_path, data: str) -> str:
    job = tmp_path / "job.toml"
    job.write_text(f"[data]\n{data}\n[model.sersic]\nprofile = \"Sersic\"\neff_r = {{ column = \"re\" }}\n")
    return job


def test_a_job_start_column_with_an_empty_cell_names_the_row(tmp_path):
    images = _files(tmp_path, 3)
    _csv(tmp_path, ["id,image,re", f"a,{images[0]},2.0", f"b,{images[1]},", f"c,{images[2]},3.0"])
    job = _job(tmp_path, 'catalog = "cat.csv"\ngalaxy_index = "id"\nimage = "image"')
    with pytest.raises(JobError, match="model.sersic.eff_r: .*cat.csv', row 2, column 're'"):
        load_job(job)


def test_galaxy_index_for_an_image_set_without_catalog_is_refused(tmp_path):
    cube = np.zeros((2, 16, 16), dtype=">f4")
    cube[:, 7:9, 7:9] = 1.0
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(cube, name="IMAGE")]).writeto(tmp_path / "set.fits")
    with pytest.raises(DataError, match="galaxy_index='id' names a CATALOG column, but the file has no CATALOG"):
        gm.Dataset.from_image_set(tmp_path / "set.fits", galaxy_index="id")
    job = _job(tmp_path, 'image_set = "set.fits"\ngalaxy_index = "id"')
    with pytest.raises(JobError, match="data.galaxy_index = 'id' names a CATALOG column, but image set"):
        load_job(job)
    # with a CATALOG the column is honoured, names kept as text
    cat = fits.BinTableHDU(Table({"id": ["007", "1e5"], "re": [2.0, 3.0]}), name="CATALOG")
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(cube, name="IMAGE"), cat]).writeto(tmp_path / "set2.fits")
    assert gm.Dataset.from_image_set(tmp_path / "set2.fits", galaxy_index="id").names == ["007", "1e5"]
