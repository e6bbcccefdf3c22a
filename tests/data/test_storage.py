"""Tests for the OpenSim storage reader/writer: real files, hand-written headers, bad input, round trips."""

from __future__ import annotations

import numpy as np
import pytest

from gaitjax.data.errors import GaitDataError
from gaitjax.data.storage import read_storage, to_radians, write_storage

V1 = """Coordinates
version=1
nRows=3
nColumns=4
inDegrees=yes

Units are S.I. units (second, meters, Newtons, ...)
endheader
time\tknee_angle_r\tpelvis_tx\tknee_angle_r_beta
0.00\t90\t1.5\t45
0.01\t180\t1.6\t-90
0.02\t-45\t1.7\t0
"""


def _write(tmp_path, text: str, name: str = "x.mot"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_version1_header_and_values(tmp_path):
    table = read_storage(_write(tmp_path, V1))
    assert table.name == "Coordinates"
    assert table.columns == ("knee_angle_r", "pelvis_tx", "knee_angle_r_beta")
    assert table.in_degrees is True
    assert table.header["nRows"] == "3" and table.header["version"] == "1"
    np.testing.assert_array_equal(table.time_s, [0.0, 0.01, 0.02])
    np.testing.assert_array_equal(table.column("pelvis_tx"), [1.5, 1.6, 1.7])
    assert table.rate_hz == 100


def test_legacy_space_separated_with_crlf_and_trailing_tab(tmp_path):
    text = (
        "name some_trial.mot\r\ndatacolumns 3\r\ndatarows 99\r\nrange 0 1\r\nendheader\r\n"
        "       time\t  R_ground_force_vx\t  R_ground_force_vy\t\r\n"
        "  0.000   1.0   2.0\t\r\n  0.500   3.0   4.0\t\r\n"
    )
    table = read_storage(_write(tmp_path, text))
    assert table.name == "some_trial.mot"
    assert table.columns == ("R_ground_force_vx", "R_ground_force_vy")
    np.testing.assert_array_equal(table.values, [[1.0, 2.0], [3.0, 4.0]])
    assert table.in_degrees is None
    assert table.header["datarows"] == "99"  # Recorded, not enforced (real legacy files disagree).
    assert table.rate_hz == 2


def test_opensim4_header_without_name(tmp_path):
    text = "nColumns=2\nnRows=2\nDataType=double\nversion=3\nOpenSimVersion=4.1\nendheader\n"
    text += "time\ta\n0\t1\n1\t2\n"
    table = read_storage(_write(tmp_path, text))
    assert (
        table.name == "" and table.header["OpenSimVersion"] == "4.1" and table.header["DataType"] == "double"
    )
    np.testing.assert_array_equal(table.column("a"), [1.0, 2.0])


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        ("   \n\n", "empty"),
        ("version=1\ntime\ta\n0\t1\n", "endheader"),
        ("endheader\n", "column-name line"),
        ("endheader\ntime\ta\n", "no data rows"),
        ("endheader\ntime\ta\tb\n0\t1\t2\n1\t2\n", "line 4: 2 values, expected 3"),
        ("endheader\ntime\ta\tb\n0\t1\t2\n1\t2\tx7\n", "line 4, column 'b': value 'x7'"),
        (
            "endheader\ntime\ta\tb\n0\t1\t2\n1\tnan\t3\n",
            "column 'a' has a non-finite value (nan), first at data row 1",
        ),
        ("endheader\ntime\ta\tb\n0\t1\tinf\n", "column 'b'"),
        ("endheader\nt\ta\n0\t1\n", "no 'time' column"),
        ("endheader\ntime\ta\ta\n0\t1\t2\n", "duplicate column names ['a']"),
        ("nRows=3\nendheader\ntime\ta\n0\t1\n1\t2\n", "nRows=3 but the file has 2 data rows"),
        ("nColumns=3\nendheader\ntime\ta\n0\t1\n1\t2\n", "nColumns=3 but the file has 2 columns"),
        ("datacolumns 5\nendheader\ntime\ta\n0\t1\n", "datacolumns=5"),
        ("nRows=two\nendheader\ntime\ta\n0\t1\n", "not an integer"),
        ("inDegrees=maybe\nendheader\ntime\ta\n0\t1\n", "expected 'yes' or 'no'"),
    ],
)
def test_bad_files_raise_clear_errors(tmp_path, text, needle):
    path = _write(tmp_path, text)
    with pytest.raises(GaitDataError) as info:
        read_storage(path)
    assert needle in str(info.value)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(GaitDataError, match="does not exist"):
        read_storage(tmp_path / "nope.mot")


def test_rate_needs_increasing_time(tmp_path):
    table = read_storage(_write(tmp_path, "endheader\ntime\ta\n0\t1\n0.1\t1\n0.1\t1\n"))
    with pytest.raises(GaitDataError, match="strictly increasing.*row 2"):
        _ = table.rate_hz


def test_to_radians_converts_rotational_only_by_default(tmp_path):
    table = read_storage(_write(tmp_path, V1))
    types = {"knee_angle_r": "rotational", "pelvis_tx": "translational", "knee_angle_r_beta": "coupled"}
    rad = to_radians(table, types)
    assert rad.in_degrees is False
    np.testing.assert_allclose(rad.column("knee_angle_r"), [np.pi / 2, np.pi, -np.pi / 4], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(rad.column("pelvis_tx"), [1.5, 1.6, 1.7])
    np.testing.assert_array_equal(rad.column("knee_angle_r_beta"), [45.0, -90.0, 0.0])
    both = to_radians(table, types, coupled_is_rotational=True)
    np.testing.assert_allclose(both.column("knee_angle_r_beta"), [np.pi / 4, -np.pi / 2, 0.0], atol=1e-15)
    np.testing.assert_array_equal(both.column("pelvis_tx"), [1.5, 1.6, 1.7])
    assert to_radians(rad, types) is not rad  # Already radians: values unchanged.
    np.testing.assert_array_equal(to_radians(rad, types).values, rad.values)


def test_to_radians_errors(tmp_path):
    table = read_storage(_write(tmp_path, V1))
    with pytest.raises(GaitDataError, match=r"\['pelvis_tx'\] are not coordinates of the model"):
        to_radians(table, {"knee_angle_r": "rotational", "knee_angle_r_beta": "coupled"})
    with pytest.raises(GaitDataError, match="unknown motion types"):
        to_radians(table, {"knee_angle_r": "angular", "pelvis_tx": "translational", "knee_angle_r_beta": "x"})
    no_unit = read_storage(_write(tmp_path, "endheader\ntime\tknee\n0\t90\n", "n.mot"))
    with pytest.raises(GaitDataError, match="assume_degrees"):
        to_radians(no_unit, {"knee": "rotational"})
    np.testing.assert_allclose(
        to_radians(no_unit, {"knee": "rotational"}, assume_degrees=True).values, [[np.pi / 2]]
    )
    np.testing.assert_array_equal(
        to_radians(no_unit, {"knee": "rotational"}, assume_degrees=False).values, [[90]]
    )


def test_write_read_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    time_s = np.arange(57) / 60.0
    values = rng.normal(size=(57, 4)) * np.array([1e-9, 1.0, 1e6, 123.456])
    columns = ("hip_flexion_r", "pelvis_ty", "ground_force_vy", "c")
    path = write_storage(
        tmp_path / "sub" / "out.sto", columns, time_s, values, in_degrees=False, name="rt",
        extra_header={"note": "from gaitjax"},
    )  # fmt: skip
    table = read_storage(path)
    assert table.columns == columns and table.name == "rt" and table.in_degrees is False
    assert table.header["nRows"] == "57" and table.header["nColumns"] == "5"  # time included
    assert table.header["note"] == "from gaitjax"
    np.testing.assert_array_equal(table.time_s, time_s)
    np.testing.assert_array_equal(table.values, values)
    assert table.rate_hz == 60
    assert [p.name for p in path.parent.iterdir()] == ["out.sto"]  # no temp file left behind


def test_write_is_atomic_on_failure(tmp_path):
    path = tmp_path / "keep.mot"
    write_storage(path, ["a"], np.array([0.0, 1.0]), np.array([[1.0], [2.0]]), in_degrees=True, name="old")
    before = path.read_bytes()
    with pytest.raises(GaitDataError):
        write_storage(
            path, ["a"], np.array([0.0, 1.0]), np.array([[1.0], [np.nan]]), in_degrees=True, name="x"
        )
    with pytest.raises(GaitDataError):
        write_storage(path, ["a", "b"], np.array([0.0, 1.0]), np.zeros((2, 3)), in_degrees=True, name="x")
    with pytest.raises(GaitDataError):
        write_storage(path, ["time"], np.array([0.0]), np.zeros((1, 1)), in_degrees=True, name="x")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.mot"]


def test_written_file_loads_in_opensim(tmp_path):
    opensim = pytest.importorskip("opensim")
    path = write_storage(
        tmp_path / "o.mot", ["knee_angle_r", "pelvis_tx"], np.array([0.0, 0.01, 0.02]),
        np.array([[10.0, 0.5], [20.0, 0.6], [30.0, 0.7]]), in_degrees=True, name="Coordinates",
    )  # fmt: skip
    table = opensim.TimeSeriesTable(str(path))
    assert table.getNumRows() == 3 and list(table.getColumnLabels()) == ["knee_angle_r", "pelvis_tx"]
    assert table.getTableMetaDataAsString("inDegrees") == "yes"
    assert table.getDependentColumn("pelvis_tx")[2] == pytest.approx(0.7)


def test_every_real_mot_reads(real_data):
    paths = sorted(real_data.rglob("*.mot"))
    assert len(paths) == 47
    for path in paths:
        table = read_storage(path)
        assert table.values.shape == (table.n_frames, len(table.columns)) and table.n_frames > 100
        assert table.rate_hz in (60, 100, 200, 250, 600, 1000, 2000), path


@pytest.mark.parametrize(
    ("relpath", "rate_hz", "in_degrees", "n_rows", "n_coords", "t0", "t_end"),
    [
        ("walk_gait2392_subject01/subject01_walk1_ik.mot", 60, True, 211, 23, 0.5, 4.0),
        ("walk_gait2392_subject01/planar_gait10dof/subject01_walk_IK.mot", 60, True, 151, 10, 0.0, 2.5),
        ("walk_rajagopal2016/addbiomechanics/walk_ik.mot", 100, False, 238, 37, 0.0, 2.37),
        ("run_hamner2010_subject02/subject02_running_ik.mot", 60, True, 599, 37, 0.0, 9.97),
        ("walk_opencap_laiarnold_subject6/walking1_ik.mot", 100, True, 143, 35, None, None),
        ("walk_camargo2021/levelground_ccw_fast_01_01_ik.mot", 200, False, 3067, 23, None, None),
        ("sprint_ja1gait35/JA1Gait35_ik.mot", 250, False, 322, 49, None, None),
        ("run_hamner2013_subject04/run200_ik.mot", 100, False, 233, 37, None, None),
    ],
)
def test_known_values_of_real_ik_files(real_data, relpath, rate_hz, in_degrees, n_rows, n_coords, t0, t_end):
    table = read_storage(real_data / relpath)
    assert (table.rate_hz, table.in_degrees, table.n_frames, len(table.columns)) == (
        rate_hz, in_degrees, n_rows, n_coords,
    )  # fmt: skip
    if t0 is not None:
        assert table.time_s[0] == pytest.approx(t0, abs=1e-3) and table.time_s[-1] == pytest.approx(
            t_end, abs=2e-2
        )


def test_legacy_hamner_file_keeps_declared_rowcount_in_header(real_data):
    table = read_storage(real_data / "run_hamner2010_subject02/subject02_running_grf.mot")
    assert table.header["datarows"] == "901" and table.n_frames == 601
    assert table.rate_hz == 60 and len(table.columns) == 41


def test_real_coupled_beta_is_stored_in_radians(real_data):
    """LaiArnold `knee_angle_r_beta` (Coupled in OpenSim) is knee_angle_r in radians in a degrees file."""
    table = read_storage(real_data / "walk_opencap_laiarnold_subject6/walking1_ik.mot")
    types = {c: "rotational" for c in table.columns} | {
        "knee_angle_r_beta": "coupled",
        "knee_angle_l_beta": "coupled",
    }
    types |= {f"pelvis_t{a}": "translational" for a in "xyz"}
    rad = to_radians(table, types)
    for side in "rl":
        np.testing.assert_allclose(
            rad.column(f"knee_angle_{side}_beta"), rad.column(f"knee_angle_{side}"), atol=2e-3
        )
        assert np.ptp(rad.column(f"knee_angle_{side}")) > 0.8  # a real knee swing, so the check has teeth


def _opensim_conversion(opensim, osim_path, mot_path):
    """OpenSim's own degrees->radians conversion of a .mot, and its motion type per coordinate."""
    model = opensim.Model(str(osim_path))
    model.initSystem()
    coords = model.getCoordinateSet()
    types = {}
    for k in range(coords.getSize()):
        c = coords.get(k)
        types[c.getName()] = {1: "rotational", 2: "translational", 3: "coupled"}[int(c.getMotionType())]
    storage = opensim.Storage(str(mot_path))
    model.getSimbodyEngine().convertDegreesToRadians(storage)
    column_labels = storage.getColumnLabels()
    labels = [column_labels.get(k) for k in range(1, column_labels.getSize())]
    rows = []
    for row in range(storage.getSize()):
        state = storage.getStateVector(row).getData()
        rows.append([state.get(k) for k in range(state.getSize())])
    return labels, np.array(rows), types


@pytest.mark.parametrize(
    ("osim", "mot"),
    [
        ("walk_gait2392_subject01/subject01_simbody.osim", "walk_gait2392_subject01/subject01_walk1_ik.mot"),
        (
            "walk_opencap_laiarnold_subject6/LaiArnoldModified2017_poly_withArms_weldHand_scaled.osim",
            "walk_opencap_laiarnold_subject6/walking1_ik.mot",
        ),
    ],
)
def test_real_degrees_files_match_opensim(real_data, osim, mot):
    """With OpenSim's motion types and the default we equal OpenSim's conversion exactly."""
    opensim = pytest.importorskip("opensim")
    table = read_storage(real_data / mot)
    labels, theirs, types = _opensim_conversion(opensim, real_data / osim, real_data / mot)
    assert labels == list(table.columns)
    ours = to_radians(table, types)
    np.testing.assert_allclose(ours.values, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("osim", "mot"),
    [
        ("walk_gait2392_subject01/subject01_simbody.osim", "walk_gait2392_subject01/subject01_walk1_ik.mot"),
        (
            "walk_opencap_laiarnold_subject6/LaiArnoldModified2017_poly_withArms_weldHand_scaled.osim",
            "walk_opencap_laiarnold_subject6/walking1_ik.mot",
        ),
    ],
)
def test_parsed_osim_types_match_opensim(real_data, osim, mot):
    """The contract with gaitjax.data.osim: its motion types plus the default give OpenSim's radians."""
    opensim = pytest.importorskip("opensim")
    osim_module = pytest.importorskip("gaitjax.data.osim")
    table = read_storage(real_data / mot)
    parsed = osim_module.parse_osim(real_data / osim)
    types = {name: parsed.coordinates[name].motion_type for name in table.columns}
    _, theirs, _ = _opensim_conversion(opensim, real_data / osim, real_data / mot)
    np.testing.assert_allclose(to_radians(table, types).values, theirs, rtol=1e-12, atol=1e-12)
