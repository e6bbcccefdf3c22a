"""Diffusion and force losses against oracle/zero predictors whose loss is known by hand."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gaitjax.diffusion.losses import diffusion_loss, force_loss
from gaitjax.diffusion.schedule import make_schedule

KINETIC = list(range(9, 21))  # spec §1.2 / §5: the 12 force channels are 9..20
KINEMATIC = [c for c in range(63) if c not in KINETIC]


def _jit(loss_fn, apply_fn, *args, **kwargs):
    """Runs a loss under one jit (much cheaper than op-by-op dispatch on a busy CPU)."""
    return jax.jit(lambda *a: loss_fn(apply_fn, None, *a, **kwargs))(*args)


def _x0(key, shape=(8, 150, 63)):
    return 10.0 * jax.random.uniform(key, shape, minval=-1.0, maxval=1.0)


def test_zero_prediction_of_x0_gives_mean_square_of_data():
    schedule = make_schedule()
    x0 = _x0(jax.random.key(0))
    zero = lambda p, x, t, rngs: jnp.zeros_like(x)  # noqa: E731
    loss, aux = _jit(diffusion_loss, zero, x0, jax.random.key(1), schedule, prediction="x0")
    assert float(loss) == pytest.approx(float(np.mean(np.asarray(x0, np.float64) ** 2)), rel=1e-5)
    assert float(aux["mse"]) == pytest.approx(float(loss))


def test_oracle_noise_predictor_has_zero_eps_loss():
    # An oracle that knows x0 recovers eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t) only if x_t was built
    # with the step t passed to the model; its eps-loss is then 0, and its x0-loss is large.
    schedule = make_schedule()
    x0 = _x0(jax.random.key(2))
    abar = schedule.alphas_cumprod

    def oracle(params, x_t, t, rngs):
        a = abar[t][:, None, None]
        return (x_t - jnp.sqrt(a) * x0) / jnp.sqrt(1.0 - a)

    loss_eps, _ = _jit(diffusion_loss, oracle, x0, jax.random.key(3), schedule, prediction="eps")
    loss_x0, _ = _jit(diffusion_loss, oracle, x0, jax.random.key(3), schedule, prediction="x0")
    assert float(loss_eps) < 1e-4
    assert float(loss_x0) > 1.0


def test_zero_eps_prediction_loss_is_noise_variance():
    schedule = make_schedule()
    x0 = _x0(jax.random.key(4), (64, 150, 63))
    zero = lambda p, x, t, rngs: jnp.zeros_like(x)  # noqa: E731
    loss, _ = _jit(diffusion_loss, zero, x0, jax.random.key(5), schedule, prediction="eps")
    # E[eps^2] = 1; 604,800 samples give a standard error of ~0.002.
    assert float(loss) == pytest.approx(1.0, abs=0.01)


def test_steps_are_uniform_integers_and_dropout_key_is_passed():
    schedule = make_schedule()
    seen = {}

    def spy(params, x_t, t, rngs):
        seen["t"], seen["rngs"] = np.asarray(t), rngs
        return x_t

    diffusion_loss(spy, None, jnp.zeros((4096, 2, 63)), jax.random.key(6), schedule, prediction="x0")
    t = seen["t"]
    assert t.dtype == np.int32 and t.min() >= 0 and t.max() <= 999
    assert t.min() < 10 and t.max() > 990
    assert abs(t.mean() - 499.5) < 20  # std of the mean: 288.7 / 64 = 4.5
    assert set(seen["rngs"]) == {"dropout"}


def test_channel_weights_select_channels():
    schedule = make_schedule()
    x0 = _x0(jax.random.key(7), (4, 20, 63))
    w = np.zeros(63, np.float32)
    w[5] = 63.0
    zero = lambda p, x, t, rngs: jnp.zeros_like(x)  # noqa: E731
    loss, aux = _jit(
        diffusion_loss, zero, x0, jax.random.key(8), schedule, prediction="x0", channel_weights=jnp.asarray(w)
    )
    assert float(loss) == pytest.approx(float(np.mean(np.asarray(x0)[..., 5] ** 2)), rel=1e-5)
    assert float(aux["mse"]) == pytest.approx(float(np.mean(np.asarray(x0) ** 2)), rel=1e-5)


def test_diffusion_loss_rejects_unknown_prediction():
    with pytest.raises(ValueError, match="prediction"):
        diffusion_loss(lambda *a: a[1], None, jnp.zeros((1, 2, 63)), jax.random.key(0), make_schedule(),
                       prediction="v")  # fmt: skip


def _force_batch(key, b=4, t=30):
    x = np.array(jax.random.normal(key, (b, t, 63)))
    # Make the forces an exact function of the kinematics: forces = 2 * first 12 kinematic channels.
    x[..., KINETIC] = 2.0 * x[..., KINEMATIC[:12]]
    return x


def test_force_loss_inputs_targets_and_oracle():
    x = _force_batch(jax.random.key(9))
    seen = {}

    def oracle(params, kin, rngs):
        seen["kin"] = np.asarray(kin)
        return 2.0 * kin[..., :12]

    loss, aux = force_loss(oracle, None, jnp.asarray(x), jax.random.key(0))
    np.testing.assert_array_equal(seen["kin"], x[..., KINEMATIC])
    assert float(loss) < 1e-12 and float(aux["mae"]) < 1e-6

    zero = lambda p, kin, rngs: jnp.zeros(kin.shape[:2] + (12,))  # noqa: E731
    loss, aux = _jit(force_loss, zero, jnp.asarray(x), jax.random.key(0))
    assert float(loss) == pytest.approx(float(np.mean(x[..., KINETIC] ** 2)), rel=1e-5)
    loss_l1, _ = _jit(force_loss, zero, jnp.asarray(x), jax.random.key(0), loss_type="l1")
    assert float(loss_l1) == pytest.approx(float(np.mean(np.abs(x[..., KINETIC]))), rel=1e-5)


def test_force_loss_released_scaling_equals_63_channel_average():
    x = _force_batch(jax.random.key(10))
    pred = np.asarray(jax.random.normal(jax.random.key(11), x.shape[:2] + (12,)))
    apply = lambda p, kin, rngs: jnp.asarray(pred)  # noqa: E731
    loss, _ = _jit(force_loss, apply, jnp.asarray(x), jax.random.key(0), released_63_scaling=True)
    # The released code: prediction written into zeros [B, T, 63], target likewise, mean over 63 channels.
    full_pred = np.zeros_like(x)
    full_pred[..., KINETIC] = pred
    full_target = np.zeros_like(x)
    full_target[..., KINETIC] = x[..., KINETIC]
    assert float(loss) == pytest.approx(float(np.mean((full_pred - full_target) ** 2)), rel=1e-5)


def test_force_loss_mask_ignores_padded_frames():
    x = _force_batch(jax.random.key(12))
    mask = np.ones(x.shape[:2], np.float32)
    mask[:, 20:] = 0.0
    x_padded = x.copy()
    x_padded[:, 20:, :] = 1e6  # garbage in padded frames must not leak into the loss
    zero = lambda p, kin, rngs: jnp.zeros(kin.shape[:2] + (12,))  # noqa: E731
    loss, aux = _jit(force_loss, zero, jnp.asarray(x_padded), jax.random.key(0), mask_bt=jnp.asarray(mask))
    assert float(loss) == pytest.approx(float(np.mean(x[:, :20][..., KINETIC] ** 2)), rel=1e-5)
    assert float(aux["mae"]) == pytest.approx(float(np.mean(np.abs(x[:, :20][..., KINETIC]))), rel=1e-5)
