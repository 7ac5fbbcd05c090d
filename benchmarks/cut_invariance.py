"""Does a galaxy's fit depend on the batch it is fitted in? The largest difference, in errors.

Each model is fitted to the same eight GalSim mocks (the test suite's: Moffat PSF,
S/N 20-500, catalogue-like starts) with batch sizes 1, 3 and 8, one torch thread,
and every reported value of the batch-of-1 and batch-of-3 runs is compared with
the batch-of-8 run: the largest |difference| / error over galaxies and values
(0: bit for bit alike), and whether any flag differs. The float64 polish is off,
as it is on the CPU by default (``FitSettings.polish``); ``--polish`` turns it on.

Usage::

    python benchmarks/cut_invariance.py
    python benchmarks/cut_invariance.py --polish
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import galmoss as gm  # noqa: E402
from tests.helpers.mocks import ZERO_POINT, bulge_disk_dataset, bulge_disk_mocks, single_sersic_mocks  # noqa: E402


def _sersic(m, psf=True):
    s = m.start
    ds = gm.Dataset.from_arrays(m.images, m.sigmas, m.psfs if psf else None)
    ds.define_profiles(sersic=gm.lp.Sersic(
        cen_x=gm.p(s["cx"]), cen_y=gm.p(s["cy"]), pa=gm.p(s["pa"], angle=True), axis_r=gm.p(s["q"]),
        eff_r=gm.p(s["re"]), mag=gm.p(s["mag"], M0=ZERO_POINT), ser_n=gm.p(s["n"])))
    return ds


def _auto(m):
    ds = gm.Dataset.from_arrays(m.images, m.sigmas, m.psfs)
    ds.define_profiles(galaxy=gm.lp.Sersic(mag=gm.p(M0=ZERO_POINT)), sky=gm.lp.Sky())
    return ds



def _worst(table, reference) -> float:
    worst = 0.0
    for c in reference.colnames:
        if reference[c].dtype.kind != "f" or c + "_err" not in reference.colnames:
            continue
        x, y = np.asarray(table[c], float), np.asarray(reference[c], float)
        err = np.asarray(reference[c + "_err"], float)
        differ = ~((x == y) | (np.isnan(x) & np.isnan(y)))
        if differ.any():
            d = np.abs(x - y)[differ] / err[differ]
            worst = max(worst, float(np.nanmax(np.where(np.isfinite(d), d, np.inf))))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polish", action="store_true", help="end every fit with the float64 polish")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.polish:
        import galmoss.fitting.batch as batch

        batch.polishable = lambda model, settings: settings.method == "lm" and settings.dtype == "float32"

    sersics = single_sersic_mocks(8, seed=11, shape=(48, 48), re_range=(1.5, 8.0))
    bulge_disks = bulge_disk_mocks(8, seed=3, shape=(64, 64))
    cases = [
        ("single Sersic, PSF, catalogue starts", lambda: _sersic(sersics), {}),
        ("single Sersic, no PSF", lambda: _sersic(sersics, psf=False), {}),
        ("Sersic + sky, image-based starts", lambda: _auto(sersics), {}),
        ("the same with priors='sourcextractor'", lambda: _auto(sersics), {"priors": "sourcextractor"}),
        ("the same with the PSF given as 3x finer", lambda: _auto(sersics),
         {"render_settings": gm.RenderSettings(psf_oversampling=3)}),
        ("bulge + disk, restarts on", lambda: bulge_disk_dataset(bulge_disks), {}),
    ]
    print("| model | batch 1 against 8 | batch 3 against 8 | flags alike |")
    print("|---|---|---|---|")
    for name, make, options in cases:
        runs = {}
        for b in (1, 3, 8):
            fitting = gm.Fitting(make(), batch_size=b, progress=False, **options)
            fitting.fit()
            runs[b] = fitting.uncertainty()
        ref = runs[8]
        flags = all(np.array_equal(np.asarray(runs[b]["flag"]), np.asarray(ref["flag"])) for b in (1, 3))
        print(f"| {name} | {_worst(runs[1], ref):.1e} | {_worst(runs[3], ref):.1e} | {'yes' if flags else 'no'} |",
              flush=True)


if __name__ == "__main__":
    main()
