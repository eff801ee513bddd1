"""Reading an input file whole, safely: regular files only, never more than a size limit.

A FIFO would block a plain ``open`` forever, and a device (``/dev/zero``) or a huge sparse file
would be read until memory runs out; :func:`read_regular_file` refuses all three before reading.
"""

from __future__ import annotations

import errno
import os
import stat


class NotRegularFileError(OSError):
    """The path is a FIFO, a device or a socket, not a regular file."""


class FileTooLargeError(OSError):
    """The file is over the size limit; ``size`` is its size in bytes (at least the limit + 1)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(errno.EFBIG, f"file is {size} bytes, over the {limit}-byte limit")
        self.size = size
        self.limit = limit


def read_regular_file(path: str | os.PathLike[str], max_bytes: int, *, head_only: bool = False) -> bytes:
    """The bytes of the regular file ``path``; raises OSError (or a subclass above) otherwise.

    ``head_only``: the first ``max_bytes`` of a larger file instead of :class:`FileTooLargeError`.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))  # a FIFO opens at once
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder", os.fspath(path))
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(errno.EINVAL, "not a regular file (a pipe, device or socket)")
        size = os.fstat(fd).st_size
        if head_only:
            return handle.read(max_bytes)
        if size > max_bytes:
            raise FileTooLargeError(size, max_bytes)
        data = handle.read(size + 1)  # a read of the limit would allocate the limit, whatever the size
        if len(data) > size:  # the file has grown since fstat
            data += handle.read(max_bytes + 1 - len(data))
    if len(data) > max_bytes:
        raise FileTooLargeError(len(data), max_bytes)
    return data
