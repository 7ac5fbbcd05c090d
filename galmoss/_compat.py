"""Small shims over torch behaviour that differs between releases."""

from __future__ import annotations

import contextlib
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


@functools.cache
def tune_cpu_allocator() -> bool:
    """Keep freed memory in the process instead of returning it to the OS at once.

    Model images and their Jacobians allocate and free tensors of megabytes many
    times per iteration. glibc's default serves each from fresh pages (mmap) and
    unmaps them on free, so most of the CPU time goes to page faults (measured:
    3x slower Jacobians on 2 cores). Raising glibc's mmap and trim thresholds
    makes it reuse the memory. Called when a fit starts on the CPU; a no-op where
    glibc is not the allocator. Returns whether the settings were applied.
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 1 << 30) and libc.mallopt(m_trim_threshold, (1 << 31) - 1)
    except (OSError, AttributeError):
        return False
    return bool(ok)


@contextlib.contextmanager
def torch_threads(count: int | None):
    """Run a block with ``count`` torch intra-op threads, restoring the setting after (None: unchanged)."""
    import torch

    if count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
