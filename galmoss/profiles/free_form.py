"""A free-form radial profile: the surface brightness at K log-spaced radii, smoothly interpolated.

For galaxies no analytic profile fits: the shape is K free numbers (a vector
parameter), the geometry (centre, position angle, axis ratio) and the total
magnitude are the usual elliptical ones, and the renderer draws it exactly like
any elliptical profile (PSF-convolved).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..params import ParamSpec, Role
from .base import EllipticalProfile

Tensor = torch.Tensor

#: the power-law tail beyond the last radius falls at least this steeply (a finite flux)
MIN_TAIL_SLOPE = -3.0


class FreeForm(EllipticalProfile):
    """Surface brightness ``log10 I`` at K radii log-spaced from ``r_min`` to ``r_max`` (pixels, major axis).

    Between the radii ``ln I`` is a cubic Hermite function of ``ln r`` (slopes by
    finite differences: smooth, and local, so one value moves the profile near
    its radius only); inside ``r_min`` it is flat; beyond ``r_max`` a power law
    with the last interval's slope, at most -3 (so the flux is finite). The
    values set the shape only: ``mag`` is the total magnitude, as for every
    elliptical profile.

    Parameters
    ----------
    log_sb
        ``gm.p(values, dim="2d")`` with K values (any offset: only differences count).
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

    def expected_size(self, slot: str) -> int | None:
        return self.radii[2] if slot == "log_sb" else None

    def _nodes(self, like: Tensor) -> Tensor:
        r_min, r_max, k = self.radii
        return torch.linspace(math.log(r_min), math.log(r_max), k, dtype=like.dtype, device=like.device)

    def _log_profile(self, log_r: Tensor, y: Tensor) -> Tensor:
        """``ln I`` at ``log_r`` (B, ...) from the node values ``y`` (B, K) of ``ln I``."""
        x = self._nodes(y)
        k = x.numel()
        h = x[1] - x[0]
        slope = torch.empty_like(y)
        slope[:, 1:-1] = (y[:, 2:] - y[:, :-2]) / (2 * h)
        slope[:, 0] = (y[:, 1] - y[:, 0]) / h
        slope[:, -1] = (y[:, -1] - y[:, -2]) / h
        b = max(y.shape[0], log_r.shape[0] if log_r.dim() else 1)
        y = y.expand(b, -1)  # a shared radius table (leading 1) or shared values broadcast
        slope = slope.expand(b, -1)
        log_r = log_r.expand((b,) + tuple(log_r.shape[1:]))
        flat = log_r.reshape(b, -1)
        t_all = flat.clamp(x[0], x[-1])
        i = torch.clamp(((t_all.detach() - x[0]) / h).floor().long(), 0, k - 2)
        t = (t_all - x[0]) / h - i
        y0, y1 = torch.gather(y, 1, i), torch.gather(y, 1, i + 1)
        m0, m1 = torch.gather(slope, 1, i) * h, torch.gather(slope, 1, i + 1) * h
        t2, t3 = t * t, t * t * t
        inner = (2 * t3 - 3 * t2 + 1) * y0 + (t3 - 2 * t2 + t) * m0 + (-2 * t3 + 3 * t2) * y1 + (t3 - t2) * m1
        tail = torch.clamp(slope[:, -1:], max=MIN_TAIL_SLOPE)
        out = torch.where(flat > x[-1], y[:, -1:] + tail * (flat - x[-1]), inner)
        return out.reshape(log_r.shape)

    def profile_function(self, r: Tensor, v) -> Tensor:
        y = v["log_sb"] * math.log(10.0)
        y = y - y.amax(1, keepdim=True).detach()  # only differences count; keep exp() in range
        return torch.exp(self._log_profile(torch.log(r.clamp_min(1e-30)), y))

    def circular_integral(self, v) -> Tensor:
        y = v["log_sb"] * math.log(10.0)
        y = y - y.amax(1, keepdim=True).detach()
        r_min, r_max, _ = self.radii
        # 2 pi int I r dr: the flat core, Simpson in ln r between the radii (r dr = r^2 d ln r), the tail
        s = torch.linspace(math.log(r_min), math.log(r_max), 1025, dtype=y.dtype, device=y.device)
        f = torch.exp(self._log_profile(s.expand(y.shape[0], -1), y) + 2 * s)
        w = torch.ones(1025, dtype=y.dtype, device=y.device)
        w[1:-1:2], w[2:-1:2] = 4.0, 2.0
        middle = (f * w).sum(1, keepdim=True) * (s[1] - s[0]) / 3.0
        core = torch.exp(y[:, :1]) * r_min**2 / 2.0
        x = self._nodes(y)
        tail_slope = torch.clamp((y[:, -1:] - y[:, -2:-1]) / (x[1] - x[0]), max=MIN_TAIL_SLOPE)
        tail = torch.exp(y[:, -1:]) * r_max**2 / (-(tail_slope + 2.0))
        return (2 * math.pi * (core + middle + tail)).reshape(-1, 1, 1)
