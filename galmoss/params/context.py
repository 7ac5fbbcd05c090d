"""The values parameters take while one model image is being computed.

Parameter objects hold only their definition (start values, units, bounds).
The values a model is evaluated at -- one tensor per parameter, one row per
galaxy in the batch -- are installed here for the duration of one rendering,
so that ``param.value(mode)`` inside a user profile returns them. This keeps the
seed's user-profile API (``self.sky_0.value(mode)``) while no fit state lives on
a parameter object: two fits of the same parameters can run side by side.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .parameter import Parameter

_ACTIVE: contextvars.ContextVar[Mapping["Parameter", "torch.Tensor"] | None] = contextvars.ContextVar(
    "galmoss_parameter_values", default=None
)


@contextlib.contextmanager
def parameter_values(values: Mapping["Parameter", "torch.Tensor"]) -> Iterator[None]:
    """Install ``values`` (parameter -> tensor of shape (B, 1, 1)) for a block of code."""
    token = _ACTIVE.set(values)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active_values() -> Mapping["Parameter", "torch.Tensor"] | None:
    """The mapping installed by the innermost :func:`parameter_values`, or None."""
    return _ACTIVE.get()
