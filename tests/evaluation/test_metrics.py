"""Task-1 metrics against values worked out by hand on tiny synthetic trials (square stance pulses at
100 Hz, forces in N/kg chosen so that every error is a round number of %BW: 0.981 N/kg = 10 %BW)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from gaitjax.data.errors import GaitDataError
from gaitjax.evaluation.metrics import format_table, metric_rows, n_per_kg_to_bw_percent, trial_errors

TEN_BW = 0.981  # N/kg


def forces(n_frames: int, stances: list[tuple[int, int]], level: float = 10.0) -> np.ndarray:
    """[n_frames, 3] force (N/kg): vertical `level` on each stance [start, end), all else 0."""
    f = np.zeros((n_frames, 3))
    for start, end in stances:
        f[start:end, 1] = level
    return f


def trial_a() -> tuple[np.ndarray, np.ndarray]:
    """Stances [10,40), [80,110), [150,180): valid cycles [10,80), [80,150) -> 140 in-cycle frames."""
    true = forces(200, [(10, 40), (80, 110), (150, 180)])
    pred = true.copy()
    pred[0:10] += 5.0  # before the first heel strike: not evaluated
    pred[150:160, 1] += 5.0  # in the last stance, which starts no complete cycle: not evaluated
    pred[20:34, 1] += TEN_BW  # 14 of 140 frames -> vertical MAE 1 %BW; stance-1 peak error 10 %BW
    pred[60:70, 0] -= TEN_BW / 2  # 10 of 140 frames off by 5 %BW -> AP MAE 50/140 %BW
    pred[:, 2] += TEN_BW / 10  # every frame 1 %BW -> ML MAE 1 %BW
    return true, pred


def trial_b() -> tuple[np.ndarray, np.ndarray]:
    """Stances [10,40), [80,110): one valid cycle [10,80) -> 70 frames, all off by 10 %BW vertically."""
    true = forces(120, [(10, 40), (80, 110)])
    pred = true.copy()
    pred[:, 1] += TEN_BW
    return true, pred


def trial_c() -> tuple[np.ndarray, np.ndarray]:
    """Running: 20 N/kg stances [10,30), [60,80), [110,130): cycles [10,60), [60,110), vertical off by 2 %BW."""
    true = forces(150, [(10, 30), (60, 80), (110, 130)], level=20.0)
    pred = true.copy()
    pred[:, 1] += TEN_BW / 5
    return true, pred


def rows_by(rows, level, study=None, trial=None):
    return {
        r["metric"]: r for r in rows if r["level"] == level and r["study"] == study and r["trial"] == trial
    }


def test_bw_percent_conversion():
    assert n_per_kg_to_bw_percent(9.81) == pytest.approx(100.0)
    np.testing.assert_allclose(n_per_kg_to_bw_percent(np.array([0.981, 1.0])), [10.0, 100 / 9.81])


def test_one_trial_uses_only_in_cycle_frames_and_valid_stances():
    t = trial_errors(*trial_a(), 100, study="s", trial="a")
    assert t.n_cycles == 2
    assert t.abs_error_n_per_kg.shape == (140, 3)
    assert t.mae_bw_percent("vertical_profile") == pytest.approx(1.0)
    assert t.mae_bw_percent("ap_profile") == pytest.approx(50 / 140)
    assert t.mae_bw_percent("ml_profile") == pytest.approx(1.0)
    # Peaks of the two valid stances: true 10 / pred 10.981, true 10 / pred 10 -> (10 + 0) / 2 %BW.
    np.testing.assert_allclose(t.peak_true_n_per_kg, [10.0, 10.0])
    np.testing.assert_allclose(t.peak_pred_n_per_kg, [10.0 + TEN_BW, 10.0])
    assert t.mae_bw_percent("peak_vertical") == pytest.approx(5.0)


def test_study_pools_frames_and_studies_weigh_equally():
    a = trial_errors(*trial_a(), 100, study="walk", trial="a")
    b = trial_errors(*trial_b(), 100, study="walk", trial="b")
    c = trial_errors(*trial_c(), 100, study="run", trial="c", running=True)
    rows = metric_rows([a, b, c])
    assert len(rows) == 3 * 4 + 2 * 4 + 4
    tb = rows_by(rows, "trial", "walk", "b")
    assert (
        tb["vertical_profile"]["mae_bw_percent"] == pytest.approx(10.0) and tb["vertical_profile"]["n"] == 70
    )
    walk = rows_by(rows, "study", "walk")
    # Pooled frames: (140 x 1 + 70 x 10) / 210 = 4 %BW (the mean of the two trial means would be 5.5).
    assert walk["vertical_profile"]["mae_bw_percent"] == pytest.approx(4.0)
    assert walk["vertical_profile"]["n"] == 210
    assert walk["ap_profile"]["mae_bw_percent"] == pytest.approx(50 / 210)
    assert walk["ml_profile"]["mae_bw_percent"] == pytest.approx(140 / 210)
    # Pooled stances: a gives errors 10 and 0 %BW, b gives 10 %BW (its second stance closes no cycle).
    assert walk["peak_vertical"]["mae_bw_percent"] == pytest.approx(20 / 3)
    assert walk["peak_vertical"]["n"] == 3
    run = rows_by(rows, "study", "run")
    assert run["vertical_profile"]["mae_bw_percent"] == pytest.approx(2.0)
    assert run["peak_vertical"]["mae_bw_percent"] == pytest.approx(2.0)  # 20 N/kg peaks kept: running
    assert run["ap_profile"]["mae_bw_percent"] == 0.0
    summary = rows_by(rows, "all")
    assert summary["vertical_profile"]["mae_bw_percent"] == pytest.approx(3.0)  # (4 + 2) / 2
    assert summary["vertical_profile"]["sd_bw_percent"] == pytest.approx(1.0)  # population SD
    assert summary["vertical_profile"]["n"] == 2
    assert summary["peak_vertical"]["mae_bw_percent"] == pytest.approx((20 / 3 + 2) / 2)
    sample_sd = rows_by(metric_rows([a, b, c], ddof=1), "all")["vertical_profile"]["sd_bw_percent"]
    assert sample_sd == pytest.approx(np.sqrt(2.0))


def test_walking_peaks_outside_8_to_13_n_per_kg_are_skipped():
    walking = trial_errors(*trial_c(), 100, study="s", trial="c")  # 20 N/kg peaks in a walking study
    assert walking.peak_true_n_per_kg.size == 0
    assert np.isnan(walking.mae_bw_percent("peak_vertical"))
    rows = rows_by(metric_rows([walking]), "all")
    assert rows["peak_vertical"]["n"] == 0 and np.isnan(rows["peak_vertical"]["mae_bw_percent"])
    assert rows["vertical_profile"]["mae_bw_percent"] == pytest.approx(2.0)


def test_no_valid_cycle_evaluates_the_whole_trial():
    # One stance only: no heel-strike-to-heel-strike cycle.
    true = forces(60, [(10, 40)])
    pred = true.copy()
    pred[:, 1] += TEN_BW
    pred[25, 1] += TEN_BW  # peak error 20 %BW
    treadmill = trial_errors(true, pred, 100, study="s", trial="t")
    assert treadmill.n_cycles == 0 and treadmill.abs_error_n_per_kg.shape == (60, 3)
    assert treadmill.mae_bw_percent("vertical_profile") == pytest.approx(10 + 10 / 60)
    assert treadmill.peak_true_n_per_kg.size == 0  # not overground: no peak
    overground = trial_errors(true, pred, 100, study="s", trial="t", overground=True)
    assert overground.mae_bw_percent("peak_vertical") == pytest.approx(20.0)
    # Shorter than one gait cycle: the same rule, no error.
    short = trial_errors(true[:15], pred[:15], 100, study="s", trial="t")
    assert short.abs_error_n_per_kg.shape == (15, 3)


def test_dropped_frames_are_removed_before_segmentation():
    true, pred = trial_a()
    # Insert 5 missing frames (zeros) in the middle of the first stance: kept, they would split it.
    junk = np.zeros((5, 3))
    true_gap = np.concatenate([true[:25], junk, true[25:]])
    pred_gap = np.concatenate([pred[:25], junk + 7.0, pred[25:]])
    keep = np.ones(true_gap.shape[0], dtype=bool)
    keep[25:30] = False
    clean = trial_errors(true, pred, 100, study="s", trial="a")
    gapped = trial_errors(true_gap, pred_gap, 100, study="s", trial="a", keep=keep)
    np.testing.assert_array_equal(gapped.abs_error_n_per_kg, clean.abs_error_n_per_kg)
    np.testing.assert_array_equal(gapped.peak_pred_n_per_kg, clean.peak_pred_n_per_kg)
    unfiltered = trial_errors(true_gap, pred_gap, 100, study="s", trial="a")
    # Kept, the gap splits stance 1: heel strikes 10, 30, 85, 155; [10, 30) is too short (20 frames), so only
    # [30, 85) and [85, 155) remain, 125 frames instead of 140.
    assert unfiltered.abs_error_n_per_kg.shape == (125, 3)


def test_format_table_in_the_papers_layout():
    a = trial_errors(*trial_a(), 100, study="walk", trial="a")
    b = trial_errors(*trial_b(), 100, study="walk", trial="b")
    c = trial_errors(*trial_c(), 100, study="run", trial="c", running=True)
    lines = format_table(metric_rows([a, b, c])).splitlines()
    cells = [re.split(r"\s{2,}", line.strip()) for line in lines]
    assert cells[0] == ["MAE (%BW)", "Vertical", "Anterior-posterior", "Medial-lateral", "Peak vertical"]
    assert cells[1] == ["walk", "4.0", "0.2", "0.7", "6.7"]
    assert cells[2] == ["run", "2.0", "0.0", "0.0", "2.0"]
    assert cells[3] == ["Mean ± SD", "3.0 ± 1.0", "0.1 ± 0.1", "0.3 ± 0.3", "4.3 ± 2.3"]
    assert len(lines) == 4
    walking_only = trial_errors(*trial_c(), 100, study="s", trial="c")
    assert format_table(metric_rows([walking_only])).splitlines()[-1].split()[-1] == "-"


@pytest.mark.parametrize(
    "true, pred, keep, match",
    [
        (np.zeros((50, 3)), np.zeros((50, 2)), None, r"both be \[T, 3\]"),
        (np.zeros(50), np.zeros(50), None, r"both be \[T, 3\]"),
        (np.zeros((50, 3)), np.full((50, 3), np.nan), None, "finite"),
        (np.zeros((50, 3)), np.zeros((50, 3)), np.ones(49, dtype=bool), r"bool array \[50\]"),
        (np.zeros((50, 3)), np.zeros((50, 3)), np.ones(50), r"bool array \[50\]"),
    ],
)
def test_bad_input(true, pred, keep, match):
    with pytest.raises(GaitDataError, match=match):
        trial_errors(true, pred, 100, study="s", trial="t", keep=keep)
