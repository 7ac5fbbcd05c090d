"""Mock galaxies drawn by GalSim, with realistic noise, for fitting tests and validation.

Each mock: a Sersic (or bulge + disk) convolved with a Moffat PSF (FWHM ~3.5 px)
and the pixel, drawn by GalSim; a sky-limited noise whose level is set by the
half-light S/N, plus the source's Poisson noise (gain chosen so the sky
dominates at the half-light radius); the sigma image a pipeline would give
(sqrt(sky variance + noiseless model / gain)); the PSF as a star image.
Start values are the truth perturbed as a catalogue would be: flux and r_e by
10-30 %, n by 10-30 %, q by 0.05-0.15, PA by 5-20 degrees, centre by 0.5-2 px,
each with a random sign or direction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .galsim_mocks import GSPARAMS, galsim, moffat_psf, psf_image

ZERO_POINT = 22.5


@dataclass
class MockSet:
    images: np.ndarray
    sigmas: np.ndarray
    psfs: np.ndarray
    truth_images: np.ndarray
    truth: dict[str, np.ndarray]
    start: dict[str, np.ndarray]
    snr: np.ndarray
    extra: dict = field(default_factory=dict)

    def chi2_true(self) -> np.ndarray:
        return (((self.images - self.truth_images) / self.sigmas) ** 2).sum(axis=(1, 2))


def _signed(rng, lo, hi, n):
    return rng.uniform(lo, hi, n) * rng.choice([-1.0, 1.0], n)


def _sersic(n, re, q, pa, cx, cy, flux, shape):
    h, w = shape
    prof = galsim.Sersic(n=n, half_light_radius=re * np.sqrt(q), flux=flux, gsparams=GSPARAMS)
    prof = prof.shear(q=q, beta=(pa + 90.0) * galsim.degrees)
    return prof.shift(cx - (w / 2 + 0.5), cy - (h / 2 + 0.5))


def _observe(rng, profile, psf, shape, snr, source_noise=True):
    """Noiseless image, noisy image and sigma image at half-light S/N ``snr``.

    ``source_noise=False`` gives purely sky-limited noise.
    """
    h, w = shape
    truth = galsim.Convolve(profile, psf, gsparams=GSPARAMS).drawImage(nx=w, ny=h, scale=1.0, method="auto").array
    truth = truth.astype(np.float64)
    values = np.sort(truth.ravel())[::-1]
    n_half = int(np.searchsorted(np.cumsum(values), 0.5 * truth.sum())) + 1
    sky_sigma = 0.5 * truth.sum() / (snr * np.sqrt(n_half))
    # gain: the source's Poisson variance equals the sky's at the half-light isophote
    gain = max(values[n_half - 1], 1e-30) / sky_sigma**2
    sigma = np.sqrt(sky_sigma**2 + (truth / gain if source_noise else np.zeros_like(truth)))
    image = truth + rng.normal(0.0, 1.0, truth.shape) * sigma
    return truth, image, sigma


def perturb(rng, truth, keys=("mag", "re", "n", "q", "pa", "cx", "cy")):
    count = len(truth["cx"])
    start = dict(truth)
    if "mag" in keys:
        factor = 1.0 + _signed(rng, 0.1, 0.3, count)
        start["mag"] = truth["mag"] - 2.5 * np.log10(factor)
    for key in ("re", "n"):
        if key in keys and key in truth:
            start[key] = truth[key] * (1.0 + _signed(rng, 0.1, 0.3, count))
    if "q" in keys:
        start["q"] = np.clip(truth["q"] + _signed(rng, 0.05, 0.15, count), 0.08, 1.0)
    if "pa" in keys:
        start["pa"] = truth["pa"] + _signed(rng, 5.0, 20.0, count)
    if "cx" in keys:
        r = rng.uniform(0.5, 2.0, count)
        phi = rng.uniform(0, 2 * np.pi, count)
        start["cx"] = truth["cx"] + r * np.cos(phi)
        start["cy"] = truth["cy"] + r * np.sin(phi)
    return start


def single_sersic_mocks(count, seed=0, shape=(128, 128), n_range=(0.5, 6.0), re_range=(1.5, 15.0),
                        q_range=(0.2, 1.0), snr_range=(20.0, 500.0), source_noise=True) -> MockSet:
    rng = np.random.default_rng(seed)
    truth = {
        "n": np.exp(rng.uniform(np.log(n_range[0]), np.log(n_range[1]), count)),
        "re": np.exp(rng.uniform(np.log(re_range[0]), np.log(re_range[1]), count)),
        "q": rng.uniform(*q_range, count),
        "pa": rng.uniform(-90.0, 90.0, count),
        "cx": shape[1] / 2 + 0.5 + rng.uniform(-1.0, 1.0, count),
        "cy": shape[0] / 2 + 0.5 + rng.uniform(-1.0, 1.0, count),
        "mag": rng.uniform(15.0, 18.0, count),
    }
    snr = np.exp(rng.uniform(np.log(snr_range[0]), np.log(snr_range[1]), count))
    images, sigmas, psfs, truths = [], [], [], []
    for i in range(count):
        psf = moffat_psf(rng.uniform(3.0, 4.765), rng.uniform(3.3, 3.7))
        flux = 10 ** (-0.4 * (truth["mag"][i] - ZERO_POINT))
        prof = _sersic(truth["n"][i], truth["re"][i], truth["q"][i], truth["pa"][i], truth["cx"][i], truth["cy"][i], flux, shape)
        t, img, sig = _observe(rng, prof, psf, shape, snr[i], source_noise)
        truths.append(t)
        images.append(img)
        sigmas.append(sig)
        psfs.append(psf_image(psf, 51))
    start = perturb(rng, truth)
    return MockSet(np.array(images), np.array(sigmas), np.array(psfs), np.array(truths), truth, start, snr)


def bulge_disk_mocks(count, seed=0, shape=(128, 128), snr_range=(20.0, 500.0), source_noise=True,
                     bt_range=(0.1, 0.7), bulge_re=(0.15, 0.5)) -> MockSet:
    """Bulge (n = 4) + disk (n = 1) sharing a centre; B/T in ``bt_range`` ([0.1, 0.7]); the bulge's r_e a
    fraction ``bulge_re`` of the disk's."""
    rng = np.random.default_rng(seed)
    truth = {
        "cx": shape[1] / 2 + 0.5 + rng.uniform(-1.0, 1.0, count),
        "cy": shape[0] / 2 + 0.5 + rng.uniform(-1.0, 1.0, count),
        "mag": rng.uniform(15.0, 17.5, count),
        "bt": rng.uniform(*bt_range, count),
        "re_d": np.exp(rng.uniform(np.log(5.0), np.log(15.0), count)),
        "q_d": rng.uniform(0.3, 1.0, count),
        "pa_d": rng.uniform(-90.0, 90.0, count),
        "q_b": rng.uniform(0.6, 1.0, count),
        "pa_b": rng.uniform(-90.0, 90.0, count),
    }
    truth["re_b"] = truth["re_d"] * rng.uniform(*bulge_re, count)
    flux = 10 ** (-0.4 * (truth["mag"] - ZERO_POINT))
    truth["mag_b"] = ZERO_POINT - 2.5 * np.log10(flux * truth["bt"])
    truth["mag_d"] = ZERO_POINT - 2.5 * np.log10(flux * (1 - truth["bt"]))
    snr = np.exp(rng.uniform(np.log(snr_range[0]), np.log(snr_range[1]), count))
    images, sigmas, psfs, truths = [], [], [], []
    for i in range(count):
        psf = moffat_psf(rng.uniform(3.0, 4.765), rng.uniform(3.3, 3.7))
        bulge = _sersic(4.0, truth["re_b"][i], truth["q_b"][i], truth["pa_b"][i], truth["cx"][i], truth["cy"][i],
                        flux[i] * truth["bt"][i], shape)
        disk = _sersic(1.0, truth["re_d"][i], truth["q_d"][i], truth["pa_d"][i], truth["cx"][i], truth["cy"][i],
                       flux[i] * (1 - truth["bt"][i]), shape)
        t, img, sig = _observe(rng, bulge + disk, psf, shape, snr[i], source_noise)
        truths.append(t)
        images.append(img)
        sigmas.append(sig)
        psfs.append(psf_image(psf, 51))
    start = dict(truth)
    for comp in ("b", "d"):
        factor = 1.0 + _signed(rng, 0.1, 0.3, count)
        start[f"mag_{comp}"] = truth[f"mag_{comp}"] - 2.5 * np.log10(factor)
        start[f"re_{comp}"] = truth[f"re_{comp}"] * (1.0 + _signed(rng, 0.1, 0.3, count))
        start[f"q_{comp}"] = np.clip(truth[f"q_{comp}"] + _signed(rng, 0.05, 0.15, count), 0.08, 1.0)
        start[f"pa_{comp}"] = truth[f"pa_{comp}"] + _signed(rng, 5.0, 20.0, count)
    r = rng.uniform(0.5, 2.0, count)
    phi = rng.uniform(0, 2 * np.pi, count)
    start["cx"] = truth["cx"] + r * np.cos(phi)
    start["cy"] = truth["cy"] + r * np.sin(phi)
    return MockSet(np.array(images), np.array(sigmas), np.array(psfs), np.array(truths), truth, start, snr)


def bulge_disk_dataset(mocks: MockSet):
    """A ``gm.Dataset`` of bulge + disk mocks: an n = 4 Sersic bulge and an exponential disk sharing a centre, from the starts."""
    import galmoss as gm

    s = mocks.start
    ds = gm.Dataset.from_arrays(mocks.images, mocks.sigmas, mocks.psfs)
    cx, cy = gm.p(s["cx"]), gm.p(s["cy"])
    ds.define_profiles(
        bulge=gm.lp.Sersic(cen_x=cx, cen_y=cy, pa=gm.p(s["pa_b"], angle=True), axis_r=gm.p(s["q_b"]),
                           eff_r=gm.p(s["re_b"]), mag=gm.p(s["mag_b"], M0=ZERO_POINT), ser_n=gm.p(4.0, fit=False)),
        disk=gm.lp.ExpDisk(cen_x=cx, cen_y=cy, pa=gm.p(s["pa_d"], angle=True), axis_r=gm.p(s["q_d"]),
                           scale_l=gm.p(s["re_d"] / 1.678), mag=gm.p(s["mag_d"], M0=ZERO_POINT)))
    return ds
