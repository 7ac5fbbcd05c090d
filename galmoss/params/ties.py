"""Couplings between two parameters: an offset or a ratio tie.

``gm.tie(base, offset=d)`` is a parameter whose value is always ``base + d``;
``gm.tie(base, ratio=k)`` is always ``base * k`` (both in the user's units of
``base``). ``d`` or ``k`` is a number (one for all galaxies or one per galaxy),
or itself a :func:`galmoss.p`: a free ``gm.p`` with a ``value_range`` keeps a
difference or a ratio inside a range while both parameters move (GALFIT's
``3-2 mag -1 1`` and ``3/2 re 0.5 1.5``).

>>> bulge_x = gm.p(64.5)
>>> disk = gm.lp.ExpDisk(cen_x=gm.tie(bulge_x, offset=0.3), ...)      # keeps 0.3 px apart
>>> disk = gm.lp.ExpDisk(scale_l=gm.tie(bulge_re, ratio=gm.p(2.0, value_range=(1.0, 4.0))), ...)

A tied parameter is not a free parameter of the fit: the model computes it from
its base (and its link) every time it is evaluated, so derivatives and the
delta-method errors of the tied values follow exactly. ``offset_from_start`` and
``ratio_from_start`` make GALFIT's hard constraints (``1_2_3 x offset`` keeps the
start's offsets).
"""

from __future__ import annotations

import numpy as np
import torch

from .parameter import Parameter


class Tied(Parameter):
    """A parameter computed from another: ``base + link`` or ``base * link``.

    Parameters
    ----------
    base
        The parameter this one follows.
    link
        The offset or ratio: a fixed or free :class:`Parameter` in the user's
        units of ``base`` (a ratio is dimensionless).
    op
        ``"offset"`` or ``"ratio"``.
    name
        Optional label for messages.
    """

    def __init__(self, base: Parameter, link: Parameter, op: str, name: str | None = None) -> None:
        if not isinstance(base, Parameter) or not isinstance(link, Parameter):
            raise TypeError("gm.tie: base and the offset/ratio must be gm.p parameters or numbers")
        if op not in ("offset", "ratio"):
            raise ValueError(f"gm.tie: op must be 'offset' or 'ratio', got {op!r}")
        if isinstance(link, Tied):
            raise ValueError("gm.tie: the offset or ratio of a tie cannot itself be tied; give a gm.p or a number")
        if link.M0 is not None or link.pix_scale is not None or link.angle or link.log:
            raise ValueError(
                "gm.tie: the offset or ratio is in the user units of the base parameter; give it as a plain "
                "gm.p (no M0, pix_scale, angle or log)"
            )
        if getattr(base, "initial", None) is None or getattr(link, "initial", None) is None:
            raise ValueError("gm.tie: the base and the offset/ratio need start values (gm.p(value, ...))")
        if base.is_vector or link.is_vector:
            raise NotImplementedError(
                "gm.tie: ties of vector parameters (dim='2d') are not implemented; tie scalar parameters only"
            )
        start = base.initial + link.initial if op == "offset" else base.initial * link.initial
        super().__init__(start, M0=base.M0, pix_scale=base.pix_scale, angle=base.angle, fit=False, name=name)
        self.base = base
        self.link = link
        self.op = op

    def value_from(self, base_value: torch.Tensor, link_value: torch.Tensor, units=None) -> torch.Tensor:
        """Profile-unit value from the profile-unit values of the base and the link.

        ``units`` maps each parameter to the user-to-profile map of the slots it
        fills (a position angle is in degrees in an angle slot); None: each
        parameter's own map.
        """
        def unit(prm):
            return units[prm] if units is not None and prm in units else prm.units

        base_user = unit(self.base).to_user(base_value)
        link_user = unit(self.link).to_user(link_value)
        user = base_user + link_user if self.op == "offset" else base_user * link_user
        return unit(self).to_profile(user)

    def __repr__(self) -> str:
        return f"gm.tie({self.base!r}, {self.op}={self.link!r})"


def _as_link(value, what: str) -> Parameter:
    if isinstance(value, Parameter):
        return value
    return Parameter(np.asarray(value, dtype=np.float64), fit=False, name=what)


def tie(base: Parameter, *, offset=None, ratio=None, name: str | None = None) -> Tied:
    """A parameter tied to ``base`` by an offset (``base + offset``) or a ratio (``base * ratio``).

    Parameters
    ----------
    base
        The parameter to follow (free, fixed or itself tied).
    offset, ratio
        Exactly one: a number, one number per galaxy, or a :func:`galmoss.p`
        (free with a ``value_range`` to keep the difference/ratio in a range).
    name
        Optional label for messages.

    Returns
    -------
    Tied
    """
    if (offset is None) == (ratio is None):
        raise ValueError("gm.tie: give exactly one of offset= or ratio=")
    if offset is not None:
        return Tied(base, _as_link(offset, "offset"), "offset", name)
    return Tied(base, _as_link(ratio, "ratio"), "ratio", name)


def offset_from_start(base: Parameter, start, **kwargs) -> Tied:
    """A tie that keeps the start's offset: ``start - base's start`` (GALFIT's ``offset``)."""
    return tie(base, offset=np.asarray(start, dtype=np.float64) - base.initial, **kwargs)


def ratio_from_start(base: Parameter, start, **kwargs) -> Tied:
    """A tie that keeps the start's ratio: ``start / base's start`` (GALFIT's ``ratio``)."""
    return tie(base, ratio=np.asarray(start, dtype=np.float64) / base.initial, **kwargs)


__all__ = ["Tied", "offset_from_start", "ratio_from_start", "tie"]


def order_ties(uses: dict) -> list[Tied]:
    """The ties among ``uses`` (parameter -> [(profile, slot)]), each after what it depends on.

    Bases and links that no profile uses directly are added to ``uses`` under the
    tied parameter's first slot (``<slot>~base``, ``<slot>~link``) so that the model
    counts them as parameters (a free link is a free parameter of the fit).
    """
    ties: list[Tied] = []
    pending = [prm for prm in uses if isinstance(prm, Tied)]
    seen: set[int] = set()
    while pending:
        tied = pending.pop(0)
        if id(tied) in seen:
            continue
        where = uses[tied][0]
        for part, role in ((tied.base, "base"), (tied.link, "link")):
            if part not in uses:
                uses[part] = [(where[0], f"{where[1]}~{role}")]
                if isinstance(part, Tied):
                    pending.append(part)
        if isinstance(tied.base, Tied) and id(tied.base) not in seen:
            pending.append(tied)  # its base first
            if tied.base not in pending:
                pending.insert(0, tied.base)
            continue
        seen.add(id(tied))
        ties.append(tied)
    return ties
