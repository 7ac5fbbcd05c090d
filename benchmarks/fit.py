"""Fitting throughput: galaxies/s and CPU seconds per galaxy, to convergence.

Single Sersic (7 free parameters) and bulge + disk (a shared centre, 10 free),
128x128 cutouts, a 51x51 Moffat PSF per galaxy, noise at half-light S/N 20-500,
starts perturbed as a catalogue's would be (10-30 % in flux and r_e, ...).
Batches of B = 1, 64, 512 galaxies (B galaxies fitted together; for B = 1 a few
galaxies one at a time).

Usage::

    python benchmarks/fit.py                    # CPU, and CUDA when present
    python benchmarks/fit.py --device cuda --batches 512 4096
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
from render import device_name  # noqa: E402


def mock_batch(count: int, bulge_disk: bool, seed: int = 0):
    """Images drawn by galmoss itself (the benchmark measures speed, not accuracy)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[-25:26, -25:26]
    fwhm = rng.uniform(3.3, 3.7, count)[:, None, None]
    psf = (1 + (xx**2 + yy**2)[None] / (fwhm / (2 * np.sqrt(2 ** (1 / 3.5) - 1))) ** 2) ** -3.5
    cx, cy = 64.5 + rng.uniform(-1, 1, count), 64.5 + rng.uniform(-1, 1, count)
    if bulge_disk:
        re_d = np.exp(rng.uniform(np.log(5), np.log(15), count))
        truth = {
            "bulge": dict(pa=rng.uniform(-90, 90, count), q=rng.uniform(0.6, 1.0, count), re=re_d * rng.uniform(0.15, 0.5, count),
                          mag=rng.uniform(17.0, 18.5, count), n=np.full(count, 4.0)),
            "disk": dict(pa=rng.uniform(-90, 90, count), q=rng.uniform(0.3, 1.0, count), re=re_d,
                         mag=rng.uniform(16.0, 17.5, count), n=np.full(count, 1.0)),
        }
    else:
        truth = {"sersic": dict(pa=rng.uniform(-90, 90, count), q=rng.uniform(0.2, 1.0, count),
                                re=np.exp(rng.uniform(np.log(1.5), np.log(15), count)), mag=rng.uniform(15, 18, count),
                                n=np.exp(rng.uniform(np.log(0.5), np.log(6), count)))}
    xc, yc = gm.p(cx), gm.p(cy)
    profiles = {name: gm.lp.Sersic(cen_x=xc, cen_y=yc, pa=gm.p(t["pa"]), axis_r=gm.p(t["q"]), eff_r=gm.p(t["re"]),
                                   mag=gm.p(t["mag"], M0=22.5), ser_n=gm.p(t["n"])) for name, t in truth.items()}
    clean = gm.render(profiles, (128, 128), psf=psf, dtype=torch.float64).numpy()
    snr = np.exp(rng.uniform(np.log(20), np.log(500), count))
    sigma = np.empty_like(clean)
    for i in range(count):
        values = np.sort(clean[i].ravel())[::-1]
        n_half = int(np.searchsorted(np.cumsum(values), 0.5 * clean[i].sum())) + 1
        sigma[i] = 0.5 * clean[i].sum() / (snr[i] * np.sqrt(n_half))
    images = clean + rng.normal(0, 1, clean.shape) * sigma
    sign = lambda: rng.choice([-1.0, 1.0], count)  # noqa: E731
    r, phi = rng.uniform(0.5, 2.0, count), rng.uniform(0, 2 * np.pi, count)
    xs, ys = gm.p(cx + r * np.cos(phi)), gm.p(cy + r * np.sin(phi))
    starts = {}
    for name, t in truth.items():
        fixed_n = bulge_disk
        starts[name] = gm.lp.Sersic(
            cen_x=xs, cen_y=ys, pa=gm.p(t["pa"] + sign() * rng.uniform(5, 20, count)),
            axis_r=gm.p(np.clip(t["q"] + sign() * rng.uniform(0.05, 0.15, count), 0.08, 1.0)),
            eff_r=gm.p(t["re"] * (1 + sign() * rng.uniform(0.1, 0.3, count))),
            mag=gm.p(t["mag"] - 2.5 * np.log10(1 + sign() * rng.uniform(0.1, 0.3, count)), M0=22.5),
            ser_n=gm.p(t["n"], fit=False) if fixed_n else gm.p(t["n"] * (1 + sign() * rng.uniform(0.1, 0.3, count))),
        )
    return images, sigma, psf, starts


def run(device: torch.device, batch: int, bulge_disk: bool, repeat_small: int = 4):
    count = batch if batch > 1 else repeat_small
    images, sigma, psf, starts = mock_batch(count, bulge_disk)
    ds = gm.Dataset.from_arrays(images, sigma, psf)
    ds.define_profiles(**starts)
    fitting = gm.Fitting(ds, batch_size=batch, iteration=200, device=device, progress=False, threads=None)
    warm = gm.Dataset.from_arrays(images[:1], sigma[:1], psf[:1])
    warm.define_profiles(**mock_batch(1, bulge_disk, seed=1)[3])
    gm.Fitting(warm, batch_size=1, iteration=5, device=device, progress=False).fit()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0, c0 = time.perf_counter(), time.process_time()
    res = fitting.fit()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return count / wall, cpu / count, float(np.mean(res["converged"])), float(np.median(res["n_iter"]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cpu or cuda (default: both when CUDA is present)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 512])
    parser.add_argument("--models", nargs="+", default=["sersic", "bulge+disk"], choices=["sersic", "bulge+disk"])
    args = parser.parse_args(argv)
    devices = [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, float32, 128x128 cutouts, 51x51 PSF, Levenberg-Marquardt to convergence")
    print(f"{'device':44s} {'model':11s} {'B':>5s} {'galaxies/s':>11s} {'CPU-s/galaxy':>13s} {'converged':>10s} {'iters':>6s}")
    for name in devices:
        device = torch.device(name)
        for model in args.models:
            for batch in args.batches:
                gps, cps, conv, iters = run(device, batch, model == "bulge+disk")
                print(f"{device_name(device)[:44]:44s} {model:11s} {batch:5d} {gps:11.2f} {cps:13.3f} {conv * 100:9.0f}% {iters:6.0f}",
                      flush=True)


if __name__ == "__main__":
    main()
