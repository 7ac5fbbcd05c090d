"""Reading cutouts: every BITPIX and byte order, scaling, HDU choice, .npy, errors."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from astropy.io import fits

from galmoss.errors import DataError, DataFileNotFoundError
from galmoss.io import read_header, read_image, read_image_with_header


def _check_layout(arr: np.ndarray) -> None:
    assert arr.dtype == np.float64
    assert arr.dtype.isnative
    assert arr.flags.c_contiguous and arr.flags.writeable
    assert arr.ndim == 2


def test_big_endian_int16_with_bscale_bzero_and_blank(tmp_path):
    raw = np.array([[-3, 0, 7], [32767, -32768, 12]], dtype=">i2")
    hdu = fits.PrimaryHDU(raw)
    # Exactly representable scale and zero, so the physical values are exact decimals.
    hdu.header["BSCALE"] = 0.5
    hdu.header["BZERO"] = 1000.25
    hdu.header["BLANK"] = -32768
    path = tmp_path / "scaled.fits"
    hdu.writeto(path)

    out = read_image(path)
    _check_layout(out)
    expected = np.array([[998.75, 1000.25, 1003.75], [17383.75, np.nan, 1006.25]])
    np.testing.assert_array_equal(out, expected)


def test_fractional_bscale_is_applied_in_float64(tmp_path):
    # astropy alone scales int16 into float32 (about 7 digits); the physical
    # values 100 + 0.01 * raw must come back to float64 accuracy.
    raw = np.array([[12345, -32000], [1, 31999]], dtype=np.int16)
    hdu = fits.PrimaryHDU(raw)
    hdu.header["BSCALE"] = 0.01
    hdu.header["BZERO"] = 100.0
    path = tmp_path / "scaled.fits"
    hdu.writeto(path)
    out = read_image(path)
    np.testing.assert_allclose(out, [[223.45, -220.0], [100.01, 419.99]], rtol=1e-14, atol=0)


def test_unsigned_16_bit_via_bzero(tmp_path):
    values = np.array([[0, 1, 65535], [32768, 40000, 2]], dtype=np.uint16)
    path = tmp_path / "u16.fits"
    fits.PrimaryHDU(values).writeto(path)  # astropy stores int16 with BZERO = 32768
    with fits.open(path) as hdul:
        assert hdul[0].header["BZERO"] == 32768 and hdul[0].header["BITPIX"] == 16
    np.testing.assert_array_equal(read_image(path), values.astype(np.float64))


@pytest.mark.parametrize("dtype", [">f4", "<f4", ">f8", ">i4", ">i8", "u1", "<i2"])
def test_every_bitpix_and_byte_order(tmp_path, dtype):
    values = np.array([[1.5, -2.0, 3.25, 0.0], [100.0, 7.0, -9.5, 42.0]])
    if np.dtype(dtype).kind in "iu":
        values = np.abs(np.round(values))
    stored = values.astype(dtype)
    path = tmp_path / "img.fits"
    fits.PrimaryHDU(stored).writeto(path)
    out = read_image(path)
    _check_layout(out)
    np.testing.assert_array_equal(out, values)


def test_fortran_ordered_npy_and_float32_npy(tmp_path):
    values = np.arange(12, dtype=np.float32).reshape(3, 4) / 3
    path = tmp_path / "img.npy"
    np.save(path, np.asfortranarray(values))
    out = read_image(path)
    _check_layout(out)
    np.testing.assert_array_equal(out, values.astype(np.float64))
    pixels, header = read_image_with_header(path)
    np.testing.assert_array_equal(pixels, out)
    assert len(header) == 0


def test_npy_is_recognised_by_content_and_bool_masks_become_0_1(tmp_path):
    mask = np.array([[True, False], [False, True]])
    path = tmp_path / "mask.fits"  # misnamed on purpose
    with open(path, "wb") as fh:
        np.save(fh, mask)
    np.testing.assert_array_equal(read_image(path, what="mask"), [[1.0, 0.0], [0.0, 1.0]])


def test_npy_errors(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="obj.npy.*not a readable .npy array.*numpy.save"):
        read_image(path)
    good = tmp_path / "good.npy"
    np.save(good, np.zeros((2, 2)))
    with pytest.raises(DataError, match="no HDUs; leave hdu unset"):
        read_image(good, hdu="SCI")
    cplx = tmp_path / "complex.npy"
    np.save(cplx, np.zeros((2, 2), dtype=complex))
    with pytest.raises(DataError, match="complex128.*real-valued"):
        read_image(cplx, what="psf")


def _mef(tmp_path):
    """Empty primary, a table, then two images named SCI (versions 1 and 2) and an ERR."""
    table = fits.BinTableHDU.from_columns([fits.Column(name="x", format="D", array=np.zeros(2))], name="CAT")
    sci1 = fits.ImageHDU(np.full((3, 4), 1.0, dtype=">f4"), name="SCI", ver=1)
    sci1.header["MYKEY"] = "first"
    sci2 = fits.ImageHDU(np.full((3, 4), 2.0), name="SCI", ver=2)
    err = fits.ImageHDU(np.full((3, 4), 0.5), name="ERR")
    path = tmp_path / "mef.fits"
    fits.HDUList([fits.PrimaryHDU(), table, sci1, sci2, err]).writeto(path)
    return path


def test_hdu_selection(tmp_path):
    path = _mef(tmp_path)
    np.testing.assert_array_equal(read_image(path), np.full((3, 4), 1.0))  # first image extension
    np.testing.assert_array_equal(read_image(path, "err"), np.full((3, 4), 0.5))  # EXTNAME, any case
    np.testing.assert_array_equal(read_image(path, 3), np.full((3, 4), 2.0))
    np.testing.assert_array_equal(read_image(path, ("SCI", 2)), np.full((3, 4), 2.0))
    np.testing.assert_array_equal(read_image(path, -1), np.full((3, 4), 0.5))
    assert read_header(path)["MYKEY"] == "first"
    pixels, header = read_image_with_header(path)
    np.testing.assert_array_equal(pixels, np.full((3, 4), 1.0))
    assert header["MYKEY"] == "first" and header["EXTNAME"] == "SCI"
    assert read_header(path, 0)["NAXIS"] == 0  # an explicit data-less HDU is fine for headers


def test_primary_wins_when_it_holds_an_image(tmp_path):
    path = tmp_path / "both.fits"
    fits.HDUList([fits.PrimaryHDU(np.ones((2, 2))), fits.ImageHDU(np.zeros((2, 2)))]).writeto(path)
    np.testing.assert_array_equal(read_image(path), np.ones((2, 2)))


def test_a_non_2d_primary_is_skipped_for_the_first_2d_extension(tmp_path):
    path = tmp_path / "cube_then_image.fits"
    fits.HDUList([fits.PrimaryHDU(np.ones((2, 3, 3))), fits.ImageHDU(np.full((3, 3), 4.0))]).writeto(path)
    np.testing.assert_array_equal(read_image(path), np.full((3, 3), 4.0))


def test_missing_hdu_lists_what_exists(tmp_path):
    path = _mef(tmp_path)
    with pytest.raises(DataError) as info:
        read_image(path, "PSF", what="psf")
    msg = str(info.value)
    assert str(path) in msg and "no HDU 'PSF'" in msg
    assert "HDU 0 (PRIMARY): no data" in msg and "HDU 1 (CAT): table" in msg and "HDU 4 (ERR): image" in msg
    assert "Pass one of these as hdu" in msg
    with pytest.raises(DataError, match="no HDU 7"):
        read_image(path, 7)


def test_hdu_without_image_names_the_image_hdus(tmp_path):
    path = _mef(tmp_path)
    with pytest.raises(DataError) as info:
        read_image(path, "CAT", what="sigma")
    msg = str(info.value)
    assert "HDU 1 (CAT) of sigma file" in msg and str(path) in msg
    assert "HDUs with images: 2 (SCI), 3 (SCI), 4 (ERR)" in msg
    with pytest.raises(DataError, match="HDU 0 \\(PRIMARY\\).*holds no image data"):
        read_image(path, 0)
    with pytest.raises(TypeError, match="hdu must be"):
        read_image(path, 1.0)


def test_file_without_any_image(tmp_path):
    path = tmp_path / "table_only.fits"
    table = fits.BinTableHDU.from_columns([fits.Column(name="x", format="D", array=np.zeros(2))])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)
    with pytest.raises(DataError, match="table_only.fits' holds no image at all"):
        read_image(path)


def test_degenerate_cube_is_squeezed_and_real_cube_refused(tmp_path):
    plane = np.arange(6.0).reshape(2, 3)
    path = tmp_path / "cube1.fits"
    fits.PrimaryHDU(plane[None, None]).writeto(path)
    out = read_image(path)
    _check_layout(out)
    np.testing.assert_array_equal(out, plane)

    cube = tmp_path / "cube2.fits"
    fits.PrimaryHDU(np.stack([plane, plane])).writeto(cube)
    with pytest.raises(DataError, match="no 2-D image") as info:
        read_image(cube)
    assert str(cube) in str(info.value)
    with pytest.raises(DataError, match="HDU 0.*shape \\(2, 2, 3\\).*Cut the plane"):
        read_image(cube, 0)
    line = tmp_path / "line.npy"
    np.save(line, np.arange(4.0))
    with pytest.raises(DataError, match="line.npy' has shape \\(4,\\); a 2-D image is needed"):
        read_image(line)


def test_compressed_extension_and_gzip_file(tmp_path):
    values = np.arange(64, dtype=np.int32).reshape(8, 8) - 20
    path = tmp_path / "comp.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(values, name="SCI")]).writeto(path)
    np.testing.assert_array_equal(read_image(path), values.astype(np.float64))  # lossless for integers

    plain = tmp_path / "plain.fits"
    fits.PrimaryHDU(values.astype(">f8") / 4).writeto(plain)
    gz = tmp_path / "plain.fits.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    np.testing.assert_array_equal(read_image(gz), values / 4)


def test_missing_file_names_the_path_and_argument(tmp_path):
    path = tmp_path / "nowhere" / "gal_7.fits"
    with pytest.raises(DataFileNotFoundError) as info:
        read_image(path)
    assert isinstance(info.value, FileNotFoundError)
    msg = str(info.value)
    assert str(path) in msg and "image_path" in msg and "check the path" in msg
    with pytest.raises(DataFileNotFoundError, match="psf file not found.*given as psf_path"):
        read_image(path, what="psf")
    with pytest.raises(DataFileNotFoundError, match="given as catalogue column 'sigma'"):
        read_image(path, what="sigma", argument="catalogue column 'sigma'")


def test_unreadable_files(tmp_path):
    text = tmp_path / "notes.fits"
    text.write_text("this is not a FITS file\n" * 200)
    with pytest.raises(DataError) as info:
        read_image(text)
    msg = str(info.value)
    assert str(text) in msg and "not a readable FITS file" in msg and ".npy" in msg

    empty = tmp_path / "empty.fits"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.fits' is not a readable FITS file"):
        read_image(empty)

    with pytest.raises(DataError, match="is a folder"):
        read_image(tmp_path)


def test_truncated_file_is_a_data_error_and_closes_the_file(tmp_path):
    full = tmp_path / "full.fits"
    fits.PrimaryHDU(np.ones((100, 100))).writeto(full)
    cut = tmp_path / "cut.fits"
    cut.write_bytes(full.read_bytes()[: 2880 + 4000])
    # With warnings as errors astropy fails inside fits.open; without, when the
    # data are read. Either way: a DataError, and (strict pytest) no leaked handle.
    with pytest.raises(DataError, match="cut.fits"):
        read_image(cut)
