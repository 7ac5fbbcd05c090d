"""galmoss and its peers side by side: the same GalSim mocks, the same starts, one run.

The driver draws single-Sersic and bulge + disk mocks with GalSim
(``tests/helpers/mocks.py``: 128x128, a 51x51 Moffat PSF per galaxy, sky and
source noise at half-light S/N 20-500, starts perturbed as a catalogue's), saves
them to one ``.npz``, fits them with galmoss in this process and then runs each
peer as a subprocess of its own virtual environment on the same file:

=============  ===============================  ==========================================
peer           venv (``--venvs``/<name>)        install
=============  ===============================  ==========================================
pyimfit        ``pyimfit``                      ``pip install pyimfit``
AstroPhot      ``astrophot``                    ``pip install torch==2.13.0 astrophot``
GalMOSS 2.2    ``galmoss22``                    ``pip install torch==2.13.0 galmoss==2.2``
=============  ===============================  ==========================================

A peer whose venv is missing, or that does not import or fails, is reported as
such and the run goes on. Every fitter's timing covers its fits only (not the
import, not the reading of the ``.npz``): CPU-s is the process's CPU time over
all its threads, wall-s the elapsed time, both per galaxy. Accuracy is on the
same galaxies: the median of |fit - truth| / truth for r_e, n and the total flux,
and the fraction of fits the fitter itself calls converged.

Usage::

    python benchmarks/peers.py --n 16            # both models, every peer found
    python benchmarks/peers.py --n 64 --models sersic --peers pyimfit

The worker half of this file (``--worker NAME``) imports only numpy and the
peer's own package, so that it runs inside the peer's venv.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ZERO_POINT = 22.5
PEERS = {  # name -> (venv folder, label)
    "pyimfit": ("pyimfit", "pyimfit (IMFIT, LM)"),
    "astrophot-lm": ("astrophot", "AstroPhot LM"),
    "astrophot-batchlm": ("astrophot", "AstroPhot BatchLM"),
    "galmoss22": ("galmoss22", "GalMOSS 2.2"),
}


# ============================================================== shared helpers
def sersic_b(n):
    """b_n with sum_{r<r_e} = half the light (Ciotti & Bertin 1999 asymptotic series; < 1e-4 rel. for n > 0.36)."""
    n = np.asarray(n, dtype=float)
    return 2 * n - 1 / 3 + 4 / (405 * n) + 46 / (25515 * n**2) + 131 / (1148175 * n**3) - 2194697 / (30690717750 * n**4)


def sersic_ie(flux, re, n, q):
    """Surface brightness at r_e of a Sersic of total ``flux`` (r_e on the major axis)."""
    b = sersic_b(n)
    gamma = np.array([math.gamma(2 * v) for v in np.atleast_1d(n)]).reshape(np.shape(n))
    return flux / (2 * np.pi * n * np.exp(b) * b ** (-2 * n) * gamma * q * re**2)


def flux_of(mag):
    return 10 ** (-0.4 * (np.asarray(mag) - ZERO_POINT))


def components(model):
    """(name, truth/start key suffix, fixed n or None) of each component."""
    if model == "sersic":
        return [("sersic", "", None)]
    return [("bulge", "_b", 4.0), ("disk", "_d", 1.0)]


def _key(data, what, field, suffix, model):
    if model == "sersic":
        return data[f"{what}_{field}"]
    if field in ("cx", "cy"):
        return data[f"{what}_{field}"]
    return data[f"{what}_{field}{suffix}"]


# ================================================================ the workers
def worker_pyimfit(data, model, threads):
    import pyimfit

    names = components(model)
    out = {k: [] for k in ("re", "n", "flux", "converged")}
    images, sigmas, psfs = data["images"], data["sigmas"], data["psfs"]
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(len(images)):
        desc = pyimfit.ModelDescription()
        fs = pyimfit.FunctionSetDescription("fs")
        cx, cy = float(data["start_cx"][i]), float(data["start_cy"][i])
        fs.x0.setValue(cx, [cx - 10, cx + 10])
        fs.y0.setValue(cy, [cy - 10, cy + 10])
        for name, suffix, fixed_n in names:
            g = lambda f: float(_key(data, "start", f, suffix, model)[i])  # noqa: E731
            n0 = fixed_n if fixed_n is not None else g("n")
            q0, re0 = min(g("q"), 0.99), g("re")
            f = pyimfit.make_imfit_function("Sersic", label=name)
            f.PA.setValue(g("pa") % 180.0, [-180, 360])
            f.ell.setValue(1 - q0, [0.0, 0.95])
            if fixed_n is not None:
                f.n.setValue(n0, fixed=True)
            else:
                f.n.setValue(n0, [0.2, 10.0])
            f.r_e.setValue(re0, [0.1, 200.0])
            ie = float(sersic_ie(flux_of(g("mag")), re0, n0, q0))
            f.I_e.setValue(ie, [ie * 1e-3, ie * 1e3])
            fs.addFunction(f)
        desc.addFunctionSet(fs)
        fitter = pyimfit.Imfit(desc, psf=psfs[i] / psfs[i].sum(), maxThreads=threads)
        fitter.loadData(images[i], error=sigmas[i], error_type="sigma")
        fitter.doFit(solver="LM")
        p = fitter.getRawParameters()
        total, parts = fitter.getModelFluxes()
        # raw parameters: x0, y0, then per Sersic PA, ell, n, I_e, r_e
        k = 2
        res, ns = [], []
        for _ in names:
            ns.append(p[k + 2])
            res.append(p[k + 4])
            k += 5
        out["re"].append(res)
        out["n"].append(ns)
        out["flux"].append(total)
        out["converged"].append(bool(fitter.fitConverged))
        out.setdefault("n_iter", []).append(float(fitter.nIter))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return out, wall, cpu, f"pyimfit {getattr(pyimfit, '__version__', '?')}, maxThreads={threads}"


def run_worker(args):
    data = dict(np.load(args.mocks))
    if args.threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if args.worker == "pyimfit":
        out, wall, cpu, info = worker_pyimfit(data, args.model, args.threads)
    elif args.worker in ("astrophot-lm", "astrophot-batchlm"):
        out, wall, cpu, info = _astrophot(data, args.model, args.threads, batch=args.worker.endswith("batchlm"))
    elif args.worker == "galmoss22":
        out, wall, cpu, info = _galmoss22(data, args.model, args.threads)
    else:
        raise SystemExit(f"--worker {args.worker!r}: choose one of {', '.join(PEERS)}")
    Path(args.result).write_text(json.dumps({"out": {k: np.asarray(v, dtype=float).tolist() for k, v in out.items()},
                                             "wall": wall, "cpu": cpu, "info": info}))


def _astrophot(data, model, threads, batch):
    raise NotImplementedError("AstroPhot (LM and BatchLM): the worker for the 0.18 API (TargetImage, Model, "
                              "fit.LM / fit.BatchLM) is not written yet (benchmarks/peers.py _astrophot)")


def _galmoss22(data, model, threads):
    raise NotImplementedError("GalMOSS 2.2: the worker (its Dataset reads FITS files) is not written yet "
                              "(benchmarks/peers.py _galmoss22)")


# ================================================================ the driver
def draw_mocks(n, model, seed, path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.helpers.mocks import bulge_disk_mocks, single_sersic_mocks

    mocks = (single_sersic_mocks if model == "sersic" else bulge_disk_mocks)(n, seed=seed)
    arrays = {"images": mocks.images, "sigmas": mocks.sigmas, "psfs": mocks.psfs}
    arrays.update({f"truth_{k}": np.asarray(v) for k, v in mocks.truth.items()})
    arrays.update({f"start_{k}": np.asarray(v) for k, v in mocks.start.items()})
    np.savez(path, **arrays)
    return arrays


def truths(data, model):
    if model == "sersic":
        return {"re": data["truth_re"][:, None], "n": data["truth_n"][:, None], "flux": flux_of(data["truth_mag"])}
    re = np.stack([data["truth_re_b"], data["truth_re_d"]], 1)
    return {"re": re, "n": np.tile([4.0, 1.0], (len(re), 1)),
            "flux": flux_of(data["truth_mag_b"]) + flux_of(data["truth_mag_d"])}


def fit_galmoss(data, model, batch_size, threads):
    import torch

    import galmoss as gm

    torch.set_num_threads(threads)

    def dataset(rows):
        g = lambda f, suffix: _key(data, "start", f, suffix, model)[rows]  # noqa: E731
        xc, yc = gm.p(data["start_cx"][rows]), gm.p(data["start_cy"][rows])
        profiles = {name: gm.lp.Sersic(
            cen_x=xc, cen_y=yc, pa=gm.p(g("pa", sfx), angle=True), axis_r=gm.p(g("q", sfx)), eff_r=gm.p(g("re", sfx)),
            mag=gm.p(g("mag", sfx), M0=ZERO_POINT),
            ser_n=gm.p(fixed_n, fit=False) if fixed_n is not None else gm.p(g("n", sfx)))
            for name, sfx, fixed_n in components(model)}
        ds = gm.Dataset.from_arrays(data["images"][rows], data["sigmas"][rows], data["psfs"][rows])
        ds.define_profiles(**profiles)
        return ds

    # warm-up (allocator, kernels) on two galaxies, outside the timing as the peers' imports are
    gm.Fitting(dataset(slice(0, 2)), batch_size=2, iteration=3, device="cpu", progress=False).fit()
    fitting = gm.Fitting(dataset(slice(None)), batch_size=batch_size, iteration=200, device="cpu", progress=False)
    t0, c0 = time.perf_counter(), time.process_time()
    res = fitting.fit()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    names = [c[0] for c in components(model)]
    out = {"re": np.stack([np.asarray(res[f"{k}_eff_r"]) for k in names], 1),
           "n": np.stack([np.asarray(res[f"{k}_ser_n"]) for k in names], 1),
           "flux": sum(flux_of(np.asarray(res[f"{k}_mag"])) for k in names),
           "converged": np.asarray(res["converged"], dtype=float)}
    return out, wall, cpu, f"galmoss {gm.__version__}, torch {torch.__version__}, {threads} threads, B={batch_size}"


def accuracy(out, truth, model):
    rel = lambda a, b: np.abs(np.asarray(a, float).reshape(np.shape(b)) - b) / b  # noqa: E731
    acc = {"re": float(np.nanmedian(rel(out["re"], truth["re"]))), "flux": float(np.nanmedian(rel(out["flux"], truth["flux"]))),
           "n": float(np.nanmedian(rel(out["n"], truth["n"]))) if model == "sersic" else float("nan"),
           "converged": float(np.mean(np.asarray(out["converged"], float) > 0.5))}
    return acc


def run_peer(name, venvs, mocks_path, model, threads, timeout):
    folder, _ = PEERS[name]
    python = Path(venvs) / folder / "bin" / "python"
    if not python.exists():
        return None, f"not installed (no {python}; create it with python3 -m venv and pip install the package)"
    result = mocks_path.with_suffix(f".{name}.{model}.json")
    result.unlink(missing_ok=True)
    cmd = [str(python), str(Path(__file__).resolve()), "--worker", name, "--mocks", str(mocks_path), "--model", model,
           "--threads", str(threads), "--result", str(result)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": ""}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout} s"
    if proc.returncode != 0 or not result.exists():
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"failed: {last[:200]}"
    return json.loads(result.read_text()), None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16, help="galaxies per model")
    parser.add_argument("--models", nargs="+", default=["sersic", "bulge+disk"], choices=["sersic", "bulge+disk"])
    parser.add_argument("--peers", nargs="+", default=list(PEERS), choices=list(PEERS))
    parser.add_argument("--venvs", default="/tmp/peers", help="folder holding one venv per peer")
    parser.add_argument("--threads", type=int, default=2, help="threads given to every fitter")
    parser.add_argument("--batch", type=int, default=64, help="galmoss batch size")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--work", default="/tmp/peers", help="where the mocks .npz and results go")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per peer and model")
    parser.add_argument("--out", default=None, help="also write the table (markdown) here")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the mocks .npz and the peers' results already in --work (refit galmoss only)")
    # worker mode
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mocks", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--model", default="sersic", help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return run_worker(args)

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    notes = []
    header = ("| model | fitter | CPU-s / galaxy | wall-s / galaxy | galmoss speed-up (CPU, wall) | "
              "median rel. err r_e | n | flux | converged |")
    print(f"load average before: {os.getloadavg()}", flush=True)
    for model in args.models:
        path = work / f"mocks_{model.replace('+', '_')}_{args.n}.npz"
        data = dict(np.load(path)) if args.reuse and path.exists() else draw_mocks(args.n, model, args.seed, path)
        truth = truths(data, model)
        ours, wall, cpu, info = fit_galmoss(data, model, args.batch, args.threads)
        results = [("galmoss", info, wall, cpu, accuracy(ours, truth, model))]
        print(f"{model}: galmoss {cpu / args.n:.3f} CPU-s, {wall / args.n:.3f} wall-s per galaxy ({info})", flush=True)
        for name in args.peers:
            done = path.with_suffix(f".{name}.{model}.json")
            if args.reuse and done.exists():
                got, why = json.loads(done.read_text()), None
            else:
                got, why = run_peer(name, args.venvs, path, model, args.threads, args.timeout)
            if got is None:
                notes.append(f"{PEERS[name][1]} ({model}): {why}")
                print(f"{model}: {PEERS[name][1]}: {why}", flush=True)
                continue
            results.append((PEERS[name][1], got["info"], got["wall"], got["cpu"], accuracy(got["out"], truth, model)))
            print(f"{model}: {PEERS[name][1]} {got['cpu'] / args.n:.3f} CPU-s, {got['wall'] / args.n:.3f} wall-s per galaxy "
                  f"({got['info']})", flush=True)
        _, _, w0, c0, _ = results[0]
        first = len(rows)
        for label, info, wall, cpu, acc in results:
            ratio = "—" if label == "galmoss" else f"{cpu / c0:.1f}x, {wall / w0:.1f}x"
            n_err = "fixed" if model != "sersic" else f"{acc['n']:.3f}"
            rows.append(f"| {model} | {label} | {cpu / args.n:.3f} | {wall / args.n:.3f} | {ratio} | {acc['re']:.3f} | "
                        f"{n_err} | {acc['flux']:.3f} | {acc['converged'] * 100:.0f} % |")
        print("\n".join([header, *rows[first:]]), flush=True)  # each model's rows as soon as it is done
    load = os.getloadavg()
    table = "\n".join([header, "|" + "---|" * 9, *rows])
    text = (f"{table}\n\n{args.n} galaxies per model, {args.threads} threads per fitter, load average after: "
            f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}\n" + "".join(f"\n- {n}" for n in notes) + "\n")
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
