"""GPU throughput: galaxies/s to convergence for B = 256 .. 16,384, in one command under 8 minutes.

For a session lent a device::

    python benchmarks/gpu.py --out gpu_table.md          # CUDA, 128x128, 51x51 PSF

and on a CPU (what tests/test_benchmarks_cpu.py runs)::

    python benchmarks/gpu.py --device cpu --quick --out /tmp/table.md

For each model (single Sersic: 7 free parameters; bulge + disk, n fixed at 4 and
1, a shared centre: 10 free) and each batch size B, B galaxies are fitted to
convergence by ``gm.Fitting(...).fit()`` (Levenberg-Marquardt, restarts on);
the table gives galaxies/s, peak device memory
(``torch.cuda.max_memory_allocated``; peak RSS of the process on a CPU), the
fraction of the wall time spent outside the ``fit_batch`` calls (host work:
reading batches, the results table) and outside the LM loop (the rest of
``fit_batch`` too: starts, flags, covariance), the fraction converged and the
median iterations.

Batch size: a batch's memory is predicted from two short probe fits (2 LM
iterations, no restarts) at B1 and B2 > the Jacobian chunk, extrapolated
linearly; when the prediction exceeds the free device memory
(``torch.cuda.mem_get_info``, or ``--memory-limit``) the B galaxies are fitted
in batches that fit. A ``torch.cuda.OutOfMemoryError`` halves the batch and
fits again instead of failing. A time budget (``--budget``, default 420 s)
skips the larger B when the time left does not cover the predicted fit.

Mocks are drawn by galmoss itself (this measures speed; accuracy is
``benchmarks/peers.py``): a pool of distinct galaxies tiled up to B.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import galmoss as gm  # noqa: E402
import galmoss.fitting.batch as _batch_module  # noqa: E402
import galmoss.fitting.restarts as _restarts_module  # noqa: E402
import galmoss.pipeline.run as _run_module  # noqa: E402
from render import device_name  # noqa: E402

ZERO_POINT = 22.5
FREE = {"sersic": 7, "bulge+disk": 10, "three": 15, "fourier": 13}
#: the azimuthal modes of model "fourier" (a lopsided, triangular and boxy Sersic)
FOURIER_MODES = (1, 3, 4)


# ===================================================================== mocks
def mock_pool(count: int, model: str, size: int = 128, psf_size: int = 51, seed: int = 0):
    """``count`` galaxies of ``model`` drawn by galmoss: images, sigmas, PSFs and perturbed starts.

    ``model``: ``"sersic"`` (7 free), ``"bulge+disk"`` (n fixed at 4 and 1, shared
    centre: 10 free) or ``"three"`` (bulge + disk + bar, n of the bar free, shared
    centre: 15 free) or ``"fourier"`` (a Sersic with modes m = 1, 3, 4 of amplitude 0.02-0.1,
    13 free; q below 0.95). Sizes scale with ``size`` (the 128 px cutout's r_e of 1.5-15 px).
    """
    rng = np.random.default_rng(seed)
    half = psf_size // 2
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1]
    fwhm = rng.uniform(3.3, 3.7, count)[:, None, None]
    psf = (1 + (xx**2 + yy**2)[None] / (fwhm / (2 * np.sqrt(2 ** (1 / 3.5) - 1))) ** 2) ** -3.5
    psf /= psf.sum(axis=(1, 2), keepdims=True)
    # r_e as in a 128 px cutout, capped for smaller ones (a scaled-down r_e < 1 px is another problem)
    cap = size / 8
    cx, cy = size / 2 + 0.5 + rng.uniform(-1, 1, count), size / 2 + 0.5 + rng.uniform(-1, 1, count)
    logu = lambda lo, hi: np.exp(rng.uniform(np.log(lo), np.log(hi), count))  # noqa: E731
    if model in ("sersic", "fourier"):
        truth = {"sersic": dict(pa=rng.uniform(-90, 90, count), q=rng.uniform(0.2, 0.95 if model == "fourier" else 1.0, count),
                                re=np.minimum(logu(1.5, 15), cap), mag=rng.uniform(15, 18, count), n=logu(0.5, 6), fit_n=True)}
    else:
        re_d = np.minimum(logu(5, 15), cap)
        truth = {
            "bulge": dict(pa=rng.uniform(-90, 90, count), q=rng.uniform(0.6, 1.0, count),
                          re=re_d * rng.uniform(0.15, 0.5, count), mag=rng.uniform(17.0, 18.5, count),
                          n=np.full(count, 4.0), fit_n=False),
            "disk": dict(pa=rng.uniform(-90, 90, count), q=rng.uniform(0.3, 1.0, count), re=re_d,
                         mag=rng.uniform(16.0, 17.5, count), n=np.full(count, 1.0), fit_n=False),
        }
        if model == "three":
            truth["bar"] = dict(pa=rng.uniform(-90, 90, count), q=rng.uniform(0.2, 0.4, count),
                                re=re_d * rng.uniform(0.4, 0.8, count), mag=rng.uniform(17.5, 18.5, count),
                                n=rng.uniform(0.4, 0.8, count), fit_n=True)
    xc, yc = gm.p(cx), gm.p(cy)
    profiles = {name: gm.lp.Sersic(cen_x=xc, cen_y=yc, pa=gm.p(t["pa"], angle=True), axis_r=gm.p(t["q"]),
                                   eff_r=gm.p(t["re"]), mag=gm.p(t["mag"], M0=ZERO_POINT), ser_n=gm.p(t["n"]))
                for name, t in truth.items()}
    if model == "fourier":  # drawn here only: the other models' mocks keep their random stream
        k = len(FOURIER_MODES)
        amplitudes, phases = rng.uniform(0.02, 0.1, (count, k)), rng.uniform(-45, 45, (count, k))
        profiles = {"sersic": gm.lp.with_fourier(profiles["sersic"], FOURIER_MODES, gm.p(amplitudes), gm.p(phases))}
    clean = gm.render(profiles, (size, size), psf=psf, dtype=torch.float64).numpy()
    snr = np.exp(rng.uniform(np.log(20), np.log(500), count))
    # sky sigma from the half-light S/N: the brightest pixels holding half the light, all galaxies at once
    flat = -np.sort(-clean.reshape(count, -1), axis=1)
    total = clean.reshape(count, -1).sum(1)
    n_half = (np.cumsum(flat, axis=1) < 0.5 * total[:, None]).sum(1) + 1
    sigma = np.broadcast_to((0.5 * total / (snr * np.sqrt(n_half)))[:, None, None], clean.shape).copy()
    images = clean + rng.normal(0, 1, clean.shape) * sigma
    sign = lambda: rng.choice([-1.0, 1.0], count)  # noqa: E731
    r, phi = rng.uniform(0.5, 2.0, count), rng.uniform(0, 2 * np.pi, count)
    xs, ys = gm.p(cx + r * np.cos(phi)), gm.p(cy + r * np.sin(phi))
    starts = {}
    for name, t in truth.items():
        starts[name] = dict(
            pa=t["pa"] + sign() * rng.uniform(5, 20, count),
            q=np.clip(t["q"] + sign() * rng.uniform(0.05, 0.15, count), 0.08, 1.0),
            re=t["re"] * (1 + sign() * rng.uniform(0.1, 0.3, count)),
            mag=t["mag"] - 2.5 * np.log10(1 + sign() * rng.uniform(0.1, 0.3, count)),
            n=t["n"] * (1 + sign() * rng.uniform(0.1, 0.3, count)) if t["fit_n"] else t["n"], fit_n=t["fit_n"])
    return {"images": images.astype(np.float32), "sigmas": sigma.astype(np.float32), "psfs": psf.astype(np.float32),
            "cx": cx + r * np.cos(phi), "cy": cy + r * np.sin(phi), "starts": starts, "fourier": model == "fourier"}


def dataset_of(pool: dict, count: int) -> gm.Dataset:
    """A dataset of ``count`` galaxies: the pool tiled (fits of copies cost what distinct fits cost)."""
    rows = np.arange(count) % len(pool["images"])
    ds = gm.Dataset.from_arrays(pool["images"][rows], pool["sigmas"][rows], pool["psfs"][rows])
    xc, yc = gm.p(pool["cx"][rows]), gm.p(pool["cy"][rows])
    profiles = {
        name: gm.lp.Sersic(cen_x=xc, cen_y=yc, pa=gm.p(s["pa"][rows], angle=True),
                           axis_r=gm.p(s["q"][rows], value_range=(0.05, 0.999)) if pool.get("fourier")
                           else gm.p(s["q"][rows]),
                           eff_r=gm.p(s["re"][rows]), mag=gm.p(s["mag"][rows], M0=ZERO_POINT),
                           ser_n=gm.p(s["n"][rows]) if s["fit_n"] else gm.p(float(s["n"][0]), fit=False))
        for name, s in pool["starts"].items()}
    if pool.get("fourier"):  # modes start at with_fourier's default (amplitude 0.01, phase 0)
        profiles = {name: gm.lp.with_fourier(p, FOURIER_MODES) for name, p in profiles.items()}
    ds.define_profiles(**profiles)
    return ds


# ========================================================== timing and memory
class Timers:
    """Wall time inside ``fit_batch_safely`` and inside the LM loop, by wrapping the module functions."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.fit_batch_s = 0.0
        self.optimise_s = 0.0
        self._saved = []

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _wrap(self, module, name: str, attr: str, reraise_oom: bool) -> None:
        original = getattr(module, name)

        def timed(*args, **kwargs):
            self._sync()
            t0 = time.perf_counter()
            try:
                if reraise_oom:
                    # an out-of-memory error reaches the driver (which halves the batch) instead of
                    # galmoss's fault barrier, which would split the batch into many small fits
                    try:
                        return _batch_module.fit_batch(*args, **kwargs)
                    except torch.cuda.OutOfMemoryError:
                        raise
                    except Exception:  # noqa: BLE001 - everything else as galmoss handles it
                        return original(*args, **kwargs)
                return original(*args, **kwargs)
            finally:
                self._sync()
                setattr(self, attr, getattr(self, attr) + time.perf_counter() - t0)

        self._saved.append((module, name, original))
        setattr(module, name, timed)

    def __enter__(self) -> "Timers":
        self._wrap(_run_module, "fit_batch_safely", "fit_batch_s", reraise_oom=True)
        # the solver runs for the first fit (fit_batch) and for the restarts
        self._wrap(_batch_module, "optimise", "optimise_s", reraise_oom=False)
        self._wrap(_restarts_module, "optimise", "optimise_s", reraise_oom=False)
        return self

    def __exit__(self, *exc) -> None:
        for module, name, original in reversed(self._saved):
            setattr(module, name, original)


def free_memory(device: torch.device, limit_gib: float | None) -> float:
    """Bytes free for a batch: ``--memory-limit`` if given, else the device's free memory (inf on a CPU)."""
    if limit_gib is not None:
        return limit_gib * 2**30
    if device.type == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    return math.inf


def peak_memory(device: torch.device) -> float:
    if device.type == "cuda":
        return float(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0


def _probe_bytes(pool, device, count, dtype) -> float:
    """Peak memory of a short fit (2 iterations, no restarts) of ``count`` galaxies."""
    ds = dataset_of(pool, count)
    fitting = gm.Fitting(ds, batch_size=count, iteration=2, device=device, dtype=dtype, progress=False, restarts=False)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = 0.0
    fitting.fit()
    return peak_memory(device) - base


@dataclasses.dataclass
class MemoryModel:
    """Bytes of a batch of B galaxies: ``fixed + per_galaxy * B`` (from two probes)."""

    fixed: float
    per_galaxy: float
    measured: bool

    def predict(self, batch: int) -> float:
        return self.fixed + self.per_galaxy * batch

    def largest(self, free: float, margin: float = 0.8) -> int:
        if not math.isfinite(free):
            return 1 << 30
        return max(1, int((margin * free - self.fixed) // max(self.per_galaxy, 1.0)))


def memory_model(pool, device, probes: tuple[int, int], dtype) -> MemoryModel:
    """Measure two batches on a GPU (the second beyond the Jacobian chunk); on a CPU, the arrays' sizes."""
    if device.type == "cuda":
        small, large = (_probe_bytes(pool, device, b, dtype) for b in probes)
        per = max((large - small) / (probes[1] - probes[0]), 1.0)
        return MemoryModel(max(small - per * probes[0], 0.0), per, True)
    # on a CPU the process's RSS does not isolate a batch: the dominant arrays instead
    h, w = pool["images"].shape[1:]
    ph, pw = pool["psfs"].shape[1:]
    n_free = FREE.get(pool.get("model", "sersic"), 10)
    item = 4
    fft = (h + ph) * (w + pw) * 2 * item  # one padded complex plane
    per = item * h * w * (6 + n_free) + fft * (n_free + 2) / 4  # maps, residuals, Jacobian; FFTs chunked
    return MemoryModel(64 * 2**20, per, False)


def batch_that_fits(memory: MemoryModel, batch: int, free: float) -> int:
    """The batch size for ``batch`` galaxies: all at once when predicted to fit in ``free`` bytes, else the largest that does."""
    return min(batch, memory.largest(free))


# ===================================================================== a fit
@dataclasses.dataclass
class Row:
    model: str
    batch: int
    fitted_in: int
    galaxies_per_s: float
    wall_s: float
    peak_gib: float
    host_fraction: float
    outside_lm_fraction: float
    converged: float
    median_iter: float
    oom_halvings: int
    note: str = ""


def fit_timed(pool, model, count, device, dtype, batch_size, iteration, restarts: bool = True) -> Row:
    """Fit ``count`` galaxies in batches of ``batch_size``, halving it on an out-of-memory error."""
    halvings = 0
    while True:
        ds = dataset_of(pool, count)
        fitting = gm.Fitting(ds, batch_size=batch_size, iteration=iteration, device=device, dtype=dtype, progress=False,
                             restarts=restarts)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            torch.cuda.synchronize(device)
        try:
            with Timers(device) as timers:
                t0 = time.perf_counter()
                res = fitting.fit()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                wall = time.perf_counter() - t0
        except torch.cuda.OutOfMemoryError:
            if batch_size == 1:
                raise
            batch_size = max(1, batch_size // 2)
            halvings += 1
            print(f"  out of memory: batches of {batch_size} instead", flush=True)
            continue
        return Row(model, count, batch_size, count / wall, wall, peak_memory(device) / 2**30,
                   max(0.0, 1 - timers.fit_batch_s / wall), max(0.0, 1 - timers.optimise_s / wall),
                   float(np.mean(res["converged"])), float(np.median(res["n_iter"])), halvings)


def format_table(rows: list[Row], device: torch.device, size: int, psf_size: int, memory_kind: str,
                 restarts: bool = True) -> str:
    head = (f"device: {device_name(device)}; torch {torch.__version__}; {size}x{size} cutouts, {psf_size}x{psf_size} PSF, "
            f"float32, LM to convergence (restarts {'off' if not restarts else 'on'})\n\n"
            f"| model | B | fitted in batches of | galaxies/s | wall s | peak {memory_kind} GiB | host (outside fit_batch) | "
            "outside the LM loop | converged | median iterations | note |\n" + "|---" * 11 + "|\n")
    body = "".join(
        f"| {r.model} | {r.batch} | {r.fitted_in} | {r.galaxies_per_s:.4g} | {r.wall_s:.2f} | {r.peak_gib:.2f} | "
        f"{r.host_fraction * 100:.0f} % | {r.outside_lm_fraction * 100:.0f} % | {r.converged * 100:.0f} % | "
        f"{r.median_iter:.0f} | {r.note} |\n" if r.wall_s > 0 else
        f"| {r.model} | {r.batch} | — | — | — | — | — | — | — | — | {r.note} |\n" for r in rows)
    return head + body


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=None, help="default 256 1024 4096 16384")
    parser.add_argument("--models", nargs="+", default=["sersic", "bulge+disk"], choices=list(FREE))
    parser.add_argument("--budget", type=float, default=420.0, help="seconds for the whole run (the rest is skipped)")
    parser.add_argument("--memory-limit", type=float, default=None, help="GiB a batch may use (default: free memory)")
    parser.add_argument("--iteration", type=int, default=None, help="LM iteration limit (200; 30 with --quick)")
    parser.add_argument("--no-restarts", action="store_true", help="no refits of unconverged galaxies")
    parser.add_argument("--quick", action="store_true", help="tiny B and cutouts (a CPU smoke run)")
    parser.add_argument("--out", default="gpu_table.md", help="file the table is written to")
    args = parser.parse_args(argv)
    t_start = time.perf_counter()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu.py: no CUDA device here; run with --device cpu --quick for the CPU smoke run")
    size, psf_size = (48, 15) if args.quick else (128, 51)
    batches = args.batches or ([4, 8] if args.quick else [256, 1024, 4096, 16384])
    pool_size = min(max(batches), 8 if args.quick else 2048)
    probes = (2, 4) if args.quick else (256, 1024)
    dtype = torch.float32
    iteration = args.iteration or (30 if args.quick else 200)
    memory_kind = "device" if device.type == "cuda" else "process RSS"
    print(f"gpu.py on {device_name(device)}: B = {batches}, budget {args.budget:.0f} s", flush=True)

    rows: list[Row] = []
    pools, memories, rates = {}, {}, {}
    for model in args.models:
        pools[model] = {**mock_pool(pool_size, model, size, psf_size, seed=1), "model": model}
        memories[model] = memory_model(pools[model], device, probes, dtype)
        m = memories[model]
        print(f"{model}: memory per galaxy {m.per_galaxy / 2**20:.1f} MiB + {m.fixed / 2**20:.0f} MiB "
              f"({'measured' if m.measured else 'from array sizes'})", flush=True)
    # interleave the models so that a short budget still measures both at the small B
    for batch in sorted(batches):
        for model in args.models:
            elapsed = time.perf_counter() - t_start
            predicted = batch / rates[model] * 1.3 if model in rates else 0.0
            if elapsed + predicted > args.budget:
                rows.append(Row(model, batch, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                f"skipped: {predicted:.0f} s predicted, {args.budget - elapsed:.0f} s left"))
                print(f"{model} B={batch}: {rows[-1].note}", flush=True)
                continue
            free = free_memory(device, args.memory_limit)
            fits = batch_that_fits(memories[model], batch, free)
            note = "" if fits == batch else f"{memories[model].predict(batch) / 2**30:.1f} GiB predicted > free {free / 2**30:.1f}"
            row = fit_timed(pools[model], model, batch, device, dtype, fits, iteration, restarts=not args.no_restarts)
            row.note = "; ".join(x for x in (note, f"{row.oom_halvings} OOM halvings" if row.oom_halvings else "") if x)
            rows.append(row)
            rates[model] = row.galaxies_per_s
            print(f"{model} B={batch}: {row.galaxies_per_s:.1f} galaxies/s, {row.wall_s:.1f} s, peak {row.peak_gib:.2f} GiB, "
                  f"host {row.host_fraction * 100:.0f} %, converged {row.converged * 100:.0f} %", flush=True)
    table = format_table(rows, device, size, psf_size, memory_kind, restarts=not args.no_restarts)
    table += f"\ntotal {time.perf_counter() - t_start:.0f} s\n"
    print(table)
    Path(args.out).write_text(table)
    return table


if __name__ == "__main__":
    main()
