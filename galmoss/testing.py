"""The contract every light profile keeps, as a test users can run on their own.

>>> import galmoss as gm
>>> from galmoss.testing import check_profile
>>> report = check_profile(my_profile, shape=(48, 48))   # raises AssertionError on failure

The checks, each against an independent truth:

* every parameter the profile holds is declared in its ``parameter_specs`` (a
  misspelt key would silently fit the slot as an unbounded real number);
* the image is finite (and non-negative, for profiles that promise it);
* for elliptical profiles, the analytic integral used to turn a magnitude into an
  amplitude equals a numerical quadrature of the profile (relative 1e-6);
* turning every position angle by 180 degrees leaves the image unchanged;
* galaxies in a batch are independent: each row equals the image of that galaxy
  rendered alone, and changing one galaxy's parameters changes no other row;
* float32 and float64 images agree (relative 1e-4 of the peak);
* gradients are finite, and forward-mode derivatives match central finite
  differences in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ._compat import prepare_forward_mode
from .params import Role
from .profiles.base import EllipticalProfile, LightProfile, box_area_factor, parameter_units, parameter_uses
from .render import Renderer, start_tensors


@dataclass
class ProfileReport:
    """Numbers measured by :func:`check_profile` (for logs and docs)."""

    name: str
    measurements: dict[str, float] = field(default_factory=dict)


def _radial_integral_numeric(profile: EllipticalProfile, v: dict[str, torch.Tensor], i: int) -> float:
    """2 pi int_0^inf f(r) r dr for galaxy i, by adaptive quadrature (scipy)."""
    from scipy.integrate import quad

    vi = {k: t[i : i + 1] for k, t in v.items()}

    def integrand(r: float) -> float:
        rr = torch.tensor([[[r]]], dtype=torch.float64)
        return float(profile.profile_function(rr, vi)) * r

    r_trunc = profile.truncation_radius(vi)
    if r_trunc is not None:
        upper = float(r_trunc)
        total, _ = quad(integrand, 0.0, upper, limit=400, epsabs=0.0, epsrel=1e-11)
    else:
        # Integrate over growing shells until they stop contributing.
        total, lo, width = 0.0, 0.0, 1.0
        for _ in range(200):
            part, _ = quad(integrand, lo, lo + width, limit=200, epsabs=0.0, epsrel=1e-11)
            total += part
            lo += width
            width *= 1.5
            if abs(part) < 1e-15 * abs(total):
                break
    return 2.0 * math.pi * total


def check_profile(
    profile: LightProfile,
    shape: tuple[int, int] = (48, 48),
    psf=None,
    *,
    nonnegative: bool = True,
    name: str | None = None,
) -> ProfileReport:
    """Run the profile contract on ``profile`` at its parameters' start values.

    Give the parameters several values (a batch of galaxies) to exercise batch
    independence; scalars are fine for the other checks.

    Parameters
    ----------
    profile
        Any :class:`~galmoss.LightProfile` whose parameters hold start values.
    shape
        Image shape to render.
    psf
        Optional PSF image (h, w).
    nonnegative
        Whether the profile promises non-negative images.
    name
        Label used in messages.

    Returns
    -------
    ProfileReport
        The measured quantities (relative errors and differences).

    Raises
    ------
    AssertionError
        Naming the check that failed and the measured number.
    """
    label = name or type(profile).__name__
    report = ProfileReport(label)
    profiles = {label: profile}
    # a slot whose name is misspelt in parameter_specs would be fitted as a plain real number
    undeclared = sorted(set(profile.parameters()) - set(profile.parameter_specs)) if profile.parameter_specs else []
    assert not undeclared, (
        f"{label}: parameter(s) {', '.join(undeclared)} have no entry in {type(profile).__name__}.parameter_specs "
        f"(declared: {', '.join(profile.parameter_specs)}); a misspelt key makes the slot an unbounded real number"
    )
    uses = parameter_uses(profiles)
    lengths = {prm.param_length for prm in uses} - {1}
    batch = lengths.pop() if lengths else 1
    r64 = Renderer(shape, psf, dtype=torch.float64)
    r32 = Renderer(shape, psf, dtype=torch.float32)
    values = start_tensors(uses, batch, torch.float64, units=parameter_units(profiles))
    image = r64(profiles, values)

    # finite, non-negative
    assert bool(torch.isfinite(image).all()), f"{label}: the image has non-finite pixels"
    peak = float(image.abs().max())
    assert peak > 0, f"{label}: the image is identically zero"
    if nonnegative:
        most_negative = float(image.min()) / peak
        report.measurements["most_negative_over_peak"] = most_negative
        assert most_negative > -1e-3, f"{label}: image has values down to {most_negative:.2e} of its peak"

    # analytic integral vs quadrature
    if isinstance(profile, EllipticalProfile):
        v = {slot: values[prm] for slot, prm in profile.parameters().items()}
        analytic = profile.circular_integral(v).reshape(-1)
        worst = 0.0
        for i in range(batch):
            numeric = _radial_integral_numeric(profile, v, i)
            worst = max(worst, abs(float(analytic[i if analytic.numel() > 1 else 0]) / numeric - 1.0))
        report.measurements["flux_integral_relative_error"] = worst
        assert worst < 1e-6, f"{label}: analytic profile integral differs from quadrature by {worst:.2e} (relative)"
        # the amplitude reproduces the total flux implied by the magnitude
        amp = profile.amplitude(v)
        implied = amp * v["axis_r"] * profile.circular_integral(v) * box_area_factor(2.0 + v["box"])
        flux_err = float((implied / profile.total_flux(v) - 1.0).abs().max())
        assert flux_err < 1e-10, f"{label}: amplitude does not reproduce the total flux ({flux_err:.2e})"

    # position angle + 180 degrees
    angles = [prm for prm, slots in uses.items() if any(profile.spec(s).role is Role.ANGLE for _, s in slots)]
    if angles:
        turned = dict(values)
        for prm in angles:
            turned[prm] = values[prm] + math.pi
        diff = float((r64(profiles, turned) - image).abs().max()) / peak
        report.measurements["pa_plus_180_difference"] = diff
        assert diff < 1e-9, f"{label}: turning the position angle by 180 degrees changes the image by {diff:.2e} of the peak"

    # batch independence
    if batch > 1:
        worst = 0.0
        for i in range(batch):
            alone = r64(profiles, {prm: t[i : i + 1] if t.shape[0] > 1 else t for prm, t in values.items()})
            worst = max(worst, float((alone[0] - image[i]).abs().max()) / peak)
        report.measurements["batch_vs_alone_difference"] = worst
        assert worst < 1e-10, f"{label}: a galaxy rendered in a batch differs from it rendered alone by {worst:.2e}"
        moved = {prm: t.clone() for prm, t in values.items()}
        for t in moved.values():
            if t.shape[0] > 1:
                t[0] = t[0] * 1.01 + 0.01
        changed = r64(profiles, moved)
        leak = float((changed[1:] - image[1:]).abs().max()) / peak
        assert leak < 1e-10, f"{label}: changing galaxy 0 changed other galaxies by {leak:.2e}"

    # float32 vs float64
    values32 = {prm: t.float() for prm, t in values.items()}
    diff32 = float((r32(profiles, values32).double() - image).abs().max()) / peak
    report.measurements["float32_vs_float64"] = diff32
    assert diff32 < 1e-4, f"{label}: float32 and float64 images differ by {diff32:.2e} of the peak"

    # gradients: finite, and forward mode equals finite differences
    free = [prm for prm in uses if prm.fit]
    if free:
        leaves = {prm: t.clone().requires_grad_(prm in free) for prm, t in values.items()}
        r64(profiles, leaves).square().sum().backward()
        for prm in free:
            grad = leaves[prm].grad
            assert grad is not None and bool(torch.isfinite(grad).all()), f"{label}: non-finite gradient for {prm!r}"
        gen = torch.Generator().manual_seed(0)
        direction = {prm: torch.randn(values[prm].shape, generator=gen, dtype=torch.float64) * _step_scale(values[prm]) for prm in free}

        def along(eps):
            return r64(profiles, {prm: t + eps * direction[prm] if prm in direction else t for prm, t in values.items()})

        prepare_forward_mode()
        _, tangent = torch.func.jvp(along, (torch.zeros((), dtype=torch.float64),), (torch.ones((), dtype=torch.float64),))
        h = 1e-5
        fd = (along(h) - along(-h)) / (2 * h)
        scale = float(fd.abs().max())
        err = float((tangent - fd).abs().max()) / max(scale, 1e-300)
        report.measurements["jvp_vs_finite_difference"] = err
        assert bool(torch.isfinite(tangent).all()), f"{label}: forward-mode derivative is not finite"
        # 1e-3: finite differences of profiles with sharp truncations (Ferrer with
        # alpha < 1) are themselves only that good; a wrong derivative is off by O(1).
        assert err < 1e-3, f"{label}: forward-mode derivative differs from finite differences by {err:.2e}"
    return report


def _step_scale(t: torch.Tensor) -> torch.Tensor:
    # perturb each parameter by a few percent of its size (at least 0.01)
    return torch.clamp(t.abs() * 0.02, min=0.01)
