"""The bootstrap of a bulge + disk decomposition of real galaxies: robust spread against the plain one.

Each galaxy is given by the path of its image FITS file (``<name>_image.fits``,
SDSS-like: 0.396"/px, zero point 22.5); its ``_sigma``, ``_psf`` and ``_mask``
files are read from beside it (the mask as a segmentation map: the label under
the galaxy is kept, every other labelled pixel excluded). Nothing is fetched:
give the paths of your own cutouts.

Every galaxy is fitted with a Sersic bulge (n free) + an exponential disk
sharing a centre, no starts (the image's moments start every parameter), then
``uncertainty("bootstrap", n_resample=R)``. For each fitted value the script
prints the covariance error, the bootstrap's robust spread (the standard
deviation of the refits that stayed in the best fit's minimum: those within
5 robust sigmas of the refits' median in every value), the plain standard
deviation of all refits, and how many refits jumped to another minimum
(the ``bootstrap_split`` flag).

Usage::

    python benchmarks/bootstrap_real.py path/J100247.00+042559.8_image.fits ... [--resamples 100]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import galmoss as gm  # noqa: E402
from galmoss.fitting import uncertainty as unc  # noqa: E402
from galmoss.flags import Flag, decode  # noqa: E402

PIXEL, ZERO_POINT = 0.396, 22.5


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path, help="<name>_image.fits files")
    parser.add_argument("--resamples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--two-sersic", action="store_true",
                        help="fit two free Sersics (the talk's decomposition) instead of Sersic + exponential")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    names = [p.name.removesuffix("_image.fits") for p in args.images]
    side = lambda kind: [str(p.with_name(f"{n}_{kind}.fits")) for p, n in zip(args.images, names)]  # noqa: E731
    ds = gm.Dataset(galaxy_index=names, image_path=[str(p) for p in args.images], sigma_path=side("sigma"),
                    psf_path=side("psf"), mask_path=side("mask"))
    cx, cy = gm.p(), gm.p()
    bulge = gm.lp.Sersic(cen_x=cx, cen_y=cy, mag=gm.p(M0=ZERO_POINT))
    disk = (gm.lp.Sersic(cen_x=cx, cen_y=cy, mag=gm.p(M0=ZERO_POINT)) if args.two_sersic
            else gm.lp.ExpDisk(cen_x=cx, cen_y=cy, mag=gm.p(M0=ZERO_POINT)))
    ds.define_profiles(bulge=bulge, disk=disk)
    fitting = gm.Fitting(ds, batch_size=len(names), iteration=1000, device="cpu", progress=False)
    fitting.fit()
    cov = fitting.uncertainty("covar_mat")
    cov = {c: np.asarray(cov[c]) for c in cov.colnames if c.endswith("_err")}

    # the refits' deviations from the best fit, kept as the bootstrap measures them
    captured = []
    robust = unc.robust_spread

    def keep(deviation):
        captured.append(deviation.copy())
        return robust(deviation)

    unc.robust_spread = keep
    c0 = time.process_time()
    try:
        boot = fitting.uncertainty("bootstrap", n_resample=args.resamples, seed=args.seed)
    finally:
        unc.robust_spread = robust
    cpu = time.process_time() - c0
    deviation = np.concatenate(captured)  # (galaxies, R, columns), in the order of the model's columns
    columns = [c.name for c in fitting.model.columns]
    _, split_counts = robust(deviation)
    centre = np.nanmedian(deviation, axis=1, keepdims=True)
    mad = unc._MAD_TO_SIGMA * np.nanmedian(np.abs(deviation - centre), axis=1)
    far = (np.abs(deviation - centre) > unc.SPLIT_SIGMAS * mad[:, None, :]) & (mad[:, None, :] > 0)
    print(f"{len(names)} galaxies, {args.resamples} resamplings each, bootstrap {cpu / len(names):.1f} CPU-s per galaxy")
    for i, name in enumerate(names):
        flags = int(np.asarray(boot["flag"])[i]) if "flag" in boot.colnames else 0
        print(f"\n{name}: chi2/dof {float(np.asarray(boot['reduced_chi2'])[i]):.3f}, "
              f"{int(split_counts[i])} of {args.resamples} refits jumped; flags: {', '.join(decode(flags)) or 'none'}"
              f"{' (bootstrap_split set)' if flags & int(Flag.bootstrap_split) else ''}")
        print("| value | fit | covariance error | bootstrap: robust spread | plain std | largest jump (robust sigmas) |")
        print("|---|---|---|---|---|---|")
        for j, col in enumerate(columns):
            if not col.startswith(("bulge_", "disk_")) or col.endswith(("cen_x", "cen_y")):
                continue
            plain = np.nanstd(deviation[i, :, j], ddof=1)
            jump = np.nanmax(np.abs(deviation[i, :, j] - centre[i, 0, j])) / mad[i, j] if mad[i, j] > 0 else np.nan
            print(f"| {col} | {float(np.asarray(boot[col])[i]):.4g} | {cov[col + '_err'][i]:.3g} | "
                  f"{float(np.asarray(boot[col + '_err'])[i]):.3g} | {plain:.3g} | {jump:.1f} |")
        jumped = np.flatnonzero(far[i].any(axis=1))
        for r in jumped:
            moved = {columns[j]: round(float(fitting.store.values[i, j] + deviation[i, r, j]), 3)
                     for j in np.flatnonzero(far[i, r])}
            print(f"  refit {r} jumped: {moved}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
