"""Quality rules that prune trials and frames (paper Methods, spec §2.3–§2.5), as checks and as splitting.

Each check returns None (passes) or a reason string "<code>: <what was measured> > <limit>"; the stable codes
are the REASON_* constants. Jitter frames split a trial into pieces; window starts come from a valid mask.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np

from gaitjax.data import channels as ch
from gaitjax.data import rotation
from gaitjax.data.errors import GaitDataError

REASON_TRUNK = "trunk_rotation"
REASON_HEADING = "heading_range"
REASON_SHORT = "too_short"
REASON_COP = "wrong_cop"
REASON_NO_WINDOW = "no_valid_window"

MIN_FRAMES = 20  # the released loader's floor (filters need > 15 frames)
MAX_TRUNK_ROTATION_DEG = 45.0
MAX_HEADING_RANGE_DEG = 45.0
COP_MAX_DIST_M = 0.3
COP_STANCE_MIN_FORCE_N = 50.0
COP_WRONG_RATIO = 0.002
MAX_ANGULAR_VEL_DEG_S = 2000.0
MAX_PELVIS_ACC_M_S2 = 320.0
JITTER_MARGIN = 2

_COORD = {name: i for i, name in enumerate(ch.OSIM_DOF_COLUMNS)}


def trunk_rotation_reason(
    lumbar_rotation_rad: np.ndarray, max_deg: float = MAX_TRUNK_ROTATION_DEG
) -> str | None:
    """Implausible IK: |mean lumbar_rotation| above 45°.

    Args:
        lumbar_rotation_rad: [T] lumbar_rotation coordinate, rad.
        max_deg: limit, degrees.

    Returns:
        A reason string, or None when the trial passes.
    """
    mean_deg = abs(float(np.degrees(np.mean(lumbar_rotation_rad))))
    if mean_deg > max_deg:
        return f"{REASON_TRUNK}: |mean lumbar_rotation| = {mean_deg:.1f} deg > {max_deg} deg"
    return None


def heading_range_reason(heading_range_rad: float, max_deg: float = MAX_HEADING_RANGE_DEG) -> str | None:
    """Moving direction changes too much to align: heading range (from `preprocess.yaw_alignment`) above 45°.

    Args:
        heading_range_rad: max − min of the unwrapped pelvis heading, rad.
        max_deg: limit, degrees.

    Returns:
        A reason string, or None.
    """
    range_deg = float(np.degrees(heading_range_rad))
    if range_deg > max_deg:
        return f"{REASON_HEADING}: heading range = {range_deg:.1f} deg > {max_deg} deg"
    return None


def trial_length_reason(
    n_frames: int, fs: float, window_len: int = ch.WINDOW_LEN, evaluation: bool = False
) -> str | None:
    """Too short to train on: fewer than window_len + 2 = 152 frames once at 100 Hz (as the released code,
    which keeps a 2-frame margin beyond the 1.5 s window), or fewer than 20 frames.

    Args:
        n_frames: trial length at its own rate.
        fs: its sampling rate, Hz.
        window_len: model window, frames at 100 Hz.
        evaluation: keep trials shorter than a window (they are padded, `pad_to_window`); only the
            20-frame floor applies.

    Returns:
        A reason string, or None.
    """
    if n_frames < MIN_FRAMES:
        return f"{REASON_SHORT}: {n_frames} frames < {MIN_FRAMES}"
    frames_100hz = n_frames / fs * ch.TARGET_RATE_HZ
    if not evaluation and frames_100hz < window_len + 2:
        return f"{REASON_SHORT}: {frames_100hz:.1f} frames at 100 Hz < {window_len + 2}"
    return None


def cop_distance_reason(
    cop_m: np.ndarray,
    calcn_m: np.ndarray,
    grf_n_per_kg: np.ndarray,
    mass_kg: float,
    max_dist_m: float = COP_MAX_DIST_M,
    ratio: float = COP_WRONG_RATIO,
) -> str | None:
    """COP implausibly far from the foot during stance (released `norm_cops` check).

    Counted as the released code: stance is F_vy·mass > 50 N per foot; components with |COP − calcn| > 0.3 m
    during stance are counted over both feet, the count is divided by 3 and compared with ratio·T (T = all
    frames of the trial, so "0.2 % of stance" is in practice 0.2 % of the trial's frames).

    Args:
        cop_m: [T, 2, 3] COP per foot (r, l), ground frame, m.
        calcn_m: [T, 2, 3] calcaneus origins, m.
        grf_n_per_kg: [T, 2, 3] force per foot, N/kg.
        mass_kg: body mass, kg.
        max_dist_m: per-component distance limit, m.
        ratio: allowed fraction (0.002; the released test loader uses 0.01 for vanderZee2022).

    Returns:
        A reason string, or None.
    """
    cop_m, calcn_m, grf = (np.asarray(a, dtype=np.float64) for a in (cop_m, calcn_m, grf_n_per_kg))
    stance = grf[..., 1:2] * mass_kg > COP_STANCE_MIN_FORCE_N
    count = np.sum((np.abs(cop_m - calcn_m) > max_dist_m) & stance) / 3
    n_t = cop_m.shape[0]
    if count > ratio * n_t:
        return f"{REASON_COP}: {count:.1f} frames with COP > {max_dist_m} m from calcn > {ratio} × {n_t}"
    return None


def _step_rate(x_tc: np.ndarray, fs: float) -> np.ndarray:
    """Forward difference × fs assigned to the later frame: row t holds (x_t − x_{t−1})·fs; row 0 is 0."""
    return np.concatenate([np.zeros_like(x_tc[:1]), np.diff(x_tc, axis=0) * fs], axis=0)


def jitter_frames(
    coords_tc: np.ndarray,
    fs: float = ch.TARGET_RATE_HZ,
    rule: Literal["paper", "released"] = "paper",
    max_deg_s: float = MAX_ANGULAR_VEL_DEG_S,
) -> np.ndarray:
    """Frames whose step from the previous frame is implausibly fast.

    "paper" (default): any joint turns faster than 2000 °/s in either direction. 3-DoF joints (pelvis,
    hips, lumbar) use the rotation angle of R_{t−1}ᵀ R_t; 1-DoF joints (knee, ankle, subtalar) use |Δq|.
    "released" (`divide_jittery_trials`): SIGNED one-sided thresholds, Δ of a 1-DoF angle or of any 6D
    component × fs > deg2rad(2000), or the second difference of pelvis position × fs² > 320 m/s²; only
    positive jumps count (a released bug, kept as an option for reproducing its stores).

    Args:
        coords_tc: [T, 23] coordinates in channels.OSIM_DOF_COLUMNS order, rad / m.
        fs: sampling rate, Hz.
        rule: "paper" or "released".
        max_deg_s: angular-velocity limit, °/s.

    Returns:
        [T] bool, True at frame t when the step (t−1 -> t) breaks a limit (frame 0 is never flagged).
    """
    coords_tc = np.asarray(coords_tc, dtype=np.float64)
    limit = np.radians(max_deg_s)
    one_dof = coords_tc[:, [_COORD[c] for c in ch.ONE_DOF_COLUMNS]]
    eulers = [coords_tc[:, [_COORD[n] for n in names]] for names in ch.JOINTS_3D.values()]
    if rule == "paper":
        bad = np.any(np.abs(_step_rate(one_dof, fs)) > limit, axis=1)
        for euler in eulers:
            r = rotation.euler_zxy_to_matrix(euler)
            rel = np.swapaxes(r[:-1], -1, -2) @ r[1:]
            cos = np.clip((np.trace(rel, axis1=-2, axis2=-1) - 1) / 2, -1.0, 1.0)
            bad[1:] |= np.arccos(cos) * fs > limit
        return bad
    if rule == "released":
        six_d = np.concatenate([rotation.euler_zxy_to_6d(e) for e in eulers], axis=1)
        pelvis = coords_tc[:, [_COORD[c] for c in ch.TRANSLATION_COLUMNS]]
        acc = _step_rate(_step_rate(pelvis, fs), fs)
        return (
            np.any(acc > MAX_PELVIS_ACC_M_S2, axis=1)
            | np.any(_step_rate(one_dof, fs) > limit, axis=1)
            | np.any(_step_rate(six_d, fs) > limit, axis=1)
        )
    raise ValueError(f"rule must be 'paper' or 'released', got {rule!r}")


def split_at_jitter(
    bad_t: np.ndarray, window_len: int = ch.WINDOW_LEN, margin: int = JITTER_MARGIN, trim_ends: bool = False
) -> list[tuple[int, int]]:
    """Pieces [bp + margin, next_bp − margin) between flagged frames that still hold one window.

    With the step (t−1 -> t) flagged at t, this drops frames bp−2 … bp+1: the two frames of the bad step
    and margin − 1 frames on each side (the paper describes "the frame ±2"; the bounds are the released
    code's). The released code also treats frame 0 and T as break points, trimming 2 frames at each trial
    end; `trim_ends=True` reproduces that, the default keeps the trial ends.

    Args:
        bad_t: [T] bool from `jitter_frames`.
        window_len: a kept piece needs at least this many frames.
        margin: frames cut on each side of a break point.
        trim_ends: treat 0 and T as break points too.

    Returns:
        List of (start, stop) frame ranges, in order.
    """
    bad_t = np.asarray(bad_t, dtype=bool)
    n_t = bad_t.shape[0]
    bps = np.flatnonzero(bad_t).tolist()
    starts = [margin if trim_ends else 0] + [bp + margin for bp in bps]
    stops = [bp - margin for bp in bps] + [n_t - margin if trim_ends else n_t]
    return [(s, e) for s, e in zip(starts, stops, strict=True) if e - s >= window_len]


def available_window_starts(valid_t: np.ndarray, window_len: int = ch.WINDOW_LEN) -> np.ndarray:
    """Every start s such that frames [s, s + window_len) are all valid (`set_available_win_start`).

    Args:
        valid_t: [T] bool, e.g. not probably-missing GRF.
        window_len: window length, frames.

    Returns:
        [S] int64 start indices, increasing.
    """
    invalid = np.concatenate([[0], np.cumsum(~np.asarray(valid_t, dtype=bool))])
    n_starts = invalid.shape[0] - window_len
    if n_starts <= 0:
        return np.zeros(0, dtype=np.int64)
    counts = invalid[window_len:] - invalid[:n_starts]
    return np.flatnonzero(counts == 0).astype(np.int64)


def pad_to_window(x_tc: np.ndarray, window_len: int = ch.WINDOW_LEN) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation mode for a trial shorter than one window: zero-pad at the end and mark real rows.

    Args:
        x_tc: [T, C] with T ≤ window_len.
        window_len: window length, frames.

    Returns:
        (x [window_len, C] with zero rows after T, mask [window_len] bool, True on the T real rows).
    """
    x_tc = np.asarray(x_tc)
    n_t = x_tc.shape[0]
    if n_t > window_len:
        raise GaitDataError(f"pad_to_window takes at most {window_len} frames, got {n_t}")
    out = np.zeros((window_len, *x_tc.shape[1:]), dtype=x_tc.dtype)
    out[:n_t] = x_tc
    return out, np.arange(window_len) < n_t


class TrialPruning(NamedTuple):
    """Outcome of `prune_trial`: empty `reasons` and at least one piece means the trial is kept."""

    reasons: tuple[str, ...]
    pieces: tuple[tuple[int, int], ...]  # kept [start, stop) frame ranges (100 Hz)

    @property
    def kept(self) -> bool:
        return not self.reasons and bool(self.pieces)


def prune_trial(
    coords_tc: np.ndarray,
    grf_n_per_kg: np.ndarray,
    cop_m: np.ndarray,
    calcn_m: np.ndarray,
    mass_kg: float,
    heading_range_rad: float,
    fs: float = ch.TARGET_RATE_HZ,
    evaluation: bool = False,
    jitter_rule: Literal["paper", "released"] = "paper",
    cop_ratio: float = COP_WRONG_RATIO,
) -> TrialPruning:
    """Every rule on one trial at 100 Hz: all failing reasons, and the pieces left after jitter splitting.

    In evaluation mode nothing is split and trials shorter than a window are kept whole (pad them with
    `pad_to_window`); the trunk, heading and COP rules still report reasons for the caller to decide.

    Args:
        coords_tc: [T, 23] coordinates (channels.OSIM_DOF_COLUMNS order), rad / m, at `fs`.
        grf_n_per_kg: [T, 2, 3] force per foot (r, l), N/kg.
        cop_m: [T, 2, 3] COP per foot, ground frame, m.
        calcn_m: [T, 2, 3] calcaneus origins, m.
        mass_kg: body mass, kg.
        heading_range_rad: from `preprocess.yaw_alignment`.
        fs: sampling rate, Hz.
        evaluation: keep short trials and do not split.
        jitter_rule: see `jitter_frames`.
        cop_ratio: see `cop_distance_reason`.

    Returns:
        TrialPruning(reasons, pieces).
    """
    coords_tc = np.asarray(coords_tc, dtype=np.float64)
    n_t = coords_tc.shape[0]
    checks = (
        trunk_rotation_reason(coords_tc[:, _COORD["lumbar_rotation"]]),
        heading_range_reason(heading_range_rad),
        trial_length_reason(n_t, fs, evaluation=evaluation),
        cop_distance_reason(cop_m, calcn_m, grf_n_per_kg, mass_kg, ratio=cop_ratio),
    )
    reasons = [r for r in checks if r is not None]
    if evaluation:
        return TrialPruning(tuple(reasons), ((0, n_t),))
    pieces = split_at_jitter(jitter_frames(coords_tc, fs, jitter_rule))
    if not pieces and not reasons:
        reasons.append(f"{REASON_NO_WINDOW}: no jitter-free piece of {ch.WINDOW_LEN} frames")
    return TrialPruning(tuple(reasons), tuple(pieces))
