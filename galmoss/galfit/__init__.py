"""GALFIT users move over: feedmes in, GALFIT's outputs out (see docs/galfit.md).

* :func:`parse_feedme` / :func:`parse_constraints` read GALFIT 3 input and
  constraint files;
* :func:`read_galfit` gives the :class:`~galmoss.Dataset` and profiles a feedme
  describes (``gm.read_galfit``), :func:`write_galfit` writes a feedme (a restart
  file) from fitted results (``gm.write_galfit``);
* :func:`run_galfit` is ``galmoss galfit FILE...``: many feedmes fitted as
  batches, GALFIT's image blocks, restart files and fit.log written; GalfitM's
  multi-band files among them (:mod:`galmoss.galfit.galfitm`) are fitted over
  all their bands jointly and get GalfitM's outputs.
"""

from __future__ import annotations

import os
from pathlib import Path

from .constraints import Constraint, parse_constraints
from .convert import build_profiles, row_values, starts
from .feedme import Feedme, FeedmeError, FeedmeUnsupportedError, parse_feedme
from .galfitm import GalfitmFeedme, is_galfitm, parse_galfitm
from .profiles import EdgeDiskSB, FerrerSB, KingSB, NukerSB
from .run import galfit_sigma, load_galaxy, run_galfit


def read_galfit(path: str | os.PathLike, *, base: str | os.PathLike | None = None):
    """The Dataset and profiles a GALFIT feedme describes.

    Parameters
    ----------
    path
        A GALFIT 3 input file.
    base
        Folder relative paths in it are read from (default: the feedme's folder).

    Returns
    -------
    (Dataset, dict)
        A one-galaxy :class:`galmoss.Dataset` (the H) section of A), its sigma --
        C) or GALFIT's sigma from GAIN (or ATODGAIN) and NCOMBINE --, D) PSF and F) mask)
        with the profiles already attached, and the profiles ``{"<type>_<k>": profile}``.
        Magnitudes are of counts per second, as GALFIT's: their zero point is
        J) + 2.5 log10(EXPTIME) of A)'s header.
        Centres in the profiles are in the cutout's frame (x - xmin + 1); use
        :func:`write_galfit` to write fitted results back in the full frame.

    Raises
    ------
    FeedmeError, FeedmeUnsupportedError
        The file (or its constraint file) does not parse or uses what galmoss lacks.
    FileNotFoundError, ValueError, NotImplementedError
        A file it names is missing, H) lies outside the image, or E) > 1.
    """
    from ..data import Dataset

    feedme = parse_feedme(path, base=base)
    cons = parse_constraints(feedme.constraints, feedme.components) if feedme.constraints is not None else []
    gal = load_galaxy(feedme, cons)
    if gal.image is None:
        message = "; ".join(gal.messages)
        if "not implemented" in message:
            raise NotImplementedError(message)
        if "does not exist" in message:
            raise FileNotFoundError(message)
        raise ValueError(message)
    profiles = build_profiles([feedme], [cons], [gal.origin], zeropoint=gal.zeropoint)
    dataset = Dataset.from_arrays(
        gal.image[None], gal.sigma[None], gal.psf, (gal.weight == 0).astype("int8")[None], galaxy_index=[str(feedme.path)],
        mask_index=0,  # GALFIT's F): every non-zero pixel is bad, even one under the galaxy (never a segmentation map)
    )
    dataset.define_profiles(**profiles)
    dataset.galfit = feedme
    return dataset, profiles


def write_galfit(path: str | os.PathLike, feedme, results=None, row: int = 0) -> Path:
    """Write a GALFIT input file (usable as a restart file ``galfit.NN``).

    Parameters
    ----------
    path
        The file to write.
    feedme
        The feedme the fit came from (a path or a parsed :class:`Feedme`): its
        control lines and components are kept.
    results
        A :attr:`galmoss.Fitting.results` table (or one row) of a fit of the
        profiles :func:`read_galfit` gave; None writes the feedme's own start values.
    row
        The row of ``results`` to write.

    Returns
    -------
    pathlib.Path
    """
    from .output import format_feedme

    if not isinstance(feedme, Feedme):
        feedme = parse_feedme(feedme)
    origin = (feedme.region[0], feedme.region[2]) if feedme.region is not None else (1, 1)
    tab = starts(feedme)
    values = {key: v for key, (v, _, _) in tab.items()}
    free = {key: fit for key, (_, fit, _) in tab.items()}
    if results is not None:
        rec = results[row] if hasattr(results, "colnames") and not hasattr(results, "index") else results
        for comp in feedme.components:
            for label, v in row_values(rec, comp, origin).items():
                if (comp.index, label) in values:
                    values[(comp.index, label)] = v
    coupled = set()
    if feedme.constraints is not None and feedme.constraints.is_file():
        from .convert import coupled_keys

        coupled = coupled_keys(parse_constraints(feedme.constraints, feedme.components))
    target = Path(path)
    target.write_text(format_feedme(feedme, values, free, title="written by gm.write_galfit", coupled=coupled))
    return target


__all__ = [
    "Constraint",
    "Feedme",
    "FeedmeError",
    "FeedmeUnsupportedError",
    "GalfitmFeedme",
    "EdgeDiskSB",
    "FerrerSB",
    "KingSB",
    "NukerSB",
    "build_profiles",
    "galfit_sigma",
    "is_galfitm",
    "load_galaxy",
    "parse_constraints",
    "parse_feedme",
    "parse_galfitm",
    "read_galfit",
    "run_galfit",
    "write_galfit",
]
