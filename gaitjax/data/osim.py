"""OpenSim `.osim` model parser (OpenSim 3 and 4 XML formats) into frozen dataclasses of numpy arrays.

Only what kinematics needs is read: bodies, joints with their offset frames, coordinates, CustomJoint
spatial transforms with their functions, and coordinate coupler constraints.
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from gaitjax.data.errors import GaitDataError

GROUND = "ground"


@dataclasses.dataclass(frozen=True, eq=False)
class Constant:
    """f(x) = value."""

    value: float


@dataclasses.dataclass(frozen=True, eq=False)
class LinearFunction:
    """f(x) = slope * x + intercept (OpenSim `coefficients` = [slope, intercept])."""

    slope: float
    intercept: float


@dataclasses.dataclass(frozen=True, eq=False)
class SimmSpline:
    """OpenSim SimmSpline: cubic interpolating spline through knots `x` [N], `y` [N]."""

    x: np.ndarray
    y: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class NaturalCubicSpline:
    """OpenSim NaturalCubicSpline through knots `x` [N], `y` [N].

    OpenSim evaluates it with SimmSpline's end conditions (see `gaitjax.skeleton.functions`)."""

    x: np.ndarray
    y: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class GCVSpline:
    """OpenSim GCVSpline (parsed only; forward kinematics does not evaluate it)."""

    degree: int
    x: np.ndarray
    y: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class PolynomialFunction:
    """f(x) = sum_k c[k] x^(n-k): `coefficients` [n+1], highest power first, as in the OpenSim file."""

    coefficients: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class MultiplierFunction:
    """f(x) = scale * function(x)."""

    function: Function
    scale: float


Function = (
    Constant
    | LinearFunction
    | SimmSpline
    | NaturalCubicSpline
    | GCVSpline
    | PolynomialFunction
    | MultiplierFunction
)
FUNCTION_TAGS = (
    "Constant",
    "LinearFunction",
    "SimmSpline",
    "NaturalCubicSpline",
    "GCVSpline",
    "PolynomialFunction",
    "MultiplierFunction",
)


@dataclasses.dataclass(frozen=True, eq=False)
class Body:
    """A rigid body: mass, centre of mass [3] in the body frame (m), inertia [6] (xx yy zz xy xz yz)."""

    name: str
    mass_kg: float
    com_m: np.ndarray
    inertia: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class Frame:
    """A joint frame fixed on `body`: translation [3] (m) and XYZ body-fixed orientation [3] (rad)."""

    body: str
    translation_m: np.ndarray
    orientation_rad: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class TransformAxis:
    """One of the 6 CustomJoint transform axes (`rotation1..3`, `translation1..3`)."""

    name: str
    axis: np.ndarray
    coordinates: tuple[str, ...]
    function: Function


@dataclasses.dataclass(frozen=True, eq=False)
class Joint:
    """A joint between a parent frame and a child frame, with its coordinates in file order.

    `spatial_transform` holds the 6 axes of a CustomJoint (empty otherwise). `radii_m` belongs to
    EllipsoidJoint; `neutral_angles_rad` (X, Z, Y) and `length_m` to ConstantCurvatureJoint.
    """

    name: str
    type: str
    parent: Frame
    child: Frame
    coordinates: tuple[str, ...]
    spatial_transform: tuple[TransformAxis, ...] = ()
    radii_m: np.ndarray | None = None
    neutral_angles_rad: np.ndarray | None = None
    length_m: float | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class Coordinate:
    """A generalized coordinate (radians for rotational, metres for translational)."""

    name: str
    joint: str
    motion_type: str
    default_value: float
    range: tuple[float, float]
    locked: bool
    clamped: bool


@dataclasses.dataclass(frozen=True, eq=False)
class CoordinateCoupler:
    """CoordinateCouplerConstraint: dependent = scale_factor * function(independent...)."""

    name: str
    dependent: str
    independent: tuple[str, ...]
    function: Function
    scale_factor: float


@dataclasses.dataclass(frozen=True, eq=False)
class OsimModel:
    """A parsed OpenSim model. `joints` are in file order; `coordinates` in joint then file order."""

    name: str
    version: int
    ground: str
    bodies: tuple[Body, ...]
    joints: tuple[Joint, ...]
    coordinates: dict[str, Coordinate]
    couplers: tuple[CoordinateCoupler, ...]

    @property
    def total_mass_kg(self) -> float:
        """Sum of the body masses (kg)."""
        return float(sum(b.mass_kg for b in self.bodies))

    def body(self, name: str) -> Body:
        """The body called `name` (GaitDataError if absent)."""
        for b in self.bodies:
            if b.name == name:
                return b
        raise GaitDataError(f"model {self.name!r} has no body {name!r}")


# Coordinate motion types of the fixed-form joints, in coordinate order.
_FIXED_JOINT_MOTION = {
    "WeldJoint": (),
    "PinJoint": ("rotational",),
    "SliderJoint": ("translational",),
    "UniversalJoint": ("rotational", "rotational"),
    "BallJoint": ("rotational",) * 3,
    "GimbalJoint": ("rotational",) * 3,
    "EllipsoidJoint": ("rotational",) * 3,
    "ConstantCurvatureJoint": ("rotational",) * 3,
    "PlanarJoint": ("rotational", "translational", "translational"),
    "FreeJoint": ("rotational",) * 3 + ("translational",) * 3,
}
_JOINT_TAGS = ("CustomJoint", *_FIXED_JOINT_MOTION)


class _Ctx:
    """Source name for error messages."""

    def __init__(self, source: str | Path | None):
        self.path = source

    def error(self, message: str) -> GaitDataError:
        return GaitDataError(message, self.path)


def _floats(ctx: _Ctx, elem: ET.Element | None, what: str, n: int | None = None) -> np.ndarray:
    if elem is None or elem.text is None:
        if n is None:
            return np.zeros(0)
        raise ctx.error(f"{what}: missing value, expected {n} numbers")
    try:
        values = np.array([float(v) for v in elem.text.split()], dtype=np.float64)
    except ValueError:
        raise ctx.error(f"{what}: non-numeric value {elem.text.strip()!r}") from None
    if n is not None and values.shape != (n,):
        raise ctx.error(f"{what}: expected {n} numbers, found {values.size} ({elem.text.strip()!r})")
    return values


def _float(ctx: _Ctx, elem: ET.Element, tag: str, what: str, default: float | None = None) -> float:
    child = elem.find(tag)
    if child is None or child.text is None or not child.text.strip():
        if default is not None:
            return default
        raise ctx.error(f"{what}: missing <{tag}>")
    return float(_floats(ctx, child, f"{what} <{tag}>", 1)[0])


def _bool(elem: ET.Element, tag: str) -> bool:
    return (elem.findtext(tag) or "false").strip().lower() == "true"


def _function_elem(elem: ET.Element, prop: str) -> ET.Element | None:
    """The function stored in property `prop`: `<prop><Fn/></prop>` (v3) or `<Fn name="prop"/>` (v4)."""
    wrapper = elem.find(prop)
    if wrapper is not None:
        for child in wrapper:
            if child.tag in FUNCTION_TAGS:
                return child
    for child in elem:
        if child.tag in FUNCTION_TAGS and child.get("name") == prop:
            return child
    return None


def _parse_function(ctx: _Ctx, elem: ET.Element | None, what: str) -> Function:
    if elem is None:
        raise ctx.error(f"{what}: no function (expected one of {', '.join(FUNCTION_TAGS)})")
    tag = elem.tag
    if tag == "Constant":
        return Constant(_float(ctx, elem, "value", what))
    if tag == "LinearFunction":
        slope, intercept = _floats(ctx, elem.find("coefficients"), f"{what} coefficients", 2)
        return LinearFunction(float(slope), float(intercept))
    if tag in ("SimmSpline", "NaturalCubicSpline", "GCVSpline"):
        x = _floats(ctx, elem.find("x"), f"{what} x")
        y = _floats(ctx, elem.find("y"), f"{what} y")
        if x.size != y.size or x.size < 2 or np.any(np.diff(x) <= 0):
            raise ctx.error(f"{what}: {tag} needs >= 2 strictly increasing x knots with matching y")
        if tag == "SimmSpline":
            return SimmSpline(x, y)
        if tag == "NaturalCubicSpline":
            return NaturalCubicSpline(x, y)
        return GCVSpline(int(_float(ctx, elem, "degree", what, 5.0)), x, y)
    if tag == "PolynomialFunction":
        return PolynomialFunction(_floats(ctx, elem.find("coefficients"), f"{what} coefficients"))
    if tag == "MultiplierFunction":
        inner = _parse_function(ctx, _function_elem(elem, "function"), f"{what} (inner function)")
        return MultiplierFunction(inner, _float(ctx, elem, "scale", what, 1.0))
    raise ctx.error(f"{what}: unsupported function <{tag}>")


def _parse_coordinate(ctx: _Ctx, elem: ET.Element, joint: str, motion_type: str) -> Coordinate:
    name = elem.get("name", "")
    lo_hi = (
        _floats(ctx, elem.find("range"), f"coordinate {name} range", 2)
        if elem.find("range") is not None
        else None
    )
    rng = (float(lo_hi[0]), float(lo_hi[1])) if lo_hi is not None else (-np.inf, np.inf)
    return Coordinate(
        name=name,
        joint=joint,
        motion_type=(elem.findtext("motion_type") or motion_type).strip().lower(),
        default_value=_float(ctx, elem, "default_value", f"coordinate {name}", 0.0),
        range=rng,
        locked=_bool(elem, "locked"),
        clamped=_bool(elem, "clamped"),
    )


def _parse_spatial_transform(ctx: _Ctx, joint: ET.Element, name: str) -> tuple[TransformAxis, ...]:
    st = joint.find("SpatialTransform")
    if st is None:
        raise ctx.error(f"CustomJoint {name}: missing <SpatialTransform>")
    axes = []
    for ta in st.findall("TransformAxis"):
        axis_name = ta.get("name", "")
        what = f"joint {name} {axis_name}"
        axes.append(
            TransformAxis(
                name=axis_name,
                axis=_floats(ctx, ta.find("axis"), f"{what} axis", 3),
                coordinates=tuple((ta.findtext("coordinates") or "").split()),
                function=_parse_function(ctx, _function_elem(ta, "function"), what),
            )
        )
    expected = [f"rotation{i}" for i in (1, 2, 3)] + [f"translation{i}" for i in (1, 2, 3)]
    if [a.name for a in axes] != expected:
        raise ctx.error(f"CustomJoint {name}: transform axes {[a.name for a in axes]}, expected {expected}")
    return tuple(axes)


def _custom_motion_types(axes: tuple[TransformAxis, ...], coords: list[str]) -> list[str]:
    """OpenSim 4 rule (checked against opensim 4.6 on every model here): the first transform axis
    (rotation1..translation3) that uses a coordinate decides: a LinearFunction there makes it rotational or
    translational by the axis kind; any other function makes it coupled."""
    types = []
    for c in coords:
        first = next((i for i, a in enumerate(axes) if c in a.coordinates), None)
        if first is None:
            types.append("rotational")
        elif not isinstance(axes[first].function, LinearFunction):
            types.append("coupled")
        else:
            types.append("rotational" if first < 3 else "translational")
    return types


def _joint_common(ctx: _Ctx, elem: ET.Element, name: str, parent: Frame, child: Frame, coord_elems) -> tuple:
    """Coordinates, spatial transform and joint-type extras shared by the v3 and v4 layouts."""
    if _bool(elem, "reverse"):
        raise ctx.error(f"joint {name}: reversed joints are not supported (expected <reverse>false)")
    names = [c.get("name", "") for c in coord_elems]
    axes: tuple[TransformAxis, ...] = ()
    if elem.tag == "CustomJoint":
        axes = _parse_spatial_transform(ctx, elem, name)
        types = _custom_motion_types(axes, names)
    else:
        types = list(_FIXED_JOINT_MOTION[elem.tag])
        if len(types) != len(names):
            raise ctx.error(f"{elem.tag} {name}: {len(names)} coordinates, expected {len(types)}")
    coords = [_parse_coordinate(ctx, c, name, t) for c, t in zip(coord_elems, types, strict=True)]
    joint = Joint(
        name=name,
        type=elem.tag,
        parent=parent,
        child=child,
        coordinates=tuple(names),
        spatial_transform=axes,
        radii_m=_floats(ctx, elem.find("radii_x_y_z"), f"joint {name} radii", 3)
        if elem.tag == "EllipsoidJoint"
        else None,
        neutral_angles_rad=_floats(ctx, elem.find("neutral_angle_x_z_y"), f"joint {name} neutral angle", 3)
        if elem.tag == "ConstantCurvatureJoint"
        else None,
        length_m=_float(ctx, elem, "length", f"joint {name}")
        if elem.tag == "ConstantCurvatureJoint"
        else None,
    )
    return joint, coords


def _body_v4(ctx: _Ctx, elem: ET.Element) -> Body:
    name = elem.get("name", "")
    return Body(
        name=name,
        mass_kg=_float(ctx, elem, "mass", f"body {name}", 0.0),
        com_m=_floats(ctx, elem.find("mass_center"), f"body {name} mass_center", 3)
        if elem.find("mass_center") is not None
        else np.zeros(3),
        inertia=_floats(ctx, elem.find("inertia"), f"body {name} inertia", 6)
        if elem.find("inertia") is not None
        else np.zeros(6),
    )


def _resolve_frame_v4(
    ctx: _Ctx, socket: str, local: dict[str, ET.Element], bodies: set[str], joint: str
) -> Frame:
    """Resolve a joint socket path to (body, offset) by walking PhysicalOffsetFrames down to a body."""
    translation, rotation = np.zeros(3), np.eye(3)
    leaf = socket.rstrip("/").rsplit("/", 1)[-1]
    for _ in range(32):
        if leaf in local:
            frame = local[leaf]
            t = _floats(ctx, frame.find("translation"), f"frame {leaf} translation", 3)
            o = _floats(ctx, frame.find("orientation"), f"frame {leaf} orientation", 3)
            r = euler_xyz_to_matrix(o)
            # Compose outer offset after this one: X_parent_leaf = X_parent_frame * X_frame_leaf.
            translation, rotation = t + r @ translation, r @ rotation
            leaf = (frame.findtext("socket_parent") or "").rstrip("/").rsplit("/", 1)[-1]
            local = {k: v for k, v in local.items() if k != frame.get("name")}
            continue
        if leaf in bodies or leaf == GROUND:
            return Frame(leaf, translation, matrix_to_euler_xyz(rotation))
        break
    raise ctx.error(f"joint {joint}: frame {socket!r} does not resolve to a body or ground")


def euler_xyz_to_matrix(angles_rad: np.ndarray) -> np.ndarray:
    """XYZ body-fixed Euler angles [3] (rad) -> rotation matrix [3, 3] = Rx(a) Ry(b) Rz(c)."""
    a, b, c = angles_rad
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    rx = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rz = np.array([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]])
    return rx @ ry @ rz


def matrix_to_euler_xyz(r: np.ndarray) -> np.ndarray:
    """Inverse of `euler_xyz_to_matrix` (b in [-pi/2, pi/2])."""
    b = np.arcsin(np.clip(r[0, 2], -1.0, 1.0))
    a = np.arctan2(-r[1, 2], r[2, 2])
    c = np.arctan2(-r[0, 1], r[0, 0])
    return np.array([a, b, c])


def _parse_v4(ctx: _Ctx, model: ET.Element):
    body_elems = model.findall("./BodySet/objects/Body")
    bodies = [_body_v4(ctx, b) for b in body_elems]
    body_names = {b.name for b in bodies}
    joints, coords = [], []
    joint_set = model.find("./JointSet/objects")
    for elem in [] if joint_set is None else list(joint_set):
        if elem.tag not in _JOINT_TAGS:
            raise ctx.error(f"joint {elem.get('name')!r}: unsupported joint type <{elem.tag}>")
        name = elem.get("name", "")
        local = {f.get("name", ""): f for f in elem.findall("./frames/PhysicalOffsetFrame")}
        parent = _resolve_frame_v4(ctx, elem.findtext("socket_parent_frame") or "", local, body_names, name)
        child = _resolve_frame_v4(ctx, elem.findtext("socket_child_frame") or "", local, body_names, name)
        joint, jc = _joint_common(ctx, elem, name, parent, child, elem.findall("./coordinates/Coordinate"))
        joints.append(joint)
        coords.extend(jc)
    return bodies, joints, coords


def _parse_v3(ctx: _Ctx, model: ET.Element):
    bodies, joints, coords = [], [], []
    for b in model.findall("./BodySet/objects/Body"):
        name = b.get("name", "")
        if name == GROUND:
            continue
        inertia = [
            _float(ctx, b, f"inertia_{k}", f"body {name}", 0.0) for k in ("xx", "yy", "zz", "xy", "xz", "yz")
        ]
        mass_center = b.find("mass_center")
        com = (
            _floats(ctx, mass_center, f"body {name} mass_center", 3)
            if mass_center is not None
            else np.zeros(3)
        )
        bodies.append(Body(name, _float(ctx, b, "mass", f"body {name}", 0.0), com, np.array(inertia)))
        wrapper = b.find("Joint")
        elems = (
            [] if wrapper is None else [j for j in wrapper if j.tag in _JOINT_TAGS or j.tag.endswith("Joint")]
        )
        if not elems:
            continue
        elem = elems[0]
        if elem.tag not in _JOINT_TAGS:
            raise ctx.error(f"body {name}: unsupported joint type <{elem.tag}>")
        jname = elem.get("name", "")
        what = f"joint {jname}"
        parent = Frame(
            (elem.findtext("parent_body") or "").strip(),
            _floats(ctx, elem.find("location_in_parent"), f"{what} location_in_parent", 3),
            _floats(ctx, elem.find("orientation_in_parent"), f"{what} orientation_in_parent", 3),
        )
        child = Frame(
            name,
            _floats(ctx, elem.find("location"), f"{what} location", 3),
            _floats(ctx, elem.find("orientation"), f"{what} orientation", 3),
        )
        joint, jc = _joint_common(
            ctx, elem, jname, parent, child, elem.findall("./CoordinateSet/objects/Coordinate")
        )
        joints.append(joint)
        coords.extend(jc)
    return bodies, joints, coords


def _parse_couplers(ctx: _Ctx, model: ET.Element) -> tuple[CoordinateCoupler, ...]:
    couplers = []
    for c in model.findall("./ConstraintSet/objects/CoordinateCouplerConstraint"):
        name = c.get("name", "")
        if not _bool(c, "isEnforced") and c.find("isEnforced") is not None:
            continue
        couplers.append(
            CoordinateCoupler(
                name=name,
                dependent=(c.findtext("dependent_coordinate_name") or "").strip(),
                independent=tuple((c.findtext("independent_coordinate_names") or "").split()),
                function=_parse_function(
                    ctx, _function_elem(c, "coupled_coordinates_function"), f"constraint {name}"
                ),
                scale_factor=_float(ctx, c, "scale_factor", f"constraint {name}", 1.0),
            )
        )
    return tuple(couplers)


def parse_osim(source: str | Path) -> OsimModel:
    """Parse an OpenSim model from a file path or from the model's XML text.

    Args:
      source: path to a `.osim` file, or the XML text itself (as embedded in an AddBiomechanics `.b3d`).

    Returns:
      The parsed OsimModel (joint frames resolved to body + offset in both the v3 and v4 layouts).

    Raises:
      GaitDataError: missing file, XML that is not an OpenSim model, or unsupported content.
    """
    is_text = isinstance(source, str) and source.lstrip().startswith("<")
    ctx = _Ctx(None if is_text else source)
    if is_text:
        text = source
    else:
        path = Path(source)
        if not path.is_file():
            raise GaitDataError("no such OpenSim model file (expected a .osim path or model XML text)", path)
        text = path.read_text(encoding="utf-8", errors="replace")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise ctx.error(f"not valid XML ({e}); expected an OpenSim model") from None
    model = root.find("Model") if root.tag == "OpenSimDocument" else root if root.tag == "Model" else None
    if model is None:
        raise ctx.error(f"root element <{root.tag}> has no <Model>; expected an OpenSim model document")
    version = int(root.get("Version", "40000")) if root.tag == "OpenSimDocument" else 40000
    if model.find("JointSet") is not None or model.find("Ground") is not None:
        bodies, joints, coords = _parse_v4(ctx, model)
    else:
        bodies, joints, coords = _parse_v3(ctx, model)
    if not bodies:
        raise ctx.error("model has no bodies (expected <BodySet><objects><Body>)")
    return OsimModel(
        name=model.get("name", ""),
        version=version,
        ground=GROUND,
        bodies=tuple(bodies),
        joints=tuple(joints),
        coordinates={c.name: c for c in coords},
        couplers=_parse_couplers(ctx, model),
    )
