"""Start values from the image, for parameters the user leaves out.

The seed fits ``gm.lp.Sersic()`` with no arguments. A parameter left out (None)
gets its start from the galaxy's image:

* the sky: sigma-clipped median of the unmasked pixels;
* the object: the image minus the sky is smoothed by a Gaussian of 1.5 px
  (normalised by the smoothed mask, so masked pixels do not dim it), and the
  connected region above twice the smoothed image's noise that holds the
  brightest point of the central half of the cutout is the galaxy;
* centre, axis ratio and position angle: first and second moments of the
  smoothed light in that region (the kernel's own variance removed);
* the half-light radius along the major axis and the flux: the growth curve of
  the unsmoothed light in elliptical apertures out to three times the region's
  extent.

Shape indices start at their profile's default (Sersic n = 2). Several
components that leave parameters out start from the same geometry and split the
flux evenly. Such magnitudes have zero point 0 (``mag = -2.5 log10(flux)``): give
``gm.p(..., M0=...)`` to report in your system. The same estimates restart fits
that went astray (:class:`galmoss.Fitting`, ``restarts=True``).

These are starts, not answers: the fit refines them. They assume one dominant
object near the cutout centre, with neighbours masked.
"""

from __future__ import annotations

import math

import numpy as np

_SMOOTH = 1.5


def moment_estimates(image: np.ndarray, weight: np.ndarray, sigma: np.ndarray) -> dict[str, float]:
    """Sky, centre (1-based), PA (degrees), q, major-axis half-light radius and flux of one cutout."""
    from astropy.stats import sigma_clipped_stats
    from scipy import ndimage

    used = (weight > 0) & np.isfinite(image)
    h, w = image.shape
    fallback = {"sky": 0.0, "cen_x": (w + 1) / 2, "cen_y": (h + 1) / 2, "pa": 0.0, "axis_r": 1.0,
                "eff_r": max(2.0, min(h, w) / 10), "flux": float(np.nansum(np.where(used, image, 0.0)))}
    if used.sum() < 10:
        return fallback
    sky, _, _ = sigma_clipped_stats(image[used], sigma=3.0, maxiters=10)
    light = np.where(used, image - sky, 0.0)
    coverage = ndimage.gaussian_filter(used.astype(float), _SMOOTH, mode="constant")
    smooth = ndimage.gaussian_filter(light, _SMOOTH, mode="constant") / np.maximum(coverage, 1e-3)
    smooth = np.where(used, smooth, 0.0)
    _, _, noise = sigma_clipped_stats(smooth[used], sigma=3.0, maxiters=10)
    detected = smooth > 2.0 * max(float(noise), 1e-30)
    labels, count = ndimage.label(detected)
    if count == 0:
        return {**fallback, "sky": float(sky)}
    central = np.zeros_like(detected)
    central[h // 4 : h - h // 4, w // 4 : w - w // 4] = True
    peak_map = np.where(central & detected, smooth, -np.inf)
    if not np.isfinite(peak_map.max()):
        peak_map = np.where(detected, smooth, -np.inf)
    galaxy = labels == labels[np.unravel_index(np.argmax(peak_map), peak_map.shape)]
    yy, xx = np.mgrid[1 : h + 1, 1 : w + 1].astype(float)
    wgt = np.where(galaxy, np.clip(smooth, 0.0, None), 0.0)
    total = wgt.sum()
    if total <= 0:
        return {**fallback, "sky": float(sky)}
    cx = float((wgt * xx).sum() / total)
    cy = float((wgt * yy).sum() / total)
    mxx = float((wgt * (xx - cx) ** 2).sum() / total) - _SMOOTH**2
    myy = float((wgt * (yy - cy) ** 2).sum() / total) - _SMOOTH**2
    mxy = float((wgt * (xx - cx) * (yy - cy)).sum() / total)
    mxx, myy = max(mxx, 0.25), max(myy, 0.25)
    trace, det = mxx + myy, mxx * myy - mxy**2
    root = math.sqrt(max(trace**2 / 4 - det, 0.0))
    a2, b2 = trace / 2 + root, max(trace / 2 - root, 1e-6)
    q = float(np.clip(math.sqrt(b2 / a2), 0.1, 1.0))
    theta = 0.5 * math.atan2(2 * mxy, mxx - myy)  # major axis, from +x counter-clockwise
    pa = (math.degrees(theta) - 90.0 + 90.0) % 180.0 - 90.0  # design.md: from +y towards -x
    # growth curve of the unsmoothed light in elliptical apertures
    dx, dy = xx - cx, yy - cy
    sin, cos = math.sin(math.radians(pa)), math.cos(math.radians(pa))
    r = np.sqrt((-dx * sin + dy * cos) ** 2 + ((dx * cos + dy * sin) / q) ** 2)
    extent = float(r[galaxy].max()) if galaxy.any() else 3.0
    aperture = used & (r <= max(3.0 * extent, 6.0))
    order = np.argsort(r[aperture])
    cumulative = np.cumsum(light[aperture][order])
    flux = float(cumulative[-1]) if cumulative.size else 0.0
    if flux <= 0:
        return {**fallback, "sky": float(sky), "cen_x": cx, "cen_y": cy}
    r_half = float(r[aperture][order][min(np.searchsorted(cumulative, 0.5 * flux), cumulative.size - 1)])
    return {"sky": float(sky), "cen_x": cx, "cen_y": cy, "pa": pa, "axis_r": q, "eff_r": max(r_half, 0.5), "flux": flux}
