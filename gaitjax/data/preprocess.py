"""Per-trial preprocessing before the representation: resampling to 100 Hz, yaw alignment, belt speed.

Deliberate differences from the released code (spec §8): resampling keeps every target time up to the last
sample (the released arange can drop it); heading angles are unwrapped before the 45° range check and the
median (the released code compares raw atan2 values, so a heading near ±180° is spuriously rejected); the
treadmill/overground choice is an explicit argument (the released keyword check never matches).
"""

from __future__ import annotations

import numpy as np

from gaitjax.data import filters, rotation
from gaitjax.data.channels import TARGET_RATE_HZ
from gaitjax.data.errors import GaitDataError

FOOT_VEL_CUTOFF_HZ = 10.0
STANCE_MIN_FORCE_N_PER_KG = 4.0  # ≈ 40 % body weight: the paper's "mid-stance" for the belt speed

# Fractional sample positions closer than this to a sample count as on it (so a target time equal to a
# source time up to rounding does not smear a flag into its neighbour).
_ON_SAMPLE_TOL = 1e-6


def resample_to_100hz(
    time_s: np.ndarray, values: np.ndarray, target: float = TARGET_RATE_HZ
) -> tuple[np.ndarray, np.ndarray]:
    """Linear resampling onto t0 + k/target for every k with that time ≤ t_end.

    The released `linear_resample_data` interpolates on arange over a normalised axis and can drop the final
    sample; here every target time inside [t0, t_end] is kept. Boolean arrays (e.g. probably-missing-GRF
    flags) are resampled conservatively as the released code does: a target frame is True if any source
    sample it is interpolated from is True.

    Args:
        time_s: [N] strictly increasing sample times, s.
        values: [N, ...] samples (float or bool).
        target: output rate, Hz.

    Returns:
        (time [M] s, values [M, ...]) with the input's dtype for bool, float64 otherwise.
    """
    time_s = np.asarray(time_s, dtype=np.float64)
    values = np.asarray(values)
    if time_s.ndim != 1 or time_s.shape[0] < 2:
        raise GaitDataError(f"resampling needs a 1-D time column with at least 2 samples, got {time_s.shape}")
    if values.shape[0] != time_s.shape[0]:
        raise GaitDataError(f"time has {time_s.shape[0]} samples but values have {values.shape[0]} rows")
    if not np.all(np.isfinite(time_s)) or np.any(np.diff(time_s) <= 0):
        bad = int(np.argmax(~np.isfinite(time_s[1:]) | (np.diff(time_s) <= 0))) + 1
        raise GaitDataError(f"time must be finite and strictly increasing; row {bad} has time {time_s[bad]}")
    duration = time_s[-1] - time_s[0]
    n_out = int(np.floor(duration * target + 1e-9)) + 1
    new_time = time_s[0] + np.arange(n_out) / target
    # Fractional source index of each target time, snapped onto samples it coincides with.
    pos = np.interp(new_time, time_s, np.arange(time_s.shape[0], dtype=np.float64))
    nearest = np.round(pos)
    pos = np.where(np.abs(pos - nearest) < _ON_SAMPLE_TOL, nearest, pos)
    lo = np.clip(np.floor(pos).astype(int), 0, time_s.shape[0] - 1)
    hi = np.clip(lo + 1, 0, time_s.shape[0] - 1)
    frac = (pos - lo).reshape(-1, *([1] * (values.ndim - 1)))
    if values.dtype == bool:
        return new_time, values[lo] | (values[hi] & (frac > 0))
    v = values.astype(np.float64)
    return new_time, v[lo] * (1.0 - frac) + v[hi] * frac


def heading_rad(pelvis_euler_zxy_rad: np.ndarray) -> np.ndarray:
    """Per-frame heading of the pelvis lateral axis, atan2(−R02, R22), unwrapped over time.

    Args:
        pelvis_euler_zxy_rad: [T, 3] (pelvis_tilt, pelvis_list, pelvis_rotation), rad.

    Returns:
        [T] heading, rad, continuous (no ±π jumps).
    """
    r = rotation.euler_zxy_to_matrix(np.asarray(pelvis_euler_zxy_rad, dtype=np.float64))
    return np.unwrap(np.arctan2(-r[:, 0, 2], r[:, 2, 2]))


def yaw_alignment(pelvis_euler_zxy_rad: np.ndarray) -> tuple[np.ndarray, float]:
    """Rotation about vertical that brings the median heading to 0 (`align_moving_direction`).

    Args:
        pelvis_euler_zxy_rad: [T, 3] pelvis ZXY Euler angles, rad.

    Returns:
        (M [3, 3] = Ry(median heading), heading range max − min in rad of the unwrapped heading).
        The caller rejects (training) or skips alignment (user tool) when the range exceeds 45°.
    """
    heading = heading_rad(pelvis_euler_zxy_rad)
    return rotation.axis_rotation("Y", np.median(heading)), float(heading.max() - heading.min())


def apply_yaw(
    m: np.ndarray,
    pelvis_euler_zxy_rad: np.ndarray,
    pelvis_pos_m: np.ndarray | None = None,
    grf_n_per_kg: np.ndarray | None = None,
    normed_cop: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Left-multiply M onto the pelvis orientation and onto every ground-frame vector.

    Pass `m.T` to undo an alignment. Vectors are rotated as v' = M v.

    Args:
        m: [3, 3] rotation (from `yaw_alignment`, or its transpose).
        pelvis_euler_zxy_rad: [T, 3] pelvis ZXY Euler angles, rad.
        pelvis_pos_m: [T, 3] pelvis position, m (optional).
        grf_n_per_kg: [T, 2, 3] force per foot (optional; any unit).
        normed_cop: [T, 2, 3] normed COP per foot (optional).

    Returns:
        (pelvis Euler [T, 3] re-extracted as ZXY, position, GRF, normed COP), float64; None stays None.
    """
    m = np.asarray(m, dtype=np.float64)
    r = m @ rotation.euler_zxy_to_matrix(np.asarray(pelvis_euler_zxy_rad, dtype=np.float64))
    vectors = (pelvis_pos_m, grf_n_per_kg, normed_cop)
    pos, grf, cop = (None if v is None else np.asarray(v, dtype=np.float64) @ m.T for v in vectors)
    return rotation.matrix_to_euler_zxy(r), pos, grf, cop


def _foot_vx(toe_m: np.ndarray, stance: np.ndarray, fs: float) -> np.ndarray:
    pos = filters.lowpass(toe_m, FOOT_VEL_CUTOFF_HZ, fs)
    vx = np.diff(pos[:, 0]) * fs
    vx = np.append(vx, vx[-1])
    vx[~stance] = np.nan
    valid = np.isfinite(vx)
    if valid.any():
        idx = np.arange(vx.shape[0])
        vx = np.interp(idx, idx[valid], vx[valid])
    return vx


def estimate_belt_speed(
    toe_r_m: np.ndarray,
    toe_l_m: np.ndarray,
    grf_vy_n_per_kg: np.ndarray,
    fs: float,
    treadmill: bool | None = None,
) -> np.ndarray:
    """Belt correction term: mean AP velocity of the stance toes (`guess_vel_and_replace_txtytz`).

    Toe (mtp joint) positions are lowpassed at 10 Hz and differenced (×fs, last sample repeated); frames
    where that foot's F_vy < 4 N/kg are NaN and filled by linear interpolation (constant beyond the ends);
    a foot with no stance at all takes the other foot's values; avg = (r + l)/2, NaN -> 0.
    `pelvis_velocity` subtracts this from pelvis vx (a backward-moving belt gives a negative term).

    The released code meant to zero the term for overground datasets but its keyword check never matches
    (spec §8.8), so it applied it everywhere. Here the caller says: treadmill=False -> zeros; True or None
    (unknown) -> the estimate, which is ≈ 0 overground since a stance foot is still. Concatenating the
    segments of one split trial before estimating is the caller's job.

    Args:
        toe_r_m: [T, 3] right toe position (ground frame, yaw-aligned), m.
        toe_l_m: [T, 3] left toe position, m.
        grf_vy_n_per_kg: [T, 2] vertical force per foot (r, l), N/kg.
        fs: sampling rate, Hz.
        treadmill: whether the trial is on a treadmill (None: unknown).

    Returns:
        [T] float64 correction term, m/s.
    """
    grf_vy = np.asarray(grf_vy_n_per_kg, dtype=np.float64)
    n_t = grf_vy.shape[0]
    if np.shape(toe_r_m) != (n_t, 3) or np.shape(toe_l_m) != (n_t, 3) or grf_vy.shape != (n_t, 2):
        raise GaitDataError(
            f"toe positions must be [T, 3] and grf_vy [T, 2] with one T; got {np.shape(toe_r_m)}, "
            f"{np.shape(toe_l_m)}, {grf_vy.shape}"
        )
    if treadmill is False:
        return np.zeros(n_t)
    stance = grf_vy >= STANCE_MIN_FORCE_N_PER_KG
    v_r = _foot_vx(np.asarray(toe_r_m, dtype=np.float64), stance[:, 0], fs)
    v_l = _foot_vx(np.asarray(toe_l_m, dtype=np.float64), stance[:, 1], fs)
    v_r, v_l = np.where(np.isnan(v_r), v_l, v_r), np.where(np.isnan(v_l), v_r, v_l)
    avg = (v_r + v_l) / 2
    return np.nan_to_num(avg, nan=0.0)
