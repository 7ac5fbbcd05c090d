"""Pixel grids and the FFT layout of a PSF convolution.

Conventions (design.md): pixel centres are 1-based, the centre of the first
pixel is (1, 1), x runs along columns (FITS NAXIS1) and y along rows. The PSF
centre is the pixel at 0-based index ``(h // 2, w // 2)``: the middle pixel of an
odd-sized PSF, and the pixel just above and right of the geometric centre of an
even-sized one (GALFIT's convention).

A model pixel receives light from every point of the sky within the PSF's
reach, so the profile is evaluated on an *extended* grid: the cutout grown by
the PSF size (light from outside the cutout falls into it). The FFT box is at
least that large, so the circular convolution equals the linear one on the
cutout (no wrap-around).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch


def fast_fft_size(n: int) -> int:
    """The smallest integer >= n whose prime factors are 2, 3 and 5."""
    m = max(int(n), 1)
    while True:
        k = m
        for f in (2, 3, 5):
            while k % f == 0:
                k //= f
        if k == 1:
            return m
        m += 1


def pixel_grid(height: int, width: int, y0: float = 1.0, x0: float = 1.0, *, dtype=None, device=None):
    """``(y, x)`` coordinate tensors of shape (height, width); the first pixel centre is (x0, y0)."""
    ys = torch.arange(height, dtype=dtype, device=device) + y0
    xs = torch.arange(width, dtype=dtype, device=device) + x0
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return y, x


@dataclass(frozen=True)
class ConvolutionLayout:
    """Where the cutout, its PSF margins and the FFT box lie relative to each other.

    The profile is evaluated on the *extended* grid: the cutout grown by the PSF
    (every point whose light the PSF can carry into the cutout) and then by
    ``taper`` more pixels on each side, where the image is rolled off smoothly to
    zero. Those outer pixels are beyond the PSF's reach, so they change no model
    pixel; they make the image a smooth periodic function on the FFT box, so that
    derivatives taken in Fourier space (the shift of a component) do not ring.

    Parameters
    ----------
    shape
        Cutout shape (H, W).
    psf_shape
        PSF shape (h, w); (1, 1) means no PSF.
    extra_padding
        Additional FFT padding (pixels) beyond the extended grid, which leaves room
        for the sub-pixel cores of galaxies near the cutout edge.
    taper
        Width (pixels) of the roll-off beyond the PSF's reach.
    """

    shape: tuple[int, int]
    psf_shape: tuple[int, int]
    extra_padding: int = 8
    taper: int = 6

    @property
    def psf_centre(self) -> tuple[int, int]:
        return (self.psf_shape[0] // 2, self.psf_shape[1] // 2)

    @property
    def psf_reach_before(self) -> tuple[int, int]:
        """How many pixels before a pixel the PSF gathers light from."""
        (h, w), (cy, cx) = self.psf_shape, self.psf_centre
        return (h - 1 - cy, w - 1 - cx)

    @property
    def margin_before(self) -> tuple[int, int]:
        """Rows/columns of the extended grid before the cutout's first pixel."""
        ry, rx = self.psf_reach_before
        return (ry + self.taper, rx + self.taper)

    @property
    def extended_shape(self) -> tuple[int, int]:
        (H, W), (h, w) = self.shape, self.psf_shape
        return (H + h - 1 + 2 * self.taper, W + w - 1 + 2 * self.taper)

    @cached_property
    def fft_shape(self) -> tuple[int, int]:
        he, we = self.extended_shape
        return (fast_fft_size(he + self.extra_padding), fast_fft_size(we + self.extra_padding))

    @property
    def extended_origin(self) -> tuple[float, float]:
        """1-based (y, x) pixel coordinate of the extended grid's first pixel."""
        my, mx = self.margin_before
        return (1.0 - my, 1.0 - mx)

    def extended_grid(self, dtype, device):
        he, we = self.extended_shape
        oy, ox = self.extended_origin
        return pixel_grid(he, we, oy, ox, dtype=dtype, device=device)

    def taper_weights(self, dtype, device) -> torch.Tensor:
        """(He, We): 1 within the PSF's reach, rolling off smoothly to 0 over ``taper`` pixels."""
        he, we = self.extended_shape
        ramps = []
        for size in (he, we):
            i = torch.arange(size, dtype=torch.float64)
            distance = torch.minimum(i + 1.0, size - i) / (self.taper + 1.0)  # (0, 1] inside the taper
            t = distance.clamp(max=1.0)
            a = torch.where(t > 0, torch.exp(-1.0 / t.clamp_min(1e-12)), torch.zeros_like(t))
            b = torch.where(t < 1, torch.exp(-1.0 / (1.0 - t).clamp_min(1e-12)), torch.zeros_like(t))
            ramps.append(a / (a + b))
        return (ramps[0][:, None] * ramps[1][None, :]).to(dtype=dtype, device=device)

    def cutout_grid(self, dtype, device):
        return pixel_grid(*self.shape, dtype=dtype, device=device)

    def frequencies(self, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Angular frequencies (rad/pixel) of the rfft2 of the FFT box: ky (N, 1), kx (1, M//2+1)."""
        n, m = self.fft_shape
        ky = 2.0 * math.pi * torch.fft.fftfreq(n, dtype=dtype, device=device)
        kx = 2.0 * math.pi * torch.fft.rfftfreq(m, dtype=dtype, device=device)
        return ky[:, None], kx[None, :]

    def crop(self, image: torch.Tensor) -> torch.Tensor:
        """The cutout part of an image on the FFT box (after convolution)."""
        (H, W), (my, mx) = self.shape, self.margin_before
        return image[..., my : my + H, mx : mx + W]

    def inverse(self, spectrum: torch.Tensor) -> torch.Tensor:
        """The cutout part of the inverse rfft2 of a spectrum on the FFT box.

        The transform along the rows' axis is taken first and only the cutout's
        rows go through the second one (13 % less time than the whole box).
        """
        (H, W), (my, mx) = self.shape, self.margin_before
        n, m = self.fft_shape
        # along the last, contiguous axis: a strided transform groups lines of different
        # galaxies into one vector, and its round-off then depends on the batch (batched.py)
        columns = torch.fft.ifft(spectrum.transpose(-1, -2).contiguous(), n=n, dim=-1)[..., my : my + H]
        rows = columns.transpose(-1, -2).contiguous()
        return torch.fft.irfft(rows, n=m, dim=-1)[..., mx : mx + W]

    def core_room(self, cen_y: torch.Tensor, cen_x: torch.Tensor) -> torch.Tensor:
        """How far (pixels) light around a centre may extend without wrapping into the cutout.

        The FFT box is periodic: a compact source whose light, after the PSF, reached
        past the box would re-enter the cutout from the other side. Returns, per
        galaxy, the largest radius such a source may have.
        """
        room = []
        for cen, n, size, start, cp, reach in (
            (cen_y, self.fft_shape[0], self.shape[0], self.margin_before[0], self.psf_centre[0], self.psf_reach_before[0]),
            (cen_x, self.fft_shape[1], self.shape[1], self.margin_before[1], self.psf_centre[1], self.psf_reach_before[1]),
        ):
            c = cen - 1.0 + start  # 0-based index of the centre on the FFT box
            # a copy at c + n must not reach the cutout's end; one at c - n not its start
            room.append(torch.minimum(c + n - cp - start - size, start + n - c - reach) - 1.0)
        return torch.minimum(room[0], room[1])
