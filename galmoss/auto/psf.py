"""A PSF image from a FWHM, for surveys that give no PSF image (issue 8, item 5).

Legacy Surveys cutout sets carry a PSF FWHM per image, not a star. A Moffat
(``beta`` 3.5 by default: the wings of ground-based seeing) or a Gaussian of that
FWHM is integrated over each pixel (a PSF image measured from stars holds the
pixel response, design.md), centred on pixel index ``size // 2`` (the renderer's
PSF centre for odd and even sizes alike) and normalised to unit sum.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["measure_fwhm", "psf_from_fwhm"]

_SUB = 8  # sub-pixels per pixel side for the pixel integral


def psf_from_fwhm(fwhm, size: int | None = None, kind: str = "moffat", beta: float = 3.5) -> np.ndarray:
    """Pixel-integrated Moffat or Gaussian PSF images of the given FWHM, one per galaxy.

    Parameters
    ----------
    fwhm
        FWHM in pixels of the continuous profile: a float or an array (B,).
    size
        Side of the (square) stamp in pixels; None: the odd size nearest to 8
        times the largest FWHM, at least 15 (holds > 99 % of a beta = 3.5 Moffat).
    kind
        ``"moffat"`` (I ~ (1 + (r / alpha)^2)^-beta, FWHM = 2 alpha sqrt(2^(1/beta) - 1))
        or ``"gaussian"``.
    beta
        Moffat index (> 1); ignored for a Gaussian.

    Returns
    -------
    numpy.ndarray
        (B, size, size) float64, each of unit sum, centred on index ``size // 2``
        (B = 1 for a scalar FWHM).

    Raises
    ------
    ValueError
        A FWHM is not finite and positive, ``kind`` is unknown, ``beta <= 1`` or
        ``size < 3``.
    """
    fwhm = np.atleast_1d(np.asarray(fwhm, dtype=float)).ravel()
    if fwhm.size == 0 or not np.all(np.isfinite(fwhm) & (fwhm > 0)):
        raise ValueError(f"psf_from_fwhm: psf_fwhm must be finite and > 0 pixels, got {fwhm}")
    kind = str(kind).lower()
    if kind not in ("moffat", "gaussian"):
        raise ValueError(f"psf_from_fwhm: kind must be 'moffat' or 'gaussian', got {kind!r}")
    if kind == "moffat" and not beta > 1:
        raise ValueError(f"psf_from_fwhm: a Moffat needs beta > 1 (finite flux), got beta={beta}")
    if size is None:
        size = max(15, 2 * int(round(4 * float(fwhm.max()))) + 1)
    size = int(size)
    if size < 3:
        raise ValueError(f"psf_from_fwhm: size must be at least 3 pixels, got {size}")
    centre = size // 2
    # sub-pixel centres of every pixel, relative to the PSF centre
    offsets = (np.arange(_SUB) + 0.5) / _SUB - 0.5
    axis = (np.arange(size) - centre)[:, None] + offsets[None, :]  # (size, SUB)
    dy = axis[:, None, :, None]
    dx = axis[None, :, None, :]
    r2 = dx**2 + dy**2  # (size, size, SUB, SUB)
    f = fwhm[:, None, None, None, None]
    if kind == "moffat":
        alpha = f / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
        values = (1.0 + r2[None] / alpha**2) ** (-beta)
    else:
        s = f / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        values = np.exp(-0.5 * r2[None] / s**2)
    stamp = values.mean(axis=(3, 4))
    return stamp / stamp.sum(axis=(1, 2), keepdims=True)


def measure_fwhm(psf: np.ndarray) -> np.ndarray:
    """FWHM (pixels) of PSF images (B, h, w): the diameter of the circle whose area is the area above half the peak.

    Pixels are split 4 x 4 by bilinear interpolation first, so that a PSF of two
    or three pixels' FWHM is measured to a few per cent.
    """
    import torch

    psf = np.asarray(psf, dtype=np.float64)
    if psf.ndim == 2:
        psf = psf[None]
    t = torch.as_tensor(psf)[:, None]
    fine = torch.nn.functional.interpolate(t, scale_factor=4, mode="bilinear", align_corners=False)[:, 0].numpy()
    peak = fine.reshape(len(fine), -1).max(axis=1)
    area = (fine >= 0.5 * peak[:, None, None]).reshape(len(fine), -1).sum(axis=1) / 16.0
    return 2.0 * np.sqrt(area / np.pi)
