"""Tensor operations whose result for one galaxy does not depend on the rest of its batch.

A galaxy's fitted values must not depend on which other galaxies share its
batch, shard or dask chunk (docs/design.md, "Scale-out"). Float32 round-off is
enough to move a fit: Levenberg-Marquardt's accept, reject and stop decisions
turn a difference in the last bit into a different end point, by up to a few
thousandths of an error for a regular galaxy and by whole errors for a
degenerate one. On the CPU most torch operations compute each galaxy's values
alike in any batch; four kinds do not, and galmoss avoids each:

* a matrix product that folds the batch into one BLAS problem, ``(B, R) @ (R, K)``
  or ``J^T r`` as a batched matrix-vector product: its blocking, and so its
  summation order, follows B. :func:`rowwise_matmul`, :func:`matvec`,
  :func:`transposed_matvec` and :func:`weighted_sum` compute one galaxy's
  problem at a time, or sum in a fixed order;
* a Fourier transform along a strided axis, which vectorises across lines of
  different galaxies: transforms run along the last, contiguous axis
  (``render.grid.ConvolutionLayout.inverse``);
* the end of a tensor: torch's vector loops finish a tensor's last values with
  scalar code, whose transcendental functions and complex products round
  differently. The objective draws every batch of cutouts with a spare copy of
  its last galaxy, whose results it drops (``fitting.objective``), so no real galaxy's
  values are ever the remainder;
* a product with one kernel broadcast over the batch, which runs its vector
  loop galaxy by galaxy: a batch of one galaxy (whose PSF looks shared) indexes
  its PSF by galaxy as a larger batch does (``render.renderer.Renderer._prepare``).

With one torch thread per process (a fit's default), fits of single Sersics
(with and without a PSF, a PSF given finer than the data, priors, image-based
starts) and of bulges + disks, restarts included, then end bit for bit alike in
batches of 1, 3 and 8 (``benchmarks/cut_invariance.py``; the tests ask for 1e-3
of an error). More threads split some batched products by the batch's size.
GPU kernels are not covered: there the float64 polish (``fitting.batch.polish``)
takes every cut to the same minimum.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._compat import prepare_forward_mode

Tensor = torch.Tensor


def rowwise_matmul(rows: Tensor, matrix: Tensor) -> Tensor:
    """``rows @ matrix`` (..., R) x (R, K) -> (..., K), each row its own product."""
    flat = rows.reshape(-1, 1, rows.shape[-1])
    out = torch.bmm(flat, matrix.to(rows.dtype).expand(flat.shape[0], *matrix.shape))
    return out.reshape(rows.shape[:-1] + (matrix.shape[-1],))


def matvec(matrix: Tensor, vector: Tensor) -> Tensor:
    """``matrix @ vector`` (b, m, n) x (b, n) -> (b, m), each galaxy's its own (a sum along the last axis)."""
    return (matrix * vector.unsqueeze(-2)).sum(-1)


def transposed_matvec(matrix: Tensor, vector: Tensor) -> Tensor:
    """``matrix^T @ vector`` (b, m, n) x (b, m) -> (b, n): a row vector times each galaxy's matrix."""
    return torch.bmm(vector.unsqueeze(1), matrix).squeeze(1)


def weighted_sum(weights: Tensor, samples: Tensor) -> Tensor:
    """``sum_g weights[g] * samples[:, g]`` (G,) x (b, G, ...) -> (b, ...), the G terms added in order."""
    weights = weights.to(samples.dtype)
    out = weights[0] * samples[:, 0]
    for g in range(1, weights.numel()):
        out = out + weights[g] * samples[:, g]
    return out


def rowwise_jacobian(fn: Callable[[Tensor], Tensor], theta: Tensor) -> Tensor:
    """The Jacobian (B, C, P) of ``fn(theta (B, P)) -> (B, C)``, whose row b depends on ``theta[b]`` alone.

    Galaxies are independent, so one pass gives one column (or row) of every
    galaxy's Jacobian at once: reverse mode takes a pass per output (C), forward
    mode a pass per parameter (P). Reverse mode is taken unless C > 2 P: its
    passes are plain autograd, while torch.func's forward mode goes through
    Python decompositions (and imports torch's compiler, about a second, on its
    first use).
    """
    batch, n_par = theta.shape
    with torch.enable_grad():
        th = theta.detach().requires_grad_(True)
        out = fn(th)
        n_out = out.shape[1]
        if n_out <= 2 * n_par:
            rows = []
            for j in range(n_out):
                grad = None
                if out.requires_grad:
                    (grad,) = torch.autograd.grad(out[:, j].sum(), th, retain_graph=j < n_out - 1, allow_unused=True)
                rows.append(torch.zeros_like(theta) if grad is None else grad)
            return torch.stack(rows, 1) if rows else theta.new_zeros(batch, 0, n_par)
    prepare_forward_mode()
    columns = []
    for k in range(n_par):
        tangent = torch.zeros_like(theta)
        tangent[:, k] = 1.0
        columns.append(torch.func.jvp(fn, (theta,), (tangent,))[1])
    return torch.stack(columns, -1)
