"""User-facing errors: each one is printed by the CLI as a single line, never a traceback.

The classes say what kind of problem it is, so that callers (the web server's HTTP statuses, batch
jobs that skip bad files) can tell them apart without reading the message.
"""

from __future__ import annotations

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


class RunFolderError(PneumoscanError):
    """A training run folder is in use by another run, holds another run, or has nothing to resume."""


class InputRefusedError(ImageReadError):
    """An image whose header says the model cannot judge it (e.g. a CT, a lateral view).

    ``reason`` is the refusal reason without the file name.
    """

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: refused: {reason}")
        self.reason = reason


class PneumoscanWarning(UserWarning):
    """Input that was skipped or changed on the way (an unreadable folder, ...); the CLI prints one line."""


def warn(message: str) -> None:
    """Issue a :class:`PneumoscanWarning` (the CLI shows it as ``pneumoscan: warning: MESSAGE``)."""
    warnings.warn(PneumoscanWarning(message), stacklevel=2)
