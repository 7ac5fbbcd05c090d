"""Pipeline benchmarks (issue 6 item 7): throughput, flat memory, kill -9 and resume, dask.

    python benchmarks/pipeline.py throughput [--galaxies 64]      # galaxies/s through gm.Fitting
    python benchmarks/pipeline.py memory [--sizes 2000 20000 200000]
    python benchmarks/pipeline.py resume [--galaxies 48]
    python benchmarks/pipeline.py dask [--galaxies 48]
    python benchmarks/pipeline.py host [--galaxies 20000] [--batches 512] [--prepare-workers 0 2]   # fit a no-op

``throughput`` uses only the public API, so the same script measures an older
checkout (``PYTHONPATH=<old tree> python benchmarks/pipeline.py throughput``).
``memory`` writes one image set of small (24 x 24) cutouts and evaluates a fixed
Sersic on every galaxy (no free parameter: the pipeline's reading, batching, store
and parts are all that run; a 7 x 7 PSF), in a fresh process per size, and prints the peak RSS
(VmHWM of the child's own program: Linux's ru_maxrss would carry over the parent's peak across exec).
``host`` measures the host side alone: an image set of 64 x 64 cutouts (with
SIGMA and one 15 x 15 PSF) and a Sersic plus sky left to start from the image,
streamed through ``gm.Fitting`` (reading, masks, image-based starts, start
checks, Parquet parts, ``results.fits``) with the batch fit replaced, inside
this benchmark only, by one that returns the start values; and the same
galaxies as one FITS file each (``--files``).
Each prints a table.
"""

from __future__ import annotations

import argparse
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
print(len(res), time.perf_counter() - t0, peak_rss_mb())
"""

#: the peak RSS of this process since it started its program. Linux keeps ru_maxrss across exec, so a child
#: forked from a parent of 1 GB would report 1 GB; VmHWM belongs to the program's own address space.
PEAK_RSS = """
def peak_rss_mb():
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM")) / 1024.0
    except OSError:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
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
            out = subprocess.run([sys.executable, "-c", PEAK_RSS + MEMORY_CHILD, str(path), str(Path(tmp) / f"out{n}")],
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


def _write_image_set(path: Path, n: int, size: int = 64, chunk: int = 2048, seed: int = 0) -> None:
    """An image set of ``n`` noisy elliptical exponential blobs, written a chunk of planes at a time."""
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[1 : size + 1, 1 : size + 1].astype(np.float32)
    fits.PrimaryHDU().writeto(path, overwrite=True)
    psf = np.exp(-0.5 * ((xx[:15, :15] - 8) ** 2 + (yy[:15, :15] - 8) ** 2) / 1.5**2).astype(np.float32)
    for name in ("IMAGE", "SIGMA"):
        header = fits.ImageHDU(np.zeros((1, size, size), np.float32), name=name).header
        header["NAXIS3"] = n
        stream = fits.StreamingHDU(str(path), header)
        for lo in range(0, n, chunk):
            k = min(chunk, n - lo)
            if name == "SIGMA":
                stream.write(np.full((k, size, size), 0.05, np.float32))
                continue
            cx, cy = (size + 1) / 2 + rng.uniform(-1, 1, (2, k, 1, 1)).astype(np.float32)
            q = rng.uniform(0.4, 1.0, (k, 1, 1)).astype(np.float32)
            re = rng.uniform(3, 8, (k, 1, 1)).astype(np.float32)
            r = np.sqrt((xx - cx) ** 2 + ((yy - cy) / q) ** 2)
            stream.write(np.exp(-1.678 * r / re) + rng.normal(0, 0.05, (k, size, size)).astype(np.float32))
        stream.close()
    fits.append(path, psf, fits.Header({"EXTNAME": "PSF"}))


HOST_CHILD = """
import json, resource, sys, time, numpy as np, torch, galmoss as gm
import galmoss.pipeline.run as run
from galmoss.fitting.assess import check_starts
from galmoss.fitting.measure import batch_estimates
from galmoss.fitting.records import BatchResult

def starts_only(model, batch, settings):
    # the benchmark's stand-in for fit_batch_safely: image starts, their check, the start values as the result
    estimates = batch_estimates(batch) if model.auto_parameters else None
    start = model.start_values(batch.positions, estimates)
    keep, flags, messages = check_starts(model, batch, start)
    out = BatchResult.empty(model, batch.positions, batch.names, flags, messages, False)
    theta = model.theta_from_values(start, torch.float64, "cpu")
    with torch.no_grad():
        for k, v in model.report(model.values(theta, model.fixed_tensors(start, torch.float64, "cpu"))).items():
            out.values[k] = np.where(keep, v.numpy(), np.nan)
    out.theta = np.where(keep[:, None], theta.numpy(), np.nan)
    return out

run.fit_batch_safely = starts_only
source, out, batch, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if source.endswith(".txt"):
    files = source[:-4]
    import glob
    images = sorted(glob.glob(files + "/img*.fits"))
    ds = gm.Dataset([f"g{i}" for i in range(len(images))], images, [p.replace("img", "sig") for p in images],
                    [files + "/psf.fits"] * len(images), result_path=out)
else:
    ds = gm.Dataset.from_image_set(source, result_path=out)
ds.define_profiles(sersic=gm.lp.Sersic(), sky=gm.lp.Sky())
f = gm.Fitting(ds, batch_size=batch, device="cpu", progress=False, prepare_workers=workers)
t0, c0 = time.perf_counter(), time.process_time()
res = f.fit()
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the worker processes, once they have ended
cpu += children.ru_utime + children.ru_stime
print(json.dumps(dict(n=len(res), wall=wall, cpu=cpu, fit_s=f.timing["fit_s"],
                      ok=int(np.isfinite(res["sersic_eff_r"]).sum()), rss=peak_rss_mb())))
"""


def host(args) -> None:
    import json

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "set.fits"
        _write_image_set(path, args.galaxies)
        sources = [("image set", str(path))]
        if args.files:
            from astropy.io import fits

            folder = Path(tmp) / "files"
            folder.mkdir()
            with fits.open(path) as hdul:
                n = min(args.files, args.galaxies)
                for i in range(n):
                    fits.PrimaryHDU(hdul["IMAGE"].section[i]).writeto(folder / f"img{i:07d}.fits")
                    fits.PrimaryHDU(hdul["SIGMA"].section[i]).writeto(folder / f"sig{i:07d}.fits")
                fits.PrimaryHDU(hdul["PSF"].data).writeto(folder / "psf.fits")
            sources.append(("one FITS file each", str(folder) + ".txt"))
        runs = [(k, label, source, b, workers, rep) for k, (label, source) in enumerate(sources)
                for b in args.batches for workers in args.prepare_workers for rep in range(args.repeat)]
        for k, label, source, b, workers, rep in runs:
            result = str(Path(tmp) / f"out-{k}-{b}-{workers}-{rep}")  # a folder per run: none resumes another
            out = subprocess.run([sys.executable, "-c", PEAK_RSS + HOST_CHILD, source, result, str(b), str(workers)],
                                 stdout=subprocess.PIPE, text=True, check=True).stdout.splitlines()[-1]
            got = json.loads(out)
            rows.append((label, b, got))
            print(f"{label:>20} B={b:5d} prepare_workers={workers} galaxies={got['n']:7d} wall={got['wall']:7.2f} s "
                  f"galaxies/s={got['n'] / got['wall']:8.0f} CPU-s/galaxy={got['cpu'] / got['n'] * 1e3:6.3f} ms "
                  f"started={got['ok']} peak RSS={got['rss']:.0f} MB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["throughput", "memory", "resume", "dask", "host"])
    parser.add_argument("--galaxies", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 200000])
    parser.add_argument("--batches", type=int, nargs="+", default=None)
    parser.add_argument("--files", type=int, default=0, help="host: also as one FITS file per galaxy (this many)")
    parser.add_argument("--prepare-workers", type=int, nargs="+", default=[0],
                        help="host: Fitting(prepare_workers=...) values to run (0: threads)")
    args = parser.parse_args()
    if args.batches is None:
        args.batches = [512] if args.what == "host" else [16, 64]
    {"throughput": throughput, "memory": memory, "resume": resume, "dask": dask_vs_local, "host": host}[args.what](args)


if __name__ == "__main__":
    main()
