"""PSF validation, normalisation and Fourier transforms.

The PSF a user gives is the image of a star: it already holds the pixel
response. It is normalised to unit sum; its sampled values are taken as samples
of a band-limited function (the model is the continuous profile convolved with
the sinc interpolation of the PSF samples, evaluated at pixel centres). This is
the only interpretation under which a sampled PSF defines the convolution of a
continuous profile, and it is what makes sub-pixel shifts of a point source exact.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import PSFError
from .grid import ConvolutionLayout


#: the words of the ``psf_larger_than_cutout`` message (a finer PSF that fits in data pixels takes it back)
LARGER_THAN_CUTOUT = "is larger than the cutout"


def psf_exceeds_cutout(psf_shape, image_shape, sampling: int = 1) -> bool:
    """Whether a PSF stamp, ``sampling`` samples a data pixel, spans more data pixels than the cutout."""
    return any(p > sampling * c for p, c in zip(tuple(psf_shape)[-2:], tuple(image_shape)[-2:]))


def prepare_psf(psf, batch: int | None, dtype: torch.dtype, device, *, source: str = "psf") -> torch.Tensor:
    """Validate and normalise a PSF; return a tensor of shape (B or 1, h, w).

    Parameters
    ----------
    psf
        Array or tensor of shape (h, w) (one PSF for every galaxy) or (B, h, w).
    batch
        Number of galaxies; a (B, h, w) PSF must match it.
    source
        Name used in error messages (a file name, say).

    Raises
    ------
    PSFError
        If the PSF is not 2-D or 3-D, has non-finite pixels, has no positive pixel,
        sums to a non-positive value, or its batch does not match.
    """
    if isinstance(psf, np.ndarray):
        psf = torch.from_numpy(np.ascontiguousarray(psf, dtype=np.float64))
    psf = torch.as_tensor(psf)
    if psf.ndim == 2:
        psf = psf[None]
    if psf.ndim != 3:
        raise PSFError(f"{source}: a PSF must have shape (h, w) or (B, h, w); got {tuple(psf.shape)}")
    if batch is not None and psf.shape[0] not in (1, batch):
        raise PSFError(
            f"{source}: {psf.shape[0]} PSFs were given for {batch} galaxies; give one PSF for all "
            "galaxies or one per galaxy"
        )
    psf = psf.to(device=device, dtype=torch.float64)
    finite = torch.isfinite(psf).flatten(1).all(1)
    positive = (psf > 0).flatten(1).any(1)
    total = torch.where(finite[:, None, None], psf, 0.0).sum((1, 2))
    bad = ~finite | ~positive | ~(total > 0)
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0, 0])
        why = (
            "has non-finite pixels" if not bool(finite[i])
            else "has no positive pixel" if not bool(positive[i])
            else "sums to a non-positive value"
        )
        raise PSFError(f"{source}: the PSF of galaxy index {i} {why}; give a star image with positive flux")
    return (psf / total[:, None, None]).to(dtype)


def psf_spectrum(psf: torch.Tensor, layout: ConvolutionLayout) -> torch.Tensor:
    """rfft2 of the PSF placed on the FFT box with its centre at index (0, 0).

    Multiplying a spectrum by this and transforming back is a true convolution
    (not a correlation), for odd and even PSF sizes alike.
    """
    n, m = layout.fft_shape
    h, w = psf.shape[-2:]
    cy, cx = layout.psf_centre
    kernel = psf.new_zeros(psf.shape[:-2] + (n, m))
    kernel[..., :h, :w] = psf
    kernel = torch.roll(kernel, shifts=(-cy, -cx), dims=(-2, -1))
    return torch.fft.rfft2(kernel)
