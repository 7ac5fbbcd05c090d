"""Batched model images of a set of named profiles.

The :class:`Renderer` is built once per cutout shape and PSF (it owns the FFT
layout, the PSF spectrum, the grids and the quadrature tables) and is then
called with parameter values for a batch of galaxies. It is a pure function of
those values: differentiable, and usable under ``torch.func`` transforms
(forward-mode Jacobians for the optimiser).

How each kind of component is drawn:

* :class:`~galmoss.profiles.base.EllipticalProfile` -- exactly, as a smooth part
  sampled on the grid plus a sub-pixel core whose spectrum is computed
  analytically (:mod:`galmoss.render.core`);
* :class:`~galmoss.profiles.point_source.PointSource` -- a delta function, i.e. a
  phase ramp in Fourier space (the PSF shifted by band-limited interpolation);
* any other :class:`~galmoss.profiles.base.LightProfile` -- sampled at pixel
  centres through its ``image_via_grid_from``, or, for a profile that sets
  ``pixel_integrated = True`` (:class:`~galmoss.lp.EdgeDisk`), taken as pixel
  means: as they are without a PSF, divided by the pixel response in the band
  before the PSF (which holds the pixel) with one.

Components with ``psf=True`` are convolved with the PSF (which already holds
the pixel response). Without a PSF, or for an elliptical component with
``psf=False``, an elliptical profile is integrated exactly over each pixel
(:mod:`galmoss.render.pixel_integral`) and a grid-sampled profile gets the pixel
response applied to its band-limited spectrum. Grid-sampled components with
``psf=False`` (a sky) are added as they are.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from ..errors import ProfileOutputError
from ..params import Parameter, parameter_values
from ..profiles.base import EllipticalProfile, LightProfile
from ..profiles.point_source import PointSource
from ..settings import RenderSettings
from .core import (CoreMap, WindowBox, core_map, core_node_factor_slope, core_nodes, core_radii, core_radii_q_slopes,
                   core_tables, shift_phase, window_box)
from .grid import ConvolutionLayout
from .pixel_integral import boxy_difference_means, pixel_integrated_split, pixel_integrated_split_and_derivatives
from .psf import prepare_psf, psf_spectrum

Tensor = torch.Tensor

# Without a PSF the pixel response, band-limited, has a kernel with tails; this
# many pixels of margin around the cutout keep the light they carry in.
_PIXEL_MARGIN = 8


class Renderer:
    """Model images for one cutout shape and PSF.

    With ``settings.psf_oversampling`` E > 1 the PSF is sampled E times finer than
    the data and the renderer is an :class:`OversampledRenderer`.

    Parameters
    ----------
    shape
        Cutout shape ``(H, W)``.
    psf
        PSF image ``(h, w)`` shared by all galaxies, ``(B, h, w)`` one per galaxy, or
        None (no PSF: pixel-integrated images).
    batch
        Number of galaxies the renderer will be called with, used to check a
        per-galaxy PSF (None: not checked here).
    dtype, device
        Precision and device of everything the renderer computes.
    settings
        Accuracy settings of the sub-pixel cores.
    """

    def __new__(cls, *args, settings: RenderSettings = RenderSettings(), **kwargs):
        if cls is Renderer and settings.psf_oversampling > 1:
            return super().__new__(OversampledRenderer)
        return super().__new__(cls)

    def __init__(
        self,
        shape: tuple[int, int],
        psf=None,
        *,
        batch: int | None = None,
        dtype: torch.dtype = torch.float32,
        device=None,
        settings: RenderSettings = RenderSettings(),
    ) -> None:
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"render: shape must be (H, W) with positive sizes, got {shape!r}")
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.settings = settings
        if psf is not None:
            self.psf = prepare_psf(psf, batch, dtype, self.device)
            # one PSF per galaxy (a batch of one galaxy included) is indexed by galaxy; one for all is
            # broadcast. Indexing even one galaxy's keeps its products' loops those of a larger batch
            # (galmoss/batched.py)
            self._psf_per_galaxy = batch is not None and self.psf.shape[0] == batch
            psf_shape = self._footprint(self.psf)
        else:
            self.psf = None
            self._psf_per_galaxy = False
            psf_shape = (2 * _PIXEL_MARGIN + 1, 2 * _PIXEL_MARGIN + 1)
        self.layout = ConvolutionLayout(self.shape, psf_shape, settings.fft_padding)
        self.ky, self.kx = self.layout.frequencies(dtype, self.device)
        # the frequencies at which cores and point sources are drawn (more than the
        # FFT box's when a finer PSF carries light from beyond the band)
        self.source_ky, self.source_kx = self._source_frequencies()
        self.psf_hat = self._kernel() if self.psf is not None else None
        # Pixel response (a unit box) restricted to the sampling band.
        self.pixel_hat = torch.sinc(self.ky / (2 * torch.pi)) * torch.sinc(self.kx / (2 * torch.pi))
        # GALFIT's convention: every convolved component integrated over pixels first (the
        # kernel gains the pixel); a point source stays the PSF image (_point divides it out)
        self.pixel_twice = self.psf_hat is not None and settings.pixel_response == "galfit"
        if self.pixel_twice:
            self.psf_hat = self.psf_hat * self.pixel_hat
        self.extended_grid = self.layout.extended_grid(dtype, self.device)
        # the grid's row and column coordinates, (He, 1) and (1, We): an offset from a centre is then a
        # row's part plus a column's, one pass over the grid instead of several
        self.extended_axes = (self.extended_grid[0][:, :1], self.extended_grid[1][:1, :])
        self.taper = self.layout.taper_weights(dtype, self.device)
        self.cutout_grid = self.layout.cutout_grid(dtype, self.device)
        self.origin = self.layout.extended_origin

    # ------------------------------------------------------------------ kernel
    def _footprint(self, psf: Tensor) -> tuple[int, int]:
        """The PSF's extent in data pixels (h, w), odd sizes centred on ``(h // 2, w // 2)``."""
        return tuple(psf.shape[-2:])

    #: how many times the sampling band the source frequencies reach
    core_band = 1

    def _source_frequencies(self) -> tuple[Tensor, Tensor]:
        return self.ky, self.kx

    def _kernel(self) -> Tensor:
        """The PSF's spectrum at :attr:`source_ky`, :attr:`source_kx` (B or 1, N, M')."""
        return psf_spectrum(self.psf, self.layout)

    def structured(self, profiles: Mapping[str, LightProfile]) -> "Renderer | None":
        """The renderer whose component spectra a structured Jacobian of ``profiles`` may use (None: none)."""
        return self

    def _convolved(self, smooth_spectrum: Tensor | None, source_spectrum: Tensor | None, psf_hat: Tensor):
        """A component's convolved spectrum as :meth:`to_image` and :meth:`shift_derivative` take it."""
        return self._convolve(smooth_spectrum, source_spectrum, psf_hat)

    def _convolve(self, smooth_spectrum: Tensor | None, source_spectrum: Tensor | None, psf_hat: Tensor) -> Tensor:
        """The convolved spectrum on the FFT box of a smooth part's rfft2 and cores' or points' spectra."""
        return _times_kernel(smooth_spectrum, source_spectrum, psf_hat)

    # ------------------------------------------------------------------ parts
    def _values(self, profile: LightProfile, values: Mapping[Parameter, Tensor]) -> dict[str, Tensor]:
        out = {}
        for name, param in profile.parameters().items():
            out[name] = values[param]
        return out

    def _geometry(self, profile: EllipticalProfile, v: Mapping[str, Tensor]) -> "_Geometry":
        """Everything about drawing an elliptical profile that its shape parameters do not change."""
        r1, r2 = core_radii(profile, v, self.layout, self.settings)
        _, _, r_ell, window = self._radius_and_window(profile, v, r1, r2)
        return _Geometry(
            r_ell=r_ell,
            nodes=core_nodes(r2, self.settings),
            window=window,
            core=core_map(v, r1, r2, self.source_ky, self.source_kx, self.origin, self.settings, self.core_band),
        )

    def _radius_and_window(self, profile: EllipticalProfile, v: Mapping[str, Tensor], r1: Tensor, r2: Tensor,
                           slopes: bool = False) -> tuple[Tensor, Tensor, Tensor, WindowBox]:
        """Offsets along the axes, elliptical radius (B, He, We) and the window's box of an elliptical profile.

        The built-in radius takes the grid's row and column coordinates (an offset is a
        row's part plus a column's) and a box around each core; a profile with its own
        radius gets full coordinate planes and the whole grid.
        """
        builtin = type(profile).builtin_radius()
        y, x = self.extended_axes if builtin else self.extended_grid
        x_maj, x_min = profile.major_minor(y, x, v)
        r_ell = profile.elliptical_radius(x_maj, x_min, v["axis_r"])
        return x_maj, x_min, r_ell, window_box(r_ell, r1, r2, v, self.origin, slopes=slopes, whole=not builtin)

    def _radii(self, geometry: "_Geometry") -> Tensor:
        """Every radius the profile function is needed at, (B, 1, grid + nodes)."""
        batch = geometry.r_ell.shape[0]
        return torch.cat([geometry.r_ell.reshape(batch, 1, -1), geometry.nodes.reshape(batch, 1, -1)], dim=-1)

    def _from_brightness(self, geometry: "_Geometry", brightness: Tensor,
                         out: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """Tapered smooth part (..., B, He, We) and core spectrum from brightness (..., B, 1, radii).

        Linear in ``brightness``: any number of leading dimensions is mapped at once.
        ``out``: contiguous tensors of those two shapes to write them into.
        """
        shape = geometry.r_ell.shape
        n_grid = geometry.r_ell[0].numel()
        on_grid = brightness[..., 0, :n_grid].reshape(brightness.shape[:-3] + shape)
        # the window is 0 beyond the cores' boxes: there the smooth part is the profile
        box = geometry.window
        inside = box.take(on_grid) * (1.0 - box.window) * box.take(self.taper)
        if out is None:
            return box.put(on_grid * self.taper, inside), geometry.core.apply(brightness[..., 0, n_grid:])
        smooth, spectrum = out
        box.put_(torch.mul(on_grid, self.taper, out=smooth), inside)
        geometry.core.apply(brightness[..., 0, n_grid:], out=spectrum)
        return smooth, spectrum

    def _elliptical(self, profile: EllipticalProfile, v: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Smooth part on the extended grid and core spectrum of an elliptical profile."""
        geometry = self._geometry(profile, v)
        # one call of the profile function for every radius it is needed at
        smooth, spectrum = self._from_brightness(geometry, profile.radial(self._radii(geometry), v))
        if not box_is_zero(profile):
            # Boxy/disky isophotes: the difference from the elliptical profile has a
            # (weaker) cusp of its own. Its pixel means, supersampled, alias far less
            # than its point samples; dividing by the pixel response in the band
            # turns them into band-limited samples.
            means = boxy_difference_means(profile, v, self.extended_grid, factor=4) * self.taper
            n, m = self.layout.fft_shape
            spectrum = spectrum + torch.fft.rfft2(means, s=(n, m)) / self.pixel_hat
        return smooth, spectrum

    def _pixel_integrated(self, profile: EllipticalProfile, v: Mapping[str, Tensor]) -> Tensor:
        """An elliptical profile integrated over the cutout's pixels (B, H, W): :func:`pixel_integrated_split`."""
        image = pixel_integrated_split(profile, v, self.cutout_grid, self.settings)
        if not box_is_zero(profile):
            image = image + boxy_difference_means(profile, v, self.cutout_grid)
        return image

    def pixel_image_and_derivatives(
        self,
        profile: EllipticalProfile,
        values: Mapping[Parameter, Tensor],
        slots: list[str],
        *,
        index: Tensor | None = None,
    ) -> tuple[Tensor, Tensor] | None:
        """A component integrated over pixels (no PSF) and its derivatives (S, B, H, W) w.r.t. ``slots``.

        :func:`~galmoss.render.pixel_integral.pixel_integrated_split_and_derivatives`:
        the smooth part's columns written out, the core's few pixels by forward
        mode. None when the profile does not give its derivatives at fixed radii.
        """
        _, values, _ = self._prepare(values, index)
        v = self._values(profile, values)
        return pixel_integrated_split_and_derivatives(profile, v, self.cutout_grid, self.settings, slots)

    def spectrum_and_shape_derivatives(
        self,
        profile: EllipticalProfile,
        values: Mapping[Parameter, Tensor],
        slots: list[str],
        *,
        index: Tensor | None = None,
    ) -> tuple[Tensor, list[Tensor]]:
        """A convolved elliptical component's spectrum and its derivatives w.r.t. ``slots``.

        Returns the spectrum times the PSF's (as :meth:`component_spectra`) and the
        derivative images, a list of S tensors (B, H, W) in the order of ``slots``. A shape parameter (Sersic n, r_e, a Moffat
        index...) changes only the profile function at fixed radii, and the image is
        linear in that function: its derivative at the grid and core nodes (forward
        mode through the profile function alone) is mapped through the same FFT and
        core spectrum as the image, with no tangent through the geometry.

        The position angle and axis ratio (``"pa"``, ``"axis_r"``) move the radii
        instead: their columns are the chain rule written out -- the profile's
        radial slope times the derivative of each pixel's elliptical radius, the
        window's slopes, the core's nodes and stretched frequencies (the slope of
        its interpolated transform) -- so that no tangent goes through the grid
        geometry, the window or the core's frequency map, which cost several
        times the image in forward mode. Each column is the exact derivative of
        the image computed (tested against forward mode through everything).

        Valid for components convolved with a PSF, with elliptical (not boxy)
        isophotes, the built-in radius of :class:`EllipticalProfile`, and no
        truncation radius (which moves the window).
        """
        batch, values, psf_hat = self._prepare(values, index)
        v = self._values(profile, values)
        geometric = [slot for slot in slots if slot in ("pa", "axis_r")]
        q = v["axis_r"]
        if "axis_r" in geometric:
            r1, r2, dr1_dq, dr2_dq = core_radii_q_slopes(profile, v, self.layout, self.settings)
        else:
            r1, r2 = core_radii(profile, v, self.layout, self.settings)
        x_maj, x_min, r_ell, window = self._radius_and_window(profile, v, r1, r2, slopes=bool(geometric))
        geometry = _Geometry(r_ell=r_ell, nodes=core_nodes(r2, self.settings), window=window,
                             core=core_map(v, r1, r2, self.source_ky, self.source_kx, self.origin, self.settings,
                                           self.core_band))
        radii = self._radii(geometry)
        # the profile function at a given elliptical radius does not depend on the PA: its column
        # is the geometry term alone. The others are drawn first, into the leading rows of one buffer
        radial = [slot for slot in slots if slot != "pa"]
        order = [slots.index(slot) for slot in radial] + [i for i, slot in enumerate(slots) if slot == "pa"]
        x0 = (torch.stack([v[slot].reshape(-1) for slot in radial], dim=1) if radial  # (B, S')
              else radii.new_zeros((batch, 0)))

        def brightness(x, rr):
            shaped = dict(v)
            for i, slot in enumerate(radial):
                shaped[slot] = x[:, i].reshape(-1, 1, 1)
            return profile.radial(rr, shaped)

        # tangents: each slot at fixed radii, and (with geometry) the radial slope;
        # written out by the profile when it can (forward mode costs ~10x)
        n_radial = len(radial)
        analytic = getattr(profile, "radial_derivatives", None)
        analytic = analytic(radii, v, radial) if analytic is not None else None
        if analytic is not None:
            primal, columns, slope = analytic
            tangents = torch.stack(columns) if columns else None
        else:
            n_dir = n_radial + (1 if geometric else 0)
            basis_x = torch.eye(n_dir, n_radial, dtype=x0.dtype, device=x0.device)[:, None, :].expand(
                n_dir, batch, n_radial)
            basis_r = torch.zeros((n_dir,) + radii.shape, dtype=radii.dtype, device=radii.device)
            if geometric:
                basis_r[-1] = 1.0
            primal, tangents = torch.func.vmap(lambda tx, tr: torch.func.jvp(brightness, (x0, radii), (tx, tr)),
                                               out_dims=(None, 0))(basis_x, basis_r)
            slope = tangents[-1] if geometric else None
            tangents = tangents[:n_radial] if n_radial else None
        smooth_t = primal.new_empty((len(slots),) + geometry.r_ell.shape)
        core_t = geometry.core.phase.new_empty((len(slots),) + geometry.core.phase.shape)
        if tangents is not None:
            self._from_brightness(geometry, tangents, out=(smooth_t[:n_radial], core_t[:n_radial]))
        if geometric:
            terms = self._geometry_terms(geometry, v, primal, slope, r1, r2, x_maj, x_min,
                                         dr1_dq if "axis_r" in geometric else None,
                                         dr2_dq if "axis_r" in geometric else None, geometric)
            for slot, (extra_smooth, extra_core) in zip(geometric, terms):
                row = order.index(slots.index(slot))
                if row < n_radial:
                    smooth_t[row] += extra_smooth * self.taper
                    core_t[row] += extra_core
                else:
                    torch.mul(extra_smooth, self.taper, out=smooth_t[row])
                    core_t[row] = extra_core
        n, m = self.layout.fft_shape
        smooth, spectrum = self._from_brightness(geometry, primal)
        primal_spectrum = self._convolved(torch.fft.rfft2(smooth, s=(n, m)), spectrum, psf_hat)
        tangent_spectra = self._convolve(torch.fft.rfft2(smooth_t, s=(n, m)), core_t, psf_hat)
        images = self.to_image(tangent_spectra)
        return primal_spectrum, [images[order.index(i)] for i in range(len(slots))]

    def _geometry_terms(self, geometry, v, brightness, slope, r1, r2, x_maj, x_min, dr1_dq, dr2_dq, slots):
        """What moving the radii adds to the PA and q columns: per slot, (B, He, We) smooth part and (B, N, M') core spectrum.

        ``brightness`` and ``slope`` are the profile and its radial derivative at
        every radius (B, 1, grid + nodes).
        """
        q = v["axis_r"]
        shape = geometry.r_ell.shape
        n_grid = geometry.r_ell[0].numel()
        on_grid = brightness[:, 0, :n_grid].reshape(shape)
        slope_grid = slope[:, 0, :n_grid].reshape(shape)
        at_nodes, slope_nodes = brightness[:, 0, n_grid:], slope[:, 0, n_grid:]
        r = geometry.r_ell
        box = geometry.window
        dw_dr, dw_dr1, dw_dr2 = box.slopes
        # inside r1 the window is 1: no smooth part (and a cusp's slope may be infinite). Beyond the
        # cores' boxes the window and its slopes are 0: there the radial term is the profile's slope
        outside = box.take(r) > r1.reshape(-1, 1)
        on_box = box.take(on_grid)
        radial_term = box.put(slope_grid, torch.where(outside, box.take(slope_grid) * (1.0 - box.window)
                                                      - on_box * dw_dr, 0.0))
        core = geometry.core
        g0 = at_nodes * core.node_factor
        dc_dkappa = core.kappa_slope(g0)  # (B, N, M')
        q2 = q * q
        out = []
        for slot in slots:
            if slot == "pa":
                # d x_maj / d pa = -x_min, d x_min / d pa = x_maj
                dr = x_maj * x_min * (1.0 / q2 - 1.0) / r
                dkc = core.k_major * core.k_minor * (q2 - 1.0) / core.kc
                out.append((radial_term * dr, dc_dkappa * (dkc * r2 / self.settings.kappa_step) * core.phase))
                continue
            dr = -(x_min * x_min) / (q2 * q * r)
            smooth_part = radial_term * dr
            window_term = torch.where(outside, on_box * (dw_dr1 * dr1_dq.reshape(-1, 1) + dw_dr2 * dr2_dq.reshape(-1, 1)),
                                      0.0)
            smooth_part = box.put(smooth_part, box.take(smooth_part) - window_term)
            # the core: its nodes r2 t^2 and quadrature factors move with r2 (and r1),
            # its stretched frequency with q and r2, and its prefactor is q
            t, _, _, _ = core_tables(self.settings, r2.dtype, r2.device)
            batch = r2.shape[0]
            d_factor = core_node_factor_slope(r1, r2, dr1_dq, dr2_dq, self.settings)
            dg = slope_nodes * (t * t) * dr2_dq.reshape(batch, 1) * core.node_factor + at_nodes * d_factor
            dkc = q * core.k_minor * core.k_minor / core.kc
            dkappa = (dkc * r2 + core.kc * dr2_dq) / self.settings.kappa_step
            # (the transform is linear in the node values: the prefactor's term rides along)
            core_part = core.apply_weighted(dg + g0 / q.reshape(batch, 1))
            out.append((smooth_part, core_part + dc_dkappa * dkappa * core.phase))
        return out

    def _point(self, profile: PointSource, v: Mapping[str, Tensor]) -> Tensor:
        if self.psf is None or not profile.psf:
            raise ValueError(
                "PointSource needs a PSF: it is the PSF scaled and shifted. Give psf= to render, "
                "or a psf_path to the Dataset."
            )
        flux = profile.total_flux(v)
        spectrum = shift_phase(flux, v["cen_y"], v["cen_x"], self.source_ky, self.source_kx, self.origin)
        return spectrum / self.pixel_hat if self.pixel_twice else spectrum

    def _prepare(self, values: Mapping[Parameter, Tensor], index: Tensor | None):
        """Batch size, values expanded to it, and the PSF spectra of the galaxies ``index``."""
        batch = self._batch_size(values)
        values = {prm: t.expand((batch,) + tuple(t.shape[1:])) if t.shape[0] != batch else t for prm, t in values.items()}
        psf_hat = self.psf_hat
        if index is not None and psf_hat is not None and (psf_hat.shape[0] > 1 or self._psf_per_galaxy):
            psf_hat = psf_hat[index]
        return batch, values, psf_hat

    def _batch_size(self, values: Mapping[Parameter, Tensor]) -> int:
        sizes = {int(t.shape[0]) for t in values.values()}
        sizes.discard(1)
        if len(sizes) > 1:
            raise ValueError(f"render: parameter values have different batch sizes {sorted(sizes)}")
        return sizes.pop() if sizes else 1

    # ------------------------------------------------------------------- call
    def __call__(
        self,
        profiles: Mapping[str, LightProfile],
        values: Mapping[Parameter, Tensor],
        *,
        components: bool = False,
        mode: str = "updating_model",
        index: Tensor | None = None,
    ):
        """Model images of the sum of ``profiles`` at ``values``.

        Parameters
        ----------
        profiles
            Named profiles.
        values
            Parameter -> tensor of shape (B, 1, 1) (or (1, 1, 1)) in profile units.
        components
            Also return each component's image (convolved as it is in the model).
        mode
            Passed to user profiles' ``image_via_grid_from``.
        index
            With one PSF per galaxy: which galaxies (rows of the PSF batch the
            renderer was built with) the values belong to. None: all, in order.

        Returns
        -------
        Tensor or (Tensor, dict)
            The model (B, H, W); with ``components``, also ``{name: (B, H, W)}``.
        """
        batch, values, psf_hat = self._prepare(values, index)
        with parameter_values(values):
            parts = {name: self._parts(profile, values, mode, batch, name) for name, profile in profiles.items()}
        total = self._combine(parts.values(), batch, psf_hat)
        if not components:
            return total
        return total, {name: self._combine([part], batch, psf_hat) for name, part in parts.items()}

    def component_spectra(
        self,
        profiles: Mapping[str, LightProfile],
        values: Mapping[Parameter, Tensor],
        *,
        mode: str = "updating_model",
        index: Tensor | None = None,
    ) -> dict[str, tuple[Tensor | None, Tensor | None]]:
        """Each component as (its spectrum times its kernel on the FFT box, image added as is).

        Either may be None. ``to_image(spectrum) + plain`` is the component's image;
        multiplying the spectrum by ``-1j * kx`` first gives its derivative with
        respect to a shift of the component along x (used for Jacobians).
        """
        batch, values, psf_hat = self._prepare(values, index)
        n, m = self.layout.fft_shape
        out = {}
        with parameter_values(values):
            for name, profile in profiles.items():
                with_psf, smooth, spectrum, plain = self._parts(profile, values, mode, batch, name)
                fft = torch.fft.rfft2(smooth, s=(n, m)) if smooth is not None else None
                if fft is not None or spectrum is not None:
                    spectrum = (self._convolved(fft, spectrum, psf_hat) if with_psf
                                else _times_kernel(fft, spectrum, self.pixel_hat))
                out[name] = (spectrum, plain)
        return out

    def to_image(self, spectrum: Tensor) -> Tensor:
        """The cutout image of a spectrum on the FFT box."""
        return self.layout.inverse(spectrum)

    def shift_derivative(self, spectrum: Tensor, axis: str) -> Tensor:
        """The derivative of a component's image (from :meth:`component_spectra`) w.r.t. its centre's ``axis``."""
        return self.to_image(spectrum * (-1j * (self.kx if axis == "x" else self.ky)))

    def component_image(self, spectrum: Tensor | None, plain: Tensor | None) -> Tensor:
        """A component's image from the two parts :meth:`component_spectra` gives."""
        image = self.to_image(spectrum) if spectrum is not None else None
        if plain is not None:
            image = plain if image is None else image + plain
        return image

    def _parts(self, profile: LightProfile, values, mode: str, batch: int, name: str = ""):
        """(convolved-with-PSF?, smooth image on the extended grid, spectrum, image added as is)."""
        v = self._values(profile, values)
        with_psf = bool(profile.psf) and self.psf_hat is not None
        he, we = self.layout.extended_shape
        if isinstance(profile, EllipticalProfile):
            if not with_psf:
                return with_psf, None, None, self._pixel_integrated(profile, v)
            smooth, spectrum = self._elliptical(profile, v)
            return with_psf, smooth, spectrum, None
        if isinstance(profile, PointSource):
            return with_psf, None, self._point(profile, v), None
        if getattr(profile, "pixel_integrated", False):
            # pixel means: without a PSF the model itself; with one (which holds the
            # pixel already) divided by the pixel response in the band, as boxy isophotes
            if not with_psf:
                image = profile.image_via_grid_from(self.cutout_grid, mode)
                return with_psf, None, None, torch.broadcast_to(image, (batch,) + self.shape)
            image = torch.broadcast_to(profile.image_via_grid_from(self.extended_grid, mode), (batch, he, we))
            return with_psf, None, torch.fft.rfft2(image * self.taper, s=self.layout.fft_shape) / self.pixel_hat, None
        if profile.psf:
            image = _batch_image(name, profile, profile.image_via_grid_from(self.extended_grid, mode), (batch, he, we))
            return with_psf, image * self.taper, None, None
        image = profile.image_via_grid_from(self.cutout_grid, mode)
        return with_psf, None, None, _batch_image(name, profile, image, (batch,) + self.shape)

    def _combine(self, parts, batch: int, psf_hat: Tensor | None) -> Tensor:
        """Sum parts: one forward and one inverse FFT for all convolved components."""
        n, m = self.layout.fft_shape
        smooth = {True: None, False: None}
        spectra = {True: None, False: None}
        added = None
        for with_psf, image, spectrum, plain in parts:
            if image is not None:
                smooth[with_psf] = image if smooth[with_psf] is None else smooth[with_psf] + image
            if spectrum is not None:
                spectra[with_psf] = spectrum if spectra[with_psf] is None else spectra[with_psf] + spectrum
            if plain is not None:
                added = plain if added is None else added + plain
        total_spectrum = None
        for with_psf in (True, False):
            fft = torch.fft.rfft2(smooth[with_psf], s=(n, m)) if smooth[with_psf] is not None else None
            if fft is None and spectra[with_psf] is None:
                continue
            if with_psf:
                spec = self._convolve(fft, spectra[with_psf], psf_hat)
            else:
                # the pixel response acts inside the band only: nothing there is drawn beyond it
                spec = _times_kernel(fft, spectra[with_psf], self.pixel_hat)
            total_spectrum = spec if total_spectrum is None else total_spectrum + spec
        total = None
        if total_spectrum is not None:
            total = self.layout.inverse(total_spectrum)
        if added is not None:
            total = added if total is None else total + added
        if total is None:
            total = torch.zeros((batch,) + self.shape, dtype=self.dtype, device=self.device)
        return total


def _times_kernel(smooth_spectrum: Tensor | None, source_spectrum: Tensor | None, kernel: Tensor) -> Tensor:
    """(smooth part's spectrum + cores' or points' spectra) x kernel, either part possibly None."""
    if smooth_spectrum is None:
        return source_spectrum * kernel
    if source_spectrum is None:
        return smooth_spectrum * kernel
    return (smooth_spectrum + source_spectrum) * kernel


def _batch_image(name: str, profile: LightProfile, image, want: tuple[int, int, int]) -> Tensor:
    """A user profile's image broadcast to ``want`` = (B, H, W), or a ProfileOutputError.

    Only the pixel axes may broadcast (a flat sky returned as (B, 1, 1)); an image
    without its galaxy axis, or with another batch's, would be shared by every
    galaxy of the batch and make the batched fit differ from the one-by-one fit.
    """
    shape = tuple(getattr(image, "shape", ()))
    if (len(shape) != 3 or shape[0] != want[0]
            or any(got not in (1, size) for got, size in zip(shape[1:], want[1:]))):
        raise ProfileOutputError(
            f"profile {name!r} ({type(profile).__name__}): image_via_grid_from returned shape {shape} for a batch of "
            f"{want[0]} galaxies on a {want[1]}x{want[2]} grid; expected {want} (one image per galaxy: build it from "
            "param.value(mode), which is (B, 1, 1), and keep that leading axis)"
        )
    return torch.broadcast_to(image, want)


@dataclass
class _Geometry:
    """Radii, window and core map of an elliptical profile at given geometry."""

    r_ell: Tensor
    nodes: Tensor
    window: WindowBox
    core: CoreMap


def box_is_zero(profile: EllipticalProfile) -> bool:
    # Fourier and bending modes perturb the radius as a box does
    if getattr(profile, "fourier_modes", None) or getattr(profile, "bending_modes", None):
        return False
    box = getattr(profile, "box", None)
    return isinstance(box, Parameter) and not box.fit and bool((box.initial == 0).all())


class OversampledRenderer(Renderer):
    """Model images when the PSF is sampled E times finer than the data (GALFIT's E) > 1).

    A data pixel is the sum of E x E fine pixels -- a fine pixel's centre at data
    coordinate ``0.5 + (i - 0.5) / E`` -- of the profile convolved with the fine
    PSF (which holds the fine pixel's response) read as band-limited on the fine
    grid: the light falling into the pixel.

    Models whose PSF-convolved components are all elliptical profiles without
    boxy, Fourier or bending terms, and point sources, are drawn on the data grid
    (:class:`AliasedRenderer`): what the fine grid adds beyond the data's band is
    folded into it, from the cores' and points' analytic spectra. Any other model
    is drawn on the fine grid and summed into data pixels, with its parameters
    moved there: positions map to ``E (x - 0.5) + 0.5``, lengths to ``E r``,
    magnitudes are unchanged (the total flux is), a sky level is spread over E^2
    fine pixels.

    Only :meth:`__call__` is offered. The fitter's structured Jacobian uses the
    data-grid renderer's spectra (:meth:`structured`); a model drawn on the fine
    grid is differentiated by forward mode, as tied parameters are.
    """

    def __init__(self, shape, psf=None, *, batch=None, dtype=torch.float32, device=None,
                 settings: RenderSettings = RenderSettings()) -> None:
        factor = settings.psf_oversampling
        if psf is None:
            raise ValueError("render: psf_oversampling > 1 needs a PSF (the grid it is finer than the data on)")
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"render: shape must be (H, W) with positive sizes, got {shape!r}")
        self.factor = factor
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.settings = settings
        self.batch = batch
        self.aliased = AliasedRenderer(self.shape, psf, factor=factor, batch=batch, dtype=dtype, device=device,
                                       settings=settings)
        self.psf = self.aliased.psf
        # the fitter's structured Jacobian uses the spectra of a data-grid renderer; none here
        self.psf_hat = None

    @functools.cached_property
    def fine(self) -> Renderer:
        """The renderer of the fine grid (built when a model first needs it)."""
        size = (self.shape[0] * self.factor, self.shape[1] * self.factor)
        return Renderer(size, self.psf, batch=self.batch, dtype=self.dtype, device=self.device,
                        settings=dataclasses.replace(self.settings, psf_oversampling=1))

    def _fine_values(self, profiles: Mapping[str, LightProfile], values: Mapping[Parameter, Tensor]):
        from ..params import Role
        from ..profiles.sky import Sky

        e = float(self.factor)
        out: dict[Parameter, Tensor] = dict(values)
        fine_profiles: dict[str, LightProfile] = {}
        done: dict[Parameter, str] = {}
        for name, profile in profiles.items():
            hook = getattr(profile, "for_finer_grid", None)
            fine_profiles[name] = hook(self.factor) if hook is not None else profile
            for slot, prm in profile.parameters().items():
                if isinstance(profile, Sky):
                    kind = "sky" if slot == "sky_bg" else "gradient"
                elif isinstance(profile, (EllipticalProfile, PointSource)) or hook is not None:
                    # a profile with for_finer_grid has its slots moved by their roles
                    role = profile.spec(slot).role
                    kind = {Role.POSITION: "position", Role.LENGTH: "length"}.get(role, "same")
                else:
                    raise NotImplementedError(
                        f"profile {name!r} ({type(profile).__name__}): with psf_oversampling > 1 galmoss draws the "
                        "model on the PSF's finer grid and knows how to move the built-in profiles' parameters "
                        "there; give this profile a for_finer_grid(factor) method or render it with E = 1"
                    )
                if done.setdefault(prm, kind) != kind:
                    raise ValueError(f"profile {name!r}: parameter {slot!r} is shared by slots of different meaning")
                v = values[prm]
                if kind == "position":
                    out[prm] = e * (v - 0.5) + 0.5
                elif kind == "length":
                    out[prm] = e * v
                elif kind == "sky":
                    out[prm] = v / e**2
                elif kind == "gradient":
                    out[prm] = v / e**3
        return fine_profiles, out

    def _bin(self, image: Tensor) -> Tensor:
        b = image.shape[0]
        h, w = self.shape
        return image.reshape(b, h, self.factor, w, self.factor).sum(dim=(2, 4))

    def __call__(self, profiles, values, *, components: bool = False, mode: str = "updating_model", index=None):
        if self.aliased.draws(profiles):
            return self.aliased(profiles, values, components=components, mode=mode, index=index)
        fine_profiles, fine_values = self._fine_values(profiles, values)
        result = self.fine(fine_profiles, fine_values, components=components, mode=mode, index=index)
        if not components:
            return self._bin(result)
        total, parts = result
        return self._bin(total), {name: self._bin(part) for name, part in parts.items()}

    def _unavailable(self, *args, **kwargs):
        raise NotImplementedError("an oversampled renderer (psf_oversampling > 1) draws images only through __call__")

    component_spectra = _unavailable
    spectrum_and_shape_derivatives = _unavailable
    to_image = _unavailable
    component_image = _unavailable
    shift_derivative = _unavailable

    def structured(self, profiles: Mapping[str, LightProfile]) -> Renderer | None:
        # the data-grid renderer's spectra where it draws the model; none on the fine grid
        return self.aliased if self.aliased.draws(profiles) else None


class AliasedRenderer(Renderer):
    """The data-grid model of a PSF sampled E times finer than the data.

    On the fine grid the model's spectrum is ``S(k) K(k)`` for |k| < E pi on
    each axis (k in radians per data pixel), with ``S`` the profile's continuous
    spectrum and ``K`` the fine PSF's samples read as band-limited, times the
    sum over the E x E fine pixels a data pixel holds. Sampling at the data
    pixels folds that band onto the data's: the spectrum on the FFT box is
    ``sum_m S(k + 2 pi m) K(k + 2 pi m)`` over the aliases ``m`` inside the fine
    band. The cores' and point sources' spectra are analytic and are drawn at
    every alias frequency where the kernel carries light (those whose ``|K|``
    sum to all but :data:`ALIAS_TOLERANCE` of its total); the smooth part,
    whose spectrum lies inside the data's band by construction, enters at
    ``m = 0`` only. One FFT box of the data's size, as without oversampling.

    Draws elliptical profiles without boxy, Fourier or bending terms and point
    sources (:meth:`draws`); GALFIT's pixel convention and other PSF-convolved
    components take the fine grid (:class:`OversampledRenderer`).
    """

    #: the share of the kernel's summed modulus left out with the frequencies of least
    #: modulus (a point source's image changes by at most this fraction of its peak)
    ALIAS_TOLERANCE = 1e-5

    def __init__(self, shape, psf, *, factor: int, batch=None, dtype=torch.float32, device=None,
                 settings: RenderSettings = RenderSettings()) -> None:
        self.factor = int(factor)
        self.core_band = self.factor
        self.pixel_response = settings.pixel_response
        # the renderer works in data pixels: its own settings are those of E = 1, GALFIT's
        # pixel convention aside (which this renderer leaves to the fine grid)
        super().__init__(shape, psf, batch=batch, dtype=dtype, device=device,
                         settings=dataclasses.replace(settings, psf_oversampling=1, pixel_response="psf"))

    def draws(self, profiles: Mapping[str, LightProfile]) -> bool:
        """Whether every PSF-convolved component of ``profiles`` is drawn exactly here."""
        if self.pixel_response != "psf":
            return False
        for profile in profiles.values():
            if not profile.psf or isinstance(profile, PointSource):
                continue
            if not (isinstance(profile, EllipticalProfile) and box_is_zero(profile)):
                return False
        return True

    def _footprint(self, psf: Tensor) -> tuple[int, int]:
        # data pixels the fine stamp reaches from its centre, the E fine pixels of a data pixel included
        e = self.factor
        return tuple(2 * ((size // 2 + e) // e) + 1 for size in psf.shape[-2:])

    def _source_frequencies(self) -> tuple[Tensor, Tensor]:
        """Every alias frequency of the fine band where the kernel carries light, as a list (1, F).

        Also keeps the full kernel's data-band part (for the smooth parts) and where
        each listed frequency folds to on the FFT box.
        """
        kernel, rows, cols = self._alias_kernel()
        n, m = self.ky.shape[0], self.kx.shape[1]
        # each galaxy's own frequencies (its kernel's largest moduli), the batch drawing their
        # union with every galaxy's kernel 0 outside its own: a galaxy's image does not depend
        # on which other PSFs share its batch
        modulus = kernel.abs().reshape(kernel.shape[0], -1)
        order = torch.argsort(modulus, dim=1, descending=True)
        mass = torch.cumsum(torch.gather(modulus, 1, order), 1)
        count = torch.searchsorted(mass, mass[:, -1:] * (1.0 - self.ALIAS_TOLERANCE)) + 1
        own = torch.zeros_like(modulus, dtype=torch.bool).scatter_(
            1, order, torch.arange(modulus.shape[1], device=modulus.device)[None, :] < count)
        kept = torch.nonzero(own.any(0)).squeeze(1)
        ay, ax = rows.numel() // n, cols.numel() // m
        row, col = kept // cols.numel(), kept % cols.numel()
        self._fold_index = (row % n) * m + (col % m)
        central = kernel.reshape(kernel.shape[0], ay, n, ax, m)[:, ay // 2, :, ax // 2, :]
        complex_dtype = torch.complex64 if self.dtype == torch.float32 else torch.complex128
        listed = torch.where(own[:, kept], kernel.reshape(kernel.shape[0], -1)[:, kept], 0.0)
        self._alias_kernel_parts = (listed.reshape(kernel.shape[0], 1, -1).to(complex_dtype), central.to(complex_dtype))
        return rows[row].reshape(1, -1), cols[col].reshape(1, -1)

    def _alias_kernel(self) -> tuple[Tensor, Tensor, Tensor]:
        """The kernel (B or 1, Ay N, Ax M') on the grid of every alias (complex128), and that grid's ky, kx."""
        e = self.factor
        reach = e // 2  # aliases m with |k + 2 pi m| <= E pi for some k of the data band
        shifts = torch.arange(-reach, reach + 1, dtype=torch.float64, device=self.device) * (2.0 * math.pi)
        rows = (self.ky.reshape(1, -1).to(torch.float64) + shifts[:, None]).reshape(-1)
        cols = (self.kx.reshape(1, -1).to(torch.float64) + shifts[:, None]).reshape(-1)
        h, w = self.psf.shape[-2:]
        # the fine PSF's samples at (i - centre) / E data pixels, read as band-limited
        offsets_y = (torch.arange(h, dtype=torch.float64, device=self.device) - h // 2) / e
        offsets_x = (torch.arange(w, dtype=torch.float64, device=self.device) - w // 2) / e
        ey = torch.exp(-1j * rows[:, None] * offsets_y[None, :])
        ex = torch.exp(-1j * cols[:, None] * offsets_x[None, :])
        samples = self.psf.to(torch.float64).to(torch.complex128)
        kernel = torch.matmul(torch.matmul(ey, samples), ex.transpose(0, 1)) / e**2
        # a data pixel sums its E x E fine pixels, centred at (a - (E - 1) / 2) / E; the fine
        # band |k| <= E pi on each axis, its Nyquist frequency shared by its two ends
        within = (torch.arange(e, dtype=torch.float64, device=self.device) - (e - 1) / 2.0) / e
        edge = e * math.pi

        def axis_factor(k: Tensor) -> Tensor:
            inside = torch.where(k.abs() < edge - 1e-9, 1.0, torch.where(k.abs() <= edge + 1e-9, 0.5, 0.0))
            return torch.cos(k[:, None] * within[None, :]).sum(1) * inside

        kernel = kernel * axis_factor(rows)[None, :, None] * axis_factor(cols)[None, None, :]
        return kernel, rows.to(self.dtype), cols.to(self.dtype)

    def _kernel(self) -> Tensor:
        # the listed frequencies' kernel and the data band's, side by side on one last axis so
        # that a batch of PSFs is indexed by galaxy as one tensor
        listed, central = self._alias_kernel_parts
        del self._alias_kernel_parts
        return torch.cat([listed, central.reshape(central.shape[0], 1, -1)], dim=-1)

    def _convolved(self, smooth_spectrum: Tensor | None, source_spectrum: Tensor | None,
                   psf_hat: Tensor) -> "AliasedSpectrum":
        count = self._fold_index.numel()
        n, m = self.ky.shape[0], self.kx.shape[1]
        source = None if source_spectrum is None else source_spectrum * psf_hat[..., :count]
        smooth = (None if smooth_spectrum is None
                  else smooth_spectrum * psf_hat[..., count:].reshape(psf_hat.shape[:-2] + (n, m)))
        return AliasedSpectrum(source, smooth)

    def _fold(self, spectrum: "AliasedSpectrum", source_factor: Tensor | None = None,
              smooth_factor: Tensor | None = None) -> Tensor:
        """The spectrum on the FFT box, each part times its factor first."""
        n, m = self.ky.shape[0], self.kx.shape[1]
        out = None
        if spectrum.source is not None:
            source = spectrum.source if source_factor is None else spectrum.source * source_factor
            lead = source.shape[:-2]
            source = source.reshape(lead + (source.shape[-1],))
            out = source.new_zeros(lead + (n * m,)).index_add(-1, self._fold_index, source).reshape(lead + (n, m))
        if spectrum.smooth is not None:
            smooth = spectrum.smooth if smooth_factor is None else spectrum.smooth * smooth_factor
            out = smooth if out is None else out + smooth
        return out

    def _convolve(self, smooth_spectrum: Tensor | None, source_spectrum: Tensor | None, psf_hat: Tensor) -> Tensor:
        return self._fold(self._convolved(smooth_spectrum, source_spectrum, psf_hat))

    def to_image(self, spectrum) -> Tensor:
        if isinstance(spectrum, AliasedSpectrum):
            spectrum = self._fold(spectrum)
        return self.layout.inverse(spectrum)

    def shift_derivative(self, spectrum, axis: str) -> Tensor:
        if not isinstance(spectrum, AliasedSpectrum):
            return super().shift_derivative(spectrum, axis)
        # each alias frequency moves its own phase: -i (k + 2 pi m), not the folded -i k
        source_k, k = (self.source_kx, self.kx) if axis == "x" else (self.source_ky, self.ky)
        return self.layout.inverse(self._fold(spectrum, -1j * source_k, -1j * k))


@dataclass
class AliasedSpectrum:
    """A component's convolved spectrum before folding (:class:`AliasedRenderer`).

    ``source`` (..., B, 1, F): cores and point sources at the listed alias
    frequencies, times the kernel; ``smooth`` (..., B, N, M'): the smooth part
    on the FFT box, times the kernel's data band. Either may be None.
    """

    source: Tensor | None
    smooth: Tensor | None
