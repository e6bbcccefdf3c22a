"""Gait-cycle segmentation: hand-counted heel strikes on real GRF files, exact indices and duration limits on
synthetic square stance pulses, and clear errors for unusable input."""

from __future__ import annotations

import numpy as np
import pytest

from gaitjax.data.errors import GaitDataError
from gaitjax.data.grf import read_grf
from gaitjax.evaluation.gait_cycles import (
    SPEC_THRESHOLDS,
    WIDE_THRESHOLDS,
    find_gait_events,
    min_trial_frames,
    segment_both_feet,
    segment_gait_cycles,
)


def pulses(n_frames: int, stances: list[tuple[int, int]], level: float = 10.0) -> np.ndarray:
    """[n_frames] vertical force (N/kg): `level` on each [start, end), 0 elsewhere."""
    vgrf = np.zeros(n_frames)
    for start, end in stances:
        vgrf[start:end] = level
    return vgrf


# ---------------------------------------------------------------------------------------------------------
# Real data. Hand counts: I printed the vertical force of each foot in rows of 20 samples (100 Hz) or every
# 15th sample (600 Hz), found each rise from ~0 N into stance and each fall back, then printed the samples
# around the threshold (1 N/kg x body mass) to read off the first frame above it (heel strike) and the first
# frame at or below it after stance (toe-off). Times are t = time column of that frame.
# ---------------------------------------------------------------------------------------------------------

# Hamner 2013 subject04, 2 m/s treadmill running, 233 frames at 100 Hz from t = 0.20 s; 80.47 kg
# (`raw/_subject.json`), so the threshold is 80.47 N.
HAMNER_MASS_KG = 80.47
# Right (ground_force_1): frame 0 is 0 N (swing), 1 is 48.8 N, 2 is 130.4 N -> heel strike 2 (t = 0.22 s).
# Stance ends at 33: 111.9 N at 32, 80.33 N at 33 (just under 80.47 N). Heel strikes at 79 (59.0 -> 132.7 N,
# t = 0.99 s) and 157 (18.7 -> 88.9 N, t = 1.77 s); toe-offs at 110 (110.9 -> 78.5 N) and 187
# (113.2 -> 78.0 N). Two complete cycles, 77 and 78 frames, stances of 31 frames.
HAMNER_RIGHT = dict(heel_strikes=[2, 79, 157], toe_offs=[33, 110, 187], cycles=[(2, 79), (79, 157)])
# Left (ground_force_2): swing until 40 (15.3 N), 94.3 N at 41 -> heel strike 41 (t = 0.61 s); 117 -> 118
# (54.7 -> 154.1 N, t = 1.38 s); 195 -> 196 (40.8 -> 138.4 N, t = 2.16 s). Toe-offs at 73 (105.4 -> 74.1 N),
# 149 (91.2 -> 55.3 N) and 227 (81.79 N at 226 is still above 80.47 N, 51.2 N at 227).
HAMNER_LEFT = dict(heel_strikes=[41, 118, 196], toe_offs=[73, 149, 227], cycles=[(41, 118), (118, 196)])

# OpenSim's gait2392 subject01 treadmill walking, 1501 frames at 600 Hz from t = 0; 72.6 kg (model), so the
# threshold is 72.6 N.
GAIT2392_MASS_KG = 72.6
# Right (ground_force_*): the trial starts in stance (745 N), so the first event is a toe-off at 88
# (73.3 -> 67.1 N, t = 0.147 s); heel strikes at 381 (71.3 -> 79.4 N, t = 0.635 s) and 1122 (71.6 -> 79.1 N,
# t = 1.870 s); toe-off at 834 (76.5 -> 70.3 N, t = 1.390 s); it ends in stance. One complete cycle of
# 741 frames (1.235 s) with a 453-frame (0.755 s) stance.
GAIT2392_RIGHT = dict(heel_strikes=[381, 1122], toe_offs=[88, 834], cycles=[(381, 1122)])
# Left (1_ground_force_*): starts in swing (20.5 N, rising); heel strikes at 7 (70.4 -> 78.7 N, t = 0.012 s),
# 757 (71.2 -> 79.3 N, t = 1.262 s) and 1486 (71.5 -> 78.7 N, t = 2.477 s); toe-offs at 462 (73.0 -> 66.9 N)
# and 1198 (77.4 -> 71.2 N). Two complete cycles, 750 and 729 frames.
GAIT2392_LEFT = dict(heel_strikes=[7, 757, 1486], toe_offs=[462, 1198], cycles=[(7, 757), (757, 1486)])


@pytest.mark.parametrize(
    "path, mass_kg, rate_hz, expected",
    [
        (
            "run_hamner2013_subject04/run200_grf.mot",
            HAMNER_MASS_KG,
            100,
            {"r": HAMNER_RIGHT, "l": HAMNER_LEFT},
        ),
        (
            "walk_gait2392_subject01/subject01_walk1_grf.mot",
            GAIT2392_MASS_KG,
            600,
            {"r": GAIT2392_RIGHT, "l": GAIT2392_LEFT},
        ),
    ],
    ids=["hamner2013_run200", "gait2392_walk1"],
)
def test_real_trials_match_hand_counts(real_data, path, mass_kg, rate_hz, expected):
    grf = read_grf(real_data / path)
    assert grf.rate_hz == rate_hz
    vgrf = np.stack([grf["r"].force_n[:, 1], grf["l"].force_n[:, 1]], axis=1) / mass_kg
    feet = segment_both_feet(vgrf, rate_hz)
    for side in ("r", "l"):
        want, got = expected[side], feet[side]
        assert got.heel_strikes.tolist() == want["heel_strikes"], side
        assert got.toe_offs.tolist() == want["toe_offs"], side
        assert list(got.cycles) == want["cycles"], side
        # The hand-read times of the heel strikes, within one sample.
        np.testing.assert_allclose(grf.time_s[got.heel_strikes], grf.time_s[want["heel_strikes"]])
        # These gaits are well inside both sets of duration limits.
        assert segment_gait_cycles(vgrf[:, "rl".index(side)], rate_hz, WIDE_THRESHOLDS).cycles == got.cycles


# ---------------------------------------------------------------------------------------------------------
# Synthetic stance pulses with known events.
# ---------------------------------------------------------------------------------------------------------


def test_square_pulses_give_exact_events_and_cycles():
    # Trial starts in stance (no heel strike at 0) and ends in stance (no final toe-off).
    vgrf = pulses(300, [(0, 12), (40, 70), (120, 150), (200, 231), (280, 300)])
    gait = segment_gait_cycles(vgrf, 100.0)
    assert gait.heel_strikes.tolist() == [40, 120, 200, 280]
    assert gait.toe_offs.tolist() == [12, 70, 150, 231]
    assert gait.cycles == ((40, 120), (120, 200), (200, 280))
    assert gait.stances == ((40, 70), (120, 150), (200, 231))
    mask = gait.in_cycle_mask()
    assert mask.sum() == 240 and mask[40] and mask[279] and not mask[39] and not mask[280]


@pytest.mark.parametrize(
    "stance_frames, cycle_frames, valid",
    [
        (10, 60, False),  # stance 0.10 s: the open interval (0.1, 1.5) s excludes it
        (11, 60, True),
        (149, 190, True),
        (150, 190, False),  # stance 1.50 s
        (15, 20, False),  # cycle 0.20 s: the open interval (0.2, 2.0) s excludes it
        (15, 21, True),
        (30, 199, True),
        (30, 200, False),  # cycle 2.00 s
    ],
)
def test_duration_limits_at_100hz(stance_frames, cycle_frames, valid):
    start = 5
    vgrf = pulses(
        start + cycle_frames + 10,
        [(start, start + stance_frames), (start + cycle_frames, start + cycle_frames + 5)],
    )
    gait = segment_gait_cycles(vgrf, 100)
    assert gait.heel_strikes.tolist() == [start, start + cycle_frames]
    assert gait.cycles == (((start, start + cycle_frames),) if valid else ())


def test_duration_limits_scale_with_rate():
    # At 600 Hz the 0.1 s stance minimum is 60 frames.
    for stance_frames, valid in ((60, False), (61, True)):
        vgrf = pulses(800, [(10, 10 + stance_frames), (610, 700)])
        assert bool(segment_gait_cycles(vgrf, 600).cycles) == valid


def test_wide_thresholds_accept_slow_gait():
    # Stance 2.0 s and cycle 3.0 s: outside the default limits, inside the paper's post-stroke limits
    # (stance 0.1-3 s, cycle 0.2-4 s).
    vgrf = pulses(420, [(10, 210), (310, 400)])
    assert segment_gait_cycles(vgrf, 100).cycles == ()
    assert segment_gait_cycles(vgrf, 100, WIDE_THRESHOLDS).cycles == ((10, 310),)
    assert segment_gait_cycles(pulses(520, [(10, 310), (410, 500)]), 100, WIDE_THRESHOLDS).cycles == ()


def test_force_threshold_is_strict_and_on_magnitude():
    base = pulses(100, [(10, 40), (70, 90)], level=SPEC_THRESHOLDS.force_n_per_kg)
    assert find_gait_events(base, 100)[0].size == 0  # exactly 1 N/kg is not stance
    assert find_gait_events(base + 1e-9, 100)[0].tolist() == [10, 70]
    assert find_gait_events(-1.5 * base, 100)[0].tolist() == [10, 70]  # |vGRF| as the reference
    assert SPEC_THRESHOLDS.force_bw_percent == pytest.approx(100 / 9.81)


# ---------------------------------------------------------------------------------------------------------
# Bad input.
# ---------------------------------------------------------------------------------------------------------


def test_minimum_trial_length():
    # Shortest valid cycle at 100 Hz is 21 frames, plus a swing frame before and the closing heel strike.
    assert min_trial_frames(100) == 23
    assert min_trial_frames(600) == 123
    shortest = pulses(23, [(1, 13), (22, 23)])
    assert segment_gait_cycles(shortest, 100).cycles == ((1, 22),)
    with pytest.raises(GaitDataError, match=r"22 frames is too short .* at least 23 frames"):
        segment_gait_cycles(shortest[:22], 100)
    with pytest.raises(GaitDataError, match="at least 23 frames"):
        find_gait_events(np.zeros(5), 100)


@pytest.mark.parametrize(
    "fn, vgrf, match",
    [
        (segment_gait_cycles, np.zeros((100, 2)), r"1-D array \[T\]"),
        (segment_both_feet, np.zeros(100), r"\[T, 2\]"),
        (segment_both_feet, np.zeros((100, 3)), r"\[T, 2\]"),
        (segment_gait_cycles, np.r_[np.zeros(50), np.nan, np.zeros(49)], "frame 50"),
    ],
)
def test_bad_shapes_and_values(fn, vgrf, match):
    with pytest.raises(GaitDataError, match=match):
        fn(vgrf, 100)


def test_bad_rate():
    with pytest.raises(GaitDataError, match="rate_hz"):
        segment_gait_cycles(np.zeros(100), 0.0)
