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


def check_dataset(dataset, psf_oversampling: int = 1) -> None:
    """Check the settings of ``dataset`` that hold for every galaxy.

    ``psf_oversampling``: the PSF samples per data pixel the fit will read
    (``RenderSettings.psf_oversampling``).

    Raises
    ------
    ConfigError
        Naming the setting and the fix.
    """
    for what, hdu in (getattr(dataset, "hdus", None) or {}).items():
        check_hdu(hdu, f"Dataset: {what}_hdu")
    fwhm = next((f for f in getattr(dataset, "psf_fwhm", None) or [] if f is not None), None)
    if fwhm is not None and psf_oversampling > 1:
        raise ConfigError(f"Dataset (psf_fwhm={fwhm:g}): a PSF made from a FWHM is sampled at the pixels, and "
                          f"psf_oversampling = {psf_oversampling} would read it {psf_oversampling} times too "
                          "narrow; give PSF files drawn that much finer, or leave psf_oversampling at 1")
    if fwhm is not None:
        from ..auto.psf import psf_from_fwhm

        try:  # the PSF every galaxy without a PSF file gets: its kind and beta hold for all
            psf_from_fwhm(fwhm, kind=dataset.psf_kind, beta=dataset.psf_beta)
        except ValueError as exc:
            raise ConfigError(f"Dataset (psf_kind={dataset.psf_kind!r}, psf_beta={dataset.psf_beta:g}): "
                              f"{exc}") from None
