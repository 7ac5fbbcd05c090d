"""``gm.Dataset``: the galaxies to fit, read lazily, one galaxy at a time.

A dataset is a list of galaxies, each an image, a sigma (noise) image, a PSF and
a mask, given as FITS files (the seed's form) or as arrays
(:meth:`Dataset.from_arrays`). Files are read only when a galaxy's batch is
about to be fitted, so a dataset of millions of galaxies costs memory only for
the batch in flight. Cutouts of different sizes may be mixed: the fitter groups
galaxies of the same shape into batches.

Problems with one galaxy's data (a missing or unreadable file, non-finite pixels,
a sigma <= 0, every pixel masked, an unusable PSF) never stop a run: the galaxy
is flagged (:mod:`galmoss.flags`), its results are NaN with a message naming the
file and the problem, and every other galaxy is fitted. Programming errors (wrong
argument types, lists of different lengths) raise at once.

Masks (design.md): ``mask_index`` names the value in the mask image that marks
the galaxy being fitted; pixels with any other non-zero value are excluded, zero
pixels (sky) are kept. Without ``mask_index`` every non-zero mask pixel is
excluded. Non-finite image or sigma pixels and sigma <= 0 are always excluded and
counted.

Without a sigma image, sigma is estimated from the image: the sky noise
``sigma_sky`` is the sigma-clipped standard deviation of the image (astropy's
``sigma_clipped_stats``, 3 sigma, which rejects the galaxy's pixels), and, when
the FITS header gives a gain (``GAIN``, ``EGAIN`` or ``CCDGAIN``, electrons per
image unit, times ``NCOMBINE`` if present) or ``gain=`` is passed, the source's
Poisson noise is added: ``sigma^2 = sigma_sky^2 + max(image - sky, 0) / gain``
(GALFIT's recipe). The galaxy is flagged ``sigma_estimated``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .flags import Flag
from .profiles.base import LightProfile

PathLike = str | os.PathLike


@dataclass
class GalaxyData:
    """One galaxy's data, ready to fit (float64 arrays, or None after a failure).

    Attributes
    ----------
    position
        Index of the galaxy in the dataset (its row in the results).
    name
        Its ``galaxy_index``.
    image, sigma, weight
        (H, W) arrays; ``weight`` is 1 for pixels used in the fit, 0 otherwise.
    psf
        (h, w) array or None.
    flags
        Bitmask of :class:`galmoss.flags.Flag`.
    messages
        What went wrong or what was done (e.g. how many bad pixels were masked).
    """

    position: int
    name: str
    image: np.ndarray | None = None
    sigma: np.ndarray | None = None
    weight: np.ndarray | None = None
    psf: np.ndarray | None = None
    flags: int = 0
    messages: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return self.image is not None and not (
            self.flags & (Flag.read_error | Flag.fully_masked | Flag.bad_psf)
        )

    @property
    def shape(self) -> tuple[int, int] | None:
        return None if self.image is None else tuple(self.image.shape)


def _as_list(value, name: str, n: int | None, *, allow_none: bool = True) -> list:
    """Normalise a per-galaxy argument to a list of length n (or infer n)."""
    if value is None:
        if not allow_none:
            raise TypeError(f"Dataset: {name} is required")
        return [None] * (n or 1)
    if isinstance(value, (str, os.PathLike)):
        items = [value]
    elif isinstance(value, np.ndarray) and value.dtype.kind in "US":
        items = list(value.ravel())
    elif isinstance(value, Sequence):
        items = list(value)
        # the seed's slides show a list holding one tuple of paths: accept it
        if len(items) == 1 and isinstance(items[0], (list, tuple)):
            items = list(items[0])
    else:
        raise TypeError(
            f"Dataset: {name} must be a path (str) or a list of paths, one per galaxy; got {type(value).__name__}"
        )
    for item in items:
        if item is not None and not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"Dataset: {name} holds {item!r} ({type(item).__name__}); give file paths as strings")
    if n is not None and len(items) != n:
        raise ValueError(
            f"Dataset: {name} has {len(items)} entries but galaxy_index has {n}; give one entry per galaxy"
        )
    return items


class Dataset:
    """The galaxies to fit (the seed's ``gm.Dataset`` / ``gm.DataSet``).

    Parameters
    ----------
    galaxy_index
        A name for one galaxy, or a list of names (one per galaxy).
    image_path
        Path of the image FITS file, or a list of paths.
    sigma_path, psf_path, mask_path
        Paths (or lists of paths) of the sigma image, PSF and mask; each optional.
    mask_index
        Value in the mask marking the fitted galaxy (other non-zero values are
        masked; zero is sky and kept). A single value or one per galaxy.
    img_block_path
        Folder for image blocks (``<galaxy_index>.fits``: data, model, residual and
        components), written after the fit. None: none written.
    result_path
        Folder for ``results.fits`` and ``results.csv``. None: not written.
    image_hdu, sigma_hdu, psf_hdu, mask_hdu
        HDU (index or EXTNAME) to read; None: the primary HDU if it holds an
        image, else the first image extension.
    gain
        Electrons per image unit, used only to estimate sigma when no sigma image
        is given (overrides the FITS header).

    Notes
    -----
    Profiles are attached with :meth:`define_profiles`; they belong to this
    dataset only.
    """

    def __init__(
        self,
        galaxy_index,
        image_path,
        sigma_path=None,
        psf_path=None,
        mask_path=None,
        mask_index=None,
        img_block_path: PathLike | None = None,
        result_path: PathLike | None = None,
        *,
        image_hdu=None,
        sigma_hdu=None,
        psf_hdu=None,
        mask_hdu=None,
        gain: float | None = None,
    ) -> None:
        names = _as_list(galaxy_index, "galaxy_index", None, allow_none=False)
        self.names = [str(x) for x in names]
        n = len(self.names)
        if n == 0:
            raise ValueError("Dataset: galaxy_index is empty; give at least one galaxy")
        self.image_paths = _as_list(image_path, "image_path", n, allow_none=False)
        self.sigma_paths = _as_list(sigma_path, "sigma_path", n)
        self.psf_paths = _as_list(psf_path, "psf_path", n)
        self.mask_paths = _as_list(mask_path, "mask_path", n)
        self.mask_index = self._mask_index(mask_index, n)
        self.hdus = {"image": image_hdu, "sigma": sigma_hdu, "psf": psf_hdu, "mask": mask_hdu}
        self.img_block_path = None if img_block_path is None else Path(img_block_path)
        self.result_path = None if result_path is None else Path(result_path)
        self.gain = gain
        self._arrays: dict[str, Sequence | None] | None = None
        self.profiles: dict[str, LightProfile] = {}

    @staticmethod
    def _mask_index(mask_index, n: int) -> list:
        if mask_index is None or np.isscalar(mask_index):
            return [mask_index] * n
        values = list(mask_index)
        if len(values) != n:
            raise ValueError(f"Dataset: mask_index has {len(values)} entries for {n} galaxies; give one or one per galaxy")
        return values

    # ------------------------------------------------------------ from arrays
    @classmethod
    def from_arrays(
        cls,
        images,
        sigmas=None,
        psfs=None,
        masks=None,
        galaxy_index=None,
        *,
        mask_index=None,
        img_block_path: PathLike | None = None,
        result_path: PathLike | None = None,
        gain: float | None = None,
    ) -> "Dataset":
        """A dataset from numpy arrays or torch tensors.

        Parameters
        ----------
        images
            (N, H, W) array, (H, W) for one galaxy, or a list of (H_i, W_i) arrays.
        sigmas, masks
            Same layout as ``images`` (None: estimated sigma / no mask).
        psfs
            (h, w) for all galaxies, (N, h, w), or a list of (h_i, w_i).
        galaxy_index
            Names (default ``"0"``, ``"1"``, ...).
        """
        imgs = _array_list(images, "images")
        n = len(imgs)
        names = [str(i) for i in range(n)] if galaxy_index is None else _as_names(galaxy_index, n)
        obj = cls(names, [None] * n, mask_index=mask_index, img_block_path=img_block_path, result_path=result_path, gain=gain)
        shared_psf = psfs is not None and not isinstance(psfs, (list, tuple)) and np.ndim(_to_numpy(psfs)) == 2
        obj._arrays = {
            "image": imgs,
            "sigma": None if sigmas is None else _array_list(sigmas, "sigmas", n),
            "psf": None if psfs is None else ([np.asarray(_to_numpy(psfs))] * n if shared_psf else _array_list(psfs, "psfs", n)),
            "mask": None if masks is None else _array_list(masks, "masks", n),
        }
        return obj

    # --------------------------------------------------------------- profiles
    def define_profiles(self, **profiles: LightProfile) -> None:
        """Attach named profiles to this dataset (replacing earlier ones)."""
        if not profiles:
            raise ValueError("define_profiles: give at least one profile, e.g. define_profiles(sersic=gm.lp.Sersic(...))")
        for name, profile in profiles.items():
            if not isinstance(profile, LightProfile):
                raise TypeError(f"define_profiles: {name}={profile!r} is not a gm.LightProfile")
        self.profiles = dict(profiles)

    # ---------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        kind = "arrays" if self._arrays is not None else "files"
        return f"Dataset({len(self)} galaxies from {kind}, profiles={list(self.profiles)})"

    def load(self, position: int) -> GalaxyData:
        """Read and check galaxy ``position``; problems become flags and messages."""
        gal = GalaxyData(position, self.names[position])
        try:
            image, header = self._read("image", position)
        except Exception as exc:  # any failure to read is this galaxy's problem, not the run's
            gal.flags |= Flag.read_error
            gal.messages.append(_describe(exc))
            return gal
        gal.image = image
        try:
            sigma, _ = self._read("sigma", position)
            mask, _ = self._read("mask", position)
        except Exception as exc:  # any failure to read is this galaxy's problem, not the run's
            gal.flags |= Flag.read_error
            gal.messages.append(_describe(exc))
            return gal
        try:
            psf, _ = self._read("psf", position)
        except Exception as exc:  # any failure to read is this galaxy's problem, not the run's
            gal.flags |= Flag.read_error | Flag.bad_psf
            gal.messages.append(_describe(exc))
            return gal
        source = self._source("image", position)
        for what, arr in (("sigma", sigma), ("mask", mask)):
            if arr is not None and arr.shape != image.shape:
                gal.flags |= Flag.read_error
                gal.messages.append(
                    f"{self._source(what, position)}: {what} shape {arr.shape} differs from the image shape "
                    f"{image.shape} ({source}); give cutouts of the same size"
                )
                return gal
        if psf is not None:
            if not (np.all(np.isfinite(psf)) and np.any(psf > 0) and psf.sum() > 0):
                gal.flags |= Flag.bad_psf
                gal.messages.append(
                    f"{self._source('psf', position)}: the PSF has non-finite pixels or no positive flux; "
                    "give a star image"
                )
                return gal
            gal.psf = psf
        weight = np.ones(image.shape)
        if mask is not None:
            target = self.mask_index[position]
            weight[(mask != 0) & (mask != target if target is not None else True)] = 0.0
        if sigma is None:
            sigma = estimate_sigma(image, weight, self._gain(header))
            gal.flags |= Flag.sigma_estimated
            gal.messages.append("sigma estimated from the image (no sigma image given)")
        bad = ~np.isfinite(image) | ~np.isfinite(sigma) | ~(sigma > 0)
        n_bad = int(np.count_nonzero(bad & (weight > 0)))
        if n_bad:
            gal.flags |= Flag.bad_pixels_masked
            gal.messages.append(f"{n_bad} pixels with non-finite data or sigma <= 0 were masked")
        weight[bad] = 0.0
        # masked pixels must not inject NaN into sums (0 * NaN is NaN)
        gal.image = np.where(bad, 0.0, image)
        gal.sigma = np.where(bad, 1.0, sigma)
        gal.weight = weight
        if not np.any(weight > 0):
            gal.flags |= Flag.fully_masked
            gal.messages.append(f"{source}: every pixel is masked or bad; nothing to fit")
        return gal

    # ------------------------------------------------------------- internals
    def _source(self, what: str, position: int) -> str:
        paths = getattr(self, f"{what}_paths")
        if paths[position] is not None:
            return str(paths[position])
        return f"{what} array of galaxy {self.names[position]!r} (index {position})"

    def _read(self, what: str, position: int):
        if self._arrays is not None:
            arrays = self._arrays[what]
            if arrays is None:
                return None, None
            arr = np.asarray(arrays[position], dtype=np.float64)
            if arr.ndim != 2:
                raise ValueError(f"{self._source(what, position)} must be 2-D, got shape {arr.shape}")
            return arr, None
        path = getattr(self, f"{what}_paths")[position]
        if path is None:
            return None, None
        from .io.fits import read_image, read_image_with_header

        hdu = self.hdus.get(what)
        if what == "image":
            return read_image_with_header(path, hdu, what=what, argument=f"{what}_path")
        return read_image(path, hdu, what=what, argument=f"{what}_path"), None

    def _gain(self, header) -> float | None:
        if self.gain is not None:
            return float(self.gain)
        if header is None:
            return None
        for key in ("GAIN", "EGAIN", "CCDGAIN"):
            if key in header:
                try:
                    gain = float(header[key])
                except (TypeError, ValueError):
                    continue
                if gain > 0:
                    return gain * float(header.get("NCOMBINE", 1) or 1)
        return None


#: the seed's spelling
DataSet = Dataset


def estimate_sigma(image: np.ndarray, weight: np.ndarray, gain: float | None) -> np.ndarray:
    """Per-pixel sigma from the image: clipped sky noise, plus source Poisson noise if the gain is known."""
    from astropy.stats import sigma_clipped_stats

    good = np.isfinite(image) & (weight > 0)
    values = image[good]
    if values.size < 10:
        return np.full(image.shape, np.nan)
    sky, _, sky_sigma = sigma_clipped_stats(values, sigma=3.0, maxiters=10)
    variance = np.full(image.shape, float(sky_sigma) ** 2)
    if gain is not None and gain > 0:
        variance = variance + np.clip(np.nan_to_num(image - sky), 0.0, None) / gain
    return np.sqrt(variance)


def _describe(exc: Exception) -> str:
    """The message of a reading error; the exception type too when it is not one of ours."""
    if isinstance(exc, (OSError, ValueError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _array_list(value, name: str, n: int | None = None) -> list:
    if isinstance(value, (list, tuple)):
        items = [_to_numpy(v) for v in value]
    else:
        arr = _to_numpy(value)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3:
            raise ValueError(f"Dataset.from_arrays: {name} must be (N, H, W), (H, W) or a list of 2-D arrays; got {arr.shape}")
        items = list(arr)
    if n is not None and len(items) != n:
        raise ValueError(f"Dataset.from_arrays: {name} holds {len(items)} galaxies but images hold {n}")
    return items


def _as_names(galaxy_index, n: int) -> list[str]:
    names = [str(x) for x in (galaxy_index if isinstance(galaxy_index, (list, tuple, np.ndarray)) else [galaxy_index])]
    if len(names) != n:
        raise ValueError(f"Dataset.from_arrays: galaxy_index has {len(names)} names for {n} images")
    return names


__all__ = ["DataSet", "Dataset", "GalaxyData", "estimate_sigma"]
