"""Light profiles (``gm.lp``).

Each profile is a class whose parameters are :func:`galmoss.p` objects and whose
image is a pure batched tensor function of those parameters. Subclass
:class:`LightProfile` (grid-sampled) or :class:`EllipticalProfile` (drawn exactly)
to add your own; subclasses register themselves by name.
"""

from .base import EllipticalProfile, LightProfile, profile_class, registered_profiles
from .expdisk import ExpDisk
from .edgedisk import EdgeDisk
from .ferrer import Ferrer
from .fourier import with_fourier
from .free_form import FreeForm
from .gaussian import Gaussian
from .king import King
from .nuker import Nuker
from .moffat import Moffat
from .pixel_map import PixelMap
from .point_source import PointSource
from .sersic import DeVaucouleurs, Sersic
from .sky import Sky
from .bending import with_bending
from .special import sersic_b
from .truncation import with_truncation

__all__ = [
    "DeVaucouleurs",
    "EdgeDisk",
    "EllipticalProfile",
    "ExpDisk",
    "Ferrer",
    "FreeForm",
    "Gaussian",
    "King",
    "LightProfile",
    "Moffat",
    "Nuker",
    "PixelMap",
    "PointSource",
    "Sersic",
    "Sky",
    "profile_class",
    "registered_profiles",
    "sersic_b",
    "with_bending",
    "with_fourier",
    "with_truncation",
]
