"""The batch-invariant operations compute what the plain torch operations compute.

Truth: the same products and sums in float64 by torch's own matmul; tolerance
float32 round-off (1e-5 relative). And a galaxy's row does not depend on the
rows beside it: alone it equals its row in a batch, with one torch thread (a
fit's default; more threads split some products by the batch's size).
"""

from __future__ import annotations

import pytest
import torch

from galmoss._compat import prepare_forward_mode, torch_threads
from galmoss.batched import matvec, rowwise_jacobian, rowwise_matmul, transposed_matvec, weighted_sum


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def _close(got, want):
    assert torch.allclose(got.double(), want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))


def test_rowwise_matmul():
    g = torch.Generator().manual_seed(0)
    rows, matrix = torch.randn(3, 5, 64, generator=g), torch.randn(64, 40, generator=g)
    _close(rowwise_matmul(rows, matrix), rows.double() @ matrix.double())
    assert torch.equal(rowwise_matmul(rows, matrix)[1, 2], rowwise_matmul(rows[1:2, 2:3], matrix)[0, 0])


def test_matvec_and_transposed_matvec():
    g = torch.Generator().manual_seed(1)
    matrix, vector, long = torch.randn(6, 900, 7, generator=g), torch.randn(6, 7, generator=g), torch.randn(6, 900, generator=g)
    _close(matvec(matrix, vector), (matrix.double() @ vector.double().unsqueeze(-1)).squeeze(-1))
    _close(transposed_matvec(matrix, long), (matrix.double().transpose(1, 2) @ long.double().unsqueeze(-1)).squeeze(-1))
    assert torch.equal(matvec(matrix, vector)[4], matvec(matrix[4:5], vector[4:5])[0])
    assert torch.equal(transposed_matvec(matrix, long)[4], transposed_matvec(matrix[4:5], long[4:5])[0])


def test_weighted_sum():
    g = torch.Generator().manual_seed(2)
    weights, samples = torch.rand(9, generator=g), torch.randn(4, 9, 50, generator=g)
    _close(weighted_sum(weights, samples), torch.einsum("g,bgl->bl", weights.double(), samples.double()))
    assert torch.equal(weighted_sum(weights, samples)[3], weighted_sum(weights, samples[3:4])[0])


@pytest.mark.parametrize("n_out", [3, 9])  # reverse mode (C <= 2P) and forward mode (C > 2P)
def test_rowwise_jacobian_is_each_galaxys_own_jacobian(n_out):
    """Against torch.func.jacfwd of one galaxy at a time, in float64."""
    g = torch.Generator().manual_seed(2)
    theta = torch.randn(5, 4, generator=g, dtype=torch.float64)
    mix = torch.randn(4, n_out, generator=g, dtype=torch.float64)

    def fn(th):  # (B, P) -> (B, C), each row from its own galaxy; one output does not depend on theta
        out = torch.sin(th) @ mix + th[:, :1] ** 3
        return torch.cat([out[:, :-1], torch.ones_like(out[:, -1:])], 1)

    got = rowwise_jacobian(fn, theta)
    prepare_forward_mode()
    want = torch.stack([torch.func.jacfwd(lambda t: fn(t[None])[0])(theta[b]) for b in range(5)])
    assert got.shape == (5, n_out, 4)
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)
