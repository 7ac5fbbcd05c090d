"""A survey run never loses or mislabels work: parts of other runs or inputs, crashes and
interruptions, configuration errors found before any fit, and a lost dask worker."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

import galmoss as gm
from galmoss.cli import main
from galmoss.errors import OutputError
from tests.test_pipeline import PSF, _mocks, _sersic


def _cutouts(folder, n, seed):
    """n FITS cutouts with sigma images and one PSF; returns the injected magnitudes."""
    images, sigmas, mags = _mocks(n, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "psf.fits").exists():
        fits.PrimaryHDU(PSF).writeto(folder / "psf.fits")
    for i in range(n):
        fits.PrimaryHDU(images[i]).writeto(folder / f"s{seed}_g{i}.fits")
        fits.PrimaryHDU(sigmas[i]).writeto(folder / f"s{seed}_g{i}_sig.fits")
    return mags


def _files(folder, seed, which, result_path, names=None):
    """A dataset of the cutouts ``which`` (indices) of series ``seed``."""
    names = names or [str(k) for k in range(len(which))]
    return gm.Dataset(names, [folder / f"s{seed}_g{i}.fits" for i in which],
                      sigma_path=[folder / f"s{seed}_g{i}_sig.fits" for i in which],
                      psf_path=[folder / "psf.fits"] * len(which), result_path=result_path)


def _fixed_n(n, shape=(28, 28)):
    """Another model: ``_sersic`` with the Sersic index fixed at 1.6."""
    h, w = shape
    return gm.lp.Sersic(cen_x=gm.p(np.full(n, w / 2 + 0.8)), cen_y=gm.p(np.full(n, h / 2 - 0.6)),
                        pa=gm.p(35.0, angle=True), axis_r=gm.p(0.6), eff_r=gm.p(4.2),
                        mag=gm.p(17.3, M0=22.5), ser_n=gm.p(1.6, fit=False))


def _run(dataset, n, profile=None, **fit):
    dataset.define_profiles(sersic=profile if profile is not None else _sersic(n))
    fitting = gm.Fitting(dataset, batch_size=2, iteration=60, device="cpu", progress=False)
    return fitting, fitting.fit(**fit)


# ------------------------------------------------ parts of another run or other inputs
def test_resume_refits_a_galaxy_whose_catalogue_points_at_another_cutout(tmp_path):
    cut = tmp_path / "cutouts"
    mags_a = _cutouts(cut, 4, seed=1)
    mags_b = _cutouts(cut, 4, seed=2)
    out = tmp_path / "out"
    _run(_files(cut, 1, [0, 1, 2, 3], out), 4)
    # the catalogue now points galaxy '2' at another cutout (of another magnitude)
    moved = _files(cut, 1, [0, 1, 2, 3], out)
    moved.image_paths[2] = cut / "s2_g2.fits"
    moved.sigma_paths[2] = cut / "s2_g2_sig.fits"
    fitting, res = _run(moved, 4, resume=True)
    assert fitting.timing["galaxies"] == 1  # only the changed galaxy was fitted again
    truth = np.array([mags_a[0], mags_a[1], mags_b[2], mags_a[3]])
    assert abs(mags_a[2] - mags_b[2]) > 0.1  # the two cutouts are told apart by the fit
    assert np.all(np.abs(res["sersic_mag"] - truth) < 0.05)
    # collate agrees: the stale row of galaxy '2' is skipped, the new one kept
    from galmoss.pipeline.collate import collate

    report = collate(out, write=False)
    assert report.other_inputs == 1 and not report.missing
    np.testing.assert_allclose(report.table["sersic_mag"], res["sersic_mag"], rtol=1e-12)


def test_two_jobs_in_one_folder_are_refused_and_collate_never_mixes_their_rows(tmp_path):
    cut = tmp_path / "cutouts"
    mags_a = _cutouts(cut, 4, seed=1)
    _cutouts(cut, 4, seed=2)
    shared, other = tmp_path / "results", tmp_path / "other"
    _, res_a = _run(_files(cut, 1, [0, 1, 2, 3], shared), 4)
    # job B keeps the default folder: same galaxy names, other cutouts -> refused before any fit
    job_b = _files(cut, 2, [0, 1, 2, 3], shared)
    with pytest.raises(OutputError, match=r"another run \(input files differ\).*--resume.*--overwrite"):
        _run(job_b, 4)
    # parts of job B that got into the folder anyway (written by hand, or a run started at the same moment)
    _run(_files(cut, 2, [0, 1, 2, 3], other), 4)
    for part in (other / "parts").glob("part-*.parquet"):
        (shared / "parts" / part.name.replace("part-0of1-", "part-0of1-9")).write_bytes(part.read_bytes())
    assert main(["collate", str(shared)]) == 0
    merged = Table.read(shared / "results.fits")
    # job A's fits under job A's names: the newer rows of job B were skipped
    np.testing.assert_allclose(merged["sersic_mag"], res_a["sersic_mag"], rtol=1e-12)
    assert np.all(np.abs(merged["sersic_mag"] - mags_a) < 0.05)


def test_a_plain_rerun_with_another_model_is_refused_and_overwrite_clears_only_galmoss_outputs(tmp_path):
    images, sigmas, mags = _mocks(4, seed=3)
    out = tmp_path / "out"
    _run(gm.Dataset.from_arrays(images, sigmas, PSF, result_path=out), 4)
    (out / "notes.txt").write_text("mine")
    (out / "parts" / "README").write_text("mine too")
    with pytest.raises(OutputError, match=r"holds the parts of another run \(free differ\)"):
        _run(gm.Dataset.from_arrays(images, sigmas, PSF, result_path=out), 4, profile=_fixed_n(4))
    assert main(["fit", "--resume", "--overwrite", str(tmp_path / "x.toml")]) == 2  # not both
    with_priors = gm.Dataset.from_arrays(images, sigmas, PSF, result_path=out)
    with_priors.define_profiles(sersic=_sersic(4))
    with pytest.raises(ValueError, match=r"different run \(priors differ\)"):  # MAP fits are another model
        gm.Fitting(with_priors, device="cpu", priors="sourcextractor").check(resume=True)
    _, res = _run(gm.Dataset.from_arrays(images, sigmas, PSF, result_path=out), 4, profile=_fixed_n(4),
                  overwrite=True)
    assert len(list((out / "parts").glob("part-*.parquet"))) == 2  # the new run's two batches only
    assert (out / "notes.txt").read_text() == "mine" and (out / "parts" / "README").read_text() == "mine too"
    assert np.all(res["sersic_ser_n"] == pytest.approx(1.6))  # fixed at its start value
    on_disk = Table.read(out / "results.fits")
    np.testing.assert_allclose(on_disk["sersic_mag"], res["sersic_mag"], rtol=1e-12)
    # a shard given overwrite clears only another run's outputs: the shards of a job array keep each other's parts
    _run(gm.Dataset.from_arrays(images, sigmas, PSF, result_path=out), 4, profile=_fixed_n(4), overwrite=True,
         shard=(2, 2))
    assert len(list((out / "parts").glob("part-*.parquet"))) == 3
    # the same dataset object fitted again with another model in this session replaces its own run
    session = gm.Dataset.from_arrays(images, sigmas, PSF, result_path=tmp_path / "session")
    _run(session, 4)
    _, res = _run(session, 4, profile=_fixed_n(4))
    assert len(list((tmp_path / "session" / "parts").glob("part-*.parquet"))) == 2
    assert np.all(Table.read(tmp_path / "session" / "results.fits")["sersic_ser_n"] == pytest.approx(1.6))


def test_collate_skips_a_foreign_or_truncated_part_and_names_it(tmp_path, capsys, caplog):
    import pyarrow as pa
    import pyarrow.parquet as pq

    images, sigmas, _ = _mocks(4, seed=5)
    out = tmp_path / "out"
    _, res = _run(gm.Dataset.from_arrays(images, sigmas, PSF, result_path=out), 4)
    good = sorted((out / "parts").glob("part-*.parquet"))[-1]
    foreign = out / "parts" / "part-0of1-00000000000000001-000001-abcd.parquet"
    pq.write_table(pa.table({"position": pa.array(["0", "1"]), "galaxy_index": ["0", "1"], "loss": [1.0, 2.0],
                             "flag": [0, 0], "theta": [[1.0], [2.0]]}), foreign)
    truncated = out / "parts" / "part-0of1-00000000000000002-000001-abcd.parquet"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    # a part of the same galaxies fitted with another model (ser_n fixed), its rows newer than this run's
    _run(gm.Dataset.from_arrays(images, sigmas, PSF, result_path=tmp_path / "other"), 4, profile=_fixed_n(4))
    other = sorted((tmp_path / "other" / "parts").glob("part-*.parquet"))[0]
    (out / "parts" / other.name.replace("part-0of1-", "part-0of1-9")).write_bytes(other.read_bytes())
    capsys.readouterr()
    with caplog.at_level(logging.WARNING, logger="galmoss"):
        assert main(["collate", str(out)]) == 1  # parts unreadable: exit 1, the rest written
    said = capsys.readouterr().out
    assert "2 parts could not be read" in said and foreign.name in said and truncated.name in said
    assert "1 parts were written by a run of another model and were skipped" in said
    assert foreign.name in caplog.text and truncated.name in caplog.text
    merged = Table.read(out / "results.fits")
    np.testing.assert_allclose(merged["sersic_mag"], res["sersic_mag"], rtol=1e-12)


# ------------------------------------- a full disk or Ctrl-C keeps every finished fit
def test_a_full_disk_keeps_the_fits_and_resume_writes_the_missing_parts_and_blocks(tmp_path, monkeypatch):
    import errno
    import os

    from galmoss.flags import Flag

    images, sigmas, mags = _mocks(4, seed=6)
    out, blocks = tmp_path / "out", tmp_path / "blocks"
    real_replace = os.replace
    full = {"from": None}  # the disk fills up with the first part (run.json was written at the start)

    def replace(src, dst, *args, **kw):
        dst = str(dst)
        if full["from"] is None and os.sep + "parts" + os.sep in dst:
            full["from"] = ""
        if full["from"] is not None and dst.startswith(full["from"]):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), dst)
        return real_replace(src, dst, *args, **kw)

    monkeypatch.setattr(os, "replace", replace)

    def dataset():
        return gm.Dataset.from_arrays(images, sigmas, PSF, result_path=out, img_block_path=blocks)

    ds = dataset()
    ds.define_profiles(sersic=_sersic(4))
    fitting = gm.Fitting(ds, batch_size=2, iteration=60, device="cpu", progress=False)
    said = (r"parts of 4 galaxies could not be written .*No space left.*their fits are in Fitting.results; "
            r"free space, then resume with: Fitting.fit\(resume=True\)")
    with pytest.raises(OutputError, match=said):
        fitting.fit()
    assert np.all(np.abs(fitting.results["sersic_mag"] - mags) < 0.05)  # nothing lost
    assert not list((out / "parts").glob("part-*.parquet"))
    # space for parts, still none for image blocks: the parts say which blocks are missing
    full["from"] = str(blocks)
    fitting, res = _run(dataset(), 4, resume=True)
    assert fitting.timing["galaxies"] == 4
    assert np.all(res["flag"] & Flag.block_not_written)
    # the disk freed: the galaxies without a block are fitted again and get their blocks
    monkeypatch.setattr(os, "replace", real_replace)
    fitting, res = _run(dataset(), 4, resume=True)
    assert fitting.timing["galaxies"] == 4 and np.all(res["flag"] == 0)
    assert sorted(p.name for p in blocks.glob("*.fits")) == ["0.fits", "1.fits", "2.fits", "3.fits"]
    assert np.all(np.abs(Table.read(out / "results.fits")["sersic_mag"] - mags) < 0.05)


@pytest.mark.parametrize("error, why", [(KeyboardInterrupt, "interrupted"),
                                        (RuntimeError("boom"), "the run stopped (RuntimeError: boom)")])
def test_ctrl_c_or_a_crash_keeps_the_galaxies_fitted_writes_them_and_says_how_to_resume(tmp_path, monkeypatch, caplog,
                                                                                        error, why):
    import galmoss.pipeline.run as run
    from galmoss.fitting.status import Status

    images, sigmas, mags = _mocks(6, seed=7)
    out = tmp_path / "out"
    real, calls = run.fit_batch_safely, []

    def fit_batch_safely(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise error
        return real(*args, **kw)

    monkeypatch.setattr(run, "fit_batch_safely", fit_batch_safely)
    ds = gm.Dataset.from_arrays(images, sigmas, PSF, result_path=out)
    ds.define_profiles(sersic=_sersic(6))
    fitting = gm.Fitting(ds, batch_size=2, iteration=60, device="cpu", progress=False)
    expected = type(error) if isinstance(error, Exception) else error
    with caplog.at_level(logging.INFO, logger="galmoss"), pytest.raises(expected):
        fitting.fit()
    res = fitting.results
    assert len(res) == 6 and np.all(np.abs(res["sersic_mag"][:2] - mags[:2]) < 0.05)
    assert np.all(np.isnan(res["sersic_mag"][2:])) and np.all(res["status"][2:] == int(Status.NOT_FITTED))
    assert list(res["message"][2:]) == [f"not fitted: {why}"] * 4
    on_disk = Table.read(out / "results.fits")
    np.testing.assert_allclose(on_disk["sersic_mag"], res["sersic_mag"], rtol=1e-12)
    assert f"{why}: 2 of 6 galaxies fitted and kept" in caplog.text
    assert "resume with: Fitting.fit(resume=True)" in caplog.text
    monkeypatch.setattr(run, "fit_batch_safely", real)
    fitting, res = _run(gm.Dataset.from_arrays(images, sigmas, PSF, result_path=out), 6, resume=True)
    assert fitting.timing["galaxies"] == 4 and np.all(np.abs(res["sersic_mag"] - mags) < 0.05)


def test_ctrl_c_on_the_command_line_prints_the_command_that_resumes(tmp_path, monkeypatch, capsys):
    import galmoss.pipeline.run as run

    images, sigmas, _ = _mocks(2, seed=8)
    for i in range(2):
        fits.PrimaryHDU(images[i]).writeto(tmp_path / f"g{i}.fits")
    (tmp_path / "cat.csv").write_text("id,image\ng0,g0.fits\ng1,g1.fits\n")
    job = tmp_path / "job.toml"
    job.write_text('[data]\ncatalog = "cat.csv"\ngalaxy_index = "id"\nimage = "image"\n'
                   '[model.sersic]\nprofile = "Sersic"\n[output]\nfolder = "out"\n')

    def interrupted(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "fit_batch_safely", interrupted)
    assert main(["fit", str(job), "--quiet"]) == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == f"galmoss fit: interrupted; 0 galaxies fitted and kept in {tmp_path / 'out'}; resume with: " \
                  f"galmoss fit {job} --resume"
    assert "resume with: galmoss fit" in (tmp_path / "out" / "fit.log").read_text()
    assert list(Table.read(tmp_path / "out" / "results.fits")["message"]) == ["not fitted: interrupted"] * 2


# ----------------------------------------- configuration errors found before any fit
def _job(tmp_path, extra_fit="", model='[model.sersic]\nprofile = "Sersic"\n'):
    """A job over two FITS cutouts (known magnitudes), results in tmp_path/out."""
    if not (tmp_path / "g0.fits").exists():
        images, sigmas, _ = _mocks(2, seed=9)
        fits.PrimaryHDU(PSF).writeto(tmp_path / "psf.fits")
        for i in range(2):
            fits.PrimaryHDU(images[i]).writeto(tmp_path / f"g{i}.fits")
            fits.PrimaryHDU(sigmas[i]).writeto(tmp_path / f"g{i}_sig.fits")
        (tmp_path / "cat.csv").write_text("id,image,sigma,psf\n" + "".join(
            f"g{i},g{i}.fits,g{i}_sig.fits,psf.fits\n" for i in range(2)))
    job = tmp_path / "job.toml"
    job.write_text('[data]\ncatalog = "cat.csv"\ngalaxy_index = "id"\nimage = "image"\nsigma = "sigma"\n'
                   f'psf = "psf"\n{model}[fit]\ndevice = "cpu"\niteration = 40\n{extra_fit}'
                   '[output]\nfolder = "out"\n')
    return job


def _one_line(capsys, argv, *needles):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    for needle in needles:
        assert needle in err[0], err[0]


def test_n_resample_1_is_refused_before_any_fit_by_the_run_and_the_dry_run(tmp_path, capsys):
    from galmoss.errors import ConfigError

    job = _job(tmp_path, 'uncertainty = "bootstrap"\nn_resample = 1\n')
    for extra in (["--dry-run"], []):
        _one_line(capsys, ["fit", str(job), *extra], "fit.n_resample must be an integer >= 2, got 1")
    assert not (tmp_path / "out" / "parts").exists()  # nothing was fitted
    images, sigmas, _ = _mocks(2)
    ds = gm.Dataset.from_arrays(images, sigmas, PSF)
    ds.define_profiles(sersic=_sersic(2))
    with pytest.raises(ConfigError, match="Fitting.uncertainty: n_resample must be an integer >= 2, got 1"):
        gm.Fitting(ds, device="cpu").uncertainty("bootstrap", n_resample=1)  # said first, before 'call fit()'


def test_an_hdu_given_as_true_is_a_configuration_error_before_any_galaxy_is_read(tmp_path):
    from galmoss.errors import ConfigError

    images, sigmas, _ = _mocks(2)
    for i in range(2):
        fits.PrimaryHDU(images[i]).writeto(tmp_path / f"g{i}.fits")
    ds = gm.Dataset(["a", "b"], [tmp_path / "g0.fits", tmp_path / "g1.fits"], image_hdu=True,
                    result_path=tmp_path / "out")
    ds.define_profiles(sersic=_sersic(2))
    fitting = gm.Fitting(ds, device="cpu", progress=False)
    for call in (fitting.check, fitting.fit):
        with pytest.raises(ConfigError, match=r"image_hdu must be None .*, an int index, an EXTNAME .*, got True"):
            call()
    assert fitting.store is None and not (tmp_path / "out").exists()  # nothing read, fitted or written
    ds.hdus["image"], ds.psf_fwhm, ds.psf_kind = None, [2.0, 2.0], "airy"
    with pytest.raises(ConfigError, match=r"psf_kind='airy'.*kind must be 'moffat' or 'gaussian'"):
        fitting.fit()


def test_a_dry_run_makes_the_checks_a_run_makes_on_its_output_folder(tmp_path, capsys):
    job = _job(tmp_path)
    assert main(["fit", str(job), "--quiet"]) == 0
    parts = sorted((tmp_path / "out" / "parts").glob("part-*.parquet"))
    # another model into the same folder: the dry run refuses it as the run would
    _job(tmp_path, model='[model.sersic]\nprofile = "Sersic"\n[model.sky]\nprofile = "Sky"\n')
    for extra in (["--dry-run"], []):
        _one_line(capsys, ["fit", str(job), "--quiet", *extra], "holds the parts of another run", "--overwrite")
    assert main(["fit", str(job), "--dry-run", "--overwrite"]) == 0
    assert "nothing was fitted" in capsys.readouterr().out
    assert sorted((tmp_path / "out" / "parts").glob("part-*.parquet")) == parts  # a dry run removes nothing
    assert main(["fit", str(job), "--quiet", "--overwrite"]) == 0
    assert "sky_sky_bg" in Table.read(tmp_path / "out" / "results.fits").colnames


# ------------------------------------------------------------- a lost dask worker
def test_a_lost_dask_worker_is_retried_and_a_task_that_keeps_failing_flags_only_its_galaxies(tmp_path, monkeypatch):
    distributed = pytest.importorskip("dask.distributed")
    import galmoss.pipeline.run as run
    from galmoss.flags import Flag
    from tests.helpers import flaky_dask

    images, sigmas, mags = _mocks(6, seed=10)
    out = tmp_path / "out"
    monkeypatch.setattr(run, "fit_chunk", flaky_dask.flaky_fit_chunk)
    monkeypatch.setattr(flaky_dask, "CALLS", {})
    monkeypatch.setattr(flaky_dask, "ALWAYS_LOST", {4})  # chunks of 4 galaxies: [0..3] then [4, 5]
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) \
            as cluster, distributed.Client(cluster) as client:
        real_scatter, sent = client.scatter, []

        def scatter(*args, **kw):  # the worker is lost while the data are sent out, once
            sent.append(1)
            if len(sent) == 1:
                raise OSError("worker lost while receiving")
            return real_scatter(*args, **kw)

        monkeypatch.setattr(client, "scatter", scatter)
        ds = gm.Dataset.from_arrays(images, sigmas, PSF, result_path=out)
        ds.define_profiles(sersic=_sersic(6))
        res = gm.Fitting(ds, batch_size=1, iteration=60, device="cpu", progress=False, client=client).fit()
    assert len(sent) == 2 and flaky_dask.CALLS[0] == 2  # sent again; the first chunk ran again after its loss
    assert flaky_dask.CALLS[4] == 1 + run.TASK_RETRIES
    assert np.all(np.abs(res["sersic_mag"][:4] - mags[:4]) < 0.05) and np.all(res["flag"][:4] == 0)
    assert np.all(res["flag"][4:] == int(Flag.fit_error)) and np.all(np.isnan(res["sersic_mag"][4:]))
    assert all("dask task failed (KilledWorker" in m for m in res["message"][4:])
    monkeypatch.undo()
    # the lost galaxies are in no part: a resume (here without dask) fits them
    fitting, res = _run(gm.Dataset.from_arrays(images, sigmas, PSF, result_path=out), 6, resume=True)
    assert fitting.timing["galaxies"] == 2 and np.all(np.abs(res["sersic_mag"] - mags) < 0.05)


def test_check_finds_the_output_folder_mistakes_a_run_finds_and_writes_nothing(tmp_path):
    images, sigmas, _ = _mocks(2)
    for i in range(2):
        fits.PrimaryHDU(images[i]).writeto(tmp_path / f"{i}.fits")
    ds = gm.Dataset(["0", "1"], [tmp_path / "0.fits", tmp_path / "1.fits"], img_block_path=tmp_path,
                    result_path=tmp_path / "new" / "out")
    ds.define_profiles(sersic=_sersic(2))
    fitting = gm.Fitting(ds, device="cpu", progress=False)
    for call in (fitting.check, fitting.fit):  # the image blocks would replace the cutouts
        with pytest.raises(OutputError, match=r"image block of galaxy '0' would be .*0.fits', which is an input"):
            call()
    ds.img_block_path = None
    (tmp_path / "file").write_text("x")
    ds.result_path = tmp_path / "file" / "out"
    with pytest.raises(OutputError, match="is not a folder you may write to"):
        fitting.check()
    ds.result_path = tmp_path / "new" / "out"
    assert fitting.check().n_free == 7 and not (tmp_path / "new").exists()  # checked, nothing written


def test_a_resume_with_options_that_change_the_fit_is_refused_and_one_with_other_speed_options_is_not(tmp_path):
    """run.json stores the options; resume compares those that change the fitted values (dtype, iteration, ...),
    naming them, and lets batch_size or threads differ."""
    import galmoss as gm

    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:24, :24]
    images = np.exp(-((xx - 11.5) ** 2 + (yy - 11.5) ** 2) / 8.0)[None] * np.ones((3, 1, 1)) + rng.normal(0, 0.01, (3, 24, 24))

    def run(**options):
        ds = gm.Dataset.from_arrays(images, np.full(images.shape, 0.01), result_path=str(tmp_path / "out"))
        ds.define_profiles(g=gm.lp.Gaussian(cen_x=gm.p(12.5), cen_y=gm.p(12.5), pa=gm.p(0.0), axis_r=gm.p(0.9),
                                            fwhm=gm.p(4.0), mag=gm.p(10.0, M0=22.5)))
        return gm.Fitting(ds, device="cpu", progress=False, **options)

    run(batch_size=2).fit()
    run(batch_size=3, threads=1).fit(resume=True)  # speed only: resumed
    with pytest.raises(ValueError, match=r"other options \(dtype 'torch.float32' -> 'torch.float64'"):
        run(dtype="float64").fit(resume=True)
