"""Pipeline benchmarks (issue 6 item 7): throughput, flat memory, kill -9 and resume, dask.

    python benchmarks/pipeline.py throughput [--galaxies 64]      # galaxies/s through gm.Fitting
    python benchmarks/pipeline.py memory [--sizes 2000 20000 200000]
    python benchmarks/pipeline.py resume [--galaxies 48]
    python benchmarks/pipeline.py dask [--galaxies 48]

``throughput`` uses only the public API, so the same script measures an older
checkout (``PYTHONPATH=<old tree> python benchmarks/pipeline.py throughput``).
``memory`` writes one image set of small (24 x 24) cutouts and evaluates a fixed
Sersic on every galaxy (no free parameter: the pipeline's reading, batching, store
and parts are all that run; a 7 x 7 PSF), in a fresh process per size, and prints the peak RSS.
Each prints a table.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _mocks(n, size=64, seed=0):
    import torch

    import galmoss as gm

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[-12:13, -12:13]
    psf = (1 + (xx**2 + yy**2) / 2.0**2) ** -3.5
    truth = dict(cen_x=size / 2 + 0.5 + rng.uniform(-1, 1, n), cen_y=size / 2 + 0.5 + rng.uniform(-1, 1, n),
                 pa=rng.uniform(-90, 90, n), axis_r=rng.uniform(0.3, 0.95, n),
                 eff_r=np.exp(rng.uniform(np.log(3), np.log(9), n)), mag=rng.uniform(16, 18, n),
                 ser_n=np.exp(rng.uniform(np.log(0.7), np.log(4), n)))
    model = gm.lp.Sersic(**{k: gm.p(v, M0=22.5) if k == "mag" else gm.p(v) for k, v in truth.items()})
    clean = gm.render(model, (size, size), psf=psf, dtype=torch.float64).numpy()
    images = clean + rng.normal(0, 0.05, clean.shape)
    return images.astype(np.float32), np.full(images.shape, 0.05, np.float32), psf, truth


def _start(truth, rng):
    import galmoss as gm

    f = lambda: 1 + rng.choice([-1, 1], len(truth["mag"])) * 0.2  # noqa: E731
    return gm.lp.Sersic(cen_x=gm.p(truth["cen_x"] + 0.7), cen_y=gm.p(truth["cen_y"] - 0.7),
                        pa=gm.p(truth["pa"] + 10, angle=True), axis_r=gm.p(np.clip(truth["axis_r"] + 0.1, 0.1, 1)),
                        eff_r=gm.p(truth["eff_r"] * f()), mag=gm.p(truth["mag"] + 0.2, M0=22.5),
                        ser_n=gm.p(truth["ser_n"] * f(), log=True))


def throughput(args) -> None:
    import galmoss as gm

    images, sigmas, psf, truth = _mocks(args.galaxies)
    rows = []
    for batch in args.batches:
        best = np.inf
        for _ in range(args.repeat):
            ds = gm.Dataset.from_arrays(images, sigmas, psf)
            ds.define_profiles(sersic=_start(truth, np.random.default_rng(1)))
            fitting = gm.Fitting(ds, batch_size=batch, iteration=200, device="cpu", progress=False)
            t0, c0 = time.perf_counter(), time.process_time()
            res = fitting.fit()
            best = min(best, time.perf_counter() - t0)
            cpu = time.process_time() - c0
        rows.append((batch, args.galaxies / best, cpu / args.galaxies, int(np.sum(res["converged"]))))
    print(f"galmoss at {gm.__file__}")
    print(f"{'B':>5} {'galaxies/s':>11} {'CPU-s/galaxy':>13} {'converged':>10}")
    for b, rate, cpu, ok in rows:
        print(f"{b:5d} {rate:11.2f} {cpu:13.3f} {ok:7d}/{args.galaxies}")


MEMORY_CHILD = """
import resource, sys, time, numpy as np, galmoss as gm
path, out = sys.argv[1], sys.argv[2]
ds = gm.Dataset.from_image_set(path, result_path=out)
ds.define_profiles(sersic=gm.lp.Sersic(cen_x=gm.p(12.5, fit=False), cen_y=gm.p(12.5, fit=False),
    pa=gm.p(10.0, fit=False), axis_r=gm.p(0.7, fit=False), eff_r=gm.p(3.0, fit=False),
    mag=gm.p(17.0, M0=22.5, fit=False), ser_n=gm.p(1.5, fit=False)))
t0 = time.perf_counter()
res = gm.Fitting(ds, batch_size=512, device="cpu", progress=False, restarts=False).fit()
print(len(res), time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
"""


def memory(args) -> None:
    from astropy.io import fits

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            path = Path(tmp) / f"set{n}.fits"
            rng = np.random.default_rng(0)
            cube = rng.normal(0, 1, (n, 24, 24)).astype(np.float32) + 5.0
            yy, xx = np.mgrid[-3:4, -3:4]
            psf = np.exp(-0.5 * (xx**2 + yy**2) / 1.2**2).astype(np.float32)
            fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(cube, name="IMAGE"),
                          fits.ImageHDU(np.ones_like(cube), name="SIGMA"), fits.ImageHDU(psf, name="PSF")]).writeto(path)
            del cube
            out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(path), str(Path(tmp) / f"out{n}")],
                                 capture_output=True, text=True, check=True).stdout.split()
            rows.append((n, path.stat().st_size / 2**20, float(out[1]), float(out[2])))
            path.unlink()
            if len(rows) == 1:
                print(f"{'galaxies':>9} {'image set MB':>13} {'wall s':>8} {'peak RSS MB':>12}", flush=True)
            n, size, wall, rss = rows[-1]
            print(f"{n:9d} {size:13.1f} {wall:8.1f} {rss:12.1f}", flush=True)


RESUME_CHILD = """
import sys, numpy as np, galmoss as gm
sys.path.insert(0, {here!r})
from pipeline import _mocks, _start
images, sigmas, psf, truth = _mocks({n}, size=48)
ds = gm.Dataset.from_arrays(images, sigmas, psf, result_path={out!r})
ds.define_profiles(sersic=_start(truth, np.random.default_rng(1)))
f = gm.Fitting(ds, batch_size=8, iteration=200, device="cpu", progress=False)
f.fit(resume=True)
print(f.timing["galaxies"], f.timing["fit_s"])
"""


def resume(args) -> None:
    from astropy.table import Table

    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "run.py"
        script.write_text(RESUME_CHILD.format(here=str(Path(__file__).parent), n=args.galaxies,
                                              out=str(Path(tmp) / "run")))
        ref_script = Path(tmp) / "ref.py"
        ref_script.write_text(RESUME_CHILD.format(here=str(Path(__file__).parent), n=args.galaxies,
                                                  out=str(Path(tmp) / "ref")))
        t0 = time.perf_counter()
        ref = subprocess.run([sys.executable, str(ref_script)], capture_output=True, text=True, check=True)
        whole = time.perf_counter() - t0
        proc = subprocess.Popen([sys.executable, str(script)])
        parts = Path(tmp) / "run" / "parts"
        while len(list(parts.glob("part-*.parquet"))) < args.galaxies // 16:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kept = len(list(parts.glob("part-*.parquet")))
        t0 = time.perf_counter()
        again = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
        second = time.perf_counter() - t0
        refitted = int(again.stdout.split()[0])
        a, b = Table.read(Path(tmp) / "run" / "results.fits"), Table.read(Path(tmp) / "ref" / "results.fits")
        diff = max(float(np.nanmax(np.abs(a[c] - b[c]))) for c in a.colnames if c.startswith("sersic_"))
        print(f"uninterrupted run: {whole:.1f} s for {args.galaxies} galaxies ({ref.stdout.split()[0]} fitted)")
        print(f"killed (-9) after {kept} parts of 8 galaxies; the resumed run fitted {refitted} galaxies "
              f"in {second:.1f} s (process included)")
        print(f"rows in results.fits: {len(a)} (every galaxy once); largest difference from the uninterrupted "
              f"run over all value columns: {diff:.2e}")


def dask_vs_local(args) -> None:
    from dask.distributed import Client, LocalCluster

    import galmoss as gm

    images, sigmas, psf, truth = _mocks(args.galaxies, size=48)

    def run(client):
        ds = gm.Dataset.from_arrays(images, sigmas, psf)
        ds.define_profiles(sersic=_start(truth, np.random.default_rng(1)))
        t0 = time.perf_counter()
        # the one-process run keeps its 2 threads (threads=None): the comparison is 2 cores either way
        res = gm.Fitting(ds, batch_size=8, iteration=200, device="cpu", progress=False, client=client,
                         threads=None if client is None else 1).fit()
        return time.perf_counter() - t0, res

    import torch

    torch.set_num_threads(2)
    local_s, local = run(None)
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
        remote_s, remote = run(client)
    diff = max(float(np.nanmax(np.abs(local[c] - remote[c]))) for c in local.colnames if c.startswith("sersic_"))
    print(f"{'run':>28} {'wall s':>8} {'galaxies/s':>11}")
    print(f"{'one process (2 threads)':>28} {local_s:8.1f} {args.galaxies / local_s:11.2f}")
    print(f"{'dask, 2 workers x 1 thread':>28} {remote_s:8.1f} {args.galaxies / remote_s:11.2f}")
    print(f"largest difference of any fitted value: {diff:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["throughput", "memory", "resume", "dask"])
    parser.add_argument("--galaxies", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 200000])
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 64])
    args = parser.parse_args()
    {"throughput": throughput, "memory": memory, "resume": resume, "dask": dask_vs_local}[args.what](args)


if __name__ == "__main__":
    main()
