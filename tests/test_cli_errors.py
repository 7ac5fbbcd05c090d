"""The command line speaks to people: a user's mistake is one line on stderr naming it and the fix, exit 2."""

from __future__ import annotations

import errno
import json
import pathlib
import sys

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from galmoss.cli import main
from galmoss.errors import OutputError
from galmoss.io.naming import open_append


@pytest.fixture
def job(tmp_path):
    """A valid job file over two tiny cutouts (nothing here is fitted)."""
    img = np.zeros((16, 16), dtype=">f4")
    img[7:9, 7:9] = 1.0
    for i in range(2):
        fits.PrimaryHDU(img).writeto(tmp_path / f"g{i}.fits")
    (tmp_path / "cat.csv").write_text("id,image\ng0,g0.fits\ng1,g1.fits\n")
    path = tmp_path / "job.toml"
    path.write_text('[data]\ncatalog = "cat.csv"\ngalaxy_index = "id"\nimage = "image"\n'
                    '[model.sersic]\nprofile = "Sersic"\n[output]\nfolder = "out"\n')
    return path


def _one_line_error(capsys, argv, *needles):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_shard_out_of_range(job, capsys):
    _one_line_error(capsys, ["fit", str(job), "--shard", "5/4"], "--shard 5/4", "between 1 and N (4)")
    _one_line_error(capsys, ["fit", str(job), "--shard", "three"], "--shard 'three'", "e.g. --shard 3/8")


def test_dask_with_no_workers(job, capsys):
    pytest.importorskip("dask.distributed")
    _one_line_error(capsys, ["fit", str(job), "--dask", "local:0"], "--dask local:0", "at least 1")


def test_dask_not_installed_names_the_extra(job, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # import fails as if dask were absent
    _one_line_error(capsys, ["fit", str(job), "--dask", "local:2"], 'pip install "galmoss[distributed]"')


def test_output_folder_that_cannot_be_written(job, capsys, monkeypatch):
    real = pathlib.Path.mkdir

    def refuse(self, *args, **kwargs):  # a read-only folder (tests may run as root, which chmod cannot stop)
        if self.name == "out":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", refuse)
    _one_line_error(capsys, ["fit", str(job)], f"output folder '{job.parent / 'out'}'", "Permission denied",
                    "choose another [output] folder")


def test_job_file_not_utf8(tmp_path, capsys):
    path = tmp_path / "job.toml"
    path.write_bytes(b'[data]\ncatalog = "caf\xe9.csv"\n')  # Latin-1
    _one_line_error(capsys, ["fit", str(path)], f"job file '{path}' is not UTF-8", "save it as UTF-8")


def test_job_file_missing_and_bad_key(job, tmp_path, capsys):
    _one_line_error(capsys, ["fit", str(tmp_path / "nope.toml")], "nope.toml")
    job.write_text(job.read_text().replace('image = "image"', 'image = "img"'))
    _one_line_error(capsys, ["fit", str(job)], "'img'", "columns are id, image")


def test_collate_on_broken_folders(tmp_path, capsys):
    _one_line_error(capsys, ["collate", str(tmp_path / "nowhere")], "is not a folder")
    (tmp_path / "empty").mkdir()
    _one_line_error(capsys, ["collate", str(tmp_path / "empty")], "empty")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "run.json").write_text(json.dumps({"columns": []}))  # no galaxies file: a run cut short
    _one_line_error(capsys, ["collate", str(broken)], f"'{broken}' is not a complete galmoss result folder")
    (broken / "run.json").write_text("{ not json")
    _one_line_error(capsys, ["collate", str(broken)], "broken")


def test_report_and_plot_on_foreign_files(tmp_path, capsys):
    fits.PrimaryHDU(np.zeros((4, 4))).writeto(tmp_path / "image.fits")
    Table({"ra": [1.0, 2.0]}).write(tmp_path / "other.csv")
    _one_line_error(capsys, ["report", str(tmp_path / "image.fits")], "is a file, not a galmoss results folder")
    _one_line_error(capsys, ["plot", str(tmp_path / "other.csv"), "--galaxy", "a"], "is a file")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    Table({"ra": [1.0, 2.0]}).write(foreign / "results.fits")
    _one_line_error(capsys, ["report", str(foreign)], "no 'galaxy_index' column", "written by galmoss")
    _one_line_error(capsys, ["plot", str(foreign / "results.fits"), "--galaxy", "a"], "no 'galaxy_index' column")
    (foreign / "results.fits").write_bytes(b"SIMPLE  = garbage" * 10)
    _one_line_error(capsys, ["report", str(foreign)], f"cannot read the galmoss results in '{foreign}'")


def test_debug_shows_the_traceback_and_version_prints(job, capsys):
    assert main(["--debug", "fit", str(job), "--shard", "5/4"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("galmoss fit: --shard 5/4")
    assert main(["fit"]) == 2  # an argparse error: one line too
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "required: job" in err and "see galmoss fit --help" in err
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("galmoss 3.")


def test_every_option_shows_its_default_in_help(capsys):
    for command in ("demo", "fit", "collate", "plot", "report", "flags"):
        assert main([command, "--help"]) == 0
        out = capsys.readouterr().out
        # every option but --help carries "(default: ...)" (a required argument has none)
        entries = [line for line in out.split("options:")[-1].splitlines()
                   if line.startswith("  -") and "--help" not in line]
        assert out.count("(default:") >= len(entries), (command, out)
        assert command == "flags" or entries


# ---- writes stay where the user named them


def test_fit_log_is_never_written_through_a_symlink(job, tmp_path, capsys):
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "fit.log").symlink_to(outside)
    _one_line_error(capsys, ["fit", str(job)], "fit.log' is a symbolic link", "remove the link")
    assert outside.read_text() == "keep me\n"
    with pytest.raises(OutputError, match="symbolic link"):
        open_append(tmp_path / "out" / "fit.log")
    with open_append(tmp_path / "plain.log") as fh:  # a plain file is appended to
        fh.write("a\n")
    with open_append(tmp_path / "plain.log") as fh:
        fh.write("b\n")
    assert (tmp_path / "plain.log").read_text() == "a\nb\n"


def test_plot_default_name_is_the_safe_name(tmp_path, capsys, monkeypatch):
    import galmoss.plot

    written = {}
    monkeypatch.setattr(galmoss.plot, "plot_fit", lambda results, galaxy, blocks, out, dpi: written.update(out=out))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "res").mkdir()
    assert main(["plot", "res", "--galaxy", "../../etc/x"]) == 0
    out = written["out"]
    assert len(out.parts) == 1 and out.name.endswith("_fit.png") and not out.name.startswith(".")  # one file here
    assert main(["plot", "res", "--galaxy", "J1621"]) == 0
    assert str(written["out"]) == "J1621_fit.png"
