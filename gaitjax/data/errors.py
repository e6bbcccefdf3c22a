"""The one exception type for bad gait input: it names the file, column or value and what was expected."""

from __future__ import annotations

from pathlib import Path


class GaitDataError(ValueError):
    """Bad or unusable input data. The message names the file (when known), the offending column/value,
    and what was expected, so a user can fix the input without reading a traceback."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)
