r"""Exact drawing of steep elliptical profiles: the sub-pixel core.

The model of a pixel is the continuous profile convolved with the PSF and
sampled at the pixel centre. With the PSF known only through its samples, the
convolution is exact when the profile's spectrum inside the sampling band
(|k_x|, |k_y| < pi) is exact: the model spectrum there is S(k) P(k), with P the
DFT of the PSF samples.

Point samples of the profile do not give S(k): a Sersic centre (and a narrow or
very flattened galaxy) has structure below the pixel scale that aliases into
the band. Supersampling the whole image is expensive and still aliases a cusp.
Instead each elliptical profile is split exactly into two parts,

.. math::

    I(\mathbf{x}) = \underbrace{I(r)\,[1 - w(r)]}_{\text{smooth: point-sampled}}
                  + \underbrace{I(r)\,w(r)}_{\text{core: exact spectrum}},

with a smooth window ``w`` (1 inside ``r1``, 0 beyond ``r2``, infinitely
differentiable between) on the elliptical radius. The outer part varies slowly
on the pixel scale, so its samples carry its band-limited spectrum. The core is
compact and elliptically symmetric, so its spectrum is its Hankel transform
evaluated at the stretched frequency

.. math::

    \hat I_{core}(\mathbf{k}) = q\, C\!\left(\sqrt{k_{maj}^2 + q^2 k_{min}^2}\right)
        e^{-i \mathbf{k}\cdot\mathbf{x}_0},\qquad
    C(k) = 2\pi \int_0^{r_2} I(r)\, w(r)\, J_0(k r)\, r\, dr .

``C`` is tabulated per galaxy on a grid of ``kappa = k r2`` and interpolated
(cubic Hermite, with the analytic derivative from ``J_1``). With nodes
``r = r2 t^2`` on fixed Gauss-Legendre points ``t``, the Bessel matrices
``J_0(kappa_i t_j^2)`` are constants shared by every galaxy, so the transform of
a whole batch is one matrix product. A cusp ``r^{1/n}`` becomes smooth in ``t``.

The window is sized in pixels along the galaxy's sharpest axis
(``r1 = core_inner / min(q, 1)``, ``r2 = r1 + core_width / min(q, 1)``), so a
flattened galaxy, sharp across its minor axis all along its length, gets a long
core. Profiles with a hard edge (Ferrer, King) are put into the core whole when
they fit. The split is exact for any window; the radii still carry derivatives,
so that the Jacobian is the exact derivative of the image actually computed.

Boxy/disky isophotes (C0 != 0) are not elliptical: the core is then the
elliptical profile with the same q, and the renderer adds the difference between
the boxy and the elliptical image separately (supersampled pixel means divided by
the pixel response in the band).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from ..batched import rowwise_matmul
from ..profiles.special import exp_limit
from ..settings import RenderSettings
from .grid import ConvolutionLayout

Tensor = torch.Tensor


@functools.lru_cache(maxsize=4)
def _tables_np(n_nodes: int, n_kappa: int, kappa_step: float):
    from scipy.special import j0, j1

    t, w = np.polynomial.legendre.leggauss(n_nodes)
    t, w = (t + 1.0) / 2.0, w / 2.0
    kappa = np.arange(n_kappa) * kappa_step
    arg = t[:, None] ** 2 * kappa[None, :]
    return t, w, j0(arg), -(t[:, None] ** 2) * j1(arg)


@functools.lru_cache(maxsize=16)
def core_tables(settings: RenderSettings, dtype: torch.dtype, device: torch.device, band: int = 1):
    """Quadrature nodes, weights and Bessel matrices for ``settings`` (cached).

    The tables reach the corner of ``band`` times the sampling band (|k| < band pi
    on each axis) for the largest core.
    """
    n_kappa = int(math.ceil(band * math.pi * math.sqrt(2.0) * settings.max_core_radius / settings.kappa_step)) + 3
    t, w, j0m, dj0m = _tables_np(settings.radial_nodes, n_kappa, settings.kappa_step)
    as_t = functools.partial(torch.as_tensor, dtype=dtype, device=device)
    return as_t(t), as_t(w), as_t(j0m), as_t(dj0m)


def _window_exponent(t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``z = 1/t - 1/(1-t)`` kept within exp's range, ``t`` and ``1 - t`` clamped away from 0, and where z was cut."""
    s, u = t.clamp_min(1e-12), (1.0 - t).clamp_min(1e-12)
    limit = exp_limit(t.dtype) - 7.0
    z = 1.0 / s - 1.0 / u
    cut = z.abs() >= limit
    return z.clamp(-limit, limit), s, u, cut


def smooth_window(r: Tensor, r1: Tensor, r2: Tensor) -> Tensor:
    """1 for r <= r1, 0 for r >= r2, infinitely differentiable in between."""
    t = ((r - r1) / (r2 - r1).clamp_min(1e-12)).clamp(0.0, 1.0)
    # w = psi(1 - t) / (psi(1 - t) + psi(t)), psi(x) = exp(-1/x): the sigmoid of 1/t - 1/(1 - t),
    # exactly 1 at t = 0 and 0 at t = 1 (where the clamped exponent would leave e^-80)
    z, _, _, _ = _window_exponent(t)
    return torch.where(t >= 1.0, 0.0, torch.where(t <= 0.0, 1.0, torch.sigmoid(z)))


#: A window box lists its pixels in multiples of this many: torch's CPU loops then run their
#: vector code on every one (the scalar code of a loop's remainder rounds ``sigmoid``
#: differently), so a pixel's window does not depend on the box's size, which follows the
#: batch's largest core.
_VECTOR_BLOCK = 64


@dataclass
class WindowBox:
    """The smooth window on a box of grid pixels around each galaxy's core (it is 0 beyond).

    Beyond ``r2`` the window and its slopes are exactly 0 and the smooth part is the
    profile itself: only the few hundred pixels of the core's box need them, not the
    tens of thousands of an extended grid.

    Attributes
    ----------
    index
        (B, L) flat positions on the (H, W) grid: ``count`` distinct ones, then the
        last repeated to make L a multiple of :data:`_VECTOR_BLOCK`.
    window
        (B, L) the window at those pixels.
    slopes
        (B, L) each: its derivatives with respect to ``r``, ``r1`` and ``r2``
        (:func:`smooth_window_and_slopes`), or None when not asked for.
    """

    index: Tensor
    count: int
    window: Tensor
    slopes: tuple[Tensor, Tensor, Tensor] | None = None

    def take(self, full: Tensor) -> Tensor:
        """``full`` (..., B, H, W) or (H, W) at the box's pixels: (..., B, L)."""
        flat = full.flatten(-2)
        if flat.dim() == 1:
            return flat[self.index]
        return flat.gather(-1, self.index.expand(flat.shape[:-1] + self.index.shape[-1:]))

    def put(self, full: Tensor, values: Tensor) -> Tensor:
        """A copy of ``full`` (..., B, H, W) with the box's pixels set to ``values`` (..., B, L)."""
        flat = full.flatten(-2)
        values = values[..., : self.count]  # each pixel once: reverse mode would count a repeat twice
        return flat.scatter(-1, self.index[:, : self.count].expand(values.shape), values).reshape(full.shape)

    def put_(self, full: Tensor, values: Tensor) -> Tensor:
        """:meth:`put` in place: ``full`` must be contiguous."""
        values = values[..., : self.count]
        full.flatten(-2).scatter_(-1, self.index[:, : self.count].expand(values.shape), values)
        return full


def window_box(r_ell: Tensor, r1: Tensor, r2: Tensor, v: Mapping[str, Tensor], origin: tuple[float, float],
               slopes: bool = False, whole: bool = False) -> WindowBox:
    """:func:`smooth_window` (and with ``slopes`` its derivatives) on the box of pixels each core reaches.

    ``r_ell`` (B, H, W) is the elliptical radius on a grid whose first pixel has the
    1-based coordinate ``origin``; ``r1``, ``r2`` are (B, 1, 1) and ``v`` holds the
    centre and axis ratio. The box is a square of the grid around each centre that
    holds every pixel of the ellipse ``r_ell < r2`` (the batch's largest), clipped to
    the grid; under a ``torch.func`` transform (forward-mode Jacobians of any
    profile), and with ``whole`` (a radius other than the built-in one, whose
    ellipse the square need not hold), it is the whole grid. Sizing the square
    reads the batch's largest core on the host: off the CPU, where that read would
    wait for the device at every model image and elementwise passes are cheap, the
    box is the whole grid too (the same values).
    """
    batch, height, width = r_ell.shape
    device = r_ell.device
    reach = None
    # a torch without this test (it is torch's own, not public) draws every window on the whole grid
    wrapped = getattr(getattr(torch._C, "_functorch", None), "is_functorch_wrapped_tensor", None)
    on_host = r2.device.type == "cpu"
    if (on_host and not whole and wrapped is not None
            and not any(wrapped(t) for t in (r2, v["axis_r"], v["cen_y"], v["cen_x"]))):
        # the ellipse reaches r2 along its major axis (r2 q along the other, if q > 1)
        extent = r2.detach() * v["axis_r"].detach().clamp_min(1.0)
        largest = float(extent.max()) if extent.numel() else 0.0
        if math.isfinite(largest):
            reach = int(math.ceil(largest)) + 1
    rows = height if reach is None else min(2 * reach + 1, height)
    cols = width if reach is None else min(2 * reach + 1, width)
    if rows == height and cols == width:
        flat = torch.arange(height * width, device=device).expand(batch, -1)
    else:
        def first(centre: Tensor, o: float, size: int, box: int) -> Tensor:
            at = torch.nan_to_num(centre.detach().reshape(batch) - o, nan=0.0, posinf=0.0, neginf=0.0)
            return (torch.round(at).clamp(-2**30, 2**30).long() - reach).clamp(0, size - box)

        y0, x0 = first(v["cen_y"], origin[0], height, rows), first(v["cen_x"], origin[1], width, cols)
        ys = y0[:, None] + torch.arange(rows, device=device)
        xs = x0[:, None] + torch.arange(cols, device=device)
        flat = (ys[:, :, None] * width + xs[:, None, :]).reshape(batch, -1)
    count = flat.shape[1]
    short = -count % _VECTOR_BLOCK
    if short:
        flat = torch.cat([flat, flat[:, -1:].expand(batch, short)], dim=1)
    r = r_ell.reshape(batch, -1).gather(1, flat)
    inner, outer = r1.reshape(batch, 1), r2.reshape(batch, 1)
    if slopes:
        window, *derivatives = smooth_window_and_slopes(r, inner, outer)
        return WindowBox(flat, count, window, tuple(derivatives))
    return WindowBox(flat, count, smooth_window(r, inner, outer))


def core_radii(
    profile, v: Mapping[str, Tensor], layout: ConvolutionLayout | None, settings: RenderSettings
) -> tuple[Tensor, Tensor]:
    """Window radii ``(r1, r2)`` per galaxy, shape (B, 1, 1).

    They depend (differentiably) on the axis ratio and, near the cutout edge, on
    the centre (``layout`` None: a core integrated in real space, which no FFT
    box limits). The split is exact for any window, but its small sampling error
    changes with the window: keeping the radii in the derivative makes the
    Jacobian the exact derivative of the image that is computed.
    """
    q = v["axis_r"]
    sharp = torch.clamp(q, max=1.0)
    stretch = torch.clamp(q, min=1.0)
    r1 = settings.core_inner / sharp
    r2 = r1 + settings.core_width / sharp
    room = settings.max_core_radius if layout is None else torch.clamp(
        layout.core_room(v["cen_y"], v["cen_x"]), max=settings.max_core_radius)
    limit = room / stretch
    limit = limit.clamp_min(0.5)
    r_trunc = profile.truncation_radius(v)
    if r_trunc is not None:
        # in real space (no layout) nothing limits the core: a hard edge always goes into it whole
        whole = r_trunc <= limit if layout is not None else torch.ones_like(r_trunc, dtype=torch.bool)
        r1 = torch.where(whole, r_trunc, r1)
        r2 = torch.where(whole, r_trunc, r2)
    scale = torch.clamp(limit / r2, max=1.0)
    return (r1 * scale).expand_as(q), (r2 * scale).expand_as(q)


def core_radii_q_slopes(
    profile, v: Mapping[str, Tensor], layout: ConvolutionLayout | None, settings: RenderSettings
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`core_radii` and their derivatives with respect to the axis ratio: ``r1, r2, dr1/dq, dr2/dq``.

    Written out with the clamps' one-sided slopes (as autograd takes them) for a
    profile without a truncation radius: forward mode on these (B, 1, 1) values
    costs milliseconds of dispatch per call in torch 2.x, more than the images.
    """
    if profile.truncation_radius(v) is not None:
        raise ValueError("core_radii_q_slopes: only for profiles without a truncation radius")
    q = v["axis_r"]
    sharp = torch.clamp(q, max=1.0)
    d_sharp = (q <= 1.0).to(q.dtype)
    stretch = torch.clamp(q, min=1.0)
    d_stretch = (q >= 1.0).to(q.dtype)
    r1 = settings.core_inner / sharp
    r2 = r1 + settings.core_width / sharp
    dr1 = -r1 / sharp * d_sharp
    dr2 = -r2 / sharp * d_sharp
    room = settings.max_core_radius if layout is None else torch.clamp(
        layout.core_room(v["cen_y"], v["cen_x"]), max=settings.max_core_radius)
    limit = room / stretch
    d_limit = -limit / stretch * d_stretch * (limit >= 0.5).to(q.dtype)
    limit = limit.clamp_min(0.5)
    ratio = limit / r2
    d_ratio = (d_limit - ratio * dr2) / r2 * (ratio <= 1.0).to(q.dtype)
    scale = torch.clamp(ratio, max=1.0)
    expand = lambda t: t.expand_as(q)  # noqa: E731
    return (expand(r1 * scale), expand(r2 * scale), expand(dr1 * scale + r1 * d_ratio),
            expand(dr2 * scale + r2 * d_ratio))


def core_node_factor_slope(r1: Tensor, r2: Tensor, dr1: Tensor, dr2: Tensor, settings: RenderSettings) -> Tensor:
    """Derivative (B, R) of :func:`core_node_factor` along a change ``(dr1, dr2)`` of the window radii."""
    t, w, _, _ = core_tables(settings, r2.dtype, r2.device)
    batch = r2.shape[0]
    r1f, r2f, dr1f, dr2f = (x.reshape(batch, 1) for x in (r1, r2, dr1, dr2))
    nodes = r2f * t * t
    window, dw_dr, dw_dr1, dw_dr2 = smooth_window_and_slopes(nodes, r1f, r2f)
    d_window = dw_dr * (t * t) * dr2f + dw_dr1 * dr1f + dw_dr2 * dr2f
    # node factor = 2 pi w(r2 t^2) * 2 r2^2 t^3 * weight
    return 2.0 * math.pi * (2.0 * t**3 * w) * (d_window * r2f * r2f + window * 2.0 * r2f * dr2f)


def core_nodes(r2: Tensor, settings: RenderSettings) -> Tensor:
    """Radial quadrature nodes ``r = r2 t^2`` of each galaxy's core, shape (B, R)."""
    t, _, _, _ = core_tables(settings, r2.dtype, r2.device)
    return r2.reshape(-1, 1) * t * t


@dataclass
class CoreMap:
    """The linear map from a profile's brightness at the core nodes to the core's spectrum.

    Everything in it depends only on the geometry (centre, PA, q) and the window:
    the quadrature factors, the table position of every FFT frequency (an interval
    and the place in it), and the phase. Applying it is a matrix product, four
    gathers and a cubic, for any number of brightness vectors at once (a leading
    dimension), which is how the derivatives with respect to a profile's shape
    parameters are mapped to spectra without pushing tangents through the geometry.
    """

    node_factor: Tensor  # (B, R): 2 pi w(r) r dr/dt, Gauss-Legendre weight included
    index: Tensor  # (B, F): the table interval of each frequency
    frac: Tensor  # (B, F): the frequency's place in its interval, in [0, 1]
    offset: Tensor  # (B, F): that place before it was clamped to [0, 1] (beyond the table's end)
    phase: Tensor  # (B, N, M'): q exp(-i k . x0)
    j0m: Tensor
    dj0m: Tensor
    kc: Tensor  # (B, N, M'): the stretched frequency
    sin: Tensor  # (B, 1, 1): the position angle's sine and cosine
    cos: Tensor
    ky: Tensor  # the frequencies (N, 1) and (1, M'), or both (1, F)
    kx: Tensor
    kappa_step: float = 1.0

    # the frequency along the major and minor axes, for the geometry derivatives (drawn again
    # when a Jacobian's PA or q column asks, instead of kept for every model image)
    @functools.cached_property
    def _along_axes(self) -> tuple[Tensor, Tensor]:
        return along_axes(self.kx, self.ky, self.sin, self.cos)

    @property
    def k_major(self) -> Tensor:
        return self._along_axes[0]

    @property
    def k_minor(self) -> Tensor:
        return self._along_axes[1]

    def apply(self, radial_at_nodes: Tensor, out: Tensor | None = None) -> Tensor:
        """Core spectra (..., B, N, M') of brightness at the nodes (..., B, R) (into ``out`` if given)."""
        return self.apply_weighted(radial_at_nodes * self.node_factor, out=out)

    def apply_weighted(self, g: Tensor, out: Tensor | None = None) -> Tensor:
        """Core spectra (..., B, N, M') of quadrature-weighted node values ``g`` (..., B, R)."""
        c0, c1, c2, c3 = self._coefficients(g)
        f = self.frac
        # the interval's cubic in its place f, by Horner
        value = torch.addcmul(c2, c3, f).mul_(f).add_(c1).mul_(f).add_(c0)
        return torch.mul(value.reshape(g.shape[:-2] + self.phase.shape), self.phase, out=out)

    def kappa_slope(self, g: Tensor) -> Tensor:
        """dC/dkappa (B, F) at every frequency, of weighted node values ``g`` (B, R), as interpolated.

        The derivative of the cubic with respect to the place in its interval
        (zero where that place is clamped at the table's end), so that it is the
        derivative of what :meth:`apply` computes.
        """
        c1, c2, c3 = self._coefficients(g, first=1)
        f = self.frac
        slope = torch.addcmul(2.0 * c2, c3, 3.0 * f).mul_(f).add_(c1)
        moves = (self.offset >= 0.0) & (self.offset <= 1.0)
        return torch.where(moves, slope, 0.0).reshape(g.shape[:-2] + self.phase.shape)

    def _coefficients(self, g: Tensor, first: int = 0) -> list[Tensor]:
        """The cubic Hermite interpolant of the tabulated transform of ``g``, as each frequency's interval's
        polynomial coefficients ``c0 + c1 f + c2 f^2 + c3 f^3`` (f in table steps), gathered: (..., B, F) each,
        from ``c<first>`` on.

        From the table's values V and slopes S (times the step) at the interval's ends:
        c0 = V0, c1 = S0, c2 = 3 (V1 - V0) - 2 S0 - S1, c3 = 2 (V0 - V1) + S0 + S1.
        """
        values = rowwise_matmul(g, self.j0m)  # (..., B, K): C at kappa_i = i * step
        slopes = rowwise_matmul(g, self.dj0m) * self.kappa_step  # (..., B, K): dC/dkappa times the step
        batch, n_kappa = values.shape[-2:]
        values = values.reshape(-1, batch, n_kappa)
        slopes = slopes.reshape(-1, batch, n_kappa)
        v0, v1, s0, s1 = values[..., :-1], values[..., 1:], slopes[..., :-1], slopes[..., 1:]
        rise = v1 - v0
        table = (v0, s0, 3.0 * rise - 2.0 * s0 - s1, s0 + s1 - 2.0 * rise)
        idx = self.index.expand(values.shape[0], *self.index.shape)
        return [torch.gather(c, 2, idx) for c in table[first:]]


def along_axes(kx: Tensor, ky: Tensor, sin: Tensor, cos: Tensor) -> tuple[Tensor, Tensor]:
    """A frequency's components along the major and minor axes of a galaxy at position angle (sin, cos)."""
    return -kx * sin + ky * cos, kx * cos + ky * sin


def core_map(
    v: Mapping[str, Tensor],
    r1: Tensor,
    r2: Tensor,
    ky: Tensor,
    kx: Tensor,
    origin: tuple[float, float],
    settings: RenderSettings,
    band: int = 1,
) -> CoreMap:
    """The :class:`CoreMap` of galaxies with geometry ``v`` and window radii ``(r1, r2)``.

    Parameters
    ----------
    v
        The profile's parameter values (only centre, PA and q are used), (B, 1, 1).
    r1, r2
        Window radii from :func:`core_radii`.
    ky, kx
        Angular frequencies, shapes (N, 1) and (1, M') (a grid), or both (1, F)
        (a list of frequencies).
    origin
        1-based (y, x) coordinate of index (0, 0) of the FFT box.
    band
        The frequencies reach ``band`` times the sampling band (a PSF sampled
        that many times finer than the data).
    """
    dtype, device = r2.dtype, r2.device
    _, _, j0m, dj0m = core_tables(settings, dtype, device, band)
    batch = r2.shape[0]
    node_factor = core_node_factor(r1, r2, settings)
    q = v["axis_r"]
    sin, cos = torch.sin(v["pa"]), torch.cos(v["pa"])
    k_major, k_minor = along_axes(kx, ky, sin, cos)
    kc = torch.sqrt((k_major * k_major + (q * k_minor) ** 2).clamp_min(1e-30))
    del k_major, k_minor  # the CoreMap draws them again where a Jacobian needs them
    kappa = (kc * r2) / settings.kappa_step
    n_kappa = j0m.shape[1]
    # a non-finite trial parameter must give a non-finite image (which the
    # optimiser rejects), not an out-of-range table index
    index = torch.nan_to_num(kappa.detach(), nan=0.0, posinf=0.0, neginf=0.0).floor().clamp(0, n_kappa - 2)
    offset = (kappa - index).reshape(batch, -1)
    frac = offset.clamp(0.0, 1.0)
    phase = shift_phase(q.to(kc.dtype), v["cen_y"], v["cen_x"], ky, kx, origin).expand(batch, *kc.shape[-2:])
    return CoreMap(node_factor, index.long().reshape(batch, -1), frac, offset, phase, j0m, dj0m, kc, sin, cos, ky, kx,
                   kappa_step=settings.kappa_step)


def core_node_factor(r1: Tensor, r2: Tensor, settings: RenderSettings) -> Tensor:
    """Quadrature factors (B, R) of the core's nodes: 2 pi w(r) r dr/dt times the Gauss-Legendre weight.

    With ``r = r2 t^2``, ``dr = 2 r2 t dt`` and ``C(kappa) = sum_j g_j J0(kappa t_j^2)``.
    """
    t, w, _, _ = core_tables(settings, r2.dtype, r2.device)
    batch = r2.shape[0]
    r2f = r2.reshape(batch, 1)
    nodes = r2f * t * t
    return 2.0 * math.pi * smooth_window(nodes, r1.reshape(batch, 1), r2f) * nodes * (2.0 * r2f * t) * w


def smooth_window_and_slopes(r: Tensor, r1: Tensor, r2: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`smooth_window` and its partial derivatives with respect to ``r``, ``r1`` and ``r2``.

    Written out (``psi'(x) = psi(x) / x^2``) so that a Jacobian needs no tangent
    through the window; zero where the window is flat (as the clamps make it).
    """
    width = (r2 - r1).clamp_min(1e-12)
    t = ((r - r1) / width).clamp(0.0, 1.0)
    z, s, u, cut = _window_exponent(t)
    sig = torch.sigmoid(z)
    window = torch.where(t >= 1.0, 0.0, torch.where(t <= 0.0, 1.0, sig))
    # dw/dt = -w (1 - w) (1/(1-t)^2 + 1/t^2); where the exponent was cut, w (1 - w) < e^-80
    dw_dt = torch.where(cut, 0.0, -(sig * (1.0 - sig)) * (1.0 / (u * u) + 1.0 / (s * s)))
    dw_dr = dw_dt / width
    return window, dw_dr, dw_dr * (t - 1.0), -dw_dr * t


def shift_phase(spectrum: Tensor, cen_y: Tensor, cen_x: Tensor, ky: Tensor, kx: Tensor, origin) -> Tensor:
    """Multiply a centred spectrum (B, N, M') by ``exp(-i k . x0)``: a source at (cen_x, cen_y).

    ``origin`` is the 1-based (y, x) coordinate of index (0, 0) of the FFT box. On
    a grid (``ky`` a column (N, 1), ``kx`` a row (1, M')) the phase is separable in
    x and y, so only (B, N) + (B, M') exponentials are taken; ``ky`` and ``kx``
    of one shape (1, F) are a list of frequencies, each its own exponential.
    """
    batch = cen_y.shape[0]
    oy, ox = origin
    if ky.shape[-1] != 1 or kx.shape[-2] != 1:
        phase = ky * (cen_y.reshape(batch, 1, 1) - oy) + kx * (cen_x.reshape(batch, 1, 1) - ox)
        return spectrum * torch.complex(torch.cos(phase), -torch.sin(phase))
    phase_y = ky.reshape(1, -1) * (cen_y.reshape(batch, 1) - oy)
    phase_x = kx.reshape(1, -1) * (cen_x.reshape(batch, 1) - ox)
    ey = torch.complex(torch.cos(phase_y), -torch.sin(phase_y))[:, :, None]
    ex = torch.complex(torch.cos(phase_x), -torch.sin(phase_x))[:, None, :]
    return spectrum * ey * ex
