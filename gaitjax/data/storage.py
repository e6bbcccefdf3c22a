"""OpenSim storage files (.mot/.sto): a strict reader, degree-to-radian conversion, and an atomic writer.

Reads version-1 files (`key=value` header), AddBiomechanics/OpenSim 4 files (`version=3`, no name line)
and the legacy format (`name`, `datacolumns`, `datarows`, `range` lines); tab- or space-separated.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from gaitjax.data.errors import GaitDataError

_LEGACY_KEYS = ("name", "datacolumns", "datarows", "range")
_MOTION_TYPES = ("rotational", "translational", "coupled")


@dataclasses.dataclass(frozen=True, eq=False)
class StorageTable:
    """One storage file: its columns (without `time`), the time axis and the values.

    Attributes:
        path: the file it was read from.
        name: the name line of the header ("" when the file has none).
        columns: column names in file order, `time` excluded.
        time_s: [N] float64 time stamps in seconds.
        values: [N, C] float64 values, one column per name in `columns`.
        in_degrees: True/False from the `inDegrees` key; None when the file does not say.
        header: every `key=value` (or legacy `key value`) pair of the header, values as written.
    """

    path: Path | None
    name: str
    columns: tuple[str, ...]
    time_s: np.ndarray
    values: np.ndarray
    in_degrees: bool | None
    header: dict[str, str]

    @property
    def n_frames(self) -> int:
        return int(self.time_s.shape[0])

    @property
    def rate_hz(self) -> int:
        """Sampling rate round((N - 1) / (t_end - t_0)) in Hz, as the released user tool computes it.

        Raises:
            GaitDataError: fewer than 2 rows, or a time column that is not strictly increasing.
        """
        if self.n_frames < 2:
            raise GaitDataError(
                f"needs at least 2 rows to infer a sampling rate, has {self.n_frames}", self.path
            )
        steps = np.diff(self.time_s)
        if np.any(steps <= 0):
            k = int(np.argmax(steps <= 0))
            raise GaitDataError(
                f"time column must be strictly increasing, but row {k + 1} has t={self.time_s[k + 1]!r} "
                f"after t={self.time_s[k]!r}",
                self.path,
            )
        return int(round((self.n_frames - 1) / (self.time_s[-1] - self.time_s[0])))

    def column(self, name: str) -> np.ndarray:
        """The [N] values of one column; GaitDataError naming the column when it is absent."""
        try:
            return self.values[:, self.columns.index(name)]
        except ValueError:
            raise GaitDataError(f"no column {name!r} (has {len(self.columns)} columns)", self.path) from None


def _parse_header(lines: list[str], path: Path) -> tuple[str, dict[str, str]]:
    name = ""
    header: dict[str, str] = {}
    for k, raw in enumerate(lines):
        line = raw.strip()
        if not line:
            continue
        if "=" in line:
            key, _, value = line.partition("=")
            header[key.strip()] = value.strip()
            continue
        first, _, rest = line.partition(" ")
        if first in _LEGACY_KEYS and rest.strip():
            header[first] = rest.strip()
            if first == "name":
                name = rest.strip()
        elif k == 0:
            name = line
    return name, header


def _parse_int(header: dict[str, str], key: str, path: Path) -> int | None:
    if key not in header:
        return None
    try:
        return int(header[key])
    except ValueError:
        raise GaitDataError(f"header {key}={header[key]!r} is not an integer", path) from None


def _parse_in_degrees(header: dict[str, str], path: Path) -> bool | None:
    if "inDegrees" not in header:
        return None
    value = header["inDegrees"].strip().lower()
    if value in ("yes", "true", "1"):
        return True
    if value in ("no", "false", "0"):
        return False
    raise GaitDataError(f"header inDegrees={header['inDegrees']!r}: expected 'yes' or 'no'", path)


def _parse_rows(
    body: list[str], first_line_no: int, columns: list[str], path: Path
) -> tuple[np.ndarray, list[int]]:
    """Parses the data lines into [N, C] float64; also returns the 1-based file line number of each row."""
    rows = []
    for k, line in enumerate(body):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(columns):
            raise GaitDataError(
                f"line {first_line_no + k}: {len(fields)} values, expected {len(columns)} (one per column); "
                "the row is truncated or has extra values",
                path,
            )
        rows.append((first_line_no + k, fields))
    if not rows:
        raise GaitDataError("no data rows after the column line", path)
    line_nos = [line_no for line_no, _ in rows]
    try:
        return np.array([fields for _, fields in rows], dtype=np.float64), line_nos
    except ValueError:
        pass
    for line_no, fields in rows:  # Slow path only to name the offending value.
        for col, text in zip(columns, fields, strict=True):
            try:
                float(text)
            except ValueError:
                raise GaitDataError(
                    f"line {line_no}, column {col!r}: value {text!r} is not a number", path
                ) from None
    raise GaitDataError("could not parse the data rows as numbers", path)  # pragma: no cover


def read_storage(path: str | Path) -> StorageTable:
    """Reads an OpenSim .mot/.sto storage file.

    `nRows`/`nColumns` (version 1 and 3; the column count includes `time`) must match the data. The legacy
    `datacolumns` must match too; the legacy `datarows` is recorded in `header` but not enforced, because
    real legacy files keep the row count of the untrimmed recording (e.g. Hamner 2010: 901 declared, 601
    rows present).

    Args:
        path: the file.

    Returns:
        The table; angles stay in the units of the file (see `in_degrees` and `to_radians`).

    Raises:
        GaitDataError: missing/empty file, no `endheader`, header counts that do not match the data, a
            truncated row, a non-numeric value, NaN/inf, no `time` column, or duplicate column names.
    """
    path = Path(path)
    if not path.is_file():
        raise GaitDataError("file does not exist (expected an OpenSim .mot/.sto storage file)", path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise GaitDataError(f"cannot read the file: {err}", path) from None
    if not text.strip():
        raise GaitDataError("file is empty (expected an OpenSim storage header ending in 'endheader')", path)
    lines = text.splitlines()
    end = next((k for k, line in enumerate(lines) if line.strip().lower() == "endheader"), None)
    if end is None:
        raise GaitDataError(
            "no 'endheader' line: not an OpenSim storage file, or its header is cut off", path
        )
    name, header = _parse_header(lines[:end], path)
    column_line = next((k for k in range(end + 1, len(lines)) if lines[k].strip()), None)
    if column_line is None:
        raise GaitDataError("no column-name line after 'endheader'", path)
    columns = lines[column_line].split()
    seen: set[str] = set()
    dupes = sorted({c for c in columns if c in seen or seen.add(c)})
    if dupes:
        raise GaitDataError(f"duplicate column names {dupes}", path)
    time_idx = next((k for k, c in enumerate(columns) if c.lower() == "time"), None)
    if time_idx is None:
        raise GaitDataError(f"no 'time' column (columns start with {columns[:4]})", path)

    data, line_nos = _parse_rows(lines[column_line + 1 :], column_line + 2, columns, path)
    n_rows, n_cols = data.shape
    for key, actual in (("nRows", n_rows), ("nColumns", n_cols), ("datacolumns", n_cols)):
        declared = _parse_int(header, key, path)
        if declared is not None and declared != actual:
            what = "data rows" if key == "nRows" else "columns (time included)"
            raise GaitDataError(f"header says {key}={declared} but the file has {actual} {what}", path)
    bad = ~np.isfinite(data)
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        raise GaitDataError(
            f"column {columns[col]!r} has a non-finite value ({data[row, col]}), first at data row {row} "
            f"(line {line_nos[row]}); expected finite numbers",
            path,
        )
    keep = [k for k in range(n_cols) if k != time_idx]
    return StorageTable(
        path=path,
        name=name,
        columns=tuple(columns[k] for k in keep),
        time_s=np.ascontiguousarray(data[:, time_idx]),
        values=np.ascontiguousarray(data[:, keep]),
        in_degrees=_parse_in_degrees(header, path),
        header=header,
    )


def to_radians(
    table: StorageTable,
    motion_types: Mapping[str, str],
    *,
    assume_degrees: bool | None = None,
    coupled_is_rotational: bool = False,
) -> StorageTable:
    """Converts the rotational columns of a coordinate table from degrees to radians.

    Translations stay in metres. "coupled" coordinates are NOT converted by default, as OpenSim's own
    `SimbodyEngine.convertDegreesToRadians` does: OpenSim's motion type (mirrored by `gaitjax.data.osim`) is
    Coupled when the first transform axis using the coordinate has a non-linear function, e.g. the scaled
    gait2392 `pelvis_tx` (in metres) and the LaiArnold/Rajagopal `knee_angle_*_beta`, and OpenSim's writer
    leaves such columns unconverted (the real LaiArnold degree file holds `knee_angle_r_beta` in radians).
    Pass `coupled_is_rotational=True` for a file known to store coupled angles in degrees.

    Args:
        table: a coordinate table (every column must be a coordinate of the model).
        motion_types: coordinate name -> "rotational" | "translational" | "coupled", as given by
            `gaitjax.data.osim.parse_osim(path).coordinates[name].motion_type`.
        assume_degrees: the unit to assume when the file has no `inDegrees` key (None: raise instead).
        coupled_is_rotational: convert "coupled" coordinates too (see above).

    Returns:
        A table in radians (`in_degrees=False`); the same table when it already was.

    Raises:
        GaitDataError: a column that is not a coordinate of the model, an unknown motion type, or a file
            that does not say whether it is in degrees when `assume_degrees` is None.
    """
    unknown = [c for c in table.columns if c not in motion_types]
    if unknown:
        raise GaitDataError(
            f"columns {unknown[:8]}{' ...' if len(unknown) > 8 else ''} are not coordinates of the model "
            f"({len(unknown)} of {len(table.columns)} columns); is the .mot paired with the right .osim?",
            table.path,
        )
    bad_types = {c: motion_types[c] for c in table.columns if motion_types[c] not in _MOTION_TYPES}
    if bad_types:
        raise GaitDataError(f"unknown motion types {bad_types}; expected one of {_MOTION_TYPES}", table.path)
    in_degrees = table.in_degrees if table.in_degrees is not None else assume_degrees
    if in_degrees is None:
        raise GaitDataError(
            "the header has no inDegrees key, so the angle unit is unknown; pass assume_degrees=True/False",
            table.path,
        )
    if not in_degrees:
        return dataclasses.replace(table, in_degrees=False)
    rotational = {"rotational", "coupled"} if coupled_is_rotational else {"rotational"}
    scale = np.array([np.pi / 180.0 if motion_types[c] in rotational else 1.0 for c in table.columns])
    return dataclasses.replace(table, values=table.values * scale, in_degrees=False)


def _format_row(t: float, row: np.ndarray) -> str:
    return "\t".join(repr(float(v)) for v in (t, *row))


def write_storage(
    path: str | Path,
    columns: Sequence[str],
    time_s: np.ndarray,
    values: np.ndarray,
    *,
    in_degrees: bool,
    name: str,
    extra_header: Mapping[str, str] | None = None,
) -> Path:
    """Writes a version-1 OpenSim storage file atomically (temp file in the same folder, then os.replace).

    Values are written with full float64 precision (shortest repr), so reading the file back gives the
    same numbers bit for bit.

    Args:
        path: destination (.mot or .sto).
        columns: C column names, `time` excluded.
        time_s: [N] seconds, strictly increasing.
        values: [N, C] values.
        in_degrees: written as `inDegrees=yes|no`.
        name: the first header line.
        extra_header: more `key=value` lines (keys must not repeat the standard ones).

    Returns:
        The path written.

    Raises:
        GaitDataError: shapes that do not match, non-finite values, a non-increasing time axis, duplicate or
            blank column names, or header text containing line breaks.
    """
    path = Path(path)
    columns = tuple(columns)
    time_s = np.asarray(time_s, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or time_s.ndim != 1 or values.shape != (time_s.shape[0], len(columns)):
        raise GaitDataError(
            f"values {values.shape} must be [N, C] with N=len(time_s)={time_s.shape} and C={len(columns)}",
            path,
        )
    if len(set(columns)) != len(columns) or any(not c or c.split() != [c] or c == "time" for c in columns):
        raise GaitDataError(
            f"column names must be unique, non-blank, without spaces and not 'time': {columns}"
        )
    if not (np.all(np.isfinite(values)) and np.all(np.isfinite(time_s))):
        raise GaitDataError("refusing to write non-finite values", path)
    if time_s.shape[0] > 1 and np.any(np.diff(time_s) <= 0):
        raise GaitDataError("time_s must be strictly increasing", path)
    header = {
        "version": "1",
        "nRows": str(time_s.shape[0]),
        "nColumns": str(len(columns) + 1),
        "inDegrees": "yes" if in_degrees else "no",
    }
    for key, value in (extra_header or {}).items():
        if key in header or "=" in key or any(ch in f"{key}{value}" for ch in "\r\n"):
            raise GaitDataError(f"bad extra header entry {key!r}={value!r}", path)
        header[key] = str(value)
    if any(ch in name for ch in "\r\n=") or name.strip().lower() == "endheader":
        raise GaitDataError(f"bad storage name {name!r}", path)
    lines = [
        name or path.stem,
        *(f"{k}={v}" for k, v in header.items()),
        "endheader",
        "\t".join(("time", *columns)),
    ]
    lines += [_format_row(t, row) for t, row in zip(time_s, values, strict=True)]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(lines) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
