"""Flags that never hide a bad fit (issue 8, item 6), for a whole batch at once.

:func:`quality_flags` takes what a finished batch fit has (reported values and
their starts keyed by result column, chi2 and dof, the cutout shape) and sets:

``chi2_high``
    chi2 > dof + k sqrt(2 dof) with k = :data:`CHI2_SIGMAS` (10): chi2 of a
    correct model with correct sigmas has mean dof and spread sqrt(2 dof), so k
    counts spreads and means the same for 100 and 10^5 pixels. 10 rather than
    3-5 because sigma images are rarely right to better than a few per cent,
    and a sigma 2 % off moves chi2 by 4 % of dof (2.8 spreads at dof = 10^4).
``size_runaway``
    a length (r_e, scale length, FWHM, ...) beyond half the cutout's diagonal:
    its half-light ellipse reaches past every corner, the size is unconstrained.
``negligible_component``
    with two or more components, one carries less than ``min_share`` (1 %) of
    the model's flux (from the magnitudes; the zero point cancels).
``at_start``
    at least half of one component's free parameters (and at least two) ended
    exactly at their starts (relative change < 1e-6: the float32 round trip of
    an unmoved parameter is ~1e-7, a fitted one moves by its error). A fit
    from a start so faint that the gradients vanish ends like this.
``components_merged``
    two components converged onto each other: centres within 0.5 px, every
    shared length within 10 %, axis ratios within 0.05, Sersic indices within
    10 % (and position angles within 10 degrees unless both are round): the
    model has one component twice.
``degenerate_component``
    a component collapsed: its axis ratio below :data:`MIN_AXIS_RATIO` (0.05;
    the thinnest edge-on disks seen are about 0.1, so no galaxy component
    is a line), or its half-light size below :data:`MIN_SIZE_FRACTION` (0.1)
    of the PSF's FWHM (``psf_fwhm``; a bulge that small is a point source to
    the data: its size, shape and index are not measured, only its flux).
``no_source``
    passed in (``no_source=``, from :func:`galmoss.auto.auto_mask` or
    ``estimate_starts(...)["detected"]``): a blank cutout is never "converged
    with flag 0".
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping

import numpy as np

from ..flags import Flag

__all__ = ["CHI2_SIGMAS", "quality_flags"]

#: ``chi2_high`` threshold, in spreads sqrt(2 dof) of the chi2 distribution above its mean dof
CHI2_SIGMAS = 10.0
#: ``degenerate_component``: no galaxy component is flatter than this axis ratio
MIN_AXIS_RATIO = 0.05
#: ``degenerate_component``: a half-light size below this fraction of the PSF's FWHM is not measured
MIN_SIZE_FRACTION = 0.1
#: half-light size per unit of each length slot (a scale length h holds half the light within 1.678 h)
_HALF_LIGHT = {"eff_r": 1.0, "scale_l": 1.678, "fwhm": 0.5}
_OTHER_SLOTS = ("cen_x", "cen_y", "axis_r", "ser_n", "pa", "mag", "sky_bg", "box", "c0", "beta", "concentration")


def length_slots() -> tuple[str, ...]:
    """The slots the registered profiles declare as lengths (``Role.LENGTH``: pixels, or arcsec with a pixel scale)."""
    from ..params import Role
    from ..profiles.base import registered_profiles

    return tuple(sorted({slot for cls in registered_profiles().values() for slot, spec in cls.parameter_specs.items()
                         if spec.role is Role.LENGTH}))


def _split(column: str, components: Mapping[str, str] | None) -> tuple[str, str]:
    """(component, slot) of a result column such as ``bulge_eff_r``."""
    if components is not None and column in components:
        comp = components[column]
        return comp, column[len(comp) + 1 :] if column.startswith(comp + "_") else column
    for slot in sorted(_OTHER_SLOTS + length_slots(), key=len, reverse=True):
        if column.endswith("_" + slot):
            return column[: -len(slot) - 1], slot
    comp, _, slot = column.partition("_")
    return comp, slot


def quality_flags(
    reduced_chi2,
    dof,
    values: Mapping[str, np.ndarray],
    starts: Mapping[str, np.ndarray],
    shape: tuple[int, int],
    *,
    chi2_sigmas: float = CHI2_SIGMAS,
    min_share: float = 0.01,
    pixel_scale: float | Mapping[str, float] | None = None,
    no_source=None,
    components: Mapping[str, str] | None = None,
    lengths: Collection[str] | None = None,
    psf_fwhm=None,
) -> tuple[np.ndarray, list[str]]:
    """Quality flags and messages for a batch of finished fits.

    Parameters
    ----------
    reduced_chi2, dof
        Arrays (B,): chi2 / dof and dof (NaN or dof <= 0: no chi2 check).
    values
        ``{column: array (B,)}`` reported values in the results' units
        (``bulge_eff_r``, ``bulge_mag``, ...); free and fixed alike.
    starts
        ``{column: array (B,)}`` start values of the FREE parameters, same
        units and keys (fixed ones must be left out: they never move).
    shape
        (H, W) of the cutouts.
    chi2_sigmas
        ``chi2_high`` threshold k in chi2 > dof + k sqrt(2 dof).
    min_share
        ``negligible_component`` threshold on a component's share of the flux.
    pixel_scale
        Arcsec per pixel of the length columns when they are in arcsec (one
        value, or ``{column: scale}``); None: lengths are in pixels.
    no_source
        Bool array (B,), True where no source was detected; or None.
    components
        ``{column: component name}`` when component names hold underscores
        that make the split of ``name_slot`` ambiguous; None: split on the
        known slot names.
    lengths
        The slots that are lengths (``Role.LENGTH`` in the profiles' declarations);
        None: those of every registered profile (:func:`length_slots`).
    psf_fwhm
        (B,) FWHM of each galaxy's PSF in pixels (or one value); None: no
        check of sizes against the PSF.

    Returns
    -------
    flags : numpy.ndarray
        int64 (B,), OR of :class:`galmoss.flags.Flag` bits.
    messages : list of str
        One per galaxy, ``"; "``-joined explanations ('' when none).
    """
    length_names = tuple(lengths) if lengths is not None else length_slots()
    rc = np.atleast_1d(np.asarray(reduced_chi2, dtype=float))
    nd = np.broadcast_to(np.asarray(dof, dtype=float), rc.shape)
    b = rc.size
    flags = np.zeros(b, dtype=np.int64)
    notes: list[list[str]] = [[] for _ in range(b)]

    def mark(where: np.ndarray, flag: Flag, text) -> None:
        for i in np.flatnonzero(where):
            flags[i] |= int(flag)
            notes[i].append(text(i) if callable(text) else text)

    if no_source is not None:
        mark(np.asarray(no_source, dtype=bool), Flag.no_source, "no source detected in the cutout")

    # chi2 against the spread of its distribution
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(rc) & (nd > 0)
        chi2 = rc * nd
        excess = np.where(ok, (chi2 - nd) / np.sqrt(2 * np.where(ok, nd, 1.0)), 0.0)
    mark(ok & (excess > chi2_sigmas), Flag.chi2_high,
         lambda i: f"reduced chi2 {rc[i]:.3g}: chi2 exceeds dof by {excess[i]:.0f} spreads sqrt(2 dof) "
                   f"(threshold {chi2_sigmas:g}): the model or the sigma image does not describe the data")

    by_comp: dict[str, dict[str, np.ndarray]] = {}
    for column, arr in values.items():
        comp, slot = _split(column, components)
        by_comp.setdefault(comp, {})[slot] = np.broadcast_to(np.asarray(arr, dtype=float), (b,))

    def scale_of(column: str) -> float:
        if pixel_scale is None:
            return 1.0
        if isinstance(pixel_scale, Mapping):
            return float(pixel_scale.get(column, 1.0))
        return float(pixel_scale)

    # a size beyond the cutout
    half_diagonal = 0.5 * math.hypot(*shape)
    for comp, slots in by_comp.items():
        for slot in length_names:
            if slot in slots:
                pixels = slots[slot] / scale_of(f"{comp}_{slot}")
                mark(np.isfinite(pixels) & (pixels > half_diagonal), Flag.size_runaway,
                     lambda i, c=comp, s=slot, p=pixels: f"{c}.{s} = {p[i]:.3g} px, beyond half the cutout's diagonal "
                                                         f"({half_diagonal:.0f} px): the size ran away")

    # a collapsed component: a line, or a size far below the PSF
    for comp, slots in by_comp.items():
        if "axis_r" in slots:
            q = slots["axis_r"]
            mark(np.isfinite(q) & (q < MIN_AXIS_RATIO), Flag.degenerate_component,
                 lambda i, c=comp, q=q: f"component {c} collapsed to a line (axis ratio {q[i]:.2g} < "
                                        f"{MIN_AXIS_RATIO:g}): its shape is not measured")
        if psf_fwhm is None:
            continue
        fwhm = np.broadcast_to(np.asarray(psf_fwhm, dtype=float), (b,))
        for slot, half in _HALF_LIGHT.items():
            if slot in slots:
                pixels = half * slots[slot] / scale_of(f"{comp}_{slot}")
                mark(np.isfinite(pixels) & np.isfinite(fwhm) & (pixels < MIN_SIZE_FRACTION * fwhm),
                     Flag.degenerate_component,
                     lambda i, c=comp, p=pixels: f"component {c} has a half-light size of {p[i]:.2g} px, below "
                                                 f"{MIN_SIZE_FRACTION:g} of the PSF's FWHM ({fwhm[i]:.2g} px): it is "
                                                 "a point source to the data; only its flux is measured")

    # a component with a negligible share of the flux
    mags = {comp: slots["mag"] for comp, slots in by_comp.items() if "mag" in slots}
    if len(mags) >= 2:
        with np.errstate(over="ignore", invalid="ignore"):
            fluxes = {comp: 10.0 ** (-0.4 * m) for comp, m in mags.items()}
            total = sum(fluxes.values())
            for comp, f in fluxes.items():
                share = f / total
                mark(np.isfinite(share) & (share < min_share), Flag.negligible_component,
                     lambda i, c=comp, s=share: f"component {c} carries {100 * s[i]:.2g} % of the flux "
                                                f"(< {100 * min_share:g} %): it is not needed, or it collapsed")

    # parameters left at their starts
    for comp in by_comp:
        cols = [c for c in starts if _split(c, components)[0] == comp and c in values]
        if len(cols) < 2:
            continue
        unmoved = np.zeros(b, dtype=int)
        for c in cols:
            v = np.broadcast_to(np.asarray(values[c], dtype=float), (b,))
            s = np.broadcast_to(np.asarray(starts[c], dtype=float), (b,))
            unmoved += np.abs(v - s) <= 1e-6 * np.maximum(np.abs(s), 1e-3)
        need = max(2, math.ceil(len(cols) / 2))
        mark(unmoved >= need, Flag.at_start,
             lambda i, c=comp, u=unmoved, n=len(cols): f"component {c}: {u[i]} of its {n} free parameters ended at "
                                                       "their starts (the fit did not move them; check the starts)")

    # two components converged onto each other
    names = [c for c, s in by_comp.items() if any(slot in s for slot in length_names) and "cen_x" in s]
    for j, a in enumerate(names):
        for bname in names[j + 1 :]:
            sa, sb = by_comp[a], by_comp[bname]
            same = np.ones(b, dtype=bool)
            shared_length = False
            with np.errstate(invalid="ignore", divide="ignore"):
                same &= np.hypot(sa["cen_x"] - sb["cen_x"], sa.get("cen_y", 0) - sb.get("cen_y", 0)) < 0.5
                for slot in length_names:
                    if slot in sa and slot in sb:
                        shared_length = True
                        same &= np.abs(np.log(sa[slot] / sb[slot])) < math.log(1.1)
                if "axis_r" in sa and "axis_r" in sb:
                    same &= np.abs(sa["axis_r"] - sb["axis_r"]) < 0.05
                    if "pa" in sa and "pa" in sb:
                        turn = np.abs((sa["pa"] - sb["pa"] + 90.0) % 180.0 - 90.0)
                        same &= (turn < 10.0) | ((sa["axis_r"] > 0.9) & (sb["axis_r"] > 0.9))
                if "ser_n" in sa and "ser_n" in sb:
                    same &= np.abs(np.log(sa["ser_n"] / sb["ser_n"])) < math.log(1.1)
            if shared_length:
                mark(same, Flag.components_merged,
                     f"components {a} and {bname} converged onto each other (same centre, size and shape): "
                     "start them apart or drop one")
    return flags, ["; ".join(n) for n in notes]
