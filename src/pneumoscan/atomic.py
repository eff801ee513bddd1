"""Atomic file writes: a file is either the old version or the complete new one, never half-written.

Every output file of pneumoscan is written here, beside its destination (so the final rename never
crosses file systems), and every OS error on the way (a full disk, a file where the folder should be,
no permission) becomes one :class:`~pneumoscan.errors.OutputError` line naming the destination.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pneumoscan.errors import os_error


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    An OS error while the block writes the temporary file is reported as failing to write ``path``.
    """
    target = Path(path)
    tmp = ""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the permissions open() would
        yield Path(tmp)
        os.replace(tmp, target)
    except OSError as exc:
        raise os_error(exc, target) from exc
    finally:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)


def output_folder(path: str | os.PathLike[str]) -> Path:
    """Create the output folder ``path`` (and its parents) if needed; one-line error where it cannot be."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error(exc, folder) from exc
    return folder


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically.

    File names that are not valid UTF-8 (read from disk as ``os.fsdecode`` does, with
    ``surrogateescape``) are written back as their original bytes, never an encoding error.
    """
    atomic_write_bytes(path, text.encode("utf-8", "surrogateescape"))
