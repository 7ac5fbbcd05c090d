"""GalfitM files to galmoss: every band's data read (:func:`load_galfitm`) and the profiles (:func:`galfitm_profiles`).

Per-band zero points (``J)``, with each image's EXPTIME as for GALFIT) are met by
scaling each band's data and sigma to the reference band's zero point before
the fit (magnitudes are then each band's own; sky values are scaled back).
How GalfitM's degrees of freedom become ``gm.p(..., bands=)``:
:mod:`galmoss.galfit.galfitm`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ...flags import Flag
from ..convert import CLASSES, SLOTS, SURFACE_BRIGHTNESS_CLASSES, component_name, inside
from ..images import ascii_mask, exposure_time, galfit_sigma, is_fits, read_section
from .constraints import band_ranges
from .feedme import GalfitmFeedme

#: slots whose values are in image units (scaled with a band's zero point)
IMAGE_UNITS = ("sky_bg", "grad_x", "grad_y")


@dataclass
class GalfitmInput:
    """One GalfitM file's data per band (the H) section), scaled to the reference band's zero point."""

    feedme: GalfitmFeedme
    constraints: list
    images: list = field(default_factory=list)
    sigmas: list = field(default_factory=list)
    psfs: list = field(default_factory=list)
    weights: list = field(default_factory=list)
    raw: list = field(default_factory=list)  # the data as read (for the image block)
    scale: np.ndarray | None = None  # each band's factor to the reference band's zero point
    zeropoint: float = 0.0  # the reference band's J) + 2.5 log10(EXPTIME)
    zeropoints: tuple = ()  # every band's J) + 2.5 log10(EXPTIME)
    origin: tuple[int, int] = (1, 1)
    flags: int = 0
    messages: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return bool(self.images) and not (self.flags & (Flag.read_error | Flag.fully_masked))


def load_galfitm(feedme: GalfitmFeedme, constraints) -> GalfitmInput:
    """Read every band of a GalfitM file; problems become flags and messages, never exceptions."""
    gal = GalfitmInput(feedme, constraints)
    region = feedme.region
    gal.origin = (region[0], region[2]) if region is not None else (1, 1)
    if feedme.kernel_note:
        gal.messages.append(feedme.kernel_note)
    zps = []
    try:
        for b, band in enumerate(feedme.bands):
            image, header, _ = read_section(feedme.images[b], region, f"A) input image of band {band}")
            zps.append(feedme.zeropoints[b] + 2.5 * math.log10(exposure_time(header)))
            weight = np.isfinite(image).astype(np.float64)
            mask_path = feedme.masks[b]
            if mask_path is not None:
                if not mask_path.is_file():
                    raise FileNotFoundError(f"F) mask of band {band} '{mask_path}' does not exist")
                if is_fits(mask_path):
                    mask, _, _ = read_section(mask_path, region, f"F) mask of band {band}")
                    if mask.shape != image.shape:
                        raise ValueError(f"F) mask of band {band} '{mask_path}' is {mask.shape}, the image {image.shape}")
                    weight[mask != 0] = 0.0
                else:
                    weight[ascii_mask(mask_path, image.shape, gal.origin)] = 0.0
            if feedme.sigmas[b] is not None:
                sigma, _, _ = read_section(feedme.sigmas[b], region, f"C) sigma image of band {band}")
                if sigma.shape != image.shape:
                    raise ValueError(f"C) sigma image of band {band} is {sigma.shape}, the image {image.shape}")
            else:
                sigma = galfit_sigma(image, header, weight)
                gal.flags |= Flag.sigma_estimated
                gal.messages.append(f"{band}: sigma made from the data (C) none: GAIN or ATODGAIN, NCOMBINE)")
            psf = None
            if feedme.psfs[b] is not None:
                psf, _, _ = read_section(feedme.psfs[b], None, f"D) PSF of band {band}")
            bad = ~np.isfinite(image) | ~np.isfinite(sigma) | ~(sigma > 0)
            weight[bad] = 0.0
            gal.raw.append(image)
            gal.images.append(np.where(bad, 0.0, image))
            gal.sigmas.append(np.where(bad, 1.0, sigma))
            gal.psfs.append(psf)
            gal.weights.append(weight)
            if not np.any(weight > 0):
                gal.flags |= Flag.fully_masked
                gal.messages.append(f"{band}: every pixel is masked or bad")
    except (OSError, ValueError, NotImplementedError) as exc:
        gal.flags |= Flag.read_error
        gal.messages.append(str(exc))
        gal.images = []
        return gal
    if len({p is None for p in gal.psfs}) > 1:
        gal.flags |= Flag.read_error
        gal.messages.append(f"{feedme.where('D')}: some bands have a PSF and others none; give a PSF for every band "
                            "or for none")
        gal.images = []
        return gal
    gal.zeropoints = tuple(zps)
    gal.zeropoint = zps[0]
    gal.scale = 10.0 ** (-0.4 * (np.asarray(zps) - zps[0]))
    gal.images = [im * s for im, s in zip(gal.images, gal.scale)]
    gal.sigmas = [sg * s for sg, s in zip(gal.sigmas, gal.scale)]
    return gal


def galfitm_profiles(gals: list[GalfitmInput]) -> dict[str, object]:
    """The galmoss profiles of GalfitM files that share one structure (their starts per galaxy and band)."""
    from ...params import Parameter

    first = gals[0].feedme
    nb = first.nbands
    ranges = band_ranges(first, gals[0].constraints)
    out = {}
    for comp in first.components:
        cls = CLASSES[comp.kind]
        kwargs = {}
        for label, p in comp.bparams.items():
            slot = SLOTS[comp.kind][label]
            vals = np.stack([g.feedme.components[comp.index - 1].bparams[label].values for g in gals])  # (N, nb)
            if label == "1x":
                vals = vals - np.array([[g.origin[0] - 1] for g in gals], dtype=np.float64)
            elif label == "1y":
                vals = vals - np.array([[g.origin[1] - 1] for g in gals], dtype=np.float64)
            if slot in IMAGE_UNITS:
                vals = vals * np.stack([g.scale for g in gals])
            mode = p.bands_mode(nb)
            kw = {}
            if slot in ("mag", "mu0", "mu_b"):
                kw["M0"] = gals[0].zeropoint
            if slot == "pa":
                kw["angle"] = True
            rng = ranges.get((comp.index, label)) if mode is not None else None
            if rng is not None:
                kw["value_range"] = rng
                vals = inside(vals, *rng)
            if mode is None:  # fixed: one value, or each band's own
                if np.all(np.ptp(vals, axis=1) == 0):
                    kwargs[slot] = Parameter(vals[:, 0] if len(gals) > 1 else vals[0, 0], fit=False, **kw)
                else:
                    kwargs[slot] = Parameter({b: vals[:, i] for i, b in enumerate(first.bands)}, fit=False, bands="free",
                                             **kw)
            elif mode == "shared":
                kwargs[slot] = Parameter(vals[:, 0] if len(gals) > 1 else vals[0, 0], bands="shared", **kw)
            else:
                kwargs[slot] = Parameter({b: vals[:, i] for i, b in enumerate(first.bands)}, bands=mode, **kw)
        if cls in SURFACE_BRIGHTNESS_CLASSES:
            kwargs["pixel_area"] = first.plate_scales[0][0] * first.plate_scales[0][1]
        out[component_name(comp.kind, comp.index)] = cls(**kwargs)
    return out
