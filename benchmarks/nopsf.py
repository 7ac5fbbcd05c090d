"""Cutouts without a PSF against cutouts with a small PSF: galaxies/s and peak memory.

Single Sersic (7 free parameters), 64x64 cutouts drawn by galmoss itself (the
benchmark measures speed, not accuracy), noise at half-light S/N 20-500, starts
perturbed as a catalogue's. Each configuration runs in a fresh process so that its
peak resident memory is its own.

Usage::

    python benchmarks/nopsf.py                        # no PSF and a 15x15 PSF, B = 64
    python benchmarks/nopsf.py --what jacobian        # one model + Jacobian evaluation of the batch
    python benchmarks/nopsf.py --frame                # a 2048x1489 frame, a Sersic and a sky, no PSF
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch

import galmoss as gm


def moffat(size: int, fwhm: float = 3.5, beta: float = 3.5) -> np.ndarray:
    half = size // 2
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1]
    alpha = fwhm / (2 * np.sqrt(2 ** (1 / beta) - 1))
    return (1 + (xx**2 + yy**2) / alpha**2) ** -beta


def mocks(count: int, size: int, psf_size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    psf = moffat(psf_size) if psf_size else None
    c = size / 2 + 0.5
    cx, cy = c + rng.uniform(-1, 1, count), c + rng.uniform(-1, 1, count)
    t = dict(pa=rng.uniform(-90, 90, count), q=rng.uniform(0.2, 1.0, count),
             re=np.exp(rng.uniform(np.log(1.5), np.log(10), count)), mag=rng.uniform(15, 18, count),
             n=np.exp(rng.uniform(np.log(0.5), np.log(6), count)))
    truth = gm.lp.Sersic(cen_x=gm.p(cx), cen_y=gm.p(cy), pa=gm.p(t["pa"]), axis_r=gm.p(t["q"]), eff_r=gm.p(t["re"]),
                         mag=gm.p(t["mag"], M0=22.5), ser_n=gm.p(t["n"]))
    clean = gm.render(truth, (size, size), psf=psf, dtype=torch.float64).numpy()
    snr = np.exp(rng.uniform(np.log(20), np.log(500), count))
    sigma = np.empty_like(clean)
    for i in range(count):
        values = np.sort(clean[i].ravel())[::-1]
        n_half = int(np.searchsorted(np.cumsum(values), 0.5 * clean[i].sum())) + 1
        sigma[i] = 0.5 * clean[i].sum() / (snr[i] * np.sqrt(n_half))
    images = clean + rng.normal(0, 1, clean.shape) * sigma
    sign = lambda: rng.choice([-1.0, 1.0], count)  # noqa: E731
    r, phi = rng.uniform(0.5, 2.0, count), rng.uniform(0, 2 * np.pi, count)
    start = gm.lp.Sersic(
        cen_x=gm.p(cx + r * np.cos(phi)), cen_y=gm.p(cy + r * np.sin(phi)), pa=gm.p(t["pa"] + sign() * rng.uniform(5, 20, count)),
        axis_r=gm.p(np.clip(t["q"] + sign() * rng.uniform(0.05, 0.15, count), 0.08, 1.0)),
        eff_r=gm.p(t["re"] * (1 + sign() * rng.uniform(0.1, 0.3, count))),
        mag=gm.p(t["mag"] - 2.5 * np.log10(1 + sign() * rng.uniform(0.1, 0.3, count)), M0=22.5),
        ser_n=gm.p(t["n"] * (1 + sign() * rng.uniform(0.1, 0.3, count))))
    return images, sigma, psf, start


def one(args) -> dict:
    torch.set_num_threads(1)
    images, sigma, psf, start = mocks(args.count, args.size, args.psf)
    psfs = None if psf is None else np.broadcast_to(psf, (args.count,) + psf.shape).copy()
    ds = gm.Dataset.from_arrays(images, sigma, psfs)
    ds.define_profiles(sersic=start)
    if args.what == "jacobian":
        from galmoss.fitting.likelihoods import Chi2
        from galmoss.fitting.objective import BatchObjective
        from galmoss.model import Model
        from galmoss.render import Renderer

        model = Model({"sersic": start})
        b = args.batch
        start_values = model.start_values(np.arange(b))
        theta = model.theta_from_values(start_values, torch.float32, torch.device("cpu"))
        renderer = Renderer((args.size, args.size), None if psf is None else psf, batch=b)
        t32 = lambda a: torch.as_tensor(a[:b], dtype=torch.float32)  # noqa: E731
        obj = BatchObjective(model=model, renderer=renderer, likelihood=Chi2(), data=t32(images), sigma=t32(sigma),
                             weight=torch.ones_like(t32(images)),
                             fixed=model.fixed_tensors(start_values, torch.float32, torch.device("cpu")))
        index = torch.arange(b)
        obj.model_and_jacobian(theta[:2], index[:2])  # warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(args.repeat):
            obj.model_and_jacobian(theta, index)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        n = b * args.repeat
    else:
        fitting = gm.Fitting(ds, batch_size=args.batch, iteration=200, progress=False, threads=1)
        t0, c0 = time.perf_counter(), time.process_time()
        res = fitting.fit()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        n = args.count
    return dict(psf=args.psf, what=args.what, batch=args.batch, galaxies_per_s=n / wall, cpu_s_per_galaxy=cpu / n,
                peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                **({} if args.what == "jacobian" else dict(converged=float(np.mean(res["converged"])),
                                                           median_iter=float(np.median(res["n_iter"])))))


def frame(args) -> dict:
    """A 2048x1489 frame (GalSim mock when GalSim is installed), a Sersic and a flat sky, no PSF."""
    torch.set_num_threads(args.threads)
    h, w = 1489, 2048
    rng = np.random.default_rng(3)
    truth = dict(cx=1024.3, cy=744.8, pa=30.0, q=0.6, re=40.0, n=2.5, mag=12.0, sky=5.0)
    try:
        import galsim

        prof = galsim.Sersic(n=truth["n"], half_light_radius=truth["re"] * np.sqrt(truth["q"]),
                             flux=10 ** (-0.4 * (truth["mag"] - 22.5)))
        prof = prof.shear(q=truth["q"], beta=(truth["pa"] + 90.0) * galsim.degrees)
        prof = prof.shift(truth["cx"] - (w / 2 + 0.5), truth["cy"] - (h / 2 + 0.5))
        clean = prof.drawImage(nx=w, ny=h, scale=1.0, method="auto").array.astype(np.float64)
    except ImportError:
        clean = gm.render(gm.lp.Sersic(cen_x=gm.p(truth["cx"]), cen_y=gm.p(truth["cy"]), pa=gm.p(truth["pa"]),
                                       axis_r=gm.p(truth["q"]), eff_r=gm.p(truth["re"]), mag=gm.p(truth["mag"], M0=22.5),
                                       ser_n=gm.p(truth["n"])), (h, w), dtype=torch.float64)[0].numpy()
    sigma = np.full((h, w), 2.0)
    image = clean + truth["sky"] + rng.normal(0, 1, (h, w)) * sigma
    ds = gm.Dataset.from_arrays(image[None], sigma[None], None)
    ds.define_profiles(
        sersic=gm.lp.Sersic(cen_x=gm.p(1020.0), cen_y=gm.p(750.0), pa=gm.p(20.0), axis_r=gm.p(0.5), eff_r=gm.p(30.0),
                            mag=gm.p(12.5, M0=22.5), ser_n=gm.p(2.0)),
        sky=gm.lp.Sky(sky_bg=gm.p(4.0)))
    fitting = gm.Fitting(ds, batch_size=1, iteration=100, progress=False, threads=args.threads)
    t0 = time.perf_counter()
    res = fitting.fit()
    wall = time.perf_counter() - t0
    return dict(frame=f"{w}x{h}", wall_s=wall, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                n_iter=int(res["n_iter"][0]), converged=bool(res["converged"][0]),
                **{c: float(res[c][0]) for c in res.colnames if c.startswith("sersic_") and not c.endswith("_err")})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--what", choices=["fit", "jacobian"], default="fit")
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--psfs", type=int, nargs="+", default=[0, 15], help="PSF sizes; 0 = no PSF")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--frame", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--psf", type=int, default=None, help=argparse.SUPPRESS)  # one configuration, in this process
    args = parser.parse_args(argv)
    if args.frame:
        print(json.dumps(frame(args)), flush=True)
        return
    if args.psf is not None:
        print(json.dumps(one(args)), flush=True)
        return
    for size in args.psfs:
        cmd = [sys.executable, __file__, "--what", args.what, "--count", str(args.count), "--batch", str(args.batch),
               "--size", str(args.size), "--repeat", str(args.repeat), "--psf", str(size)]
        print(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
