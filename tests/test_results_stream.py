"""results.fits and results.csv are written a chunk of rows at a time, and resume and collate read the parts
one at a time: the files equal those of the whole table written at once by astropy."""

from __future__ import annotations

import numpy as np
import torch
from astropy.table import Table

import galmoss as gm
import galmoss.io.results as results_module
from galmoss.pipeline.collate import collate

SHAPE = (20, 20)


def _dataset(folder):
    rng = np.random.default_rng(3)
    n = 7
    mags = 17.0 + rng.uniform(-0.5, 0.5, n)
    truth = gm.lp.Sersic(cen_x=gm.p(10.3), cen_y=gm.p(9.8), pa=gm.p(20.0), axis_r=gm.p(0.7), eff_r=gm.p(3.0),
                         mag=gm.p(mags, M0=22.5), ser_n=gm.p(1.2))
    yy, xx = np.mgrid[:7, :7] - 3.0
    psf = np.exp(-0.5 * (xx**2 + yy**2) / 1.2**2)
    images = gm.render(truth, SHAPE, psf=psf, dtype=torch.float64).numpy() + rng.normal(0, 0.05, (n,) + SHAPE)
    images[4] = np.nan  # an unreadable galaxy: a row with flags and a message, in the parts too
    ds = gm.Dataset.from_arrays(images, np.full(images.shape, 0.05), psf, galaxy_index=[f"g{i:02d}" for i in range(n)],
                                result_path=folder)
    # the magnitude and size free, the rest fixed: a fast fit whose values differ per galaxy
    ds.define_profiles(sersic=gm.lp.Sersic(cen_x=gm.p(10.3, fit=False), cen_y=gm.p(9.8, fit=False),
                                           pa=gm.p(20.0, fit=False), axis_r=gm.p(0.7, fit=False),
                                           eff_r=gm.p(2.5), mag=gm.p(17.2, M0=22.5), ser_n=gm.p(1.2, fit=False)))
    return ds


def _assert_same(a: Table, b: Table, tol: float = 1e-12) -> None:
    assert a.colnames == b.colnames
    assert dict(a.meta) == dict(b.meta)
    for name in a.colnames:
        assert a[name].dtype == b[name].dtype, name
        assert a[name].unit == b[name].unit, name
        assert dict(a[name].meta) == dict(b[name].meta), name
        if a[name].dtype.kind == "f":
            np.testing.assert_allclose(np.asarray(a[name]), np.asarray(b[name]), rtol=tol, atol=0, equal_nan=True)
        else:
            assert np.array_equal(np.asarray(a[name]), np.asarray(b[name])), name


def test_streamed_results_equal_the_whole_table_written_at_once(tmp_path, monkeypatch):
    # 3 rows a chunk: the 7 rows of results.fits / results.csv are written in 3 pieces, from 4 parts
    monkeypatch.setattr(results_module, "CHUNK_ROWS", 3)
    folder = tmp_path / "run"
    fitting = gm.Fitting(_dataset(folder), batch_size=2, iteration=30, device="cpu", progress=False)
    table = fitting.fit()
    assert len(list((folder / "parts").glob("part-*.parquet"))) == 4
    assert np.isfinite(table["sersic_mag"]).sum() == 6 and table["message"][4]  # the NaN cutout's row says why

    # the old way: the whole table in memory, written by astropy in one call (its text is ASCII)
    whole = tmp_path / "whole.fits"
    table.write(whole, format="fits")
    assert (folder / "results.fits").read_bytes() == whole.read_bytes()
    _assert_same(Table.read(folder / "results.fits", mask_invalid=False), Table.read(whole, mask_invalid=False))
    assert Table.read(folder / "results.fits")["sersic_mag"].unit == "mag"
    assert Table.read(folder / "results.fits")["sersic_mag"].meta["M0"] == 22.5

    # the CSV: one header line and the rows in order, the same text as the whole table's
    lines = (folder / "results.csv").read_text().splitlines()
    assert lines[0].split(",")[:3] == ["galaxy_index", "sersic_cen_x", "sersic_cen_y"]
    assert [line.split(",")[0] for line in lines[1:]] == [f"g{i:02d}" for i in range(7)]
    mag = lines[0].split(",").index("sersic_mag")
    np.testing.assert_allclose([float(line.split(",")[mag]) for line in lines[1:]], table["sersic_mag"], rtol=1e-15)

    # resumed (every part read back one at a time) and collated: the same files again
    first = (folder / "results.fits").read_bytes()
    again = gm.Fitting(_dataset(folder), batch_size=2, iteration=30, device="cpu", progress=False)
    _assert_same(again.fit(resume=True), table)
    assert again.timing["galaxies"] == 0 and (folder / "results.fits").read_bytes() == first
    # collate shows the errors (every row has them), as the table after uncertainty() does
    with_errors = again.uncertainty()
    assert "sersic_mag_err" in with_errors.colnames
    first = (folder / "results.fits").read_bytes()
    report = collate(folder)
    _assert_same(report.table, with_errors)
    assert (folder / "results.fits").read_bytes() == first
