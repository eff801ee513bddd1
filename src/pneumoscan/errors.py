"""User-facing errors: each one is printed by the CLI as a single line, never a traceback.

The classes say what kind of problem it is, so that callers (the web server's HTTP statuses, batch
jobs that skip bad files) can tell them apart without reading the message.
"""

from __future__ import annotations

import errno
import os
import warnings


class PneumoscanError(Exception):
    """An error caused by user input (a file, a folder, a setting) with a message that says what to do."""


class TooLargeError(PneumoscanError):
    """An input is over a size limit (bytes, pixels, or a request's budget)."""


class UnsupportedInputError(PneumoscanError):
    """An input is not of a kind pneumoscan reads (a format, a file type, a checkpoint for a model)."""


class ImageReadError(PneumoscanError):
    """A file could not be decoded into an image (damaged, truncated, unreadable); the message names it."""


class ImageTooLargeError(ImageReadError, TooLargeError):
    """An image (or its file) is over the pixel or byte limit."""


class UnsupportedImageError(ImageReadError, UnsupportedInputError):
    """A file is not an image in a supported format (or not a regular file)."""


class DataError(PneumoscanError):
    """A data folder is missing, empty, one-class or otherwise unusable."""


class ModelFileError(PneumoscanError):
    """A model file is missing, damaged, or not a pneumoscan model."""


class OutputError(PneumoscanError):
    """An output file or folder cannot be written (disk full, a file where a folder should be, ...)."""


class RunFolderError(PneumoscanError):
    """A training run folder is in use by another run, holds another run, or has nothing to resume."""


class InputRefusedError(ImageReadError):
    """An image whose header says the model cannot judge it (e.g. a CT, a lateral view).

    ``reason`` is the refusal reason without the file name.
    """

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: refused: {reason}")
        self.reason = reason


# OS errors a user can fix (the disk, the path, the permissions), with what to do about each
_OS_HINTS = {
    errno.ENOSPC: "free some space or write elsewhere",
    errno.EDQUOT: "free some space or write elsewhere",
    errno.EFBIG: "the file is over this file system's (or this process's) size limit; write elsewhere",
    errno.EACCES: "check its permissions or choose another place",
    errno.EPERM: "check its permissions or choose another place",
    errno.EROFS: "choose a place that is not read-only",
    errno.EEXIST: "a file is in the way where a folder is needed; give a folder",
    errno.ENOTDIR: "a file is in the way where a folder is needed; give a folder",
    errno.EISDIR: "a folder where a file is needed; give a file name",
    errno.ENOENT: "check the path",
    errno.ENAMETOOLONG: "use a shorter name",
}


def os_error(exc: OSError, path: str | os.PathLike[str] | None = None) -> PneumoscanError:
    """The one-line error for an OS error a user can fix, naming ``path`` (an output being written:
    :class:`OutputError`) or else the file ``exc`` names.

    Libraries that re-raise an OS error with their own text (pydicom adds a traceback) are read
    through to the OS error they wrap, so the line says the OS's reason, never a traceback.
    """
    cause = _os_cause(exc)
    code = cause.errno
    reason = cause.strerror or (os.strerror(code) if code else str(exc).splitlines()[0] if str(exc) else "")
    name = path if path is not None else exc.filename or cause.filename
    hint = _OS_HINTS.get(code or 0, "")
    text = f"{os.fspath(name)}: " if name is not None else ""
    if path is not None:
        text += f"cannot write ({reason or type(cause).__name__})"
    else:
        text += reason or type(cause).__name__
    text += f"; {hint}" if hint else ""
    return OutputError(text) if path is not None else PneumoscanError(text)


def user_error(exc: BaseException) -> PneumoscanError | None:
    """``exc`` as the one-line error a user can act on (exit status 2), or None for an internal error.

    The CLI's one rule for turning exceptions into messages: pneumoscan's own errors, and OS errors
    a user can fix (:func:`os_error`: a full disk, a file where a folder is needed, permissions).
    """
    if isinstance(exc, PneumoscanError):
        return exc
    if isinstance(exc, OSError) and _os_cause(exc).errno in _OS_HINTS:
        return os_error(exc)
    return None


def _os_cause(exc: OSError) -> OSError:
    """``exc``, or the OS error (with an errno) it was raised from when it carries none itself."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen
        seen = seen.__cause__ or seen.__context__
    return exc


class PneumoscanWarning(UserWarning):
    """Input that was skipped or changed on the way (an unreadable folder, ...); the CLI prints one line."""


def warn(message: str) -> None:
    """Issue a :class:`PneumoscanWarning` (the CLI shows it as ``pneumoscan: warning: MESSAGE``)."""
    warnings.warn(PneumoscanWarning(message), stacklevel=2)
