"""The diffusion denoiser: a FiLM-conditioned pre-norm rotary transformer over [B, T, 63] windows.

Port of the released `DanceDecoder` (spec §3.1). Parameter tree and the mapping from the torch state dict
(every TorchLinear kernel is the torch weight transposed, [in, out]; LayerNorm scale/bias = weight/bias):

    input_projection/{kernel [C, D], bias [D]}        <- input_projection.weight.T / .bias
    time_mlp/{kernel [D, M·D], bias}                  <- time_mlp.1.weight.T / .bias
    to_time_cond/{kernel [M·D, D], bias}              <- to_time_cond.0.weight.T / .bias
    layers_{i}/self_attn/{query,key,value}/{kernel [D, D], bias [D]}
                                                      <- stack.{i}.self_attn.in_proj_weight rows q|k|v, .T
    layers_{i}/self_attn/out/{kernel [D, D], bias}    <- stack.{i}.self_attn.out_proj.weight.T / .bias
    layers_{i}/linear1/{kernel [D, F], bias}, linear2/{kernel [F, D], bias}
    layers_{i}/norm1/{scale, bias}, norm3/{scale, bias}
    layers_{i}/film1/dense/{kernel [D, 2D], bias}     <- stack.{i}.film1.block.1.weight.T / .bias
    layers_{i}/film3/dense/{kernel [D, 2D], bias}
    final_layer/{kernel [D, C], bias [C]}

(torch prefix `seqTransDecoder.stack.{i}` -> `layers_{i}`.) Not ported: the unused cross-attention
`multihead_attn.*` and the recomputable `rotary.freqs` buffers.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from gaitjax.models.rotary import MatmulDtype, RotarySelfAttention, TorchLinear, check_matmul_dtype


@dataclasses.dataclass(frozen=True)
class DenoiserConfig:
    """Sizes and options of the denoiser; the defaults are the released model.

    Attributes:
        n_channels: channels C of the window.
        width: hidden width D.
        depth: number of transformer blocks.
        heads: attention heads H (D divisible by H).
        ff_dim: feed-forward width F.
        dropout: dropout rate (residual branches, FF hidden and attention probabilities).
        activation: FF activation, "gelu" (exact, erf) or "relu".
        rotary: "released" (rotate the hidden vector before Q/K) or "paper" (rotate per-head Q/K).
        ln_eps: LayerNorm epsilon.
        time_mlp_mult: hidden width of the time MLP as a multiple of D.
        prediction: what the output is trained to be: "x0" (released) or "eps".
        matmul_dtype: operand dtype of every matmul (linear layers, attention scores and values):
            "float32", or "bfloat16" (about twice as fast on CPUs with bf16 matmul units; accumulation,
            outputs, biases, LayerNorm, softmax, activations and residuals stay float32, and so do the
            parameters, whose tree does not depend on this field).
    """

    n_channels: int = 63
    width: int = 512
    depth: int = 8
    heads: int = 8
    ff_dim: int = 1024
    dropout: float = 0.1
    activation: Literal["gelu", "relu"] = "gelu"
    rotary: Literal["released", "paper"] = "released"
    ln_eps: float = 1e-5
    time_mlp_mult: int = 4
    prediction: Literal["x0", "eps"] = "x0"
    matmul_dtype: MatmulDtype = "float32"

    def __post_init__(self):
        if self.activation not in ("gelu", "relu"):
            raise ValueError(f"activation must be 'gelu' or 'relu', got {self.activation!r}")
        if self.rotary not in ("released", "paper"):
            raise ValueError(f"rotary must be 'released' or 'paper', got {self.rotary!r}")
        if self.prediction not in ("x0", "eps"):
            raise ValueError(f"prediction must be 'x0' or 'eps', got {self.prediction!r}")
        check_matmul_dtype(self.matmul_dtype)
        if self.width % self.heads or self.width % 2:
            raise ValueError(f"width {self.width} must be even and divisible by heads {self.heads}")

    @classmethod
    def paper(cls) -> DenoiserConfig:
        """The paper's model: 4 blocks, 4 heads, width 256, FF 1024, ReLU, RoFormer rotary."""
        return cls(width=256, depth=4, heads=4, ff_dim=1024, activation="relu", rotary="paper")

    @classmethod
    def released(cls) -> DenoiserConfig:
        """The released checkpoint's model: 8 blocks, 8 heads, width 512, FF 1024, exact GELU."""
        return cls(width=512, depth=8, heads=8, ff_dim=1024, activation="gelu", rotary="released")


def mish(x: jax.Array) -> jax.Array:
    """Mish activation x * tanh(softplus(x))."""
    return x * jnp.tanh(jax.nn.softplus(x))


def sinusoidal_embedding(t_b: jax.Array, dim: int) -> jax.Array:
    """Sinusoidal embedding of raw integer diffusion steps (`SinusoidalPosEmb`).

    With h = dim / 2 and f_k = exp(-k ln(10000) / (h - 1)), k = 0..h-1: emb = [sin(t f), cos(t f)].

    Args:
        t_b: diffusion steps [B] (integers 0..999, any numeric dtype).
        dim: embedding width (even).

    Returns:
        float32 array [B, dim], sin block first.
    """
    half = dim // 2
    freqs_k = jnp.exp(jnp.arange(half, dtype=jnp.float32) * -(math.log(10000.0) / (half - 1)))
    angles_bk = t_b.astype(jnp.float32)[:, None] * freqs_k[None, :]
    return jnp.concatenate([jnp.sin(angles_bk), jnp.cos(angles_bk)], axis=-1)


def activation_fn(name: str):
    """The FF activation by name: exact (erf) GELU or ReLU."""
    if name == "gelu":
        return lambda x: jax.nn.gelu(x, approximate=False)
    return jax.nn.relu


class DenseFiLM(nn.Module):
    """FiLM parameters from the time embedding: Mish -> Linear(D -> 2D), split into (scale, shift)."""

    width: int
    matmul_dtype: MatmulDtype = "float32"

    @nn.compact
    def __call__(self, temb_bd: jax.Array) -> tuple[jax.Array, jax.Array]:
        film_b2d = TorchLinear(2 * self.width, matmul_dtype=self.matmul_dtype, name="dense")(mish(temb_bd))
        scale_bd, shift_bd = jnp.split(film_b2d, 2, axis=-1)
        return scale_bd[:, None, :], shift_bd[:, None, :]  # [B, 1, D] each


class DenoiserBlock(nn.Module):
    """Pre-norm block; FiLM modulates each residual branch's output: h += (1 + scale) * branch + shift."""

    config: DenoiserConfig

    @nn.compact
    def __call__(self, h_btd: jax.Array, temb_bd: jax.Array, *, deterministic: bool) -> jax.Array:
        cfg = self.config
        mm = cfg.matmul_dtype
        drop = nn.Dropout(cfg.dropout)

        z_btd = nn.LayerNorm(epsilon=cfg.ln_eps, use_fast_variance=False, name="norm1")(h_btd)
        a_btd = RotarySelfAttention(
            cfg.heads, rotary=cfg.rotary, attn_dropout=cfg.dropout, matmul_dtype=mm, name="self_attn"
        )(z_btd, deterministic=deterministic)
        a_btd = drop(a_btd, deterministic=deterministic)
        scale, shift = DenseFiLM(cfg.width, matmul_dtype=mm, name="film1")(temb_bd)
        h_btd = h_btd + (1.0 + scale) * a_btd + shift

        z_btd = nn.LayerNorm(epsilon=cfg.ln_eps, use_fast_variance=False, name="norm3")(h_btd)
        f_btf = activation_fn(cfg.activation)(TorchLinear(cfg.ff_dim, matmul_dtype=mm, name="linear1")(z_btd))
        f_btf = drop(f_btf, deterministic=deterministic)
        f_btd = TorchLinear(cfg.width, matmul_dtype=mm, name="linear2")(f_btf)
        f_btd = drop(f_btd, deterministic=deterministic)
        scale, shift = DenseFiLM(cfg.width, matmul_dtype=mm, name="film3")(temb_bd)
        return h_btd + (1.0 + scale) * f_btd + shift


class Denoiser(nn.Module):
    """Maps a noisy window and its diffusion step to the network output (x0_hat or eps_hat).

    Attributes:
        config: the sizes and options.
    """

    config: DenoiserConfig

    @nn.compact
    def __call__(self, x_btc: jax.Array, t_b: jax.Array, *, deterministic: bool) -> jax.Array:
        """Runs the denoiser.

        Args:
            x_btc: noisy windows [B, T, C] in normalised units.
            t_b: integer diffusion steps [B] in 0..999.
            deterministic: disables dropout when True; otherwise needs the 'dropout' rng.

        Returns:
            [B, T, C]: x0_hat when config.prediction == "x0", eps_hat when "eps".
        """
        cfg = self.config
        mm = cfg.matmul_dtype
        h_btd = TorchLinear(cfg.width, matmul_dtype=mm, name="input_projection")(x_btc)
        temb_bd = sinusoidal_embedding(t_b, cfg.width)
        temb_bd = mish(TorchLinear(cfg.width * cfg.time_mlp_mult, matmul_dtype=mm, name="time_mlp")(temb_bd))
        temb_bd = TorchLinear(cfg.width, matmul_dtype=mm, name="to_time_cond")(temb_bd)
        for i in range(cfg.depth):
            h_btd = DenoiserBlock(cfg, name=f"layers_{i}")(h_btd, temb_bd, deterministic=deterministic)
        return TorchLinear(cfg.n_channels, matmul_dtype=mm, name="final_layer")(h_btd)
