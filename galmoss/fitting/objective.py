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
from .priors import PriorRows

Tensor = torch.Tensor


#: Pixels a cutout may have for the objective to draw its batch with a spare galaxy
#: (:meth:`BatchObjective._with_spare`); 512 x 512
SPARE_PIXELS = 512 * 512


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
    #: bytes the tangents of one forward-mode pass may take (the large-P route of
    #: vector parameters, :meth:`normal_equations`)
    tangent_memory: int = 256 * 2**20
    #: large-P route: hold J of a chunk of galaxies and multiply (True), or build
    #: J^T J by reverse passes (False); None: hold it when it fits tangent_memory
    hold_jacobian: bool | None = None
    #: the model's priors as residual rows (None: no prior), :mod:`galmoss.fitting.priors`
    priors: PriorRows | None = None

    def _rows(self, index: Tensor) -> Tensor:
        return index if self.galaxy is None else self.galaxy[index]

    def _with_spare(self, theta: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        """``theta``, ``index`` with their last galaxy repeated, its results to be dropped by the caller.

        torch's CPU loops finish a tensor with scalar code that rounds differently from
        their vector code; a spare galaxy at the end keeps every real galaxy's values off
        that remainder, so that a galaxy is drawn alike wherever it sits in a batch
        (galmoss/batched.py). A frame beyond :data:`SPARE_PIXELS` is drawn without one:
        it would cost a second frame, and the memory check fits such frames a few at a time.
        """
        if len(index) and self.data[0].numel() <= SPARE_PIXELS:
            return torch.cat([theta, theta[-1:]]), torch.cat([index, index[-1:]])
        return theta, index

    def model_images(self, theta: Tensor, index: Tensor, components: bool = False):
        """Model images (b, H, W) of rows ``index`` at ``theta`` (b, P)."""
        count = len(index)
        theta, index = self._with_spare(theta, index)
        fixed = {k: v[index] for k, v in self.fixed.items()}
        values = self.model.values(theta, fixed)
        out = self.renderer(self.model.profiles, values, index=self._rows(index), components=components)
        if components:
            return out[0][:count], {k: v[:count] for k, v in out[1].items()}
        return out[:count]

    def residuals(self, theta: Tensor, index: Tensor) -> Tensor:
        rows = self._rows(index)
        model = self.model_images(theta, index)
        r = self.likelihood.residuals(self.data[rows], model, self.sigma[rows], self.weight[index])
        r = r.reshape(r.shape[0], -1)
        if self.priors is None:
            return r
        return torch.cat([r, self.priors.residuals(theta, self._fixed(index), rows).to(r.dtype)], dim=1)

    def _fixed(self, index: Tensor) -> dict[Parameter, Tensor]:
        return {k: v[index] for k, v in self.fixed.items()}

    def prior_term(self, theta: Tensor, index: Tensor) -> Tensor:
        """``-2 ln(prior)`` up to a constant (b,): the part of the objective that is not the likelihood's."""
        if self.priors is None:
            return theta.new_zeros(theta.shape[0])
        with torch.no_grad():
            r = self.priors.residuals(theta, self._fixed(index), self._rows(index))
        return (r.double() ** 2).sum(dim=1)

    def _prior_normal_equations(self, theta: Tensor, index: Tensor):
        """The prior rows' ``J_p^T J_p``, ``J_p^T r_p`` (float64) and ``sum r_p^2``."""
        r, jac = self.priors.residuals_and_jacobian(theta, self._fixed(index), self._rows(index))
        r, jac = r.double(), jac.double()
        return (torch.bmm(jac.transpose(1, 2), jac), torch.bmm(jac.transpose(1, 2), r.unsqueeze(-1)).squeeze(-1),
                (r**2).sum(dim=1))

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
        if self.model.has_vectors:
            # vector parameters (K values a slot) take the general route in chunks of columns
            return self._chunked_jacobian(theta, index)
        structured = self.renderer.structured(self.model.profiles)
        if self.model.ties or structured is None:
            # a tied slot's derivative belongs to its base's and link's columns, and a model
            # drawn on a finer PSF's grid has no data-grid spectra: the general route
            # differentiates through Model.values and the rendering
            return self._forward_jacobian(lambda t, ix: self.model_images(t, ix).reshape(t.shape[0], -1), theta, index)
        prepare_forward_mode()
        images, jacobians = [], []
        for start in range(0, theta.shape[0], self.jacobian_chunk):
            th, ix = theta[start : start + self.jacobian_chunk], index[start : start + self.jacobian_chunk]
            m, j = self._model_and_jacobian_chunk(*self._with_spare(th, ix), structured)
            images.append(m[: len(ix)])
            jacobians.append(j[: len(ix)])
        return torch.cat(images), torch.cat(jacobians)

    def _model_and_jacobian_chunk(self, theta: Tensor, index: Tensor, renderer) -> tuple[Tensor, Tensor]:
        model = self.model
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
            pixel = None
            if not (renderer.psf_hat is not None and profile.psf) and _pixel_structured(profile, values):
                # integrated over pixels (no PSF): every column but the magnitude's written out
                pixel = [(slot, prm) for slot, prm in params.items()
                         if prm in column_of and slot != profile.amplitude_parameter]
                got = renderer.pixel_image_and_derivatives(profile, values, [slot for slot, _ in pixel], index=rows)
                if got is None:
                    pixel = None
            if pixel is not None:
                spectrum, plain = None, got[0]
                for (_, prm), derivative in zip(pixel, got[1]):
                    add(column_of[prm], derivative)
                shape = pixel
            elif shape and renderer.psf_hat is not None and profile.psf:
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
                    add(column_of[prm], renderer.shift_derivative(spectrum, kind))
                handled.add(slot)
            rest = [(slot, prm) for slot, prm in params.items() if prm in column_of and slot not in handled]
            if rest:
                tangents = self._component_tangents(renderer, name, profile, values, rest, rows)
                for j, tangent in zip([column_of[prm] for _, prm in rest], tangents):
                    add(j, tangent)
        b = theta.shape[0]
        jac = torch.stack(
            [c if c is not None else torch.zeros_like(total) for c in columns], dim=-1
        ) if columns else total.new_zeros(total.shape + (0,))
        jac = jac.reshape(b, -1, len(columns)) * model.value_derivatives(theta)[:, None, :].to(jac.dtype)
        return total.reshape(b, -1), jac

    def _component_tangents(self, renderer, name, profile, values, rest, rows) -> Tensor:
        """Forward-mode derivatives (R, b, H, W) of one component's image w.r.t. ``rest``."""
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

    # ----------------------------------------------- large P (vector parameters)
    # The components that hold a vector parameter are differentiated by forward
    # mode through their own image only, in chunks of columns; the others keep
    # the structured Jacobian above (a sub-model of the scalar components), so
    # a Sersic next to a 1,000-pixel map costs its 7 columns, not 1,000 tangents
    # through its rendering.
    def tangent_bytes(self) -> int:
        """Memory one forward-mode tangent of one galaxy takes while rendering (an estimate).

        About a dozen images of the FFT box (real and complex intermediates of
        the profile, the convolution and the residuals) in the fit's dtype.
        """
        n, m = self.renderer.layout.fft_shape
        return 12 * n * m * self.data.element_size()

    def _chunks(self, n_par: int) -> tuple[int, int]:
        """(galaxies, columns) per forward-mode pass so that their tangents fit :attr:`tangent_memory`."""
        per = self.tangent_bytes()
        columns = max(1, min(n_par, self.tangent_memory // per))
        galaxies = max(1, min(self.jacobian_chunk, self.tangent_memory // (per * columns)))
        return galaxies, columns

    def _split(self):
        """(scalar sub-objective or None, its theta columns, vector components, their theta columns), cached."""
        cached = getattr(self, "_split_cache", None)
        if cached is not None:
            return cached
        model = self.model
        vector = {n: p for n, p in model.profiles.items() if any(q.is_vector for q in p.parameters().values())}
        scalar = {n: p for n, p in model.profiles.items() if n not in vector}
        sub, cols_s = None, []
        if scalar and not model.ties:
            sub_model = Model(scalar)
            sub = BatchObjective(
                model=sub_model, renderer=self.renderer, likelihood=self.likelihood, data=self.data,
                sigma=self.sigma, weight=self.weight, fixed={k: v for k, v in self.fixed.items() if k in sub_model.fixed},
                galaxy=self.galaxy, jacobian_chunk=self.jacobian_chunk,
            )
            cols_s = [j for prm in sub_model.free for j in range(*model.slices[prm].indices(model.n_free))]
        if model.ties:
            # a tie couples columns across components, and its base and link belong to no
            # profile: everything takes the vector route, every column
            vector = dict(model.profiles)
            cols_v = list(range(model.n_free))
        else:
            used = {prm for p in vector.values() for prm in p.parameters().values()}
            cols_v = [j for prm in model.free if prm in used for j in range(*model.slices[prm].indices(model.n_free))]
        self._split_cache = (sub, cols_s, vector, cols_v)
        return self._split_cache

    def _vector_pieces(self, th: Tensor, ix: Tensor):
        """Model (b, M), residuals r, dr/dm, J_s (b, M, P_s) or None, and the vector components' image function."""
        sub, cols_s, vector, cols_v = self._split()
        rows = self._rows(ix)
        fixed = {k: v[ix] for k, v in self.fixed.items()}

        def g(t):
            image = self.renderer(vector, self.model.values(t, fixed), index=rows)
            return image.reshape(t.shape[0], -1)

        with torch.no_grad():
            model = g(th)
        js = None
        if sub is not None:
            m_s, js = sub.model_and_jacobian(th[:, cols_s], ix)
            model = model + m_s.detach()
            js = js.detach()
        shape = model.shape
        r, dr_dm = self.likelihood.residuals_and_slope(
            self.data[rows].reshape(shape), model, self.sigma[rows].reshape(shape), self.weight[ix].reshape(shape)
        )
        return model, r.detach(), dr_dm.detach(), js, g

    def _column_block(self, fn, th: Tensor, cols: list[int]) -> Tensor:
        """``d fn / d theta[:, cols]`` as (len(cols), b, M), by forward mode."""
        basis = torch.zeros((len(cols), th.shape[0], th.shape[1]), dtype=th.dtype, device=th.device)
        basis[torch.arange(len(cols)), :, torch.as_tensor(cols, dtype=torch.long)] = 1.0
        return torch.func.vmap(lambda t: torch.func.jvp(fn, (th,), (t,))[1])(basis)

    def _blocks(self, th: Tensor, js: Tensor | None, g, per_pass: int):
        """(columns, J_m[:, :, columns] as (n, b, M)) over every column of theta, chunk by chunk."""
        _, cols_s, _, cols_v = self._split()
        pos_s = {j: i for i, j in enumerate(cols_s)}
        in_v = set(cols_v)
        only_s = [j for j in cols_s if j not in in_v]
        for c0 in range(0, len(only_s), per_pass):
            cols = only_s[c0 : c0 + per_pass]
            yield cols, js[:, :, [pos_s[j] for j in cols]].permute(2, 0, 1)
        for c0 in range(0, len(cols_v), per_pass):
            cols = cols_v[c0 : c0 + per_pass]
            block = self._column_block(g, th, cols).detach()
            for i, j in enumerate(cols):
                if j in pos_s:  # a parameter shared by a vector and a scalar component
                    block[i] = block[i] + js[:, :, pos_s[j]]
            yield cols, block

    def _chunked_jacobian(self, theta: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        """Model images (b, M) and their Jacobian (b, M, P), in chunks of galaxies and columns."""
        prepare_forward_mode()
        n_par = theta.shape[1]
        per_galaxy, per_pass = self._chunks(n_par)
        images, jacobians = [], []
        for g0 in range(0, theta.shape[0], per_galaxy):
            th, ix = theta[g0 : g0 + per_galaxy], index[g0 : g0 + per_galaxy]
            model, _, _, js, g = self._vector_pieces(th, ix)
            jac = model.new_zeros(model.shape + (n_par,))
            for cols, block in self._blocks(th, js, g, per_pass):
                jac[:, :, cols] = block.permute(1, 2, 0)
            images.append(model)
            jacobians.append(jac)
        return torch.cat(images), torch.cat(jacobians)

    def normal_equations(self, theta: Tensor, index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``J^T J`` (b, P, P) and ``J^T r`` (b, P) in float64, and ``sum r^2`` (b,), never holding J whole.

        ``J = D J_m``, D the derivative of the likelihood's residuals by the
        model. For each chunk of columns the block ``J_c`` (b, M, P_c) comes by
        forward mode through the vector components (the scalar components'
        columns from their structured Jacobian, held: a few columns); ``J^T r``
        takes it at once, and the block row ``J_c^T J`` is ``J_c^T D J_s`` plus
        one reverse-mode pass of the vector components per column of the
        chunk. Memory: the tangents of one chunk (:attr:`tangent_memory`), M x
        P_s for the scalar columns and P x P float64 per galaxy; nothing of
        size M x P -- unless P <= 64 and J of a chunk of galaxies fits in
        :attr:`tangent_memory` in float64, when it is held and multiplied (one
        matrix product, M P^2, instead of P reverse passes).
        """
        from .lm import sum_of_squares

        prepare_forward_mode()
        n_par = theta.shape[1]
        _, cols_s, _, cols_v = self._split()
        per_galaxy, per_pass = self._chunks(n_par)
        a_rows, g_rows, s_rows = [], [], []
        for g0 in range(0, theta.shape[0], per_galaxy):
            th, ix = theta[g0 : g0 + per_galaxy], index[g0 : g0 + per_galaxy]
            _, r, d, js, g = self._vector_pieces(th, ix)
            hold = self.hold_jacobian
            if hold is None:
                # J^T J by a product costs M P^2, by reverse passes P passes of the vector
                # components (tens of operations a pixel): the product wins only at small P
                hold = n_par <= 64 and r.numel() * n_par * 8 <= self.tangent_memory
            if hold:
                # J itself is small (a small cutout or few columns): hold it and multiply
                jac = r.new_empty(r.shape + (n_par,))
                for cols, block in self._blocks(th, js, g, per_pass):
                    jac[:, :, cols] = (block * d.unsqueeze(0)).permute(1, 2, 0)
                jac = jac.double()
                a_rows.append(torch.bmm(jac.transpose(1, 2), jac))
                g_rows.append(torch.bmm(jac.transpose(1, 2), r.double().unsqueeze(-1)).squeeze(-1))
                s_rows.append(sum_of_squares(r))
                continue
            djs = None if js is None else (d.unsqueeze(-1) * js).double()
            pullback = torch.func.vjp(g, th)[1] if cols_v else None
            b = th.shape[0]
            a = torch.zeros((b, n_par, n_par), dtype=torch.float64, device=th.device)
            grad = torch.zeros((b, n_par), dtype=torch.float64, device=th.device)
            s_index = torch.as_tensor(cols_s, dtype=torch.long, device=th.device)
            for cols, block in self._blocks(th, js, g, per_pass):
                block = block * d.unsqueeze(0)  # rows of J = D J_m
                at = torch.as_tensor(cols, dtype=torch.long, device=th.device)
                grad[:, at] = torch.einsum("pbm,bm->bp", block.double(), r.double())
                if pullback is not None:  # J_c^T D J_v: reverse mode through the vector components
                    a[:, at, :] += torch.func.vmap(pullback)(block * d.unsqueeze(0))[0].permute(1, 0, 2).double()
                if djs is not None:  # J_c^T D J_s: the scalar columns are at hand
                    a[:, at[:, None], s_index[None, :]] += torch.einsum("pbm,bmq->bpq", block.double(), djs)
            a_rows.append(0.5 * (a + a.transpose(1, 2)))  # exact up to round-off; keep it symmetric
            g_rows.append(grad)
            s_rows.append(sum_of_squares(r))
        a, grad, s = torch.cat(a_rows), torch.cat(g_rows), torch.cat(s_rows)
        if self.priors is not None:
            pa, pg, ps = self._prior_normal_equations(theta, index)
            a, grad, s = a + pa, grad + pg, s + ps.to(s.dtype)
        return a, grad, s

    def residuals_and_jacobian(self, theta: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        rows = self._rows(index)
        model, jac = self.model_and_jacobian(theta, index)
        shape = model.shape

        r, dr_dm = self.likelihood.residuals_and_slope(
            self.data[rows].reshape(shape), model, self.sigma[rows].reshape(shape), self.weight[index].reshape(shape)
        )
        jac = dr_dm.unsqueeze(-1) * jac
        if self.priors is None:
            return r, jac
        rp, jp = self.priors.residuals_and_jacobian(theta, self._fixed(index), rows)
        return torch.cat([r, rp.to(r.dtype)], dim=1), torch.cat([jac, jp.to(jac.dtype)], dim=1)

    def fisher(self, theta: Tensor, index: Tensor) -> Tensor:
        """Fisher information ``J_m^T diag(w) J_m`` (b, P, P) of the model at ``theta``."""
        rows = self._rows(index)
        model, jac = self.model_and_jacobian(theta, index)
        w = self.likelihood.fisher_weights(
            self.data[rows].reshape(model.shape), model, self.sigma[rows].reshape(model.shape), self.weight[index].reshape(model.shape)
        )
        jac = jac.double()
        fisher = torch.einsum("bmp,bm,bmq->bpq", jac, w.double(), jac)
        if self.priors is not None:  # the posterior's curvature: the prior's adds to the data's
            fisher = fisher + self._prior_normal_equations(theta, index)[0]
        return fisher


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
    return isinstance(profile, EllipticalProfile) and type(profile).builtin_radius()


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


def _pixel_structured(profile, values) -> bool:
    """Whether a component drawn without a PSF takes written-out columns (``Renderer.pixel_image_and_derivatives``).

    Elliptical (not boxy) isophotes through the built-in radius, no truncation
    radius (which moves the window), no parameter object in two slots.
    """
    if not isinstance(profile, EllipticalProfile) or not _builtin_radius(profile) or not box_is_zero(profile):
        return False
    params = profile.parameters()
    if len({id(p) for p in params.values()}) != len(params):
        return False
    return profile.truncation_radius({k: values[p] for k, p in params.items()}) is None


def _builtin_total_flux(profile):
    """The built-in magnitude-to-flux map (a subclass overriding it loses the shortcut)."""
    return EllipticalProfile.total_flux if isinstance(profile, EllipticalProfile) else PointSource.total_flux
