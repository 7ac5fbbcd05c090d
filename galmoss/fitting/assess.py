"""Quality assessment of a batch fit: the per-galaxy flags and messages of :mod:`galmoss.flags`.

Starts outside a profile's domain (``bad_start``), how the solver ended
(``no_convergence``, ``non_finite``), values near a bound, too few pixels, and
the quality flags that never hide a bad fit (:mod:`galmoss.auto.quality`).
"""

from __future__ import annotations

import numpy as np
import torch

from ..flags import Flag
from ..model import Model
from ..params import Role
from .records import Batch
from .status import decode_status

__all__ = ["assess", "check_starts", "near_bound"]

Tensor = torch.Tensor


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
           dof: np.ndarray, status: np.ndarray, converged: np.ndarray, chi2: bool, psf_sampling: int = 1):
    """The flags and messages of a fitted batch: the reading flags plus the fit's (see the module).

    ``psf_sampling``: the PSF's samples per data pixel (``RenderSettings.psf_oversampling``).
    """
    finite = np.isfinite(loss)
    near = near_bound(model, theta)
    flags = batch.flags.copy()
    messages = [list(m) for m in batch.messages]
    for i in range(len(batch)):
        if not converged[i]:
            flags[i] |= int(Flag.non_finite if not finite[i] else Flag.no_convergence)
            messages[i].append(decode_status(int(status[i])))
        if near[i]:
            flags[i] |= int(Flag.near_bound)
            messages[i].append(AT_BOUND_NOTE + ", ".join(near[i]))
        if finite[i] and dof[i] <= 0:
            flags[i] |= int(Flag.no_dof)
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
