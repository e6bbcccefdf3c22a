"""Guidance: hinge loss and tolerance bands by hand, jax.grad through a denoiser against central finite
differences (float64), descent of the loss, and guided sampling (window, chunking, effect)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gaitjax.data.channels import CHANNEL_INDEX, MODEL_CHANNELS
from gaitjax.data.errors import GaitDataError
from gaitjax.diffusion.ddim import sample, sample_chunked
from gaitjax.diffusion.guidance import (
    Guidance,
    apply_guidance,
    guidance_objective,
    hinge_guidance,
    hinge_loss,
    tolerance_from_range,
)
from gaitjax.diffusion.schedule import make_schedule

SCHEDULE = make_schedule("scaled_linear")


def _small_denoiser(dtype):
    """A nonlinear x0 predictor mixing channels and frames of each window, dependent on t."""
    rng = np.random.default_rng(0)
    w_cc = jnp.asarray(rng.normal(size=(3, 3)) / 2, dtype)
    m_tt = jnp.asarray(np.eye(4) + 0.2 * rng.normal(size=(4, 4)), dtype)

    def denoise(x_btc, t_b):
        h = jnp.einsum("st,btc->bsc", m_tt, x_btc) @ w_cc
        return jnp.tanh(h) * 2.0 + 0.3 * x_btc * (t_b[:, None, None] / 1000.0) + jnp.sin(x_btc) * 0.1

    return denoise


def test_hinge_loss_by_hand():
    x0_hat = jnp.array([[[1.0, -2.0], [0.5, 3.0]]])  # [1, 2, 2]
    target = jnp.array([[[0.0, 0.0], [0.0, 0.0]]])
    thd_c = jnp.array([0.6, 2.5])
    # |d| - thd: [[0.4, -0.5], [-0.1, 0.5]] -> relu: [[0.4, 0], [0, 0.5]]
    assert float(hinge_loss(x0_hat, target, thd_c)) == pytest.approx(0.9)
    assert float(hinge_loss(x0_hat, target, thd_c, jnp.array([2.0, 10.0]))) == pytest.approx(0.8 + 5.0)
    assert float(hinge_loss(x0_hat, target, jnp.array([np.inf, 0.0]))) == pytest.approx(5.0)


def test_tolerance_from_range_per_channel_and_unguided_channels():
    rng = np.random.default_rng(1)
    n_c = len(MODEL_CHANNELS)
    lo_c, span_c = rng.normal(size=n_c), rng.uniform(0.5, 3.0, n_c)
    windows = lo_c + span_c * rng.uniform(0.0, 1.0, size=(3, 20, n_c))
    windows[1, 5], windows[2, 7] = lo_c, lo_c + span_c  # make the range exactly span_c
    thd_c = tolerance_from_range(windows, 0.1)
    unguided = [n for n in MODEL_CHANNELS if "_vel" in n or "force" in n]
    assert len(unguided) == 12 + 12 + 6  # GRF/COP, angular velocities, 1-DoF velocities
    for name in MODEL_CHANNELS:
        c = CHANNEL_INDEX[name]
        if name in unguided:
            assert thd_c[c] == np.inf, name
        else:  # each channel its own band (not the released code's leftover threshold)
            assert thd_c[c] == pytest.approx(0.1 * span_c[c], rel=1e-6), name
    assert np.isfinite(thd_c[CHANNEL_INDEX["pelvis_tx"]])  # pelvis velocities are guided (the paper's v)


def test_tolerance_from_range_rejects_bad_input():
    with pytest.raises(GaitDataError, match="channel names"):
        tolerance_from_range(np.zeros((1, 5, 4)), 0.1)
    bad = np.zeros((1, 5, 63))
    bad[0, 2, CHANNEL_INDEX["knee_angle_r"]] = np.nan
    with pytest.raises(GaitDataError, match="knee_angle_r"):
        tolerance_from_range(bad, 0.1)
    with pytest.raises(GaitDataError, match=r"\[B>0"):
        tolerance_from_range(np.zeros((5, 63)), 0.1)


def test_guidance_gradient_matches_central_finite_differences():
    with jax.enable_x64(True):
        rng = np.random.default_rng(2)
        denoise = _small_denoiser(jnp.float64)
        x_btc = jnp.asarray(rng.normal(size=(2, 4, 3)))
        target_btc = jnp.asarray(rng.normal(size=(2, 4, 3)))
        thd_c = jnp.array([0.1, 0.3, 0.05])
        weight_btc = jnp.asarray(rng.uniform(0.5, 2.0, size=(2, 4, 3)))
        t_b = jnp.array([500, 20])
        loss = lambda x0: hinge_loss(x0, target_btc, thd_c, weight_btc)
        objective = lambda x: guidance_objective(denoise, loss, x, t_b)
        grad = np.asarray(jax.grad(objective)(x_btc))
        assert grad.dtype == np.float64 and np.abs(grad).max() > 0.1
        h = 1e-6
        fd = np.zeros_like(grad)
        for idx in np.ndindex(*grad.shape):
            e = np.zeros(grad.shape)
            e[idx] = h
            fd[idx] = (float(objective(x_btc + e)) - float(objective(x_btc - e))) / (2 * h)
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-7)


def test_guidance_steps_lower_the_loss():
    rng = np.random.default_rng(3)
    denoise = _small_denoiser(jnp.float32)
    x_btc = jnp.asarray(rng.normal(size=(2, 4, 3)), jnp.float32)
    target_btc = jnp.asarray(rng.normal(size=(2, 4, 3)) * 2, jnp.float32)
    thd_c = jnp.array([0.1, 0.2, 0.1])
    loss = lambda x0: hinge_loss(x0, target_btc, thd_c)
    t_b = jnp.array([300, 300])
    losses = [float(guidance_objective(denoise, loss, x_btc, t_b))]
    for _ in range(5):
        x_btc = apply_guidance(denoise, loss, x_btc, t_b, n_grad_steps=1, lr=0.02)
        losses.append(float(guidance_objective(denoise, loss, x_btc, t_b)))
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False)), losses
    # n steps in one call (one lax.scan) equal n single steps.
    x0 = jnp.asarray(rng.normal(size=(2, 4, 3)), jnp.float32)
    x_loop = x0
    for _ in range(3):
        x_loop = apply_guidance(denoise, loss, x_loop, t_b, n_grad_steps=1, lr=0.02)
    x_scan = apply_guidance(denoise, loss, x0, t_b, n_grad_steps=3, lr=0.02)
    np.testing.assert_allclose(np.asarray(x_scan), np.asarray(x_loop), rtol=1e-6, atol=1e-6)


def _guided_setup(n_windows=5):
    rng = np.random.default_rng(4)
    target_btc = rng.normal(size=(n_windows, 4, 3)).astype(np.float32) * 2
    mask_btc = np.zeros_like(target_btc)
    mask_btc[:, :, 0] = 1.0  # channel 0 known (the manipulated channel); 1 and 2 generated
    thd_c = np.array([0.05, 0.05, np.inf], np.float32)  # channel 2 unguided
    return target_btc, mask_btc, thd_c


def test_guided_sampling_pulls_generated_channels_towards_target():
    target_btc, mask_btc, thd_c = _guided_setup()

    def shrink(x_btc, t_b):  # element-wise: channels do not interact
        sqrt_abar_b11 = jnp.sqrt(SCHEDULE.alphas_cumprod[t_b])[:, None, None]
        return 3.0 * jnp.tanh(sqrt_abar_b11 * x_btc / 3.0)

    kw = dict(
        known_btc=target_btc, mask_btc=mask_btc, window_ids_b=np.arange(5), key=jax.random.key(0), n_steps=10
    )
    plain = np.asarray(sample(shrink, SCHEDULE, **kw).x0_btc)
    guided = np.asarray(
        sample(shrink, SCHEDULE, guidance=hinge_guidance(target_btc, thd_c, lr=0.05), **kw).x0_btc
    )
    err = lambda x, c: np.abs(x[:, :, c] - target_btc[:, :, c]).mean()
    assert err(guided, 1) < 0.5 * err(plain, 1), (err(guided, 1), err(plain, 1))
    np.testing.assert_array_equal(guided[:, :, 0], target_btc[:, :, 0])  # known channel exact
    np.testing.assert_array_equal(guided[:, :, 2], plain[:, :, 2])  # infinite band: channel 2 not guided


def test_guidance_outside_its_t_window_changes_nothing():
    target_btc, mask_btc, thd_c = _guided_setup()
    denoise = _small_denoiser(jnp.float32)
    kw = dict(
        known_btc=target_btc, mask_btc=mask_btc, window_ids_b=np.arange(5), key=jax.random.key(1), n_steps=10
    )
    plain = np.asarray(sample(denoise, SCHEDULE, **kw).x0_btc)
    # 10 steps call the model at t = 999, 899, ..., 99: a window [10, 50] contains none of them.
    idle = hinge_guidance(target_btc, thd_c, lr=0.05, t_start=50, t_end=10)
    np.testing.assert_array_equal(np.asarray(sample(denoise, SCHEDULE, guidance=idle, **kw).x0_btc), plain)
    late = hinge_guidance(target_btc, thd_c, lr=0.05, t_start=99, t_end=99)  # only the last model call
    late_x = np.asarray(sample(denoise, SCHEDULE, guidance=late, **kw).x0_btc)
    assert np.abs(late_x - plain)[:, :, 1].max() > 1e-3
    off = Guidance(loss_fn=None)
    np.testing.assert_array_equal(np.asarray(sample(denoise, SCHEDULE, guidance=off, **kw).x0_btc), plain)


def test_guided_sampling_is_chunk_invariant():
    target_btc, mask_btc, thd_c = _guided_setup(7)
    denoise = _small_denoiser(jnp.float32)
    weight_btc = np.random.default_rng(5).uniform(0.5, 1.5, size=target_btc.shape).astype(np.float32)
    guidance = hinge_guidance(target_btc, thd_c, weight_btc, n_grad_steps=2, lr=0.05)
    kw = dict(known_btc=target_btc, mask_btc=mask_btc, window_ids_b=np.arange(7) * 3, key=jax.random.key(2),
              n_steps=6, guidance=guidance)  # fmt: skip
    full = np.asarray(sample(denoise, SCHEDULE, **kw).x0_btc)
    chunked = np.asarray(sample_chunked(denoise, SCHEDULE, max_windows_per_call=3, **kw).x0_btc)
    np.testing.assert_allclose(chunked, full, rtol=0, atol=1e-6)


def test_user_loss_of_x0_hat_only():
    target_btc, mask_btc, _ = _guided_setup()
    denoise = _small_denoiser(jnp.float32)
    # Any scalar function of x0_hat: here, push generated channel 2 towards +3.
    guidance = Guidance(loss_fn=lambda x0: jnp.sum((x0[:, :, 2] - 3.0) ** 2), n_grad_steps=3, lr=0.01)
    kw = dict(
        known_btc=target_btc, mask_btc=mask_btc, window_ids_b=np.arange(5), key=jax.random.key(3), n_steps=10
    )
    plain = np.asarray(sample(denoise, SCHEDULE, **kw).x0_btc)
    guided = np.asarray(sample(denoise, SCHEDULE, guidance=guidance, **kw).x0_btc)
    assert np.abs(guided[:, :, 2] - 3).mean() < np.abs(plain[:, :, 2] - 3).mean()


def test_bad_guidance_settings_raise():
    with pytest.raises(ValueError, match="t_end"):
        Guidance(loss_fn=None, t_start=10, t_end=20)
    with pytest.raises(ValueError, match="n_grad_steps"):
        Guidance(loss_fn=None, n_grad_steps=-1)
    with pytest.raises(GaitDataError, match="thd_c must have shape"):
        hinge_guidance(np.zeros((2, 4, 3)), np.zeros(4))
    target_btc, mask_btc, thd_c = _guided_setup()
    with pytest.raises(GaitDataError, match="leading axis B"):
        sample(_small_denoiser(jnp.float32), SCHEDULE, known_btc=target_btc[:3], mask_btc=mask_btc[:3],
               window_ids_b=np.arange(3), key=jax.random.key(0), guidance=hinge_guidance(target_btc, thd_c))  # fmt: skip
