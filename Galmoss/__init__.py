"""``import Galmoss as gm`` as printed in the GalMOSS talk: the same package as ``galmoss``."""

import sys

import galmoss as _galmoss

sys.modules[__name__] = _galmoss
