"""File names made from galaxy names: safe, unique, and inside the folder named.

A ``galaxy_index`` can be anything a catalogue holds: ``"../../x"``, an absolute
path, ``"results"``, two names differing only in case, 300 characters. The file
galmoss writes for a galaxy is ``<safe name>.fits`` where the safe name is

* the name with every character outside ``A-Z a-z 0-9 . _ + -`` replaced by
  ``_`` and leading dots and dashes removed (so it can never climb out of the
  folder, be hidden, or look like an option), cut to 100 characters;
* followed by ``-`` and 8 hexadecimal digits of the name's SHA-1 whenever that
  changed the name, the result collides (ignoring case, as macOS and Windows
  do) with another galaxy's or with a name galmoss uses itself (``results``,
  ``run``, ``fit``, ``parts``), so distinct galaxies never share a file.

The results table keeps the user's name in ``galaxy_index`` and the file name in
``image_block``.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat

__all__ = ["RESERVED", "open_append", "safe_file_names"]

RESERVED = frozenset({"results", "run", "fit", "parts", "report"})
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")
_MAX = 100


def _digest(name: str) -> str:
    return hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def safe_file_names(names: list[str], suffix: str = ".fits") -> list[str]:
    """One safe, unique file name per galaxy name (see the module docs)."""
    base = []
    for name in names:
        safe = _UNSAFE.sub("_", name).lstrip(".-")[:_MAX] or "galaxy"
        base.append(safe)
    counts: dict[str, int] = {}
    for safe in base:
        key = safe.lower()
        counts[key] = counts.get(key, 0) + 1
    out = []
    for name, safe in zip(names, base):
        key = safe.lower()
        if safe != name or counts[key] > 1 or key in RESERVED or key.removesuffix(suffix) in RESERVED:
            safe = f"{safe}-{_digest(name)}"
        out.append(safe + suffix)
    # a real name that happens to equal another's hashed form: disambiguate by position
    seen: set[str] = set()
    for i, fname in enumerate(out):
        if fname.lower() in seen:
            out[i] = f"{fname.removesuffix(suffix)}-{i}{suffix}"
        seen.add(out[i].lower())
    return out


def open_append(path, encoding: str = "utf-8"):
    """Open a log file (``fit.log``) for appending text, never through a symbolic link.

    A link at ``path`` could point anywhere (a file of the user's, another folder), so a
    link, or anything that is not a regular file, is refused instead of written through.

    Raises
    ------
    galmoss.errors.OutputError
        If ``path`` is a symbolic link or not a regular file (an OSError: the message names it).
    """
    from ..errors import OutputError

    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    if not getattr(os, "O_NOFOLLOW", 0) and os.path.islink(path):  # Windows: check instead
        raise OutputError(f"'{path}' is a symbolic link; galmoss writes its logs only to plain files: remove the link")
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        if os.path.islink(path):
            raise OutputError(f"'{path}' is a symbolic link; galmoss writes its logs only to plain files: remove "
                              "the link") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OutputError(f"'{path}' is not a regular file; remove it so that galmoss can write its log there")
    return os.fdopen(fd, "a", encoding=encoding)
