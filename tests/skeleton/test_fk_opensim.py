"""Our parser and forward kinematics against OpenSim 4.6 itself, on every real model, the Rajagopal2015
model of the nimblephysics wheel, the model embedded in the .b3d, and a synthetic model with every joint
and function type we support."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np
import pytest

from gaitjax.data import osim
from gaitjax.skeleton.fk import apply_couplers, forward_kinematics
from gaitjax.skeleton.tree import build_skeleton

opensim = pytest.importorskip("opensim")


@pytest.fixture(autouse=True)
def _float64():
    # FK is compared to OpenSim at round-off level, so these tests run in float64 -- scoped to this
    # module, since a global switch at import would silently make every other test run in float64 too.
    with jax.enable_x64(True):
        yield


POS_TOL_M = 1e-9  # the issue asks for 1e-5 m; we match to round-off
ROT_TOL = 1e-9
N_FRAMES = 10
N_RANDOM = 10

# (id, model path relative to the real-data folder, own IK .mot or None)
REAL_MODELS = [
    (
        "gait2392",
        "walk_gait2392_subject01/subject01_simbody.osim",
        "walk_gait2392_subject01/subject01_walk1_ik.mot",
    ),
    (
        "gait10dof18musc",
        "walk_gait2392_subject01/planar_gait10dof/subject01_gait10dof18musc.osim",
        "walk_gait2392_subject01/planar_gait10dof/subject01_walk_IK.mot",
    ),
    ("rajagopal2016_generic", "walk_rajagopal2016/Rajagopal2016.osim", None),
    (
        "rajagopal2016_addb",
        "walk_rajagopal2016/addbiomechanics/final.osim",
        "walk_rajagopal2016/addbiomechanics/walk_ik.mot",
    ),
    (
        "hamner2010",
        "run_hamner2010_subject02/subject02_registered.osim",
        "run_hamner2010_subject02/subject02_running_ik.mot",
    ),
    ("hamner2013", "run_hamner2013_subject04/final.osim", "run_hamner2013_subject04/run200_ik.mot"),
    (
        "opencap",
        "walk_opencap_subject4/optimized_scale_and_markers.osim",
        "walk_opencap_subject4/IK/walking1_ik.mot",
    ),
    (
        "laiarnold",
        "walk_opencap_laiarnold_subject6/LaiArnoldModified2017_poly_withArms_weldHand_scaled.osim",
        "walk_opencap_laiarnold_subject6/walking1_ik.mot",
    ),
    ("camargo", "walk_camargo2021/final.osim", "walk_camargo2021/levelground_ccw_fast_01_01_ik.mot"),
    ("sprint", "sprint_ja1gait35/optimized_scale_and_markers.osim", "sprint_ja1gait35/JA1Gait35_ik.mot"),
]


def _read_mot(path: Path) -> tuple[list[str], np.ndarray, bool]:
    """Minimal OpenSim storage reader for the test: (column names, values [T, C], in degrees)."""
    lines = path.read_text().splitlines()
    end = next(i for i, line in enumerate(lines) if line.strip().lower() == "endheader")
    in_degrees = any(line.strip().lower() == "indegrees=yes" for line in lines[:end])
    names = lines[end + 1].split()
    values = np.array([[float(v) for v in line.split()] for line in lines[end + 2 :] if line.strip()])
    return names, values, in_degrees


class OpenSimModel:
    """An OpenSim model loaded once, with our parse and skeleton of the same file."""

    def __init__(self, path: Path, parsed: osim.OsimModel):
        opensim.Logger.setLevelString("error")
        self.model = opensim.Model(str(path))
        self.state = self.model.initSystem()
        self.parsed = parsed
        self.skeleton = build_skeleton(parsed)
        coords = self.model.getCoordinateSet()
        self.coords = [coords.get(i) for i in range(coords.getSize())]

    def pose(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Set q in OpenSim; return (q as OpenSim holds it, body positions, body rotations, joint centres)."""
        for c, v in zip(self.coords, q, strict=True):
            c.setValue(self.state, float(v), False)
        self.model.realizePosition(self.state)
        q_used = np.array([c.getValue(self.state) for c in self.coords])  # locked coordinates keep defaults
        bodies = self.model.getBodySet()
        pos, rot = [], []
        for name in self.skeleton.body_names:
            x = bodies.get(name).getTransformInGround(self.state)
            pos.append([x.p().get(i) for i in range(3)])
            rot.append([[x.R().asMat33().get(i, j) for j in range(3)] for i in range(3)])
        joints = self.model.getJointSet()
        centres = []
        for name in self.skeleton.joint_names:
            p = joints.get(name).getChildFrame().getPositionInGround(self.state)
            centres.append([p.get(i) for i in range(3)])
        return q_used, np.array(pos), np.array(rot), np.array(centres)

    def compare(self, qs: np.ndarray) -> tuple[float, float, float]:
        """Max |ours - OpenSim| over poses qs [N, n_coords]: (body position m, rotation, joint centre m)."""
        ref = [self.pose(q) for q in qs]
        q_used = np.stack([r[0] for r in ref])
        ours = forward_kinematics(self.skeleton, q_used)
        return (
            float(np.abs(np.asarray(ours.body_pos_m) - np.stack([r[1] for r in ref])).max()),
            float(np.abs(np.asarray(ours.body_rot) - np.stack([r[2] for r in ref])).max()),
            float(np.abs(np.asarray(ours.joint_pos_m) - np.stack([r[3] for r in ref])).max()),
        )


_CACHE: dict[str, OpenSimModel] = {}


def _load(key: str, path: Path, parsed: osim.OsimModel | None = None) -> OpenSimModel:
    if key not in _CACHE:
        _CACHE[key] = OpenSimModel(path, osim.parse_osim(path) if parsed is None else parsed)
    return _CACHE[key]


@pytest.fixture(scope="module", autouse=True)
def _release_models():
    yield
    _CACHE.clear()


def _random_poses(skeleton, n: int, seed: int) -> np.ndarray:
    lo, hi = skeleton.coordinate_range.T
    lo, hi = np.maximum(lo, -np.pi), np.minimum(hi, np.pi)
    return np.random.default_rng(seed).uniform(lo, hi, size=(n, lo.size))


def _mot_poses(m: OpenSimModel, mot: Path) -> np.ndarray:
    names, values, in_degrees = _read_mot(mot)
    sk = m.skeleton
    rows = np.linspace(0, values.shape[0] - 1, N_FRAMES).astype(int)
    q = np.tile(sk.default_q, (N_FRAMES, 1))
    for col, name in enumerate(names):
        if name in sk.coordinate_index:
            q[:, sk.coordinate_index[name]] = values[rows, col]
    if in_degrees:
        q[:, sk.rotational] = np.deg2rad(q[:, sk.rotational])
    # Dependent (coupled) coordinates such as LaiArnold's knee_angle_*_beta follow their couplers.
    return np.asarray(apply_couplers(sk, q))


@pytest.mark.slow
@pytest.mark.parametrize("name,model_rel,mot_rel", REAL_MODELS, ids=[m[0] for m in REAL_MODELS])
def test_fk_matches_opensim_on_real_models(real_data, name, model_rel, mot_rel):
    m = _load(name, real_data / model_rel)
    poses = [_random_poses(m.skeleton, N_RANDOM, seed=len(name))]
    if mot_rel is not None:
        poses.append(_mot_poses(m, real_data / mot_rel))
    for qs in poses:
        pos_err, rot_err, joint_err = m.compare(qs)
        assert pos_err < POS_TOL_M, f"{name}: body origin differs from OpenSim by {pos_err:.2e} m"
        assert rot_err < ROT_TOL, f"{name}: body rotation differs from OpenSim by {rot_err:.2e}"
        assert joint_err < POS_TOL_M, f"{name}: joint centre differs from OpenSim by {joint_err:.2e} m"


@pytest.mark.slow
@pytest.mark.parametrize("name,model_rel,mot_rel", REAL_MODELS, ids=[m[0] for m in REAL_MODELS])
def test_parsed_metadata_matches_opensim(real_data, name, model_rel, mot_rel):
    m = _load(name, real_data / model_rel)
    motion = {1: "rotational", 2: "translational", 3: "coupled"}
    assert [c.getName() for c in m.coords] == list(m.skeleton.coordinate_names)
    for c in m.coords:
        ours = m.parsed.coordinates[c.getName()]
        assert ours.motion_type == motion[c.getMotionType()], c.getName()
        assert ours.range == pytest.approx((c.getRangeMin(), c.getRangeMax()))
        assert ours.default_value == pytest.approx(c.getDefaultValue())
        assert ours.locked == c.getDefaultLocked() and ours.clamped == c.getDefaultClamped(), c.getName()
    bodies = m.model.getBodySet()
    assert sorted(b.name for b in m.parsed.bodies) == sorted(
        bodies.get(i).getName() for i in range(bodies.getSize())
    )
    assert m.parsed.total_mass_kg == pytest.approx(m.model.getTotalMass(m.state), rel=1e-12)
    for b in m.parsed.bodies:
        ob = bodies.get(b.name)
        np.testing.assert_allclose(b.com_m, ob.getMassCenter().to_numpy(), atol=1e-15)


def _round_orientations(model: osim.OsimModel) -> osim.OsimModel:
    """OpenSim's reader stores v3 orientation_in_parent/orientation with 6 significant digits when it
    upgrades the file to v4 (it keeps the file's translations exactly); reproduce that to compare."""

    def rounded(frame):
        angles = np.array([float(f"{v:.6g}") for v in frame.orientation_rad])
        return dataclasses.replace(frame, orientation_rad=angles)

    joints = tuple(
        dataclasses.replace(j, parent=rounded(j.parent), child=rounded(j.child)) for j in model.joints
    )
    return dataclasses.replace(model, joints=joints)


@pytest.mark.slow
def test_fk_matches_opensim_on_v3_rajagopal2015_from_nimblephysics():
    nimble = pytest.importorskip("nimblephysics_libs")
    path = Path(nimble.__file__).parents[1] / "nimblephysics/models/rajagopal_data/Rajagopal2015.osim"
    if not path.is_file():
        pytest.skip(f"{path} not found in the nimblephysics wheel")
    parsed = osim.parse_osim(path)
    assert parsed.version == 30000
    m = _load("rajagopal2015", path, _round_orientations(parsed))
    qs = _random_poses(m.skeleton, N_RANDOM, seed=7)
    pos_err, rot_err, joint_err = m.compare(qs)
    assert max(pos_err, joint_err) < POS_TOL_M and rot_err < ROT_TOL
    # With the file's full-precision angles the difference is only OpenSim's rounding (< 1e-5).
    exact = OpenSimModel.__new__(OpenSimModel)
    exact.__dict__.update(m.__dict__, parsed=parsed, skeleton=build_skeleton(parsed))
    pos_err, rot_err, _ = exact.compare(qs)
    assert pos_err < 1e-5 and rot_err < 1e-5


@pytest.mark.slow
def test_fk_matches_opensim_on_b3d_embedded_model(real_data, tmp_path):
    nimble = pytest.importorskip("nimblephysics_libs._nimblephysics")
    b3d = real_data / "b3d/opencap_subject4_walking_addb.b3d"
    text = nimble.biomechanics.SubjectOnDisk(str(b3d)).getOpensimFileText(0)
    path = tmp_path / "b3d_model.osim"
    path.write_text(text)
    m = _load("b3d", path, osim.parse_osim(text))
    for qs in (_random_poses(m.skeleton, N_RANDOM, seed=3), _mot_poses(m, real_data / REAL_MODELS[6][2])):
        pos_err, rot_err, joint_err = m.compare(qs)
        assert max(pos_err, joint_err) < POS_TOL_M and rot_err < ROT_TOL


def _frames(name: str, parent: str, child: str) -> str:
    def frame(n, body, t, o):
        socket = "/ground" if body == "ground" else f"/bodyset/{body}"
        return (
            f'<PhysicalOffsetFrame name="{n}"><socket_parent>{socket}</socket_parent>'
            f"<translation>{t}</translation><orientation>{o}</orientation></PhysicalOffsetFrame>"
        )

    return (
        "<frames>"
        + frame(f"{name}_p", parent, "0.1 0.2 -0.05", "0.3 -0.2 0.5")
        + frame(f"{name}_c", child, "-0.02 0.15 0.03", "-0.4 0.1 0.25")
        + "</frames>"
    )


def _joint(tag: str, name: str, parent: str, child: str, coords: list[str], extra: str = "") -> str:
    cs = "".join(
        f'<Coordinate name="{c}"><default_value>0</default_value><range>-1 1</range></Coordinate>'
        for c in coords
    )
    return (
        f'<{tag} name="{name}"><socket_parent_frame>{name}_p</socket_parent_frame>'
        f"<socket_child_frame>{name}_c</socket_child_frame><coordinates>{cs}</coordinates>"
        f"{_frames(name, parent, child)}{extra}</{tag}>"
    )


def _axis(name: str, coord: str, axis: str, function: str) -> str:
    return f'<TransformAxis name="{name}"><coordinates>{coord}</coordinates><axis>{axis}</axis>{function}</TransformAxis>'


SPLINE_X = "-1 -0.4 0.1 0.5 1"
SYNTHETIC_CUSTOM = (
    "<SpatialTransform>"
    + _axis(
        "rotation1",
        "c1",
        "1 1 0",
        f'<NaturalCubicSpline name="function"><x>{SPLINE_X}</x><y>0.2 -0.3 0.1 0.6 0.4</y></NaturalCubicSpline>',
    )
    + _axis(
        "rotation2",
        "c1",
        "0 0 2",
        '<PolynomialFunction name="function"><coefficients>0.5 -0.2 0.3 0.1</coefficients></PolynomialFunction>',
    )
    + _axis("rotation3", "", "1 0 0", '<Constant name="function"><value>0.2</value></Constant>')
    + _axis(
        "translation1",
        "c2",
        "1 0 0",
        '<MultiplierFunction name="function"><function><SimmSpline name="function">'
        f"<x>{SPLINE_X}</x><y>0.01 -0.02 0.03 0.0 0.05</y></SimmSpline></function><scale>1.3</scale></MultiplierFunction>",
    )
    + _axis(
        "translation2",
        "c2",
        "0 1 1",
        '<LinearFunction name="function"><coefficients>0.5 0.01</coefficients></LinearFunction>',
    )
    + _axis("translation3", "", "0 0 1", '<Constant name="function"><value>0.02</value></Constant>')
    + "</SpatialTransform>"
)


def _synthetic_model_text() -> str:
    bodies = "".join(
        f'<Body name="b{i}"><mass>{i}</mass><mass_center>0.01 -0.1 0.02</mass_center>'
        "<inertia>0.1 0.1 0.1 0 0 0</inertia></Body>"
        for i in range(1, 8)
    )
    joints = (
        _joint("FreeJoint", "free", "ground", "b1", ["f_rx", "f_ry", "f_rz", "f_tx", "f_ty", "f_tz"])
        + _joint("BallJoint", "ball", "b1", "b2", ["b_x", "b_y", "b_z"])
        + _joint("CustomJoint", "custom", "b2", "b3", ["c1", "c2"], SYNTHETIC_CUSTOM)
        + _joint("UniversalJoint", "universal", "b3", "b4", ["u_x", "u_y"])
        + _joint("PinJoint", "pin", "b4", "b5", ["p_z"])
        + _joint("WeldJoint", "weld", "b5", "b6", [])
        + _joint(
            "EllipsoidJoint",
            "ellipsoid",
            "b6",
            "b7",
            ["e_x", "e_y", "e_z"],
            "<radii_x_y_z>0.07 0.15 0.1</radii_x_y_z>",
        )
    )
    return (
        '<?xml version="1.0" encoding="UTF-8" ?><OpenSimDocument Version="40000"><Model name="synthetic">'
        '<Ground name="ground"/>'
        f"<BodySet><objects>{bodies}</objects></BodySet><JointSet><objects>{joints}</objects></JointSet>"
        "</Model></OpenSimDocument>"
    )


@pytest.mark.slow
def test_fk_matches_opensim_on_synthetic_joint_and_function_types(tmp_path):
    text = _synthetic_model_text()
    path = tmp_path / "synthetic.osim"
    path.write_text(text)
    m = OpenSimModel(path, osim.parse_osim(text))
    assert {j.type for j in m.parsed.joints} == {
        "FreeJoint",
        "BallJoint",
        "CustomJoint",
        "UniversalJoint",
        "PinJoint",
        "WeldJoint",
        "EllipsoidJoint",
    }
    # Beyond the knots too, to check the splines' extrapolation.
    qs = np.random.default_rng(0).uniform(-1.4, 1.4, size=(N_RANDOM, len(m.skeleton.coordinate_names)))
    pos_err, rot_err, joint_err = m.compare(qs)
    assert max(pos_err, joint_err) < POS_TOL_M and rot_err < ROT_TOL


@pytest.mark.parametrize(
    ("rel", "sign"),
    [
        ("walk_gait2392_subject01/subject01_simbody.osim", -1.0),  # knee range -120..10 deg
        ("run_hamner2013_subject04/final.osim", -1.0),
        ("walk_opencap_subject4/optimized_scale_and_markers.osim", 1.0),  # walker knee 0..140 deg
        ("walk_rajagopal2016/Rajagopal2016.osim", 1.0),
    ],
)
def test_knee_convention_follows_the_model_range(real_data, rel, sign):
    from gaitjax.skeleton.tree import gaitdynamics_signs, gaitdynamics_to_q, q_to_gaitdynamics

    skeleton = build_skeleton(osim.parse_osim(real_data / rel))
    names = ("knee_angle_r", "hip_flexion_r", "knee_angle_l")
    np.testing.assert_array_equal(gaitdynamics_signs(skeleton, names), [sign, 1.0, sign])
    coords = np.array([[0.7, 0.3, 1.1]])
    q = gaitdynamics_to_q(skeleton, names, coords)
    assert q[0, skeleton.coordinate_index["knee_angle_r"]] == sign * 0.7
    np.testing.assert_array_equal(q_to_gaitdynamics(skeleton, names, q), coords)
    # A flexed knee in the GaitDynamics convention is a flexed knee of the model: the ankle moves backwards
    # (-x) relative to the knee when standing upright at the default pose.
    fk = forward_kinematics(skeleton, q)
    knee = np.asarray(fk.body_pos_m)[0, skeleton.body_names.index("tibia_r")]
    ankle = np.asarray(fk.body_pos_m)[0, skeleton.body_names.index("talus_r")]
    assert ankle[0] < knee[0] - 0.1
