"""gm.Dataset: the seed's forms, arrays, lazy reading, masks, sigma estimation and bad input."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from astropy.io import fits

import galmoss as gm
from galmoss.flags import Flag


def _galaxy(shape=(48, 48), mag=17.0, seed=0, noise=0.2):
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[:11, :11] - 5.0
    psf = np.exp(-0.5 * (xx**2 + yy**2) / 1.7**2)
    sersic = gm.lp.Sersic(cen_x=gm.p(w / 2 + 0.3), cen_y=gm.p(h / 2 - 0.2), pa=gm.p(20.0), axis_r=gm.p(0.7),
                          eff_r=gm.p(4.0), mag=gm.p(mag, M0=22.5), ser_n=gm.p(1.5))
    truth = gm.render(sersic, shape, psf=psf, dtype=torch.float64)[0].numpy()
    image = truth + rng.normal(0, noise, shape)
    return image, np.full(shape, noise), psf, truth


def _write(path, data, header=None, extension=False, dtype=">f4"):
    data = np.asarray(data).astype(dtype)
    if extension:
        fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, header=header, name="SCI")]).writeto(path)
    else:
        fits.PrimaryHDU(data, header=header).writeto(path)
    return str(path)


def _sersic_start(n=1, w=48, h=48):
    return gm.lp.Sersic(cen_x=gm.p([w / 2 + 1.0] * n), cen_y=gm.p([h / 2 - 1.0] * n), pa=gm.p(30.0, angle=True),
                        axis_r=gm.p(0.6), eff_r=gm.p(5.0), mag=gm.p(17.3, M0=22.5), ser_n=gm.p(1.2, log=True))


def test_seed_single_galaxy_form_with_mask_index(tmp_path):
    image, sigma, psf, _ = _galaxy()
    mask = np.zeros(image.shape, dtype=np.int16)
    mask[20:28, 20:28] = 2  # the galaxy's own label: kept
    mask[2:8, 2:8] = 1  # a neighbour: excluded
    image[2:8, 2:8] += 50.0
    paths = {k: _write(tmp_path / f"g_{k}.fits", v) for k, v in
             dict(image=image, sigma=sigma, psf=psf, mask=mask).items()}
    dataset = gm.Dataset(
        galaxy_index="J162123.19+322056.4",
        image_path=paths["image"], sigma_path=paths["sigma"], psf_path=paths["psf"], mask_path=paths["mask"],
        mask_index=2, img_block_path=str(tmp_path / "blocks"), result_path=str(tmp_path / "res"),
    )
    gal = dataset.load(0)
    assert gal.weight.sum() == image.size - 36  # only the neighbour's pixels are out
    assert gal.weight[24, 24] == 1.0 and gal.weight[4, 4] == 0.0
    dataset.define_profiles(sersic=_sersic_start())
    fitting = gm.Fitting(dataset=dataset, batch_size=1, iteration=100, device="cpu", progress=False)
    fitting.fit()
    res = fitting.uncertainty(method="covar_mat")
    assert res["galaxy_index"][0] == "J162123.19+322056.4"
    assert res["converged"][0] and res["flag"][0] == 0
    assert abs(res["sersic_mag"][0] - 17.0) < 5 * res["sersic_mag_err"][0]
    assert (tmp_path / "res" / "results.fits").exists() and (tmp_path / "res" / "results.csv").exists()
    block = gm.io.read_image_block(tmp_path / "blocks" / "J162123.19+322056.4.fits")
    assert {"DATA", "MODEL", "RESIDUAL", "SERSIC"} <= set(block)
    np.testing.assert_allclose(block["RESIDUAL"], block["DATA"] - block["MODEL"], atol=1e-4)
    header = fits.getheader(tmp_path / "blocks" / "J162123.19+322056.4.fits", "MODEL")
    assert header["COMP_1"] == "sersic"
    assert "+/-" in header["1_MAG"] and header["1_MAG"].startswith(f"{res['sersic_mag'][0]:.4f}"[:6])


def test_seed_many_galaxy_form_shared_centre_and_alias(tmp_path):
    names = ["J100247.00+042559.8", "J092800.99+014011.9"]
    files = {k: [] for k in ("image", "sigma", "psf")}
    for i, name in enumerate(names):
        image, sigma, psf, _ = _galaxy(seed=i, mag=16.5 + i)
        for k, v in dict(image=image, sigma=sigma, psf=psf).items():
            files[k].append(_write(tmp_path / f"{name}_{k}.fits", v, extension=(k == "image")))
    xcen, ycen = gm.p([24.6, 24.4]), gm.p([23.9, 23.6])
    bulge = gm.lp.Sersic(cen_x=xcen, cen_y=ycen, pa=gm.p(20.0, angle=True), axis_r=gm.p(0.8), eff_r=gm.p(2.0),
                         mag=gm.p(18.5, M0=22.5), ser_n=gm.p(4.0, fit=False))
    disk = gm.lp.Sersic(cen_x=xcen, cen_y=ycen, pa=gm.p(20.0, angle=True), axis_r=gm.p(0.7), eff_r=gm.p(4.5),
                        mag=gm.p(17.2, M0=22.5), ser_n=gm.p(1.0, fit=False))
    dataset = gm.DataSet(names, image_path=[tuple(files["image"])], sigma_path=files["sigma"], psf_path=files["psf"],
                         img_block_path=str(tmp_path), result_path=str(tmp_path))
    assert gm.DataSet is gm.Dataset and len(dataset) == 2
    dataset.define_profiles(bulge=bulge, disk=disk)
    res = gm.Fitting(dataset=dataset, batch_size=1, iteration=100, device="cpu", progress=False).fit()
    assert list(res["galaxy_index"]) == names
    # one shared centre: the two components report the same value
    np.testing.assert_array_equal(res["bulge_cen_x"], res["disk_cen_x"])
    assert np.all(res["converged"])


def test_from_arrays_groups_different_shapes_and_keeps_order():
    shapes = [(40, 40), (56, 48), (40, 40), (56, 48), (40, 40)]
    images, sigmas, psfs = [], [], []
    for i, shape in enumerate(shapes):
        image, sigma, psf, _ = _galaxy(shape, mag=16.8 + 0.1 * i, seed=i)
        images.append(image)
        sigmas.append(sigma)
        psfs.append(psf if i % 2 == 0 else psf[1:-1, 1:-1])  # PSF sizes differ too
    dataset = gm.Dataset.from_arrays(images, sigmas, psfs, galaxy_index=[f"g{i}" for i in range(5)])
    dataset.define_profiles(sersic=gm.lp.Sersic(
        cen_x=gm.p([20.8, 24.8, 20.8, 24.8, 20.8]), cen_y=gm.p([20.3, 28.3, 20.3, 28.3, 20.3]), pa=gm.p(25.0),
        axis_r=gm.p(0.6), eff_r=gm.p(5.0), mag=gm.p(17.2, M0=22.5), ser_n=gm.p(1.3)))
    fitting = gm.Fitting(dataset, batch_size=2, iteration=100, device="cpu", progress=False)
    fitting.fit()
    res = fitting.uncertainty()
    assert list(res["galaxy_index"]) == [f"g{i}" for i in range(5)]
    assert np.all(res["converged"])
    assert np.all(np.abs(res["sersic_mag"] - (16.8 + 0.1 * np.arange(5))) < 4 * res["sersic_mag_err"])
    assert np.all(np.abs(res["sersic_eff_r"] - 4.0) < 4 * res["sersic_eff_r_err"])


def test_missing_sigma_is_estimated_and_flagged(tmp_path):
    image, _, psf, truth = _galaxy(noise=0.3, seed=4)
    header = fits.Header()
    header["GAIN"] = 2.0
    path = _write(tmp_path / "img.fits", image, header=header)
    dataset = gm.Dataset("g", path, psf_path=_write(tmp_path / "psf.fits", psf))
    gal = dataset.load(0)
    assert gal.flags & Flag.sigma_estimated
    sky_pixels = truth < 1e-3
    assert np.median(gal.sigma[sky_pixels]) == pytest.approx(0.3, rel=0.05)
    # the gain adds the source's Poisson variance where the galaxy is bright
    peak = np.unravel_index(np.argmax(truth), truth.shape)
    assert gal.sigma[peak] ** 2 == pytest.approx(0.3**2 + image[peak] / 2.0, rel=0.1)


def test_bad_galaxies_are_flagged_and_the_rest_fit(tmp_path):
    good = [_galaxy(seed=i) for i in range(4)]
    paths = {k: [] for k in ("image", "sigma", "psf")}
    for i, (image, sigma, psf, _) in enumerate(good):
        if i == 1:
            image = np.full(image.shape, np.nan)  # every pixel bad
        if i == 2:
            sigma = sigma.copy()
            sigma[:10] = 0.0  # some bad sigma: masked, flagged, still fitted
        for k, v in dict(image=image, sigma=sigma, psf=psf).items():
            paths[k].append(_write(tmp_path / f"{k}{i}.fits", v))
    paths["image"].append(str(tmp_path / "missing.fits"))  # galaxy 4: missing file
    paths["sigma"].append(paths["sigma"][0])
    paths["psf"].append(paths["psf"][0])
    paths["image"].append(paths["image"][0])  # galaxy 5: PSF of zeros
    paths["sigma"].append(paths["sigma"][0])
    paths["psf"].append(_write(tmp_path / "zero_psf.fits", np.zeros((11, 11))))
    dataset = gm.Dataset([f"g{i}" for i in range(6)], paths["image"], paths["sigma"], paths["psf"])
    dataset.define_profiles(sersic=_sersic_start())
    res = gm.Fitting(dataset, batch_size=3, iteration=100, device="cpu", progress=False).fit()
    flags = np.asarray(res["flag"])
    assert flags[1] & Flag.fully_masked and np.isnan(res["sersic_mag"][1])
    assert flags[2] & Flag.bad_pixels_masked and "480 pixels" in res["message"][2] and res["converged"][2]
    assert flags[4] & Flag.read_error and "missing.fits" in res["message"][4] and np.isnan(res["chi2"][4])
    assert flags[5] & Flag.bad_psf and "zero_psf.fits" in res["message"][5]
    for i in (0, 2, 3):
        assert res["converged"][i] and abs(res["sersic_mag"][i] - 17.0) < 0.2  # ~4 sigma


def test_programming_errors_raise_at_once_naming_the_argument():
    with pytest.raises(ValueError, match="sigma_path has 1 entries but galaxy_index has 2"):
        gm.Dataset(["a", "b"], ["a.fits", "b.fits"], sigma_path=["s.fits"])
    with pytest.raises(TypeError, match="image_path must be a path"):
        gm.Dataset("a", 42)
    with pytest.raises(ValueError, match="mask_index has 3 entries for 2 galaxies"):
        gm.Dataset(["a", "b"], ["a.fits", "b.fits"], mask_index=[1, 2, 3])
    with pytest.raises(ValueError, match="psfs holds 2 galaxies but images hold 3"):
        gm.Dataset.from_arrays(np.zeros((3, 8, 8)), psfs=[np.ones((3, 3))] * 2)
    dataset = gm.Dataset.from_arrays(np.zeros((3, 8, 8)))
    with pytest.raises(TypeError, match="is not a gm.LightProfile"):
        dataset.define_profiles(sersic="sersic")
    dataset.define_profiles(sky=gm.lp.Sky(sky_bg=gm.p([1.0, 2.0])))
    with pytest.raises(ValueError, match="hold 2 values per parameter but the dataset has 3 galaxies"):
        gm.Fitting(dataset, device="cpu").fit()
    with pytest.raises(ValueError, match="method='bfgs'"):
        gm.Fitting(dataset, method="bfgs")


def test_profiles_belong_to_their_dataset():
    a = gm.Dataset.from_arrays(np.zeros((1, 8, 8)))
    b = gm.Dataset.from_arrays(np.zeros((1, 8, 8)))
    a.define_profiles(sky=gm.lp.Sky(sky_bg=gm.p(1.0)))
    assert list(a.profiles) == ["sky"] and b.profiles == {}


def test_a_million_galaxies_cost_no_reading_at_construction():
    names = [f"g{i}" for i in range(1_000_000)]
    t0 = time.perf_counter()
    dataset = gm.Dataset(names, [f"/nonexistent/{n}.fits" for n in names])
    assert time.perf_counter() - t0 < 5.0
    assert len(dataset) == 1_000_000
    gal = dataset.load(999_999)  # reading happens here, one galaxy at a time
    assert gal.flags & Flag.read_error and "/nonexistent/g999999.fits" in gal.messages[0]


def test_a_galaxy_whose_fit_raises_is_flagged_and_the_batch_survives():
    class Fragile(gm.LightProfile):
        """Raises for one galaxy's parameter value (a stand-in for any unexpected failure)."""

        def __init__(self, level):
            super().__init__()
            self.psf = False
            self.level = level

        def image_via_grid_from(self, grid, mode="updating_model"):
            value = self.level.value(mode)
            if bool((value > 100.0).any()):
                raise RuntimeError("level beyond what this profile supports")
            return value + 0.0 * grid[0]

    rng = np.random.default_rng(3)
    images = np.array([1.0, 2.0, 500.0, 4.0])[:, None, None] + rng.normal(0, 0.1, (4, 16, 16))
    dataset = gm.Dataset.from_arrays(images, np.full(images.shape, 0.1))
    dataset.define_profiles(flat=Fragile(gm.p([1.5, 1.5, 150.0, 3.5])))
    res = gm.Fitting(dataset, batch_size=4, iteration=50, device="cpu", progress=False).fit()
    assert res["flag"][2] & Flag.fit_error and "level beyond" in res["message"][2] and np.isnan(res["flat_level"][2])
    np.testing.assert_allclose(np.asarray(res["flat_level"])[[0, 1, 3]], [1.0, 2.0, 4.0], atol=0.05)
    assert not np.any(np.asarray(res["flag"])[[0, 1, 3]] & Flag.fit_error)


def test_every_constructor_takes_the_same_dataset_options_checked_in_one_place(tmp_path):
    """DataOptions: from_arrays, from_image_set and from_catalog take every option gm.Dataset takes (region, psf_kind,
    psf_beta included), check them the same way, and name an unknown keyword with the options there are."""
    from astropy.io import fits
    from astropy.table import Table

    from galmoss.data.dataset import DataOptions

    images = np.ones((2, 20, 20))
    path = tmp_path / "set.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(images, name="IMAGE")]).writeto(path)
    for i in range(2):
        fits.writeto(tmp_path / f"g{i}.fits", images[i])
    Table({"galaxy_index": ["a", "b"], "image": ["g0.fits", "g1.fits"]}).write(tmp_path / "cat.csv")
    options = dict(region=(3, 18, 2, 19), psf_fwhm=2.0, psf_kind="gaussian", psf_beta=2.5, gain=4.0)
    made = [gm.Dataset.from_arrays(images, **options), gm.Dataset.from_image_set(path, **options),
            gm.Dataset.from_catalog(tmp_path / "cat.csv", **options),
            gm.Dataset(["a", "b"], [str(tmp_path / "g0.fits"), str(tmp_path / "g1.fits")], **options)]
    for ds in made:
        assert ds.options == DataOptions(**options)
        assert ds.regions[1] == (3, 18, 2, 19) and ds.psf_kind == "gaussian" and ds.gain == 4.0
    for make in (lambda: gm.Dataset.from_arrays(images, psf_kind="airy"),
                 lambda: gm.Dataset.from_image_set(path, psf_kind="airy"),
                 lambda: gm.Dataset.from_catalog(tmp_path / "cat.csv", psf_kind="airy")):
        with pytest.raises(ValueError, match="psf_kind='airy'"):
            make()
    with pytest.raises(TypeError, match="unknown keyword\\(s\\) mask_idx; the dataset options are mask_index"):
        gm.Dataset.from_arrays(images, mask_idx=1)


@pytest.mark.parametrize("source", ["arrays", "files"])
def test_a_shared_psf_is_read_once_and_flagged_for_every_galaxy(tmp_path, monkeypatch, source):
    """One PSF for every galaxy is read and checked once; each galaxy still carries its flag, and the
    caller's array is left writeable. Truth: the PSF's centroid is 0.6 px off its centre pixel (> 0.5)."""
    yy, xx = np.mgrid[:15, :15].astype(float)
    psf = np.exp(-0.5 * ((xx - 7.0) ** 2 + (yy - 7.6) ** 2) / 1.5**2)
    rng = np.random.default_rng(3)
    images = rng.normal(0.0, 1.0, (5, 32, 32)) + 10.0 * np.exp(-0.5 * ((np.arange(32) - 16.0) ** 2)[None, :, None] / 9)
    if source == "arrays":
        ds = gm.Dataset.from_arrays(images, np.ones_like(images), psf)
    else:
        paths = []
        for i, image in enumerate(images):
            fits.PrimaryHDU(image).writeto(tmp_path / f"g{i}.fits")
            paths.append(str(tmp_path / f"g{i}.fits"))
        fits.PrimaryHDU(psf).writeto(tmp_path / "psf.fits")
        ds = gm.Dataset([f"g{i}" for i in range(5)], paths, None, [str(tmp_path / "psf.fits")] * 5,
                        result_path=tmp_path / "out")
    reads = []
    read = gm.Dataset._read
    monkeypatch.setattr(gm.Dataset, "_read", lambda self, what, i: (reads.append(what), read(self, what, i))[1])
    gals = [ds.load(i) for i in range(5)]
    assert reads.count("psf") == 1
    assert all(g.flags & Flag.psf_off_centre for g in gals)
    assert all("0.60 px" in " ".join(g.messages) for g in gals)
    assert psf.flags.writeable and not gals[0].psf.flags.writeable
