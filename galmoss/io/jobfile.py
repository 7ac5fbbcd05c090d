"""Every job-file key with its default and one line: ``galmoss init``'s template and docs/jobfile.md.

The keys the job parser (:mod:`galmoss.pipeline.job`) accepts are listed once, here,
with their defaults; ``galmoss init`` writes them as a commented job file and
``python -m galmoss.io.jobfile`` prints docs/jobfile.md from the same list (a test
checks that the parser and this list name the same keys, and that the page is this
list's).
"""

from __future__ import annotations

import csv
import glob
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["KEYS", "Key", "build_catalog", "job_template", "jobfile_markdown"]


@dataclass(frozen=True)
class Key:
    """One job-file key.

    Attributes
    ----------
    section
        ``data``, ``model.<name>``, ``parameter`` (inside a parameter's ``{ ... }``), ``fit`` or ``output``.
    name
        The key.
    default
        Its value when left out, as TOML text; "" when there is none (the key is then optional or required).
    comment
        One line: what it does.
    example
        A value to show when there is no default (written commented out by ``galmoss init``).
    """

    section: str
    name: str
    default: str
    comment: str
    example: str = ""


KEYS: tuple[Key, ...] = (
    Key("data", "catalog", "", "CSV, FITS or Parquet table, one row per galaxy (or give image_set)", '"catalog.csv"'),
    Key("data", "galaxy_index", '"galaxy_index"', "column of galaxy names, read as text exactly as written"),
    Key("data", "image", "", "column of image file paths (relative to the catalogue's folder); required with catalog",
        '"image"'),
    Key("data", "sigma", "", "column of sigma-image paths; left out: sigma estimated from each image", '"sigma"'),
    Key("data", "psf", "", "column of PSF-image paths; left out: no PSF (or psf_fwhm)", '"psf"'),
    Key("data", "mask", "", 'column of mask paths, or "auto" (photutils masks every other source)', '"mask"'),
    Key("data", "mask_index", "", "the galaxy's value in its mask (a number or a column); left out: a segmentation "
        "map keeps the label under the galaxy", "2"),
    Key("data", "image_set", "", "one FITS/HDF5 file of IMAGE/SIGMA/PSF/MASK cubes and a CATALOG (instead of catalog)",
        '"galaxies.fits"'),
    Key("data", "gain", "", "electrons per image unit, for sigma estimated from the image; left out: the FITS header",
        "4.5"),
    Key("data", "psf_fwhm", "", "PSF FWHM in pixels (a number or a column) for galaxies without a PSF image", "1.3"),
    Key("data", "psf_kind", '"moffat"', 'the PSF made from psf_fwhm: "moffat" or "gaussian"'),
    Key("data", "psf_beta", "3.5", "the Moffat index of the PSF made from psf_fwhm (> 1)"),
    Key("data", "neighbours", '"mask"', 'with mask = "auto": "mask" every other source, or "fit" the close and '
        "bright ones with their own component"),
    Key("data", "max_neighbours", "3", 'with neighbours = "fit": at most this many fitted per galaxy (the nearest)'),
    Key("data", "bands", "", "several bands fitted jointly: one [data.bands.<name>] table per band, the reference "
        "band first (docs/multiband.md)", '{ g = { wavelength = 477.0, pix_scale = 0.2 } }'),
    Key("data.bands.<name>", "image", "", "the column of this band's image paths; left out: <[data] image>_<name> "
        "(image_g, ...)", '"image_g"'),
    Key("data.bands.<name>", "sigma", "", "the column of this band's sigma paths; left out: sigma_<name> if the "
        "catalogue has it, else [data] sigma", '"sigma_g"'),
    Key("data.bands.<name>", "psf", "", "the column of this band's PSF paths; left out: psf_<name> if the catalogue "
        "has it, else [data] psf", '"psf_g"'),
    Key("data.bands.<name>", "mask", "", "the column of this band's mask paths; left out: mask_<name> if the "
        'catalogue has it, else [data] mask (mask = "auto": detected on a stack of the bands)', '"mask_g"'),
    Key("data.bands.<name>", "image_set", "", "this band's image set (one file per band, instead of a catalogue)",
        '"galaxies_g.fits"'),
    Key("data.bands.<name>", "wavelength", "", "the band's wavelength (any unit, > 0; required)", "477.0"),
    Key("data.bands.<name>", "pix_scale", "", "the band's arcsec per pixel (> 0; required)", "0.2"),
    Key("data.bands.<name>", "zero_point", "", "the band's magnitude zero point, replacing M0 in this band (all "
        "bands or none)", "28.1"),
    Key("data.bands.<name>", "rotation", "", "degrees the band's pixel grid is turned counter-clockwise against the "
        "first band's (0 for it); left out: read from the images' FITS WCS, else 0", "35.0"),
    Key("model.<name>", "profile", "", "the component's profile (Sersic, ExpDisk, Sky, ...); one [model.<name>] table "
        "per component, its name prefixing the result columns", '"Sersic"'),
    Key("model.<name>", "<parameter>", "", "a number, { column = ... }, { value = ... } or { share = ... }; left out: "
        "starts from the image", '{ column = "re" }'),
    Key("parameter", "column", "", "one start value per galaxy from this catalogue column", '"re"'),
    Key("parameter", "value", "", "one start value for every galaxy", "3.0"),
    Key("parameter", "share", "", "the same parameter as another component's", '"bulge.cen_x"'),
    Key("parameter", "fit", "true", "false holds the parameter at its start"),
    Key("parameter", "value_range", "", "[low, high] bounds of the fit", "[0.3, 8.0]"),
    Key("parameter", "log", "false", "fit the logarithm (for sizes, Sersic n)"),
    Key("parameter", "angle", "false", "a position angle in degrees (wrapped)"),
    Key("parameter", "M0", "", "magnitude zero point of a mag parameter", "22.5"),
    Key("parameter", "pix_scale", "", "arcsec per pixel: the parameter is in arcsec", "0.396"),
    Key("parameter", "prior", "", "a normal prior on the value (docs/priors.md): mu, sigma, and optionally space "
        '("ln", "logit", ...) and bounds', "{ mu = 1.0, sigma = 0.4 }"),
    Key("parameter", "bands", "", 'with bands: "shared" (one value), "free" (one per band; a column <column>_<band> '
        "each) or a Chebyshev degree in wavelength; left out: free for magnitudes and skies, else shared", '"free"'),
    Key("parameter", "step_length", "", "scales this parameter's Adam step (GalMOSS 2's keyword; LM needs none)", "0.01"),
    Key("fit", "batch_size", "64", "galaxies fitted together"),
    Key("fit", "iteration", "200", "iteration limit per galaxy"),
    Key("fit", "method", '"LM"', '"LM" (Levenberg-Marquardt) or "adam"'),
    Key("fit", "likelihood", '"chi2"', '"chi2", "poisson" or "student_t"'),
    Key("fit", "device", "", 'left out: "cuda" when present, else "cpu"', '"cpu"'),
    Key("fit", "dtype", '"float32"', '"float32" (fast) or "float64"'),
    Key("fit", "uncertainty", '"covar_mat"', '"covar_mat", "bootstrap" or "none"'),
    Key("fit", "n_resample", "100", 'resamplings per galaxy with uncertainty = "bootstrap"'),
    Key("fit", "restarts", "true", "refit from image-estimated starts a galaxy that did not converge, hit a bound or ran away"),
    Key("fit", "seed", "0", "random seed of the bootstrap"),
    Key("fit", "threads", "1", "torch CPU threads per process (more cores: --dask local:N or shards)"),
    Key("fit", "priors", "", 'a preset of priors by name ("sourcextractor"; docs/priors.md); left out: none',
        '"sourcextractor"'),
    Key("fit", "read_workers", "2", "threads reading cutouts ahead of the fit"),
    Key("fit", "prepare_workers", "0", "processes reading, checking and starting batches ahead of the fit (0: "
        "threads of the fitting process)", "4"),
    Key("fit", "pad_shapes", "true", "pad cutouts of different sizes into one batch shape (false: batch by shape)"),
    Key("fit", "jacobian_chunk", "", "galaxies per forward-mode Jacobian pass (bounds memory); left out: 32 on a "
        "CPU, 512 on a GPU", "32"),
    Key("fit", "lm_settings", "", "Levenberg-Marquardt's settings by field name (ftol, xtol, gtol, ...)",
        "{ ftol = 1e-6 }"),
    Key("fit", "adam_settings", "", 'Adam\'s settings by field name, with method = "adam"', "{ learning_rate = 0.02 }"),
    Key("fit", "render_settings", "", "the renderer's settings by field name (psf_oversampling, pixel_response, ...)",
        '{ pixel_response = "galfit" }'),
    Key("output", "folder", '"results"', "results.fits/.csv, parts/ and fit.log (relative to the job file)"),
    Key("output", "image_blocks", "", "folder for image blocks (data, model, residual); left out: none written",
        '"blocks"'),
)


def job_template(catalog: str = "catalog.csv") -> str:
    """A job file naming every key: keys with a default set to it, the others commented out with an example."""
    lines = ["# A galmoss job file: galmoss fit job.toml (--dry-run checks it and fits nothing).",
             "# Every key is listed with its default; a commented key has none (set it to use it).",
             "# Paths are relative to this file. Every key: docs/jobfile.md."]
    sections = [("data", "[data]"), ("model.<name>", "[model.sersic]"), ("fit", "[fit]"), ("output", "[output]")]
    for section, header in sections:
        lines += ["", header]
        for key in (k for k in KEYS if k.section == section):
            if section == "model.<name>" and key.name == "profile":
                lines.append(f'profile = "Sersic"  # {key.comment}')
                continue
            if key.name == "<parameter>":
                lines.append(f"# eff_r = {key.example}  # {key.comment}")
                lines.append("# inside { ... }, each parameter takes:")
                for sub in (k for k in KEYS if k.section == "parameter"):
                    value = sub.default or sub.example
                    lines.append(f"#   {sub.name} = {value}{'  (default)' if sub.default else ''}  # {sub.comment}")
                continue
            if section == "data" and key.name == "catalog":
                lines.append(f'catalog = "{catalog}"  # {key.comment}')
            elif section == "data" and key.name == "image":
                lines.append(f'image = "image"  # {key.comment}')
            elif key.default:
                lines.append(f"{key.name} = {key.default}  # {key.comment}")
            else:
                lines.append(f"# {key.name} = {key.example}  # {key.comment}")
    return "\n".join(lines) + "\n"


def jobfile_markdown() -> str:
    """docs/jobfile.md: every key, its default and what it does."""
    titles = {"data": "[data]: the galaxies", "data.bands.<name>": "[data.bands.<name>]: one table per band",
              "model.<name>": "[model.<name>]: one table per component",
              "parameter": "A parameter's { ... }", "fit": "[fit]: how to fit", "output": "[output]: where results go"}
    out = ["# Job files: every key", "",
           "`galmoss fit job.toml` runs a whole catalogue from a TOML file; `galmoss init` writes one",
           "with every key below and its default (`galmoss init --images 'cutouts/*.fits'` also writes",
           "the catalogue of those images). Paths are relative to the job file; paths inside the",
           "catalogue are relative to the catalogue's folder. Every key, profile and column is checked",
           "before anything is fitted (`galmoss fit job.toml --dry-run`).",
           "",
           "This page is generated from the list of keys in the code (`python -m galmoss.io.jobfile`).", ""]
    for section, title in titles.items():
        out += [f"## {title}", "", "| key | default | what it does |", "|---|---|---|"]
        for key in (k for k in KEYS if k.section == section):
            default = f"`{key.default}`" if key.default else f"none (e.g. `{key.example}`)" if key.example else "none"
            out.append(f"| `{key.name}` | {default} | {key.comment} |")
        out.append("")
    return "\n".join(out)


def build_catalog(pattern: str, target: Path) -> int:
    """Write a catalogue CSV (galaxy_index, image) of the FITS files matching ``pattern``; return their number.

    Galaxy names are the file names without the FITS suffix; image paths are relative to the
    catalogue's folder.

    Raises
    ------
    FileNotFoundError
        If no file matches.
    ValueError
        If two files give the same galaxy name.
    """
    files = sorted(Path(p) for p in glob.glob(os.path.expanduser(pattern), recursive=True) if Path(p).is_file())
    if not files:
        raise FileNotFoundError(f"--images {pattern!r} matches no file; give a glob of FITS cutouts, quoted, "
                                "e.g. --images 'cutouts/*.fits'")
    names = [_stem(p) for p in files]
    seen: dict[str, Path] = {}
    for name, path in zip(names, files):
        if name in seen:
            raise ValueError(f"--images: '{seen[name]}' and '{path}' give the same galaxy name {name!r}; "
                             "rename one, or build the catalogue yourself")
        seen[name] = path
    folder = target.parent.resolve()
    with open(target, "x", encoding="utf-8", newline="") as fh:  # "x": never over an existing file
        writer = csv.writer(fh)
        writer.writerow(["galaxy_index", "image"])
        for name, path in zip(names, files):
            writer.writerow([name, os.path.relpath(path.resolve(), folder)])
    return len(files)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".fits.gz", ".fits.fz", ".fits", ".fit", ".fts"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


if __name__ == "__main__":  # pragma: no cover
    print(jobfile_markdown(), end="")
