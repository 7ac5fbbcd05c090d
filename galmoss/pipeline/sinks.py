"""Sinks: where finished batches go, outside the fault barrier of the fit.

A sink that fails never touches a fit: the rows are already in the store. A
sink never writes into the store (it runs in the writer thread): it reports
what it did as a :class:`SinkReport` (the files written, and a
``(position, flag, message)`` per galaxy it could not serve, e.g.
``block_not_written``), which the fitting thread applies.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import OutputError
from ..fitting.records import Batch, BatchResult
from ..flags import Flag
from ..model import Model
from .store import ResultStore

log = logging.getLogger("galmoss")

__all__ = ["BlockWriter", "SinkReport", "check_output_folder"]


@dataclass
class SinkReport:
    """What a sink did with a batch: files written per galaxy, and problems to flag.

    Attributes
    ----------
    blocks
        ``{position: image-block file name}`` of the blocks written.
    problems
        ``(position, flag, message)`` per galaxy a sink could not serve.
    """

    blocks: dict[int, str] = field(default_factory=dict)
    problems: list[tuple[int, int, str]] = field(default_factory=list)

    def apply(self, store: ResultStore) -> None:
        """Record the report in the store (called by the thread that owns the store)."""
        for pos, fname in self.blocks.items():
            store.image_block[pos] = fname
        for pos, flag, message in self.problems:
            store.add_flag(pos, flag, message)

    def apply_to(self, result: BatchResult) -> BatchResult:
        """The batch's rows with the problems' flags and messages added (for its part file)."""
        at = {int(p): i for i, p in enumerate(result.positions)}
        for pos, flag, message in self.problems:
            i = at[pos]
            result.flags[i] |= int(flag)
            result.messages[i] = "; ".join(filter(None, [result.messages[i], message]))
        return result

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
        """The header cards of galaxy ``pos`` from the store's row."""
        values = dict(zip(store.columns, store.values[pos]))
        errs = dict(zip(store.columns, store.errors[pos])) if errors else None
        return self.row_cards(values, errs, store.loss[pos], store.dof[pos], store.n_iter[pos], store.flags[pos])

    def row_cards(self, values: dict, errors: dict | None, loss, dof, n_iter, flag) -> list:
        """GALFIT-style header cards of one galaxy: ``{column: value}``, its errors, and the fit's numbers."""
        from ..io.results import galfit_header_cards

        cards, errs = {}, ({} if errors is not None else None)
        for col, idx in self.model.column_groups():
            if col.element is not None and len(idx) > MAX_HEADER_ELEMENTS:
                # too long to list in a header: the values are in the results table
                cards[(col.profile, col.slot)] = f"see table: {col.group} ({len(idx)} values)"
                continue
            for j in idx:
                c = self.model.columns[j]
                key = (c.profile, c.slot if c.element is None else f"{c.slot}_{c.element + 1}")
                cards[key] = values[c.name]
                if errs is not None:
                    errs[key] = errors[c.name]
        dof = int(dof)
        extra = {
            "CHISQ": float(loss),
            "NDOF": dof,
            "CHI2NU": float(loss / dof) if dof > 0 else float("nan"),
            "NFREE": int(self.model.n_free),
            "NITER": int(n_iter),
            "FLAGS": int(flag),
        }
        return galfit_header_cards(self.comp_types, cards, errs, extra)

    def write(self, batch: Batch, result: BatchResult) -> SinkReport:
        """Write the blocks of a batch; a failure is reported (``block_not_written``), the fit is kept."""
        from ..io.results import write_image_block

        report = SinkReport()
        if result.model_image is None:
            return report
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
                values = {k: v[j] for k, v in result.values.items()}
                errors = None if result.errors is None else {k: v[j] for k, v in result.errors.items()}
                write_image_block(
                    target,
                    data=batch.image[i, :h, :w],
                    model=result.model_image[j],
                    components=result.components[j],
                    header_cards=self.row_cards(values, errors, result.loss[j], result.dof[j], result.n_iter[j],
                                                result.flags[j]),
                    primary_header_cards=[(_MARK, True, "an image block written by galmoss"),
                                          ("OBJECT", _ascii(batch.names[i])[:48], "galaxy_index")],
                    mask=batch.weight[i, :h, :w] > 0,
                    sigma=batch.sigma[i, :h, :w],
                )
                report.blocks[pos] = self.file_names[pos]
            except Exception as exc:  # noqa: BLE001 - a failed write never erases a fit
                log.warning("image block of galaxy %r not written: %s", batch.names[i], exc)
                report.problems.append((pos, int(Flag.block_not_written), f"image block not written: {exc}"))
        return report

    def update_headers(self, store: ResultStore) -> SinkReport:
        """Rewrite the fit cards of every block (after bootstrap errors), images untouched."""
        from ..io.results import update_image_block_header

        report = SinkReport()
        for pos, fname in enumerate(store.image_block):
            if not fname:
                continue
            path = self.folder / fname
            try:
                update_image_block_header(path, self.cards(store, pos, True))
            except Exception as exc:  # noqa: BLE001 - the results table is already safe
                log.warning("image block %s: header not updated: %s", path, exc)
                report.problems.append((pos, int(Flag.block_not_written), f"image block header not updated: {exc}"))
        return report
