"""Modification grids: manipulations, known channels, common random numbers across factors, chunking."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from gaitjax.data import channels as ch
from gaitjax.data import rotation
from gaitjax.data.errors import GaitDataError
from gaitjax.data.normalizer import MinMaxNormalizer
from gaitjax.models.bundle import LoadedModel
from gaitjax.models.registry import build_model
from gaitjax.tasks.grid import (
    SPEED_KNOWN,
    TRUNK_SWAY_KNOWN,
    GridSpec,
    grid_table,
    run_grid,
    scale_lumbar_bending,
    scale_pelvis_ap_velocity,
    summarise,
)


def _base_windows(n_w=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=0.3, size=(n_w, 150, 63)).astype(np.float32)
    t = np.arange(150) / 100
    for w in range(n_w):
        euler = np.stack([0.1 * np.sin(2 * np.pi * t), 0.2 * np.sin(2 * np.pi * t + w), 0.05 * t], -1)
        x[w][:, list(ch.SIX_D_IDX["lumbar"])] = rotation.euler_zxy_to_6d(euler)
    return x


@pytest.fixture(scope="module")
def denoiser():
    spec = {"kind": "denoiser", "preset": "paper", "overrides": dict(width=32, depth=1, heads=4, ff_dim=64)}
    module = build_model("denoiser", "paper", **spec["overrides"])
    params = module.init(jax.random.key(0), np.zeros((1, 150, 63), np.float32), np.zeros(1, np.int32),
                         deterministic=True)["params"]  # fmt: skip
    return LoadedModel(spec, module, params, MinMaxNormalizer.from_min_max(-np.ones(63), np.ones(63)))


def test_scale_lumbar_bending_multiplies_the_bending_angle_only():
    x = _base_windows()
    y = scale_lumbar_bending(x, 2.5)
    six = list(ch.SIX_D_IDX["lumbar"])
    e0 = rotation.six_d_to_euler_zxy(x[0][:, six].astype(np.float64))
    e1 = rotation.six_d_to_euler_zxy(y[0][:, six].astype(np.float64))
    np.testing.assert_allclose(e1[:, 1], 2.5 * e0[:, 1], atol=1e-5)
    np.testing.assert_allclose(e1[:, [0, 2]], e0[:, [0, 2]], atol=1e-5)
    others = np.setdiff1d(np.arange(63), list(TRUNK_SWAY_KNOWN))
    np.testing.assert_array_equal(y[..., others], x[..., others])
    np.testing.assert_allclose(scale_lumbar_bending(x, 1.0)[..., six], x[..., six], atol=1e-6)


def test_scale_pelvis_ap_velocity():
    x = _base_windows()
    y = scale_pelvis_ap_velocity(x, 1.25)
    np.testing.assert_allclose(y[..., 0], 1.25 * x[..., 0], rtol=1e-6)
    np.testing.assert_array_equal(y[..., 1:], x[..., 1:])


def test_empty_or_bad_grids_are_clear_errors():
    with pytest.raises(GaitDataError, match="no entries"):
        GridSpec(factors=(), n_seeds=1, known_c=SPEED_KNOWN)
    with pytest.raises(GaitDataError, match="n_seeds"):
        GridSpec(factors=(1.0,), n_seeds=0, known_c=SPEED_KNOWN)
    with pytest.raises(GaitDataError, match="known_c is empty"):
        GridSpec(factors=(1.0,), n_seeds=1, known_c=())


@pytest.mark.parametrize("guided", [False, True])
def test_grid_holds_manipulated_channels_and_pairs_noise_across_factors(denoiser, guided):
    x = _base_windows()
    valid = np.ones((2, 150), bool)
    valid[1, 120:] = False  # a padded trial
    spec = GridSpec(factors=(1.0, 1.2, 1.0), n_seeds=2, known_c=SPEED_KNOWN, guided=guided, n_steps=3,
                    n_grad_steps=2)  # fmt: skip
    g = run_grid(
        denoiser, x, valid, scale_pelvis_ap_velocity, spec, key=jax.random.key(1), max_windows_per_call=5
    )
    assert g.samples_fwstc.shape == (3, 2, 2, 150, 63)
    # Known channels equal the manipulated window exactly on valid frames.
    for f, factor in enumerate(spec.factors):
        np.testing.assert_array_equal(
            g.samples_fwstc[f, 0, :, :, 0], np.broadcast_to(factor * x[0, :, 0], (2, 150))
        )
    # The same factor twice -> identical samples (same ids); seeds differ from each other.
    np.testing.assert_array_equal(g.samples_fwstc[0], g.samples_fwstc[2])
    assert not np.allclose(g.samples_fwstc[0, 0, 0], g.samples_fwstc[0, 0, 1])
    # Chunking does not change anything.
    g2 = run_grid(
        denoiser, x, valid, scale_pelvis_ap_velocity, spec, key=jax.random.key(1), max_windows_per_call=64
    )
    np.testing.assert_allclose(g2.samples_fwstc, g.samples_fwstc, atol=1e-5)


def test_table_rows_and_summary_by_hand(denoiser):
    x = _base_windows()
    spec = GridSpec(factors=(0.9, 1.1), n_seeds=2, known_c=SPEED_KNOWN, guided=False, n_steps=2)
    g = run_grid(denoiser, x, np.ones((2, 150), bool), scale_pelvis_ap_velocity, spec, key=jax.random.key(0))
    rows = grid_table(g, lambda x_tc, w: {"mean_vx": float(x_tc[:, 0].mean()), "trial": float(w)}, ["a", "b"])
    assert len(rows) == 2 * 2 * 2 * 2
    s = summarise(rows)
    # trial metric: per seed mean over trials = (0 + 1) / 2 for every factor, SD over seeds 0.
    assert s["trial"][0.9] == (0.5, 0.0)
    want = np.mean([0.9 * x[w, :, 0].mean() for w in range(2)])
    assert s["mean_vx"][0.9][0] == pytest.approx(want, rel=1e-5)
