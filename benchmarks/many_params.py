"""Large P (issue 10, item 2): time and memory per galaxy of a fit with P free values.

The model is a :class:`galmoss.lp.PixelMap` of P map pixels (the data-pixel grid,
scale 1) centred on the cutout, convolved with a 25x25 Moffat PSF; the mocks
are a Sersic galaxy drawn by galmoss plus noise, the fit starts from a flat map.
The map's pixels are ``scale`` data pixels wide so that it covers about 3/4
of the cutout. Each (P, cutout) runs in a fresh process so that its peak resident memory is
its own: memory per galaxy is (peak RSS during the fit - RSS before it) / B.
Time per galaxy is the wall time of ``fit_batch`` (Levenberg-Marquardt to
convergence and the covariance errors) / B.

Usage::

    python benchmarks/many_params.py                 # the table of docs/benchmarks.md
    python benchmarks/many_params.py --one 1000 64   # one configuration (used by the table run)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

#: (P, cutout) -> map shape (h, w) with h w = P (63 x 63 for ~4000 on 64x64: an 80-wide map would not fit)
SHAPES = {10: (2, 5), 100: (10, 10), 1000: (25, 40), 4000: (50, 80)}


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return float(line.split()[1]) / 1024.0
    return float("nan")


def one(p: int, size: int, batch: int, threads: int = 1) -> dict:
    import torch

    # on a shared, loaded machine two OpenMP threads spin against each other: one is 10x faster there
    torch.set_num_threads(threads)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import galmoss as gm
    from galmoss.fitting.batch import Batch, FitSettings, fit_batch, memory_per_galaxy
    from galmoss.model import Model

    shape = SHAPES[p] if not (p == 4000 and size < 80) else (63, 63)
    k = shape[0] * shape[1]
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[-12:13, -12:13]
    psf = (1 + (xx**2 + yy**2) / 2.0**2) ** -3.5
    centre = (size + 1) / 2.0
    galaxy = gm.lp.Sersic(cen_x=gm.p(centre), cen_y=gm.p(centre), pa=gm.p(30.0), axis_r=gm.p(0.6),
                          eff_r=gm.p(size / 8.0), mag=gm.p(14.0, M0=22.5), ser_n=gm.p(1.5))
    clean = gm.render(galaxy, (size, size), psf=psf, dtype=torch.float64).numpy()[0]
    sigma = 0.02 * clean.max()
    images = clean[None] + rng.normal(0.0, sigma, (batch, size, size))
    start = np.full((batch, k), clean.sum() / k)
    scale = max(1, int(0.75 * size) // max(shape))  # the map covers most of the galaxy
    model = Model({"map": gm.lp.PixelMap(pixels=gm.p(start), shape=shape, cen_x=gm.p(centre, fit=False),
                                         cen_y=gm.p(centre, fit=False), scale=scale)})
    b = Batch(np.arange(batch), [str(i) for i in range(batch)], images, np.full_like(images, sigma),
              np.ones_like(images), np.broadcast_to(psf / psf.sum(), (batch,) + psf.shape).copy(),
              [(size, size)] * batch, np.zeros(batch, np.int64), [[] for _ in range(batch)])
    settings = FitSettings(restarts=False)
    # warm up (torch's forward-mode decompositions import and compile on first use: seconds)
    from dataclasses import replace

    from galmoss.fitting.lm import LMSettings

    fit_batch(model, b.take(np.arange(1)), replace(settings, lm=LMSettings(max_iterations=1)))
    before = _rss_mb()
    t0 = time.perf_counter()
    result = fit_batch(model, b, settings)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {
        "P": int(model.n_free), "cutout": size, "B": batch, "map": list(shape), "scale": scale,
        "s_per_galaxy": wall / batch, "peak_mb_per_galaxy": (peak - before) / batch,
        "estimate_mb_per_galaxy": memory_per_galaxy(model.n_free, len(model.columns), (size, size)) / 2**20,
        "n_iter": result.n_iter.tolist(), "converged": result.converged.tolist(),
        "reduced_chi2": (result.loss / np.maximum(result.dof, 1)).round(3).tolist(),
        "threads": torch.get_num_threads(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=2, type=int, metavar=("P", "SIZE"))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--params", nargs="*", type=int, default=[10, 100, 1000, 4000])
    parser.add_argument("--sizes", nargs="*", type=int, default=[64, 128])
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one[0], args.one[1], args.batch, args.threads)))
        return 0
    print("| P | cutout | map (scale) | s / galaxy | peak MB / galaxy | estimate MB / galaxy | iterations | reduced chi2 |")
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        for p in args.params:
            out = subprocess.run([sys.executable, __file__, "--one", str(p), str(size), "--batch", str(args.batch),
                                  "--threads", str(args.threads)],
                                 capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {row['P']} | {size}x{size} | {row['map'][0]}x{row['map'][1]} ({row['scale']}) | {row['s_per_galaxy']:.3g} | "
                  f"{row['peak_mb_per_galaxy']:.0f} | {row['estimate_mb_per_galaxy']:.0f} | "
                  f"{'/'.join(map(str, row['n_iter']))} | {'/'.join(map(str, row['reduced_chi2']))} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
