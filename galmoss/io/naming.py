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
import re

__all__ = ["RESERVED", "safe_file_names"]

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
