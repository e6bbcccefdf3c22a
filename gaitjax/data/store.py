"""The prepared store: per-trial model-channel arrays in one memory-mapped file plus a JSON index.

Layout of a store directory: `index.json` (format, kind, trials with their fates), `states.npy`
[N_total, 63] float32 (un-normalised, `channels.MODEL_CHANNELS` order), `valid.npy` [N_total] bool.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gaitjax.data import channels
from gaitjax.data.errors import GaitDataError
from gaitjax.data.normalizer import MinMaxNormalizer

FORMAT_VERSION = 1
INDEX_FILE = "index.json"
STATES_FILE = "states.npy"
VALID_FILE = "valid.npy"
NORMALIZER_FILE = "normalizer.json"
KINDS = ("train", "eval")
_RAW_STATES = "states.raw"


@dataclasses.dataclass(frozen=True)
class TrialMeta:
    """What identifies a trial and the subject facts the representation needs.

    `extra` holds any further JSON-serialisable per-trial facts (e.g. the pelvis start position or the
    estimated belt speed) that a consumer needs to invert windows back to OpenSim coordinates.
    """

    study: str
    subject: str
    trial: str
    source: str
    mass_kg: float
    height_m: float
    rate_hz: float
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.study}/{self.subject}/{self.trial}"


@dataclasses.dataclass(frozen=True)
class TrialEntry:
    """One row of the index: a trial, its fate and (when kept) where its frames live in the arrays.

    `trial_id` is the trial's position among the kept trials (-1 for pruned ones); it is the id the
    pipeline puts in `trial_b`.
    """

    meta: TrialMeta
    status: str  # "kept" | "pruned"
    reason: str
    n_frames: int
    row_offset: int
    trial_id: int

    @property
    def kept(self) -> bool:
        return self.status == "kept"


class StoreWriter:
    """Builds a store trial by trial in a temporary sibling directory; `close()` renames it into place.

    Frames are streamed to disk as trials arrive, so memory stays bounded by one trial. An exception
    inside a `with` block (or `abort()`) removes the temporary directory: no half-written store is ever
    visible at `out_dir`. Rerunning over an existing store replaces it.

    For `kind="train"`, `close()` also fits the min-max normaliser over the valid frames of the kept
    trials and saves it as `normalizer.json` (see `gaitjax.data.normalizer`).
    """

    def __init__(self, out_dir: str | Path, *, kind: str, synthetic: bool = False, info: dict | None = None):
        """Args:
        out_dir: the store directory to create (or replace, if it already holds a store).
        kind: "train" (trials need a full 150-frame window of valid frames) or "eval" (trials shorter
            than one window are kept and served padded with a mask).
        synthetic: whether the data are synthetic (recorded in the index, shown in reports).
        info: extra JSON-serialisable creation info (e.g. the source folder and command line).
        """
        if kind not in KINDS:
            raise ValueError(f"store kind must be one of {KINDS}, got {kind!r}")
        self.out_dir = Path(out_dir).absolute()
        if self.out_dir.exists() and not _is_replaceable(self.out_dir):
            raise GaitDataError(
                "exists and is neither a store nor empty; refusing to replace it", path=self.out_dir
            )
        self.kind = kind
        self.synthetic = bool(synthetic)
        self.info = dict(info or {})
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.out_dir.parent / f".{self.out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._tmp.mkdir()
        self._raw = open(self._tmp / _RAW_STATES, "wb")  # noqa: SIM115 (closed in close/abort)
        self._valid: list[np.ndarray] = []
        self._entries: list[dict] = []
        self._names: set[str] = set()
        self._n_rows = 0
        self._n_kept = 0
        self._closed = False

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def add_trial(self, meta: TrialMeta, x_tc: np.ndarray, valid_t: np.ndarray) -> str:
        """Adds a processed trial.

        Args:
            meta: identity and subject facts of the trial.
            x_tc: [T, 63] model channels, un-normalised, `channels.MODEL_CHANNELS` order; finite everywhere
                (fill frames without GRF with zeros and mark them invalid).
            valid_t: [T] bool, True where the frame is usable (GRF present).

        Returns:
            "kept", or "pruned" when a train store receives a trial without any 150-frame run of valid
            frames (it is then recorded as pruned with reason "no_valid_window", as the reference does).
        """
        self._check_open()
        _check_meta(meta)
        x_tc = np.asarray(x_tc)
        valid_t = np.asarray(valid_t)
        if x_tc.ndim != 2 or x_tc.shape[1] != channels.N_CHANNELS or x_tc.shape[0] < 1:
            raise GaitDataError(
                f"trial {meta.name}: states must be [T>=1, {channels.N_CHANNELS}], got {x_tc.shape}",
                path=meta.source,
            )
        if valid_t.shape != (x_tc.shape[0],) or valid_t.dtype != np.bool_:
            raise GaitDataError(
                f"trial {meta.name}: valid mask must be bool [{x_tc.shape[0]}], got {valid_t.dtype} "
                f"{valid_t.shape}",
                path=meta.source,
            )
        bad = ~np.isfinite(x_tc)
        if bad.any():
            t, c = np.argwhere(bad)[0]
            raise GaitDataError(
                f"trial {meta.name}: non-finite value {x_tc[t, c]} in channel "
                f"{channels.MODEL_CHANNELS[c]!r} at frame {t} ({int(bad.sum())} such values); expected "
                "finite numbers (fill missing-GRF frames with 0 and mark them invalid)",
                path=meta.source,
            )
        if self.kind == "train" and len(valid_window_starts(valid_t, allow_short=False)) == 0:
            self.add_pruned(meta, "no_valid_window", n_frames=x_tc.shape[0])
            return "pruned"
        self._register(meta)
        self._raw.write(np.ascontiguousarray(x_tc, dtype=np.float32).tobytes())
        self._valid.append(valid_t.copy())
        self._entries.append(
            _entry_json(meta, "kept", "", x_tc.shape[0], self._n_rows, trial_id=self._n_kept)
        )
        self._n_rows += x_tc.shape[0]
        self._n_kept += 1
        return "kept"

    def add_pruned(self, meta: TrialMeta, reason: str, *, n_frames: int = 0) -> None:
        """Records a trial that was read (or tried) but not kept, with the reason, for the report."""
        self._check_open()
        if not reason:
            raise ValueError(f"trial {meta.name}: a pruned trial needs a reason")
        self._register(meta)
        self._entries.append(_entry_json(meta, "pruned", str(reason), int(n_frames), -1, trial_id=-1))

    def close(self) -> Path:
        """Writes the arrays, index (and for train stores the normaliser) and moves the store into place.

        Returns:
            The store directory.
        """
        self._check_open()
        try:
            self._raw.close()
            _raw_to_npy(self._tmp / _RAW_STATES, self._tmp / STATES_FILE, self._n_rows)
            valid = np.concatenate(self._valid) if self._valid else np.zeros(0, bool)
            np.save(self._tmp / VALID_FILE, valid)
            index = {
                "format_version": FORMAT_VERSION,
                "kind": self.kind,
                "synthetic": self.synthetic,
                "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "info": self.info,
                "n_channels": channels.N_CHANNELS,
                "channels": list(channels.MODEL_CHANNELS),
                "n_rows": self._n_rows,
                "trials": self._entries,
            }
            (self._tmp / INDEX_FILE).write_text(json.dumps(index, indent=1))
            if self.kind == "train" and self._n_kept > 0:
                states = np.load(self._tmp / STATES_FILE, mmap_mode="r")
                MinMaxNormalizer.fit(states, valid).save(self._tmp / NORMALIZER_FILE)
            _swap_into_place(self._tmp, self.out_dir)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.out_dir

    def abort(self) -> None:
        """Discards everything written so far; `out_dir` is left as it was."""
        if not self._raw.closed:
            self._raw.close()
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"StoreWriter for {self.out_dir} is already closed")

    def _register(self, meta: TrialMeta) -> None:
        if meta.name in self._names:
            raise GaitDataError(f"trial {meta.name} was added twice", path=meta.source)
        self._names.add(meta.name)


class Store:
    """A prepared store opened read-only; the arrays are memory-mapped, not loaded."""

    def __init__(self, path: Path, index: dict, states: np.ndarray, valid: np.ndarray):
        self.path = path
        self.kind: str = index["kind"]
        self.synthetic: bool = bool(index["synthetic"])
        self.info: dict = index.get("info", {})
        self.created_utc: str = index.get("created_utc", "")
        self.states = states  # [N_total, 63] float32, memory-mapped
        self.valid = valid  # [N_total] bool
        self.all_entries: tuple[TrialEntry, ...] = tuple(_entry_from_json(e) for e in index["trials"])
        self.trials: tuple[TrialEntry, ...] = tuple(e for e in self.all_entries if e.kept)
        self.row_offsets = np.array([e.row_offset for e in self.trials], dtype=np.int64)  # [J]
        self.n_frames = np.array([e.n_frames for e in self.trials], dtype=np.int64)  # [J]
        self.heights_m = np.array([e.meta.height_m for e in self.trials], dtype=np.float32)  # [J]

    @classmethod
    def open(cls, path: str | Path) -> Store:
        """Opens a store directory written by `StoreWriter`.

        Raises:
            GaitDataError: the directory, index or arrays are missing, unreadable or inconsistent.
        """
        path = Path(path)
        if not path.is_dir():
            raise GaitDataError("no store here (expected a directory written by StoreWriter)", path=path)
        index_path = path / INDEX_FILE
        if not index_path.is_file():
            raise GaitDataError(f"not a store: {INDEX_FILE} is missing", path=path)
        try:
            index = json.loads(index_path.read_text())
            version = index["format_version"]
            n_rows = int(index["n_rows"])
            if index["kind"] not in KINDS or not isinstance(index["trials"], list):
                raise ValueError(f"kind {index['kind']!r}")
        except (ValueError, KeyError, TypeError) as e:
            raise GaitDataError(f"corrupt index ({type(e).__name__}: {e})", path=index_path) from e
        if version != FORMAT_VERSION:
            raise GaitDataError(
                f"store format version {version}, this code reads version {FORMAT_VERSION}; re-prepare it",
                path=index_path,
            )
        if tuple(index.get("channels", ())) != channels.MODEL_CHANNELS:
            raise GaitDataError("channel list differs from channels.MODEL_CHANNELS", path=index_path)
        states = _load_array(path / STATES_FILE, (n_rows, channels.N_CHANNELS), np.float32)
        valid = _load_array(path / VALID_FILE, (n_rows,), np.bool_)
        try:
            store = cls(path, index, states, valid)
        except (KeyError, TypeError, ValueError) as e:
            raise GaitDataError(f"corrupt trial entry ({type(e).__name__}: {e})", path=index_path) from e
        ends = store.row_offsets + store.n_frames
        if len(store.trials) and (
            store.row_offsets.min() < 0 or ends.max() > n_rows or store.n_frames.min() < 1
        ):
            raise GaitDataError(f"trial rows fall outside the {n_rows}-row arrays", path=index_path)
        return store

    @property
    def normalizer_path(self) -> Path:
        return self.path / NORMALIZER_FILE

    def load_normalizer(self) -> MinMaxNormalizer:
        """The normaliser saved with this (training) store."""
        if not self.normalizer_path.is_file():
            raise GaitDataError(
                f"no {NORMALIZER_FILE} in this {self.kind} store (only training stores carry one)",
                path=self.path,
            )
        return MinMaxNormalizer.load(self.normalizer_path)

    def trial_valid(self, trial_id: int) -> np.ndarray:
        """[T] bool valid-frame mask of kept trial `trial_id`."""
        e = self.trials[trial_id]
        return np.asarray(self.valid[e.row_offset : e.row_offset + e.n_frames])

    def trial_states(self, trial_id: int) -> np.ndarray:
        """[T, 63] float32 un-normalised frames of kept trial `trial_id` (a memory-mapped view)."""
        e = self.trials[trial_id]
        return self.states[e.row_offset : e.row_offset + e.n_frames]

    def window_starts(self, trial_id: int) -> np.ndarray:
        """Window starts of kept trial `trial_id`: every s with frames [s, s+150) all valid.

        In an eval store, a trial shorter than 150 frames yields [0] (its window is served padded).
        """
        return valid_window_starts(self.trial_valid(trial_id), allow_short=self.kind == "eval")

    def window(self, trial_id: int, start: int) -> tuple[np.ndarray, np.ndarray]:
        """One un-normalised window; rows past the trial's end are zeros.

        Returns:
            x_tc [150, 63] float32 and mask_t [150] bool (frame inside the trial and valid).
        """
        e = self.trials[trial_id]
        if not 0 <= start < e.n_frames:
            raise IndexError(f"start {start} outside trial {e.meta.name} of {e.n_frames} frames")
        stop = min(start + channels.WINDOW_LEN, e.n_frames)
        x_tc = np.zeros((channels.WINDOW_LEN, channels.N_CHANNELS), np.float32)
        mask_t = np.zeros(channels.WINDOW_LEN, bool)
        x_tc[: stop - start] = self.states[e.row_offset + start : e.row_offset + stop]
        mask_t[: stop - start] = self.valid[e.row_offset + start : e.row_offset + stop]
        return x_tc, mask_t

    def fate_table(self) -> list[dict]:
        """One row per trial (kept and pruned) with its fate, for reports."""
        return [
            dict(
                study=e.meta.study,
                subject=e.meta.subject,
                trial=e.meta.trial,
                status=e.status,
                reason=e.reason,
                n_frames=e.n_frames,
                n_window_starts=len(self.window_starts(e.trial_id)) if e.kept else 0,
                mass_kg=e.meta.mass_kg,
                height_m=e.meta.height_m,
                rate_hz=e.meta.rate_hz,
                synthetic=self.synthetic,
                source=e.meta.source,
            )
            for e in self.all_entries
        ]

    def write_report(self, csv_path: str | Path) -> Path:
        """Writes `fate_table()` as CSV (one row per trial) and returns its path."""
        rows = self.fate_table()
        with open(csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["study", "status", "reason"])
            writer.writeheader()
            writer.writerows(rows)
        return Path(csv_path)


def valid_window_starts(valid_t: np.ndarray, *, allow_short: bool = False) -> np.ndarray:
    """Every s such that frames [s, s+150) are all valid (spec §2.3 item 15).

    Args:
        valid_t: [T] bool frame mask.
        allow_short: if True and T < 150, return [0] (eval stores serve short trials padded).

    Returns:
        [S] int64 starts in increasing order.
    """
    w = channels.WINDOW_LEN
    n = len(valid_t)
    if n < w:
        return np.zeros(1 if allow_short else 0, np.int64)
    c = np.concatenate([[0], np.cumsum(valid_t, dtype=np.int64)])
    return np.flatnonzero(c[w:] - c[:-w] == w).astype(np.int64)


def _check_meta(meta: TrialMeta) -> None:
    if not isinstance(meta, TrialMeta):
        raise TypeError(f"meta must be a TrialMeta, got {type(meta).__name__}")
    for field in ("mass_kg", "height_m", "rate_hz"):
        value = getattr(meta, field)
        if not (
            isinstance(value, (int, float, np.floating, np.integer)) and np.isfinite(value) and value > 0
        ):
            raise GaitDataError(
                f"trial {meta.name}: {field} must be a positive number, got {value!r}", path=meta.source
            )
    try:
        json.dumps(meta.extra)
    except TypeError as e:
        raise GaitDataError(
            f"trial {meta.name}: extra is not JSON-serialisable ({e})", path=meta.source
        ) from e


def _entry_json(meta: TrialMeta, status: str, reason: str, n_frames: int, row_offset: int, trial_id: int):
    d = dataclasses.asdict(meta)
    d.update(
        mass_kg=float(meta.mass_kg), height_m=float(meta.height_m), rate_hz=float(meta.rate_hz),
        status=status, reason=reason, n_frames=int(n_frames), row_offset=int(row_offset), trial_id=trial_id,
    )  # fmt: skip
    return d


def _entry_from_json(d: dict) -> TrialEntry:
    meta = TrialMeta(**{f.name: d[f.name] for f in dataclasses.fields(TrialMeta) if f.name in d})
    if d["status"] not in ("kept", "pruned"):
        raise ValueError(f"status {d['status']!r} of trial {meta.name}")
    return TrialEntry(
        meta=meta,
        status=d["status"],
        reason=d["reason"],
        n_frames=int(d["n_frames"]),
        row_offset=int(d["row_offset"]),
        trial_id=int(d["trial_id"]),
    )


def _load_array(path: Path, shape: Sequence[int], dtype) -> np.ndarray:
    if not path.is_file():
        raise GaitDataError(f"store array {path.name} is missing", path=path)
    try:
        arr = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as e:
        raise GaitDataError(f"unreadable store array ({e})", path=path) from e
    if arr.shape != tuple(shape) or arr.dtype != dtype:
        raise GaitDataError(
            f"array is {arr.dtype} {arr.shape}, the index expects {np.dtype(dtype)} {tuple(shape)}", path=path
        )
    return arr


def _raw_to_npy(raw_path: Path, npy_path: Path, n_rows: int, chunk_rows: int = 1 << 18) -> None:
    """Copies the streamed raw float32 frames into a .npy file chunk by chunk (bounded memory)."""
    shape = (n_rows, channels.N_CHANNELS)
    if n_rows == 0:
        np.save(npy_path, np.zeros(shape, np.float32))
    else:
        src = np.memmap(raw_path, dtype=np.float32, mode="r", shape=shape)
        dst = np.lib.format.open_memmap(npy_path, mode="w+", dtype=np.float32, shape=shape)
        for a in range(0, n_rows, chunk_rows):
            dst[a : a + chunk_rows] = src[a : a + chunk_rows]
        dst.flush()
        del src, dst
    raw_path.unlink()


def _is_replaceable(path: Path) -> bool:
    return path.is_dir() and ((path / INDEX_FILE).is_file() or not any(path.iterdir()))


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    """Renames `tmp` to `out_dir`; an existing store there is moved aside first and deleted after."""
    if not out_dir.exists():
        os.rename(tmp, out_dir)
        return
    if not _is_replaceable(out_dir):
        raise GaitDataError("exists and is neither a store nor empty; refusing to replace it", path=out_dir)
    old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(out_dir, old)
    os.rename(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)
