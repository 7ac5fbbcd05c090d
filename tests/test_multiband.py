"""Multi-band joint fits against GalSim mocks of known per-band magnitudes and sizes."""

from __future__ import annotations

import numpy as np
import pytest

import galmoss as gm
from galmoss.errors import ConfigError
from galmoss.flags import Flag

from tests.helpers.multiband_mocks import M0, bulge_disk_bands, sersic_bands

WL = {"g": 477.0, "r": 623.1, "i": 762.5}
SCALES = {"g": 0.2, "r": 0.2, "i": 0.4}
# g faint, i at twice the pixel scale (half the cutout size for the same sky area), three PSFs
BANDS = {"g": dict(scale=0.2, size=48, fwhm=0.9, mag=23.5, sigma=1.0),
         "r": dict(scale=0.2, size=48, fwhm=0.8, mag=21.0, sigma=1.0),
         "i": dict(scale=0.4, size=24, fwhm=1.0, mag=20.5, sigma=1.0)}
RE_ARCSEC = 1.2


def sersic(**over):
    kw = dict(cen_x=gm.p(24.5), cen_y=gm.p(24.5), pa=gm.p(20.0), axis_r=gm.p(0.7), eff_r=gm.p(5.0),
              ser_n=gm.p(2.0), mag=gm.p(22.0, M0=M0))
    kw.update(over)
    return gm.lp.Sersic(**kw)


def fit(ds, **kw):
    f = gm.Fitting(ds, dtype="float64", restarts=False, progress=False, **kw)
    f.fit()
    return f, f.uncertainty()


@pytest.fixture(scope="module")
def joint():
    images, sigmas, psfs = sersic_bands(BANDS, count=4, dx=0.1, dy=-0.2, re_arcsec=RE_ARCSEC, seed=1)
    ds = gm.Dataset.from_arrays(images, sigmas, psfs, wavelength=WL, pix_scale=SCALES)
    ds.define_profiles(gal=sersic())
    return (images, sigmas, psfs), fit(ds)[1]


def test_joint_fit_recovers_band_magnitudes_and_shared_size(joint):
    _, t = joint
    for band, b in BANDS.items():
        pull = (t[f"gal_mag_{band}"] - b["mag"]) / t[f"gal_mag_{band}_err"]
        assert np.all(np.abs(pull) < 4), (band, pull)
    # r_e and the centre are in the reference band's pixels (0.2 arcsec)
    pull = (t["gal_eff_r"] - RE_ARCSEC / 0.2) / t["gal_eff_r_err"]
    assert np.all(np.abs(pull) < 4), pull
    assert np.all(np.abs((t["gal_cen_x"] - 25.0) / t["gal_cen_x_err"]) < 4)
    assert np.all(np.abs((t["gal_cen_y"] - 23.5) / t["gal_cen_y_err"]) < 4)
    assert np.all(t["converged"]) and np.all(t["flag"] == 0)
    # chi2 is the sum of the bands' chi2; the noise is what the sigma images say
    np.testing.assert_allclose(t["chi2"], t["chi2_g"] + t["chi2_r"] + t["chi2_i"], rtol=1e-9)
    assert np.all(np.abs(t["reduced_chi2"] - 1) < 5 * np.sqrt(2 / t["dof"]))
    assert abs(int(t["dof_g"][0] + t["dof_r"][0] + t["dof_i"][0]) - int(t["dof"][0])) <= 1


def test_bulge_and_disk_colours_with_shared_shapes():
    # a red bulge and a blue disk: B/T grows with wavelength, the shapes are the same in every band
    mags = {"g": (23.5, 21.8), "r": (22.0, 21.2), "i": (21.2, 21.0)}
    bands = {b: dict(BANDS[b], bulge=mags[b][0], disk=mags[b][1]) for b in BANDS}
    images, sigmas, psfs = bulge_disk_bands(bands, count=3, seed=0)
    ds = gm.Dataset.from_arrays(images, sigmas, psfs, wavelength=WL, pix_scale=SCALES)
    cx, cy = gm.p(24.5), gm.p(24.5)
    ds.define_profiles(
        bulge=gm.lp.Sersic(cen_x=cx, cen_y=cy, pa=gm.p(20.0), axis_r=gm.p(0.7), eff_r=gm.p(3.0),
                           ser_n=gm.p(4.0, fit=False), mag=gm.p(22.0, M0=M0)),
        disk=gm.lp.Sersic(cen_x=cx, cen_y=cy, pa=gm.p(20.0), axis_r=gm.p(0.6), eff_r=gm.p(7.0),
                          ser_n=gm.p(1.0, fit=False), mag=gm.p(21.5, M0=M0)))
    _, t = fit(ds)
    for b, (bulge, disk) in mags.items():
        assert np.all(np.abs(t[f"bulge_mag_{b}"] - bulge) < 4 * t[f"bulge_mag_{b}_err"]), b
        assert np.all(np.abs(t[f"disk_mag_{b}"] - disk) < 4 * t[f"disk_mag_{b}_err"]), b
    # sizes in reference pixels (0.2 arcsec)
    assert np.all(np.abs(t["bulge_eff_r"] - 2.5) < 4 * t["bulge_eff_r_err"])
    assert np.all(np.abs(t["disk_eff_r"] - 8.0) < 4 * t["disk_eff_r_err"])
    assert np.all(t["flag"] == 0)


def test_joint_fit_beats_the_faint_band_alone(joint):
    (images, sigmas, psfs), t = joint
    alone = gm.Dataset.from_arrays(images["g"], sigmas["g"], psfs["g"])
    alone.define_profiles(gal=sersic())
    _, single = fit(alone)
    # the faint band's magnitude is better measured with the shape the bright bands fix
    assert np.all(t["gal_mag_g_err"] < 0.8 * single["gal_mag_err"])


def _one_band_and_alone(images, sigmas, psfs, band: str, wavelength: float, profile):
    """The fits (tables) of one band as a multi-band dataset and as a single-band one, ``profile()`` each."""
    one = gm.Dataset.from_arrays(images, sigmas, psfs, wavelength={band: wavelength}, pix_scale={band: 0.2})
    one.define_profiles(gal=profile())
    single = gm.Dataset.from_arrays(images[band], sigmas[band], psfs[band])
    single.define_profiles(gal=profile())
    return fit(one)[1], fit(single)[1]


def test_one_band_equals_the_single_band_fit():
    images, sigmas, psfs = sersic_bands({"r": BANDS["r"]}, count=2, seed=2)
    a, b = _one_band_and_alone(images, sigmas, psfs, "r", 623.1, sersic)
    for name in ("cen_x", "cen_y", "pa", "axis_r", "eff_r", "ser_n"):
        np.testing.assert_allclose(a[f"gal_{name}"], b[f"gal_{name}"], rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(a[f"gal_{name}_err"], b[f"gal_{name}_err"], rtol=1e-6)
    np.testing.assert_allclose(a["gal_mag_r"], b["gal_mag"], rtol=1e-9, atol=1e-8)
    np.testing.assert_allclose(a["chi2"], b["chi2"], rtol=1e-9)


def test_two_identical_bands_halve_the_variance_of_shared_parameters():
    images, sigmas, psfs = sersic_bands({"r": BANDS["r"]}, count=2, seed=3)
    twice = gm.Dataset.from_arrays({"a": images["r"], "b": images["r"]}, {"a": sigmas["r"], "b": sigmas["r"]},
                                   {"a": psfs["r"], "b": psfs["r"]}, wavelength={"a": 600.0, "b": 650.0},
                                   pix_scale=0.2)
    twice.define_profiles(gal=sersic())
    single = gm.Dataset.from_arrays(images["r"], sigmas["r"], psfs["r"])
    single.define_profiles(gal=sersic())
    _, a = fit(twice)
    _, b = fit(single)
    for name in ("eff_r", "ser_n", "axis_r", "cen_x"):
        # identical data: the same minimum (the two fits take different float32 paths to it and stop
        # within the solver's tolerance, far below the error) and exactly twice the Fisher matrix
        np.testing.assert_allclose(a[f"gal_{name}"], b[f"gal_{name}"], rtol=0, atol=float(np.max(b[f"gal_{name}_err"])) * 1e-2)
        ratio = b[f"gal_{name}_err"] / a[f"gal_{name}_err"]
        np.testing.assert_allclose(ratio, np.sqrt(2), rtol=1e-4)
    np.testing.assert_allclose(a["gal_mag_a"], a["gal_mag_b"], atol=1e-6)


def test_chebyshev_degree_one_recovers_a_size_gradient():
    # ln r_e linear in wavelength (the polynomial acts on the fitted coordinate, ln r_e)
    mapped = {"g": -1.0, "r": 2 * (623.1 - 477.0) / (762.5 - 477.0) - 1, "i": 1.0}
    c0, c1 = np.log(6.0), 0.25  # reference pixels of 0.2 arcsec
    bands = {b: dict(BANDS[b], re=0.2 * float(np.exp(c0 + c1 * mapped[b])), mag=21.0) for b in BANDS}
    images, sigmas, psfs = sersic_bands(bands, count=2, seed=4)
    ds = gm.Dataset.from_arrays(images, sigmas, psfs, wavelength=WL, pix_scale=SCALES)
    ds.define_profiles(gal=sersic(eff_r=gm.p(5.0, bands=1)))
    _, t = fit(ds)
    for b in BANDS:
        truth = np.exp(c0 + c1 * mapped[b])
        assert np.all(np.abs(t[f"gal_eff_r_{b}"] - truth) < 4 * t[f"gal_eff_r_{b}_err"]), b
    assert np.all(np.abs(t["gal_eff_r_cheb1"] - c1) < 4 * t["gal_eff_r_cheb1_err"])
    assert np.all(np.abs(t["gal_eff_r_cheb0"] - c0) < 4 * t["gal_eff_r_cheb0_err"])
    assert np.all(t["gal_eff_r_g"] < t["gal_eff_r_r"]) and np.all(t["gal_eff_r_r"] < t["gal_eff_r_i"])


def test_band_starts_by_dict_and_fixed_band_values():
    images, sigmas, psfs = sersic_bands(BANDS, count=1, seed=5)
    ds = gm.Dataset.from_arrays(images, sigmas, psfs, wavelength=WL, pix_scale=SCALES)
    # starts by band name in any order; the i magnitude held at its true value
    ds.define_profiles(gal=sersic(mag=gm.p({"r": 21.5, "i": 20.5, "g": 23.0}, M0=M0)))
    _, t = fit(ds)
    for band, b in BANDS.items():
        assert abs(t[f"gal_mag_{band}"][0] - b["mag"]) < 4 * t[f"gal_mag_{band}_err"][0]


def test_bootstrap_of_every_band_agrees_with_the_covariance_errors():
    images, sigmas, psfs = sersic_bands(BANDS, count=2, seed=7)
    ds = gm.Dataset.from_arrays(images, sigmas, psfs, wavelength=WL, pix_scale=SCALES)
    ds.define_profiles(gal=sersic())
    f, cov = fit(ds)
    boot = f.uncertainty(method="bootstrap", n_resample=40, seed=1)
    # 40 resamplings: a standard deviation known to about 11 %; pixel resampling of a
    # model that fits is an independent estimate of the same errors
    for name in ("gal_mag_g", "gal_mag_r", "gal_mag_i", "gal_eff_r", "gal_ser_n", "gal_axis_r"):
        ratio = boot[f"{name}_err"] / cov[f"{name}_err"]
        assert np.all((ratio > 0.6) & (ratio < 1.5)), (name, ratio)


# ------------------------------------------------------------- bad inputs
def small():
    return sersic_bands({b: dict(BANDS[b], size=BANDS[b]["size"] // 2) for b in BANDS}, count=2, seed=6)


def test_bands_in_different_orders_are_matched_by_name():
    images, sigmas, psfs = small()
    ds = gm.Dataset.from_arrays(images, {b: sigmas[b] for b in ("i", "g", "r")}, {b: psfs[b] for b in ("r", "i", "g")},
                                wavelength=WL, pix_scale={"i": 0.4, "r": 0.2, "g": 0.2})
    assert ds.bands.names == ("g", "r", "i") and ds.bands.pix_scale == (0.2, 0.2, 0.4)
    assert ds.datasets["i"]._arrays["sigma"] is sigmas["i"]


@pytest.mark.parametrize("change, match", [
    (dict(sigmas="rename"), "sigmas names bands"),
    (dict(wavelength=None), "wavelength must be a dict"),
    (dict(wavelength={"g": 477.0, "r": -1.0, "i": 762.5}), "wavelength of band 'r' must be a positive"),
    (dict(pix_scale=None), "pix_scale is missing"),
    (dict(pix_scale={"g": 0.2, "r": 0.0, "i": 0.4}), "pix_scale of band 'r' must be a positive"),
    (dict(pix_scale={"g": 0.2, "r": 0.2}), "pix_scale names bands"),
])
def test_bad_band_inputs_raise_before_fitting(change, match):
    images, sigmas, psfs = small()
    kw = dict(wavelength=WL, pix_scale=SCALES)
    if change.get("sigmas") == "rename":
        sigmas = {"g": sigmas["g"], "r": sigmas["r"], "z": sigmas["i"]}
    else:
        kw.update(change)
    with pytest.raises(ConfigError, match=match):
        gm.Dataset.from_arrays(images, sigmas, psfs, **kw)


@pytest.mark.parametrize("bands, wl, match", [
    (3, WL, "bands=3 needs more than 3 bands"),
    (1, {"g": 477.0, "r": 623.1, "i": 623.1}, "two bands share a wavelength"),
])
def test_bad_chebyshev_degrees_raise(bands, wl, match):
    images, sigmas, psfs = small()
    ds = gm.Dataset.from_arrays(images, sigmas, psfs, wavelength=wl, pix_scale=SCALES)
    ds.define_profiles(gal=sersic(eff_r=gm.p(3.0, bands=bands)))
    with pytest.raises(ConfigError, match=match):
        gm.Fitting(ds).fit()


def test_worker_processes_are_refused_for_a_multi_band_dataset():
    # its bands are read together in the fitting process: a configuration error, before any work
    images, sigmas, psfs = small()
    ds = gm.Dataset.from_arrays(images, sigmas, psfs, wavelength=WL, pix_scale=SCALES)
    with pytest.raises(ConfigError, match="prepare_workers=2 with a multi-band dataset"):
        gm.Fitting(ds, prepare_workers=2)


def test_bands_keyword_and_band_starts_are_checked():
    with pytest.raises(ValueError, match="bands must be 'shared'"):
        gm.p(3.0, bands="some")
    images, sigmas, psfs = small()
    ds = gm.Dataset.from_arrays(images, sigmas, psfs, wavelength=WL, pix_scale=SCALES)
    ds.define_profiles(gal=sersic(mag=gm.p({"g": 22.0, "r": 21.0, "z": 20.0}, M0=M0)))
    with pytest.raises(ConfigError, match=r"gal.mag: the start names bands \['g', 'r', 'z'\]"):
        gm.Fitting(ds).fit()
    ds.define_profiles(gal=sersic(mag=gm.p([[22.0, 21.0]], bands="free", M0=M0)))
    with pytest.raises(ConfigError, match="gal.mag: the start has 2 columns for 3 bands"):
        gm.Fitting(ds).fit()


def test_a_galaxy_missing_a_band_is_flagged_and_the_others_fitted():
    images, sigmas, psfs = small()
    images = {b: list(v) for b, v in images.items()}
    images["g"][1] = None
    ds = gm.Dataset.from_arrays(images, sigmas, psfs, wavelength=WL, pix_scale=SCALES)
    ds.define_profiles(gal=sersic(cen_x=gm.p(12.5), cen_y=gm.p(12.5), eff_r=gm.p(3.0)))
    f = gm.Fitting(ds, progress=False)  # float32, the default
    t = f.fit()
    assert t["flag"][1] & int(Flag.read_error) and "band 'g' has no image" in t["message"][1]
    assert np.isnan(t["gal_mag_r"][1]) and np.isfinite(t["gal_mag_r"][0]) and t["converged"][0]


def test_unsupported_pieces_say_so():
    images, sigmas, psfs = small()
    with pytest.raises(NotImplementedError, match="image regions"):
        gm.Dataset.from_arrays(images, sigmas, psfs, wavelength=WL, pix_scale=SCALES, region=(1, 10, 1, 10))
    with pytest.raises(NotImplementedError, match="fitted neighbours"):
        gm.Dataset.from_arrays(images, sigmas, psfs, wavelength=WL, pix_scale=SCALES, auto_mask=True,
                               neighbours="fit")


def _wcs_header(scale: float, turn: float = 0.0, mirrored: bool = False):
    """A tangent-plane WCS of ``scale`` arcsec/px whose pixel grid is turned ``turn`` degrees counter-clockwise
    against a north-up, east-left one (the pixel-to-sky matrix is that grid's times R(-turn))."""
    from astropy.io import fits

    c, s = np.cos(np.radians(turn)), np.sin(np.radians(turn))
    k = scale / 3600
    cd = np.array([[-k, 0.0], [0.0, k]]) @ np.array([[c, s], [-s, c]])
    if mirrored:
        cd = cd @ np.diag([-1.0, 1.0])
    return fits.Header({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 150.0, "CRVAL2": 2.0,
                        "CD1_1": cd[0, 0], "CD1_2": cd[0, 1], "CD2_1": cd[1, 0], "CD2_2": cd[1, 1]})


def _write_bands(tmp_path, images, sigmas, psfs, scales, turns=None, count=2):
    """One FITS per galaxy and band with a WCS centred on the cutout; returns (paths, keyword arguments)."""
    from astropy.io import fits

    paths = {}
    for b in images:
        paths[b] = []
        for i in range(count):
            h = _wcs_header(scales[b], (turns or {}).get(b, 0.0))
            size = images[b].shape[1:]
            h["CRPIX1"], h["CRPIX2"] = (size[1] + 1) / 2, (size[0] + 1) / 2
            p = tmp_path / f"{b}_{i}.fits"
            fits.writeto(p, images[b][i], h, overwrite=True)
            paths[b].append(str(p))
        fits.writeto(tmp_path / f"{b}_psf.fits", psfs[b], overwrite=True)
        fits.writeto(tmp_path / f"{b}_sigma.fits", sigmas[b][0], overwrite=True)
    kw = dict(sigma_path={b: [str(tmp_path / f"{b}_sigma.fits")] * count for b in images},
              psf_path={b: [str(tmp_path / f"{b}_psf.fits")] * count for b in images})
    return paths, kw


def test_files_per_band_and_a_wcs_that_turns_one_galaxy_otherwise(tmp_path):
    from astropy.io import fits

    images, sigmas, psfs = small()
    paths, kw = _write_bands(tmp_path, images, sigmas, psfs, SCALES)
    kw.update(wavelength=WL, pix_scale=SCALES, result_path=tmp_path / "out")
    ds = gm.Dataset(["a", "b"], paths, **kw)
    assert ds.bands.rotation is None
    ds.define_profiles(gal=sersic(cen_x=gm.p(12.5), cen_y=gm.p(12.5), eff_r=gm.p(3.0)))
    f = gm.Fitting(ds, dtype="float64", restarts=False, progress=False)
    f.fit()
    t = f.uncertainty()
    assert (tmp_path / "out" / "results.fits").exists() and np.all(t["converged"])
    assert np.all(np.abs(t["gal_mag_r"] - BANDS["r"]["mag"]) < 4 * t["gal_mag_r_err"])
    # the first galaxy's band i turned by 30 degrees: the dataset takes that turn, the second galaxy
    # (still unturned) is flagged instead of fitted with the wrong geometry
    h = _wcs_header(SCALES["i"], 30.0)
    h["CRPIX1"] = h["CRPIX2"] = (images["i"].shape[1] + 1) / 2
    fits.writeto(paths["i"][0], images["i"][0], h, overwrite=True)
    ds = gm.Dataset(["a", "b"], paths, **kw)
    assert ds.bands.rotation == pytest.approx((0.0, 0.0, 30.0), abs=1e-6)
    first, second = ds.load(0)[0], ds.load(1)[0]
    assert not first.flags & int(Flag.read_error)
    assert second.flags & int(Flag.read_error) and "band 'i''s grid is turned" in " ".join(second.messages)
    with pytest.raises(ConfigError, match="rotation of band 'i' is 10 degrees but its FITS WCS turns it 30"):
        gm.Dataset(["a", "b"], paths, rotation={"g": 0, "r": 0, "i": 10}, **kw)
    h = _wcs_header(SCALES["i"], 0.0, mirrored=True)
    fits.writeto(paths["i"][0], images["i"][0], h, overwrite=True)
    with pytest.raises(NotImplementedError, match="band 'i' is mirrored"):
        gm.Dataset(["a", "b"], paths, **kw)
    # a singular CD matrix places no pixel on the sky: read as no WCS (no turn), not a crash
    h = _wcs_header(SCALES["i"])
    h["CD1_2"], h["CD2_2"] = h["CD1_1"], h["CD2_1"]
    fits.writeto(paths["i"][0], images["i"][0], h, overwrite=True)
    assert gm.Dataset(["a", "b"], paths, **kw).bands.rotation is None


TURNED = {"g": dict(scale=0.2, size=48, fwhm=0.8, mag=21.0, sigma=1.0),
          "r": dict(scale=0.3, size=36, fwhm=0.9, mag=20.5, sigma=1.0, turn=35.0)}


def _turned_fit(ds, *, tied_pa=None):
    ds.define_profiles(gal=sersic(cen_x=gm.p(25.0), cen_y=gm.p(24.0), pa=gm.p(40.0), axis_r=gm.p(0.6),
                                  eff_r=gm.p(5.0)))
    return fit(ds)[1]


def test_bands_turned_against_each_other_share_one_shape():
    """GalSim draws the r band on a grid turned 35 degrees (and 1.5 times coarser): centre, PA and axis
    ratio in the reference band's pixels come back within 4 sigma; with the turn left out they do not."""
    images, sigmas, psfs = sersic_bands(TURNED, count=3, dx=0.3, dy=-0.2, q=0.5, pa=30.0, seed=5)
    wl, scales = {"g": 477.0, "r": 623.1}, {"g": 0.2, "r": 0.3}
    t = _turned_fit(gm.Dataset.from_arrays(images, sigmas, psfs, wavelength=wl, pix_scale=scales,
                                           rotation={"g": 0.0, "r": 35.0}))
    truth = {"gal_cen_x": 24.5 + 0.3 / 0.2, "gal_cen_y": 24.5 - 0.2 / 0.2, "gal_pa": 30.0, "gal_axis_r": 0.5,
             "gal_eff_r": 1.2 / 0.2, "gal_mag_g": 21.0, "gal_mag_r": 20.5}
    for name, value in truth.items():
        pull = (t[name] - value) / t[f"{name}_err"]
        assert np.all(np.abs(pull) < 4), (name, pull)
    assert np.all(t["flag"] == 0)
    assert np.all(np.abs(t["reduced_chi2"] - 1) < 5 * np.sqrt(2 / t["dof"]))
    # the same data read as if the grids were aligned: the r band cannot be fitted with g's shape
    wrong = _turned_fit(gm.Dataset.from_arrays(images, sigmas, psfs, wavelength=wl, pix_scale=scales))
    assert np.all(wrong["chi2_r"] > t["chi2_r"] + 100)


def test_a_turn_read_from_the_wcs_fits_as_the_given_one(tmp_path):
    images, sigmas, psfs = sersic_bands(TURNED, count=2, dx=0.3, dy=-0.2, q=0.5, pa=30.0, seed=6)
    wl, scales = {"g": 477.0, "r": 623.1}, {"g": 0.2, "r": 0.3}
    paths, kw = _write_bands(tmp_path, images, sigmas, psfs, scales, turns={"r": 35.0})
    ds = gm.Dataset(["a", "b"], paths, wavelength=wl, pix_scale=scales, **kw)
    assert ds.bands.rotation == pytest.approx((0.0, 35.0), abs=1e-6)
    from_wcs = _turned_fit(ds)
    given = _turned_fit(gm.Dataset.from_arrays(images, sigmas, psfs, wavelength=wl, pix_scale=scales,
                                               rotation={"g": 0.0, "r": 35.0}))
    for name in ("gal_cen_x", "gal_cen_y", "gal_pa", "gal_axis_r", "gal_eff_r", "gal_mag_r"):
        np.testing.assert_allclose(from_wcs[name], given[name], rtol=0, atol=1e-3 * float(np.max(given[f"{name}_err"])))
    assert np.all(from_wcs["flag"] == 0)
    # and both are the GalSim truth: PA 30 degrees, q 0.5 in the reference band's frame
    for name, value in (("gal_pa", 30.0), ("gal_axis_r", 0.5)):
        assert np.all(np.abs((from_wcs[name] - value) / from_wcs[f"{name}_err"]) < 4), name


def test_vectors_in_one_grid_s_pixels_are_refused_with_bands():
    images, sigmas, psfs = small()
    ds = gm.Dataset.from_arrays(images, sigmas, psfs, wavelength=WL, pix_scale=SCALES)
    ds.define_profiles(gal=gm.lp.with_bending(sersic(), modes=(1, 2)))
    with pytest.raises(NotImplementedError, match="gal.bending_a: a vector parameter in the pixels of one grid"):
        fit(ds)


def test_turned_bands_need_both_coordinates_of_a_centre_alike():
    images, sigmas, psfs = sersic_bands(TURNED, count=1, seed=7)
    ds = gm.Dataset.from_arrays(images, sigmas, psfs, wavelength={"g": 477.0, "r": 623.1},
                                pix_scale={"g": 0.2, "r": 0.3}, rotation={"g": 0.0, "r": 35.0})
    ds.define_profiles(gal=sersic(cen_x=gm.p(24.5, fit=False)))
    with pytest.raises(NotImplementedError, match="gal.cen_x: with bands rotated against each other"):
        fit(ds)
    with pytest.raises(ConfigError, match="rotation of the reference band 'g' is 5"):
        gm.Dataset.from_arrays(images, sigmas, psfs, wavelength={"g": 477.0, "r": 623.1},
                               pix_scale={"g": 0.2, "r": 0.3}, rotation={"g": 5.0, "r": 35.0})


def test_a_prior_on_a_shared_parameter_combines_with_every_band_as_a_normal_posterior():
    images, sigmas, psfs = small()
    images, sigmas = ({b: v[:1] for b, v in d.items()} for d in (images, sigmas))

    def run(prior):
        ds = gm.Dataset.from_arrays(images, sigmas, psfs, wavelength=WL, pix_scale=SCALES)
        ds.define_profiles(gal=sersic(cen_x=gm.p(12.5), cen_y=gm.p(12.5), eff_r=gm.p(3.0),
                                      ser_n=gm.p(2.0, prior=prior)))
        return fit(ds)[1]

    free = run(None)
    n_hat, s_data = float(free["gal_ser_n"][0]), float(free["gal_ser_n_err"][0])
    # a prior as informative as the data, centred 2 data-sigma away: the posterior of a linear model
    # has mean (n/s^2 + mu/p^2) / (1/s^2 + 1/p^2) and width (1/s^2 + 1/p^2)^-1/2
    mu, width = n_hat + 2 * s_data, s_data
    t = run(gm.prior.Normal(mu, width, space="value"))
    s_post = (1 / s_data**2 + 1 / width**2) ** -0.5
    mean = (n_hat / s_data**2 + mu / width**2) * s_post**2
    assert abs(t["gal_ser_n"][0] - mean) < 0.15 * s_data  # the model is nearly linear over 2 sigma
    np.testing.assert_allclose(t["gal_ser_n_err"][0], s_post, rtol=0.1)
    # the prior's term is reported apart from the likelihood's: 1 sigma off its centre, about 1
    assert 0.5 < t["chi2_prior"][0] < 1.5
    np.testing.assert_allclose(t["chi2"], t["chi2_g"] + t["chi2_r"] + t["chi2_i"], rtol=1e-9)


def test_a_dask_client_gives_the_local_results(tmp_path):
    from galmoss.io.blocks import read_image_block

    distributed = pytest.importorskip("dask.distributed")
    images, sigmas, psfs = small()
    images = {b: list(v) for b, v in images.items()}
    images["r"][1] = None  # one galaxy flagged on a worker, as locally

    def run(client=None):
        blocks = None if client is None else tmp_path / "blocks"  # written here from the workers' fits
        ds = gm.Dataset.from_arrays(images, sigmas, psfs, wavelength=WL, pix_scale=SCALES, img_block_path=blocks)
        ds.define_profiles(gal=sersic(cen_x=gm.p(12.5), cen_y=gm.p(12.5), eff_r=gm.p(3.0)))
        return gm.Fitting(ds, batch_size=1, dtype="float64", restarts=False, progress=False, client=client).fit()

    local = run()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) \
            as cluster, distributed.Client(cluster) as client:
        remote = run(client)
    assert list(remote["galaxy_index"]) == ["0", "1"] and remote["flag"][1] & int(Flag.read_error)
    for col in ("gal_mag_g", "gal_mag_r", "gal_mag_i", "gal_eff_r", "chi2", "chi2_i", "flag"):
        np.testing.assert_allclose(remote[col], local[col], rtol=1e-9, err_msg=col)
    assert list(remote["image_block"]) == ["0.fits", ""]
    block = read_image_block(tmp_path / "blocks" / "0.fits")
    np.testing.assert_allclose(block["DATA_I"], images["i"][0], rtol=1e-6)
    chi2_i = (((block["DATA_I"].astype(float) - block["MODEL_I"]) / block["SIGMA_I"]) ** 2).sum()
    np.testing.assert_allclose(chi2_i, remote["chi2_i"][0], rtol=1e-4)  # the worker's fit, rendered here


def test_shards_resume_and_collate_give_the_whole_run(tmp_path):
    from galmoss.pipeline.collate import collate

    images, sigmas, psfs = sersic_bands({b: dict(BANDS[b], size=BANDS[b]["size"] // 2) for b in BANDS}, count=3,
                                        seed=8)
    images = {b: list(v) for b, v in images.items()}
    images["i"][2] = None  # flagged in its shard's part as in a whole run

    def fitting(folder, **kw):
        ds = gm.Dataset.from_arrays(images, sigmas, psfs, galaxy_index=["a", "b", "c"], wavelength=WL,
                                    pix_scale=SCALES, result_path=folder)
        ds.define_profiles(gal=sersic(cen_x=gm.p(12.5), cen_y=gm.p(12.5), eff_r=gm.p(3.0)))
        return gm.Fitting(ds, batch_size=1, dtype="float64", restarts=False, progress=False, **kw)

    run = fitting(tmp_path / "whole")
    run.fit()
    whole = run.uncertainty()  # the parts hold the covariance errors: collate's table has them
    # two shards into one folder, then collate: the whole run's table
    first = fitting(tmp_path / "shards").fit(shard=(1, 2))
    second = fitting(tmp_path / "shards").fit(shard=(2, 2))
    assert list(first["galaxy_index"]) + list(second["galaxy_index"]) == ["a", "b", "c"]
    assert not (tmp_path / "shards" / "results.fits").exists()
    report = collate(tmp_path / "shards")
    assert not report.missing and report.table.meta["BANDS"] == "g,r,i"
    assert report.table.colnames == whole.colnames
    for col in ("gal_mag_g", "gal_mag_i", "gal_eff_r", "gal_mag_r_err", "gal_axis_r_lo", "gal_axis_r_hi", "chi2",
                "chi2_g", "dof_i", "flag"):
        np.testing.assert_allclose(report.table[col], whole[col], rtol=1e-12, err_msg=col)
    assert report.table["flag"][2] & int(Flag.read_error)
    # a resume fits nothing again, and gives the same table
    again = fitting(tmp_path / "whole")
    t = again.fit(resume=True)
    assert again.timing["galaxies"] == 0
    for col in ("gal_mag_r", "chi2_r", "dof_g", "n_iter"):
        np.testing.assert_array_equal(t[col], whole[col], err_msg=col)
    assert list(t["message"]) == list(whole["message"])
    # another model into the same folder is refused, naming what changed
    other = fitting(tmp_path / "whole")
    other.dataset.define_profiles(gal=sersic(eff_r=gm.p(3.0, bands=1)))
    with pytest.raises(ValueError, match="come from a different run"):
        other.fit(resume=True)
    from galmoss.errors import OutputError

    with pytest.raises(OutputError, match="holds the parts of another run"):
        other.fit()
    # the dataset that wrote them, fitted again with another model in this session: its outputs are replaced
    again.dataset.define_profiles(gal=sersic(cen_x=gm.p(12.5), cen_y=gm.p(12.5), eff_r=gm.p(3.0, bands=1)))
    assert "gal_eff_r_cheb1" in again.fit().colnames


def test_per_band_zero_points_give_calibrated_magnitudes():
    # band i's image in units of another zero point (27.5 instead of 30): the same galaxy, 10 times fainter in counts
    images, sigmas, psfs = small()
    factor = 10 ** (-0.4 * (M0 - 27.5))
    images = {**images, "i": images["i"] * factor}
    sigmas = {**sigmas, "i": sigmas["i"] * factor}
    ds = gm.Dataset.from_arrays(images, sigmas, psfs, wavelength=WL, pix_scale=SCALES,
                                zero_point={"g": M0, "r": M0, "i": 27.5})
    # the magnitudes start from each band's image
    ds.define_profiles(gal=gm.lp.Sersic(cen_x=gm.p(12.5), cen_y=gm.p(12.5), eff_r=gm.p(3.0), mag=gm.p(M0=M0)))
    _, t = fit(ds)
    for band, b in BANDS.items():
        assert np.all(np.abs(t[f"gal_mag_{band}"] - b["mag"]) < 4 * t[f"gal_mag_{band}_err"]), band
    assert t.meta["MAGZPT"] == "30,30,27.5"
    with pytest.raises(ConfigError, match="zero_point names"):
        gm.Dataset.from_arrays(images, sigmas, psfs, wavelength=WL, pix_scale=SCALES, zero_point={"g": 30.0})


def test_ties_with_bands():
    mags = {"g": (23.0, 21.8), "r": (22.0, 21.2), "i": (21.2, 21.0)}
    bands = {b: dict(BANDS[b], size=BANDS[b]["size"] * 2 // 3, bulge=mags[b][0], disk=mags[b][1]) for b in BANDS}
    images, sigmas, psfs = bulge_disk_bands(bands, count=1, seed=9)

    def run(tied: bool):
        cx, cy = gm.p(16.5), gm.p(16.5)
        bulge_re = gm.p(3.0)
        ds = gm.Dataset.from_arrays(images, sigmas, psfs, wavelength=WL, pix_scale=SCALES)
        ds.define_profiles(
            bulge=gm.lp.Sersic(cen_x=cx, cen_y=cy, pa=gm.p(20.0), axis_r=gm.p(0.8), eff_r=bulge_re,
                               ser_n=gm.p(4.0, fit=False), mag=gm.p(22.0, M0=M0)),
            # the disk's centre tied to the bulge's (offset 0: the same as sharing it), its size 3.2 times the
            # bulge's (the mocks' ratio, 1.6 / 0.5 arcsec)
            disk=gm.lp.Sersic(cen_x=gm.tie(cx, offset=0.0) if tied else cx, cen_y=gm.tie(cy, offset=0.0) if tied
                              else cy, pa=gm.p(20.0), axis_r=gm.p(0.6), eff_r=gm.tie(bulge_re, ratio=3.2),
                              ser_n=gm.p(1.0, fit=False), mag=gm.p(21.5, M0=M0)))
        return fit(ds)[1]

    tied, shared = run(True), run(False)
    for name in ("bulge_cen_x", "bulge_eff_r", "disk_eff_r", "disk_mag_g", "bulge_mag_i", "chi2"):
        np.testing.assert_allclose(tied[name], shared[name], rtol=1e-6, err_msg=name)
    np.testing.assert_allclose(tied["disk_cen_x"], tied["bulge_cen_x"], rtol=1e-12)
    # the tied size is 3.2 times the fitted one, with its error; the truth (0.5 arcsec, 2.5 reference pixels) within 4 sigma
    np.testing.assert_allclose(tied["disk_eff_r"], 3.2 * tied["bulge_eff_r"], rtol=1e-9)
    np.testing.assert_allclose(tied["disk_eff_r_err"], 3.2 * tied["bulge_eff_r_err"], rtol=1e-6)
    assert abs(tied["bulge_eff_r"][0] - 2.5) < 4 * tied["bulge_eff_r_err"][0]
    for b, (bulge, disk) in mags.items():
        assert abs(tied[f"disk_mag_{b}"][0] - disk) < 4 * tied[f"disk_mag_{b}_err"][0], b


def _fourier(**over):
    amplitudes = over.pop("amplitudes", gm.p([0.04, 0.04], dim="2d"))
    phases = over.pop("phases", gm.p([10.0, 20.0], dim="2d"))
    return gm.lp.with_fourier(sersic(**over), modes=(1, 3), amplitudes=amplitudes, phases=phases)


FOURIER_TRUTH = dict(a=(0.08, 0.06), phi=(25.0, -30.0), q=0.6, pa=30.0, re=6.0, n=1.0, cx=25.0, cy=24.0)


def _fourier_bands(grids: dict, count: int, seed: int):
    """Images, sigmas and PSFs of a Sersic with injected m = 1, 3 modes (FOURIER_TRUTH), drawn by galmoss in
    each band's grid: ``{band: dict(scale=reference px per band px, turn=degrees, size=, mag=)}``, the centre,
    PA and size mapped as the joint model maps them; unit noise; Moffat PSFs of 0.6 arcsec (3 reference px)."""
    import torch

    from tests.helpers.galsim_mocks import moffat_psf, psf_image

    truth, rng = FOURIER_TRUTH, np.random.default_rng(seed)
    images, sigmas, psfs = {}, {}, {}
    for b, g in grids.items():
        c = np.radians(g["turn"])
        dx, dy = truth["cx"] - 24.5, truth["cy"] - 24.5
        centre = (g["size"] + 1) / 2
        x = centre + (np.cos(c) * dx - np.sin(c) * dy) / g["scale"]
        y = centre + (np.sin(c) * dx + np.cos(c) * dy) / g["scale"]
        star = psf_image(moffat_psf(3.5, 3.0 / g["scale"]), 25)
        model = gm.lp.with_fourier(
            gm.lp.Sersic(cen_x=gm.p(x), cen_y=gm.p(y), pa=gm.p(truth["pa"] + g["turn"]), axis_r=gm.p(truth["q"]),
                         eff_r=gm.p(truth["re"] / g["scale"]), ser_n=gm.p(truth["n"]), mag=gm.p(g["mag"], M0=M0)),
            modes=(1, 3), amplitudes=gm.p(list(truth["a"]), dim="2d"), phases=gm.p(list(truth["phi"]), dim="2d"))
        clean = gm.render(model, (g["size"], g["size"]), psf=star, dtype=torch.float64)[0].numpy()
        images[b] = clean[None] + rng.normal(0.0, 1.0, (count, g["size"], g["size"]))
        sigmas[b] = np.ones_like(images[b])
        psfs[b] = star
    return images, sigmas, psfs


def _fourier_start():
    return _fourier(cen_x=gm.p(24.8), cen_y=gm.p(24.2), pa=gm.p(35.0), axis_r=gm.p(0.65), eff_r=gm.p(5.5),
                    ser_n=gm.p(1.2))


def test_fourier_modes_in_one_band_equal_the_single_band_fit():
    images, sigmas, psfs = _fourier_bands({"g": dict(scale=1.0, turn=0.0, size=48, mag=21.0)}, 1, 21)
    a, b = _one_band_and_alone(images, sigmas, psfs, "g", 477.0, _fourier_start)
    # the same minimum, reached by other paths (the joint fit may take more iterations; both stop within
    # the solver's tolerance): within 2 % of an error, the errors within 2 %
    for k in (1, 2):
        for slot in ("fourier_a", "fourier_phi"):
            err = np.asarray(b[f"gal_{slot}_err"][:, k - 1])
            np.testing.assert_allclose(a[f"gal_{slot}_{k}"], b[f"gal_{slot}"][:, k - 1], rtol=0,
                                       atol=float(err.max()) * 2e-2)
            np.testing.assert_allclose(a[f"gal_{slot}_{k}_err"], err, rtol=2e-2)
    np.testing.assert_allclose(a["chi2"], b["chi2"], rtol=0, atol=1e-2)


def test_fourier_modes_shared_by_bands_at_other_scales_and_turns():
    """Injected m = 1, 3 modes in a g band and an r band 1.5 times coarser and turned 35 degrees: one set of
    amplitudes and phases fits both, within 4 sigma of the injected ones."""
    grids = {"g": dict(scale=1.0, turn=0.0, size=48, mag=21.0), "r": dict(scale=1.5, turn=35.0, size=32, mag=20.3)}
    images, sigmas, psfs = _fourier_bands(grids, 2, 22)
    ds = gm.Dataset.from_arrays(images, sigmas, psfs, wavelength={"g": 477.0, "r": 623.1},
                                pix_scale={"g": 0.2, "r": 0.3}, rotation={"g": 0.0, "r": 35.0})
    ds.define_profiles(gal=_fourier_start())
    _, t = fit(ds)
    truth = FOURIER_TRUTH
    for k in (1, 2):
        for slot, values in (("fourier_a", truth["a"]), ("fourier_phi", truth["phi"])):
            pull = (t[f"gal_{slot}_{k}"] - values[k - 1]) / t[f"gal_{slot}_{k}_err"]
            assert np.all(np.abs(pull) < 4), (slot, k, pull)
    for name, value in (("gal_pa", truth["pa"]), ("gal_axis_r", truth["q"]), ("gal_eff_r", truth["re"]),
                        ("gal_mag_g", 21.0), ("gal_mag_r", 20.3)):
        assert np.all(np.abs((t[name] - value) / t[f"{name}_err"]) < 4), name
    assert np.all(t["flag"] == 0)


def test_joint_fits_gone_astray_are_fitted_again_from_the_images():
    """Starts far off (r_e 0.6 px, n 0.4, the centre 6 px away): the first joint fit runs to n = 20 and
    r_e > 1,000 px (reduced chi2 about 3.7, flagged); the restart from image-based starts finds the truth."""
    images, sigmas, psfs = sersic_bands(BANDS, count=3, dx=0.1, dy=-0.2, re_arcsec=RE_ARCSEC, seed=1)
    tables = {}
    for restarts in (False, True):
        ds = gm.Dataset.from_arrays(images, sigmas, psfs, wavelength=WL, pix_scale=SCALES)
        ds.define_profiles(gal=sersic(eff_r=gm.p(0.6), ser_n=gm.p(0.4), cen_x=gm.p(30.0), cen_y=gm.p(18.0)))
        f = gm.Fitting(ds, dtype="float64", restarts=restarts, progress=False)
        f.fit()
        tables[restarts] = f.uncertainty()
    astray, again = tables[False], tables[True]
    assert np.all(astray["gal_ser_n"] > 10) and np.all(astray["flag"] != 0)
    assert np.all(again["flag"] == 0) and np.all(np.abs(again["reduced_chi2"] - 1) < 5 * np.sqrt(2 / again["dof"]))
    for name, value in (("gal_eff_r", RE_ARCSEC / 0.2), ("gal_ser_n", 1.5), ("gal_mag_g", BANDS["g"]["mag"]),
                        ("gal_mag_i", BANDS["i"]["mag"])):
        assert np.all(np.abs((again[name] - value) / again[f"{name}_err"]) < 4), name
