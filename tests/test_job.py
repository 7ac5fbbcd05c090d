"""``galmoss fit JOB.toml``: the issue's job file as written, dry runs, bad job files named before any fit."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from galmoss.cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "survey_job"


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    folder = tmp_path_factory.mktemp("survey")
    shutil.copy(EXAMPLE / "job.toml", folder / "job.toml")
    sys.path.insert(0, str(EXAMPLE))
    try:
        import make_catalog
    finally:
        sys.path.remove(str(EXAMPLE))
    make_catalog.make(folder, 8, size=40)
    return folder


def test_the_example_job_runs_as_written_and_recovers_the_truth(survey, capsys):
    assert main(["fit", str(survey / "job.toml"), "--quiet"]) == 0
    res = Table.read(survey / "results" / "results.fits")
    truth = Table.read(survey / "truth.csv")
    assert list(res["galaxy_index"]) == list(truth["id"])
    pull = (res["sersic_mag"] - truth["mag"]) / res["sersic_mag_err"]
    assert np.all(np.abs(pull) < 5) and np.all(res["converged"])
    assert np.all(np.abs(res["sersic_eff_r"] / truth["re"] - 1) < 0.1)
    assert (survey / "results" / "fit.log").read_text().strip()
    assert res["sersic_mag"].meta["M0"] == 22.5
    # the example writes image blocks, so its report shows every galaxy it picks
    assert sorted(p.name for p in (survey / "image_blocks").iterdir()) == [f"{n}.fits" for n in truth["id"]]
    assert main(["report", str(survey / "results")]) == 0
    page = (survey / "results" / "report.html").read_text()
    shown = re.findall(r"<b>(\w+)</b>", page.split("Worst fits", 1)[1])
    assert shown and "no image block" not in page
    assert page.count('<img class="panel"') == len(shown)  # a galaxy is shown under every criterion it meets


def test_dry_run_prints_the_model_and_fits_nothing(survey, capsys, tmp_path):
    job = tmp_path / "job.toml"
    job.write_text((survey / "job.toml").read_text().replace('catalog = "catalog.csv"',
                                                              f'catalog = "{survey / "catalog.csv"}"')
                   .replace('folder = "results"', 'folder = "dry"'))
    assert main(["fit", str(job), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "component sersic: Sersic" in out and "8 values" in out and "nothing was fitted" in out
    assert not (tmp_path / "dry" / "results.fits").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        (('profile = "Sersic"', 'profile = "Sersik"'), "no light profile is registered as 'Sersik'"),
        (('cen_x = { column = "x0" }', 'cen_x = { column = "x_0" }'), "column 'x_0' is not in the catalogue"),
        (("batch_size = 64", "batch_sise = 64"), "unknown key 'batch_sise' in \\[fit\\]"),
        (("iteration = 200", 'iteration = "200"'), "fit.iteration must be an integer >= 1, got '200'"),
        (("iteration = 200", 'iteration = 200\nthreads = "all"'), "fit.threads must be an integer >= 1, got 'all'"),
        (('ser_n = { column = "n", log = true }', 'ser_n = { column = "n", log = "yes" }'),
         "model.sersic.ser_n.log = 'yes' must be true or false"),
        (('eff_r = { column = "re" }', 'eff_r = { share = "disk.eff_r" }'), "share = 'disk.eff_r' names no parameter"),
        (('eff_r = { column = "re" }', 'radius = { column = "re" }'), "Sersic has no parameter 'radius'"),
    ],
)
def test_a_bad_job_file_is_named_before_any_fit(survey, tmp_path, capsys, change, message):
    text = (survey / "job.toml").read_text().replace('catalog = "catalog.csv"', f'catalog = "{survey / "catalog.csv"}"')
    assert change[0] in text
    job = tmp_path / "job.toml"
    job.write_text(text.replace(change[0], change[1]))
    assert main(["fit", str(job)]) == 2
    err = capsys.readouterr().err
    assert str(job) in err
    import re

    assert re.search(message, err), err
    assert not (tmp_path / "results").exists()


def test_a_catalogue_row_with_missing_files_is_flagged_and_the_run_goes_on(survey, tmp_path):
    rows = Table.read(survey / "catalog.csv")
    for col in ("image", "sigma", "psf"):
        rows[col] = [str(survey / p) for p in rows[col]]
    images = list(rows["image"])
    images[1] = str(tmp_path / "missing.fits")
    rows["image"] = images
    rows[:3].write(tmp_path / "catalog.csv")
    (tmp_path / "job.toml").write_text((survey / "job.toml").read_text())
    assert main(["fit", str(tmp_path / "job.toml"), "--quiet"]) == 0
    res = Table.read(tmp_path / "results" / "results.csv")
    assert res["flag"][1] & 128 and "missing.fits" in res["message"][1]
    assert np.isfinite(res["sersic_mag"][0]) and np.isfinite(res["sersic_mag"][2])


def test_duplicate_galaxy_names_in_a_catalogue_are_an_error(survey, tmp_path, capsys):
    rows = Table.read(survey / "catalog.csv")[:2]
    rows["id"][1] = rows["id"][0]
    for col in ("image", "sigma", "psf"):
        rows[col] = [str(survey / p) for p in rows[col]]
    rows.write(tmp_path / "catalog.csv")
    (tmp_path / "job.toml").write_text((survey / "job.toml").read_text())
    assert main(["fit", str(tmp_path / "job.toml")]) == 2
    assert "is given twice" in capsys.readouterr().err


def test_mask_auto_and_psf_fwhm_in_a_job_file(survey, tmp_path):
    from galmoss.pipeline.job import load_job

    text = (survey / "job.toml").read_text().replace('catalog = "catalog.csv"', f'catalog = "{survey / "catalog.csv"}"')
    job = tmp_path / "job.toml"
    job.write_text(text.replace('psf = "psf"', 'mask = "auto"\npsf_fwhm = 2.5'))
    loaded = load_job(job)
    assert loaded.dataset.auto_mask
    gal = loaded.dataset.load(0)
    assert gal.psf is not None and "FWHM 2.5 px" in " ".join(gal.messages)  # a PSF made from the FWHM


def test_neighbours_fit_in_a_job_file_and_its_mistakes(survey, tmp_path, capsys):
    from galmoss.pipeline.job import load_job

    text = (survey / "job.toml").read_text().replace('catalog = "catalog.csv"', f'catalog = "{survey / "catalog.csv"}"')
    job = tmp_path / "job.toml"
    job.write_text(text.replace('psf = "psf"', 'psf = "psf"\nmask = "auto"\nneighbours = "fit"\nmax_neighbours = 2'))
    loaded = load_job(job)
    assert loaded.dataset.neighbours == "fit" and loaded.dataset.max_neighbours == 2
    job.write_text(text.replace('psf = "psf"', 'psf = "psf"\nneighbours = "fit"'))
    assert main(["fit", str(job)]) == 2
    assert 'needs mask = "auto"' in capsys.readouterr().err
    job.write_text(text.replace('psf = "psf"', 'psf = "psf"\nmask = "auto"\nneighbours = "model"'))
    assert main(["fit", str(job)]) == 2
    assert 'must be "mask" or "fit"' in capsys.readouterr().err


@pytest.mark.parametrize(
    "change, message",
    [
        # each of these passed the dry run and then died in gm.Fitting with a traceback
        (("batch_size = 64", 'batch_size = 64\ndevice = "cuda"'), "fit.device='cuda' but this machine has no CUDA"),
        (("batch_size = 64", "batch_size = 0"), "fit.batch_size must be an integer >= 1, got 0"),
        (("batch_size = 64", 'batch_size = 64\nlikelihood = "chi3"'), "likelihood='chi3': choose one of 'chi2'"),
        (("batch_size = 64", "batch_size = 64\nlm_settings = { ftool = 1e-8 }"),
         "unknown key 'ftool' in fit.lm_settings"),
        (("batch_size = 64", "batch_size = 64\nlm_settings = { ftol = -1.0 }"), "fit.lm_settings: LMSettings"),
        (("batch_size = 64", "batch_size = 64\nprogress = true"), "unknown key 'progress' in \\[fit\\]"),
    ],
)
def test_dry_run_runs_the_checks_a_run_runs(survey, tmp_path, capsys, change, message):
    if "cuda" in change[1]:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA: device = 'cuda' is valid here")
    text = (survey / "job.toml").read_text().replace('catalog = "catalog.csv"', f'catalog = "{survey / "catalog.csv"}"')
    job = tmp_path / "job.toml"
    job.write_text(text.replace(change[0], change[1]))
    assert main(["fit", str(job), "--dry-run"]) == 2
    err = capsys.readouterr().err
    import re

    assert re.search(message, err), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err  # one line, no traceback
    assert not (tmp_path / "results").exists()


def test_a_job_reaches_the_optimiser_and_renderer_settings(survey, tmp_path, capsys):
    text = (survey / "job.toml").read_text().replace('catalog = "catalog.csv"', f'catalog = "{survey / "catalog.csv"}"')
    job = tmp_path / "job.toml"
    job.write_text(text.replace("iteration = 200", "lm_settings = { max_iterations = 150, ftol = 1e-7 }\n"
                                                   "render_settings = { radial_nodes = 96 }\njacobian_chunk = 8"))
    from galmoss.pipeline.job import load_job

    loaded = load_job(job)
    assert loaded.options.iteration == 150 and loaded.options.lm_settings.ftol == 1e-7
    assert loaded.options.render_settings.radial_nodes == 96 and loaded.options.jacobian_chunk == 8
    assert main(["fit", str(job), "--dry-run"]) == 0


def test_a_job_gives_a_parameter_a_prior_and_switches_the_preset_on(survey, tmp_path):
    """[model.<name>] eff_r = { column = ..., prior = { mu, sigma } } is a gm.prior.Normal on that parameter;
    [fit] priors = "sourcextractor" the preset; a prior without sigma, or with an unknown key, is refused naming it."""
    from galmoss.pipeline.job import JobError, load_job

    text = (survey / "job.toml").read_text().replace('catalog = "catalog.csv"', f'catalog = "{survey / "catalog.csv"}"')
    job = tmp_path / "job.toml"
    job.write_text(text.replace('eff_r = { column = "re" }', 'eff_r = { column = "re", prior = { mu = 1.5, sigma = 0.4 } }')
                   .replace("iteration = 200", 'iteration = 200\npriors = "sourcextractor"'))
    loaded = load_job(job)
    prior = loaded.dataset.profiles["sersic"].eff_r.prior
    assert (float(prior.mu[0]), float(prior.sigma[0]), prior.space) == (1.5, 0.4, "auto")
    assert loaded.options.priors == "sourcextractor"
    for bad, match in (("prior = { mu = 1.5 }", "needs mu and sigma"), ("prior = { mu = 1.5, sigma = 0.4, wide = 1 }", "wide")):
        job.write_text(text.replace('eff_r = { column = "re" }', f'eff_r = {{ column = "re", {bad} }}'))
        with pytest.raises(JobError, match=match):
            load_job(job)
