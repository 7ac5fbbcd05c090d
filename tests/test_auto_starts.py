"""The seed's ``gm.lp.Sersic()`` with no arguments: parameters started from the image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import galmoss as gm
from galmoss.fitting.starts import moment_estimates

YY, XX = np.mgrid[:15, :15] - 7.0
PSF = (1 + (XX**2 + YY**2) / 2.2**2) ** -3.0


def _galaxies(count=3, seed=0):
    rng = np.random.default_rng(seed)
    truth = dict(cx=rng.uniform(30, 35, count), cy=rng.uniform(30, 35, count), pa=np.array([30.0, -60.0, 75.0])[:count],
                 q=np.array([0.5, 0.8, 0.35])[:count], re=np.array([5.0, 3.0, 7.0])[:count],
                 mag=np.array([16.0, 16.5, 15.8])[:count], n=np.array([1.0, 2.5, 1.5])[:count])
    sersic = gm.lp.Sersic(cen_x=gm.p(truth["cx"]), cen_y=gm.p(truth["cy"]), pa=gm.p(truth["pa"]), axis_r=gm.p(truth["q"]),
                          eff_r=gm.p(truth["re"]), mag=gm.p(truth["mag"], M0=22.5), ser_n=gm.p(truth["n"]))
    clean = gm.render({"g": sersic, "sky": gm.lp.Sky(sky_bg=gm.p(0.3))}, (64, 64), psf=PSF, dtype=torch.float64).numpy()
    images = clean + rng.normal(0, 0.05, clean.shape)
    return images, np.full(images.shape, 0.05), truth


def test_moment_estimates_land_near_the_truth():
    images, sigmas, truth = _galaxies()
    for i in range(3):
        est = moment_estimates(images[i], np.ones((64, 64)), sigmas[i])
        assert est["sky"] == pytest.approx(0.3, abs=0.02)
        assert abs(est["cen_x"] - truth["cx"][i]) < 0.5 and abs(est["cen_y"] - truth["cy"][i]) < 0.5
        turn = (est["pa"] - truth["pa"][i] + 90) % 180 - 90
        assert abs(turn) < 10
        assert abs(est["axis_r"] - truth["q"][i]) < 0.15
        assert 0.5 < est["eff_r"] / truth["re"][i] < 1.5
        flux = 10 ** (-0.4 * (truth["mag"][i] - 22.5))
        assert 0.7 < est["flux"] / flux < 1.1


def test_seed_form_without_arguments_fits():
    images, sigmas, truth = _galaxies(seed=1)
    ds = gm.Dataset.from_arrays(images, sigmas, PSF)
    ds.define_profiles(sersic=gm.lp.Sersic(), sky=gm.lp.Sky())
    fitting = gm.Fitting(ds, batch_size=3, iteration=200, device="cpu", progress=False)
    fitting.fit()
    res = fitting.uncertainty()
    assert np.all(res["converged"])
    zero_point_shift = 22.5  # left-out magnitudes have zero point 0
    for col, key, shift in (("sersic_eff_r", "re", 0.0), ("sersic_ser_n", "n", 0.0), ("sersic_axis_r", "q", 0.0),
                            ("sersic_mag", "mag", -zero_point_shift), ("sersic_cen_x", "cx", 0.0)):
        assert np.all(np.abs(res[col] - (truth[key] + shift)) < 5 * res[f"{col}_err"]), col
    assert np.all(np.abs(res["sky_sky_bg"] - 0.3) < 5 * res["sky_sky_bg_err"])


def test_a_parameter_that_cannot_be_started_from_the_image_is_named():
    class Odd(gm.LightProfile):
        parameter_specs = {"wobble": gm.params.ParamSpec()}

        def __init__(self, wobble=None):
            super().__init__()
            self.wobble = wobble

        def image_via_grid_from(self, grid, mode="updating_model"):
            return self.wobble.value(mode) + 0 * grid[0]

    ds = gm.Dataset.from_arrays(np.zeros((1, 8, 8)))
    ds.define_profiles(odd=Odd())
    with pytest.raises(ValueError, match=r"'wobble'.*cannot be started from the image; give wobble=gm.p"):
        gm.Fitting(ds, device="cpu", progress=False).fit()


# ---------------------------------------------------------------- batched starts (issue 8)
from galmoss.fitting.starts import assign_roles, component_starts, estimate_starts  # noqa: E402
from galmoss.flags import Flag  # noqa: E402
from tests.helpers.neighbour_mocks import SKY, neighbour_mocks  # noqa: E402


@pytest.fixture(scope="module")
def clean():
    return neighbour_mocks(24, seed=21, neighbours=(0, 0), nan_fraction=0.5)


def test_batched_starts_land_near_the_galsim_truth(clean):
    weights = np.isfinite(clean.images).astype(float)
    est = estimate_starts(clean.images, weights, clean.sigmas)
    t = clean.truth
    assert est["detected"].all()
    assert np.all(np.abs(est["sky"] - SKY) < 0.2 * clean.sky_sigma)
    offset = np.hypot(est["cen_x"] - t["cx"], est["cen_y"] - t["cy"])
    assert np.median(offset) < 0.15 and np.all(offset < 0.6)  # a windowed centroid at S/N 30-300
    turn = (est["pa"] - t["pa"] + 90) % 180 - 90
    elongated = np.abs(turn)[t["q"] < 0.8]
    assert np.median(elongated) < 6 and np.all(elongated < 30)  # moments of a noisy segment
    # the PSF rounds small galaxies: q 0.33 at r_e 3 px looks like 0.55
    assert np.median(np.abs(est["axis_r"] - t["q"])) < 0.1 and np.all(np.abs(est["axis_r"] - t["q"]) < 0.3)
    ratio = est["eff_r"] / t["re"]
    assert 0.8 < np.median(ratio) < 1.25 and np.all((ratio > 0.5) & (ratio < 1.6))
    flux = est["flux"] / t["flux"]
    assert 0.9 < np.median(flux) < 1.1 and np.all((flux > 0.6) & (flux < 1.3))
    assert np.all((est["ser_n"] >= 0.5) & (est["ser_n"] <= 6))


@pytest.mark.parametrize("chunk", [128, 3])
def test_batched_and_single_galaxy_starts_agree(clean, chunk, monkeypatch):
    # a batch measured in chunks (3 + 1 galaxies here) gives each galaxy its own starts
    from galmoss.fitting import measure

    monkeypatch.setattr(measure, "CHUNK", chunk)
    weights = np.isfinite(clean.images).astype(float)
    est = estimate_starts(clean.images[:4], weights[:4])
    for i in range(4):
        one = moment_estimates(clean.images[i], weights[i], clean.sigmas[i])
        for key, value in one.items():
            assert value == pytest.approx(est[key][i], rel=1e-9, abs=1e-9), key


def test_concentration_orders_the_sersic_index():
    from tests.helpers.galsim_mocks import GSPARAMS, galsim

    psf = galsim.Moffat(beta=3.5, fwhm=3.5, gsparams=GSPARAMS)
    rng = np.random.default_rng(4)
    images = []
    for n in (1.0, 4.0):
        prof = galsim.Convolve(galsim.Sersic(n=n, half_light_radius=8.0, flux=2000.0, gsparams=GSPARAMS), psf)
        images.append(prof.drawImage(nx=128, ny=128, scale=1.0).array + rng.normal(0, 0.01, (128, 128)))
    est = estimate_starts(np.array(images), np.ones((2, 128, 128)))
    # the PSF and the finite cutout lower both; the order and a clear gap remain
    assert est["ser_n"][1] > 1.8 * est["ser_n"][0]
    assert 0.6 < est["ser_n"][0] < 1.5


def test_moments_on_a_segment_match_photutils_source_catalog():
    pytest.importorskip("photutils")
    from photutils.segmentation import SegmentationImage, SourceCatalog

    from galmoss.auto import auto_mask

    mocks = neighbour_mocks(4, seed=8)
    results = [auto_mask(img) for img in mocks.images]
    segments = np.array([r.target for r in results])
    weights = np.array([r.weight for r in results])
    est = estimate_starts(mocks.images, weights, mocks.sigmas, segments=segments)
    for i, r in enumerate(results):
        light = np.where(r.target & (weights[i] > 0), np.clip(mocks.images[i] - est["sky"][i], 0, None), 0.0)
        cat = SourceCatalog(light, SegmentationImage(r.target.astype(int)))
        cov = np.asarray(cat.covariance).reshape(2, 2)
        eig = np.linalg.eigvalsh(cov)
        # photutils adds 1/12 px^2 to the diagonal (a pixel's own variance): equal to ~0.02
        assert est["axis_r"][i] == pytest.approx(np.sqrt(eig[0] / eig[1]), abs=0.02)
        orientation = float(np.atleast_1d(getattr(cat.orientation, "value", cat.orientation))[0])
        turn = (est["pa"][i] - (orientation - 90.0) + 90.0) % 180.0 - 90.0  # theirs from +x, ours from +y
        assert abs(turn) < 2.0 or est["axis_r"][i] > 0.9
        # and the neighbours (>= 10 px away, masked) do not pull the centre far from the truth
        assert np.hypot(est["cen_x"][i] - mocks.truth["cx"][i], est["cen_y"][i] - mocks.truth["cy"][i]) < 0.75


def test_components_never_start_equal():
    est = {"cen_x": np.array([64.5]), "cen_y": np.array([64.5]), "pa": np.array([30.0]), "axis_r": np.array([0.49]),
           "eff_r": np.array([10.0]), "flux": np.array([1000.0]), "ser_n": np.array([2.0]), "sky": np.array([0.0])}
    roles = assign_roles([("bulge", "Sersic", None), ("disk", "Sersic", None)])
    assert roles == {"bulge": "bulge", "disk": "disk"}
    starts = component_starts(est, roles)
    b, d = starts["bulge"], starts["disk"]
    assert b["flux"][0] + d["flux"][0] == pytest.approx(1000.0)
    assert b["eff_r"][0] < 0.5 * d["eff_r"][0] and b["ser_n"][0] == 4.0 and d["ser_n"][0] == 1.0
    assert b["axis_r"][0] == pytest.approx(0.7) and d["axis_r"][0] == pytest.approx(0.49)
    # two anonymous Sersics: a compact bulge and an extended disk, by model order
    assert assign_roles([("a", "Sersic", None), ("b", "Sersic", None)]) == {"a": "bulge", "b": "disk"}
    # a fixed n and the profile type decide before the order does
    assert assign_roles([("a", "Sersic", 1.0), ("b", "Sersic", 4.0), ("c", "PointSource", None)]) == {
        "a": "disk", "b": "bulge", "c": "point"}
    # two disks still differ in size
    two = component_starts(est, {"d1": "disk", "d2": "disk"})
    assert two["d1"]["eff_r"][0] != pytest.approx(two["d2"]["eff_r"][0], rel=0.2)
    one = component_starts(est, {"g": "single"})
    assert one["g"]["eff_r"][0] == 10.0 and one["g"]["flux"][0] == 1000.0


def test_seed_bulge_disk_without_starts_fits_two_different_components():
    """The issue's case: the seed's bulge + disk with every start left out gave two equal components."""
    from tests.helpers.galsim_mocks import GSPARAMS, galsim, psf_image

    from galmoss.auto import quality_flags

    psf = galsim.Moffat(beta=3.5, fwhm=3.5, gsparams=GSPARAMS)
    psf_img = psf_image(psf, 25)
    rng = np.random.default_rng(12)
    shape, total, sigma = (64, 64), 4000.0, 0.05
    truth_bt = np.array([0.3])
    images, truths = [], []
    for bt, pa in zip(truth_bt, (30.0,)):
        bulge = galsim.Sersic(n=4, half_light_radius=2.5 * np.sqrt(0.85), flux=bt * total, gsparams=GSPARAMS)
        bulge = bulge.shear(q=0.85, beta=(pa + 90) * galsim.degrees)
        disk = galsim.Sersic(n=1, half_light_radius=7.0 * np.sqrt(0.5), flux=(1 - bt) * total, gsparams=GSPARAMS)
        disk = disk.shear(q=0.5, beta=(pa + 90) * galsim.degrees)
        clean = galsim.Convolve(bulge + disk, psf, gsparams=GSPARAMS).drawImage(nx=64, ny=64, scale=1.0).array + 0.1
        truths.append(clean)
        images.append(clean + rng.normal(0, sigma, shape))
    images, truths = np.array(images), np.array(truths)
    sigmas = np.full(images.shape, sigma)
    xcen, ycen = gm.p(), gm.p()  # shared, started from the image
    ds = gm.Dataset.from_arrays(images, sigmas, psf_img)
    ds.define_profiles(bulge=gm.lp.Sersic(cen_x=xcen, cen_y=ycen), disk=gm.lp.Sersic(cen_x=xcen, cen_y=ycen),
                       sky=gm.lp.Sky())
    fitting = gm.Fitting(ds, batch_size=1, iteration=300, device="cpu", progress=False)
    fitting.fit()
    res = fitting.results
    values = {c: np.asarray(res[c], dtype=float) for c in res.colnames if c.startswith(("bulge_", "disk_"))}
    # the components are a compact n ~ 4 bulge and an extended n ~ 1 disk, not one thing twice
    assert np.all(values["bulge_eff_r"] < 0.5 * values["disk_eff_r"])
    flags, _ = quality_flags(np.asarray(res["reduced_chi2"]), np.asarray(res["dof"]), values, {}, shape)
    assert not np.any(flags & Flag.components_merged)
    flux_b, flux_d = 10 ** (-0.4 * values["bulge_mag"]), 10 ** (-0.4 * values["disk_mag"])
    assert np.all(np.abs(flux_b / (flux_b + flux_d) - truth_bt) < 0.08)
    # and the fit reaches the true chi2 level (the validation test of docs/validation.md)
    chi2_true = (((images - truths) / sigmas) ** 2).sum(axis=(1, 2))
    assert np.all(np.asarray(res["chi2"]) < chi2_true + 25)


def test_a_galaxy_without_a_segment_is_detected_as_if_none_were_given(clean):
    weights = np.isfinite(clean.images[:3]).astype(float)
    plain = estimate_starts(clean.images[:3], weights)
    segments = np.zeros(clean.images[:3].shape, dtype=int)
    segments[0, 40:56, 40:56] = 1  # one galaxy with a (crude) segment, two without
    mixed = estimate_starts(clean.images[:3], weights, segments=segments)
    for key in ("cen_x", "cen_y", "eff_r", "flux", "sky"):
        assert np.allclose(mixed[key][1:], plain[key][1:], rtol=1e-12), key
    assert mixed["detected"].all()
