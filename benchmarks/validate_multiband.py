"""Joint multi-band bulge + disk fits against band-by-band fits, on GalSim mocks.

Each galaxy is a de Vaucouleurs bulge (q 0.6-1, r_e 0.25-0.6") plus an
exponential disk (q 0.3-1, r_e 1-2.4") sharing a centre (within 0.1" of the
cutout's) and a position angle (the bulge's within 10 degrees), defined on the
sky and drawn by GalSim in three bands with a **red bulge and a blue disk**:

* g: 0.2"/px, 48x48, Moffat FWHM 0.9" -- the **faint** band (half-light S/N 5-29, median 13;
  r 11-55, median 27; i 29-126, median 69);
* r: 0.2"/px, 48x48, Moffat FWHM 0.75";
* i: 0.4"/px, 24x24, Moffat FWHM 1.0" (another pixel scale).

B/T in r is uniform in 0.15-0.6; colours: bulge g - r = 1.3, r - i = 0.6,
disk g - r = 0.5, r - i = 0.2 (so B/T grows with wavelength). Noise is Gaussian
with the sigma image given; the PSF images hold the pixel response.

Every galaxy is fitted four ways from the same starts (the truth perturbed as a
catalogue's: fluxes and sizes by 10-30 %, q by 0.05-0.15, PA by 5-20 degrees,
centre by 0.1-0.3"): jointly in the three bands (one shape, a bulge and a disk
magnitude per band) and in each band alone (the same model). The bulge has n = 4
and the disk n = 1 held. Success is docs/validation.md's test: the fit's chi2
within 25 of the true (noiseless) model's, per fit (joint: all bands' pixels).

``--gradient``: the disk's r_e grows with wavelength (ln r_e linear in the mapped
wavelength, slope 0.2 over [-1, 1]: the disk is 1.5x larger in i than in g) and is
fitted with ``bands=1``; the table gives the recovered slope against the truth.

Usage::

    python benchmarks/validate_multiband.py --count 60 --seed 1 [--gradient]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import galmoss as gm  # noqa: E402
from tests.helpers.galsim_mocks import GSPARAMS, galsim  # noqa: E402

M0 = 30.0
WL = {"g": 477.0, "r": 623.1, "i": 762.5}
SCALE = {"g": 0.2, "r": 0.2, "i": 0.4}
SIZE = {"g": 48, "r": 48, "i": 24}
FWHM = {"g": 0.9, "r": 0.75, "i": 1.0}
COLOUR = {"bulge": {"g": 1.3, "r": 0.0, "i": -0.6}, "disk": {"g": 0.5, "r": 0.0, "i": -0.2}}
SIGMA = 1.0
FAINT = "g"
GRADIENT = 0.2  # d ln r_e(disk) / d (wavelength mapped to [-1, 1])


def mapped(band: str) -> float:
    lo, hi = min(WL.values()), max(WL.values())
    return 2 * (WL[band] - lo) / (hi - lo) - 1


def draw(count: int, seed: int, gradient: bool):
    rng = np.random.default_rng(seed)
    t = {
        "bt_r": rng.uniform(0.15, 0.6, count), "re_b": rng.uniform(0.25, 0.6, count),
        "re_d": rng.uniform(1.0, 2.4, count), "q_b": rng.uniform(0.6, 1.0, count),
        "q_d": rng.uniform(0.3, 1.0, count), "pa": rng.uniform(-90, 90, count),
        "dx": rng.uniform(-0.1, 0.1, count), "dy": rng.uniform(-0.1, 0.1, count),
        # total r magnitude (zero point 30, noise sigma 1 a pixel)
        "mag_r": rng.uniform(22.6, 23.8, count),
    }
    t["pa_b"] = t["pa"] + rng.normal(0, 5, count)
    for band in WL:
        t[f"bulge_{band}"] = t["mag_r"] - 2.5 * np.log10(t["bt_r"]) + COLOUR["bulge"][band]
        t[f"disk_{band}"] = t["mag_r"] - 2.5 * np.log10(1 - t["bt_r"]) + COLOUR["disk"][band]
        fb, fd = 10 ** (-0.4 * t[f"bulge_{band}"]), 10 ** (-0.4 * t[f"disk_{band}"])
        t[f"bt_{band}"] = fb / (fb + fd)
        t[f"re_d_{band}"] = t["re_d"] * (math.exp(GRADIENT * mapped(band)) if gradient else 1.0)
    images, clean, psfs = {b: [] for b in WL}, {b: [] for b in WL}, {}
    for band in WL:
        psf = galsim.Moffat(beta=3.5, fwhm=FWHM[band], gsparams=GSPARAMS)
        size, scale = SIZE[band], SCALE[band]
        k = 2 * int(3.3 / scale) + 1
        kernel = psf.drawImage(nx=k, ny=k, scale=scale).array.astype(np.float64)
        psfs[band] = kernel / kernel.sum()
        for i in range(count):
            parts = []
            for n, re, q, pa, mag in ((4.0, t["re_b"][i], t["q_b"][i], t["pa_b"][i], t[f"bulge_{band}"][i]),
                                      (1.0, t[f"re_d_{band}"][i], t["q_d"][i], t["pa"][i], t[f"disk_{band}"][i])):
                gal = galsim.Sersic(n=n, half_light_radius=re * math.sqrt(q), flux=10 ** (-0.4 * (mag - M0)),
                                    gsparams=GSPARAMS)
                parts.append(gal.shear(q=q, beta=(pa + 90.0) * galsim.degrees))
            gal = (parts[0] + parts[1]).shift(t["dx"][i], t["dy"][i])
            img = galsim.Convolve(gal, psf, gsparams=GSPARAMS).drawImage(nx=size, ny=size, scale=scale).array
            clean[band].append(img.astype(np.float64))
            images[band].append(img + rng.normal(0.0, SIGMA, (size, size)))
    images = {b: np.array(v) for b, v in images.items()}
    clean = {b: np.array(v) for b, v in clean.items()}
    sigmas = {b: np.full_like(v, SIGMA) for b, v in images.items()}
    return images, clean, sigmas, psfs, t


def starts(t: dict, seed: int) -> dict:
    """The truth perturbed as a catalogue's, in the reference band's pixels."""
    rng = np.random.default_rng(seed + 1000)
    n = len(t["pa"])
    sign = lambda: rng.choice([-1.0, 1.0], n)  # noqa: E731
    off = lambda lo, hi: sign() * rng.uniform(lo, hi, n)  # noqa: E731
    ref = SCALE["g"]
    s = {"re_b": t["re_b"] / ref * (1 + off(0.1, 0.3)), "re_d": t["re_d"] / ref * (1 + off(0.1, 0.3)),
         "q_b": np.clip(t["q_b"] + off(0.05, 0.15), 0.1, 0.95), "q_d": np.clip(t["q_d"] + off(0.05, 0.15), 0.1, 0.95),
         "pa": t["pa"] + off(5, 20), "dx": t["dx"] / ref + off(0.5, 1.5), "dy": t["dy"] / ref + off(0.5, 1.5)}
    for band in WL:
        s[f"bulge_{band}"] = t[f"bulge_{band}"] + off(0.1, 0.3)
        s[f"disk_{band}"] = t[f"disk_{band}"] + off(0.1, 0.3)
    return s


def profiles(s: dict, band: str | None, gradient: bool):
    """Bulge + disk; ``band`` None: the joint model in reference pixels, else that band's own pixels."""
    scale = SCALE[band] if band else SCALE["g"]
    size = SIZE[band] if band else SIZE["g"]
    f = SCALE["g"] / scale
    centre = (size + 1) / 2
    cx, cy = gm.p(centre + s["dx"] * f), gm.p(centre + s["dy"] * f)
    if band:
        mb, md = gm.p(s[f"bulge_{band}"], M0=M0), gm.p(s[f"disk_{band}"], M0=M0)
    else:
        mb = gm.p(np.stack([s[f"bulge_{b}"] for b in WL], 1), M0=M0, bands="free")
        md = gm.p(np.stack([s[f"disk_{b}"] for b in WL], 1), M0=M0, bands="free")
    re_d = gm.p(s["re_d"] * f, bands=1) if gradient and not band else gm.p(s["re_d"] * f)
    bulge = gm.lp.Sersic(cen_x=cx, cen_y=cy, pa=gm.p(s["pa"]), axis_r=gm.p(s["q_b"]), eff_r=gm.p(s["re_b"] * f),
                         ser_n=gm.p(4.0, fit=False), mag=mb)
    disk = gm.lp.Sersic(cen_x=cx, cen_y=cy, pa=gm.p(s["pa"]), axis_r=gm.p(s["q_d"]), eff_r=re_d,
                        ser_n=gm.p(1.0, fit=False), mag=md)
    return {"bulge": bulge, "disk": disk}


def run(dataset, batch_size: int):
    fit = gm.Fitting(dataset, batch_size=batch_size, iteration=300, device="cpu", progress=False, restarts=False)
    c0 = time.process_time()
    fit.fit()
    res = fit.uncertainty("covar_mat")
    return {c: np.asarray(res[c]) for c in res.colnames}, time.process_time() - c0


def med(x):
    x = np.asarray(x, dtype=float)
    return float(np.nanmedian(x))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=30)
    parser.add_argument("--gradient", action="store_true", help="a disk r_e growing with wavelength, fitted with bands=1")
    parser.add_argument("--save", type=Path, default=None, help="write the truths and every fitted column to this .npz")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    images, clean, sigmas, psfs, t = draw(args.count, args.seed, args.gradient)
    s = starts(t, args.seed)
    true_chi2 = {b: (((images[b] - clean[b]) / sigmas[b]) ** 2).sum((1, 2)) for b in WL}

    ds = gm.Dataset.from_arrays(images, sigmas, psfs, wavelength=WL, pix_scale=SCALE)
    ds.define_profiles(**profiles(s, None, args.gradient))
    joint, cost_joint = run(ds, args.batch_size)
    alone, cost_alone = {}, {}
    if not args.gradient:
        for band in WL:
            ds = gm.Dataset.from_arrays(images[band], sigmas[band], psfs[band])
            ds.define_profiles(**profiles(s, band, False))
            alone[band], cost_alone[band] = run(ds, args.batch_size)

    if args.save is not None:
        raw = {f"true_{k}": np.asarray(v) for k, v in t.items()}
        raw.update({f"true_chi2_{b}": v for b, v in true_chi2.items()})
        for label, res in [("joint", joint)] + [(f"alone_{b}", r) for b, r in alone.items()]:
            raw.update({f"{label}_{c}": v for c, v in res.items() if v.dtype.kind in "fiub"})
        np.savez(args.save, **raw)
    n = args.count
    print(f"{n} galaxies (seed {args.seed}), bands {list(WL)} at {list(SCALE.values())} arcsec/px, "
          f"faint band {FAINT}; torch {torch.__version__}, {torch.get_num_threads()} thread")
    ok_joint = joint["chi2"] <= sum(true_chi2.values()) + 25
    print(f"\nsuccess (chi2 within 25 of the true model's): joint {ok_joint.mean():.1%}"
          + "".join(f", {b} alone {(alone[b]['chi2'] <= true_chi2[b] + 25).mean():.1%}" for b in alone)
          + "; joint chi2 per band within 25 of its truth: "
          + ", ".join(f"{b} {(joint[f'chi2_{b}'] <= true_chi2[b] + 25).mean():.1%}" for b in WL))
    print(f"joint flag 0: {(joint['flag'] == 0).mean():.1%}"
          + "".join(f", {b} alone {(alone[b]['flag'] == 0).mean():.1%}" for b in alone))

    if args.gradient:
        c1 = joint["disk_eff_r_cheb1"]
        pull = (c1 - GRADIENT) / joint["disk_eff_r_cheb1_err"]
        print("\n| | truth | joint fit, median (16-84 %) | median \\|pull\\| |")
        print("|---|---|---|---|")
        lo, hi = np.nanpercentile(c1, [16, 84])
        print(f"| d ln r_e(disk) / d w | {GRADIENT:.3f} | {med(c1):.3f} ({lo:.3f} - {hi:.3f}) | {med(np.abs(pull)):.2f} |")
        for band in WL:
            re = joint[f"disk_eff_r_{band}"] * SCALE["g"]
            rel = re / t[f"re_d_{band}"] - 1
            pull = (joint[f"disk_eff_r_{band}"] - t[f"re_d_{band}"] / SCALE["g"]) / joint[f"disk_eff_r_{band}_err"]
            print(f"| r_e disk {band}: median fit / true - 1 | 0 | {med(rel):+.3f} | {med(np.abs(pull)):.2f} |")
        ratio = joint["disk_eff_r_i"] / joint["disk_eff_r_g"]
        print(f"| r_e disk i / g | {math.exp(GRADIENT * 2):.3f} | {med(ratio):.3f} "
              f"({np.nanpercentile(ratio, 16):.3f} - {np.nanpercentile(ratio, 84):.3f}) | |")
        print(f"\ncost: joint {cost_joint / n:.3f} CPU-s per galaxy")
        return 0

    print("\nmedian |fit - truth| (joint / alone), and median |pull| of the joint fit:")
    print("| band | bulge mag | disk mag | total mag | B/T | joint median \\|pull\\|: bulge mag, disk mag |")
    print("|---|---|---|---|---|---|")
    for band in WL:
        row = []
        for name, fn in (("bulge", lambda r, b: r[f"bulge_mag{b}"]), ("disk", lambda r, b: r[f"disk_mag{b}"])):
            tj, ta = fn(joint, f"_{band}"), fn(alone[band], "")
            row.append(f"{med(np.abs(tj - t[f'{name}_{band}'])):.3f} / {med(np.abs(ta - t[f'{name}_{band}'])):.3f}")
        tot = lambda mb, md: -2.5 * np.log10(10 ** (-0.4 * mb) + 10 ** (-0.4 * md))  # noqa: E731
        bt = lambda mb, md: 1 / (1 + 10 ** np.clip(-0.4 * (md - mb), -30, 30))  # noqa: E731
        truth_tot = tot(t[f"bulge_{band}"], t[f"disk_{band}"])
        jm = (joint[f"bulge_mag_{band}"], joint[f"disk_mag_{band}"])
        am = (alone[band]["bulge_mag"], alone[band]["disk_mag"])
        row.append(f"{med(np.abs(tot(*jm) - truth_tot)):.3f} / {med(np.abs(tot(*am) - truth_tot)):.3f}")
        row.append(f"{med(np.abs(bt(*jm) - t[f'bt_{band}'])):.3f} / {med(np.abs(bt(*am) - t[f'bt_{band}'])):.3f}")
        pulls = [med(np.abs((joint[f"{c}_mag_{band}"] - t[f"{c}_{band}"]) / joint[f"{c}_mag_{band}_err"]))
                 for c in ("bulge", "disk")]
        print(f"| {band}{' (faint)' if band == FAINT else ''} | " + " | ".join(row)
              + f" | {pulls[0]:.2f}, {pulls[1]:.2f} |")
    print("\nshapes (reference pixels), median |fit / true - 1| or |fit - true| (joint / each band alone):")
    print("| | joint | " + " | ".join(f"{b} alone" for b in WL) + " |")
    print("|---|---|" + "---|" * len(WL))
    for label, col, truth, rel in (("r_e bulge", "bulge_eff_r", t["re_b"] / SCALE["g"], True),
                                   ("r_e disk", "disk_eff_r", t["re_d"] / SCALE["g"], True),
                                   ("q disk", "disk_axis_r", t["q_d"], False)):
        cells = []
        for r, f in [(joint, 1.0)] + [(alone[b], SCALE["g"] / SCALE[b]) for b in WL]:
            v = r[col] / (f if col.endswith("eff_r") else 1.0)
            cells.append(f"{med(np.abs(v / truth - 1) if rel else np.abs(v - truth)):.3f}")
        print(f"| {label} | " + " | ".join(cells) + " |")
    total_alone = sum(cost_alone.values())
    print(f"\ncost (same galaxies, one run, restarts off in both): joint {cost_joint / n:.3f} CPU-s per galaxy; "
          + ", ".join(f"{b} alone {cost_alone[b] / n:.3f}" for b in WL)
          + f"; sum of the bands {total_alone / n:.3f}; joint / sum = {cost_joint / total_alone:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
