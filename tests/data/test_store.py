"""Tests for the prepared store: round trip, window starts, eval padding, atomic writes, clear errors."""

import csv
import json

import numpy as np
import pytest

from gaitjax.data import channels
from gaitjax.data.errors import GaitDataError
from gaitjax.data.store import Store, StoreWriter, TrialMeta, valid_window_starts

C = channels.N_CHANNELS


def _meta(study="S", subject="sub1", trial="t0", **kw):
    base = dict(study=study, subject=subject, trial=trial, source=f"/src/{study}/{trial}.b3d",
                mass_kg=70.0, height_m=1.75, rate_hz=100.0)  # fmt: skip
    base.update(kw)
    return TrialMeta(**base)


def _frames(n, seed):
    return np.random.default_rng(seed).normal(size=(n, C)).astype(np.float32)


def test_round_trip_keeps_arrays_metadata_and_fates(tmp_path):
    x0, x1 = _frames(400, 0), _frames(160, 1)
    v0 = np.ones(400, bool)
    v0[200] = False
    v1 = np.ones(160, bool)
    with StoreWriter(tmp_path / "st", kind="train", synthetic=True, info={"cmd": "x"}) as w:
        assert w.add_trial(_meta(trial="a", extra={"pos_vec": [1.0, 2.0, 3.0]}), x0, v0) == "kept"
        w.add_pruned(_meta(trial="b"), "wrong_cop", n_frames=900)
        assert w.add_trial(_meta(study="T", trial="c", height_m=1.6), x1, v1) == "kept"
    store = Store.open(tmp_path / "st")
    assert store.kind == "train" and store.synthetic and store.info == {"cmd": "x"}
    assert [e.meta.trial for e in store.trials] == ["a", "c"]
    assert [(e.meta.trial, e.status, e.reason) for e in store.all_entries] == [
        ("a", "kept", ""), ("b", "pruned", "wrong_cop"), ("c", "kept", ""),
    ]  # fmt: skip
    assert store.all_entries[1].n_frames == 900 and store.all_entries[1].trial_id == -1
    assert store.trials[0].meta.extra == {"pos_vec": [1.0, 2.0, 3.0]}
    assert store.trials[1].meta.height_m == 1.6 and store.trials[1].trial_id == 1
    np.testing.assert_array_equal(store.trial_states(0), x0)
    np.testing.assert_array_equal(store.trial_states(1), x1)
    np.testing.assert_array_equal(store.trial_valid(0), v0)
    assert isinstance(store.states, np.memmap)
    # Hand-derived: frame 200 invalid in 400 frames -> starts 0..50 and 201..250.
    np.testing.assert_array_equal(store.window_starts(0), np.r_[0:51, 201:251])
    np.testing.assert_array_equal(store.window_starts(1), np.arange(11))
    x_tc, mask_t = store.window(0, 201)
    np.testing.assert_array_equal(x_tc, x0[201:351])
    assert mask_t.all()


def test_train_store_saves_normalizer_fitted_on_valid_frames(tmp_path):
    x0, x1 = _frames(300, 2), _frames(200, 3)
    v0 = np.ones(300, bool)
    v0[250:] = False
    x0[260] = 100.0  # an invalid frame: must not set the range
    with StoreWriter(tmp_path / "st", kind="train") as w:
        w.add_trial(_meta(trial="a"), x0, v0)
        w.add_trial(_meta(trial="b"), x1, np.ones(200, bool))
    norm = Store.open(tmp_path / "st").load_normalizer()
    frames = np.concatenate([x0[:250], x1])
    np.testing.assert_array_equal(norm.data_min_, frames.min(axis=0))
    np.testing.assert_array_equal(norm.data_max_, frames.max(axis=0))


def test_train_store_prunes_trial_without_a_full_valid_window(tmp_path):
    v = np.ones(300, bool)
    v[::100] = False  # longest valid run is 99 frames
    with StoreWriter(tmp_path / "st", kind="train") as w:
        assert w.add_trial(_meta(trial="gappy"), _frames(300, 4), v) == "pruned"
        assert w.add_trial(_meta(trial="short"), _frames(149, 5), np.ones(149, bool)) == "pruned"
        w.add_trial(_meta(trial="ok"), _frames(150, 6), np.ones(150, bool))
    store = Store.open(tmp_path / "st")
    assert [(e.meta.trial, e.status, e.reason) for e in store.all_entries] == [
        ("gappy", "pruned", "no_valid_window"), ("short", "pruned", "no_valid_window"), ("ok", "kept", ""),
    ]  # fmt: skip
    np.testing.assert_array_equal(store.window_starts(0), [0])


def test_eval_store_keeps_short_trials_and_pads_with_mask(tmp_path):
    x = _frames(120, 7)
    v = np.ones(120, bool)
    v[10] = False
    with StoreWriter(tmp_path / "ev", kind="eval") as w:
        assert w.add_trial(_meta(trial="short"), x, v) == "kept"
    store = Store.open(tmp_path / "ev")
    assert not store.normalizer_path.exists()
    with pytest.raises(GaitDataError, match="only training stores"):
        store.load_normalizer()
    np.testing.assert_array_equal(store.window_starts(0), [0])
    x_tc, mask_t = store.window(0, 0)
    np.testing.assert_array_equal(x_tc[:120], x)
    assert (x_tc[120:] == 0).all()
    np.testing.assert_array_equal(mask_t, np.r_[v, np.zeros(30, bool)])
    with pytest.raises(IndexError):
        store.window(0, 120)


def test_valid_window_starts_against_brute_force():
    rng = np.random.default_rng(8)
    for _ in range(20):
        v = rng.random(int(rng.integers(100, 500))) > 0.004
        brute = [s for s in range(len(v) - 149) if v[s : s + 150].all()]
        np.testing.assert_array_equal(valid_window_starts(v), brute)


def test_exception_mid_write_leaves_no_store_and_no_temp(tmp_path):
    out = tmp_path / "st"
    with pytest.raises(RuntimeError, match="boom"), StoreWriter(out, kind="train") as w:
        w.add_trial(_meta(trial="a"), _frames(200, 9), np.ones(200, bool))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_failed_rewrite_keeps_old_store_and_rerun_replaces_it(tmp_path):
    out = tmp_path / "st"
    with StoreWriter(out, kind="train") as w:
        w.add_trial(_meta(trial="old"), _frames(200, 10), np.ones(200, bool))
    with pytest.raises(GaitDataError), StoreWriter(out, kind="train") as w:
        w.add_trial(_meta(trial="new"), _frames(200, 11), np.ones(200, bool))
        w.add_trial(_meta(trial="bad"), np.full((200, C), np.nan, np.float32), np.ones(200, bool))
    assert [e.meta.trial for e in Store.open(out).trials] == ["old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["st"]
    for _ in range(2):  # idempotent rerun
        with StoreWriter(out, kind="train") as w:
            w.add_trial(_meta(trial="new"), _frames(200, 11), np.ones(200, bool))
        store = Store.open(out)
        assert [e.meta.trial for e in store.trials] == ["new"]
        np.testing.assert_array_equal(store.trial_states(0), _frames(200, 11))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["st"]


def test_refuses_to_replace_a_directory_that_is_not_a_store(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(GaitDataError, match="refusing to replace"):
        StoreWriter(tmp_path / "mine", kind="train")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


@pytest.mark.parametrize(
    "x, valid, match",
    [
        (np.zeros((200, 62), np.float32), np.ones(200, bool), r"\[T>=1, 63\]"),
        (np.zeros((200, C), np.float32), np.ones(199, bool), "valid mask"),
        (np.zeros((200, C), np.float32), np.ones(200, int), "valid mask"),
    ],
)
def test_add_trial_rejects_bad_arrays(tmp_path, x, valid, match):
    with StoreWriter(tmp_path / "st", kind="train") as w, pytest.raises(GaitDataError, match=match):
        w.add_trial(_meta(), x, valid)


def test_add_trial_names_non_finite_channel_and_frame(tmp_path):
    x = _frames(200, 12)
    x[17, channels.CHANNEL_INDEX["knee_angle_l"]] = np.inf
    with StoreWriter(tmp_path / "st", kind="train") as w, pytest.raises(GaitDataError) as err:
        w.add_trial(_meta(trial="t9"), x, np.ones(200, bool))
    assert "knee_angle_l" in str(err.value) and "frame 17" in str(err.value) and "S/sub1/t9" in str(err.value)


def test_add_trial_rejects_bad_meta_and_duplicates(tmp_path):
    with StoreWriter(tmp_path / "st", kind="train") as w:
        with pytest.raises(GaitDataError, match="height_m"):
            w.add_trial(_meta(height_m=0.0), _frames(200, 13), np.ones(200, bool))
        with pytest.raises(GaitDataError, match="mass_kg"):
            w.add_trial(_meta(mass_kg=float("nan")), _frames(200, 13), np.ones(200, bool))
        w.add_trial(_meta(), _frames(200, 13), np.ones(200, bool))
        with pytest.raises(GaitDataError, match="added twice"):
            w.add_pruned(_meta(), "dup")
    with pytest.raises(ValueError, match="kind"):
        StoreWriter(tmp_path / "x", kind="test")


def test_open_errors_are_clear(tmp_path):
    with pytest.raises(GaitDataError, match="no store here"):
        Store.open(tmp_path / "does_not_exist")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GaitDataError, match="index.json is missing"):
        Store.open(tmp_path / "empty")
    out = tmp_path / "st"
    with StoreWriter(out, kind="train") as w:
        w.add_trial(_meta(), _frames(200, 14), np.ones(200, bool))
    index = (out / "index.json").read_text()
    (out / "index.json").write_text(index[:50])
    with pytest.raises(GaitDataError, match="corrupt index"):
        Store.open(out)
    bumped = json.loads(index)
    bumped["format_version"] = 99
    (out / "index.json").write_text(json.dumps(bumped))
    with pytest.raises(GaitDataError, match="version 99"):
        Store.open(out)
    (out / "index.json").write_text(index)
    np.save(out / "states.npy", np.zeros((199, C), np.float32))
    with pytest.raises(GaitDataError, match=r"states.npy.*\(200, 63\)"):
        Store.open(out)
    (out / "states.npy").write_bytes(b"garbage")
    with pytest.raises(GaitDataError, match="unreadable"):
        Store.open(out)
    (out / "valid.npy").unlink()
    np.save(out / "states.npy", np.zeros((200, C), np.float32))
    with pytest.raises(GaitDataError, match="valid.npy is missing"):
        Store.open(out)


def test_report_lists_every_trial_with_its_fate(tmp_path):
    with StoreWriter(tmp_path / "st", kind="train", synthetic=True) as w:
        w.add_trial(_meta(trial="a"), _frames(151, 15), np.ones(151, bool))
        w.add_pruned(_meta(trial="b"), "trunk rotation > 45 deg")
        w.add_trial(_meta(trial="c"), _frames(100, 16), np.ones(100, bool))
    path = Store.open(tmp_path / "st").write_report(tmp_path / "report.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["trial"], r["status"], r["reason"], r["n_window_starts"]) for r in rows] == [
        ("a", "kept", "", "2"), ("b", "pruned", "trunk rotation > 45 deg", "0"),
        ("c", "pruned", "no_valid_window", "0"),
    ]  # fmt: skip
    assert all(r["synthetic"] == "True" for r in rows)
