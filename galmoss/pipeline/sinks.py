"""Sinks: where finished batches go, outside the fault barrier of the fit.

A sink that fails never touches a fit: the rows are already in the store; the
galaxy gets ``block_not_written`` and a message, and the run goes on.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..errors import OutputError
from ..fitting.batch import Batch, BatchResult
from ..flags import Flag
from ..model import Model
from .store import ResultStore

log = logging.getLogger("galmoss")

__all__ = ["BlockWriter", "check_output_folder"]

_MARK = "GALMOSS"


def check_output_folder(folder: Path, what: str) -> Path:
    """Create ``folder`` if needed and prove it writable, before any galaxy is fitted.

    Raises
    ------
    OutputError
        Naming the folder, the argument and the reason.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{what} '{folder}' exists and is a file, not a folder; give a folder path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".galmoss-write-test-{os.getpid()}"
        # O_EXCL | O_NOFOLLOW: a link planted at the probe's name is never written through
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
        with os.fdopen(fd, "wb") as fh:
            fh.write(b"ok")
        probe.unlink()
    except OSError as exc:
        raise OutputError(
            f"{what} '{folder}' cannot be written ({exc.strerror or exc}); give a folder you may write to "
            "(nothing has been fitted yet)"
        ) from exc
    return folder


def _ascii(text: str) -> str:
    return "".join(ch if " " <= ch <= "~" else "?" for ch in text)


def _is_own_block(path: Path) -> bool:
    """Whether an existing file is an image block galmoss wrote (and may replace)."""
    from astropy.io import fits

    try:
        return bool(fits.getheader(path, 0).get(_MARK, False))
    except Exception:  # noqa: BLE001 - anything unreadable is not ours to overwrite
        return False


#: A vector parameter with more elements than this is not listed in image-block
#: headers (one card ``k_<SLOT> = 'see table: ...'`` instead of K cards).
MAX_HEADER_ELEMENTS = 99


class BlockWriter:
    """Writes one image block per fitted galaxy into ``folder``.

    Parameters
    ----------
    folder
        The image-block folder (checked writable before the run).
    model
        The fitted model (component names and GALFIT-style header keys).
    file_names
        The safe file name of every galaxy, by dataset position
        (:func:`galmoss.io.naming.safe_file_names`).
    """

    def __init__(self, folder: Path, model: Model, file_names: list[str]) -> None:
        self.folder = Path(folder)
        self.model = model
        self.file_names = file_names
        self.comp_types = {name: type(p).__name__ for name, p in model.profiles.items()}

    def cards(self, store: ResultStore, pos: int, errors: bool) -> list:
        from ..io.results import galfit_header_cards

        values, errs = {}, ({} if errors else None)
        for col, idx in self.model.column_groups():
            if col.element is not None and len(idx) > MAX_HEADER_ELEMENTS:
                # too long to list in a header: the values are in the results table
                values[(col.profile, col.slot)] = f"see table: {col.group} ({len(idx)} values)"
                continue
            for j in idx:
                c = self.model.columns[j]
                key = (c.profile, c.slot if c.element is None else f"{c.slot}_{c.element + 1}")
                values[key] = store.values[pos, j]
                if errs is not None:
                    errs[key] = store.errors[pos, j]
        dof = int(store.dof[pos])
        extra = {
            "CHISQ": float(store.loss[pos]),
            "NDOF": dof,
            "CHI2NU": float(store.loss[pos] / dof) if dof > 0 else float("nan"),
            "NFREE": int(self.model.n_free),
            "NITER": int(store.n_iter[pos]),
            "FLAGS": int(store.flags[pos]),
        }
        return galfit_header_cards(self.comp_types, values, errs, extra)

    def write(self, batch: Batch, result: BatchResult, store: ResultStore) -> None:
        """Write the blocks of a batch; a failure flags that galaxy and keeps its fit."""
        from ..io.results import write_image_block

        if result.model_image is None:
            return
        index = {int(p): i for i, p in enumerate(batch.positions)}
        for j, pos in enumerate(result.positions):
            pos = int(pos)
            if not np.isfinite(result.loss[j]):
                continue
            i = index[pos]
            h, w = batch.shapes[i]
            target = self.folder / self.file_names[pos]
            try:
                if target.exists() and not _is_own_block(target):
                    raise OutputError(
                        f"'{target}' exists and is not an image block galmoss wrote; it was left untouched "
                        "(give img_block_path a folder of its own)"
                    )
                write_image_block(
                    target,
                    data=batch.image[i, :h, :w],
                    model=result.model_image[j],
                    components=result.components[j],
                    header_cards=self.cards(store, pos, result.errors is not None),
                    primary_header_cards=[(_MARK, True, "an image block written by galmoss"),
                                          ("OBJECT", _ascii(batch.names[i])[:48], "galaxy_index")],
                    mask=batch.weight[i, :h, :w] > 0,
                    sigma=batch.sigma[i, :h, :w],
                )
                store.image_block[pos] = self.file_names[pos]
            except Exception as exc:  # noqa: BLE001 - a failed write never erases a fit
                log.warning("image block of galaxy %r not written: %s", batch.names[i], exc)
                store.add_flag(pos, Flag.block_not_written, f"image block not written: {exc}")

    def update_headers(self, store: ResultStore) -> None:
        """Rewrite the fit cards of every block (after bootstrap errors), images untouched."""
        from ..io.results import update_image_block_header

        for pos, fname in enumerate(store.image_block):
            if not fname:
                continue
            path = self.folder / fname
            try:
                update_image_block_header(path, self.cards(store, pos, True))
            except Exception as exc:  # noqa: BLE001 - the results table is already safe
                log.warning("image block %s: header not updated: %s", path, exc)
                store.add_flag(pos, Flag.block_not_written, f"image block header not updated: {exc}")
