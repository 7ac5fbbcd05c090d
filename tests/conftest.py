"""Shared test configuration: opt-in slow tests and CUDA-only tests."""

from __future__ import annotations

import pytest
import torch


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run slow validation tests")


def pytest_collection_modifyitems(config, items):
    skip_slow = pytest.mark.skip(reason="slow validation: run with --runslow")
    skip_cuda = pytest.mark.skip(reason="no CUDA device present")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_cuda)


@pytest.fixture(autouse=True)
def _deterministic_threads():
    # Two cores in CI: keep torch from oversubscribing them.
    torch.set_num_threads(min(2, torch.get_num_threads()))
    yield
