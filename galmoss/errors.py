"""Exception types raised by galmoss.

Every error subclasses the matching built-in, so ``except ValueError`` keeps
working, and every message names what was wrong, where, and how to fix it.
"""

from __future__ import annotations


class GalmossError(Exception):
    """Base class of all galmoss-specific errors."""


class ParameterValueError(GalmossError, ValueError):
    """A parameter value is outside the range a profile accepts."""


class PSFError(GalmossError, ValueError):
    """A PSF image cannot be used (no positive pixel, wrong batch, bad shape)."""


class DataError(GalmossError, ValueError):
    """An input image, sigma image or mask cannot be used."""


class DataFileNotFoundError(GalmossError, FileNotFoundError):
    """An input file named in a Dataset does not exist."""


class OutputError(GalmossError, OSError):
    """A results file or image block cannot be written where it was asked to go."""


class FlagError(GalmossError, ValueError):
    """A flag name or flag value that the registry in :mod:`galmoss.flags` does not define."""


class ConfigError(GalmossError, ValueError):
    """A run option (``gm.Fitting``'s keywords, a job file's ``[fit]``) that cannot be used.

    Raised before anything is read or fitted; the message names the option and the fix.
    """


class ConfigTypeError(ConfigError, TypeError):
    """A run option of the wrong type (a settings object that is not one)."""


class ProfileOutputError(GalmossError, ValueError):
    """A profile's image does not have the batch's shape, or a profile cannot be built (a user profile's bug)."""
