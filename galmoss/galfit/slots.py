"""Which galmoss slot each GALFIT parameter label fills, per component kind.

Plain data at the bottom of ``galmoss.galfit``: the constraint reader checks
labels against it and the converter maps values through it, so both import it
from here.
"""

from __future__ import annotations

_GEOMETRY = {"1x": "cen_x", "1y": "cen_y", "9": "axis_r", "10": "pa", "C0": "box"}
SLOTS: dict[str, dict[str, str]] = {
    "sersic": {**_GEOMETRY, "3": "mag", "4": "eff_r", "5": "ser_n"},
    "devauc": {**_GEOMETRY, "3": "mag", "4": "eff_r"},
    "expdisk": {**_GEOMETRY, "3": "mag", "4": "scale_l"},
    "gaussian": {**_GEOMETRY, "3": "mag", "4": "fwhm"},
    "moffat": {**_GEOMETRY, "3": "mag", "4": "fwhm", "5": "con"},
    "king": {**_GEOMETRY, "3": "mu0", "4": "core_r", "5": "trunc_r", "6": "pow_n"},
    "ferrer": {**_GEOMETRY, "3": "mu0", "4": "trunc_r", "5": "trunc_a", "6": "trunc_b"},
    "nuker": {**_GEOMETRY, "3": "mu_b", "4": "break_r", "5": "alpha", "6": "beta", "7": "gamma"},
    "edgedisk": {"1x": "cen_x", "1y": "cen_y", "3": "mu0", "4": "scale_h", "5": "scale_l", "10": "pa"},
    "psf": {"1x": "cen_x", "1y": "cen_y", "3": "mag"},
    "sky": {"1": "sky_bg", "2": "grad_x", "3": "grad_y"},
}


def slot_of(kind: str, label: str) -> str | None:
    """The galmoss slot of GALFIT parameter ``label`` of a ``kind`` component (None: it has none)."""
    return SLOTS.get(kind, {}).get(label)
