"""PSF from a FWHM against GalSim, and the quality flags on inputs of known answer (issue 8)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from galmoss.auto import CHI2_SIGMAS, psf_from_fwhm, quality_flags
from galmoss.flags import Flag, decode
from tests.helpers.galsim_mocks import galsim


@pytest.mark.parametrize("kind", ["moffat", "gaussian"])
def test_psf_from_fwhm_matches_galsim(kind):
    fwhm = np.array([2.5, 3.5, 5.0])
    psfs = psf_from_fwhm(fwhm, 31, kind=kind, beta=3.5)
    assert psfs.shape == (3, 31, 31)
    assert np.allclose(psfs.sum(axis=(1, 2)), 1.0)
    for f, mine in zip(fwhm, psfs):
        prof = galsim.Moffat(beta=3.5, fwhm=f) if kind == "moffat" else galsim.Gaussian(fwhm=f)
        ref = prof.drawImage(nx=31, ny=31, scale=1.0, method="auto").array  # pixel-integrated
        ref = ref / ref.sum()
        # 8x8 sub-pixel means against GalSim's exact pixel integral: < 0.3 % of the peak
        assert np.max(np.abs(mine - ref)) < 3e-3 * ref.max()
        assert np.unravel_index(np.argmax(mine), mine.shape) == (15, 15)


def test_psf_from_fwhm_even_size_and_scalar():
    psf = psf_from_fwhm(3.0, 16)
    assert psf.shape == (1, 16, 16)
    # centred on index size // 2 = 8, the renderer's PSF centre for even sizes
    assert np.unravel_index(np.argmax(psf[0]), (16, 16)) == (8, 8)
    assert psf[0, 8, 7] == pytest.approx(psf[0, 8, 9])
    with pytest.raises(ValueError, match="psf_fwhm must be finite and > 0"):
        psf_from_fwhm([3.0, -1.0], 15)
    with pytest.raises(ValueError, match="beta > 1"):
        psf_from_fwhm(3.0, 15, beta=1.0)


def _fine(b=4):
    values = {"bulge_cen_x": np.full(b, 32.2), "bulge_cen_y": np.full(b, 32.7), "bulge_eff_r": np.full(b, 2.0),
              "bulge_axis_r": np.full(b, 0.8), "bulge_pa": np.full(b, 20.0), "bulge_ser_n": np.full(b, 4.0),
              "bulge_mag": np.full(b, 17.0), "disk_cen_x": np.full(b, 32.2), "disk_cen_y": np.full(b, 32.7),
              "disk_eff_r": np.full(b, 8.0), "disk_axis_r": np.full(b, 0.5), "disk_pa": np.full(b, 25.0),
              "disk_ser_n": np.full(b, 1.0), "disk_mag": np.full(b, 16.0)}
    starts = {k: v * 1.1 + 0.3 for k, v in values.items()}
    return values, starts


def test_chi2_threshold_means_the_same_for_100_and_100000_pixels():
    rng = np.random.default_rng(0)
    values, starts = _fine(2000)
    for dof in (100, 100_000):
        chi2 = rng.chisquare(dof, 2000)  # a correct model: never flagged at 10 spreads
        flags, _ = quality_flags(chi2 / dof, np.full(2000, dof), values, starts, (64, 64))
        assert not np.any(flags & Flag.chi2_high)
        # 11 and 9 spreads sqrt(2 dof) above the mean: flagged and not
        hi = (dof + 11 * math.sqrt(2 * dof)) / dof
        lo = (dof + 9 * math.sqrt(2 * dof)) / dof
        f, msg = quality_flags([hi, lo], [dof, dof], {}, {}, (64, 64))
        assert list(f & Flag.chi2_high) == [int(Flag.chi2_high), 0]
        assert "11 spreads" in msg[0] and f"threshold {CHI2_SIGMAS:g}" in msg[0]
    # no dof, NaN chi2: no verdict
    f, _ = quality_flags([np.nan, 5.0], [10, 0], {}, {}, (64, 64))
    assert not np.any(f)


def test_each_bad_outcome_has_its_own_flag():
    values, starts = _fine(6)
    values["disk_eff_r"][1] = 60.0  # > half the diagonal of 64x64 (45.3 px)
    values["bulge_mag"][2] = 16.0 + 2.5 * math.log10(1 / 0.005)  # bulge 0.5 % of the flux
    for k in [c for c in starts if c.startswith("bulge")][:4]:
        values[k][3] = starts[k][3]  # four of seven bulge parameters never moved
    for k in ("eff_r", "axis_r", "ser_n", "pa"):
        values[f"bulge_{k}"][4] = values[f"disk_{k}"][4] * 1.02  # the two components are one
    no_source = np.array([False] * 5 + [True])
    flags, messages = quality_flags(np.ones(6), np.full(6, 4000), values, starts, (64, 64), no_source=no_source)
    assert flags[0] == 0 and messages[0] == ""
    assert decode(int(flags[1])) == ["size_runaway"] and "disk.eff_r = 60" in messages[1]
    assert decode(int(flags[2])) == ["negligible_component"] and "bulge carries 0.5 %" in messages[2]
    assert decode(int(flags[3])) == ["at_start"] and "4 of its 7" in messages[3]
    assert decode(int(flags[4])) == ["components_merged"]
    assert decode(int(flags[5])) == ["no_source"]


def test_lengths_in_arcsec_use_the_pixel_scale():
    values = {"g_eff_r": np.array([10.0, 20.0]), "g_cen_x": np.array([30.0, 30.0])}
    flags, _ = quality_flags([1, 1], [100, 100], values, {}, (64, 64), pixel_scale=0.396)
    # 10" = 25 px (fine), 20" = 50.5 px (> 45.3 px)
    assert list(flags & Flag.size_runaway) == [0, int(Flag.size_runaway)]
