"""Rendering throughput: model images/s and Jacobians/s.

Single Sersic galaxies, 128x128 cutouts, a 51x51 PSF per galaxy, batches of
B = 1, 64, 1024 (by default). A "Jacobian" is the derivative of one galaxy's
image with respect to its 7 Sersic parameters through the PSF convolution, what
one Levenberg-Marquardt iteration needs: "forward mode" pushes 7 tangents
through everything (torch.func.jvp); "fitter" is the structured Jacobian the
fitter uses (magnitude and centre columns without tangents, see
galmoss/fitting/objective.py).

Usage::

    python benchmarks/render.py                 # CPU, and CUDA when present
    python benchmarks/render.py --device cpu --batches 1 64
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

import galmoss as gm
from galmoss._compat import prepare_forward_mode, tune_cpu_allocator
from galmoss.render import Renderer

NAMES = ["cen_x", "cen_y", "pa", "axis_r", "eff_r", "mag", "ser_n"]


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or "CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {torch.get_num_threads()} threads"


def setup(batch: int, device, dtype, chunk: int):
    """Parameters of ``batch`` random galaxies and model functions over chunks of them."""
    rng = np.random.default_rng(0)
    sersic = gm.lp.Sersic(**{k: gm.p(np.zeros(batch)) for k in NAMES})
    theta = torch.tensor(
        np.stack([
            64.5 + rng.uniform(-1, 1, batch), 64.5 + rng.uniform(-1, 1, batch), rng.uniform(-1.5, 1.5, batch),
            rng.uniform(0.3, 1.0, batch), np.exp(rng.uniform(np.log(2), np.log(12), batch)),
            rng.uniform(-8, -5, batch), np.exp(rng.uniform(np.log(0.6), np.log(5), batch)),
        ], axis=1),
        dtype=dtype, device=device,
    )
    yy, xx = np.mgrid[-25:26, -25:26]
    fwhm = rng.uniform(3.0, 4.0, batch)[:, None, None]
    alpha = fwhm / (2 * np.sqrt(2 ** (1 / 3.5) - 1))
    psf = torch.tensor((1 + (xx**2 + yy**2)[None] / alpha**2) ** -3.5, device=device)

    def make_model(start, stop):
        renderer = Renderer((128, 128), psf[start:stop], batch=stop - start, dtype=dtype, device=device)
        box = torch.zeros(stop - start, 1, 1, dtype=dtype, device=device)

        def model(th):
            vals = {getattr(sersic, k): th[:, i].reshape(-1, 1, 1) for i, k in enumerate(NAMES)}
            vals[sersic.box] = box
            return renderer({"sersic": sersic}, vals)

        model.renderer, model.sersic = renderer, sersic
        return model

    chunks = [(s, min(s + chunk, batch)) for s in range(0, batch, chunk)]
    return theta, make_model(0, batch), [(a, b, make_model(a, b)) for a, b in chunks]


def timed(fn, device, repeat):
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best


def run(device, dtype, batches, repeat, chunk):
    prepare_forward_mode()
    tune_cpu_allocator()  # what gm.Fitting does on the CPU
    rows = []
    for batch in batches:
        theta, model, chunks = setup(batch, device, dtype, chunk)
        n_par = len(NAMES)
        objectives = [(a, b, _objective(theta[a:b], sub_model)) for a, b, sub_model in chunks]

        def images():
            with torch.no_grad():
                return model(theta)

        def jacobians():
            # one forward-mode column per parameter for every galaxy of a chunk;
            # chunks bound the memory of the 7 tangents in flight
            for a, b, sub_model in chunks:
                basis = torch.eye(n_par, dtype=dtype, device=device)[:, None, :].expand(n_par, b - a, n_par)
                torch.func.vmap(lambda t: torch.func.jvp(sub_model, (theta[a:b],), (t,))[1])(basis)

        def fitter_jacobians():
            for a, b, (objective, th) in objectives:
                objective.model_and_jacobian(th, torch.arange(b - a, device=device))

        t_img = timed(images, device, repeat)
        reps = repeat if batch <= 64 or device.type == "cuda" else 1
        t_jac = timed(jacobians, device, reps)
        t_fit = timed(fitter_jacobians, device, reps)
        rows.append((batch, batch / t_img, batch / t_jac, batch / t_fit))
    return rows


def _objective(theta, sub_model):
    """The fitter's objective for a chunk, with the chunk's renderer and parameters."""
    from galmoss.fitting.likelihoods import Chi2
    from galmoss.fitting.objective import BatchObjective
    from galmoss.model import Model

    renderer, sersic = sub_model.renderer, sub_model.sersic
    model = Model({"sersic": sersic})
    b = theta.shape[0]
    zeros = torch.zeros((b,) + renderer.shape, dtype=theta.dtype, device=theta.device)
    fixed = {sersic.box: torch.zeros(b, 1, 1, dtype=theta.dtype, device=theta.device)}
    # the benchmark's parameters are profile values; in the fitting space the
    # Sersic's sizes are logs and q is ln q
    values = {getattr(sersic, k): theta[:, i].double().cpu().numpy() for i, k in enumerate(NAMES)}
    th = model.theta_from_values(values, theta.dtype, theta.device)
    objective = BatchObjective(model, renderer, Chi2(), zeros, zeros + 1.0, zeros + 1.0, fixed, jacobian_chunk=b)
    return objective, th


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cpu, cuda (default: both when CUDA is present)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 1024])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=64, help="galaxies per Jacobian chunk")
    args = parser.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    devices = [args.device] if args.device else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {args.dtype}, 128x128 cutouts, 51x51 PSF, single Sersic (7 parameters)")
    print(f"{'device':48s} {'B':>6s} {'images/s':>10s} {'Jacobians/s: forward mode':>26s} {'fitter':>8s}")
    for name in devices:
        device = torch.device(name)
        for batch, ips, jps, fps in run(device, dtype, args.batches, args.repeat, args.chunk):
            print(f"{device_name(device)[:48]:48s} {batch:6d} {ips:10.1f} {jps:26.1f} {fps:8.1f}", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    main()
