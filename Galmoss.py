"""``import Galmoss as gm`` as printed in the GalMOSS talk: the same package as ``galmoss``.

A single-file module, not a ``Galmoss/`` folder: on a case-insensitive file
system (macOS, Windows) a folder ``Galmoss`` beside ``galmoss`` is the same
folder, and the two ``__init__.py`` files would overwrite each other.
"""

import sys

import galmoss as _galmoss

sys.modules[__name__] = _galmoss
