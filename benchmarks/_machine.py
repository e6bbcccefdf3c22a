"""This machine's fp32 matmul speed, so every benchmark figure can be read against the hardware it ran on."""

from __future__ import annotations

import functools
import json
import time

import numpy as np


@functools.lru_cache(maxsize=1)
def matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
    """Best-of-`repeats` GFLOP/s of an [n, n] @ [n, n] float32 numpy matmul (2 n^3 flops), after a warm-up."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def emit(benchmark: str, value: float, unit: str, **extra) -> str:
    """Prints (and returns) one JSON line: benchmark, value, unit, matmul_gflops, plus `extra` fields."""
    line = json.dumps(
        {
            "benchmark": benchmark,
            "value": value,
            "unit": unit,
            "matmul_gflops": round(matmul_gflops(), 1),
            **extra,
        }
    )
    print(line, flush=True)
    return line


if __name__ == "__main__":
    emit("numpy_sgemm_1024", round(matmul_gflops(), 1), "GFLOP/s")
