"""Tests of the SYNTHETIC gait source: determinism, physics checked independently (OpenSim's own COM, whole
strides, flight), COP placement, learnability of the forces, and the written store."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from gaitjax.data import channels as ch
from gaitjax.data import synthetic
from gaitjax.data.errors import GaitDataError
from gaitjax.data.osim import parse_osim
from gaitjax.data.store import Store

G = 9.81
CASES = [("walk", False), ("walk", True), ("run", False), ("run", True)]


@pytest.fixture(scope="module")
def trials() -> dict[tuple[str, bool], synthetic.SyntheticTrial]:
    return {
        (gait, treadmill): synthetic.generate_trial(
            np.random.default_rng([11, k]), gait=gait, treadmill=treadmill, duration_s=5.0
        )
        for k, (gait, treadmill) in enumerate(CASES)
    }


def _right_heel_strikes(trial: synthetic.SyntheticTrial) -> np.ndarray:
    loaded = trial.grf_n[:, 0, 1] > 0
    return np.flatnonzero(loaded[1:] & ~loaded[:-1]) + 1


def _coord(trial: synthetic.SyntheticTrial, name: str) -> np.ndarray:
    return trial.coords_tc[:, ch.OSIM_DOF_COLUMNS.index(name)]


def test_same_seed_gives_identical_trials_and_another_seed_differs():
    a = synthetic.generate_trial(np.random.default_rng(3))
    b = synthetic.generate_trial(np.random.default_rng(3))
    c = synthetic.generate_trial(np.random.default_rng(4))
    for field in ("coords_tc", "grf_n", "cop_m", "calcn_m"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.meta == b.meta and a.mass_kg == b.mass_kg and a.height_m == b.height_m
    assert a.meta != c.meta


@pytest.mark.parametrize("case", CASES)
def test_mean_vertical_force_over_whole_strides_is_body_weight(trials, case):
    # The COM height returns after every stride, so the stride-mean vertical GRF must equal body weight.
    trial = trials[case]
    strikes = _right_heel_strikes(trial)
    assert len(strikes) >= 3
    total_fy = trial.grf_n[strikes[0] : strikes[-1], :, 1].sum(axis=1)
    assert total_fy.mean() / (trial.mass_kg * G) == pytest.approx(1.0, abs=0.02)
    assert trial.grf_n[..., 1].min() >= 0.0


@pytest.mark.parametrize("case", [c for c in CASES if c[0] == "run"])
def test_running_has_force_free_flight_and_the_loaded_foot_is_the_low_one(trials, case):
    trial = trials[case]
    flight = np.all(trial.grf_n == 0.0, axis=(1, 2))
    assert 0.15 < flight.mean() < 0.6  # both feet off the ground for part of every stride
    lowest_y = np.minimum(trial.calcn_m[..., 1], trial.toes_m[..., 1])  # [T, 2]
    single = (trial.grf_n[..., 1] > 0).sum(axis=1) == 1
    loaded = np.argmax(trial.grf_n[..., 1] > 0, axis=1)
    rows = np.flatnonzero(single)
    assert np.mean(lowest_y[rows, loaded[rows]] < lowest_y[rows, 1 - loaded[rows]]) > 0.95


@pytest.mark.parametrize("case", CASES)
def test_cop_lies_on_the_floor_near_the_heel_and_moves_toward_the_toes(trials, case):
    trial = trials[case]
    for foot in range(2):
        stance = trial.grf_n[:, foot, 1] > 50.0  # the pruning rule's stance threshold (N)
        dist = np.linalg.norm(trial.cop_m[stance, foot] - trial.calcn_m[stance, foot], axis=-1)
        assert dist.max() < 0.3  # the 0.3 m pruning rule keeps every synthetic trial
        np.testing.assert_array_equal(trial.cop_m[stance, foot, 1], 0.0)
        to_toes_m = np.linalg.norm((trial.cop_m[:, foot] - trial.toes_m[:, foot])[:, [0, 2]], axis=-1)
        starts = np.flatnonzero(stance[1:] & ~stance[:-1]) + 1
        ends = np.flatnonzero(stance[:-1] & ~stance[1:])
        checked = 0
        for s in starts:
            e = ends[ends > s]
            if len(e):
                assert to_toes_m[e[0]] < to_toes_m[s] - 0.03  # heel (or midfoot) to toe
                checked += 1
        assert checked >= 2


def _opensim_fk(trial: synthetic.SyntheticTrial, frames: np.ndarray):
    """Whole-body COM and calcaneus origins by OpenSim itself on the generic model, scaled uniformly."""
    osim = pytest.importorskip("opensim")
    model = osim.Model(str(synthetic.rajagopal_osim_path()))
    state = model.initSystem()
    coords = model.getCoordinateSet()
    scale = trial.height_m / synthetic.GENERIC_HEIGHT_M
    com, calcn = [], []
    for t in frames:
        for j, name in enumerate(ch.OSIM_DOF_COLUMNS):
            value = trial.coords_tc[t, j] / (scale if name in ch.TRANSLATION_COLUMNS else 1.0)
            coord = coords.get(name)
            coord.setLocked(state, False)
            coord.setValue(state, value, False)
        for side in "rl":  # the patella coupler: knee_angle_beta = knee_angle
            coords.get(f"knee_angle_{side}_beta").setValue(
                state, _coord(trial, f"knee_angle_{side}")[t], False
            )
        model.realizePosition(state)
        c = model.calcMassCenterPosition(state)
        com.append([c.get(k) for k in range(3)])
        feet = [model.getBodySet().get(f"calcn_{s}").getPositionInGround(state) for s in "rl"]
        calcn.append([[p.get(k) for k in range(3)] for p in feet])
    return scale * np.array(com), scale * np.array(calcn)


@pytest.mark.parametrize("case", [("walk", False), ("run", True)])
def test_grf_is_mass_times_com_acceleration_of_opensims_com(trials, case):
    trial = trials[case]
    frames = np.arange(len(trial.coords_tc))
    com, calcn = _opensim_fk(trial, frames)
    np.testing.assert_allclose(calcn, trial.calcn_m, atol=2e-5)
    acc = (com[2:] - 2 * com[1:-1] + com[:-2]) * synthetic.FS_HZ**2
    implied_n = trial.mass_kg * (acc + [0.0, G, 0.0])
    total_n = trial.grf_n.sum(axis=1)[1:-1]
    bw = trial.mass_kg * G
    rms_bw = np.sqrt(np.mean((implied_n - total_n) ** 2, axis=0)) / bw
    assert np.all(rms_bw < 0.01), rms_bw
    # In flight (running) the COM is ballistic: OpenSim's COM falls at g.
    flight = np.all(trial.grf_n[1:-1] == 0.0, axis=(1, 2))
    if flight.any():
        np.testing.assert_allclose(acc[flight, 1], -G, atol=0.6)


def test_vertical_force_is_learnable_from_pelvis_acceleration(trials):
    # Least squares F_y/m ≈ a·(pelvis_ty)'' + b pooled over trials: not noise, R² > 0.8.
    proxies, targets = [], []
    for trial in trials.values():
        ty = _coord(trial, "pelvis_ty")
        proxies.append((ty[2:] - 2 * ty[1:-1] + ty[:-2]) * synthetic.FS_HZ**2)
        targets.append(trial.grf_n[1:-1, :, 1].sum(axis=1) / trial.mass_kg)
    x, y = np.concatenate(proxies), np.concatenate(targets)
    design = np.stack([x, np.ones_like(x)], axis=1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    r2 = 1 - np.sum((design @ coef - y) ** 2) / np.sum((y - y.mean()) ** 2)
    assert r2 > 0.8
    assert coef[1] == pytest.approx(G, abs=0.3)  # zero pelvis acceleration <-> body weight


def test_coordinates_stay_inside_the_model_ranges(trials):
    model = parse_osim(synthetic.rajagopal_osim_path())
    for trial in trials.values():
        for j, name in enumerate(ch.OSIM_DOF_COLUMNS):
            if name in ch.TRANSLATION_COLUMNS or model.coordinates[name].locked:
                continue
            lo, hi = model.coordinates[name].range
            assert lo <= trial.coords_tc[:, j].min() and trial.coords_tc[:, j].max() <= hi, name
        assert _coord(trial, "knee_angle_r").min() >= 0.0  # Rajagopal: knee flexion is positive


def test_written_store_opens_is_flagged_synthetic_and_finite(tmp_path):
    path = synthetic.write_synthetic_store(tmp_path / "store", n_trials=6, seed=2, n_studies=3)
    store = Store.open(path)
    assert store.synthetic and store.kind == "train"
    assert len(store.trials) == 6 and {e.meta.study for e in store.trials} == set(synthetic.study_names(3))
    assert np.all(np.isfinite(store.states))
    for trial_id, entry in enumerate(store.trials):
        x_tc = store.trial_states(trial_id)
        assert len(store.window_starts(trial_id)) > 0
        # Yaw-aligned pelvis velocity (belt-corrected on treadmills) averages the walking speed.
        vx_m_s = x_tc[:, ch.CHANNEL_INDEX["pelvis_tx"]] * entry.meta.height_m
        assert vx_m_s.mean() == pytest.approx(entry.meta.extra["speed_m_s"], rel=0.05)
        fy = x_tc[:, [ch.CHANNEL_INDEX["calcn_r_force_vy"], ch.CHANNEL_INDEX["calcn_l_force_vy"]]].sum(axis=1)
        assert fy.mean() == pytest.approx(G, rel=0.1)  # N/kg; partial strides at the ends
    again = synthetic.write_synthetic_store(tmp_path / "again", n_trials=6, seed=2, n_studies=3)
    np.testing.assert_array_equal(np.asarray(Store.open(again).states), np.asarray(store.states))


def test_bad_arguments_raise_gait_data_error(monkeypatch):
    rng = np.random.default_rng(0)
    with pytest.raises(GaitDataError, match="gait"):
        synthetic.generate_trial(rng, gait="hop")
    with pytest.raises(GaitDataError, match="duration_s"):
        synthetic.generate_trial(rng, duration_s=20.0)
    with pytest.raises(GaitDataError, match="n_studies"):
        synthetic.study_names(0)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(GaitDataError, match="nimblephysics"):
        synthetic.rajagopal_osim_path()
