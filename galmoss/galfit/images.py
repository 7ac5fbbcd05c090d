"""Reading the files a GALFIT or GalfitM input names: image sections, headers, masks, GALFIT's sigma.

Shared by GALFIT's feedmes (:func:`galmoss.galfit.run.load_galaxy`) and GalfitM's
files (:func:`galmoss.galfit.galfitm.load_galfitm`); problems are exceptions here
and become flags where a galaxy is loaded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: GALFIT's GAIN when the image header has neither GAIN nor ATODGAIN (electrons per ADU).
GALFIT_DEFAULT_GAIN = 7.0


def _header_number(header, names: Sequence[str], default: float) -> float:
    """The first of ``names`` the header holds as a positive finite number, else ``default``."""
    for name in names:
        if header is None or name not in header:
            continue
        try:
            value = float(header[name])
        except (TypeError, ValueError):
            continue
        if math.isfinite(value) and value > 0:
            return value
    return default


def exposure_time(header) -> float:
    """GALFIT's EXPTIME: the data are divided by it before the zero point (1 when missing)."""
    return _header_number(header, ("EXPTIME",), 1.0)


def galfit_sigma(image: np.ndarray, header, weight: np.ndarray | None = None) -> np.ndarray:
    """GALFIT's sigma image when C) is ``none``, from the data and its header.

    ``sigma^2 = max(data - sky, 0) / (GAIN * NCOMBINE) + sigma_sky^2``: the
    source's Poisson noise in electrons turned back into image units (the data
    must be in counts, ADU), plus the sky's noise. ``sky`` and ``sigma_sky`` are
    the 3-sigma-clipped mean and RMS of the (unmasked) image, so they hold the
    sky's Poisson and the read noise, as GALFIT 3 estimates them together.
    Header keys as GALFIT reads them: ``GAIN`` (or ``ATODGAIN`` when GAIN is
    missing; 7 when both are), ``NCOMBINE`` (1). ``RDNOISE`` is not used (GALFIT 3
    uses it only with a sky value given by hand).

    Parameters
    ----------
    image
        The data (image units, ADU), 2-D.
    header
        Its FITS header (or any mapping).
    weight
        Pixels to measure the sky on (non-zero = used); None: all finite pixels.
    """
    from astropy.stats import sigma_clipped_stats

    gain = _header_number(header, ("GAIN", "ATODGAIN"), GALFIT_DEFAULT_GAIN)
    ncombine = _header_number(header, ("NCOMBINE",), 1.0)
    good = np.isfinite(image) if weight is None else np.isfinite(image) & (weight > 0)
    if np.count_nonzero(good) < 10:
        return np.full(image.shape, np.nan)
    sky, _, sky_rms = sigma_clipped_stats(image[good], sigma=3.0, maxiters=10)
    return np.sqrt(np.clip(np.nan_to_num(image - sky), 0.0, None) / (gain * ncombine) + float(sky_rms) ** 2)


def read_section(path: Path, region, what: str):
    """(array, header, full shape) of the first image HDU, only the region read (memory-mapped)."""
    from astropy.io import fits

    if not path.is_file():
        raise FileNotFoundError(f"{what} '{path}' does not exist")
    with fits.open(path, memmap=True) as hdul:
        hdu = next((h for h in hdul if h.is_image and h.data is not None and h.data.ndim >= 2), None)
        if hdu is None:
            raise ValueError(f"{what} '{path}' holds no image")
        shape = hdu.data.shape[-2:]
        if region is None:
            data = np.array(hdu.data, dtype=np.float64)
        else:
            x0, x1, y0, y1 = region
            if x0 < 1 or y0 < 1 or x1 > shape[1] or y1 > shape[0]:
                raise ValueError(
                    f"H) region x {x0}-{x1}, y {y0}-{y1} lies outside the {what} '{path}', which is "
                    f"{shape[1]} x {shape[0]} pixels; give a region inside the image"
                )
            data = np.array(hdu.section[y0 - 1 : y1, x0 - 1 : x1], dtype=np.float64)
        return data, hdu.header.copy(), shape


def is_fits(path: Path) -> bool:
    """Whether ``path`` holds FITS (by content, as GALFIT reads a mask named without ``.fits``): a
    primary header starts with ``SIMPLE  =``; a gzip stream (``.fits.gz``) is taken for compressed FITS."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    return head == b"SIMPLE  =" or head[:2] == b"\x1f\x8b"


def ascii_mask(path: Path, shape, origin) -> np.ndarray:
    """GALFIT's ASCII bad-pixel list: one ``x y`` (1-based, full frame) a line."""
    bad = np.zeros(shape, dtype=bool)
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        body = line.split("#", 1)[0].split()
        if not body:
            continue
        try:
            x, y = int(float(body[0])), int(float(body[1]))
        except (ValueError, IndexError):
            raise ValueError(f"bad-pixel list '{path}', line {number}: expected 'x y', got {line.strip()!r}") from None
        col, row = x - origin[0], y - origin[1]
        if 0 <= row < shape[0] and 0 <= col < shape[1]:
            bad[row, col] = True
    return bad
