"""Image-set planes read with one pread at their offset equal astropy's reading of the same file."""

from __future__ import annotations

import pickle

import numpy as np
from astropy.io import fits

from galmoss.io.imageset import ImageSet


def test_plain_planes_are_read_directly_and_scaled_ones_through_astropy(tmp_path):
    rng = np.random.default_rng(0)
    cube = rng.normal(0, 1, (5, 6, 7)).astype(">f4")
    counts = rng.integers(0, 60000, (5, 6, 7)).astype(np.uint16)  # astropy writes BZERO = 32768
    psf = rng.random((3, 3))
    path = tmp_path / "set.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(cube, name="IMAGE"), fits.ImageHDU(counts, name="SIGMA"),
                  fits.ImageHDU(psf, name="PSF")]).writeto(path)
    images = ImageSet(path)
    with fits.open(path) as hdul:
        for i in (0, 3, 4):
            got = images.read("IMAGE", i)
            assert got.dtype == np.float64 and np.array_equal(got, hdul["IMAGE"].data[i].astype(np.float64))
            assert np.array_equal(images.read("SIGMA", i), hdul["SIGMA"].data[i].astype(np.float64))
        assert np.array_equal(images.read("PSF", 2), hdul["PSF"].data)  # one PSF for every galaxy
    layout = images._layout
    assert set(layout) == {"IMAGE", "PSF"}  # the BZERO-scaled plane is left to astropy
    again = pickle.loads(pickle.dumps(images))  # a dask worker reopens the file
    assert np.array_equal(again.read("IMAGE", 1), cube[1].astype(np.float64))
    again.close()
    images.close()
    assert np.array_equal(images.read("IMAGE", 2), cube[2].astype(np.float64))  # opened again after close
    images.close()
