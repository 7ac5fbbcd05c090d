"""A free-form radial profile: the surface brightness at K log-spaced radii, smoothly interpolated.

For galaxies no analytic profile fits: the shape is K free numbers (a vector
parameter), the geometry (centre, position angle, axis ratio) and the total
magnitude are the usual elliptical ones, and the renderer draws it exactly like
any elliptical profile (PSF-convolved).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from ..params import ParamSpec, Role
from .base import EllipticalProfile, box_area_factor

Tensor = torch.Tensor

#: Inside the first and beyond the last radius the profile continues as a Sersic would:
#: ln I = y_end + (s / a) ((r / r_end)^a - 1), with the slope s and a = curvature / slope of
#: ln I(ln r) at the end value (a = 1 / n for a Sersic's values); a in this range (a -> 0 is a
#: power law of slope s)
END_INDEX_RANGE = (0.1, 2.0)
#: the core's slope stays in this range, so that the centre is finite (I(0) <= I(r_min) e^25)
CORE_SLOPE_RANGE = (-2.5, 2.5)
#: the tail falls at least this steeply (a finite flux for any a)
MAX_TAIL_SLOPE = -3.0
#: the core's and the tail's flux: Simpson in ln r over this many e-folds beyond the end radius
#: (r^2 I(r) has fallen by e^-20 or more there)
END_DEPTH = 12.0


@lru_cache(maxsize=64)
def _spline_matrices(radii: tuple[float, float, int]) -> tuple[np.ndarray, np.ndarray]:
    """(K, K) matrices from the values to the first and second derivatives of their not-a-knot spline in ln r."""
    from scipy.interpolate import CubicSpline

    r_min, r_max, k = radii
    x = np.linspace(math.log(r_min), math.log(r_max), k)
    spline = CubicSpline(x, np.eye(k), axis=0, bc_type="not-a-knot")
    return spline.derivative(1)(x), spline.derivative(2)(x)  # [i, j]: at radius i, of unit vector j


@lru_cache(maxsize=64)
def _spline_tensors(radii: tuple[float, float, int], dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """The transposed :func:`_spline_matrices` as tensors, made once per dtype and device (not a copy per render)."""
    d1, d2 = _spline_matrices(radii)
    return torch.as_tensor(d1.T, dtype=dtype, device=device), torch.as_tensor(d2.T, dtype=dtype, device=device)


def _soft_clamp(x: Tensor, lo: float | None, hi: float | None, width: float) -> Tensor:
    """``x`` kept in (lo, hi) with a continuous derivative (softplus corners ``width`` wide).

    A hard clamp's derivative jumps where the fit crosses a limit, and the Fisher
    matrix, hence the errors, with it (a core index at its limit gave errors 40 %
    apart for two fits 0.1 error apart).
    """
    if lo is not None:
        x = lo + torch.nn.functional.softplus(x - lo, beta=1.0 / width)
    if hi is not None:
        x = hi - torch.nn.functional.softplus(hi - x, beta=1.0 / width)
    return x


def _index(curvature: Tensor, slope: Tensor) -> Tensor:
    """The index a = curvature / slope of an end's continuation, in ``END_INDEX_RANGE``."""
    ratio = curvature / torch.where(slope.abs() > 1e-6, slope, torch.full_like(slope, 1e-6))
    return _soft_clamp(ratio.clamp(-1e3, 1e3), *END_INDEX_RANGE, width=0.02)


class FreeForm(EllipticalProfile):
    """Surface brightness ``log10 I`` at K radii log-spaced from ``r_min`` to ``r_max`` (pixels, major axis).

    Between the radii ``ln I`` is the not-a-knot cubic spline of ``ln r`` through the
    values (smooth; a value moves the profile mostly near its radius). Inside ``r_min``
    the profile continues with the slope ``s`` and curvature ``c`` it has at ``r_min``
    in the form of a Sersic core, ``ln I = y_0 + (s / a) ((r / r_min)^a - 1)`` with ``a
    = c / s`` (exactly a Sersic's core when the values are a Sersic's, ``a = 1 / n``; a
    flat core held 43 % of the light a Sersic n = 4 has inside 0.3 r_e, and the fit
    pushed the first value 0.4 dex high to make up for it). Beyond ``r_max`` the same
    form with the end slope (at most -3) and curvature (a power-law tail held a third
    too much of the 11 % of the light a Sersic n = 4 has beyond 5 r_e). Place the radii
    where the galaxy is detected: a value where it is below the noise is unconstrained
    (its error says so), and ``mag`` includes the tail extrapolated beyond ``r_max``.
    The values set the shape only: ``mag`` is the total magnitude, as for every
    elliptical profile. Against GalSim Sersics, K = 8 radii over 0.3-5 r_e recover the
    shape within its errors (docs/validation.md).

    Parameters
    ----------
    log_sb
        ``gm.p(values, dim="2d")`` with K values (any offset: only differences count). Reported
        (results table, files) as the absolute log10 surface brightness in image units per
        pixel at the K radii, which the fitted shape and ``mag`` imply; a uniform offset is a
        null direction of the fit that the covariance removes (``gauge_slots``).
    radii
        ``(r_min, r_max, K)``: the K log-spaced radii the values are at (pixels).
    cen_x, cen_y, pa, axis_r, mag, box
        As for :class:`~galmoss.lp.Sersic`.
    """

    parameter_specs = {
        **EllipticalProfile.parameter_specs,
        "mag": ParamSpec(Role.MAGNITUDE, description="total magnitude"),
        "log_sb": ParamSpec(Role.REAL, description="log10 surface brightness at the K radii (vector)"),
    }

    def __init__(self, cen_x=None, cen_y=None, pa=None, axis_r=None, mag=None, log_sb=None, radii=None, box=None):
        if radii is None or len(tuple(radii)) != 3:
            raise ValueError(f"FreeForm(radii={radii!r}): give (r_min, r_max, K), e.g. (0.5, 40.0, 20)")
        r_min, r_max, k = radii
        if not (0 < float(r_min) < float(r_max)) or isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 3:
            raise ValueError(f"FreeForm(radii={radii!r}): need 0 < r_min < r_max and an integer K >= 3")
        super().__init__(cen_x, cen_y, pa, axis_r, box, mag=mag, log_sb=log_sb)
        self.radii = (float(r_min), float(r_max), int(k))

    #: only differences of log_sb set the shape (mag sets the flux): a uniform offset is a null direction
    gauge_slots = ("log_sb",)

    def expected_size(self, slot: str) -> int | None:
        return self.radii[2] if slot == "log_sb" else None

    def _nodes(self, like: Tensor) -> Tensor:
        r_min, r_max, k = self.radii
        return torch.linspace(math.log(r_min), math.log(r_max), k, dtype=like.dtype, device=like.device)

    def _spline(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Slopes and second derivatives (B, K) of ln I(ln r) at the radii: those of the not-a-knot cubic spline.

        Both are linear in the values, through constant K x K matrices (the
        spline of each unit vector), so the Hermite pieces with these slopes are
        that spline: its error is O(h^4) (finite-difference slopes, O(h^2), left
        0.01 dex between 8 radii over 0.3-5 r_e of an exponential disk).
        """
        d1, d2 = _spline_tensors(self.radii, y.dtype, y.device)
        return y @ d1, y @ d2

    def _ends(self, y: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Slopes (B, K), and the core's and the tail's slope and index (B, 1 each)."""
        slope, curvature = self._spline(y)
        head = _soft_clamp(slope[:, :1], *CORE_SLOPE_RANGE, width=0.05)
        tail = _soft_clamp(slope[:, -1:], None, MAX_TAIL_SLOPE, width=0.05)
        return slope, head, _index(curvature[:, :1], head), tail, _index(curvature[:, -1:], tail)

    def _log_profile(self, log_r: Tensor, y: Tensor) -> Tensor:
        """``ln I`` at ``log_r`` (B, ...) from the node values ``y`` (B, K) of ``ln I``."""
        x = self._nodes(y)
        k = x.numel()
        h = x[1] - x[0]
        slope, head, head_index, tail, tail_index = self._ends(y)
        b = max(y.shape[0], log_r.shape[0] if log_r.dim() else 1)
        y = y.expand(b, -1)  # a shared radius table (leading 1) or shared values broadcast
        slope = slope.expand(b, -1)
        head, head_index = head.expand(b, -1), head_index.expand(b, -1)
        tail, tail_index = tail.expand(b, -1), tail_index.expand(b, -1)
        log_r = log_r.expand((b,) + tuple(log_r.shape[1:]))
        flat = log_r.reshape(b, -1)
        t_all = flat.clamp(x[0], x[-1])
        i = torch.clamp(((t_all.detach() - x[0]) / h).floor().long(), 0, k - 2)
        t = (t_all - x[0]) / h - i
        y0, y1 = torch.gather(y, 1, i), torch.gather(y, 1, i + 1)
        m0, m1 = torch.gather(slope, 1, i) * h, torch.gather(slope, 1, i + 1) * h
        t2, t3 = t * t, t * t * t
        inner = (2 * t3 - 3 * t2 + 1) * y0 + (t3 - 2 * t2 + t) * m0 + (-2 * t3 + 3 * t2) * y1 + (t3 - t2) * m1
        below = flat.clamp_max(x[0]) - x[0]  # <= 0; r = 0 gives -inf and the core's centre value
        core = y[:, :1] + head / head_index * torch.expm1(head_index * below)
        beyond = flat.clamp_min(x[-1]) - x[-1]
        outer = y[:, -1:] + tail / tail_index * torch.expm1(tail_index * beyond)
        out = torch.where(flat > x[-1], outer, torch.where(flat < x[0], core, inner))
        return out.reshape(log_r.shape)

    def start_from_image(self, slot: str, estimate):
        """``log_sb`` left out: a Sersic of the image's half-light radius and concentration index at the radii."""
        if slot != "log_sb":
            return NotImplemented
        if estimate is None:
            return True
        from scipy.special import gammaincinv

        n = float(np.clip(estimate["ser_n"], 0.5, 6.0))
        re = max(float(estimate["eff_r"]), 0.5)
        r = np.exp(np.linspace(math.log(self.radii[0]), math.log(self.radii[1]), self.radii[2]))
        return -gammaincinv(2 * n, 0.5) * ((r / re) ** (1 / n) - 1) / math.log(10)

    def canonical_vectors(self, v: dict[str, Tensor], scalars, turn: Tensor | None = None) -> dict[str, Tensor]:
        """Reported ``log_sb``: log10 of the surface brightness (image units per pixel) at the K radii.

        The fitted values carry an arbitrary offset; the reported ones are the
        absolute surface brightness along the true major axis that the fitted
        shape and ``mag`` imply (an axis ratio fitted above 1 turns the major
        axis: the profile is then read at ``r / q``). They no longer depend on
        the offset, so their covariance is defined (see ``gauge_slots``), and
        they are a valid start (any offset is).
        """
        v = dict(v)
        y = v["log_sb"] * math.log(10.0)
        y = y - y.amax(1, keepdim=True).detach()
        q = scalars["axis_r"].reshape(-1, 1)
        box = scalars.get("box")
        c = 2.0 + (box.reshape(-1, 1) if box is not None else torch.zeros_like(q))
        flux = torch.pow(10.0, -0.4 * scalars["mag"].reshape(-1, 1))
        ln_amplitude = torch.log(flux / (q * self.circular_integral({"log_sb": v["log_sb"]}).reshape(-1, 1)
                                         * box_area_factor(c)))
        nodes = self._nodes(y).expand(y.shape[0], -1)
        ln_profile = self._log_profile(nodes - torch.log(q.clamp_min(1.0)), y)
        v["log_sb"] = (ln_amplitude + ln_profile) / math.log(10.0)
        return v

    def profile_function(self, r: Tensor, v) -> Tensor:
        y = v["log_sb"] * math.log(10.0)
        y = y - y.amax(1, keepdim=True).detach()  # only differences count; keep exp() in range
        return torch.exp(self._log_profile(torch.log(r.clamp_min(1e-30)), y))

    def circular_integral(self, v) -> Tensor:
        y = v["log_sb"] * math.log(10.0)
        y = y - y.amax(1, keepdim=True).detach()
        r_min, r_max, _ = self.radii
        # 2 pi int I r dr = 2 pi int I r^2 d ln r: Simpson in ln r over the core, between the radii, and the tail
        def simpson(lo: float, hi: float, count: int) -> Tensor:
            s = torch.linspace(lo, hi, count, dtype=y.dtype, device=y.device)
            f = torch.exp(self._log_profile(s.expand(y.shape[0], -1), y) + 2 * s)
            w = torch.ones(count, dtype=y.dtype, device=y.device)
            w[1:-1:2], w[2:-1:2] = 4.0, 2.0
            return (f * w).sum(1, keepdim=True) * (s[1] - s[0]) / 3.0

        deep = math.log(r_min) - END_DEPTH
        core = simpson(deep, math.log(r_min), 257)
        # below that the core is a power law of slope s (r / r_min)^a, nearly constant: its integral
        # I r^2 / (2 + slope) closes the sum (a core index of 0.1 leaves ~1e-6 of the flux there)
        _, head, index, _, _ = self._ends(y)
        at_deep = torch.full_like(y[:, :1], deep)
        core = core + torch.exp(self._log_profile(at_deep, y) + 2 * deep) / (2.0 + head * torch.exp(-END_DEPTH * index))
        middle = simpson(math.log(r_min), math.log(r_max), 1025)
        tail = simpson(math.log(r_max), math.log(r_max) + END_DEPTH, 513)
        return (2 * math.pi * (core + middle + tail)).reshape(-1, 1, 1)
