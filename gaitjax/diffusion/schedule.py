"""The 1000-step DDPM noise schedules (scaled-linear as released, cosine as in the paper) and the
closed-form forward process q(x_t | x_0) with the x0 <-> epsilon conversions (spec §3.2)."""

from __future__ import annotations

import math
from typing import Literal

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

ScheduleKind = Literal["scaled_linear", "cosine"]


@flax.struct.dataclass
class NoiseSchedule:
    """Per-step buffers of a diffusion schedule, each a float32 array [N] (N = number of steps, 1000).

    Attributes:
        betas: beta_t.
        alphas_cumprod: abar_t = prod_{s<=t} (1 - beta_s).
        sqrt_alphas_cumprod: sqrt(abar_t).
        sqrt_one_minus_alphas_cumprod: sqrt(1 - abar_t).
        sqrt_recip_alphas_cumprod: sqrt(1 / abar_t).
        sqrt_recipm1_alphas_cumprod: sqrt(1 / abar_t - 1).
    """

    betas: jax.Array
    alphas_cumprod: jax.Array
    sqrt_alphas_cumprod: jax.Array
    sqrt_one_minus_alphas_cumprod: jax.Array
    sqrt_recip_alphas_cumprod: jax.Array
    sqrt_recipm1_alphas_cumprod: jax.Array

    @property
    def n_steps(self) -> int:
        """Number of diffusion steps (static: the buffer length)."""
        return self.betas.shape[0]


def _betas_float64(kind: str, n_steps: int) -> np.ndarray:
    if kind == "scaled_linear":
        # `make_beta_schedule("linear")`: linear in sqrt(beta) space, then squared (the LDM schedule).
        return np.linspace(math.sqrt(1e-4), math.sqrt(2e-2), n_steps, dtype=np.float64) ** 2
    if kind == "cosine":
        s = 0.008
        x = np.linspace(0.0, n_steps, n_steps + 1, dtype=np.float64)
        abar = np.cos(((x / n_steps) + s) / (1.0 + s) * math.pi * 0.5) ** 2
        abar = abar / abar[0]
        return np.clip(1.0 - abar[1:] / abar[:-1], 0.0, 0.999)
    raise ValueError(f"unknown noise schedule kind {kind!r}; expected 'scaled_linear' or 'cosine'")


def make_schedule(kind: ScheduleKind = "scaled_linear", n_steps: int = 1000) -> NoiseSchedule:
    """Builds the schedule buffers exactly as the released code does.

    beta is computed in float64 and cast to float32. Every derived buffer is then computed from the
    float32 beta in float32, except the running product abar, which (like torch.cumprod on CPU, where the
    released buffers are built) accumulates in float64 and rounds each partial product to float32.

    Args:
        kind: "scaled_linear" (released: beta_t = linspace(sqrt(1e-4), sqrt(0.02), N)^2) or "cosine"
            (paper: s = 0.008, beta clipped to [0, 0.999]).
        n_steps: number of diffusion steps N.

    Returns:
        The schedule; every buffer is a float32 array [N].
    """
    if n_steps < 2:
        raise ValueError(f"n_steps must be at least 2, got {n_steps}")
    betas = _betas_float64(kind, n_steps).astype(np.float32)
    alphas = np.float32(1.0) - betas
    abar = np.cumprod(alphas.astype(np.float64)).astype(np.float32)
    one = np.float32(1.0)
    buffers = {
        "betas": betas,
        "alphas_cumprod": abar,
        "sqrt_alphas_cumprod": np.sqrt(abar),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(one - abar),
        "sqrt_recip_alphas_cumprod": np.sqrt(one / abar),
        "sqrt_recipm1_alphas_cumprod": np.sqrt(one / abar - one),
    }
    for name, value in buffers.items():
        assert value.dtype == np.float32, (name, value.dtype)
    return NoiseSchedule(**{k: jnp.asarray(v) for k, v in buffers.items()})


def _at(buffer_n: jax.Array, t_b: jax.Array, ndim: int) -> jax.Array:
    """Gathers buffer[t] and reshapes it to [B, 1, ..., 1] to broadcast over an array of rank ndim."""
    return buffer_n[t_b].reshape(t_b.shape + (1,) * (ndim - t_b.ndim))


def q_sample(schedule: NoiseSchedule, x0: jax.Array, t_b: jax.Array, noise: jax.Array) -> jax.Array:
    """Diffuses clean data to step t: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise.

    Args:
        schedule: the noise schedule.
        x0: clean windows [B, ...] (e.g. [B, T, C]).
        t_b: integer diffusion steps [B] in 0..N-1.
        noise: standard normal noise, same shape as x0.

    Returns:
        x_t, same shape and dtype as x0.
    """
    return (
        _at(schedule.sqrt_alphas_cumprod, t_b, x0.ndim) * x0
        + _at(schedule.sqrt_one_minus_alphas_cumprod, t_b, x0.ndim) * noise
    ).astype(x0.dtype)


def eps_from_x0(schedule: NoiseSchedule, x_t: jax.Array, t_b: jax.Array, x0_hat: jax.Array) -> jax.Array:
    """The noise implied by a clean-data estimate (`predict_noise_from_start`).

    eps = (sqrt(1/abar_t) x_t - x0_hat) / sqrt(1/abar_t - 1), with the stored float32 buffers.

    Args:
        schedule: the noise schedule.
        x_t: noisy windows [B, ...].
        t_b: integer diffusion steps [B].
        x0_hat: clean-data estimate, same shape as x_t.

    Returns:
        eps_hat, same shape as x_t.
    """
    return (_at(schedule.sqrt_recip_alphas_cumprod, t_b, x_t.ndim) * x_t - x0_hat) / _at(
        schedule.sqrt_recipm1_alphas_cumprod, t_b, x_t.ndim
    )


def x0_from_eps(schedule: NoiseSchedule, x_t: jax.Array, t_b: jax.Array, eps_hat: jax.Array) -> jax.Array:
    """The clean data implied by a noise estimate (`predict_start_from_noise`).

    x0 = sqrt(1/abar_t) x_t - sqrt(1/abar_t - 1) eps_hat.

    Args:
        schedule: the noise schedule.
        x_t: noisy windows [B, ...].
        t_b: integer diffusion steps [B].
        eps_hat: noise estimate, same shape as x_t.

    Returns:
        x0_hat, same shape as x_t.
    """
    return (
        _at(schedule.sqrt_recip_alphas_cumprod, t_b, x_t.ndim) * x_t
        - _at(schedule.sqrt_recipm1_alphas_cumprod, t_b, x_t.ndim) * eps_hat
    )
