"""User-facing errors: each one is printed by the CLI as a single line, never a traceback."""

from __future__ import annotations

import warnings


class PneumoscanError(Exception):
    """An error caused by user input (a file, a folder, a setting) with a message that says what to do."""


class ImageReadError(PneumoscanError):
    """A file could not be decoded into an image; the message names the file."""


class DataError(PneumoscanError):
    """A data folder is missing, empty, one-class or otherwise unusable."""


class ModelFileError(PneumoscanError):
    """A model file is missing, damaged, or not a pneumoscan model."""


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
