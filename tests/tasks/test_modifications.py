"""Tasks 2 and 3 metrics on real measured windows (checked against independent physics), windows, and
`evaluate.py` end to end with the demo models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gaitjax.data import channels as ch
from gaitjax.data.errors import GaitDataError
from gaitjax.data.prepare import _model, prepare
from gaitjax.evaluation.gait_cycles import segment_gait_cycles
from gaitjax.tasks.grid import scale_lumbar_bending
from gaitjax.tasks.modifications import context_from_trial, last_window, speed_metrics, trunk_sway_metrics

REPO = Path(__file__).resolve().parents[2]


def test_last_window_is_right_aligned_and_front_padded():
    x = np.arange(200, dtype=np.float32)[:, None] * np.ones((1, 63), np.float32)
    w, v = last_window(x, np.ones(200, bool), offset=10)
    assert w[0, 0] == 40 and w[-1, 0] == 189 and v.all()
    w, v = last_window(x[:100], np.ones(100, bool))
    assert (~v[:50]).all() and v[50:].all() and w[50, 0] == 0 and w[-1, 0] == 99 and (w[:50] == 0).all()
    with pytest.raises(GaitDataError, match="no frame with valid ground reaction forces"):
        context_from_trial("speed", "t", x, np.zeros(200, bool), 70.0, 1.7, None)


@pytest.fixture(scope="module")
def run_store(real_data, tmp_path_factory):
    return prepare(
        [real_data / "run_hamner2013_subject04"], tmp_path_factory.mktemp("s") / "st", progress=False
    )


@pytest.mark.slow
def test_speed_metrics_on_a_measured_3_m_s_run_agree_with_physics(run_store):
    """run300: treadmill running at 3 m/s (SOURCES.md). The belt-corrected pelvis speed must be about 3 m/s,
    and the stride length from our FK of the left calcaneus must equal speed x stride time, where the stride
    time comes from the right foot's heel strikes in the measured GRF -- two independent routes."""
    (e,) = [t for t in run_store.trials if t.meta.trial == "run300_ik"]
    _, skeleton = _model(e.meta.extra["osim_file"])
    x_tc, valid_t = run_store.trial_states(e.trial_id), run_store.trial_valid(e.trial_id)
    ctx = context_from_trial("speed", e.meta.name, x_tc, valid_t, e.meta.mass_kg, e.meta.height_m, skeleton)
    m = speed_metrics(ctx.x_lc[ctx.valid_l], ctx)
    assert abs(m["speed_m_s"] - 3.0) < 0.3, m
    vgrf = ctx.x_lc[ctx.valid_l][:, ch.CHANNEL_INDEX["calcn_r_force_vy"]]
    cycles = segment_gait_cycles(vgrf, 100.0).cycles
    stride_time_s = np.mean([b - a for a, b in cycles]) / 100
    assert m["stride_length_m"] == pytest.approx(m["speed_m_s"] * stride_time_s, rel=0.08)
    assert 60 < m["peak_knee_flexion_deg"] < 130  # stance-to-swing knee flexion when running
    assert 200 < m["peak_vertical_grf_bw_percent"] < 350  # running peaks are 2-3 BW


@pytest.mark.slow
def test_trunk_sway_manipulation_scales_the_measured_sway(run_store):
    (e,) = [t for t in run_store.trials if t.meta.trial == "run200_ik"]
    _, skeleton = _model(e.meta.extra["osim_file"])
    ctx = context_from_trial(
        "trunk_sway", e.meta.name, run_store.trial_states(e.trial_id), run_store.trial_valid(e.trial_id),
        e.meta.mass_kg, e.meta.height_m, skeleton,
    )  # fmt: skip
    x = ctx.x_lc[ctx.valid_l]
    base = trunk_sway_metrics(x, ctx)
    scaled = trunk_sway_metrics(scale_lumbar_bending(x[None], 2.0)[0], ctx)
    assert scaled["trunk_sway_peak_deg"] == pytest.approx(2 * base["trunk_sway_peak_deg"], rel=1e-3)
    # Forces are untouched by the manipulation alone, so the measured KAM peaks stay the same.
    assert scaled["kam_first_peak_bw_bh_percent"] == pytest.approx(
        base["kam_first_peak_bw_bh_percent"], rel=1e-4
    )
    assert 0 < base["kam_first_peak_bw_bh_percent"] < 10


@pytest.mark.slow
def test_evaluate_py_runs_end_to_end_with_the_demo_models(demo_models, tmp_path):
    out = tmp_path / "eval"
    cmd = [sys.executable, "evaluate.py", "--config=configs/demo.py:runlocal", f"--workdir={out}",
           f"--config.evals.model={demo_models}", f"--config.evals.baselines=cnn={demo_models / 'cnn'}",
           "--config.evals.diffusion_alone=True"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Mean ± SD" in proc.stdout and "== speed" in proc.stdout and "== trunk_sway" in proc.stdout
    for name in ("task1_table.txt", "task1_rows.csv", "task1_mae.png", "trunk_sway.png", "speed.png",
                 "trunk_sway_rows.csv", "speed_summary.json", "results.json"):  # fmt: skip
        assert (out / name).stat().st_size > 50, name
    results = json.loads((out / "results.json").read_text())
    assert results["synthetic"] is True and {"task1", "trunk_sway", "speed"} <= set(results)
    conditions = {(r["model"], r["mask"], r["fill"]) for r in results["task1"]}
    per_model = {("none", "-"), ("knees", "diffusion"), ("knees", "median")}
    expected = {(m, *c) for m in ("refiner", "cnn") for c in per_model}
    assert conditions == expected | {("diffusion", "none", "-"), ("diffusion", "knees", "diffusion")}
    bad = subprocess.run(cmd + ["--config.evals.tasks=task9"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2 and "expected some of" in bad.stderr.strip().splitlines()[-1]
