"""The command line, in-process."""

from __future__ import annotations

from astropy.table import Table

from galmoss.cli import main


def test_demo_fits_generated_galaxies_end_to_end(tmp_path, capsys):
    code = main(["demo", "--galaxies", "4", "--size", "40", "--batch-size", "4", "--output", str(tmp_path), "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0
    assert "4/4 converged" in out
    table = Table.read(tmp_path / "results.csv", format="ascii.csv")
    assert len(table) == 4 and all(str(v) == "True" for v in table["converged"])
    # pulls of the printed values against the truth are those of honest errors
    pulls = [float(line.split()[-1]) for line in out.splitlines() if line.startswith("demo0") and len(line.split()) == 6]
    assert len(pulls) == 12 and max(abs(p) for p in pulls) < 4.5
    assert len(list((tmp_path / "image_blocks").glob("*.fits"))) == 4
    # a galaxy with a neighbour of equal brightness, fitted with no hand-made mask (truth r_e 5, mag 17)
    line = next(x for x in out.splitlines() if x.strip().startswith("auto_mask + neighbours='fit'"))
    r_e, mag, n_fitted = float(line.split()[-5]), float(line.split()[-4]), int(line.split()[-1])
    assert abs(r_e / 5.0 - 1) < 0.05 and abs(mag - 17.0) < 0.05 and n_fitted == 1
    line = next(x for x in out.splitlines() if x.strip().startswith("no mask"))
    assert float(line.split()[-5]) > 6.0  # the comparison: without the neighbour's component r_e is far off
    # the demo ends with its report, named on the last line (the report itself: tests/test_plot.py)
    assert out.strip().splitlines()[-1] == f"report: {tmp_path / 'report.html'}"
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    cards = page.count("class='card'")  # every galaxy is among the highest reduced chi2; flags may add cards
    assert cards >= 4 and page.count("<img ") == 2 + cards  # two figures, and a picture on every card


def test_flags_lists_and_decodes(capsys):
    assert main(["flags"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "no_convergence" in lines[0]
    # one column for the names, however long: every description starts at the same place
    import re

    starts = {re.match(r"^\s*\d+  \S+\s+", line).end() for line in lines}
    assert len(starts) == 1, starts
    assert main(["flags", "5"]) == 0
    assert capsys.readouterr().out.strip() == "no_convergence, no_covariance"
