"""The 63-channel representation: channel list, hand-derived pieces, and a real-trial round trip."""

from __future__ import annotations

import numpy as np
import pytest

from gaitjax.data import channels as ch
from gaitjax.data import filters, representation, rotation
from gaitjax.data.errors import GaitDataError

# Spec §1.2, written out by hand (not derived from channels.py).
SPEC_CHANNELS = [
    "pelvis_tx", "pelvis_ty", "pelvis_tz",
    "knee_angle_r", "ankle_angle_r", "subtalar_angle_r", "knee_angle_l", "ankle_angle_l", "subtalar_angle_l",
    "calcn_r_force_vx", "calcn_r_force_vy", "calcn_r_force_vz",
    "calcn_r_force_normed_cop_x", "calcn_r_force_normed_cop_y", "calcn_r_force_normed_cop_z",
    "calcn_l_force_vx", "calcn_l_force_vy", "calcn_l_force_vz",
    "calcn_l_force_normed_cop_x", "calcn_l_force_normed_cop_y", "calcn_l_force_normed_cop_z",
    "pelvis_0", "pelvis_1", "pelvis_2", "pelvis_3", "pelvis_4", "pelvis_5",
    "hip_r_0", "hip_r_1", "hip_r_2", "hip_r_3", "hip_r_4", "hip_r_5",
    "hip_l_0", "hip_l_1", "hip_l_2", "hip_l_3", "hip_l_4", "hip_l_5",
    "lumbar_0", "lumbar_1", "lumbar_2", "lumbar_3", "lumbar_4", "lumbar_5",
    "pelvis_x_angular_vel", "pelvis_y_angular_vel", "pelvis_z_angular_vel",
    "hip_r_x_angular_vel", "hip_r_y_angular_vel", "hip_r_z_angular_vel",
    "hip_l_x_angular_vel", "hip_l_y_angular_vel", "hip_l_z_angular_vel",
    "lumbar_x_angular_vel", "lumbar_y_angular_vel", "lumbar_z_angular_vel",
    "knee_angle_r_vel", "ankle_angle_r_vel", "subtalar_angle_r_vel",
    "knee_angle_l_vel", "ankle_angle_l_vel", "subtalar_angle_l_vel",
]  # fmt: skip

HEIGHT_M = 1.772  # Hamner 2013 subject04, _subject.json
MASS_KG = 80.47


def test_channel_list_equals_spec_table():
    assert list(ch.MODEL_CHANNELS) == SPEC_CHANNELS


def test_spline_derivative_is_exact_on_a_cubic():
    u = np.arange(30.0)
    x = 0.5 * u**3 - 2 * u**2 + u - 4
    np.testing.assert_allclose(filters.spline_derivative(x), 1.5 * u**2 - 4 * u + 1, atol=1e-9)


def test_lowpass_keeps_dc_and_removes_40hz():
    t = np.arange(300) / 100
    x = 2.0 + np.sin(2 * np.pi * 40 * t)
    y = filters.lowpass(x, 15, 100)
    assert np.abs(y[30:-30] - 2.0).max() < 1e-3


def test_lowpass_too_short_raises_clear_error():
    with pytest.raises(GaitDataError, match="needs more than 15"):
        filters.lowpass(np.zeros(15), 15, 100)


def test_pseudo_angular_velocity_pure_z_hand_formula():
    # q0 = w·t: D = Rz(q_t) − Rz(q_t+1); D10 − D01 = 2(sin q_t − sin q_t+1), so ω_z = fs(sin q_t − sin q_t+1).
    fs, w = 100.0, 3.0
    q0 = w * np.arange(50) / fs
    euler = np.stack([q0, np.zeros(50), np.zeros(50)], axis=1)
    omega = representation.pseudo_angular_velocity(euler, fs, cutoff_hz=None)
    expected_z = fs * (np.sin(q0[:-1]) - np.sin(q0[1:]))
    np.testing.assert_allclose(omega[:-1, 2], expected_z, atol=1e-12)
    assert omega[-1, 2] == omega[-2, 2]  # last row copied
    np.testing.assert_allclose(omega[:, :2], 0.0, atol=1e-12)
    assert omega[0, 2] == pytest.approx(-w, rel=1e-3)  # about −ω near R = I


def test_normed_cop_hand_values_and_threshold():
    calcn = np.array([[[1.0, 0.0, 0.2], [0.0, 0.0, -0.2]]])
    cop = calcn + np.array([[[0.1, 0.0, 0.05], [0.1, 0.0, 0.05]]])
    grf = np.array([[[0.0, 10.0, 0.0], [0.0, 0.2, 0.0]]])  # left: 0.2 N/kg · 70 kg = 14 N < 20 N
    normed = representation.normed_cop(cop, calcn, grf, height_m=2.0, mass_kg=70.0)
    np.testing.assert_allclose(normed[0, 0], [0.5, 0.0, 0.25])
    np.testing.assert_array_equal(normed[0, 1], 0.0)
    back = representation.inverse_normed_cop(normed, calcn, grf, 2.0, 70.0)
    np.testing.assert_allclose(back[0, 0], cop[0, 0])
    np.testing.assert_array_equal(back[0, 1], 0.0)


def test_inverse_normed_cop_zero_force_gives_zero_not_nan():
    normed = np.ones((1, 2, 3))
    back = representation.inverse_normed_cop(normed, np.ones((1, 2, 3)), np.zeros((1, 2, 3)), 1.8, 70.0)
    np.testing.assert_array_equal(back, 0.0)


def test_pelvis_velocity_ramp_and_belt_term():
    t = np.arange(300) / 100
    pos = np.stack([1.2 * t + 0.3, np.ones_like(t), -0.1 * t], axis=1)
    vel = representation.pelvis_velocity(pos, 100, 1.8, belt_speed_m_s=-2.0)
    expected = np.array([(1.2 + 2.0) / 1.8, 0.0, -0.1 / 1.8])
    # filtfilt's start-up transient (its initial state assumes a constant) leaves ~1e-2 at the very ends.
    assert np.abs(vel[50:-50] - expected).max() < 1e-6
    assert np.abs(vel - expected).max() < 2e-2


def test_released_offset_integrates_one_sample_ahead():
    x = np.zeros((5, 63))
    x[:, ch.CHANNEL_INDEX["pelvis_tx"]] = 1.0  # 1 height/s
    for j in ch.JOINTS_3D:
        x[:, list(ch.SIX_D_IDX[j])] = [1, 0, 0, 0, 1, 0]
    zero_calcn = lambda q: np.zeros((q.shape[0], 2, 3))
    pos0 = np.array([0.5, 1.0, 0.0])
    ours = representation.model_states_to_osim(x, 2.0, 70.0, zero_calcn, pos_vec_m=pos0)
    released = representation.model_states_to_osim(
        x, 2.0, 70.0, zero_calcn, pos_vec_m=pos0, released_offset=True
    )
    # 1 height/s × 2 m / 100 Hz = 0.02 m per frame.
    np.testing.assert_allclose(ours.coords_tc[:, 3], 0.5 + 0.02 * np.arange(5))
    np.testing.assert_allclose(released.coords_tc[:, 3], 0.5 + 0.02 * np.arange(1, 6))


def test_bad_input_names_the_column():
    coords = np.zeros((40, 23))
    coords[7, ch.OSIM_DOF_COLUMNS.index("knee_angle_l")] = np.nan
    z = np.zeros((40, 2, 3))
    with pytest.raises(GaitDataError, match="knee_angle_l"):
        representation.osim_to_model_states(coords, z, z, z, 1.8, 70.0)
    with pytest.raises(GaitDataError, match=r"\[T, 23\]"):
        representation.osim_to_model_states(np.zeros((40, 22)), z, z, z, 1.8, 70.0)


# ---- real trial round trip ---------------------------------------------------------------------------


def _read_mot(path):
    lines = path.read_text().splitlines()
    end = next(i for i, line in enumerate(lines) if line.strip().lower() == "endheader")
    names = lines[end + 1].split()
    data = np.array([[float(v) for v in line.split()] for line in lines[end + 2 :] if line.strip()])
    return names, data


def _stand_in_calcn(coords_tc):
    """A toy FK: heel = pelvis + R_pelvis·R_hip·(0, −0.9, ±0.09) m (depends on the pose like real FK)."""
    idx = {n: i for i, n in enumerate(ch.OSIM_DOF_COLUMNS)}
    r_pelvis = rotation.euler_zxy_to_matrix(coords_tc[:, [idx[n] for n in ch.JOINTS_3D["pelvis"]]])
    out = []
    for side, lateral in (("r", 0.09), ("l", -0.09)):
        r_hip = rotation.euler_zxy_to_matrix(coords_tc[:, [idx[n] for n in ch.JOINTS_3D[f"hip_{side}"]]])
        out.append(coords_tc[:, 3:6] + (r_pelvis @ r_hip @ np.array([0.0, -0.9, lateral]))[:, :])
    return np.stack(out, axis=1)


@pytest.fixture(scope="module")
def hamner_trial(real_data):
    folder = real_data / "run_hamner2013_subject04"
    ik_names, ik = _read_mot(folder / "run300_ik.mot")
    grf_names, grf = _read_mot(folder / "run300_grf.mot")
    coords = ik[:, [ik_names.index(c) for c in ch.OSIM_DOF_COLUMNS]]
    np.testing.assert_allclose(ik[:, 0], grf[:, 0])  # same 100 Hz time base

    def per_foot(q):  # right = ground_force_1_*, left = ground_force_2_* (SOURCES.md)
        cols = [[grf_names.index(f"ground_force_{k}_{q}{a}") for a in "xyz"] for k in (1, 2)]
        return np.stack([grf[:, c] for c in cols], axis=1)

    force_n, cop_m = per_foot("v"), per_foot("p")
    return coords, force_n, cop_m


def test_real_trial_round_trip(hamner_trial):
    coords, force_n, cop_m = hamner_trial
    grf_n_per_kg = force_n / MASS_KG
    states = representation.osim_to_model_states(
        coords, grf_n_per_kg, cop_m, _stand_in_calcn(coords), HEIGHT_M, MASS_KG, belt_speed_m_s=-3.0
    )
    assert states.x_tc.shape == (coords.shape[0], 63) and states.x_tc.dtype == np.float64
    back = representation.model_states_to_osim(
        states.x_tc, HEIGHT_M, MASS_KG, _stand_in_calcn, pos_vec_m=states.pos_vec_m, treadmill_speed_m_s=3.0
    )
    rot_cols = [i for i, n in enumerate(ch.OSIM_DOF_COLUMNS) if n not in ch.TRANSLATION_COLUMNS]
    mtp = [ch.OSIM_DOF_COLUMNS.index(c) for c in ch.FROZEN_DOFS]
    kept = [i for i in rot_cols if i not in mtp]
    # Angles go through 6D and back: floating-point exact up to ~1e-15 rad.
    assert np.abs(back.coords_tc[:, kept] - coords[:, kept]).max() < 1e-12
    np.testing.assert_array_equal(back.coords_tc[:, mtp], 0.0)
    # Pelvis position: the re-integrated 10 Hz-filtered velocity telescopes to p_t = p_0 + pf_t − pf_0, so the
    # error is the filter's deviation at t minus that at frame 0. A 4th-order 10 Hz zero-phase filter passes
    # the ~2.7 Hz running oscillation and its harmonics with gain 1 − (f/10)^8 (< 1 %, sub-mm here); the
    # rest is filtfilt's start-up transient in the first/last frames and IK noise above 10 Hz. Measured
    # 1.5 mm (vertical, frame 2); ≤ 2 mm is allowed. (The released off-by-one alone gives ~1 cm.)
    pos_err = np.abs(back.coords_tc[:, 3:6] - coords[:, 3:6])
    assert pos_err[0].max() == 0.0
    assert pos_err.max() < 2e-3
    # GRF: N/kg and back, exact up to rounding.
    np.testing.assert_allclose(back.grf_n, force_n, atol=1e-9)
    # COP: exact where the force is ≥ 20 N except for the heel moving with the ≤ 2 mm position error;
    # zero elsewhere.
    loaded = force_n[..., 1] >= 20.0
    assert np.abs(back.cop_m - cop_m)[loaded].max() < 2e-3
    np.testing.assert_array_equal(back.cop_m[~loaded], 0.0)


def test_real_trial_float32_keeps_dtype(hamner_trial):
    coords, force_n, cop_m = hamner_trial
    calcn = _stand_in_calcn(coords)
    x64 = representation.osim_to_model_states(coords, force_n / MASS_KG, cop_m, calcn, HEIGHT_M, MASS_KG).x_tc
    x32 = representation.osim_to_model_states(
        coords.astype(np.float32), force_n / MASS_KG, cop_m, calcn, HEIGHT_M, MASS_KG
    ).x_tc
    assert x32.dtype == np.float32
    assert np.abs(x32 - x64).max() < 1e-4
