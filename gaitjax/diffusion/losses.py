"""Training losses: the diffusion denoising loss (spec §3.2) and the force-regression loss of the refiner
and the baselines (spec §5, §7.5). Both are pure functions of (params, batch, key)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp

from gaitjax.data.channels import KINEMATIC_IDX, KINETIC_IDX, N_CHANNELS
from gaitjax.diffusion.schedule import NoiseSchedule, q_sample

DenoiseApplyFn = Callable[[Any, jax.Array, jax.Array, dict[str, jax.Array]], jax.Array]
ForceApplyFn = Callable[[Any, jax.Array, dict[str, jax.Array]], jax.Array]


def diffusion_loss(
    apply_fn: DenoiseApplyFn,
    params: Any,
    x0_btc: jax.Array,
    key: jax.Array,
    schedule: NoiseSchedule,
    *,
    prediction: Literal["x0", "eps"] = "x0",
    channel_weights: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Denoising loss: t ~ U{0..N-1} per window, x_t = q_sample(x0, t, eps), MSE against x0 or eps.

    Args:
        apply_fn: `apply_fn(params, x_t [B,T,C], t [B] int32, rngs) -> [B,T,C]`; rngs is
            {"dropout": key}.
        params: the model parameters (passed through to apply_fn).
        x0_btc: clean normalised windows [B, T, C].
        key: PRNG key; split into step, noise and dropout keys.
        schedule: the noise schedule (N steps).
        prediction: "x0" (released: the output is x0_hat) or "eps" (the output is eps_hat).
        channel_weights: optional [C] weights multiplying each channel's squared error; the loss is still
            the mean over all B*T*C elements (all-ones weights give the plain MSE).

    Returns:
        (loss, aux): scalar loss; aux = {"mse": unweighted MSE, "t_mean": mean sampled step}.
    """
    if prediction not in ("x0", "eps"):
        raise ValueError(f"prediction must be 'x0' or 'eps', got {prediction!r}")
    key_t, key_noise, key_dropout = jax.random.split(key, 3)
    t_b = jax.random.randint(key_t, (x0_btc.shape[0],), 0, schedule.n_steps, dtype=jnp.int32)
    noise_btc = jax.random.normal(key_noise, x0_btc.shape, x0_btc.dtype)
    x_t_btc = q_sample(schedule, x0_btc, t_b, noise_btc)
    out_btc = apply_fn(params, x_t_btc, t_b, {"dropout": key_dropout})
    target_btc = x0_btc if prediction == "x0" else noise_btc
    sq_btc = jnp.square(out_btc.astype(jnp.float32) - target_btc.astype(jnp.float32))
    mse = jnp.mean(sq_btc)
    if channel_weights is None:
        loss = mse
    else:
        loss = jnp.mean(sq_btc * jnp.asarray(channel_weights, jnp.float32))
    return loss, {"mse": mse, "t_mean": jnp.mean(t_b.astype(jnp.float32))}


def force_loss(
    apply_fn: ForceApplyFn,
    params: Any,
    batch_x_btc: jax.Array,
    key: jax.Array,
    *,
    mask_bt: jax.Array | None = None,
    loss_type: Literal["mse", "l1"] = "mse",
    released_63_scaling: bool = False,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Force-regression loss: the 51 kinematic channels in, the 12 kinetic channels as target.

    The released code writes the 12 predicted channels into a zero [B, T, 63] tensor and averages over all
    63 channels, so its loss is this loss times 12/63; `released_63_scaling=True` reproduces that scale
    (it only rescales the gradient, which matters for Adam-like optimisers only through epsilon).

    Args:
        apply_fn: `apply_fn(params, kin [B,T,51], rngs) -> forces [B,T,12]`; rngs is {"dropout": key}.
        params: the model parameters (passed through to apply_fn).
        batch_x_btc: normalised windows [B, T, 63] (channels.MODEL_CHANNELS order).
        key: PRNG key for dropout.
        mask_bt: optional [B, T] frame weights (1 = real frame, 0 = padding); the loss is the
            weighted mean over frames and channels, so zero-weight frames are ignored.
        loss_type: "mse" (refiner, CNN) or "l1" (the Sugai LSTM baseline).
        released_63_scaling: multiply by 12/63 as the released code effectively does.

    Returns:
        (loss, aux): scalar loss; aux = {"mse": ..., "mae": ...} over the same frames, unscaled.
    """
    if loss_type not in ("mse", "l1"):
        raise ValueError(f"loss_type must be 'mse' or 'l1', got {loss_type!r}")
    kin_btk = batch_x_btc[..., jnp.asarray(KINEMATIC_IDX)]
    target_btf = batch_x_btc[..., jnp.asarray(KINETIC_IDX)].astype(jnp.float32)
    pred_btf = apply_fn(params, kin_btk, {"dropout": key}).astype(jnp.float32)
    err_btf = pred_btf - target_btf

    if mask_bt is None:
        weight_bt1 = jnp.ones(err_btf.shape[:2] + (1,), jnp.float32)
    else:
        weight_bt1 = jnp.asarray(mask_bt, jnp.float32)[..., None]
    denom = jnp.maximum(jnp.sum(weight_bt1) * err_btf.shape[-1], 1.0)
    mse = jnp.sum(jnp.square(err_btf) * weight_bt1) / denom
    mae = jnp.sum(jnp.abs(err_btf) * weight_bt1) / denom
    loss = mse if loss_type == "mse" else mae
    if released_63_scaling:
        loss = loss * (len(KINETIC_IDX) / N_CHANNELS)
    return loss, {"mse": mse, "mae": mae}
