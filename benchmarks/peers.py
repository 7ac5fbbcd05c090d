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
GalMOSS 2.2    ``galmoss22``                    ``pip install torch==2.13.0 galmoss==2.2 numpy astropy
                                                tqdm h5py pandas torch_optimizer`` (its wheel
                                                declares none of the packages it imports)
=============  ===============================  ==========================================

Each peer gets the same images, sigma images and PSFs (normalised), no mask
(the mocks have none), the same starts, and its own optimizer as its
documentation runs it: IMFIT's LM; AstroPhot's ``fit.LM`` one galaxy at a time
and ``fit.BatchLM`` on batches of 8 (``ASTROPHOT_BATCH``), on a
``sersic galaxy model`` (bulge + disk: a ``group model`` of two, the disk's
centre pointing at the bulge's); GalMOSS 2.2's DiffGrad for 1000 iterations
with its own early stop, on FITS files written to a temporary folder under
``--work``. A component's fixed n (bulge + disk: 4 and 1) is fixed in every
fitter. A peer whose venv is missing, or that does not import or fails, is
reported as such and the run goes on. Every fitter's timing covers its fits
only (not the import, not the reading of the ``.npz``, not a short warm-up fit
that each torch-based fitter gets first): CPU-s is the process's CPU time over
all its threads, wall-s the elapsed time, both per galaxy. Accuracy is on the
same galaxies: the median of |fit - truth| / truth for r_e, n and the total
flux, the fraction of fits the fitter itself calls converged (each worker's
docstring says what that is for its peer), and the fraction at the truth's chi2:
the fitter's own chi2 at most 25 above that of the noiseless GalSim image
(galmoss and pyimfit report a chi2; the others' column is empty). GalMOSS 2.2 costs about 0.3 CPU-s
per galaxy and iteration on 128x128 with a 51x51 PSF (a direct ``conv2d``), so
``--galmoss22-n`` can give it the first N galaxies only; its row then says
"first N of M" and its accuracy is on those N. galmoss is fitted twice, as
it runs by default and with its restarts off (``Fitting(restarts=False)``:
the first fit alone, as IMFIT runs; ``--no-restarts-off-row`` leaves that row
out), and each peer's row gives galmoss's speed-up over it both ways.

Usage::

    python benchmarks/peers.py --n 16 --galmoss22-n 2   # both models, every peer found
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
        out.setdefault("chi2", []).append(float(fitter.fitStatistic))
        out.setdefault("n_iter", []).append(float(fitter.nIter))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return out, wall, cpu, f"pyimfit {getattr(pyimfit, '__version__', '?')}, maxThreads={threads}"


def run_worker(args):
    data = dict(np.load(args.mocks))
    if args.first:  # the first galaxies only (GalMOSS 2.2's cost per galaxy, see --galmoss22-n)
        data = {k: v[: args.first] for k, v in data.items()}
    if args.threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if args.worker == "pyimfit":
        out, wall, cpu, info = worker_pyimfit(data, args.model, args.threads)
    elif args.worker in ("astrophot-lm", "astrophot-batchlm"):
        out, wall, cpu, info = _astrophot(data, args.model, args.threads, batch=args.worker.endswith("batchlm"))
    elif args.worker == "galmoss22":
        out, wall, cpu, info = _galmoss22(data, args.model, args.threads, args.batch, Path(args.mocks).resolve().parent)
    else:
        raise SystemExit(f"--worker {args.worker!r}: choose one of {', '.join(PEERS)}")
    Path(args.result).write_text(json.dumps({"out": {k: np.asarray(v, dtype=float).tolist() for k, v in out.items()},
                                             "wall": wall, "cpu": cpu, "info": info}))


def _starts(data, model, rows):
    """Per component: (name, fixed n or None, dict of start arrays over ``rows``), centre 1-based as the mocks'."""
    comps = []
    for name, suffix, fixed_n in components(model):
        g = lambda f: np.asarray(_key(data, "start", f, suffix, model)[rows], dtype=float)  # noqa: E731
        n0 = np.full(len(g("re")), fixed_n) if fixed_n is not None else g("n")
        comps.append((name, fixed_n, {"pa": g("pa"), "q": g("q"), "re": g("re"), "mag": g("mag"), "n": n0}))
    return np.asarray(data["start_cx"][rows], float), np.asarray(data["start_cy"][rows], float), comps


def _astrophot(data, model, threads, batch):
    """AstroPhot 0.18: ``fit.LM`` one galaxy at a time, or ``fit.BatchLM`` on batches of ``ASTROPHOT_BATCH``.

    Coordinates: AstroPhot's pixel (i, j) has its centre at the integer index
    (0-based) and its ``PA`` is the angle from +y towards -x, as the mocks'
    (1-based centres, GalSim ``beta = PA + 90``): centre = start - 1, PA = start
    in radians. The start ``Ie`` comes from the start magnitude through b_n (the
    Ciotti & Bertin series AstroPhot itself uses); the total flux reported is the
    analytic Sersic total of the fitted (Ie, Re, n, q), as the magnitudes of
    galmoss and IMFIT are. Sampling and integration are AstroPhot's defaults
    (``auto``: midpoint with its adaptive ``bright`` refinement on 128x128).
    "Converged" is AstroPhot's own verdict: a message of "success" (with or
    without "by immobility") for LM; for BatchLM, whose message speaks for the
    whole batch, the same two tests it applies to the batch (relative chi^2
    change < tolerance with L < 0.1, or over 10 steps) applied to each galaxy.
    """
    import torch

    torch.set_num_threads(threads)
    import astrophot as ap

    q_max, n_lo, n_hi = 0.99, 0.37, 7.9  # inside AstroPhot's valid ranges (q in (0.01, 1), n in (0.36, 8))

    def target(i):
        psf = data["psfs"][i] / data["psfs"][i].sum()
        return ap.TargetImage(name=f"galaxy{i}", data=data["images"][i], std=data["sigmas"][i],
                              psf=ap.PSFImage(data=psf), pixelscale=1.0, zeropoint=ZERO_POINT)

    def build(tgt, rows):
        """The model of ``rows`` on ``tgt`` (one galaxy: scalars; a batch: values with a leading batch axis)."""
        cx, cy, comps = _starts(data, model, rows)
        parts = []
        for name, fixed_n, st in comps:
            q = np.minimum(st["q"], q_max)
            n = np.clip(st["n"], n_lo, n_hi)
            ie = sersic_ie(flux_of(st["mag"]), st["re"], n, q)
            kw = dict(q=float(q[0]), PA=float(np.deg2rad(st["pa"][0]) % np.pi), Re=float(st["re"][0]), Ie=float(ie[0]),
                      n={"value": float(fixed_n), "dynamic": False} if fixed_n is not None else float(n[0]))
            # one shared centre: the second component points at the first one's
            kw["center"] = parts[0].center if parts else [float(cx[0] - 1), float(cy[0] - 1)]
            part = ap.Model(model_type="sersic galaxy model", name=name, target=tgt, **kw)
            parts.append(part)
        top = parts[0] if len(parts) == 1 else ap.Model(model_type="group model", name="bulge_disk", models=parts,
                                                        target=tgt)
        top.initialize()
        if len(cx) > 1:  # a batch: every dynamic parameter gets one value per galaxy
            parts[0].center = tuple((float(x - 1), float(y - 1)) for x, y in zip(cx, cy))
            for part, (_, fixed_n, st) in zip(parts, comps):
                q = np.minimum(st["q"], q_max)
                n = np.clip(st["n"], n_lo, n_hi)
                part.q = tuple(map(float, q))
                part.PA = tuple(map(float, np.deg2rad(st["pa"]) % np.pi))
                part.Re = tuple(map(float, st["re"]))
                part.Ie = tuple(map(float, sersic_ie(flux_of(st["mag"]), st["re"], n, q)))
                if fixed_n is None:
                    part.n = tuple(map(float, n))
        return top, parts

    def read(parts, count):
        val = lambda p, k: np.broadcast_to(np.asarray(ap.backend.to_numpy(getattr(p, k).value), float), (count,))  # noqa: E731
        re = np.stack([val(p, "Re") for p in parts], 1)
        ns = np.stack([val(p, "n") for p in parts], 1)
        flux = sum(2 * np.pi * val(p, "n") * np.exp(sersic_b(val(p, "n"))) * sersic_b(val(p, "n")) ** (-2 * val(p, "n"))
                   * np.array([math.gamma(2 * v) for v in val(p, "n")]) * val(p, "q") * val(p, "Re") ** 2 * val(p, "Ie")
                   for p in parts)
        return re, ns, flux

    out = {k: [] for k in ("re", "n", "flux", "converged", "n_iter")}
    size = int(os.environ.get("ASTROPHOT_BATCH", "8"))
    count = len(data["images"])
    # warm-up (TorchScript, allocator) outside the timing, as galmoss's and the imports are
    if batch:
        wt = ap.TargetImageBatch([target(i) for i in range(2)])
        top, _ = build(wt.images[0], slice(0, 2))
        ap.fit.BatchLM(top, wt, wt.window, max_iter=1, verbose=0).fit(update_uncertainty=False)
    else:
        top, _ = build(target(0), slice(0, 1))
        ap.fit.LM(top, max_iter=1, verbose=0).fit(update_uncertainty=False)
    t0, c0 = time.perf_counter(), time.process_time()
    if batch:
        for lo in range(0, count, size):
            rows = slice(lo, min(lo + size, count))
            bt = ap.TargetImageBatch([target(i) for i in range(rows.start, rows.stop)])
            top, parts = build(bt.images[0], rows)
            fitter = ap.fit.BatchLM(top, bt, bt.window, verbose=0)
            fitter.fit(update_uncertainty=False)
            k = rows.stop - rows.start
            re, ns, flux = read(parts, k)
            hist = np.array([torch.as_tensor(h).detach().cpu().numpy().ravel() for h in fitter.loss_history])
            lam = torch.as_tensor(fitter.L).detach().cpu().numpy().ravel()
            tol = fitter.relative_tolerance
            done = ((hist[-2] - hist[-1]) / hist[-1] < tol) & (lam < 0.1) if len(hist) >= 3 else np.zeros(k, bool)
            if len(hist) >= 10:
                done |= (hist[-10] - hist[-1]) / hist[-1] < tol
            out["re"].extend(re.tolist())
            out["n"].extend(ns.tolist())
            out["flux"].extend(flux.tolist())
            out["converged"].extend(done.astype(float).tolist())
            out["n_iter"].extend([float(len(hist) - 1)] * k)
    else:
        for i in range(count):
            top, parts = build(target(i), slice(i, i + 1))
            fitter = ap.fit.LM(top, verbose=0)
            fitter.fit(update_uncertainty=False)
            re, ns, flux = read(parts, 1)
            out["re"].append(re[0].tolist())
            out["n"].append(ns[0].tolist())
            out["flux"].append(float(flux[0]))
            out["converged"].append(float("success" in fitter.message))
            out["n_iter"].append(float(len(fitter.loss_history) - 1))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    how = f"BatchLM, batches of {size}" if batch else "LM, one galaxy at a time"
    return out, wall, cpu, f"AstroPhot {ap.__version__} ({how}), torch {torch.__version__}, {threads} threads"


def _galmoss22(data, model, threads, batch_size, work):
    """GalMOSS 2.2 (DiffGrad, 1000 iterations, its early stop) on FITS planes written to a folder under ``work``.

    GalMOSS 2.2's ``DataSet`` reads one FITS file per plane and galaxy, so the
    mock's image, sigma and (normalised) PSF are written to a temporary folder
    inside the run's work folder first; that writing is outside the timing, the
    reading (in its ``DataLoader``, inside ``fit()``) inside it. Its pixel (row i,
    column j) has its centre at (j + 0.5, i + 0.5) and its PA is the mocks'
    (degrees from +y towards -x): cen = start - 0.5. The parameters are set up as
    its tutorial does (``ser_n`` in log, the others linear, default step 0.015,
    1000 iterations); batch = the driver's ``--batch``. "Converged": GalMOSS's
    own per-galaxy early-stop test (chi^2 change < 1e-5 for 50 iterations) met
    before the 1000 iterations ran out.
    """
    import shutil
    import tempfile

    os.environ.setdefault("TQDM_DISABLE", "1")  # its per-iteration progress bar, read when tqdm is imported
    import torch

    torch.set_num_threads(threads)
    from astropy.io import fits

    import galmoss as gm

    class Fitting(gm.Fitting):
        """Keeps, per batch, which galaxies met GalMOSS's own early-stop test."""

        stopped: list

        def detect_update(self, fitting_metrics, chi_mu, iter):  # noqa: A002 - GalMOSS's signature
            update, metrics = super().detect_update(fitting_metrics, chi_mu, iter)
            self._stop = (metrics[0] >= self.early_stop).detach().clone()
            return update, metrics

        def fitting_metrics_append(self, batched_eff_iter, batched_best_chi_mu):
            super().fitting_metrics_append(batched_eff_iter, batched_best_chi_mu)
            self.stopped = [*getattr(self, "stopped", []), self._stop]

    count = len(data["images"])
    folder = Path(tempfile.mkdtemp(prefix="galmoss22_", dir=work))
    try:
        paths = {k: [] for k in ("image", "sigma", "psf")}
        for i in range(count):
            planes = {"image": data["images"][i], "sigma": data["sigmas"][i], "psf": data["psfs"][i] / data["psfs"][i].sum()}
            for k, arr in planes.items():
                path = folder / f"galaxy{i}_{k}.fits"
                fits.PrimaryHDU(np.asarray(arr, dtype=np.float64)).writeto(path)
                paths[k].append(str(path))

        def dataset(rows):
            cx, cy, comps = _starts(data, model, rows)
            xc, yc = gm.p(cx - 0.5), gm.p(cy - 0.5)
            profiles = {}
            for name, fixed_n, st in comps:
                profiles[name] = gm.lp.Sersic(
                    cen_x=xc, cen_y=yc, pa=gm.p(st["pa"], angle=True), axis_r=gm.p(st["q"]), eff_r=gm.p(st["re"]),
                    mag=gm.p(st["mag"], M0=ZERO_POINT),
                    ser_n=gm.p(st["n"], fit=False) if fixed_n is not None else gm.p(st["n"], log=True))
            idx = range(count)[rows]
            ds = gm.DataSet(galaxy_index=[f"galaxy{i}" for i in idx], image_path=[paths["image"][i] for i in idx],
                            sigma_path=[paths["sigma"][i] for i in idx], psf_path=[paths["psf"][i] for i in idx],
                            device="cpu")
            ds.define_profiles(**profiles)
            return ds, profiles

        # warm-up outside the timing, as for the others (its Profiles live on the DataSet class: rebuilt below)
        ds, _ = dataset(slice(0, 2))
        Fitting(dataset=ds, batch_size=2, iteration=2).fit()
        ds, profiles = dataset(slice(None))
        iterations = int(os.environ.get("GALMOSS22_ITERATIONS", "1000"))  # fewer only for a smoke run
        fitting = Fitting(dataset=ds, batch_size=batch_size, iteration=iterations)
        t0, c0 = time.perf_counter(), time.process_time()
        fitting.fit()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    best = lambda prm: np.asarray(prm.total_best_value_numpy, float).reshape(count)  # noqa: E731
    fixed = lambda prm: np.asarray(prm.total_initial_value_numpy, float).reshape(count)  # noqa: E731
    names = [c[0] for c in components(model)]
    ser_n = [profiles[k].ser_n for k in names]
    out = {"re": np.stack([best(profiles[k].eff_r) for k in names], 1),
           "n": np.stack([best(p) if p.fit else fixed(p) for p in ser_n], 1),
           "flux": sum(flux_of(best(profiles[k].mag)) for k in names),
           "converged": torch.cat(fitting.stopped).cpu().numpy().astype(float),
           "n_iter": np.asarray(fitting.total_eff_iter.cpu(), float)}
    version = getattr(gm, "__version__", None) or _dist_version("galmoss")
    return out, wall, cpu, f"GalMOSS {version} (DiffGrad, at most {iterations} it.), torch {torch.__version__}, {threads} threads, B={batch_size}"


def _dist_version(name):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


# ================================================================ the driver
def draw_mocks(n, model, seed, path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.helpers.mocks import bulge_disk_mocks, single_sersic_mocks

    mocks = (single_sersic_mocks if model == "sersic" else bulge_disk_mocks)(n, seed=seed)
    arrays = {"images": mocks.images, "sigmas": mocks.sigmas, "psfs": mocks.psfs, "chi2_true": mocks.chi2_true()}
    arrays.update({f"truth_{k}": np.asarray(v) for k, v in mocks.truth.items()})
    arrays.update({f"start_{k}": np.asarray(v) for k, v in mocks.start.items()})
    np.savez(path, **arrays)
    return arrays


def truths(data, model):
    extra = {"chi2_true": data["chi2_true"]} if "chi2_true" in data else {}
    if model == "sersic":
        return {"re": data["truth_re"][:, None], "n": data["truth_n"][:, None], "flux": flux_of(data["truth_mag"]),
                **extra}
    re = np.stack([data["truth_re_b"], data["truth_re_d"]], 1)
    return {"re": re, "n": np.tile([4.0, 1.0], (len(re), 1)),
            "flux": flux_of(data["truth_mag_b"]) + flux_of(data["truth_mag_d"]), **extra}


def fit_galmoss(data, model, batch_size, threads, restarts=True):
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
    fitting = gm.Fitting(dataset(slice(None)), batch_size=batch_size, iteration=200, device="cpu", progress=False,
                         threads=threads, restarts=restarts)
    t0, c0 = time.perf_counter(), time.process_time()
    res = fitting.fit()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    names = [c[0] for c in components(model)]
    out = {"re": np.stack([np.asarray(res[f"{k}_eff_r"]) for k in names], 1),
           "n": np.stack([np.asarray(res[f"{k}_ser_n"]) for k in names], 1),
           "flux": sum(flux_of(np.asarray(res[f"{k}_mag"])) for k in names),
           "converged": np.asarray(res["converged"], dtype=float), "chi2": np.asarray(res["chi2"], dtype=float)}
    return out, wall, cpu, (f"galmoss {gm.__version__}, torch {torch.__version__}, {threads} threads, B={batch_size}"
                            + ("" if restarts else ", restarts off"))


def accuracy(out, truth, model):
    rel = lambda a, b: np.abs(np.asarray(a, float).reshape(np.shape(b)) - b) / b  # noqa: E731
    acc = {"re": float(np.nanmedian(rel(out["re"], truth["re"]))), "flux": float(np.nanmedian(rel(out["flux"], truth["flux"]))),
           "n": float(np.nanmedian(rel(out["n"], truth["n"]))) if model == "sersic" else float("nan"),
           "converged": float(np.mean(np.asarray(out["converged"], float) > 0.5))}
    # at the truth's chi2: the fit's chi2 (its own model) at most 25 above the noiseless truth's (GalSim's)
    chi2, chi2_true = out.get("chi2"), truth.get("chi2_true")
    acc["at_truth"] = (float(np.mean(np.asarray(chi2, float) <= chi2_true[: len(chi2)] + 25.0))
                       if chi2 is not None and chi2_true is not None else float("nan"))
    return acc


def run_peer(name, venvs, mocks_path, model, threads, batch, timeout, first=0):
    folder, _ = PEERS[name]
    python = Path(venvs) / folder / "bin" / "python"
    if not python.exists():
        return None, f"not installed (no {python}; create it with python3 -m venv and pip install the package)"
    result = mocks_path.with_suffix(f".{name}.{model}.json")
    result.unlink(missing_ok=True)
    cmd = [str(python), str(Path(__file__).resolve()), "--worker", name, "--mocks", str(mocks_path), "--model", model,
           "--threads", str(threads), "--batch", str(batch), "--first", str(first), "--result", str(result)]
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
    parser.add_argument("--galmoss22-n", type=int, default=0,
                        help="fit only the first N galaxies of each model with GalMOSS 2.2 (0: all); its first-order "
                             "optimizer runs 1000 iterations at ~0.3 CPU-s per galaxy each on 128x128 with a 51x51 PSF")
    parser.add_argument("--restarts-off-row", action=argparse.BooleanOptionalAction, default=True,
                        help="also fit galmoss with restarts off (Fitting(restarts=False)) on the same mocks")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the mocks .npz and the peers' results already in --work (refit galmoss only)")
    # worker mode
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mocks", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--model", default="sersic", help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return run_worker(args)

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    notes = []
    header = ("| model | fitter | CPU-s / galaxy | wall-s / galaxy | galmoss speed-up (CPU, wall) | "
              "median rel. err r_e | n | flux | converged | at the truth's chi2 |")
    print(f"load average before: {os.getloadavg()}", flush=True)
    for model in args.models:
        path = work / f"mocks_{model.replace('+', '_')}_{args.n}.npz"
        data = dict(np.load(path)) if args.reuse and path.exists() else draw_mocks(args.n, model, args.seed, path)
        truth = truths(data, model)
        ours, wall, cpu, info = fit_galmoss(data, model, args.batch, args.threads)
        results = [("galmoss", info, wall, cpu, accuracy(ours, truth, model), args.n)]
        print(f"{model}: galmoss {cpu / args.n:.3f} CPU-s, {wall / args.n:.3f} wall-s per galaxy ({info})", flush=True)
        if args.restarts_off_row:  # the first fit alone: what the restarts cost and what they buy
            plain, wall, cpu, info = fit_galmoss(data, model, args.batch, args.threads, restarts=False)
            results.append(("galmoss, restarts off", info, wall, cpu, accuracy(plain, truth, model), args.n))
            print(f"{model}: galmoss, restarts off {cpu / args.n:.3f} CPU-s, {wall / args.n:.3f} wall-s per galaxy",
                  flush=True)
        for name in args.peers:
            done = path.with_suffix(f".{name}.{model}.json")
            if args.reuse and done.exists():
                got, why = json.loads(done.read_text()), None
            else:
                got, why = run_peer(name, args.venvs, path, model, args.threads, args.batch, args.timeout,
                                    first=args.galmoss22_n if name == "galmoss22" else 0)
            if got is None:
                notes.append(f"{PEERS[name][1]} ({model}): {why}")
                print(f"{model}: {PEERS[name][1]}: {why}", flush=True)
                continue
            k = len(got["out"]["flux"])  # fewer than args.n when --galmoss22-n chose the first k
            label = PEERS[name][1] + (f" (first {k} of {args.n})" if k < args.n else "")
            results.append((label, got["info"], got["wall"], got["cpu"],
                            accuracy(got["out"], {key: v[:k] for key, v in truth.items()}, model), k))
            print(f"{model}: {label} {got['cpu'] / k:.3f} CPU-s, {got['wall'] / k:.3f} wall-s per galaxy "
                  f"({got['info']})", flush=True)
        ours_rows = [(w / k, c / k) for label, _, w, c, _, k in results if label.startswith("galmoss")]
        first = len(rows)
        for label, info, wall, cpu, acc, k in results:
            wall, cpu = wall / k, cpu / k
            # a peer's row: galmoss's speed-up over it, with restarts and (when fitted) without
            ratio = "—" if label.startswith("galmoss") else "; ".join(
                f"{cpu / c0:.1f}x, {wall / w0:.1f}x" + (" (restarts off)" if i else "")
                for i, (w0, c0) in enumerate(ours_rows))
            n_err = "fixed" if model != "sersic" else f"{acc['n']:.3f}"
            rows.append(f"| {model} | {label} | {cpu:.3f} | {wall:.3f} | {ratio} | {acc['re']:.3f} | "
                        f"{n_err} | {acc['flux']:.3f} | {acc['converged'] * 100:.0f} % | {acc['at_truth'] * 100:.0f} % |")
        print("\n".join([header, *rows[first:]]), flush=True)  # each model's rows as soon as it is done
    load = os.getloadavg()
    table = "\n".join([header, "|" + "---|" * 10, *rows])
    text = (f"{table}\n\n{args.n} galaxies per model, {args.threads} threads per fitter, load average after: "
            f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}\n" + "".join(f"\n- {n}" for n in notes) + "\n")
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
