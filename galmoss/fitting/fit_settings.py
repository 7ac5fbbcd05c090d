"""How a batch is fitted: :class:`FitSettings`, a frozen value the pipeline ships to every batch."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import GalmossError, ProfileOutputError  # noqa: F401 - re-exported
from ..settings import RenderSettings
from .adam import AdamSettings
from .lm import LMSettings
from .restarts import RestartPolicy

__all__ = ["FitSettings", "ProfileOutputError"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class FitSettings:
    """How a batch is fitted (a frozen value, picklable, so dask can ship it).

    Parameters
    ----------
    method
        ``"lm"`` (Levenberg-Marquardt) or ``"adam"``.
    likelihood
        ``"chi2"``, ``"poisson"`` or ``"student_t"``.
    lm, adam
        Optimiser settings (their ``max_iterations`` is the iteration limit).
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    dtype
        ``"float32"`` or ``"float64"``.
    render
        Renderer accuracy settings.
    jacobian_chunk
        Galaxies per forward-mode Jacobian pass.
    restarts
        Refit galaxies whose first fit went astray from image-based starts.
    restart_policy
        When a fit counts as astray, and the thresholds of the two-component
        restarts (:class:`~galmoss.fitting.restarts.RestartPolicy`).
    covariance
        Compute covariance-matrix errors of the reported values with the fit
        (cheap: the Fisher matrix is at hand).
    model_images
        Return the model and component images (for image blocks).
    polish
        End a float32 Levenberg-Marquardt fit with Gauss-Newton steps on float64
        residuals (``galmoss.fitting.batch.polish``), which take every cut of a
        catalogue to the same float64 minimum where the float32 arithmetic itself
        depends on the batch. None (the default): only off the CPU, whose batched
        arithmetic galmoss keeps the same for a galaxy in any batch
        (``galmoss.batched``); GPU kernels choose their algorithms by batch size.
    """

    method: str = "lm"
    likelihood: str = "chi2"
    lm: LMSettings = field(default_factory=LMSettings)
    adam: AdamSettings = field(default_factory=AdamSettings)
    device: str = "cpu"
    dtype: str = "float32"
    render: RenderSettings = field(default_factory=RenderSettings)
    jacobian_chunk: int = 32
    restarts: bool = True
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    covariance: bool = True
    model_images: bool = False
    polish: bool | None = None

    @property
    def polishes(self) -> bool:
        """Whether a float32 fit ends with the float64 polish (``polish``; None: off the CPU only)."""
        return self.torch_device.type != "cpu" if self.polish is None else bool(self.polish)

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)
