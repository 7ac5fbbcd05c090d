"""A PSF given at the pixels' sampling that aliases is flagged where it biases a galaxy (``psf_undersampled``).

Truth: noiseless GalSim mocks (a Sersic convolved with a Moffat, integrated over pixels) whose sigma sets the
S/N; fitted from their true values, so that what moves them is the misdrawn PSF alone, measured in their errors.
"""

from __future__ import annotations

import numpy as np
import pytest

import galmoss as gm
from galmoss.flags import Flag

from .helpers.galsim_mocks import GSPARAMS, galsim, galsim_sersic, moffat_psf

SHAPE = (40, 40)
FLUX = 1000.0


def _mock(n, re, q, fwhm, snr):
    clean = galsim.Convolve(galsim_sersic(n, re, q, 30.0, 20.3, 19.8, FLUX, SHAPE), moffat_psf(3.0, fwhm),
                            gsparams=GSPARAMS)
    image = clean.drawImage(nx=SHAPE[1], ny=SHAPE[0], scale=1.0, method="auto").array.astype(np.float64)
    return image, np.full(SHAPE, np.sqrt(np.sum(image**2)) / snr)


def _fit(cases, psfs, factor=1):
    images, sigmas = zip(*[_mock(*case) for case in cases])
    truth = np.array([case[:3] for case in cases])
    ds = gm.Dataset.from_arrays(np.array(images), np.array(sigmas), psfs)
    ds.define_profiles(galaxy=gm.lp.Sersic(cen_x=gm.p(20.3), cen_y=gm.p(19.8), pa=gm.p(30.0), axis_r=gm.p(truth[:, 2]),
                                           eff_r=gm.p(truth[:, 1]), mag=gm.p(-2.5 * np.log10(FLUX), M0=0.0),
                                           ser_n=gm.p(truth[:, 0])))
    fitting = gm.Fitting(ds, batch_size=len(cases), device="cpu", progress=False,
                         render_settings=gm.RenderSettings(psf_oversampling=factor))
    fitting.fit()
    res = fitting.uncertainty("covar_mat")
    a = lambda name: np.asarray(res[name], dtype=np.float64)  # noqa: E731
    pulls = np.stack([(a(f"galaxy_{slot}") - truth[:, k]) / a(f"galaxy_{slot}_err")
                      for k, slot in enumerate(("ser_n", "eff_r", "axis_r"))], axis=1)
    flagged = (np.asarray(res["flag"]) & int(Flag.psf_undersampled)) != 0
    return np.abs(pulls).max(axis=1), flagged, list(res["message"])


def test_an_aliasing_psf_is_flagged_where_it_biases_the_galaxy():
    """Euclid-like Moffat (FWHM 1.7 px) at the pixels' sampling: a compact bulge (r_e 0.6 px) at S/N 300 moves by
    more than one error (measured 3.2; the flag's estimate 8.2) and is flagged; an exponential disk of 4 px at the
    same S/N moves by 0.05 and is not; the compact bulge under a well-sampled PSF (FWHM 3.5 px) at S/N 1,000 moves
    by 0.03 and is not either."""
    pix = lambda fwhm: moffat_psf(3.0, fwhm).drawImage(nx=31, ny=31, scale=1.0, method="auto").array  # noqa: E731
    cases = [(4.0, 0.6, 0.7, 1.7, 300.0), (1.0, 4.0, 0.7, 1.7, 300.0), (4.0, 0.6, 0.7, 3.5, 1000.0)]
    bias, flagged, messages = _fit(cases, np.stack([pix(1.7), pix(1.7), pix(3.5)]))
    assert bias[0] > 1.0 and flagged[0], (bias, messages[0])
    assert "psf_oversampling" in messages[0]
    assert bias[1] < 0.2 and not flagged[1], (bias, messages[1])
    assert bias[2] < 0.3 and not flagged[2], (bias, messages[2])


def test_the_same_psf_given_finer_draws_the_galaxy_without_bias_and_no_flag():
    """Given 3x finer (a 93x93 stamp: 31 data pixels, inside the 40x40 cutout) the bulge moves by 8e-5 errors, and
    neither psf_undersampled nor psf_larger_than_cutout is set."""
    factor = 3
    fine = moffat_psf(3.0, 1.7).drawImage(nx=31 * factor, ny=31 * factor, scale=1.0 / factor, method="auto").array
    bias, flagged, messages = _fit([(4.0, 0.6, 0.7, 1.7, 300.0)], fine, factor=factor)
    assert bias[0] < 0.2 and not flagged[0], bias
    assert "larger than the cutout" not in messages[0] and "aliases" not in messages[0], messages[0]


def test_a_joint_fit_is_flagged_by_its_worst_band():
    """Two bands of the same compact bulge (S/N 300 each): under a 3.5 px PSF in one and the aliasing 1.7 px PSF
    in the other, the joint fit is flagged by the second."""
    pix = lambda fwhm: moffat_psf(3.0, fwhm).drawImage(nx=31, ny=31, scale=1.0, method="auto").array  # noqa: E731
    bands = {"a": 3.5, "b": 1.7}
    mocks = {band: _mock(4.0, 0.6, 0.7, fwhm, 300.0) for band, fwhm in bands.items()}
    ds = gm.Dataset.from_arrays({b: m[0][None] for b, m in mocks.items()}, {b: m[1][None] for b, m in mocks.items()},
                                {b: pix(fwhm) for b, fwhm in bands.items()}, wavelength={"a": 600.0, "b": 800.0},
                                pix_scale=0.1)
    ds.define_profiles(galaxy=gm.lp.Sersic(cen_x=gm.p(20.3), cen_y=gm.p(19.8), pa=gm.p(30.0), axis_r=gm.p(0.7),
                                           eff_r=gm.p(0.6), mag=gm.p(-2.5 * np.log10(FLUX), M0=0.0), ser_n=gm.p(4.0)))
    fitting = gm.Fitting(ds, batch_size=1, device="cpu", progress=False)
    res = fitting.fit()
    assert int(res["flag"][0]) & int(Flag.psf_undersampled), res["message"][0]


def test_a_fitted_neighbour_does_not_flag_the_target():
    """A bright star 12 px from an extended galaxy, both under the aliasing 1.7 px PSF, the star fitted as a
    neighbour: the star's S/N (tens of thousands) would flag any compact source, but the flag judges the target,
    whose exponential-like light (r_e 6 px) it does not bias."""
    pytest.importorskip("photutils")
    from .helpers.neighbour_mocks import neighbour_scene

    target = dict(n=1.5, re=6.0, q=0.6, pa=30.0, cx=40.3, cy=40.7, flux=400.0)
    image, sigma, psf, _ = neighbour_scene(target, [dict(kind="star", x=52.0, y=40.0, flux=5000.0)], seed=4,
                                           psf_fwhm=1.7)
    ds = gm.Dataset.from_arrays(image[None], sigma[None], psf, auto_mask=True, neighbours="fit")
    ds.define_profiles(g=gm.lp.Sersic(), sky=gm.lp.Sky())
    res = gm.Fitting(ds, batch_size=1, device="cpu", progress=False).fit()
    assert "g_eff_r" in res.colnames and abs(res["g_eff_r"][0] / target["re"] - 1) < 0.05
    assert not int(res["flag"][0]) & int(Flag.psf_undersampled), res["message"][0]
