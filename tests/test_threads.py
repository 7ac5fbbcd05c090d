"""``Fitting(threads=...)``: torch's intra-op threads while fitting on the CPU, restored afterwards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import galmoss as gm


class RecordingGaussian(gm.LightProfile):
    """A round Gaussian blob that notes how many torch threads draw it."""

    seen: list[int] = []

    def __init__(self, amp):
        super().__init__()
        self.amp = amp

    def image_via_grid_from(self, grid, mode="updating_model"):
        RecordingGaussian.seen.append(torch.get_num_threads())
        return self.amp.value(mode) * torch.exp(-((grid[1] - 12.5) ** 2 + (grid[0] - 12.5) ** 2) / 8.0)


def _dataset(amplitude=3.0):
    yy, xx = np.mgrid[1:25, 1:25]
    truth = amplitude * np.exp(-((xx - 12.5) ** 2 + (yy - 12.5) ** 2) / 8.0)
    rng = np.random.default_rng(4)
    images = truth[None] + rng.normal(0, 0.05, (2, 24, 24))
    ds = gm.Dataset.from_arrays(images, np.full((2, 24, 24), 0.05))
    ds.define_profiles(blob=RecordingGaussian(gm.p([2.0, 4.0])))
    return ds


@pytest.mark.parametrize("threads", [1, 2])
def test_the_fit_runs_with_the_threads_asked_for_and_restores_torch_setting(threads):
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        RecordingGaussian.seen.clear()
        results = gm.Fitting(_dataset(), batch_size=2, device="cpu", progress=False, threads=threads).fit()
        assert set(RecordingGaussian.seen) == {threads}
        assert torch.get_num_threads() == 3
        # and the fit is the fit: the amplitude recovered (noise 0.05 over ~25 px: error ~0.01)
        assert np.allclose(np.asarray(results["blob_amp"]), 3.0, atol=0.05)
    finally:
        torch.set_num_threads(before)


def test_threads_none_leaves_torch_alone_and_zero_is_refused():
    before = torch.get_num_threads()
    RecordingGaussian.seen.clear()
    gm.Fitting(_dataset(), batch_size=2, device="cpu", progress=False, threads=None).fit()
    assert set(RecordingGaussian.seen) == {before}
    with pytest.raises(ValueError, match="threads must be an integer >= 1"):
        gm.Fitting(_dataset(), device="cpu", threads=0)
