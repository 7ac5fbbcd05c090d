"""The registry of per-galaxy status flags.

Every galaxy in a results table carries one integer ``flag``: a bitmask that is
0 when nothing worth reporting happened. Problems inside a batch never raise;
they set a bit here and the fit moves on to the next galaxy.

=====  =====  ======================  ==================================================
 bit   value  name                    meaning
=====  =====  ======================  ==================================================
   0      1   ``no_convergence``      hit the iteration limit before converging
   1      2   ``near_bound``          a fitted value lies within 1e-3 of its range's
                                      width from a bound, in the space that is fitted
                                      (log space for sizes and log=True)
   2      4   ``no_covariance``       J^T W J is singular or not positive definite:
                                      errors are NaN
   3      8   ``fully_masked``        no usable pixel
   4     16   ``bad_pixels_masked``   non-finite data/sigma pixels or sigma <= 0 pixels
                                      were excluded
   5     32   ``sigma_estimated``     no sigma image: sigma was estimated from the image
   6     64   ``non_finite``          the model or chi2 became non-finite: values are NaN
   7    128   ``read_error``          a file of this galaxy could not be read: values NaN
   8    256   ``bad_psf``             the PSF is unusable
   9    512   ``bad_start``           start values outside the profile's domain
  10   1024   ``no_dof``              no more usable pixels than free parameters
                                      (dof <= 0): reduced_chi2 is NaN
  11   2048   ``fit_error``           fitting this galaxy raised an error (see the
                                      message): values are NaN
  12   4096   ``block_not_written``   the image block could not be written; the fit
                                      is kept
  13   8192   ``bad_mask``            mask_index absent from the mask: not fitted
  14  16384   ``no_source``           blank or constant cutout: not fitted
  15  32768   ``psf_off_centre``      PSF centroid > 0.5 px from its documented centre
  16  65536   ``negative_pixels``     Poisson likelihood given negative pixels: masked
  17 131072   ``psf_larger_than_cutout``  the PSF stamp is larger than the cutout
  18 262144   ``segment_fallback``    auto mask: no segment under the start position;
                                      the brightest segment near it was fitted
  19 524288   ``chi2_high``           chi2 > dof + 10 sqrt(2 dof): far beyond the noise
  20 1048576  ``size_runaway``        a length beyond half the cutout's diagonal
  21 2097152  ``negligible_component``  a component holds < 1 % of the model's flux
  22 4194304  ``at_start``            a free parameter ended at its start value
  23 8388608  ``components_merged``   two components converged onto each other
  24 16777216 ``target_masked``       the user's mask covers the galaxy's centre or
                                      most of its light
=====  =====  ======================  ==================================================

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
from typing import Any

from .errors import FlagError

__all__ = ["Flag", "add_flag", "decode", "describe", "encode", "flag_table", "has_flag"]


class Flag(enum.IntFlag):
    """Per-galaxy status flags; the integer ``flag`` column is an OR of these.

    Member names are the flag names used everywhere else (``decode``, docs, job
    files), so they are lower case rather than the usual enum upper case.
    """

    no_convergence = 1 << 0
    near_bound = 1 << 1
    no_covariance = 1 << 2
    fully_masked = 1 << 3
    bad_pixels_masked = 1 << 4
    sigma_estimated = 1 << 5
    non_finite = 1 << 6
    read_error = 1 << 7
    bad_psf = 1 << 8
    bad_start = 1 << 9
    no_dof = 1 << 10
    fit_error = 1 << 11
    block_not_written = 1 << 12
    bad_mask = 1 << 13
    no_source = 1 << 14
    psf_off_centre = 1 << 15
    negative_pixels = 1 << 16
    psf_larger_than_cutout = 1 << 17
    segment_fallback = 1 << 18
    chi2_high = 1 << 19
    size_runaway = 1 << 20
    negligible_component = 1 << 21
    at_start = 1 << 22
    components_merged = 1 << 23
    target_masked = 1 << 24


_DESCRIPTIONS: dict[str, str] = {
    "no_convergence": "hit the iteration limit before converging",
    "near_bound": "a fitted value lies within 1e-3 of its range's width from a bound, in the space that is fitted "
                  "(log space for sizes and log=True)",
    "no_covariance": "J^T W J is singular or not positive definite: errors are NaN",
    "fully_masked": "no usable pixel",
    "bad_pixels_masked": "non-finite data/sigma pixels or sigma <= 0 pixels were excluded",
    "sigma_estimated": "no sigma image: sigma was estimated from the image",
    "non_finite": "the model or chi2 became non-finite: values are NaN",
    "read_error": "a file of this galaxy could not be read: values are NaN",
    "bad_psf": "the PSF is unusable",
    "bad_start": "start values outside the profile's domain",
    "no_dof": "no more usable pixels than free parameters (dof <= 0): reduced_chi2 is NaN",
    "fit_error": "fitting this galaxy raised an error (see the message): values are NaN",
    "block_not_written": "the image block could not be written (see the message); the fit itself is kept",
    "bad_mask": "the mask cannot select the galaxy (mask_index absent from the mask): not fitted",
    "no_source": "the cutout holds no source (blank or constant): not fitted",
    "psf_off_centre": "the PSF's centroid is more than half a pixel from its documented centre",
    "negative_pixels": "a Poisson likelihood was given negative pixels: they were masked",
    "psf_larger_than_cutout": "the PSF stamp is larger than the cutout",
    "segment_fallback": "auto mask: no segment lies under the start position; the brightest segment near it was fitted",
    "chi2_high": "chi2 exceeds dof + k sqrt(2 dof) (k = 10 by default): far more than the noise allows",
    "size_runaway": "a fitted length exceeds half the cutout's diagonal: the size ran away",
    "negligible_component": "a component carries a negligible share (< 1 %) of the model's flux",
    "at_start": "a free parameter ended at its start value: the fit did not move it",
    "components_merged": "two components converged onto each other (same centre, size, shape)",
    "target_masked": "the user's mask covers the galaxy's centre or most of its light: only the rest was fitted",
}

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
            "name": [m.name for m in _MEMBERS],
            "bit": [int(m).bit_length() - 1 for m in _MEMBERS],
            "value": [int(m) for m in _MEMBERS],
            "description": [_DESCRIPTIONS[m.name] for m in _MEMBERS],
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
        Integer array or tensor of per-galaxy flags, shape (B,); int32 or wider
        (int64 is what results tables use).
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
        to hold every defined bit.
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
    if not integral or width < 16:
        raise FlagError(
            f"flags array has dtype {dtype}; flags need an integer dtype of 16 bits or more "
            "(create it with numpy.zeros(n, dtype=numpy.int64) or torch.zeros(n, dtype=torch.int64))"
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
