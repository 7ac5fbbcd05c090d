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
pixels (sky) are kept. Without ``mask_index``, an integer mask is a segmentation
map: the label under the galaxy's start position (the cutout centre when none) is
the galaxy and is kept, the others are excluded (a mask of one label that lies under
the galaxy is its own segment, as GalMOSS 2 read masks); a mask whose labels all lie
off the galaxy marks bad pixels, all excluded; ``mask_index=0`` excludes every
non-zero pixel. A mask that covers the galaxy's
centre or most of its light flags it ``target_masked``. Non-finite image or sigma
pixels and sigma <= 0 are always excluded and counted.

Without a sigma image, sigma is estimated from the image: the sky noise
``sigma_sky`` is the sigma-clipped standard deviation of the image (astropy's
``sigma_clipped_stats``, 3 sigma, which rejects the galaxy's pixels), and, when
the FITS header gives a gain (``GAIN``, ``EGAIN`` or ``CCDGAIN``, electrons per
image unit, times ``NCOMBINE`` if present) or ``gain=`` is passed, the source's
Poisson noise is added: ``sigma^2 = sigma_sky^2 + max(image - sky, 0) / gain``
(GALFIT's recipe). The galaxy is flagged ``sigma_estimated``.

Three sources of pixels, one behaviour: per-galaxy FITS files (the seed's form),
arrays (:meth:`Dataset.from_arrays`, kept as given and converted one galaxy at a
time), and image sets (:meth:`Dataset.from_image_set`: one FITS or HDF5 file of
(N, H, W) cubes, read a plane at a time). :meth:`Dataset.from_catalog` reads a table of
file names (CSV, FITS or Parquet). A ``region`` (GALFIT's fitting section,
``xmin xmax ymin ymax``, 1-based inclusive) cuts each galaxy's section out of a
larger image.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..flags import Flag
from ..profiles.base import LightProfile, check_slots
from ..render.psf import LARGER_THAN_CUTOUT, psf_exceeds_cutout

PathLike = str | os.PathLike


@dataclass(frozen=True)
class DataOptions:
    """How a dataset reads its galaxies: the options every ``Dataset`` constructor takes, checked once.

    ``gm.Dataset(...)``, ``Dataset.from_arrays``, ``from_image_set`` and
    ``from_catalog`` all take these keywords by name (see :class:`Dataset`);
    per-galaxy values (``mask_index``, ``region``, ``psf_fwhm``: one or one per
    galaxy) are expanded when the dataset knows its galaxies.
    """

    mask_index: object = None
    img_block_path: PathLike | None = None
    result_path: PathLike | None = None
    gain: float | None = None
    region: object = None
    auto_mask: bool = False
    psf_fwhm: object = None
    psf_kind: str = "moffat"
    psf_beta: float = 3.5
    neighbours: str = "mask"
    max_neighbours: int = 3

    def __post_init__(self) -> None:
        for arg in ("img_block_path", "result_path"):
            value = getattr(self, arg)
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise TypeError(f"Dataset: {arg}={value!r} ({type(value).__name__}) is not a folder path; give a str "
                                "or pathlib.Path")
        _check_gain(self.gain)
        if self.psf_kind not in ("moffat", "gaussian"):
            raise ValueError(f"Dataset: psf_kind={self.psf_kind!r}; give 'moffat' or 'gaussian'")
        if isinstance(self.psf_beta, bool) or not isinstance(self.psf_beta, (int, float)) or not self.psf_beta > 1:
            raise ValueError(f"Dataset: psf_beta={self.psf_beta!r}; a Moffat needs a number > 1 (finite flux)")
        _neighbour_options(self.neighbours, self.max_neighbours, bool(self.auto_mask))

    @classmethod
    def names(cls) -> list[str]:
        """The option keywords."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def pick(cls, options: dict, owner: str) -> dict:
        """``options`` checked by name: an unknown keyword is a TypeError naming it and the ones there are."""
        unknown = sorted(set(options) - set(cls.names()))
        if unknown:
            raise TypeError(f"{owner}: unknown keyword(s) {', '.join(unknown)}; the dataset options are "
                            f"{', '.join(cls.names())}")
        return dict(options)


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
    #: pixels masked by the automatic mask (``auto_mask=True``), and the target's segment (H, W) bool
    n_masked: int = 0
    segment: np.ndarray | None = None
    #: neighbours fitted with their own component (``neighbours="fit"``): one dict each, and their pixels
    neighbours: list = field(default_factory=list)
    neighbour_pixels: np.ndarray | None = None

    @property
    def usable(self) -> bool:
        return self.image is not None and self.weight is not None and not (
            self.flags & (Flag.read_error | Flag.fully_masked | Flag.bad_psf | Flag.bad_mask | Flag.no_source)
        )

    @property
    def shape(self) -> tuple[int, int] | None:
        return None if self.image is None else tuple(self.image.shape)


def _as_list(value, name: str, n: int | None, *, allow_none: bool = True, paths: bool = True) -> list:
    """Normalise a per-galaxy argument to a list of length n (or infer n)."""
    if not paths and isinstance(value, np.ndarray):
        value = value.ravel().tolist()
    elif not paths and isinstance(value, (int, np.integer)):
        value = [value]
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
    # type() of every item, in C: a catalogue of 10^6 strings is checked in milliseconds
    kinds = set(map(type, items))
    ok = {str} if not paths else {str, type(None)}
    if not kinds <= ok:
        _check_items(items, name, paths)
    if n is not None and len(items) != n:
        raise ValueError(
            f"Dataset: {name} has {len(items)} entries but galaxy_index has {n}; give one entry per galaxy"
        )
    return items


def _check_items(items: list, name: str, paths: bool) -> None:
    for i, item in enumerate(items):
        if not paths:
            if item is None or isinstance(item, (list, tuple, dict, set)):
                raise TypeError(f"Dataset: {name}[{i}] is {item!r}; give each galaxy a name (a string)")
            continue
        if item is not None and not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"Dataset: {name} holds {item!r} ({type(item).__name__}); give file paths as strings")


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
        masked; zero is sky and kept). A single value or one per galaxy. None:
        an integer mask is a segmentation map and keeps the label under the
        galaxy's start position (the cutout centre when none), masking the
        others; a mask with no label under the galaxy masks all of it (bad
        pixels); ``mask_index=0`` masks every non-zero pixel.
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
    auto_mask
        Mask every source but the target with photutils (:func:`galmoss.auto.auto_mask`:
        detection, deblending, each neighbour grown in proportion to its size),
        combined with any mask given; the target is the segment under the first
        profile's start centre (the cutout centre when none is given). Without a
        sigma image, sigma comes from the sky pixels it finds. Needs
        ``pip install 'galmoss[auto]'``.
    psf_fwhm
        PSF FWHM in pixels (one, or one per galaxy) for galaxies without a PSF
        image: a pixel-integrated Moffat (``psf_beta``) or Gaussian (``psf_kind``),
        :func:`galmoss.auto.psf_from_fwhm`.
    neighbours
        With ``auto_mask``: ``"mask"`` (default) masks every other source;
        ``"fit"`` gives the neighbours that bias the target (closer than 3 of its
        half-light radii, or brighter and closer than 6:
        :func:`galmoss.auto.select_neighbours`) their own component, fitted with
        the target (a Sersic, or a point source when the neighbour is as compact
        as the PSF), and masks the rest. The profiles given to
        :meth:`define_profiles` are the target's only; the neighbours' columns
        are ``nb<k>_*`` (Sersic) and ``nbstar<k>_*`` (point source), NaN where
        fewer were fitted, and ``n_neighbours_fitted`` counts them.
    max_neighbours
        At most this many neighbours are fitted per galaxy (the nearest); the
        others are masked.
    wavelength, pix_scale
        Several bands (docs/multiband.md): ``image_path`` and the other
        per-galaxy paths as dicts ``{band: paths}``, ``wavelength={band:
        wavelength}`` (the first band is the reference frame) and
        ``pix_scale={band: arcsec per pixel}``; the call returns a
        :class:`~galmoss.data.multiband.MultiBandDataset`.

    Notes
    -----
    Profiles are attached with :meth:`define_profiles`; they belong to this
    dataset only.
    """

    def __new__(cls, *args, **kwargs):
        # per-band inputs (dicts by band name, with wavelength and pix_scale) make a multi-band dataset
        if cls is Dataset and kwargs.get("_pixels", "files") == "files":
            from .multiband import MultiBandDataset, is_multiband

            if is_multiband(args, kwargs):
                return MultiBandDataset(*args, **kwargs)
        return super().__new__(cls)

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
        region=None,
        auto_mask: bool = False,
        psf_fwhm=None,
        psf_kind: str = "moffat",
        psf_beta: float = 3.5,
        neighbours: str = "mask",
        max_neighbours: int = 3,
        _pixels: str = "files",
    ) -> None:
        names = _as_list(galaxy_index, "galaxy_index", None, allow_none=False, paths=False)
        self.names = names if set(map(type, names)) <= {str} else [str(x) for x in names]
        n = len(self.names)
        if n == 0:
            raise ValueError("Dataset: galaxy_index is empty; give at least one galaxy")
        _check_unique(self.names)
        if _pixels != "files":  # from_arrays / from_image_set: no image files
            image_path = [None] * n
        self.image_paths = _as_list(image_path, "image_path", n, allow_none=False)
        if _pixels == "files" and None in self.image_paths:
            bad = next(i for i, x in enumerate(self.image_paths) if x is None)
            raise TypeError(
                f"Dataset: image_path of galaxy {self.names[bad]!r} (index {bad}) is None; give every galaxy an image file"
            )
        self.sigma_paths = _as_list(sigma_path, "sigma_path", n)
        self.psf_paths = _as_list(psf_path, "psf_path", n)
        self.mask_paths = _as_list(mask_path, "mask_path", n)
        #: the options, checked in one place (:class:`DataOptions`)
        self.options = options = DataOptions(
            mask_index=mask_index, img_block_path=img_block_path, result_path=result_path, gain=gain, region=region,
            auto_mask=auto_mask, psf_fwhm=psf_fwhm, psf_kind=psf_kind, psf_beta=psf_beta, neighbours=neighbours,
            max_neighbours=max_neighbours)
        self.mask_index = self._mask_index(options.mask_index, n)
        self.hdus = {"image": image_hdu, "sigma": sigma_hdu, "psf": psf_hdu, "mask": mask_hdu}
        self.img_block_path = None if options.img_block_path is None else Path(options.img_block_path)
        self.result_path = None if options.result_path is None else Path(options.result_path)
        self.gain = _check_gain(options.gain)
        self.regions = _regions(options.region, n, self.names)
        self.auto_mask = bool(options.auto_mask)
        if self.auto_mask:
            from ..auto.segment import photutils_or_raise

            photutils_or_raise()  # at construction, not galaxy by galaxy
        self.neighbours, self.max_neighbours = _neighbour_options(options.neighbours, options.max_neighbours,
                                                                  self.auto_mask)
        self.psf_fwhm = _psf_fwhm(options.psf_fwhm, n)
        self.psf_kind, self.psf_beta = options.psf_kind, float(options.psf_beta)
        self._arrays: dict[str, Sequence | None] | None = None
        self._image_set = None
        #: the catalogue the galaxies came from (image-set CATALOG, catalogue file), or None
        self.catalog = None
        self.profiles: dict[str, LightProfile] = {}

    @staticmethod
    def _mask_index(mask_index, n: int) -> list:
        if mask_index is None or np.isscalar(mask_index):
            return [_mask_value(mask_index, None)] * n
        if isinstance(mask_index, tuple):
            raise TypeError(
                f"Dataset: mask_index={mask_index!r} is a tuple; give one number (the galaxy's value in its mask) "
                "or a list with one number per galaxy"
            )
        values = list(mask_index)
        if len(values) != n:
            raise ValueError(f"Dataset: mask_index has {len(values)} entries for {n} galaxies; give one or one per galaxy")
        return [_mask_value(v, i) for i, v in enumerate(values)]

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
        wavelength=None,
        pix_scale=None,
        **options,
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
        **options
            The dataset options (:class:`DataOptions`, as for :class:`Dataset`):
            ``mask_index``, ``img_block_path``, ``result_path``, ``gain``,
            ``region``, ``auto_mask``, ``psf_fwhm``, ``psf_kind``, ``psf_beta``,
            ``neighbours``, ``max_neighbours``.

        wavelength, pix_scale
            Several bands (docs/multiband.md): every array argument a dict
            ``{band: arrays}``, ``wavelength`` ``{band: wavelength}`` (the first
            band is the reference frame) and ``pix_scale`` ``{band: arcsec per
            pixel}`` (and optionally ``zero_point={band: magnitude zero point}``);
            returns a :class:`~galmoss.data.multiband.MultiBandDataset`.

        Notes
        -----
        The arrays are kept as given (no copy); each galaxy is converted to
        float64 when its batch is read, so a float32 cube of 10^6 cutouts is not
        doubled in memory up front.
        """
        if isinstance(images, dict) or wavelength is not None:
            from .multiband import MultiBandDataset

            zero_point, rotation = options.pop("zero_point", None), options.pop("rotation", None)
            return MultiBandDataset.from_arrays(
                images, sigmas, psfs, masks, galaxy_index, wavelength=wavelength, pix_scale=pix_scale,
                zero_point=zero_point, rotation=rotation, **DataOptions.pick(options, "Dataset.from_arrays"),
            )
        options = DataOptions.pick(options, "Dataset.from_arrays")
        imgs = _array_list(images, "images")
        n = len(imgs)
        names = [str(i) for i in range(n)] if galaxy_index is None else _as_names(galaxy_index, n)
        obj = cls(names, None, **options, _pixels="arrays")
        shared_psf = psfs is not None and not isinstance(psfs, (list, tuple)) and np.ndim(psfs) == 2
        obj._arrays = {
            "image": imgs,
            "sigma": None if sigmas is None else _array_list(sigmas, "sigmas", n),
            "psf": None if psfs is None else (_SharedPlane(psfs, n) if shared_psf else _array_list(psfs, "psfs", n)),
            "mask": None if masks is None else _array_list(masks, "masks", n),
        }
        return obj

    @classmethod
    def from_image_set(
        cls,
        path: PathLike,
        galaxy_index=None,
        *,
        wavelength=None,
        pix_scale=None,
        _band: int | None = None,
        _of_bands: bool = False,
        **options,
    ) -> "Dataset":
        """A dataset from one image-set file (the seed's "image sets (image, sigma, psf)").

        Parameters
        ----------
        path
            A FITS file with image extensions ``IMAGE`` (N, H, W), and optionally
            ``SIGMA`` (N, H, W), ``PSF`` (N, h, w) or (h, w), ``MASK`` (N, H, W) and a
            ``CATALOG`` binary table; or an HDF5 file with datasets of those names
            (see :mod:`galmoss.io.imageset`). Planes are read one
            galaxy at a time.
        galaxy_index
            Names of the N galaxies; default: the CATALOG's ``galaxy_index`` column
            when there is one, else ``"0"``, ``"1"``, ...
        **options
            The dataset options (:class:`DataOptions`, as for :class:`Dataset`).
        wavelength, pix_scale
            Several bands (docs/multiband.md): ``path`` a dict ``{band: file}``
            (one image set per band), or one file whose planes have a band axis
            (``IMAGE`` (N, n_bands, H, W), its header naming the bands:
            ``BANDS = 'g,r,i'``); returns a
            :class:`~galmoss.data.multiband.MultiBandDataset`.

        Notes
        -----
        The CATALOG table is kept as :attr:`catalog` (start values for ``gm.p``:
        ``gm.p(dataset.catalog["re"])``).
        """
        from ..io.catalog import text_column
        from ..io.imageset import ImageSet, has_band_axis

        if not _of_bands and (isinstance(path, dict) or wavelength is not None or has_band_axis(path)):
            from .multiband import MultiBandDataset

            zero_point, rotation = options.pop("zero_point", None), options.pop("rotation", None)
            return MultiBandDataset.from_image_set(path, galaxy_index, wavelength=wavelength, pix_scale=pix_scale,
                                                   zero_point=zero_point, rotation=rotation,
                                                   **DataOptions.pick(options, "Dataset.from_image_set"))
        options = DataOptions.pick(options, "Dataset.from_image_set")
        image_set = ImageSet(path, band=_band)
        catalog = image_set.catalog()
        if catalog is not None and len(catalog) != image_set.n:
            raise DataError(
                f"image set '{image_set.path}': CATALOG has {len(catalog)} rows but IMAGE holds {image_set.n} "
                "cutouts; give one catalogue row per cutout"
            )
        if catalog is not None:
            catalog.meta["catalogue"] = f"image set '{image_set.path}' CATALOG"
        if isinstance(galaxy_index, str) and not (image_set.n == 1 and (
                catalog is None or galaxy_index not in catalog.colnames)):
            # a column name (a job file's galaxy_index = "id"): honoured, or refused, never ignored
            if catalog is None:
                raise DataError(f"image set '{image_set.path}': galaxy_index={galaxy_index!r} names a CATALOG column, "
                                "but the file has no CATALOG; leave galaxy_index out (galaxies are named 0, 1, ...), "
                                "give one name per cutout, or add a CATALOG table")
            names = text_column(catalog, galaxy_index, "galaxy names")
        elif galaxy_index is None:
            if catalog is not None and "galaxy_index" in catalog.colnames:
                names = text_column(catalog, "galaxy_index", "galaxy names")
            else:
                names = [str(i) for i in range(image_set.n)]
        else:
            names = _as_names(galaxy_index, image_set.n)
        obj = cls(names, None, **options, _pixels="image_set")
        obj._image_set = image_set
        obj.catalog = catalog
        return obj

    @classmethod
    def from_catalog(
        cls,
        catalog,
        *,
        galaxy_index: str = "galaxy_index",
        image: str = "image",
        sigma: str | None = None,
        psf: str | None = None,
        mask: str | None = None,
        base_path: PathLike | None = None,
        wavelength=None,
        pix_scale=None,
        **options,
    ) -> "Dataset":
        """A dataset from a catalogue table: one row per galaxy naming its files.

        Parameters
        ----------
        catalog
            An astropy Table, or the path of a CSV, FITS or Parquet table.
        galaxy_index, image, sigma, psf, mask
            Column names: the galaxy names, and the image, sigma, PSF and mask
            file paths (None: not given). Relative paths are relative to
            ``base_path`` (default: the catalogue file's folder, or the current
            folder for a Table).
        **options
            The dataset options (:class:`DataOptions`, as for :class:`Dataset`);
            here ``mask_index`` may be a column name (the galaxy's value in its
            mask, per row) and ``psf_fwhm`` a column name (one FWHM in pixels per
            row, for galaxies without a PSF file).
        wavelength, pix_scale
            Several bands (docs/multiband.md): each band's files in columns
            ``<image>_<band>`` (``image_g``, ``image_r``, ...; likewise
            ``sigma_<band>``, ``psf_<band>``, ``mask_<band>``, or one ``mask``
            column for every band), or ``image={band: column}``; returns a
            :class:`~galmoss.data.multiband.MultiBandDataset`.

        Raises
        ------
        KeyError
            If a named column is missing (the message lists the columns there are).
        """
        from ..io.catalog import number_column, read_catalog, text_column

        if wavelength is not None or any(isinstance(c, dict) for c in (image, sigma, psf, mask)):
            from .multiband import MultiBandDataset

            zero_point, rotation = options.pop("zero_point", None), options.pop("rotation", None)
            return MultiBandDataset.from_catalog(
                catalog, galaxy_index=galaxy_index, image=image, sigma=sigma, psf=psf, mask=mask,
                base_path=base_path, wavelength=wavelength, pix_scale=pix_scale, zero_point=zero_point,
                rotation=rotation, **DataOptions.pick(options, "Dataset.from_catalog"))

        options = DataOptions.pick(options, "Dataset.from_catalog")
        mask_index, psf_fwhm = options.get("mask_index"), options.get("psf_fwhm")
        table, folder = read_catalog(catalog, text_columns=[c for c in (galaxy_index, image, sigma, psf, mask) if c])
        base = Path(base_path) if base_path is not None else folder

        def paths(name, what):
            if name is None:
                return None
            out = []
            # every row names its file; "none" (GALFIT's word) says a galaxy has no such file
            for text in text_column(table, name, f"{what} paths"):
                if what != "image" and text.lower() == "none":
                    out.append(None)
                    continue
                p = Path(text).expanduser()
                out.append(str(p if p.is_absolute() else base / p))
            return out

        names = text_column(table, galaxy_index, "galaxy names")
        images = paths(image, "image")
        if mask_index is not None and isinstance(mask_index, str):
            # a galaxy with no value: the mask is read as a segmentation map or a bad-pixel mask
            mask_index = [None if np.isnan(v) else v
                          for v in number_column(table, mask_index, "mask_index", optional=True).tolist()]
        if isinstance(psf_fwhm, str):
            psf_fwhm = number_column(table, psf_fwhm, "psf_fwhm", optional=True)  # NaN: the galaxy has a PSF file
        options.update(mask_index=mask_index, psf_fwhm=psf_fwhm)
        obj = cls(names, images, sigma_path=paths(sigma, "sigma"), psf_path=paths(psf, "psf"),
                  mask_path=paths(mask, "mask"), **options)
        obj.catalog = table
        return obj

    def close(self) -> None:
        """Close any file kept open between reads (an image set); reading reopens it."""
        if self._image_set is not None:
            self._image_set.close()

    def input_paths(self, position: int) -> list[str]:
        """The files galaxy ``position`` is read from (to make sure no output replaces one)."""
        if self._image_set is not None:
            return [str(self._image_set.path)]
        if self._arrays is not None:
            return []
        return [str(p) for p in (self.image_paths[position], self.sigma_paths[position],
                                 self.psf_paths[position], self.mask_paths[position]) if p is not None]

    # --------------------------------------------------------------- profiles
    def define_profiles(self, **profiles: LightProfile) -> None:
        """Attach named profiles to this dataset (replacing earlier ones)."""
        if not profiles:
            raise ValueError("define_profiles: give at least one profile, e.g. define_profiles(sersic=gm.lp.Sersic(...))")
        for name, profile in profiles.items():
            if not isinstance(profile, LightProfile):
                raise TypeError(f"define_profiles: {name}={profile!r} is not a gm.LightProfile")
            check_slots(name, profile)
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
            psf, psf_ok, offset = self._psf_checked(position)
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
        region = self.regions[position]
        if region is not None:
            cut = _cut_region(region, image.shape, source)
            if isinstance(cut, str):
                gal.flags |= Flag.read_error
                gal.messages.append(cut)
                gal.image = None
                return gal
            image = gal.image = image[cut]
            sigma = None if sigma is None else sigma[cut]
            mask = None if mask is None else mask[cut]
        if psf is None and self.psf_fwhm[position] is not None:
            from ..auto.psf import psf_from_fwhm

            psf = psf_from_fwhm(self.psf_fwhm[position], kind=self.psf_kind, beta=self.psf_beta)[0]
            gal.messages.append(f"PSF: a {self.psf_kind} of FWHM {self.psf_fwhm[position]:g} px (psf_fwhm)")
            psf_ok, offset = _psf_checks(psf)
        if psf is not None:
            if not psf_ok:
                gal.flags |= Flag.bad_psf
                gal.messages.append(
                    f"{self._source('psf', position)}: the PSF has non-finite pixels or no positive flux; "
                    "give a star image"
                )
                return gal
            gal.psf = psf
            if offset > 0.5:
                gal.flags |= Flag.psf_off_centre
                gal.messages.append(
                    f"{self._source('psf', position)}: the PSF's centroid is {offset:.2f} px from its centre pixel "
                    f"(row {psf.shape[0] // 2 + 1}, column {psf.shape[1] // 2 + 1}, 1-based); fitted centres are "
                    "shifted by the same amount: re-centre the PSF stamp"
                )
            if psf_exceeds_cutout(psf.shape, image.shape):
                gal.flags |= Flag.psf_larger_than_cutout
                gal.messages.append(f"the PSF ({psf.shape[0]}x{psf.shape[1]}) {LARGER_THAN_CUTOUT} "
                                    f"({image.shape[0]}x{image.shape[1]})")
        weight = np.ones(image.shape)
        if mask is not None:
            target = self.mask_index[position]
            if target is not None and not np.any(mask == target):
                values = np.unique(mask[np.isfinite(mask)])
                shown = ", ".join(f"{v:g}" for v in values[:8]) + (", ..." if values.size > 8 else "")
                gal.flags |= Flag.bad_mask
                gal.messages.append(
                    f"{self._source('mask', position)}: mask_index {target:g} does not occur in the mask "
                    f"(its values are {shown}); without it the galaxy itself would be masked: give this "
                    "galaxy's value in its mask"
                )
                return gal
            masked, note = _mask_pixels(mask, target, self._start_xy(position))
            weight[masked] = 0.0
            if note:
                gal.messages.append(f"{self._source('mask', position)}: {note}")
            covered = _target_masked(image, masked, self._start_xy(position))
            if covered:
                gal.flags |= Flag.target_masked
                gal.messages.append(
                    f"{self._source('mask', position)}: the mask covers {covered}; the fit sees only what is left. "
                    "If the mask's non-zero pixels mark this galaxy (a segmentation map), give mask_index=<its label>"
                )
        if self.auto_mask:
            from ..auto.segment import auto_mask

            fit_them = self.neighbours == "fit"
            psf_r_half = None
            if fit_them and psf is not None:
                from ..auto.segment import psf_half_light_radius

                psf_r_half = psf_half_light_radius(psf)
            found = auto_mask(image, weight, sigma, start_xy=self._start_xy(position),
                              neighbours=self.neighbours, max_neighbours=self.max_neighbours, psf_r_half=psf_r_half)
            weight = found.weight.copy()
            gal.flags |= found.flags
            gal.messages.append(found.message)
            gal.n_masked, gal.segment = found.n_masked, found.target
            if fit_them:
                if psf is None:  # a point source is the PSF: without one every neighbour is a Sersic
                    for row in found.fitted:
                        row["kind"] = "sersic"
                gal.neighbours = found.fitted
                gal.neighbour_pixels = np.isin(found.segmentation, [row["label"] for row in found.fitted]) & (
                    found.segmentation > 0)
            if sigma is None and np.isfinite(found.sky_sigma) and found.sky_sigma > 0:
                # the sky pixels with every source left out: the sigma a clip over the
                # whole cutout overestimates (it sees the galaxies' wings)
                variance = np.full(image.shape, found.sky_sigma**2)
                gain = self._gain(header)
                if gain is not None and gain > 0:
                    variance = variance + np.clip(np.nan_to_num(image - found.sky), 0.0, None) / gain
                sigma = np.sqrt(variance)
                gal.flags |= Flag.sigma_estimated
                gal.messages.append(f"sigma {found.sky_sigma:.4g} from the sky pixels (auto mask; no sigma image given)")
        if sigma is None:
            sigma = estimate_sigma(image, weight, self._gain(header))
            gal.flags |= Flag.sigma_estimated
            gal.messages.append("sigma estimated from the image (no sigma image given)")
        bad = ~(np.isfinite(image) & (sigma > 0) & (sigma < np.inf))
        if bad.any():
            n_bad = int(np.count_nonzero(bad & (weight > 0)))
            if n_bad:
                gal.flags |= Flag.bad_pixels_masked
                gal.messages.append(f"{n_bad} pixels with non-finite data or sigma <= 0 were masked")
            weight[bad] = 0.0
            # masked pixels must not inject NaN into sums (0 * NaN is NaN)
            image, sigma = np.where(bad, 0.0, image), np.where(bad, 1.0, sigma)
        gal.image, gal.sigma = image, sigma
        gal.weight = weight
        used = weight > 0
        if not np.any(used):
            gal.flags |= Flag.fully_masked
            gal.messages.append(f"{source}: every pixel is masked or bad; nothing to fit")
        elif np.ptp(gal.image[used]) == 0:
            gal.flags |= Flag.no_source
            gal.messages.append(f"{source}: every usable pixel has the value {gal.image[used][0]:g}; "
                                "there is no source to fit")
        return gal

    # ------------------------------------------------------------- internals
    def _psf_checked(self, position: int) -> tuple[np.ndarray | None, bool, float]:
        """Galaxy ``position``'s PSF (None: none given), whether it has finite pixels and positive flux, and its
        centroid's offset from the centre pixel (:func:`_psf_checks`).

        A PSF that other galaxies share (the image set's one plane, the one array,
        the same file) is read and checked once, and handed out read-only.
        """
        key = self._shared_psf_key(position)
        cache = self.__dict__.setdefault("_psf_cache", {})
        lock = self.__dict__.setdefault("_psf_lock", threading.Lock())  # the reading threads share the cache
        if key is not None:
            with lock:
                found = cache.get(key)
            if found is not None:
                return found
        psf, _ = self._read("psf", position)
        found = (psf, False, 0.0) if psf is None else (psf, *_psf_checks(psf))
        if key is not None and psf is not None:
            psf = psf.view()  # read-only for every galaxy that shares it (a view: the caller's array keeps its flags)
            psf.flags.writeable = False
            found = (psf,) + found[1:]
            with lock:
                if len(cache) >= _PSF_CACHE_SIZE:
                    cache.pop(next(iter(cache)))
                cache[key] = found
        return found

    def _shared_psf_key(self, position: int):
        """What names the PSF galaxy ``position`` shares with others, or None where each has its own."""
        if self._image_set is not None:
            return ("image set",) if self._image_set.shared("PSF") else None
        if self._arrays is not None:
            return ("array",) if isinstance(self._arrays["psf"], _SharedPlane) else None
        path = self.psf_paths[position]
        return None if path is None else ("file", str(path), self.hdus.get("psf"))

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_psf_cache", None)  # PSFs read here; a worker reads its own
        state.pop("_psf_lock", None)
        return state

    def _start_xy(self, position: int) -> tuple[float, float] | None:
        """The first profile's start centre (1-based pixels) for galaxy ``position``, or None."""
        for profile in self.profiles.values():
            cx, cy = getattr(profile, "cen_x", None), getattr(profile, "cen_y", None)
            if cx is None or cy is None or not (getattr(cx, "has_start", False) and getattr(cy, "has_start", False)):
                continue
            try:
                xs, ys = np.ravel(cx.initial_values()), np.ravel(cy.initial_values())
                x = float(xs[position] if xs.size > 1 else xs[0])
                y = float(ys[position] if ys.size > 1 else ys[0])
            except (TypeError, ValueError, IndexError, AttributeError):
                return None
            return (x, y) if np.isfinite(x) and np.isfinite(y) else None
        return None

    def _source(self, what: str, position: int) -> str:
        paths = getattr(self, f"{what}_paths")
        if paths[position] is not None:
            return str(paths[position])
        if self._image_set is not None:
            return f"{self._image_set.path}[{what.upper()}][{position}] (galaxy {self.names[position]!r})"
        return f"{what} array of galaxy {self.names[position]!r} (index {position})"

    def _read(self, what: str, position: int):
        if self._image_set is not None:
            plane = what.upper()
            if not self._image_set.has(plane):
                return None, None
            return self._image_set.read(plane, position), None
        if self._arrays is not None:
            arrays = self._arrays[what]
            if arrays is None:
                return None, None
            arr = _to_numpy(arrays[position])
            if arr.ndim != 2:
                raise ValueError(f"{self._source(what, position)} must be 2-D, got shape {arr.shape}")
            return arr, None
        path = getattr(self, f"{what}_paths")[position]
        if path is None:
            return None, None
        from ..io.fits import read_image, read_image_with_header

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


def _neighbour_options(neighbours, max_neighbours, auto_mask: bool) -> tuple[str, int]:
    """Check ``neighbours`` and ``max_neighbours`` (Dataset arguments)."""
    if neighbours not in ("mask", "fit"):
        raise ValueError(f"Dataset: neighbours={neighbours!r}; choose 'mask' (mask every other source) or 'fit' "
                         "(fit the close and bright ones with their own component)")
    if neighbours == "fit" and not auto_mask:
        raise ValueError("Dataset: neighbours='fit' needs auto_mask=True (the neighbours are found by the automatic "
                         "mask's segmentation)")
    if isinstance(max_neighbours, bool) or not isinstance(max_neighbours, (int, np.integer)) or max_neighbours < 0:
        raise ValueError(f"Dataset: max_neighbours={max_neighbours!r}; give an integer >= 0")
    return neighbours, int(max_neighbours)


def _psf_fwhm(psf_fwhm, n: int) -> list:
    """One PSF FWHM (px) or None per galaxy, checked."""
    if psf_fwhm is None:
        return [None] * n
    values = [psf_fwhm] * n if np.isscalar(psf_fwhm) else list(np.ravel(psf_fwhm))
    if len(values) != n:
        raise ValueError(f"Dataset: psf_fwhm has {len(values)} entries for {n} galaxies; give one or one per galaxy")
    out = []
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            out.append(None)
            continue
        v = float(v)
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"Dataset: psf_fwhm of galaxy {i} is {v}; give a FWHM in pixels > 0 (or None)")
        out.append(v)
    return out


def _describe(exc: Exception) -> str:
    """The message of a reading error; the exception type too when it is not one of ours."""
    if isinstance(exc, (OSError, ValueError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


class _SharedPlane:
    """One (h, w) array standing for every galaxy (a PSF shared by all)."""

    def __init__(self, array, n: int) -> None:
        self.array = array
        self.n = n

    def __getitem__(self, index: int):
        return self.array

    def __len__(self) -> int:
        return self.n


def _array_list(value, name: str, n: int | None = None):
    """A per-galaxy sequence of 2-D arrays, without copying: a list, or the (N, H, W) array itself."""
    if isinstance(value, (list, tuple)):
        items = list(value)
        for i, item in enumerate(items):
            if np.ndim(item) != 2:
                raise ValueError(f"Dataset.from_arrays: {name}[{i}] has shape {np.shape(item)}; give 2-D arrays")
    else:
        if not hasattr(value, "shape") or not hasattr(value, "__getitem__"):
            value = np.asarray(value)
        if len(value.shape) == 2:
            value = value[None]
        if len(value.shape) != 3:
            raise ValueError(
                f"Dataset.from_arrays: {name} must be (N, H, W), (H, W) or a list of 2-D arrays; got {tuple(value.shape)}"
            )
        dtype = getattr(value, "dtype", None)
        if dtype is not None and hasattr(dtype, "kind") and dtype.kind not in "biuf":
            raise TypeError(f"Dataset.from_arrays: {name} has dtype {dtype}; give real-valued pixels")
        items = value
    if n is not None and len(items) != n:
        raise ValueError(f"Dataset.from_arrays: {name} holds {len(items)} galaxies but images hold {n}")
    return items


def _as_names(galaxy_index, n: int) -> list[str]:
    names = [str(x) for x in (galaxy_index if isinstance(galaxy_index, (list, tuple, np.ndarray)) else [galaxy_index])]
    if len(names) != n:
        raise ValueError(f"Dataset: galaxy_index has {len(names)} names for {n} images")
    return names


def _check_unique(names: list[str]) -> None:
    if len(set(names)) == len(names):
        return
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise ValueError(
                f"Dataset: galaxy_index {name!r} is given twice (positions {seen[name]} and {i}); every galaxy "
                "needs its own name (its results row and image block are named after it)"
            )
        seen[name] = i


def _check_gain(gain):
    if gain is None:
        return None
    try:
        value = float(gain)
    except (TypeError, ValueError):
        raise TypeError(f"Dataset: gain={gain!r} is not a number; give electrons per image unit, e.g. gain=4.5") from None
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"Dataset: gain={gain!r} must be a positive finite number (electrons per image unit)")
    return value


def _mask_value(value, index):
    """A mask_index entry as a number; numeric strings (from a CSV) are accepted."""
    where = "" if index is None else f" (galaxy {index})"
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"Dataset: mask_index{where} is {value!r}; give the galaxy's value in its mask, a number")
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise TypeError(
                f"Dataset: mask_index{where} is {value!r}, not a number; give the galaxy's value in its mask"
            ) from None
        return int(number) if number.is_integer() else number
    if isinstance(value, (int, float, np.integer, np.floating)):
        if not np.isfinite(value):
            raise ValueError(f"Dataset: mask_index{where} is {value!r}; give a finite number")
        return value.item() if hasattr(value, "item") else value
    raise TypeError(
        f"Dataset: mask_index{where} is {value!r} ({type(value).__name__}); give one number, or a list of one "
        "number per galaxy"
    )


def _centre_pixel(shape, start_xy) -> tuple[int, int]:
    """The (row, column) of the pixel under ``start_xy`` (1-based x, y), or of the cutout centre when None."""
    h, w = shape
    x, y = ((w + 1) / 2, (h + 1) / 2) if start_xy is None else start_xy
    # pixel i (0-based) spans 1-based coordinates [i + 0.5, i + 1.5)
    row, col = int(np.floor(y - 0.5)), int(np.floor(x - 0.5))
    if not (0 <= row < h and 0 <= col < w):  # a start off the cutout (full-frame coordinates?): its centre
        row, col = int(np.floor((h + 1) / 2 - 0.5)), int(np.floor((w + 1) / 2 - 0.5))
    return row, col


def _mask_pixels(mask: np.ndarray, target, start_xy) -> tuple[np.ndarray, str]:
    """The pixels a user's mask excludes (True = masked), and a note saying how the mask was read.

    With ``mask_index`` (``target``), pixels of any other non-zero value are masked. Without it, a mask
    of several integer labels is a segmentation map (SExtractor, photutils): the label under the start
    position (the cutout centre when none) is the galaxy and is kept, the other labels are masked. A mask
    with a single non-zero value (0/1, 0/255, boolean) marks bad pixels: every non-zero pixel is masked.
    """
    nonzero = mask != 0  # NaN != 0: a non-finite mask pixel is masked
    if target is not None:
        return nonzero & (mask != target), ""
    labels = np.unique(mask[nonzero & np.isfinite(mask)])
    if labels.size == 0 or not np.all(labels == np.round(labels)):
        return nonzero, ""
    row, col = _centre_pixel(mask.shape, start_xy)
    label = mask[row, col]
    where = f"({col + 1}, {row + 1})"
    if labels.size == 1:
        # one label: under the galaxy it is the galaxy's own segment (a segmentation map of one source, as
        # GalMOSS 2 read masks: the talk's own masks are so); elsewhere (or 255, an image's "on") bad pixels
        if label != labels[0] or label == 255:
            return nonzero, ""
        return np.zeros_like(nonzero), (f"mask read as a segmentation map: its one label {label:g} lies under the "
                                        f"galaxy's position {where} and was kept as the galaxy (as GalMOSS 2 read "
                                        "masks); if it marks bad pixels, give mask_index=0 to exclude every non-zero "
                                        "pixel")
    shown = ", ".join(f"{v:g}" for v in labels[:8]) + (", ..." if labels.size > 8 else "")
    if not np.isfinite(label) or label == 0:
        return nonzero, (f"segmentation map (labels {shown}) with sky under the galaxy's position {where}: "
                         "every label was masked; give mask_index=<the galaxy's label> to keep one")
    return nonzero & (mask != label), (f"segmentation map (labels {shown}): kept label {label:g} under the "
                                       f"galaxy's position {where} as the galaxy, masked the other labels "
                                       "(give mask_index to choose another)")


def _target_masked(image: np.ndarray, masked: np.ndarray, start_xy=None) -> str:
    """What of the galaxy a user's mask covers ('its centre pixel', 'most of its light'), or ''.

    The galaxy's light is the connected patch of pixels 3 sky-sigma above the sky that holds the
    centre pixel; covering most of its (sky-subtracted) flux hides the galaxy as surely as covering its centre.
    """
    if not masked.any():
        return ""
    row, col = _centre_pixel(image.shape, start_xy)
    if masked[row, col]:
        return "the galaxy's centre pixel"
    from astropy.stats import sigma_clipped_stats
    from scipy import ndimage

    finite = np.isfinite(image)
    if np.count_nonzero(finite) < 10 or not finite[row, col]:
        return ""
    sky, _, sky_sigma = sigma_clipped_stats(image[finite], sigma=3.0, maxiters=5)
    above = finite & (image > sky + 3.0 * max(float(sky_sigma), 0.0))
    if not above[row, col]:
        return ""
    patch, _ = ndimage.label(above)
    own = patch == patch[row, col]
    flux = np.where(own, image - sky, 0.0)
    total = flux.sum()
    if total > 0 and flux[masked].sum() > 0.5 * total:
        return "most of the galaxy's light"
    return ""


def _regions(region, n: int, names: list[str]) -> list:
    """Per-galaxy fitting sections (xmin, xmax, ymin, ymax), 1-based inclusive, or None."""
    if region is None:
        return [None] * n
    arr = region
    if len(arr) == 4 and all(np.isscalar(v) for v in arr):
        arr = [arr] * n
    if len(arr) != n:
        raise ValueError(f"Dataset: region has {len(arr)} entries for {n} galaxies; give one (xmin, xmax, ymin, ymax) "
                         "or one per galaxy")
    out = []
    for i, r in enumerate(arr):
        if r is None:
            out.append(None)
            continue
        try:
            xmin, xmax, ymin, ymax = (int(v) for v in r)
        except (TypeError, ValueError):
            raise TypeError(f"Dataset: region of galaxy {names[i]!r} is {r!r}; give (xmin, xmax, ymin, ymax) "
                            "as integers, 1-based and inclusive") from None
        if not (1 <= xmin <= xmax and 1 <= ymin <= ymax):
            raise ValueError(f"Dataset: region of galaxy {names[i]!r} is {r!r}; need 1 <= xmin <= xmax and "
                             "1 <= ymin <= ymax (1-based pixels, inclusive)")
        out.append((xmin, xmax, ymin, ymax))
    return out


def _cut_region(region, shape, source: str):
    """The slices of a 1-based inclusive region, or a message when it leaves the image."""
    xmin, xmax, ymin, ymax = region
    h, w = shape
    if xmax > w or ymax > h:
        return (f"{source}: the fitting region x {xmin}-{xmax}, y {ymin}-{ymax} leaves the image, which is "
                f"{w} x {h} pixels; give a region inside it")
    return (slice(ymin - 1, ymax), slice(xmin - 1, xmax))


#: shared PSFs (files, planes) a dataset keeps after their first read
_PSF_CACHE_SIZE = 16


def _psf_checks(psf: np.ndarray) -> tuple[bool, float]:
    """Whether a PSF has only finite pixels and positive flux, and its centroid's offset (:func:`_psf_centroid_offset`)."""
    ok = bool(np.all(np.isfinite(psf)) and np.any(psf > 0) and psf.sum() > 0)
    return ok, (_psf_centroid_offset(psf) if ok else 0.0)


def _psf_centroid_offset(psf: np.ndarray) -> float:
    """Distance (px) of the PSF's light centroid from its documented centre pixel (h // 2, w // 2)."""
    light = np.clip(psf, 0.0, None)
    total = light.sum()
    if total <= 0:
        return 0.0
    yy, xx = np.indices(psf.shape)
    cy = float((light * yy).sum() / total)
    cx = float((light * xx).sum() / total)
    return float(np.hypot(cy - psf.shape[0] // 2, cx - psf.shape[1] // 2))


__all__ = ["DataSet", "Dataset", "GalaxyData", "estimate_sigma"]
