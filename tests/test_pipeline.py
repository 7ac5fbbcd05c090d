"""The pipeline: parts as the run goes, resume after kill -9, shards and collate, image sets,
catalogues, padding of mixed shapes, file safety and configuration errors raised before any fit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.table import Table

import galmoss as gm
from galmoss.errors import OutputError
from galmoss.flags import Flag
from galmoss.io.results import is_uncertainty_column

SHAPE = (28, 28)
YY, XX = np.mgrid[:9, :9] - 4.0
PSF = np.exp(-0.5 * (XX**2 + YY**2) / 1.3**2)
TRUE = dict(pa=25.0, axis_r=0.7, eff_r=3.5, ser_n=1.3)


def _mocks(n, seed=0, shape=SHAPE, noise=0.05):
    rng = np.random.default_rng(seed)
    h, w = shape
    mags = 17.0 + rng.uniform(-0.4, 0.4, n)
    truth = gm.lp.Sersic(cen_x=gm.p(np.full(n, w / 2 + 0.3)), cen_y=gm.p(np.full(n, h / 2 - 0.2)),
                         pa=gm.p(np.full(n, TRUE["pa"])), axis_r=gm.p(np.full(n, TRUE["axis_r"])),
                         eff_r=gm.p(np.full(n, TRUE["eff_r"])), mag=gm.p(mags, M0=22.5),
                         ser_n=gm.p(np.full(n, TRUE["ser_n"])))
    clean = gm.render(truth, shape, psf=PSF, dtype=torch.float64).numpy()
    images = clean + rng.normal(0, noise, clean.shape)
    return images.astype(np.float32), np.full(images.shape, noise, np.float32), mags


def _sersic(n, shape=SHAPE):
    h, w = shape
    return gm.lp.Sersic(cen_x=gm.p(np.full(n, w / 2 + 0.8)), cen_y=gm.p(np.full(n, h / 2 - 0.6)),
                        pa=gm.p(35.0, angle=True), axis_r=gm.p(0.6), eff_r=gm.p(4.2),
                        mag=gm.p(17.3, M0=22.5), ser_n=gm.p(1.6, log=True))


def _fit(dataset, n, resume=False, **kw):
    dataset.define_profiles(sersic=_sersic(n))
    fitting = gm.Fitting(dataset, batch_size=kw.pop("batch_size", 4), iteration=60, device="cpu", progress=False, **kw)
    return fitting, fitting.fit(resume=resume)


def _value_columns(table):
    return [c for c in table.colnames if c.startswith("sersic_")]


# ------------------------------------------------------------------ parts, resume
def test_parts_are_written_per_batch_and_resume_gives_the_uninterrupted_files(tmp_path):
    images, sigmas, mags = _mocks(10)
    full = gm.Dataset.from_arrays(images, sigmas, PSF, result_path=tmp_path / "full")
    _, reference = _fit(full, 10)
    parts = sorted((tmp_path / "full" / "parts").glob("part-*.parquet"))
    assert len(parts) == 3  # 4 + 4 + 2 galaxies
    assert np.all(np.abs(reference["sersic_mag"] - mags) < 0.05)
    import json

    settings = json.loads((tmp_path / "full" / "run.json").read_text())["settings"]  # the run's checked options
    assert settings["batch_size"] == 4 and settings["device"] == "cpu" and settings["likelihood"] == "chi2"
    assert settings["lm_settings"]["max_iterations"] == settings["iteration"]

    # a run that "died" after its first batch: keep one part, then resume
    half = tmp_path / "half"
    first = gm.Dataset.from_arrays(images, sigmas, PSF, result_path=half)
    _fit(first, 10)
    kept = sorted((half / "parts").glob("part-*.parquet"))
    for extra in kept[1:]:
        extra.unlink()
    (half / "results.fits").unlink()
    (half / "parts" / "part-0of1-99999999999999999-000099-deadbeef.parquet").write_bytes(b"PAR1 cut short by a kill")
    resumed = gm.Dataset.from_arrays(images, sigmas, PSF, result_path=half)
    fitting, table = _fit(resumed, 10, resume=True)
    assert fitting.timing["galaxies"] == 6  # only the galaxies of the lost parts were fitted again
    on_disk = Table.read(half / "results.fits")
    ref_disk = Table.read(tmp_path / "full" / "results.fits")
    assert list(on_disk["galaxy_index"]) == list(ref_disk["galaxy_index"])
    for col in _value_columns(ref_disk) + ["chi2", "dof", "flag"]:
        np.testing.assert_allclose(on_disk[col], ref_disk[col], rtol=1e-6, atol=1e-9, err_msg=col)


KILL_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, galmoss as gm
    sys.path.insert(0, {tests!r})
    from test_pipeline import _mocks, _sersic, PSF
    images, sigmas, _ = _mocks(24)
    ds = gm.Dataset.from_arrays(images, sigmas, PSF, result_path={out!r})
    ds.define_profiles(sersic=_sersic(24))
    gm.Fitting(ds, batch_size=2, iteration=60, device="cpu", progress=False).fit(resume=True)
""")


def test_kill_minus_nine_then_resume(tmp_path):
    out = tmp_path / "run"
    script = tmp_path / "job.py"
    script.write_text(KILL_SCRIPT.format(tests=os.path.dirname(__file__), out=str(out)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script)], env=env)
    deadline = time.time() + 120
    while time.time() < deadline:
        if len(list((out / "parts").glob("part-*.parquet"))) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list((out / "parts").glob("part-*.parquet")))
    assert 2 <= done_before < 12, "the run was killed mid-way"
    assert not (out / "results.fits").exists()
    subprocess.run([sys.executable, str(script)], env=env, check=True, timeout=300)
    table = Table.read(out / "results.fits")
    assert len(table) == 24 and list(table["galaxy_index"]) == [str(i) for i in range(24)]
    assert np.all(np.isfinite(table["sersic_mag"])) and np.all(table["flag"] == 0)


# ----------------------------------------------------------- shards and collate
def test_shards_collate_to_the_single_run_and_doubles_are_reported(tmp_path, capsys):
    from galmoss.cli import main

    images, sigmas, _ = _mocks(9, seed=2)
    single = gm.Dataset.from_arrays(images, sigmas, PSF, result_path=tmp_path / "single")
    fitting, _ = _fit(single, 9)
    reference = fitting.uncertainty()
    for k in (1, 2, 3):
        ds = gm.Dataset.from_arrays(images, sigmas, PSF, result_path=tmp_path / "shards")
        ds.define_profiles(sersic=_sersic(9))
        part = gm.Fitting(ds, batch_size=4, iteration=60, device="cpu", progress=False).fit(shard=(k, 3))
        assert len(part) == 3
    assert not (tmp_path / "shards" / "results.fits").exists()  # shards write parts only
    assert main(["collate", str(tmp_path / "shards")]) == 0
    merged = Table.read(tmp_path / "shards" / "results.fits")
    for col in _value_columns(reference):
        if is_uncertainty_column(col, reference.colnames):
            continue
        # shards batch the galaxies differently: float32 round-off of the solver, far below the errors
        err = np.asarray(reference[f"{col}_err"])
        assert np.all(np.abs(merged[col] - reference[col]) <= 0.05 * err + 1e-12), col
        np.testing.assert_allclose(merged[f"{col}_err"], err, rtol=5e-2, atol=1e-12, err_msg=col)
    # the same shard run twice: collate keeps the newest row per galaxy and says which were doubled
    ds = gm.Dataset.from_arrays(images, sigmas, PSF, result_path=tmp_path / "shards")
    ds.define_profiles(sersic=_sersic(9))
    gm.Fitting(ds, batch_size=4, iteration=60, device="cpu", progress=False).fit(shard=(2, 3))
    capsys.readouterr()
    assert main(["collate", str(tmp_path / "shards")]) == 0
    said = capsys.readouterr().out
    assert "3 galaxies fitted more than once" in said and "'3'" in said
    assert len(Table.read(tmp_path / "shards" / "results.fits")) == 9


# --------------------------------------------------------------------- inputs
def test_image_sets_in_fits_and_hdf5_give_the_array_results(tmp_path):
    import h5py

    images, sigmas, mags = _mocks(5, seed=3)
    names = [f"gal{i}" for i in range(5)]
    catalog = fits.BinTableHDU(Table({"galaxy_index": names, "re": np.full(5, 4.2)}), name="CATALOG")
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(images, name="IMAGE"), fits.ImageHDU(sigmas, name="SIGMA"),
                  fits.ImageHDU(PSF, name="PSF"), catalog]).writeto(tmp_path / "set.fits")
    with h5py.File(tmp_path / "set.h5", "w") as fh:
        fh["IMAGE"] = images.astype(">f4")  # big-endian, as FITS habits leave them
        fh["SIGMA"] = sigmas
        fh["PSF"] = np.repeat(PSF[None], 5, axis=0)
    _, from_arrays = _fit(gm.Dataset.from_arrays(images, sigmas, PSF), 5)
    fits_set = gm.Dataset.from_image_set(tmp_path / "set.fits")
    assert fits_set.names == names and np.allclose(fits_set.catalog["re"], 4.2)
    _, from_fits = _fit(fits_set, 5)
    _, from_hdf5 = _fit(gm.Dataset.from_image_set(tmp_path / "set.h5", galaxy_index=names), 5)
    for col in _value_columns(from_arrays):
        np.testing.assert_allclose(from_fits[col], from_arrays[col], rtol=1e-6, err_msg=col)
        np.testing.assert_allclose(from_hdf5[col], from_arrays[col], rtol=1e-6, err_msg=col)
    assert np.all(np.abs(from_fits["sersic_mag"] - mags) < 0.05)


@pytest.mark.parametrize("fmt", ["csv", "fits", "parquet"])
def test_catalogue_tables_name_files_relative_to_the_catalogue(tmp_path, fmt):
    images, sigmas, mags = _mocks(3, seed=4)
    folder = tmp_path / "cat"
    folder.mkdir()
    rows = {"id": [], "image": [], "sigma": [], "psf": []}
    fits.PrimaryHDU(PSF).writeto(folder / "psf.fits")
    for i in range(3):
        fits.PrimaryHDU(images[i]).writeto(folder / f"g{i}.fits")
        fits.PrimaryHDU(sigmas[i]).writeto(folder / f"g{i}_sig.fits")
        rows["id"].append(f"g{i}")
        rows["image"].append(f"g{i}.fits")
        rows["sigma"].append(f"g{i}_sig.fits")
        rows["psf"].append("psf.fits")
    table = Table(rows)
    path = folder / f"catalog.{fmt}"
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table(rows), path)
    else:
        table.write(path)
    ds = gm.Dataset.from_catalog(path, galaxy_index="id", image="image", sigma="sigma", psf="psf")
    _, res = _fit(ds, 3)
    assert list(res["galaxy_index"]) == ["g0", "g1", "g2"]
    assert np.all(np.abs(res["sersic_mag"] - mags) < 0.05)
    with pytest.raises(KeyError, match="no column 'mask' .* the columns are id, image, sigma, psf"):
        gm.Dataset.from_catalog(path, galaxy_index="id", image="image", mask="mask")


def test_mixed_stamp_sizes_are_padded_into_full_batches_with_the_same_answers():
    sizes = [(28, 28), (30, 30), (28, 28), (30, 30), (29, 28), (28, 28)]
    images, sigmas, starts = [], [], []
    for i, shape in enumerate(sizes):
        img, sig, _ = _mocks(1, seed=10 + i, shape=shape)
        images.append(img[0])
        sigmas.append(sig[0])
    results = {}
    for pad in (False, True):
        ds = gm.Dataset.from_arrays(images, sigmas, PSF)
        ds.define_profiles(sersic=gm.lp.Sersic(cen_x=gm.p([s[1] / 2 + 0.8 for s in sizes]),
                                               cen_y=gm.p([s[0] / 2 - 0.6 for s in sizes]), pa=gm.p(35.0, angle=True),
                                               axis_r=gm.p(0.6), eff_r=gm.p(4.2), mag=gm.p(17.3, M0=22.5),
                                               ser_n=gm.p(1.6, log=True)))
        results[pad] = gm.Fitting(ds, batch_size=6, iteration=60, device="cpu", progress=False, pad_shapes=pad).fit()
    assert np.all(results[True]["dof"] == [h * w - 7 for h, w in sizes])  # padded pixels carry no weight
    for col in ("sersic_mag", "sersic_eff_r", "sersic_cen_x", "chi2"):
        np.testing.assert_allclose(results[True][col], results[False][col], rtol=2e-4, atol=2e-4, err_msg=col)


def test_units_travel_with_the_files_and_results_to_init_reads_them(tmp_path):
    images, sigmas, _ = _mocks(3, seed=5)
    ds = gm.Dataset.from_arrays(images, sigmas, PSF, result_path=tmp_path)
    _, res = _fit(ds, 3)
    back = Table.read(tmp_path / "results.fits")
    assert back["sersic_mag"].meta["M0"] == 22.5 and str(back["sersic_mag"].unit) == "mag"
    assert str(back["sersic_pa"].unit) == "deg"
    for source in (res, back):
        init = gm.results_to_init(source, "sersic")
        assert init["mag"].M0 == 22.5
        np.testing.assert_allclose(init["mag"].initial_profile_units(), res["sersic_mag"] - 22.5)


# ---------------------------------------------------------------- file safety
def test_block_names_are_safe_unique_and_never_replace_an_input(tmp_path):
    images, sigmas, _ = _mocks(6, seed=6)
    names = ["../../escape", "/abs/name", "results", "Twin", "twin", "ok-name+1.5"]
    blocks = tmp_path / "out"
    ds = gm.Dataset.from_arrays(images, sigmas, PSF, galaxy_index=names, img_block_path=blocks, result_path=blocks)
    _, res = _fit(ds, 6)
    written = sorted(p.name for p in blocks.iterdir() if p.suffix == ".fits")
    assert len(set(n.lower() for n in written)) == len(written) == 7  # 6 blocks + results.fits
    assert not (tmp_path / "escape.fits").exists() and not list(tmp_path.parent.glob("escape*"))
    assert "ok-name+1.5.fits" in written and "results.fits" in written
    assert list(res["galaxy_index"]) == names and len(set(res["image_block"])) == 6
    assert Table.read(blocks / "results.fits")["galaxy_index"][2] == "results"
    # a block folder that holds the inputs, with an input named as a block would be
    cutouts = tmp_path / "cutouts"
    cutouts.mkdir()
    fits.PrimaryHDU(images[0]).writeto(cutouts / "g0.fits")
    ds = gm.Dataset(["g0"], [str(cutouts / "g0.fits")], img_block_path=cutouts)
    ds.define_profiles(sersic=_sersic(1))
    with pytest.raises(OutputError, match="is an input file; give img_block_path a folder of its own"):
        gm.Fitting(ds, device="cpu", progress=False).fit()
    assert fits.getdata(cutouts / "g0.fits").shape == SHAPE


def test_a_block_that_cannot_be_written_keeps_the_fit(tmp_path):
    images, sigmas, mags = _mocks(3, seed=7)
    blocks = tmp_path / "blocks"
    blocks.mkdir()
    (blocks / "1.fits").mkdir()  # in the way: a folder where galaxy 1's block would go
    (blocks / "2.fits").write_bytes(b"the user's own file")
    ds = gm.Dataset.from_arrays(images, sigmas, PSF, img_block_path=blocks, result_path=tmp_path / "res")
    _, res = _fit(ds, 3)
    assert np.all(np.abs(res["sersic_mag"] - mags) < 0.05)  # every fit kept
    assert res["flag"][0] == 0 and res["image_block"][0] == "0.fits"
    for i in (1, 2):
        assert res["flag"][i] & Flag.block_not_written and "not written" in res["message"][i]
    assert (blocks / "2.fits").read_bytes() == b"the user's own file"


def test_output_folders_are_checked_before_any_fit(tmp_path):
    images, sigmas, _ = _mocks(2)
    (tmp_path / "a_file").write_text("x")
    for kw in ({"result_path": tmp_path / "a_file" / "sub"}, {"img_block_path": tmp_path / "a_file"}):
        ds = gm.Dataset.from_arrays(images, sigmas, PSF, **kw)
        ds.define_profiles(sersic=_sersic(2))
        fitting = gm.Fitting(ds, device="cpu", progress=False)
        with pytest.raises(OutputError, match="nothing has been fitted yet|not a folder"):
            fitting.fit()
        assert fitting.store is None or not fitting.store.done.any()


# ------------------------------------------------------- configuration errors
def test_configuration_errors_raise_before_any_fit(tmp_path):
    images, sigmas, _ = _mocks(2)
    ds = gm.Dataset.from_arrays(images, sigmas, PSF)
    ds.define_profiles(sersic=_sersic(2))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device; use device='cpu'"):
            gm.Fitting(ds, device="cuda")
    with pytest.raises(ValueError, match="dtype=torch.float16 is not supported"):
        gm.Fitting(ds, dtype=torch.float16)
    assert gm.Fitting(ds, dtype="float64", device="cpu").dtype == torch.float64
    from galmoss.errors import ConfigError

    # the options are checked in one place (RunOptions), before anything is read or fitted
    for bad, message in (({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
                         ({"likelihood": "chi3"}, "likelihood='chi3': choose one of"),
                         ({"threads": 0}, "threads must be an integer >= 1, got 0"),
                         ({"iteration": 50, "lm_settings": gm.fitting.LMSettings(max_iterations=20)},
                          "iteration=50 but lm_settings.max_iterations=20")):
        with pytest.raises(ConfigError, match=message):
            gm.Fitting(ds, device="cpu", **bad)
    fitting = gm.Fitting(ds, device="cpu", progress=False)
    fitting.fit()
    with pytest.raises(ValueError, match="n_resample must be an integer >= 2"):
        fitting.uncertainty("bootstrap", n_resample=0)
    with pytest.raises(ValueError, match="galaxy_index 'a' is given twice"):
        gm.Dataset(["a", "b", "a"], ["x.fits", "y.fits", "z.fits"])
    with pytest.raises(TypeError, match="image_path of galaxy 'b' .* is None"):
        gm.Dataset(["a", "b"], ["x.fits", None])
    with pytest.raises(TypeError, match="mask_index=\\(1, 2\\) is a tuple"):
        gm.Dataset(["a", "b"], ["x.fits", "y.fits"], mask_index=(1, 2))
    with pytest.raises(TypeError, match="gain='abc' is not a number"):
        gm.Dataset(["a"], ["x.fits"], gain="abc")
    assert gm.Dataset(["a"], ["x.fits"], mask_index="7").mask_index == [7]  # a number read from a CSV


def test_a_user_profile_of_the_wrong_shape_is_a_configuration_error():
    from galmoss.fitting.batch import ProfileOutputError

    class Flat(gm.LightProfile):
        def __init__(self, level):
            super().__init__()
            self.psf = False
            self.level = level

        def image_via_grid_from(self, grid, mode="updating_model"):
            return self.level.value(mode) + 0.0 * grid[0][..., :-1]  # one column short

    images, sigmas, _ = _mocks(3)
    ds = gm.Dataset.from_arrays(images, sigmas)
    ds.define_profiles(flat=Flat(gm.p(0.1)))
    with pytest.raises(ProfileOutputError, match="profile 'flat' \\(Flat\\): image_via_grid_from returned shape \\(3, 28, 27\\) .* expected \\(3, 28, 28\\)"):
        gm.Fitting(ds, device="cpu", progress=False).fit()


# ------------------------------------------------------- per-galaxy problems
def test_per_galaxy_input_problems_are_flagged_never_flag_zero(tmp_path):
    images, sigmas, _ = _mocks(4, seed=8)
    images = images.astype(np.float64)
    masks = np.zeros(images.shape, np.int16)
    masks[0, 10:18, 10:18] = 3            # galaxy 0: its mask has no value 2
    images[1] = 0.0                        # galaxy 1: a blank cutout
    yy, xx = np.mgrid[:15, :15] - 7.0
    shifted = np.exp(-0.5 * ((xx - 3.0) ** 2 + (yy - 1.0) ** 2) / 1.3**2)  # galaxy 2: a star 3.16 px off centre
    psfs = [PSF, PSF, shifted, PSF]
    ds = gm.Dataset.from_arrays(images, sigmas, psfs, masks, mask_index=[2, None, None, None])
    _, res = _fit(ds, 4)
    assert res["flag"][0] & Flag.bad_mask and "mask_index 2 does not occur" in res["message"][0]
    assert np.isnan(res["sersic_mag"][0])
    assert res["flag"][1] & Flag.no_source and np.isnan(res["sersic_mag"][1])
    assert res["flag"][2] & Flag.psf_off_centre and "3.16 px from its centre pixel (row 8, column 8" in res["message"][2]
    assert res["flag"][3] == 0 and np.isfinite(res["sersic_mag"][3])


def test_poisson_likelihood_masks_and_names_negative_pixels():
    images, sigmas, _ = _mocks(2, seed=9)
    counts = images.astype(np.float64) * 200 + 60.0  # sky of 60 counts: no noise dips below zero
    counts[0, 3, 5] = -4.0
    ds = gm.Dataset.from_arrays(counts, None, PSF)
    ds.define_profiles(sersic=_sersic(2), sky=gm.lp.Sky(sky_bg=gm.p(60.0)))
    res = gm.Fitting(ds, batch_size=2, iteration=60, likelihood="poisson", device="cpu", progress=False).fit()
    assert res["flag"][0] & Flag.negative_pixels and "(6, 4)" in res["message"][0]
    assert "deviance" in res.colnames and "chi2" not in res.colnames
    assert not res["flag"][1] & Flag.negative_pixels


def test_dask_local_cluster_gives_the_local_results():
    distributed = pytest.importorskip("dask.distributed")
    images, sigmas, _ = _mocks(6, seed=11)
    _, local = _fit(gm.Dataset.from_arrays(images, sigmas, PSF), 6, batch_size=2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        ds = gm.Dataset.from_arrays(images, sigmas, PSF)
        ds.define_profiles(sersic=_sersic(6))
        remote = gm.Fitting(ds, batch_size=2, iteration=60, device="cpu", progress=False, client=client).fit()
    for col in _value_columns(local) + ["chi2", "flag"]:
        np.testing.assert_allclose(remote[col], local[col], rtol=1e-6, err_msg=col)


def test_a_model_with_no_free_parameter_is_evaluated_not_fitted():
    from galmoss.fitting.status import Status

    images, sigmas, mags = _mocks(3, seed=12)
    fixed = dict(cen_x=gm.p(14.3, fit=False), cen_y=gm.p(13.8, fit=False), pa=gm.p(TRUE["pa"], fit=False),
                 axis_r=gm.p(TRUE["axis_r"], fit=False), eff_r=gm.p(TRUE["eff_r"], fit=False),
                 mag=gm.p(mags, M0=22.5, fit=False), ser_n=gm.p(TRUE["ser_n"], fit=False))
    ds = gm.Dataset.from_arrays(images, sigmas, PSF)
    ds.define_profiles(sersic=gm.lp.Sersic(**fixed))
    res = gm.Fitting(ds, batch_size=3, device="cpu", dtype=torch.float64, progress=False).fit()
    model = gm.render(gm.lp.Sersic(**fixed), SHAPE, psf=PSF, dtype=torch.float64).numpy()
    chi2 = (((images.astype(np.float64) - model) / sigmas) ** 2).sum(axis=(1, 2))
    np.testing.assert_allclose(res["chi2"], chi2, rtol=1e-6)
    assert np.all(res["status"] == int(Status.EVALUATED)) and np.all(res["n_iter"] == 0) and np.all(res["flag"] == 0)
    assert np.all(res["dof"] == SHAPE[0] * SHAPE[1])


# ------------------------------------------------------------------ the stream's background preparation
def test_batches_prepared_ahead_carry_the_starts_the_fit_would_measure(tmp_path):
    import threading

    from galmoss.fitting.measure import batch_estimates, with_estimates
    from galmoss.pipeline.stream import BatchStream

    images, sigmas, mags = _mocks(10, seed=3)
    ds = gm.Dataset.from_arrays(images, sigmas, PSF, result_path=tmp_path / "r")
    batches = list(BatchStream(ds, np.arange(10), 4, prepare=with_estimates))
    assert [len(b) for b in batches] == [4, 4, 2]
    for batch in batches:
        ahead = batch.estimates
        batch.estimates = None
        again = batch_estimates(batch)
        assert [a.keys() for a in ahead] == [a.keys() for a in again]
        for a, b in zip(ahead, again):
            assert all(a[k] == b[k] for k in a)
        flux = np.array([a["flux"] for a in ahead])
        true = 10 ** (-0.4 * (mags[batch.positions] - 22.5))
        assert np.all(np.abs(flux / true - 1) < 0.2)  # the starts measure these galaxies

    # a consumer that stops early stops the background thread
    stream = iter(BatchStream(ds, np.arange(10), 2, prepare=with_estimates))
    next(stream)
    stream.close()
    assert not any(t.name == "galmoss-batches" for t in threading.enumerate())

    # an error while preparing reaches the consumer at that batch
    def broken(batch):
        raise RuntimeError(f"cannot prepare {batch.names[0]}")

    with pytest.raises(RuntimeError, match="cannot prepare"):
        list(BatchStream(ds, np.arange(10), 4, prepare=broken))


def test_worker_processes_prepare_the_batches_with_the_same_answers(tmp_path):
    # Fitting(prepare_workers=2): reading, checks, stacking and starts in two spawned processes. A galaxy's fit
    # does not depend on who prepared its batch: the threads' table, the unreadable galaxy flagged in both,
    # its row in place. (Workers batch within blocks of batch_size galaxies, so galaxy 8 shares no batch
    # with 5-7 there: float32 round-off of another batch, 1e-10 here; 1e-6 allowed.)
    images, sigmas, mags = _mocks(9, seed=6)
    images[4] = np.nan  # no usable pixel: flagged, never fitted
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(images, name="IMAGE"), fits.ImageHDU(sigmas, name="SIGMA"),
                  fits.ImageHDU(PSF, name="PSF")]).writeto(tmp_path / "set.fits")
    tables = []
    for workers in (0, 2):
        ds = gm.Dataset.from_image_set(tmp_path / "set.fits", result_path=tmp_path / f"w{workers}")
        ds.define_profiles(sersic=gm.lp.Sersic(mag=gm.p(M0=22.5)))
        tables.append(gm.Fitting(ds, batch_size=4, device="cpu", progress=False, prepare_workers=workers).fit())
    threads, workers = tables
    assert list(workers["galaxy_index"]) == list(threads["galaxy_index"])
    for col in [c for c in threads.colnames if c.startswith("sersic_")] + ["chi2"]:
        np.testing.assert_allclose(workers[col], threads[col], rtol=1e-6, err_msg=col)
    np.testing.assert_array_equal(workers["flag"], threads["flag"])
    assert workers["flag"][4] & int(Flag.fully_masked) and np.isnan(workers["sersic_mag"][4])
    fitted = np.flatnonzero(workers["flag"] == 0)
    assert fitted.size >= 7 and np.all(np.abs(workers["sersic_mag"][fitted] - mags[fitted]) < 0.05)

    from galmoss.errors import ConfigError

    with pytest.raises(ConfigError, match="prepare_workers must be an integer >= 0"):
        gm.Fitting(ds, prepare_workers=-1)
    with pytest.raises(ConfigError, match="dask client"):
        gm.Fitting(ds, prepare_workers=2, client=object())


def test_a_script_without_a_main_guard_is_told_how_to_use_worker_processes(tmp_path):
    # spawned workers re-run the script that started them; without `if __name__ == "__main__":` each would
    # start a fit of its own: the run stops with one line saying why, from the workers and the parent. The
    # dataset (370 KB pickled) is larger than a pipe's buffer: a worker that dies while starting must not
    # leave the parent writing its start arguments forever.
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent("""
        import numpy as np, galmoss as gm
        images = np.random.default_rng(0).normal(1.0, 0.05, (40, 48, 48)).astype(np.float32)
        ds = gm.Dataset.from_arrays(images, np.full_like(images, 0.05))
        ds.define_profiles(sersic=gm.lp.Sersic())
        gm.Fitting(ds, batch_size=2, device="cpu", progress=False, prepare_workers=1).fit()
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180,
                          cwd=tmp_path)
    assert done.returncode != 0
    assert "keep the script's fitting code under 'if __name__ == \"__main__\":'" in done.stderr
    assert "prepare_workers: a worker process ended abruptly" in done.stderr


def test_worker_processes_fall_back_to_threads_where_shared_memory_cannot_hold_the_dataset(monkeypatch, caplog):
    # a small or read-only /dev/shm (a container's 64 MB, say): said in the log, and the same batches from threads
    from galmoss.fitting.measure import with_estimates
    from galmoss.pipeline import stream

    images, sigmas, _ = _mocks(12, seed=4)  # 75 KB pickled: more than goes with a worker's start
    ds = gm.Dataset.from_arrays(images, sigmas, PSF)
    monkeypatch.setattr(stream, "_shared_copy", lambda data: None)
    with caplog.at_level("WARNING", logger="galmoss"):
        batches = list(stream.BatchStream(ds, np.arange(12), 5, prepare=with_estimates, prepare_workers=2))
    assert "prepared in this process's threads" in caplog.text
    assert [list(b.positions) for b in batches] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]]
    assert all(b.estimates is not None for b in batches)
