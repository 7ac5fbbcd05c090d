"""The registry of per-galaxy status flags.

Every galaxy in a results table carries one integer ``flag``: a bitmask that is
0 when nothing worth reporting happened. Problems inside a batch never raise;
they set a bit here and the fit moves on to the next galaxy.

{flag_table}

Bits are part of the file format: a bit, once given a meaning, keeps it, and new
flags take the next free bit.

>>> from galmoss.flags import Flag, add_flag, decode, encode
>>> encode(["no_convergence", "sigma_estimated"])
33
>>> decode(33)
['no_convergence', 'sigma_estimated']
>>> import numpy as np
>>> flags = np.zeros(3, dtype=np.int64)
>>> add_flag(flags, Flag.near_bound, where=np.array([False, True, False]))
array([0, 2, 0])
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any, NamedTuple

from .errors import FlagError

__all__ = ["FLAG_DTYPE", "REGISTRY", "Flag", "FlagInfo", "add_flag", "decode", "describe", "encode", "flag_table", "has_flag"]


class FlagInfo(NamedTuple):
    """One row of the registry: a flag's name, its bit and what it means."""

    name: str
    bit: int
    meaning: str


# The registry: every flag written once. The enum, the descriptions, the module
# docstring's table and ``flag_table`` are all made from it.
REGISTRY: tuple[FlagInfo, ...] = (
    FlagInfo("no_convergence", 0, "hit the iteration limit before converging"),
    FlagInfo("near_bound", 1, "a fitted value lies within 1e-3 of its range's width from a bound, in the space "
                              "that is fitted (log space for sizes and log=True)"),
    FlagInfo("no_covariance", 2, "J^T W J is singular or not positive definite: errors are NaN"),
    FlagInfo("fully_masked", 3, "no usable pixel"),
    FlagInfo("bad_pixels_masked", 4, "non-finite data/sigma pixels or sigma <= 0 pixels were excluded"),
    FlagInfo("sigma_estimated", 5, "no sigma image: sigma was estimated from the image"),
    FlagInfo("non_finite", 6, "the model or chi2 became non-finite: values are NaN"),
    FlagInfo("read_error", 7, "a file of this galaxy could not be read: values are NaN"),
    FlagInfo("bad_psf", 8, "the PSF is unusable"),
    FlagInfo("bad_start", 9, "start values outside the profile's domain"),
    FlagInfo("no_dof", 10, "no more usable pixels than free parameters (dof <= 0): reduced_chi2 is NaN"),
    FlagInfo("fit_error", 11, "fitting this galaxy raised an error (see the message): values are NaN"),
    FlagInfo("block_not_written", 12, "the image block could not be written (see the message); the fit itself "
                                      "is kept"),
    FlagInfo("bad_mask", 13, "the mask cannot select the galaxy (mask_index absent from the mask): not fitted"),
    FlagInfo("no_source", 14, "the cutout holds no source (blank or constant): not fitted"),
    FlagInfo("psf_off_centre", 15, "the PSF's centroid is more than half a pixel from its documented centre"),
    FlagInfo("negative_pixels", 16, "a Poisson likelihood was given negative pixels: they were masked"),
    FlagInfo("psf_larger_than_cutout", 17, "the PSF stamp is larger than the cutout"),
    FlagInfo("segment_fallback", 18, "auto mask: no segment lies under the start position; the brightest segment "
                                     "near it was fitted"),
    FlagInfo("chi2_high", 19, "chi2 exceeds dof + k sqrt(2 dof) (k = 10 by default): far more than the noise "
                              "allows"),
    FlagInfo("size_runaway", 20, "a fitted length exceeds half the cutout's diagonal: the size ran away"),
    FlagInfo("negligible_component", 21, "a component carries a negligible share (< 1 %) of the model's flux"),
    FlagInfo("at_start", 22, "a free parameter ended at its start value: the fit did not move it"),
    FlagInfo("components_merged", 23, "two components converged onto each other (same centre, size, shape)"),
    FlagInfo("target_masked", 24, "the user's mask covers the galaxy's centre or most of its light: only the rest "
                                   "was fitted"),
    FlagInfo("bootstrap_split", 25, "some bootstrap refits went to another minimum (a value more than 5 robust sigmas "
                                    "from the refits' median): the errors are the spread of the others"),
    FlagInfo("prior_dominated", 26, "a parameter's posterior error is above 1/sqrt(2) of its prior's width: the "
                                    "prior says as much about it as the data"),
    FlagInfo("degenerate_component", 27, "a component collapsed (axis ratio below 0.05, or a half-light size below "
                                         "0.1 of the PSF's FWHM): only its flux is measured"),
    FlagInfo("psf_undersampled", 28, "the PSF, given at the pixels' sampling, aliases, and the galaxy is compact and "
                                     "bright enough for that to bias it by about its error: give the PSF finer "
                                     "(psf_oversampling)"),
)

# Flags are stored as int64 everywhere (results tables, parts, tensors).
FLAG_DTYPE = "int64"

Flag = enum.IntFlag("Flag", [(info.name, 1 << info.bit) for info in REGISTRY], module=__name__)
Flag.__doc__ = """Per-galaxy status flags; the integer ``flag`` column is an OR of these.

    Member names are the flag names used everywhere else (``decode``, docs, job
    files), so they are lower case rather than the usual enum upper case.
    """

_DESCRIPTIONS: dict[str, str] = {info.name: info.meaning for info in REGISTRY}


def _rst_table() -> str:
    """The registry as the reStructuredText table of the module docstring."""
    import textwrap

    width = max(len(info.name) for info in REGISTRY) + 4
    rule = f"=====  ========  {'=' * width}  {'=' * 60}"
    lines = [rule, f" bit      value  {'name':<{width}}  meaning", rule]
    for info in REGISTRY:
        text = textwrap.wrap(info.meaning, 60)
        lines.append(f"{info.bit:>4}  {1 << info.bit:>8}  {'``' + info.name + '``':<{width}}  {text[0]}")
        lines.extend(f"{'':>4}  {'':>8}  {'':<{width}}  {more}" for more in text[1:])
    lines.append(rule)
    return "\n".join(lines)


if __doc__:  # absent under python -OO
    __doc__ = __doc__.replace("{flag_table}", _rst_table())

# Iterating an IntFlag class changed between Python 3.10 and 3.12 (aliases,
# composite members); the explicit member table behaves the same everywhere.
_MEMBERS: tuple[Flag, ...] = tuple(sorted(Flag.__members__.values(), key=int))
_ALL_BITS = 0
for _member in _MEMBERS:
    _ALL_BITS |= int(_member)
del _member


def _known_names() -> str:
    return ", ".join(m.name for m in _MEMBERS)


def _single(flag: Flag | str | int) -> Flag:
    """The one flag named by ``flag`` (a member, a name or a one-bit integer)."""
    if isinstance(flag, Flag) and int(flag) in {int(m) for m in _MEMBERS}:
        return flag
    if isinstance(flag, str):
        try:
            return Flag.__members__[flag.strip().lower()]
        except KeyError:
            raise FlagError(f"unknown flag name {flag!r}; known flags: {_known_names()}") from None
    if isinstance(flag, int) and not isinstance(flag, bool):
        for member in _MEMBERS:
            if int(member) == int(flag):
                return member
    raise FlagError(
        f"{flag!r} is not a single flag; pass one of {_known_names()} (a name, a Flag member or its bit value)"
    )


def describe(flag: Flag | str | int) -> str:
    """One-line description of a flag, or of every flag set in a value.

    Parameters
    ----------
    flag
        A :class:`Flag` member, a flag name, or an integer. An integer with
        several bits set is described bit by bit; 0 means no flag is set.

    Returns
    -------
    str
        The description (``"name: description; ..."`` for several bits).

    Raises
    ------
    FlagError
        If the name is unknown or the integer sets a bit no flag defines.
    """
    if isinstance(flag, str) or (isinstance(flag, Flag) and int(flag) in {int(m) for m in _MEMBERS}):
        return _DESCRIPTIONS[_single(flag).name]
    value = int(flag)
    names = decode(value)
    if not names:
        return "fine: no flag set"
    if len(names) == 1:
        return _DESCRIPTIONS[names[0]]
    return "; ".join(f"{name}: {_DESCRIPTIONS[name]}" for name in names)


def decode(value: int) -> list[str]:
    """Names of the flags set in an integer, in increasing bit order.

    Parameters
    ----------
    value
        A flag value as stored in the ``flag`` column (numpy and torch integer
        scalars are accepted).

    Returns
    -------
    list of str
        The names; empty for 0.

    Raises
    ------
    FlagError
        If ``value`` is negative or sets a bit that no flag defines (a file
        written by a newer galmoss: upgrade to read it).
    """
    if isinstance(value, bool):
        raise FlagError(f"flag value {value!r} is a bool; pass the integer from the 'flag' column")
    try:
        as_int = int(value)
    except (TypeError, ValueError):
        raise FlagError(f"flag value {value!r} is not an integer; pass the integer from the 'flag' column") from None
    if as_int != value:
        raise FlagError(f"flag value {value!r} is not an integer; pass the integer from the 'flag' column")
    if as_int < 0:
        raise FlagError(f"flag value {as_int} is negative; flag values are non-negative bitmasks")
    unknown = as_int & ~_ALL_BITS
    if unknown:
        bits = [b for b in range(unknown.bit_length()) if unknown >> b & 1]
        raise FlagError(
            f"flag value {as_int} sets bit(s) {bits}, which this version of galmoss does not define "
            f"(known flags: {_known_names()}); read the file with the galmoss version that wrote it"
        )
    return [m.name for m in _MEMBERS if as_int & int(m)]


def encode(names: Iterable[str | Flag] | str | Flag) -> int:
    """The integer with the given flags set.

    Parameters
    ----------
    names
        Flag names or :class:`Flag` members (one, or an iterable of them).
        Repeats are harmless.

    Returns
    -------
    int
        The bitmask; 0 for no names.

    Raises
    ------
    FlagError
        If a name is unknown.
    """
    if isinstance(names, (str, Flag)):
        names = [names]
    value = 0
    for name in names:
        if not isinstance(name, (str, Flag)):
            raise FlagError(f"encode() takes flag names or Flag members, got {name!r}; known flags: {_known_names()}")
        # A Flag may already combine several bits; a name is exactly one.
        value |= int(name) if isinstance(name, Flag) else int(_single(name))
    return value


def flag_table() -> Any:
    """Every flag as an :class:`astropy.table.Table`, for documentation.

    Returns
    -------
    astropy.table.Table
        Columns ``name`` (str), ``bit`` (bit index, int), ``value``
        (``2**bit``, int) and ``description`` (str), one row per flag in bit order.
    """
    # astropy is imported here so that importing the flags (used on the hot
    # path) stays cheap.
    from astropy.table import Table

    return Table(
        {
            "name": [info.name for info in REGISTRY],
            "bit": [info.bit for info in REGISTRY],
            "value": [1 << info.bit for info in REGISTRY],
            "description": [info.meaning for info in REGISTRY],
        }
    )


def _bits_of(flag: Flag | str | int | Iterable[str | Flag]) -> int:
    if isinstance(flag, (str, Flag)):
        return int(_single(flag)) if isinstance(flag, str) else int(flag)
    if isinstance(flag, int) and not isinstance(flag, bool):
        decode(flag)  # rejects undefined bits
        return int(flag)
    return encode(flag)


def add_flag(flags: Any, flag: Flag | str | int | Iterable[str | Flag], where: Any = None) -> Any:
    """OR a flag into an integer array of per-galaxy flags, in place.

    Works the same for numpy arrays and torch tensors (on any device), so the
    fitting code and the I/O code share it.

    Parameters
    ----------
    flags
        Integer array or tensor of per-galaxy flags, shape (B,), wide enough for
        the bits set (int64, the flag dtype of results tables, holds every flag).
    flag
        The flag(s) to set: a member, a name, an integer bitmask or an iterable of names.
    where
        Boolean array/tensor (or index) choosing the galaxies to flag; all when None.

    Returns
    -------
    same type as ``flags``
        ``flags`` itself, modified in place, for chaining.

    Raises
    ------
    FlagError
        If the flag is unknown or ``flags`` is not an integer array wide enough
        to hold the bits being set.
    """
    bits = _bits_of(flag)
    dtype = getattr(flags, "dtype", None)
    if dtype is None:
        raise FlagError(f"add_flag needs a numpy array or torch tensor of flags, got {type(flags).__name__}")
    # numpy and torch spell "integer dtype" differently; check both without importing torch.
    if hasattr(flags, "element_size"):
        # A bool tensor passes this test but fails the width test below.
        integral = not flags.is_floating_point() and not flags.is_complex()
        width = flags.element_size() * 8
    else:
        integral = getattr(dtype, "kind", "") in ("i", "u")
        width = getattr(dtype, "itemsize", 0) * 8
    if not integral:
        raise FlagError(
            f"flags array has dtype {dtype}; flags need an integer dtype ({FLAG_DTYPE}: create it with "
            f"numpy.zeros(n, dtype=numpy.{FLAG_DTYPE}) or torch.zeros(n, dtype=torch.{FLAG_DTYPE}))"
        )
    # A signed integer holds bits up to width - 2; numpy would raise OverflowError
    # (torch would wrap silently) for a bit beyond that.
    signed = dtype.is_signed if hasattr(flags, "element_size") else dtype.kind == "i"
    highest = bits.bit_length() - 1
    if highest > width - 1 - int(signed):
        name = Flag(1 << highest).name
        raise FlagError(
            f"flags array has dtype {dtype}, which cannot hold bit {highest} ({name}); flags are {FLAG_DTYPE}: "
            f"create the array with numpy.zeros(n, dtype=numpy.{FLAG_DTYPE}) or torch.zeros(n, "
            f"dtype=torch.{FLAG_DTYPE}), or convert it with .astype(numpy.{FLAG_DTYPE})"
        )
    if where is None:
        flags |= bits
    else:
        flags[where] |= bits
    return flags


def has_flag(values: Any, flag: Flag | str | int | Iterable[str | Flag]) -> Any:
    """Whether any of the given flag bits is set, elementwise.

    Parameters
    ----------
    values
        An int, or an integer numpy array / torch tensor of flag values
        (for example the ``flag`` column of a results table).
    flag
        The flag(s) to test: a member, a name, an integer bitmask or an iterable of names.

    Returns
    -------
    bool or boolean array/tensor
        True where at least one of the bits is set.
    """
    bits = _bits_of(flag)
    if isinstance(values, int):
        return bool(values & bits)
    return (values & bits) != 0
