"""GalfitM's multi-band input files in, GalfitM's outputs out (``galmoss galfit``; docs/galfit.md, "GalfitM").

GalfitM (the MegaMorph project's multi-band GALFIT) reads one input file for all
bands of a galaxy: comma-separated lists (CSL) where GALFIT has one file or
number, and per parameter a value per band with a *degree of freedom in
wavelength*. Its grammar, as its own example input (``EXAMPLE.GALFITM.INPUT``)
documents it:

* ``A)`` the images (one per band; the first band is the reference), ``A1)``
  the band labels, ``A2)`` their wavelengths (any unit); ``C)`` sigma images
  (an entry ``none`` makes that band's sigma from the data; one ``none`` for
  all bands), ``D)`` PSFs, ``F)`` masks (``none`` entries: no mask), ``J)``
  zero points: each a CSL or one value for every band.
* A parameter line ``<n>) <values> <toggle> [band|cheb]``: ``values`` one
  number (every band) or a CSL of one per band (``band``, the default), or
  with ``cheb`` a CSL of Chebyshev coefficients in wavelength (the first the
  value at the middle of the wavelength range, missing ones 0). ``toggle`` is
  the number of Chebyshev coefficients fitted: 0 fixed, 1 a constant offset
  from the starts, 2 a linear function of wavelength, 3 quadratic, ...,
  ``nbands`` free in every band; or a CSL of 0/1, one per coefficient.
  Positions are ``1) x`` and ``2) y`` on two lines.
* ``U)`` the non-parametric component and ``V)`` MultiNest sampling (0: off).

How galmoss maps a degree of freedom onto ``gm.p(..., bands=)``: 0 is a fixed
parameter (its per-band values kept), ``nbands`` (or more) is
``bands="free"``, 1 is ``bands="shared"`` and 1 < k < ``nbands`` is ``bands=k-1``
(a Chebyshev polynomial of degree k-1, wavelengths mapped to [-1, 1] from the
shortest to the longest, as GalfitM's coefficients are). Where GalfitM keeps
the starts' own differences fixed (a toggle of 1 or 2 with starts that are not
one constant / one line in wavelength) galmoss cannot: such a line is refused,
naming it. galmoss's polynomial acts in its fitting space (ln r_e, ln n, ln q),
GalfitM's on the value; the two agree for magnitudes, positions, angles and sky
levels at any degree, and for every parameter at the degrees 0, 1 and
``nbands``.

Per-band zero points: :mod:`.convert`.

The modules, each importing only those before it in this list: :mod:`.feedme`
(the files read), :mod:`.constraints` (their constraint files), :mod:`.convert`
(data and profiles), :mod:`.output` (GalfitM's image block, restart file and
fit.log), :mod:`.run` (the joint fits).
"""

from .constraints import band_ranges, parse_galfitm_constraints
from .convert import GalfitmInput, galfitm_profiles, load_galfitm
from .feedme import BandParameter, GalfitmComponent, GalfitmFeedme, is_galfitm, mapped_wavelengths, parse_galfitm
from .output import chebyshev_table
from .run import run_galfitm

__all__ = ["BandParameter", "GalfitmComponent", "GalfitmFeedme", "GalfitmInput", "band_ranges", "chebyshev_table",
           "galfitm_profiles", "is_galfitm", "load_galfitm", "mapped_wavelengths", "parse_galfitm",
           "parse_galfitm_constraints", "run_galfitm"]
