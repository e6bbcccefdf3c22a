"""Task 1 machinery: body-part masks, windows, stitching, filling and the refiner on padded trials."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from gaitjax.data import channels as ch
from gaitjax.data.errors import GaitDataError
from gaitjax.data.normalizer import MinMaxNormalizer
from gaitjax.models.bundle import LoadedModel
from gaitjax.models.registry import build_model
from gaitjax.tasks.forces import (
    cut_windows,
    estimate_forces,
    fill_kinematics,
    stitch_median,
    unknown_channels,
    window_starts,
)

KIN = np.array(ch.KINEMATIC_IDX)
FORCE = np.array(ch.KINETIC_IDX)


@pytest.mark.parametrize(
    ("parts", "count"),
    [("trunk", 9), ("pelvis", 12), ("hips", 18), ("knee", 4), ("ankles", 8), ("hips+knees", 22)],
)
def test_body_part_masks_match_the_spec_table(parts, count):
    """Spec §4.3: trunk 9, pelvis 12, hip 18, knee 4, ankle 8 masked kinematic channels."""
    idx = unknown_channels(parts)
    assert len(idx) == count and np.isin(idx, KIN).all()


def test_bad_masks_are_clear_errors():
    with pytest.raises(GaitDataError, match="unknown body part or kinematic channel 'elbow'"):
        unknown_channels("elbow")
    with pytest.raises(GaitDataError, match="hides every kinematic channel"):
        unknown_channels(list(ch.BODY_PART_CHANNELS) + [ch.MODEL_CHANNELS[i] for i in KIN])
    with pytest.raises(GaitDataError, match="kinematic channel"):
        unknown_channels("calcn_r_force_vy")


@pytest.mark.parametrize(
    ("n", "step", "starts"),
    [
        (150, 150, [0]),
        (131, 150, [0]),
        (400, 150, [0, 150, 250]),
        (300, 150, [0, 150]),
        (180, 15, [0, 15, 30]),
    ],
)
def test_window_starts_cover_every_frame(n, step, starts):
    assert window_starts(n, step).tolist() == starts


def test_too_short_trial_states_the_minimum():
    with pytest.raises(GaitDataError, match="at least 20"):
        window_starts(19, 150)


def test_cut_then_stitch_is_the_identity_and_overlaps_take_the_median():
    x = np.random.default_rng(0).normal(size=(337, 5)).astype(np.float32)
    starts = window_starts(337, 15)
    w, valid = cut_windows(x, starts)
    np.testing.assert_array_equal(stitch_median(w, valid, starts, 337), x)
    # Three windows over frame 0..: values 1, 2, 10 where they overlap -> median 2.
    w = np.zeros((3, 150, 1), np.float32)
    w[0], w[1], w[2] = 1.0, 2.0, 10.0
    out = stitch_median(w, np.ones((3, 150), bool), np.array([0, 10, 20]), 170)
    assert out[0, 0] == 1.0 and out[15, 0] == 1.5 and out[25, 0] == 2.0 and out[165, 0] == 10.0


def _normalizer(rng):
    lo = rng.uniform(-2, -1, ch.N_CHANNELS)
    return MinMaxNormalizer.from_min_max(lo, lo + rng.uniform(1, 3, ch.N_CHANNELS))


@pytest.fixture(scope="module")
def tiny_models():
    rng = np.random.default_rng(1)
    out = {}
    for kind in ("denoiser", "refiner"):
        spec = {"kind": kind, "preset": "paper", "overrides": dict(width=32, depth=1, heads=4, ff_dim=64)}
        module = build_model(kind, "paper", **spec["overrides"])
        args = (
            [np.zeros((1, 150, 63), np.float32), np.zeros(1, np.int32)]
            if kind == "denoiser"
            else [np.zeros((1, 150, 51), np.float32)]
        )
        params = module.init(jax.random.key(3), *args, deterministic=True)["params"]
        out[kind] = LoadedModel(spec, module, params, _normalizer(rng))
    return out


def test_refiner_on_a_short_trial_sees_padding_as_masked_zeros(tiny_models):
    refiner = tiny_models["refiner"]
    x = np.random.default_rng(2).normal(size=(131, 63)).astype(np.float32)
    est = estimate_forces(x, refiner=refiner)
    # By hand: normalise, pad to 150 rows with zeros (mask 0 -> input 0), apply, take 131 rows, un-normalise.
    kin = np.zeros((1, 150, 51), np.float32)
    kin[0, :131] = np.asarray(refiner.normalizer.transform(x))[:, KIN]
    y = np.asarray(refiner.module.apply({"params": refiner.params}, kin, deterministic=True))[0, :131]
    full = np.zeros((131, 63), np.float32)
    full[:, FORCE] = y
    np.testing.assert_allclose(
        est.x_tc[:, FORCE], np.asarray(refiner.normalizer.inverse(full))[:, FORCE], atol=1e-5
    )
    np.testing.assert_array_equal(est.x_tc[:, KIN], x[:, KIN])
    assert not est.filled_c.any()


def test_median_filling_is_the_training_mid_range(tiny_models):
    den = tiny_models["denoiser"]
    x = np.random.default_rng(3).normal(size=(1, 150, 63)).astype(np.float32)
    known = np.ones_like(x, bool)
    known[..., 5] = False
    out = fill_kinematics(
        x, known, method="median", denoiser=den, key=jax.random.key(0), window_ids=np.arange(1), batch=4
    )
    mid = (den.normalizer.data_min_[5] + den.normalizer.data_max_[5]) / 2
    np.testing.assert_allclose(out[..., 5], mid, rtol=1e-5)
    np.testing.assert_array_equal(out[..., :5], x[..., :5])


def test_diffusion_filling_keeps_known_channels_and_is_reproducible(tiny_models):
    x = np.random.default_rng(4).normal(size=(170, 63)).astype(np.float32)
    unknown = unknown_channels("knees")
    kwargs = dict(
        refiner=tiny_models["refiner"], denoiser=tiny_models["denoiser"], n_steps=5, key=jax.random.key(7)
    )
    a = estimate_forces(x, unknown, **kwargs)
    b = estimate_forces(x, unknown, **kwargs)
    np.testing.assert_array_equal(a.x_tc, b.x_tc)
    known = np.setdiff1d(KIN, unknown)
    np.testing.assert_array_equal(a.x_tc[:, known], x[:, known])
    assert a.filled_c[unknown].all() and a.filled_c.sum() == len(unknown)
    assert np.isfinite(a.x_tc).all() and not np.allclose(a.x_tc[:, unknown], x[:, unknown])
    many = estimate_forces(x, unknown, n_samples=3, **kwargs)
    assert many.samples_stc.shape == (3, 170, 63)
    np.testing.assert_array_equal(many.samples_stc[0], a.x_tc)  # sample 0 uses the same window ids
    with pytest.raises(GaitDataError, match="needs the denoiser"):
        estimate_forces(x, unknown, refiner=tiny_models["refiner"])
