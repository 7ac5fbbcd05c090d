"""Start values from the image, for parameters the user leaves out.

The seed fits ``gm.lp.Sersic()`` with no arguments. A parameter left out (None)
gets its start from the galaxy's image: the sky from sigma-clipped statistics,
the centre, axis ratio and position angle from the first and second moments of
the sky-subtracted light above the noise, the half-light radius along the major
axis from the growth curve in elliptical apertures, and the flux from the light
inside three times that. Shape indices start at their profile's default
(Sersic n = 2). Several components that leave the same parameters out share the
geometry and split the flux evenly; their sizes start at the galaxy's half-light
radius. Such magnitudes have zero point 0 (``mag = -2.5 log10(flux)``): give
``gm.p(..., M0=...)`` to report in your system.

These are starts, not answers: the fit refines them. They assume one dominant
object near the cutout centre with neighbours masked.
"""

from __future__ import annotations

import math

import numpy as np

def moment_estimates(image: np.ndarray, weight: np.ndarray, sigma: np.ndarray) -> dict[str, float]:
    """Sky, centre (1-based), PA (degrees), q, major-axis half-light radius and flux of one cutout."""
    from astropy.stats import sigma_clipped_stats

    used = (weight > 0) & np.isfinite(image)
    h, w = image.shape
    fallback = {"sky": 0.0, "cen_x": (w + 1) / 2, "cen_y": (h + 1) / 2, "pa": 0.0, "axis_r": 1.0,
                "eff_r": max(2.0, min(h, w) / 10), "flux": float(np.nansum(np.where(used, image, 0.0)))}
    if used.sum() < 10:
        return fallback
    sky, _, sky_sigma = sigma_clipped_stats(image[used], sigma=3.0, maxiters=10)
    light = np.where(used, image - sky, 0.0)
    noise = np.where(used, sigma, np.inf)
    detected = light > 1.5 * np.minimum(noise, max(float(sky_sigma), 1e-30))
    if detected.sum() < 3:
        return {**fallback, "sky": float(sky)}
    yy, xx = np.mgrid[1 : h + 1, 1 : w + 1].astype(float)
    wgt = np.where(detected, light, 0.0)
    # centroid, refined within a shrinking aperture around the brightest part
    cx = float((wgt * xx).sum() / wgt.sum())
    cy = float((wgt * yy).sum() / wgt.sum())
    radius = max(h, w)
    for _ in range(5):
        inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
        ww = wgt * inside
        if ww.sum() <= 0:
            break
        cx = float((ww * xx).sum() / ww.sum())
        cy = float((ww * yy).sum() / ww.sum())
        mxx = float((ww * (xx - cx) ** 2).sum() / ww.sum())
        myy = float((ww * (yy - cy) ** 2).sum() / ww.sum())
        radius = max(3.0, 3.0 * math.sqrt(mxx + myy))
    mxx = float((ww * (xx - cx) ** 2).sum() / ww.sum())
    myy = float((ww * (yy - cy) ** 2).sum() / ww.sum())
    mxy = float((ww * (xx - cx) * (yy - cy)).sum() / ww.sum())
    # eigen-decomposition of the second-moment tensor
    trace, det = mxx + myy, mxx * myy - mxy**2
    root = math.sqrt(max(trace**2 / 4 - det, 0.0))
    a2, b2 = trace / 2 + root, max(trace / 2 - root, 1e-12)
    q = float(np.clip(math.sqrt(b2 / a2) if a2 > 0 else 1.0, 0.1, 1.0))
    theta = 0.5 * math.atan2(2 * mxy, mxx - myy)  # major axis, from +x counter-clockwise
    pa = math.degrees(theta) - 90.0  # design.md: from +y towards -x
    pa = (pa + 90.0) % 180.0 - 90.0
    # growth curve in elliptical apertures (radius along the major axis)
    dx, dy = xx - cx, yy - cy
    x_maj = -dx * math.sin(math.radians(pa)) + dy * math.cos(math.radians(pa))
    x_min = dx * math.cos(math.radians(pa)) + dy * math.sin(math.radians(pa))
    r = np.sqrt(x_maj**2 + (x_min / q) ** 2)
    major = math.sqrt(a2)
    aperture = used & (r <= max(3.0 * 2.0 * major, 6.0))
    order = np.argsort(r[aperture])
    cumulative = np.cumsum(light[aperture][order])
    total = float(cumulative[-1]) if cumulative.size else 0.0
    if total <= 0:
        return {**fallback, "sky": float(sky), "cen_x": cx, "cen_y": cy}
    r_half = float(r[aperture][order][np.searchsorted(cumulative, 0.5 * total)])
    return {"sky": float(sky), "cen_x": cx, "cen_y": cy, "pa": pa, "axis_r": q,
            "eff_r": max(r_half, 0.5), "flux": total}
