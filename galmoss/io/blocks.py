"""Image blocks: one FITS per galaxy, with GALFIT-style fit cards in the MODEL header.

Every file is written atomically (a hidden temporary file, then ``os.replace``).

:func:`write_image_block` writes one FITS per galaxy: an empty primary HDU,
then extensions ``DATA``, ``MODEL``, ``RESIDUAL`` (data - model), one per
model component (EXTNAME = the component name upper-cased) and ``MASK``
(uint8, 1 = pixel used in the fit) when a mask is given. Images are
float32. :func:`galfit_header_cards` makes the GALFIT-style cards that go
into the ``MODEL`` header; :func:`update_image_block_header` replaces them
later (after uncertainties are computed); :func:`read_image_block` reads a
block back.


GALFIT-style header keys
------------------------
``COMP_k = '<profile>'`` names component k (1-based, in model order; the card
comment holds the galmoss component name), and ``k_<KEY> = '<value> +/-
<error>'`` holds each parameter, as GALFIT writes them (values with 4
decimals, ``%.4e`` outside 1e-3 <= |x| < 1e6, ``nan`` for NaN, just the value
when there is no error). The keys:

=========  =======  =========================================================
galmoss    key      note
=========  =======  =========================================================
cen_x      XC
cen_y      YC
mag        MAG
eff_r      RE
ser_n      N
axis_r     AR
pa         PA
box        C0       GALFIT's diskiness/boxiness
scale_l    RS       exponential disk scale length
fwhm       FWHM     Gaussian and Moffat
con        C        Moffat power-law index beta; GALFIT's own header key for
                    it could not be confirmed from its documentation
sky_bg     SKY
grad_x     DSDX
grad_y     DSDY
trunc_r    RT       King truncation radius and Ferrer outer radius
trunc_a    ALPHA    Ferrer outer sharpness
trunc_b    BETA     Ferrer central slope
core_r     RC       King core radius
pow_n      ALPHA    King power
mu0        MU0      central surface brightness (GALFIT feedmes' King and Ferrer)
(other)    SLOT     the slot name upper-cased
=========  =======  =========================================================

FITS keywords have at most 8 characters. A longer key (a component numbered
10 or more with a long key name, or an unlisted slot name) is cut to 8
characters, e.g. ``120_ALPH``, ``1_INNER_``. A ``HIERARCH`` card with the full
key (``HIERARCH 1_PARAM_TWO``) is used only where the cut key would collide
with an earlier key of the same header, or keep nothing of the name: in
practice never for the built-in profiles below component 1000
(``COMP_1000`` would collide with ``COMP_100``).
"""
from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
from astropy.io import fits

from ..errors import DataError
from ._atomic import _atomic_write, _make_folder
from .fits import _check_path, _open_fits, _physical

__all__ = ["GALFIT_KEYS", "galfit_header_cards", "read_image_block", "update_image_block_header",
           "update_image_block_headers", "write_band_image_block",
           "write_image_block"]

logger = logging.getLogger("galmoss")

PathLike = Union[str, os.PathLike]
Card = tuple[str, Any, str]

#: GALFIT's header key for each galmoss parameter slot (see the module docs).
GALFIT_KEYS: dict[str, str] = {
    "cen_x": "XC",
    "cen_y": "YC",
    "mag": "MAG",
    "eff_r": "RE",
    "ser_n": "N",
    "axis_r": "AR",
    "pa": "PA",
    "box": "C0",
    "scale_l": "RS",
    "fwhm": "FWHM",
    "con": "C",
    "sky_bg": "SKY",
    "grad_x": "DSDX",
    "grad_y": "DSDY",
    "trunc_r": "RT",
    "trunc_a": "ALPHA",
    "trunc_b": "BETA",
    "core_r": "RC",
    "pow_n": "ALPHA",
    "mu0": "MU0",
    "scale_h": "HS",
    "mu_b": "MU_B",
    "break_r": "RB",
    "alpha": "ALPHA",
    "beta": "BETA",
    "gamma": "GAMMA",
}

_EXTRA_COMMENTS = {
    "CHI2": "chi^2 of the fit",
    "NDOF": "degrees of freedom",
    "CHI2NU": "reduced chi^2 (chi^2 / NDOF)",
    "FLAGS": "galmoss status flags (galmoss.flags.decode)",
    "NITER": "iterations used",
    "NFREE": "free parameters",
}

_FIXED_EXTENSIONS = ("DATA", "MODEL", "RESIDUAL", "MASK", "SIGMA")
# Cards astropy manages itself; setting them from outside would corrupt the HDU.
_STRUCTURAL = re.compile(r"^(SIMPLE|XTENSION|BITPIX|NAXIS\d*|EXTEND|PCOUNT|GCOUNT|BSCALE|BZERO|BLANK|EXTNAME|END)$")
_KEYWORD = re.compile(r"^[A-Z0-9_-]{1,8}$")



# ------------------------------------------------------------------- helpers
def _header_value(value: Any) -> Any:
    """A value FITS headers accept: numpy scalars unwrapped, non-finite floats as text."""
    if not isinstance(value, (str, bytes, bool, int, float)) and hasattr(value, "item"):
        value = value.item()  # numpy scalars and one-element tensors
    # FITS headers cannot hold NaN or infinity; the text still parses with float().
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _set_cards(header: fits.Header, cards: Sequence[Card] | None, path: Path, where: str) -> None:
    for card in cards or ():
        if len(card) != 3:
            raise DataError(
                f"header card {card!r} for {where} of '{path}' is not (key, value, comment); "
                "give each card as a 3-tuple"
            )
        key, value, comment = card
        key = str(key).strip()
        upper = key.upper()
        if _STRUCTURAL.match(upper):
            raise DataError(
                f"header card {key!r} for {where} of '{path}' is a structural FITS keyword that galmoss sets "
                "itself; use another key"
            )
        if key.upper().startswith("HIERARCH "):
            name = key
        elif _KEYWORD.match(upper):
            name = upper
        else:
            # Longer or non-standard keys are legal only as HIERARCH cards;
            # saying so explicitly keeps astropy from warning about it.
            name = f"HIERARCH {key}"
        try:
            header[name] = (_header_value(value), str(comment))
        except ValueError as exc:  # astropy refuses non-ASCII text and unsupported value types
            raise DataError(
                f"header card {key!r} for {where} of '{path}' cannot be written ({exc}); "
                "use ASCII text and a number, bool or string value"
            ) from exc


def _array(x: Any, name: str, path: Path) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, possibly on a GPU
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise DataError(f"{name} for image block '{path}' has shape {arr.shape}; a 2-D image is needed")
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{name} for image block '{path}' has dtype {arr.dtype}; a real-valued image is needed")
    return arr


# ------------------------------------------------------------------- results

def write_image_block(
    path: PathLike,
    *,
    data: Any,
    model: Any,
    components: Mapping[str, Any],
    header_cards: Sequence[Card] | None = None,
    primary_header_cards: Sequence[Card] | None = None,
    mask: Any = None,
    sigma: Any = None,
) -> Path:
    """Write one galaxy's image block.

    Parameters
    ----------
    path
        The FITS file to write (conventionally ``<galaxy_index>.fits``); its
        folder is created if missing and an existing file is replaced.
    data
        The cutout, 2-D.
    model
        The model image (PSF-convolved sum of all components), same shape.
    components
        Component name -> that component's image, same shape, in model order.
        Each becomes an extension whose EXTNAME is the name upper-cased.
    header_cards
        ``(key, value, comment)`` cards for the ``MODEL`` header, e.g. from
        :func:`galfit_header_cards`. NaN and infinite values are written as
        the strings ``'nan'``/``'inf'``/``'-inf'`` (FITS headers cannot hold them);
        keys that are not valid 8-character FITS keywords become HIERARCH cards.
    primary_header_cards
        Cards for the (data-less) primary header, same rules.
    mask
        Optional 2-D array, true (non-zero) where the pixel WAS USED in the fit
        -- the opposite of an input bad-pixel mask. Written as ``MASK``, uint8,
        1 = used, 0 = excluded.
    sigma
        Optional 2-D sigma image (the noise the fit used), written last as
        ``SIGMA`` (float32), so the residual can be shown in units of sigma.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    DataError
        If an array is not 2-D, the shapes differ, two extensions would share
        an EXTNAME, or a card is malformed or structural.
    OutputError
        If the folder cannot be created or written to.
    """
    target = Path(os.fspath(path))
    primary = fits.PrimaryHDU()
    _set_cards(primary.header, primary_header_cards, target, "the primary header")
    hdus = [primary, *_galaxy_hdus(target, data, model, components, header_cards, mask, sigma)]
    _make_folder(target.parent, "image block")
    _atomic_write(target, fits.HDUList(hdus).writeto)
    return target


def write_band_image_block(
    path: PathLike,
    bands: Mapping[str, Mapping[str, Any]],
    *,
    primary_header_cards: Sequence[Card] | None = None,
) -> Path:
    """Write one galaxy's image block of a multi-band fit: the extensions of :func:`write_image_block` per band.

    Parameters
    ----------
    path
        The FITS file to write.
    bands
        Band name -> ``dict(data=, model=, components=, header_cards=, mask=,
        sigma=)`` as :func:`write_image_block` takes them, in band order. Band b's
        extensions are ``DATA_<B>``, ``MODEL_<B>``, ``RESIDUAL_<B>``, one per
        component (``<COMPONENT>_<B>``), ``MASK_<B>`` and ``SIGMA_<B>`` (EXTNAMEs
        are upper-cased by FITS: ``DATA_G`` for band ``g``); bands may differ in
        shape.
    primary_header_cards
        Cards for the (data-less) primary header.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    DataError
        As :func:`write_image_block`, or two band names that are one EXTNAME
        suffix once upper-cased.
    """
    target = Path(os.fspath(path))
    suffixes = [str(b).upper() for b in bands]
    if len(set(suffixes)) != len(suffixes):
        raise DataError(f"image block '{target}': bands {list(bands)} share a name once upper-cased (FITS extension "
                        "names are); give bands distinct names")
    primary = fits.PrimaryHDU()
    _set_cards(primary.header, primary_header_cards, target, "the primary header")
    hdus = [primary]
    for band, images in bands.items():
        hdus += _galaxy_hdus(target, images["data"], images["model"], images.get("components") or {},
                             images.get("header_cards"), images.get("mask"), images.get("sigma"),
                             suffix=f"_{str(band).upper()}")
    _make_folder(target.parent, "image block")
    _atomic_write(target, fits.HDUList(hdus).writeto)
    return target


def _galaxy_hdus(target: Path, data, model, components: Mapping[str, Any], header_cards, mask, sigma,
                 suffix: str = "") -> list:
    """The extensions of one galaxy's images (one band's, their EXTNAMEs ending in ``suffix``)."""
    data_arr = _array(data, "data", target)
    model_arr = _array(model, "model", target)
    arrays: dict[str, np.ndarray] = {}
    labels: dict[str, str] = {}
    for name, image in components.items():
        ext = str(name).upper()
        if not ext or not ext.isascii() or not ext.isprintable():
            raise DataError(
                f"component name {name!r} for image block '{target}' cannot be a FITS EXTNAME; "
                "use printable ASCII characters"
            )
        if ext in _FIXED_EXTENSIONS or ext in arrays:
            raise DataError(
                f"component '{name}' for image block '{target}' would be written as extension {ext}, "
                f"which {'galmoss uses itself' if ext in _FIXED_EXTENSIONS else 'another component already has'}"
                "; rename the component"
            )
        labels[ext] = f"component '{name}'"
        arrays[ext] = _array(image, labels[ext], target)
    mask_arr = None if mask is None else _array(mask, "mask", target)
    sigma_arr = None if sigma is None else _array(sigma, "sigma", target)
    checks = [("model", model_arr), *((labels[ext], arr) for ext, arr in arrays.items()), ("mask", mask_arr),
              ("sigma", sigma_arr)]
    for label, arr in checks:
        if arr is not None and arr.shape != data_arr.shape:
            raise DataError(
                f"{label} for image block '{target}' has shape {arr.shape} but data has {data_arr.shape}; "
                "every image of a block must have the data's shape"
            )

    model_hdu = fits.ImageHDU(model_arr.astype(np.float32), name="MODEL" + suffix)
    _set_cards(model_hdu.header, header_cards, target, f"the MODEL{suffix} header")
    # The residual is formed in float64 and rounded once, so it is exact to
    # float32 rather than the difference of two already-rounded images.
    residual = data_arr.astype(np.float64) - model_arr.astype(np.float64)
    hdus = [
        fits.ImageHDU(data_arr.astype(np.float32), name="DATA" + suffix),
        model_hdu,
        fits.ImageHDU(residual.astype(np.float32), name="RESIDUAL" + suffix),
    ]
    hdus += [fits.ImageHDU(arr.astype(np.float32), name=ext + suffix) for ext, arr in arrays.items()]
    if mask_arr is not None:
        hdus.append(fits.ImageHDU((mask_arr != 0).astype(np.uint8), name="MASK" + suffix))
    if sigma_arr is not None:
        hdus.append(fits.ImageHDU(sigma_arr.astype(np.float32), name="SIGMA" + suffix))
    return hdus


def read_image_block(path: PathLike) -> dict[str, np.ndarray]:
    """Read an image block back.

    Parameters
    ----------
    path
        An image block written by :func:`write_image_block` (any FITS file
        with named image extensions works).

    Returns
    -------
    dict of str to numpy.ndarray
        EXTNAME -> image, in file order (``DATA``, ``MODEL``, ``RESIDUAL``,
        components..., ``MASK``), as stored (float32 images, uint8 mask) in
        native byte order. Headers are read with :func:`galmoss.io.read_header`,
        e.g. ``read_header(path, "MODEL")``.

    Raises
    ------
    DataFileNotFoundError
        If the file does not exist.
    DataError
        If it is not a readable FITS file.
    """
    p = _check_path(path, "image block", "path")
    out: dict[str, np.ndarray] = {}
    with _open_fits(p, "image block") as hdul:
        for i, hdu in enumerate(hdul):
            if hdu.data is None or not getattr(hdu, "is_image", False):
                continue
            name = hdu.name or ("PRIMARY" if i == 0 else str(i))
            header = hdu.header
            if "BSCALE" in header or "BZERO" in header or "BLANK" in header:
                arr = _physical(hdu, p, "image block", f"{i} ({name})")
            else:
                raw = np.asarray(hdu.data)
                arr = raw.astype(raw.dtype.newbyteorder("="))
            out[name] = np.ascontiguousarray(arr)
    return out


# Cards galfit_header_cards writes, so an update can drop stale ones first.
_GALFIT_CARD = re.compile(r"^(COMP_\d+|\d+_[A-Z0-9_-]+)$")


def update_image_block_header(path: PathLike, header_cards: Sequence[Card], extension: str = "MODEL") -> Path:
    """Replace the fit cards in the ``MODEL`` header (or ``extension``'s) of an existing image block.

    Used after :meth:`Fitting.uncertainty` to add the errors to blocks written
    by the fit, without re-rendering any image.

    Parameters
    ----------
    path
        An image block written by :func:`write_image_block`.
    header_cards
        The new ``(key, value, comment)`` cards, e.g. from
        :func:`galfit_header_cards`. Every GALFIT-style card already there
        (``COMP_k``, ``k_<KEY>``) is removed first, so no stale component
        survives; other cards with the same keys are overwritten; the images
        are left exactly as they were.

    Returns
    -------
    pathlib.Path
        The path rewritten (atomically, as every write in this module).

    Raises
    ------
    DataFileNotFoundError
        If the file does not exist.
    DataError
        If it is not a readable FITS file, has no ``MODEL`` extension, or a
        card is malformed or structural.
    """
    return update_image_block_headers(path, {extension: header_cards})


def update_image_block_headers(path: PathLike, cards: Mapping[str, Sequence[Card]]) -> Path:
    """:func:`update_image_block_header` of several extensions at once (``{EXTNAME: cards}``), one rewrite."""
    p = _check_path(path, "image block", "path")
    with _open_fits(p, "image block") as hdul:
        # Copy everything into memory so the file is closed before it is
        # replaced (os.replace over an open file fails on Windows).
        hdus = [hdu.copy() for hdu in hdul]
        names = [hdu.name for hdu in hdul]
    for extension, header_cards in cards.items():
        extension = extension.upper()
        if extension not in names:
            raise DataError(
                f"image block '{p}' has no {extension} extension (it has {', '.join(n or '?' for n in names)}); "
                "give a file written by write_image_block"
            )
        header = hdus[names.index(extension)].header
        stale = [card.keyword for card in header.cards if _GALFIT_CARD.match(card.keyword)]
        for keyword in stale:
            del header[keyword]
        _set_cards(header, header_cards, p, f"the {extension} header")
    _atomic_write(p, fits.HDUList(hdus).writeto)
    return p


# ------------------------------------------------------------- GALFIT cards
def _galfit_number(x: float) -> str:
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0.0 or 1e-3 <= abs(x) < 1e6:
        return f"{x:.4f}"
    return f"{x:.4e}"


def _fit_key(prefix: str, short: str, used: set[str]) -> str | None:
    """``prefix + short`` cut to an 8-character FITS keyword, or None if that collides."""
    cut = (prefix + short)[:8]
    # A cut that keeps nothing of ``short`` would say nothing about the parameter.
    if cut in used or len(cut) <= len(prefix):
        return None
    return cut


def _param_key(k: int, param: str, name: str, used: set[str]) -> str:
    """The header key of parameter ``param`` of component number ``k``."""
    short = GALFIT_KEYS.get(param, param.upper())
    if re.search(r"_\d+$", param) and len(f"{k}_{short}") > 8:
        # an element of a vector parameter: cutting would drop its number
        return f"HIERARCH {k}_{short}"
    key = _fit_key(f"{k}_", short, used)
    if key is not None:
        return key
    # Only when cutting to 8 characters collides: the full slot name, which is
    # unique within a component, as a HIERARCH card.
    full = f"{k}_{param.upper()}"
    if full in used:
        raise DataError(
            f"parameter '{param}' of component '{name}' has no free header key ({full} is taken by another "
            "parameter of the same component); rename the parameter slot"
        )
    return f"HIERARCH {full}"


def galfit_header_cards(
    components: Mapping[str, str],
    values: Mapping[tuple[str, str], float],
    errors: Mapping[tuple[str, str], float] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> list[Card]:
    """GALFIT-style header cards describing one galaxy's fit.

    Parameters
    ----------
    components
        Component name -> profile class name (e.g. ``{"bulge": "Sersic"}``), in
        model order; component k (1-based) is the k-th entry.
    values
        ``(component, parameter) -> fitted value`` in the user's units. Each
        component's parameters are written in the order they appear here.
    errors
        ``(component, parameter) -> 1-sigma error``; a parameter without an
        entry (or ``errors=None``) is written as just its value.
    extra
        Plain keys to add before the components (e.g. ``CHI2``, ``NDOF``,
        ``CHI2NU``, ``FLAGS``, ``NITER``): key (at most 8 characters) -> number
        (or bool/str). NaN values are written as the string ``'nan'``.

    Returns
    -------
    list of (key, value, comment)
        Cards for :func:`write_image_block`'s ``header_cards``: the ``extra``
        keys, then for each component ``COMP_k = '<profile name lower-cased>'``
        and ``k_<KEY> = '<value> +/- <error>'`` (keys in the module docs).

    Raises
    ------
    DataError
        If a value or error names a component not in ``components``, or an
        ``extra`` key is not a valid FITS keyword of at most 8 characters.
    """
    cards: list[Card] = []
    used: set[str] = set()
    for key, value in (extra or {}).items():
        upper = str(key).upper()
        if not _KEYWORD.match(upper) or _STRUCTURAL.match(upper):
            raise DataError(
                f"extra header key {key!r} is not a free FITS keyword of at most 8 characters "
                "(A-Z, 0-9, '_', '-'); pick a shorter key such as CHI2NU"
            )
        cards.append((upper, _header_value(value), _EXTRA_COMMENTS.get(upper, "")))
        used.add(upper)

    numbers = {name: k for k, name in enumerate(components, start=1)}
    for source, label in ((values, "values"), (errors or {}, "errors")):
        for comp, param in source:
            if comp not in numbers:
                raise DataError(
                    f"{label} name component '{comp}' (parameter '{param}'), which is not among the components "
                    f"{list(components)}; add it to components or drop the entry"
                )

    for name, profile in components.items():
        k = numbers[name]
        comp_key = _fit_key("COMP_", str(k), used) or f"HIERARCH COMP_{k}"
        cards.append((comp_key, str(profile).lower(), f"component '{name}'"))
        used.add(comp_key.removeprefix("HIERARCH "))
        for (comp, param), value in values.items():
            if comp != name:
                continue
            key = _param_key(k, param, name, used)
            if isinstance(value, str):  # e.g. 'see table' for a vector too long to list
                cards.append((key, value, f"{name} {param}"))
                used.add(key.removeprefix("HIERARCH "))
                continue
            text = _galfit_number(value)
            if errors is not None and (comp, param) in errors:
                text = f"{text} +/- {_galfit_number(errors[(comp, param)])}"
            cards.append((key, text, f"{name} {param}"))
            used.add(key.removeprefix("HIERARCH "))
    return cards
