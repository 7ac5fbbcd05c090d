"""Every profile's image holds the total flux its magnitude says (within 1e-4).

Each profile is made compact enough that the flux beyond a 192x192 image is
below 1e-6 of the total (checked against the profile's own radial integral), and
rendered with and without a PSF. Truth: 10**(-0.4 (mag - M0)).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import galmoss as gm

YY, XX = np.mgrid[:21, :21] - 10.0
PSF = (1 + (XX**2 + YY**2) / 2.0**2) ** -4.0


def _geometry():
    return dict(cen_x=gm.p(96.3), cen_y=gm.p(95.8), pa=gm.p(35.0), axis_r=gm.p(0.55))


PROFILES = {
    "sersic": lambda: gm.lp.Sersic(**_geometry(), eff_r=gm.p(2.0), mag=gm.p(17.0, M0=22.5), ser_n=gm.p(1.5)),
    "devaucouleurs": lambda: gm.lp.DeVaucouleurs(**_geometry(), eff_r=gm.p(0.6), mag=gm.p(17.0, M0=22.5)),
    "expdisk": lambda: gm.lp.ExpDisk(**_geometry(), mag=gm.p(17.0, M0=22.5), scale_l=gm.p(3.0)),
    "gaussian": lambda: gm.lp.Gaussian(**_geometry(), mag=gm.p(17.0, M0=22.5), fwhm=gm.p(4.0)),
    "moffat": lambda: gm.lp.Moffat(**_geometry(), mag=gm.p(17.0, M0=22.5), con=gm.p(6.0), fwhm=gm.p(3.0)),
    "ferrer": lambda: gm.lp.Ferrer(**_geometry(), mag=gm.p(17.0, M0=22.5), trunc_r=gm.p(20.0), trunc_a=gm.p(1.5),
                                   trunc_b=gm.p(0.5)),
    "king": lambda: gm.lp.King(**_geometry(), mag=gm.p(17.0, M0=22.5), core_r=gm.p(2.0), trunc_r=gm.p(30.0),
                               pow_n=gm.p(2.0)),
    "boxy_sersic": lambda: gm.lp.Sersic(**_geometry(), eff_r=gm.p(2.0), mag=gm.p(17.0, M0=22.5), ser_n=gm.p(1.0),
                                        box=gm.p(0.6, fit=False)),
}


@pytest.mark.parametrize("psf", [None, "moffat"], ids=["no_psf", "psf"])
@pytest.mark.parametrize("name", sorted(PROFILES))
def test_image_flux_is_the_magnitudes(name, psf):
    flux = 10 ** (-0.4 * (17.0 - 22.5))
    image = gm.render(PROFILES[name](), (192, 192), psf=PSF if psf else None, dtype=torch.float64)
    assert abs(float(image.sum()) / flux - 1.0) < 1e-4


def test_point_source_flux():
    star = gm.lp.PointSource(cen_x=gm.p(50.4), cen_y=gm.p(49.7), mag=gm.p(17.0, M0=22.5))
    image = gm.render(star, (100, 100), psf=PSF, dtype=torch.float64)
    assert abs(float(image.sum()) / 10 ** (-0.4 * (17.0 - 22.5)) - 1.0) < 1e-4
