"""Files written whole or not at all: a temporary file in the same folder, then a rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from core.errors import StudioError


def write_atomic(path: str | os.PathLike, data: bytes, *, field: str | None = None) -> Path:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``: a reader sees the
    old file or the new one, never half of one, and a failure leaves nothing behind. A missing
    folder is a :class:`StudioError` naming it (and ``field``, the option that gave the path)."""
    path = Path(path)
    if not path.parent.exists():
        raise StudioError("the folder does not exist", path=str(path.parent), field=field,
                          fix="create the folder or choose another path.")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
