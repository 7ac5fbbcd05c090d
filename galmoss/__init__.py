"""galmoss: batched two-dimensional galaxy light-profile fitting with PyTorch.

The user API of GalMOSS is kept::

    import galmoss as gm
    sersic = gm.lp.Sersic(cen_x=gm.p(64.5), cen_y=gm.p(64.5), pa=gm.p(30, angle=True),
                          axis_r=gm.p(0.6), eff_r=gm.p(5.0), mag=gm.p(17.0, M0=22.5),
                          ser_n=gm.p(2.0, log=True))
    image = gm.render(sersic, (128, 128), psf=psf)
"""

from . import flags
from . import profiles as lp
from .data import DataSet, Dataset
from .pipeline import Fitting
from .io.init import results_to_init
from .model import Model
from .params import Parameter, p
from .params import priors as prior
from .params.ties import tie
from .galfit import read_galfit, write_galfit
from .plot import plot_fit, write_report
from .profiles import EllipticalProfile, LightProfile
from .render import Renderer, render
from .settings import RenderSettings

from ._version import __version__

__all__ = [
    "DataSet",
    "Dataset",
    "EllipticalProfile",
    "Fitting",
    "Model",
    "LightProfile",
    "Parameter",
    "RenderSettings",
    "Renderer",
    "__version__",
    "flags",
    "lp",
    "p",
    "plot_fit",
    "prior",
    "render",
    "read_galfit",
    "results_to_init",
    "write_report",
    "tie",
    "write_galfit",
]
