"""Tests for the Grain pipeline: the paper's sampling frequencies, determinism, resumable state, sharding,
and the in-order evaluation pass with padding."""

import grain
import numpy as np
import pytest

from gaitjax.data import channels
from gaitjax.data.normalizer import MinMaxNormalizer
from gaitjax.data.pipeline import (
    WindowSampler,
    eval_window_starts,
    local_indices,
    make_eval_iterator,
    make_train_iterator,
    uniforms,
)
from gaitjax.data.store import Store, StoreWriter, TrialMeta

C = channels.N_CHANNELS
# Three studies with very different trial counts and lengths. Gaps: frame indices marked invalid.
STUDIES = {
    "A": [(1000, [])],
    "B": [(150, []), (400, [300]), (250, [])],
    "C": [(150 + 7 * k, []) for k in range(10)],
}


def _write(path, studies, kind="train", seed=0):
    rng = np.random.default_rng(seed)
    with StoreWriter(path, kind=kind, synthetic=True) as w:
        for study, trials in studies.items():
            for k, (n, gaps) in enumerate(trials):
                valid = np.ones(n, bool)
                valid[gaps] = False
                meta = TrialMeta(study, "sub", f"t{k}", "synthetic", 60.0 + k, 1.5 + 0.01 * k, 100.0)
                w.add_trial(meta, rng.normal(size=(n, C)).astype(np.float32), valid)
    return Store.open(path)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("pipe") / "st", STUDIES)


def _starts_by_hand(n, gaps):
    """Valid starts written out from the definition: [s, s+150) avoids every gap."""
    return [s for s in range(n - 149) if not any(s <= g < s + 150 for g in gaps)]


def _five_sigma_chi2(observed, expected):
    df = len(observed) - 1
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < df + 5 * np.sqrt(2 * df), (chi2, df)


def test_uniforms_are_deterministic_and_uniform():
    idx = np.arange(200_000)
    u = uniforms(3, idx, 3)
    np.testing.assert_array_equal(u, uniforms(3, idx, 3))
    np.testing.assert_array_equal(u[1000:1010], uniforms(3, idx[1000:1010], 3))  # per index, not per call
    assert (u >= 0).all() and (u < 1).all()
    hist = np.stack([np.histogram(u[:, k], bins=50, range=(0, 1))[0] for k in range(3)])
    for k in range(3):
        _five_sigma_chi2(hist[k], np.full(50, len(idx) / 50))
    assert abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 5 / np.sqrt(len(idx))
    assert not np.array_equal(u, uniforms(4, idx, 3))


def test_sampling_frequencies_follow_study_then_trial_then_start(store):
    n = 300_000
    trial_n, start_n = WindowSampler(store, seed=11).sample(np.arange(n))
    names = [(e.meta.study, int(e.meta.trial[1:])) for e in store.trials]
    # Studies: 1/3 each, whatever their trial counts (binomial 5-sigma bounds).
    study_n = np.array([names[j][0] for j in trial_n])
    for s in STUDIES:
        count = (study_n == s).sum()
        assert abs(count - n / 3) < 5 * np.sqrt(n * (1 / 3) * (2 / 3)), (s, count)
    # Trials: 1/3 * 1/len(study) each.
    expected = np.array([n / 3 / len(STUDIES[s]) for s, _ in names])
    _five_sigma_chi2(np.bincount(trial_n, minlength=len(names)), expected)
    # Starts: uniform over each trial's own valid starts, and only valid starts are drawn. One chi-square
    # over every (trial, start) cell, expected count = trial count / number of starts.
    observed, expected = [], []
    for j, (s, k) in enumerate(names):
        allowed = np.array(_starts_by_hand(*STUDIES[s][k]))
        got = start_n[trial_n == j]
        assert np.isin(got, allowed).all(), (s, k)
        observed.append(np.bincount(np.searchsorted(allowed, got), minlength=len(allowed)))
        expected.append(np.full(len(allowed), len(got) / len(allowed)))
    df = sum(len(o) - 1 for o in observed)
    chi2 = sum(float(((o - e) ** 2 / e).sum()) for o, e in zip(observed, expected, strict=True))
    assert chi2 < df + 5 * np.sqrt(2 * df), (chi2, df)
    # Trial A (851 starts) alone: start frequencies across 37 equal-width bins of its starts.
    a = start_n[trial_n == names.index(("A", 0))]
    _five_sigma_chi2(np.histogram(a, bins=37, range=(0, 851))[0], np.full(37, len(a) / 37))
    # B/t1 has a gap at frame 300: starts 0..150 and 301..250 -> only 0..150 (151 starts).
    b1 = start_n[trial_n == names.index(("B", 1))]
    assert b1.max() <= 150 and len(np.unique(b1)) == 151


def _take(it, k):
    return [next(it) for _ in range(k)]


def _assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_batches_hold_normalised_windows_of_the_store(store):
    norm = store.load_normalizer()
    (batch,) = _take(make_train_iterator(store, batch_size=16, seed=1, normalizer=norm, prefetch=0), 1)
    assert batch["x_btc"].shape == (16, 150, C) and batch["x_btc"].dtype == np.float32
    for b in range(16):
        j, s = int(batch["trial_b"][b]), int(batch["start_b"][b])
        raw = np.asarray(store.states[store.trials[j].row_offset + s :][:150])
        expected = raw * norm.scale_ + norm.min_
        np.testing.assert_allclose(batch["x_btc"][b], expected, rtol=1e-6, atol=1e-5)
        assert batch["height_b"][b] == np.float32(store.trials[j].meta.height_m)
    assert batch["mask_bt"].all() and not batch["pad_bt"].any()
    assert np.abs(batch["x_btc"]).max() <= 10.0 + 1e-4


def test_same_seed_same_batches_different_seed_different(store):
    norm = store.load_normalizer()
    first = _take(make_train_iterator(store, batch_size=8, seed=5, normalizer=norm), 3)
    again = _take(make_train_iterator(store, batch_size=8, seed=5, normalizer=norm, num_threads=2), 3)
    _assert_batches_equal(first, again)
    other = _take(make_train_iterator(store, batch_size=8, seed=6, normalizer=norm), 3)
    assert not np.array_equal(first[0]["start_b"], other[0]["start_b"])


@pytest.mark.parametrize("num_threads, prefetch", [(0, 0), (0, 3), (2, 4)])
def test_state_restore_resumes_exactly(store, num_threads, prefetch):
    norm = store.load_normalizer()
    kw = dict(batch_size=8, seed=9, normalizer=norm, num_threads=num_threads, prefetch=prefetch)
    it = make_train_iterator(store, **kw)
    _take(it, 4)
    state = it.get_state()
    following = _take(it, 3)
    fresh = make_train_iterator(store, **kw)
    fresh.set_state(state)
    _assert_batches_equal(_take(fresh, 3), following)


def test_orbax_checkpoint_of_the_iterator(store, tmp_path):
    ocp = pytest.importorskip("orbax.checkpoint")
    norm = store.load_normalizer()
    it = make_train_iterator(store, batch_size=8, seed=2, normalizer=norm)
    _take(it, 2)
    with ocp.CheckpointManager(tmp_path / "ckpt") as mgr:
        mgr.save(2, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
        mgr.wait_until_finished()
    following = _take(it, 2)
    fresh = make_train_iterator(store, batch_size=8, seed=2, normalizer=norm)
    with ocp.CheckpointManager(tmp_path / "ckpt") as mgr:
        mgr.restore(2, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(fresh)))
    _assert_batches_equal(_take(fresh, 2), following)


def test_process_shards_are_disjoint_and_union_is_the_single_process_stream(store):
    norm = store.load_normalizer()
    single = _take(make_train_iterator(store, batch_size=16, seed=3, normalizer=norm), 3)
    shards = [
        _take(
            make_train_iterator(
                store, batch_size=16, seed=3, normalizer=norm, process_index=p, process_count=4
            ),
            3,
        )
        for p in range(4)
    ]
    for step in range(3):
        for key in single[step]:
            joined = np.concatenate([shards[p][step][key] for p in range(4)])
            np.testing.assert_array_equal(joined, single[step][key], err_msg=key)
        owned = [set(local_indices(step, 16, p, 4).tolist()) for p in range(4)]
        assert sum(len(o) for o in owned) == 16 and set().union(*owned) == set(
            range(16 * step, 16 * step + 16)
        )
    with pytest.raises(ValueError, match="multiple of 3"):
        make_train_iterator(store, batch_size=16, seed=3, normalizer=norm, process_index=0, process_count=3)


def test_eval_window_starts_by_hand():
    np.testing.assert_array_equal(eval_window_starts(100, 150), [0])
    np.testing.assert_array_equal(eval_window_starts(150, 150), [0])
    np.testing.assert_array_equal(eval_window_starts(400, 150), [0, 150, 300])
    np.testing.assert_array_equal(eval_window_starts(300, 150), [0, 150])
    np.testing.assert_array_equal(eval_window_starts(200, 15), [0, 15, 30, 45, 60])


def test_eval_iterator_covers_all_windows_in_order_with_padding(tmp_path):
    store = _write(tmp_path / "ev", {"X": [(100, [5]), (400, [])], "Y": [(150, [])]}, kind="eval")
    norm = MinMaxNormalizer.fit(store.states, store.valid)
    batches = list(make_eval_iterator(store, batch_size=4, normalizer=norm, prefetch=0))
    # Hand-derived windows: trial 0 -> [0]; trial 1 -> [0, 150, 300]; trial 2 -> [0]; then 3 fillers.
    assert len(batches) == 2
    trial = np.concatenate([b["trial_b"] for b in batches])
    start = np.concatenate([b["start_b"] for b in batches])
    np.testing.assert_array_equal(trial[:5], [0, 1, 1, 1, 2])
    np.testing.assert_array_equal(start[:5], [0, 0, 150, 300, 0])
    np.testing.assert_array_equal(trial[5:], [-1, -1, -1])
    mask = np.concatenate([b["mask_bt"] for b in batches])
    pad = np.concatenate([b["pad_bt"] for b in batches])
    x = np.concatenate([b["x_btc"] for b in batches])
    # Window 0: 100 frames, frame 5 invalid; padding rows are exactly zero.
    np.testing.assert_array_equal(mask[0], np.r_[np.ones(5), 0, np.ones(94), np.zeros(50)].astype(bool))
    np.testing.assert_array_equal(pad[0], np.r_[np.zeros(100), np.ones(50)].astype(bool))
    assert (x[0, 100:] == 0).all()
    np.testing.assert_allclose(
        x[0, :100], norm.transform(np.asarray(store.trial_states(0))), rtol=1e-6, atol=1e-5
    )
    # Window (trial 1, start 300): frames 300..399 then 50 padded rows.
    assert pad[3].sum() == 50 and mask[3].sum() == 100 and (x[3, 100:] == 0).all()
    assert not mask[5:].any() and pad[5:].all() and (x[5:] == 0).all()
    # Two processes: each takes half of every batch; together they give the same windows in order.
    halves = [list(make_eval_iterator(store, batch_size=4, normalizer=norm, process_index=p, process_count=2))
              for p in range(2)]  # fmt: skip
    for k, batch in enumerate(batches):
        for key in batch:
            joined = np.concatenate([halves[0][k][key], halves[1][k][key]])
            np.testing.assert_array_equal(joined, batch[key], err_msg=key)


def test_sampler_rejects_store_without_windows(tmp_path):
    store = _write(tmp_path / "ev", {"X": [(100, [])]}, kind="eval")
    # An eval store's short trial is served padded: one start [0], so sampling still works.
    trial, start = WindowSampler(store, seed=0).sample(np.arange(10))
    assert (trial == 0).all() and (start == 0).all()
