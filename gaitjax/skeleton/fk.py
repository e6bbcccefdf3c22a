"""Forward kinematics in JAX with OpenSim semantics: body origins, orientations and joint centres in
ground for coordinates q [..., n_coords] (rad / m); batched over leading axes, jit/vmap/grad-friendly."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from gaitjax.skeleton.tree import JointSpec, Skeleton


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["body_rot", "body_pos_m", "joint_pos_m"],
    meta_fields=["body_names", "joint_names"],
)
@dataclasses.dataclass(frozen=True)
class FkResult:
    """Poses in the ground frame.

    Attributes:
      body_rot: [..., n_bodies, 3, 3] rotation of each body frame (columns = body axes in ground).
      body_pos_m: [..., n_bodies, 3] origin of each body frame (m).
      joint_pos_m: [..., n_joints, 3] joint centre = origin of the joint's child-side frame (m).
      body_names / joint_names: names along the body / joint axes (the skeleton's order).
    """

    body_rot: jax.Array
    body_pos_m: jax.Array
    joint_pos_m: jax.Array
    body_names: tuple[str, ...]
    joint_names: tuple[str, ...]


def _axis_rotation(axis: np.ndarray, angle: jax.Array) -> jax.Array:
    """Rotation [..., 3, 3] by `angle` [...] (rad) about the unit `axis` [3] (Rodrigues)."""
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    s, c = jnp.sin(angle)[..., None, None], jnp.cos(angle)[..., None, None]
    return np.eye(3) + s * k + (1 - c) * (k @ k)


def _euler_body_fixed(angles: jax.Array, order: str) -> jax.Array:
    """Body-fixed Euler rotation [..., 3, 3] for `angles` [..., 3] applied about axes `order` (e.g. "XYZ")."""
    rot = None
    for i, name in enumerate(order):
        r = _axis_rotation(np.eye(3)["XYZ".index(name)], angles[..., i])
        rot = r if rot is None else rot @ r
    return rot


def _mv(r: jax.Array, v: jax.Array) -> jax.Array:
    return jnp.einsum("...ij,...j->...i", r, v)


def _custom_joint(joint: JointSpec, q: jax.Array, batch: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    """CustomJoint: body-fixed rotations about the rotation axes in order, then translations along the
    translation axes expressed in the parent frame F."""

    def value(ax):
        x = q[..., ax.coordinate] if ax.coordinate >= 0 else jnp.zeros(batch, q.dtype)
        return ax.function(x)

    rot = jnp.broadcast_to(jnp.eye(3, dtype=q.dtype), (*batch, 3, 3))
    for ax in joint.rotations:
        rot = rot @ _axis_rotation(ax.axis, value(ax))
    pos = jnp.zeros((*batch, 3), q.dtype)
    for ax in joint.translations:
        # An explicit dtype: jax caches the device copy of a reused numpy constant, and a copy made in
        # float32 mode would be handed to a float64 computation after `jax.enable_x64` (a runtime error).
        pos = pos + value(ax)[..., None] * jnp.asarray(ax.axis, q.dtype)
    return rot, pos


def _constant_curvature(joint: JointSpec, q: jax.Array) -> tuple[jax.Array, jax.Array]:
    """ConstantCurvatureJoint: X-Z-Y body-fixed rotation R of (q + neutral). The child origin is the end of a
    planar circular arc of length `length_m` that leaves F along +y and ends tangent to R's y axis.

    Matches OpenSim while |x|, |z| < pi/2 - 0.01 (beyond that OpenSim clamps the angles of the arc).
    """
    angles = q + jnp.asarray(joint.neutral_angles_rad, q.dtype)
    rot = _euler_body_fixed(angles, "XZY")
    tangent = rot[..., :, 1]
    sin_sq = tangent[..., 0] ** 2 + tangent[..., 2] ** 2
    small = sin_sq < 1e-12
    sin_t = jnp.sqrt(jnp.where(small, 1.0, sin_sq))
    bend = jnp.arctan2(sin_t, tangent[..., 1])
    # sin(b)/b and (1 - cos b)/(b sin b); Taylor series near b = 0 keep values and gradients finite.
    sinc = jnp.where(small, 1.0 - sin_sq / 6, jnp.sin(bend) / bend)
    lateral = jnp.where(small, 0.5 + sin_sq / 24, (1 - tangent[..., 1]) / (bend * sin_t))
    zero = jnp.zeros_like(sinc)
    pos = joint.length_m * (
        jnp.stack([zero, sinc, zero], axis=-1) + lateral[..., None] * tangent * np.array([1.0, 0.0, 1.0])
    )
    return rot, pos


def _ellipsoid(joint: JointSpec, q: jax.Array) -> tuple[jax.Array, jax.Array]:
    """EllipsoidJoint (Simbody Ellipsoid mobilizer): X-Y-Z body-fixed rotation R; the child origin is the
    ellipsoid point (a n_x, b n_y, c n_z) where n = R's z axis and (a, b, c) the radii in F."""
    rot = _euler_body_fixed(q, "XYZ")
    return rot, jnp.asarray(joint.radii_m, q.dtype) * rot[..., :, 2]


def _joint_transform(joint: JointSpec, q: jax.Array, batch: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    """Rotation [..., 3, 3] and translation [..., 3] of child joint frame M in parent joint frame F."""
    qj = q[..., list(joint.coordinates)] if joint.coordinates else None
    zero = jnp.zeros((*batch, 3), q.dtype)
    if joint.type == "CustomJoint":
        return _custom_joint(joint, q, batch)
    if joint.type == "WeldJoint":
        return jnp.broadcast_to(jnp.eye(3, dtype=q.dtype), (*batch, 3, 3)), zero
    if joint.type == "PinJoint":
        return _axis_rotation(np.array([0.0, 0.0, 1.0]), qj[..., 0]), zero
    if joint.type == "UniversalJoint":
        return _euler_body_fixed(qj, "XY"), zero
    if joint.type == "BallJoint":
        return _euler_body_fixed(qj, "XYZ"), zero
    if joint.type == "FreeJoint":
        return _euler_body_fixed(qj[..., :3], "XYZ"), qj[..., 3:]
    if joint.type == "EllipsoidJoint":
        return _ellipsoid(joint, qj)
    if joint.type == "ConstantCurvatureJoint":
        return _constant_curvature(joint, qj)
    raise ValueError(f"joint {joint.name}: unsupported type {joint.type}")


def forward_kinematics(skeleton: Skeleton, q: jax.Array) -> FkResult:
    """Pose of every body and joint centre in ground.

    Args:
      skeleton: the kinematic tree (static).
      q: [..., n_coords] coordinates in `skeleton.coordinate_names` order (rad for rotational, m for
        translational). Dependent coordinates are used as given (see `apply_couplers`).

    Returns:
      FkResult with body_rot [..., n_bodies, 3, 3], body_pos_m [..., n_bodies, 3],
      joint_pos_m [..., n_joints, 3].
    """
    q = jnp.asarray(q)
    q = q.astype(jnp.result_type(q.dtype, jnp.float32))
    if q.shape[-1] != len(skeleton.coordinate_names):
        raise ValueError(
            f"q has {q.shape[-1]} coordinates, skeleton {skeleton.name!r} has "
            f"{len(skeleton.coordinate_names)}"
        )
    batch = q.shape[:-1]
    body_rot, body_pos, joint_pos = [], [], []
    for joint in skeleton.joints:
        rot_pf = jnp.asarray(joint.rot_pf, q.dtype)
        pos_pf = jnp.asarray(joint.pos_pf_m, q.dtype)
        if joint.parent < 0:
            rot_gf = jnp.broadcast_to(rot_pf, (*batch, 3, 3))
            pos_gf = jnp.broadcast_to(pos_pf, (*batch, 3))
        else:
            rot_gf = body_rot[joint.parent] @ rot_pf
            pos_gf = body_pos[joint.parent] + _mv(body_rot[joint.parent], pos_pf)
        rot_fm, pos_fm = _joint_transform(joint, q, batch)
        rot_gm = rot_gf @ rot_fm
        pos_gm = pos_gf + _mv(rot_gf, pos_fm)
        joint_pos.append(pos_gm)
        body_rot.append(rot_gm @ jnp.asarray(joint.rot_mb, q.dtype))
        body_pos.append(pos_gm + _mv(rot_gm, jnp.asarray(joint.pos_mb_m, q.dtype)))
    return FkResult(
        body_rot=jnp.stack(body_rot, axis=-3),
        body_pos_m=jnp.stack(body_pos, axis=-2),
        joint_pos_m=jnp.stack(joint_pos, axis=-2),
        body_names=skeleton.body_names,
        joint_names=skeleton.joint_names,
    )


def body_position(result: FkResult, name: str) -> jax.Array:
    """Origin [..., 3] (m, ground) of the body called `name`."""
    if name not in result.body_names:
        raise KeyError(f"no body {name!r}; bodies are {result.body_names}")
    return result.body_pos_m[..., result.body_names.index(name), :]


def com_positions_m(skeleton: Skeleton, result: FkResult) -> jax.Array:
    """Centre of mass [..., n_bodies, 3] (m, ground) of every body."""
    com = jnp.asarray(skeleton.body_com_m, result.body_pos_m.dtype)
    return result.body_pos_m + jnp.einsum("...bij,bj->...bi", result.body_rot, com)


def whole_body_com_m(skeleton: Skeleton, result: FkResult) -> jax.Array:
    """Mass-weighted whole-body centre of mass [..., 3] (m, ground)."""
    mass = jnp.asarray(skeleton.body_mass_kg, result.body_pos_m.dtype)
    return jnp.einsum("...bi,b->...i", com_positions_m(skeleton, result), mass) / jnp.sum(mass)


def apply_couplers(skeleton: Skeleton, q: jax.Array) -> jax.Array:
    """Fill the dependent coordinates of CoordinateCouplerConstraints from their independent ones.

    Args:
      skeleton: the kinematic tree.
      q: [..., n_coords] coordinates.

    Returns:
      q [..., n_coords] with q[dependent] = scale * f(q[independent]) for each coupler, in model order.
    """
    q = jnp.asarray(q)
    for c in skeleton.couplers:
        q = q.at[..., c.dependent].set(c.scale * c.function(q[..., c.independent]))
    return q


@functools.lru_cache(maxsize=32)
def body_positions_fn(skeleton: Skeleton, bodies: tuple[str, ...]) -> Callable[[np.ndarray], np.ndarray]:
    """A jitted `q [T, n_coords] -> origins [T, len(bodies), 3]` (m, ground; couplers applied), float32.

    Cached per (skeleton, bodies), so every trial of a model shares one compilation (per frame count).

    Raises:
      KeyError: a body the skeleton lacks.
    """
    missing = [b for b in bodies if b not in skeleton.body_names]
    if missing:
        raise KeyError(f"model {skeleton.name!r} has no bodies {missing}")
    idx = np.array([skeleton.body_names.index(b) for b in bodies])
    fk = jax.jit(lambda q: forward_kinematics(skeleton, apply_couplers(skeleton, q)).body_pos_m[:, idx])
    return lambda q_tn: np.asarray(fk(np.asarray(q_tn, np.float32)), np.float64)
