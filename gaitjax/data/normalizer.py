"""Per-channel min-max normalisation to [-10, 10], as the released `MinMaxScaler` (spec §2.9).

Pure arithmetic on float32 parameters, so `transform`/`inverse` work on numpy and on jax arrays alike.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from gaitjax.data import channels
from gaitjax.data.errors import GaitDataError

FEATURE_RANGE = (-10.0, 10.0)
_FIELDS = ("scale_", "min_", "data_min_", "data_max_")


@dataclasses.dataclass(frozen=True)
class MinMaxNormalizer:
    """x_n = x * scale_ + min_, per channel; no clipping (values outside the fitted range map outside ±10).

    All four arrays are [C] float32 (C = 63 for model windows), named as in the released scaler.
    """

    scale_: np.ndarray
    min_: np.ndarray
    data_min_: np.ndarray
    data_max_: np.ndarray

    @classmethod
    def from_min_max(cls, data_min: np.ndarray, data_max: np.ndarray) -> MinMaxNormalizer:
        """Builds the scaler from per-channel data extremes.

        scale = 20 / (max - min), with a range below 10 * float32 eps replaced by 1 (so scale = 20);
        min_ = -10 - min * scale.
        """
        data_min = np.asarray(data_min, np.float32)
        data_max = np.asarray(data_max, np.float32)
        lo, hi = FEATURE_RANGE
        data_range = data_max - data_min
        data_range = np.where(data_range < 10 * np.finfo(np.float32).eps, np.float32(1), data_range)
        scale = (np.float32(hi - lo) / data_range).astype(np.float32)
        min_ = (np.float32(lo) - data_min * scale).astype(np.float32)
        return cls(scale_=scale, min_=min_, data_min_=data_min, data_max_=data_max)

    @classmethod
    def fit(cls, x_nc: np.ndarray, valid_n: np.ndarray | None = None, chunk_rows: int = 1 << 18):
        """Fits on the rows of `x_nc` where `valid_n` is True (all rows when None).

        The released code fits on ALL frames of the training trials, including frames whose GRF is
        missing (spec §2.9, §8 item 10). We fit on valid frames only: those are exactly the frames that
        training windows contain, and missing-GRF frames carry placeholder forces. A `StoreWriter` for
        a training store calls this on its kept trials at close.

        Args:
            x_nc: [N, C] frames (may be a memory map; read in chunks of `chunk_rows`).
            valid_n: [N] bool, or None.

        Returns:
            The fitted normaliser.

        Raises:
            GaitDataError: no rows to fit on, or non-finite values among them.
        """
        n, c = x_nc.shape
        lo = np.full(c, np.inf, np.float32)
        hi = np.full(c, -np.inf, np.float32)
        count = 0
        for a in range(0, n, chunk_rows):
            block = np.asarray(x_nc[a : a + chunk_rows], np.float32)
            if valid_n is not None:
                block = block[np.asarray(valid_n[a : a + chunk_rows], bool)]
            if len(block) == 0:
                continue
            if not np.isfinite(block).all():
                raise GaitDataError(
                    f"non-finite values in rows {a}..{a + chunk_rows} given to the normaliser"
                )
            lo = np.minimum(lo, block.min(axis=0))
            hi = np.maximum(hi, block.max(axis=0))
            count += len(block)
        if count == 0:
            raise GaitDataError("no valid frames to fit the normaliser on")
        return cls.from_min_max(lo, hi)

    def transform(self, x):
        """Normalises [..., C] (numpy or jax); returns the same array type."""
        return x * self.scale_ + self.min_

    def inverse(self, x_n):
        """Un-normalises [..., C] (numpy or jax): (x_n - min_) / scale_."""
        return (x_n - self.min_) / self.scale_

    def to_json(self) -> dict:
        return {name: getattr(self, name).tolist() for name in _FIELDS}

    @classmethod
    def from_json(cls, d: dict, source: str | Path | None = None) -> MinMaxNormalizer:
        """Reads the dict written by `to_json` (four equal-length float lists)."""
        try:
            arrays = {name: np.asarray(d[name], np.float32) for name in _FIELDS}
        except (KeyError, TypeError, ValueError) as e:
            raise GaitDataError(
                f"normaliser needs float lists {_FIELDS} ({type(e).__name__}: {e})", source
            ) from e
        shapes = {a.shape for a in arrays.values()}
        if len(shapes) != 1 or len(next(iter(shapes))) != 1:
            raise GaitDataError(f"normaliser arrays must be equal-length vectors, got {shapes}", source)
        if not all(np.isfinite(a).all() for a in arrays.values()) or (arrays["scale_"] <= 0).any():
            raise GaitDataError("normaliser has non-finite values or a non-positive scale_", source)
        return cls(**arrays)

    def save(self, path: str | Path) -> Path:
        """Writes the four arrays as JSON (float32 values round-trip exactly through their repr)."""
        path = Path(path)
        path.write_text(json.dumps({**self.to_json(), "channels": _channel_names(len(self.scale_))}))
        return path

    @classmethod
    def load(cls, path: str | Path) -> MinMaxNormalizer:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError as e:
            raise GaitDataError("normaliser file not found", path) from e
        except (ValueError, OSError) as e:
            raise GaitDataError(f"unreadable normaliser JSON ({e})", path) from e
        return cls.from_json(d, source=path)


def _channel_names(c: int) -> list[str]:
    return list(channels.MODEL_CHANNELS) if c == channels.N_CHANNELS else [str(i) for i in range(c)]
