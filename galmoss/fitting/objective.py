"""The objective of one batch: data, a renderer and a model, as functions of theta.

This is where profiles meet data: residuals ``r(theta)`` (b, M) of the galaxies
``index`` of a batch, their forward-mode Jacobians through the PSF convolution,
and the Fisher information at a solution. The optimisers see only the functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import math

import torch

from .._compat import prepare_forward_mode
from ..model import Model
from ..params import Parameter
from ..profiles.base import EllipticalProfile, LightProfile
from ..profiles.point_source import PointSource
from ..render import Renderer
from ..render.renderer import box_is_zero
from .likelihoods import Likelihood

Tensor = torch.Tensor


@dataclass
class BatchObjective:
    """Residuals of a batch of galaxies.

    Attributes
    ----------
    model, renderer, likelihood
        What is fitted, how it is drawn, and the noise model.
    data, sigma, weight
        (B, H, W) tensors; ``weight`` is 1 for used pixels, 0 for masked ones (or a
        bootstrap count).
    fixed
        Profile-unit values (B, 1, 1) of the fixed parameters.
    galaxy
        For each row, the row of ``data`` (and PSF) it fits; lets bootstrap
        replicas share one copy of the data. None: row i fits galaxy i.
    jacobian_chunk
        Galaxies per forward-mode pass (bounds the memory of P tangents).
    """

    model: Model
    renderer: Renderer
    likelihood: Likelihood
    data: Tensor
    sigma: Tensor
    weight: Tensor
    fixed: dict[Parameter, Tensor]
    galaxy: Tensor | None = None
    jacobian_chunk: int = 64

    def _rows(self, index: Tensor) -> Tensor:
        return index if self.galaxy is None else self.galaxy[index]

    def model_images(self, theta: Tensor, index: Tensor, components: bool = False):
        """Model images (b, H, W) of rows ``index`` at ``theta`` (b, P)."""
        fixed = {k: v[index] for k, v in self.fixed.items()}
        values = self.model.values(theta, fixed)
        return self.renderer(self.model.profiles, values, index=self._rows(index), components=components)

    def residuals(self, theta: Tensor, index: Tensor) -> Tensor:
        rows = self._rows(index)
        model = self.model_images(theta, index)
        r = self.likelihood.residuals(self.data[rows], model, self.sigma[rows], self.weight[index])
        return r.reshape(r.shape[0], -1)

    def _forward_jacobian(self, fn, theta: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        """``fn(theta, index)`` (b, M) and its Jacobian (b, M, P), by forward mode in chunks.

        The general route (any profile, any parameter); kept as the reference the
        structured Jacobian is tested against.
        """
        prepare_forward_mode()
        n_par = theta.shape[1]
        values, jacobians = [], []
        for start in range(0, theta.shape[0], self.jacobian_chunk):
            th = theta[start : start + self.jacobian_chunk]
            ix = index[start : start + self.jacobian_chunk]
            basis = torch.eye(n_par, dtype=theta.dtype, device=theta.device)[:, None, :].expand(n_par, th.shape[0], n_par)

            def column(tangent, th=th, ix=ix):
                return torch.func.jvp(lambda t: fn(t, ix), (th,), (tangent,))

            value, jac = torch.func.vmap(column, out_dims=(None, 0))(basis)
            values.append(value)
            jacobians.append(jac.permute(1, 2, 0))
        return torch.cat(values), torch.cat(jacobians)

    def model_and_jacobian(self, theta: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        """Model images (b, M) and their Jacobian (b, M, P) with respect to ``theta``.

        Structured forward mode: each component is differentiated only with respect
        to its own parameters; a magnitude's column is the component's image times
        -0.4 ln 10 and a centre's column is the component's spectrum times -i k, both
        exact and almost free; shape parameters (r_e, n, ...) take forward mode
        through the profile function alone, mapped by the image's own linear map;
        only the geometry (PA, q, box) and user profiles take tangents through the
        whole rendering.
        """
        if self.model.ties or self.renderer.settings.psf_oversampling > 1:
            # a tied slot's derivative belongs to its base's and link's columns, and an
            # oversampled renderer (PSF finer than the data) has no data-grid spectra:
            # the general route differentiates through Model.values and the rendering
            return self._forward_jacobian(lambda t, ix: self.model_images(t, ix).reshape(t.shape[0], -1), theta, index)
        prepare_forward_mode()
        images, jacobians = [], []
        for start in range(0, theta.shape[0], self.jacobian_chunk):
            m, j = self._model_and_jacobian_chunk(theta[start : start + self.jacobian_chunk],
                                                  index[start : start + self.jacobian_chunk])
            images.append(m)
            jacobians.append(j)
        return torch.cat(images), torch.cat(jacobians)

    def _model_and_jacobian_chunk(self, theta: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        model, renderer = self.model, self.renderer
        rows = self._rows(index)
        values = model.values(theta, {k: v[index] for k, v in self.fixed.items()})
        column_of = {prm: j for j, prm in enumerate(model.free)}
        columns: list[Tensor | None] = [None] * len(model.free)

        def add(j: int, image: Tensor) -> None:
            columns[j] = image if columns[j] is None else columns[j] + image

        total = None
        for name, profile in model.profiles.items():
            params = profile.parameters()
            shape = [(slot, prm) for slot, prm in params.items() if prm in column_of and _is_shape_slot(profile, slot, values)]
            if shape and renderer.psf_hat is not None and profile.psf:
                spectrum, derivatives = renderer.spectrum_and_shape_derivatives(
                    profile, values, [slot for slot, _ in shape], index=rows
                )
                plain = None
                for (_, prm), derivative in zip(shape, derivatives):
                    add(column_of[prm], derivative)
            else:
                shape = []
                spectrum, plain = renderer.component_spectra({name: profile}, values, index=rows)[name]
            image = renderer.component_image(spectrum, plain)
            total = image if total is None else total + image
            shortcuts = _shortcut_slots(profile, spectrum is not None and plain is None, params)
            handled = {slot for slot, _ in shape}
            for slot, kind in shortcuts.items():
                prm = params[slot]
                if prm not in column_of:
                    continue
                if kind == "amplitude":
                    add(column_of[prm], _LN10_04 * image)
                else:
                    k = renderer.kx if kind == "x" else renderer.ky
                    add(column_of[prm], renderer.to_image(spectrum * (-1j * k)))
                handled.add(slot)
            rest = [(slot, prm) for slot, prm in params.items() if prm in column_of and slot not in handled]
            if rest:
                for j, tangent in zip([column_of[prm] for _, prm in rest], self._component_tangents(name, profile, values, rest, rows)):
                    add(j, tangent)
        b = theta.shape[0]
        jac = torch.stack(
            [c if c is not None else torch.zeros_like(total) for c in columns], dim=-1
        ) if columns else total.new_zeros(total.shape + (0,))
        jac = jac.reshape(b, -1, len(columns)) * model.value_derivatives(theta)[:, None, :].to(jac.dtype)
        return total.reshape(b, -1), jac

    def _component_tangents(self, name, profile, values, rest, rows) -> Tensor:
        """Forward-mode derivatives (R, b, H, W) of one component's image w.r.t. ``rest``."""
        renderer = self.renderer
        params = [prm for _, prm in rest]
        x0 = torch.stack([values[prm].reshape(-1) for prm in params], dim=1)  # (b, R)

        def image_of(x):
            vals = dict(values)
            for i, prm in enumerate(params):
                vals[prm] = x[:, i].reshape(-1, 1, 1)
            return renderer.component_image(*renderer.component_spectra({name: profile}, vals, index=rows)[name])

        r = len(params)
        basis = torch.eye(r, dtype=x0.dtype, device=x0.device)[:, None, :].expand(r, x0.shape[0], r)
        return torch.func.vmap(lambda t: torch.func.jvp(image_of, (x0,), (t,))[1])(basis)

    def residuals_and_jacobian(self, theta: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        rows = self._rows(index)
        model, jac = self.model_and_jacobian(theta, index)
        shape = model.shape

        r, dr_dm = self.likelihood.residuals_and_slope(
            self.data[rows].reshape(shape), model, self.sigma[rows].reshape(shape), self.weight[index].reshape(shape)
        )
        return r, dr_dm.unsqueeze(-1) * jac

    def fisher(self, theta: Tensor, index: Tensor) -> Tensor:
        """Fisher information ``J_m^T diag(w) J_m`` (b, P, P) of the model at ``theta``."""
        rows = self._rows(index)
        model, jac = self.model_and_jacobian(theta, index)
        w = self.likelihood.fisher_weights(
            self.data[rows].reshape(model.shape), model, self.sigma[rows].reshape(model.shape), self.weight[index].reshape(model.shape)
        )
        jac = jac.double()
        return torch.einsum("bmp,bm,bmq->bpq", jac, w.double(), jac)


_LN10_04 = -0.4 * math.log(10.0)


def _shortcut_slots(profile: LightProfile, has_spectrum: bool, params: dict) -> dict[str, str]:
    """Slots whose derivative needs no tangent: the magnitude, and the centre (shift)."""
    slots: dict[str, str] = {}
    if not isinstance(profile, (EllipticalProfile, PointSource)):
        return slots
    # a parameter object in two slots of one profile would need both derivatives:
    # leave such a profile to the general route
    if len({id(p) for p in params.values()}) != len(params):
        return slots
    amplitude = profile.amplitude_parameter if isinstance(profile, EllipticalProfile) else "mag"
    if amplitude in params and type(profile).total_flux is _builtin_total_flux(profile):
        slots[amplitude] = "amplitude"
    if has_spectrum:
        slots["cen_x"] = "x"
        slots["cen_y"] = "y"
    return slots


_GEOMETRY_SLOTS = frozenset({"cen_x", "cen_y", "pa", "axis_r", "box"})
_RADIUS_SLOTS = frozenset({"pa", "axis_r"})


def _builtin_radius(profile) -> bool:
    """Whether the profile keeps the built-in major/minor offsets and elliptical radius."""
    kind = type(profile)
    return (kind.major_minor is EllipticalProfile.major_minor
            and kind.elliptical_radius is EllipticalProfile.elliptical_radius)


def _is_shape_slot(profile, slot: str, values) -> bool:
    """Whether ``slot``'s column comes from :meth:`Renderer.spectrum_and_shape_derivatives`.

    A shape parameter only changes the profile function at fixed radii; the
    position angle and axis ratio move the radii, through the built-in
    elliptical radius only. Not the centre or the box, not the magnitude (its
    column is a shortcut), not a profile whose truncation radius moves the
    window, and not a parameter object used in two slots.
    """
    if not isinstance(profile, EllipticalProfile) or slot == profile.amplitude_parameter:
        return False
    if slot in _GEOMETRY_SLOTS and not (slot in _RADIUS_SLOTS and _builtin_radius(profile)):
        return False
    if not box_is_zero(profile):  # the boxy part is supersampled apart from the radii
        return False
    params = profile.parameters()
    if len({id(p) for p in params.values()}) != len(params):
        return False
    return profile.truncation_radius({k: values[p] for k, p in params.items()}) is None


def _builtin_total_flux(profile):
    """The built-in magnitude-to-flux map (a subclass overriding it loses the shortcut)."""
    return EllipticalProfile.total_flux if isinstance(profile, EllipticalProfile) else PointSource.total_flux
