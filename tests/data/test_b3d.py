"""Tests for the .b3d reader on the real AddBiomechanics file, checked against the trial's .mot files."""

from __future__ import annotations

import numpy as np
import pytest

from gaitjax.data.b3d import read_b3d
from gaitjax.data.errors import GaitDataError
from gaitjax.data.grf import read_grf
from gaitjax.data.storage import read_storage

B3D = "b3d/opencap_subject4_walking_addb.b3d"
SUBJECT4 = "walk_opencap_subject4"


@pytest.fixture(scope="module")
def subject(real_data):
    return read_b3d(real_data / B3D)


def test_header(subject):
    assert (subject.mass_kg, subject.height_m, subject.sex, subject.age_years) == (68.0, 1.7, "male", 18)
    assert subject.ground_force_bodies == ("calcn_r", "calcn_l")
    assert (
        subject.pass_types == ("KINEMATICS",)
        and subject.pass_index == 0
        and subject.pass_type == "KINEMATICS"
    )
    assert subject.skipped_trials == ()


def test_trials(subject, real_data):
    ik_columns = read_storage(real_data / SUBJECT4 / "IK/walking1_ik.mot").columns
    assert [(t.original_name, t.n_frames, t.rate_hz) for t in subject.trials] == [
        ("walking2", 132, 100),
        ("walking1", 131, 100),
    ]
    for trial in subject.trials:
        assert trial.name.startswith(trial.original_name)
        assert trial.coordinate_names == ik_columns  # 33 DoFs, same names and order as the Subject4 IK
        assert trial.poses.shape == (trial.n_frames, 33) and np.isfinite(trial.poses).all()
        assert trial.contact_force_n is None and trial.contact_cop_m is None  # kinematics pass only
        assert trial.plate_force_n.shape == trial.plate_cop_m.shape == trial.plate_torque_nm.shape
        assert trial.plate_force_n.shape == (2, trial.n_frames, 3)
        assert not trial.missing_grf.any() and set(trial.missing_grf_reason) == {"notMissingGRF"}
        np.testing.assert_allclose(trial.time_s[[0, -1]], [0.0, (trial.n_frames - 1) * 0.01])


@pytest.mark.parametrize("trial_index", [0, 1])
def test_raw_plates_equal_the_id_grf_file(subject, real_data, trial_index):
    """Raw plate 0 is ground_force_1 (right foot), plate 1 is ground_force_2 (left), sample for sample."""
    trial = subject.trials[trial_index]
    grf = read_grf(real_data / SUBJECT4 / f"ID/{trial.original_name}_grf.mot")
    assert grf.time_s.shape[0] == trial.n_frames
    for plate, side in ((0, "r"), (1, "l")):
        np.testing.assert_allclose(trial.plate_force_n[plate], grf[side].force_n, rtol=0, atol=1e-9)
        loaded = grf[side].force_n[:, 1] > 20
        np.testing.assert_allclose(
            trial.plate_cop_m[plate][loaded], grf[side].cop_m[loaded], rtol=0, atol=1e-9
        )
    peak_bw = trial.plate_force_n[:, :, 1].max() / (62.6 * 9.81)  # model mass from SOURCES.md
    assert 1.0 < peak_bw < 1.3


@pytest.mark.parametrize("trial_index", [0, 1])
def test_poses_are_the_same_trial_but_another_ik_solution(subject, real_data, trial_index):
    """Same frames and timing as the IK .mot (pelvis path within 3 cm, joint curves highly correlated), but
    the .b3d holds AddBiomechanics' own IK: joint angles differ by up to ~0.45 rad (e.g. a knee offset)."""
    trial = subject.trials[trial_index]
    ik = read_storage(real_data / SUBJECT4 / f"IK/{trial.original_name}_ik.mot")
    assert ik.n_frames == trial.n_frames and ik.in_degrees is False
    for name in ("pelvis_tx", "pelvis_tz"):
        np.testing.assert_allclose(
            trial.poses[:, trial.coordinate_names.index(name)], ik.column(name), atol=0.03
        )
    for name in ("knee_angle_r", "knee_angle_l", "hip_flexion_r", "hip_flexion_l"):
        ours = trial.poses[:, trial.coordinate_names.index(name)]
        assert np.corrcoef(ours, ik.column(name))[0, 1] > 0.93
    knee = trial.coordinate_names.index("knee_angle_r")
    assert np.abs(trial.poses[:, knee] - ik.column("knee_angle_r")).max() > 0.1  # not the same IK solution


def test_embedded_model_loads_in_opensim(subject, tmp_path):
    opensim = pytest.importorskip("opensim")
    path = tmp_path / "embedded.osim"
    path.write_text(subject.opensim_text)
    model = opensim.Model(str(path))
    coords = model.getCoordinateSet()
    names = {coords.get(k).getName() for k in range(coords.getSize())}
    assert set(subject.trials[0].coordinate_names) <= names
    assert model.getBodySet().contains("calcn_r") and model.getBodySet().contains("calcn_l")


def test_pass_index_out_of_range(real_data):
    with pytest.raises(GaitDataError, match="pass_index 3 out of range"):
        read_b3d(real_data / B3D, pass_index=3)


def test_missing_file(tmp_path):
    with pytest.raises(GaitDataError, match="does not exist"):
        read_b3d(tmp_path / "none.b3d")


@pytest.mark.parametrize("n_bytes", [300_000, 1_500_000])
def test_truncated_file(real_data, tmp_path, n_bytes):
    """Cut in the header (300 kB) or inside the frames of trial 0 (1.5 MB): both give a GaitDataError."""
    path = tmp_path / "cut.b3d"
    path.write_bytes((real_data / B3D).read_bytes()[:n_bytes])
    with pytest.raises(GaitDataError, match="cannot read this .b3d") as info:
        read_b3d(path)
    assert str(path) in str(info.value)


def test_garbage_file(tmp_path):
    path = tmp_path / "junk.b3d"
    path.write_text("not a b3d file\n")
    with pytest.raises(GaitDataError, match="cannot read this .b3d"):
        read_b3d(path)
