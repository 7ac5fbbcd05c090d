"""Quality assessment of a batch fit: the per-galaxy flags and messages of :mod:`galmoss.flags`.

Starts outside a profile's domain (``bad_start``), how the solver ended
(``no_convergence``, ``non_finite``), values near a bound, too few pixels, and
the quality flags that never hide a bad fit (:mod:`galmoss.auto.quality`).
"""

from __future__ import annotations

import numpy as np
import torch

from ..render.psf import LARGER_THAN_CUTOUT, psf_exceeds_cutout
from ..flags import Flag
from ..model import Model
from ..params import Role
from .records import Batch
from .status import decode_status

__all__ = ["PSF_BIAS_LIMIT", "assess", "check_starts", "mark_psf_undersampled", "near_bound", "psf_sampling_bias",
           "take_back_psf_size", "worst_psf_bias"]

Tensor = torch.Tensor

#: ``psf_undersampled``: the estimated bias (in errors) of drawing a galaxy with an aliasing PSF above which the
#: galaxy is flagged. The estimate, S/N x (the PSF's spectrum at the sampling band's edge) x (the galaxy's), is
#: 1-6 times the bias fits of GalSim mocks measure (docs/validation.md): above 2 the bias is 0.35-2 errors.
PSF_BIAS_LIMIT = 2.0


def check_starts(model: Model, batch: Batch, start: dict):
    """Which galaxies start inside every profile's domain; the others get ``bad_start``."""
    keep = np.ones(len(batch), dtype=bool)
    flags = batch.flags.copy()
    messages = [list(m) for m in batch.messages]
    for pname, profile in model.profiles.items():
        for slot, prm in profile.parameters().items():
            spec = profile.spec(slot)
            ok = spec.allows(start[prm])
            vector = ok.ndim == 2
            if vector:  # a vector parameter: every element must be inside
                ok = ok.all(axis=1)
            for i in np.flatnonzero(~ok & keep):
                keep[i] = False
                flags[i] |= int(Flag.bad_start)
                shown = f"{start[prm][i]:g}" if not vector else (
                    f"outside at element {int(np.flatnonzero(~spec.allows(start[prm][i]))[0]) + 1}")
                messages[i].append(f"start value of {pname}.{slot} is {shown}, outside {spec.domain_text()}")
    return keep, flags, messages


#: the message that names the free parameters that ended at a bound (plots read it back: "at bound")
AT_BOUND_NOTE = "a parameter ended within 0.1% of its bound: "


def at_bound(message: str) -> list[str]:
    """The ``<profile>_<slot>`` names a results row's message reports at a bound (:data:`AT_BOUND_NOTE`)."""
    if AT_BOUND_NOTE not in message:
        return []
    return [name.strip() for name in message.split(AT_BOUND_NOTE, 1)[1].split(";", 1)[0].split(",") if name.strip()]


def assess(model: Model, batch: Batch, start: dict, reported: dict, theta: Tensor, loss: np.ndarray,
           dof: np.ndarray, status: np.ndarray, converged: np.ndarray, chi2: bool, psf_sampling: int = 1,
           psf_bias: "tuple[np.ndarray, np.ndarray, np.ndarray] | None" = None):
    """The flags and messages of a fitted batch: the reading flags plus the fit's (see the module).

    ``psf_sampling``: the PSF's samples per data pixel (``RenderSettings.psf_oversampling``);
    ``psf_bias``: :func:`psf_sampling_bias` of the fit (None: not judged).
    """
    finite = np.isfinite(loss)
    near = near_bound(model, theta)
    flags = batch.flags.copy()
    messages = [list(m) for m in batch.messages]
    take_back_psf_size([batch], psf_sampling, flags, messages)
    for i in range(len(batch)):
        if not converged[i]:
            flags[i] |= int(Flag.non_finite if not finite[i] else Flag.no_convergence)
            messages[i].append(decode_status(int(status[i])))
        if near[i]:
            flags[i] |= int(Flag.near_bound)
            messages[i].append(AT_BOUND_NOTE + ", ".join(near[i]))
        if finite[i] and dof[i] <= 0:
            flags[i] |= int(Flag.no_dof)
    mark_psf_undersampled(psf_bias, finite, flags, messages)
    if model.n_free:
        _quality(model, start, reported, loss, dof, finite, tuple(batch.image.shape[1:]), flags, messages, chi2,
                 psf=batch.psf, psf_sampling=psf_sampling)
    return flags, messages


def _quality(model: Model, start: dict, reported: dict, loss, dof, finite, shape, flags, messages, chi2: bool,
             psf=None, psf_sampling: int = 1) -> None:
    """Flags that never hide a bad fit (:func:`galmoss.auto.quality.quality_flags`), ORed into ``flags``."""
    from ..auto.psf import measure_fwhm
    from ..auto.quality import quality_flags

    with torch.no_grad():
        start_tensors = {prm: torch.as_tensor(np.asarray(v, dtype=np.float64)) for prm, v in start.items()}
        start_tensors = {prm: t if t.ndim == 2 else t.reshape(-1, 1, 1) for prm, t in start_tensors.items()}
        start_rep = {k: v.double().numpy() for k, v in model.report(start_tensors).items()}
    free = {c.name for c in model.columns if c.parameter.fit}
    # flags judge the target: a fitted neighbour is no component of it (negligible share, merged, ...)
    neighbours = set(model.neighbour_components)
    if neighbours:
        own = {c.name for c in model.columns if c.profile not in neighbours}
        reported = {k: v for k, v in reported.items() if k in own}
        start_rep = {k: v for k, v in start_rep.items() if k in own}
    with np.errstate(divide="ignore", invalid="ignore"):
        reduced = np.where(finite & (dof > 0) & chi2, loss / np.maximum(dof, 1), np.nan)
    scales = {c.name: c.parameter.pix_scale for c in model.columns if c.parameter.pix_scale is not None}
    q_flags, q_messages = quality_flags(
        reduced, dof, reported, {k: v for k, v in start_rep.items() if k in free}, shape,
        pixel_scale=scales or None, components={c.name: c.profile for c in model.columns if c.name in reported},
        lengths=list(dict.fromkeys(c.slot for c in model.columns if c.spec.role is Role.LENGTH)),
        # in data pixels: a PSF sampled E times finer measures E times its FWHM
        psf_fwhm=None if psf is None else measure_fwhm(psf) / psf_sampling,
    )
    for i in np.flatnonzero(finite & (q_flags != 0)):
        flags[i] |= int(q_flags[i])
        messages[i].append(q_messages[i])


def near_bound(model: Model, theta: Tensor) -> list[list[str]]:
    """Free parameters within 0.1 % of a bound, judged in the space that is fitted (:meth:`Model.near_bound`)."""
    names = model.free_names()
    close = model.near_bound(theta).cpu().numpy()
    return [[names[j] for j in np.flatnonzero(row)] for row in close]


def take_back_psf_size(batches: list[Batch], psf_sampling: int, flags, messages) -> None:
    """Clear ``psf_larger_than_cutout`` (in place) where a PSF sampled E times finer fits every cutout.

    Reading compares a stamp's samples with the cutout's pixels; the fit knows
    how many samples a pixel holds.
    """
    if psf_sampling <= 1 or any(b.psf is None or psf_exceeds_cutout(b.psf.shape, b.image.shape, psf_sampling)
                                for b in batches):
        return
    for i in np.flatnonzero(flags & int(Flag.psf_larger_than_cutout)):
        flags[i] &= ~int(Flag.psf_larger_than_cutout)
        messages[i] = [m for m in messages[i] if LARGER_THAN_CUTOUT not in m]


def mark_psf_undersampled(psf_bias, finite, flags, messages) -> None:
    """``psf_undersampled`` and its message (in place) where :func:`psf_sampling_bias` passes the limit."""
    if psf_bias is None:
        return
    bias, snr, aliasing = psf_bias
    for i in np.flatnonzero(finite & (bias > PSF_BIAS_LIMIT)):
        flags[i] |= int(Flag.psf_undersampled)
        messages[i].append(
            f"the PSF aliases ({aliasing[i]:.2g} of its spectrum at the sampling band's edge) and this galaxy "
            f"(S/N {snr[i]:.0f}) is compact enough that drawing it with that PSF may bias it by up to about "
            f"{bias[i]:.1f} errors: give the PSF finer (RenderSettings(psf_oversampling=E))")


def worst_psf_bias(per_band):
    """The band whose :func:`psf_sampling_bias` is largest, per galaxy (None where no band was judged)."""
    judged = [b for b in per_band if b is not None]
    if not judged:
        return None
    stacked = [np.stack(parts) for parts in zip(*judged)]  # bias, snr, aliasing: (bands, B) each
    worst = np.argmax(stacked[0], axis=0)
    return tuple(part[worst, np.arange(part.shape[1])] for part in stacked)


def _band_edge_share(images: np.ndarray) -> np.ndarray:
    """The largest modulus of each image's DFT (B, h, w) at the sampling band's edge, over its sum."""
    spectrum = np.abs(np.fft.fft2(images))
    h, w = images.shape[-2:]
    rows, cols = [h // 2, (h + 1) // 2 % h], [w // 2, (w + 1) // 2 % w]
    edge = np.maximum(spectrum[:, rows, :].max(axis=(1, 2)), spectrum[:, :, cols].max(axis=(1, 2)))
    total = np.abs(images.sum(axis=(1, 2)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, edge / total, np.nan)


def psf_sampling_bias(objective, theta: Tensor, psf_sampling: int = 1):
    """How far a PSF given at the pixels' sampling may bias each galaxy, in units of its errors.

    A PSF's samples are read as band-limited (:mod:`galmoss.render.psf`); a PSF
    narrower than about two pixels is not, and the light its spectrum has beyond
    the band comes back aliased. A galaxy's model is then misdrawn by about the
    product of the PSF's spectrum at the band's edge and the galaxy's own
    (unconvolved, integrated over pixels), both relative to their totals: at a
    signal-to-noise S/N the fitted values move by up to about S/N times that, in
    errors. Returns ``(bias, snr, aliasing)`` arrays (B,) for the batch, or None
    when the PSF is given finer than the pixels or there is none.
    """
    from ..profiles.point_source import PointSource
    from ..render.renderer import Renderer

    renderer = objective.renderer
    if psf_sampling > 1 or getattr(renderer, "psf", None) is None:
        return None
    count = theta.shape[0]
    aliasing = np.broadcast_to(_band_edge_share(renderer.psf.detach().double().cpu().numpy()), (count,)).copy()
    # the target's own components: a fitted neighbour is another source, judged by its own fit
    neighbours = set(objective.model.neighbour_components)
    convolved = {name: p for name, p in objective.model.profiles.items() if p.psf and name not in neighbours}
    bias = np.zeros(count)
    snr = np.full(count, np.nan)
    if not convolved:
        return bias, snr, aliasing
    with torch.no_grad():
        index = torch.arange(count, device=theta.device)
        rows = objective._rows(index)
        weight, sigma = objective.weight[index], objective.sigma[rows]
        # the data's own S/N (sky and noise in it) bounds the galaxy's: most batches stop here
        bound = torch.sqrt((weight * (objective.data[rows] / sigma) ** 2).flatten(1).sum(1)).double().cpu().numpy()
        if not np.any(np.nan_to_num(bound) * aliasing > PSF_BIAS_LIMIT):
            return bias, snr, aliasing
        _, parts = objective.model_images(theta, index, components=True)
        light = sum(parts[name] for name in convolved)
        snr = torch.sqrt((weight * (light / sigma) ** 2).flatten(1).sum(1)).double().cpu().numpy()
        # only where the galaxy's own spectrum could make it matter (its share is at most 1)
        judged = np.flatnonzero(np.isfinite(snr) & (snr * aliasing > PSF_BIAS_LIMIT))
        if judged.size:
            pick = torch.as_tensor(judged, device=theta.device)
            values = objective.model.values(theta[pick], {k: v[pick] for k, v in objective.fixed.items()})
            # a point source's spectrum is flat: its whole flux reaches the band's edge
            points = {name: p for name, p in convolved.items() if isinstance(p, PointSource)}
            extended = {name: p for name, p in convolved.items() if name not in points}
            point_flux = sum((parts[name][pick].flatten(1).sum(1).abs().double().cpu().numpy() for name in points),
                             np.zeros(judged.size))
            edge, total = point_flux.copy(), point_flux.copy()
            if extended:
                plain = Renderer(tuple(light.shape[-2:]), None, dtype=light.dtype, device=light.device,
                                 settings=renderer.settings)
                own = plain(extended, values).double().cpu().numpy()
                edge += np.nan_to_num(_band_edge_share(own)) * np.abs(own.sum(axis=(1, 2)))
                total += np.abs(own.sum(axis=(1, 2)))
            with np.errstate(divide="ignore", invalid="ignore"):
                share = np.where(total > 0, edge / total, 0.0)
            bias[judged] = snr[judged] * aliasing[judged] * share
    return bias, snr, aliasing
