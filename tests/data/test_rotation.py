"""ZXY Euler <-> matrix <-> 6D against hand-derived matrices and round trips."""

from __future__ import annotations

import numpy as np
import pytest

from gaitjax.data import rotation


def _rz(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def _rx(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1.0, 0], [-s, 0, c]])


def test_pure_z_rotation_matrix_and_6d():
    a = 0.7
    r = rotation.euler_zxy_to_matrix(np.array([a, 0.0, 0.0]))
    c, s = np.cos(a), np.sin(a)
    np.testing.assert_allclose(r, [[c, -s, 0], [s, c, 0], [0, 0, 1]], atol=1e-15)
    six_d = rotation.euler_zxy_to_6d(np.array([a, 0.0, 0.0]))
    np.testing.assert_allclose(six_d, [c, -s, 0, s, c, 0], atol=1e-15)


def test_quarter_turns_fix_the_order_z_then_x():
    # Rz(90°)·Rx(90°), multiplied out by hand; Rx·Rz would give [[0,-1,0],[0,0,-1],[1,0,0]].
    r = rotation.euler_zxy_to_matrix(np.array([np.pi / 2, np.pi / 2, 0.0]))
    np.testing.assert_allclose(r, [[0, 0, 1], [1, 0, 0], [0, 1, 0]], atol=1e-15)


def test_composition_matches_elementary_matrices():
    q = np.array([0.3, -0.4, 1.1])
    np.testing.assert_allclose(rotation.euler_zxy_to_matrix(q), _rz(q[0]) @ _rx(q[1]) @ _ry(q[2]), atol=1e-15)
    np.testing.assert_allclose(rotation.axis_rotation("Y", 0.5), _ry(0.5), atol=1e-15)


def test_matrix_is_a_rotation_and_batched():
    q = np.random.default_rng(0).uniform(-3, 3, size=(4, 5, 3))
    r = rotation.euler_zxy_to_matrix(q)
    assert r.shape == (4, 5, 3, 3)
    np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), r.shape), atol=1e-14)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-14)


@pytest.mark.parametrize(
    "low, high",
    [
        # the whole Euler domain up to 1e-3 rad from gimbal lock
        ((-np.pi, -np.pi / 2 + 1e-3, -np.pi), (np.pi, np.pi / 2 - 1e-3, np.pi)),
        # hip-like coordinate ranges (flexion -30..120°, adduction -50..30°, rotation -40..40°)
        (np.radians([-30, -50, -40]), np.radians([120, 30, 40])),
    ],
)
def test_euler_6d_round_trip_within_1e6(low, high):
    q = np.random.default_rng(1).uniform(low, high, size=(20000, 3))
    back = rotation.six_d_to_euler_zxy(rotation.euler_zxy_to_6d(q))
    assert np.abs(back - q).max() < 1e-6


def test_six_d_gram_schmidt_hand_case():
    # a1 = (2,0,0) normalises to x; a2 = (1,3,0) loses its x part and normalises to y; b3 = x × y = z.
    r = rotation.six_d_to_matrix(np.array([2.0, 0, 0, 1, 3, 0]))
    np.testing.assert_allclose(r, np.eye(3), atol=1e-15)


def test_six_d_zero_vector_does_not_divide_by_zero():
    r = rotation.six_d_to_matrix(np.zeros(6))
    assert np.all(np.isfinite(r))


def test_float32_stays_float32():
    q = np.array([[0.1, 0.2, 0.3]], dtype=np.float32)
    assert rotation.euler_zxy_to_6d(q).dtype == np.float32
    assert rotation.six_d_to_euler_zxy(rotation.euler_zxy_to_6d(q)).dtype == np.float32


def test_asin_argument_rounded_above_one_gives_quarter_turn_not_nan():
    r = rotation.euler_zxy_to_matrix(np.array([0.0, np.pi / 2, 0.0]))
    r[2, 1] = 1.0 + 1e-15
    q = rotation.matrix_to_euler_zxy(r)
    assert np.isfinite(q).all() and q[1] == pytest.approx(np.pi / 2)
