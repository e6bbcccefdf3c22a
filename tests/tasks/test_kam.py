"""Knee adduction moment: the sign convention on hand-built cases, agreement with a computation from
OpenSim's own knee positions on a real OpenCap walking trial, KAM peaks of a stance, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from gaitjax.data.errors import GaitDataError
from gaitjax.data.grf import read_grf
from gaitjax.data.osim import parse_osim
from gaitjax.data.storage import read_storage
from gaitjax.skeleton.tree import build_skeleton
from gaitjax.tasks.kam import (
    joint_moments_bw_bh_percent,
    kam_peaks,
    knee_adduction_moment,
    knee_joint_names,
    locate_knee_centres,
    resample_stance,
)

OPENCAP = "walk_opencap_subject4"
HEIGHT_M = 1.70  # not recorded for OpenCap subject 4; both computations below use the same value
FRAME_STEP = 5  # every 5th of the 131 frames keeps the OpenSim loop short


def test_sign_convention_by_hand():
    # Knee 0.5 m above a COP 5 cm medial to it, 700 N straight up: the force line passes medial to the knee,
    # an adduction moment. (knee - COP) x F, x component = r_y F_z - r_z F_y with r = knee - COP:
    # left: r = (0, 0.5, -0.05) -> 0 - (-0.05)(700) = 35 N·m; right (medial is -z): r_z = +0.05 -> -35 N·m,
    # negated -> 35 N·m. 35 / (70 kg x 9.81 x 1.75 m) x 100 = 2.91248... %BW·BH on both legs.
    expected = 35.0 / (70.0 * 9.81 * 1.75) * 100.0
    knee = np.array([[[0.0, 0.5, 0.1], [0.0, 0.5, -0.1]]])
    cop_medial = np.array([[[0.0, 0.0, 0.05], [0.0, 0.0, -0.05]]])
    cop_lateral = np.array([[[0.0, 0.0, 0.15], [0.0, 0.0, -0.15]]])
    grf = np.array([[[0.0, 700.0, 0.0], [0.0, 700.0, 0.0]]])
    np.testing.assert_allclose(
        knee_adduction_moment(grf, cop_medial, 70.0, 1.75, knee_pos_m=knee), [[expected] * 2]
    )
    np.testing.assert_allclose(
        knee_adduction_moment(grf, cop_lateral, 70.0, 1.75, knee_pos_m=knee), [[-expected] * 2]
    )
    # Knee 0.5 m straight above the COP, r = knee - COP = (0, 0.5, 0), force with a medial shear of 100 N
    # (+z on the left, -z on the right) and 10 N forward: M = r x F = (r_y F_z, 0, -r_y F_x).
    # Left: (50, 0, -5) N·m. Right: (-50, 0, -5) N·m, x negated -> (50, 0, -5): only x is mirrored.
    knee_pos = np.array([[[0.0, 0.5, 0.2], [0.0, 0.5, -0.2]]])
    cop = np.array([[[0.0, 0.0, 0.2], [0.0, 0.0, -0.2]]])
    grf = np.array([[[10.0, 0.0, -100.0], [10.0, 0.0, 100.0]]])
    moment = joint_moments_bw_bh_percent(knee_pos, cop, grf, 70.0, 1.75)
    scale = 100.0 / (70.0 * 9.81 * 1.75)
    np.testing.assert_allclose(
        moment[0], scale * np.array([[50.0, 0.0, -5.0], [50.0, 0.0, -5.0]]), atol=1e-12
    )


@pytest.fixture(scope="module")
def opencap_walk(real_data):
    """OpenSim's knee centres and our inputs on every FRAME_STEP-th frame of walking1."""
    opensim = pytest.importorskip("opensim")
    folder = real_data / OPENCAP
    osim_path = folder / "optimized_scale_and_markers.osim"
    ik = read_storage(folder / "IK" / "walking1_ik.mot")
    grf = read_grf(folder / "ID" / "walking1_grf.mot")
    assert ik.in_degrees is False
    np.testing.assert_allclose(ik.time_s, grf.time_s)  # both 100 Hz, t = 0..1.30 s
    frames = np.arange(0, ik.n_frames, FRAME_STEP)

    opensim.Logger.setLevelString("error")
    model = opensim.Model(str(osim_path))
    state = model.initSystem()
    coords = model.getCoordinateSet()
    names = [coords.get(i).getName() for i in range(coords.getSize())]
    # Knee joints read off the .osim by eye: walker_knee_r / walker_knee_l (femur -> tibia).
    knees = [model.getJointSet().get(name) for name in ("walker_knee_r", "walker_knee_l")]
    q_used, knee_osim = [], []
    for k in frames:
        for column, value in zip(ik.columns, ik.values[k], strict=True):
            coords.get(column).setValue(state, float(value), False)
        model.realizePosition(state)
        q_used.append([coords.get(n).getValue(state) for n in names])
        centres = [j.getChildFrame().getPositionInGround(state) for j in knees]
        knee_osim.append([[p.get(i) for i in range(3)] for p in centres])
    return dict(
        mass_kg=model.getTotalMass(state),
        names=names,
        q=np.array(q_used),
        knee_osim_m=np.array(knee_osim),
        grf_n=np.stack([grf["r"].force_n, grf["l"].force_n], axis=1)[frames],
        cop_m=np.stack([grf["r"].cop_m, grf["l"].cop_m], axis=1)[frames],
        skeleton=build_skeleton(parse_osim(osim_path)),
    )


def test_kam_matches_opensim_knee_positions_and_explicit_cross_product(opencap_walk):
    d = opencap_walk
    skeleton = d["skeleton"]
    q = d["q"][:, [d["names"].index(n) for n in skeleton.coordinate_names]]  # OpenSim order -> model order
    assert knee_joint_names(skeleton) == ("walker_knee_r", "walker_knee_l")
    np.testing.assert_allclose(locate_knee_centres(skeleton, q), d["knee_osim_m"], rtol=0, atol=1e-9)

    kam = knee_adduction_moment(
        d["grf_n"], d["cop_m"], d["mass_kg"], HEIGHT_M, skeleton=skeleton, coordinates_rad=q
    )

    # Independent: lever arm r = knee - COP from OpenSim, M_x = r_y F_z - r_z F_y, right leg negated.
    r = d["knee_osim_m"] - d["cop_m"]
    f = d["grf_n"]
    m_x = r[..., 1] * f[..., 2] - r[..., 2] * f[..., 1]
    expected = m_x / (d["mass_kg"] * 9.81 * HEIGHT_M) * 100.0 * np.array([-1.0, 1.0])
    assert kam.shape == (len(d["q"]), 2)
    np.testing.assert_allclose(kam, expected, rtol=0, atol=1e-6)
    # Plausibility of the sign on real walking: mid-stance KAM of a healthy knee is positive, 1-5 %BW·BH.
    loaded = f[..., 1] > 0.5 * d["mass_kg"] * 9.81
    assert loaded[:, 0].any() and loaded[:, 1].any()
    assert 1.0 < kam[loaded].mean() < 5.0


def test_kam_peaks_of_a_stance():
    # Stance on frames 10..60 (51 frames): resampled to 101 points, point p is frame 10 + p/2.
    vgrf = np.zeros(80)
    vgrf[10:61] = 9.0
    kam = np.zeros(80)
    kam[10 + 12] = 3.0  # 24 % of stance: the first peak
    kam[10 + 38] = 2.5  # 76 %: the second peak
    kam[10 + 25] = 4.0  # exactly 50 %: in neither window; its neighbours at 49 % and 51 % interpolate to 2.0
    kam[70] = 9.0  # swing: ignored
    (peaks,) = kam_peaks(kam, vgrf)
    assert (peaks.start, peaks.end) == (10, 61)
    assert peaks.first_peak_bw_bh_percent == pytest.approx(3.0)
    assert peaks.second_peak_bw_bh_percent == pytest.approx(2.5)
    assert peaks.curve_bw_bh_percent.shape == (101,)
    assert peaks.curve_bw_bh_percent[50] == 4.0 and peaks.curve_bw_bh_percent[49] == pytest.approx(2.0)
    # Stances cut by the start or end of the record are skipped.
    assert kam_peaks(kam[30:], vgrf[30:]) == []
    assert kam_peaks(kam[:40], vgrf[:40]) == []


def test_resample_stance_is_exact_on_a_line():
    values = 2.0 * np.arange(30) + 1.0
    np.testing.assert_allclose(resample_stance(values, 5, 26), 2.0 * np.linspace(5, 25, 101) + 1.0)
    with pytest.raises(GaitDataError, match="at least 2 frames"):
        resample_stance(values, 5, 6)


def test_bad_input(real_data):
    knee = np.zeros((4, 2, 3))
    good = np.ones((4, 2, 3))
    with pytest.raises(GaitDataError, match=r"GRF must be \[4, 2, 3\]"):
        knee_adduction_moment(np.ones((4, 3)), good, 70.0, 1.75, knee_pos_m=knee)
    with pytest.raises(GaitDataError, match=r"COP must be \[4, 2, 3\]"):
        knee_adduction_moment(good, np.ones((5, 2, 3)), 70.0, 1.75, knee_pos_m=knee)
    with pytest.raises(GaitDataError, match="mass_kg must be a positive"):
        knee_adduction_moment(good, good, 0.0, 1.75, knee_pos_m=knee)
    with pytest.raises(GaitDataError, match="either knee_pos_m"):
        knee_adduction_moment(good, good, 70.0, 1.75)
    skeleton = build_skeleton(parse_osim(real_data / OPENCAP / "optimized_scale_and_markers.osim"))
    with pytest.raises(GaitDataError, match="either knee_pos_m"):
        knee_adduction_moment(good, good, 70.0, 1.75, skeleton=skeleton)
    with pytest.raises(GaitDataError, match=r"coordinates must be \[T, 35\]"):
        knee_adduction_moment(good, good, 70.0, 1.75, skeleton=skeleton, coordinates_rad=np.zeros((4, 33)))
    with pytest.raises(GaitDataError, match="1-D arrays"):
        kam_peaks(np.zeros(10), np.zeros(11))
