"""The memory model of a batch fit: what a galaxy needs, what the device has, and the check before a fit."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch

from ..errors import GalmossError

if TYPE_CHECKING:
    from ..model import Model
    from .fit_settings import FitSettings

__all__ = ["FitMemoryError", "available_memory", "check_memory", "memory_per_galaxy"]


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


def available_memory(device: torch.device) -> int:
    """Bytes the device can give: free GPU memory, or the machine's physical memory on the CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not a POSIX system
        return 2**63 - 1


def check_memory(model: Model, n_galaxies: int, shape: tuple[int, int], settings: FitSettings) -> int:
    """Raise :class:`FitMemoryError` before fitting when a batch cannot fit in memory; return the bytes needed."""
    from .objective import BatchObjective

    per = memory_per_galaxy(model.n_free, len(model.columns), shape, settings.torch_dtype)
    need = n_galaxies * per + BatchObjective.tangent_memory
    have = available_memory(settings.torch_device)
    if need > have:
        raise FitMemoryError(
            f"fitting {n_galaxies} galaxies of {shape[0]}x{shape[1]} pixels with {model.n_free} free values each "
            f"needs about {need / 2**30:.3g} GiB ({per / 2**20:.4g} MiB per galaxy: six {model.n_free}x{model.n_free} "
            f"float64 matrices and the covariance of {len(model.columns)} columns), but {settings.device} has "
            f"{have / 2**30:.3g} GiB; use fewer free values (a coarser vector parameter), a smaller batch_size, "
            "or a device with more memory"
        )
    return need
