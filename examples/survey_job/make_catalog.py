"""Write mock galaxies (FITS image, sigma and PSF per galaxy) and the catalog.csv that job.toml reads.

    python make_catalog.py [--galaxies 40] [--folder .]
    galmoss fit job.toml            # then: results/results.fits, results/results.csv, image_blocks/
    galmoss report results/         # results/report.html: distributions, flags, the worst fits drawn

Start values in the catalogue are the truth perturbed by 10-30 %, as a survey
catalogue would give them; the truth is in truth.csv.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch
from astropy.io import fits

import galmoss as gm


def make(folder: Path, n: int, seed: int = 1, size: int = 64) -> None:
    rng = np.random.default_rng(seed)
    (folder / "cutouts").mkdir(parents=True, exist_ok=True)
    truth = {
        "x0": size / 2 + 0.5 + rng.uniform(-1, 1, n), "y0": size / 2 + 0.5 + rng.uniform(-1, 1, n),
        "pa": rng.uniform(-90, 90, n), "q": rng.uniform(0.3, 0.95, n),
        "re": np.exp(rng.uniform(np.log(3.0), np.log(9.0), n)), "n": np.exp(rng.uniform(np.log(0.7), np.log(4.0), n)),
        "mag": rng.uniform(16.0, 18.0, n),
    }
    yy, xx = np.mgrid[-12:13, -12:13]
    psf = (1 + (xx**2 + yy**2) / 2.0**2) ** -3.5
    psf /= psf.sum()
    model = gm.lp.Sersic(cen_x=gm.p(truth["x0"]), cen_y=gm.p(truth["y0"]), pa=gm.p(truth["pa"]),
                         axis_r=gm.p(truth["q"]), eff_r=gm.p(truth["re"]), mag=gm.p(truth["mag"], M0=22.5),
                         ser_n=gm.p(truth["n"]))
    clean = gm.render(model, (size, size), psf=psf, dtype=torch.float64).numpy()
    fits.PrimaryHDU(psf.astype(np.float32)).writeto(folder / "cutouts" / "psf.fits", overwrite=True)
    sky = 0.05
    rows = []
    for i in range(n):
        name = f"gal{i:05d}"
        image = clean[i] + rng.normal(0, sky, clean[i].shape)
        fits.PrimaryHDU(image.astype(np.float32)).writeto(folder / "cutouts" / f"{name}.fits", overwrite=True)
        fits.PrimaryHDU(np.full(image.shape, sky, np.float32)).writeto(folder / "cutouts" / f"{name}_sigma.fits",
                                                                       overwrite=True)
        off = lambda: rng.choice([-1.0, 1.0]) * rng.uniform(0.1, 0.3)  # noqa: E731
        rows.append({"id": name, "image": f"cutouts/{name}.fits", "sigma": f"cutouts/{name}_sigma.fits",
                     "psf": "cutouts/psf.fits", "x0": truth["x0"][i] + rng.uniform(-1, 1),
                     "y0": truth["y0"][i] + rng.uniform(-1, 1), "pa": truth["pa"][i] + rng.uniform(-15, 15),
                     "q": float(np.clip(truth["q"][i] + rng.uniform(-0.1, 0.1), 0.1, 1.0)),
                     "re": truth["re"][i] * (1 + off()), "n": truth["n"][i] * (1 + off()),
                     "mag": truth["mag"][i] + 2.5 * off()})
    for path, table in ((folder / "catalog.csv", rows),
                        (folder / "truth.csv", [{"id": r["id"], **{k: truth[k][i] for k in truth}} for i, r in enumerate(rows)])):
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
    print(f"wrote {n} galaxies to {folder / 'cutouts'} and {folder / 'catalog.csv'}; now run: galmoss fit job.toml")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--galaxies", type=int, default=40)
    parser.add_argument("--folder", default=str(Path(__file__).parent))
    args = parser.parse_args()
    make(Path(args.folder), args.galaxies)
