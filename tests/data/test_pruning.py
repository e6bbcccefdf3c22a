"""Each pruning rule on one input that triggers it and one that does not; splitting and window starts."""

from __future__ import annotations

import numpy as np
import pytest

from gaitjax.data import channels as ch
from gaitjax.data import preprocess, pruning

IDX = {n: i for i, n in enumerate(ch.OSIM_DOF_COLUMNS)}


def _smooth_trial(n_t=400, fs=100.0):
    """Running-like coordinates: sinusoids well below 2000 °/s (knee peak 1.2 rad · 2π·1.4 Hz ≈ 600 °/s)."""
    t = np.arange(n_t) / fs
    coords = np.zeros((n_t, 23))
    w = 2 * np.pi * 1.4
    coords[:, IDX["pelvis_tx"]] = 3.0 * t
    coords[:, IDX["pelvis_ty"]] = 1.0 + 0.03 * np.sin(2 * w * t)
    coords[:, IDX["hip_flexion_r"]] = 0.4 + 0.6 * np.sin(w * t)
    coords[:, IDX["hip_flexion_l"]] = 0.4 - 0.6 * np.sin(w * t)
    coords[:, IDX["knee_angle_r"]] = -0.6 - 0.6 * np.sin(w * t + 1)
    coords[:, IDX["knee_angle_l"]] = -0.6 + 0.6 * np.sin(w * t + 1)
    coords[:, IDX["lumbar_rotation"]] = 0.1 * np.sin(w * t)
    return coords


def test_trunk_rotation():
    assert pruning.trunk_rotation_reason(np.full(100, np.radians(50))).startswith(pruning.REASON_TRUNK)
    assert pruning.trunk_rotation_reason(np.full(100, np.radians(-50))) is not None  # |mean|
    assert pruning.trunk_rotation_reason(np.full(100, np.radians(40))) is None
    # a large swing that averages out is not "consistently" rotated
    assert pruning.trunk_rotation_reason(np.radians(60) * np.sin(np.linspace(0, 2 * np.pi, 101))) is None


def test_heading_range():
    assert pruning.heading_range_reason(np.radians(46)).startswith(pruning.REASON_HEADING)
    assert pruning.heading_range_reason(np.radians(44)) is None


def test_heading_range_on_trials_via_yaw_alignment():
    n = 200
    turning = np.zeros((n, 3))
    turning[:, 2] = np.linspace(0, np.radians(90), n)  # a 90° turn
    assert pruning.heading_range_reason(preprocess.yaw_alignment(turning)[1]) is not None
    backwards = np.zeros((n, 3))
    backwards[:, 2] = np.pi + 0.2 * np.sin(np.linspace(0, 6, n))  # crosses ±180°, but only ±11.5°
    assert pruning.heading_range_reason(preprocess.yaw_alignment(backwards)[1]) is None


def test_trial_length():
    assert pruning.trial_length_reason(151, 100).startswith(pruning.REASON_SHORT)
    assert pruning.trial_length_reason(152, 100) is None
    assert pruning.trial_length_reason(181, 120) is not None  # 150.8 frames at 100 Hz
    assert pruning.trial_length_reason(183, 120) is None  # 152.5
    assert pruning.trial_length_reason(120, 100, evaluation=True) is None
    assert pruning.trial_length_reason(19, 100, evaluation=True) is not None


def _stance_trial(n_t=1000):
    calcn = np.zeros((n_t, 2, 3))
    cop = calcn + [0.1, 0.0, 0.02]
    grf = np.zeros((n_t, 2, 3))
    grf[:, :, 1] = 10.0  # 700 N at 70 kg: stance everywhere
    return cop, calcn, grf


def test_cop_distance():
    cop, calcn, grf = _stance_trial()
    assert pruning.cop_distance_reason(cop, calcn, grf, 70.0) is None
    # 3 frames with all 3 components 0.4 m off: count 3·3/3 = 3 > 0.002·1000 = 2
    cop[:3, 0] += 0.4
    assert pruning.cop_distance_reason(cop, calcn, grf, 70.0).startswith(pruning.REASON_COP)
    # 2 such frames: count 2, not > 2
    cop, calcn, grf = _stance_trial()
    cop[:2, 0] += 0.4
    assert pruning.cop_distance_reason(cop, calcn, grf, 70.0) is None
    # far COP during swing (F_vy·mass = 35 N ≤ 50 N) does not count
    cop, calcn, grf = _stance_trial()
    cop[:10, 0] += 0.4
    grf[:10, 0, 1] = 0.5
    assert pruning.cop_distance_reason(cop, calcn, grf, 70.0) is None


def test_cop_distance_counts_components():
    cop, calcn, grf = _stance_trial()
    cop[:6, 0, 0] += 0.4  # one component on 6 frames: 6/3 = 2, not > 2
    assert pruning.cop_distance_reason(cop, calcn, grf, 70.0) is None
    cop[6, 0, 0] += 0.4  # 7/3 > 2
    assert pruning.cop_distance_reason(cop, calcn, grf, 70.0) is not None


@pytest.mark.parametrize(
    "column, jump, paper, released",
    [
        ("knee_angle_r", 0.4, True, True),  # 40 rad/s = 2292 °/s
        ("knee_angle_r", -0.4, True, False),  # the released rule is signed: drops are missed
        ("knee_angle_r", 0.3, False, False),  # 1719 °/s
        # 3-DoF joint; the released rule looks at signed 6D-component steps: at flexion ≈ 0.98 rad a +0.4 rad
        # step moves no component up by more than 0.349 (= deg2rad(2000)/100), a −0.6 rad step raises cos
        ("hip_flexion_l", 0.4, True, False),
        ("hip_flexion_l", -0.6, True, True),
        ("hip_flexion_l", 0.3, False, False),
        ("pelvis_ty", 0.05, False, True),  # a 5 cm step: 500 m/s² (released pelvis-acceleration rule only)
    ],
)
def test_jitter_rules(column, jump, paper, released):
    coords = _smooth_trial()
    assert not pruning.jitter_frames(coords).any()
    assert not pruning.jitter_frames(coords, rule="released").any()
    coords[200:, IDX[column]] += jump  # a step between frames 199 and 200
    bad_paper = pruning.jitter_frames(coords)
    bad_released = pruning.jitter_frames(coords, rule="released")
    assert bad_paper.any() == paper and bad_released.any() == released
    if paper:
        np.testing.assert_array_equal(np.flatnonzero(bad_paper), [200])


def test_split_at_jitter_hand_bounds():
    bad = np.zeros(500, dtype=bool)
    bad[200] = True
    assert pruning.split_at_jitter(bad) == [(0, 198), (202, 500)]
    assert pruning.split_at_jitter(bad, trim_ends=True) == [(2, 198), (202, 498)]
    bad[120] = True  # the first piece becomes [0, 118): shorter than a window, dropped
    assert pruning.split_at_jitter(bad) == [(202, 500)]
    assert pruning.split_at_jitter(np.zeros(500, dtype=bool)) == [(0, 500)]


def test_available_window_starts():
    valid = np.ones(160, dtype=bool)
    np.testing.assert_array_equal(pruning.available_window_starts(valid), np.arange(11))
    valid[5] = False
    np.testing.assert_array_equal(pruning.available_window_starts(valid), np.arange(6, 11))
    valid[155] = False
    assert pruning.available_window_starts(valid).size == 0
    assert pruning.available_window_starts(np.ones(149, dtype=bool)).size == 0
    np.testing.assert_array_equal(pruning.available_window_starts(np.ones(150, dtype=bool)), [0])


def test_pad_to_window():
    x = np.arange(120 * 3, dtype=np.float32).reshape(120, 3) + 1
    padded, mask = pruning.pad_to_window(x)
    assert padded.shape == (150, 3) and padded.dtype == np.float32
    np.testing.assert_array_equal(padded[:120], x)
    np.testing.assert_array_equal(padded[120:], 0)
    assert mask.sum() == 120 and mask[:120].all()


def test_prune_trial_keeps_clean_and_reports_every_failure():
    coords = _smooth_trial()
    cop, calcn, grf = _stance_trial(coords.shape[0])
    kept = pruning.prune_trial(coords, grf, cop, calcn, 70.0, heading_range_rad=0.1)
    assert kept.kept and kept.reasons == () and kept.pieces == ((0, 400),)
    coords[:, IDX["lumbar_rotation"]] = np.radians(60)
    cop[:10] += 1.0
    bad = pruning.prune_trial(coords, grf, cop, calcn, 70.0, heading_range_rad=1.0)
    assert not bad.kept
    codes = [r.split(":")[0] for r in bad.reasons]
    assert codes == [pruning.REASON_TRUNK, pruning.REASON_HEADING, pruning.REASON_COP]


def test_prune_trial_evaluation_keeps_short_trials():
    coords = _smooth_trial(120)
    cop, calcn, grf = _stance_trial(120)
    train = pruning.prune_trial(coords, grf, cop, calcn, 70.0, 0.0)
    assert not train.kept and train.reasons[0].startswith(pruning.REASON_SHORT)
    ev = pruning.prune_trial(coords, grf, cop, calcn, 70.0, 0.0, evaluation=True)
    assert ev.kept and ev.pieces == ((0, 120),)


def test_prune_trial_jitter_leaves_no_window():
    coords = _smooth_trial(300)
    coords[150:, IDX["knee_angle_l"]] += 0.5
    cop, calcn, grf = _stance_trial(300)
    out = pruning.prune_trial(coords, grf, cop, calcn, 70.0, 0.0)
    assert out.pieces == () and out.reasons[0].startswith(pruning.REASON_NO_WINDOW)


def test_real_running_trial_passes_the_kinematic_rules(real_data):
    lines = (real_data / "run_hamner2013_subject04" / "run300_ik.mot").read_text().splitlines()
    end = next(i for i, line in enumerate(lines) if line.strip() == "endheader")
    names = lines[end + 1].split()
    data = np.array([[float(v) for v in line.split()] for line in lines[end + 2 :] if line.strip()])
    coords = data[:, [names.index(c) for c in ch.OSIM_DOF_COLUMNS]]  # inDegrees=no
    assert pruning.trunk_rotation_reason(coords[:, IDX["lumbar_rotation"]]) is None
    pelvis = coords[:, [IDX[c] for c in ch.JOINTS_3D["pelvis"]]]
    assert pruning.heading_range_reason(preprocess.yaw_alignment(pelvis)[1]) is None
    assert pruning.trial_length_reason(coords.shape[0], 100) is None  # 216 frames
    assert not pruning.jitter_frames(coords).any()
    assert not pruning.jitter_frames(coords, rule="released").any()
