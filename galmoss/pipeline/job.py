"""Job files: ``galmoss fit JOB.toml``, a whole catalogue run described in TOML.

::

    [data]
    catalog = "catalog.csv"      # CSV, FITS table or Parquet, one row per galaxy
    galaxy_index = "id"          # the column of names
    image = "image"              # columns of file paths
    sigma = "sigma"
    psf = "psf"
    # mask = "mask"   mask_index = 2   image_set = "galaxies.fits"
    # mask = "auto" (photutils masks every other source)   psf_fwhm = 1.3 or "<column>"
    # neighbours = "fit" (with mask = "auto": close/bright neighbours get a component)   max_neighbours = 3

    # several bands, fitted jointly (docs/multiband.md): one table per band, in wavelength order
    # [data.bands.g]
    # image = "image_g"          # columns of this band's files (default <key>_<band>)
    # wavelength = 477.0
    # pix_scale = 0.2

    [model.sersic]               # one table per component; its name prefixes the columns
    profile = "Sersic"
    cen_x = { column = "x0" }
    pa = { column = "pa", angle = true }
    mag = { column = "mag", M0 = 22.5 }

    [fit]
    batch_size = 64
    iteration = 200
    uncertainty = "covar_mat"    # or "bootstrap" or "none"

    [output]
    folder = "results"

Paths are absolute or relative to the job file; paths inside the catalogue are
relative to the catalogue's folder. A parameter is a number (one start for all
galaxies), ``{ column = ... }`` (one start per galaxy from a catalogue column),
``{ value = ... }``, with any ``gm.p`` keyword (``fit``, ``value_range``, ``log``,
``angle``, ``M0``, ``pix_scale``), or ``{ share = "bulge.cen_x" }`` (the same
parameter as another component's). A parameter left out starts from the image.
The ``[fit]`` keys are ``gm.Fitting``'s keywords, by name (the settings
objects as tables: ``lm_settings = { ftol = 1e-8 }``), plus ``uncertainty``,
``n_resample`` and ``seed``; they are checked by the same
:class:`~galmoss.pipeline.options.RunOptions` a run uses. Every key, profile,
column and option is checked before anything is fitted: a mistake is an error
naming it (:class:`JobError`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, GalmossError
from .options import SETTINGS_TYPES, UNCERTAINTY_METHODS, RunOptions, check_uncertainty

__all__ = ["Job", "JobError", "load_job"]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


class JobError(GalmossError, ValueError):
    """A job file that cannot be run as written (the message names the key and the fix)."""


_SECTIONS = {"data", "model", "fit", "output"}
_DATA_KEYS = {"catalog", "galaxy_index", "image", "sigma", "psf", "mask", "mask_index", "image_set", "gain",
              "psf_fwhm", "psf_kind", "psf_beta", "neighbours", "max_neighbours", "bands"}
#: a ``[data.bands.<name>]`` table's keys: the band's columns (or image set), wavelength and pixel scale
_BAND_KEYS = {"image", "sigma", "psf", "mask", "image_set", "wavelength", "pix_scale", "zero_point", "rotation"}
#: [fit] keys: the run options (:class:`~galmoss.pipeline.options.RunOptions`, by field name; the
#: progress bar is the command line's), and what to do after the fit
JOB_ONLY_FIT_KEYS = {"uncertainty", "n_resample", "seed"}
_FIT_KEYS = (set(RunOptions.fields()) - {"progress"}) | JOB_ONLY_FIT_KEYS
_OUTPUT_KEYS = {"folder", "image_blocks"}
_PARAM_KEYS = {"column", "value", "share", "fit", "value_range", "log", "angle", "M0", "pix_scale", "step_length",
               "prior", "bands"}
#: the keys of a parameter's ``prior = { ... }`` table (gm.prior.Normal's arguments)
_PRIOR_KEYS = {"mu", "sigma", "space", "bounds"}
_P_KEYWORDS = {"fit": bool, "log": bool, "angle": bool, "M0": (int, float), "pix_scale": (int, float),
               "step_length": (int, float)}


@dataclass
class Job:
    """A parsed job: the dataset, its profiles and how to fit them."""

    path: Path
    dataset: Any
    profiles: dict
    fit: dict = field(default_factory=dict)
    output: Path | None = None
    blocks: Path | None = None
    #: the checked run options of ``fit`` (what ``gm.Fitting`` will run with)
    options: RunOptions | None = None

    def describe(self) -> str:
        """What --dry-run prints: the data, the model and the settings."""
        lines = [f"job {self.path}", f"  galaxies: {len(self.dataset)} ({self.dataset!r})"]
        for name, profile in self.profiles.items():
            lines.append(f"  component {name}: {type(profile).__name__}")
            for slot, prm in profile.parameters().items():
                values = np.atleast_1d(prm.initial_profile_units() if hasattr(prm, "initial_profile_units") else [])
                start = f"{values[0]:g}" if values.size == 1 else f"{values.size} values"
                lines.append(f"    {slot:8s} start {start} {'free' if prm.fit else 'fixed'}")
            for slot in profile.missing_parameters():
                lines.append(f"    {slot:8s} start from the image, free")
        shown = self.options.describe() if self.options is not None else self.fit
        lines.append("  fit: " + ", ".join(f"{k}={v}" for k, v in sorted(shown.items())
                                           if k not in ("lm_settings", "adam_settings", "render_settings")
                                           or k in self.fit))
        lines.append(f"  results: {self.output}" + (f", image blocks: {self.blocks}" if self.blocks else ""))
        return "\n".join(lines)


def _unknown(keys, allowed: set, where: str, path: Path) -> None:
    extra = sorted(set(keys) - allowed)
    if extra:
        raise JobError(f"{path}: unknown key {extra[0]!r} in {where}; allowed keys are {', '.join(sorted(allowed))}")


def _expect(value, kinds, key: str, path: Path, what: str):
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise JobError(f"{path}: {key} = {value!r} must be {what}")
    if not isinstance(value, kinds):
        raise JobError(f"{path}: {key} = {value!r} must be {what}")
    return value


def load_job(path) -> Job:
    """Read and check a job file; build its Dataset and profiles (nothing is read or fitted yet).

    Raises
    ------
    JobError
        For any key, profile, column or value that is wrong, naming it.
    """
    from ..data import Dataset
    from ..profiles.base import profile_class

    path = Path(os.fspath(path)).expanduser().resolve()
    if not path.is_file():
        raise JobError(f"job file '{path}' does not exist")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise JobError(f"{path}: not valid TOML ({exc})") from exc
    base = path.parent
    _unknown(doc, _SECTIONS, "the job file (top level)", path)
    for section in ("data", "model"):
        if section not in doc:
            raise JobError(f"{path}: the [{section}] section is missing")

    def local(p: str) -> Path:
        q = Path(_expect(p, str, "path", path, "a path (a string)")).expanduser()
        return q if q.is_absolute() else base / q

    data = doc["data"]
    _unknown(data, _DATA_KEYS, "[data]", path)
    output = doc.get("output", {})
    _unknown(output, _OUTPUT_KEYS, "[output]", path)
    folder = local(output.get("folder", "results"))
    blocks = local(output["image_blocks"]) if "image_blocks" in output else None
    gain = data.get("gain")
    if gain is not None:
        _expect(gain, (int, float), "data.gain", path, "a number (electrons per image unit)")
    mask_index = data.get("mask_index")
    # mask = "auto": photutils masks every source but the target (galmoss.auto)
    auto_mask = data.get("mask") == "auto"
    psf_fwhm = data.get("psf_fwhm")
    if psf_fwhm is not None and (isinstance(psf_fwhm, bool) or not isinstance(psf_fwhm, (int, float, str))):
        raise JobError(f"{path}: data.psf_fwhm = {psf_fwhm!r} must be a number (pixels) or a column name")

    if "image_set" in data and "catalog" in data:
        raise JobError(f"{path}: [data] gives both image_set and catalog; give one of them")
    bands = _bands(data, path)
    try:
        if bands is not None:
            dataset = _band_dataset(data, bands, local, mask_index, blocks, folder, gain, path, auto_mask, psf_fwhm)
        else:
            dataset = (_image_set_dataset(data, local, mask_index, blocks, folder, gain, path, auto_mask, psf_fwhm)
                       if "image_set" in data else None)
    except KeyError as exc:
        raise JobError(f"{path}: {exc.args[0]}") from None
    except (JobError, NotImplementedError):
        raise
    except (ValueError, TypeError, OSError) as exc:
        raise JobError(f"{path}: [data]: {exc}") from exc
    if dataset is not None:
        pass
    elif "catalog" in data:
        for key in ("galaxy_index", "image", "sigma", "psf", "mask"):
            if key in data:
                _expect(data[key], str, f"data.{key}", path, "a column name (a string)")
        if "image" not in data:
            raise JobError(f"{path}: [data] needs image = \"<column of image paths>\"")
        try:
            dataset = Dataset.from_catalog(
                local(data["catalog"]), galaxy_index=data.get("galaxy_index", "galaxy_index"), image=data["image"],
                sigma=data.get("sigma"), psf=data.get("psf"), mask=None if auto_mask else data.get("mask"),
                mask_index=mask_index, img_block_path=blocks, result_path=folder, gain=gain, auto_mask=auto_mask,
                psf_fwhm=psf_fwhm, **_psf_keys(data), **_neighbour_keys(data, auto_mask, path))
        except KeyError as exc:
            raise JobError(f"{path}: {exc.args[0]}") from None
        except JobError:
            raise
        except (ValueError, TypeError, OSError) as exc:
            raise JobError(f"{path}: [data]: {exc}") from exc
    else:
        raise JobError(f"{path}: [data] needs catalog = \"<table>\" or image_set = \"<file>\"")
    catalog = dataset.catalog

    # ---- the model
    models = doc["model"]
    if not isinstance(models, dict) or not models:
        raise JobError(f"{path}: [model] needs one table per component, e.g. [model.sersic] profile = \"Sersic\"")
    profiles: dict = {}
    made: dict[tuple[str, str], Any] = {}
    pending_shares: list[tuple[str, str, str]] = []
    specs: dict[str, dict] = {}
    for comp, spec in models.items():
        if not isinstance(spec, dict):
            raise JobError(f"{path}: model.{comp} must be a table ([model.{comp}])")
        if "profile" not in spec:
            raise JobError(f"{path}: [model.{comp}] needs profile = \"<name>\" (e.g. \"Sersic\")")
        try:
            cls = profile_class(_expect(spec["profile"], str, f"model.{comp}.profile", path, "a profile name"))
        except KeyError as exc:
            raise JobError(f"{path}: model.{comp}.profile: {exc.args[0]}") from None
        specs[comp] = {"cls": cls, "params": {k: v for k, v in spec.items() if k != "profile"}}
    for comp, spec in specs.items():
        cls, params = spec["cls"], spec["params"]
        slots = _slots_of(cls)
        kwargs = {}
        for slot, value in params.items():
            key = f"model.{comp}.{slot}"
            if slots is not None and slot not in slots:
                raise JobError(f"{path}: {key}: {cls.__name__} has no parameter {slot!r}; its parameters are "
                               f"{', '.join(slots)}")
            if isinstance(value, dict) and "share" in value:
                _unknown(value, {"share"}, key, path)
                pending_shares.append((comp, slot, _expect(value["share"], str, f"{key}.share", path,
                                                           "\"<component>.<parameter>\"")))
                continue
            kwargs[slot] = made[(comp, slot)] = _parameter(value, key, catalog, len(dataset), path,
                                                           getattr(dataset, "bands", None))
        spec["kwargs"] = kwargs
    for comp, slot, target in pending_shares:
        other = tuple(target.split(".", 1)) if "." in target else None
        if other is None or other not in made:
            known = ", ".join(f"{c}.{s}" for c, s in made) or "none"
            raise JobError(f"{path}: model.{comp}.{slot}: share = {target!r} names no parameter given in the job; "
                           f"parameters given: {known}")
        specs[comp]["kwargs"][slot] = made[other]
    for comp, spec in specs.items():
        try:
            profiles[comp] = spec["cls"](**spec["kwargs"])
        except (TypeError, ValueError) as exc:
            raise JobError(f"{path}: [model.{comp}]: {exc}") from exc
    dataset.define_profiles(**profiles)

    fit = dict(doc.get("fit", {}))
    _unknown(fit, _FIT_KEYS, "[fit]", path)
    for key in ("n_resample", "seed"):
        if key in fit:
            _expect(fit[key], int, f"fit.{key}", path, "an integer")
    for key in ("method", "likelihood", "device", "dtype", "uncertainty"):
        if key in fit:
            _expect(fit[key], str, f"fit.{key}", path, "a string")
    if fit.get("uncertainty", "covar_mat") not in UNCERTAINTY_METHODS + ("none",):
        raise JobError(f"{path}: fit.uncertainty = {fit['uncertainty']!r}; choose {', '.join(UNCERTAINTY_METHODS)} or none")
    for key, kind in SETTINGS_TYPES.items():
        if key in fit:
            fit[key] = _settings(fit[key], kind, f"fit.{key}", path)
    # the checks gm.Fitting runs, here and now (a dry run catches what a run would)
    try:
        if fit.get("uncertainty", "covar_mat") != "none":  # refused now, not after the fit
            check_uncertainty(fit.get("uncertainty", "covar_mat"), fit.get("n_resample", 100), None,
                              fit.get("seed", 0))
        options = RunOptions(**{k: v for k, v in fit.items() if k not in JOB_ONLY_FIT_KEYS})
    except ConfigError as exc:
        raise JobError(f"{path}: fit.{exc}") from None
    return Job(path=path, dataset=dataset, profiles=profiles, fit=fit, output=folder, blocks=blocks, options=options)


def _settings(table, kind, key: str, path: Path):
    """A settings object (``LMSettings``, ...) from a job table, its keys the dataclass's fields."""
    import dataclasses

    if not isinstance(table, dict):
        raise JobError(f"{path}: {key} must be a table, e.g. {key} = {{ {dataclasses.fields(kind)[0].name} = ... }}")
    _unknown(table, {f.name for f in dataclasses.fields(kind)}, key, path)
    try:
        return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in table.items()})
    except (TypeError, ValueError) as exc:
        raise JobError(f"{path}: {key}: {exc}") from None


def _bands(data: dict, path: Path) -> dict | None:
    """The ``[data.bands.<name>]`` tables, checked (band order: the file's), or None for one band."""
    if "bands" not in data:
        return None
    tables = data["bands"]
    if not isinstance(tables, dict) or not tables or not all(isinstance(t, dict) for t in tables.values()):
        raise JobError(f"{path}: data.bands must hold one table per band, e.g. [data.bands.g] with image, "
                       "wavelength and pix_scale")
    for name, table in tables.items():
        _unknown(table, _BAND_KEYS, f"[data.bands.{name}]", path)
        for key in ("wavelength", "pix_scale"):
            if key not in table:
                raise JobError(f"{path}: [data.bands.{name}] needs {key} = <a number > 0>")
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise JobError(f"{path}: data.bands.{name}.{key} = {value!r} must be a number > 0")
        for key in ("image", "sigma", "psf", "mask", "image_set"):
            if key in table:
                _expect(table[key], str, f"data.bands.{name}.{key}", path, "a string")
        for key in ("zero_point", "rotation"):
            if key in table:
                _expect(table[key], (int, float), f"data.bands.{name}.{key}", path, "a number")
    given = [b for b, t in tables.items() if "zero_point" in t]
    if given and len(given) != len(tables):
        lacking = next(b for b in tables if b not in given)
        raise JobError(f"{path}: data.bands.{lacking} gives no zero_point, but other bands do; give every band its "
                       "zero_point (or none)")
    return tables


def _band_dataset(data, bands: dict, local, mask_index, blocks, folder, gain, path, auto_mask, psf_fwhm):
    """A multi-band dataset from a catalogue or image sets and the ``[data.bands.<name>]`` tables."""
    from ..data import Dataset

    wavelength = {b: float(t["wavelength"]) for b, t in bands.items()}
    pix_scale = {b: float(t["pix_scale"]) for b, t in bands.items()}
    zero_point = {b: float(t["zero_point"]) for b, t in bands.items()} if all(
        "zero_point" in t for t in bands.values()) else None
    # a band without rotation is the WCS's (or 0) when no band gives one, else 0
    rotation = {b: float(t.get("rotation", 0.0)) for b, t in bands.items()} if any(
        "rotation" in t for t in bands.values()) else None
    options = {"zero_point": zero_point, "rotation": rotation, "mask_index": mask_index, "img_block_path": blocks,
               "result_path": folder, "gain": gain, "auto_mask": auto_mask, "psf_fwhm": psf_fwhm, **_psf_keys(data),
               **_neighbour_keys(data, auto_mask, path)}
    per_band_sets = [b for b, t in bands.items() if "image_set" in t]
    if per_band_sets:
        if len(per_band_sets) != len(bands) or "image_set" in data or "catalog" in data:
            raise JobError(f"{path}: give every [data.bands.<name>] an image_set (one file per band), or one "
                           "image_set or catalog in [data]; not both")
        files = {b: local(t["image_set"]) for b, t in bands.items()}
        return Dataset.from_image_set(files, data.get("galaxy_index"), wavelength=wavelength, pix_scale=pix_scale,
                                      **options)
    if "image_set" in data:  # one file with a band axis
        return Dataset.from_image_set(local(data["image_set"]), data.get("galaxy_index"), wavelength=wavelength,
                                      pix_scale=pix_scale, **options)
    if "catalog" not in data:
        raise JobError(f"{path}: [data] needs catalog = \"<table>\" or image_set = \"<file>\"")
    columns = {}
    for key in ("image", "sigma", "psf", "mask"):
        base = data.get(key, "image" if key == "image" else None)
        if key == "mask" and auto_mask:
            base = None
        if base is not None:
            _expect(base, str, f"data.{key}", path, "a column name (a string)")
        given = {b: t[key] for b, t in bands.items() if key in t}
        if given:  # a band's own column, else <[data] key>_<band>
            if base is None and len(given) != len(bands):
                lacking = [b for b in bands if b not in given]
                raise JobError(f"{path}: data.bands.{lacking[0]} gives no {key} column, but other bands do; give "
                               f"every band its {key} (or none)")
            columns[key] = {b: given.get(b, f"{base}_{b}") for b in bands}
        else:
            columns[key] = base
    return Dataset.from_catalog(local(data["catalog"]), galaxy_index=data.get("galaxy_index", "galaxy_index"),
                                base_path=None, wavelength=wavelength, pix_scale=pix_scale, **columns, **options)


def _image_set_dataset(data, local, mask_index, blocks, folder, gain, path, auto_mask=False, psf_fwhm=None):
    from ..data import Dataset
    from ..io.catalog import text_column

    if isinstance(psf_fwhm, str):
        raise JobError(f"{path}: data.psf_fwhm = {psf_fwhm!r}: with an image set give one number (pixels)")
    extra = {"auto_mask": auto_mask, "psf_fwhm": psf_fwhm, **_psf_keys(data), **_neighbour_keys(data, auto_mask, path)}
    dataset = Dataset.from_image_set(local(data["image_set"]), mask_index=mask_index, img_block_path=blocks,
                                     result_path=folder, gain=gain, **extra)
    if "galaxy_index" in data and dataset.catalog is None:
        raise JobError(f"{path}: data.galaxy_index = {data['galaxy_index']!r} names a CATALOG column, but image set "
                       f"'{local(data['image_set'])}' has no CATALOG; remove the key (galaxies are then named 0, 1, "
                       "...) or add a CATALOG table with that column")
    if "galaxy_index" in data and dataset.catalog is not None:
        column = data["galaxy_index"]
        if column not in dataset.catalog.colnames:
            raise JobError(f"{path}: data.galaxy_index = {column!r} is not a CATALOG column; the columns are "
                           f"{', '.join(dataset.catalog.colnames)}")
        names = text_column(dataset.catalog, column, "galaxy names")
        dataset = Dataset.from_image_set(local(data["image_set"]), names, mask_index=mask_index,
                                         img_block_path=blocks, result_path=folder, gain=gain, **extra)
    return dataset


def _psf_keys(data: dict) -> dict:
    """``psf_kind`` and ``psf_beta`` of the PSF made from ``psf_fwhm`` (checked by the dataset's options)."""
    return {key: data[key] for key in ("psf_kind", "psf_beta") if key in data}


def _neighbour_keys(data: dict, auto_mask: bool, path) -> dict:
    """``neighbours`` and ``max_neighbours`` of [data], checked."""
    out = {}
    if "neighbours" in data:
        value = data["neighbours"]
        if value not in ("mask", "fit"):
            raise JobError(f"{path}: data.neighbours = {value!r} must be \"mask\" or \"fit\"")
        if value == "fit" and not auto_mask:
            raise JobError(f"{path}: data.neighbours = \"fit\" needs mask = \"auto\" (the neighbours come from "
                           "the automatic mask's segmentation)")
        out["neighbours"] = value
    if "max_neighbours" in data:
        value = data["max_neighbours"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise JobError(f"{path}: data.max_neighbours = {value!r} must be an integer >= 0")
        out["max_neighbours"] = value
    return out


def _slots_of(cls) -> list[str] | None:
    specs = getattr(cls, "parameter_specs", None)
    # a user profile that declares no specs takes whatever its constructor takes
    return list(specs) if isinstance(specs, dict) and specs else None


def _prior(table, key: str, path: Path):
    """``prior = { mu = ..., sigma = ..., space = "ln", bounds = [lo, hi] }``: a gm.prior.Normal."""
    from ..params.priors import Normal

    if not isinstance(table, dict):
        raise JobError(f"{path}: {key} must be a table, e.g. {key} = {{ mu = 1.0, sigma = 0.4 }}")
    _unknown(table, _PRIOR_KEYS, key, path)
    if "mu" not in table or "sigma" not in table:
        raise JobError(f"{path}: {key} needs mu and sigma, e.g. {key} = {{ mu = 1.0, sigma = 0.4 }}")
    try:
        return Normal(table["mu"], table["sigma"], space=table.get("space", "auto"),
                      bounds=tuple(table["bounds"]) if "bounds" in table else None)
    except (TypeError, ValueError) as exc:
        raise JobError(f"{path}: {key}: {exc}") from None


def _parameter(value, key: str, catalog, n: int, path: Path, bands=None):
    from ..params import p as gm_p

    if isinstance(value, bool) or not isinstance(value, (int, float, dict)):
        raise JobError(f"{path}: {key} = {value!r} must be a number, {{ column = ... }} or {{ value = ... }}")
    if not isinstance(value, dict):
        return gm_p(float(value))
    _unknown(value, _PARAM_KEYS - {"share"}, key, path)
    if ("column" in value) == ("value" in value):
        raise JobError(f"{path}: {key} needs exactly one of column = \"<name>\" or value = <number>")
    options = {}
    if "bands" in value:
        mode = value["bands"]
        if isinstance(mode, bool) or not (mode in ("shared", "free") or isinstance(mode, int)):
            raise JobError(f"{path}: {key}.bands = {mode!r} must be \"shared\", \"free\" or an integer (a Chebyshev "
                           "degree in wavelength)")
        options["bands"] = mode
    for name, kinds in _P_KEYWORDS.items():
        if name in value:
            what = "true or false" if kinds is bool else "a number"
            if kinds is bool:
                _expect(value[name], bool, f"{key}.{name}", path, what)
            else:
                _expect(value[name], kinds, f"{key}.{name}", path, what)
            options[name] = value[name]
    if "value_range" in value:
        rng = value["value_range"]
        if not (isinstance(rng, list) and len(rng) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                                for x in rng)):
            raise JobError(f"{path}: {key}.value_range = {rng!r} must be [low, high]")
        options["value_range"] = tuple(float(x) for x in rng)
    if "prior" in value:
        options["prior"] = _prior(value["prior"], f"{key}.prior", path)
    if "column" in value:
        column = _expect(value["column"], str, f"{key}.column", path, "a column name")
        per_band = [f"{column}_{b}" for b in bands.names] if bands is not None else []
        if catalog is not None and column not in catalog.colnames and per_band \
                and all(c in catalog.colnames for c in per_band) and options.get("bands") != "shared":
            # one start per band from <column>_<band>
            from ..io.catalog import number_column

            try:
                start = {b: number_column(catalog, c, f"start values of {key} in band {b}")
                         for b, c in zip(bands.names, per_band)}
            except ValueError as exc:
                raise JobError(f"{path}: {key}: {exc}") from None
            try:
                return gm_p(start, **options)
            except (TypeError, ValueError) as exc:
                raise JobError(f"{path}: {key}: {exc}") from exc
        if catalog is None or column not in catalog.colnames:
            have = ", ".join(catalog.colnames) if catalog is not None else "no catalogue"
            raise JobError(f"{path}: {key}: column {column!r} is not in the catalogue (columns: {have})")
        from ..io.catalog import number_column

        try:  # a missing or non-numeric cell is named by row, never read as a silent NaN or fill value
            start = number_column(catalog, column, f"start values of {key}")
        except ValueError as exc:
            raise JobError(f"{path}: {key}: {exc}") from None
        if start.shape != (n,):
            raise JobError(f"{path}: {key}: column {column!r} has {start.size} values for {n} galaxies")
    else:
        start = _expect(value["value"], (int, float), f"{key}.value", path, "a number")
    try:
        return gm_p(start, **options)
    except (TypeError, ValueError) as exc:
        raise JobError(f"{path}: {key}: {exc}") from exc
