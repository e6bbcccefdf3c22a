"""`gaitjax.data.prepare` on the whole of ../shared/data/real: every trial gets a fate, kept trials hold
what the source files say (checked against the files themselves and SOURCES.md), bad files are skipped
with their reason, and a rerun is idempotent."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from gaitjax.data import channels as ch
from gaitjax.data.discover import discover
from gaitjax.data.prepare import estimate_height_m, main, prepare
from gaitjax.data.store import Store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def train_store(real_data, tmp_path_factory):
    return prepare([real_data], tmp_path_factory.mktemp("stores") / "train", progress=False)


def _entry(store: Store, trial: str):
    (e,) = [e for e in store.all_entries if e.meta.trial == trial]
    return e


def _read_columns(path, names):
    lines = path.read_text().splitlines()
    end = next(i for i, line in enumerate(lines) if line.strip().lower() == "endheader")
    header = lines[end + 1].split()
    rows = np.array([[float(v) for v in line.split()] for line in lines[end + 2 :] if line.strip()])
    return rows[:, 0], {n: rows[:, header.index(n)] for n in names}


def test_every_file_gets_a_fate(train_store, real_data):
    found = discover(real_data)
    names = {e.meta.study + "/" + e.meta.subject for e in train_store.all_entries}
    assert {f.study + "/" + f.subject for f in found} <= names
    fates = {e.meta.trial: (e.status, e.reason) for e in train_store.all_entries}
    # SOURCES.md: gait2392, Hamner 2010 and 2013 and the Rajagopal AddBiomechanics walk are long enough.
    for trial in ("subject01_walk1_ik", "subject02_running_ik", "run200_ik", "run300_ik", "walk_ik"):
        assert fates[trial][0] == "kept", (trial, fates[trial])
    # OpenCap walking trials and the .b3d trials last 1.2-1.4 s: too short for a training window.
    assert fates["walking1_ik"][0] == "pruned" and fates["walking1_ik"][1].startswith("too_short")
    assert fates["walking2_segment_0"][1].startswith("too_short")
    # The Camargo trial walks a counter-clockwise circuit: its heading turns far more than 45 degrees.
    assert fates["levelground_ccw_fast_01_01_ik"][1].startswith("heading_range")
    # Marker-only folders and IK files without GRF are reported, not silently dropped.
    assert fates["grf_walk"][1].startswith("no IK")
    assert fates["subject01_walk_IK"][1].startswith("unpaired")


def test_kept_trial_matches_its_source_files(train_store, real_data):
    """run200: 100 Hz IK and GRF on the same times, so channels equal the file values (no filtering)."""
    e = _entry(train_store, "run200_ik")
    x_tc = train_store.trial_states(e.trial_id)
    folder = real_data / "run_hamner2013_subject04"
    t_ik, ik = _read_columns(folder / "run200_ik.mot", ["knee_angle_r", "ankle_angle_l"])
    t_grf, grf = _read_columns(folder / "run200_grf.mot", ["ground_force_1_vy", "ground_force_2_vy"])
    assert x_tc.shape[0] == t_ik.shape[0] == 233  # nRows of the IK file, already 100 Hz
    # final.osim's knee flexes negatively (range -160..10 deg); GaitDynamics channels flex positively.
    np.testing.assert_allclose(x_tc[:, ch.CHANNEL_INDEX["knee_angle_r"]], -ik["knee_angle_r"], atol=2e-6)
    assert x_tc[:, ch.CHANNEL_INDEX["knee_angle_r"]].max() > np.radians(60)  # running: deep swing flexion
    np.testing.assert_allclose(x_tc[:, ch.CHANNEL_INDEX["ankle_angle_l"]], ik["ankle_angle_l"], atol=2e-6)
    # Vertical force is unchanged by the yaw alignment; right foot = set 1 (SOURCES.md).
    grf_vy = np.interp(t_ik, t_grf, grf["ground_force_1_vy"]) / e.meta.mass_kg
    np.testing.assert_allclose(x_tc[:, ch.CHANNEL_INDEX["calcn_r_force_vy"]], grf_vy, atol=1e-4)
    # A 2 m/s treadmill run: the belt estimate from the stance toes is close to -2 m/s.
    assert -2.3 < e.meta.extra["belt_speed_mean_m_s"] < -1.6


def test_grf_outside_its_record_is_marked_invalid(train_store):
    """gait2392 subject01: IK t=0.5-4.0 s at 60 Hz, GRF t=0-2.5 s (SOURCES.md)."""
    e = _entry(train_store, "subject01_walk1_ik")
    assert e.n_frames == 351  # 0.5 .. 4.0 s at 100 Hz
    valid = train_store.trial_valid(e.trial_id)
    t = 0.5 + np.arange(e.n_frames) / 100
    np.testing.assert_array_equal(valid, t <= 2.5 + 1e-9)
    x_tc = train_store.trial_states(e.trial_id)
    assert np.all(x_tc[~valid][:, list(ch.KINETIC_IDX)] == 0)


def test_height_estimate_within_six_percent_of_known_heights(real_data):
    from gaitjax.data.osim import parse_osim
    from gaitjax.skeleton.tree import build_skeleton

    # SOURCES.md: Hamner 2010 subject02 is 1.83 m; Hamner 2013 subject04 is 1.772 m (_subject.json).
    for rel, height_m in (
        ("run_hamner2010_subject02/subject02_registered.osim", 1.83),
        ("run_hamner2013_subject04/final.osim", 1.772),
    ):
        est = estimate_height_m(build_skeleton(parse_osim(real_data / rel)))
        assert abs(est / height_m - 1) < 0.06, (rel, est)


def test_eval_store_keeps_short_overground_trials(real_data, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(real_data / "walk_opencap_subject4", src / "walk_opencap_subject4")
    shutil.copy(real_data / "b3d" / "opencap_subject4_walking_addb.b3d", src / "subject4.b3d")
    store = prepare([src], tmp_path / "eval", kind="eval", progress=False)
    kept = {e.meta.trial: e for e in store.trials}
    # SOURCES.md: the .b3d holds walking2 and walking1, 132 and 131 frames at 100 Hz.
    assert kept["walking2_segment_0"].n_frames == 132 and kept["walking1_segment_0"].n_frames == 131
    assert "walking1_ik" in kept and kept["walking1_ik"].n_frames < ch.WINDOW_LEN
    x_tc, mask_t = store.window(kept["walking1_ik"].trial_id, 0)
    assert x_tc.shape == (ch.WINDOW_LEN, ch.N_CHANNELS) and mask_t.sum() <= kept["walking1_ik"].n_frames


def test_bad_files_are_skipped_with_reasons_and_rerun_is_idempotent(real_data, tmp_path):
    src = tmp_path / "src" / "run"
    shutil.copytree(
        real_data / "run_hamner2013_subject04", src, ignore=shutil.ignore_patterns("raw", "*.trc")
    )
    ik = src / "run300_ik.mot"
    lines = ik.read_text().splitlines()
    ik.write_text("\n".join(lines[:-40] + [lines[-40][: len(lines[-40]) // 2]]) + "\n")  # truncated row
    out = tmp_path / "store"
    assert main(["--source", str(src.parent), "--out", str(out), "--quiet"]) == 0
    store = Store.open(out)
    fates = {e.meta.trial: e for e in store.all_entries}
    assert fates["run200_ik"].kept
    assert not fates["run300_ik"].kept and "run300_ik.mot" in fates["run300_ik"].reason
    with open(out / "report.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["trial"] for r in rows} == {"run200_ik", "run300_ik"}
    states = np.array(store.states)
    index = json.loads((out / "index.json").read_text())
    assert main(["--source", str(src.parent), "--out", str(out), "--quiet"]) == 0
    np.testing.assert_array_equal(np.array(Store.open(out).states), states)
    again = json.loads((out / "index.json").read_text())
    assert again["trials"] == index["trials"]


def test_missing_source_is_a_clear_error(tmp_path, capsys):
    assert main(["--source", str(tmp_path / "nope"), "--out", str(tmp_path / "s"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "source does not exist" in err
    assert not (tmp_path / "s").exists()
