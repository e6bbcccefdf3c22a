"""Gait-modification grids: factors x trials x seeds of one channel manipulation, in one batched computation.

Each trial contributes one base window. For every factor the window is manipulated (e.g. trunk sway x2.5,
pelvis AP velocity x1.1), the manipulated channels are held known, and the rest of the window is generated
by DDIM inpainting, optionally guided towards the manipulated window by the paper's hinge loss (tolerance
band = a fraction of each channel's range over that trial's manipulated windows). All F x W x S windows go
through `sample_chunked` as one batch. Window noise comes from id = trial x S + seed, the same for every
factor, so factors are compared on common random numbers (as the released code reseeds before each factor).
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import numpy as np

from gaitjax.data import channels as ch
from gaitjax.data import rotation
from gaitjax.data.errors import GaitDataError
from gaitjax.data.representation import pseudo_angular_velocity
from gaitjax.diffusion.ddim import sample_chunked
from gaitjax.diffusion.guidance import hinge_guidance, tolerance_from_range
from gaitjax.diffusion.schedule import make_schedule
from gaitjax.models.bundle import LoadedModel

Manipulation = Callable[[np.ndarray, float], np.ndarray]  # (x_wtc un-normalised, factor) -> x_wtc


@dataclasses.dataclass(frozen=True)
class GridSpec:
    """What to vary and how to generate.

    Attributes:
        factors: the manipulation factors (paper task 2: 1, 2, 2.5, 3; task 3: 0.75 .. 1.25).
        n_seeds: samples per trial and factor.
        known_c: channels held known (the manipulated ones).
        tolerance_fraction: guidance band, a fraction of each channel's range (paper: 0.1 task 2, 0.3 task 3).
        guided: use gradient guidance (paper: 5 steps of lr 0.02 at all 50 DDIM steps).
        n_grad_steps, lr, n_steps: guidance steps per DDIM step, its step size, DDIM steps.
    """

    factors: tuple[float, ...]
    n_seeds: int
    known_c: tuple[int, ...]
    tolerance_fraction: float = 0.3
    guided: bool = True
    n_grad_steps: int = 5
    lr: float = 0.02
    n_steps: int = 50

    def __post_init__(self):
        if len(self.factors) == 0:
            raise GaitDataError("the factor grid has no entries; give at least one factor")
        if not all(np.isfinite(f) for f in self.factors):
            raise GaitDataError(f"factors must be finite numbers, got {self.factors}")
        if self.n_seeds < 1:
            raise GaitDataError(f"n_seeds must be at least 1, got {self.n_seeds}")
        if not self.known_c:
            raise GaitDataError("known_c is empty: a manipulation must hold at least one channel known")


@dataclasses.dataclass(frozen=True)
class GridSamples:
    """Generated windows, un-normalised: samples_fwstc [F, W, S, T, C]; manipulated_fwtc [F, W, T, C]."""

    factors: tuple[float, ...]
    samples_fwstc: np.ndarray
    manipulated_fwtc: np.ndarray
    valid_wt: np.ndarray


def scale_lumbar_bending(x_wtc: np.ndarray, factor: float) -> np.ndarray:
    """Task 2: lumbar_bending (medio-lateral trunk angle) x factor, as 6D and angular velocity again."""
    out = np.array(x_wtc, np.float64)
    six = list(ch.SIX_D_IDX["lumbar"])
    for w in range(out.shape[0]):
        euler = rotation.six_d_to_euler_zxy(out[w][:, six])
        euler[:, 1] *= factor
        out[w][:, six] = rotation.euler_zxy_to_6d(euler)
        out[w][:, list(ch.ANGULAR_VEL_IDX["lumbar"])] = pseudo_angular_velocity(euler)
    return out.astype(np.float32)


def scale_pelvis_ap_velocity(x_wtc: np.ndarray, factor: float) -> np.ndarray:
    """Task 3: the anterior-posterior pelvis velocity (pelvis_tx, heights per second) x factor."""
    out = np.array(x_wtc, np.float32)
    out[..., ch.CHANNEL_INDEX["pelvis_tx"]] *= factor
    return out


TRUNK_SWAY_KNOWN = tuple(ch.BODY_PART_CHANNELS["trunk"])
SPEED_KNOWN = tuple(ch.PELVIS_VEL_IDX)


def run_grid(
    denoiser: LoadedModel,
    base_wtc: np.ndarray,
    valid_wt: np.ndarray,
    manipulate: Manipulation,
    spec: GridSpec,
    *,
    key: jax.Array,
    max_windows_per_call: int = 64,
    mesh=None,
) -> GridSamples:
    """Generates every (factor, trial, seed) window in one chunked, jitted sampler run.

    Args:
        denoiser: the diffusion model (its normaliser defines the normalised space).
        base_wtc: [W, 150, 63] un-normalised base windows, one per trial.
        valid_wt: [W, 150] bool, False on padded frames (never known, never guided).
        manipulate: `(x_wtc, factor) -> x_wtc` in un-normalised units.
        spec: the grid.
        key: sampling key.
        max_windows_per_call: windows per jitted call (memory budget).
        mesh: optional device mesh; chunks are sharded over its "data" axis.

    Returns:
        GridSamples with the generated windows (known channels equal the manipulated values exactly).
    """
    base_wtc = np.asarray(base_wtc, np.float32)
    valid_wt = np.asarray(valid_wt, bool)
    if base_wtc.ndim != 3 or base_wtc.shape[1:] != (ch.WINDOW_LEN, ch.N_CHANNELS) or base_wtc.shape[0] == 0:
        raise GaitDataError(
            f"base windows must be [W>0, {ch.WINDOW_LEN}, {ch.N_CHANNELS}], got {base_wtc.shape}"
        )
    if valid_wt.shape != base_wtc.shape[:2]:
        raise GaitDataError(f"valid_wt must be {base_wtc.shape[:2]}, got {valid_wt.shape}")
    n_f, (n_w, n_t, n_c), n_s = len(spec.factors), base_wtc.shape, spec.n_seeds
    norm = denoiser.normalizer
    manipulated = np.stack([manipulate(base_wtc, f) for f in spec.factors])  # [F, W, T, C]
    manipulated = np.where(valid_wt[None, :, :, None], manipulated, 0.0).astype(np.float32)
    man_n = np.asarray(norm.transform(manipulated), np.float32)
    known_c = np.zeros(n_c, bool)
    known_c[list(spec.known_c)] = True

    def per_window(a_fw):  # [F, W, ...] -> [F*W*S, ...], seeds innermost
        return np.repeat(a_fw.reshape((n_f * n_w,) + a_fw.shape[2:]), n_s, axis=0)

    known_btc = per_window(man_n)
    valid_bt = per_window(np.broadcast_to(valid_wt, (n_f, n_w, n_t)))
    mask_btc = valid_bt[..., None] & known_c
    ids = np.tile(np.arange(n_w * n_s), n_f)  # trial * S + seed, equal across factors
    guidance = None
    if spec.guided:
        thd_wc = np.stack([tolerance_from_range(man_n[:, w], spec.tolerance_fraction) for w in range(n_w)])
        thd_bc = per_window(np.broadcast_to(thd_wc, (n_f, n_w, n_c)))
        guidance = hinge_guidance(
            known_btc,
            thd_bc[0],
            valid_bt[..., None].astype(np.float32),
            n_grad_steps=spec.n_grad_steps,
            lr=spec.lr,
        )
        target, _, weight = guidance.batch_args
        guidance = dataclasses.replace(guidance, batch_args=(target, thd_bc, weight))
    result = sample_chunked(
        denoiser.denoise_fn(),
        make_schedule(denoiser.schedule),
        known_btc=known_btc,
        mask_btc=mask_btc,
        window_ids_b=ids,
        key=key,
        max_windows_per_call=max_windows_per_call,
        mesh=mesh,
        n_steps=spec.n_steps,
        guidance=guidance,
        prediction=denoiser.prediction,
    )
    samples = np.asarray(norm.inverse(np.asarray(result.x0_btc)), np.float32)
    samples = np.where(mask_btc, per_window(manipulated), samples)  # known values exactly, not via round trip
    return GridSamples(tuple(spec.factors), samples.reshape(n_f, n_w, n_s, n_t, n_c), manipulated, valid_wt)


MetricFn = Callable[
    [np.ndarray, int], dict[str, float]
]  # (x_tc un-normalised valid frames, trial) -> metrics


def grid_table(grid: GridSamples, metric_fn: MetricFn, trial_names: Sequence[str]) -> list[dict]:
    """One row per trial x factor x seed x metric: {trial, factor, seed, metric, value}."""
    rows = []
    n_f, n_w, n_s = grid.samples_fwstc.shape[:3]
    if len(trial_names) != n_w:
        raise GaitDataError(f"{len(trial_names)} trial names for {n_w} trials")
    for f in range(n_f):
        for w in range(n_w):
            for s in range(n_s):
                x_tc = grid.samples_fwstc[f, w, s][grid.valid_wt[w]]
                for metric, value in metric_fn(x_tc, w).items():
                    rows.append(
                        dict(trial=trial_names[w], factor=grid.factors[f], seed=s, metric=metric, value=value)
                    )
    return rows


def write_table(rows: list[dict], path: Path) -> Path:
    """The tidy table as CSV (written to a temporary name, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["trial", "factor", "seed", "metric", "value"])
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    return path


def summarise(rows: list[dict]) -> dict[str, dict[float, tuple[float, float]]]:
    """metric -> factor -> (mean over trials and seeds, SD over seeds of the trial-mean)."""
    out: dict[str, dict[float, tuple[float, float]]] = {}
    metrics = sorted({r["metric"] for r in rows})
    for m in metrics:
        out[m] = {}
        for f in sorted({r["factor"] for r in rows if r["metric"] == m}):
            sel = [r for r in rows if r["metric"] == m and r["factor"] == f and np.isfinite(r["value"])]
            seeds = sorted({r["seed"] for r in sel})
            per_seed = [np.mean([r["value"] for r in sel if r["seed"] == s]) for s in seeds]
            if per_seed:
                out[m][f] = (float(np.mean(per_seed)), float(np.std(per_seed)))
            else:  # no finite value (e.g. no complete gait cycle in any generated window)
                out[m][f] = (float("nan"), float("nan"))
    return out


def plot_summary(rows: list[dict], path: Path, title: str, measured: dict[str, float] | None = None) -> Path:
    """One panel per metric: mean vs factor with a ±SD-over-seeds band; measured values as crosses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarise(rows)
    n = len(summary)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.4), squeeze=False)
    for ax, (metric, by_factor) in zip(axes[0], summary.items(), strict=True):
        f = np.array(sorted(by_factor))
        mean = np.array([by_factor[x][0] for x in f])
        sd = np.array([by_factor[x][1] for x in f])
        ax.plot(f, mean, "o-", color="tab:blue", label="generated")
        ax.fill_between(
            f, mean - sd, mean + sd, color="tab:blue", alpha=0.25, linewidth=0, label="±SD over seeds"
        )
        if measured and metric in measured:
            ax.plot([1.0], [measured[metric]], "x", color="k", markersize=9, label="measured")
        ax.set_xlabel("factor")
        ax.set_title(metric, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
