"""`gaitjax predict` end to end on real OpenSim trials with a tiny model trained by configs/demo.py."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from gaitjax.data.grf import read_grf
from gaitjax.data.storage import read_storage, write_storage
from gaitjax.predict import main

pytestmark = pytest.mark.slow
OPENCAP = "walk_opencap_subject4"
OPENCAP_OSIM = f"{OPENCAP}/optimized_scale_and_markers.osim"


@pytest.fixture(scope="module")
def model_dir(demo_models):
    return demo_models


def _predict(model_dir, osim, mots, out, *extra) -> int:
    return main(["--model", str(model_dir), "--osim", str(osim), "--out", str(out), *map(str, mots), *extra])


def test_walking_and_running_trials_write_every_output_opensim_can_read(model_dir, real_data, tmp_path):
    opensim = pytest.importorskip("opensim")
    walk = real_data / OPENCAP / "IK" / "walking1_ik.mot"  # 1.31 s overground: padded, not refused
    assert _predict(model_dir, real_data / OPENCAP_OSIM, [walk], tmp_path) == 0
    run = real_data / "run_hamner2013_subject04" / "run200_ik.mot"
    assert _predict(model_dir, real_data / "run_hamner2013_subject04/final.osim", [run], tmp_path) == 0
    for mot in (walk, run):
        stem = mot.stem
        for suffix in ("_grf.mot", "_external_loads.xml", "_grf.png", "_summary.json"):
            assert (tmp_path / f"{stem}{suffix}").stat().st_size > 100, suffix
        grf = read_grf(tmp_path / f"{stem}_grf.mot")
        src = read_storage(mot)
        assert grf.layout == "feet" and grf.labels == ("r", "l")
        np.testing.assert_allclose(grf.time_s, src.time_s, atol=1e-9)  # the trial's own frames
        table = opensim.TimeSeriesTable(str(tmp_path / f"{stem}_grf.mot"))
        assert table.getNumRows() == src.n_frames and table.getNumColumns() == 18
        loads = opensim.ExternalLoads(str(tmp_path / f"{stem}_external_loads.xml"), True)
        assert loads.getSize() == 2 and loads.get(0).get_applied_to_body() == "calcn_r"
        assert loads.getDataFileName() == f"{stem}_grf.mot"
        summary = json.loads((tmp_path / f"{stem}_summary.json").read_text())
        assert summary["filled_coordinates"] == [] and summary["mass_kg"] > 30
    assert not list(tmp_path.glob("*kinematics_filled*"))
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind


def _radians_copy(src: Path, dst: Path, osim: Path, rate_hz: float | None = None) -> Path:
    from gaitjax.data.osim import parse_osim
    from gaitjax.data.storage import to_radians

    model = parse_osim(osim)
    table = to_radians(read_storage(src), {n: c.motion_type for n, c in model.coordinates.items()})
    time_s, values = table.time_s, table.values
    if rate_hz is not None:
        time_s = np.arange(time_s[0], time_s[-1] + 1e-9, 1 / rate_hz)
        values = np.stack([np.interp(time_s, table.time_s, v) for v in table.values.T], axis=1)
    return write_storage(dst, table.columns, time_s, values, in_degrees=False, name=dst.stem)


def test_degrees_radians_and_rates_give_the_same_forces(model_dir, real_data, tmp_path):
    osim = real_data / OPENCAP_OSIM
    src = real_data / OPENCAP / "IK" / "walking2_ik.mot"  # inDegrees=yes, 100 Hz
    rad = _radians_copy(src, tmp_path / "in" / "rad_ik.mot", osim)
    hz200 = _radians_copy(src, tmp_path / "in" / "hz200_ik.mot", osim, rate_hz=200)
    assert _predict(model_dir, osim, [src, rad, hz200], tmp_path / "out") == 0
    a, b, c = (read_grf(tmp_path / "out" / f"{n}_grf.mot") for n in ("walking2_ik", "rad_ik", "hz200_ik"))
    np.testing.assert_allclose(a["r"].force_n, b["r"].force_n, atol=1e-2)  # same motion, units differ only
    # 200 Hz input: linear midpoints resample back to the same 100 Hz frames, so every other output row
    # equals the 100 Hz prediction; the output has the input's 200 Hz frames.
    assert c.time_s.size == 2 * a.time_s.size - 1
    np.testing.assert_allclose(c["l"].force_n[::2], a["l"].force_n, atol=1e-2)


def test_missing_coordinates_are_filled_and_measured_ones_kept(model_dir, real_data, tmp_path):
    osim = real_data / "walk_gait2392_subject01/subject01_simbody.osim"
    src = real_data / "walk_gait2392_subject01/subject01_walk1_ik.mot"  # 60 Hz, degrees
    table = read_storage(src)
    keep = [c for c in table.columns if not c.startswith("knee_angle")]
    write_storage(
        tmp_path / "noknee_ik.mot", keep, table.time_s, table.values[:, [table.columns.index(c) for c in keep]],
        in_degrees=True, name="noknee",
    )  # fmt: skip
    assert (
        _predict(model_dir, osim, [tmp_path / "noknee_ik.mot"], tmp_path / "out", "--unknown", "lumbar") == 0
    )
    filled = read_storage(tmp_path / "out" / "noknee_ik_kinematics_filled.mot")
    assert filled.in_degrees is False and filled.n_frames == table.n_frames
    for name in ("hip_flexion_r", "ankle_angle_l", "pelvis_tx"):
        scale = np.pi / 180 if name != "pelvis_tx" else 1.0
        np.testing.assert_allclose(filled.column(name), table.column(name) * scale, atol=1e-12)
    assert np.isfinite(filled.column("knee_angle_r")).all() and np.ptp(filled.column("knee_angle_r")) > 0
    summary = json.loads((tmp_path / "out" / "noknee_ik_summary.json").read_text())
    assert summary["filled_coordinates"] == ["knee_angle_r", "knee_angle_l"]
    assert summary["user_unknown"] == ["lumbar"]


def test_bad_files_are_reported_by_name_and_the_rest_still_run(model_dir, real_data, tmp_path, capsys):
    osim = real_data / OPENCAP_OSIM
    good = real_data / OPENCAP / "IK" / "walking1_ik.mot"
    other = write_storage(
        tmp_path / "other_model.mot", ["shoulder_elv", "elbow_flex", "wrist_dev"], np.arange(200) / 100,
        np.zeros((200, 3)), in_degrees=True, name="arm",
    )  # fmt: skip
    table = read_storage(good)
    short = write_storage(
        tmp_path / "short_ik.mot", table.columns, table.time_s[:15], table.values[:15], in_degrees=True,
        name="short",
    )  # fmt: skip
    assert _predict(model_dir, osim, [other, good, short], tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert "other_model.mot" in err and "another model" in err
    assert "short_ik.mot" in err and "at least 20 frames" in err
    with open(tmp_path / "out" / "summary.csv") as f:
        rows = {Path(r["trial"]).name: r["status"] for r in csv.DictReader(f)}
    assert rows == {"other_model.mot": "failed", "walking1_ik.mot": "ok", "short_ik.mot": "failed"}
    assert not (tmp_path / "out" / "other_model_grf.mot").exists()


def test_usage_errors_stop_before_any_work(model_dir, real_data, tmp_path, capsys):
    osim = real_data / OPENCAP_OSIM
    mot = real_data / OPENCAP / "IK" / "walking1_ik.mot"
    assert _predict(model_dir, osim, [mot], tmp_path, "--unknown", "elbows") == 2
    assert "unknown body part or kinematic channel 'elbows'" in capsys.readouterr().err
    assert _predict(tmp_path / "nomodel", osim, [mot], tmp_path) == 2
    assert "no such model folder" in capsys.readouterr().err
