"""File-system helpers shared by the modules that write durably (catalog, model registry)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["fsync"]


def fsync(path: Path, *, strict: bool = True) -> None:
    """Flush a file, or a folder's entries, to disk. With ``strict=False`` platforms that cannot
    open or fsync the path (folders on some systems) are ignored."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        if strict:
            raise
