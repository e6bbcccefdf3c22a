"""Windows per second delivered by the Grain training pipeline on one core (target >= 20,000/s).

Run: `python benchmarks/bench_pipeline.py` (add `--trials 200 --frames 1000 --batch 256`); prints one
JSON line per figure. The store is synthetic (random frames), built in a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import emit, matmul_gflops  # noqa: E402

from gaitjax.data import channels  # noqa: E402
from gaitjax.data.pipeline import make_eval_iterator, make_train_iterator  # noqa: E402
from gaitjax.data.store import Store, StoreWriter, TrialMeta  # noqa: E402


def build_store(path: Path, n_trials: int, n_frames: int, n_studies: int = 10) -> Store:
    rng = np.random.default_rng(0)
    with StoreWriter(path, kind="train", synthetic=True, info={"benchmark": "bench_pipeline"}) as w:
        for j in range(n_trials):
            meta = TrialMeta(f"study{j % n_studies}", f"sub{j}", "walk", "synthetic", 70.0, 1.7, 100.0)
            x = rng.standard_normal((n_frames, channels.N_CHANNELS), dtype=np.float32)
            valid = np.ones(n_frames, bool)
            valid[rng.integers(0, n_frames, 2)] = False  # a few GRF gaps, as real trials have
            w.add_trial(meta, x, valid)
    return Store.open(path)


def windows_per_second(store: Store, batch: int, n_batches: int, **kw) -> float:
    it = make_train_iterator(store, batch_size=batch, seed=0, normalizer=store.load_normalizer(), **kw)
    for _ in range(3):
        next(it)
    t0 = time.perf_counter()
    for _ in range(n_batches):
        next(it)
    return n_batches * batch / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--batches", type=int, default=200)
    args = parser.parse_args()
    matmul_gflops()  # measured on the whole machine, before pinning, like every other benchmark
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, as the target says
    size = {"trials": args.trials, "frames": args.frames, "batch": args.batch}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        store = build_store(Path(tmp) / "store", args.trials, args.frames)
        emit(
            "store_write_frames_per_s",
            round(args.trials * args.frames / (time.perf_counter() - t0)),
            "frames/s",
            **size,
        )
        for prefetch in (0, 2):
            wps = windows_per_second(store, args.batch, args.batches, prefetch=prefetch)
            emit("train_pipeline_windows_per_s", round(wps), "windows/s", prefetch=prefetch, cores=1, **size)
        it = make_eval_iterator(store, batch_size=args.batch, normalizer=store.load_normalizer(), step=15)
        t0, n = time.perf_counter(), 0
        for b in it:
            n += int((b["trial_b"] >= 0).sum())
        emit(
            "eval_pipeline_windows_per_s",
            round(n / (time.perf_counter() - t0)),
            "windows/s",
            step=15,
            cores=1,
            **size,
        )


if __name__ == "__main__":
    main()
