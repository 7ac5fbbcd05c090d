"""Automatic masks: background, detection and deblending by photutils (issue 8).

One cutout at a time (photutils segments one image at a time):

1. background and its rms: photutils' ``MedianBackground`` and
   ``MADStdBackgroundRMS`` (3-sigma clipped) over the usable pixels; the
   sigma image is used as the rms instead when given;
2. detection: the background-subtracted image convolved with a Gaussian of
   FWHM 3 px (``make_2dgaussian_kernel``), ``detect_sources`` at
   ``nsigma`` = 1.5 times the rms per pixel (the threshold photutils' own
   documentation uses with a convolved image) over ``n_pixels`` = 10 connected
   pixels, then ``deblend_sources`` (32 levels, contrast 0.005, SExtractor's
   default: the target's own structure is not split);
3. the target: the segment under the start position (the cutout centre when
   none is given); when no segment lies there, the brightest segment whose
   nearest pixel lies within ``search_radius`` of it (flag
   ``segment_fallback``); no segment there at all: flag ``no_source``;
4. pieces of the target: a segment deblended off the target's own light (a
   knot or an arm of a large disk, :func:`part_of_target`) joins the target's
   segment and is neither masked nor fitted;
5. the mask: every other segment, grown by ``grow`` times its equivalent
   radius sqrt(area / pi) (at least 1 px, at most ``max_grow``), never onto the
   target's own segment; combined with the weight given (pixels already at
   weight 0 stay there);
6. the sky and its sigma from sky pixels only: every segment, the target's
   included, grown by ``sky_grow`` times its equivalent radius plus 3 px, is
   left out; the sky is the sigma-clipped median, the sigma the clipped
   standard deviation with the clipping's own bias divided out
   (:func:`clipped_sigma`).

The result also carries the target segment's properties from photutils'
``SourceCatalog`` (centroid, orientation, axis ratio, flux, area, half-light
radius) and a table of the neighbours; with ``neighbours="fit"`` those that bias the
target (:func:`select_neighbours`) stay unmasked and are listed for fitting.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ..flags import Flag

__all__ = ["AutoMaskResult", "auto_mask", "clipped_sigma", "part_of_target", "photutils_or_raise",
           "psf_half_light_radius", "select_neighbours"]


def photutils_or_raise():
    """The photutils modules needed here, or an ImportError naming the extra to install."""
    try:
        import photutils.background as background
        import photutils.segmentation as segmentation
    except ImportError as exc:  # pragma: no cover - exercised by monkeypatching the import
        raise ImportError(
            "automatic masks (auto_mask=True, mask='auto') need photutils: pip install 'galmoss[auto]' "
            "(or pip install 'photutils>=1.9')"
        ) from exc
    return background, segmentation


@dataclass
class AutoMaskResult:
    """What :func:`auto_mask` found in one cutout.

    Attributes
    ----------
    weight
        (H, W) the weight given with the other segments and their grown halos set
        to 0 (the user's mask is kept: pixels at 0 stay 0).
    mask
        (H, W) bool, the pixels this function masked (usable before).
    target
        (H, W) bool, the target's segment (all False when none was found).
    segmentation
        (H, W) int, photutils' deblended segmentation (0 = sky).
    target_label
        The target's label in ``segmentation`` (0 = none).
    n_masked
        Number of pixels masked here (``mask.sum()``).
    n_neighbours
        Number of other segments masked.
    sky, sky_sigma
        Background level and noise sigma per pixel from the sky pixels only.
    flags
        :class:`galmoss.flags.Flag` bits: ``no_source`` (nothing detected near the
        start), ``segment_fallback`` (no segment under the start).
    message
        What was done, for the results' ``message`` column.
    properties
        The target's ``x``, ``y`` (1-based), ``pa`` (degrees, from +y towards -x),
        ``axis_r``, ``flux`` (sky subtracted, over the segment), ``area`` (px),
        ``eff_r`` (photutils' half-light radius of the segment's light,
        circular, divided by sqrt(q): along the major axis); empty when none.
    neighbours
        One dict per other segment: ``label``, ``x``, ``y`` (1-based), ``flux``,
        ``area``, ``eff_r``, ``axis_r``, ``pa``, ``distance`` (px from the
        target's centre), ``ellipse_distance`` (px along the target's major axis,
        on its ellipse), ``flux_ratio`` (to the target's segment flux),
        ``same_island`` (detected in one source with the target, split off by
        deblending) and ``peak_contrast`` (its peak over its border with the
        target). Segments that are pieces of the target (:func:`part_of_target`)
        are merged into it and not listed.
    fitted
        The neighbours left unmasked to be fitted with their own component
        (``neighbours="fit"``; :func:`select_neighbours`), each with ``kind``.
    """

    weight: np.ndarray
    mask: np.ndarray
    target: np.ndarray
    segmentation: np.ndarray
    target_label: int
    n_masked: int
    n_neighbours: int
    sky: float
    sky_sigma: float
    flags: int
    message: str
    properties: dict = field(default_factory=dict)
    neighbours: list = field(default_factory=list)
    fitted: list = field(default_factory=list)


def _quiet(function, *args, **kwargs):
    """Call a photutils function with its informational warnings silenced.

    photutils warns (AstropyUserWarning) when deblending leaves a source whole or
    a segment has masked pixels; neither is a problem for a mask, and pytest
    turns warnings into errors.
    """
    from astropy.utils.exceptions import AstropyUserWarning

    try:
        from photutils.utils.exceptions import NoDetectionsWarning
    except ImportError:  # older photutils: an AstropyUserWarning
        NoDetectionsWarning = AstropyUserWarning  # noqa: N806
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)
        warnings.simplefilter("ignore", NoDetectionsWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        return function(*args, **kwargs)


def clipped_sigma(values: np.ndarray, nsigma: float = 3.0) -> tuple[float, float]:
    """Sigma-clipped median and an unbiased Gaussian sigma of ``values``.

    The standard deviation of a sample clipped at +-k times its own standard
    deviation (astropy's ``sigma_clipped_stats``, iterated to convergence) is
    c sigma for Gaussian noise, c the fixed point of c^2 = 1 - 2 k c phi(k c) /
    (2 Phi(k c) - 1) (0.9847 for k = 3); it is divided out here. astropy's
    ``biweight_scale`` is 0.9 % high on Gaussian noise, ``mad_std`` noisier.
    """
    from astropy.stats import sigma_clipped_stats

    _, median, std = sigma_clipped_stats(values, sigma=nsigma, maxiters=None)
    return float(median), float(std) / _clip_factor(nsigma)


@lru_cache(maxsize=8)
def _clip_factor(k: float) -> float:
    c = 1.0
    for _ in range(100):
        t = k * c
        pdf = math.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi)
        c = math.sqrt(1.0 - 2.0 * t * pdf / math.erf(t / math.sqrt(2.0)))  # 2 Phi(t) - 1 = erf(t / sqrt 2)
    return c


def _grown(segm: np.ndarray, labels: np.ndarray, radius_of: np.ndarray) -> np.ndarray:
    """Pixels within ``radius_of[label]`` of a pixel of one of ``labels`` (one distance transform)."""
    from scipy import ndimage

    chosen = np.isin(segm, labels) & (segm > 0)
    if not chosen.any():
        return chosen
    distance, (iy, ix) = ndimage.distance_transform_edt(~chosen, return_indices=True)
    nearest = segm[iy, ix]
    return distance <= radius_of[nearest]


def _catalog_row(cat, index: int) -> dict:
    """One source of a photutils SourceCatalog in galmoss conventions."""

    def value(*names):
        for name in names:  # photutils 3 renamed some properties
            if hasattr(cat, name):
                v = getattr(cat, name)
                return np.atleast_1d(getattr(v, "value", v))
        raise AttributeError(names[0])

    cen = value("centroid").reshape(-1, 2)[index]
    cov = value("covariance").reshape(-1, 2, 2)[index]
    eig = np.linalg.eigvalsh(cov)
    q = float(np.sqrt(max(eig[0], 1e-6) / max(eig[1], 1e-6))) if np.all(np.isfinite(eig)) else 1.0
    theta = math.degrees(0.5 * math.atan2(2 * cov[0, 1], cov[0, 0] - cov[1, 1]))
    pa = theta - 90.0
    pa = pa - 180.0 * math.ceil((pa - 90.0) / 180.0)
    flux = float(value("segment_flux")[index])
    area = float(value("area")[index])
    try:
        r_half = float(np.atleast_1d(cat.flux_radius(0.5) if hasattr(cat, "flux_radius") else cat.fluxfrac_radius(0.5))[index].value)
    except Exception:  # noqa: BLE001 - the half-light radius is a nicety; the area gives one too
        r_half = math.sqrt(area / math.pi) / 2
    if not np.isfinite(r_half):
        r_half = math.sqrt(area / math.pi) / 2
    return {"x": float(cen[0]) + 1.0, "y": float(cen[1]) + 1.0, "pa": pa, "axis_r": max(q, 0.05), "flux": flux,
            "area": area, "eff_r": r_half / math.sqrt(max(q, 0.05)), "r_half": r_half}


def _split_off_centre(segm, convolved, detected, n_pixels, contrast, x0, y0, segmentation):
    """A finer deblending when the segment under the start peaks far from it, else None.

    A target on the halo of a source 10x brighter stays in that source's segment
    with 32 exponential levels (photutils' default): the levels are spread over
    the bright peak's range and none separates the faint one. 64 levels do.
    """
    data = np.asarray(segm.data)
    h, w = data.shape
    ix, iy = int(round(x0)) - 1, int(round(y0)) - 1
    if not (0 <= ix < w and 0 <= iy < h) or data[iy, ix] == 0:
        return None
    inside = data == data[iy, ix]
    peak = np.unravel_index(np.argmax(np.where(inside, convolved, -np.inf)), data.shape)
    if math.hypot(peak[1] - ix, peak[0] - iy) <= 4.0:
        return None
    finer = _quiet(segmentation.deblend_sources, convolved, detected, n_pixels, contrast=contrast, n_levels=64,
                   progress_bar=False)
    return finer if len(finer.labels) > len(segm.labels) else None


def auto_mask(
    image: np.ndarray,
    weight: np.ndarray | None = None,
    sigma: np.ndarray | None = None,
    start_xy: tuple[float, float] | None = None,
    *,
    nsigma: float = 1.5,
    n_pixels: int = 10,
    kernel_fwhm: float = 3.0,
    contrast: float = 0.005,
    grow: float = 1.0,
    max_grow: float = 15.0,
    sky_grow: float = 2.0,
    search_radius: float | None = None,
    neighbours: str = "mask",
    max_neighbours: int = 3,
    psf_r_half: float | None = None,
) -> AutoMaskResult:
    """Mask everything but the target in one cutout (photutils segmentation).

    Parameters
    ----------
    image
        (H, W) data; non-finite pixels are never used.
    weight
        (H, W) weight or the user's mask as a weight (0 = excluded); None: all 1.
    sigma
        (H, W) noise sigma, or None (the rms is estimated from the image).
    start_xy
        The target's (x, y), 1-based; None: the cutout centre ((W + 1) / 2, (H + 1) / 2).
    nsigma, n_pixels, kernel_fwhm, contrast
        Detection threshold (per-pixel rms), minimum segment size, smoothing
        kernel FWHM (px) and deblending contrast.
    grow, max_grow
        Other segments are grown by ``grow`` x sqrt(area / pi) px, at most ``max_grow``.
    sky_grow
        Growth of every segment (x sqrt(area / pi) + 3 px) before the sky pixels are taken.
    search_radius
        How far from the start a segment may lie when none is under it
        (default: a sixth of the smaller side, at least 8 px).
    neighbours
        ``"mask"``: every other segment is masked; ``"fit"``: those that bias
        the target (:func:`select_neighbours`, at most ``max_neighbours``) are
        left unmasked and listed in ``AutoMaskResult.fitted``, the rest masked.
    max_neighbours
        At most this many neighbours are fitted.
    psf_r_half
        The PSF's half-light radius (px, :func:`psf_half_light_radius`); tells
        stars (fitted as point sources) from galaxies. None: all Sersic.

    Returns
    -------
    AutoMaskResult

    Raises
    ------
    ImportError
        photutils is not installed (``pip install 'galmoss[auto]'``).
    ValueError
        ``image`` is not 2-D, or ``weight``/``sigma`` have another shape.
    """
    from astropy.convolution import convolve
    from astropy.stats import SigmaClip

    background, segmentation = photutils_or_raise()
    image = np.asarray(image, dtype=float)
    if image.ndim != 2:
        raise ValueError(f"auto_mask: image must be 2-D (H, W), got shape {image.shape}")
    h, w = image.shape
    weight = np.ones_like(image) if weight is None else np.asarray(weight, dtype=float)
    for name, arr in (("weight", weight), ("sigma", sigma)):
        if arr is not None and np.shape(arr) != image.shape:
            raise ValueError(f"auto_mask: {name} has shape {np.shape(arr)}, the image {image.shape}; give arrays of one shape")
    if neighbours not in ("mask", "fit"):
        raise ValueError(f"auto_mask: neighbours={neighbours!r}; choose 'mask' or 'fit'")
    used = (weight > 0) & np.isfinite(image)
    if sigma is not None:
        sigma = np.asarray(sigma, dtype=float)
        used &= np.isfinite(sigma) & (sigma > 0)
    x0, y0 = ((w + 1) / 2, (h + 1) / 2) if start_xy is None else (float(start_xy[0]), float(start_xy[1]))
    radius = max(8.0, min(h, w) / 6) if search_radius is None else float(search_radius)
    empty = np.zeros((h, w), dtype=bool)

    def nothing(message: str, sky=0.0, sky_sigma=float("nan"), segm=None) -> AutoMaskResult:
        return AutoMaskResult(np.where(used, weight, 0.0), empty.copy(), empty.copy(),
                              np.zeros((h, w), dtype=int) if segm is None else segm, 0, 0, 0, float(sky),
                              float(sky_sigma), int(Flag.no_source), message)

    if used.sum() < max(n_pixels, 10):
        return nothing("auto mask: fewer usable pixels than a source needs; nothing detected")
    clip = SigmaClip(sigma=3.0, maxiters=10)
    values = image[used]
    bkg = float(background.MedianBackground(sigma_clip=clip).calc_background(values))
    rms = float(background.MADStdBackgroundRMS(sigma_clip=clip).calc_background_rms(values))
    if not (np.isfinite(rms) and rms > 0):
        return nothing("auto mask: the cutout is constant; nothing detected", sky=bkg)
    data = np.where(used, image - bkg, 0.0)
    kernel = segmentation.make_2dgaussian_kernel(kernel_fwhm, size=max(3, int(2 * round(kernel_fwhm)) + 1))
    convolved = _quiet(convolve, np.where(used, data, np.nan), kernel, nan_treatment="interpolate",
                       normalize_kernel=True, boundary="extend")
    convolved = np.where(used, np.nan_to_num(convolved), 0.0)
    noise = np.where(used, sigma, rms) if sigma is not None else np.full((h, w), rms)
    threshold = nsigma * noise
    segm = _quiet(segmentation.detect_sources, convolved, threshold, n_pixels, mask=~used)
    if segm is None:
        sky, sky_sigma = clipped_sigma(values)
        return nothing("auto mask: no source detected in the cutout", sky=sky, sky_sigma=sky_sigma)
    detected = segm
    segm = _quiet(segmentation.deblend_sources, convolved, detected, n_pixels, contrast=contrast, progress_bar=False)
    refined = _split_off_centre(segm, convolved, detected, n_pixels, contrast, x0, y0, segmentation)
    if refined is not None:
        segm = refined
    labels_img = np.asarray(segm.data, dtype=int)
    labels = np.asarray(segm.labels, dtype=int)
    areas = np.bincount(labels_img.ravel(), minlength=labels.max() + 1).astype(float)
    r_eq = np.sqrt(areas / math.pi)

    flags = 0
    notes = []
    if refined is not None:
        notes.append("the segment under the start peaked elsewhere (a brighter source's halo); deblended finer")
    ix, iy = int(round(x0)) - 1, int(round(y0)) - 1
    target_label = int(labels_img[iy, ix]) if (0 <= ix < w and 0 <= iy < h) else 0
    if target_label == 0:
        from scipy import ndimage

        distance, (ny, nx) = ndimage.distance_transform_edt(labels_img == 0, return_indices=True)
        yy, xx = np.mgrid[0:h, 0:w]
        near = np.hypot(xx - (x0 - 1), yy - (y0 - 1)) <= radius
        candidates = np.unique(labels_img[near & (labels_img > 0)])
        if candidates.size == 0:
            sky_pixels = used & ~_grown(labels_img, labels, sky_grow * r_eq + 3.0)
            sky, sky_sigma = clipped_sigma(image[sky_pixels]) if sky_pixels.sum() > 10 else (bkg, rms)
            return nothing(f"auto mask: no source within {radius:.0f} px of the start ({x0:.1f}, {y0:.1f}); "
                           f"{labels.size} segment(s) elsewhere", sky=sky, sky_sigma=sky_sigma, segm=labels_img)
        seg_flux = np.bincount(labels_img.ravel(), weights=np.clip(data, 0, None).ravel(), minlength=labels.max() + 1)
        target_label = int(candidates[np.argmax(seg_flux[candidates])])
        flags |= int(Flag.segment_fallback)
        notes.append(f"no segment under the start ({x0:.1f}, {y0:.1f}); fitted the brightest segment within "
                     f"{radius:.0f} px (label {target_label})")
    target = labels_img == target_label
    others = labels[labels != target_label]

    sky_pixels = used & ~_grown(labels_img, labels, sky_grow * r_eq + 3.0)
    if sky_pixels.sum() < max(50, h * w // 50):
        # crowded: fall back to the pixels outside the segments themselves
        sky_pixels = used & (labels_img == 0)
        notes.append("auto mask: few sky pixels away from the sources; sky measured between segments")
    sky_values = image[sky_pixels]
    sky, sky_sigma = clipped_sigma(sky_values) if sky_values.size > 10 else (bkg, rms)

    island = np.asarray(detected.data, dtype=int)  # before deblending: one label per connected source
    own_island = int(island[target].max()) if target.any() else 0
    merged: list[int] = []
    for attempt in range(5):  # the target grows as its pieces join it: pieces farther out may then join too
        props, rows = _describe(image - sky, labels_img, others, target_label, used, convolved, island, own_island,
                                segmentation)
        pieces = [row["label"] for row in rows if part_of_target(props, row, psf_r_half=psf_r_half)]
        if not pieces or attempt == 4:
            break
        merged += pieces
        labels_img = np.where(np.isin(labels_img, pieces), target_label, labels_img)
        target = labels_img == target_label
        others = others[~np.isin(others, pieces)]
    if merged:
        notes.append(f"{len(merged)} deblended segment(s) inside the target's extent kept as part of it "
                     "(its own arms or knots)")
    fitted: list[dict] = []
    if neighbours == "fit" and rows:
        fitted = select_neighbours(props, rows, max_neighbours=max_neighbours, psf_r_half=psf_r_half)
    kept = np.array([d["label"] for d in fitted], dtype=int)
    keep = target | np.isin(labels_img, kept)
    masked_labels = others[~np.isin(others, kept)]
    # a neighbour that is fitted keeps its segment; those masked are grown, never onto a fitted one
    growth = np.clip(grow * r_eq, 1.0, max_grow)
    masked = (np.isin(labels_img, masked_labels) | (_grown(labels_img, masked_labels, growth) & ~keep)) & used
    new_weight = np.where(used & ~masked, weight, 0.0)
    n_masked = int(masked.sum())
    notes.insert(0, f"auto mask: {n_masked} pixels of {masked_labels.size} neighbour segment(s) masked")
    if fitted:
        stars = sum(d["kind"] == "point" for d in fitted)
        notes.insert(1, f"{len(fitted)} neighbour(s) fitted ({len(fitted) - stars} Sersic, {stars} point source)")
    return AutoMaskResult(new_weight, masked, target, labels_img, target_label, n_masked, int(masked_labels.size),
                          sky, sky_sigma, flags, "; ".join(notes), props, rows, fitted)


def _describe(data, labels_img, others, target_label, used, convolved, island, own_island, segmentation):
    """The target's catalogue row and one row per other segment (with what tells a piece of the target)."""
    from scipy import ndimage

    segm = segmentation.SegmentationImage(labels_img)
    cat = _quiet(segmentation.SourceCatalog, data, segm, mask=~used)
    index = {int(lab): i for i, lab in enumerate(np.atleast_1d(cat.label))}
    props = _quiet(_catalog_row, cat, index[target_label])
    target = labels_img == target_label
    touching = ndimage.binary_dilation(target, structure=np.ones((3, 3), bool))
    t = math.radians(props["pa"])
    rows = []
    for lab in others:
        row = _quiet(_catalog_row, cat, index[int(lab)])
        segment = labels_img == lab
        dx, dy = row["x"] - props["x"], row["y"] - props["y"]
        row["label"] = int(lab)
        row["distance"] = float(math.hypot(dx, dy))
        # along the target's major axis, on its ellipse: how far inside the target's own light it lies
        row["ellipse_distance"] = float(math.hypot(-dx * math.sin(t) + dy * math.cos(t),
                                                   (dx * math.cos(t) + dy * math.sin(t)) / props["axis_r"]))
        row["flux_ratio"] = row["flux"] / props["flux"] if props["flux"] > 0 else float("inf")
        row["same_island"] = bool(own_island and np.any(island[segment] == own_island))
        row["peak_contrast"] = _peak_contrast(convolved, segment, touching)
        rows.append(row)
    return props, rows


#: A segment deblended off the target's own light (its arms, HII regions) lies within this many target
#: half-light radii on the target's ellipse, ...
INSIDE_RADII = 3.0
#: ... holds less than this fraction of the target's flux, ...
PIECE_FLUX = 0.2
#: ... peaks less than this many times above the target's light where the two touch, ...
PIECE_CONTRAST = 16.0
#: ... and is not compact: its half-light radius is at least this many times the PSF's (docs/validation.md).
PIECE_MIN_SIZE = 1.5


def part_of_target(target: dict, row: dict, *, psf_r_half: float | None = None, inside: float = INSIDE_RADII,
                   flux: float = PIECE_FLUX, contrast: float = PIECE_CONTRAST, min_size: float = PIECE_MIN_SIZE) -> bool:
    """Whether a deblended segment is a piece of the target's own light rather than a neighbour.

    photutils' deblending cuts the knots and arms of a large disk into segments of
    their own; fitted as neighbours or masked, they take the disk's light (its
    magnitude too faint, the bulge's Sersic index too high). A segment is a piece
    of the target when all of these hold:

    * it was detected in one connected source with the target (``same_island``:
      deblending split it off);
    * its centroid lies within ``inside`` target half-light radii on the target's ellipse;
    * its flux is below ``flux`` times the target's;
    * its peak is less than ``contrast`` times the smoothed brightness along its
      border with the target (a separate galaxy or star has a peak of its own far
      above the target's light there);
    * it is not compact: its half-light radius is at least ``min_size`` times the
      PSF's (``psf_r_half``; a star or a compact galaxy is a source of its own).

    The numbers are measured in docs/validation.md ("Pieces of the target").
    """
    if psf_r_half is not None and row.get("r_half", math.inf) < min_size * psf_r_half:
        return False
    return bool(row.get("same_island", False)
                and row.get("ellipse_distance", math.inf) < inside * max(float(target.get("eff_r", 1.0)), 1.0)
                and row.get("flux_ratio", math.inf) < flux
                and row.get("peak_contrast", math.inf) < contrast)


def _peak_contrast(convolved: np.ndarray, segment: np.ndarray, touching: np.ndarray) -> float:
    """The segment's peak over its brightness where it touches the target (inf where it does not)."""
    border = segment & touching
    if not border.any():
        return math.inf
    level = float(np.median(convolved[border]))
    peak = float(convolved[segment].max())
    return peak / level if level > 0 else math.inf


#: neighbours closer than this many target half-light radii are fitted (docs/validation.md, issue 8)
NEAR_RADII = 3.0
#: ... and those brighter than the target closer than this many
BRIGHT_RADII = 6.0
#: a neighbour whose segment's half-light radius is below this times the PSF's is a point source
POINT_RADIUS = 1.2


def select_neighbours(
    target: dict,
    neighbours: list[dict],
    *,
    max_neighbours: int = 3,
    near: float = NEAR_RADII,
    bright: float = BRIGHT_RADII,
    psf_r_half: float | None = None,
    point_radius: float = POINT_RADIUS,
) -> list[dict]:
    """The neighbours to fit with their own component, nearest (in target radii) first.

    The rule measured on GalSim mocks (docs/validation.md, "Neighbours fitted"):
    a neighbour biases the target when it lies within ``near`` target
    half-light radii, or when it is brighter than the target and lies within
    ``bright`` radii; the others are masked. At most ``max_neighbours`` are
    fitted (the nearest); the rest are masked too. A neighbour is a point
    source (``kind = "point"``) when its segment's half-light radius is below
    ``point_radius`` times the PSF's (``psf_r_half``; with a Moffat of FWHM
    3.5 px, 22 stars measured 0.93-1.25, 31 galaxies of r_e 2.5-6 px 1.43 or
    more, and one of r_e 2.1 px 1.30, which 1.3 took for a star); a galaxy
    fitted as a point source leaves its wings on the target, a star fitted as
    a Sersic shrinks to it. Without a PSF every neighbour is a Sersic.

    Parameters
    ----------
    target, neighbours
        ``AutoMaskResult.properties`` and ``AutoMaskResult.neighbours``.

    Returns
    -------
    list of dict
        The chosen neighbours' rows, each with ``kind`` ("sersic" or "point")
        and start values ``cen_x``, ``cen_y``, ``flux`` (> 0), ``eff_r``,
        ``axis_r``, ``pa`` (degrees) from photutils' catalogue.
    """
    if max_neighbours <= 0 or not neighbours:
        return []
    r_e = max(float(target.get("eff_r", 1.0)), 1.0)
    chosen = []
    for row in neighbours:
        d = row["distance"] / r_e
        if d < near or (row["flux_ratio"] > 1.0 and d < bright):
            chosen.append(row)
    chosen.sort(key=lambda row: row["distance"])
    out = []
    for row in chosen[:max_neighbours]:
        point = psf_r_half is not None and row.get("r_half", math.inf) < point_radius * psf_r_half
        out.append({**row, "kind": "point" if point else "sersic", "cen_x": row["x"], "cen_y": row["y"],
                    "flux": max(float(row["flux"]), 1e-6 * max(float(target.get("flux", 1.0)), 1e-30)),
                    "eff_r": max(float(row["eff_r"]), 0.5), "axis_r": float(np.clip(row["axis_r"], 0.1, 1.0))})
    return out


def psf_half_light_radius(psf: np.ndarray) -> float:
    """Half-light radius (px) of a PSF image about its centre pixel (h // 2, w // 2), from its growth curve."""
    psf = np.asarray(psf, dtype=float)
    h, w = psf.shape
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot(xx - w // 2, yy - h // 2).ravel()
    order = np.argsort(r)
    cumulative = np.cumsum(np.clip(psf.ravel()[order], 0.0, None))
    if cumulative[-1] <= 0:
        return float("nan")
    return float(np.interp(0.5 * cumulative[-1], cumulative, r[order]))
