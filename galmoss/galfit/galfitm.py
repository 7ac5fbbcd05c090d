"""GalfitM's multi-band input files in, GalfitM's outputs out (``galmoss galfit``; docs/galfit.md, "GalfitM").

GalfitM (the MegaMorph project's multi-band GALFIT) reads one input file for all
bands of a galaxy: comma-separated lists (CSL) where GALFIT has one file or
number, and per parameter a value per band with a *degree of freedom in
wavelength*. Its grammar, as its own example input (``EXAMPLE.GALFITM.INPUT``)
documents it:

* ``A)`` the images (one per band; the first band is the reference), ``A1)``
  the band labels, ``A2)`` their wavelengths (any unit); ``C)`` sigma images
  (an entry ``none`` makes that band's sigma from the data; one ``none`` for
  all bands), ``D)`` PSFs, ``F)`` masks (``none`` entries: no mask), ``J)``
  zero points: each a CSL or one value for every band.
* A parameter line ``<n>) <values> <toggle> [band|cheb]``: ``values`` one
  number (every band) or a CSL of one per band (``band``, the default), or
  with ``cheb`` a CSL of Chebyshev coefficients in wavelength (the first the
  value at the middle of the wavelength range, missing ones 0). ``toggle`` is
  the number of Chebyshev coefficients fitted: 0 fixed, 1 a constant offset
  from the starts, 2 a linear function of wavelength, 3 quadratic, ...,
  ``nbands`` free in every band; or a CSL of 0/1, one per coefficient.
  Positions are ``1) x`` and ``2) y`` on two lines.
* ``U)`` the non-parametric component and ``V)`` MultiNest sampling (0: off).

How galmoss maps a degree of freedom onto ``gm.p(..., bands=)``: 0 is a fixed
parameter (its per-band values kept), ``nbands`` (or more) is
``bands="free"``, 1 is ``bands="shared"`` and 1 < k < ``nbands`` is ``bands=k-1``
(a Chebyshev polynomial of degree k-1, wavelengths mapped to [-1, 1] from the
shortest to the longest, as GalfitM's coefficients are). Where GalfitM keeps
the starts' own differences fixed (a toggle of 1 or 2 with starts that are not
one constant / one line in wavelength) galmoss cannot: such a line is refused,
naming it. galmoss's polynomial acts in its fitting space (ln r_e, ln n, ln q),
GalfitM's on the value; the two agree for magnitudes, positions, angles and sky
levels at any degree, and for every parameter at the degrees 0, 1 and
``nbands``.

Per-band zero points (``J)``, with each image's EXPTIME as for GALFIT) are met by
scaling each band's data and sigma to the reference band's zero point before
the fit (magnitudes are then each band's own; sky values are scaled back).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..flags import Flag, decode
from .constraints import Constraint
from .convert import CLASSES, HEADER_KEYS, SLOTS, SURFACE_BRIGHTNESS_CLASSES, component_name, inside, ordered_labels
from .feedme import (COMPONENT_PARAMETERS, REQUIRED_PARAMETERS, Component, Feedme, FeedmeError, FeedmeUnsupportedError,
                     Line, Parameter as LineParameter, _SEPARATOR, _LABEL)

__all__ = ["GalfitmComponent", "GalfitmFeedme", "BandParameter", "is_galfitm", "parse_galfitm", "chebyshev_table"]

#: control lines of a GalfitM file (GALFIT's, the band lines A1) A2), U) non-parametric, V) MultiNest)
CONTROL_KEYS = ("A", "A1", "A2", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "O", "P", "S", "U", "V", "W")
#: GalfitM's comment on each control line (its restart files carry them: GALAPAGOS-2 reads A1) as the line after
#: A) and cuts each line's value at its '#')
CONTROL_COMMENTS = {
    "A": "Input data images (CSL of FITS filenames)", "A1": "Band labels (CSL)", "A2": "Band wavelengths (CSL)",
    "B": "Output data image block", "C": "Sigma images (CSL, or none)", "D": "Input PSF images (CSL)",
    "E": "PSF fine sampling factor relative to data", "F": "Bad pixel masks (CSL, or none)",
    "G": "File with parameter constraints (ASCII file)", "H": "Image region to fit (xmin xmax ymin ymax)",
    "I": "Size of the convolution box (x y)", "J": "Magnitude photometric zeropoints (CSL)",
    "K": "Plate scale (dx dy)   [arcsec per pixel]", "O": "Display type (regular, curses, both)",
    "P": "Choose: 0=optimize, 1=model, 2=imgblock, 3=subcomps", "S": "Modify/create objects interactively?",
    "U": "Non-parametric component (0: off)", "V": "MultiNest (0: Levenberg-Marquardt)", "W": "Output options",
}
#: slots whose values are in image units (scaled with a band's zero point)
_IMAGE_UNITS = ("sky_bg", "grad_x", "grad_y")


@dataclass
class BandParameter:
    """One parameter line of a GalfitM file: a start per band and GalfitM's degree of freedom in wavelength.

    ``degree`` is GalfitM's toggle: the number of Chebyshev coefficients fitted
    (0 fixed; ``nbands`` or more: free in every band). ``toggle`` is the line's
    own text of it (kept for restart files).
    """

    label: str
    values: np.ndarray
    degree: int
    line: int
    toggle: str = "0"

    def bands_mode(self, nb: int):
        """galmoss's ``bands=`` for this line: "shared", "free" or a Chebyshev degree (None: fixed)."""
        if self.degree == 0:
            return None
        if self.degree >= nb:
            return "free"
        return "shared" if self.degree == 1 else self.degree - 1


@dataclass
class GalfitmComponent(Component):
    """A component of a GalfitM file: ``bparams`` holds its lines per band (``params`` stays GALFIT's view)."""

    bparams: dict[str, BandParameter] = field(default_factory=dict)


@dataclass
class GalfitmFeedme:
    """A GalfitM input file, read (paths resolved; None for ``none``)."""

    path: Path
    bands: tuple[str, ...]
    wavelength: tuple[float, ...]
    images: list[Path]
    output: Path
    sigmas: list[Path | None]
    psfs: list[Path | None]
    masks: list[Path | None]
    constraints: Path | None
    region: tuple[int, int, int, int] | None
    conv_box: tuple[float, float] | None
    zeropoints: tuple[float, ...]
    plate_scales: tuple[tuple[float, float], ...]
    mode: int
    components: list[GalfitmComponent]
    lines: dict[str, Line] = field(default_factory=dict)
    display: str = "regular"
    psf_sampling: int = 1
    kernel_note: str = ""

    galfitm = True

    @property
    def nbands(self) -> int:
        return len(self.bands)

    @property
    def image(self) -> str:
        """The images as GalfitM's A) lists them (what GALFIT-layout outputs name as the input)."""
        return ",".join(str(p) for p in self.images)

    def where(self, key: str) -> str:
        line = self.lines.get(key)
        return f"{self.path}, line {line.number}" if line else str(self.path)

    def inputs(self) -> dict[Path, str]:
        """The files it reads (absolute), with the line naming each."""
        out = {Path(os.path.abspath(self.path)): "feedme"}
        for key, paths in (("A", self.images), ("C", self.sigmas), ("D", self.psfs), ("F", self.masks),
                           ("G", [self.constraints])):
            for p in paths:
                if p is not None:
                    out.setdefault(Path(os.path.abspath(p)), f"{key}) file")
        return out

    @property
    def structure(self) -> tuple:
        comps = tuple((c.kind, c.skip, tuple(sorted((k, p.degree) for k, p in c.bparams.items())))
                      for c in self.components)
        return ("galfitm", self.bands, self.wavelength, comps, tuple(p is not None for p in self.psfs),
                self.plate_scales, self.mode, self.constraints is not None)

    def band_view(self, b: int) -> Feedme:
        """Band ``b`` as a single-band GALFIT :class:`Feedme` (its files, zero point, values; what GALFIT's
        header and fit.log writers take)."""
        comps = []
        for c in self.components:
            view = Component(c.kind, c.index, c.line, skip=c.skip)
            for label, p in c.bparams.items():
                view.params[label] = LineParameter(label, [float(p.values[b])], [p.degree > 0], p.line)
            comps.append(view)
        return Feedme(path=self.path, image=self.images[b], output=self.output, sigma=self.sigmas[b], psf=self.psfs[b],
                      psf_sampling=1, mask=self.masks[b], constraints=self.constraints, region=self.region,
                      conv_box=self.conv_box, zeropoint=self.zeropoints[b], plate_scale=self.plate_scales[b],
                      display=self.display, mode=self.mode, components=comps, lines=self.lines)


def _fail(path, number: int, text: str, why: str, cls=FeedmeError):
    raise cls(f"{path}, line {number}: {why}: {text.strip()!r}")


def _lines(path: Path, text: str):
    for number, raw in enumerate(text.splitlines(), start=1):
        body = raw.split("#", 1)[0].replace("\t", " ")
        if not body.strip() or _SEPARATOR.match(body):
            continue
        m = _LABEL.match(body)
        if not m:
            _fail(path, number, raw, "not a GalfitM line (expected 'X) value ...', a comment after '#', or blank)")
        yield m.group(1), Line(number, m.group(2).split(), raw)


def is_galfitm(path: str | os.PathLike) -> bool:
    """Whether a GALFIT-style input file is GalfitM's multi-band form (band lines A1)/A2), U)/V), or a list in A))."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return False
    for raw in text.splitlines():
        body = raw.split("#", 1)[0].strip()
        m = _LABEL.match(body)
        if not m:
            continue
        label, rest = m.group(1).upper(), m.group(2).split()
        if label in ("A1", "A2", "U", "V") or (label == "A" and rest and "," in rest[0]):
            return True
        if label == "0":
            return False
    return False


def _csl(path, line: Line, token: str, what: str, n: int, *, number: bool = True, allow_one: bool = True):
    items = token.split(",")
    if len(items) == 1 and allow_one:
        items = items * n
    if len(items) != n:
        _fail(path, line.number, line.text, f"{what} needs {n} comma-separated entries (one per band, no spaces), "
              f"got {len(items)}")
    if not number:
        return items
    out = []
    for t in items:
        try:
            out.append(float(t))
        except ValueError:
            _fail(path, line.number, line.text, f"{what} must be numbers, got {t!r}")
    return out


def _paths(tokens, base: Path, n: int, path, line: Line | None, what: str, optional: bool):
    if not tokens:
        if optional:
            return [None] * n
        raise FeedmeError(f"{path}: {what} is required and is missing or blank")
    items = tokens[0].split(",")
    if len(items) == 1 and optional:
        items = items * n
    if len(items) != n:
        _fail(path, line.number, line.text, f"{what} needs {n} comma-separated files (one per band, no spaces), "
              f"got {len(items)}")
    out = []
    for t in items:
        if optional and t.lower() == "none":
            out.append(None)
            continue
        p = Path(os.path.expanduser(t))
        out.append(p if p.is_absolute() else base / p)
    return out


def mapped_wavelengths(wavelength) -> np.ndarray:
    """Wavelengths mapped linearly to [-1, 1], shortest to longest (GalfitM's and galmoss's Chebyshev domain)."""
    w = np.asarray(wavelength, dtype=np.float64)
    span = w.max() - w.min()
    return np.zeros_like(w) if span == 0 else 2.0 * (w - w.min()) / span - 1.0


def _degree(path, line: Line, token: str, nb: int) -> int:
    """GalfitM's toggle: an integer (coefficients fitted) or a CSL of 0/1 per coefficient (lowest first)."""
    if "," in token:
        flags = token.split(",")
        if len(flags) > nb or any(f not in ("0", "1") for f in flags):
            _fail(path, line.number, line.text, f"a toggle list has at most {nb} entries of 0 or 1 (one per Chebyshev "
                  "coefficient)")
        k = flags.index("0") if "0" in flags else len(flags)
        if any(f == "1" for f in flags[k:]):
            _fail(path, line.number, line.text, f"toggles {token} free a Chebyshev coefficient above a fixed one; "
                  "galmoss fits the lowest coefficients (a polynomial of a degree): write them as 1,..,1,0,..,0",
                  FeedmeUnsupportedError)
        return k
    try:
        value = int(token)
    except ValueError:
        _fail(path, line.number, line.text, f"the toggle must be a whole number of Chebyshev coefficients to fit "
              f"(0 fixed, 1 constant, 2 linear, ..., {nb} free in every band) or a CSL of 0/1, got {token!r}")
    if value < 0:
        _fail(path, line.number, line.text, "the toggle must not be negative")
    return value


def _band_line(path, comp: GalfitmComponent, label: str, line: Line, bands, wavelength) -> None:
    nb = len(bands)
    tokens = line.fields
    kind = "band"
    if tokens and tokens[-1].lower() in ("band", "cheb"):
        kind = tokens[-1].lower()
        tokens = tokens[:-1]
    if len(tokens) < 2:
        _fail(path, line.number, line.text, f"component {comp.index} ({comp.kind}): {label}) needs values (CSL, one "
              "per band) and a toggle")
    degree = _degree(path, line, tokens[1], nb)
    if kind == "cheb":
        coeffs = _csl(path, line, tokens[0], f"{label}) Chebyshev coefficients", 1, allow_one=False) \
            if "," not in tokens[0] else [float(t) for t in tokens[0].split(",")]
        if len(coeffs) > nb:
            _fail(path, line.number, line.text, f"at most {nb} Chebyshev coefficients for {nb} bands")
        values = np.polynomial.chebyshev.chebval(mapped_wavelengths(wavelength), np.asarray(coeffs, dtype=np.float64))
    else:
        values = np.asarray(_csl(path, line, tokens[0], f"{label}) values", nb), dtype=np.float64)
    if not np.all(np.isfinite(values)):
        _fail(path, line.number, line.text, f"{label}) needs finite values")
    comp.bparams[label] = BandParameter(label, values, degree, line.number, tokens[1])


def _check_degree(path, comp: GalfitmComponent, p: BandParameter, wavelength, text: str) -> None:
    """Toggles of 1 and 2 with starts off one constant / one line: GalfitM keeps the starts' differences, galmoss cannot."""
    nb = len(wavelength)
    k = min(p.degree, nb)
    if k == 0 or k >= nb:
        return
    if k > 1 and len(set(wavelength)) < nb:
        _fail(path, p.line, text, "a polynomial in wavelength needs distinct wavelengths (A2)", FeedmeUnsupportedError)
    x = mapped_wavelengths(wavelength)
    vander = np.polynomial.chebyshev.chebvander(x, k - 1)
    coef, *_ = np.linalg.lstsq(vander, p.values, rcond=None)
    off = np.max(np.abs(vander @ coef - p.values))
    if off > 1e-6 * max(1.0, float(np.max(np.abs(p.values)))) and k <= 2:
        what = "one value in every band" if k == 1 else "a straight line in wavelength"
        _fail(path, p.line, text,
              f"component {comp.index} ({comp.kind}): a toggle of {k} with starts that are not {what}: GalfitM then "
              f"fits {'an offset' if k == 1 else 'a line'} added to the starts' own differences, which galmoss does not "
              f"have; give starts that are {what}, or a toggle of {nb} (free in every band)", FeedmeUnsupportedError)


def parse_galfitm(path: str | os.PathLike, *, base: str | os.PathLike | None = None) -> GalfitmFeedme:
    """Read a GalfitM input file (see the module docstring).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    FeedmeError
        A line that does not parse (naming the file, line and text).
    FeedmeUnsupportedError
        What galmoss does not have: the non-parametric component (``U)`` not 0),
        MultiNest (``V)`` not 0), a minimum sigma on ``C)``, a diffusion kernel
        that exists, ``E)`` > 1, ``P)`` other than 0, hidden lines (Fourier,
        bending, rotation, truncation), toggles that free a coefficient above a
        fixed one, toggles of 1 or 2 with starts off one constant or line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GalfitM input file '{path}' does not exist")
    text = path.read_text(errors="replace")
    base = Path(base) if base is not None else path.parent
    control: dict[str, Line] = {}
    raw_components: list[tuple[GalfitmComponent, list[tuple[str, Line]]]] = []
    for label, line in _lines(path, text):
        upper = label.upper()
        if label == "0":
            if not line.fields:
                _fail(path, line.number, line.text, "a component needs a type after '0)'")
            kind = line.fields[0].lower()
            if kind not in COMPONENT_PARAMETERS:
                _fail(path, line.number, line.text, f"unknown component type {kind!r}; galmoss reads "
                      f"{', '.join(COMPONENT_PARAMETERS)}")
            raw_components.append((GalfitmComponent(kind, len(raw_components) + 1, line.number), []))
            continue
        if raw_components:
            raw_components[-1][1].append((label, line))
            continue
        if upper not in CONTROL_KEYS:
            _fail(path, line.number, line.text, f"unknown control line {label}); GalfitM's are {', '.join(CONTROL_KEYS)}")
        control[upper] = line

    def fields(key):
        return control[key].fields if key in control else []

    for key, what in (("U", "the non-parametric component"), ("V", "MultiNest sampling")):
        if fields(key) and fields(key)[0] not in ("0",):
            line = control[key]
            _fail(path, line.number, line.text, f"{key}) turns on {what}, which galmoss does not have; set {key}) 0 "
                  "for the parametric Levenberg-Marquardt fit", FeedmeUnsupportedError)
    if not fields("A"):
        raise FeedmeError(f"{path}: A) (input data images) is required and is missing or blank")
    images = _paths(fields("A"), base, len(fields("A")[0].split(",")), path, control["A"], "A) images", False)
    nb = len(images)
    if fields("A1"):
        bands = tuple(_csl(path, control["A1"], fields("A1")[0], "A1) band labels", nb, number=False, allow_one=False))
        if len({b.lower() for b in bands}) < nb:
            _fail(path, control["A1"].number, control["A1"].text, "band labels must be unique (ignoring case)")
    elif nb == 1:
        bands = ("band1",)
    else:
        raise FeedmeError(f"{path}: A) gives {nb} images but A1) (band labels) is missing")
    if fields("A2"):
        wavelength = tuple(_csl(path, control["A2"], fields("A2")[0], "A2) wavelengths", nb, allow_one=False))
        if any(not (w > 0) for w in wavelength):
            _fail(path, control["A2"].number, control["A2"].text, "wavelengths must be positive")
    elif nb == 1:
        wavelength = (1.0,)
    else:
        raise FeedmeError(f"{path}: A) gives {nb} images but A2) (band wavelengths) is missing")
    if not fields("B"):
        raise FeedmeError(f"{path}: B) (output image block) is required and is missing or blank")
    output = Path(os.path.expanduser(fields("B")[0]))
    output = output if output.is_absolute() else base / output
    if len(fields("C")) > 1:
        line = control["C"]
        _fail(path, line.number, line.text, "a minimum sigma (the second value of C)) is not supported by galmoss; "
              "give the sigma images or none", FeedmeUnsupportedError)
    sigmas = _paths(fields("C"), base, nb, path, control.get("C"), "C) sigma images", True)
    psfs = _paths(fields("D"), base, nb, path, control.get("D"), "D) PSFs", True)
    kernel_note = ""
    if len(fields("D")) > 1:
        kernel = Path(os.path.expanduser(fields("D")[1]))
        kernel = kernel if kernel.is_absolute() else base / kernel
        if kernel.exists():
            line = control["D"]
            _fail(path, line.number, line.text, "a PSF diffusion kernel (the file after the PSFs on D)) is not "
                  "supported by galmoss", FeedmeUnsupportedError)
        kernel_note = f"D) names a diffusion kernel '{fields('D')[1]}' that does not exist: none used"
    if fields("E") and fields("E")[0] not in ("1", "1.0"):
        line = control["E"]
        _fail(path, line.number, line.text, "galmoss fits GalfitM files with PSFs sampled as the data (E) 1)",
              FeedmeUnsupportedError)
    masks = _paths(fields("F"), base, nb, path, control.get("F"), "F) masks", True)
    constraints = None
    if fields("G") and fields("G")[0].lower() != "none":
        g = Path(os.path.expanduser(fields("G")[0]))
        constraints = g if g.is_absolute() else base / g
    region = None
    if fields("H"):
        line = control["H"]
        try:
            region = tuple(int(float(t)) for t in fields("H")[:4])
        except ValueError:
            _fail(path, line.number, line.text, "H) needs xmin xmax ymin ymax")
        if len(region) < 4:
            _fail(path, line.number, line.text, "H) needs xmin xmax ymin ymax")
        region = (max(region[0], 1), region[1], max(region[2], 1), region[3])
        if not (region[0] <= region[1] and region[2] <= region[3]):
            _fail(path, line.number, line.text, "H) region must have xmin <= xmax and ymin <= ymax")
    conv = None
    if fields("I"):
        try:
            vals = [float(t) for t in fields("I")[:2]]
            conv = (vals[0], vals[-1])
        except ValueError:
            pass  # I) is not used by galmoss
    zeropoints = tuple(_csl(path, control["J"], fields("J")[0], "J) zero points", nb)) if fields("J") else (0.0,) * nb
    scales = ((1.0, 1.0),) * nb
    if fields("K"):
        line = control["K"]
        dx = _csl(path, line, fields("K")[0], "K) plate scale dx", nb)
        dy = _csl(path, line, fields("K")[1], "K) plate scale dy", nb) if len(fields("K")) > 1 else dx
        scales = tuple(zip(dx, dy))
        if min(min(s) for s in scales) <= 0:
            _fail(path, line.number, line.text, "K) plate scales must be positive")
    mode = 0
    if fields("P"):
        line = control["P"]
        if fields("P")[0] not in ("0",):
            _fail(path, line.number, line.text, "galmoss fits GalfitM files (P) 0); it does not only draw their models",
                  FeedmeUnsupportedError)
    components = []
    for comp, lines in raw_components:
        texts = {}
        for label, line in lines:
            upper = label.upper()
            texts[upper] = line.text
            where = f"component {comp.index} ({comp.kind})"
            if upper == "Z":
                comp.skip = bool(line.fields) and line.fields[0] == "1"
                continue
            if upper[0] in "FBRT" and upper != "F" and (upper[1:].isdigit() or upper in ("TI", "TO")):
                what = {"F": "azimuthal Fourier mode", "B": "bending mode", "R": "coordinate rotation",
                        "T": "truncation"}[upper[0]]
                _fail(path, line.number, line.text, f"{where} has the hidden parameter {label}) ({what}); galmoss's "
                      "multi-band fits have no vector or modifier parameters yet: remove the line",
                      FeedmeUnsupportedError)
            if upper == "C0" and comp.kind not in ("psf", "sky", "edgedisk"):
                _band_line(path, comp, "C0", line, bands, wavelength)
                continue
            if not label.isdigit():
                _fail(path, line.number, line.text, f"{where}: unknown parameter line {label})")
            if comp.kind != "sky" and label == "1":
                toks = line.fields
                if len(toks) >= 4 and all("," not in t for t in toks[:4]) and toks[2] in "012" and toks[3] in "012":
                    # GALFIT's own form "1) x y fx fy": one value for every band
                    _band_line(path, comp, "1x", Line(line.number, [toks[0], toks[2]], line.text), bands, wavelength)
                    _band_line(path, comp, "1y", Line(line.number, [toks[1], toks[3]], line.text), bands, wavelength)
                else:
                    _band_line(path, comp, "1x", line, bands, wavelength)
                continue
            if comp.kind != "sky" and label == "2":
                _band_line(path, comp, "1y", line, bands, wavelength)
                continue
            if label not in COMPONENT_PARAMETERS[comp.kind]:
                continue  # GALFIT's placeholder lines for parameters a profile does not use
            _band_line(path, comp, label, line, bands, wavelength)
        need = [("1x" if k == "1" and comp.kind != "sky" else k) for k in REQUIRED_PARAMETERS[comp.kind]]
        if comp.kind != "sky" and "1" in REQUIRED_PARAMETERS[comp.kind]:
            need.append("1y")
        missing = [k for k in need if k not in comp.bparams]
        if missing:
            _fail(path, comp.line, f"0) {comp.kind}", f"component {comp.index} ({comp.kind}) lacks "
                  f"{', '.join({'1x': '1) x', '1y': '2) y'}.get(m, m + ')') for m in missing)}")
        for label, p in comp.bparams.items():
            _check_degree(path, comp, p, wavelength, texts.get("1" if label == "1x" else "2" if label == "1y"
                                                               else label, ""))
        # GALFIT's view (constraint files name parameters by these labels)
        for label, p in comp.bparams.items():
            comp.params[label if label not in ("1x", "1y") else "1"] = LineParameter(label, [float(p.values[0])],
                                                                                     [p.degree > 0], p.line)
        components.append(comp)
    if not components:
        raise FeedmeError(f"{path}: the file has no component (no '0) <type>' line): there is nothing to fit")
    return GalfitmFeedme(path=path, bands=bands, wavelength=wavelength, images=images, output=output, sigmas=sigmas,
                         psfs=psfs, masks=masks, constraints=constraints, region=region, conv_box=conv,
                         zeropoints=zeropoints, plate_scales=scales, mode=mode, components=components, lines=control,
                         display=(fields("O") or ["regular"])[0], kernel_note=kernel_note)


# ------------------------------------------------------------------ reading the data
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
    from .run import _ascii_mask, _read_section, exposure_time, galfit_sigma, is_fits

    gal = GalfitmInput(feedme, constraints)
    region = feedme.region
    gal.origin = (region[0], region[2]) if region is not None else (1, 1)
    if feedme.kernel_note:
        gal.messages.append(feedme.kernel_note)
    zps = []
    try:
        for b, band in enumerate(feedme.bands):
            image, header, _ = _read_section(feedme.images[b], region, f"A) input image of band {band}")
            zps.append(feedme.zeropoints[b] + 2.5 * math.log10(exposure_time(header)))
            weight = np.isfinite(image).astype(np.float64)
            mask_path = feedme.masks[b]
            if mask_path is not None:
                if not mask_path.is_file():
                    raise FileNotFoundError(f"F) mask of band {band} '{mask_path}' does not exist")
                if is_fits(mask_path):
                    mask, _, _ = _read_section(mask_path, region, f"F) mask of band {band}")
                    if mask.shape != image.shape:
                        raise ValueError(f"F) mask of band {band} '{mask_path}' is {mask.shape}, the image {image.shape}")
                    weight[mask != 0] = 0.0
                else:
                    weight[_ascii_mask(mask_path, image.shape, gal.origin)] = 0.0
            if feedme.sigmas[b] is not None:
                sigma, _, _ = _read_section(feedme.sigmas[b], region, f"C) sigma image of band {band}")
                if sigma.shape != image.shape:
                    raise ValueError(f"C) sigma image of band {band} is {sigma.shape}, the image {image.shape}")
            else:
                sigma = galfit_sigma(image, header, weight)
                gal.flags |= Flag.sigma_estimated
                gal.messages.append(f"{band}: sigma made from the data (C) none: GAIN or ATODGAIN, NCOMBINE)")
            psf = None
            if feedme.psfs[b] is not None:
                psf, _, _ = _read_section(feedme.psfs[b], None, f"D) PSF of band {band}")
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


# ------------------------------------------------------------------ the model
def _ranges(fm: GalfitmFeedme, constraints) -> dict[tuple[int, str], tuple[float, float]]:
    """Absolute ranges (``1 n 0.5 to 8``) and ranges about one start shared by every band (``2 x -5 5``)."""
    out = {}
    for c in constraints:
        if c.kind not in ("range", "relative", "factor"):
            raise FeedmeUnsupportedError(f"{c.where}: galmoss reads ranges in a GalfitM constraint file, not "
                                         "couplings (its multi-band fits have no ties yet)")
        comp = fm.components[c.components[0] - 1]
        p = comp.bparams.get(c.label)
        if p is None:
            continue
        if c.kind in ("relative", "factor"):
            if np.ptp(p.values) > 0:
                raise FeedmeUnsupportedError(f"{c.where}: a range about the start of a parameter whose start differs "
                                             "between bands; give an absolute range (lo to hi)")
            start = float(p.values[0])
            if c.kind == "factor" and not start > 0:
                raise FeedmeUnsupportedError(f"{c.where}: a range by a factor needs a positive start")
            lo, hi = (start + c.lo, start + c.hi) if c.kind == "relative" else (start * c.lo, start * c.hi)
        else:
            lo, hi = c.lo, c.hi
        if (c.components[0], c.label) in out:
            old = out[(c.components[0], c.label)]
            lo, hi = max(lo, old[0]), min(hi, old[1])
            if not lo < hi:
                raise FeedmeError(f"{c.where}: this range does not overlap another on the same parameter")
        out[(c.components[0], c.label)] = (lo, hi)
    return out


def galfitm_profiles(gals: list[GalfitmInput]) -> dict[str, object]:
    """The galmoss profiles of GalfitM files that share one structure (their starts per galaxy and band)."""
    from ..params import Parameter

    first = gals[0].feedme
    nb = first.nbands
    ranges = _ranges(first, gals[0].constraints)
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
            if slot in _IMAGE_UNITS:
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


def _length_slot(kind: str, slot: str) -> bool:
    from ..params import Role

    spec = CLASSES[kind].parameter_specs.get(slot)
    return spec is not None and spec.role is Role.LENGTH


# ------------------------------------------------------------------ outputs
def chebyshev_table(values: np.ndarray, cov: np.ndarray | None, wavelength) -> tuple[np.ndarray, np.ndarray]:
    """GalfitM's Chebyshev coefficients (value space) of per-band values, and their errors.

    The coefficients c of the series through the ``nbands`` values at the
    wavelengths mapped to [-1, 1] (``numpy.polynomial.Chebyshev(c, domain=(min,
    max))`` evaluated at each wavelength gives the band's value back); their
    errors from the values' covariance ``cov`` (nbands x nbands) by the same
    linear map. Two bands of one wavelength: NaN.
    """
    nb = len(values)
    vander = np.polynomial.chebyshev.chebvander(mapped_wavelengths(wavelength), nb - 1)
    if nb > 1 and len(set(wavelength)) < nb:
        return np.full(nb, np.nan), np.full(nb, np.nan)
    inv = np.linalg.inv(vander)
    coef = inv @ values
    if cov is None:
        return coef, np.full(nb, np.nan)
    with np.errstate(invalid="ignore"):
        err = np.sqrt(np.clip(np.diagonal(inv @ cov @ inv.T), 0.0, None))
    return coef, np.where(np.all(np.isfinite(cov)), err, np.nan)


def _restart_text(fm: GalfitmFeedme, values: dict[tuple[int, str], np.ndarray]) -> str:
    """A GalfitM input file with the fitted per-band values (its control lines and toggles kept)."""
    from .output import galfit_number

    lines = ["", f"#  Input menu file: {fm.path}", "#  galmoss restart file (GalfitM format)", "",
             "=" * 80, "# IMAGE and GALFIT CONTROL PARAMETERS"]
    for key in CONTROL_KEYS:
        if key in fm.lines:
            lines.append(f"{key}) {' '.join(fm.lines[key].fields)}".ljust(40) + f" # {CONTROL_COMMENTS[key]}")
    lines += ["", "# INITIAL FITTING PARAMETERS", ""]
    for comp in fm.components:
        k = comp.index
        lines.append(f"# Component number: {k}")
        lines.append(f" 0) {comp.kind:<22s} #  Component type")
        for label in ordered_labels(comp.kind):
            if label not in comp.bparams:
                continue
            p = comp.bparams[label]
            number = "1" if label == "1x" else "2" if label == "1y" and comp.kind != "sky" else label
            text = ",".join(galfit_number(v) for v in values[(k, label)])
            desc = COMPONENT_PARAMETERS[comp.kind].get("1" if label in ("1x", "1y") else label, "")
            lines.append(f"{number:>2s}) {text} {p.toggle} band".ljust(40) + f" #  {desc}")
        lines.append(f" Z) {int(comp.skip):<22d} #  Skip this model in output image?  (yes=1, no=0)")
        lines.append("")
    lines.append("=" * 80)
    return "\n".join(lines) + "\n"


def _table_hdu(name: str, columns: dict[str, np.ndarray]):
    from astropy.io import fits

    cols = []
    for key, arr in columns.items():
        arr = np.asarray(arr)
        if arr.dtype.kind in "US":
            width = max(1, max((len(str(s)) for s in arr), default=1))
            cols.append(fits.Column(name=key, format=f"{width}A", array=arr.astype(str)))
        elif arr.dtype.kind in "iub":
            cols.append(fits.Column(name=key, format="K", array=arr.astype(np.int64)))
        else:
            cols.append(fits.Column(name=key, format="D", array=arr.astype(np.float64)))
    return fits.BinTableHDU.from_columns(cols, name=name)


def run_galfitm(entries, rows, out_dir: Path, batch_size: int, iteration: int, device, settings_factory) -> None:
    """Fit the GalfitM files among ``entries`` (parsed, not refused) and fill their ``rows`` (see run_galfit)."""
    from .run import _failed_row

    groups: dict[tuple, list[int]] = {}
    for i, e in enumerate(entries):
        groups.setdefault(e.feedme.structure, []).append(i)
    for members in groups.values():
        for start in range(0, len(members), max(4 * batch_size, 64)):
            part = members[start : start + max(4 * batch_size, 64)]
            loaded = {i: load_galfitm(entries[i].feedme, entries[i].constraints) for i in part}
            by_zp: dict[tuple, list[int]] = {}
            for i in part:
                if not loaded[i].usable:
                    rows[i].update(_failed_row(loaded[i], out_dir / "fit.log"))
                    continue
                shapes = tuple(im.shape for im in loaded[i].images)
                by_zp.setdefault((loaded[i].zeropoint, shapes), []).append(i)
            for same in by_zp.values():
                _fit_safely([loaded[i] for i in same], [rows[i] for i in same], batch_size, iteration, device, out_dir,
                            settings_factory)


def _fit_safely(gals, rows, batch_size, iteration, device, out_dir, settings_factory) -> None:
    from .run import _failed_row

    try:
        _fit_group(gals, rows, batch_size, iteration, device, out_dir, settings_factory)
    except (ValueError, NotImplementedError, RuntimeError) as exc:
        if len(gals) == 1:
            gals[0].flags |= Flag.fit_error
            gals[0].messages.append(f"{gals[0].feedme.path}: {exc}")
            rows[0].clear()
            rows[0].update(_failed_row(gals[0], out_dir / "fit.log"))
            return
        for gal, row in zip(gals, rows):
            row.clear()
            _fit_safely([gal], [row], batch_size, iteration, device, out_dir, settings_factory)


def _fit_group(gals: list[GalfitmInput], rows, batch_size, iteration, device, out_dir, settings_factory) -> None:
    from ..data import Dataset
    from ..pipeline.fitting import Fitting

    fm = gals[0].feedme
    bands = fm.bands
    profiles = galfitm_profiles(gals)
    names = [str(g.feedme.path) for g in gals]
    dataset = Dataset.from_arrays(
        {b: [g.images[i] for g in gals] for i, b in enumerate(bands)},
        {b: [g.sigmas[i] for g in gals] for i, b in enumerate(bands)},
        {b: [g.psfs[i] for g in gals] for i, b in enumerate(bands)} if gals[0].psfs[0] is not None else None,
        {b: [(g.weights[i] == 0).astype(np.int8) for g in gals] for i, b in enumerate(bands)},
        galaxy_index=names, wavelength=dict(zip(bands, fm.wavelength)),
        mask_index=0,  # F): every non-zero pixel is bad, even one under the galaxy (never a segmentation map)
        pix_scale={b: fm.plate_scales[i][0] for i, b in enumerate(bands)},
    )
    dataset.define_profiles(**profiles)
    settings = settings_factory(fm)
    fitting = Fitting(dataset=dataset, batch_size=batch_size, iteration=iteration, device=device, progress=False,
                      render_settings=settings)
    t0 = time.perf_counter()
    fitting.fit()
    table = fitting.uncertainty("covar_mat")
    elapsed = (time.perf_counter() - t0) / len(gals)
    run = getattr(fitting, "_bands_run", None)  # the joint covariance of the reported columns, for GalfitM's CHEB errors
    cov = run.result.result.covariance if run is not None and run.result is not None else None
    columns = [c.name for c in run.model.columns] if run is not None else list(table.colnames)
    for i, (gal, row) in enumerate(zip(gals, rows)):
        try:
            _write_outputs(gal, table[i], None if cov is None else cov[i], columns, row, out_dir, settings, elapsed)
        except (ValueError, NotImplementedError, RuntimeError, OSError) as exc:
            from .run import _failed_row

            gal.flags |= Flag.fit_error
            gal.messages.append(f"{gal.feedme.path}: {exc}")
            row.clear()
            row.update(_failed_row(gal, out_dir / "fit.log"))


def _band_values(gal: GalfitmInput, rec, cov, columns):
    """``(k, label) -> (nb,) values, errors`` in GalfitM's units (full frame, each band's image units), and the
    Chebyshev coefficients with their errors."""
    fm = gal.feedme
    nb = fm.nbands
    values, errors, cheb, cheb_err = {}, {}, {}, {}
    names = rec.colnames
    index = {name: j for j, name in enumerate(columns)}
    for comp in fm.components:
        k = comp.index
        base = component_name(comp.kind, comp.index)
        for label in comp.bparams:
            slot = SLOTS[comp.kind][label]
            col = f"{base}_{slot}"
            band_cols = [f"{col}_{b}" for b in fm.bands]
            if all(c in names for c in band_cols):
                v = np.array([float(rec[c]) for c in band_cols])
                e = np.array([float(rec[c + "_err"]) if c + "_err" in names else np.nan for c in band_cols])
                at = [index.get(c) for c in band_cols]
            else:
                v = np.full(nb, float(rec[col]))
                e = np.full(nb, float(rec[col + "_err"]) if col + "_err" in names else np.nan)
                at = [index.get(col)] * nb
            if label == "1x":
                v = v + gal.origin[0] - 1
            elif label == "1y":
                v = v + gal.origin[1] - 1
            factor = 1.0 / gal.scale if slot in _IMAGE_UNITS else np.ones(nb)
            v, e = v * factor, e * factor
            c = None
            if cov is not None and None not in at:
                c = cov[np.ix_(at, at)] * np.outer(factor, factor)
            if comp.bparams[label].degree == 0:
                e = np.full(nb, np.nan)
                c = np.zeros((nb, nb))
            values[(k, label)], errors[(k, label)] = v, e
            cheb[(k, label)], cheb_err[(k, label)] = chebyshev_table(v, c, fm.wavelength)
    return values, errors, cheb, cheb_err


def _render_band(gal: GalfitmInput, b: int, values, settings):
    """Band ``b``'s model and component images in its own image units, from the fitted values."""
    import torch

    from ..params import Parameter
    from ..render import render

    fm = gal.feedme
    shape = gal.images[b].shape
    ratio = fm.plate_scales[0][0] / fm.plate_scales[b][0]
    ref_shape = gal.images[0].shape
    shown = {}
    for comp in fm.components:
        if comp.skip:
            continue
        kwargs = {}
        for label in comp.bparams:
            slot = SLOTS[comp.kind][label]
            v = float(values[(comp.index, label)][b])
            if label == "1x":
                x = v - (gal.origin[0] - 1)
                v = (x - (ref_shape[1] + 1) / 2) * ratio + (shape[1] + 1) / 2
            elif label == "1y":
                y = v - (gal.origin[1] - 1)
                v = (y - (ref_shape[0] + 1) / 2) * ratio + (shape[0] + 1) / 2
            elif _length_slot(comp.kind, slot):
                v = v * ratio
            elif slot in _IMAGE_UNITS:
                v = v * gal.scale[b]
            kw = {"M0": gal.zeropoint} if slot in ("mag", "mu0", "mu_b") else {}
            kwargs[slot] = Parameter(v, fit=False, angle=slot == "pa", **kw)
        cls = CLASSES[comp.kind]
        if cls in SURFACE_BRIGHTNESS_CLASSES:
            kwargs["pixel_area"] = fm.plate_scales[b][0] * fm.plate_scales[b][1]
        shown[component_name(comp.kind, comp.index)] = cls(**kwargs)
    if not shown:
        return np.zeros(shape), {}
    model, parts = render(shown, shape, psf=gal.psfs[b], dtype=torch.float64, components=True, settings=settings)
    s = gal.scale[b]
    return model.numpy()[0] / s, {name: im.numpy()[0] / s for name, im in parts.items()}


def _write_outputs(gal: GalfitmInput, rec, cov, columns, row: dict, out_dir: Path, settings, elapsed: float) -> None:
    from astropy.io import fits

    from ..io.naming import open_append
    from .output import _card, atomic_write_fits, fit_log_entry, model_header_cards, restart_path

    fm = gal.feedme
    nb = fm.nbands
    values, errors, cheb, cheb_err = _band_values(gal, rec, cov, columns)
    message = str(rec["message"]) if "message" in rec.colnames else ""
    flags = int(rec["flag"]) | gal.flags
    messages = [m for m in [*gal.messages, message] if m]
    chi2, ndof = float(rec["chi2"]), int(rec["dof"])
    n_free = sum(min(p.degree, nb) for c in fm.components for p in c.bparams.values())
    n_given = sum(nb for c in fm.components for _ in c.bparams)
    stats = {"chi2": chi2, "ndof": ndof, "nfree": n_free, "nfix": n_given - n_free,
             "chi2nu": chi2 / ndof if ndof > 0 else math.nan, "flags_text": ",".join(decode(flags))}
    finite = all(np.all(np.isfinite(v)) for v in values.values())
    restart = None
    log_entries = []
    if finite:
        hdus = [fits.PrimaryHDU()]
        restart = restart_path(fm.output)
        for b, band in enumerate(fm.bands):
            view = fm.band_view(b)
            vb = {key: float(v[b]) for key, v in values.items()}
            eb = {key: float(e[b]) for key, e in errors.items()}
            free = {key: fm.components[key[0] - 1].bparams[key[1]].degree > 0 for key in values}
            problems = {key for key in values if free[key] and not math.isfinite(eb[key])}
            model, parts = _render_band(gal, b, values, settings)
            cards = model_header_cards(view, gal.raw[b].shape, vb, eb, free, problems, stats, logfile=restart.name)
            cards.insert(2, ("BAND", band, "Band label (A1)"))
            cards.insert(3, ("WL", float(fm.wavelength[b]), "Band wavelength (A2)"))
            model_hdu = fits.ImageHDU(model.astype(np.float32), name=f"MODEL_{band}")
            for key, value, comment in cards:
                model_hdu.header.append(_card(key, value, comment), bottom=True)
            hdus += [fits.ImageHDU(gal.raw[b].astype(np.float32), name=f"INPUT_{band}"), model_hdu,
                     fits.ImageHDU((gal.raw[b] - model).astype(np.float32), name=f"RESIDUAL_{band}")]
            for name, image in parts.items():
                hdus.append(fits.ImageHDU(image.astype(np.float32), name=f"COMPONENT_{name.upper()}_{band}"))
            log_entries.append(fit_log_entry(view, gal.raw[b].shape, restart, vb, eb, free,
                                             float(rec[f"chi2_{band}"]) if f"chi2_{band}" in rec.colnames else chi2,
                                             int(rec[f"dof_{band}"]) if f"dof_{band}" in rec.colnames else ndof,
                                             f"band {band} of a joint fit" if b == 0 else f"band {band}"))
        final_band, final_cheb = {}, {}
        for comp in fm.components:
            for label in ordered_labels(comp.kind):
                if (comp.index, label) not in values:
                    continue
                key = f"COMP{comp.index}_{HEADER_KEYS[SLOTS[comp.kind][label]]}"
                final_band[key] = values[(comp.index, label)]
                final_band[key + "_ERR"] = errors[(comp.index, label)]
                final_cheb[key] = cheb[(comp.index, label)]
                final_cheb[key + "_ERR"] = cheb_err[(comp.index, label)]
                degree = min(comp.bparams[label].degree, nb)
                final_cheb[key + "_FIT"] = (np.arange(nb) < degree).astype(np.int64)
        w = np.asarray(fm.wavelength, dtype=np.float64)
        section = f"[{gal.origin[0]}:{gal.origin[0] + gal.raw[0].shape[1] - 1},{gal.origin[1]}:" \
                  f"{gal.origin[1] + gal.raw[0].shape[0] - 1}]"
        from .._version import __version__

        fit_info = {
            "INITFILE": np.array([str(fm.path)]), "LOGFILE": np.array([str(restart)]),
            "CONSTRNT": np.array([str(fm.constraints) if fm.constraints else "none"]),
            "FITSECT": np.array([section]),
            "CONVBOX": np.array(["none" if fm.conv_box is None else f"{fm.conv_box[0]:g}, {fm.conv_box[1]:g}"]),
            "CHISQ": np.array([chi2]), "NDOF": np.array([ndof]), "NFREE": np.array([n_free]),
            "NFIX": np.array([n_given - n_free]), "CHI2NU": np.array([stats["chi2nu"]]),
            "NITER": np.array([int(rec["n_iter"]) if "n_iter" in rec.colnames else -1]),
            "FIRSTCON": np.array([-1]), "LASTCON": np.array([-1]),
            "CPUTIME_SETUP": np.array([0.0]), "CPUTIME_FIT": np.array([elapsed]), "CPUTIME_TOTAL": np.array([elapsed]),
            "VERSION": np.array([f"galmoss {__version__}"]), "FLAGS": np.array([stats["flags_text"] or "none"]),
            "REFWLBAND": np.array([w[0]]), "LOWDWLBAND": np.array([w.min() - w[0]]),
            "HIGHDWLBAND": np.array([w.max() - w[0]]),
        }
        band_info = {
            "BAND": np.array(fm.bands), "WL": w,
            "DATAIN": np.array([str(p) for p in fm.images]),
            "SIGMA": np.array([str(p) if p else "none" for p in fm.sigmas]),
            "PSF": np.array([str(p) if p else "none" for p in fm.psfs]),
            "MASK": np.array([str(p) if p else "none" for p in fm.masks]),
            "MAGZPT": np.asarray(fm.zeropoints, dtype=np.float64),
            "NGOOD": np.array([int(np.count_nonzero(wt > 0)) for wt in gal.weights]),
            "NMASK": np.array([int(np.count_nonzero(wt == 0)) for wt in gal.weights]),
            "CHISQ": np.array([float(rec[f"chi2_{b}"]) if f"chi2_{b}" in rec.colnames else np.nan for b in fm.bands]),
        }
        hdus += [_table_hdu("BAND_INFO", band_info), _table_hdu("FIT_INFO", fit_info),
                 _table_hdu("FINAL_BAND", final_band), _table_hdu("FINAL_CHEB", final_cheb)]
        try:
            atomic_write_fits(fm.output, fits.HDUList(hdus))
            restart.write_text(_restart_text(fm, values))
        except OSError as exc:
            flags |= Flag.block_not_written
            messages.append(f"{fm.where('B')}: image block or restart file not written: {exc}")
            restart = None
    else:
        messages.append("no finite fit: no image block written")
    with open_append(out_dir / "fit.log") as fh:
        for entry in log_entries:
            fh.write(entry)
        if not log_entries:
            from .output import not_fitted_log_entry

            fh.write(not_fitted_log_entry(fm.path, fm.band_view(0), "; ".join(messages)))
    row.update({"group": 0, "flag": flags, "message": "; ".join(messages),
                "restart": "" if restart is None else str(restart), "chi2": chi2, "ndof": ndof,
                "chi2nu": stats["chi2nu"]})
    for comp in fm.components:
        for label in ordered_labels(comp.kind):
            if (comp.index, label) not in values:
                continue
            key = f"{comp.index}_{HEADER_KEYS[SLOTS[comp.kind][label]]}"
            for b, band in enumerate(fm.bands):
                row[f"{key}_{band}"] = float(values[(comp.index, label)][b])
                row[f"{key}_{band}_err"] = float(errors[(comp.index, label)][b])


def parse_galfitm_constraints(fm: GalfitmFeedme) -> list[Constraint]:
    """The constraint file of a GalfitM file: the ranges galmoss applies to every band (see :func:`_ranges`).

    Read: ``k par lo to hi`` (absolute), ``k par lo hi`` and ``k par lo in hi``
    (about the start), ``k par factor f`` (within a factor f of the start).
    Refused naming the line: couplings (``1_2 x offset``, ``3-2 mag``, ``3/2 re``),
    ranges about the reference band's value (``ref``), and ranges on one band
    (``re_B``) or one Chebyshev coefficient (``n_1``).
    """
    if fm.constraints is None:
        return []
    path = Path(fm.constraints)
    if not path.is_file():
        raise FileNotFoundError(f"GalfitM constraint file '{path}' does not exist")
    from .constraints import parameter_label

    by_index = {c.index: c for c in fm.components}
    out: list[Constraint] = []
    for number, raw in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        body = raw.split("#", 1)[0].replace("\t", " ").strip()
        if not body:
            continue
        where = f"{path}, line {number} ({raw.strip()!r})"
        tokens = body.split()
        if len(tokens) < 3 or not tokens[0].isdigit():
            raise FeedmeUnsupportedError(f"{where}: galmoss reads ranges on one component's parameter in a GalfitM "
                                         "constraint file ('k par lo to hi', 'k par lo hi', 'k par factor f'), not "
                                         "couplings of components (its multi-band fits have no ties yet)")
        k, name, rest = int(tokens[0]), tokens[1].lower(), [t.lower() for t in tokens[2:]]
        if "_" in name:
            raise FeedmeUnsupportedError(f"{where}: a range on one band or one Chebyshev coefficient ({tokens[1]}) is "
                                         "not supported; give the range for the parameter in every band")
        if k not in by_index:
            raise FeedmeError(f"{where}: the file has no component {k} (it has {len(by_index)})")
        label = parameter_label(name, by_index[k], where)
        if not (len(rest) == 3 and rest[1] in ("to", "in") or len(rest) == 2):
            raise FeedmeUnsupportedError(f"{where}: galmoss reads 'lo to hi', 'lo hi', 'lo in hi' and 'factor f' here "
                                         "(not a range about the reference band's value, 'ref')")
        try:
            if len(rest) == 3 and rest[1] == "to":
                kind, lo, hi = "range", float(rest[0]), float(rest[2])
            elif len(rest) == 3 and rest[1] == "in":
                kind, lo, hi = "relative", float(rest[0]), float(rest[2])
            elif len(rest) == 2 and rest[0] == "factor":
                kind, lo, hi = "factor", 1.0 / float(rest[1]), float(rest[1])
            else:
                kind, lo, hi = "relative", float(rest[0]), float(rest[1])
        except ValueError:
            raise FeedmeError(f"{where}: the range must be numbers") from None
        if not lo < hi:
            raise FeedmeError(f"{where}: the range needs lo < hi (a factor above 1)")
        out.append(Constraint(kind, (k,), label, lo, hi, path, number, raw))
    _ranges(fm, out)  # refuse what galmoss cannot apply before any data is read
    return out
