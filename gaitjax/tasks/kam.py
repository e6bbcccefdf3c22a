"""Knee adduction moment (KAM) by the cross product of the lever arm and the ground reaction force (spec §6.2,
paper Methods, task 2), with knee-joint centres from our forward kinematics, and its first and second peaks
per stance (spec §6.3)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from gaitjax.data.errors import GaitDataError
from gaitjax.evaluation.gait_cycles import GRAVITY_M_PER_S2
from gaitjax.skeleton.fk import apply_couplers, forward_kinematics
from gaitjax.skeleton.tree import Skeleton

# Task-2 stance: true left vGRF above this (N/kg), i.e. any non-zero force (spec §6.3).
KAM_STANCE_THRESHOLD_N_PER_KG = 1e-5
# Each stance is resampled to 101 points, 0..100 % of stance; the first peak is the max over 0-49 %, the
# second over 51-100 % (spec §6.3), both inclusive.
STANCE_POINTS = 101
FIRST_PEAK_PERCENT = (0, 49)
SECOND_PEAK_PERCENT = (51, 100)


def knee_joint_names(skeleton: Skeleton) -> tuple[str, str]:
    """Names of the (right, left) knee joints: the joints whose child bodies are `tibia_r` / `tibia_l`
    (`knee_r` in gait2392 and Hamner, `walker_knee_r` in Rajagopal/LaiArnold models; the patellofemoral joint
    is also a child of the femur, so "first child of the femur" would depend on file order).

    Raises:
        GaitDataError: a model without a `tibia_r` or `tibia_l` body.
    """
    names = []
    for side in "rl":
        found = [j.name for j in skeleton.joints if skeleton.body_names[j.child] == f"tibia_{side}"]
        if not found:
            raise GaitDataError(
                f"model {skeleton.name!r} has no body 'tibia_{side}', so no knee joint; bodies are "
                f"{skeleton.body_names}"
            )
        names.append(found[0])
    return names[0], names[1]


def locate_knee_centres(
    skeleton: Skeleton, coordinates_rad: np.ndarray, *, fill_coupled: bool = True
) -> np.ndarray:
    """Knee-joint centres in ground: the origin of each knee joint's child-side frame, as OpenSim's
    `joint.getChildFrame().getPositionInGround(state)` (for a walker knee it moves with the coupled
    translation). Computed in float64 whatever the global JAX precision.

    Args:
        skeleton: the subject's kinematic tree (`build_skeleton(parse_osim(path))`).
        coordinates_rad: [T, n_coords] coordinates in `skeleton.coordinate_names` order (rad; m for
            translations).
        fill_coupled: recompute coupled (dependent) coordinates from their independent ones first, so
            columns an IK file leaves out (e.g. `knee_angle_r_beta`) may be given as anything.

    Returns:
        [T, 2, 3] knee centres (m, ground frame), right then left.

    Raises:
        GaitDataError: coordinates not [T, n_coords] for this skeleton, or a model without knees.
    """
    q = np.asarray(coordinates_rad, dtype=np.float64)
    n_coords = len(skeleton.coordinate_names)
    if q.ndim != 2 or q.shape[1] != n_coords:
        raise GaitDataError(
            f"coordinates must be [T, {n_coords}] in the model order of {skeleton.name!r} (rad / m), got "
            f"shape {q.shape}"
        )
    right, left = knee_joint_names(skeleton)
    index = [skeleton.joint_index[right], skeleton.joint_index[left]]
    # float32 FK would put ~1e-7 m of round-off on the knee, ~1e-5 %BW·BH on the moment.
    with jax.enable_x64(True):
        q_jax = jnp.asarray(q)
        if fill_coupled:
            q_jax = apply_couplers(skeleton, q_jax)
        joint_pos_m = forward_kinematics(skeleton, q_jax).joint_pos_m
        return np.asarray(joint_pos_m[:, index, :], dtype=np.float64)


def _check_feet(name: str, x: np.ndarray, n_frames: int | None = None) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or x.shape[1:] != (2, 3) or (n_frames is not None and x.shape[0] != n_frames):
        expected = "T" if n_frames is None else str(n_frames)
        raise GaitDataError(
            f"{name} must be [{expected}, 2, 3] (frames, right/left, x/y/z), got shape {x.shape}"
        )
    return x


def joint_moments_bw_bh_percent(
    joint_pos_m: np.ndarray, cop_m: np.ndarray, grf_n: np.ndarray, mass_kg: float, height_m: float
) -> np.ndarray:
    """Moment of the ground reaction force about a joint centre of each leg (spec §6.2), in %BW·BH.

    M = (p_joint - COP) x F / (mass · 9.81 · height) × 100, in the ground frame (x anterior, y up, z right),
    with the x component of the right leg negated so that both legs share one sign convention. This is the
    reference's (joint - COP) x F: the negative of the external moment (COP - joint) x F, i.e. the moment the
    joint must produce; see `knee_adduction_moment` for what its x component means at the knee.

    Args:
        joint_pos_m: [T, 2, 3] joint centres (m), right then left.
        cop_m: [T, 2, 3] centres of pressure (m).
        grf_n: [T, 2, 3] ground reaction forces (N).
        mass_kg: body mass (kg).
        height_m: body height (m).

    Returns:
        [T, 2, 3] moments (%BW·BH).

    Raises:
        GaitDataError: shapes other than [T, 2, 3], or a non-positive mass or height.
    """
    joint_pos_m = _check_feet("joint positions", joint_pos_m)
    cop_m = _check_feet("COP", cop_m, joint_pos_m.shape[0])
    grf_n = _check_feet("GRF", grf_n, joint_pos_m.shape[0])
    for name, value in (("mass_kg", mass_kg), ("height_m", height_m)):
        if not (np.isfinite(value) and value > 0):
            raise GaitDataError(f"{name} must be a positive number, got {value!r}")
    moment = np.cross(joint_pos_m - cop_m, grf_n) / (mass_kg * GRAVITY_M_PER_S2 * height_m) * 100.0
    moment[:, 0, 0] *= -1.0
    return moment


def knee_adduction_moment(
    grf_n: np.ndarray,
    cop_m: np.ndarray,
    mass_kg: float,
    height_m: float,
    *,
    skeleton: Skeleton | None = None,
    coordinates_rad: np.ndarray | None = None,
    knee_pos_m: np.ndarray | None = None,
) -> np.ndarray:
    """Knee adduction moment of both legs (spec §6.2: `knee_moment_{r,l}_x`), in %BW·BH.

    KAM_left = ((p_knee - COP) x F)_x / (BW · BH) × 100 and KAM_right = -((p_knee - COP) x F)_x / (BW · BH)
    × 100, where x is the ground frame's anterior axis (the walking direction once the trial is yaw-aligned;
    it is not a tibia-frame moment) and z points to the right. Positive = adduction on both legs: the force
    line passing medial to the knee (COP at larger z than the left knee, or smaller z than the right knee)
    under an upward force gives a positive KAM. In the paper's notation this is
    KAM = -(r_y f_z - r_z f_y) / (BW · BH) for the left leg with r = COP - knee; the paper leaves the sign
    open, the reference code fixes it.

    The knee centres come either from `knee_pos_m` or from our forward kinematics of `skeleton` at
    `coordinates_rad` (see `locate_knee_centres`). Frames without contact give ~0 because F ~ 0.

    Args:
        grf_n: [T, 2, 3] ground reaction forces (N, ground frame), right foot first.
        cop_m: [T, 2, 3] centres of pressure (m, ground frame).
        mass_kg: body mass (kg).
        height_m: body height (m).
        skeleton: the subject's kinematic tree (with `coordinates_rad`).
        coordinates_rad: [T, n_coords] coordinates in model order (rad; m for translations).
        knee_pos_m: [T, 2, 3] knee centres (m), instead of `skeleton` and `coordinates_rad`.

    Returns:
        [T, 2] KAM (%BW·BH), right then left.

    Raises:
        GaitDataError: neither or both sources of knee centres, or bad shapes/values.
    """
    from_fk = skeleton is not None or coordinates_rad is not None
    if from_fk == (knee_pos_m is not None) or (from_fk and (skeleton is None or coordinates_rad is None)):
        raise GaitDataError("give either knee_pos_m, or both skeleton and coordinates_rad")
    if from_fk:
        knee_pos_m = locate_knee_centres(skeleton, coordinates_rad)
    return joint_moments_bw_bh_percent(knee_pos_m, cop_m, grf_n, mass_kg, height_m)[..., 0]


def resample_stance(values: np.ndarray, start: int, end: int, n_points: int = STANCE_POINTS) -> np.ndarray:
    """Linear resampling of values[start:end] onto `n_points` equally spaced points from its first to its last
    frame (0 % and 100 % of stance are the frames `start` and `end - 1`).

    Args:
        values: [T] a signal.
        start: first frame (inclusive).
        end: last frame (exclusive); at least 2 frames.
        n_points: number of output points.

    Returns:
        [n_points] resampled values.
    """
    segment = np.asarray(values, dtype=np.float64)[start:end]
    if segment.ndim != 1 or segment.shape[0] < 2:
        raise GaitDataError(f"stance [{start}, {end}) must hold at least 2 frames of a 1-D signal")
    return np.interp(np.linspace(0.0, segment.shape[0] - 1, n_points), np.arange(segment.shape[0]), segment)


@dataclasses.dataclass(frozen=True, eq=False)
class StancePeaks:
    """KAM peaks of one stance.

    Attributes:
        start: first stance frame (vGRF above the threshold).
        end: first frame after the stance (exclusive).
        curve_bw_bh_percent: [101] KAM over 0..100 % of stance (%BW·BH).
        first_peak_bw_bh_percent: max over 0-49 % of stance.
        second_peak_bw_bh_percent: max over 51-100 % of stance.
    """

    start: int
    end: int
    curve_bw_bh_percent: np.ndarray
    first_peak_bw_bh_percent: float
    second_peak_bw_bh_percent: float


def kam_peaks(
    kam_bw_bh_percent: np.ndarray,
    vgrf_n_per_kg: np.ndarray,
    threshold_n_per_kg: float = KAM_STANCE_THRESHOLD_N_PER_KG,
) -> list[StancePeaks]:
    """First and second KAM peaks of every complete stance of one leg (spec §6.3).

    A stance is a run of vGRF > `threshold_n_per_kg` that starts with an upward crossing and ends with a
    downward crossing inside the record; runs cut by the record's start or end are skipped (the reference
    skips a window unless it holds exactly one up- and one down-crossing: that is the case of a single
    returned stance). Each stance [start, end) is resampled to 101 points (`resample_stance`).

    Args:
        kam_bw_bh_percent: [T] KAM of one leg (%BW·BH).
        vgrf_n_per_kg: [T] vertical GRF of the same leg (N/kg).
        threshold_n_per_kg: stance threshold (N/kg); the reference's 1e-5 suits model outputs and clean data,
            noisy force plates need a larger one.

    Returns:
        One entry per complete stance with at least 2 frames, in time order.

    Raises:
        GaitDataError: inputs that are not two 1-D arrays of the same length.
    """
    kam = np.asarray(kam_bw_bh_percent, dtype=np.float64)
    vgrf = np.asarray(vgrf_n_per_kg, dtype=np.float64)
    if kam.ndim != 1 or vgrf.shape != kam.shape:
        raise GaitDataError(
            f"KAM and vertical GRF must be 1-D arrays [T] of one leg, got shapes {kam.shape} and {vgrf.shape}"
        )
    step = np.diff((vgrf > threshold_n_per_kg).astype(np.int8))
    starts, ends = np.flatnonzero(step == 1) + 1, np.flatnonzero(step == -1) + 1
    peaks = []
    for start in starts.tolist():
        later = ends[ends > start]
        if later.size == 0 or later[0] - start < 2:
            continue
        end = int(later[0])
        curve = resample_stance(kam, start, end)
        first = curve[FIRST_PEAK_PERCENT[0] : FIRST_PEAK_PERCENT[1] + 1].max()
        second = curve[SECOND_PEAK_PERCENT[0] : SECOND_PEAK_PERCENT[1] + 1].max()
        peaks.append(StancePeaks(start, end, curve, float(first), float(second)))
    return peaks
