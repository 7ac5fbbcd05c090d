"""gm.render: convolution, flux, batching, user profiles, precision and bad input."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from scipy.signal import convolve2d
from scipy.special import gammainc

import galmoss as gm

from .helpers.user_profiles import NewSky
from galmoss._compat import prepare_forward_mode
from galmoss.render import Renderer


class Blob(gm.LightProfile):
    """A user profile sampled on the grid: an off-centre asymmetric blob."""

    def __init__(self, amp, x0, y0):
        super().__init__()
        self.amp = amp
        self.x0 = x0
        self.y0 = y0

    def image_via_grid_from(self, grid, mode="updating_model"):
        dx = grid[1] - self.x0.value(mode)
        dy = grid[0] - self.y0.value(mode)
        return self.amp.value(mode) * torch.exp(-0.5 * (dx**2 / 9.0 + dy**2 / 4.0 + 0.5 * dx * dy / 6.0))


def _direct_convolution(profile_fn, shape, psf):
    """Independent truth: the profile sampled on a grid grown by the PSF, convolved by scipy."""
    h, w = psf.shape
    H, W = shape
    cy, cx = h // 2, w // 2
    ys = np.arange(-(h - 1 - cy), H + cy) + 1.0
    xs = np.arange(-(w - 1 - cx), W + cx) + 1.0
    Y, X = np.meshgrid(ys, xs, indexing="ij")
    big = profile_fn(Y, X)
    return convolve2d(big, psf / psf.sum(), mode="valid")


@pytest.mark.parametrize("psf_shape", [(7, 7), (8, 6), (45, 51)], ids=["odd", "even", "larger-than-cutout"])
def test_fft_convolution_equals_direct_linear_convolution(psf_shape):
    rng = np.random.default_rng(1)
    psf = rng.uniform(0.0, 1.0, psf_shape)  # asymmetric: a correlation would differ
    shape = (40, 33)

    def blob(Y, X):
        dx, dy = X - 5.0, Y - 30.0  # near a corner: light falls in from outside the cutout
        return 3.0 * np.exp(-0.5 * (dx**2 / 9.0 + dy**2 / 4.0 + 0.5 * dx * dy / 6.0))

    ours = gm.render(Blob(gm.p(3.0), gm.p(5.0), gm.p(30.0)), shape, psf=psf, dtype=torch.float64)[0].numpy()
    truth = _direct_convolution(blob, shape, psf)
    assert ours.shape == truth.shape == shape
    assert np.max(np.abs(ours - truth)) < 1e-12 * np.max(truth) + 1e-14


def test_convolution_not_correlation_shift_by_offset_delta_psf():
    psf = np.zeros((9, 9))
    psf[4 + 2, 4 + 1] = 5.0  # centre at (4, 4): shifts the image by +2 rows, +1 column
    ours = gm.render(Blob(gm.p(1.0), gm.p(20.0), gm.p(18.0)), (40, 40), psf=psf, dtype=torch.float64)[0]
    plain = gm.render(Blob(gm.p(1.0), gm.p(21.0), gm.p(20.0)), (40, 40), psf=np.eye(1), dtype=torch.float64)[0]
    assert torch.allclose(ours, plain, atol=1e-12)


def test_psf_batch_one_per_galaxy_and_shared():
    rng = np.random.default_rng(2)
    psfs = rng.uniform(0.1, 1.0, (3, 11, 11))
    blob = Blob(gm.p([1.0, 2.0, 3.0]), gm.p([10.0, 12.0, 14.0]), gm.p([11.0, 9.0, 13.0]))
    both = gm.render(blob, (24, 24), psf=psfs, dtype=torch.float64)
    for i in range(3):
        one = gm.render(Blob(gm.p(float(i + 1)), gm.p(10.0 + 2 * i), gm.p([11.0, 9.0, 13.0][i])), (24, 24), psf=psfs[i],
                        dtype=torch.float64)
        assert torch.allclose(both[i], one[0], atol=1e-13)


def _sersic(**kw):
    args = dict(cen_x=gm.p(100.3), cen_y=gm.p(99.8), pa=gm.p(30.0, angle=True), axis_r=gm.p(0.6), eff_r=gm.p(2.0),
                mag=gm.p(17.5, M0=22.5), ser_n=gm.p(4.0))
    args.update(kw)
    return gm.lp.Sersic(**args)


@pytest.mark.parametrize("psf", [None, "moffat"])
def test_total_flux_equals_the_magnitude(psf):
    """Image sum = 10**(-0.4 (mag - M0)) minus the analytic flux outside the image (< 2e-5 here)."""
    shape = (200, 200)
    flux = 10 ** (-0.4 * (17.5 - 22.5))
    n, re = 2.0, 1.5
    sersic = _sersic(ser_n=gm.p(n), eff_r=gm.p(re), axis_r=gm.p(0.8))
    # flux beyond the ellipse inscribed in the image (semi-major 99 px), an upper bound
    from scipy.special import gammaincinv

    b = gammaincinv(2 * n, 0.5)
    outside = 1.0 - gammainc(2 * n, b * (99.0 * 0.8 / re) ** (1 / n))
    assert outside < 2e-5
    kernel = None
    if psf == "moffat":
        yy, xx = np.mgrid[:25, :25] - 12.0
        kernel = (1 + (xx**2 + yy**2) / 2.0**2) ** -3.5
    total = float(gm.render(sersic, shape, psf=kernel, dtype=torch.float64).sum())
    assert abs(total / flux - 1.0) < 1e-4 + outside


def test_seed_user_sky_profile_works_unchanged():
    sky = NewSky(gm.p(2.0), gm.p(0.1), gm.p(-0.2))
    img = gm.render(sky, (5, 7), dtype=torch.float64)[0]
    y, x = torch.meshgrid(torch.arange(1, 6.0, dtype=torch.float64), torch.arange(1, 8.0, dtype=torch.float64), indexing="ij")
    assert torch.allclose(img, 2.0 + 0.1 * (x - 4.0) - 0.2 * (y - 3.0), atol=1e-14)


def test_builtin_sky_is_not_convolved_and_adds_to_galaxy():
    yy, xx = np.mgrid[:9, :9] - 4.0
    psf = np.exp(-0.5 * (xx**2 + yy**2) / 2.0)
    sersic = _sersic(cen_x=gm.p(32.0), cen_y=gm.p(32.0))
    sky = gm.lp.Sky(sky_bg=gm.p(1.5), grad_x=gm.p(0.01))
    both = gm.render({"galaxy": sersic, "sky": sky}, (64, 64), psf=psf, dtype=torch.float64)
    alone = gm.render(sersic, (64, 64), psf=psf, dtype=torch.float64)
    x = torch.arange(1, 65.0, dtype=torch.float64)
    assert torch.allclose(both - alone, (1.5 + 0.01 * (x - 32.5)).expand(1, 64, 64), atol=1e-12)


def test_point_source_is_the_shifted_psf():
    yy, xx = np.mgrid[:15, :15] - 7.0
    psf = np.exp(-0.5 * ((xx - 0.3) ** 2 / 2.0 + yy**2 / 3.0))
    star = gm.lp.PointSource(cen_x=gm.p(20.0), cen_y=gm.p(17.0), mag=gm.p(20.0, M0=22.5))
    img = gm.render(star, (40, 40), psf=psf, dtype=torch.float64)[0].numpy()
    expected = np.zeros((40, 40))
    expected[16 - 7:16 + 8, 19 - 7:19 + 8] = psf / psf.sum() * 10.0  # integer position: exact PSF copy
    assert np.max(np.abs(img - expected)) < 1e-12
    # a sub-pixel shift keeps the flux and moves the centroid by exactly the shift
    moved = gm.render(gm.lp.PointSource(cen_x=gm.p(20.3), cen_y=gm.p(17.0), mag=gm.p(20.0, M0=22.5)), (40, 40),
                      psf=np.exp(-0.5 * (xx**2 + yy**2) / 2.0), dtype=torch.float64)[0].numpy()
    # (the band-limited shift rings faintly across the FFT box: ~1e-6 falls outside the cutout)
    assert moved.sum() == pytest.approx(10.0, rel=1e-5)
    cx = (moved * np.arange(1, 41)[None, :]).sum() / moved.sum()
    assert cx == pytest.approx(20.3, abs=2e-3)


def test_gradients_and_jacobian_through_render_match_finite_differences():
    yy, xx = np.mgrid[:21, :21] - 10.0
    psf = np.exp(-0.5 * ((xx - 0.4) ** 2 / 3.0 + yy**2 / 2.0))
    params = {"cen_x": 32.3, "cen_y": 31.6, "pa": 0.4, "axis_r": 0.55, "eff_r": 3.0, "mag": -4.0, "ser_n": 2.5}
    sersic = gm.lp.Sersic(**{k: gm.p(v) for k, v in params.items()})
    renderer = Renderer((64, 64), psf, dtype=torch.float64)
    names = list(params)

    def model(theta):  # theta: (P,) -> image
        vals = {getattr(sersic, k): theta[i].reshape(1, 1, 1) for i, k in enumerate(names)}
        vals[sersic.box] = torch.zeros(1, 1, 1, dtype=torch.float64)
        return renderer({"s": sersic}, vals)[0]

    theta = torch.tensor([params[k] for k in names], dtype=torch.float64)
    prepare_forward_mode()
    jac = torch.func.jacfwd(model)(theta)  # (64, 64, P), forward mode
    h = 1e-6
    for i in range(len(names)):
        e = torch.zeros_like(theta)
        e[i] = h
        fd = (model(theta + e) - model(theta - e)) / (2 * h)
        assert torch.allclose(jac[..., i], fd, rtol=0, atol=1e-6 * float(fd.abs().max()) + 1e-12), names[i]
    theta_r = theta.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(theta_r).square().sum(), theta_r)
    assert torch.allclose(grad, 2 * (jac * model(theta)[..., None]).sum((0, 1)), rtol=1e-9)


def test_float32_and_float64_agree_and_dtype_follows_psf():
    yy, xx = np.mgrid[:15, :15] - 7.0
    psf = torch.tensor(np.exp(-0.5 * (xx**2 + yy**2) / 2.0))
    img64 = gm.render(_sersic(cen_x=gm.p(32.0), cen_y=gm.p(32.0)), (64, 64), psf=psf)
    img32 = gm.render(_sersic(cen_x=gm.p(32.0), cen_y=gm.p(32.0)), (64, 64), psf=psf.float())
    assert img64.dtype == torch.float64 and img32.dtype == torch.float32
    assert float((img32.double() - img64).abs().max() / img64.max()) < 1e-5


@pytest.mark.cuda
def test_cuda_matches_cpu():
    yy, xx = np.mgrid[:15, :15] - 7.0
    psf = torch.tensor(np.exp(-0.5 * (xx**2 + yy**2) / 2.0))
    cpu = gm.render(_sersic(cen_x=gm.p(32.0), cen_y=gm.p(32.0)), (64, 64), psf=psf)
    gpu = gm.render(_sersic(cen_x=gm.p(32.0), cen_y=gm.p(32.0)), (64, 64), psf=psf.cuda())
    assert gpu.device.type == "cuda"
    assert float((gpu.cpu() - cpu).abs().max() / cpu.max()) < 1e-10


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"eff_r": gm.p([2.0, -1.0])}, r"'eff_r' is -1 for galaxy index 1; allowed range is \(0, inf\)"),
        ({"axis_r": gm.p(1.2)}, r"'axis_r' is 1.2 for galaxy index 0; allowed range is \(0, 1\]"),
        ({"axis_r": gm.p(0.0)}, r"'axis_r' is 0"),
        ({"ser_n": gm.p(25.0)}, r"'ser_n' is 25 .*\(0, 20\]"),
        ({"ser_n": gm.p(0.0)}, r"'ser_n' is 0"),
    ],
)
def test_bad_parameter_values_name_profile_parameter_galaxy_and_range(kwargs, match):
    with pytest.raises(ValueError, match=r"profile 'bulge' \(Sersic\): parameter " + match):
        gm.render({"bulge": _sersic(**kwargs)}, (32, 32))


def test_bad_psfs_are_refused():
    sersic = _sersic(cen_x=gm.p([16.0, 17.0]), cen_y=gm.p([16.0, 15.0]))
    with pytest.raises(ValueError, match="galaxy index 0 has no positive pixel"):
        gm.render(sersic, (32, 32), psf=np.zeros((5, 5)))
    with pytest.raises(ValueError, match="3 PSFs were given for 2 galaxies"):
        gm.render(sersic, (32, 32), psf=np.ones((3, 5, 5)))
    bad = np.ones((2, 5, 5))
    bad[1, 2, 2] = np.nan
    with pytest.raises(ValueError, match="galaxy index 1 has non-finite pixels"):
        gm.render(sersic, (32, 32), psf=bad)


def test_missing_parameter_and_mismatched_lengths():
    with pytest.raises(ValueError, match=r"no value for ser_n"):
        gm.render(gm.lp.Sersic(cen_x=gm.p(1.0), cen_y=gm.p(1.0), pa=gm.p(0.0), axis_r=gm.p(0.5), eff_r=gm.p(2.0),
                               mag=gm.p(20.0)), (16, 16))
    with pytest.raises(ValueError, match="different numbers of galaxies"):
        gm.render(_sersic(cen_x=gm.p([1.0, 2.0]), cen_y=gm.p([1.0, 2.0, 3.0])), (16, 16))


def _supersampled_reference(profile, shape, psf, factor=16, pad=32):
    """Brute force: point samples on a grid 16x finer, band-limited to the pixel band, then the PSF."""
    h = shape[0]
    size = h + 2 * pad
    xs = (np.arange(size * factor) + 0.5) / factor - 0.5 + 1 - pad
    fy, fx = np.meshgrid(xs, xs, indexing="ij")
    v = {k: p.value() for k, p in profile.parameters().items()}
    with torch.no_grad():
        x_maj, x_min = profile.major_minor(torch.tensor(fy)[None], torch.tensor(fx)[None], v)
        fine = profile.radial(profile.boxy_radius(x_maj, x_min, v["axis_r"], v["box"]), v)[0].numpy()
    spectrum = np.fft.fft2(fine) / factor**2
    freq = np.fft.fftfreq(size * factor) * size * factor
    keep = np.abs(freq) < size / 2
    k = 2 * np.pi * np.fft.fftfreq(size * factor)[keep] * factor
    phase = np.exp(1j * k * (factor - 1) / 2 / factor)  # fine sample -> coarse pixel centre
    band = np.zeros((size, size), complex)
    order = np.round(freq[keep]).astype(int) % size
    band[np.ix_(order, order)] = spectrum[np.ix_(keep, keep)] * phase[:, None] * phase[None, :]
    kernel = np.zeros((size, size))
    kernel[: psf.shape[0], : psf.shape[1]] = psf / psf.sum()
    kernel = np.roll(kernel, (-(psf.shape[0] // 2), -(psf.shape[1] // 2)), (0, 1))
    return np.fft.ifft2(band * np.fft.fft2(kernel)).real[pad : pad + h, pad : pad + h]


@pytest.mark.parametrize("box", [0.6, -0.5])
def test_boxy_and_disky_isophotes_match_a_supersampled_reference(box):
    yy, xx = np.mgrid[:21, :21] - 10.0
    psf = (1 + (xx**2 + yy**2) / 2.0**2) ** -4.0
    # angle=True: the reference reads pa.value() outside a rendering, which is in the gm.p's own units
    sersic = gm.lp.Sersic(cen_x=gm.p(32.3), cen_y=gm.p(31.8), pa=gm.p(35.0, angle=True), axis_r=gm.p(0.55),
                          eff_r=gm.p(2.0), mag=gm.p(17.0, M0=22.5), ser_n=gm.p(1.0), box=gm.p(box, fit=False))
    ours = gm.render(sersic, (64, 64), psf=psf, dtype=torch.float64)[0].numpy()
    reference = _supersampled_reference(sersic, (64, 64), psf)
    flux = 10 ** (-0.4 * (17.0 - 22.5))
    sigma = 0.5 * flux / (100 * np.sqrt(20))  # half-light S/N 100 for this compact galaxy
    chi2 = (((ours - reference) / sigma) ** 2).sum()
    assert chi2 < 0.2  # the reference's own sampling error is ~0.02; point samples of the boxy part give 0.6-1.3


def test_a_profile_with_its_own_radius_is_drawn_alike_in_any_batch():
    """A subclass whose elliptical radius reaches farther than the built-in ellipse: its window is not cut to
    the square the built-in radius would need, so its image does not depend on the other galaxies' cores.
    Truth: the same galaxy drawn alone."""

    class Stretched(gm.lp.Sersic):
        @staticmethod
        def elliptical_radius(x_maj, x_min, q):
            return torch.sqrt((x_maj / 3.0) ** 2 + (x_min / q) ** 2 + 1e-12)

    yy, xx = np.mgrid[:9, :9] - 4.0
    psf = np.exp(-0.5 * (xx**2 + yy**2) / 1.5**2)
    one = dict(cen_x=30.2, cen_y=29.7, pa=20.0, axis_r=0.9, eff_r=4.0, mag=16.0, ser_n=2.0)
    alone = gm.render(Stretched(**{k: gm.p(v) for k, v in one.items()}), (60, 60), psf=psf, dtype=torch.float64)
    pair = {k: [v, v] for k, v in one.items()}
    pair["axis_r"] = [0.9, 0.1]  # the second's core is ten times longer: a larger square for the batch
    together = gm.render(Stretched(**{k: gm.p(v) for k, v in pair.items()}), (60, 60), psf=psf, dtype=torch.float64)
    assert torch.allclose(together[0], alone[0], rtol=0, atol=1e-12 * float(alone.abs().max()))
