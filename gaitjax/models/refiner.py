"""The force refiner: a post-norm rotary transformer encoder mapping 51 kinematic channels to 12 force
channels per frame (released `TransformerEncoderArchitecture`, spec §5).

Parameter tree and the mapping from the torch state dict (TorchLinear kernel = torch weight transposed):

    input_to_embedding/{kernel [51, D], bias [D]}     <- input_to_embedding.weight.T / .bias
    encoder_layers_{i}/self_attn/{query,key,value}/{kernel [D, D], bias [D]}
                            <- encoder_layers.{i}.self_attn.in_proj_weight rows q|k|v, .T
    encoder_layers_{i}/self_attn/out/{kernel, bias}
                            <- encoder_layers.{i}.self_attn.out_proj.weight.T / .bias
    encoder_layers_{i}/fc1/{kernel [D, F], bias}      <- encoder_layers.{i}.feed_forward.fc1.weight.T / .bias
    encoder_layers_{i}/fc2/{kernel [F, D], bias}      <- encoder_layers.{i}.feed_forward.fc2.weight.T / .bias
    encoder_layers_{i}/norm1/{scale, bias}, norm2/{scale, bias}
    embedding_to_output/{kernel [D, 12], bias [12]}   <- embedding_to_output.weight.T / .bias

The per-layer `rotary.freqs` buffers are recomputed, not stored.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import flax.linen as nn
import jax

from gaitjax.models.rotary import MatmulDtype, RotarySelfAttention, TorchLinear, check_matmul_dtype


@dataclasses.dataclass(frozen=True)
class RefinerConfig:
    """Sizes and options of the force refiner; the defaults are the released model.

    Attributes:
        n_in: input channels (the 51 kinematic channels).
        n_out: output channels (the 12 kinetic channels).
        width: hidden width D.
        depth: number of encoder blocks.
        heads: attention heads (D divisible by heads).
        ff_dim: feed-forward width F.
        dropout: dropout on both residual branches (attention probabilities have none).
        ln_eps: LayerNorm epsilon.
        rotary: "released" (rotate the block input before Q/K) or "paper" (rotate per-head Q/K).
        matmul_dtype: operand dtype of every matmul, "float32" or "bfloat16" (float32 accumulation and
            outputs; parameters, LayerNorm, softmax and residuals stay float32; see `DenoiserConfig`).
    """

    n_in: int = 51
    n_out: int = 12
    width: int = 192
    depth: int = 6
    heads: int = 8
    ff_dim: int = 512
    dropout: float = 0.1
    ln_eps: float = 1e-5
    rotary: Literal["released", "paper"] = "released"
    matmul_dtype: MatmulDtype = "float32"

    def __post_init__(self):
        if self.rotary not in ("released", "paper"):
            raise ValueError(f"rotary must be 'released' or 'paper', got {self.rotary!r}")
        check_matmul_dtype(self.matmul_dtype)
        if self.width % self.heads or self.width % 2:
            raise ValueError(f"width {self.width} must be even and divisible by heads {self.heads}")

    @classmethod
    def released(cls) -> RefinerConfig:
        """The released checkpoint's refiner: 6 blocks, width 192, 8 heads, FF 512 (2,090,124 params)."""
        return cls()

    @classmethod
    def paper(cls) -> RefinerConfig:
        """The paper's refiner: 6 blocks, 8 heads, FF 512, RoFormer rotary.

        The paper gives no hidden width; the released width 192 is used.
        """
        return cls(rotary="paper")


class EncoderBlock(nn.Module):
    """Post-norm block: h = LN1(h + Drop(MHA(rot(h), rot(h), h))); h = LN2(h + Drop(FF(h)))."""

    config: RefinerConfig

    @nn.compact
    def __call__(self, h_btd: jax.Array, *, deterministic: bool) -> jax.Array:
        cfg = self.config
        mm = cfg.matmul_dtype
        drop = nn.Dropout(cfg.dropout)
        a_btd = RotarySelfAttention(
            cfg.heads, rotary=cfg.rotary, attn_dropout=0.0, matmul_dtype=mm, name="self_attn"
        )(h_btd, deterministic=deterministic)
        h_btd = nn.LayerNorm(epsilon=cfg.ln_eps, use_fast_variance=False, name="norm1")(
            h_btd + drop(a_btd, deterministic=deterministic)
        )
        f_btf = jax.nn.relu(TorchLinear(cfg.ff_dim, matmul_dtype=mm, name="fc1")(h_btd))
        f_btd = TorchLinear(cfg.width, matmul_dtype=mm, name="fc2")(f_btf)
        return nn.LayerNorm(epsilon=cfg.ln_eps, use_fast_variance=False, name="norm2")(
            h_btd + drop(f_btd, deterministic=deterministic)
        )


class Refiner(nn.Module):
    """Kinematics -> forces, per frame, with attention over the whole window.

    Attributes:
        config: the sizes and options.
    """

    config: RefinerConfig

    @nn.compact
    def __call__(self, kin_btk: jax.Array, *, deterministic: bool) -> jax.Array:
        """Runs the refiner.

        Args:
            kin_btk: normalised kinematic channels [B, T, 51] (channels.KINEMATIC_IDX order); masked or
                padded entries should be 0. There is no padding mask: every frame attends to every frame.
            deterministic: disables dropout when True; otherwise needs the 'dropout' rng.

        Returns:
            Normalised kinetic channels [B, T, 12] (channels.KINETIC_IDX order).
        """
        cfg = self.config
        h_btd = TorchLinear(cfg.width, matmul_dtype=cfg.matmul_dtype, name="input_to_embedding")(kin_btk)
        for i in range(cfg.depth):
            h_btd = EncoderBlock(cfg, name=f"encoder_layers_{i}")(h_btd, deterministic=deterministic)
        return TorchLinear(cfg.n_out, matmul_dtype=cfg.matmul_dtype, name="embedding_to_output")(h_btd)
