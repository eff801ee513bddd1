"""When to draw live progress bars: only on a terminal.

A progress bar redraws itself with carriage returns and escape codes; written into a log file
(``pneumoscan train ... > train.log``) or a notebook cell it is kilobytes of noise.  So bars are
drawn only when progress was asked for and the stream is a terminal; elsewhere the commands print
plain lines instead (one per epoch when training).
"""

from __future__ import annotations

from typing import TextIO


def live_bars(progress: bool, stream: TextIO) -> bool:
    """Whether to draw a live progress bar on ``stream``: asked for, and ``stream`` is a terminal."""
    isatty = getattr(stream, "isatty", None)
    return progress and callable(isatty) and bool(isatty())
