"""Shared test configuration: slow validation tests and CUDA-only tests.

``python -m pytest`` runs everything, the long validation tests (marked
``slow``) included: that is what CI (``.ci/run``) calls. ``python -m pytest -m
"not slow"`` is the quick developer run. Tests marked ``cuda`` are skipped when
no CUDA device is present.
"""

from __future__ import annotations

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    skip_cuda = pytest.mark.skip(reason="no CUDA device present")
    for item in items:
        if "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_cuda)


@pytest.fixture(autouse=True)
def _deterministic_threads():
    # Two cores in CI: keep torch from oversubscribing them.
    torch.set_num_threads(min(2, torch.get_num_threads()))
    yield
