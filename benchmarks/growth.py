"""How the cost of a fit grows (CPU): with cutout size, free parameters and batch size; and the bootstrap's cost.

Each point fits ``--n`` galaxies (drawn by galmoss, as ``benchmarks/gpu.py``
draws them: 51x51 Moffat PSF, r_e of 1.5-15 px, starts perturbed 10-30 %) to
convergence and reports wall and CPU seconds per galaxy and per galaxy-iteration
(the models do not take the same number of iterations).

* size: single Sersic, 64 / 128 / 256 (/ 512 with ``--sizes``) px, batch ``--batch``;
* parameters: single Sersic (7 free), bulge + disk (10), bulge + disk + bar (15), a Sersic with
  Fourier modes m = 1, 3, 4 (13), 128 px;
* batch: single Sersic, 128 px, B = 1, 4, 16, 64 (capped at ``--n``... B > n uses n);
* bootstrap: the fit, then ``uncertainty("bootstrap", n_resample=R)``, per replica
  against per fit; the replicas' iterations are read by wrapping the LM call.

Usage::

    python benchmarks/growth.py --n 8 --out growth.md
    python benchmarks/growth.py --parts bootstrap --n 4 --resample 16
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import galmoss as gm  # noqa: E402
import galmoss.fitting.uncertainty as _unc  # noqa: E402
from gpu import FREE, dataset_of, mock_pool  # noqa: E402
from render import device_name  # noqa: E402


def timed_fit(model, n, size, batch, iteration=200, seed=2):
    pool = mock_pool(n, model, size=size, psf_size=51, seed=seed)
    ds = dataset_of(pool, n)
    warm = gm.Fitting(dataset_of(pool, 1), batch_size=1, iteration=2, device="cpu", progress=False, restarts=False)
    warm.fit()
    fitting = gm.Fitting(ds, batch_size=batch, iteration=iteration, device="cpu", progress=False, threads=None)
    t0, c0 = time.perf_counter(), time.process_time()
    res = fitting.fit()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    iters = float(np.mean(res["n_iter"]))
    return fitting, {"wall": wall / n, "cpu": cpu / n, "iters": iters, "wall_iter": wall / n / max(iters, 1),
                     "converged": float(np.mean(res["converged"]))}


def row(label, model, size, batch, r):
    return (f"| {label} | {model} ({FREE[model]} free) | {size} | {batch} | {r['wall']:.2f} | {r['cpu']:.2f} | "
            f"{r['iters']:.1f} | {r['wall_iter'] * 1e3:.0f} | {r['converged'] * 100:.0f} % |")


def bootstrap_cost(n, size, resample, batch):
    fitting, fit = timed_fit("sersic", n, size, batch)
    iters = []
    original = _unc.levenberg_marquardt

    def counted(*args, **kwargs):
        result = original(*args, **kwargs)
        iters.append(result.n_iter.cpu().numpy())
        return result

    _unc.levenberg_marquardt = counted
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        fitting.uncertainty("bootstrap", n_resample=resample)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        _unc.levenberg_marquardt = original
    replica_iters = np.concatenate(iters) if iters else np.array([np.nan])
    per_wall, per_cpu = wall / (n * resample), cpu / (n * resample)
    return ("| single Sersic | {size} | {n} | {R} | {fw:.2f} | {fi:.1f} | {rw:.3f} | {rc:.3f} | {ri:.1f} | {ratio:.2f} |"
            .format(size=size, n=n, R=resample, fw=fit["wall"], fi=fit["iters"], rw=per_wall, rc=per_cpu,
                    ri=float(np.mean(replica_iters)), ratio=per_wall / fit["wall"]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8, help="galaxies per point")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--parts", nargs="+", default=["size", "params", "batch", "bootstrap"],
                        choices=["size", "params", "batch", "bootstrap"])
    parser.add_argument("--models", nargs="+", default=["sersic", "bulge+disk", "three"],
                        choices=["sersic", "bulge+disk", "three", "fourier"], help="the models of part 'params'")
    parser.add_argument("--resample", type=int, default=16, help="bootstrap replicas per galaxy")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    import os

    lines = [f"{device_name(torch.device('cpu'))}, torch {torch.__version__}, float32, {args.n} galaxies per point, "
             f"load average at start {os.getloadavg()[0]:.1f}", "",
             "| varied | model | cutout px | B | wall-s / galaxy | CPU-s / galaxy | mean iterations | "
             "wall ms / galaxy-iteration | converged |", "|---" * 9 + "|"]
    out = lambda: print("\n".join(lines), flush=True)  # noqa: E731
    if "size" in args.parts:
        for size in args.sizes:
            lines.append(row("cutout size", "sersic", size, args.batch, timed_fit("sersic", args.n, size, args.batch)[1]))
            print(lines[-1], flush=True)
    if "params" in args.parts:
        for model in args.models:
            lines.append(row("free parameters", model, 128, args.batch, timed_fit(model, args.n, 128, args.batch)[1]))
            print(lines[-1], flush=True)
    if "batch" in args.parts:
        for batch in args.batches:
            n = max(args.n, batch)
            lines.append(row("batch size", "sersic", 128, batch, timed_fit("sersic", n, 128, batch)[1]))
            print(lines[-1], flush=True)
    if "bootstrap" in args.parts:
        lines += ["", "| model | cutout px | galaxies | replicas each | fit wall-s / galaxy | fit iterations | "
                  "wall-s / replica | CPU-s / replica | replica iterations (mean) | replica / fit (wall) |",
                  "|---" * 10 + "|", bootstrap_cost(args.n, 64, args.resample, args.batch)]
    lines += ["", f"load average at end {os.getloadavg()[0]:.1f}"]
    out()
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
