"""Rotary position embedding along time and the rotary self-attention shared by the denoiser and refiner.

Two placements (spec §3.1, §5): "released" rotates the full hidden vector [B, T, D] before the Q/K
projections (V sees the unrotated input), as the released code does; "paper" is RoFormer's form, rotating
each head's projected queries and keys [B, T, H, K]. Both rotate interleaved pairs (x_2i, x_2i+1) by
pos * f_i with f_i = 1 / 10000^(2i / dim) (GPT-J style, not the NeoX half split).

Also holds `TorchLinear`, a Dense layer with PyTorch's default initialisation (kernel [in, out] = torch
weight transposed), used by every module in `gaitjax.models`, and `lowp_einsum`, the reduced-precision
matmul both use when `matmul_dtype="bfloat16"` (operands rounded to bf16, float32 accumulation and output).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

RotaryMode = Literal["released", "paper", "none"]
MatmulDtype = Literal["float32", "bfloat16"]
MATMUL_DTYPES: tuple[str, ...] = ("float32", "bfloat16")
Initializer = Callable[[jax.Array, tuple[int, ...], jnp.dtype], jax.Array]


def check_matmul_dtype(matmul_dtype: str) -> None:
    """Raises ValueError unless `matmul_dtype` is one of MATMUL_DTYPES."""
    if matmul_dtype not in MATMUL_DTYPES:
        raise ValueError(f"matmul_dtype must be one of {MATMUL_DTYPES}, got {matmul_dtype!r}")


def _gradient_specs(spec: str) -> tuple[str, str]:
    """The einsum specs of the two cotangents of `lhs,rhs->out`: `out,rhs->lhs` and `lhs,out->rhs`.

    Valid when every index of an operand also appears in the other operand or in the output (no index is
    summed inside a single operand), which holds for matmuls, batched matmuls and attention.
    """
    inputs, out = spec.replace(" ", "").split("->")
    lhs, rhs = inputs.split(",")
    letters = lambda s: set(s.replace("...", ""))
    for own, other in ((lhs, rhs), (rhs, lhs)):
        if not letters(own) <= letters(other) | letters(out):
            raise ValueError(f"lowp_einsum: {spec!r} sums an index inside one operand; not supported")
    return f"{out},{rhs}->{lhs}", f"{lhs},{out}->{rhs}"


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _lowp_einsum(spec: str, dtype: str, a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.einsum(spec, a.astype(dtype), b.astype(dtype), preferred_element_type=jnp.float32)


def _lowp_einsum_fwd(spec, dtype, a, b):
    a_low, b_low = a.astype(dtype), b.astype(dtype)
    out = jnp.einsum(spec, a_low, b_low, preferred_element_type=jnp.float32)
    # The rounded operands are the residuals: half the memory of float32 ones; zero-size arrays carry
    # the primal dtypes so the cotangents come back in them.
    return out, (a_low, b_low, jnp.zeros((0,), a.dtype), jnp.zeros((0,), b.dtype))


def _lowp_einsum_bwd(spec, dtype, res, g):
    a_low, b_low, a_like, b_like = res
    spec_a, spec_b = _gradient_specs(spec)
    g_low = g.astype(dtype)
    da = jnp.einsum(spec_a, g_low, b_low, preferred_element_type=jnp.float32)
    db = jnp.einsum(spec_b, a_low, g_low, preferred_element_type=jnp.float32)
    return da.astype(a_like.dtype), db.astype(b_like.dtype)


_lowp_einsum.defvjp(_lowp_einsum_fwd, _lowp_einsum_bwd)


def lowp_einsum(spec: str, a: jax.Array, b: jax.Array, dtype: str = "bfloat16") -> jax.Array:
    """`einsum(spec, a, b)` with both operands rounded to `dtype`, accumulated and returned in float32.

    The backward pass is reduced-precision too: the float32 output cotangent is rounded to `dtype` and
    the two gradient matmuls run on the rounded operands with float32 accumulation (the rule torch's
    autocast follows). Without this custom VJP, JAX's transpose would multiply the float32 cotangent by
    the bf16 operand, which XLA runs as a float32 matmul, so guided sampling and training would keep
    float32 speed in their backward passes. Reverse mode only (no `jax.jvp`).

    Args:
        spec: a two-operand einsum spec in which no index is summed inside one operand,
            e.g. "...i,io->...o" or "bhtk,bhsk->bhts".
        a: left operand (float32).
        b: right operand (float32).
        dtype: the operand dtype, e.g. "bfloat16".

    Returns:
        float32 array; gradients have the dtypes of `a` and `b`.
    """
    _gradient_specs(spec)
    return _lowp_einsum(spec, dtype, a, b)


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

    Params: `kernel` [in, out] (= torch weight [out, in] transposed) and `bias` [out], always float32.

    Attributes:
        features: output width.
        use_bias: add the bias.
        kernel_init, bias_init: initializers (default U(+-1/sqrt(fan_in))).
        matmul_dtype: "float32" (plain float32 matmul) or "bfloat16" (input and kernel rounded to bf16,
            float32 accumulation and output; see `lowp_einsum`). The bias is added in float32.
    """

    features: int
    use_bias: bool = True
    kernel_init: Initializer | None = None
    bias_init: Initializer | None = None
    matmul_dtype: MatmulDtype = "float32"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        default = uniform_init(1.0 / math.sqrt(fan_in))
        kernel = self.param("kernel", self.kernel_init or default, (fan_in, self.features), jnp.float32)
        check_matmul_dtype(self.matmul_dtype)
        if self.matmul_dtype == "float32":
            y = jnp.dot(x, kernel.astype(x.dtype))
        else:
            y = lowp_einsum("...i,io->...o", x, kernel, self.matmul_dtype)
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
        matmul_dtype: operand dtype of the four projections and the score and value matmuls
            ("float32" or "bfloat16"; accumulation, softmax and outputs stay float32).
    """

    heads: int
    rotary: RotaryMode = "released"
    attn_dropout: float = 0.0
    matmul_dtype: MatmulDtype = "float32"

    @nn.compact
    def __call__(self, z_btd: jax.Array, *, deterministic: bool) -> jax.Array:
        b, t, d = z_btd.shape
        if d % self.heads:
            raise ValueError(f"width {d} is not divisible by {self.heads} heads")
        k_dim = d // self.heads
        pos_t = jnp.arange(t)
        in_init = uniform_init(math.sqrt(6.0 / (4 * d)))
        zeros = nn.initializers.zeros_init()

        mm = self.matmul_dtype
        check_matmul_dtype(mm)
        qk_in = apply_rotary(z_btd, pos_t) if self.rotary == "released" else z_btd
        q = TorchLinear(d, kernel_init=in_init, bias_init=zeros, matmul_dtype=mm, name="query")(qk_in)
        k = TorchLinear(d, kernel_init=in_init, bias_init=zeros, matmul_dtype=mm, name="key")(qk_in)
        v = TorchLinear(d, kernel_init=in_init, bias_init=zeros, matmul_dtype=mm, name="value")(z_btd)
        q_bhtk, k_bhtk, v_bhtk = (a.reshape(b, t, self.heads, k_dim).transpose(0, 2, 1, 3) for a in (q, k, v))
        if self.rotary == "paper":
            q_bhtk, k_bhtk = apply_rotary(q_bhtk, pos_t), apply_rotary(k_bhtk, pos_t)

        if mm == "float32":
            scores_bhts = jnp.einsum("bhtk,bhsk->bhts", q_bhtk, k_bhtk) / math.sqrt(k_dim)
        else:
            scores_bhts = lowp_einsum("bhtk,bhsk->bhts", q_bhtk, k_bhtk, mm) / math.sqrt(k_dim)
        probs_bhts = jax.nn.softmax(scores_bhts.astype(jnp.float32), axis=-1).astype(z_btd.dtype)
        probs_bhts = nn.Dropout(self.attn_dropout)(probs_bhts, deterministic=deterministic)
        if mm == "float32":
            out_btd = jnp.einsum("bhts,bhsk->bthk", probs_bhts, v_bhtk).reshape(b, t, d)
        else:
            # Heads-major output, transposed afterwards: the gradient of the "->bthk" form is a dot that
            # XLA:CPU sends to a kernel without bf16 x bf16 -> f32 support (UNIMPLEMENTED at run time).
            out_bhtk = lowp_einsum("bhts,bhsk->bhtk", probs_bhts, v_bhtk, mm)
            out_btd = out_bhtk.transpose(0, 2, 1, 3).reshape(b, t, d)
        return TorchLinear(d, bias_init=zeros, matmul_dtype=mm, name="out")(out_btd)
