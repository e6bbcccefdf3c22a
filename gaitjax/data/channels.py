"""The GaitDynamics 63-channel window: channel names, order, groups and the OpenSim-side columns.

Every other module takes its channel indices from here. Order and names follow the released code
(spec §1.2: `args.py:parse_opt` with with_arm=False, with_kinematics_vel=True).

Units of the model channels (before min-max normalisation):
- pelvis_tx/ty/tz: pelvis velocity divided by subject height (heights per second), yaw-aligned ground frame.
- knee/ankle/subtalar angles: rad (unfiltered).
- calcn_{r,l}_force_v{x,y,z}: ground reaction force in N/kg, yaw-aligned ground frame.
- calcn_{r,l}_force_normed_cop_{x,y,z}: (COP - calcn origin) [m] * F_vy [N/kg] / height [m].
- {pelvis,hip_r,hip_l,lumbar}_{0..5}: first two rows of R = Rz(q0) Rx(q1) Ry(q2), row-major.
- {joint}_{x,y,z}_angular_vel: the released code's pseudo angular velocity (about -omega), filtered.
- {1-DoF}_vel: rad per frame (rad/s / 100).
"""

from __future__ import annotations

WINDOW_LEN = 150
TARGET_RATE_HZ = 100

# The 23 OpenSim coordinates of the no-arm model, in the released code's order (`opt.osim_dof_columns[:23]`).
OSIM_DOF_COLUMNS: tuple[str, ...] = (
    "pelvis_tilt", "pelvis_list", "pelvis_rotation", "pelvis_tx", "pelvis_ty", "pelvis_tz",
    "hip_flexion_r", "hip_adduction_r", "hip_rotation_r", "knee_angle_r", "ankle_angle_r",
    "subtalar_angle_r", "mtp_angle_r",
    "hip_flexion_l", "hip_adduction_l", "hip_rotation_l", "knee_angle_l", "ankle_angle_l",
    "subtalar_angle_l", "mtp_angle_l",
    "lumbar_extension", "lumbar_bending", "lumbar_rotation",
)  # fmt: skip

# Coordinates that are translations (metres); every other coordinate above is an angle (radians).
TRANSLATION_COLUMNS: tuple[str, ...] = ("pelvis_tx", "pelvis_ty", "pelvis_tz")

# Frozen DoFs: dropped from the window, restored as zeros on inversion (spec §1.2).
FROZEN_DOFS: tuple[str, ...] = ("mtp_angle_r", "mtp_angle_l")

# 3-DoF joints, in window order, with their (Z, X, Y) Euler coordinates (spec §1.3, convention "ZXY").
JOINTS_3D: dict[str, tuple[str, str, str]] = {
    "pelvis": ("pelvis_tilt", "pelvis_list", "pelvis_rotation"),
    "hip_r": ("hip_flexion_r", "hip_adduction_r", "hip_rotation_r"),
    "hip_l": ("hip_flexion_l", "hip_adduction_l", "hip_rotation_l"),
    "lumbar": ("lumbar_extension", "lumbar_bending", "lumbar_rotation"),
}

# 1-DoF coordinates that are window channels (angles and their `_vel`).
ONE_DOF_COLUMNS: tuple[str, ...] = (
    "knee_angle_r", "ankle_angle_r", "subtalar_angle_r",
    "knee_angle_l", "ankle_angle_l", "subtalar_angle_l",
)  # fmt: skip

# Kinetic columns on the OpenSim side (`KINETICS_ALL`): force in N/kg, COP in m (ground frame).
KINETIC_OSIM_COLUMNS: tuple[str, ...] = tuple(
    f"calcn_{side}_force_{q}"
    for side in ("r", "l")
    for q in ("vx", "vy", "vz", "normed_cop_x", "normed_cop_y", "normed_cop_z")
)

# The 35 OpenSim-side columns: 23 coordinates then 12 kinetic columns (`opt.osim_dof_columns`).
OSIM_STATE_COLUMNS: tuple[str, ...] = OSIM_DOF_COLUMNS + KINETIC_OSIM_COLUMNS


def _model_channels() -> tuple[str, ...]:
    names = ["pelvis_tx", "pelvis_ty", "pelvis_tz", *ONE_DOF_COLUMNS, *KINETIC_OSIM_COLUMNS]
    for joint in JOINTS_3D:
        names += [f"{joint}_{i}" for i in range(6)]
    for joint in JOINTS_3D:
        names += [f"{joint}_{axis}_angular_vel" for axis in "xyz"]
    names += [f"{c}_vel" for c in ONE_DOF_COLUMNS]
    return tuple(names)


MODEL_CHANNELS: tuple[str, ...] = _model_channels()
N_CHANNELS = len(MODEL_CHANNELS)  # 63
CHANNEL_INDEX: dict[str, int] = {name: i for i, name in enumerate(MODEL_CHANNELS)}

KINETIC_IDX: tuple[int, ...] = tuple(i for i, n in enumerate(MODEL_CHANNELS) if "force" in n)  # 9..20
KINEMATIC_IDX: tuple[int, ...] = tuple(i for i, n in enumerate(MODEL_CHANNELS) if "force" not in n)
GRF_IDX = {side: tuple(CHANNEL_INDEX[f"calcn_{side}_force_v{a}"] for a in "xyz") for side in "rl"}
COP_IDX = {side: tuple(CHANNEL_INDEX[f"calcn_{side}_force_normed_cop_{a}"] for a in "xyz") for side in "rl"}
SIX_D_IDX = {j: tuple(CHANNEL_INDEX[f"{j}_{i}"] for i in range(6)) for j in JOINTS_3D}
ANGULAR_VEL_IDX = {j: tuple(CHANNEL_INDEX[f"{j}_{a}_angular_vel"] for a in "xyz") for j in JOINTS_3D}
PELVIS_VEL_IDX: tuple[int, ...] = (0, 1, 2)

# Named body parts for partial-kinematics masks (spec §4.3): the kinematic channels each one hides.
BODY_PART_CHANNELS: dict[str, tuple[int, ...]] = {
    "trunk": tuple(i for i, n in enumerate(MODEL_CHANNELS) if "lumbar" in n),
    "pelvis": tuple(i for i, n in enumerate(MODEL_CHANNELS) if "pelvis" in n),
    "hips": tuple(i for i, n in enumerate(MODEL_CHANNELS) if "hip" in n),
    "knees": tuple(i for i, n in enumerate(MODEL_CHANNELS) if "knee" in n),
    "ankles": tuple(i for i, n in enumerate(MODEL_CHANNELS) if "ankle" in n or "subtalar" in n),
}

assert N_CHANNELS == 63 and len(KINETIC_IDX) == 12 and len(KINEMATIC_IDX) == 51
