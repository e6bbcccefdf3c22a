"""DDIM inpainting throughput (windows/s) of the denoiser at both presets, plain and guided, fp32 and bf16
matmuls, batch 64; a >= 1,000-window grid through `sample_chunked`; and how time scales with batch size.

Run: `python benchmarks/bench_sampling.py [--steps 50 --which paper_plain_float32,grid,scaling]`.
Cases: {paper,released}_{plain,guided}_{float32,bfloat16}, `grid`, `scaling` (default: all, ~12 min on 2
cores). Guided = 5 gradient steps of lr 0.02 per DDIM step on the hinge loss (tolerance 0.3 x range) towards
a target whose pelvis velocity is scaled by 1.15, as in the paper's running-speed task; the pelvis
velocity channels are known, everything else is generated. Parameters are a random init (speed does not
depend on them), the same for both matmul dtypes, and so are the keys.

Every DDIM step costs the same (the guidance is active at every step), so a case whose 50 steps would take
longer than `--budget-s` is timed over fewer steps (fewest 1) and scaled to `--steps`; its JSON line then
has "ddim_steps_timed" < "ddim_steps" and "extrapolated": true. The time is the best of the first call
(XLA's lowering and compile seconds, from jax.monitoring, subtracted) and `--repeats` identical calls;
"compiled_in_timed_call" lists what those repeats still compiled (nothing of the sampler).
FLOPs per DDIM step come from XLA's cost analysis of one denoiser call and one guidance gradient (the
sampler's scan body is counted once by XLA, so the whole sampler is not analysed). bf16 lines carry the
deviation from the fp32 samples on the same keys, over the generated (unknown) entries, in normalised units.

For reference the released PyTorch code on a 2-core AMD EPYC (about 192 GFLOP/s matmul peak) samples 2.44
(paper size, plain), 0.21 (paper, guided), 0.55 (released size, plain) and 0.043 (released, guided)
windows/s.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _machine import emit, matmul_gflops  # noqa: E402

from gaitjax.data import channels as ch  # noqa: E402
from gaitjax.diffusion.ddim import sample, sample_chunked  # noqa: E402
from gaitjax.diffusion.guidance import guidance_objective, hinge_guidance, tolerance_from_range  # noqa: E402
from gaitjax.diffusion.schedule import make_schedule  # noqa: E402
from gaitjax.models.registry import build_model, count_params, example_inputs  # noqa: E402

TORCH_REF = {("paper", "plain"): 2.44, ("paper", "guided"): 0.21, ("released", "plain"): 0.55,
             ("released", "guided"): 0.043}  # fmt: skip
PRESETS, MODES, DTYPES = ("paper", "released"), ("plain", "guided"), ("float32", "bfloat16")
SAMPLER_CASES = [f"{p}_{m}_{d}" for p, m, d in itertools.product(PRESETS, MODES, DTYPES)]
N_GRAD_STEPS, LR, TOLERANCE_FRACTION, SPEED_FACTOR = 5, 0.02, 0.3, 1.15
GUIDANCE_FIELDS = {"n_grad_steps": N_GRAD_STEPS, "lr": LR, "tolerance_fraction": TOLERANCE_FRACTION}


@functools.lru_cache(maxsize=8)
def _apply(module):
    """One function object per module, so sampler calls with new params hit the jit cache."""

    def apply(params, x_btc, t_b):
        return module.apply({"params": params}, x_btc, t_b, deterministic=True)

    return apply


@functools.lru_cache(maxsize=2)
def _params(preset: str):
    module = build_model("denoiser", preset)
    x, t = (jnp.zeros(s.shape, s.dtype) for s in example_inputs("denoiser"))
    return jax.jit(lambda: module.init(jax.random.key(1), x, t, deterministic=True))()["params"]


def _denoise_fn(preset: str, dtype: str) -> jax.tree_util.Partial:
    return jax.tree_util.Partial(_apply(build_model("denoiser", preset, matmul_dtype=dtype)), _params(preset))


def make_problem(n_windows: int, guided: bool, seed: int = 0):
    """Smooth gait-like windows in normalised units, the known mask, ids and the optional guidance."""
    rng = np.random.default_rng(seed)
    t = np.arange(ch.WINDOW_LEN)[None, :, None]
    period = rng.uniform(90, 130, (n_windows, 1, 1))  # frames per stride
    amp, phase = rng.uniform(0.2, 0.8, (2, n_windows, 1, ch.N_CHANNELS))
    phase = phase * 2 * np.pi / 0.8
    x = amp * np.sin(2 * np.pi * t / period + phase) + 0.3 * amp * np.sin(4 * np.pi * t / period + 2 * phase)
    known_btc = x.astype(np.float32)
    mask_btc = np.zeros_like(known_btc, bool)
    mask_btc[..., list(ch.PELVIS_VEL_IDX)] = True
    guidance = None
    if guided:
        target = known_btc.copy()
        target[..., list(ch.PELVIS_VEL_IDX)] *= SPEED_FACTOR
        known_btc = target
        thd_c = tolerance_from_range(target, TOLERANCE_FRACTION)
        guidance = hinge_guidance(target, thd_c, n_grad_steps=N_GRAD_STEPS, lr=LR)
    return known_btc, mask_btc, np.arange(n_windows, dtype=np.int32), guidance


def _flops(fn, *args) -> float:
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", 0.0))


def step_gflop(denoise_fn, known_btc, guidance) -> float:
    """GFLOP of one DDIM step: one denoiser call plus, when guided, n_grad_steps objective gradients."""
    x = jnp.asarray(known_btc)
    t_b = jnp.full((x.shape[0],), 500, jnp.int32)
    flops = _flops(denoise_fn, x, t_b)
    if guidance is not None:
        grad = jax.grad(
            lambda x: guidance_objective(denoise_fn, guidance.loss_fn, x, t_b, guidance.batch_args)
        )
        flops += guidance.n_grad_steps * _flops(grad, x)
    return flops / 1e9


def _sampler(denoise_fn, schedule, known, mask, ids, n_steps, guidance=None):
    """A thunk running `sample` on one batch with key 0 and returning the windows."""

    def run():
        return sample(denoise_fn, schedule, known_btc=known, mask_btc=mask, window_ids_b=ids,
                      key=jax.random.key(0), n_steps=n_steps, guidance=guidance).x0_btc  # fmt: skip

    return run


class Timer:
    """Times calls and records the XLA compilations inside them (names, and seconds spent lowering and
    compiling; tracing, which can nest, is not counted)."""

    _COMPILE_EVENTS = (
        "/jax/core/compile/backend_compile_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
    )

    def __init__(self):
        self.active, self.compiled, self.compile_s = False, [], 0.0
        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, name, duration, **kwargs):
        if self.active and name in self._COMPILE_EVENTS:
            self.compile_s += duration
            if name == self._COMPILE_EVENTS[0]:
                self.compiled.append(kwargs.get("fun_name", "?"))

    def timed(self, fn):
        """(result, seconds, compiled function names, compile seconds) of `fn()`; the result is fetched to
        the host inside the timing."""
        self.active, self.compiled, self.compile_s = True, [], 0.0
        t0 = time.perf_counter()
        out = np.asarray(fn())
        seconds = time.perf_counter() - t0
        self.active = False
        return out, seconds, self.compiled, self.compile_s

    def best(self, fn, repeats: int):
        """(result, best seconds, first-call seconds, names compiled after the first call) over the first
        call (its compile time subtracted) and `repeats` more calls. The machine is shared, so the best of
        several calls is the figure least disturbed by other load."""
        first, first_s, _, compile_s = self.timed(fn)
        times, compiled = [first_s - compile_s], []
        for _ in range(repeats):
            out, seconds, names, _ = self.timed(fn)
            assert np.array_equal(first, out), "sampling is not deterministic"
            times.append(seconds)
            compiled += names
        return first, min(times), first_s, compiled


def timed_steps(gflop_per_step: float, steps: int, budget_s: float, forced: int | None) -> int:
    """DDIM steps to time: all `steps` unless the run would exceed the budget at 40 % of matmul peak."""
    if forced:
        return min(forced, steps)
    est_s = gflop_per_step / (0.4 * matmul_gflops())
    return int(max(1, min(steps, budget_s // est_s)))


def deviation(x16, x32, mask_btc) -> dict:
    """bf16 vs fp32 samples over the generated entries, normalised units and as a fraction of fp32 std."""
    gen = ~mask_btc
    diff = np.abs(x16[gen].astype(np.float64) - x32[gen])
    std = float(np.std(x32[gen]))
    return {
        "bf16_vs_fp32_max_abs": round(float(diff.max()), 5),
        "bf16_vs_fp32_mean_abs": round(float(diff.mean()), 6),
        "fp32_generated_std": round(std, 4),
        "bf16_vs_fp32_max_abs_over_std": round(float(diff.max()) / std, 5),
        "bf16_vs_fp32_mean_abs_over_std": round(float(diff.mean()) / std, 6),
    }


def bench_case(name, args, timer, schedule, steps_timed: dict, results: dict) -> None:
    preset, mode, dtype = name.split("_")
    guided = mode == "guided"
    known, mask, ids, guidance = make_problem(args.batch, guided)
    denoise_fn = _denoise_fn(preset, dtype)
    gflop = step_gflop(denoise_fn, known, guidance)
    # Both dtypes of a case time the same steps (the same DDIM schedule, so their samples compare).
    k = steps_timed.setdefault(
        (preset, mode), timed_steps(gflop, args.steps, args.budget_s, args.timed_steps)
    )
    run = _sampler(denoise_fn, schedule, known, mask, ids, k, guidance)
    x, run_s, first_s, compiles = timer.best(run, args.repeats)
    extra = {}
    if not guided:  # the sampler's own cost: DDIM step time over one bare denoiser call
        fwd = jax.jit(denoise_fn)
        xt, tb = jnp.asarray(known), jnp.full((args.batch,), 500, jnp.int32)
        jax.block_until_ready(fwd(xt, tb))
        fwd_s = min(timer.timed(lambda: fwd(xt, tb))[1] for _ in range(2))
        extra["denoiser_call_s"] = round(fwd_s, 3)
        extra["sampler_overhead_fraction"] = round(run_s / k / fwd_s - 1, 3)
    results[(preset, mode, dtype)] = (x, run_s)
    ref = results.get((preset, mode, "float32"))
    if dtype == "bfloat16" and ref is not None:
        extra["speedup_vs_float32"] = round(ref[1] / run_s, 2)
        extra.update(deviation(x, ref[0], mask))
    seconds = run_s * args.steps / k
    emit(
        f"ddim_sampling_{name}_windows_per_s",
        round(args.batch / seconds, 4),
        "windows/s",
        batch=args.batch,
        matmul_dtype=dtype,
        ddim_steps=args.steps,
        ddim_steps_timed=k,
        extrapolated=k != args.steps,
        guidance=GUIDANCE_FIELDS if guided else None,
        params=count_params(build_model("denoiser", preset), example_inputs("denoiser")),
        seconds=round(seconds, 2),
        timed_s=round(run_s, 2),
        first_call_s=round(first_s, 2),
        compiled_in_timed_call=compiles,
        step_gflop=round(gflop, 1),
        achieved_gflops=round(gflop * k / run_s, 1),
        fraction_of_matmul_peak=round(gflop * k / run_s / matmul_gflops(), 3),
        released_pytorch_windows_per_s_at_192_gflops=TORCH_REF[(preset, mode)],
        **extra,
        backend=jax.default_backend(),
        devices=len(jax.devices()),
    )


def bench_grid(args, timer, schedule) -> None:
    n, chunk, dtype = args.grid_windows, args.grid_chunk, args.grid_dtype
    known, mask, ids, _ = make_problem(n, guided=False, seed=1)
    denoise_fn = _denoise_fn("paper", dtype)
    gflop = step_gflop(denoise_fn, known[:chunk], None) * n / chunk
    k = timed_steps(gflop, args.steps, args.budget_s * 2, args.timed_steps)
    run = lambda m: sample_chunked(denoise_fn, schedule, known_btc=known[:m], mask_btc=mask[:m],
                                   window_ids_b=ids[:m], key=jax.random.key(0), max_windows_per_call=chunk,
                                   n_steps=k).x0_btc  # fmt: skip
    first_s = timer.timed(lambda: run(chunk))[1]  # compiles the one chunk-sized program
    x, run_s, compiles, _ = timer.timed(lambda: run(n))
    seconds = run_s * args.steps / k
    emit(
        "ddim_sampling_grid_paper_plain_windows_per_s",
        round(n / seconds, 4),
        "windows/s",
        windows=n,
        chunk=chunk,
        n_chunks=-(-n // chunk),
        matmul_dtype=dtype,
        ddim_steps=args.steps,
        ddim_steps_timed=k,
        extrapolated=k != args.steps,
        seconds=round(seconds, 1),
        timed_s=round(run_s, 2),
        warmup_one_chunk_s=round(first_s, 2),
        compiled_in_timed_call=compiles,
        gflop_per_ddim_step=round(gflop, 1),
        achieved_gflops=round(gflop * k / run_s, 1),
        fraction_of_matmul_peak=round(gflop * k / run_s / matmul_gflops(), 3),
        all_finite=bool(np.isfinite(x).all()),
        released_pytorch_windows_per_s_at_192_gflops=TORCH_REF[("paper", "plain")],
        backend=jax.default_backend(),
        devices=len(jax.devices()),
    )


def bench_scaling(args, timer, schedule) -> None:
    sizes = [int(s) for s in args.scaling_windows.split(",")]
    dtype = args.grid_dtype
    denoise_fn = _denoise_fn("paper", dtype)
    k = args.scaling_steps
    seconds = []
    for n in sizes:
        known, mask, ids, _ = make_problem(n, guided=False, seed=2)
        run = _sampler(denoise_fn, schedule, known, mask, ids, k)
        seconds.append(timer.best(run, args.repeats)[1] * args.steps / k)
    slope, intercept = np.polyfit(sizes, seconds, 1)
    emit(
        "ddim_sampling_paper_plain_batch_scaling",
        round(float(slope), 4),
        "s/window (slope of time vs windows in one call)",
        windows=sizes,
        seconds=[round(s, 2) for s in seconds],
        windows_per_s=[round(n / s, 3) for n, s in zip(sizes, seconds, strict=True)],
        time_ratio_vs_first=[round(s / seconds[0], 2) for s in seconds],
        intercept_s=round(float(intercept), 2),
        matmul_dtype=dtype,
        ddim_steps=args.steps,
        ddim_steps_timed=k,
        extrapolated=k != args.steps,
        backend=jax.default_backend(),
        devices=len(jax.devices()),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps the figures are for")
    parser.add_argument(
        "--timed-steps", type=int, default=None, help="time this many steps (default: budget)"
    )
    parser.add_argument("--budget-s", type=float, default=30.0, help="target seconds per timed sampler call")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls after the first (best is kept)")
    parser.add_argument("--which", default=",".join(SAMPLER_CASES + ["grid", "scaling"]))
    parser.add_argument("--grid-windows", type=int, default=1024)
    parser.add_argument("--grid-chunk", type=int, default=128)
    parser.add_argument("--grid-dtype", choices=DTYPES, default="float32")
    parser.add_argument("--scaling-windows", default="64,128,256")
    parser.add_argument("--scaling-steps", type=int, default=3)
    args = parser.parse_args()
    which = args.which.split(",")
    unknown = sorted(set(which) - set(SAMPLER_CASES) - {"grid", "scaling"})
    if unknown:
        parser.error(f"unknown cases {unknown}; known: {SAMPLER_CASES + ['grid', 'scaling']}")
    matmul_gflops()
    timer, schedule, steps_timed, results = Timer(), make_schedule(), {}, {}
    for name in SAMPLER_CASES:  # fixed order: each fp32 case runs before its bf16 twin
        if name in which:
            bench_case(name, args, timer, schedule, steps_timed, results)
    if "grid" in which:
        bench_grid(args, timer, schedule)
    if "scaling" in which:
        bench_scaling(args, timer, schedule)


if __name__ == "__main__":
    main()
