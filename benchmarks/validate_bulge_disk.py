"""Two-component fits that reach the right minimum (issue 8, item 8): bulge + disk from catalogue starts.

GalSim bulge (n = 4) + disk (n = 1) mocks sharing a centre, B/T 0.1-0.8, half-light
S/N 20-500 (``tests/helpers/mocks.py``), starts perturbed as a catalogue's (flux and
r_e 10-30 %, q 0.05-0.15, PA 5-20 degrees, centre 0.5-2 px); both Sersic indices
free (started at 4 and 1). Success is the test of docs/validation.md: chi2 within
25 of the true model's. Each failure is described: bulge and disk traded places
(the "bulge" ends larger than the disk), a component at a bound or at q = 1, a
collapsed component (r_e < 0.5 px or < 2 % of the flux), an index run away.

``--swapped`` starts each component with the other's (perturbed) shape and flux:
the traded places a catalogue's wrong labels give.

Usage::

    python benchmarks/validate_bulge_disk.py --count 100 --seed 31 [--no-restarts] [--swapped] [--fixed-n]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import galmoss as gm  # noqa: E402
from galmoss.auto.psf import measure_fwhm  # noqa: E402
from galmoss.flags import decode  # noqa: E402
from tests.helpers.mocks import ZERO_POINT, bulge_disk_mocks  # noqa: E402


def fit(mocks, restarts=True, free_n=True, batch_size=50, swapped=False):
    s = mocks.start
    b, d = ("d", "b") if swapped else ("b", "d")  # swapped: each component starts with the other's shape and flux
    xc, yc = gm.p(s["cx"]), gm.p(s["cy"])
    bulge = gm.lp.Sersic(cen_x=xc, cen_y=yc, pa=gm.p(s[f"pa_{b}"]), axis_r=gm.p(s[f"q_{b}"]), eff_r=gm.p(s[f"re_{b}"]),
                         mag=gm.p(s[f"mag_{b}"], M0=ZERO_POINT), ser_n=gm.p(4.0, fit=free_n))
    disk = gm.lp.Sersic(cen_x=xc, cen_y=yc, pa=gm.p(s[f"pa_{d}"]), axis_r=gm.p(s[f"q_{d}"]), eff_r=gm.p(s[f"re_{d}"]),
                        mag=gm.p(s[f"mag_{d}"], M0=ZERO_POINT), ser_n=gm.p(1.0, fit=free_n))
    ds = gm.Dataset.from_arrays(mocks.images, mocks.sigmas, mocks.psfs)
    ds.define_profiles(bulge=bulge, disk=disk)
    fitting = gm.Fitting(ds, batch_size=batch_size, iteration=200, device="cpu", progress=False, restarts=restarts)
    return fitting.fit()


def describe(res, i, truth):
    out = []
    rb, rd = res["bulge_eff_r"][i], res["disk_eff_r"][i]
    nb, nd = res["bulge_ser_n"][i], res["disk_ser_n"][i]
    fb, fd = 10 ** (-0.4 * res["bulge_mag"][i]), 10 ** (-0.4 * res["disk_mag"][i])
    if rb > rd:
        out.append("swapped (bulge larger)")
    for comp, r, f, n, q in (("bulge", rb, fb, nb, res["bulge_axis_r"][i]), ("disk", rd, fd, nd, res["disk_axis_r"][i])):
        if r < 0.5 or f / (fb + fd) < 0.02:
            out.append(f"{comp} collapsed (r_e {r:.2f}, share {f / (fb + fd):.3f})")
        if q > 0.995:
            out.append(f"{comp} q = 1")
        if n > 7.5 or n < 0.25:
            out.append(f"{comp} n = {n:.2f}")
    return ", ".join(out) or "other"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument("--no-restarts", action="store_true")
    parser.add_argument("--fixed-n", action="store_true", help="fix n = 4 and 1 (as validate_fits.py --bulge-disk)")
    parser.add_argument("--swapped", action="store_true", help="start each component with the other's shape and flux")
    parser.add_argument("--shape", type=int, default=128, help="cutout side in pixels")
    parser.add_argument("--bulge-re", type=float, nargs=2, default=(0.15, 0.5), metavar=("LO", "HI"),
                        help="bulge r_e as a fraction of the disk's (0.05 0.5 reaches bulges far below the PSF)")
    parser.add_argument("--snr", type=float, nargs=2, default=(20.0, 500.0), metavar=("LO", "HI"))
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    mocks = bulge_disk_mocks(args.count, seed=args.seed, bt_range=(0.1, 0.8), shape=(args.shape, args.shape),
                             bulge_re=tuple(args.bulge_re), snr_range=tuple(args.snr))
    print(f"{args.count} bulge + disk mocks (seed {args.seed}) drawn in {time.perf_counter() - t0:.0f} s")
    t0, c0 = time.perf_counter(), time.process_time()
    res = fit(mocks, restarts=not args.no_restarts, free_n=not args.fixed_n, swapped=args.swapped)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    excess = np.asarray(res["chi2"]) - mocks.chi2_true()
    success = excess <= 25.0
    fb, fd = 10 ** (-0.4 * np.asarray(res["bulge_mag"])), 10 ** (-0.4 * np.asarray(res["disk_mag"]))
    dbt = np.abs(fb / (fb + fd) - mocks.truth["bt"])
    print(f"restarts {'off' if args.no_restarts else 'on'}, n {'fixed' if args.fixed_n else 'free'}, "
          f"{'swapped' if args.swapped else 'catalogue'} starts: "
          f"success {success.mean():.1%} ({int((~success).sum())} failed); median |dB/T| {np.median(dbt):.4f} "
          f"(successes {np.median(dbt[success]):.4f}); {wall:.0f} s wall, {cpu / args.count:.2f} CPU-s per galaxy")
    flags = np.asarray(res["flag"], dtype=np.int64)
    for i in np.flatnonzero(~success):
        t = mocks.truth
        print(f"  #{i}: chi2 excess {excess[i]:.0f} (dof {int(res['dof'][i])}), B/T true {t['bt'][i]:.2f} fitted "
              f"{fb[i] / (fb[i] + fd[i]):.2f}, r_e b/d true {t['re_b'][i]:.1f}/{t['re_d'][i]:.1f} fitted "
              f"{res['bulge_eff_r'][i]:.1f}/{res['disk_eff_r'][i]:.1f}, n {res['bulge_ser_n'][i]:.2f}/{res['disk_ser_n'][i]:.2f}, "
              f"S/N {mocks.snr[i]:.0f}: {describe(res, i, t)}; flags {decode(int(flags[i])) or 0}")
    # a degenerate component (a line, a size far below the PSF or beyond the cutout, a negligible share of the
    # flux) must never come back with flag 0
    fwhm = measure_fwhm(mocks.psfs)
    half_diagonal = 0.5 * np.hypot(args.shape, args.shape)
    degenerate = np.zeros(args.count, dtype=bool)
    for comp in ("bulge", "disk"):
        re, q = np.asarray(res[f"{comp}_eff_r"]), np.asarray(res[f"{comp}_axis_r"])
        share = (fb if comp == "bulge" else fd) / (fb + fd)
        degenerate |= (q < 0.05) | (re < 0.1 * fwhm) | (re > half_diagonal) | (share < 0.01)
    unflagged = degenerate & (flags == 0)
    print(f"degenerate components: {int(degenerate.sum())} fits, {int(unflagged.sum())} of them with flag 0")
    flagged = np.mean(flags[~success] != 0) if (~success).any() else float("nan")
    print(f"failed fits with a flag: {flagged:.0%}; successful fits with a flag: {np.mean(flags[success] != 0):.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
