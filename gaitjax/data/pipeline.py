"""Grain pipelines over a prepared store: the paper's training sampler and an in-order evaluation pass.

Training, global sample index i: a counter-based RNG keyed by (seed, i) picks a study uniformly, a trial
uniformly within it, then a start uniformly among the trial's valid window starts (spec §2.10).
"""

from __future__ import annotations

import math

import grain
import numpy as np

from gaitjax.data import channels
from gaitjax.data.errors import GaitDataError
from gaitjax.data.normalizer import MinMaxNormalizer
from gaitjax.data.store import Store

_MAX_STEPS = 2**40  # length of the (practically endless) training MapDataset, in batches
_U64 = np.uint64
_T = np.arange(channels.WINDOW_LEN, dtype=np.int64)


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    z = z + _U64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
    return z ^ (z >> _U64(31))


def uniforms(seed: int, index_n: np.ndarray, n_streams: int) -> np.ndarray:
    """Deterministic U[0, 1) draws keyed by (seed, index): the same index always gets the same draws.

    Args:
        seed: any Python int.
        index_n: [N] non-negative global sample indices.
        n_streams: draws per index.

    Returns:
        [N, n_streams] float64 in [0, 1), 53-bit resolution.
    """
    with np.errstate(over="ignore"):
        key = _splitmix64(np.array([seed % 2**64], dtype=_U64))
        base = _splitmix64(key ^ np.asarray(index_n, dtype=np.int64).astype(_U64))
        bits = _splitmix64(base[:, None] + np.arange(n_streams, dtype=_U64)[None, :])
    return (bits >> _U64(11)).astype(np.float64) * 2.0**-53


def _pick(u: np.ndarray, n: np.ndarray) -> np.ndarray:
    """floor(u * n) as int64, clamped below n (guards the float rounding at u close to 1)."""
    return np.minimum((u * n).astype(np.int64), np.asarray(n, np.int64) - 1)


class WindowSampler:
    """The paper's sampling scheme over a store's kept trials that have at least one window start.

    Vectorised: `sample` maps any array of global indices to (trial ids, starts) in one call, and
    `gather` reads the windows from the memory-mapped store with a single fancy index.
    """

    def __init__(self, store: Store, seed: int):
        self.store = store
        self.seed = int(seed)
        starts = [store.window_starts(j) for j in range(len(store.trials))]
        usable = [j for j, s in enumerate(starts) if len(s)]
        if not usable:
            raise GaitDataError("no kept trial has a window to sample", path=store.path)
        studies = sorted({store.trials[j].meta.study for j in usable})
        self.studies: tuple[str, ...] = tuple(studies)
        by_study = [[j for j in usable if store.trials[j].meta.study == s] for s in studies]
        self.study_trial_offset = np.cumsum([0] + [len(t) for t in by_study])[:-1]  # [S]
        self.study_n_trials = np.array([len(t) for t in by_study], np.int64)  # [S]
        self.trial_ids = np.array([j for t in by_study for j in t], np.int64)  # [J_usable], grouped by study
        n_starts = np.array([len(starts[j]) for j in self.trial_ids], np.int64)
        self.n_starts = n_starts  # [J_usable]
        self.start_offset = np.concatenate([[0], np.cumsum(n_starts)[:-1]]).astype(np.int64)
        self.starts_flat = np.concatenate([starts[j] for j in self.trial_ids]).astype(np.int64)

    def sample(self, index_n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global sample indices [N] -> (trial_id [N] into `store.trials`, start [N] frame index)."""
        u = uniforms(self.seed, index_n, 3)
        study = _pick(u[:, 0], len(self.studies))
        k = self.study_trial_offset[study] + _pick(u[:, 1], self.study_n_trials[study])
        start = self.starts_flat[self.start_offset[k] + _pick(u[:, 2], self.n_starts[k])]
        return self.trial_ids[k], start

    def batch(self, index_n: np.ndarray) -> dict[str, np.ndarray]:
        """Un-normalised batch for global sample indices [B] (see `gather_windows`)."""
        trial_b, start_b = self.sample(index_n)
        return gather_windows(self.store, trial_b, start_b)


def gather_windows(store: Store, trial_b: np.ndarray, start_b: np.ndarray) -> dict[str, np.ndarray]:
    """Reads B windows with one vectorised gather; rows past a trial's end are zeros.

    Returns:
        x_btc [B, 150, 63] float32 un-normalised; mask_bt [B, 150] bool (inside the trial and valid);
        pad_bt [B, 150] bool (past the trial's end); trial_b, start_b [B] int64; height_b [B] float32 m.
    """
    trial_b = np.asarray(trial_b, np.int64)
    start_b = np.asarray(start_b, np.int64)
    frame_bt = start_b[:, None] + _T[None, :]
    pad_bt = frame_bt >= store.n_frames[trial_b][:, None]
    rows_bt = store.row_offsets[trial_b][:, None] + np.minimum(frame_bt, store.n_frames[trial_b][:, None] - 1)
    x_btc = store.states[rows_bt.reshape(-1)].reshape(len(trial_b), channels.WINDOW_LEN, channels.N_CHANNELS)
    mask_bt = store.valid[rows_bt] & ~pad_bt
    if pad_bt.any():
        x_btc[pad_bt] = 0.0
    return {
        "x_btc": x_btc,
        "mask_bt": mask_bt,
        "pad_bt": pad_bt,
        "trial_b": trial_b,
        "start_b": start_b,
        "height_b": store.heights_m[trial_b],
    }


class NormalizeBatch(grain.transforms.Map):
    """Normalises `x_btc` in place; padded rows stay exactly 0 (as the released loaders pad)."""

    def __init__(self, normalizer: MinMaxNormalizer):
        self.scale_ = np.asarray(normalizer.scale_, np.float32)
        self.min_ = np.asarray(normalizer.min_, np.float32)

    def map(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = batch["x_btc"]
        np.multiply(x, self.scale_, out=x)
        np.add(x, self.min_, out=x)
        if batch["pad_bt"].any():
            x[batch["pad_bt"]] = 0.0
        return batch


def _local_batch_size(batch_size: int, process_index: int, process_count: int) -> int:
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, process_count={process_count})")
    if batch_size < 1 or batch_size % process_count:
        raise ValueError(f"global batch_size {batch_size} must be a positive multiple of {process_count}")
    return batch_size // process_count


def local_indices(step: int, batch_size: int, process_index: int, process_count: int) -> np.ndarray:
    """Global sample indices of one process's share of global batch `step`.

    Sharding is by contiguous blocks of each global batch: process p takes
    [step*B + p*B/P, step*B + (p+1)*B/P). Concatenating the processes' batches in process order (what
    `jax.make_array_from_process_local_data` does on a data-parallel mesh) gives exactly the
    single-process batch, and shards never overlap.
    """
    b = _local_batch_size(batch_size, process_index, process_count)
    return step * batch_size + process_index * b + np.arange(b, dtype=np.int64)


class _TrainBatch(grain.transforms.Map):
    def __init__(self, sampler: WindowSampler, batch_size: int, process_index: int, process_count: int):
        self.sampler = sampler
        self.args = (batch_size, process_index, process_count)

    def map(self, step: int) -> dict[str, np.ndarray]:
        return self.sampler.batch(local_indices(int(step), *self.args))


def make_train_dataset(
    store_or_sampler: Store | WindowSampler,
    *,
    batch_size: int,
    seed: int,
    normalizer: MinMaxNormalizer,
    process_index: int = 0,
    process_count: int = 1,
) -> grain.MapDataset:
    """The training MapDataset: element k is this process's share of global batch k, normalised.

    Each element is a whole batch built with one vectorised gather (a per-window Grain element would cap
    throughput near 30k windows/s before any work). Shuffling and repetition are unnecessary: the
    sampler draws every sample independently from (seed, global index), as the reference ignores the
    dataset index.

    Args:
        store_or_sampler: a `Store` (sampled with `seed`) or a ready `WindowSampler`.
        batch_size: global batch size B (all processes together); the local batch is B / process_count.
        seed: sampling seed.
        normalizer: applied to `x_btc`.
        process_index, process_count: this process and the number of processes (jax.process_index()...).

    Returns:
        MapDataset of dicts: x_btc [b, 150, 63] float32 normalised, mask_bt, pad_bt [b, 150] bool,
        trial_b, start_b [b] int64, height_b [b] float32 m.
    """
    _local_batch_size(batch_size, process_index, process_count)
    sampler = store_or_sampler
    if isinstance(sampler, Store):
        sampler = WindowSampler(sampler, seed)
    elif sampler.seed != seed:
        raise ValueError(f"sampler was built with seed {sampler.seed}, asked for seed {seed}")
    return (
        grain.MapDataset.range(_MAX_STEPS)
        .map(_TrainBatch(sampler, batch_size, process_index, process_count))
        .map(NormalizeBatch(normalizer))
    )


def _to_iterator(ds: grain.MapDataset, num_threads: int, prefetch: int) -> grain.DatasetIterator:
    read = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch if num_threads else 0)
    it_ds = ds.to_iter_dataset(read)
    if prefetch > 0 and num_threads == 0:
        it_ds = grain.experimental.ThreadPrefetchIterDataset(it_ds, prefetch_buffer_size=prefetch)
    return iter(it_ds)


def make_train_iterator(
    store_or_sampler: Store | WindowSampler,
    *,
    batch_size: int,
    seed: int,
    normalizer: MinMaxNormalizer,
    process_index: int = 0,
    process_count: int = 1,
    num_threads: int = 0,
    prefetch: int = 2,
) -> grain.DatasetIterator:
    """Checkpointable iterator over `make_train_dataset` (see there for the batch layout).

    Args:
        num_threads: Grain reader threads (0: batches are built in the consuming thread's pipeline).
        prefetch: batches buffered ahead; with num_threads == 0 one background thread fills the buffer,
            0 disables prefetching.

    Returns:
        A Grain iterator; `get_state()`/`set_state()` (or `grain.checkpoint.CheckpointSave` with orbax)
        save and restore the position exactly.
    """
    ds = make_train_dataset(
        store_or_sampler,
        batch_size=batch_size,
        seed=seed,
        normalizer=normalizer,
        process_index=process_index,
        process_count=process_count,
    )
    return _to_iterator(ds, num_threads, prefetch)


def eval_window_starts(n_frames: int, step: int) -> np.ndarray:
    """Starts 0, step, 2*step, ... of windows covering a trial of `n_frames`; the last may run past the end.

    Windows are emitted while s + 150 <= n_frames, plus one final window if frames remain uncovered
    (it is served zero-padded with mask 0), so every frame lies in at least one window.
    """
    if step < 1:
        raise ValueError(f"eval window step must be >= 1, got {step}")
    w = channels.WINDOW_LEN
    starts = list(range(0, max(n_frames - w, 0) + 1, step))
    if starts[-1] + w < n_frames:
        starts.append(starts[-1] + step)
    return np.asarray(starts, np.int64)


class _EvalBatch(grain.transforms.Map):
    def __init__(self, store, trial_n, start_n, batch_size, process_index, process_count):
        self.store, self.trial_n, self.start_n = store, trial_n, start_n
        self.args = (batch_size, process_index, process_count)

    def map(self, step: int) -> dict[str, np.ndarray]:
        idx = local_indices(int(step), *self.args)
        real = idx < len(self.trial_n)
        safe = np.where(real, idx, 0)
        batch = gather_windows(self.store, self.trial_n[safe], self.start_n[safe])
        # Filler windows that complete the last batch: all padding, trial -1.
        batch["mask_bt"][~real] = False
        batch["pad_bt"][~real] = True
        batch["x_btc"][~real] = 0.0
        batch["trial_b"] = np.where(real, batch["trial_b"], -1)
        return batch


def make_eval_dataset(
    store: Store,
    *,
    batch_size: int,
    normalizer: MinMaxNormalizer,
    step: int = channels.WINDOW_LEN,
    process_index: int = 0,
    process_count: int = 1,
) -> grain.MapDataset:
    """Every window of every kept trial, in store order then start order (`eval_window_starts`).

    The last global batch is completed with filler windows (trial_b = -1, mask and x zero, pad True) so
    every batch has the same shape. Sharded across processes like the training batches.

    Returns:
        Finite MapDataset of batch dicts with the keys of `make_train_dataset`.
    """
    _local_batch_size(batch_size, process_index, process_count)
    per_trial = [eval_window_starts(int(n), step) for n in store.n_frames]
    if not per_trial:
        raise GaitDataError("store has no kept trials to evaluate", path=store.path)
    trial_n = np.concatenate([np.full(len(s), j, np.int64) for j, s in enumerate(per_trial)])
    start_n = np.concatenate(per_trial)
    n_batches = math.ceil(len(trial_n) / batch_size)
    return (
        grain.MapDataset.range(n_batches)
        .map(_EvalBatch(store, trial_n, start_n, batch_size, process_index, process_count))
        .map(NormalizeBatch(normalizer))
    )


def make_eval_iterator(
    store: Store,
    *,
    batch_size: int,
    normalizer: MinMaxNormalizer,
    step: int = channels.WINDOW_LEN,
    process_index: int = 0,
    process_count: int = 1,
    num_threads: int = 0,
    prefetch: int = 2,
) -> grain.DatasetIterator:
    """Iterator over `make_eval_dataset` (one pass; stops at the end)."""
    ds = make_eval_dataset(
        store,
        batch_size=batch_size,
        normalizer=normalizer,
        step=step,
        process_index=process_index,
        process_count=process_count,
    )
    return _to_iterator(ds, num_threads, prefetch)
