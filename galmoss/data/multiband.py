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
    "auto_mask": "automatic masks (auto_mask=True) with bands",
    "neighbours": "fitted neighbours (neighbours='fit') with bands",
    "psf_fwhm": "PSFs from a FWHM (psf_fwhm) with bands",
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
        Image blocks, automatic masks, fitted neighbours, PSFs from a FWHM,
        regions, or bands rotated against each other in their FITS WCS.
    """

    def __init__(self, galaxy_index, image_path, sigma_path=None, psf_path=None, mask_path=None, mask_index=None,
                 img_block_path=None, result_path=None, *, wavelength=None, pix_scale=None, _arrays=None,
                 **options) -> None:
        _refuse(options)
        if img_block_path is not None:
            raise NotImplementedError("multi-band datasets: image blocks (img_block_path) are not written for joint "
                                      "fits yet; leave img_block_path out")
        self.bands: Bands = make_bands(wavelength, pix_scale)
        gain = band_dict(options.pop("gain", None), self.bands, "gain")
        self.profiles: dict = {}
        self.img_block_path = None
        self.result_path = None if result_path is None else Path(result_path)
        self.catalog = None
        self.render_settings = None
        if _arrays is not None:  # from_arrays
            self._from_arrays(galaxy_index, _arrays, mask_index, gain, options)
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
                mask_index, gain=gain[b], **options,
            )
        _check_rotation(self)

    @classmethod
    def from_arrays(cls, images, sigmas=None, psfs=None, masks=None, galaxy_index=None, *, wavelength=None,
                    pix_scale=None, img_block_path=None, result_path=None, mask_index=None, **options):
        """Per-band arrays: each argument a dict ``{band: (N, H, W) array or list}`` (psfs also ``(h, w)``)."""
        if not isinstance(images, Mapping):
            raise ConfigError("Dataset.from_arrays: with wavelength, images must be a dict {band: arrays} naming every "
                              "band")
        return cls(galaxy_index, None, img_block_path=img_block_path, result_path=result_path, wavelength=wavelength,
                   pix_scale=pix_scale, mask_index=mask_index,
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
                                                   gain=gain[b], **options)

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
        return out


# ---------------------------------------------------------------- helpers
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


def _rotation(header) -> tuple[float, bool] | None:
    """The WCS's orientation: (angle of north on the pixel grid in degrees, mirrored), or None without one."""
    if "CD1_1" in header:
        a, b, c, d = (float(header.get(k, 0.0)) for k in ("CD1_1", "CD1_2", "CD2_1", "CD2_2"))
    elif "PC1_1" in header:
        a, b, c, d = (float(header.get(k, v)) for k, v in (("PC1_1", 1.0), ("PC1_2", 0.0), ("PC2_1", 0.0),
                                                             ("PC2_2", 1.0)))
    elif "CROTA2" in header:
        return float(header["CROTA2"]), True
    else:
        return None
    # north on the pixel grid: the direction in which declination grows; a sky image has det < 0
    return math.degrees(math.atan2(c, d)), a * d - b * c < 0


def _check_rotation(ds: MultiBandDataset, tolerance: float = 0.01) -> None:
    """Refuse bands whose first galaxy's image WCS is rotated against the reference band's."""
    from astropy.io import fits

    angles = {}
    for b, band in ds.datasets.items():
        path = band.image_paths[0]
        if path is None or 0 in ds.missing[b] or not os.path.exists(path):
            continue
        try:
            with fits.open(path, memmap=False) as hdul:
                hdu = next((h for h in hdul if getattr(h, "data", None) is not None and h.header.get("NAXIS", 0) >= 2),
                           hdul[0])
                angles[b] = _rotation(hdu.header)
        except OSError:
            continue  # unreadable files are flagged galaxy by galaxy when they are read
    ref = next(iter(angles.values()), None)
    for b, orientation in angles.items():
        if ref is None or orientation is None:
            continue
        turn = (orientation[0] - ref[0] + 180.0) % 360.0 - 180.0
        if orientation[1] != ref[1]:
            raise NotImplementedError(
                f"multi-band datasets: band {b!r} is mirrored against band {ds.bands.names[0]!r} in its FITS WCS; "
                "mirrored bands are not supported yet: flip it to the reference band's orientation"
            )
        if abs(turn) > tolerance:
            raise NotImplementedError(
                f"multi-band datasets: band {b!r} is rotated by {turn:.3g} degrees against band "
                f"{ds.bands.names[0]!r} in its FITS WCS; bands rotated against each other are not supported yet: "
                "resample it to the reference band's orientation"
            )
