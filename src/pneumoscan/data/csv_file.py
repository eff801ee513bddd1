"""Read a CSV the user gives (labels, boxes) as strings, every failure one line naming the file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pneumoscan.errors import DataError


def read_user_csv(csv_path: Path, what: str, expected: str) -> pd.DataFrame:
    """The rows of ``csv_path`` as strings (empty cells ``""``); ``what`` names the file in errors
    (e.g. "labels CSV") and ``expected`` says what a right one holds."""
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: {what} not found")
    try:
        return pd.read_csv(csv_path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"{csv_path}: the CSV is empty; {expected}") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        detail = " ".join(str(exc).split())[:160]
        raise DataError(f"{csv_path}: not a readable CSV ({detail}); {expected}") from None
