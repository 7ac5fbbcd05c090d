"""Image measurements: what a galaxy's image says about its centre, shape, size, flux and sky.

The seed fits ``gm.lp.Sersic()`` with no arguments. A parameter left out (None)
gets its start from the galaxy's image. :func:`estimate_starts` does it for a
whole batch at once (arrays (B, H, W), no Python loop over galaxies):

* the sky: sigma-clipped median of the unmasked pixels outside the target;
* the target: given as a segment (``segments``, e.g. from
  :func:`galmoss.auto.auto_mask`, which uses photutils), or found here: the
  image minus the sky is smoothed by a Gaussian of 1.5 px (normalised by the
  smoothed mask, so masked pixels do not dim it), and the connected region above
  twice the smoothed image's noise that holds the brightest point of the central
  half of the cutout is the target;
* centre, axis ratio and position angle: first and second moments of the light
  (the sky subtracted, clipped at zero) in the target's segment, the same
  quantities as photutils' ``SourceCatalog`` ``centroid`` and ``covariance``;
* the half-light radius along the major axis and the flux: the growth curve of
  the light in elliptical apertures out to three times the segment's extent;
* the Sersic index from the concentration r80 / r20 of that growth curve,
  inverted through the Sersic profile's own r80 / r20 (clipped to 0.5-6; the
  PSF lowers the concentration of small galaxies, so compact ones start low).

The start policy (:mod:`galmoss.fitting.starts`) turns these into starts of
the parameters the user left out. Magnitudes left out have zero point 0
(``mag = -2.5 log10(flux)``).

These are starts, not answers: the fit refines them. They assume one dominant
object near the cutout centre, with neighbours masked (``galmoss.auto``).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

__all__ = ["batch_estimates", "estimate_starts", "moment_estimates", "sersic_n_from_concentration", "with_estimates"]

_SMOOTH = 1.5
_KEYS = ("sky", "cen_x", "cen_y", "pa", "axis_r", "eff_r", "flux", "ser_n")


@lru_cache(maxsize=1)
def _concentration_table() -> tuple[np.ndarray, np.ndarray]:
    """r80 / r20 of a Sersic profile as a function of n (increasing in n)."""
    from scipy.special import gammaincinv

    n = np.linspace(0.3, 8.0, 400)
    ratio = (gammaincinv(2 * n, 0.8) / gammaincinv(2 * n, 0.2)) ** n
    return ratio, n


def sersic_n_from_concentration(c28: np.ndarray) -> np.ndarray:
    """Sersic index whose r80 / r20 is ``c28`` (clipped to 0.5-6)."""
    ratio, n = _concentration_table()
    return np.clip(np.interp(np.asarray(c28, dtype=float), ratio, n), 0.5, 6.0)


def _batched_sky(images: np.ndarray, usable: np.ndarray, iterations: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """3-sigma-clipped median and standard deviation per galaxy over ``usable`` pixels.

    The clipping of astropy's ``sigma_clipped_stats`` (centre the median,
    3 sigma, up to 10 iterations), done for the whole batch at once: each row is
    sorted once, a clipped sample is then a contiguous range of the sorted row,
    and its median and deviation come from that range and prefix sums. The
    deviation is the clipped sample's, about 1.3 % below a Gaussian's sigma.
    """
    b = len(images)
    # unusable pixels sort last as +inf: a clipped range never reaches them, and the prefix sums
    # beyond a row's count (infinite) are never read
    rows = np.sort(np.where(usable, images, np.inf).reshape(b, -1), axis=1)
    last = rows.shape[1] - 1
    count = usable.reshape(b, -1).sum(axis=1)
    idx = np.arange(b)
    centre = np.where(count > 0, rows[idx, np.maximum(count - 1, 0) // 2], 0.0).astype(rows.dtype)
    shifted = rows - centre[:, None]  # centred, so the squares keep their precision
    s1 = shifted.astype(np.float64)  # prefix sums in float64 (a cast first: cumsum's own is slower)
    s2 = np.square(s1)
    # torch's prefix sum: the same sequential sums as NumPy's, in half the time
    s1, s2 = torch.cumsum(torch.from_numpy(s1), 1).numpy(), torch.cumsum(torch.from_numpy(s2), 1).numpy()

    def range_sum(prefix: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        upper = np.where(hi > 0, prefix[idx, np.maximum(hi - 1, 0)], 0.0)
        return upper - np.where(lo > 0, prefix[idx, np.maximum(lo - 1, 0)], 0.0)

    lo, hi = np.zeros(b, dtype=int), count.copy()
    sorted_rows = torch.from_numpy(shifted)
    median = std = np.zeros(b)
    with np.errstate(invalid="ignore"):  # rows with no usable pixel: infinite, replaced below
        for _ in range(iterations):
            k = np.maximum(hi - lo, 1)
            mid_lo, mid_hi = np.minimum(lo + (k - 1) // 2, last), np.minimum(lo + k // 2, last)
            median = 0.5 * (shifted[idx, mid_lo].astype(float) + shifted[idx, mid_hi])
            mean = range_sum(s1, lo, hi) / k
            std = np.sqrt(np.maximum(range_sum(s2, lo, hi) / k - mean**2, 0.0))
            # the rows are sorted: how many lie below a threshold is a binary search per row (torch
            # searches a batch of rows at once), not a pass over every pixel
            new_lo = _count_below(sorted_rows, median - 3.0 * std, right=False)
            new_hi = np.minimum(_count_below(sorted_rows, median + 3.0 * std, right=True), count)
            if np.array_equal(new_lo, lo) and np.array_equal(new_hi, hi):
                break
            lo, hi = new_lo, np.maximum(new_hi, new_lo)
    ok = count > 0
    return np.where(ok, median + centre, 0.0), np.where(ok, std, 0.0)


def _count_below(rows, threshold: np.ndarray, right: bool) -> np.ndarray:
    """Per sorted row, how many values are below ``threshold`` (``right``: at or below); NaN: none."""
    t = np.where(np.isnan(threshold), -np.inf, threshold)
    found = torch.searchsorted(rows, torch.from_numpy(t[:, None]).to(rows.dtype), right=right)
    return found[:, 0].numpy().astype(int)


def _smoothing_coverage(used: np.ndarray) -> np.ndarray:
    """How much of the smoothing kernel falls on usable pixels, (B, H, W) or (H, W) when all are usable."""
    from scipy import ndimage

    h, w = used.shape[1:]
    if used.all():  # separable: the coverage of a full plane is an outer product
        along_y = ndimage.gaussian_filter1d(np.ones(h, np.float32), _SMOOTH, mode="constant")
        along_x = ndimage.gaussian_filter1d(np.ones(w, np.float32), _SMOOTH, mode="constant")
        return np.outer(along_y, along_x)
    return ndimage.gaussian_filter(used.astype(np.float32), (0.0, _SMOOTH, _SMOOTH), mode="constant")


def _detect(light: np.ndarray, used: np.ndarray, raw_noise: np.ndarray) -> np.ndarray:
    """Target pixels (B, H, W) found by smoothing and thresholding, the whole batch at once."""
    from scipy import ndimage

    b, h, w = light.shape
    smoothing = (0.0, _SMOOTH, _SMOOTH)  # never across galaxies
    smooth = ndimage.gaussian_filter(light, smoothing, mode="constant")
    smooth /= np.maximum(_smoothing_coverage(used), 1e-3)
    # the noise of the smoothed image: the clipped sky noise times the Gaussian
    # kernel's noise factor 1 / (2 sqrt(pi) s) (no second sort of the batch)
    noise = raw_noise / (2.0 * math.sqrt(math.pi) * _SMOOTH)
    detected = (smooth > 2.0 * np.maximum(noise, 1e-30)[:, None, None]) & used
    # a 3-D structure that connects pixels within one galaxy's plane only
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True
    labels, _ = ndimage.label(detected, structure=structure)
    # the brightest detected point of the central half of the cutout (of the whole cutout if none)
    scored = np.where(detected, smooth, -np.inf)
    central = scored[:, h // 4 : h - h // 4, w // 4 : w - w // 4]
    at_central = central.reshape(b, -1).argmax(axis=1)
    cy, cx = np.divmod(at_central, central.shape[2])
    at = (cy + h // 4) * w + (cx + w // 4)
    none_central = ~np.isfinite(central.reshape(b, -1)[np.arange(b), at_central])
    at = np.where(none_central, scored.reshape(b, -1).argmax(axis=1), at)
    found = np.isfinite(scored.reshape(b, -1)[np.arange(b), at])
    label = np.where(found, labels.reshape(b, -1)[np.arange(b), at], 0)
    return (labels == label[:, None, None]) & (label[:, None, None] > 0)


def _elliptical_radius(cx, cy, pa, q, x, y) -> np.ndarray:
    """Elliptical radius (along the major axis) of every pixel, (B, H, W), from per-galaxy geometry."""
    sin, cos = np.sin(np.radians(pa)), np.cos(np.radians(pa))
    dx, dy = (x - cx[:, None]).astype(np.float32), (y - cy[:, None]).astype(np.float32)  # (B, W), (B, H)
    # along the major axis (-dx sin + dy cos) and the minor one over q, each a sum of an x and a y term
    major = (-dx * sin[:, None])[:, None, :] + (dy * cos[:, None])[:, :, None]
    minor = (dx * (cos / q)[:, None])[:, None, :] + (dy * (sin / q)[:, None])[:, :, None]
    np.square(major, out=major)
    np.square(minor, out=minor)
    major += minor
    return np.sqrt(major, out=major)


def _geometry(light, target, x, y):
    """Centre, PA (degrees), q and the elliptical radius map of the target's light, per galaxy.

    The centroid and covariance of the light (clipped at zero) over the
    segment: photutils' ``SourceCatalog`` ``centroid`` and ``covariance``.
    """
    wgt = np.where(target & (light > 0), light, 0.0).astype(np.float64)
    # the moments from the light's marginals along x and y and one matrix-vector product (for xy):
    # a few passes over (B, H, W) instead of a dozen
    along_x, along_y = wgt.sum(axis=1), wgt.sum(axis=2)  # (B, W), (B, H)
    total = along_x.sum(axis=1)
    found = total > 0
    safe = np.where(found, total, 1.0)
    cx = along_x @ x / safe
    cy = along_y @ y / safe
    ddx, ddy = x - cx[:, None], y - cy[:, None]
    mxx = np.maximum(np.einsum("bw,bw->b", along_x, ddx**2) / safe, 0.25)
    myy = np.maximum(np.einsum("bh,bh->b", along_y, ddy**2) / safe, 0.25)
    mxy = np.einsum("bh,bh->b", np.matmul(wgt, ddx[:, :, None])[..., 0], ddy) / safe
    trace, det = mxx + myy, mxx * myy - mxy**2
    root = np.sqrt(np.maximum(trace**2 / 4 - det, 0.0))
    a2, b2 = trace / 2 + root, np.maximum(trace / 2 - root, 1e-6)
    q = np.clip(np.sqrt(b2 / a2), 0.1, 1.0)
    theta = np.degrees(0.5 * np.arctan2(2 * mxy, mxx - myy))  # major axis from +x, counter-clockwise
    pa = theta - 90.0  # design.md: from +y towards -x ...
    pa = pa - 180.0 * np.ceil((pa - 90.0) / 180.0)  # ... wrapped to (-90, 90]
    return cx, cy, pa, q, _elliptical_radius(cx, cy, pa, q, x, y), found


def estimate_starts(
    images: np.ndarray,
    weights: np.ndarray,
    sigmas: np.ndarray | None = None,
    segments: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Image-based start values for a batch of cutouts, in one vectorised pass.

    Parameters
    ----------
    images
        Data, shape (B, H, W) (or (H, W) for one galaxy).
    weights
        Same shape; pixels with weight <= 0 (or non-finite data) are ignored.
    sigmas
        Same shape, or None. Not needed by the estimates today; accepted so
        that callers pass what a batch holds (and a later weighting can use it).
    segments
        Same shape, or None: non-zero on the target's pixels (e.g.
        ``AutoMaskResult.target``, ``GalaxyData.segment``). None, or a galaxy
        whose segment is all zero: the target is detected here.

    Returns
    -------
    dict of str to numpy.ndarray
        Arrays of shape (B,): ``sky``, ``cen_x``, ``cen_y`` (1-based pixel
        centres: the centre of a 128x128 cutout is 64.5), ``pa`` (degrees, from +y
        towards -x, in (-90, 90]), ``axis_r`` (b/a), ``eff_r`` (half-light radius
        along the major axis, pixels), ``flux`` (image units, sky subtracted),
        ``ser_n`` and ``detected`` (bool: a target was found; where False the
        geometry is the cutout centre, round, a tenth of the cutout in size).

    Notes
    -----
    The pixel arrays are handled in float32 (the sums in float64): the starts
    need no more, and the passes over the batch are most of their cost. A large
    batch is measured :data:`CHUNK` galaxies at a time, whose arrays stay in the
    processor's cache between passes (each galaxy's starts are its own).
    """
    images = np.asarray(images)
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3:
        raise ValueError(f"estimate_starts: images must have shape (B, H, W) or (H, W), got {images.shape}")
    weights = np.broadcast_to(np.asarray(weights), images.shape)
    if segments is not None:
        segments = np.broadcast_to(np.asarray(segments), images.shape)
    if len(images) <= CHUNK:
        return _estimate_chunk(images, weights, segments)
    parts = [_estimate_chunk(images[lo : lo + CHUNK], weights[lo : lo + CHUNK],
                             None if segments is None else segments[lo : lo + CHUNK])
             for lo in range(0, len(images), CHUNK)]
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


#: Galaxies measured at once by :func:`estimate_starts` (128 64x64 cutouts in float32 are 2 MB).
CHUNK = 128


def _estimate_chunk(images: np.ndarray, weights: np.ndarray, segments: np.ndarray | None) -> dict[str, np.ndarray]:
    """:func:`estimate_starts` of one chunk of galaxies."""
    b, h, w = images.shape
    used = weights > 0
    with np.errstate(invalid="ignore", over="ignore"):  # NaN and values beyond float32 are unusable
        data = images.astype(np.float32)
        used = used & np.isfinite(data)
    data = np.where(used, data, np.float32(0.0))
    enough = used.reshape(b, -1).sum(axis=1) >= 10

    given = np.zeros((b, h, w), dtype=bool) if segments is None else (segments != 0) & used
    has_segment = given.reshape(b, -1).any(axis=1)
    # the sky: outside the segment where there is one (a segment covering the
    # whole cutout leaves no sky: then all pixels), all pixels elsewhere
    sky_pixels = used & ~given if has_segment.any() else used
    sky_pixels = np.where((sky_pixels.reshape(b, -1).sum(1) >= 10)[:, None, None], sky_pixels, used)
    sky, raw_noise = _batched_sky(data, sky_pixels)

    def minus_sky(level: np.ndarray) -> np.ndarray:
        return np.where(used, data - level.astype(np.float32)[:, None, None], np.float32(0.0))

    light = minus_sky(sky)
    target = given
    if not has_segment.all():  # galaxies without a segment: detect the target here
        target = np.where(has_segment[:, None, None], given, _detect(light, used, raw_noise))
    target &= enough[:, None, None]

    x, y = np.arange(1.0, w + 1.0), np.arange(1.0, h + 1.0)
    cx, cy, pa, q, r, found = _geometry(light, target, x, y)
    extent = np.where(target, r, np.float32(0.0)).max(axis=(1, 2))
    # the sky again, far from the target: a galaxy's wings below the detection
    # threshold lift a sky taken over the whole cutout, and the flux and r_e with it
    far = used & (r > np.maximum(2.0 * extent, 6.0).astype(np.float32)[:, None, None]) & ~target
    enough_far = (far.reshape(b, -1).sum(axis=1) >= max(50, h * w // 20)) & found
    if enough_far.any():
        sky_far, _ = _batched_sky(data, np.where(enough_far[:, None, None], far, used))
        sky = np.where(enough_far, sky_far, sky)
        light = minus_sky(sky)
        cx, cy, pa, q, r, found = _geometry(light, target, x, y)

    # growth curve in elliptical apertures (the elliptical radius is along the major axis)
    reach = np.maximum(3.0 * extent, 6.0)
    in_aperture = np.where(used & (r <= reach.astype(np.float32)[:, None, None]), light, np.float32(0.0))
    # a histogram in radius (0.25 px bins) instead of a sort: O(pixels) for the batch
    step = 0.25
    n_bins = int(np.ceil(min(float(reach.max()), math.hypot(h, w)) / step)) + 2
    bins = np.minimum(r * np.float32(1.0 / step), np.float32(n_bins - 1)).astype(np.int64)
    bins += (np.arange(b) * n_bins)[:, None, None]
    rings = np.bincount(bins.ravel(), weights=in_aperture.ravel(), minlength=b * n_bins).reshape(b, n_bins)
    cumulative = np.cumsum(rings, axis=1)
    flux = cumulative[:, -1]
    found &= flux > 0

    def radius(fraction: float) -> np.ndarray:
        goal = fraction * flux
        idx = np.argmax(cumulative >= goal[:, None], axis=1)
        before = np.where(idx > 0, cumulative[np.arange(b), np.maximum(idx - 1, 0)], 0.0)
        inside = np.clip((goal - before) / np.where(rings[np.arange(b), idx] > 0, rings[np.arange(b), idx], 1.0), 0, 1)
        return (idx + inside) * step

    r20, r50, r80 = radius(0.2), radius(0.5), radius(0.8)
    # the segment's edge follows the noise, which pulls its centroid; SExtractor's
    # windowed centroid (XWIN: a Gaussian window of the half-light size, iterated)
    # does not depend on the edge
    window = np.maximum(r50 * np.sqrt(q), 1.0) / 1.1774
    wx, wy = cx.copy(), cy.copy()
    col, row = np.arange(w), np.arange(h)
    # only pixels whose mirror image through the centre is usable too: a mask on
    # one side (a neighbour, a bad column) would pull the centre the other way
    mx = np.rint(2.0 * wx - 2.0).astype(int)[:, None] - col[None, :]  # (B, W)
    my = np.rint(2.0 * wy - 2.0).astype(int)[:, None] - row[None, :]  # (B, H)
    symmetric = ((my >= 0) & (my < h))[:, :, None] & ((mx >= 0) & (mx < w))[:, None, :]
    if not used.all():
        batch = np.arange(b)[:, None, None]
        symmetric &= used & used[batch, np.clip(my, 0, h - 1)[:, :, None], np.clip(mx, 0, w - 1)[:, None, :]]
    symmetric_light = np.where(symmetric, light, np.float32(0.0))
    for _ in range(5):
        # the Gaussian window is separable, exp(-(dx^2 + dy^2) / 2s^2) = gx(x) gy(y): two matrix-vector
        # products per galaxy instead of a dozen passes over (B, H, W)
        dx, dy = x - wx[:, None], y - wy[:, None]
        gx = np.exp(-0.5 * dx**2 / window[:, None] ** 2)
        gy = np.exp(-0.5 * dy**2 / window[:, None] ** 2)
        rows = np.matmul(symmetric_light, np.stack([gx, gx * dx], axis=2).astype(np.float32)).astype(float)  # (B, H, 2)
        norm = np.einsum("bh,bh->b", gy, rows[..., 0])
        ok = found & (norm > 0)
        safe_norm = np.where(ok, norm, 1.0)
        step_x = np.einsum("bh,bh->b", gy, rows[..., 1]) / safe_norm
        step_y = np.einsum("bh,bh->b", gy * dy, rows[..., 0]) / safe_norm
        # SExtractor's factor 2 (the window's own weighting halves the step); the
        # step is kept within the window so a noisy cutout cannot run off
        wx = np.where(ok, wx + np.clip(2.0 * step_x, -window, window), wx)
        wy = np.where(ok, wy + np.clip(2.0 * step_y, -window, window), wy)
    moved = np.hypot(wx - cx, wy - cy) < 3.0 * window  # keep the segment centroid if the window wandered
    cx, cy = np.where(moved, wx, cx), np.where(moved, wy, cy)
    ser_n = sersic_n_from_concentration(r80 / np.maximum(r20, 0.5))

    out = {
        "sky": sky,
        "cen_x": np.where(found, cx, (w + 1) / 2),
        "cen_y": np.where(found, cy, (h + 1) / 2),
        "pa": np.where(found, pa, 0.0),
        "axis_r": np.where(found, q, 1.0),
        "eff_r": np.where(found, np.maximum(r50, 0.5), max(2.0, min(h, w) / 10)),
        "flux": np.where(found, flux, data.sum(axis=(1, 2), dtype=np.float64) - sky * used.reshape(b, -1).sum(axis=1)),
        "ser_n": np.where(found, ser_n, 2.0),
        "detected": found,
    }
    return out


def moment_estimates(image: np.ndarray, weight: np.ndarray, sigma: np.ndarray | None = None) -> dict[str, float]:
    """:func:`estimate_starts` for one cutout, as floats (kept for callers that loop).

    Returns
    -------
    dict of str to float
        ``sky``, ``cen_x``, ``cen_y`` (1-based), ``pa`` (degrees), ``axis_r``,
        ``eff_r`` (major axis, pixels), ``flux`` and ``ser_n``.
    """
    est = estimate_starts(np.asarray(image)[None], np.asarray(weight)[None], None if sigma is None else np.asarray(sigma)[None])
    return {key: float(est[key][0]) for key in _KEYS}


def batch_estimates(batch) -> list[dict]:
    """Image-based starts of every galaxy of the batch, in one vectorised pass (padding has weight 0).

    Fitted neighbours' pixels are left out of the target's estimates (its flux
    and size would take their light); the neighbours' own starts come from
    their segments (``"<component>.<kind>"`` keys, :mod:`galmoss.fitting.neighbours`).
    A batch that carries its estimates (:func:`with_estimates`) gives those.
    """
    if getattr(batch, "estimates", None) is not None:
        return batch.estimates
    weight = batch.weight if batch.neighbour_pixels is None else np.where(batch.neighbour_pixels, 0.0, batch.weight)
    est = estimate_starts(batch.image, weight, batch.sigma, segments=batch.segments)
    out = [{k: float(v[i]) for k, v in est.items()} for i in range(len(batch))]
    if batch.neighbours is not None:
        from .neighbours import neighbour_estimates

        for row, rows in zip(out, batch.neighbours):
            row.update(neighbour_estimates(rows))
    return out


def with_estimates(batch):
    """``batch`` with its image-based starts measured (:func:`batch_estimates` then returns them).

    The stream calls it in its own thread, so the starts of the next batch are
    measured while the current one is fitted. A batch whose measurement fails is
    returned as it came: the fit measures it again, where a failure flags that
    batch's galaxies instead of ending the run.
    """
    try:
        batch.estimates = batch_estimates(batch)
    except Exception:  # noqa: BLE001 - measured again inside the fit, which flags what fails
        batch.estimates = None
    return batch
