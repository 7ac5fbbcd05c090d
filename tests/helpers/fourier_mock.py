"""An independent renderer of Fourier-moded Sersic galaxies (numpy + scipy, no galmoss).

The continuous profile, its radius perturbed as GALFIT defines it
(r' = r (1 + sum_m a_m cos(m (theta - phi_m))), theta the azimuth in the frame of
the ellipse), point-sampled on a grid 5 times finer than the pixels, convolved
there with a continuous Gaussian PSF of unit integral, and sampled at the pixel
centres: the model a pixel's value means in galmoss (docs/design.md), by brute force.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import fftconvolve
from scipy.special import gamma, gammaincinv


def _radii(y, x, cx, cy, pa_deg, q, modes, amps, phis_deg):
    """The elliptical radius and the Fourier-perturbed one at (y, x)."""
    pa = math.radians(pa_deg)
    dx, dy = x - cx, y - cy
    xmaj = -dx * math.sin(pa) + dy * math.cos(pa)
    xmin = dx * math.cos(pa) + dy * math.sin(pa)
    r = np.hypot(xmaj, xmin / q)
    theta = np.arctan2(xmin / q, xmaj)
    pert = 1.0 + sum(a * np.cos(m * (theta - math.radians(p))) for m, a, p in zip(modes, amps, phis_deg))
    return r, r * pert


def _sersic_amplitude(flux, re, n, q):
    """(I_e, b_n) of a Sersic of total ``flux``."""
    b = gammaincinv(2 * n, 0.5)
    return flux / (2 * math.pi * n * math.exp(b) * b ** (-2 * n) * gamma(2 * n) * re**2 * q), b


def numpy_fourier_sersic(shape, cx, cy, pa_deg, q, re, n, flux, modes, amps, phis_deg, psf_sigma, fine=5):
    """The image (H, W) of one Fourier-moded Sersic galaxy, PSF-convolved (see the module docstring).

    ``flux`` is the total of the unperturbed profile (the modes' magnitude convention).
    """
    h, w = shape
    pad = 12
    step = 1.0 / fine
    ys = np.arange(1 - pad, h + pad + 1e-9, step)  # fine grid incl. the pixel centres
    xs = np.arange(1 - pad, w + pad + 1e-9, step)
    Y, X = np.meshgrid(ys, xs, indexing="ij")
    r, rp = _radii(Y, X, cx, cy, pa_deg, q, modes, amps, phis_deg)
    ie, b = _sersic_amplitude(flux, re, n, q)
    img = ie * np.exp(-b * ((rp / re) ** (1 / n) - 1))
    k = np.arange(-6 * fine, 6 * fine + 1) * step
    g = np.exp(-k**2 / (2 * psf_sigma**2)); g /= g.sum()
    # separable Gaussian convolution on the fine grid (the PSF is a continuous Gaussian of unit integral)
    img = fftconvolve(img, g[:, None], mode="same"); img = fftconvolve(img, g[None, :], mode="same")
    i0 = pad * fine
    return img[i0: i0 + h * fine: fine, i0: i0 + w * fine: fine]



def numpy_fourier_difference_means(shape, pad, cx, cy, pa_deg, q, re, n, flux, modes, amps, phis_deg,
                                   fine=8, core_fine=160, core_half=2):
    """Pixel means of S(r') - S(r), the Fourier-moded minus the elliptical Sersic, on a grid padded by ``pad``.

    ``fine`` x ``fine`` samples a pixel everywhere and ``core_fine`` x ``core_fine``
    in the (2 core_half + 1)^2 pixels around the centre, where the core's cusp makes
    the difference steep. Pixel (i, j) of the result is centred at
    (1 - pad + j, 1 - pad + i) in galmoss's 1-based (x, y).
    """
    h, w = shape[0] + 2 * pad, shape[1] + 2 * pad
    ie, b = _sersic_amplitude(flux, re, n, q)

    def difference(y, x):
        r, rp = _radii(y, x, cx, cy, pa_deg, q, modes, amps, phis_deg)
        return ie * (np.exp(-b * ((rp / re) ** (1 / n) - 1)) - np.exp(-b * ((r / re) ** (1 / n) - 1)))

    def means(y_centres, x_centres, k):
        off = (np.arange(k) + 0.5) / k - 0.5
        yy = y_centres[:, None, None, None] + off[None, :, None, None]
        xx = x_centres[None, None, :, None] + off[None, None, None, :]
        return difference(yy, xx).mean(axis=(1, 3))

    ys = np.arange(h) + 1.0 - pad
    xs = np.arange(w) + 1.0 - pad
    out = means(ys, xs, fine)
    iy, ix = int(round(cy - ys[0])), int(round(cx - xs[0]))
    rows = slice(iy - core_half, iy + core_half + 1)
    cols = slice(ix - core_half, ix + core_half + 1)
    out[rows, cols] = means(ys[rows], xs[cols], core_fine)
    return out
