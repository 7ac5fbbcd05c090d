"""`galmoss galfit` on feedmes for GalSim mocks: agreement with the Python API, truth, timing.

Mock sets (48x48 cutouts, Moffat PSF FWHM 3 px, sky-limited noise, starts
perturbed as a catalogue's: +0.5/-0.4 px, +0.2 mag, r_e and n x1.2, ...):

* ``single``   single Sersic, sigma image given (the timing run)
* ``bd``       bulge (Sersic) + disk (expdisk) + sky, ``1_2 x offset`` / ``1_2 y offset``
* ``masked``   single Sersic with a bright star removed by an F) mask
* ``region``   single Sersic in a 120x100 frame, H) fits a 48x48 section
* ``fine``     single Sersic with a PSF sampled 2x finer than the data (E) 2)

Reports, per set: median |fit - truth| / sigma and the fraction beyond 3 sigma of
each parameter; for ``single``, the largest |CLI - API| / sigma over feedmes also
fitted one by one through ``gm.read_galfit`` + ``gm.Fitting``, and the time per
galaxy of the batched run against that of the one-by-one run (in-process, so
without the ~5 s a separate process per file costs to import torch; that cost
is timed separately and added for the ``galfit``-like per-process figure).

Usage::

    python benchmarks/galfit_feedmes.py --single 200 --others 30 --api 30
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.galfit_mocks import (  # noqa: E402
    SKY_SIGMA, ZP, expdisk_block, galsim, galsim_profile, observe, perturbed_start, sersic_block, sersic_feedme,
    sersic_truth, sky_block, write_image, write_psf,
)
from tests.helpers.galsim_mocks import draw, moffat_psf  # noqa: E402

SHAPE = (48, 48)
KEYS = {"1_XC": "x", "1_YC": "y", "1_MAG": "mag", "1_RE": "re", "1_N": "n", "1_AR": "q", "1_PA": "pa"}


def make_set(kind: str, count: int, folder: Path, rng) -> tuple[list[Path], list[dict]]:
    folder.mkdir(parents=True, exist_ok=True)
    write_psf(folder)
    write_image(folder / "sigma.fits", np.full(SHAPE, SKY_SIGMA))
    if kind == "fine":
        (folder / "fine").mkdir()
        write_psf(folder / "fine", size=79, fwhm=2.5, beta=3.0, oversample=2)
    files, truths = [], []
    for i in range(count):
        spec = dict(sigma="sigma.fits")
        if kind == "bd":
            cx, cy = 24.5 + rng.uniform(-1, 1), 24.5 + rng.uniform(-1, 1)
            t = dict(x=cx, y=cy, mag_b=rng.uniform(18.5, 19.5), re_b=rng.uniform(1.5, 2.5), mag_d=rng.uniform(17.8, 18.5),
                     rs=rng.uniform(3.5, 6.0), q_d=rng.uniform(0.4, 0.8), pa=rng.uniform(-60, 60), sky=0.3)
            flux = lambda m: 10 ** (-0.4 * (m - ZP))  # noqa: E731
            bulge = galsim.Sersic(n=4.0, half_light_radius=t["re_b"] * np.sqrt(0.85), flux=flux(t["mag_b"]))
            bulge = bulge.shear(q=0.85, beta=(t["pa"] + 90) * galsim.degrees)
            disk = galsim.Exponential(scale_radius=t["rs"] * np.sqrt(t["q_d"]), flux=flux(t["mag_d"]))
            disk = disk.shear(q=t["q_d"], beta=(t["pa"] + 90) * galsim.degrees)
            write_image(folder / f"g{i}.fits", observe((bulge + disk).shift(cx - 24.5, cy - 24.5), SHAPE, rng, sky=0.3))
            (folder / "bd.constraints").write_text("1_2 x offset\n1_2 y offset\n1 n 1 to 8\n")
            comps = (sersic_block(1, cx + 0.3, cy - 0.3, t["mag_b"] + 0.2, t["re_b"] * 1.2, 3.0, 0.8, t["pa"] + 5)
                     + expdisk_block(2, cx + 0.3, cy - 0.3, t["mag_d"] - 0.1, t["rs"] * 0.85, min(t["q_d"] + 0.1, 0.95), t["pa"] + 5)
                     + sky_block(3, 0.25))
            spec.update(constraints="bd.constraints")
        else:
            shape = SHAPE
            if kind == "region":
                shape = (100, 120)
                t = sersic_truth(rng, 70.5, 40.5)
                write_image(folder / f"g{i}_sigma.fits", np.full(shape, SKY_SIGMA))
                spec.update(sigma=f"g{i}_sigma.fits", region="47 94 17 64")
            else:
                t = sersic_truth(rng, 24.5, 24.5)
            if kind == "fine":
                img = draw(galsim_profile(t, shape), shape, moffat_psf(3.0, 2.5)) + rng.normal(0, SKY_SIGMA, shape)
                spec.update(psf="fine/psf.fits", sampling=2)
            else:
                img = observe(galsim_profile(t, shape), shape, rng)
            if kind == "masked":
                yy, xx = np.mgrid[1 : shape[0] + 1, 1 : shape[1] + 1]
                sx, sy = rng.uniform(5, 12), rng.uniform(36, 43)
                star = (xx - sx) ** 2 + (yy - sy) ** 2 < 16
                img[star] += 5.0
                write_image(folder / f"g{i}_mask.fits", star.astype(np.int16))
                spec.update(mask=f"g{i}_mask.fits")
            write_image(folder / f"g{i}.fits", img)
            comps = sersic_block(1, **perturbed_start(t, rng))
        path = folder / f"g{i}.feedme"
        path.write_text(sersic_feedme(f"g{i}", image=f"g{i}.fits", block=f"blocks/g{i}.fits", comps=comps, **spec))
        files.append(path)
        truths.append(t)
    return files, truths


def pulls(table, truths, kind: str) -> dict:
    if kind == "bd":
        keys = {"1_XC": "x", "1_YC": "y", "1_MAG": "mag_b", "1_RE": "re_b", "2_MAG": "mag_d", "2_RS": "rs", "2_AR": "q_d",
                "3_SKY": "sky"}
    else:
        keys = KEYS
    out = {}
    for col, name in keys.items():
        fit = np.asarray(table[col], dtype=float)
        err = np.asarray(table[col + "_err"], dtype=float)
        true = np.array([t[name] for t in truths])
        z = np.abs(fit - true) / err
        z = z[np.isfinite(z)]
        out[col] = {"median_pull": round(float(np.median(z)), 3), "beyond_3sigma": round(float(np.mean(z > 3)), 3)}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--single", type=int, default=200)
    parser.add_argument("--others", type=int, default=30)
    parser.add_argument("--api", type=int, default=30, help="feedmes also fitted one by one through the API")
    parser.add_argument("--processes", type=int, default=3, help="separate `galmoss galfit FILE` processes timed")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "galfit_feedmes.json"))
    args = parser.parse_args(argv)

    import torch

    import galmoss as gm
    from galmoss.galfit import run_galfit

    torch.set_num_threads(2)
    rng = np.random.default_rng(2026)
    report: dict = {"machine": f"{torch.get_num_threads()} CPU threads", "shape": SHAPE}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for kind, count in (("single", args.single), ("bd", args.others), ("masked", args.others),
                            ("region", args.others), ("fine", args.others)):
            if count <= 0:
                continue
            files, truths = make_set(kind, count, tmp / kind, rng)
            t0 = time.perf_counter()
            table = run_galfit(files, output=tmp / kind / "run", batch_size=args.batch_size, device="cpu")
            elapsed = time.perf_counter() - t0
            ok = int(np.sum(table["flag"] & (gm.flags.Flag.read_error | gm.flags.Flag.fully_masked) == 0))
            entry = {"feedmes": count, "fitted": ok, "seconds": round(elapsed, 1),
                     "seconds_per_galaxy": round(elapsed / count, 3), "median_chi2nu": round(float(np.nanmedian(table["chi2nu"])), 4),
                     "pulls": pulls(table, truths, kind)}
            if kind == "single" and args.api:
                worst = {}
                t0 = time.perf_counter()
                for i, path in enumerate(files[: args.api]):
                    dataset, _ = gm.read_galfit(path)
                    fitting = gm.Fitting(dataset=dataset, batch_size=1, iteration=200, device="cpu", progress=False)
                    fitting.fit()
                    api = fitting.uncertainty("covar_mat")
                    for col, slot in (("1_XC", "cen_x"), ("1_YC", "cen_y"), ("1_MAG", "mag"), ("1_RE", "eff_r"),
                                      ("1_N", "ser_n"), ("1_AR", "axis_r"), ("1_PA", "pa")):
                        d = abs(table[col][i] - api[f"sersic_1_{slot}"][0]) / api[f"sersic_1_{slot}_err"][0]
                        worst[col] = max(worst.get(col, 0.0), float(d))
                one_by_one = (time.perf_counter() - t0) / args.api
                entry["cli_vs_api_max_abs_diff_in_sigma"] = {k: round(v, 4) for k, v in worst.items()}
                entry["one_by_one_seconds_per_galaxy_in_process"] = round(one_by_one, 3)
                if args.processes:
                    t0 = time.perf_counter()
                    for path in files[: args.processes]:
                        subprocess.run([sys.executable, "-m", "galmoss", "galfit", str(path), "--output", str(tmp / "proc"),
                                        "--device", "cpu"], check=False, capture_output=True)
                    entry["one_process_per_feedme_seconds_per_galaxy"] = round((time.perf_counter() - t0) / args.processes, 3)
            report[kind] = entry
            print(kind, json.dumps(entry), flush=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
