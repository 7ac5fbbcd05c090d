"""Every built-in profile keeps the profile contract (galmoss.testing.check_profile)."""

from __future__ import annotations

import numpy as np
import pytest

import galmoss as gm
from galmoss.testing import check_profile


def _geometry(count=3):
    return dict(
        cen_x=gm.p(np.array([24.3, 25.0, 23.6])[:count]),
        cen_y=gm.p(np.array([24.8, 23.9, 24.5])[:count]),
        pa=gm.p(np.array([30.0, -60.0, 85.0])[:count], angle=True),
        axis_r=gm.p(np.array([0.7, 0.35, 1.0])[:count]),
    )


def _mag(count=3):
    return gm.p(np.array([16.0, 17.0, 15.5])[:count], M0=22.5)


PROFILES = {
    "sersic": lambda: gm.lp.Sersic(**_geometry(), eff_r=gm.p([4.0, 2.0, 6.0]), mag=_mag(), ser_n=gm.p([1.5, 4.0, 0.6])),
    "sersic_boxy": lambda: gm.lp.Sersic(**_geometry(), eff_r=gm.p([4.0, 2.0, 6.0]), mag=_mag(), ser_n=gm.p([1.5, 4.0, 0.6]),
                                        box=gm.p([0.5, -0.5, 0.2])),
    "devaucouleurs": lambda: gm.lp.DeVaucouleurs(**_geometry(), eff_r=gm.p([4.0, 2.0, 6.0]), mag=_mag()),
    "expdisk": lambda: gm.lp.ExpDisk(**_geometry(), mag=_mag(), scale_l=gm.p([3.0, 1.5, 5.0])),
    "gaussian": lambda: gm.lp.Gaussian(**_geometry(), mag=_mag(), fwhm=gm.p([3.0, 1.2, 6.0])),
    "moffat": lambda: gm.lp.Moffat(**_geometry(), mag=_mag(), con=gm.p([2.5, 4.0, 1.8]), fwhm=gm.p([3.0, 1.5, 5.0])),
    "ferrer": lambda: gm.lp.Ferrer(**_geometry(), mag=_mag(), trunc_r=gm.p([10.0, 6.0, 14.0]),
                                   trunc_a=gm.p([2.0, 1.0, 0.5]), trunc_b=gm.p([0.0, 0.5, 1.0])),
    "king": lambda: gm.lp.King(**_geometry(), mag=_mag(), core_r=gm.p([2.0, 1.0, 3.0]), trunc_r=gm.p([15.0, 10.0, 20.0]),
                               pow_n=gm.p([2.0, 1.5, 3.0])),
    "nuker": lambda: gm.lp.Nuker(**_geometry(), mag=_mag(), break_r=gm.p([3.0, 2.0, 5.0]), alpha=gm.p([2.0, 1.0, 4.0]),
                                 beta=gm.p([5.0, 4.0, 6.0]), gamma=gm.p([0.5, 0.0, 1.2])),
    "edgedisk": lambda: gm.lp.EdgeDisk(cen_x=_geometry()["cen_x"], cen_y=_geometry()["cen_y"], pa=_geometry()["pa"], mag=_mag(),
                                       scale_h=gm.p([1.0, 0.6, 2.0]), scale_l=gm.p([5.0, 3.0, 8.0])),
    "freeform": lambda: gm.lp.FreeForm(**_geometry(), mag=_mag(), radii=(0.2, 30.0, 12),
                                       log_sb=gm.p(-np.outer([1.0, 0.6, 1.4], np.linspace(0.0, 3.0, 12)))),
    "pixelmap": lambda: gm.lp.PixelMap(pixels=gm.p(np.linspace(1.0, 40.0, 48).reshape(3, 16)), shape=(4, 4),
                                       cen_x=gm.p([24.0, 25.0, 23.5], fit=False),
                                       cen_y=gm.p([24.5, 23.0, 24.0], fit=False), scale=2),
    "sky": lambda: gm.lp.Sky(sky_bg=gm.p([1.0, 2.0, -0.5]), grad_x=gm.p([0.01, 0.0, -0.02]), grad_y=gm.p([0.0, 0.03, 0.01])),
}


def test_every_builtin_profile_is_checked():
    from galmoss.profiles import registered_profiles

    builtin = {name for name, cls in registered_profiles().items() if cls.__module__.startswith("galmoss.profiles")}
    builtin -= {"lightprofile", "ellipticalprofile", "pointsource"}  # abstract bases; the point source needs a PSF
    assert builtin <= {name.split("_")[0] for name in PROFILES}


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_contract_without_psf(name):
    report = check_profile(PROFILES[name](), shape=(48, 48), nonnegative=name not in ("sky", "pixelmap"), name=name)
    # every check ran (a check skipped by mistake would pass silently)
    expected = {"float32_vs_float64", "batch_vs_alone_difference", "jvp_vs_finite_difference"}
    if name not in ("sky", "pixelmap"):
        expected |= {"most_negative_over_peak", "pa_plus_180_difference"}
    if name not in ("sky", "pixelmap", "edgedisk"):  # the edge-on disk's flux: tests/test_galfit_profiles.py (scipy)
        expected |= {"flux_integral_relative_error"}
    assert expected <= set(report.measurements)


def test_a_misspelt_spec_key_is_caught():
    from galmoss.params import ParamSpec, Role

    class _Typo(gm.lp.ExpDisk):
        parameter_specs = {**{k: v for k, v in gm.lp.ExpDisk.parameter_specs.items() if k != "scale_l"},
                           "scale_1": ParamSpec(Role.LENGTH)}

    typo = _Typo(cen_x=gm.p(24.0), cen_y=gm.p(24.0), pa=gm.p(0.0), axis_r=gm.p(0.7), mag=gm.p(17.0), scale_l=gm.p(3.0))
    typo.scale_1 = gm.p(3.0)  # so that nothing is "missing": only the undeclared scale_l remains
    with pytest.raises(AssertionError, match=r"scale_l have no entry in _Typo.parameter_specs"):
        check_profile(typo)


@pytest.mark.parametrize("name", ["sersic", "ferrer", "moffat"])
def test_profile_contract_with_asymmetric_psf(name):
    yy, xx = np.mgrid[:15, :15] - 7.0
    psf = np.exp(-0.5 * ((xx - 0.7) ** 2 / 2.0 + (yy + 0.4) ** 2 / 3.0 + 0.3 * xx * yy / 2.5))
    check_profile(PROFILES[name](), shape=(48, 48), psf=psf, name=name)


def test_point_source_contract():
    yy, xx = np.mgrid[:11, :11] - 5.0
    psf = np.exp(-0.5 * (xx**2 + yy**2) / 1.5**2)
    star = gm.lp.PointSource(cen_x=gm.p([20.3, 24.0]), cen_y=gm.p([21.7, 25.5]), mag=gm.p([17.0, 18.0], M0=22.5))
    check_profile(star, shape=(40, 40), psf=psf, name="pointsource")
