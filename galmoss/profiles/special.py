"""Special functions the profiles need, as differentiable batched torch functions."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

Tensor = torch.Tensor


def exp_limit(dtype: torch.dtype) -> float:
    """The largest |x| whose exp the dtype holds as a normal number (less a margin).

    Beyond it exp under- or overflows, and on the CPU float32 exp of such an
    argument takes a scalar path 10-40 times slower than the vectorised one
    (most pixels of an image lie far out on a profile or on a window's flat side),
    so exponents are clamped to it.
    """
    return 700.0 if dtype == torch.float64 else 87.0

# Sersic b_n solves P(2n, b_n) = 1/2 (half the light inside r_e). It is
# represented by a Chebyshev series in log(n) fitted once, on first use, to
# scipy's gammaincinv: ordinary torch arithmetic, so it is differentiable in n
# (reverse and forward mode) on any device, and accurate to ~1e-11 relative.
_B_N_RANGE = (0.1, 25.0)
_B_N_DEGREE = 40


@functools.lru_cache(maxsize=1)
def _sersic_b_coefficients() -> np.ndarray:
    from scipy.special import gammaincinv

    lo, hi = np.log(_B_N_RANGE[0]), np.log(_B_N_RANGE[1])
    m = 4 * _B_N_DEGREE
    x = np.cos(np.pi * (np.arange(m) + 0.5) / m)
    n = np.exp(lo + (x + 1.0) * 0.5 * (hi - lo))
    return np.polynomial.chebyshev.chebfit(x, gammaincinv(2.0 * n, 0.5), _B_N_DEGREE)


def sersic_b(n: Tensor) -> Tensor:
    """Sersic ``b_n`` (``gammaincinv(2n, 0.5)``), differentiable in ``n``.

    Valid for 0.1 <= n <= 25 (relative error below 1e-10 in float64).
    """
    # Summed in float64 whatever the input precision: for small n the series'
    # terms cancel to a small b_n, which float32 would resolve only to ~3e-6.
    # T_k(x) = cos(k arccos x) evaluates all terms in a handful of tensor ops
    # (a recurrence would be ~120 tiny ops, slow under forward-mode transforms).
    coeffs = torch.as_tensor(_sersic_b_coefficients(), dtype=torch.float64, device=n.device)
    lo, hi = math.log(_B_N_RANGE[0]), math.log(_B_N_RANGE[1])
    x = (2.0 * torch.log(n.double()) - (lo + hi)) / (hi - lo)
    theta = torch.acos(x.clamp(-1.0 + 1e-12, 1.0 - 1e-12))
    k = torch.arange(coeffs.numel(), dtype=torch.float64, device=n.device)
    return (torch.cos(theta[..., None] * k) @ coeffs).to(n.dtype)


def sersic_b_and_slope(n: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`sersic_b` and its derivative ``db/dn``, from the same series written out.

    ``d/dn sum c_k cos(k theta) = sum c_k k sin(k theta) / sin(theta) * dx/dn`` with
    ``x = cos(theta)`` the series' variable; for Jacobians without forward-mode
    dispatch (milliseconds per call on small tensors).
    """
    coeffs = torch.as_tensor(_sersic_b_coefficients(), dtype=torch.float64, device=n.device)
    lo, hi = math.log(_B_N_RANGE[0]), math.log(_B_N_RANGE[1])
    nd = n.double()
    x_raw = (2.0 * torch.log(nd) - (lo + hi)) / (hi - lo)
    x = x_raw.clamp(-1.0 + 1e-12, 1.0 - 1e-12)
    theta = torch.acos(x)
    k = torch.arange(coeffs.numel(), dtype=torch.float64, device=n.device)
    b = torch.cos(theta[..., None] * k) @ coeffs
    inside = ((x_raw >= -1.0 + 1e-12) & (x_raw <= 1.0 - 1e-12)).to(nd.dtype)
    db_dx = (torch.sin(theta[..., None] * k) @ (coeffs * k)) / torch.sin(theta)
    return b.to(n.dtype), (db_dx * inside * 2.0 / (nd * (hi - lo))).to(n.dtype)


def gauss_legendre(n_nodes: int, dtype: torch.dtype, device) -> tuple[Tensor, Tensor]:
    """Gauss-Legendre nodes and weights on [0, 1]."""
    t, w = _gauss_legendre_np(n_nodes)
    return (torch.as_tensor(t, dtype=dtype, device=device), torch.as_tensor(w, dtype=dtype, device=device))


@functools.lru_cache(maxsize=16)
def _gauss_legendre_np(n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    t, w = np.polynomial.legendre.leggauss(n_nodes)
    return (t + 1.0) / 2.0, w / 2.0


def log_beta(a: Tensor, b: Tensor) -> Tensor:
    """``log B(a, b)``."""
    return torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)
