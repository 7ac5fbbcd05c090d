"""GALFIT 3 input files ("feedmes"): the grammar, read into plain data.

A feedme has control lines ``A)`` to ``W)`` and then components, each opened by
``0) <type>`` and made of numbered parameter lines ``1) x y fit_x fit_y``,
``3) value fit``, ... (fit toggles 0 fixed, 1 free, 2 coupled by the constraint
file: GALFIT's restart files hold 2s), the hidden ``C0) value fit`` (boxiness), the hidden
azimuthal Fourier modes ``F<m>) amplitude phase fit_a fit_phi`` (m >= 1; any
component but psf, sky and edgedisk), bending modes ``B<m>) amplitude fit``, a
truncation (``Ti)``/``To)`` with ``T0) T4) T5)`` in the same block) and ``Z) 0|1``
(skip in the output image). Everything after ``#`` is a comment; blank lines
and separator lines (``=====``, ``-----``) are ignored; fields may be separated
by tabs. The "Object number" and "Component number" headers of different
GALFIT versions are comments.

This module only reads: :func:`parse_feedme` gives a :class:`Feedme` holding the
numbers as GALFIT means them. :mod:`galmoss.galfit.convert` turns it into
galmoss profiles and a Dataset.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import GalmossError


class FeedmeError(GalmossError, ValueError):
    """A GALFIT input or constraint file that galmoss cannot read (names file, line and text)."""


class FeedmeUnsupportedError(FeedmeError, NotImplementedError):
    """A GALFIT feature galmoss does not have (a component type or hidden parameter)."""


#: Parameter numbers each supported component reads, with GALFIT's meaning.
COMPONENT_PARAMETERS: dict[str, dict[str, str]] = {
    "sersic": {"1": "position x, y [pixel]", "3": "total magnitude", "4": "R_e [pixel]", "5": "Sersic index n",
               "9": "axis ratio b/a", "10": "position angle [deg: Up=0, Left=90]"},
    "devauc": {"1": "position x, y [pixel]", "3": "total magnitude", "4": "R_e [pixel]",
               "9": "axis ratio b/a", "10": "position angle [deg: Up=0, Left=90]"},
    "expdisk": {"1": "position x, y [pixel]", "3": "total magnitude", "4": "R_s disk scale length [pixel]",
                "9": "axis ratio b/a", "10": "position angle [deg: Up=0, Left=90]"},
    "gaussian": {"1": "position x, y [pixel]", "3": "total magnitude", "4": "FWHM [pixel]",
                 "9": "axis ratio b/a", "10": "position angle [deg: Up=0, Left=90]"},
    "moffat": {"1": "position x, y [pixel]", "3": "total magnitude", "4": "FWHM [pixel]", "5": "powerlaw",
               "9": "axis ratio b/a", "10": "position angle [deg: Up=0, Left=90]"},
    "king": {"1": "position x, y [pixel]", "3": "mu(0) central surface brightness [mag/arcsec^2]",
             "4": "R_c core radius [pixel]", "5": "R_t truncation radius [pixel]", "6": "alpha powerlaw",
             "9": "axis ratio b/a", "10": "position angle [deg: Up=0, Left=90]"},
    "ferrer": {"1": "position x, y [pixel]", "3": "mu(0) central surface brightness [mag/arcsec^2]",
               "4": "R_out outer truncation radius [pixel]", "5": "alpha (outer truncation sharpness)",
               "6": "beta (central slope)", "9": "axis ratio b/a", "10": "position angle [deg: Up=0, Left=90]"},
    "nuker": {"1": "position x, y [pixel]", "3": "mu(R_b) surface brightness at R_b [mag/arcsec^2]",
              "4": "R_b break radius [pixel]", "5": "alpha (sharpness of transition)",
              "6": "beta (outer powerlaw slope)", "7": "gamma (inner powerlaw slope)",
              "9": "axis ratio b/a", "10": "position angle [deg: Up=0, Left=90]"},
    "edgedisk": {"1": "position x, y [pixel]", "3": "mu(0) central surface brightness [mag/arcsec^2]",
                 "4": "h_s disk scale-height [pixel]", "5": "R_s disk scale-length [pixel]",
                 "10": "position angle [deg: Up=0, Left=90]"},
    "psf": {"1": "position x, y [pixel]", "3": "total magnitude"},
    "sky": {"1": "sky background [ADU counts]", "2": "dsky/dx [ADU/pix]", "3": "dsky/dy [ADU/pix]"},
}
#: Parameters a component must give (the others have defaults, see convert.py).
REQUIRED_PARAMETERS: dict[str, tuple[str, ...]] = {
    "sersic": ("1", "3", "4", "5"), "devauc": ("1", "3", "4"), "expdisk": ("1", "3", "4"),
    "gaussian": ("1", "3", "4"), "moffat": ("1", "3", "4", "5"), "king": ("1", "3", "4", "5"),
    "ferrer": ("1", "3", "4"), "psf": ("1", "3"), "sky": ("1",), "nuker": ("1", "3", "4", "5", "6", "7"),
    "edgedisk": ("1", "3", "4", "5"),
}
#: GALFIT components galmoss has no profile for.
UNSUPPORTED_COMPONENTS: dict[str, str] = {}
#: Components that take no Fourier modes (F<m> lines) or C0; every other type is elliptical.
FOURIER_REFUSED = ("psf", "sky", "edgedisk")
_HIDDEN = {"F": "azimuthal Fourier mode", "B": "bending mode", "R": "coordinate rotation", "T": "truncation"}

CONTROL_KEYS = "ABCDEFGHIJKOPSW"
_LABEL = re.compile(r"^\s*([A-Za-z0-9]+)\)\s*(.*)$")
_SEPARATOR = re.compile(r"^\s*[=\-_*]+\s*$")


@dataclass
class Line:
    """One parsed line: its number in the file, its fields and the raw text."""

    number: int
    fields: list[str]
    text: str


@dataclass
class Parameter:
    """A component parameter line: its values and fit toggles (GALFIT units)."""

    label: str
    values: list[float]
    fit: list[bool]
    line: int


@dataclass
class Component:
    """One ``0) <type>`` block of a feedme."""

    kind: str
    index: int  # 1-based component number, as GALFIT numbers them
    line: int
    params: dict[str, Parameter] = field(default_factory=dict)
    skip: bool = False
    truncation_type: str | None = None  # T0) of a truncated component ("radial")

    def value(self, label: str, default: float | None = None, i: int = 0) -> float | None:
        prm = self.params.get(label)
        return default if prm is None else prm.values[i]


@dataclass(frozen=True)
class PriorLine:
    """One ``# galmoss prior`` line: a normal prior on a component's parameter (galmoss.params.priors.Normal)."""

    component: int
    parameter: str  # a constraint file's parameter name (re, n, q, mag, ...) or number
    mu: float
    sigma: float
    space: str
    bounds: tuple[float, float] | None
    line: int


_EXTENSION = re.compile(r"^\s*#\s*galmoss\s+(priors?)\b(.*)$", re.IGNORECASE)


def _extension_lines(path: Path, text: str) -> tuple[list[PriorLine], str | None]:
    """galmoss's comment lines (GALFIT skips them): priors on parameters, and a preset of priors."""
    from ..params.priors import PRESETS, SPACES

    priors, preset = [], None
    for number, raw in enumerate(text.splitlines(), start=1):
        m = _EXTENSION.match(raw)
        if not m:
            continue
        words = m.group(2).split("#", 1)[0].split()
        if m.group(1).lower() == "priors":
            if len(words) != 1 or words[0].lower() not in PRESETS:
                _fail(path, number, raw, f"'# galmoss priors <preset>' takes one of {', '.join(sorted(PRESETS))}")
            preset = words[0].lower()
            continue
        usage = ("write '# galmoss prior <component> <parameter> normal <mu> <sigma> [<space> [<lo> <hi>]]', "
                 f"space one of {', '.join(SPACES)}")
        if len(words) not in (5, 6, 8) or words[2].lower() != "normal":
            _fail(path, number, raw, usage)
        try:
            comp, mu, sigma = int(words[0]), float(words[3]), float(words[4])
            bounds = (float(words[6]), float(words[7])) if len(words) == 8 else None
        except ValueError:
            _fail(path, number, raw, usage)
        space = words[5].lower() if len(words) > 5 else "auto"
        if space not in SPACES or not (math.isfinite(sigma) and sigma > 0) or not math.isfinite(mu):
            _fail(path, number, raw, usage + "; sigma > 0")
        priors.append(PriorLine(comp, words[1].lower(), mu, sigma, space, bounds, number))
    return priors, preset


class _Located:
    """``where(key)``: the file and line of a control line, for messages (a dataclass with ``path`` and ``lines``)."""

    def where(self, key: str) -> str:
        line = self.lines.get(key)
        return f"{self.path}, line {line.number}" if line else str(self.path)


@dataclass
class Feedme(_Located):
    """A GALFIT input file, read.

    Paths are resolved (relative paths against ``base``, the feedme's folder by
    default) and ``None`` stands for GALFIT's ``none`` or a blank value.
    """

    path: Path
    image: Path
    output: Path
    sigma: Path | None
    psf: Path | None
    psf_sampling: int
    mask: Path | None
    constraints: Path | None
    region: tuple[int, int, int, int] | None
    conv_box: tuple[float, float] | None
    zeropoint: float
    plate_scale: tuple[float, float]
    display: str
    mode: int
    components: list[Component]
    lines: dict[str, Line] = field(default_factory=dict)
    #: galmoss's own extension, comment lines GALFIT skips: ``# galmoss prior <comp> <param> normal <mu> <sigma>
    #: [<space> [<lo> <hi>]]`` and ``# galmoss priors <preset>`` (docs/galfit.md)
    priors: list[PriorLine] = field(default_factory=list)
    prior_preset: str | None = None

    @property
    def structure(self) -> tuple:
        """What fixes the shape of the fitted model (feedmes that agree are fitted as one batch)."""
        comps = tuple(
            (c.kind, c.skip, tuple(sorted((k, tuple(p.fit)) for k, p in c.params.items())))
            for c in self.components
        )
        priors = tuple((p.component, p.parameter, p.space, p.bounds) for p in self.priors)
        return (comps, self.psf is not None, self.psf_sampling, self.constraints is not None, self.mode, priors,
                self.prior_preset)


def _fail(path, number: int, text: str, why: str, cls=FeedmeError):
    raise cls(f"{path}, line {number}: {why}: {text.strip()!r}")


def _float(path, line: Line, token: str, what: str) -> float:
    try:
        return float(token)
    except ValueError:
        _fail(path, line.number, line.text, f"{what} must be a number, got {token!r}")


def _int(path, line: Line, token: str, what: str) -> int:
    try:
        value = float(token)
    except ValueError:
        _fail(path, line.number, line.text, f"{what} must be an integer, got {token!r}")
    if value != int(value):
        _fail(path, line.number, line.text, f"{what} must be an integer, got {token!r}")
    return int(value)


def _toggle(path, line: Line, token: str) -> bool:
    """Free (1, or 2: GALFIT's mark of a parameter its constraint file couples) or fixed (0)."""
    if token not in ("0", "1", "2"):
        _fail(path, line.number, line.text, f"a fit toggle must be 0 (fixed), 1 (free) or 2 (coupled), got {token!r}")
    return token != "0"


def _path(value: list[str], base: Path, *, optional: bool) -> Path | None:
    if not value or (optional and value[0].lower() == "none"):
        return None
    p = Path(os.path.expanduser(value[0]))
    return p if p.is_absolute() else base / p


def split_lines(path: Path, text: str, program: str = "GALFIT"):
    """(label, Line) for every line that holds one; errors (a ``program`` line expected) for lines that do not parse."""
    for number, raw in enumerate(text.splitlines(), start=1):
        body = raw.split("#", 1)[0].replace("\t", " ")
        if not body.strip() or _SEPARATOR.match(body):
            continue
        m = _LABEL.match(body)
        if not m:
            _fail(path, number, raw, f"not a {program} line (expected 'X) value ...', a comment after '#', or blank)")
        yield m.group(1), Line(number, m.group(2).split(), raw)


def read_input(path: str | os.PathLike, base: str | os.PathLike | None,
               program: str = "GALFIT") -> tuple[Path, str, Path]:
    """An input file's path, its text and the folder its relative paths are taken from (default: its own).

    Raises
    ------
    FileNotFoundError
        If the file does not exist (named as ``program``'s input file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{program} input file '{path}' does not exist")
    return path, path.read_text(errors="replace"), Path(base) if base is not None else path.parent


def component_kind(path: Path, line: Line, index: int) -> str:
    """The type a ``0) <type>`` line opens component ``index`` with, refused unless galmoss has its profile."""
    if not line.fields:
        _fail(path, line.number, line.text, "a component needs a type after '0)'")
    kind = line.fields[0].lower()
    if kind in UNSUPPORTED_COMPONENTS:
        _fail(path, line.number, line.text,
              f"component {index} is a {kind} ({UNSUPPORTED_COMPONENTS[kind]}) profile, which "
              "galmoss does not have; replace it (e.g. by sersic) or fit this galaxy with GALFIT",
              FeedmeUnsupportedError)
    if kind not in COMPONENT_PARAMETERS:
        _fail(path, line.number, line.text,
              f"unknown component type {kind!r}; galmoss reads {', '.join(COMPONENT_PARAMETERS)}")
    return kind


def parse_feedme(path: str | os.PathLike, *, base: str | os.PathLike | None = None) -> Feedme:
    """Read a GALFIT 3 input file.

    Parameters
    ----------
    path
        The feedme.
    base
        Folder that relative file names in it are taken from (default: the
        feedme's own folder; GALFIT itself uses the folder it is run in, which is
        the same when it is run next to its feedme).

    Returns
    -------
    Feedme

    Raises
    ------
    FileNotFoundError
        If the feedme does not exist.
    FeedmeError
        A line that does not parse, a value of the wrong kind, a missing A) or
        B), an E) that is not a positive integer, a component lacking a
        parameter it needs (each naming the file, the line and its text), a file
        with no component.
    FeedmeUnsupportedError
        A hidden parameter (rotation Rn, a truncation other
        than radial with the component's own geometry) that galmoss does
        not have; Fourier lines
        ``F<m>)`` whose amplitude (or phase) toggles differ within a component.
    """
    path, text, base = read_input(path, base)
    control: dict[str, Line] = {}
    components: list[Component] = []
    current: Component | None = None
    for label, line in split_lines(path, text):
        upper = label.upper()
        if label == "0":
            current = Component(component_kind(path, line, len(components) + 1), len(components) + 1, line.number)
            components.append(current)
            continue
        if current is None:
            if upper not in CONTROL_KEYS or len(upper) != 1:
                _fail(path, line.number, line.text,
                      f"unknown control line {label}); GALFIT's are {', '.join(CONTROL_KEYS)} (and components "
                      "start with '0) <type>')")
            control[upper] = line
            continue
        _component_line(path, current, label, line)
    for comp in components:
        missing = [k for k in REQUIRED_PARAMETERS[comp.kind] if k not in comp.params]
        if missing:
            _fail(path, comp.line, f"0) {comp.kind}",
                  f"component {comp.index} ({comp.kind}) lacks parameter(s) {', '.join(m + ')' for m in missing)} "
                  f"({'; '.join(COMPONENT_PARAMETERS[comp.kind][m] for m in missing)})")
        _check_fourier_toggles(path, comp)
        _check_truncation(path, comp)
        _check_bending_toggles(path, comp)
    feedme = _control(path, base, control, components)
    if not components:
        raise FeedmeError(f"{path}: the file has no component (no '0) <type>' line): there is nothing to fit")
    feedme.priors, feedme.prior_preset = _extension_lines(path, text)
    for prior in feedme.priors:
        if not 1 <= prior.component <= len(components):
            raise FeedmeError(f"{path}, line {prior.line}: '# galmoss prior' names component {prior.component}, but "
                              f"the file has {len(components)}")
    return feedme


def _component_line(path: Path, comp: Component, label: str, line: Line) -> None:
    upper = label.upper()
    where = f"component {comp.index} ({comp.kind})"
    if upper == "Z":
        if len(line.fields) < 1 or line.fields[0] not in ("0", "1"):
            _fail(path, line.number, line.text, f"{where}: Z) must be 0 (subtract) or 1 (skip in the output image)")
        comp.skip = line.fields[0] == "1"
        return
    if upper == "C0":
        if comp.kind in FOURIER_REFUSED:
            _fail(path, line.number, line.text, f"{where}: a {comp.kind} component has no C0 (boxiness)")
        nums = 1
    elif upper[0] == "F" and upper[1:].isdigit():
        _fourier_line(path, comp, label, line, where)
        return
    elif upper[0] == "B" and upper[1:].isdigit():
        _bending_line(path, comp, label, line, where)
        return
    elif upper in ("TI", "TO") or upper[0] == "T" and upper[1:].isdigit():
        _truncation_line(path, comp, label, line, where)
        return
    elif upper[0] in _HIDDEN and upper[1:].isdigit() or upper in ("TO", "TI"):
        _fail(path, line.number, line.text,
              f"{where} has the hidden parameter {label}) ({_HIDDEN[upper[0]]}), which galmoss does not have; "
              "remove the line to fit the plain profile", FeedmeUnsupportedError)
    elif label.isdigit():
        known = COMPONENT_PARAMETERS[comp.kind]
        if label not in known:
            # GALFIT's own restart files carry placeholder lines ("6) 0.0 0 # -----")
            # for parameter numbers a profile does not use; GALFIT ignores them.
            return
        nums = 2 if (label == "1" and comp.kind != "sky") else 1
    else:
        _fail(path, line.number, line.text, f"{where}: unknown parameter line {label})")
    tokens = line.fields
    if len(tokens) < 2 * nums:
        _fail(path, line.number, line.text,
              f"{where}: parameter {label}) needs {nums} value(s) and {nums} fit toggle(s) (1 = fit, 0 = fixed)")
    values = [_float(path, line, t, f"parameter {label})") for t in tokens[:nums]]
    fit = [_toggle(path, line, t) for t in tokens[nums : 2 * nums]]
    comp.params[upper] = Parameter(upper, values, fit, line.number)


def fourier_modes(comp: Component) -> list[int]:
    """The Fourier mode numbers m a component's ``F<m>)`` lines give, ascending."""
    return sorted(int(k[1:]) for k in comp.params if k[0] == "F" and k[1:].isdigit())


def _check_fourier_toggles(path: Path, comp: Component) -> None:
    """All amplitudes of a component free or all fixed, and likewise the phases.

    galmoss fits a component's amplitudes as one vector parameter and its phases
    as another, each free or fixed as a whole.
    """
    lines = [comp.params[f"F{m}"] for m in fourier_modes(comp)]
    for i, what in ((0, "amplitude"), (1, "phase")):
        toggles = {prm.fit[i] for prm in lines}
        if len(toggles) > 1:
            first = lines[0]
            odd = next(prm for prm in lines if prm.fit[i] != first.fit[i])
            _fail(path, odd.line, f"{odd.label}) ... {int(odd.fit[0])} {int(odd.fit[1])}",
                  f"component {comp.index} ({comp.kind}): the {what} of {odd.label}) is "
                  f"{'free' if odd.fit[i] else 'fixed'} but that of {first.label}) (line {first.line}) is "
                  f"{'free' if first.fit[i] else 'fixed'}; galmoss fits a component's Fourier {what}s as one vector, "
                  f"all free or all fixed: give every F line of the component the same {what} toggle", FeedmeUnsupportedError)


def _fourier_line(path: Path, comp: Component, label: str, line: Line, where: str) -> None:
    """``F<m>) amplitude phase fit_a fit_phi``: azimuthal Fourier mode m (see galmoss.galfit.convert)."""
    upper = label.upper()
    if comp.kind in FOURIER_REFUSED:
        _fail(path, line.number, line.text,
              f"{where}: a {comp.kind} component has no Fourier modes ({label}) is for elliptical profiles: "
              f"{', '.join(k for k in COMPONENT_PARAMETERS if k not in FOURIER_REFUSED)})")
    m = int(upper[1:])
    if m < 1:
        _fail(path, line.number, line.text,
              f"{where}: Fourier mode numbers start at 1 (F1 lopsided, F3 triangular, F4 boxy), got {label})")
    if upper in comp.params:
        _fail(path, line.number, line.text,
              f"{where}: Fourier mode {m} is given twice (first on line {comp.params[upper].line}); keep one line")
    tokens = line.fields
    if len(tokens) < 4:
        _fail(path, line.number, line.text,
              f"{where}: {label}) needs an amplitude, a phase angle [degrees] and two fit toggles (1 = fit, 0 = fixed)")
    values = [_float(path, line, t, f"{label}) {what}") for t, what in zip(tokens[:2], ("amplitude", "phase angle"))]
    fit = [_toggle(path, line, t) for t in tokens[2:4]]
    if not all(math.isfinite(v) for v in values):
        _fail(path, line.number, line.text, f"{where}: {label}) needs finite numbers")
    comp.params[f"F{m}"] = Parameter(f"F{m}", values, fit, line.number)


def bending_modes(comp: Component) -> list[int]:
    """The bending mode numbers m a component's ``B<m>)`` lines give, ascending."""
    return sorted(int(k[1:]) for k in comp.params if k[0] == "B" and k[1:].isdigit())


def _bending_line(path: Path, comp: Component, label: str, line: Line, where: str) -> None:
    """``B<m>) amplitude fit``: bending mode m (galmoss.lp.with_bending), amplitude in pixels."""
    upper = label.upper()
    if comp.kind in FOURIER_REFUSED:
        _fail(path, line.number, line.text, f"{where}: a {comp.kind} component has no bending modes ({label}) is for "
              f"elliptical profiles: {', '.join(k for k in COMPONENT_PARAMETERS if k not in FOURIER_REFUSED)})")
    m = int(upper[1:])
    if m < 1:
        _fail(path, line.number, line.text, f"{where}: bending mode numbers start at 1 (B1 shear, B2 banana, B3 S-shape)")
    if upper in comp.params:
        _fail(path, line.number, line.text, f"{where}: bending mode {m} is given twice (first on line "
              f"{comp.params[upper].line}); keep one line")
    tokens = line.fields
    if len(tokens) < 2:
        _fail(path, line.number, line.text, f"{where}: {label}) needs an amplitude [pixels] and a fit toggle (1 = fit, 0 = fixed)")
    value = _float(path, line, tokens[0], f"{label}) amplitude")
    if not math.isfinite(value):
        _fail(path, line.number, line.text, f"{where}: {label}) needs a finite amplitude")
    comp.params[f"B{m}"] = Parameter(f"B{m}", [value], [_toggle(path, line, tokens[1])], line.number)


def _check_bending_toggles(path: Path, comp: Component) -> None:
    """All bending amplitudes of a component free or all fixed (one vector parameter)."""
    lines = [comp.params[f"B{m}"] for m in bending_modes(comp)]
    if len({prm.fit[0] for prm in lines}) > 1:
        first = lines[0]
        odd = next(prm for prm in lines if prm.fit[0] != first.fit[0])
        _fail(path, odd.line, f"{odd.label}) ... {int(odd.fit[0])}",
              f"component {comp.index} ({comp.kind}): {odd.label}) is {'free' if odd.fit[0] else 'fixed'} but "
              f"{first.label}) (line {first.line}) is {'free' if first.fit[0] else 'fixed'}; galmoss fits a component's "
              "bending amplitudes as one vector, all free or all fixed", FeedmeUnsupportedError)


#: The truncation lines galmoss reads, with GALFIT's meaning (galmoss.lp.with_truncation).
TRUNCATION_LINES = {"T4": "Break radius (99% normal flux) [pixels]", "T5": "Softening length (1% flux) [pixels]"}
_TRUNCATION_REFUSED = {
    "T1": "its own centre", "T2": "its own second centre parameter", "T3": "a type-2 break radius (radius-break beginning)",
    "T6": "an unused slot", "T7": "an unused slot", "T8": "an unused slot", "T9": "its own axis ratio",
    "T10": "its own position angle",
}


def truncation_kind(comp: Component) -> str | None:
    """"inner" (``Ti)``), "outer" (``To)``) or None: how a component is truncated."""
    if "TI" in comp.params:
        return "inner"
    if "TO" in comp.params:
        return "outer"
    return None


def _truncation_line(path: Path, comp: Component, label: str, line: Line, where: str) -> None:
    """``Ti) N`` / ``To) N``, ``T0) radial``, ``T4) r_break fit``, ``T5) dr_soft fit``: a truncated component.

    galmoss reads the truncation whose T lines are in the truncated component
    itself (N its own number; the truncation shares its centre, axis ratio and
    position angle): :func:`galmoss.lp.with_truncation`.
    """
    upper = label.upper()
    tokens = line.fields
    if comp.kind in FOURIER_REFUSED:
        _fail(path, line.number, line.text, f"{where}: galmoss truncates elliptical profiles only, not a {comp.kind}",
              FeedmeUnsupportedError)
    if upper in comp.params or upper == "T0" and comp.truncation_type is not None:
        _fail(path, line.number, line.text, f"{where}: {label}) is given twice; keep one line")
    if upper in ("TI", "TO"):
        if not tokens:
            _fail(path, line.number, line.text, f"{where}: {label}) needs the number of the truncating component")
        number = _int(path, line, tokens[0], f"{label}) component number")
        if number != comp.index:
            _fail(path, line.number, line.text,
                  f"{where}: {label}) {number} truncates it by component {number}; galmoss reads a truncation whose "
                  f"T lines are in the component itself ({label}) {comp.index} with T0) radial, T4) and T5))",
                  FeedmeUnsupportedError)
        comp.params[upper] = Parameter(upper, [float(number)], [False], line.number)
        return
    if upper == "T0":
        kind = tokens[0].lower() if tokens else ""
        if kind != "radial":
            _fail(path, line.number, line.text,
                  f"{where}: truncation type {kind or '(none)'!r}; galmoss has the default radial truncation only "
                  "(not radial-b, radial2, radial2-b, length or height)", FeedmeUnsupportedError)
        comp.truncation_type = kind
        return
    if upper in TRUNCATION_LINES:
        if len(tokens) < 2:
            _fail(path, line.number, line.text, f"{where}: {label}) needs a value and a fit toggle (1 = fit, 0 = fixed)")
        value = _float(path, line, tokens[0], f"{label})")
        if not (math.isfinite(value) and value > 0):
            _fail(path, line.number, line.text, f"{where}: {label}) ({TRUNCATION_LINES[upper]}) must be positive")
        comp.params[upper] = Parameter(upper, [value], [_toggle(path, line, tokens[1])], line.number)
        return
    what = _TRUNCATION_REFUSED.get(upper, "a truncation parameter galmoss does not know")
    _fail(path, line.number, line.text,
          f"{where}: {label}) gives the truncation {what}, which galmoss does not have; galmoss's truncation shares "
          "the component's centre, axis ratio and position angle (T0) radial, T4), T5))", FeedmeUnsupportedError)


def _check_truncation(path: Path, comp: Component) -> None:
    """A truncated component has one of Ti)/To), T4) and T5) (T0) radial optional); T lines need Ti)/To)."""
    has_t = comp.truncation_type is not None or any(k in comp.params for k in TRUNCATION_LINES)
    refs = [k for k in ("TI", "TO") if k in comp.params]
    if not refs and not has_t:
        return
    where = f"component {comp.index} ({comp.kind})"
    if len(refs) == 2:
        _fail(path, comp.params["TO"].line, "To)", f"{where}: both Ti) and To) name the component's own T lines; "
              "galmoss reads one truncation per component", FeedmeUnsupportedError)
    # T0) left out is the default radial truncation
    missing = ([] if refs else ["Ti) or To)"]) + [f"{k})" for k in ("T4", "T5") if k not in comp.params]
    if missing:
        _fail(path, comp.line, f"0) {comp.kind}", f"{where}: a truncation needs {', '.join(missing)}")


def region_of(path: Path, line: Line, *, whole: bool = True) -> tuple[int, int, int, int]:
    """The ``H) xmin xmax ymin ymax`` line's region (1-based, inclusive).

    ``whole=False`` cuts decimals off instead of refusing them (GalfitM's files are read so).
    """
    if len(line.fields) < 4:
        _fail(path, line.number, line.text, "H) needs xmin xmax ymin ymax")
    if whole:
        region = tuple(_int(path, line, t, "H) region") for t in line.fields[:4])
    else:
        try:
            region = tuple(int(float(t)) for t in line.fields[:4])
        except ValueError:
            _fail(path, line.number, line.text, "H) needs xmin xmax ymin ymax")
    # GALFIT clips a region starting at 0 (or below) to the image's first pixel
    region = (max(region[0], 1), region[1], max(region[2], 1), region[3])
    if not (region[0] <= region[1] and region[2] <= region[3]):
        _fail(path, line.number, line.text, "H) region must have xmin <= xmax and ymin <= ymax")
    return region


def _control(path: Path, base: Path, control: dict[str, Line], components: list[Component]) -> Feedme:
    def fields(key: str) -> list[str]:
        return control[key].fields if key in control else []

    def need(key: str, what: str) -> list[str]:
        if not fields(key):
            where = f"{path}, line {control[key].number}" if key in control else str(path)
            raise FeedmeError(f"{where}: {key}) ({what}) is required and is missing or blank")
        return fields(key)

    need("A", "input data image")
    need("B", "output image block")
    if len(fields("D")) > 1:
        line = control["D"]
        _fail(path, line.number, line.text, "a PSF diffusion kernel (second file on D) is not supported by galmoss",
              FeedmeUnsupportedError)
    sampling = 1
    if fields("E"):
        line = control["E"]
        token = fields("E")[0]
        try:
            value = float(token)
        except ValueError:
            value = float("nan")
        if not (value == value and value >= 1 and value == int(value)):
            _fail(path, line.number, line.text, f"E) (PSF fine-sampling factor) must be a positive integer, got {token!r}")
        sampling = int(value)
    region = region_of(path, control["H"]) if fields("H") else None
    conv = None
    if fields("I"):
        line = control["I"]
        # galmoss convolves the whole section and never uses I): any number is kept as written
        vals = [_float(path, line, t, "I) convolution box") for t in fields("I")[:2]]
        conv = tuple(int(v) if v == int(v) else v for v in (vals[0], vals[-1]))
    zeropoint = 0.0
    if fields("J"):
        zeropoint = _float(path, control["J"], fields("J")[0], "J) zero point")
    scale = (1.0, 1.0)
    if fields("K"):
        line = control["K"]
        vals = [_float(path, line, t, "K) plate scale") for t in fields("K")[:2]]
        scale = (vals[0], vals[-1])
        if min(scale) <= 0:
            _fail(path, line.number, line.text, "K) plate scale must be positive")
    mode = 0
    if fields("P"):
        line = control["P"]
        mode = _int(path, line, fields("P")[0], "P) option")
        if mode not in (0, 1, 2, 3):
            _fail(path, line.number, line.text, "P) must be 0 (fit), 1 (model), 2 (image block) or 3 (with components)")
    return Feedme(
        path=path,
        image=_path(fields("A"), base, optional=False),
        output=_path(fields("B"), base, optional=False),
        sigma=_path(fields("C"), base, optional=True),
        psf=_path(fields("D"), base, optional=True),
        psf_sampling=sampling,
        mask=_path(fields("F"), base, optional=True),
        constraints=_path(fields("G"), base, optional=True),
        region=region,
        conv_box=conv,
        zeropoint=zeropoint,
        plate_scale=scale,
        display=(fields("O") or ["regular"])[0],
        mode=mode,
        components=components,
        lines=control,
    )
