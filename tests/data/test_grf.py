"""Tests for GRF reading (every naming scheme in the real data), plate-to-foot assignment and resampling."""

from __future__ import annotations

import numpy as np
import pytest

from gaitjax.data.errors import GaitDataError
from gaitjax.data.grf import (
    ForceSet,
    GroundReactions,
    assign_plates_to_feet,
    combine_force_sets,
    read_grf,
    resample_grf,
)
from gaitjax.data.storage import read_storage, write_storage

G = 9.81

# Every GRF file in the real data: (path, scheme, layout, number of sets, rate in Hz).
REAL_GRF = [
    ("walk_gait2392_subject01/subject01_walk1_grf.mot", "prefix_number", "feet", 2, 600),
    ("run_hamner2010_subject02/subject02_running_grf.mot", "prefix_number", "feet", 2, 60),
    ("walk_rajagopal2016/grf_walk.mot", "suffix_rl", "feet", 2, 2000),
    ("walk_rajagopal2016/addbiomechanics/walk_grf.mot", "numbered", "feet", 2, 100),
    ("run_rajagopal2016_raw/grf_run.mot", "prefix_rl", "feet", 2, 1000),
    ("run_hamner2013_subject04/run200_grf.mot", "numbered", "feet", 2, 100),
    ("run_hamner2013_subject04/run300_grf.mot", "numbered", "feet", 2, 100),
    *[
        (f"run_hamner2013_subject04/raw/run{v}_grf.mot", "prefix_rl", "feet", 2, 2000)
        for v in (200, 300, 400, 500)
    ],
    ("walk_opencap_laiarnold_subject6/walking1_forces.mot", "prefix_rl", "feet", 2, 2000),
    ("walk_camargo2021/levelground_ccw_fast_01_01_grf.mot", "numbered", "plates", 6, 200),
    ("sprint_ja1gait35/JA1Gait35_grf.mot", "numbered", "plates", 8, 250),
    *[
        (f"walk_opencap_subject4/ID/walking{t}_grf.mot", "numbered", "feet", 2, 100)
        for t in ("1", "2", "4", "TI1", "TI2", "TI3", "TO1", "TO2", "TO3", "TS1", "TS2", "TS3")
    ],
]


def _reactions(time_s, sets, layout="plates"):
    return GroundReactions(None, "derived", layout, tuple(sets), time_s, np.ones(time_s.shape[0], dtype=bool))


def _force_set(label, force_n, cop_m=None, torque_nm=None):
    n = force_n.shape[0]
    return ForceSet(
        label,
        force_n,
        np.zeros((n, 3)) if cop_m is None else cop_m,
        np.zeros((n, 3)) if torque_nm is None else torque_nm,
    )


def test_real_grf_file_list_is_complete(real_data):
    found = {
        p.relative_to(real_data).as_posix() for p in real_data.rglob("*.mot") if "_ik" not in p.name.lower()
    }
    assert found == {row[0] for row in REAL_GRF}


@pytest.mark.parametrize(("relpath", "scheme", "layout", "n_sets", "rate_hz"), REAL_GRF)
def test_every_real_grf_reads(real_data, relpath, scheme, layout, n_sets, rate_hz):
    grf = read_grf(real_data / relpath)
    assert (grf.scheme, grf.layout, len(grf.sets), grf.rate_hz) == (scheme, layout, n_sets, rate_hz)
    assert grf.labels == (("r", "l") if layout == "feet" else tuple(str(k + 1) for k in range(n_sets)))
    for s in grf.sets:
        assert s.force_n.shape == s.cop_m.shape == s.torque_nm.shape == (grf.time_s.shape[0], 3)
    peaks = [s.force_n[:, 1].max() for s in grf.sets]
    assert max(peaks) > 600  # every recording has a loaded stance


@pytest.mark.parametrize(
    ("relpath", "mass_kg", "lo_bw", "hi_bw"),
    [
        ("run_hamner2010_subject02/subject02_running_grf.mot", 65.9, 2.3, 2.7),  # SOURCES: about 2.5 BW
        ("sprint_ja1gait35/JA1Gait35_grf.mot", 68.0, 3.4, 3.8),  # SOURCES: about 3.6 BW
        ("walk_gait2392_subject01/subject01_walk1_grf.mot", 72.6, 1.0, 1.3),  # walking: 1.1-1.2 BW
    ],
)
def test_peak_vertical_force_is_plausible(real_data, relpath, mass_kg, lo_bw, hi_bw):
    grf = read_grf(real_data / relpath)
    peak_bw = max(s.force_n[:, 1].max() for s in grf.sets) / (mass_kg * G)
    assert lo_bw < peak_bw < hi_bw


def test_legacy_hamner_columns_map_to_the_right_sets(real_data):
    """Values hand-read from the last row of the file, which also repeats 23 coordinates before the forces."""
    grf = read_grf(real_data / "run_hamner2010_subject02/subject02_running_grf.mot")
    np.testing.assert_array_equal(grf["l"].force_n[-1], [-3.82296806, -5.77199436, 0.72146235])
    np.testing.assert_array_equal(grf["l"].cop_m[-1], [0.68856174, -0.0075, -0.21078466])
    np.testing.assert_array_equal(grf["l"].torque_nm[-1], [-2.54069627, -4.51589926, -6.78151874])
    np.testing.assert_array_equal(grf["r"].force_n[-1], 0.0)


@pytest.mark.parametrize(
    ("names", "scheme", "labels"),
    [
        (
            ["1_ground_force_v", "ground_force_v", "1_ground_force_p", "ground_force_p"],
            "prefix_number",
            ("r", "l"),
        ),
        (
            ["ground_force_l_v", "ground_force_r_v", "ground_force_l_p", "ground_force_r_p"],
            "suffix_rl",
            ("r", "l"),
        ),
        (
            ["L_ground_force_v", "R_ground_force_v", "L_ground_force_p", "R_ground_force_p"],
            "prefix_rl",
            ("r", "l"),
        ),
        (
            ["ground_force_2_v", "ground_force_1_v", "ground_force_2_p", "ground_force_1_p"],
            "numbered",
            ("r", "l"),
        ),
    ],
)
def test_schemes_map_columns_in_any_order(tmp_path, names, scheme, labels):
    """The second name in each list is the right foot; its columns hold 1..6, the left foot's 11..16."""
    columns, row = [], []
    for name, base in zip(names, (10, 0, 13, 3), strict=True):
        for k, axis in enumerate("xyz"):
            columns.append(f"{name}{axis}")
            row.append(base + k + 1)
    path = write_storage(
        tmp_path / "g.mot", columns, np.array([0.0, 0.01]), np.array([row, row]), in_degrees=False, name="g"
    )
    grf = read_grf(path)
    assert (grf.scheme, grf.labels) == (scheme, labels)
    np.testing.assert_array_equal(grf["r"].force_n[0], [1, 2, 3])
    np.testing.assert_array_equal(grf["r"].cop_m[0], [4, 5, 6])
    np.testing.assert_array_equal(grf["l"].force_n[0], [11, 12, 13])
    np.testing.assert_array_equal(grf["l"].torque_nm, 0.0)  # no torque columns -> zeros


def test_torque_and_moment_names(tmp_path):
    cols = [f"ground_force_{q}" for q in ("vx", "vy", "vz", "px", "py", "pz")] + [
        "ground_torque_x",
        "ground_torque_y",
        "ground_torque_z",
    ]
    cols += [f"1_ground_force_{q}" for q in ("vx", "vy", "vz", "px", "py", "pz")] + [
        "1_ground_moment_x",
        "1_ground_moment_y",
        "1_ground_moment_z",
    ]
    values = np.arange(1.0, 19.0)[None].repeat(2, axis=0)
    grf = read_grf(
        write_storage(tmp_path / "t.mot", cols, np.array([0.0, 1.0]), values, in_degrees=False, name="t")
    )
    np.testing.assert_array_equal(grf["r"].torque_nm[0], [7, 8, 9])
    np.testing.assert_array_equal(grf["l"].torque_nm[0], [16, 17, 18])


def test_layout_override(real_data):
    grf = read_grf(real_data / "walk_opencap_subject4/ID/walking1_grf.mot", layout="plates")
    assert grf.layout == "plates" and grf.labels == ("1", "2")
    with pytest.raises(GaitDataError, match="exactly 2 force sets, found 8"):
        read_grf(real_data / "sprint_ja1gait35/JA1Gait35_grf.mot", layout="feet")
    with pytest.raises(GaitDataError, match="layout must be"):
        read_grf(real_data / "sprint_ja1gait35/JA1Gait35_grf.mot", layout="foot")


@pytest.mark.parametrize(
    ("columns", "needle"),
    [
        (["pelvis_tx", "knee_angle_r"], "no ground force columns"),
        (
            ["ground_force_r_vx", "ground_force_r_vy", "ground_force_r_vz", "ground_force_r_px"],
            "lacks components",
        ),
        (["ground_force_1_vx", "R_ground_force_vy"], "mixed force column naming"),
    ],
)
def test_bad_grf_files(tmp_path, columns, needle):
    path = write_storage(
        tmp_path / "b.mot",
        columns,
        np.array([0.0, 1.0]),
        np.ones((2, len(columns))),
        in_degrees=False,
        name="b",
    )
    with pytest.raises(GaitDataError, match=needle):
        read_grf(path)


def test_resample_3hz_sinusoid_1000_to_100hz_matches_analytic():
    t = np.arange(0, 2.0005, 0.001)
    force = np.zeros((t.size, 3))
    force[:, 1] = 800 + 100 * np.sin(2 * np.pi * 3 * t)
    force[:, 0] = 50 * np.sin(2 * np.pi * 130 * t)  # would alias to 30 Hz without the low-pass
    grf = _reactions(t, [_force_set("r", force), _force_set("l", force * 0.5)], layout="feet")
    target = np.arange(0.0005, 1.99, 0.01)  # between source samples, to exercise the interpolation
    out = resample_grf(grf, target)
    truth = 800 + 100 * np.sin(2 * np.pi * 3 * target)
    # Linear interpolation of a 3 Hz sine at 1 ms spacing errs by at most A*w^2*dt^2/8 = 0.0044 N.
    np.testing.assert_allclose(out["r"].force_n[:, 1], truth, rtol=0, atol=0.01)
    np.testing.assert_allclose(out["l"].force_n[:, 1], truth / 2, rtol=0, atol=0.01)
    assert np.abs(out["r"].force_n[:, 0]).max() < 0.05  # 130 Hz removed (naive sampling leaves ~50 N)
    assert out.valid.all() and out.rate_hz == 100


def test_resample_cop_is_exact_for_constant_cop():
    t = np.arange(0, 1.0005, 1 / 600)
    fy = np.clip(900 * np.sin(2 * np.pi * 1.5 * t), 0, None)  # stance bumps separated by zero-force swing
    force = np.stack([0.1 * fy, fy, -0.05 * fy], axis=1)
    cop = np.where((fy > 0)[:, None], [0.31, 0.002, -0.17], [5.0, 7.0, -9.0])  # junk COP in swing
    grf = _reactions(t, [_force_set("r", force, cop), _force_set("l", force, cop)], layout="feet")
    target = np.arange(0.0, 1.0, 1 / 100)
    out = resample_grf(grf, target)
    loaded = np.abs(out["r"].force_n[:, 1]) > 20
    assert 20 < loaded.sum() < target.size - 10
    np.testing.assert_allclose(
        out["r"].cop_m[loaded], np.broadcast_to([0.31, 0.002, -0.17], (loaded.sum(), 3)), atol=1e-12
    )
    np.testing.assert_array_equal(out["r"].cop_m[~loaded], 0.0)


def test_resample_same_rate_returns_same_samples(real_data):
    grf = read_grf(real_data / "walk_opencap_subject4/ID/walking1_grf.mot")
    same = resample_grf(grf, grf.time_s)
    for a, b in zip(grf.sets, same.sets, strict=True):
        np.testing.assert_array_equal(a.force_n, b.force_n)
        np.testing.assert_array_equal(a.cop_m, b.cop_m)
    part = resample_grf(grf, grf.time_s[10:50] + 5e-7)
    np.testing.assert_array_equal(part["l"].force_n, grf["l"].force_n[10:50])


def test_resample_outside_record(real_data):
    """gait2392: GRF covers 0-2.5 s, IK 0.5-4.0 s (SOURCES.md)."""
    folder = real_data / "walk_gait2392_subject01"
    grf = read_grf(folder / "subject01_walk1_grf.mot")
    ik_time = read_storage(folder / "subject01_walk1_ik.mot").time_s
    with pytest.raises(GaitDataError, match="outside the GRF record"):
        resample_grf(grf, ik_time)
    out = resample_grf(grf, ik_time, allow_extrapolate=True)
    inside = ik_time <= 2.5 + 1e-9
    np.testing.assert_array_equal(out.valid, inside)
    np.testing.assert_array_equal(out["r"].force_n[~inside], 0.0)
    # 600 -> 60 Hz with a 24 Hz low-pass keeps the walking peaks within a few per cent.
    for side in "rl":
        assert out[side].force_n[:, 1].max() == pytest.approx(grf[side].force_n[:, 1].max(), rel=0.05)


def test_combine_two_plates_under_one_foot_by_hand():
    force = np.array([[[10.0, 300.0, 0.0]], [[-20.0, 100.0, 5.0]]])  # [P=2, N=1, 3]
    cop = np.array([[[0.2, 0.0, 0.1]], [[0.6, 0.0, -0.3]]])
    torque = np.array([[[0.0, 2.0, 0.0]], [[0.0, -1.0, 0.0]]])
    out = combine_force_sets("r", force, cop, torque)
    np.testing.assert_allclose(out.force_n[0], [-10.0, 400.0, 5.0])
    np.testing.assert_allclose(
        out.cop_m[0], [(300 * 0.2 + 100 * 0.6) / 400, 0.0, (300 * 0.1 - 100 * 0.3) / 400]
    )
    # Net moment about the ground origin is preserved: sum p_i x F_i + T_i == p x F + T.
    total = (np.cross(cop, force) + torque).sum(axis=0)[0]
    np.testing.assert_allclose(np.cross(out.cop_m[0], out.force_n[0]) + out.torque_nm[0], total, atol=1e-12)
    np.testing.assert_allclose(out.torque_nm[0, [0, 2]], 0.0, atol=1e-12)  # same-plane plates: vertical only


def test_assign_plates_synthetic():
    """Foot r walks along x = 0..1.2 m at z=+0.1, foot l at z=-0.1; three plates get alternating contacts."""
    t = np.arange(0, 1.2, 0.005)
    n = t.size
    kin_t = t[::4]
    calcn_r = np.stack([kin_t, np.zeros_like(kin_t), np.full_like(kin_t, 0.1)], axis=1)
    calcn_l = calcn_r * [1, 1, -1]
    plates, owners = [], []
    for p, (start, stop, side) in enumerate([(0.0, 0.3, "r"), (0.25, 0.6, "l"), (0.65, 1.0, "r")]):
        fy = np.where((t > start) & (t < stop), 700 * np.sin(np.pi * (t - start) / (stop - start)), 0.0)
        mid = (start + stop) / 2
        cop = np.tile([mid + 0.1, 0.0, 0.12 if side == "r" else -0.12], (n, 1))
        plates.append(
            _force_set(
                str(p + 1),
                np.stack([0.2 * fy, fy, 0 * fy], axis=1),
                cop,
                np.stack([0 * fy, 0.01 * fy, 0 * fy], axis=1),
            )
        )
        owners.append(side)
    feet = assign_plates_to_feet(_reactions(t, plates), kin_t, calcn_r, calcn_l)
    assert feet.layout == "feet" and feet.labels == ("r", "l") and feet.valid.all()
    for side in "rl":
        expected = sum(pl.force_n for pl, o in zip(plates, owners, strict=True) if o == side)
        np.testing.assert_allclose(feet[side].force_n, expected, atol=1e-9)
    overlap = (t > 0.25) & (t < 0.3)  # both feet loaded: each keeps its own plate's COP
    np.testing.assert_allclose(feet["r"].cop_m[overlap, 2], 0.12)
    np.testing.assert_allclose(feet["l"].cop_m[overlap, 2], -0.12)
    np.testing.assert_allclose(
        feet["r"].torque_nm + feet["l"].torque_nm, sum(pl.torque_nm for pl in plates), atol=1e-9
    )


def test_assign_contact_outside_kinematics_is_invalid():
    t = np.arange(0, 1.0, 0.01)
    fy = np.where(t < 0.2, 500.0, 0.0) + np.where(t > 0.6, 500.0, 0.0)
    plate = _force_set("1", np.stack([0 * fy, fy, 0 * fy], axis=1), np.tile([0.0, 0.0, 0.1], (t.size, 1)))
    kin_t = np.linspace(0.4, 1.0, 7)
    calcn = np.tile([0.0, 0.0, 0.1], (7, 1))
    feet = assign_plates_to_feet(_reactions(t, [plate]), kin_t, calcn, calcn * [1, 1, -1])
    np.testing.assert_array_equal(feet.valid, t >= 0.2)
    np.testing.assert_array_equal(feet["r"].force_n[:, 1], np.where(t > 0.6, 500.0, 0.0))
    np.testing.assert_array_equal(feet["l"].force_n, 0.0)


def test_assign_real_sprint_plates_with_opensim_fk(real_data):
    """SOURCES.md: plates 2 and 7 are hit by the right foot, 4 and 8 by the left (checked with OpenSim FK)."""
    opensim = pytest.importorskip("opensim")
    folder = real_data / "sprint_ja1gait35"
    ik = read_storage(folder / "JA1Gait35_ik.mot")
    model = opensim.Model(str(folder / "optimized_scale_and_markers.osim"))
    state = model.initSystem()
    coords = model.getCoordinateSet()
    frames = np.arange(0, ik.n_frames, 6)
    calcn = {"calcn_r": [], "calcn_l": []}
    for i in frames:
        for k, name in enumerate(ik.columns):
            coords.get(name).setValue(state, float(ik.values[i, k]), False)
        model.realizePosition(state)
        for body, out in calcn.items():
            v = model.getBodySet().get(body).getPositionInGround(state)
            out.append([v.get(0), v.get(1), v.get(2)])
    grf = read_grf(folder / "JA1Gait35_grf.mot")
    feet = assign_plates_to_feet(
        grf, ik.time_s[frames], np.array(calcn["calcn_r"]), np.array(calcn["calcn_l"])
    )
    np.testing.assert_allclose(feet["r"].force_n, grf["2"].force_n + grf["7"].force_n, atol=1e-9)
    np.testing.assert_allclose(feet["l"].force_n, grf["4"].force_n + grf["8"].force_n, atol=1e-9)
    assert feet.valid.all()
    peak_bw = max(feet[s].force_n[:, 1].max() for s in "rl") / (68.0 * G)
    assert 3.4 < peak_bw < 3.8
