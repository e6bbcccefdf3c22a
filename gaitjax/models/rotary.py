"""Rotary position embedding along time and the rotary self-attention shared by the denoiser and refiner.

Two placements (spec §3.1, §5): "released" rotates the full hidden vector [B, T, D] before the Q/K
projections (V sees the unrotated input), as the released code does; "paper" is RoFormer's form, rotating
each head's projected queries and keys [B, T, H, K]. Both rotate interleaved pairs (x_2i, x_2i+1) by
pos * f_i with f_i = 1 / 10000^(2i / dim) (GPT-J style, not the NeoX half split).

Also holds `TorchLinear`, a Dense layer with PyTorch's default initialisation (kernel [in, out] = torch
weight transposed), used by every module in `gaitjax.models`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

RotaryMode = Literal["released", "paper", "none"]
Initializer = Callable[[jax.Array, tuple[int, ...], jnp.dtype], jax.Array]


def rotary_freqs(dim: int, theta: float = 10000.0) -> jax.Array:
    """Rotary frequencies f_i = 1 / theta^(2i / dim), i = 0..dim/2-1 (the torch `rotary.freqs` buffer).

    Args:
        dim: rotated width (even).
        theta: base period.

    Returns:
        float32 array [dim // 2] in rad per frame.
    """
    if dim % 2:
        raise ValueError(f"rotary dim must be even, got {dim}")
    return 1.0 / (theta ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))


def apply_rotary(x: jax.Array, pos_t: jax.Array, theta: float = 10000.0) -> jax.Array:
    """Rotates interleaved pairs of the last axis by position-dependent angles.

    out[..., t, 2i] = x_2i cos(a) - x_2i+1 sin(a), out[..., t, 2i+1] = x_2i+1 cos(a) + x_2i sin(a),
    with a = pos_t[t] * f_i.

    Args:
        x: array [..., T, D] (time on the second-to-last axis), D even.
        pos_t: positions [T] in frames (float or int).
        theta: base period of the frequencies.

    Returns:
        Rotated array, same shape and dtype as x.
    """
    dim = x.shape[-1]
    angles_tf = pos_t.astype(jnp.float32)[:, None] * rotary_freqs(dim, theta)[None, :]  # [T, D/2]
    cos_tf, sin_tf = jnp.cos(angles_tf), jnp.sin(angles_tf)
    pairs = x.reshape(x.shape[:-1] + (dim // 2, 2)).astype(jnp.float32)
    x_even, x_odd = pairs[..., 0], pairs[..., 1]
    out = jnp.stack([x_even * cos_tf - x_odd * sin_tf, x_odd * cos_tf + x_even * sin_tf], axis=-1)
    return out.reshape(x.shape).astype(x.dtype)


def uniform_init(bound: float) -> Initializer:
    """Initializer drawing U(-bound, bound)."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class TorchLinear(nn.Module):
    """Dense layer with torch.nn.Linear's default init: kernel and bias ~ U(+-1/sqrt(fan_in)).

    Params: `kernel` [in, out] (= torch weight [out, in] transposed) and `bias` [out].
    """

    features: int
    use_bias: bool = True
    kernel_init: Initializer | None = None
    bias_init: Initializer | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        default = uniform_init(1.0 / math.sqrt(fan_in))
        kernel = self.param("kernel", self.kernel_init or default, (fan_in, self.features), jnp.float32)
        y = jnp.dot(x, kernel.astype(x.dtype))
        if self.use_bias:
            y = y + self.param("bias", self.bias_init or default, (self.features,), jnp.float32).astype(
                x.dtype
            )
        return y


class RotarySelfAttention(nn.Module):
    """Multi-head self-attention over time with rotary positions; all projections have biases.

    Params: `query`, `key`, `value`, `out`, each a TorchLinear with kernel [D, D]. torch's packed
    `in_proj_weight` [3D, D] splits by rows into q | k | v: query.kernel = in_proj_weight[:D].T,
    key.kernel = in_proj_weight[D:2D].T, value.kernel = in_proj_weight[2D:].T (biases likewise);
    out.kernel = out_proj.weight.T. Init follows torch.nn.MultiheadAttention: xavier-uniform over the
    packed [3D, D] matrix (bound sqrt(6 / 4D)), zero in-projection and output biases.

    Attributes:
        heads: number of heads H (head dim K = D / H).
        rotary: "released" (rotate the D-wide input of Q/K), "paper" (rotate per-head Q/K) or "none".
        attn_dropout: dropout rate on the attention probabilities.
    """

    heads: int
    rotary: RotaryMode = "released"
    attn_dropout: float = 0.0

    @nn.compact
    def __call__(self, z_btd: jax.Array, *, deterministic: bool) -> jax.Array:
        b, t, d = z_btd.shape
        if d % self.heads:
            raise ValueError(f"width {d} is not divisible by {self.heads} heads")
        k_dim = d // self.heads
        pos_t = jnp.arange(t)
        in_init = uniform_init(math.sqrt(6.0 / (4 * d)))
        zeros = nn.initializers.zeros_init()

        qk_in = apply_rotary(z_btd, pos_t) if self.rotary == "released" else z_btd
        q = TorchLinear(d, kernel_init=in_init, bias_init=zeros, name="query")(qk_in)
        k = TorchLinear(d, kernel_init=in_init, bias_init=zeros, name="key")(qk_in)
        v = TorchLinear(d, kernel_init=in_init, bias_init=zeros, name="value")(z_btd)
        q_bhtk, k_bhtk, v_bhtk = (a.reshape(b, t, self.heads, k_dim).transpose(0, 2, 1, 3) for a in (q, k, v))
        if self.rotary == "paper":
            q_bhtk, k_bhtk = apply_rotary(q_bhtk, pos_t), apply_rotary(k_bhtk, pos_t)

        scores_bhts = jnp.einsum("bhtk,bhsk->bhts", q_bhtk, k_bhtk) / math.sqrt(k_dim)
        probs_bhts = jax.nn.softmax(scores_bhts.astype(jnp.float32), axis=-1).astype(z_btd.dtype)
        probs_bhts = nn.Dropout(self.attn_dropout)(probs_bhts, deterministic=deterministic)
        out_btd = jnp.einsum("bhts,bhsk->bthk", probs_bhts, v_bhtk).reshape(b, t, d)
        return TorchLinear(d, bias_init=zeros, name="out")(out_btd)
