"""GALFIT constraint files (the G) line).

Each line is ``<components> <parameter> <constraint>``, comments after ``#``::

    1_2_3   x     offset      # hard: the start's offsets between components 1, 2, 3 are kept
    1_2     re    ratio       # hard: the start's ratio is kept
    1       n     0.7 to 5    # soft: 0.7 <= n_1 <= 5
    2       x     -1  1       # soft: x_2 within -1 and +1 of its START value
    3-2     mag   -1  1       # soft: -1 <= mag_3 - mag_2 <= 1
    3/2     re    0.5 1.5     # soft: 0.5 <= re_3 / re_2 <= 1.5

The parameter is a name (``x``, ``y``, ``mag``, ``re``/``rs``/``fwhm``/``rc``,
``n``, ``alpha``, ``beta``, ``q``, ``pa``, ``c``/``c0``, ``sky``, ``f<m>a`` /
``f<m>p`` for Fourier mode m's amplitude / phase) or a parameter
number of the component (``3``, ``4``, ..., ``1`` = x and ``2`` = y of a
positioned component). :func:`parse_constraints` reads a file;
:mod:`galmoss.galfit.convert` applies the constraints to the profiles (ranges
become ``value_range``, couplings become :func:`galmoss.tie`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .feedme import Component, FeedmeError, FeedmeUnsupportedError
from .slots import slot_of

_NAMES = {
    "x": "1x", "y": "1y", "mag": "3", "re": "4", "rs": "4", "fwhm": "4", "rc": "4",
    "q": "9", "pa": "10", "c": "C0", "c0": "C0",
}
_UNSUPPORTED_NAMES = re.compile(r"^(b\d+|r\d+|t\w*)$")
_FOURIER_NAMES = re.compile(r"^f\d+(a|p|pa|amp|phi)?$")


@dataclass(frozen=True)
class Constraint:
    """One constraint line.

    ``kind`` is ``offset`` or ``ratio`` (hard couplings of ``components``),
    ``range`` (absolute ``lo <= p <= hi``), ``relative`` (``start + lo <= p <=
    start + hi``), ``difference`` (``lo <= p_a - p_b <= hi``) or ``quotient``
    (``lo <= p_a / p_b <= hi``); ``label`` is the GALFIT parameter (``1x``, ``1y``,
    ``3``, ... ``10``, ``C0``, ``F<m>`` / ``F<m>PA`` for a Fourier amplitude / phase).
    """

    kind: str
    components: tuple[int, ...]
    label: str
    lo: float | None
    hi: float | None
    path: Path
    line: int
    text: str

    @property
    def where(self) -> str:
        return f"{self.path}, line {self.line} ({self.text.strip()!r})"

    @property
    def key(self) -> tuple:
        """What the constraint does to the model's structure (numbers of hard ties are per galaxy)."""
        numbers = (self.lo, self.hi) if self.kind in ("range", "difference", "quotient", "relative") else ()
        return (self.kind, self.components, self.label, numbers)


def parameter_label(name: str, comp: Component, where: str) -> str:
    """GALFIT's parameter label (``1x``, ``3``, ``C0``...) of a constraint's parameter name for ``comp``."""
    name = name.lower()
    kind = comp.kind
    fourier = _FOURIER_NAMES.match(name)
    if fourier:
        from .feedme import fourier_modes

        m = int(re.match(r"f(\d+)", name).group(1))
        if fourier.group(1) is None:
            raise FeedmeError(f"{where}: {name!r} does not say amplitude or phase: write f{m}a or f{m}p")
        if m not in fourier_modes(comp):
            raise FeedmeError(f"{where}: component {comp.index} has no Fourier mode {m} (no F{m}) line)")
        return f"F{m}" if fourier.group(1) in ("a", "amp") else f"F{m}PA"
    if _UNSUPPORTED_NAMES.match(name):
        raise FeedmeUnsupportedError(f"{where}: the parameter {name!r} belongs to a profile feature galmoss does not have")
    if name.isdigit():
        label = name
        if kind != "sky" and label in ("1", "2"):
            label = "1x" if label == "1" else "1y"
    elif name == "sky" and kind == "sky":
        label = "1"
    elif name == "n":
        label = "5"
    elif name == "alpha":
        label = {"king": "6", "ferrer": "5", "nuker": "5"}.get(kind, "")
    elif name == "beta":
        label = {"ferrer": "6", "nuker": "6"}.get(kind, "")
    elif name == "gamma":
        label = {"nuker": "7"}.get(kind, "")
    elif name == "rt" and kind == "king":
        label = "5"
    elif name in _NAMES:
        label = _NAMES[name]
    else:
        raise FeedmeError(f"{where}: unknown parameter name {name!r}")

    if not label or slot_of(kind, label) is None:
        raise FeedmeError(f"{where}: component {comp.index} is a {kind}, which has no parameter {name!r}")
    return label


def constraint_lines(path: Path, program: str = "GALFIT") -> list[tuple[int, str, str, list[str]]]:
    """``(number, raw text, where, fields)`` of each line of a constraint file that holds one (after '#' a comment).

    ``where`` names the file, line and text for messages.

    Raises
    ------
    FileNotFoundError
        If the file does not exist (named as ``program``'s constraint file).
    """
    if not path.is_file():
        raise FileNotFoundError(f"{program} constraint file '{path}' does not exist")
    out = []
    for number, raw in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        body = raw.split("#", 1)[0].replace("\t", " ").strip()
        if body:
            out.append((number, raw, f"{path}, line {number} ({raw.strip()!r})", body.split()))
    return out


def parse_constraints(path: str | os.PathLike, components: list[Component]) -> list[Constraint]:
    """Read a GALFIT constraint file for the ``components`` of its feedme.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    FeedmeError
        A line that does not parse, a component number the feedme does not
        have, or a parameter that component lacks (naming file, line and text).
    FeedmeUnsupportedError
        A constraint on a feature galmoss does not have (Fourier modes, ...),
        or a form it does not know.
    """
    path = Path(path)
    out: list[Constraint] = []
    by_index = {c.index: c for c in components}
    for number, raw, where, tokens in constraint_lines(path):
        if len(tokens) < 3:
            raise FeedmeError(f"{where}: a constraint is '<components> <parameter> <range or offset/ratio>'")
        spec, name, rest = tokens[0], tokens[1], tokens[2:]
        if re.fullmatch(r"\d+(_\d+)+", spec):
            comps = tuple(int(t) for t in spec.split("_"))
            kind = rest[0].lower()
            if len(rest) != 1 or kind not in ("offset", "ratio"):
                raise FeedmeError(f"{where}: a coupling of components {spec} must end in 'offset' or 'ratio'")
            lo = hi = None
        elif re.fullmatch(r"\d+", spec) or re.fullmatch(r"\d+[-/]\d+", spec):
            if re.fullmatch(r"\d+", spec):
                comps = (int(spec),)
                if len(rest) == 3 and rest[1].lower() == "to":
                    kind, nums = "range", (rest[0], rest[2])
                elif len(rest) == 2 and all(re.fullmatch(r"[-+.0-9eE]+", t) for t in rest):
                    kind, nums = "relative", (rest[0], rest[1])
                else:
                    raise FeedmeUnsupportedError(
                        f"{where}: galmoss reads 'lo to hi' (absolute) or 'lo hi' (relative to the start) here"
                    )
            else:
                sep = "-" if "-" in spec else "/"
                comps = tuple(int(t) for t in spec.split(sep))
                kind = "difference" if sep == "-" else "quotient"
                if len(rest) != 2:
                    raise FeedmeError(f"{where}: a range on a {'difference' if sep == '-' else 'ratio'} is 'lo hi'")
                nums = (rest[0], rest[1])
            try:
                lo, hi = float(nums[0]), float(nums[1])
            except ValueError:
                raise FeedmeError(f"{where}: the range must be two numbers") from None
            if not lo < hi:
                raise FeedmeError(f"{where}: the range needs lo < hi, got {lo:g} and {hi:g}")
            if kind == "quotient" and lo <= 0:
                raise FeedmeError(f"{where}: a ratio range must be positive")
        else:
            raise FeedmeError(f"{where}: cannot read the components {spec!r} (e.g. 1, 1_2_3, 3-2 or 3/2)")
        if len(set(comps)) != len(comps):
            raise FeedmeError(f"{where}: a component appears twice")
        labels = set()
        for k in comps:
            if k not in by_index:
                raise FeedmeError(f"{where}: the feedme has no component {k} (it has {len(components)})")
            labels.add(parameter_label(name, by_index[k], where))
        if len(labels) != 1:
            raise FeedmeError(f"{where}: {name!r} means different parameters for these component types")
        out.append(Constraint(kind, comps, labels.pop(), lo, hi, path, number, raw))
    return out
