"""Files with secrets or personal data in them, created private from the start.

The signing key, the SQLite database (addresses, tokens), captured and
previewed messages (live unsubscribe links) and exports are created mode 0600
in folders made 0700: never written first and chmod-ed after, which leaves a
moment in which anyone on the machine can open them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TextIO


def private_dir(path: Path) -> Path:
    """``path`` and its missing parents, made 0700 (existing folders are left as
    they are: the operator chose them)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _open(path: Path, flags: int) -> int:
    private_dir(path.parent)
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its old mode through O_CREAT
    return fd


def write_private(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write ``data`` to ``path``, mode 0600; ``exclusive``: never over a file."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    with os.fdopen(_open(path, flags), "wb") as handle:
        handle.write(data)


def open_private(path: Path) -> TextIO:
    """A text file to write, mode 0600 (CSV: newline handling left to the writer)."""
    return os.fdopen(
        _open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "w", newline="", encoding="utf-8"
    )


def touch_private(path: Path) -> None:
    """Create an empty file 0600 if there is none (SQLite then keeps its mode)."""
    if not path.exists():
        os.close(_open(path, os.O_WRONLY | os.O_CREAT))
