"""Datasets: the galaxies of a run, read lazily from files, arrays or image sets.

:class:`Dataset` (``gm.Dataset``) holds one band; given inputs as dicts by band
it builds a :class:`MultiBandDataset` (one ``Dataset`` per band, galaxies in step).
"""

from .dataset import DataSet, Dataset, GalaxyData, estimate_sigma
from .multiband import MultiBandDataset, is_multiband

__all__ = ["DataSet", "Dataset", "GalaxyData", "MultiBandDataset", "estimate_sigma", "is_multiband"]
