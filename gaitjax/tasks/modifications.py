"""Tasks 2 and 3: what a gait modification does, predicted by guided generation (paper, spec §6.3, §6.5).

Task 2 (trunk sway): lumbar_bending x factor on the last window of each walking trial, everything else
generated; the knee adduction moment's first and second peaks (left stance) from the generated forces, COP
and our FK of the subject's knee. Task 3 (running speed): pelvis AP velocity x factor on the last window
(ending 10 frames before the trial's end), everything else generated; per right-foot gait cycle the stride
length (left calcaneus displacement over the cycle, from our FK), peak knee flexion and peak vertical and
anterior-posterior force. Metrics of the measured window are reported beside the generated ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import numpy as np

from gaitjax.data import channels as ch
from gaitjax.data.errors import GaitDataError
from gaitjax.data.representation import model_states_to_osim
from gaitjax.evaluation.gait_cycles import GRAVITY_M_PER_S2, min_trial_frames, segment_gait_cycles
from gaitjax.models.bundle import LoadedModel
from gaitjax.skeleton.fk import body_positions_fn
from gaitjax.skeleton.tree import gaitdynamics_to_q
from gaitjax.tasks import kam as kam_lib
from gaitjax.tasks.grid import (
    SPEED_KNOWN,
    TRUNK_SWAY_KNOWN,
    GridSpec,
    grid_table,
    run_grid,
    scale_lumbar_bending,
    scale_pelvis_ap_velocity,
)

TRUNK_SWAY_FACTORS = (1.0, 2.0, 2.5, 3.0)
SPEED_FACTORS = (0.75, 0.85, 0.95, 1.05, 1.15, 1.25)
_COORD = {n: i for i, n in enumerate(ch.OSIM_DOF_COLUMNS)}


@dataclasses.dataclass(frozen=True, eq=False)
class TrialContext:
    """One trial's window and the subject facts its metrics need.

    Attributes:
        name: trial name for the tables.
        x_lc: [150, 63] un-normalised window (measured), padded rows zero.
        valid_l: [150] bool, False on padding.
        mass_kg, height_m: subject facts.
        skeleton: the subject's kinematic tree (for the knee and calcaneus positions).
    """

    name: str
    x_lc: np.ndarray
    valid_l: np.ndarray
    mass_kg: float
    height_m: float
    skeleton: object


def last_window(x_tc: np.ndarray, valid_t: np.ndarray, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The last 150 frames ending `offset` frames before the end; right-aligned and front-padded if short."""
    n_t = x_tc.shape[0] - offset
    if n_t < 1:
        raise GaitDataError(f"trial of {x_tc.shape[0]} frames has nothing left before an offset of {offset}")
    n = min(n_t, ch.WINDOW_LEN)
    x = np.zeros((ch.WINDOW_LEN, x_tc.shape[1]), np.float32)
    valid = np.zeros(ch.WINDOW_LEN, bool)
    x[ch.WINDOW_LEN - n :] = x_tc[n_t - n : n_t]
    valid[ch.WINDOW_LEN - n :] = valid_t[n_t - n : n_t]
    return x, valid


def skeleton_q(skeleton, coords_tc: np.ndarray) -> np.ndarray:
    """The 23 GaitDynamics coordinates [T, 23] -> the skeleton's coordinates [T, n] (defaults elsewhere)."""
    return gaitdynamics_to_q(skeleton, ch.OSIM_DOF_COLUMNS, coords_tc)


def _body_positions(skeleton, coords_tc: np.ndarray, bodies: Sequence[str]) -> np.ndarray:
    return body_positions_fn(skeleton, tuple(bodies))(skeleton_q(skeleton, coords_tc))


def _to_opensim(x_tc: np.ndarray, ctx: TrialContext):
    def calcn(coords):
        return _body_positions(ctx.skeleton, coords, ("calcn_r", "calcn_l"))

    return model_states_to_osim(x_tc, ctx.height_m, ctx.mass_kg, calcn)


def trunk_sway_metrics(x_tc: np.ndarray, ctx: TrialContext) -> dict[str, float]:
    """KAM peaks of the first complete left stance (%BW·BH, NaN without one) and the peak trunk sway (deg)."""
    osim = _to_opensim(x_tc, ctx)
    kam = kam_lib.knee_adduction_moment(
        osim.grf_n,
        osim.cop_m,
        ctx.mass_kg,
        ctx.height_m,
        skeleton=ctx.skeleton,
        coordinates_rad=skeleton_q(ctx.skeleton, osim.coords_tc),
    )
    stances = kam_lib.kam_peaks(kam[:, 1], osim.grf_n[:, 1, 1] / ctx.mass_kg, threshold_n_per_kg=1.0)
    first = stances[0] if stances else None
    bending = osim.coords_tc[:, _COORD["lumbar_bending"]]
    if bending.size == 0:
        raise GaitDataError("trunk_sway_metrics: the window has no valid frame")
    return {
        "kam_first_peak_bw_bh_percent": first.first_peak_bw_bh_percent if first else float("nan"),
        "kam_second_peak_bw_bh_percent": first.second_peak_bw_bh_percent if first else float("nan"),
        "trunk_sway_peak_deg": float(np.degrees(np.max(np.abs(bending)))),
    }


def speed_metrics(x_tc: np.ndarray, ctx: TrialContext) -> dict[str, float]:
    """Means over the complete right-foot gait cycles of the window (NaN without one)."""
    osim = _to_opensim(x_tc, ctx)
    speed = float(np.mean(x_tc[:, ch.CHANNEL_INDEX["pelvis_tx"]]) * ctx.height_m)
    out = {"speed_m_s": speed}
    names = (
        "stride_length_m",
        "peak_knee_flexion_deg",
        "peak_vertical_grf_bw_percent",
        "peak_ap_grf_bw_percent",
    )
    vgrf_r = osim.grf_n[:, 0, 1] / ctx.mass_kg
    if vgrf_r.size < min_trial_frames(100.0):
        return {**out, **{n: float("nan") for n in names}}
    cycles = segment_gait_cycles(vgrf_r, 100.0).cycles
    if not cycles:
        return {**out, **{n: float("nan") for n in names}}
    calcn_l = _body_positions(ctx.skeleton, osim.coords_tc, ("calcn_l",))[:, 0]
    bw = ctx.mass_kg * GRAVITY_M_PER_S2 / 100.0
    per_cycle = []
    for a, b in cycles:
        end = min(b, vgrf_r.size - 1)
        per_cycle.append(
            (
                float(calcn_l[end, 0] - calcn_l[a, 0]),
                float(np.degrees(osim.coords_tc[a:b, _COORD["knee_angle_r"]].max())),
                float(osim.grf_n[a:b, 0, 1].max() / bw),
                float(osim.grf_n[a:b, 0, 0].max() / bw),
            )
        )
    return {**out, **dict(zip(names, np.mean(per_cycle, axis=0).tolist(), strict=True))}


TASKS = {
    "trunk_sway": (scale_lumbar_bending, TRUNK_SWAY_KNOWN, 0.1, trunk_sway_metrics, 0),
    "speed": (scale_pelvis_ap_velocity, SPEED_KNOWN, 0.3, speed_metrics, 10),
}


def run_task(
    task: str,
    denoiser: LoadedModel,
    trials: Sequence[TrialContext],
    factors: Sequence[float],
    *,
    n_seeds: int = 1,
    key: jax.Array | None = None,
    guided: bool = True,
    n_steps: int = 50,
    max_windows_per_call: int = 64,
) -> tuple[list[dict], list[dict]]:
    """Runs task "trunk_sway" or "speed" as one grid.

    Args:
        task: "trunk_sway" (task 2) or "speed" (task 3).
        denoiser: the diffusion model.
        trials: windows and subject facts (see `context_from_trial`).
        factors: manipulation factors (non-empty).
        n_seeds: samples per trial and factor.
        key: sampling key (default key(0)).
        guided: the paper's hinge guidance (5 steps of lr 0.02 at every DDIM step).
        n_steps: DDIM steps.
        max_windows_per_call: windows per jitted call.

    Returns:
        (generated rows, measured rows): tidy rows {trial, factor, seed, metric, value}; the measured rows
        have factor 1 and seed -1.
    """
    if task not in TASKS:
        raise GaitDataError(f"unknown modification task {task!r}; expected one of {sorted(TASKS)}")
    if not trials:
        raise GaitDataError(f"task {task}: no trials to modify")
    manipulate, known, tolerance, metric_fn, _ = TASKS[task]
    spec = GridSpec(
        tuple(float(f) for f in factors), n_seeds, known, tolerance, guided=guided, n_steps=n_steps
    )
    base = np.stack([t.x_lc for t in trials])
    valid = np.stack([t.valid_l for t in trials])
    grid = run_grid(
        denoiser,
        base,
        valid,
        manipulate,
        spec,
        key=jax.random.key(0) if key is None else key,
        max_windows_per_call=max_windows_per_call,
    )
    rows = grid_table(grid, lambda x_tc, w: metric_fn(x_tc, trials[w]), [t.name for t in trials])
    measured = [
        dict(trial=t.name, factor=1.0, seed=-1, metric=m, value=v)
        for t in trials
        for m, v in metric_fn(t.x_lc[t.valid_l], t).items()
    ]
    return rows, measured


def context_from_trial(
    task: str, name: str, x_tc: np.ndarray, valid_t: np.ndarray, mass_kg: float, height_m: float, skeleton
) -> TrialContext:
    """The task's window of a whole trial: the last 150 frames up to its last frame with valid GRF (task 3:
    ending 10 frames earlier still, as the paper).

    Raises:
        GaitDataError: a trial without valid frames.
    """
    valid_t = np.asarray(valid_t, bool)
    if not valid_t.any():
        raise GaitDataError(f"trial {name} has no frame with valid ground reaction forces")
    end = int(np.flatnonzero(valid_t)[-1]) + 1
    offset = TASKS[task][4] if task in TASKS else 0
    x, valid = last_window(np.asarray(x_tc, np.float32)[:end], valid_t[:end], offset)
    return TrialContext(name, x, valid, float(mass_kg), float(height_m), skeleton)
