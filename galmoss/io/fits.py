"""Reading cutouts (image, sigma, PSF, mask) from FITS or ``.npy`` files.

:func:`read_image` returns a 2-D, C-contiguous, native-byte-order float64 array
whatever the file holds: any BITPIX, either byte order, BSCALE/BZERO scaling
(applied in float64, so int16 data with a fractional BSCALE keeps every digit),
BLANK pixels (returned as NaN), tile-compressed extensions, gzip-compressed
files, and cubes whose leading axes all have length 1.

Which HDU is read
-----------------
``hdu=None``
    the primary HDU if it holds a 2-D image, else the first image extension
    (``ImageHDU`` or ``CompImageHDU``) that does;
``hdu=3`` / ``hdu="SCI"`` / ``hdu=("SCI", 2)``
    that HDU, by index, EXTNAME (case-insensitive) or (EXTNAME, EXTVER).

Files are opened with ``memmap=False`` and closed before returning, so no file
handle outlives the call.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Union

import numpy as np
from astropy.io import fits

from ..errors import ConfigTypeError, DataError, DataFileNotFoundError

__all__ = ["read_header", "read_image", "read_image_with_header"]

PathLike = Union[str, os.PathLike]
HDUSpec = Union[int, str, tuple[str, int], None]

_NPY_MAGIC = b"\x93NUMPY"


# --------------------------------------------------------------------- paths
def _check_path(path: PathLike, what: str, argument: str | None) -> Path:
    """The path as a Path, or an error naming the argument it came from."""
    arg = argument or f"{what}_path"
    try:
        p = Path(os.fspath(path))
    except TypeError:
        raise TypeError(
            f"{arg} must be a file path (str or os.PathLike), got {type(path).__name__}: {path!r}"
        ) from None
    if not p.exists():
        raise DataFileNotFoundError(
            f"{what} file not found: '{p}' (given as {arg}); check the path, or that it is relative to "
            f"the current folder '{Path.cwd()}'"
        )
    if p.is_dir():
        raise DataError(f"{arg} '{p}' is a folder, not a {what} file; give the path of a FITS or .npy file")
    return p


def _is_npy(p: Path, what: str) -> bool:
    # Sniff the magic bytes rather than trust the suffix: a misnamed file
    # would otherwise fail with a confusing "not a FITS file" message.
    try:
        with open(p, "rb") as fh:
            return fh.read(len(_NPY_MAGIC)) == _NPY_MAGIC
    except OSError as exc:
        raise DataError(f"{what} file '{p}' cannot be opened ({exc.strerror or exc}); check its permissions") from exc


# ---------------------------------------------------------------------- FITS
@contextmanager
def _open_fits(p: Path, what: str) -> Iterator[fits.HDUList]:
    """Open a FITS file unscaled; the file is closed however the block ends."""
    # Opening the handle ourselves guarantees it is closed even when astropy
    # fails half way (a truncated file, or a warning escalated to an error),
    # which otherwise leaks the handle and trips ResourceWarning.
    with open(p, "rb") as fh:
        try:
            hdul = fits.open(fh, memmap=False, do_not_scale_image_data=True)
            len(hdul)  # parses every header now, so a damaged one is reported here
        except Exception as exc:  # astropy raises OSError, ValueError, TypeError or escalated warnings
            raise DataError(
                f"{what} file '{p}' is not a readable FITS file ({type(exc).__name__}: {exc}); "
                "give a FITS file (.fits, .fits.gz, .fz) or a numpy .npy file"
            ) from exc
        try:
            yield hdul
        finally:
            hdul.close()


def _label(hdul: fits.HDUList, index: int) -> str:
    name = hdul[index].name
    return f"{index} ({name})" if name else str(index)


def _holds_image(hdu: fits.hdu.base._BaseHDU) -> bool:
    # GroupsHDU subclasses PrimaryHDU but holds random groups, not an image.
    if isinstance(hdu, fits.GroupsHDU) or not getattr(hdu, "is_image", False):
        return False
    shape = hdu.shape
    return len(shape) > 0 and all(n > 0 for n in shape)


def _plane_shape(shape: tuple[int, ...]) -> tuple[int, int] | None:
    """The 2-D shape an image of ``shape`` squeezes to, or None if it does not."""
    if len(shape) < 2 or any(n != 1 for n in shape[:-2]):
        return None
    return (int(shape[-2]), int(shape[-1]))


def _describe(hdu: fits.hdu.base._BaseHDU) -> str:
    if _holds_image(hdu):
        return f"image, shape {tuple(hdu.shape)}"
    if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)):
        return "table"
    return "no data"


def _summary(hdul: fits.HDUList) -> str:
    return "; ".join(f"HDU {_label(hdul, i)}: {_describe(h)}" for i, h in enumerate(hdul))


def _image_hdus(hdul: fits.HDUList) -> str:
    labels = [_label(hdul, i) for i, h in enumerate(hdul) if _holds_image(h)]
    return ", ".join(labels) if labels else "none"


def check_hdu(hdu: HDUSpec, what: str = "hdu") -> None:
    """Refuse an HDU selector of the wrong type: a configuration error, found before any file is read.

    Raises
    ------
    ConfigTypeError
        (a TypeError) naming ``what`` and the forms it may take.
    """
    if hdu is None:
        return
    if isinstance(hdu, bool) or not isinstance(hdu, (int, str, tuple)):
        raise ConfigTypeError(f"{what} must be None (the first 2-D image), an int index, an EXTNAME string or "
                              f"(EXTNAME, EXTVER), got {hdu!r}")


def _select(hdul: fits.HDUList, hdu: HDUSpec, p: Path, what: str, *, need_image: bool = True) -> int:
    """Index of the HDU to read, following the module's selection rule."""
    if hdu is None:
        for i, h in enumerate(hdul):
            if _holds_image(h) and _plane_shape(h.shape) is not None:
                return i
        if any(_holds_image(h) for h in hdul):
            raise DataError(
                f"{what} file '{p}' holds no 2-D image ({_summary(hdul)}); give a file with a 2-D image, "
                "or cut the plane you need out of the cube"
            )
        raise DataError(
            f"{what} file '{p}' holds no image at all ({_summary(hdul)}); give the FITS file of the {what} itself"
        )
    check_hdu(hdu)
    n = len(hdul)
    index: int | None = None
    if isinstance(hdu, int):
        if -n <= hdu < n:
            index = hdu % n
    else:
        try:
            index = hdul.index_of(hdu)
        except (KeyError, IndexError, ValueError, TypeError):
            index = None
    if index is None:
        raise DataError(
            f"{what} file '{p}' has no HDU {hdu!r}; it has {_summary(hdul)}. "
            "Pass one of these as hdu (index or EXTNAME), or hdu=None for the first 2-D image"
        )
    if need_image and not _holds_image(hdul[index]):
        raise DataError(
            f"HDU {_label(hdul, index)} of {what} file '{p}' holds no image data ({_describe(hdul[index])}); "
            f"HDUs with images: {_image_hdus(hdul)}. Pass one of those as hdu, or hdu=None"
        )
    return index


def _physical(hdu: fits.hdu.base._BaseHDU, p: Path, what: str, label: str) -> np.ndarray:
    """The HDU's pixels in physical units, float64."""
    try:
        raw = np.asarray(hdu.data)
    except Exception as exc:  # truncated or corrupt data section
        raise DataError(
            f"the data of HDU {label} in {what} file '{p}' cannot be read ({type(exc).__name__}: {exc}); "
            "the file is probably truncated or corrupt: write it again"
        ) from exc
    header = hdu.header
    try:
        blank = header.get("BLANK") if raw.dtype.kind in "iu" else None
        bscale = float(header.get("BSCALE", 1.0))
        bzero = float(header.get("BZERO", 0.0))
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"HDU {label} of {what} file '{p}' has a malformed BSCALE, BZERO or BLANK card ({exc}); "
            "fix the header (they must be numbers)"
        ) from exc
    # astropy would scale 8- and 16-bit integers into float32, losing digits;
    # the file was opened unscaled so the scaling happens here in float64.
    out = raw.astype(np.float64)
    if blank is not None:
        out[raw == blank] = np.nan
    if bscale != 1.0:
        out *= bscale
    if bzero != 0.0:
        out += bzero
    return out


# ----------------------------------------------------------------------- npy
def _load_npy(p: Path, hdu: HDUSpec, what: str) -> np.ndarray:
    if hdu not in (None, 0):
        raise DataError(f"{what} file '{p}' is a numpy .npy file, which has no HDUs; leave hdu unset (got {hdu!r})")
    try:
        arr = np.load(p, allow_pickle=False)
    except Exception as exc:  # ValueError for pickled objects, OSError/EOFError for damaged files
        raise DataError(
            f"{what} file '{p}' is not a readable .npy array ({type(exc).__name__}: {exc}); "
            "save it with numpy.save(path, array) from a numeric array"
        ) from exc
    if arr.dtype.kind not in "biuf":
        raise DataError(
            f"{what} file '{p}' holds a {arr.dtype} array; a real-valued numeric array is needed "
            "(convert it with array.astype(float) before numpy.save)"
        )
    return arr.astype(np.float64)


# -------------------------------------------------------------------- common
def _as_plane(arr: np.ndarray, p: Path, what: str, where: str) -> np.ndarray:
    plane = _plane_shape(arr.shape)
    if plane is None:
        raise DataError(
            f"{what} in '{p}'{where} has shape {arr.shape}; a 2-D image is needed (a cube is accepted only "
            "when all its leading axes have length 1). Cut the plane you need out of it, or pass hdu= for a "
            "2-D extension"
        )
    if 0 in plane:
        raise DataError(f"{what} in '{p}'{where} is empty (shape {arr.shape}); give a non-empty image")
    # reshape, astype and ascontiguousarray together guarantee a fresh,
    # native-order, C-contiguous array whatever the file's layout was.
    return np.ascontiguousarray(arr.reshape(plane), dtype=np.float64)


def read_image(
    path: PathLike,
    hdu: HDUSpec = None,
    *,
    what: str = "image",
    argument: str | None = None,
) -> np.ndarray:
    """Read one 2-D cutout as float64.

    Parameters
    ----------
    path
        A FITS file (optionally gzip- or tile-compressed) or a numpy ``.npy``
        file (recognised by its content, whatever its suffix).
    hdu
        Which HDU of a FITS file: None (the first HDU holding a 2-D image,
        primary first), an index, an EXTNAME, or (EXTNAME, EXTVER). Must be
        None or 0 for a ``.npy`` file.
    what
        What the file is ("image", "sigma", "psf", "mask"); used in messages.
    argument
        Name of the argument the path came from, for messages; defaults to
        ``f"{what}_path"``.

    Returns
    -------
    numpy.ndarray
        Shape (NAXIS2, NAXIS1), float64, C-contiguous, native byte order, in
        physical units (BSCALE/BZERO applied, BLANK pixels NaN). Non-finite
        pixels are returned as they are; deciding what to do with them is the
        caller's job.

    Raises
    ------
    DataFileNotFoundError
        If the file does not exist (a :class:`FileNotFoundError`).
    DataError
        If the file cannot be read, the HDU does not exist or holds no image,
        or the image is not 2-D (a :class:`ValueError`).
    """
    return read_image_with_header(path, hdu, what=what, argument=argument)[0]


def read_image_with_header(
    path: PathLike,
    hdu: HDUSpec = None,
    *,
    what: str = "image",
    argument: str | None = None,
) -> tuple[np.ndarray, fits.Header]:
    """Read one 2-D cutout and its header, opening the file once.

    Parameters
    ----------
    path, hdu, what, argument
        As for :func:`read_image`.

    Returns
    -------
    (numpy.ndarray, astropy.io.fits.Header)
        The pixels exactly as :func:`read_image` returns them, and a copy of
        the header of the HDU they came from (empty for a ``.npy`` file).

    Raises
    ------
    DataFileNotFoundError, DataError
        As for :func:`read_image`.
    """
    p = _check_path(path, what, argument)
    if _is_npy(p, what):
        return _as_plane(_load_npy(p, hdu, what), p, what, ""), fits.Header()
    with _open_fits(p, what) as hdul:
        index = _select(hdul, hdu, p, what)
        label = _label(hdul, index)
        pixels = _physical(hdul[index], p, what, label)
        header = hdul[index].header.copy()
    return _as_plane(pixels, p, what, f" (HDU {label})"), header


def read_header(
    path: PathLike,
    hdu: HDUSpec = None,
    *,
    what: str = "image",
    argument: str | None = None,
) -> fits.Header:
    """Read the header of the HDU that :func:`read_image` would read.

    Parameters
    ----------
    path, hdu, what, argument
        As for :func:`read_image`. With ``hdu=None`` the HDU is chosen by the
        same rule, so the header belongs to the returned pixels; an explicit
        ``hdu`` may also name an HDU without data (an empty primary, a table).

    Returns
    -------
    astropy.io.fits.Header
        A copy of the header, independent of the (closed) file; an empty
        header for a ``.npy`` file.

    Raises
    ------
    DataFileNotFoundError, DataError
        As for :func:`read_image`.
    """
    p = _check_path(path, what, argument)
    if _is_npy(p, what):
        if hdu not in (None, 0):
            raise DataError(f"{what} file '{p}' is a numpy .npy file, which has no HDUs; leave hdu unset")
        return fits.Header()
    with _open_fits(p, what) as hdul:
        index = _select(hdul, hdu, p, what, need_image=False)
        return hdul[index].header.copy()
