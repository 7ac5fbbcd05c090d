"""benchmarks/gpu.py on the CPU: the code path a GPU session runs, on tiny batches.

No test here needs a GPU: the device-memory probe is replaced by the
array-size model on a CPU, and an out-of-memory error is raised on purpose.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import gpu  # noqa: E402


def test_memory_model_splits_by_free_memory():
    model = gpu.MemoryModel(fixed=2**30, per_galaxy=2**20, measured=True)
    # (0.8 * 2 GiB - 1 GiB) / 1 MiB = 614.4 galaxies
    assert model.largest(2 * 2**30) == 614
    assert model.predict(1000) == 2**30 + 1000 * 2**20
    assert model.largest(float("inf")) >= 16384


def test_mock_pool_noise_matches_its_sigma():
    pool = gpu.mock_pool(4, "sersic", size=48, psf_size=15, seed=3)
    # the images are noiseless models plus N(0, sigma): far from the galaxy the pixels are pure noise
    edge = pool["images"][:, :4, :]
    ratio = np.std(edge / pool["sigmas"][:, :4, :])
    assert 0.85 < ratio < 1.15  # 768 samples: the std of a unit normal to ~5 %


def test_batch_from_free_memory():
    model = gpu.MemoryModel(fixed=64 * 2**20, per_galaxy=2**20, measured=False)
    assert gpu.batch_that_fits(model, 16, float("inf")) == 16
    # 0.8 * 128 MiB - 64 MiB leaves room for 38.4 galaxies of 1 MiB
    assert gpu.batch_that_fits(model, 1000, 128 * 2**20) == 38
    assert gpu.batch_that_fits(model, 1000, 64 * 2**20) == 1


def test_out_of_memory_halves_the_batch(tmp_path, monkeypatch):
    """The quick run end to end, with the first batch of 2 running out of memory: fitted in batches of 1."""
    original = gpu._batch_module.fit_batch
    calls = []

    def fit_batch(model, batch, settings):
        calls.append(len(batch))
        if len(batch) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (raised by the test)")
        return original(model, batch, settings)

    monkeypatch.setattr(gpu._batch_module, "fit_batch", fit_batch)
    out = tmp_path / "table.md"
    table = gpu.main(["--device", "cpu", "--quick", "--models", "sersic", "--batches", "2", "--iteration", "4",
                      "--no-restarts", "--out", str(out)])
    assert out.read_text() == table
    assert calls == [2, 1, 1]
    row = next(line for line in table.splitlines() if line.startswith("| sersic | 2 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "1" and "1 OOM halvings" in cells[10]
    wall = float(cells[4])  # printed to 0.01 s: the rate agrees with it to that rounding
    assert float(cells[3]) == pytest.approx(2 / wall, rel=0.0051 / wall + 0.001)
    host, outside_lm = (float(c.rstrip(" %")) for c in cells[6:8])
    assert 0 <= host <= outside_lm <= 100


def test_budget_skips_what_does_not_fit(tmp_path):
    table = gpu.main(["--device", "cpu", "--quick", "--models", "sersic", "--batches", "2", "--budget", "0",
                      "--out", str(tmp_path / "t.md")])
    assert "skipped" in table and "| sersic | 2 | — |" in table
