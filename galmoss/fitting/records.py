"""The per-galaxy records a batch fit takes and gives: :class:`Batch` and :class:`BatchResult`.

Both are dataclasses whose fields are all per-galaxy: a numpy array with a
leading galaxy axis, a list with one item per galaxy, a dict of such arrays
(one per results column), or None (not computed). Selecting, joining and
reordering rows is therefore written once, over the fields
(:func:`take_rows`, :func:`concatenate_rows`): a new per-galaxy field is a
new field here and nothing else in this module.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from .status import Status

__all__ = ["Batch", "BatchResult", "concatenate_rows", "take_rows"]

R = TypeVar("R")


def _take(value: Any, rows: np.ndarray) -> Any:
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        return value[rows]  # fancy indexing: a copy
    if isinstance(value, dict):
        return {k: _take(v, rows) for k, v in value.items()}
    # a list of per-galaxy items; mutable items (message lists) are copied so a sub-batch edits its own
    return [copy.copy(value[i]) for i in rows]


def _join(values: list[Any]) -> Any:
    if any(v is None for v in values):
        return None
    first = values[0]
    if isinstance(first, np.ndarray):
        return np.concatenate(values)
    if isinstance(first, dict):
        return {k: _join([v[k] for v in values]) for k in first}
    return [item for v in values for item in v]


def take_rows(record: R, rows) -> R:
    """The rows ``rows`` (an index array) of a per-galaxy record, every field alike."""
    rows = np.asarray(rows, dtype=np.int64)
    return type(record)(**{f.name: _take(getattr(record, f.name), rows) for f in dataclasses.fields(record)})


def concatenate_rows(records: list[R]) -> R:
    """One record of several, in the given order (a field None in any of them is None)."""
    records = [r for r in records if len(r)] or records[:1]
    kind = type(records[0])
    return kind(**{f.name: _join([getattr(r, f.name) for r in records]) for f in dataclasses.fields(kind)})


@dataclass
class Batch:
    """Galaxies of one (possibly padded) cutout shape, ready to fit.

    Attributes
    ----------
    positions
        (B,) dataset positions (rows of the results).
    names
        Their ``galaxy_index``.
    image, sigma, weight
        (B, H, W) float arrays; padded pixels have weight 0.
    psf
        (B, h, w) or None.
    shapes
        Each galaxy's own cutout shape (the padded area is cut off on output).
    flags
        (B,) int64 flags set while reading.
    messages
        One list of messages per galaxy.
    segments
        (B, H, W) segmentation maps of the automatic mask, or None.
    n_masked
        (B,) pixels the automatic mask took out, or None.
    neighbours, neighbour_pixels
        Neighbours fitted with the target (``neighbours="fit"``): one list of
        dicts per galaxy, and a (B, H, W) map of their pixels; else None.
    estimates
        The image-based starts of each galaxy
        (:func:`galmoss.fitting.measure.batch_estimates`), measured ahead of the
        fit by the stream; None: measured when needed.
    """

    positions: np.ndarray
    names: list[str]
    image: np.ndarray
    sigma: np.ndarray
    weight: np.ndarray
    psf: np.ndarray | None
    shapes: list[tuple[int, int]]
    flags: np.ndarray
    messages: list[list[str]]
    segments: np.ndarray | None = None
    n_masked: np.ndarray | None = None
    neighbours: list[list[dict]] | None = None
    neighbour_pixels: np.ndarray | None = None
    estimates: list[dict] | None = None

    def __len__(self) -> int:
        return len(self.positions)

    def take(self, rows: np.ndarray) -> "Batch":
        """The sub-batch of ``rows``."""
        return take_rows(self, rows)


@dataclass
class BatchResult:
    """What a batch fit gives, one row per galaxy (numpy only, picklable).

    Attributes
    ----------
    positions, names
        Which galaxies.
    values
        ``{column: (B,)}`` reported values in the user's units (NaN where not fitted).
    errors
        ``{column: (B,)}`` covariance-matrix errors, or None when not computed.
    covariance
        (B, C, C) covariance of the reported columns (model order), or None.
    theta
        (B, P) best fitting-space parameters (float64; NaN where not fitted).
    loss
        (B,) the minimised sum of squared likelihood residuals (chi2 for the chi2
        likelihood, a deviance otherwise), without the priors' term.
    prior_loss
        (B,) the priors' term: the sum of squares of the prior rows (-2 ln of the
        prior up to a constant), 0 without priors; ``loss + prior_loss`` is what
        the fit minimised.
    dof, n_iter, status, converged, flags
        Per galaxy.
    messages
        One string per galaxy.
    model_image, components
        (B, H, W) float32 images, each galaxy cut to its own shape on output; only
        with ``FitSettings.model_images``.
    """

    positions: np.ndarray
    names: list[str]
    values: dict[str, np.ndarray]
    errors: dict[str, np.ndarray] | None
    covariance: np.ndarray | None
    theta: np.ndarray
    loss: np.ndarray
    prior_loss: np.ndarray
    dof: np.ndarray
    n_iter: np.ndarray
    status: np.ndarray
    converged: np.ndarray
    flags: np.ndarray
    messages: list[str]
    model_image: list[np.ndarray] | None = None
    components: list[dict[str, np.ndarray]] | None = None

    def __len__(self) -> int:
        return len(self.positions)

    def take(self, rows: np.ndarray) -> "BatchResult":
        """The rows ``rows`` of the result."""
        return take_rows(self, rows)

    def reorder(self, order: np.ndarray) -> "BatchResult":
        """The rows in the order ``order`` (a permutation)."""
        return take_rows(self, order)

    @classmethod
    def concatenate(cls, parts: list["BatchResult"]) -> "BatchResult":
        """One result of several (in the given order)."""
        return concatenate_rows(parts)

    @classmethod
    def empty(cls, columns: Any, positions, names, flags, messages, with_errors: bool,
              n_free: int | None = None) -> "BatchResult":
        """Rows of galaxies that were not fitted: NaN values, their flags and messages.

        ``columns`` is a :class:`~galmoss.model.Model` (its column names and
        number of free values) or a list of column names with ``n_free``.
        """
        if hasattr(columns, "columns"):
            n_free = columns.n_free
            columns = [c.name for c in columns.columns]
        n, c = len(positions), len(columns)
        nan = lambda: np.full(n, np.nan)  # noqa: E731
        return cls(
            positions=np.asarray(positions, dtype=np.int64),
            names=list(names),
            values={k: nan() for k in columns},
            errors={k: nan() for k in columns} if with_errors else None,
            covariance=np.full((n, c, c), np.nan) if with_errors else None,
            theta=np.full((n, int(n_free or 0)), np.nan),
            loss=nan(),
            prior_loss=nan(),
            dof=np.zeros(n, dtype=np.int64),
            n_iter=np.zeros(n, dtype=np.int64),
            status=np.full(n, int(Status.NOT_FITTED), dtype=np.int64),
            converged=np.zeros(n, dtype=bool),
            flags=np.asarray(flags, dtype=np.int64).copy(),
            messages=["; ".join(m) if isinstance(m, list) else str(m) for m in messages],
        )
