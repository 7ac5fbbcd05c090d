"""Pickling round trips (a dask scale-out ships datasets, profiles and parameters to workers).

Each object goes through ``pickle.dumps``/``loads`` and must come back working:
parameters with their values, units and ranges; profiles rendering the same
image bit for bit; datasets (file and array forms) reading the same galaxy data
and keeping shared parameters shared.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from astropy.io import fits

import galmoss as gm


def _round_trip(obj):
    return pickle.loads(pickle.dumps(obj))


def _geometry():
    return dict(cen_x=gm.p([15.3, 16.2]), cen_y=gm.p([16.1, 15.4]), pa=gm.p([30.0, -50.0]),
                axis_r=gm.p([0.7, 0.4]), mag=gm.p([17.0, 18.0], M0=22.5))


PROFILES = {
    "sersic": lambda: gm.lp.Sersic(**_geometry(), eff_r=gm.p([3.0, 2.0], pix_scale=0.5), ser_n=gm.p(1.5, log=True)),
    "devaucouleurs": lambda: gm.lp.DeVaucouleurs(**_geometry(), eff_r=gm.p([3.0, 2.0])),
    "expdisk": lambda: gm.lp.ExpDisk(**_geometry(), scale_l=gm.p([3.0, 1.5]), box=gm.p(0.3, fit=False)),
    "gaussian": lambda: gm.lp.Gaussian(**_geometry(), fwhm=gm.p([3.0, 4.0])),
    "moffat": lambda: gm.lp.Moffat(**_geometry(), con=gm.p(2.5), fwhm=gm.p([3.0, 2.0])),
    "ferrer": lambda: gm.lp.Ferrer(**_geometry(), trunc_r=gm.p(8.0), trunc_a=gm.p(2.0), trunc_b=gm.p(0.5)),
    "king": lambda: gm.lp.King(**_geometry(), core_r=gm.p(1.5), trunc_r=gm.p(9.0), pow_n=gm.p(2.0)),
    "nuker": lambda: gm.lp.Nuker(**_geometry(), break_r=gm.p(3.0), alpha=gm.p(2.0), beta=gm.p(3.5), gamma=gm.p(0.5)),
    "edgedisk": lambda: gm.lp.EdgeDisk(cen_x=gm.p([15.3, 16.2]), cen_y=gm.p([16.1, 15.4]), pa=gm.p([30.0, -50.0]),
                                       mag=gm.p([17.0, 18.0], M0=22.5), scale_h=gm.p(1.0), scale_l=gm.p([4.0, 3.0])),
    "sky": lambda: gm.lp.Sky(sky_bg=gm.p([0.1, -0.2]), grad_x=gm.p(0.01), grad_y=gm.p([0.0, 0.02])),
    "pointsource": lambda: gm.lp.PointSource(cen_x=gm.p([15.3, 16.2]), cen_y=gm.p([16.1, 15.4]), mag=gm.p(18.0, M0=22.5)),
    "freeform": lambda: gm.lp.FreeForm(**_geometry(), log_sb=gm.p(np.linspace(0.0, -4.0, 6), dim="2d"), radii=(0.5, 12.0, 6)),
    "pixelmap": lambda: gm.lp.PixelMap(pixels=gm.p(np.linspace(0.0, 2.0, 24).reshape(2, 12), dim="2d"), shape=(3, 4),
                                       cen_x=gm.p([15.3, 16.2], fit=False), cen_y=gm.p([16.1, 15.4], fit=False), scale=2),
}
PSF = np.exp(-0.5 * ((np.mgrid[:9, :9] - 4.0) ** 2).sum(0) / 1.3**2)


@pytest.mark.parametrize("wrap", ["truncation", "bending"])
def test_truncated_and_bent_profiles_survive_a_round_trip(wrap):
    base = PROFILES["sersic"]()
    profile = (gm.lp.with_truncation(base, outer=(gm.p(8.0), gm.p(3.0))) if wrap == "truncation"
               else gm.lp.with_bending(base, (2, 3), gm.p([0.5, -0.2], dim="2d")))
    back = _round_trip(profile)
    assert type(back) is type(profile)
    before = gm.render(profile, (32, 32), dtype=torch.float64)
    assert torch.equal(gm.render(back, (32, 32), dtype=torch.float64), before)


def test_every_builtin_profile_is_covered():
    from galmoss.profiles import registered_profiles

    builtin = {n for n, c in registered_profiles().items() if c.__module__.startswith("galmoss.profiles")}
    assert builtin == set(PROFILES), f"add a pickling case for {sorted(builtin - set(PROFILES))}"


def test_a_parameter_survives_a_round_trip():
    prm = gm.p([20.0, 30.0], value_range=(1.0, 100.0), pix_scale=0.4, name="re")
    back = _round_trip(prm)
    assert back is not prm and np.array_equal(back.initial, prm.initial)
    assert (back.value_range, back.pix_scale, back.name, back.units) == (prm.value_range, 0.4, "re", prm.units)
    assert torch.equal(back.value(), prm.value())
    startless = _round_trip(gm.p(M0=22.5))
    assert not startless.has_start and startless.M0 == 22.5


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_an_unpickled_profile_renders_the_same_image(name):
    profile = PROFILES[name]()
    back = _round_trip(profile)
    assert type(back) is type(profile) and set(back.parameters()) == set(profile.parameters())
    psf = PSF if name in ("pointsource", "moffat", "pixelmap") else None
    before = gm.render(profile, (32, 32), psf=psf, dtype=torch.float64)
    after = gm.render(back, (32, 32), psf=psf, dtype=torch.float64)
    assert torch.equal(before, after)


def _shared_model():
    centre = gm.p([15.3, 16.2])
    bulge = gm.lp.Sersic(cen_x=centre, cen_y=gm.p(16.0), pa=gm.p(10.0), axis_r=gm.p(0.9), eff_r=gm.p(2.0),
                         mag=gm.p(18.0, M0=22.5), ser_n=gm.p(4.0, fit=False))
    disk = gm.lp.ExpDisk(cen_x=centre, cen_y=gm.p(16.0), pa=gm.p(40.0), axis_r=gm.p(0.5), scale_l=gm.p(4.0),
                         mag=gm.p(17.0, M0=22.5))
    return {"bulge": bulge, "disk": disk}


def _check_dataset(data, back):
    assert back.names == data.names and list(back.profiles) == list(data.profiles)
    # sharing is identity: it must survive the trip
    assert back.profiles["bulge"].cen_x is back.profiles["disk"].cen_x
    for i in range(len(data)):
        a, b = data.load(i), back.load(i)
        assert a.flags == b.flags and a.messages == b.messages
        for part in ("image", "sigma", "weight", "psf"):
            x, y = getattr(a, part), getattr(b, part)
            assert (x is None and y is None) or np.array_equal(x, y), part
    before = gm.render(data.profiles, (32, 32), psf=PSF, dtype=torch.float64)
    after = gm.render(back.profiles, (32, 32), psf=PSF, dtype=torch.float64)
    assert torch.equal(before, after)


def test_an_array_dataset_survives_a_round_trip():
    rng = np.random.default_rng(1)
    images = rng.normal(0, 1, (2, 32, 32)).astype(">f4")  # big-endian, as FITS gives it
    sigmas = np.full((2, 32, 32), 1.0)
    masks = np.zeros((2, 32, 32), dtype=np.int16)
    masks[1, :4, :4] = 1
    data = gm.Dataset.from_arrays(images, sigmas, PSF, masks, galaxy_index=["a", "b"])
    data.define_profiles(**_shared_model())
    _check_dataset(data, _round_trip(data))


def test_a_file_dataset_survives_a_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    paths = {k: [] for k in ("image", "sigma", "psf", "mask")}
    for name in ("g1", "g2"):
        for kind, array in (("image", rng.normal(0, 1, (32, 32))), ("sigma", np.ones((32, 32))), ("psf", PSF),
                            ("mask", np.zeros((32, 32), dtype=np.int16))):
            path = tmp_path / f"{name}_{kind}.fits"
            fits.PrimaryHDU(array).writeto(path)
            paths[kind].append(str(path))
    data = gm.Dataset(galaxy_index=["g1", "g2"], image_path=paths["image"], sigma_path=paths["sigma"],
                      psf_path=paths["psf"], mask_path=paths["mask"])
    data.define_profiles(**_shared_model())
    _check_dataset(data, _round_trip(data))
