"""The memory model of a batch fit: what a galaxy needs, what the device has, and the check before a fit."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch

from ..errors import GalmossError

if TYPE_CHECKING:
    from ..model import Model
    from .fit_settings import FitSettings

__all__ = ["FitMemoryError", "available_memory", "check_memory", "memory_per_galaxy", "render_memory"]


class FitMemoryError(GalmossError, MemoryError):
    """A batch would need more memory than the device has (too many free values per galaxy)."""


def memory_per_galaxy(n_free: int, n_columns: int, shape: tuple[int, int], dtype: torch.dtype = torch.float32) -> int:
    """Bytes one galaxy of a batch needs while it is fitted with ``n_free`` free values (an upper estimate).

    Levenberg-Marquardt holds about six P x P float64 matrices a galaxy (J^T J,
    the damped system, its factor, the normal matrix of the trial, the inverse
    and the covariance); the delta method adds the C x P derivative of the
    reported values and the C x C covariance; the images (data, sigma, weight,
    model, residuals) are a few times H x W. The forward-mode tangents are
    bounded apart (``BatchObjective.tangent_memory``, shared by the batch).
    """
    p, c = int(n_free), int(n_columns)
    pixels = int(shape[0]) * int(shape[1])
    itemsize = torch.empty((), dtype=dtype).element_size()
    return 8 * (6 * p * p + 2 * c * p + c * c) + 16 * pixels * itemsize


#: bytes per pixel of the rendering box, per item size: images held per galaxy, and per tangent of a
#: forward-mode Jacobian pass (measured on the CPU: a Sersic fitted with E = 1-3, boxes of 0.3-1 Mpx, peak
#: resident memory 480 bytes a box pixel with the structured Jacobian and 820-1160 with forward mode)
RENDER_IMAGES, RENDER_PER_TANGENT = 24, 26
#: without a PSF: item sizes a cutout pixel takes per forward-mode tangent (a 2048x1489 frame with a Sersic
#: and a sky, 8 free values, float32: 4.5 GB peak resident, about 1,340 bytes a pixel, torch included), and
#: the core's exact integrals: pixels a galaxy at most (q = 0.2: about 660; 0.05: 2,600) and bytes a pixel per tangent
PIXEL_PER_TANGENT = 48
PATCH_PIXELS, PATCH_BYTES = 3000, 1024
#: tangents of the structured Jacobian (the shape parameters' pass), against P for forward mode
STRUCTURED_TANGENTS = 3


def render_memory(n_galaxies: int, shape: tuple[int, int], psf_shape: tuple[int, int] | None, n_tangents: int,
                  chunk: int, oversampling: int = 1, dtype: torch.dtype = torch.float32) -> int:
    """Bytes the rendering of a batch holds: its FFT box (the cutout on the PSF's grid plus the PSF) per galaxy,
    and per tangent of the galaxies of one Jacobian pass.

    Without a PSF the pixel integrals are drawn in real space on the cutout: the smooth part's sub-pixel
    samples (``PIXEL_PER_TANGENT`` item sizes a pixel and tangent, every free value a tangent) and the core's
    exact integrals in float64 over at most ``PATCH_PIXELS`` pixels a galaxy.
    """
    h, w = int(shape[0]) * oversampling, int(shape[1]) * oversampling
    itemsize = torch.empty((), dtype=dtype).element_size()
    if psf_shape is None:
        galaxies = min(n_galaxies, chunk)
        patch = min(h * w, PATCH_PIXELS) * PATCH_BYTES * (1 + n_tangents) * galaxies
        return h * w * itemsize * (RENDER_IMAGES * n_galaxies + PIXEL_PER_TANGENT * n_tangents * galaxies) + patch
    box = (h + int(psf_shape[0])) * (w + int(psf_shape[1]))
    return box * itemsize * (RENDER_IMAGES * n_galaxies + RENDER_PER_TANGENT * n_tangents * min(n_galaxies, chunk))


def available_memory(device: torch.device) -> int:
    """Bytes the device can give: free GPU memory, or the memory the machine has available on the CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:  # Linux: what can be had without swapping (other processes' memory excluded)
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not a POSIX system
        return 2**63 - 1


def check_memory(model: Model, n_galaxies: int, shape: tuple[int, int], settings: FitSettings,
                 psf_shape: tuple[int, int] | None = None) -> int:
    """Raise :class:`FitMemoryError` before fitting when a batch cannot fit in memory; return the bytes needed.

    ``psf_shape`` (the PSF stamp, on its own grid; None: no PSF) sizes the rendering's FFT box, which with a
    PSF sampled E times finer (``settings.render.psf_oversampling``) is E^2 times the cutout.
    """
    from .objective import BatchObjective

    per = memory_per_galaxy(model.n_free, len(model.columns), shape, settings.torch_dtype)
    factor = settings.render.psf_oversampling
    # the general forward-mode Jacobian (a tangent per free value): a finer PSF, ties, or no PSF at all
    forward = factor > 1 or bool(model.ties) or psf_shape is None
    tangents = model.n_free if forward else min(model.n_free, STRUCTURED_TANGENTS)
    render = render_memory(n_galaxies, shape, psf_shape, tangents, settings.jacobian_chunk, factor,
                           settings.torch_dtype)
    if settings.method == "lm" and settings.lm.jacobian_updates and not model.has_vectors:
        # Levenberg-Marquardt holds J (b, M, P) between iterations for its rank-one updates
        itemsize = torch.empty((), dtype=settings.torch_dtype).element_size()
        render += n_galaxies * model.n_free * int(shape[0]) * int(shape[1]) * itemsize
    need = n_galaxies * per + render + BatchObjective.tangent_memory
    have = available_memory(settings.torch_device)
    if need > have:
        fine = f" on the PSF's {factor}x finer grid" if factor > 1 else ""
        raise FitMemoryError(
            f"fitting {n_galaxies} galaxies of {shape[0]}x{shape[1]} pixels{fine} with {model.n_free} free values "
            f"each needs about {need / 2**30:.3g} GiB ({render / 2**30:.3g} GiB to render, "
            f"{n_galaxies * per / 2**30:.3g} GiB of {model.n_free}x{model.n_free} matrices), but {settings.device} "
            f"has {have / 2**30:.3g} GiB available; fit a smaller region or batch_size, a PSF sampled less finely, "
            "fewer free values, or use a device with more memory"
        )
    return need
