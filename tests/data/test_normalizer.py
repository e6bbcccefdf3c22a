"""Tests for the min-max normaliser: hand-computed values, the tiny-range rule, fitting, JSON, jax input."""

import jax.numpy as jnp
import numpy as np
import pytest

from gaitjax.data.errors import GaitDataError
from gaitjax.data.normalizer import MinMaxNormalizer


def test_hand_computed_scale_and_offset():
    # channel 0: min -1, max 3 -> scale 20/4 = 5, min_ = -10 - (-1)(5) = -5
    # channel 1: constant 2 -> range 0 < 10 eps, replaced by 1 -> scale 20, min_ = -10 - 2*20 = -50
    # channel 2: range 1e-7 < 10 eps (1.19e-6) -> scale 20, min_ = -10 - 0
    # channel 3: range 1e-5 > 10 eps -> scale 2e6, min_ = -10
    norm = MinMaxNormalizer.from_min_max([-1.0, 2.0, 0.0, 0.0], [3.0, 2.0, 1e-7, 1e-5])
    np.testing.assert_allclose(norm.scale_, [5.0, 20.0, 20.0, 2e6], rtol=1e-6)
    np.testing.assert_allclose(norm.min_, [-5.0, -50.0, -10.0, -10.0], rtol=1e-6)
    x = np.array([[1.0, 2.0, 0.0, 1e-5], [-1.0, 3.0, 1e-7, 0.0], [5.0, 2.0, 0.0, 0.0]], np.float32)
    expected = [[0.0, -10.0, -10.0, 10.0], [-10.0, 10.0, -10.0 + 2e-6, -10.0], [20.0, -10.0, -10.0, -10.0]]
    np.testing.assert_allclose(norm.transform(x), expected, rtol=1e-5, atol=1e-5)  # 20: no clipping
    assert norm.transform(x).dtype == np.float32


def test_fit_uses_only_valid_rows_and_matches_numpy_extremes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 5)).astype(np.float32)
    valid = rng.random(1000) > 0.3
    x[~valid] = 1e6  # invalid rows must not widen the range
    norm = MinMaxNormalizer.fit(x, valid, chunk_rows=37)
    np.testing.assert_array_equal(norm.data_min_, x[valid].min(axis=0))
    np.testing.assert_array_equal(norm.data_max_, x[valid].max(axis=0))
    y = norm.transform(x[valid])
    np.testing.assert_allclose(y.min(axis=0), -10.0, atol=1e-5)
    np.testing.assert_allclose(y.max(axis=0), 10.0, atol=1e-5)


def test_fit_rejects_empty_and_non_finite():
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(GaitDataError, match="no valid frames"):
        MinMaxNormalizer.fit(x, np.zeros(4, bool))
    x[1, 2] = np.nan
    with pytest.raises(GaitDataError, match="non-finite"):
        MinMaxNormalizer.fit(x)


def test_inverse_round_trip_numpy_and_jax():
    rng = np.random.default_rng(1)
    x = rng.uniform(-3, 7, size=(50, 63)).astype(np.float32)
    norm = MinMaxNormalizer.fit(x)
    np.testing.assert_allclose(norm.inverse(norm.transform(x)), x, atol=1e-5)
    y_jax = norm.transform(jnp.asarray(x))
    assert isinstance(y_jax, type(jnp.zeros(1)))
    np.testing.assert_allclose(np.asarray(y_jax), norm.transform(x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(norm.inverse(y_jax)), x, atol=1e-5)


def test_json_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(2)
    norm = MinMaxNormalizer.fit(rng.normal(size=(20, 63)).astype(np.float32))
    back = MinMaxNormalizer.load(norm.save(tmp_path / "n.json"))
    for name in ("scale_", "min_", "data_min_", "data_max_"):
        np.testing.assert_array_equal(getattr(back, name), getattr(norm, name))
        assert getattr(back, name).dtype == np.float32


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(GaitDataError, match="not found"):
        MinMaxNormalizer.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(GaitDataError, match="bad.json"):
        MinMaxNormalizer.load(bad)
    bad.write_text('{"scale_": [1.0], "min_": [0.0]}')
    with pytest.raises(GaitDataError, match="data_min_"):
        MinMaxNormalizer.load(bad)
    bad.write_text('{"scale_": [0.0], "min_": [0.0], "data_min_": [0.0], "data_max_": [1.0]}')
    with pytest.raises(GaitDataError, match="non-positive"):
        MinMaxNormalizer.load(bad)
