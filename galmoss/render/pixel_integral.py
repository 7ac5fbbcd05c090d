r"""Exact pixel integrals of elliptical profiles (images without a PSF).

Without a PSF the model of a pixel is the integral of the profile over the
pixel's square. For a profile that depends on the elliptical radius, the map
``u = (x_maj, x_min / q)`` turns it into a circular function ``S(|u|)`` and each
pixel into a parallelogram (area element ``dx dy = q du``). The integral of a
circular function over a polygon is a sum over its edges of the integral over
the triangle (origin, a, b):

.. math::

    \int_{\triangle(0,a,b)} S(|u|)\,du = (a \times b) \int_0^1
        \frac{G(|p(\lambda)|)}{|p(\lambda)|^2}\,d\lambda,\qquad
    p(\lambda) = a + \lambda (b - a),\quad G(R) = \int_0^R S(r)\,r\,dr,

signed by the triangle's orientation, so it holds whether or not the origin is
inside the pixel. ``G`` is tabulated per galaxy on a logarithmic radius grid
(cumulative Gauss-Legendre quadrature, cubic Hermite interpolation in log r with
the exact slope ``S(r) r^2``); ``G(R)/R^2`` stays finite at ``R = 0`` even at a
Sersic cusp. Each edge is split at its point nearest the origin and integrated
with nodes clustered there. Boxy isophotes add a supersampled correction for
``S(r_box) - S(r_ell)``, whose cusp cancels to first order.
"""

from __future__ import annotations

import math

import torch

from ..batched import weighted_sum
from ..profiles.base import EllipticalProfile
from ..profiles.special import gauss_legendre

Tensor = torch.Tensor

_TABLE_POINTS = 384
_TABLE_R_MIN = 1e-4
_EDGE_NODES = 12
#: edge nodes of the core's integrals (the core is compact: 8 reach the 12's accuracy, measured)
_CORE_EDGE_NODES = 8
_CHUNK_PIXELS = 8192


def _cumulative_table(profile, v, r_max: Tensor):
    """log r grid (B, N), G(r) and dG/dlog r on it."""
    dtype, device = r_max.dtype, r_max.device
    batch = r_max.shape[0]
    s = torch.linspace(0.0, 1.0, _TABLE_POINTS, dtype=dtype, device=device)
    log_lo = math.log(_TABLE_R_MIN)
    log_r = log_lo + s[None, :] * (torch.log(r_max.reshape(batch, 1)) - log_lo)  # (B, N)
    r = torch.exp(log_r)
    t, w = gauss_legendre(4, dtype, device)
    lo = torch.cat([torch.zeros_like(r[:, :1]), r[:, :-1]], dim=1)
    nodes = lo[..., None] + (r - lo)[..., None] * t  # (B, N, 4)
    s_nodes = profile.radial(nodes.reshape(batch, 1, -1), v).reshape(nodes.shape)
    # the first interval [0, r_min] starts at the cusp: refine it with r = r_min t^2
    pieces = (s_nodes * nodes * w).sum(-1) * (r - lo)
    t2, w2 = gauss_legendre(16, dtype, device)
    first = r[:, :1] * t2**2
    s_first = profile.radial(first.reshape(batch, 1, -1), v).reshape(first.shape)
    pieces = torch.cat([(s_first * first * 2.0 * r[:, :1] * t2 * w2).sum(-1, keepdim=True), pieces[:, 1:]], dim=1)
    g = torch.cumsum(pieces, dim=1)
    slope = profile.radial(r.reshape(batch, 1, -1), v).reshape(r.shape) * r * r
    return log_r, g, slope


def _interp_g_over_r2(rho: Tensor, log_r: Tensor, g: Tensor, slope: Tensor, rows: Tensor | None = None) -> Tensor:
    """G(rho)/rho^2 from the table, rho of shape (B, P); finite as rho -> 0.

    With ``rows`` (R,), rho is (R, P) and its row i reads the table of galaxy ``rows[i]``.
    """
    batch, n = log_r.shape
    log_lo = log_r[:, :1]
    step = log_r[:, 1:2] - log_r[:, :1]
    log_hi = log_r[:, -1:]
    if rows is not None:
        log_lo, step, log_hi = log_lo[rows], step[rows], log_hi[rows]
    r_min = torch.exp(log_lo)
    rho_c = torch.maximum(rho, r_min)
    # beyond the table's end (a truncated profile's edge) G is constant
    u = (torch.minimum(torch.log(rho_c), log_hi) - log_lo) / step
    idx = torch.nan_to_num(u.detach(), nan=0.0, posinf=0.0, neginf=0.0).floor().clamp(0, n - 2)
    frac = (u - idx).clamp(0.0, 1.0)
    idx = idx.long()
    if rows is None:
        g0, g1 = torch.gather(g, 1, idx), torch.gather(g, 1, idx + 1)
        d0, d1 = torch.gather(slope, 1, idx) * step, torch.gather(slope, 1, idx + 1) * step
    else:  # one flat gather from the galaxies' tables
        flat = idx + (rows * n).unsqueeze(1)
        g_flat, s_flat = g.reshape(-1), slope.reshape(-1)
        g0, g1 = g_flat[flat], g_flat[flat + 1]
        d0, d1 = s_flat[flat] * step, s_flat[flat + 1] * step
    f2, one = frac * frac, 1.0 - frac
    value = (1.0 + 2.0 * frac) * one * one * g0 + frac * one * one * d0 + f2 * (3.0 - 2.0 * frac) * g1 + f2 * (frac - 1.0) * d1
    # below the table G(rho) ~ G(r_min) (rho / r_min)^2: G/rho^2 is constant there
    return value / (rho_c * rho_c)


def _edge_integrals(ax, ay, bx, by, log_r, g, slope, t, w, rows: Tensor | None = None) -> Tensor:
    """Signed integral over triangles (0, a, b); inputs (B, P) (or (R, P) with ``rows``), returns the same."""
    ex, ey = bx - ax, by - ay
    length2 = (ex * ex + ey * ey).clamp_min(1e-30)
    lam_star = (-(ax * ex + ay * ey) / length2).clamp(0.0, 1.0)
    cross = ax * by - ay * bx
    total = torch.zeros_like(ax)
    batch = ax.shape[0]
    # two pieces, [lam*, 1] and [0, lam*], nodes clustered at lam* (lam = lam* + span t^2)
    # (lengths are written without abs(): its zero derivative at 0 would drop the
    # moving end point of an empty piece from the derivative)
    for span, length in ((1.0 - lam_star, 1.0 - lam_star), (-lam_star, lam_star)):
        lam = lam_star[..., None] + span[..., None] * t * t  # (B, P, K)
        px = ax[..., None] + lam * ex[..., None]
        py = ay[..., None] + lam * ey[..., None]
        rho = torch.sqrt((px * px + py * py).clamp_min(1e-30))
        vals = _interp_g_over_r2(rho.reshape(batch, -1), log_r, g, slope, rows).reshape(rho.shape)
        total = total + (vals * 2.0 * t * w).sum(-1) * length
    return cross * total


def _nonempty_pieces(lam_raw: Tensor) -> tuple[Tensor, Tensor]:
    """The pieces [lam*, 1] and [0, lam*] of flat edges that are not empty, as one list.

    Where the point nearest the origin is an end of an edge (and does not move:
    ``lam_raw`` outside [0, 1]) one piece has no length, and adds nothing, nor
    to the derivatives. Returns the edge of each piece and ``sign``: -1 for a
    first piece, +1 for a second (the rate of its length with lam*).
    """
    with torch.no_grad():
        first = torch.nonzero(~(lam_raw > 1.0)).squeeze(1)
        second = torch.nonzero(lam_raw >= 0.0).squeeze(1)
    sign = torch.cat([-torch.ones_like(first, dtype=lam_raw.dtype), torch.ones_like(second, dtype=lam_raw.dtype)])
    return torch.cat([first, second]), sign


def _flat_edge_integrals(ax, ay, bx, by, log_r, g, slope, t, w, rows: Tensor) -> Tensor:
    """:func:`_edge_integrals` of flat edges (E,) of galaxies ``rows``: only their non-empty pieces."""
    ex, ey = bx - ax, by - ay
    length2 = (ex * ex + ey * ey).clamp_min(1e-30)
    lam_raw = -(ax * ex + ay * ey) / length2
    lam_star = lam_raw.clamp(0.0, 1.0)
    edge, sign = _nonempty_pieces(lam_raw)
    # a first piece spans 1 - lam*, a second -lam*: length -sign span (no abs(), whose zero derivative
    # at 0 would drop the moving end point of an empty piece)
    span = torch.where(sign < 0, 1.0 - lam_star[edge], -lam_star[edge])
    lam = (lam_star[edge])[:, None] + span[:, None] * (t * t)  # (P, K)
    px = ax[edge][:, None] + lam * ex[edge][:, None]
    py = ay[edge][:, None] + lam * ey[edge][:, None]
    rho = torch.sqrt((px * px + py * py).clamp_min(1e-30))
    vals = _interp_g_over_r2(rho, log_r, g, slope, rows[edge])
    pieces = (vals * 2.0 * t * w).sum(-1) * (-sign * span)
    return (ax * by - ay * bx) * torch.zeros_like(ax).index_add(0, edge, pieces)


def pixel_integrated_image(profile, v, grid, box_is_zero: bool) -> Tensor:
    """Integrals of an elliptical profile over the pixels of ``grid`` (y, x), shape (B, H, W).

    Computed in float64 whatever the input precision: a pixel far from the centre is
    the small difference of triangle integrals of the order of the total flux,
    which float32 cannot resolve. The result is returned in the input precision.
    """
    out_dtype = grid[0].dtype
    v = {k: t.double() for k, t in v.items()}
    grid = (grid[0].double(), grid[1].double())
    return _pixel_integrated_image(profile, v, grid, box_is_zero).to(out_dtype)


def _pixel_integrated_image(profile, v, grid, box_is_zero: bool) -> Tensor:
    y, x = grid
    q = v["axis_r"]
    dtype, device = y.dtype, y.device
    batch = q.shape[0]
    # table out to the farthest pixel corner, in units of the stretched radius
    corners_y = torch.stack([y.min() - 0.5, y.min() - 0.5, y.max() + 0.5, y.max() + 0.5])
    corners_x = torch.stack([x.min() - 0.5, x.max() + 0.5, x.min() - 0.5, x.max() + 0.5])
    cmaj, cmin = profile.major_minor(corners_y, corners_x, v)
    r_max = (torch.sqrt(cmaj**2 + (cmin / q) ** 2).amax(dim=(-2, -1), keepdim=True) * 1.01 + 1.0).detach()
    r_trunc = profile.truncation_radius(v)
    if r_trunc is not None:
        # End the table exactly at a truncation radius: the kink of G there then
        # sits on a node and moves with the parameter, and the table's extent does
        # not depend on the geometry (which would make the image depend on the
        # centre through interpolation error that no derivative sees).
        r_max = r_trunc.expand_as(r_max)
    log_r, g, slope = _cumulative_table(profile, v, r_max.reshape(batch))
    t, w = gauss_legendre(_EDGE_NODES, dtype, device)
    yy = y.reshape(-1)
    xx = x.reshape(-1)
    out = []
    for start in range(0, yy.numel(), _CHUNK_PIXELS):
        py_, px_ = yy[start : start + _CHUNK_PIXELS], xx[start : start + _CHUNK_PIXELS]
        # pixel corners counter-clockwise in (x, y), mapped to stretched coordinates
        cy = torch.stack([py_ - 0.5, py_ - 0.5, py_ + 0.5, py_ + 0.5])
        cx = torch.stack([px_ - 0.5, px_ + 0.5, px_ + 0.5, px_ - 0.5])
        u_maj, u_min = profile.major_minor(cy[:, None, :], cx[:, None, :], {k: t_.reshape(1, batch, 1) for k, t_ in v.items() if t_.numel() == batch})  # scalars; vectors are not geometry
        u_min = u_min / q.reshape(1, batch, 1)
        acc = torch.zeros((batch, py_.numel()), dtype=dtype, device=device)
        for k in range(4):
            j = (k + 1) % 4
            acc = acc + _edge_integrals(u_maj[k], u_min[k], u_maj[j], u_min[j], log_r, g, slope, t, w)
        out.append(acc)
    # The map (x, y) -> (x_maj, x_min / q) has determinant -1/q: it reverses
    # orientation, and dx dy = q du.
    image = -q.reshape(batch, 1) * torch.cat(out, dim=1)
    image = image.reshape((batch,) + tuple(y.shape))
    if not box_is_zero:
        image = image + boxy_difference_means(profile, v, grid)
    return image


#: Graded supersampling of the boxy/Fourier difference near the centre: (half width in
#: pixels of a square patch around the centre's pixel, its samples per axis as a multiple
#: of the whole grid's); a pixel within half - 1/2 of the centre takes the patch's
#: sampling whole, one farther a share falling to 0 at half + 1/2. The difference has
#: the profile's cusp times the radius perturbation; with 4 x 4 samples a pixel
#: everywhere a Sersic n >= 4 was drawn 1-2 % of its peak off (measured against
#: 192 x 192 samples at the centre), with these patches within a few 1e-4
#: (docs/validation.md).
CENTRE_REFINEMENT: tuple[tuple[int, int], ...] = ((6, 3), (2, 9), (1, 18))


def _difference(profile, v, y: Tensor, x: Tensor) -> Tensor:
    x_maj, x_min = profile.major_minor(y, x, v)
    return profile.radial(profile.boxy_radius(x_maj, x_min, v["axis_r"], v["box"]), v) - profile.radial(
        profile.elliptical_radius(x_maj, x_min, v["axis_r"]), v
    )


#: samples per galaxy of one evaluation of the difference (more when one offset of the whole grid
#: holds more): few evaluations, since each operation has a fixed cost in forward mode, in memory
#: bounded as a 256 x 256 grid's one evaluation is (a Fourier-moded galaxy on an 80 x 80 box: 29
#: evaluations a drawing with 8,192, 4 now; docs/validation.md)
_PATCH_SAMPLES = 65536


def _supersampled(profile, v, y: Tensor, x: Tensor, nodes: int) -> Tensor:
    """Means of the difference over the unit pixels centred at (y, x), by a ``nodes`` x ``nodes`` Gauss-Legendre rule.

    Away from the centre (the patches of :func:`boxy_difference_means` take it) the
    difference is smooth on the pixel scale: against 12 x 12 samples a pixel, 2 x 2
    points draw boxy and Fourier-mode Sersics (n 0.7-5, r_e 1.5-8 px) within 4.4e-6 of
    the peak through a PSF, better than the 4 x 4 midpoint samples they replace
    (6.6e-6), and 3 x 3 within 2.9e-6 without one (6 x 6 midpoints: 4.5e-6). The points
    ride along the last axis, as many per evaluation as :data:`_PATCH_SAMPLES` allows.
    """
    t, w = gauss_legendre(nodes, y.dtype, y.device)
    oy, ox = (t - 0.5).repeat_interleave(nodes), (t - 0.5).repeat(nodes)
    weights = w.repeat_interleave(nodes) * w.repeat(nodes)
    per = max(1, _PATCH_SAMPLES // max(1, y.shape[-2] * y.shape[-1]))
    acc = None
    for start in range(0, nodes * nodes, per):
        gy, gx, gw = oy[start : start + per], ox[start : start + per], weights[start : start + per]
        d = _difference(profile, v, (y.unsqueeze(-1) + gy).flatten(-2), (x.unsqueeze(-1) + gx).flatten(-2))
        part = (d.reshape(*d.shape[:-1], y.shape[-1], gy.numel()) * gw).sum(-1)
        acc = part if acc is None else acc + part
    return acc


def _patch_means(profile, v, py: Tensor, px: Tensor, factor: int) -> Tensor:
    """Means over the unit pixels at rows ``py`` (B, S, 1) x columns ``px`` (B, 1, S), from factor^2 samples.

    Samples ride along the patch's axes (pixel-major), a group of row offsets
    per evaluation: a fine patch evaluated offset by offset would cost more
    Python-level operations than the whole image.
    """
    offsets = (torch.arange(factor, dtype=py.dtype, device=py.device) + 0.5) / factor - 0.5
    b, s = px.shape[0], px.shape[-1]
    xs = (px.unsqueeze(-1) + offsets).reshape(b, 1, s * factor)
    rows = max(1, min(factor, _PATCH_SAMPLES // (s * s * factor)))
    total = None
    for start in range(0, factor, rows):
        group = offsets[start : start + rows]
        ys = (py.unsqueeze(-1) + group).reshape(py.shape[0], py.shape[1] * group.numel(), 1)
        d = _difference(profile, v, ys, xs)  # (B, S * g, S * factor)
        part = d.reshape(d.shape[0], py.shape[1], group.numel(), s, factor).sum((2, 4))
        total = part if total is None else total + part
    return total / factor**2


def boxy_difference_means(
    profile, v, grid, factor: int = 6, refinement: tuple[tuple[int, int], ...] = CENTRE_REFINEMENT
) -> Tensor:
    """Pixel means of S(r_box) - S(r_ell) on ``grid`` (unit pixels), shape (B, H, W).

    The first-order parts of the two cusps cancel, but the rest is still
    steep at the centre: ``factor`` x ``factor`` samples a pixel everywhere,
    and finer ones in nested patches around each galaxy's centre
    (``refinement``), placed per galaxy by gathering patch coordinates.
    """
    y, x = grid
    image = _supersampled(profile, v, y, x, max(2, factor // 2))
    batch, h, w = image.shape
    if not refinement or h < 2 or w < 2:
        return image
    y0, x0 = y[0, 0].detach(), x[0, 0].detach()
    cy_value = v["cen_y"].reshape(-1).expand(batch)
    cx_value = v["cen_x"].reshape(-1).expand(batch)
    # the patch follows the centre: its pixels come from the detached centre, and
    # each level's correction is weighted down to 0 at the patch's edge by the
    # distance from the (differentiable) centre, so that the image stays a
    # continuous function of the centre as pixels enter and leave a patch
    iy_c = torch.round(cy_value.detach() - y0).long().clamp(0, h - 1)
    ix_c = torch.round(cx_value.detach() - x0).long().clamp(0, w - 1)
    flat_image = image.reshape(batch, -1)
    for half, multiple in refinement:
        fine_factor = factor * multiple
        k = torch.arange(-half, half + 1, device=y.device)
        iy, ix = iy_c[:, None] + k, ix_c[:, None] + k  # (B, S)
        inside = ((iy >= 0) & (iy < h))[:, :, None] & ((ix >= 0) & (ix < w))[:, None, :]
        iy, ix = iy.clamp(0, h - 1), ix.clamp(0, w - 1)
        py = (y0 + iy.to(y.dtype))[:, :, None]
        px = (x0 + ix.to(x.dtype))[:, None, :]
        index = (iy[:, :, None] * w + ix[:, None, :]).reshape(batch, -1)
        finer = _patch_means(profile, v, py, px, fine_factor).reshape(batch, -1)
        current = torch.gather(flat_image, 1, index)
        # 1 within half - 1/2 pixel of the centre, falling to 0 at half + 1/2 (the edge a pixel leaves by)
        # (a smoothstep: no kink for the derivatives to see)
        wy = torch.clamp(half + 0.5 - (py - cy_value[:, None, None]).abs(), 0.0, 1.0)
        wx = torch.clamp(half + 0.5 - (px - cx_value[:, None, None]).abs(), 0.0, 1.0)
        weight = (wy * wy * (3.0 - 2.0 * wy) * wx * wx * (3.0 - 2.0 * wx)).reshape(batch, -1)
        change = torch.where(inside.reshape(batch, -1), weight * (finer - current), torch.zeros_like(finer))
        flat_image = flat_image.scatter_add(1, index, change)
    return flat_image.reshape(batch, h, w)


class _Windowed:
    """A profile's radial function times the core window: the part :func:`core_pixel_integrals` integrates."""

    def __init__(self, profile, r1: Tensor, r2: Tensor) -> None:
        self.profile, self.r1, self.r2 = profile, r1, r2

    def radial(self, r: Tensor, v) -> Tensor:
        from .core import smooth_window

        batch = r.shape[0]
        r1, r2 = self.r1.reshape(batch, 1, 1), self.r2.reshape(batch, 1, 1)
        return self.profile.radial(r, v) * smooth_window(r, r1, r2)


def _core_pixels(profile, v, r2: Tensor, y: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """The pixels whose square can reach the ellipse ``r <= r2``: (galaxy, flat pixel) index pairs, one flat list."""
    q = v["axis_r"]
    batch = q.shape[0]
    with torch.no_grad():
        x_maj, x_min = profile.major_minor(y, x, v)
        r_centre = profile.elliptical_radius(x_maj, x_min, q).reshape(batch, -1)
        # a pixel corner lies within sqrt(2)/2 of its centre: at most that over min(q, 1) in the stretched frame
        reach = (r2.reshape(batch, 1) + 0.7072 / torch.clamp(q, max=1.0).reshape(batch, 1)) * 1.0001
        # every galaxy's own pixels (a flattened galaxy's many pixels do not pad the others')
        return torch.nonzero(r_centre <= reach, as_tuple=True)


def _shared_edges(rows: Tensor, pixels: Tensor, h: int, w: int):
    """Each pixel edge of the list once: keys of the bottom (E_h) and left (E_v) edges, and each pixel's four.

    The bottom edges of the list and of the pixels above it, the left edges of the
    list and of the pixels to its right, keyed on a grid one row and column
    larger; a pixel is E_h(i, j) - E_h(i + 1, j) + E_v(i, j) - E_v(i, j + 1),
    its square counter-clockwise. Returns ``per`` (keys a galaxy), the keys and
    the inverse indices (the list's own edges first, then its neighbours').
    """
    with torch.no_grad():
        iy, ix = pixels // w, pixels % w
        per = (h + 1) * (w + 1)
        key = rows * per + iy * (w + 1) + ix
        keys_h, inv_h = torch.unique(torch.cat([key, key + (w + 1)]), return_inverse=True)
        keys_v, inv_v = torch.unique(torch.cat([key, key + 1]), return_inverse=True)
    return per, keys_h, inv_h, keys_v, inv_v


def _edge_ends(keys: Tensor, per: int, w: int, y0: Tensor, x0: Tensor, horizontal: bool):
    """The galaxy and the end points (ay, ax, by, bx) of the edges ``keys`` (pixel coordinates)."""
    gal = keys // per
    cell = keys % per
    cy_ = y0 + (cell // (w + 1)).to(y0.dtype) - 0.5  # the edge's lower or left end, pixel corner coordinates
    cx_ = x0 + (cell % (w + 1)).to(y0.dtype) - 0.5
    if horizontal:  # (x - 1/2, y - 1/2) -> (x + 1/2, y - 1/2)
        return gal, cy_, cx_, cy_, cx_ + 1.0
    return gal, cy_ + 1.0, cx_, cy_, cx_  # (x - 1/2, y + 1/2) -> (x - 1/2, y - 1/2)


def core_pixel_integrals(profile, v, r1: Tensor, r2: Tensor, grid,
                         listed: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """Exact integrals of the core ``I(r) w(r)`` over the pixels of ``grid`` (y, x), shape (B, H, W).

    The core vanishes beyond ``r2``: only the pixels whose square can reach the
    ellipse ``r <= r2`` are integrated (picked from the detached geometry, one
    flat list over the batch; ``listed``: those pixels, if already known), the
    rest are exactly 0. Each pixel edge is integrated once. Computed in float64,
    returned in the input precision.
    """
    out_dtype = grid[0].dtype
    v = {k: t.double() for k, t in v.items()}
    r1, r2 = r1.double(), r2.double()
    y, x = grid[0].double(), grid[1].double()
    q = v["axis_r"]
    batch = q.shape[0]
    h, w = y.shape
    rows, pixels = _core_pixels(profile, v, r2, y, x) if listed is None else listed
    windowed = _Windowed(profile, r1, r2)
    log_r, g, slope = _cumulative_table(windowed, v, r2.reshape(batch))
    t, wts = gauss_legendre(_CORE_EDGE_NODES, y.dtype, y.device)
    y0, x0 = y.reshape(-1)[0], x.reshape(-1)[0]
    per, keys_h, inv_h, keys_v, inv_v = _shared_edges(rows, pixels, h, w)

    def edges(keys, horizontal: bool):
        gal, ay, ax, by, bx = _edge_ends(keys, per, w, y0, x0, horizontal)
        geometry = {k: t_.reshape(batch)[gal].reshape(1, -1, 1) for k, t_ in v.items() if t_.numel() == batch}
        u_maj, u_min = profile.major_minor(torch.stack([ay, by])[:, :, None], torch.stack([ax, bx])[:, :, None], geometry)
        u_min = u_min / geometry["axis_r"]
        return _flat_edge_integrals(u_maj[0, :, 0], u_min[0, :, 0], u_maj[1, :, 0], u_min[1, :, 0], log_r, g, slope, t,
                                    wts, gal)

    e_h, e_v = edges(keys_h, True), edges(keys_v, False)
    n = rows.numel()
    acc = e_h[inv_h[:n]] - e_h[inv_h[n:]] + e_v[inv_v[:n]] - e_v[inv_v[n:]]
    # (x, y) -> (x_maj, x_min / q) reverses orientation, and dx dy = q du
    values = -v["axis_r"].reshape(batch)[rows] * acc
    image = torch.zeros(batch * h * w, dtype=values.dtype, device=values.device).index_add(0, rows * (h * w) + pixels,
                                                                                           values)
    return image.reshape(batch, h, w).to(out_dtype)


def _core_table_and_tangents(profile, v, r1: Tensor, r2: Tensor, dr1: Tensor | None, dr2: Tensor | None,
                             channels: list[str]):
    """The core's table (:func:`_cumulative_table` of ``I w``) and its tangents along ``channels``, or None.

    ``G`` is linear in the profile: a shape parameter's tangent is the same
    table built from ``dI/dtheta`` at fixed radii (``radial_derivatives``). The
    axis ratio also moves the window (``dr1``, ``dr2``) and the grid, which ends
    at ``r2``: its nodes move, and the interpolation's step with them. Written
    out as the derivative of the quadrature computed. Returns the log grid
    (B, N), the tables (B, N, C + 1, 2) (G and dG/dlog r: the value's, then each
    channel's) and each channel's rate of change of ``log r2`` (C, B); None when
    the profile does not write its derivatives out.
    """
    from .core import smooth_window_and_slopes

    dtype, device = r2.dtype, r2.device
    batch = r2.shape[0]
    r2f = r2.reshape(batch, 1)
    s = torch.linspace(0.0, 1.0, _TABLE_POINTS, dtype=dtype, device=device)
    log_lo = math.log(_TABLE_R_MIN)
    log_r = log_lo + s[None, :] * (torch.log(r2f) - log_lo)
    r = torch.exp(log_r)
    t, w = gauss_legendre(4, dtype, device)
    lo = torch.cat([torch.zeros_like(r[:, :1]), r[:, :-1]], dim=1)
    nodes = lo[..., None] + (r - lo)[..., None] * t  # (B, N, 4)
    t2, w2 = gauss_legendre(16, dtype, device)
    first = r[:, :1] * t2**2  # the cusp's interval [0, r_min] (r = r_min t^2), which does not move
    radii = torch.cat([nodes.reshape(batch, -1), first, r], dim=1)
    got = profile.radial_derivatives(radii.reshape(batch, 1, -1), v, channels)
    if got is None:
        return None
    bright, slope_r = got[0].reshape(radii.shape), got[2].reshape(radii.shape)
    cols = [c.reshape(radii.shape) for c in got[1]]
    window, dw_dr, dw_dr1, dw_dr2 = smooth_window_and_slopes(radii, r1.reshape(batch, 1), r2f)
    n_nodes, n_first = nodes.shape[1] * nodes.shape[2], t2.numel()

    def table(values, carried=None, d_r=None):
        """G and its slope from the integrand at ``radii``; for a moving grid, also the integrand it carries."""
        on_nodes = values[:, :n_nodes].reshape(nodes.shape)
        on_first, on_grid = values[:, n_nodes : n_nodes + n_first], values[:, n_nodes + n_first :]
        pieces = (on_nodes * nodes * w).sum(-1) * (r - lo)
        head = (on_first * first * 2.0 * r[:, :1] * t2 * w2).sum(-1, keepdim=True)
        slope = on_grid * r * r
        if carried is not None:  # d(S r dr) = dS r dr + S d(r) dr + S r d(dr), the first in ``values``
            s_nodes = carried[:, :n_nodes].reshape(nodes.shape)
            d_lo = torch.cat([torch.zeros_like(d_r[:, :1]), d_r[:, :-1]], dim=1)
            d_nodes = d_lo[..., None] + (d_r - d_lo)[..., None] * t
            pieces = pieces + (s_nodes * d_nodes * w).sum(-1) * (r - lo) + (s_nodes * nodes * w).sum(-1) * (d_r - d_lo)
            slope = slope + 2.0 * carried[:, n_nodes + n_first :] * r * d_r
        return torch.stack([torch.cumsum(torch.cat([head, pieces[:, 1:]], dim=1), dim=1), slope], dim=-1)

    primal = bright * window
    tables = [table(primal)]
    zero = torch.zeros(batch, dtype=dtype, device=device)
    d_span = []
    for c, col in zip(channels, cols):
        d_values = col * window
        if c != "axis_r":
            tables.append(table(d_values))
            d_span.append(zero)
            continue
        # the window's radii move, and the grid's nodes with r2 (log r_i = log r_min + s_i (log r2 - log r_min))
        span_rate = dr2.reshape(batch, 1) / r2f
        d_r = r * s * span_rate
        d_lo = torch.cat([torch.zeros_like(d_r[:, :1]), d_r[:, :-1]], dim=1)
        d_radii = torch.cat([(d_lo[..., None] + (d_r - d_lo)[..., None] * t).reshape(batch, -1),
                             torch.zeros_like(first), d_r], dim=1)
        # (inside r1 the window is flat: no slope there, where a cusp's may be large)
        d_values = (d_values + bright * (dw_dr1 * dr1.reshape(batch, 1) + dw_dr2 * dr2.reshape(batch, 1))
                    + (slope_r * window + bright * dw_dr) * d_radii)
        tables.append(table(d_values, primal, d_r))
        d_span.append(span_rate.reshape(batch))
    return log_r, torch.stack(tables, dim=2), torch.stack(d_span) if d_span else zero.new_zeros((0, batch))


def _edge_integrals_and_partials(ax, ay, bx, by, log_r: Tensor, tables: Tensor, d_span: Tensor, t, w, rows):
    """:func:`_edge_integrals` of flat edges (E,) of galaxies ``rows``, with derivatives written out.

    Returns the integrals (E,), their partial derivatives with respect to
    ``(ax, ay, bx, by)`` (4, E) and their derivatives along the tables'
    channels (C, E). The nodes' positions on an edge depend on its end points
    (through the split at the point nearest the origin): the partials follow
    them, so that they are those of the quadrature computed. The integrand is
    evaluated once; every derivative is a sum over the nodes of a piece.
    """
    batch, n = log_r.shape
    channels = tables.shape[2] - 1
    ex, ey = bx - ax, by - ay
    length2 = (ex * ex + ey * ey).clamp_min(1e-30)
    dot = ax * ex + ay * ey
    lam_raw = -dot / length2
    lam_star = lam_raw.clamp(0.0, 1.0)
    moves = ((lam_raw >= 0.0) & (lam_raw <= 1.0)).to(ax.dtype)  # (clamp's derivative, its bounds included)
    cross = ax * by - ay * bx
    # the pieces [lam*, 1] and [0, lam*] that are not empty (P,), nodes lam = lam* + span t^2
    edge, sign = _nonempty_pieces(lam_raw)
    length = torch.where(sign < 0, 1.0 - lam_star[edge], lam_star[edge])
    gal = rows[edge]
    col = lambda a: a[:, None]  # noqa: E731
    log_lo, log_hi = col(log_r[:, 0][gal]), col(log_r[:, -1][gal])
    stp = col((log_r[:, 1] - log_r[:, 0])[gal])
    r_min = torch.exp(log_lo)
    ex_p, ey_p = col(ex[edge]), col(ey[edge])
    tt = t * t
    lam = col(lam_star[edge]) - col(sign * length) * tt  # (P, K)
    px, py = col(ax[edge]) + lam * ex_p, col(ay[edge]) + lam * ey_p
    rho = torch.sqrt((px * px + py * py).clamp_min(1e-30))
    rho_c = torch.maximum(rho, r_min)
    log_rho = torch.log(rho_c)
    inside = log_rho < log_hi  # beyond the table's end G is constant
    u = (torch.minimum(log_rho, log_hi) - log_lo) / stp
    idx = torch.nan_to_num(u, nan=0.0, posinf=0.0, neginf=0.0).floor().clamp(0, n - 2)
    frac = (u - idx).clamp(0.0, 1.0)
    flat = (idx.long() + col(gal * n)).reshape(-1)
    by_row = tables.reshape(batch * n, -1)
    at0 = by_row.index_select(0, flat).reshape(*u.shape, channels + 1, 2)
    at1 = by_row.index_select(0, flat + 1).reshape(*u.shape, channels + 1, 2)
    f2, one = frac * frac, 1.0 - frac
    h00, h10 = (1.0 + 2.0 * frac) * one * one, frac * one * one * stp
    h01, h11 = f2 * (3.0 - 2.0 * frac), f2 * (frac - 1.0) * stp
    g0, d0, g1, d1 = at0[..., 0, 0], at0[..., 0, 1], at1[..., 0, 0], at1[..., 0, 1]
    value = h00 * g0 + h10 * d0 + h01 * g1 + h11 * d1
    # dG/du of the interpolant (u the table position)
    value_u = 6.0 * frac * one * (g1 - g0) + (one * (1.0 - 3.0 * frac) * d0 + frac * (3.0 * frac - 2.0) * d1) * stp
    inv_rho2 = 1.0 / (rho_c * rho_c)
    quad = 2.0 * t * w  # (K,)
    integrand = value * inv_rho2
    weight = quad * col(length) * inv_rho2  # (P, K)
    sums = [(value * weight).sum(1)]
    # d(G/rho^2)/drho, 0 below the table's start (where rho_c is r_min); d/dp of a node's term is a_node p
    d_rho = torch.where(rho > r_min, (torch.where(inside, value_u / stp, 0.0) - 2.0 * value) * inv_rho2 / rho_c, 0.0)
    a_node = d_rho / rho * quad * col(length)
    a_px, a_py = a_node * px, a_node * py
    # p = (1 - lam) a + lam b: the sums of a_node p weighted by lam (b's share) and by 1 - lam (a's)
    lam_px, lam_py = (lam * a_px).sum(1), (lam * a_py).sum(1)
    sums += [a_px.sum(1) - lam_px, a_py.sum(1) - lam_py, lam_px, lam_py]
    # along lam*: the nodes move by (1 - t^2) dlam* along e, and the piece's length by sign dlam*
    sums.append((a_node * (px * ex_p + py * ey_p) * (1.0 - tt)).sum(1) + sign * (integrand * quad).sum(1))
    if channels:
        tangents = (h00[..., None] * at0[..., 1:, 0] + h10[..., None] * at0[..., 1:, 1]
                    + h01[..., None] * at1[..., 1:, 0] + h11[..., None] * at1[..., 1:, 1])
        along = (tangents * weight[..., None]).sum(1).transpose(0, 1)  # (C, P)
        if bool((d_span != 0).any()):
            # the grid's step follows log r2: u = (log rho - log r_min) / step moves by -u dstep / step,
            # and the slopes' scale (h10, h11 hold the step) with it
            moving = ((torch.where(inside, -value_u * u, 0.0) + h10 * d0 + h11 * d1) * weight).sum(1) / stp[:, 0]
            along = along + moving * d_span[:, gal] / (n - 1)
        sums += list(along)
    per_edge = torch.zeros((len(sums), ax.numel()), dtype=ax.dtype, device=ax.device).index_add(
        1, edge, torch.stack(sums))
    total, pa_x, pa_y, pb_x, pb_y, m = per_edge[:6]
    m = m * moves
    l4 = length2 * length2
    dl_dax = -(bx - 2.0 * ax) / length2 - 2.0 * dot * ex / l4
    dl_day = -(by - 2.0 * ay) / length2 - 2.0 * dot * ey / l4
    dl_dbx = -ax / length2 + 2.0 * dot * ex / l4
    dl_dby = -ay / length2 + 2.0 * dot * ey / l4
    partials = torch.stack([by * total + cross * (pa_x + m * dl_dax), -bx * total + cross * (pa_y + m * dl_day),
                            -ay * total + cross * (pb_x + m * dl_dbx), ax * total + cross * (pb_y + m * dl_dby)])
    return cross * total, partials, cross * per_edge[6:]


def core_pixel_integrals_and_derivatives(profile, v, r1: Tensor, r2: Tensor, dr1, dr2, grid, slots: list[str],
                                         listed: tuple[Tensor, Tensor] | None = None):
    """:func:`core_pixel_integrals` and its derivatives (S, B, H, W) with respect to ``slots``, or None.

    A slot of the profile function (r_e, n, ..., and the axis ratio's share)
    changes the table, linearly: its tangent table goes through the same edge
    integrals. The centre, position angle and axis ratio move the edges' end
    points in the stretched frame: each edge's partial derivatives with respect
    to its end points (:func:`_edge_integrals_and_partials`) times their motion.
    No tangent goes through the edges' nodes. ``dr1``, ``dr2``: the window
    radii's derivatives with respect to the axis ratio (when it is a slot);
    ``listed``: the core's pixels, if already known. None when the profile does
    not write its derivatives at fixed radii out.
    """
    out_dtype = grid[0].dtype
    v = {k: t_.double() for k, t_ in v.items()}
    r1, r2 = r1.double(), r2.double()
    if dr1 is not None:
        dr1, dr2 = dr1.double(), dr2.double()
    y, x = grid[0].double(), grid[1].double()
    q = v["axis_r"]
    batch = q.shape[0]
    h, w = y.shape
    # the slots of the table (the profile function does not depend on the centre)
    channels = [s for s in slots if s not in ("cen_x", "cen_y")]
    got = _core_table_and_tangents(profile, v, r1.reshape(batch), r2.reshape(batch), dr1, dr2, channels)
    if got is None:
        return None
    log_r, tables, d_span = got
    # a table that does not change (the position angle's: the profile function does not turn) has no edge integrals
    live = []
    if channels:
        changes = tables[:, :, 1:].reshape(-1, len(channels)).any(0) | d_span.reshape(len(channels), -1).any(1)
        live = torch.nonzero(changes).flatten().tolist()  # one transfer to the host, not one per channel
    tables, d_span = tables[:, :, [0] + [k + 1 for k in live]], d_span[live]
    channels = [channels[k] for k in live]
    rows, pixels = _core_pixels(profile, v, r2, y, x) if listed is None else listed
    t, wts = gauss_legendre(_CORE_EDGE_NODES, y.dtype, y.device)
    y0, x0 = y.reshape(-1)[0], x.reshape(-1)[0]
    per, keys_h, inv_h, keys_v, inv_v = _shared_edges(rows, pixels, h, w)
    geometry = {k: v[k].reshape(-1).expand(batch) for k in ("cen_x", "cen_y", "pa", "axis_r")}
    sin_all, cos_all = torch.sin(geometry["pa"]), torch.cos(geometry["pa"])

    def edges(keys, horizontal: bool):
        gal, ay, ax, by, bx = _edge_ends(keys, per, w, y0, x0, horizontal)
        vg = {k: t_[gal].reshape(1, -1, 1) for k, t_ in geometry.items()}
        u_maj, u_min = profile.major_minor(torch.stack([ay, by])[:, :, None], torch.stack([ax, bx])[:, :, None], vg)
        qg = geometry["axis_r"][gal]
        u_maj, u_min = u_maj.reshape(2, -1), u_min.reshape(2, -1) / qg
        value, (d_ax, d_ay, d_bx, d_by), along = _edge_integrals_and_partials(
            u_maj[0], u_min[0], u_maj[1], u_min[1], log_r, tables, d_span, t, wts, gal)
        sin, cos = sin_all[gal], cos_all[gal]
        out = [value]
        for slot in slots:
            if slot == "cen_x":  # both ends move by d u_maj = sin, d u_min = -cos / q
                out.append((d_ax + d_bx) * sin - (d_ay + d_by) * cos / qg)
            elif slot == "cen_y":  # d u_maj = -cos, d u_min = -sin / q
                out.append(-(d_ax + d_bx) * cos - (d_ay + d_by) * sin / qg)
            else:
                d = along[channels.index(slot)] if slot in channels else torch.zeros_like(value)
                if slot == "pa":  # d u_maj = -q u_min, d u_min = u_maj / q
                    d = d + (d_ay * u_maj[0] + d_by * u_maj[1]) / qg - (d_ax * u_min[0] + d_bx * u_min[1]) * qg
                elif slot == "axis_r":  # d u_min = -u_min / q
                    d = d - (d_ay * u_min[0] + d_by * u_min[1]) / qg
                out.append(d)
        return torch.stack(out)  # (1 + S, E)

    e_h, e_v = edges(keys_h, True), edges(keys_v, False)
    n = rows.numel()
    acc = e_h[:, inv_h[:n]] - e_h[:, inv_h[n:]] + e_v[:, inv_v[:n]] - e_v[:, inv_v[n:]]
    # (x, y) -> (x_maj, x_min / q) reverses orientation, and dx dy = q du
    q_rows = q.reshape(batch)[rows]
    values = -q_rows * acc
    if "axis_r" in slots:
        k = 1 + slots.index("axis_r")
        values[k] = values[k] - acc[0]
    # each listed pixel once: written into zeros in place, in the output precision (no float64 copy of the cutouts)
    flat = torch.zeros((len(slots) + 1, batch * h * w), dtype=out_dtype, device=values.device)
    flat = flat.index_add_(1, rows * (h * w) + pixels, values.to(out_dtype)).reshape(len(slots) + 1, batch, h, w)
    return flat[0], flat[1:]


#: Window of the split without a PSF (pixels along the sharpest axis, as ``RenderSettings.core_inner`` and
#: ``core_width``) and Gauss-Legendre points per pixel axis of the smooth part. The window's roll-off is what
#: the 3 x 3 rule must integrate: over 4.5 px it is drawn within 3e-5 of the peak of GalSim's real-space
#: integration (exponential, Gaussian, Moffat; 2.4e-4 over 3 px, 1.2e-3 over 2 px), at about 8 % more time a fit
#: than 3 px (a core of about 260 pixels for a round galaxy, 660 at q = 0.2); 4 x 4 points over 3 px reach
#: 2e-5 at 12 % more. Beyond the core's pixels the window is 0 and the profile is smooth on the pixel scale
#: (it is farther than r2 along the sharpest axis): 2 x 2 points integrate it (``FAR_NODES``).
PIXEL_WINDOW = (1.0, 4.5)
SMOOTH_NODES = 3
FAR_NODES = 2
#: sub-pixel samples of the smooth part evaluated at once (more: one pixel offset at a time, bounded memory)
_SMOOTH_SAMPLES = 2**21


def _pixel_settings(settings):
    import dataclasses

    inner, width = PIXEL_WINDOW
    return dataclasses.replace(settings, core_inner=inner, core_width=width)


def _nodes(profile, base: int) -> int:
    """Points per pixel axis for a rule of ``base`` points: one more for a truncated profile.

    A truncated profile (GALFIT's soft ``Ti)``/``To)``) has a second feature away from the
    centre, in the smooth part (3 x 3 drew an inner truncation of softening 3 px 7.4e-4 of
    its peak off, 4 x 4 within the 5e-4 its test asks).
    """
    return base + (1 if getattr(profile, "truncations", ()) else 0)


def _pixel_rule(nodes: int, dtype, device) -> tuple[Tensor, Tensor, Tensor]:
    """A ``nodes`` x ``nodes`` Gauss-Legendre rule over a unit pixel: offsets in y and x and weights, (G,) each."""
    t, w = gauss_legendre(nodes, dtype, device)
    return (t - 0.5).repeat_interleave(nodes), (t - 0.5).repeat(nodes), w.repeat_interleave(nodes) * w.repeat(nodes)


def _offset_groups(grid, batch: int, profile):
    """The Gauss-Legendre points of every pixel, in groups: their offsets in y and x and weights, (G,) each.

    ``FAR_NODES`` a pixel axis, and the finer rule for a truncated profile, whose
    truncation lies beyond the core.
    """
    y = grid[0]
    base = SMOOTH_NODES if getattr(profile, "truncations", ()) else FAR_NODES
    oy, ox, weights = _pixel_rule(_nodes(profile, base), y.dtype, y.device)
    per = max(1, _SMOOTH_SAMPLES // max(1, batch * y.numel()))
    for start in range(0, weights.numel(), per):
        yield oy[start : start + per], ox[start : start + per], weights[start : start + per]


def _sample_geometry(profile, v, grid, oy: Tensor, ox: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Offsets from the centre along the axes and elliptical radii (B, G * H * W) at the points (y + oy, x + ox).

    ``grid`` is a mesh: with the built-in geometry an offset is a row's part plus
    a column's, (G, H, 1) and (G, 1, W) against each galaxy's (B, 1, 1, 1), so
    that the full-size work is the two sums and the radius.
    """
    y, x = grid
    q = v["axis_r"]
    batch = q.shape[0]
    kind = type(profile)
    if (kind.major_minor is EllipticalProfile.major_minor
            and kind.elliptical_radius is EllipticalProfile.elliptical_radius):
        per_galaxy = {k: v[k].reshape(-1, 1, 1, 1) for k in ("cen_x", "cen_y", "pa")}
        x_maj, x_min = profile.major_minor(y[:, :1] + oy[:, None, None], x[:1, :] + ox[:, None, None], per_galaxy)
        r = profile.elliptical_radius(x_maj, x_min, q.reshape(-1, 1, 1, 1))
    else:
        ys, xs = torch.cat([y + o for o in oy], dim=0), torch.cat([x + o for o in ox], dim=0)
        x_maj, x_min = profile.major_minor(ys, xs, v)
        r = profile.elliptical_radius(x_maj, x_min, q)
    flat = lambda t: t.expand(batch, *t.shape[1:]).reshape(batch, -1)  # noqa: E731
    return flat(x_maj), flat(x_min), flat(r)


def _pixel_sums(samples: Tensor, weights: Tensor, shape) -> Tensor:
    """Weighted sums (B, H, W) of samples (B, G * H * W) over the G points of each pixel."""
    batch = samples.shape[0]
    return weighted_sum(weights, samples.reshape(batch, weights.numel(), -1)).reshape(batch, *shape)


def _core_listed(profile, v, r2: Tensor, grid) -> tuple[Tensor, Tensor]:
    """:func:`_core_pixels` of ``grid`` in float64: the pixels where the window is not 0 somewhere."""
    v = {k: t.double() for k, t in v.items()}
    return _core_pixels(profile, v, r2.double(), grid[0].double(), grid[1].double())


class _ListedSamples:
    """The smooth part's points in the core's pixels (listed per galaxy), by a finer rule, and their pixel sums.

    Within ``r2`` the window rolls off: these pixels take a ``SMOOTH_NODES`` rule of
    their own on what the window leaves, and their sums replace the whole grid's
    coarser ones (never the difference of two sums: a cusp's points inside ``r1``
    are left out exactly). The pixels are padded to the galaxy with the most, so
    that the points are (B, G * L) like every per-galaxy tensor.
    """

    def __init__(self, listed: tuple[Tensor, Tensor], grid, batch: int, profile) -> None:
        y, x = grid
        rows, pixels = listed
        self.rows, self.batch, self.shape = rows, batch, tuple(y.shape)
        self.pixel = rows * y.numel() + pixels  # (L,): flat (B * H * W) index of each listed pixel
        counts = torch.bincount(rows, minlength=batch)
        first = torch.cumsum(counts, 0) - counts
        self.slot = torch.arange(rows.numel(), device=rows.device) - first[rows]  # place within its galaxy
        self.width = max(1, int(counts.max())) if rows.numel() else 1
        padded = torch.zeros((batch, self.width), dtype=torch.long, device=rows.device)
        padded[rows, self.slot] = pixels
        self.oy, self.ox, self.weights = _pixel_rule(_nodes(profile, SMOOTH_NODES), y.dtype, y.device)
        self.y = y.reshape(-1)[padded][:, None, :] + self.oy[:, None]  # (B, G, L)
        self.x = x.reshape(-1)[padded][:, None, :] + self.ox[:, None]

    def geometry(self, profile, v) -> tuple[Tensor, Tensor, Tensor]:
        """Offsets from the centre along the axes and elliptical radii of the points, (B, G * L) each."""
        x_maj, x_min = profile.major_minor(self.y, self.x, v)
        r = profile.elliptical_radius(x_maj, x_min, v["axis_r"])
        flat = lambda t: t.expand(self.batch, *self.y.shape[1:]).reshape(self.batch, -1)  # noqa: E731
        return flat(x_maj), flat(x_min), flat(r)

    def sums(self, samples: Tensor) -> Tensor:
        """The listed pixels' weighted sums (L,) of their points' values (B, G * L)."""
        per_pixel = weighted_sum(self.weights, samples.reshape(self.batch, self.weights.numel(), self.width))
        return per_pixel[self.rows, self.slot]

    def replace(self, image: Tensor | None, listed: Tensor) -> Tensor:
        """``image`` (B, H, W; None: zeros) with the listed pixels' values set to ``listed`` (L,)."""
        flat = listed.new_zeros(self.batch * self.shape[0] * self.shape[1]) if image is None else image.reshape(-1)
        return flat.index_put((self.pixel,), listed.to(flat.dtype)).reshape(self.batch, *self.shape)


def _smooth_terms(slots: list[str], at_fixed_r: list[str], image: Tensor, fixed: list[Tensor], radial_term: Tensor,
                  x_maj: Tensor, x_min: Tensor) -> dict[str, Tensor]:
    """The smooth part's sample terms whose pixel sums make its columns: the image, each slot's derivative at
    fixed radii, and the radial slope over r times the offsets (the geometric slots' chain rule)."""
    terms = {"image": image, **dict(zip(at_fixed_r, fixed))}
    if {"cen_x", "cen_y", "pa"} & set(slots):
        terms["maj"] = radial_term * x_maj
        if "pa" in slots:
            terms["maj_min"] = terms["maj"] * x_min
    if {"cen_x", "cen_y", "axis_r"} & set(slots):
        terms["min"] = radial_term * x_min
        if "axis_r" in slots:
            terms["min_min"] = terms["min"] * x_min
    return terms


def pixel_integrated_split_and_derivatives(profile, v, grid, settings, slots: list[str]):
    """:func:`pixel_integrated_split` and its derivatives (S, B, H, W) with respect to ``slots``, or None.

    The smooth part's columns are written out: the profile's derivatives at
    fixed radii (``radial_derivatives``), and for the centre, position angle and
    axis ratio its radial slope times each sample's radius derivative, with the
    window's slopes; no tangent goes through the sub-pixel samples of the whole
    cutout. The core's are written out too
    (:func:`core_pixel_integrals_and_derivatives`; forward mode where the
    profile gives no derivatives on the table's radii). None when the profile
    does not write its derivatives out (the caller then uses forward mode
    throughout). Only for elliptical isophotes, the built-in radius and no
    truncation radius.
    """
    from .core import core_radii, core_radii_q_slopes, smooth_window_and_slopes

    wanted = _pixel_settings(settings)
    q = v["axis_r"]
    batch = q.shape[0]
    y, x = grid
    if "axis_r" in slots:
        r1, r2, dr1, dr2 = core_radii_q_slopes(profile, v, None, wanted)
    else:
        (r1, r2), dr1, dr2 = core_radii(profile, v, None, wanted), None, None
    at_fixed_r = [s for s in slots if s not in ("cen_x", "cen_y")]
    # pixel sums of the samples' terms; a column is a per-galaxy combination of them (the sums are linear)
    full: dict[str, Tensor] = {}
    for oy, ox, weights in _offset_groups(grid, batch, profile):
        x_maj, x_min, r = _sample_geometry(profile, v, grid, oy, ox)
        got = profile.radial_derivatives(r.reshape(batch, 1, -1), v, at_fixed_r)
        if got is None:
            return None
        fixed = [c.reshape(r.shape) for c in got[1]]
        terms = _smooth_terms(slots, at_fixed_r, got[0].reshape(r.shape), fixed,
                              got[2].reshape(r.shape) / r.clamp_min(1e-12), x_maj, x_min)
        for name, samples in terms.items():
            part = _pixel_sums(samples, weights, y.shape)
            full[name] = part + full[name] if name in full else part
    # the core's pixels: the finer rule on what the window leaves, replacing the coarse sums
    listed = _core_listed(profile, v, r2, grid)
    near = _ListedSamples(listed, grid, batch, profile)
    x_maj, x_min, r = near.geometry(profile, v)
    got = profile.radial_derivatives(r.reshape(batch, 1, -1), v, at_fixed_r)
    primal, slope = got[0].reshape(r.shape), got[2].reshape(r.shape)
    r1_, r2_ = r1.reshape(-1, 1), r2.reshape(-1, 1)
    window, dw_dr, dw_dr1, dw_dr2 = smooth_window_and_slopes(r, r1_, r2_)
    keep = 1.0 - window
    # d(I (1 - w)) / dr over r: times r dr/dtheta it is a geometric slot's derivative
    # (inside r1 the window is 1: no smooth part, and a cusp's slope may be infinite)
    inside = r > r1_
    radial_term = torch.where(inside, slope * keep - primal * dw_dr, 0.0) / r.clamp_min(1e-12)
    terms = _smooth_terms(slots, at_fixed_r, primal * keep, [c.reshape(r.shape) * keep for c in got[1]], radial_term,
                          x_maj, x_min)
    if "axis_r" in slots:
        terms["window_q"] = torch.where(inside, primal * (dw_dr1 * dr1.reshape(-1, 1) + dw_dr2 * dr2.reshape(-1, 1)),
                                        0.0)
    sums = {name: near.replace(full.get(name), near.sums(samples)) for name, samples in terms.items()}
    image = sums["image"]
    sin, cos = torch.sin(v["pa"]), torch.cos(v["pa"])
    q2 = q * q
    columns = []
    for slot in slots:
        if slot == "cen_x":  # d x_maj / d cen_x = sin, d x_min / d cen_x = -cos
            columns.append(sums["maj"] * sin - sums["min"] * (cos / q2))
        elif slot == "cen_y":
            columns.append(-sums["maj"] * cos - sums["min"] * (sin / q2))
        elif slot == "pa":
            columns.append(sums["pa"] + sums["maj_min"] * (1.0 / q2 - 1.0))
        elif slot == "axis_r":
            columns.append(sums["axis_r"] - sums["min_min"] / (q2 * q) - sums["window_q"])
        else:
            columns.append(sums[slot])
    columns = torch.stack(columns) if columns else image.new_zeros((0,) + image.shape)
    written = core_pixel_integrals_and_derivatives(profile, v, r1, r2, dr1, dr2, grid, slots, listed)
    if written is not None:
        return image + written[0], columns + written[1]
    # a profile that writes its derivatives out only where the smooth part needs them: forward mode, a tangent per slot
    x0 = torch.stack([v[s].reshape(-1).expand(batch) for s in slots], dim=1)

    def core_of(values):
        vv = dict(v)
        for i, s in enumerate(slots):
            vv[s] = values[:, i].reshape(-1, 1, 1)
        c1, c2 = core_radii(profile, vv, None, wanted)
        return core_pixel_integrals(profile, vv, c1, c2, grid)

    basis = torch.eye(len(slots), dtype=x0.dtype, device=x0.device)[:, None, :].expand(len(slots), batch, len(slots))
    core, core_t = torch.func.vmap(lambda t: torch.func.jvp(core_of, (x0,), (t,)), out_dims=(None, 0))(basis)
    return image + core, columns + core_t


def pixel_integrated_split(profile, v, grid, settings) -> Tensor:
    """Integrals of an elliptical profile over the pixels of ``grid`` (y, x), shape (B, H, W), split at a window.

    The smooth part ``I (1 - w)`` varies slowly on the pixel scale: a
    ``SMOOTH_NODES`` x ``SMOOTH_NODES`` Gauss-Legendre rule in each pixel
    integrates it. The core ``I w`` holds the cusp and the sub-pixel
    structure: it is integrated exactly (:func:`core_pixel_integrals`) over
    the pixels it reaches, a few hundred at most. Both are local: no FFT, no
    margin, and the cost of a large frame is a few profile evaluations per pixel.
    """
    from .core import core_radii, smooth_window

    r1, r2 = core_radii(profile, v, None, _pixel_settings(settings))
    y = grid[0]
    batch = v["axis_r"].shape[0]
    image = None
    for oy, ox, weights in _offset_groups(grid, batch, profile):
        _, _, r = _sample_geometry(profile, v, grid, oy, ox)
        part = _pixel_sums(profile.radial(r.reshape(batch, 1, -1), v).reshape(r.shape), weights, y.shape)
        image = part if image is None else image + part
    # the core's pixels: the finer rule on what the window leaves, replacing the coarse sums
    listed = _core_listed(profile, v, r2, grid)
    near = _ListedSamples(listed, grid, batch, profile)
    _, _, r = near.geometry(profile, v)
    kept = profile.radial(r.reshape(batch, 1, -1), v).reshape(r.shape) * (
        1.0 - smooth_window(r, r1.reshape(-1, 1), r2.reshape(-1, 1)))
    image = near.replace(image, near.sums(kept))
    return image + core_pixel_integrals(profile, v, r1, r2, grid, listed)
