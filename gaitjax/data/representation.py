"""The GaitDynamics 63-channel representation: OpenSim coordinates + GRF/COP <-> model states, both ways.

Conventions and units (the released code's, spec §1; channel order in `gaitjax.data.channels`):
- Ground frame as OpenSim: x anterior (walking direction after yaw alignment), y up, z right. Yaw alignment
  (`gaitjax.data.preprocess`) happens before `osim_to_model_states` and is undone after the inverse.
- 3-DoF joints (pelvis, hip_r, hip_l, lumbar): the raw coordinates (q0, q1, q2) are ZXY Euler angles,
  R = Rz(q0)·Rx(q1)·Ry(q2); the 6D channels are the first two rows of R, row-major. hip_l uses the raw
  coordinate values (no sign flip), so it is a consistent encoding, not the anatomical rotation.
- `{joint}_{x,y,z}_angular_vel`: the released "pseudo angular velocity" 0.5·fs·(D21 − D12, D02 − D20,
  D10 − D01) of D_t = R_t − R_{t+1} (last row copied): about −ω, not in a body frame, roughly rad/s; then
  lowpassed (4th order, 15 Hz, filtfilt). Computed from the RAW Euler angles and reproduced exactly, not
  fixed, so released weights stay usable.
- 1-DoF angles (knee, ankle, subtalar): rad, unfiltered. `{1-DoF}_vel`: derivative of a not-a-knot cubic
  spline through the 15 Hz-filtered angle, in rad per FRAME (rad/s ÷ fs).
- pelvis_tx/ty/tz: pelvis velocity (10 Hz lowpass, forward difference × fs, last sample repeated), with the
  treadmill belt correction on x (vx − mean stance-foot vx), divided by subject height: heights per second.
- calcn_{r,l}_force_v{x,y,z}: ground reaction force per foot in N/kg (divided by body mass).
- calcn_{r,l}_force_normed_cop_{x,y,z}: (COP − calcaneus origin) [m] · F_vy [N/kg] / height [m]; all three
  set to 0 where F_vy · mass < 20 N.
- mtp angles are frozen: dropped going in, restored as 0 coming out.
- Dtype: the rotation math runs in the input dtype (float32 in -> float32 6D and raw angular velocity, as
  the released default path); filters and splines run in float64; `x_tc` has the input's float dtype.
- Inverse pelvis position: p_t = pos_vec + Σ_{k<t} (v_k·h − treadmill)/fs, so p_0 = pos_vec. The released
  code sums k ≤ t (p_0 = pos_vec + v_0/fs, one sample ahead); `released_offset=True` reproduces that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from gaitjax.data import channels as ch
from gaitjax.data import filters, rotation
from gaitjax.data.errors import GaitDataError

ANGULAR_VEL_CUTOFF_HZ = 15.0
PELVIS_VEL_CUTOFF_HZ = 10.0
FILTER_ORDER = 4
COP_MIN_FORCE_N = 20.0

_COORD = {name: i for i, name in enumerate(ch.OSIM_DOF_COLUMNS)}
_PELVIS_T = [_COORD[c] for c in ch.TRANSLATION_COLUMNS]
_ONE_DOF = [_COORD[c] for c in ch.ONE_DOF_COLUMNS]
_ONE_DOF_CH = [ch.CHANNEL_INDEX[c] for c in ch.ONE_DOF_COLUMNS]
_ONE_DOF_VEL_CH = [ch.CHANNEL_INDEX[f"{c}_vel"] for c in ch.ONE_DOF_COLUMNS]


class ModelStates(NamedTuple):
    """Output of `osim_to_model_states`."""

    x_tc: np.ndarray  # [T, 63] model channels (un-normalised), channels.MODEL_CHANNELS order
    pos_vec_m: np.ndarray  # [3] pelvis position of frame 0 (m), needed to re-integrate positions


class OsimStates(NamedTuple):
    """Output of `model_states_to_osim`."""

    coords_tc: np.ndarray  # [T, 23] channels.OSIM_DOF_COLUMNS order, rad / m
    grf_n: np.ndarray  # [T, 2, 3] ground reaction force (N), feet (r, l)
    cop_m: np.ndarray  # [T, 2, 3] centre of pressure (m, ground frame); 0 where F_vy·mass < 20 N


def pseudo_angular_velocity(
    euler_zxy_rad: np.ndarray, fs: float = 100.0, cutoff_hz: float | None = ANGULAR_VEL_CUTOFF_HZ
) -> np.ndarray:
    """The released code's 3-DoF "angular velocity" (`euler_to_angular_velocity` + `data_filter`).

    D_t = R_t − R_{t+1} for t < T−1, D_{T−1} = D_{T−2};
    ω = 0.5·fs·(D21 − D12, D02 − D20, D10 − D01); then a 4th-order Butterworth lowpass (filtfilt).

    Args:
        euler_zxy_rad: [T, 3] raw ZXY Euler angles, rad (T ≥ 2; T > 15 when filtering).
        fs: sampling rate, Hz.
        cutoff_hz: lowpass cut-off, Hz; None returns the unfiltered values.

    Returns:
        [T, 3] in roughly rad/s (≈ −ω_true near R = I): input dtype if unfiltered, float64 if filtered.
    """
    r = rotation.euler_zxy_to_matrix(euler_zxy_rad)  # [T, 3, 3]
    if r.shape[0] < 2:
        raise GaitDataError(f"angular velocity needs at least 2 frames, got {r.shape[0]}")
    d = r[:-1] - r[1:]
    d = np.concatenate([d, d[-1:]], axis=0)
    half_fs = r.dtype.type(0.5 * fs)
    omega = half_fs * np.stack(
        [d[:, 2, 1] - d[:, 1, 2], d[:, 0, 2] - d[:, 2, 0], d[:, 1, 0] - d[:, 0, 1]], axis=-1
    )
    if cutoff_hz is None:
        return omega
    return filters.lowpass(omega, cutoff_hz, fs, FILTER_ORDER)


def one_dof_velocity(angles_rad: np.ndarray, fs: float = 100.0) -> np.ndarray:
    """1-DoF joint velocity: 15 Hz lowpass, then the not-a-knot spline derivative.

    Args:
        angles_rad: [T, K] angles, rad.
        fs: sampling rate, Hz (sets the filter; the result is still per frame).

    Returns:
        [T, K] float64, rad per frame.
    """
    return filters.spline_derivative(filters.lowpass(angles_rad, ANGULAR_VEL_CUTOFF_HZ, fs, FILTER_ORDER))


def normed_cop(
    cop_m: np.ndarray, calcn_m: np.ndarray, grf_n_per_kg: np.ndarray, height_m: float, mass_kg: float
) -> np.ndarray:
    """COP relative to the calcaneus origin, weighted by the vertical force (`norm_cops`).

    Args:
        cop_m: [T, 2, 3] centre of pressure per foot (r, l), ground frame, m.
        calcn_m: [T, 2, 3] calcaneus body origins (r, l), ground frame, m.
        grf_n_per_kg: [T, 2, 3] ground reaction force per foot, N/kg.
        height_m: subject height, m.
        mass_kg: body mass, kg (only for the 20 N threshold).

    Returns:
        [T, 2, 3] float64: (cop − calcn)·F_vy/height; 0 where F_vy·mass < 20 N.
    """
    cop_m, calcn_m, grf = (np.asarray(a, dtype=np.float64) for a in (cop_m, calcn_m, grf_n_per_kg))
    f_vy = grf[..., 1:2]
    normed = (cop_m - calcn_m) * f_vy / height_m
    return np.where(f_vy * mass_kg < COP_MIN_FORCE_N, 0.0, normed)


def inverse_normed_cop(
    normed_cop_tfc: np.ndarray, calcn_m: np.ndarray, grf_n_per_kg: np.ndarray, height_m: float, mass_kg: float
) -> np.ndarray:
    """Inverse of `normed_cop` (`inverse_norm_cops`).

    In a local copy of the force, exact zeros become 1e-6; vector = normed / F_vy · height with nan/inf -> 0;
    COP = vector + calcn; COP = 0 (all three components) where F_vy·mass < 20 N. No clipping.

    Args:
        normed_cop_tfc: [T, 2, 3] normed COP per foot.
        calcn_m: [T, 2, 3] calcaneus origins from FK of the (reconstructed) pose, m.
        grf_n_per_kg: [T, 2, 3] force per foot, N/kg.
        height_m: subject height, m.
        mass_kg: body mass, kg.

    Returns:
        [T, 2, 3] float64 COP in the ground frame, m.
    """
    normed, calcn_m, grf = (np.asarray(a, dtype=np.float64) for a in (normed_cop_tfc, calcn_m, grf_n_per_kg))
    f_vy = np.where(grf[..., 1:2] == 0.0, 1e-6, grf[..., 1:2])
    with np.errstate(divide="ignore", invalid="ignore"):
        vector = normed / f_vy * height_m
    vector = np.where(np.isfinite(vector), vector, 0.0)
    cop = vector + calcn_m
    return np.where(f_vy * mass_kg < COP_MIN_FORCE_N, 0.0, cop)


def pelvis_velocity(
    pelvis_pos_m: np.ndarray,
    fs: float,
    height_m: float,
    belt_speed_m_s: np.ndarray | float | None = None,
) -> np.ndarray:
    """Pelvis channels 0–2 (`guess_vel_and_replace_txtytz`): 10 Hz lowpass, diff·fs, belt term, ÷ height.

    Args:
        pelvis_pos_m: [T, 3] pelvis position (yaw-aligned ground frame), m.
        fs: sampling rate, Hz.
        height_m: subject height, m.
        belt_speed_m_s: [T] or scalar belt correction term, m/s: the mean stance-foot AP velocity from
            `preprocess.estimate_belt_speed` (≈ −belt speed on a treadmill, whose belt moves backward;
            ≈ 0 overground). It is SUBTRACTED from vx, so a backward belt adds its speed. None -> 0.

    Returns:
        [T, 3] float64 velocity in heights per second.
    """
    pos = filters.lowpass(pelvis_pos_m, PELVIS_VEL_CUTOFF_HZ, fs, FILTER_ORDER)
    vel = np.diff(pos, axis=0) * fs
    vel = np.concatenate([vel, vel[-1:]], axis=0)
    if belt_speed_m_s is not None:
        vel[:, 0] = vel[:, 0] - np.asarray(belt_speed_m_s, dtype=np.float64)
    return vel / height_m


def _check_finite(name: str, a: np.ndarray, columns: tuple[str, ...] | None = None) -> None:
    bad = ~np.isfinite(a)
    if bad.any():
        t, *rest = np.argwhere(bad)[0]
        where = f"column {columns[rest[0]]!r}" if columns is not None else f"index {tuple(rest)}"
        raise GaitDataError(f"{name} holds a non-finite value {a[tuple([t, *rest])]} at frame {t}, {where}")


def osim_to_model_states(
    coords_tc: np.ndarray,
    grf_n_per_kg: np.ndarray,
    cop_m: np.ndarray,
    calcn_m: np.ndarray,
    height_m: float,
    mass_kg: float,
    fs: float = 100.0,
    belt_speed_m_s: np.ndarray | float | None = None,
) -> ModelStates:
    """OpenSim coordinates and per-foot GRF/COP of one whole trial -> the 63 model channels.

    Filters run over the whole trial, so convert trials, not windows (edges differ otherwise).

    Args:
        coords_tc: [T, 23] coordinates in channels.OSIM_DOF_COLUMNS order (rad, m), already yaw-aligned.
        grf_n_per_kg: [T, 2, 3] ground reaction force per foot (r, l), N/kg, same frame as coords.
        cop_m: [T, 2, 3] centre of pressure per foot, ground frame, m.
        calcn_m: [T, 2, 3] calcaneus body origins (r, l) from FK of `coords_tc`, m.
        height_m: subject height, m.
        mass_kg: body mass, kg.
        fs: sampling rate, Hz (the model expects 100; resample first).
        belt_speed_m_s: belt correction term, see `pelvis_velocity`.

    Returns:
        ModelStates(x_tc [T, 63] in the input's float dtype, pos_vec_m [3] frame-0 pelvis position).
    """
    coords_tc = np.asarray(coords_tc)
    if not np.issubdtype(coords_tc.dtype, np.floating):
        coords_tc = coords_tc.astype(np.float64)
    n_t = coords_tc.shape[0]
    if coords_tc.ndim != 2 or coords_tc.shape[1] != len(ch.OSIM_DOF_COLUMNS):
        raise GaitDataError(f"coords must be [T, {len(ch.OSIM_DOF_COLUMNS)}], got shape {coords_tc.shape}")
    for name, a in (("grf_n_per_kg", grf_n_per_kg), ("cop_m", cop_m), ("calcn_m", calcn_m)):
        if np.shape(a) != (n_t, 2, 3):
            raise GaitDataError(f"{name} must be [T={n_t}, 2, 3], got shape {np.shape(a)}")
        _check_finite(name, np.asarray(a, dtype=np.float64))
    _check_finite("coords", coords_tc, ch.OSIM_DOF_COLUMNS)
    if not (height_m > 0 and mass_kg > 0):
        raise GaitDataError(f"height_m and mass_kg must be positive, got {height_m} m, {mass_kg} kg")

    x_tc = np.zeros((n_t, ch.N_CHANNELS), dtype=coords_tc.dtype)
    x_tc[:, list(ch.PELVIS_VEL_IDX)] = pelvis_velocity(coords_tc[:, _PELVIS_T], fs, height_m, belt_speed_m_s)
    x_tc[:, _ONE_DOF_CH] = coords_tc[:, _ONE_DOF]
    x_tc[:, _ONE_DOF_VEL_CH] = one_dof_velocity(coords_tc[:, _ONE_DOF], fs)
    for joint, names in ch.JOINTS_3D.items():
        euler = coords_tc[:, [_COORD[n] for n in names]]
        x_tc[:, list(ch.SIX_D_IDX[joint])] = rotation.euler_zxy_to_6d(euler)
        x_tc[:, list(ch.ANGULAR_VEL_IDX[joint])] = pseudo_angular_velocity(euler, fs)
    grf = np.asarray(grf_n_per_kg, dtype=np.float64)
    normed = normed_cop(cop_m, calcn_m, grf, height_m, mass_kg)
    for k, side in enumerate("rl"):
        x_tc[:, list(ch.GRF_IDX[side])] = grf[:, k]
        x_tc[:, list(ch.COP_IDX[side])] = normed[:, k]
    return ModelStates(x_tc=x_tc, pos_vec_m=coords_tc[0, _PELVIS_T].astype(np.float64))


def model_states_to_osim(
    x_tc: np.ndarray,
    height_m: float,
    mass_kg: float,
    calcn_fn: Callable[[np.ndarray], np.ndarray],
    pos_vec_m: np.ndarray | float = 0.0,
    treadmill_speed_m_s: float = 0.0,
    fs: float = 100.0,
    released_offset: bool = False,
) -> OsimStates:
    """The 63 model channels of one trial -> OpenSim coordinates, GRF (N) and COP (m).

    Args:
        x_tc: [T, 63] un-normalised model states.
        height_m: subject height, m.
        mass_kg: body mass, kg (GRF ×mass; 20 N COP threshold).
        calcn_fn: coords [T, 23] -> calcaneus origins [T, 2, 3] (r, l), m; forward kinematics of the model.
        pos_vec_m: [3] or scalar pelvis position of frame 0, m.
        treadmill_speed_m_s: belt speed (positive, the user-tool convention), subtracted from v_x·height.
        fs: sampling rate, Hz.
        released_offset: integrate as the released code (p_0 = pos_vec + v_0/fs) instead of p_0 = pos_vec.

    Returns:
        OsimStates(coords_tc [T, 23] float64, grf_n [T, 2, 3], cop_m [T, 2, 3]); mtp angles are 0.
    """
    x_tc = np.asarray(x_tc, dtype=np.float64)
    if x_tc.ndim != 2 or x_tc.shape[1] != ch.N_CHANNELS:
        raise GaitDataError(f"model states must be [T, {ch.N_CHANNELS}], got shape {x_tc.shape}")
    n_t = x_tc.shape[0]
    coords = np.zeros((n_t, len(ch.OSIM_DOF_COLUMNS)))
    for joint, names in ch.JOINTS_3D.items():
        six_d = x_tc[:, list(ch.SIX_D_IDX[joint])]
        coords[:, [_COORD[n] for n in names]] = rotation.six_d_to_euler_zxy(six_d)
    coords[:, _ONE_DOF] = x_tc[:, _ONE_DOF_CH]
    step_m = (x_tc[:, list(ch.PELVIS_VEL_IDX)] * height_m) / fs
    step_m[:, 0] -= treadmill_speed_m_s / fs
    travelled = np.cumsum(step_m, axis=0)
    if not released_offset:
        travelled = np.concatenate([np.zeros((1, 3)), travelled[:-1]], axis=0)
    coords[:, _PELVIS_T] = travelled + np.asarray(pos_vec_m, dtype=np.float64)

    grf_n_per_kg = np.stack([x_tc[:, list(ch.GRF_IDX[s])] for s in "rl"], axis=1)
    normed = np.stack([x_tc[:, list(ch.COP_IDX[s])] for s in "rl"], axis=1)
    calcn_m = np.asarray(calcn_fn(coords), dtype=np.float64)
    if calcn_m.shape != (n_t, 2, 3):
        raise GaitDataError(f"calcn_fn must return [T={n_t}, 2, 3], got shape {calcn_m.shape}")
    cop_m = inverse_normed_cop(normed, calcn_m, grf_n_per_kg, height_m, mass_kg)
    return OsimStates(coords_tc=coords, grf_n=grf_n_per_kg * mass_kg, cop_m=cop_m)
