"""Small shims over torch behaviour that differs between releases."""

from __future__ import annotations

import functools
import warnings


@functools.cache
def prepare_forward_mode() -> None:
    """Import torch's forward-mode decompositions once, silencing their import warning.

    The first ``torch.func.jvp`` imports ``torch._decomp.decompositions_for_jvp``,
    which in torch >= 2.9 scripts functions with the deprecated ``torch.jit.script``
    and warns. The warning is about torch's internals, not about anything the user
    can change, so it is not passed on.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import torch._decomp.decompositions_for_jvp  # noqa: F401
        except ImportError:  # pragma: no cover - layout of torch internals may change
            pass
