"""The dataset's settings that are configuration, checked before the first fit (and by ``--dry-run``).

A setting that is wrong for every galaxy (an HDU selector given as ``True``, an
unknown PSF kind) would otherwise be found galaxy by galaxy, while reading,
and flagged as if each file were bad; here it is one
:class:`~galmoss.errors.ConfigError` naming the setting and the fix, before
anything is read or fitted.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..io.fits import check_hdu

__all__ = ["check_dataset"]


def check_dataset(dataset) -> None:
    """Check the settings of ``dataset`` that hold for every galaxy.

    Raises
    ------
    ConfigError
        Naming the setting and the fix.
    """
    for what, hdu in (getattr(dataset, "hdus", None) or {}).items():
        check_hdu(hdu, f"Dataset: {what}_hdu")
    fwhm = next((f for f in getattr(dataset, "psf_fwhm", None) or [] if f is not None), None)
    if fwhm is not None:
        from ..auto.psf import psf_from_fwhm

        try:  # the PSF every galaxy without a PSF file gets: its kind and beta hold for all
            psf_from_fwhm(fwhm, kind=dataset.psf_kind, beta=dataset.psf_beta)
        except ValueError as exc:
            raise ConfigError(f"Dataset (psf_kind={dataset.psf_kind!r}, psf_beta={dataset.psf_beta:g}): "
                              f"{exc}") from None
