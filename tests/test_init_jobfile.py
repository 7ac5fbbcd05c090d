"""galmoss init and docs/jobfile.md: every key the job parser accepts, with its default, and nothing else."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import numpy as np
from astropy.io import fits

from galmoss.cli import main
from galmoss.io import jobfile
from galmoss.pipeline import job as job_module
from galmoss.pipeline.job import load_job

DOCS = Path(__file__).resolve().parents[1] / "docs" / "jobfile.md"


def _keys(section: str) -> set[str]:
    return {k.name for k in jobfile.KEYS if k.section == section}


def test_the_key_list_is_the_parsers():
    assert _keys("data") == job_module._DATA_KEYS
    assert _keys("fit") == job_module._FIT_KEYS
    assert _keys("output") == job_module._OUTPUT_KEYS
    assert _keys("parameter") == job_module._PARAM_KEYS
    assert _keys("data.bands.<name>") == job_module._BAND_KEYS
    assert {k.section for k in jobfile.KEYS} - {"model.<name>", "data.bands.<name>"} <= job_module._SECTIONS | {"parameter"}


def test_docs_jobfile_is_generated_from_the_list_and_names_every_key():
    text = DOCS.read_text(encoding="utf-8")
    assert text == jobfile.jobfile_markdown(), "regenerate: python -m galmoss.io.jobfile > docs/jobfile.md"
    documented = set(re.findall(r"^\| `([^`]+)` \|", text, flags=re.M))
    accepted = job_module._DATA_KEYS | job_module._FIT_KEYS | job_module._OUTPUT_KEYS | job_module._PARAM_KEYS
    assert accepted | {"profile"} <= documented


def test_the_template_is_valid_toml_naming_every_key_with_its_default():
    text = jobfile.job_template()
    doc = tomllib.loads(text)
    for key in jobfile.KEYS:
        if key.section in ("data", "fit", "output"):
            if key.name in ("catalog", "image"):  # the catalogue's, set
                assert key.name in doc["data"]
            elif key.default:  # set to its default
                assert doc[key.section][key.name] == tomllib.loads(f"x = {key.default}")["x"], key
            else:  # commented out, with an example
                assert key.name not in doc[key.section] and f"# {key.name} = {key.example}" in text, key
        elif key.section == "parameter":
            assert f"#   {key.name} = " in text
    assert doc["model"]["sersic"]["profile"] == "Sersic"


def test_init_with_images_writes_a_catalogue_and_a_job_that_loads(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cutouts").mkdir()
    img = np.zeros((16, 16), dtype=">f4")
    img[7:9, 7:9] = 1.0
    for name in ("00123", "1e5", "J1621+3220"):
        fits.PrimaryHDU(img).writeto(tmp_path / "cutouts" / f"{name}.fits")
    assert main(["init", "--images", "cutouts/*.fits", "--job", "run/job.toml", "--catalog", "cat.csv"]) == 0
    job = load_job(tmp_path / "run" / "job.toml")
    assert job.dataset.names == ["00123", "1e5", "J1621+3220"]
    assert Path(job.dataset.image_paths[0]).resolve() == (tmp_path / "cutouts" / "00123.fits").resolve()
    assert job.fit["batch_size"] == 64 and job.output == tmp_path / "run" / "results"
    # never over an existing file
    before = (tmp_path / "run" / "job.toml").read_text()
    assert main(["init", "--job", "run/job.toml"]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "run" / "job.toml").read_text() == before
    assert main(["init", "--images", "nothing/*.fits", "--job", "other.toml"]) == 2
    assert "matches no file" in capsys.readouterr().err and not (tmp_path / "other.toml").exists()
