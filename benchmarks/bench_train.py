"""Train-step throughput (windows/s) of the denoiser at both presets and of the refiner, batch 64, fp32.

Run: `python benchmarks/bench_train.py [--batch 64 --steps 3 --which denoiser_paper,refiner]`.
Prints one JSON line per model: windows/s, the step's FLOPs from XLA's cost analysis, the GFLOP/s reached
and the fraction of this machine's fp32 numpy matmul GFLOP/s (measured in the same run). For reference the
released PyTorch code reaches 27 (paper size), 6.6 (released size) and 39 (refiner) windows/s on a 2-core
AMD EPYC whose matmul peak is about 192 GFLOP/s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jax  # noqa: E402
import numpy as np  # noqa: E402
from _machine import emit, matmul_gflops  # noqa: E402

from gaitjax.models.registry import build_model  # noqa: E402
from gaitjax.parallel import mesh as mesh_lib  # noqa: E402
from gaitjax.train.config_check import base_config  # noqa: E402
from gaitjax.train.optim import OptimConfig, make_optimizer  # noqa: E402
from gaitjax.train.state import count_params, init_state  # noqa: E402
from gaitjax.train.step import jit_train_step, make_loss_fn  # noqa: E402

CASES = {
    "denoiser_paper": ("denoiser", "paper", 27.0),
    "denoiser_released": ("denoiser", "released", 6.6),
    "refiner": ("refiner", "released", 39.0),
}


def bench(kind: str, preset: str, batch: int, steps: int, matmul_dtype: str = "float32") -> dict:
    config = base_config(kind, preset)
    model = build_model(kind, preset, matmul_dtype=matmul_dtype)
    mesh = mesh_lib.make_mesh([("data", -1), ("fsdp", 1)], jax.devices()[:1])
    tx = make_optimizer(OptimConfig(**config.optim.to_dict()))
    state, shardings = init_state(model, kind, tx, jax.random.key(0), mesh)
    step = jit_train_step(make_loss_fn(kind), 0.999, shardings, mesh)
    x = np.random.default_rng(0).uniform(-1, 1, size=(batch, 150, 63)).astype(np.float32)
    batch_tree = {"x_btc": jax.device_put(x, mesh_lib.batch_sharding(mesh))}
    key = jax.random.key(1)
    cost = step.lower(state, batch_tree, key).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", 0.0))
    state, metrics = step(state, batch_tree, key)  # compile + warm-up
    jax.block_until_ready(metrics)
    t0 = time.perf_counter()
    for _ in range(steps):
        state, metrics = step(state, batch_tree, key)
    jax.block_until_ready(metrics)
    seconds = (time.perf_counter() - t0) / steps
    return {
        "windows_per_s": batch / seconds,
        "step_s": seconds,
        "step_gflop": flops / 1e9,
        "gflops": flops / seconds / 1e9,
        "params": count_params(state.params),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--which", default=",".join(CASES))
    parser.add_argument("--matmul-dtypes", default="float32,bfloat16", help="float32 and/or bfloat16")
    args = parser.parse_args()
    peak = matmul_gflops()
    for name in args.which.split(","):
        for dtype in args.matmul_dtypes.split(","):
            kind, preset, torch_ref = CASES[name]
            r = bench(kind, preset, args.batch, args.steps, dtype)
            emit(
                f"train_step_{name}_{dtype}_windows_per_s",
                round(r["windows_per_s"], 2),
                "windows/s",
                batch=args.batch,
                matmul_dtype=dtype,
                params=r["params"],
                step_s=round(r["step_s"], 3),
                step_gflop=round(r["step_gflop"], 1),
                achieved_gflops=round(r["gflops"], 1),
                fraction_of_matmul_peak=round(r["gflops"] / peak, 3),
                released_pytorch_windows_per_s_at_192_gflops=torch_ref,
                backend=jax.default_backend(),
                devices=len(jax.devices()),
            )


if __name__ == "__main__":
    main()
