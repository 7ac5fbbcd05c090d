"""The free-form radial profile (issue 10, item 3): a Sersic drawn through its values at K radii.

Truth: galmoss's exact Sersic image and the Sersic's analytic surface brightness
at the nodes (I(r) = I_e exp(-b_n ((r / r_e)^(1/n) - 1))).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import galmoss as gm
from galmoss.profiles.special import sersic_b


def _psf():
    yy, xx = np.mgrid[:17, :17] - 8.0
    return np.exp(-(xx**2 + yy**2) / (2 * 1.5**2))


@pytest.mark.parametrize("n, re", [(1.5, 5.0), (0.8, 8.0)])
def test_a_sersic_through_its_values_renders_as_the_sersic(n, re):
    radii = (0.1, 40.0, 32)
    r = np.exp(np.linspace(math.log(radii[0]), math.log(radii[1]), radii[2]))
    b = float(sersic_b(torch.tensor(n, dtype=torch.float64)))
    log_sb = -b * ((r / re) ** (1 / n) - 1) / math.log(10)
    geo = dict(cen_x=gm.p(32.3), cen_y=gm.p(31.8), pa=gm.p(30.0), axis_r=gm.p(0.7), mag=gm.p(14.0, M0=22.5))
    sersic = gm.render(gm.lp.Sersic(**geo, eff_r=gm.p(re), ser_n=gm.p(n)), (64, 64), psf=_psf(), dtype=torch.float64)
    free = gm.render(gm.lp.FreeForm(**geo, log_sb=gm.p(log_sb + 3.0, dim="2d"), radii=radii), (64, 64), psf=_psf(),
                     dtype=torch.float64)
    # measured 6e-4 (n = 1.5) with 32 nodes over 0.1-40 px; the total flux to 4e-4
    assert float((free - sersic).abs().max() / sersic.max()) < 1.5e-3
    assert float(free.sum() / sersic.sum()) == pytest.approx(1.0, abs=1e-3)


def test_bad_radii_and_lengths_are_refused():
    geo = dict(cen_x=gm.p(32.0), cen_y=gm.p(32.0), pa=gm.p(0.0), axis_r=gm.p(0.7), mag=gm.p(14.0))
    with pytest.raises(ValueError, match="r_min < r_max"):
        gm.lp.FreeForm(**geo, log_sb=gm.p(np.zeros(5), dim="2d"), radii=(3.0, 1.0, 5))
    from galmoss.model import Model

    with pytest.raises(ValueError, match=r"f\.log_sb: the parameter holds 4 values per galaxy but FreeForm expects 5"):
        Model({"f": gm.lp.FreeForm(**geo, log_sb=gm.p(np.zeros(4), dim="2d"), radii=(0.5, 20.0, 5))})
