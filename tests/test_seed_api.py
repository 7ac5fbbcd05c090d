"""The talk's code, as printed, runs (`../shared/seed.md`)."""

from __future__ import annotations

import numpy as np
import torch
from astropy.io import fits

import galmoss


def _write_galaxy(folder, name, truth, mask_label=None, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:25, :25] - 12.0
    psf = (1 + (xx**2 + yy**2) / 2.0**2) ** -3.5
    model = galmoss.render(truth, (128, 128), psf=psf, dtype=torch.float64)[0].numpy()
    image = model + rng.normal(0, 0.05, model.shape)
    fits.PrimaryHDU(image.astype(">f4")).writeto(folder / f"{name}_image.fits")
    fits.PrimaryHDU(np.full((128, 128), 0.05)).writeto(folder / f"{name}_sigma.fits")
    fits.PrimaryHDU(psf).writeto(folder / f"{name}_psf.fits")
    mask = np.zeros((128, 128), dtype=np.int16)
    if mask_label is not None:
        mask[50:80, 50:80] = mask_label
        mask[5:15, 5:15] = 1  # a neighbour
    fits.PrimaryHDU(mask).writeto(folder / f"{name}_mask.fits")


def test_basic_usage_sersic_profile_fitting(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    truth = galmoss.lp.Sersic(cen_x=galmoss.p(65.43), cen_y=galmoss.p(64.95), pa=galmoss.p(-81.06), axis_r=galmoss.p(0.64),
                              eff_r=galmoss.p(3.0), mag=galmoss.p(17.68, M0=22.5), ser_n=galmoss.p(1.53))
    _write_galaxy(tmp_path, "J162123.19+322056.4", truth, mask_label=2)

    import Galmoss as gm

    # define parameter objects and profile
    sersic = gm.lp.Sersic(
        cen_x=gm.p(65.43),
        cen_y=gm.p(64.95),
        pa=gm.p(-81.06, angle=True),
        axis_r=gm.p(0.64),
        eff_r=gm.p(7.58, pix_scale=0.396),
        ser_n=gm.p(1.53, log=True),
        mag=gm.p(17.68, M0=22.5)
    )
    dataset = gm.Dataset(
        galaxy_index="J162123.19+322056.4",
        image_path="./J162123.19+322056.4_image.fits",
        sigma_path="./J162123.19+322056.4_sigma.fits",
        psf_path="./J162123.19+322056.4_psf.fits",
        mask_path="./J162123.19+322056.4_mask.fits",
        mask_index=2,
        img_block_path="./test_repo",
        result_path="./test_repo"
    )
    dataset.define_profiles(sersic=sersic)
    fitting = gm.Fitting(dataset=dataset,
                         batch_size=1,
                         iteration=1000)
    fitting.fit()
    fitting.uncertainty(method="covar_mat")

    res = fitting.results
    assert res["converged"][0]
    # eff_r was given in arcsec (7.58" = 19.1 px start); the fit finds 3 px = 1.188"
    assert abs(res["sersic_eff_r"][0] - 3.0 * 0.396) < 5 * res["sersic_eff_r_err"][0]
    assert (tmp_path / "test_repo" / "results.fits").exists()
    assert (tmp_path / "test_repo" / "J162123.19+322056.4.fits").exists()

    # the second form: gm.lp.Sersic() with no arguments
    sersic = gm.lp.Sersic()
    dataset.define_profiles(sersic=sersic)
    fitting = gm.Fitting(dataset=dataset, batch_size=1, iteration=1000)
    fitting.fit()
    fitting.uncertainty(method="covar_mat")
    res = fitting.results
    assert res["converged"][0] and abs(res["sersic_eff_r"][0] - 3.0) < 5 * res["sersic_eff_r_err"][0]


def test_bulge_disk_decomposition_with_bootstrap(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    names = ["J100247.00+042559.8", "J092800.99+014011.9"]
    for k, (name, xc, yc) in enumerate(zip(names, [65.97, 65.73], [65.30, 64.81])):
        truth = {
            "b": galmoss.lp.Sersic(cen_x=galmoss.p(xc), cen_y=galmoss.p(yc), pa=galmoss.p(10.0), axis_r=galmoss.p(0.9),
                                   eff_r=galmoss.p(2.0), mag=galmoss.p(17.5, M0=22.5), ser_n=galmoss.p(4.0)),
            "d": galmoss.lp.Sersic(cen_x=galmoss.p(xc), cen_y=galmoss.p(yc), pa=galmoss.p(40.0), axis_r=galmoss.p(0.5),
                                   eff_r=galmoss.p(8.0), mag=galmoss.p(16.5, M0=22.5), ser_n=galmoss.p(1.0)),
        }
        _write_galaxy(tmp_path, name, truth, seed=k)

    import Galmoss as gm

    xcen = gm.p([65.97, 65.73])
    ycen = gm.p([65.30, 64.81])
    bulge = gm.lp.Sersic(cen_x=xcen, cen_y=ycen, pa=gm.p([15.0, 5.0], angle=True), axis_r=gm.p(0.8), eff_r=gm.p(2.5),
                         mag=gm.p(17.8, M0=22.5), ser_n=gm.p(4.0, fit=False))
    disk = gm.lp.Sersic(cen_x=xcen, cen_y=ycen, pa=gm.p([35.0, 45.0], angle=True), axis_r=gm.p(0.6), eff_r=gm.p(7.0),
                        mag=gm.p(16.8, M0=22.5), ser_n=gm.p(1.0, fit=False))
    dataset = gm.DataSet(["J100247.00+042559.8", "J092800.99+014011.9"],
                         image_path=[("./J100247.00+042559.8_image.fits",
                                      "./J092800.99+014011.9_image.fits")],
                         sigma_path=[("./J100247.00+042559.8_sigma.fits",
                                      "./J092800.99+014011.9_sigma.fits")],
                         psf_path=[("./J100247.00+042559.8_psf.fits",
                                    "./J092800.99+014011.9_psf.fits")],
                         mask_path=[("./J100247.00+042559.8_mask.fits",
                                     "./J092800.99+014011.9_mask.fits")],
                         img_block_path="./test_repo/",
                         result_path="./test_repo/")
    dataset.define_profiles(bulge=bulge, disk=disk)
    fitting = gm.Fitting(dataset=dataset,
                         batch_size=1,
                         iteration=1000)
    fitting.fit()
    fitting.uncertainty(method="bootstrap", n_resample=30)
    res = fitting.results
    assert np.all(res["converged"])
    assert np.all(np.isfinite(res["bulge_cen_x_err"])) and np.all(res["bulge_cen_x_err"] > 0)
    assert np.all(np.abs(res["disk_eff_r"] - 8.0) < 5 * res["disk_eff_r_err"])
