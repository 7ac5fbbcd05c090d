"""Image sets: every galaxy of a catalogue in one file, read one plane at a time.

The layout (the same in FITS and HDF5)::

    IMAGE    (N, H, W)            required
    SIGMA    (N, H, W)            optional
    PSF      (N, h, w) or (h, w)  optional (one PSF for all galaxies, or one each)
    MASK     (N, H, W)            optional
    CATALOG  table of N rows      optional: a ``galaxy_index`` column and start values

In FITS these are extensions named by EXTNAME (CATALOG a binary table); in HDF5,
datasets at the file's root (CATALOG a compound dataset, or a group of
one-dimensional datasets, one per column).

Several bands of one shape may share a file, with a band axis after the galaxy
axis (docs/multiband.md)::

    IMAGE    (N, n_bands, H, W)                          required
    SIGMA    (N, n_bands, H, W)                          optional
    PSF      (N, n_bands, h, w) or (n_bands, h, w)       optional
    MASK     (N, n_bands, H, W) or (N, H, W)             optional (one mask for every band)

The IMAGE extension's header (an HDF5 file: IMAGE's attributes) names the bands
in the order of that axis, ``BANDS = 'g,r,i'``, and may give their
``WAVELEN`` and ``PIXSCALE`` the same way. :class:`ImageSet` with ``band=k``
reads band k of such a file as if it were a file of that band alone.

Planes are read one at a time (astropy's ``section``, a seek and a read, for FITS;
an h5py dataset slice for HDF5), so
a dataset of 10^6 cutouts costs memory only for the galaxies being read. The
file is opened lazily in each process, which keeps an :class:`ImageSet`
picklable (dask workers reopen it).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
from astropy.table import Table

from ..errors import DataError, DataFileNotFoundError

__all__ = ["ImageSet", "PLANES", "has_band_axis"]

PLANES = ("IMAGE", "SIGMA", "PSF", "MASK")


def _h5py():
    try:
        import h5py
    except ImportError as exc:
        raise ImportError("reading an HDF5 image set needs h5py: pip install 'galmoss[hdf5]' (or pip install h5py)") from exc
    return h5py


def _is_hdf5(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(8) == b"\x89HDF\r\n\x1a\n"


class ImageSet:
    """A lazily opened image-set file (FITS or HDF5).

    Parameters
    ----------
    path
        The file.

    Raises
    ------
    DataFileNotFoundError
        If the file does not exist.
    DataError
        If it has no ``IMAGE`` plane, a plane is not 3-D (2-D for ``PSF``), or
        planes disagree on N or on the cutout shape.
    """

    def __init__(self, path, band: int | None = None) -> None:
        self.path = Path(os.fspath(path))
        #: the index on the band axis this view reads (None: a file without a band axis)
        self.band = band
        if not self.path.is_file():
            raise DataFileNotFoundError(f"image set '{self.path}' does not exist; give the path of a FITS or HDF5 file")
        self.kind = "hdf5" if _is_hdf5(self.path) else "fits"
        self._lock = threading.Lock()
        self._open = None
        #: plain FITS planes read directly (:meth:`_raw_read`): their layout and the file descriptor, made on first use
        self._layout = None
        self._fd = None
        shapes = self._shapes()
        #: each plane's number of axes in the file
        self._shapes_cache = {name: len(shape) for name, shape in shapes.items()}
        if "IMAGE" not in shapes:
            raise DataError(
                f"image set '{self.path}' has no IMAGE {'extension' if self.kind == 'fits' else 'dataset'} "
                f"(it has {', '.join(shapes) or 'none'}); name the (N, H, W) cube of cutouts IMAGE"
            )
        image = shapes["IMAGE"]
        #: the planes that carry the band axis (a band view reads one index of it)
        self._banded: dict[str, bool] = {}
        if band is None and len(image) == 4:
            raise DataError(f"image set '{self.path}': IMAGE has shape {image}, a band axis (N, n_bands, H, W); give "
                            "the bands' wavelength= and pix_scale= to fit them jointly (docs/multiband.md)")
        if band is not None:
            if len(image) != 4:
                raise DataError(f"image set '{self.path}': IMAGE has shape {image}, no band axis; give an "
                                "(N, n_bands, H, W) cube, or one file per band as a dict {band: file}")
            if not 0 <= band < image[1]:
                raise DataError(f"image set '{self.path}': band {band} asked of a band axis of {image[1]}")
            shapes = {name: self._band_shape(name, shape, image) for name, shape in shapes.items()}
            image = shapes["IMAGE"]
        if len(image) != 3:
            raise DataError(f"image set '{self.path}': IMAGE has shape {image}; it must be (N, H, W)")
        self.n = int(image[0])
        self.shape = tuple(int(x) for x in image[1:])
        for name, shape in shapes.items():
            if name == "PSF" and len(shape) == 2:
                continue
            if len(shape) != 3 or shape[0] != self.n:
                raise DataError(
                    f"image set '{self.path}': {name} has shape {shape} but IMAGE has {image}; "
                    f"give {name} as (N, H, W){' or one (h, w) PSF' if name == 'PSF' else ''} with N = {self.n}"
                )
            if name in ("SIGMA", "MASK") and tuple(shape[1:]) != self.shape:
                raise DataError(
                    f"image set '{self.path}': {name} cutouts are {tuple(shape[1:])} but IMAGE cutouts are "
                    f"{self.shape}; every plane must have the image's shape"
                )
        self.planes = tuple(shapes)

    def _band_shape(self, name: str, shape: tuple, image: tuple) -> tuple:
        """A plane's shape in one band's view; which planes carry the band axis is noted in ``_banded``."""
        n_bands = image[1]
        banded = (len(shape) == 4 if name != "PSF" else
                  len(shape) == 4 or (len(shape) == 3 and shape[0] == n_bands and shape[0] != image[0]))
        if name == "PSF" and len(shape) == 3 and shape[0] == n_bands == image[0]:
            raise DataError(f"image set '{self.path}': PSF has shape {shape} with as many galaxies as bands; give "
                            "it as (N, n_bands, h, w) so the band axis is unambiguous")
        if banded and (shape[1 if len(shape) == 4 else 0] != n_bands):
            raise DataError(f"image set '{self.path}': {name} has shape {shape} but IMAGE has {n_bands} bands "
                            f"{image}; give {name} the same band axis")
        if len(shape) == 4 and shape[0] != image[0]:
            raise DataError(f"image set '{self.path}': {name} has shape {shape} but IMAGE has {image}; give one "
                            f"{name} per galaxy")
        self._banded[name] = banded
        if not banded:
            return shape
        return (shape[0],) + tuple(shape[2:]) if len(shape) == 4 else tuple(shape[1:])

    def band_keywords(self) -> dict[str, str]:
        """``BANDS``, ``WAVELEN`` and ``PIXSCALE`` of the IMAGE plane (comma-separated text), where present."""
        keys = ("BANDS", "WAVELEN", "PIXSCALE")
        if self.kind == "hdf5":
            with _h5py().File(self.path, "r") as fh:
                attrs = fh["IMAGE"].attrs
                return {k: _text(attrs[k]) for k in keys if k in attrs}
        from astropy.io import fits

        with fits.open(self.path, memmap=True) as hdul:
            header = hdul["IMAGE"].header
            return {k: str(header[k]) for k in keys if k in header}

    # pickling: the open file handle stays behind; each process opens its own
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_lock", None)
        state["_open"] = None
        state["_fd"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({"_layout": None, "_fd": None, **state})
        self._lock = threading.Lock()

    def _handle(self):
        # one handle, used under the lock: neither astropy's HDUList nor h5py is
        # safe for concurrent use, and a plane copy out of a memory map is fast
        if self._open is None:
            if self.kind == "hdf5":
                self._open = _h5py().File(self.path, "r")
            else:
                from astropy.io import fits

                # no memory map: .section reads one plane with a seek, so pages of
                # planes already fitted never stay resident (a memory map would keep
                # them in the process's RSS until the file is closed)
                self._open = fits.open(self.path, memmap=False, lazy_load_hdus=True)
        return self._open

    def close(self) -> None:
        """Close the file (it is opened again by the next read)."""
        with self._lock:
            if self._open is not None:
                self._open.close()
                self._open = None
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _shapes(self) -> dict[str, tuple[int, ...]]:
        return _plane_shapes(self.path, self.kind)

    def has(self, plane: str) -> bool:
        """Whether the file holds ``plane`` (IMAGE, SIGMA, PSF or MASK)."""
        return plane in self.planes

    def read(self, plane: str, index: int) -> np.ndarray:
        """Galaxy ``index``'s (H, W) plane as float64 (a shared PSF for any index)."""
        raw = self._raw_read(plane, index)
        if raw is not None:
            return raw
        with self._lock:
            handle = self._handle()
            where = self._where(plane, index)
            if self.kind == "hdf5":
                data = handle[plane]
                arr = data[()] if where is None else data[where]
            else:
                hdu = handle[plane]
                arr = hdu.data if where is None else hdu.section[where]  # BSCALE/BZERO applied by astropy
            return np.array(arr, dtype=np.float64)  # native byte order, a private copy of one plane

    def shared(self, plane: str) -> bool:
        """Whether one ``plane`` stands for every galaxy (a PSF without a galaxy axis)."""
        if not self.has(plane) or plane != "PSF":
            return False
        banded = self.band is not None and self._banded.get(plane)
        return self._shapes_cache[plane] == (3 if banded else 2)

    def _where(self, plane: str, index: int):
        """The index of galaxy ``index``'s plane in the file (None: the whole of a shared 2-D PSF)."""
        if self.band is not None and self._banded.get(plane):
            shared_psf = plane == "PSF" and self._shapes_cache[plane] == 3
            return self.band if shared_psf else (index, self.band)
        if plane == "PSF" and self._shapes_cache[plane] == 2:
            return None
        return index

    def _raw_read(self, plane: str, index: int) -> np.ndarray | None:
        """One plane of a plain FITS image read with one ``pread`` at its offset, or None where that cannot be.

        A FITS image plane is H x W values at a known place in the file: reading
        it directly costs a few microseconds, against a tenth of a millisecond
        through astropy's ``section``, and needs no lock (``pread`` keeps no
        file position). Only planes without scaling or blank keywords (BSCALE,
        BZERO, BLANK), not compressed, on a system with ``os.pread``; the
        others are read through astropy.
        """
        if self.kind != "fits" or not hasattr(os, "pread"):
            return None
        if self.band is not None and self._banded.get(plane):
            return None  # a plane with a band axis is read through astropy (see _where)
        layout = self._layout
        if layout is None:
            with self._lock:
                if self._layout is None:
                    self._layout = self._plane_layout()
                layout = self._layout
        where = layout.get(plane)
        if where is None:
            return None
        offset, dtype, shape, size, shared = where
        if not shared:
            offset += int(index) * size
        fd = self._fd
        if fd is None:
            with self._lock:
                if self._fd is None:
                    self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
                fd = self._fd
        data = os.pread(fd, size, offset)
        if len(data) != size:
            raise DataError(f"image set '{self.path}': {plane} plane {index} is cut short (the file ends early)")
        return np.frombuffer(data, dtype=dtype).reshape(shape).astype(np.float64)

    def _plane_layout(self) -> dict:
        """Where each plain image plane lies: (data offset, big-endian dtype, (H, W), bytes, shared 2-D PSF)."""
        from astropy.io import fits

        kinds = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
        out: dict = {}
        with fits.open(self.path, memmap=False, lazy_load_hdus=True) as hdul:
            for i, hdu in enumerate(hdul):
                name = (hdu.name or "").upper()
                if name not in PLANES or name in out or not hdu.is_image or isinstance(hdu, fits.CompImageHDU):
                    continue
                head = hdu.header
                if any(k in head for k in ("BSCALE", "BZERO", "BLANK")) or head.get("BITPIX") not in kinds:
                    continue
                naxis = int(head.get("NAXIS", 0))
                if naxis not in (2, 3) or (naxis == 2 and name != "PSF"):
                    continue
                shape, dtype = (int(head["NAXIS2"]), int(head["NAXIS1"])), np.dtype(kinds[head["BITPIX"]])
                out[name] = (int(hdul.fileinfo(i)["datLoc"]), dtype, shape, shape[0] * shape[1] * dtype.itemsize,
                             naxis == 2)
        return out

    def catalog(self) -> Table | None:
        """The CATALOG table, or None when the file has none."""
        if self.kind == "hdf5":
            h5py = _h5py()
            with h5py.File(self.path, "r") as fh:
                if "CATALOG" not in fh:
                    return None
                node = fh["CATALOG"]
                if isinstance(node, h5py.Group):
                    return Table({k: _decode(np.asarray(node[k])) for k in node})
                arr = np.asarray(node)
                return Table({k: _decode(arr[k]) for k in arr.dtype.names})
        from astropy.io import fits

        with fits.open(self.path, memmap=True) as hdul:
            if "CATALOG" not in hdul:
                return None
        table = Table.read(self.path, hdu="CATALOG")
        table.convert_bytestring_to_unicode()  # FITS strings arrive as bytes
        return table


def _plane_shapes(path: Path, kind: str) -> dict[str, tuple[int, ...]]:
    """The shape of every plane of the file, by name."""
    out: dict[str, tuple[int, ...]] = {}
    if kind == "hdf5":
        h5py = _h5py()
        with h5py.File(path, "r") as fh:
            for name in PLANES:
                if name in fh and isinstance(fh[name], h5py.Dataset):
                    out[name] = tuple(fh[name].shape)
        return out
    from astropy.io import fits

    try:
        with fits.open(path, memmap=True) as hdul:
            for hdu in hdul:
                name = (hdu.name or "").upper()
                if name in PLANES and hdu.is_image and hdu.header.get("NAXIS", 0) > 0:
                    out[name] = tuple(hdu.shape)
    except OSError as exc:
        raise DataError(f"image set '{path}' is not a readable FITS or HDF5 file ({exc})") from exc
    return out


def has_band_axis(path) -> bool:
    """Whether the image set at ``path`` has a band axis (an IMAGE of shape (N, n_bands, H, W))."""
    path = Path(os.fspath(path))
    if not path.is_file():
        return False
    return len(_plane_shapes(path, "hdf5" if _is_hdf5(path) else "fits").get("IMAGE", ())) == 4


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "SO":
        return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values])
    return values
