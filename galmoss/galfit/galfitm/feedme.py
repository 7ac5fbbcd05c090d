"""GalfitM's multi-band input files read into plain data (the grammar: :mod:`galmoss.galfit.galfitm`).

:func:`parse_galfitm` gives a :class:`GalfitmFeedme`: per band its files and zero
point, per component line a :class:`BandParameter` (a start per band and
GalfitM's degree of freedom in wavelength). Lines are read as GALFIT's are
(:mod:`galmoss.galfit.feedme`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..feedme import (COMPONENT_PARAMETERS, REQUIRED_PARAMETERS, Component, Feedme, FeedmeError, FeedmeUnsupportedError,
                      Line, Parameter as LineParameter, _LABEL, _Located, _fail, _path, component_kind, read_input,
                      region_of, split_lines)

#: control lines of a GalfitM file (GALFIT's, the band lines A1) A2), U) non-parametric, V) MultiNest)
CONTROL_KEYS = ("A", "A1", "A2", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "O", "P", "S", "U", "V", "W")


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
class GalfitmFeedme(_Located):
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
    return [_path([t], base, optional=optional) for t in items]


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
    path, text, base = read_input(path, base, "GalfitM")
    control: dict[str, Line] = {}
    raw_components: list[tuple[GalfitmComponent, list[tuple[str, Line]]]] = []
    for label, line in split_lines(path, text, "GalfitM"):
        upper = label.upper()
        if label == "0":
            index = len(raw_components) + 1
            raw_components.append((GalfitmComponent(component_kind(path, line, index), index, line.number), []))
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
    output = _path(fields("B"), base, optional=False)
    if len(fields("C")) > 1:
        line = control["C"]
        _fail(path, line.number, line.text, "a minimum sigma (the second value of C)) is not supported by galmoss; "
              "give the sigma images or none", FeedmeUnsupportedError)
    sigmas = _paths(fields("C"), base, nb, path, control.get("C"), "C) sigma images", True)
    psfs = _paths(fields("D"), base, nb, path, control.get("D"), "D) PSFs", True)
    kernel_note = ""
    if len(fields("D")) > 1:
        if _path(fields("D")[1:], base, optional=False).exists():
            line = control["D"]
            _fail(path, line.number, line.text, "a PSF diffusion kernel (the file after the PSFs on D)) is not "
                  "supported by galmoss", FeedmeUnsupportedError)
        kernel_note = f"D) names a diffusion kernel '{fields('D')[1]}' that does not exist: none used"
    if fields("E") and fields("E")[0] not in ("1", "1.0"):
        line = control["E"]
        _fail(path, line.number, line.text, "galmoss fits GalfitM files with PSFs sampled as the data (E) 1)",
              FeedmeUnsupportedError)
    masks = _paths(fields("F"), base, nb, path, control.get("F"), "F) masks", True)
    constraints = _path(fields("G"), base, optional=True)
    region = region_of(path, control["H"], whole=False) if fields("H") else None
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
