"""Atomic writes: the bytes go to a hidden temporary file in the destination folder, then ``os.replace``."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO

from ..errors import OutputError


def _atomic_write(target: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``target`` through a temporary file in its folder and os.replace."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # os.open with mode 0o666 honours the umask; tempfile.mkstemp would leave
    # the final file readable by its owner only.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(tmp, flags, 0o666)
    except OSError as exc:
        raise OutputError(
            f"cannot create a file in '{target.parent}' to write '{target.name}' ({exc.strerror or exc}); "
            "check that the folder is writable and the disk is not full"
        ) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        try:
            os.replace(tmp, target)
        except OSError as exc:
            raise OutputError(
                f"cannot replace '{target}' ({exc.strerror or exc}); check that it is not a folder "
                "and that you may write there"
            ) from exc
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _make_folder(folder: Path, what: str) -> None:
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{what} '{folder}' exists and is a file, not a folder; give a folder path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create the {what} folder '{folder}' ({exc.strerror or exc}); "
            "check the path and its permissions"
        ) from exc
