"""The free-form radial profile against GalSim Sersics: pulls of its values and of the geometry.

``python benchmarks/validate_free_form.py [--repeats R] [--snr S]`` prints a markdown table
(docs/validation.md, "The free-form radial profile"). For each half-light radius, PSF and
number of radii K: GalSim Sersics of n = 1, 2.5, 4 (q 0.6, 0.8, 0.7 at r_e = 3 and 6 px;
0.5, 0.9, 0.7 at 12 px), R noise realisations each, fitted by ``gm.lp.FreeForm`` with K
log-spaced radii over 0.3-5 r_e, everything free (tests/helpers/free_form_mocks.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.free_form_mocks import fit_free_form, interpolation_error  # noqa: E402

CASES = [  # (r_e, cutout, psf, K)
    (3.0, 64, "moffat", 8), (6.0, 96, "moffat", 8), (12.0, 128, "moffat", 8),
    (6.0, 96, "gaussian", 8), (6.0, 96, "moffat", 5), (6.0, 96, "moffat", 12),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--snr", type=float, default=200.0, help="peak S/N (peak pixel over the noise sigma)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print("| r_e (px) | PSF | K | n | node pulls: mean, std, max abs | largest bias / error (node) | interpolation (dex) "
          "vs smallest error | pulls between the radii: mean, std | whitened chi2 / K of the values: mean (max) | mag pulls mean, std | q, PA, centre pulls std | s per galaxy |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for re, size, psf, k in CASES:
        qs = (0.5, 0.9, 0.7) if re > 10 else (0.6, 0.8, 0.7)
        galaxies = [(1.0, re, qs[0]), (2.5, re, qs[1]), (4.0, re, qs[2])]
        t0 = time.time()
        with tempfile.TemporaryDirectory() as out:
            res, pulls, geometry, nodes, radii, _ = fit_free_form(galaxies, re=re, k=k, repeats=args.repeats, size=size,
                                                                  peak_snr=args.snr, seed=int(re * 10 + k), psf=psf,
                                                                  result_path=out)
        per = (time.time() - t0) / len(res)
        err = np.asarray(res["f_log_sb_err"])
        for j, (n, _, _) in enumerate(galaxies):
            rows = slice(j * args.repeats, (j + 1) * args.repeats)
            p = pulls[rows]
            bias = p.mean(0)
            worst = int(np.argmax(np.abs(bias)))
            interp = interpolation_error(n, re, radii)[: k - 1].max()
            g = {name: v[rows] for name, v in geometry.items()}
            geo = ", ".join(f"{np.std(g[name]):.2f}" for name in ("axis_r", "pa", "cen_x"))
            print(f"| {re:g} | {psf} | {k} | {n:g} | {p.mean():+.2f}, {p.std():.2f}, {np.abs(p).max():.1f} | "
                  f"{bias[worst]:+.2f} ({nodes[worst] / re:.2f} r_e) | {interp:.4f} vs {np.median(err[rows], 0).min():.4f} | "
                  f"{g['between'].mean():+.2f}, {g['between'].std():.2f} | "
                  f"{g['chi2_nodes'].mean():.2f} ({g['chi2_nodes'].max():.2f}) | "
                  f"{np.mean(g['mag']):+.2f}, {np.std(g['mag']):.2f} | {geo} | {per:.1f} |", flush=True)
        # the same galaxies without noise: the bias of the profile's form (core, spline, tail), in errors
        with tempfile.TemporaryDirectory() as out:
            _, clean_pulls, clean_geo, *_ = fit_free_form(galaxies, re=re, k=k, repeats=1, size=size, peak_snr=args.snr,
                                                         seed=0, psf=psf, result_path=out, noise=False)
        for j, (n, _, _) in enumerate(galaxies):
            print(f"<!-- noiseless n = {n:g}: node bias / error max {np.abs(clean_pulls[j]).max():.2f}, "
                  f"between max {np.abs(clean_geo['between'][j]).max():.2f}, whitened chi2 / K "
                  f"{clean_geo['chi2_nodes'][j]:.2f}, mag {clean_geo['mag'][j]:+.2f} -->", flush=True)
        print(f"<!-- converged {int(np.sum(res['converged']))}/{len(res)}, flags {sorted(set(np.asarray(res['flag']).tolist()))} -->",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
