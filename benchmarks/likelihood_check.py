"""Where do a bulge + disk fit's missed error bars come from: the fitter, or the likelihood itself?

The Euclid-like bulge + disk mocks of ``validate_emc.py`` (population ``bd``), fitted as a
survey would (priors off, no starts), and then, per I_E bin:

1. **the chi2 at the truth** (every parameter held at its true value) minus the fit's: if the
   model is right and the fit at the likelihood's minimum this follows a chi2 distribution
   with as many degrees of freedom as free parameters (10 here: median 9.34, 95 % 18.3);
2. **fits started at the truth** (restarts off): how often they end more than 0.5 below the
   survey fit's chi2 (a minimum the survey fit missed), and how often their +-1 sigma bars on
   the bulge's r_e cover the truth;
3. **the profile likelihood at the bulge's true r_e**: r_e held at the truth, the other nine
   parameters refitted from the survey fit and, separately, from the truth; the lower chi2
   minus the fit's is the profile's rise at the truth. Wilks: it is at most 1 for 68.3 % of the
   galaxies (and at most 2.71 / 3.84 for 90 / 95 %), if the likelihood ratio behaves as at
   high S/N. "from the fit alone": the same from the survey fit's start only, which is what a
   profile-likelihood interval built by local refits would measure.

An interval is only as good as the likelihood ratio's behaviour: where the chi2 at the truth is
as it should be and the fits started at the truth end where the survey fit did, the misses are
the likelihood's (a weakly identified bulge), and no interval built from it covers better.

Usage::

    python benchmarks/likelihood_check.py --per-bin 100 --seed 15 --min-mag 21.5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import validate_emc as emc  # noqa: E402

import galmoss as gm  # noqa: E402

SLOTS = ("cen_x", "cen_y", "bulge_mag", "bulge_eff_r", "bulge_axis_r", "bulge_pa", "disk_mag", "disk_scale_l",
         "disk_axis_r", "disk_pa")


def _fit(images, sigmas, psf, oversampling, values, held=(), restarts=True):
    """The bulge + disk of ``validate_emc.fit`` started (or, for ``held`` slots, held) at ``values`` per galaxy."""
    ds = gm.Dataset.from_arrays(images, sigmas, psf)

    def p(slot, **kw):
        return gm.p(values[slot], fit=slot not in held, **kw)

    cx, cy = p("cen_x"), p("cen_y")
    bulge = gm.lp.Sersic(cen_x=cx, cen_y=cy, ser_n=gm.p(4.0, fit=False), mag=p("bulge_mag", M0=emc.ZERO_POINT),
                         **{s: p(f"bulge_{s}") for s in ("eff_r", "axis_r", "pa")})
    disk = gm.lp.ExpDisk(cen_x=cx, cen_y=cy, mag=p("disk_mag", M0=emc.ZERO_POINT),
                         **{s: p(f"disk_{s}") for s in ("scale_l", "axis_r", "pa")})
    ds.define_profiles(bulge=bulge, disk=disk)
    fitting = gm.Fitting(ds, batch_size=100, iteration=200, device="cpu", progress=False, restarts=restarts,
                         render_settings=gm.RenderSettings(psf_oversampling=oversampling))
    fitting.fit()
    return fitting.results if held else fitting.uncertainty("covar_mat")


def _values(res) -> dict[str, np.ndarray]:
    out = {s: np.asarray(res[s if s.startswith(("bulge", "disk")) else f"bulge_{s}"], dtype=np.float64) for s in SLOTS}
    return {k: np.where(np.isfinite(v), v, np.nanmedian(v)) for k, v in out.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-bin", type=int, default=100)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--psf-oversampling", type=int, default=3)
    parser.add_argument("--min-mag", type=float, default=None, help="only the I_E bins above this magnitude")
    parser.add_argument("--max-mag", type=float, default=None, help="only the I_E bins below this magnitude")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.min_mag is not None:
        emc.BINS = tuple(b for b in emc.BINS if b >= args.min_mag)
    if args.max_mag is not None:
        emc.BINS = tuple(b for b in emc.BINS if b <= args.max_mag)
    images, sigmas, psf, t = emc.draw("bd", 0, args.seed, args.per_bin, args.psf_oversampling)
    e = args.psf_oversampling
    # the truth in galmoss's conventions: 1-based pixel centres (a 64-pixel cutout's centre is 32.5), a
    # major-axis r_e, an exponential's scale length r_e / 1.678
    truth = {"cen_x": emc.SHAPE[1] / 2 + 0.5 + t["dx"], "cen_y": emc.SHAPE[0] / 2 + 0.5 + t["dy"], "bulge_mag": t["mag_b"],
             "bulge_eff_r": t["re_b"], "bulge_axis_r": t["q_b"], "bulge_pa": t["pa_b"], "disk_mag": t["mag_d"],
             "disk_scale_l": t["re_d"] / 1.678347, "disk_axis_r": t["q"], "disk_pa": t["pa"]}
    c0 = time.process_time()
    best = emc.fit("bd", images, sigmas, psf, None, e)  # the survey fit: no starts, priors off
    chi2 = np.asarray(best["chi2"], dtype=np.float64)
    at_truth = np.asarray(_fit(images, sigmas, psf, e, truth, held=SLOTS)["chi2"], dtype=np.float64) - chi2
    started = _fit(images, sigmas, psf, e, truth, restarts=False)
    lower = np.asarray(started["chi2"], dtype=np.float64) - chi2
    rise = [np.asarray(_fit(images, sigmas, psf, e, dict(start, bulge_eff_r=t["re_b"]), held=("bulge_eff_r",),
                            restarts=False)["chi2"], dtype=np.float64) - chi2
            for start in (_values(best), truth)]
    profile = np.minimum(*rise)
    print(f"{len(images)} bulge + disk mocks (seed {args.seed}), {(time.process_time() - c0) / len(images):.2f} "
          "CPU-s per galaxy for the four fits\n")

    def cover(res):
        v, err = np.asarray(res["bulge_eff_r"], dtype=np.float64), np.asarray(res["bulge_eff_r_err"], dtype=np.float64)
        ok = np.isfinite(err)
        return np.where(ok, np.abs(v - t["re_b"]) <= err, np.nan)

    rows = {
        "chi2 at the truth - fit's: 25 / 50 / 95 % (chi2_10: 6.7 / 9.3 / 18.3)":
            lambda m: " / ".join(f"{q:.1f}" for q in np.percentile(at_truth[m], [25, 50, 95])),
        "fits from the truth more than 0.5 below the fit's chi2": lambda m: f"{np.mean(lower[m] < -0.5):.2f}",
        "bulge r_e within +-1 sigma: survey fit": lambda m: f"{np.nanmean(cover(best)[m]):.2f}",
        "bulge r_e within +-1 sigma: fit from the truth": lambda m: f"{np.nanmean(cover(started)[m]):.2f}",
        "profile rise at the true bulge r_e <= 1 (Wilks: 0.68)": lambda m: f"{np.mean(profile[m] <= 1):.2f}",
        "... refitted from the fit alone": lambda m: f"{np.mean(rise[0][m] <= 1):.2f}",
        "profile rise: 90 / 95 % (chi2_1: 2.71 / 3.84)":
            lambda m: " / ".join(f"{q:.1f}" for q in np.percentile(profile[m], [90, 95])),
        "... refitted from the fit alone: 90 / 95 %": lambda m: " / ".join(f"{q:.1f}" for q in np.percentile(rise[0][m], [90, 95])),
    }
    bins = list(zip(emc.BINS[:-1], emc.BINS[1:]))
    print("| | " + " | ".join(f"I_E {lo:g}-{hi:g}" for lo, hi in bins) + " |")
    print("|---|" + "---|" * len(bins))
    for label, cell in rows.items():
        print(f"| {label} | " + " | ".join(cell((t["mag"] >= lo) & (t["mag"] < hi)) for lo, hi in bins) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
