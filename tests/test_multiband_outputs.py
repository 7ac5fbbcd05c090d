"""Multi-band outputs: image blocks holding every band, plots of a galaxy's bands, the report's colours."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

import galmoss as gm
from galmoss.io import read_header
from galmoss.io.blocks import read_image_block

from tests.helpers.multiband_mocks import M0, bulge_disk_bands, sersic_bands

WL = {"g": 477.0, "r": 623.1, "i": 762.5}
SCALES = {"g": 0.2, "r": 0.2, "i": 0.4}
BANDS = {"g": dict(scale=0.2, size=24, fwhm=0.9, mag=22.5, sigma=1.0),
         "r": dict(scale=0.2, size=24, fwhm=0.8, mag=21.0, sigma=1.0),
         "i": dict(scale=0.4, size=12, fwhm=1.0, mag=20.5, sigma=1.0)}


def sersic():
    return gm.lp.Sersic(cen_x=gm.p(12.5), cen_y=gm.p(12.5), pa=gm.p(20.0), axis_r=gm.p(0.7), eff_r=gm.p(3.0),
                        ser_n=gm.p(1.5), mag=gm.p(21.0, M0=M0))


def test_image_blocks_hold_every_band_and_plots_show_them_side_by_side(tmp_path):
    pytest.importorskip("matplotlib")
    images, sigmas, psfs = sersic_bands(BANDS, count=2, seed=21, re_arcsec=0.8)
    # the same galaxy without noise: the truth the model images are compared with
    clean, _, _ = sersic_bands({b: dict(v, sigma=1e-12) for b, v in BANDS.items()}, count=1, seed=21, re_arcsec=0.8)
    ds = gm.Dataset.from_arrays(images, sigmas, psfs, galaxy_index=["a", "b"], wavelength=WL, pix_scale=SCALES,
                                img_block_path=tmp_path / "blocks", result_path=tmp_path / "out")
    ds.define_profiles(gal=sersic())
    f = gm.Fitting(ds, dtype="float64", restarts=False, progress=False)
    f.fit()
    t = f.uncertainty()
    assert list(t["image_block"]) == ["a.fits", "b.fits"]
    block = read_image_block(tmp_path / "blocks" / "a.fits")
    for b in BANDS:
        B = b.upper()
        np.testing.assert_allclose(block[f"DATA_{B}"], images[b][0], rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(block[f"MODEL_{B}"] + block[f"RESIDUAL_{B}"], block[f"DATA_{B}"], atol=1e-4)
        np.testing.assert_allclose(block[f"GAL_{B}"], block[f"MODEL_{B}"], atol=1e-5)  # one component
        assert block[f"MODEL_{B}"].shape == (BANDS[b]["size"],) * 2 and np.all(block[f"MASK_{B}"] == 1)
        # the model's flux in each band is the injected one, within 3 of its magnitude errors (0.921 = ln 10 / 2.5)
        flux, truth = block[f"MODEL_{B}"].sum(), clean[b][0].sum()
        assert abs(flux / truth - 1) < 3 * 0.921 * t[f"gal_mag_{b}_err"][0], b
        header = read_header(tmp_path / "blocks" / "a.fits", f"MODEL_{B}")
        assert header["BAND"] == b and header["PIXSCALE"] == SCALES[b]
        assert header["1_MAG"].startswith(f"{t[f'gal_mag_{b}'][0]:.4f} +/- ")
        assert header["1_RE"].startswith(f"{t['gal_eff_r'][0]:.4f}")  # shared: reference-band pixels
    # bootstrap errors reach every band's header
    boot = f.uncertainty("bootstrap", n_resample=4, seed=2)
    header = read_header(tmp_path / "blocks" / "b.fits", "MODEL_I")
    np.testing.assert_allclose(float(header["1_MAG"].split("+/-")[1]), boot["gal_mag_i_err"][1], rtol=1e-3)
    # galmoss plot: one row of panels per band, the blocks found from the results folder alone
    from galmoss.plot import plot_fit

    fig = plot_fit(tmp_path / "out", "a", out=tmp_path / "a.png")
    assert (tmp_path / "a.png").stat().st_size > 10_000
    labels = {ax.get_label() for ax in fig.axes}
    assert {f"{k}:{b.upper()}" for k in ("data", "model", "residual", "component:gal") for b in BANDS} <= labels


def test_report_shows_the_bulge_fraction_against_wavelength(tmp_path):
    pytest.importorskip("matplotlib")
    # a red bulge and a blue disk: B/T 0.17, 0.32, 0.45 in g, r, i
    mags = {"g": (23.5, 21.8), "r": (22.0, 21.2), "i": (21.2, 21.0)}
    bands = {b: dict(scale=SCALES[b], size=32 if b != "i" else 16, fwhm=BANDS[b]["fwhm"], bulge=mags[b][0],
                     disk=mags[b][1], sigma=1.0) for b in BANDS}
    images, sigmas, psfs = bulge_disk_bands(bands, count=2, seed=22, bulge_re=0.4, disk_re=1.0)
    ds = gm.Dataset.from_arrays(images, sigmas, psfs, wavelength=WL, pix_scale=SCALES, result_path=tmp_path / "out")
    cx, cy = gm.p(16.5), gm.p(16.5)
    ds.define_profiles(
        bulge=gm.lp.Sersic(cen_x=cx, cen_y=cy, pa=gm.p(20.0), axis_r=gm.p(0.8), eff_r=gm.p(2.0),
                           ser_n=gm.p(4.0, fit=False), mag=gm.p(22.0, M0=M0)),
        disk=gm.lp.Sersic(cen_x=cx, cen_y=cy, pa=gm.p(20.0), axis_r=gm.p(0.6), eff_r=gm.p(5.0),
                          ser_n=gm.p(1.0, fit=False), mag=gm.p(21.5, M0=M0)))
    f = gm.Fitting(ds, dtype="float64", restarts=False, progress=False)
    f.fit()
    from galmoss.plot import write_report
    from galmoss.plot.report import band_summary

    summary = band_summary(Table.read(tmp_path / "out" / "results.fits"))
    assert list(summary["bands"]) == list(WL) and np.allclose(summary["wavelength"], list(WL.values()))
    truth = {b: 1 / (1 + 10 ** (-0.4 * (mags[b][1] - mags[b][0]))) for b in WL}
    np.testing.assert_allclose(summary["bulge_fraction"][0], list(truth.values()), atol=0.05)
    np.testing.assert_allclose(summary["bulge_fraction"][0] + summary["disk_fraction"][0], 1.0, atol=1e-9)
    np.testing.assert_allclose(summary["disk_mag"][0], [m[1] for m in mags.values()], atol=0.1)
    page = write_report(tmp_path / "out").read_text()
    assert "<h2>Colours</h2>" in page and "bands g, r, i" in page
