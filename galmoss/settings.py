"""Settings passed into rendering and fitting (frozen dataclasses, no globals)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RenderSettings:
    """Accuracy settings of the renderer (see :mod:`galmoss.render.core`).

    Parameters
    ----------
    core_inner
        Inner radius of the sub-pixel core window, in pixels along the sharpest
        axis (the core is drawn exactly inside it).
    core_width
        Width of the window's smooth transition, pixels along the sharpest axis.
    max_core_radius
        Largest core radius (pixels along the x' axis); larger cores are shrunk.
    radial_nodes
        Gauss-Legendre nodes of the core's Hankel transform.
    kappa_step
        Spacing of the core spectrum table in units of 1/core radius.
    fft_padding
        Extra FFT padding (pixels) beyond the cutout plus PSF, room for the cores of
        galaxies near the edge.
    psf_oversampling
        The PSF is sampled this many times finer than the data (GALFIT's E): the
        model is the profile convolved with the fine PSF and summed over the fine
        pixels of each data pixel (:class:`galmoss.render.renderer.OversampledRenderer`).
        Give an undersampled PSF (FWHM below about 2 pixels) this way at high S/N.
    pixel_response
        ``"psf"`` (default): the PSF is a star's image and already holds the
        pixel response, so the continuous profile is convolved with it and
        sampled at pixel centres. ``"galfit"``: GALFIT's convention, the profile
        integrated over pixels and then convolved with the PSF image (the pixel
        counted twice for a star's image); point sources stay the PSF itself.
    """

    core_inner: float = 3.0
    core_width: float = 5.0
    max_core_radius: float = 64.0
    radial_nodes: int = 128
    kappa_step: float = 0.5
    fft_padding: int = 8
    psf_oversampling: int = 1
    pixel_response: str = "psf"

    def __post_init__(self) -> None:
        if not (self.core_inner > 0 and self.core_width > 0 and self.max_core_radius > 0):
            raise ValueError("RenderSettings: core_inner, core_width and max_core_radius must be positive")
        if self.radial_nodes < 16 or self.kappa_step <= 0 or self.fft_padding < 0:
            raise ValueError("RenderSettings: radial_nodes >= 16, kappa_step > 0 and fft_padding >= 0 are required")
        if not (isinstance(self.psf_oversampling, int) and self.psf_oversampling >= 1):
            raise ValueError(f"RenderSettings: psf_oversampling must be a positive integer, got {self.psf_oversampling!r}")
        if self.pixel_response not in ("psf", "galfit"):
            raise ValueError(f"RenderSettings: pixel_response must be 'psf' or 'galfit', got {self.pixel_response!r}")
