"""Gradient guidance for DDIM sampling: the settings, the inner gradient-descent update on x_t, and the
paper's hinge loss g = sum relu(|x0_hat - target| - thd_c) * w with per-channel tolerance bands (spec §4.2).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gaitjax.data.channels import MODEL_CHANNELS
from gaitjax.data.errors import GaitDataError

DenoiseFn = Callable[[jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class Guidance:
    """Gradient guidance applied before each denoiser call whose t lies in [t_end, t_start] (spec §4.2).

    At such a step the sampler repeats `n_grad_steps` times: x0_hat = denoise_fn(x, t); L = loss(x0_hat);
    x <- x - lr * dL/dx (the gradient flows through the denoiser); then it recomputes x0_hat and takes the
    normal DDIM step. The paper's tasks 2 and 3 use 5 steps of lr 0.02 at every one of the 50 steps.

    Attributes:
        loss_fn: scalar loss of the predicted clean window. Called as `loss_fn(x0_hat_btc)` when
            `batch_args` is None, else as `loss_fn(x0_hat_btc, batch_args)`. None disables guidance.
            The loss must be a *sum* of per-window terms (not a batch mean), so that each window's gradient,
            and hence its sample, does not depend on which other windows share the batch.
        n_grad_steps: gradient steps per DDIM step (paper: 5).
        lr: step size on x_t, in normalized units per unit loss (paper: 0.02).
        t_start: largest diffusion step t at which guidance is applied (inclusive; paper: 1000).
        t_end: smallest diffusion step t at which guidance is applied (inclusive; paper: 0).
        batch_args: optional pytree of per-window arrays with leading axis B (e.g. the target window and
            weights of the hinge loss). `sample_chunked` slices and pads it with the batch; a loss that
            closes over [B, ...] arrays instead would break under chunking.
    """

    loss_fn: Callable[..., jax.Array] | None
    n_grad_steps: int = 5
    lr: float = 0.02
    t_start: int = 1000
    t_end: int = 0
    batch_args: Any = None

    def __post_init__(self):
        if not isinstance(self.n_grad_steps, (int, np.integer)) or self.n_grad_steps < 0:
            raise ValueError(f"Guidance.n_grad_steps must be a non-negative int, got {self.n_grad_steps!r}")
        if not np.isfinite(self.lr):
            raise ValueError(f"Guidance.lr must be finite, got {self.lr!r}")
        if self.t_end > self.t_start:
            raise ValueError(f"Guidance.t_end ({self.t_end}) must be <= t_start ({self.t_start})")


def guidance_objective(
    denoise_fn: DenoiseFn,
    loss_fn: Callable[..., jax.Array],
    x_btc: jax.Array,
    t_b: jax.Array,
    batch_args=None,
) -> jax.Array:
    """The guided objective as a function of the noisy window: loss(denoise_fn(x_t, t)).

    Args:
        denoise_fn: `denoise_fn(x_t [B,T,C], t_b [B]) -> x0_hat [B,T,C]`.
        loss_fn: see `Guidance.loss_fn`.
        x_btc: noisy window x_t [B, T, C].
        t_b: integer diffusion steps [B].
        batch_args: see `Guidance.batch_args`.

    Returns:
        Scalar loss.
    """
    x0_hat_btc = denoise_fn(x_btc, t_b)
    if batch_args is None:
        return loss_fn(x0_hat_btc)
    return loss_fn(x0_hat_btc, batch_args)


def apply_guidance(
    denoise_fn: DenoiseFn,
    loss_fn: Callable[..., jax.Array],
    x_btc: jax.Array,
    t_b: jax.Array,
    *,
    n_grad_steps: int,
    lr: float | jax.Array,
    batch_args=None,
) -> jax.Array:
    """Runs `n_grad_steps` of gradient descent on x_t against the guidance objective (one `lax.scan`).

    Args:
        denoise_fn: `denoise_fn(x_t [B,T,C], t_b [B]) -> x0_hat [B,T,C]` (an x0-predicting function).
        loss_fn: see `Guidance.loss_fn`.
        x_btc: noisy window x_t [B, T, C].
        t_b: integer diffusion steps [B].
        n_grad_steps: number of gradient steps (static).
        lr: step size.
        batch_args: see `Guidance.batch_args`.

    Returns:
        The updated x_t [B, T, C].
    """
    grad_fn = jax.grad(lambda x: guidance_objective(denoise_fn, loss_fn, x, t_b, batch_args))

    def step(x, _):
        return x - lr * grad_fn(x).astype(x.dtype), None

    x_btc, _ = jax.lax.scan(step, x_btc, None, length=n_grad_steps)
    return x_btc


def hinge_loss(x0_hat_btc: jax.Array, target_btc: jax.Array, thd_c: jax.Array, weight=1.0) -> jax.Array:
    """The paper's guidance loss g = sum_{b,t,c} relu(|x0_hat - target| - thd_c) * w (spec §4.2).

    An L1 penalty with a dead band: deviations within the per-channel tolerance cost nothing. Channels with
    an infinite threshold (see `tolerance_from_range`) are not guided.

    Args:
        x0_hat_btc: predicted clean window [B, T, C] (normalized units).
        target_btc: the manipulated/target window [B, T, C] (normalized units).
        thd_c: per-channel tolerance [C] (normalized units; +inf = no guidance on that channel).
        weight: weights w broadcastable to [B, T, C] (e.g. [C], or [B, T, C] zero on padded frames).

    Returns:
        Scalar loss (summed over windows, frames and channels).
    """
    excess_btc = jax.nn.relu(jnp.abs(x0_hat_btc - target_btc) - thd_c)
    return jnp.sum(excess_btc * weight)


def tolerance_from_range(
    windows_btc: np.ndarray | jax.Array, fraction: float, channels: Sequence[str] = MODEL_CHANNELS
) -> np.ndarray:
    """Per-channel tolerance thd_c = fraction * (max - min) of each channel over the given windows.

    Channels whose name contains "_vel" (joint angular and 1-DoF velocities) or "force" (GRF, COP) get an
    infinite tolerance, i.e. no guidance, as in the paper ("we did not regularize any discrepancies in joint
    angular velocities or forces"). The pelvis velocity channels (pelvis_tx/ty/tz) are guided.

    Unlike the released code, every channel uses its own threshold; the released loop gives the manipulated
    channels the threshold of whichever channel its loop visited last (spec §8.12), which we treat as a bug.

    Args:
        windows_btc: windows [B, T, C] (normalized units) whose range of motion sets the band; the paper uses
            the manipulated windows of the trial.
        fraction: band as a fraction of the range (paper: 0.1 in task 2, 0.3 in task 3).
        channels: channel names, length C (default: the 63 model channels).

    Returns:
        thd_c float32 [C]; +inf on unguided channels.
    """
    windows_btc = np.asarray(windows_btc)
    if windows_btc.ndim != 3 or windows_btc.shape[0] == 0 or windows_btc.shape[1] == 0:
        raise GaitDataError(
            f"tolerance_from_range expects windows [B>0, T>0, C], got shape {windows_btc.shape}"
        )
    if windows_btc.shape[-1] != len(channels):
        raise GaitDataError(
            f"tolerance_from_range: windows have {windows_btc.shape[-1]} channels but {len(channels)} "
            "channel names were given"
        )
    if not np.all(np.isfinite(windows_btc)):
        bad = sorted({channels[c] for c in np.nonzero(~np.isfinite(windows_btc))[2]})
        raise GaitDataError(
            f"tolerance_from_range: non-finite values in channels {bad}; expected finite values"
        )
    if not (fraction >= 0):
        raise ValueError(f"tolerance_from_range: fraction must be >= 0, got {fraction!r}")
    range_c = windows_btc.max(axis=(0, 1)) - windows_btc.min(axis=(0, 1))
    thd_c = (fraction * range_c).astype(np.float32)
    unguided_c = np.array(["_vel" in name or "force" in name for name in channels])
    thd_c[unguided_c] = np.inf
    return thd_c


def _hinge_from_args(x0_hat_btc: jax.Array, batch_args) -> jax.Array:
    target_btc, thd_c, weight_btc = batch_args
    # thd and weight travel per window (leading axis B) so chunking slices them; all rows of thd are equal.
    return hinge_loss(x0_hat_btc, target_btc, thd_c[:, None, :], weight_btc)


def hinge_guidance(
    target_btc: jax.Array | np.ndarray,
    thd_c: jax.Array | np.ndarray,
    weight=None,
    *,
    n_grad_steps: int = 5,
    lr: float = 0.02,
    t_start: int = 1000,
    t_end: int = 0,
) -> Guidance:
    """A `Guidance` with the paper's hinge loss towards `target_btc`, safe for `sample_chunked`.

    Args:
        target_btc: target (manipulated) windows [B, T, C], normalized units; usually the same array as the
            sampler's `known_btc`.
        thd_c: per-channel tolerance [C] (from `tolerance_from_range`).
        weight: None (all ones), [C] or [B, T, C] weights.
        n_grad_steps, lr, t_start, t_end: see `Guidance`.

    Returns:
        The guidance settings; the target, thresholds and weights travel in `batch_args`.
    """
    target_btc = jnp.asarray(target_btc, jnp.float32)
    b, t, c = target_btc.shape
    thd_c = jnp.asarray(thd_c, jnp.float32)
    if thd_c.shape != (c,):
        raise GaitDataError(f"hinge_guidance: thd_c must have shape ({c},), got {thd_c.shape}")
    weight_btc = jnp.broadcast_to(jnp.asarray(1.0 if weight is None else weight, jnp.float32), (b, t, c))
    return Guidance(
        loss_fn=_hinge_from_args,
        n_grad_steps=n_grad_steps,
        lr=lr,
        t_start=t_start,
        t_end=t_end,
        batch_args=(target_btc, jnp.broadcast_to(thd_c, (b, c)), weight_btc),
    )
