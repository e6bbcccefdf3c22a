"""Resampling, yaw alignment and belt-speed estimation against hand-derived values."""

from __future__ import annotations

import numpy as np
import pytest

from gaitjax.data import preprocess, rotation
from gaitjax.data.errors import GaitDataError


def test_resample_keeps_the_final_sample_and_is_exact_on_a_line():
    # 120 Hz over exactly 1 s: the released arange(0, 1, 1/100) stops at 0.99 s and drops t = 1.0.
    t = np.arange(121) / 120
    values = np.stack([3 * t + 1, -t], axis=1)
    new_t, new_v = preprocess.resample_to_100hz(t, values)
    assert new_t.shape == (101,) and new_t[-1] == pytest.approx(1.0)
    np.testing.assert_allclose(new_t, np.arange(101) / 100, atol=1e-12)
    np.testing.assert_allclose(new_v, np.stack([3 * new_t + 1, -new_t], axis=1), atol=1e-12)


def test_resample_starts_at_t0_and_stops_before_t_end():
    t = 0.52 + np.arange(50) / 60  # ends at 0.52 + 49/60 = 1.33667 s
    new_t, _ = preprocess.resample_to_100hz(t, np.zeros(50))
    assert new_t[0] == 0.52 and new_t[-1] == pytest.approx(1.33) and new_t.shape == (82,)


def test_resample_flags_any_fraction_is_missing():
    t = np.arange(5) / 50  # 50 Hz: a flag at sample 2 (t = 0.04) touches 100 Hz frames 3, 4, 5
    flags = np.array([False, False, True, False, False])
    _, out = preprocess.resample_to_100hz(t, flags)
    np.testing.assert_array_equal(out, [False, False, False, True, True, True, False, False, False])


def test_resample_on_grid_is_identity_and_does_not_smear_flags():
    t = 0.52 + np.arange(30) * 0.01  # as a .mot stores it: not bit-equal to t0 + k/100
    flags = np.zeros(30, dtype=bool)
    flags[10] = True
    new_t, out = preprocess.resample_to_100hz(t, flags)
    np.testing.assert_array_equal(out, flags)
    x = np.random.default_rng(0).normal(size=(30, 4))
    np.testing.assert_allclose(preprocess.resample_to_100hz(t, x)[1], x, atol=1e-12)


def test_resample_bad_time_raises():
    with pytest.raises(GaitDataError, match="strictly increasing"):
        preprocess.resample_to_100hz(np.array([0.0, 0.01, 0.01, 0.03]), np.zeros(4))
    with pytest.raises(GaitDataError, match="2 samples"):
        preprocess.resample_to_100hz(np.array([0.0]), np.zeros(1))


def test_yaw_alignment_of_a_pure_heading():
    r = 0.3  # pelvis_rotation about vertical: the heading atan2(−sin r, cos r) is −r
    euler = np.tile([0.0, 0.0, r], (20, 1))
    m, heading_range = preprocess.yaw_alignment(euler)
    np.testing.assert_allclose(m, [[np.cos(-r), 0, np.sin(-r)], [0, 1, 0], [-np.sin(-r), 0, np.cos(-r)]])
    assert heading_range == pytest.approx(0.0, abs=1e-12)
    # The pelvis x axis (cos r, 0, −sin r), e.g. a forward force, becomes the ground x axis.
    forward = np.tile([np.cos(r), 0.0, -np.sin(r)], (20, 2, 1))
    aligned_euler, _, grf, _ = preprocess.apply_yaw(m, euler, grf_n_per_kg=forward)
    np.testing.assert_allclose(aligned_euler, 0.0, atol=1e-12)
    np.testing.assert_allclose(grf, np.tile([1.0, 0.0, 0.0], (20, 2, 1)), atol=1e-12)


def test_heading_is_unwrapped_across_180_degrees():
    # Facing backwards, wobbling ±0.1 rad: raw atan2 jumps between ±π (released range ≈ 2π, spurious reject).
    wobble = 0.1 * np.sin(np.linspace(0, 4 * np.pi, 200))
    euler = np.stack([np.zeros(200), np.zeros(200), np.pi + wobble], axis=1)
    m, heading_range = preprocess.yaw_alignment(euler)
    assert heading_range == pytest.approx(wobble.max() - wobble.min(), abs=1e-9)
    aligned, *_ = preprocess.apply_yaw(m, euler)
    assert np.abs(aligned[:, 2]).max() < 0.1 + 1e-9


def test_apply_yaw_inverse_round_trip():
    rng = np.random.default_rng(2)
    euler = rng.uniform(-0.5, 0.5, size=(30, 3)) + [0, 0, 1.0]
    pos, grf, cop = rng.normal(size=(30, 3)), rng.normal(size=(30, 2, 3)), rng.normal(size=(30, 2, 3))
    m, _ = preprocess.yaw_alignment(euler)
    aligned = preprocess.apply_yaw(m, euler, pos, grf, cop)
    back = preprocess.apply_yaw(m.T, *aligned)
    for a, b in zip(back, (euler, pos, grf, cop), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-12)
    np.testing.assert_allclose(aligned[1][:, 1], pos[:, 1])  # vertical untouched
    # Orientation consistency: the aligned Euler angles encode M·R.
    np.testing.assert_allclose(
        rotation.euler_zxy_to_matrix(aligned[0]), m @ rotation.euler_zxy_to_matrix(euler), atol=1e-12
    )


def _treadmill_toes(belt_m_s=-2.5, fs=100.0, n=400):
    """Each toe slides back at the belt speed for 0.3 s of stance, then swings forward (feet 0.35 s apart)."""
    t = np.arange(n) / fs
    period, stance = 0.7, 0.3
    toes, vy = [], []
    for offset in (0.0, 0.35):
        phase = (t + offset) % period
        in_stance = phase < stance
        # swing brings the toe back to where stance started: a smooth cosine ramp
        swing = (phase - stance) / (period - stance)
        x = np.where(in_stance, belt_m_s * phase, belt_m_s * stance * (0.5 + 0.5 * np.cos(np.pi * swing)))
        toes.append(np.stack([x, np.zeros(n), np.zeros(n)], axis=1))
        mid = in_stance & (phase > 0.1) & (phase < stance - 0.1)  # > 40 % BW only in mid-stance
        vy.append(np.where(mid, 15.0, np.where(in_stance, 2.0, 0.0)))
    return toes[0], toes[1], np.stack(vy, axis=1)


def test_belt_speed_from_stance_toes():
    toe_r, toe_l, vy = _treadmill_toes()
    avg = preprocess.estimate_belt_speed(toe_r, toe_l, vy, 100.0)
    # Mid-stance toe velocity is the belt velocity. The synthetic toe's velocity steps by 2.5 m/s at the
    # stance edges and the 10 Hz filter rings for ~10 frames after it (measured 0.064 m/s, 2.5 % of it).
    assert np.abs(avg - (-2.5)).max() < 0.1
    overground = preprocess.estimate_belt_speed(toe_r, toe_l, vy, 100.0, treadmill=False)
    np.testing.assert_array_equal(overground, 0.0)


def test_belt_speed_one_foot_fills_the_other_and_no_stance_is_zero():
    toe_r, toe_l, vy = _treadmill_toes()
    only_r = vy.copy()
    only_r[:, 1] = 0.0
    both = preprocess.estimate_belt_speed(toe_r, toe_l, only_r, 100.0)
    right = preprocess.estimate_belt_speed(toe_r, toe_r, np.stack([vy[:, 0], vy[:, 0]], 1), 100.0)
    np.testing.assert_allclose(both, right)
    np.testing.assert_array_equal(preprocess.estimate_belt_speed(toe_r, toe_l, np.zeros_like(vy), 100.0), 0.0)


def test_belt_speed_overground_is_about_zero():
    toe_r, toe_l, vy = _treadmill_toes(belt_m_s=0.0)
    assert np.abs(preprocess.estimate_belt_speed(toe_r, toe_l, vy, 100.0)).max() < 1e-12
