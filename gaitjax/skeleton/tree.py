"""Static kinematic tree built from a parsed OpenSim model: joints in topological order from ground,
constant frame offsets as numpy arrays, coordinate functions compiled to JAX callables."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from gaitjax.data import osim
from gaitjax.data.errors import GaitDataError
from gaitjax.skeleton.functions import compile_function

SUPPORTED_JOINTS = (
    "CustomJoint",
    "WeldJoint",
    "PinJoint",
    "UniversalJoint",
    "BallJoint",
    "FreeJoint",
    "EllipsoidJoint",
    "ConstantCurvatureJoint",
)


@dataclasses.dataclass(frozen=True, eq=False)
class AxisSpec:
    """One CustomJoint transform axis: unit axis [3] in the joint's parent frame F, the coordinate index
    feeding it (-1 when the function takes no coordinate) and the compiled function."""

    axis: np.ndarray
    coordinate: int
    function: Callable


@dataclasses.dataclass(frozen=True, eq=False)
class JointSpec:
    """A joint of the tree. Frames: parent body P, joint parent frame F, joint child frame M, child body B.

    `rot_pf` [3, 3], `pos_pf_m` [3] place F in P; `rot_mb` [3, 3], `pos_mb_m` [3] place B in M (the
    inverse of the child offset). `coordinates` index into the skeleton's coordinate vector.
    """

    name: str
    type: str
    parent: int
    child: int
    rot_pf: np.ndarray
    pos_pf_m: np.ndarray
    rot_mb: np.ndarray
    pos_mb_m: np.ndarray
    coordinates: tuple[int, ...]
    rotations: tuple[AxisSpec, ...] = ()
    translations: tuple[AxisSpec, ...] = ()
    radii_m: np.ndarray | None = None
    neutral_angles_rad: np.ndarray | None = None
    length_m: float | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class CouplerSpec:
    """q[dependent] = scale * function(q[independent])."""

    dependent: int
    independent: int
    function: Callable
    scale: float


@dataclasses.dataclass(frozen=True, eq=False)
class Skeleton:
    """A kinematic tree. Body k is the child of joint k; both are in topological order from ground.

    Hashable by identity, so it can be a static argument of `jax.jit`.
    """

    name: str
    body_names: tuple[str, ...]
    joint_names: tuple[str, ...]
    coordinate_names: tuple[str, ...]
    joints: tuple[JointSpec, ...]
    couplers: tuple[CouplerSpec, ...]
    body_com_m: np.ndarray
    body_mass_kg: np.ndarray
    default_q: np.ndarray
    coordinate_range: np.ndarray
    rotational: np.ndarray

    @property
    def body_index(self) -> dict[str, int]:
        """Body name -> index into the body axis of FK outputs."""
        return {n: i for i, n in enumerate(self.body_names)}

    @property
    def joint_index(self) -> dict[str, int]:
        """Joint name -> index into the joint axis of FK outputs."""
        return {n: i for i, n in enumerate(self.joint_names)}

    @property
    def coordinate_index(self) -> dict[str, int]:
        """Coordinate name -> index into q."""
        return {n: i for i, n in enumerate(self.coordinate_names)}


def _is_constant(fn: osim.Function) -> bool:
    if isinstance(fn, osim.MultiplierFunction):
        return _is_constant(fn.function)
    return isinstance(fn, osim.Constant)


def _axis_specs(joint: osim.Joint, axes, coord_index: dict[str, int]) -> tuple[AxisSpec, ...]:
    specs = []
    for ax in axes:
        norm = np.linalg.norm(ax.axis)
        if len(ax.coordinates) > 1:
            raise GaitDataError(
                f"joint {joint.name} {ax.name}: functions of several coordinates are unsupported"
            )
        if not ax.coordinates and not _is_constant(ax.function):
            raise GaitDataError(f"joint {joint.name} {ax.name}: non-constant function without a coordinate")
        if norm == 0:
            if isinstance(ax.function, osim.Constant) and ax.function.value == 0:
                continue
            raise GaitDataError(f"joint {joint.name} {ax.name}: zero axis with a non-zero function")
        coord = coord_index[ax.coordinates[0]] if ax.coordinates else -1
        specs.append(AxisSpec(ax.axis / norm, coord, compile_function(ax.function)))
    return tuple(specs)


def build_skeleton(model: osim.OsimModel) -> Skeleton:
    """Build the kinematic tree of `model`.

    Args:
      model: a parsed OpenSim model (tree-shaped: each body is the child of exactly one joint).

    Returns:
      The Skeleton; its `coordinate_names` follow the model's coordinate order (joints in file order).

    Raises:
      GaitDataError: unsupported joint types or functions, or a model that is not a tree rooted at ground.
    """
    coord_names = tuple(model.coordinates)
    coord_index = {n: i for i, n in enumerate(coord_names)}
    bodies = {b.name: b for b in model.bodies}
    children = [j.child.body for j in model.joints]
    if len(set(children)) != len(children) or set(children) != set(bodies):
        raise GaitDataError(f"model {model.name!r}: every body must be the child of exactly one joint")
    order, placed, pending = [], {model.ground}, list(model.joints)
    while pending:
        ready = [j for j in pending if j.parent.body in placed]
        if not ready:
            raise GaitDataError(
                f"model {model.name!r}: joints {[j.name for j in pending]} do not reach ground"
            )
        for j in ready:
            order.append(j)
            placed.add(j.child.body)
            pending.remove(j)
    body_names = tuple(j.child.body for j in order)
    body_idx = {n: i for i, n in enumerate(body_names)}
    specs = []
    for j in order:
        if j.type not in SUPPORTED_JOINTS:
            raise GaitDataError(f"joint {j.name}: forward kinematics does not support {j.type}")
        rot_mc = osim.euler_xyz_to_matrix(j.child.orientation_rad)
        specs.append(
            JointSpec(
                name=j.name,
                type=j.type,
                parent=body_idx.get(j.parent.body, -1),
                child=body_idx[j.child.body],
                rot_pf=osim.euler_xyz_to_matrix(j.parent.orientation_rad),
                pos_pf_m=np.asarray(j.parent.translation_m, np.float64),
                rot_mb=rot_mc.T,
                pos_mb_m=-rot_mc.T @ j.child.translation_m,
                coordinates=tuple(coord_index[c] for c in j.coordinates),
                rotations=_axis_specs(j, j.spatial_transform[:3], coord_index),
                translations=_axis_specs(j, j.spatial_transform[3:], coord_index),
                radii_m=j.radii_m,
                neutral_angles_rad=j.neutral_angles_rad,
                length_m=j.length_m,
            )
        )
    couplers = []
    for c in model.couplers:
        if len(c.independent) != 1:
            raise GaitDataError(f"constraint {c.name}: only single-coordinate couplers are supported")
        couplers.append(
            CouplerSpec(
                coord_index[c.dependent],
                coord_index[c.independent[0]],
                compile_function(c.function),
                c.scale_factor,
            )
        )
    coords = [model.coordinates[n] for n in coord_names]
    return Skeleton(
        name=model.name,
        body_names=body_names,
        joint_names=tuple(j.name for j in order),
        coordinate_names=coord_names,
        joints=tuple(specs),
        couplers=tuple(couplers),
        body_com_m=np.stack([bodies[n].com_m for n in body_names]),
        body_mass_kg=np.array([bodies[n].mass_kg for n in body_names]),
        default_q=np.array([c.default_value for c in coords]),
        coordinate_range=np.array([c.range for c in coords], np.float64).reshape(-1, 2),
        rotational=np.array([c.motion_type == "rotational" for c in coords], bool),
    )


# Knees whose model range is mostly negative (gait2392, Hamner: -120..10 deg) bend with negative values; the
# GaitDynamics channels use the AddBiomechanics/Rajagopal convention, flexion positive (0..140 deg).
_SIGNED_KNEES = ("knee_angle_r", "knee_angle_l")


def gaitdynamics_signs(skeleton: Skeleton, names: tuple[str, ...]) -> np.ndarray:
    """+1/-1 per coordinate name: -1 for a knee whose model convention is flexion-negative.

    Decided from the model's range: a knee coordinate whose upper limit is below 0.5 rad while its lower
    limit is below -1 rad flexes negatively.
    """
    signs = np.ones(len(names))
    for k, name in enumerate(names):
        if name in _SIGNED_KNEES and name in skeleton.coordinate_index:
            lo, hi = skeleton.coordinate_range[skeleton.coordinate_index[name]]
            if hi < 0.5 and lo < -1.0:
                signs[k] = -1.0
    return signs


def gaitdynamics_to_q(skeleton: Skeleton, names: tuple[str, ...], coords_tn: np.ndarray) -> np.ndarray:
    """GaitDynamics-convention coordinates [T, len(names)] -> the model's q [T, n] (defaults elsewhere)."""
    coords_tn = np.asarray(coords_tn, np.float64) * gaitdynamics_signs(skeleton, names)
    q = np.tile(np.asarray(skeleton.default_q, np.float64), (coords_tn.shape[0], 1))
    for k, name in enumerate(names):
        if name in skeleton.coordinate_index:
            q[:, skeleton.coordinate_index[name]] = coords_tn[:, k]
    return q


def q_to_gaitdynamics(skeleton: Skeleton, names: tuple[str, ...], q_tn: np.ndarray) -> np.ndarray:
    """The model's q [T, n] -> the named coordinates [T, len(names)] in the GaitDynamics convention
    (0 for names the model lacks)."""
    out = np.zeros((np.shape(q_tn)[0], len(names)))
    for k, name in enumerate(names):
        if name in skeleton.coordinate_index:
            out[:, k] = np.asarray(q_tn)[:, skeleton.coordinate_index[name]]
    return out * gaitdynamics_signs(skeleton, names)
