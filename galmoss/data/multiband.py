"""Multi-band datasets: one single-band :class:`~galmoss.data.Dataset` per band, galaxies in step.

``gm.Dataset(...)`` and ``gm.Dataset.from_arrays(...)`` given per-band inputs
(dicts keyed by band name, plus ``wavelength`` and ``pix_scale``) build a
:class:`MultiBandDataset`. The first band of ``wavelength`` is the reference
frame: positions and lengths are in its pixels. Every band of a galaxy is read
by that band's own single-band dataset (masks, sigma estimates, reading flags
as usual); a galaxy without an image in some band is not fitted and is
flagged ``read_error`` (a joint fit needs every band: the missing band's
magnitude would be unconstrained and a wavelength polynomial would change
meaning).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

from pathlib import Path

import numpy as np

from .dataset import Dataset, GalaxyData, _as_names, _check_unique
from ..errors import ConfigError
from ..fitting.bands import Bands, band_dict, make_bands
from ..flags import Flag

__all__ = ["MultiBandDataset", "is_multiband"]

#: Dataset options a multi-band dataset does not take yet, and the piece each names
_REFUSED = {
    "neighbours": "fitted neighbours (neighbours='fit') with bands",
    "region": "image regions (region=) with bands",
}


def is_multiband(args: tuple, kwargs: dict, image_position: int = 1, key: str = "image_path") -> bool:
    """Whether a Dataset call gives per-band inputs (a dict of images, or ``wavelength``)."""
    images = args[image_position] if len(args) > image_position else kwargs.get(key)
    return isinstance(images, Mapping) or kwargs.get("wavelength") is not None


def _refuse(options: dict) -> None:
    for key, what in _REFUSED.items():
        value = options.get(key)
        if value not in (None, False, "mask"):
            raise NotImplementedError(f"multi-band datasets: {what} are not supported yet; leave {key} out")


class MultiBandDataset:
    """Galaxies imaged in several bands (see :class:`galmoss.Dataset` and docs/multiband.md).

    Parameters
    ----------
    galaxy_index
        One name per galaxy.
    image_path
        ``{band: path or list of paths}``; a None entry means the galaxy has no
        image in that band (it is flagged, not fitted).
    sigma_path, psf_path, mask_path
        A dict by band, or one value for every band.
    wavelength
        ``{band: wavelength}`` (any unit, > 0): names the bands and their order;
        the first is the reference frame.
    pix_scale
        ``{band: arcsec per pixel}`` (> 0), or one number for every band.
    zero_point
        ``{band: magnitude zero point}``: a band's zero point replaces the
        ``M0`` of every magnitude in that band, so each band's magnitudes are
        calibrated; None: the ``gm.p``'s ``M0`` in every band.
    rotation
        ``{band: degrees}``, each band's pixel grid turned counter-clockwise
        against the reference band's (0 for the reference): centres and position
        angles are mapped through it. Left out, it is read from the first
        galaxy's FITS WCS in every band (0 without one); a galaxy whose WCS
        turns its bands otherwise is flagged.
    img_block_path
        Folder for image blocks, one FITS per galaxy holding every band
        (:func:`galmoss.io.blocks.write_band_image_block`).
    result_path
        Folder for ``results.fits`` / ``results.csv``.
    **options
        ``mask_index``, ``gain`` (a dict by band, or one value) and the HDU
        keywords of :class:`galmoss.Dataset`, given to every band.

    Raises
    ------
    ConfigError
        Bands named differently in different arguments, a wavelength or pixel
        scale missing or not positive, band inputs of different lengths.
    NotImplementedError
        Fitted neighbours, regions, or bands mirrored against each other in
        their FITS WCS.

    Notes
    -----
    ``auto_mask=True`` detects the sources on a stack of the bands on the
    reference grid and masks the neighbours in every band
    (:func:`stack_auto_mask`); each band's sigma, when not given, is estimated
    from its own image.
    """

    def __init__(self, galaxy_index, image_path, sigma_path=None, psf_path=None, mask_path=None, mask_index=None,
                 img_block_path=None, result_path=None, *, wavelength=None, pix_scale=None, zero_point=None,
                 rotation=None, _arrays=None, **options) -> None:
        #: detect on a stack of the bands, mask in every band (:func:`stack_auto_mask`)
        self.auto_mask = _pop_refused(options)
        self.bands: Bands = make_bands(wavelength, pix_scale, zero_point, rotation)
        gain = band_dict(options.pop("gain", None), self.bands, "gain")
        # a FWHM in each band's own pixels: a dict by band, or one value (or list) for every band
        fwhm = band_dict(options.pop("psf_fwhm", None), self.bands, "psf_fwhm")
        self.profiles: dict = {}
        #: folder of the image blocks (every band's data, model, residual and components)
        self.img_block_path = None if img_block_path is None else Path(img_block_path)
        self.result_path = None if result_path is None else Path(result_path)
        self.catalog = None
        self.render_settings = None
        if _arrays is not None:  # from_arrays
            self._from_arrays(galaxy_index, _arrays, mask_index, gain, dict(options, psf_fwhm=fwhm))
            return
        if not isinstance(image_path, Mapping):
            raise ConfigError("Dataset: with wavelength, image_path must be a dict {band: paths} naming every band")
        images = band_dict(image_path, self.bands, "image_path")
        names = _as_names(galaxy_index, _length(images[self.bands.names[0]]))
        _check_unique(names)
        self.names = names
        n = len(names)
        per_band = {what: band_dict(v, self.bands, what) for what, v in
                    (("sigma_path", sigma_path), ("psf_path", psf_path), ("mask_path", mask_path))}
        lists = {b: _listed(images[b], n, f"image_path[{b!r}]") for b in self.bands.names}
        self.missing = _missing(lists, self.bands)
        filled = _fill_missing(lists, self.bands)
        self.datasets: dict[str, Dataset] = {}
        for b in self.bands.names:
            self.datasets[b] = Dataset(
                names, filled[b], per_band["sigma_path"][b], per_band["psf_path"][b], per_band["mask_path"][b],
                mask_index, gain=gain[b], psf_fwhm=fwhm[b], **options,
            )
        _check_rotation(self)

    @classmethod
    def from_arrays(cls, images, sigmas=None, psfs=None, masks=None, galaxy_index=None, *, wavelength=None,
                    pix_scale=None, zero_point=None, rotation=None, img_block_path=None, result_path=None,
                    mask_index=None,
                    **options):
        """Per-band arrays: each argument a dict ``{band: (N, H, W) array or list}`` (psfs also ``(h, w)``)."""
        if not isinstance(images, Mapping):
            raise ConfigError("Dataset.from_arrays: with wavelength, images must be a dict {band: arrays} naming every "
                              "band")
        return cls(galaxy_index, None, img_block_path=img_block_path, result_path=result_path, wavelength=wavelength,
                   pix_scale=pix_scale, zero_point=zero_point, rotation=rotation, mask_index=mask_index,
                   _arrays={"images": images, "sigmas": sigmas, "psfs": psfs, "masks": masks}, **options)

    def _from_arrays(self, galaxy_index, arrays, mask_index, gain, options) -> None:
        bands = self.bands
        images = band_dict(arrays["images"], bands, "images")
        n = _length(images[bands.names[0]])
        self.names = [str(i) for i in range(n)] if galaxy_index is None else _as_names(galaxy_index, n)
        _check_unique(self.names)
        per_band = {what: band_dict(arrays[what], bands, what) for what in ("sigmas", "psfs", "masks")}
        lists = {b: _listed(images[b], n, f"images[{b!r}]") for b in bands.names}
        self.missing = _missing(lists, bands)
        filled = _fill_missing(lists, bands)
        self.datasets = {}
        for b in bands.names:
            sig, psf, msk = (per_band[w][b] for w in ("sigmas", "psfs", "masks"))
            if self.missing[b]:  # stand-ins where the galaxy has no image in this band: never read
                sig = _fill_optional(sig, self.missing[b], lambda i, b=b: np.ones(np.shape(filled[b][i])))
                msk = _fill_optional(msk, self.missing[b], lambda i, b=b: np.zeros(np.shape(filled[b][i])))
                if isinstance(psf, (list, tuple)):
                    first = next(p for p in psf if p is not None)
                    psf = _fill_optional(psf, self.missing[b], lambda i, first=first: first)
            self.datasets[b] = Dataset.from_arrays(filled[b], sig, psf, msk, self.names, mask_index=mask_index,
                                                   gain=gain[b], **{**options, "psf_fwhm": options["psf_fwhm"][b]})

    @classmethod
    def _assembled(cls, bands: Bands, names: list[str], datasets: dict, missing: dict, result_path, catalog,
                   auto_mask: bool = False, img_block_path=None) -> "MultiBandDataset":
        """A dataset of per-band datasets built elsewhere (image sets, catalogues)."""
        obj = cls.__new__(cls)
        obj.bands, obj.names, obj.datasets, obj.missing = bands, names, datasets, missing
        obj.profiles, obj.render_settings = {}, None
        obj.img_block_path = None if img_block_path is None else Path(img_block_path)
        obj.result_path = None if result_path is None else Path(result_path)
        obj.catalog = catalog
        obj.auto_mask = auto_mask
        _check_rotation(obj)
        return obj

    @classmethod
    def from_image_set(cls, path, galaxy_index=None, *, wavelength=None, pix_scale=None, zero_point=None,
                       rotation=None,
                       **options):
        """Image sets with bands: ``{band: file}`` (one image set per band) or one file with a band axis.

        A file with a band axis holds ``IMAGE`` (N, n_bands, H, W) (and SIGMA,
        PSF, MASK likewise; see :mod:`galmoss.io.imageset`) and names its bands
        in IMAGE's header, ``BANDS = 'g,r,i'``; ``wavelength`` and ``pix_scale``
        default to its ``WAVELEN`` and ``PIXSCALE`` cards. The bands are matched
        by name, so ``wavelength`` may list them in another order than the file
        (its order is the fit's). The galaxies are named by ``galaxy_index``, else
        the reference band's CATALOG ``galaxy_index`` column; files per band whose
        CATALOGs name the galaxies differently (other galaxies, another order) are
        refused.
        """
        from .dataset import DataOptions
        from ..io.imageset import ImageSet

        options = DataOptions.pick(options, "Dataset.from_image_set")
        result_path = options.pop("result_path", None)
        img_block_path = options.pop("img_block_path", None)
        auto = _pop_refused(options)
        gain, fwhm = options.pop("gain", None), options.pop("psf_fwhm", None)
        if isinstance(path, Mapping):
            bands = make_bands(wavelength, pix_scale, zero_point, rotation)
            files = band_dict(path, bands, "image_set")
            gain, fwhm = band_dict(gain, bands, "gain"), band_dict(fwhm, bands, "psf_fwhm")
            datasets = {b: Dataset.from_image_set(files[b], galaxy_index, _of_bands=True, gain=gain[b],
                                                  psf_fwhm=fwhm[b], **options) for b in bands.names}
            _same_galaxies({b: ds.names for b, ds in datasets.items()}, {b: f"'{files[b]}'" for b in bands.names})
        else:
            keywords = ImageSet(path, band=0).band_keywords()
            if "BANDS" not in keywords:
                raise ConfigError(f"image set '{path}': IMAGE has a band axis but its header names no bands; add "
                                  "BANDS = 'g,r,i' (the bands in the order of the axis) to the IMAGE header")
            order = [b.strip() for b in keywords["BANDS"].split(",")]
            if wavelength is None:
                wavelength = _file_numbers(keywords, "WAVELEN", order, path)
            if pix_scale is None:
                pix_scale = _file_numbers(keywords, "PIXSCALE", order, path)
            bands = make_bands(wavelength, pix_scale, zero_point, rotation)
            if sorted(order) != sorted(bands.names) or len(set(order)) != len(order):
                raise ConfigError(f"image set '{path}': its BANDS are {order} but wavelength names "
                                  f"{list(bands.names)}; give one wavelength per band of the file, by the same names")
            gain, fwhm = band_dict(gain, bands, "gain"), band_dict(fwhm, bands, "psf_fwhm")
            datasets = {b: Dataset.from_image_set(path, galaxy_index, _band=order.index(b), _of_bands=True,
                                                  gain=gain[b], psf_fwhm=fwhm[b], **options) for b in bands.names}
        ref = datasets[bands.names[0]]
        obj = cls._assembled(bands, ref.names, datasets, {b: set() for b in bands.names}, result_path, ref.catalog,
                             auto, img_block_path)
        return obj

    @classmethod
    def from_catalog(cls, catalog, *, galaxy_index="galaxy_index", image="image", sigma=None, psf=None, mask=None,
                     base_path=None, wavelength=None, pix_scale=None, zero_point=None, rotation=None, **options):
        """A catalogue with a column of files per band (see :meth:`galmoss.Dataset.from_catalog`).

        Each of ``image``, ``sigma``, ``psf`` and ``mask`` is a dict ``{band:
        column}``, or a column's base name: band b's files are in ``<name>_<b>``
        (``image_g``, ``psf_r``), or, for ``sigma``, ``psf`` and ``mask`` when no
        column of the name has a band suffix, in ``<name>`` for every band. An
        empty cell (or ``none``) in a band's image column means the galaxy has no
        image in that band: it is flagged ``read_error`` and the others are fitted.
        """
        from .dataset import DataOptions
        from ..io.catalog import number_column, read_catalog, text_column

        bands = make_bands(wavelength, pix_scale, zero_point, rotation)
        options = DataOptions.pick(options, "Dataset.from_catalog")
        table, folder = read_catalog(catalog)
        base = Path(base_path) if base_path is not None else folder
        source = table.meta.get("catalogue", "the catalogue")
        columns = {what: _band_columns(table, given, bands, what, source)
                   for what, given in (("image", image), ("sigma", sigma), ("psf", psf), ("mask", mask))}
        names = text_column(table, galaxy_index, "galaxy names")

        def paths(column: str | None, what: str) -> list | None:
            if column is None:
                return None
            out = []
            # an empty cell or GALFIT's "none": the galaxy has no such file in this band
            for text in text_column(table, column, f"{what} paths", optional=True):
                if text is None or text.strip().lower() in ("", "none"):
                    out.append(None)
                    continue
                q = Path(text).expanduser()
                out.append(str(q if q.is_absolute() else base / q))
            return out

        per_band = {what: {b: paths(cols[b], what) for b in bands.names} for what, cols in columns.items()}
        fwhm = options.get("psf_fwhm")
        if isinstance(fwhm, str):  # a column: <name>_<band> per band, or <name> for every band
            cols = {b: f"{fwhm}_{b}" if f"{fwhm}_{b}" in table.colnames else fwhm for b in bands.names}
            options["psf_fwhm"] = {b: number_column(table, c, f"psf_fwhm of band {b}", optional=True)
                                   for b, c in cols.items()}
        mask_index = options.pop("mask_index", None)
        if isinstance(mask_index, str):
            mask_index = [None if np.isnan(v) else v
                          for v in number_column(table, mask_index, "mask_index", optional=True).tolist()]
        obj = cls(names, per_band["image"], per_band["sigma"], per_band["psf"], per_band["mask"], mask_index,
                  wavelength=wavelength, pix_scale=pix_scale, zero_point=zero_point, rotation=rotation, **options)
        obj.catalog = table
        return obj

    # ----------------------------------------------------------------- API
    def define_profiles(self, **profiles) -> None:
        """Attach the profiles (every band draws the same components; see ``gm.p(..., bands=)``)."""
        if not profiles:
            raise ValueError("define_profiles: give at least one profile, e.g. define_profiles(bulge=gm.lp.Sersic(...))")
        self.profiles = dict(profiles)

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"MultiBandDataset({len(self)} galaxies, bands {list(self.bands.names)})"

    def close(self) -> None:
        for ds in self.datasets.values():
            ds.close()

    def input_paths(self, position: int) -> list[str]:
        return [p for ds in self.datasets.values() for p in ds.input_paths(position)]

    def load(self, position: int) -> list[GalaxyData]:
        """The galaxy in every band (band order); a missing band gives an unusable, flagged record."""
        out = []
        for b, ds in self.datasets.items():
            if position in self.missing[b]:
                out.append(GalaxyData(position, self.names[position], flags=int(Flag.read_error), messages=[
                    f"band {b!r} has no image for this galaxy: a joint fit needs every band (its magnitude there "
                    "would be unconstrained); fit it with the bands it has in a dataset of its own"]))
            else:
                out.append(ds.load(position))
        if all(g.usable for g in out):
            off_sky = _off_sky(self, position, [g.shape for g in out])
            if off_sky:
                out[0].flags |= int(Flag.read_error)
                out[0].messages.append(off_sky)
        if self.auto_mask and all(g.usable for g in out):
            stack_auto_mask(out, self.bands, Dataset._start_xy(self, position))
        return out


# ------------------------------------------------------------ automatic masks
def _band_coordinates(shape_from, shape_to, ratio: float, turn: float = 0.0):
    """Where the pixel centres of grid ``shape_from`` fall on grid ``shape_to`` (0-based row, column arrays).

    The cutouts are centred on one sky point; ``ratio`` is pix_scale(from) / pix_scale(to) and
    ``turn`` (radians, counter-clockwise) the target grid's rotation against the source grid's.
    """
    h, w = shape_from
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    dy, dx = yy - (h - 1) / 2, xx - (w - 1) / 2
    c, s = math.cos(turn), math.sin(turn)
    ht, wt = shape_to
    return (s * dx + c * dy) * ratio + (ht - 1) / 2, (c * dx - s * dy) * ratio + (wt - 1) / 2


def stack_auto_mask(gals: list[GalaxyData], bands: Bands, start_xy) -> None:
    """Detect on a stack of the bands on the reference grid, mask every other source in every band (in place).

    Each band's signal-to-noise image ``(image - sky) / sigma`` is resampled to the
    reference band's grid (bilinearly; the cutouts share their centre, the grids
    relate by the ratio of the pixel scales and the bands' rotation) and the bands are summed and divided
    by the square root of their number (a chi-mean stack: a source seen in any
    band is found). :func:`galmoss.auto.auto_mask` segments the stack; the pixels
    it masks are mapped back to each band (a coarser band's pixel is masked when
    any reference pixel it covers is).
    """
    from scipy import ndimage

    from ..auto.segment import auto_mask

    ref = gals[0]
    shape = ref.shape
    stack = np.zeros(shape)
    count = np.zeros(shape)
    for b, g in enumerate(gals):
        used = g.weight > 0
        sky = float(np.median(g.image[used]))
        snr = np.where(used, (g.image - sky) / g.sigma, 0.0)
        rows, cols = _band_coordinates(shape, g.shape, bands.pix_scale[0] / bands.pix_scale[b], bands.turn(b))
        values = ndimage.map_coordinates(snr, [rows, cols], order=1, mode="constant", cval=np.nan)
        seen = ndimage.map_coordinates(used.astype(np.float64), [rows, cols], order=0, mode="constant", cval=0.0) > 0
        seen &= np.isfinite(values)
        stack[seen] += values[seen]
        count[seen] += 1
    found = auto_mask(stack / np.sqrt(np.maximum(count, 1)), (count > 0).astype(np.float64), None, start_xy=start_xy)
    ref.flags |= found.flags
    ref.messages.append(found.message.replace("auto mask:", "auto mask (on the stack of the bands):", 1))
    ref.segment = found.target
    for b, g in enumerate(gals):
        ratio = bands.pix_scale[b] / bands.pix_scale[0]  # reference pixels per band pixel
        grown = found.mask
        reach = int(np.ceil(ratio / 2 - 0.5))  # a coarser pixel covers reference pixels this far from its centre
        if reach > 0:
            grown = ndimage.maximum_filter(found.mask, size=2 * reach + 1)
        rows, cols = _band_coordinates(g.shape, shape, ratio, -bands.turn(b))
        masked = ndimage.map_coordinates(grown.astype(np.float64), [rows, cols], order=0, mode="constant",
                                         cval=0.0) > 0
        masked &= g.weight > 0
        g.weight = np.where(masked, 0.0, g.weight)
        g.n_masked = int(masked.sum())
        if not np.any(g.weight > 0):
            g.flags |= Flag.fully_masked
            g.messages.append("every pixel is masked after the automatic mask; nothing to fit")


# ---------------------------------------------------------------- helpers
def _pop_refused(options: dict) -> bool:
    """Refuse what bands do not take yet; return (and remove) ``auto_mask``."""
    _refuse(options)
    auto = bool(options.pop("auto_mask", False))
    if auto:
        from ..auto.segment import photutils_or_raise

        photutils_or_raise()  # at construction, not galaxy by galaxy
    return auto


def _file_numbers(keywords: dict, key: str, order: list[str], path) -> dict | None:
    """``{band: number}`` from a comma-separated header card, or None when the file has none."""
    if key not in keywords:
        return None
    values = [v.strip() for v in keywords[key].split(",")]
    if len(values) != len(order):
        raise ConfigError(f"image set '{path}': {key} = {keywords[key]!r} has {len(values)} values for the "
                          f"{len(order)} BANDS {order}; give one per band")
    try:
        return {b: float(v) for b, v in zip(order, values)}
    except ValueError:
        raise ConfigError(f"image set '{path}': {key} = {keywords[key]!r} is not a list of numbers") from None


def _same_galaxies(names: dict[str, list[str]], sources: dict[str, str]) -> None:
    """Refuse bands whose files list other galaxies, or the same in another order."""
    ref_band = next(iter(names))
    ref = names[ref_band]
    for b, other in names.items():
        if other == ref:
            continue
        if len(other) != len(ref):
            raise ConfigError(f"Dataset: band {b!r} ({sources[b]}) holds {len(other)} galaxies but band "
                              f"{ref_band!r} ({sources[ref_band]}) holds {len(ref)}; give every band the same galaxies")
        i = next(k for k, (x, y) in enumerate(zip(ref, other)) if x != y)
        what = "in another order" if sorted(other) == sorted(ref) else "other galaxies"
        raise ConfigError(f"Dataset: band {b!r} ({sources[b]}) lists {what} than band {ref_band!r}: row {i} is "
                          f"{other[i]!r} there and {ref[i]!r} in {sources[ref_band]}; give every band's galaxies "
                          "in one order")


def _band_columns(table, given, bands: Bands, what: str, source: str) -> dict[str, str | None]:
    """Each band's column of ``what`` files: a dict by band, ``<given>_<band>``, or ``given`` for every band."""
    if given is None:
        return {b: None for b in bands.names}
    if isinstance(given, Mapping):
        columns = band_dict(given, bands, what)
    else:
        suffixed = {b: f"{given}_{b}" for b in bands.names}
        present = [c for c in suffixed.values() if c in table.colnames]
        if len(present) == len(suffixed):
            columns = suffixed
        elif present or what == "image" or given not in table.colnames:
            lacking = [c for c in suffixed.values() if c not in table.colnames]
            raise KeyError(f"{source}: no column {', '.join(repr(c) for c in lacking)} (the {what} files of "
                           f"band{'s' if len(lacking) > 1 else ''} {', '.join(c[len(given) + 1:] for c in lacking)}); "
                           f"its columns are {', '.join(table.colnames)}")
        else:  # one column for every band (a mask, a PSF)
            columns = {b: given for b in bands.names}
    for b, column in columns.items():
        if column is not None and column not in table.colnames:
            raise KeyError(f"{source}: no column {column!r} (the {what} files of band {b!r}); its columns are "
                           f"{', '.join(table.colnames)}")
    return columns


def _length(value) -> int:
    if isinstance(value, (str, os.PathLike)):
        return 1
    if hasattr(value, "shape") and len(value.shape) == 2:
        return 1
    return len(value)


def _listed(value, n: int, what: str) -> list:
    if isinstance(value, (str, os.PathLike)) or (hasattr(value, "shape") and len(value.shape) == 2):
        items = [value]
    else:
        items = list(value)
    if len(items) != n:
        raise ConfigError(f"Dataset: {what} has {len(items)} entries but the first band has {n}; give one entry "
                          "per galaxy in every band (None where a galaxy has no image in a band)")
    return items


def _missing(lists: dict, bands: Bands) -> dict[str, set[int]]:
    return {b: {i for i, x in enumerate(lists[b]) if x is None} for b in bands.names}


def _fill_missing(lists: dict, bands: Bands) -> dict[str, list]:
    """Each band's list with a stand-in (another band's entry) where the galaxy has none; never read."""
    out = {b: list(v) for b, v in lists.items()}
    for b in bands.names:
        for i, x in enumerate(out[b]):
            if x is None:
                other = next((lists[o][i] for o in bands.names if lists[o][i] is not None), None)
                if other is None:
                    raise ConfigError(f"Dataset: galaxy {i} has no image in any band; drop it from the dataset")
                out[b][i] = other
    return out


def _fill_optional(value, missing: set[int], stand_in):
    """A per-galaxy list with ``stand_in(i)`` at the missing galaxies' None entries."""
    if not isinstance(value, (list, tuple)):
        return value
    return [stand_in(i) if (i in missing and x is None) else x for i, x in enumerate(value)]


def _celestial_wcs(path, hdu):
    """The image's celestial FITS WCS, or None without one (or with an unreadable header or a singular matrix)."""
    import warnings

    from astropy.wcs import FITSFixedWarning, WCS

    from ..io.fits import read_header

    try:
        header = read_header(path, hdu)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header).celestial
    except Exception:  # noqa: BLE001 - an unreadable header is the image reader's to report
        return None
    if not wcs.has_celestial or wcs.naxis != 2:
        return None
    det = float(np.linalg.det(wcs.pixel_scale_matrix))
    if not math.isfinite(det) or det == 0.0:  # a degenerate CD matrix places no pixel on the sky
        return None
    return wcs


def _grid_turn(ref_wcs, wcs) -> tuple[float, bool]:
    """How a band's pixel grid is turned against the reference's: (degrees counter-clockwise, mirrored).

    The map from reference pixel offsets to the band's is ``inv(P_band) P_ref`` (P: each WCS's
    pixel-to-sky matrix, CD or PC x CDELT or CROTA); its angle is the turn, a negative determinant
    a mirror.
    """
    m = np.linalg.solve(wcs.pixel_scale_matrix, ref_wcs.pixel_scale_matrix)
    return math.degrees(math.atan2(m[1, 0], m[0, 0])), bool(np.linalg.det(m) < 0)


def _degrees_apart(a: float, b: float) -> float:
    """The smaller angle between two directions given in degrees."""
    return abs((a - b + 180.0) % 360.0 - 180.0)


def _sky_centre(wcs, shape):
    """The sky position of a cutout's centre."""
    return wcs.pixel_to_world((shape[1] - 1) / 2, (shape[0] - 1) / 2)


#: a galaxy whose bands are turned against each other by more than this (degrees) beyond the
#: dataset's rotation (the first galaxy's) is flagged: its cutouts were cut from other images
_TURN_TOLERANCE = 0.05


def _off_sky(ds: "MultiBandDataset", position: int, shapes: list) -> str:
    """Why galaxy ``position``'s cutouts do not share their centre (or orientation) on the sky, or ''.

    '' also without a WCS.
    """
    paths = [getattr(band, "image_paths", [None] * len(ds))[position] for band in ds.datasets.values()]
    if any(p is None for p in paths) or getattr(ds, "_no_wcs", False):
        return ""
    wcs = [_celestial_wcs(p, band.hdus.get("image")) for p, band in zip(paths, ds.datasets.values())]
    if any(w is None for w in wcs):
        if position == 0:
            ds._no_wcs = True  # files without a WCS: nothing to compare, and no header read per galaxy
        return ""
    ref = _sky_centre(wcs[0], shapes[0])
    limit = 0.5 * ds.bands.pix_scale[0]
    for b, (name, w, shape) in enumerate(zip(ds.bands.names, wcs, shapes)):
        if b == 0:
            continue
        offset = float(ref.separation(_sky_centre(w, shape)).arcsec)
        if offset > limit:
            return (f"band {name!r}'s cutout is centred {offset:.3g} arcsec from band {ds.bands.names[0]!r}'s in their "
                    f"FITS WCS (more than half a reference pixel, {limit:g} arcsec): the bands of a galaxy must be cut "
                    "around one sky point; re-cut it")
        turn, _ = _grid_turn(wcs[0], w)
        expected = 0.0 if ds.bands.rotation is None else ds.bands.rotation[b]
        if _degrees_apart(turn, expected) > _TURN_TOLERANCE:
            return (f"band {name!r}'s grid is turned {turn:.3g} degrees against band {ds.bands.names[0]!r}'s in their "
                    f"FITS WCS, the dataset's rotation for it is {expected:.3g} (from the first galaxy, or given): "
                    "cut every galaxy's bands from images of one orientation per band")
    return ""


def _check_rotation(ds: MultiBandDataset, tolerance: float = 0.01) -> None:
    """Each band's rotation against the reference band from the first galaxy's FITS WCS (in place on ds.bands).

    Refuses mirrored bands, and a ``rotation`` given that the WCS contradicts.
    """
    import dataclasses

    wcs = {}
    for b, band in ds.datasets.items():
        path = band.image_paths[0] if hasattr(band, "image_paths") else None
        if path is None or 0 in ds.missing[b] or not os.path.exists(path):
            continue
        wcs[b] = _celestial_wcs(path, band.hdus.get("image"))
    ref_name = ds.bands.names[0]
    if wcs.get(ref_name) is None:
        return
    given = ds.bands.rotation
    turns = list(given) if given is not None else [0.0] * len(ds.bands)
    for k, b in enumerate(ds.bands.names[1:], start=1):
        if wcs.get(b) is None:
            continue
        turn, mirrored = _grid_turn(wcs[ref_name], wcs[b])
        if mirrored:
            raise NotImplementedError(
                f"multi-band datasets: band {b!r} is mirrored against band {ref_name!r} in its FITS WCS; "
                "mirrored bands are not supported yet: flip it to the reference band's orientation"
            )
        if given is not None and _degrees_apart(turn, given[k]) > tolerance:
            raise ConfigError(
                f"Dataset: rotation of band {b!r} is {given[k]:g} degrees but its FITS WCS turns it {turn:.4g} "
                f"degrees against band {ref_name!r}; leave rotation out to take the WCS's, or fix the headers"
            )
        turns[k] = turn if abs(turn) > tolerance else 0.0
    if given is None and any(turns):
        ds.bands = dataclasses.replace(ds.bands, rotation=tuple(turns))
