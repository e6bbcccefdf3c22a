"""ZXY Euler angles <-> rotation matrices <-> the 6D representation, as the released code computes them.

All functions are batched over leading axes and keep the input's floating dtype (float32 in, float32 out).
"""

from __future__ import annotations

import numpy as np

# torch.nn.functional.normalize's default eps: v / max(||v||, eps).
_NORMALIZE_EPS = 1e-12


def _float_array(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)


def axis_rotation(axis: str, angle_rad: np.ndarray) -> np.ndarray:
    """Right-handed elementary rotation about one axis.

    Args:
        axis: "X", "Y" or "Z".
        angle_rad: angles, any shape [...].

    Returns:
        [..., 3, 3] matrices, e.g. Rz = [[c, -s, 0], [s, c, 0], [0, 0, 1]].
    """
    angle_rad = _float_array(angle_rad)
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    one, zero = np.ones_like(angle_rad), np.zeros_like(angle_rad)
    if axis == "X":
        rows = ((one, zero, zero), (zero, c, -s), (zero, s, c))
    elif axis == "Y":
        rows = ((c, zero, s), (zero, one, zero), (-s, zero, c))
    elif axis == "Z":
        rows = ((c, -s, zero), (s, c, zero), (zero, zero, one))
    else:
        raise ValueError(f"axis must be 'X', 'Y' or 'Z', got {axis!r}")
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def euler_zxy_to_matrix(euler_zxy_rad: np.ndarray) -> np.ndarray:
    """R = Rz(q0) · Rx(q1) · Ry(q2) (pytorch3d `euler_angles_to_matrix(q, "ZXY")`).

    Args:
        euler_zxy_rad: [..., 3] angles (q0 about Z, q1 about X, q2 about Y), radians.

    Returns:
        [..., 3, 3] rotation matrices.
    """
    q = _float_array(euler_zxy_rad)
    rz, rx, ry = axis_rotation("Z", q[..., 0]), axis_rotation("X", q[..., 1]), axis_rotation("Y", q[..., 2])
    return (rz @ rx) @ ry


def matrix_to_6d(r: np.ndarray) -> np.ndarray:
    """The first two rows of R, flattened row-major: [R00, R01, R02, R10, R11, R12].

    Args:
        r: [..., 3, 3] rotation matrices.

    Returns:
        [..., 6].
    """
    r = np.asarray(r)
    return r[..., :2, :].reshape(*r.shape[:-2], 6)


def _normalize(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(norm, _NORMALIZE_EPS)


def six_d_to_matrix(six_d: np.ndarray) -> np.ndarray:
    """Gram–Schmidt on the two stored rows; the third row is b1 × b2 (pytorch3d `rotation_6d_to_matrix`).

    Args:
        six_d: [..., 6] (need not be exactly orthonormal, e.g. a model output).

    Returns:
        [..., 3, 3] rotation matrices with rows b1, b2, b3.
    """
    six_d = _float_array(six_d)
    a1, a2 = six_d[..., :3], six_d[..., 3:]
    b1 = _normalize(a1)
    b2 = _normalize(a2 - np.sum(b1 * a2, axis=-1, keepdims=True) * b1)
    b3 = np.cross(b1, b2)
    return np.stack([b1, b2, b3], axis=-2)


def matrix_to_euler_zxy(r: np.ndarray) -> np.ndarray:
    """Inverse of `euler_zxy_to_matrix`: q1 = asin(R21), q0 = atan2(−R01, R11), q2 = atan2(−R20, R22).

    R21 is clipped to [-1, 1] before the arcsine; this only changes inputs for which the released code
    returns NaN (|R21| above 1 by rounding).

    Args:
        r: [..., 3, 3] rotation matrices.

    Returns:
        [..., 3] angles (q0, q1, q2) in radians, q1 in [-pi/2, pi/2].
    """
    r = _float_array(r)
    q1 = np.arcsin(np.clip(r[..., 2, 1], -1.0, 1.0))
    q0 = np.arctan2(-r[..., 0, 1], r[..., 1, 1])
    q2 = np.arctan2(-r[..., 2, 0], r[..., 2, 2])
    return np.stack([q0, q1, q2], axis=-1)


def euler_zxy_to_6d(euler_zxy_rad: np.ndarray) -> np.ndarray:
    """[..., 3] ZXY Euler angles (rad) -> [..., 6] (`euler_to_6v(q, "ZXY")`)."""
    return matrix_to_6d(euler_zxy_to_matrix(euler_zxy_rad))


def six_d_to_euler_zxy(six_d: np.ndarray) -> np.ndarray:
    """[..., 6] -> [..., 3] ZXY Euler angles in radians (`euler_from_6v(x, "ZXY")`)."""
    return matrix_to_euler_zxy(six_d_to_matrix(six_d))
