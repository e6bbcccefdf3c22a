"""Independent NumPy (float64) forward passes of the released PyTorch architectures, written from spec §3.1
(`DanceDecoder`) and §5 (`TransformerEncoderArchitecture`). They read torch-layout state dicts directly
(Linear: y = x W^T + b; packed in_proj rows q | k | v) and share no code with gaitjax.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erf


def linear(sd: dict, name: str, x: np.ndarray) -> np.ndarray:
    return x @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]


def layer_norm(sd: dict, name: str, x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * sd[f"{name}.weight"] + sd[f"{name}.bias"]


def mish(x: np.ndarray) -> np.ndarray:
    return x * np.tanh(np.logaddexp(0.0, x))


def gelu_exact(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def rotary(x: np.ndarray) -> np.ndarray:
    """rotary_embedding_torch style: freqs 1/10000^(2i/D) repeated as [f0, f0, f1, f1, ...] over positions
    0..T-1; x * cos + rotate_half(x) * sin with rotate_half (x_2i, x_2i+1) -> (-x_2i+1, x_2i). x: [B, T, D]."""
    t, d = x.shape[-2:]
    freqs = 1.0 / 10000.0 ** (np.arange(0, d, 2) / d)
    angles = np.repeat(np.arange(t)[:, None] * freqs[None, :], 2, axis=-1)  # [T, D]
    pairs = x.reshape(*x.shape[:-1], d // 2, 2)
    rotated_half = np.stack([-pairs[..., 1], pairs[..., 0]], axis=-1).reshape(x.shape)
    return x * np.cos(angles) + rotated_half * np.sin(angles)


def self_attention(sd: dict, name: str, qk_in: np.ndarray, v_in: np.ndarray, heads: int) -> np.ndarray:
    """torch.nn.MultiheadAttention(query=key=qk_in, value=v_in), batch-first, no mask. Inputs [B, T, D]."""
    w, b = sd[f"{name}.in_proj_weight"], sd[f"{name}.in_proj_bias"]
    bsz, t, d = v_in.shape
    k_dim = d // heads
    q = qk_in @ w[:d].T + b[:d]
    k = qk_in @ w[d : 2 * d].T + b[d : 2 * d]
    v = v_in @ w[2 * d :].T + b[2 * d :]
    q, k, v = (a.reshape(bsz, t, heads, k_dim).transpose(0, 2, 1, 3) for a in (q, k, v))
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(k_dim)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    out = (probs @ v).transpose(0, 2, 1, 3).reshape(bsz, t, d)
    return linear(sd, f"{name}.out_proj", out)


def timestep_embedding(t_b: np.ndarray, dim: int) -> np.ndarray:
    """SinusoidalPosEmb of raw integer steps: [sin(t f), cos(t f)], f_k = exp(-k ln(10000) / (dim/2 - 1))."""
    half = dim // 2
    angles = t_b.astype(np.float64)[:, None] * np.exp(np.arange(half) * -(math.log(10000.0) / (half - 1)))
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=-1)


def film(sd: dict, name: str, t_emb: np.ndarray, z: np.ndarray) -> np.ndarray:
    """DenseFiLM: Mish -> Linear(D -> 2D) = (scale | shift); returns (1 + scale) * z + shift over time."""
    scale, shift = np.split(linear(sd, f"{name}.block.1", mish(t_emb)), 2, axis=-1)
    return (1.0 + scale[:, None, :]) * z + shift[:, None, :]


def dance_decoder(sd: dict, x_btc: np.ndarray, t_b: np.ndarray, heads: int) -> np.ndarray:
    """DanceDecoder forward in eval mode: [B, T, 63] noisy window and [B] steps -> [B, T, 63] (x0_hat)."""
    sd = {k: np.asarray(v, np.float64) for k, v in sd.items()}
    h = linear(sd, "input_projection", x_btc.astype(np.float64))
    d = h.shape[-1]
    t_emb = linear(sd, "to_time_cond.0", mish(linear(sd, "time_mlp.1", timestep_embedding(t_b, d))))
    depth = len({k.split(".")[2] for k in sd if k.startswith("seqTransDecoder.stack.")})
    for i in range(depth):
        p = f"seqTransDecoder.stack.{i}"
        z = layer_norm(sd, f"{p}.norm1", h)
        h = h + film(sd, f"{p}.film1", t_emb, self_attention(sd, f"{p}.self_attn", rotary(z), z, heads))
        z = layer_norm(sd, f"{p}.norm3", h)
        f = linear(sd, f"{p}.linear2", gelu_exact(linear(sd, f"{p}.linear1", z)))
        h = h + film(sd, f"{p}.film3", t_emb, f)
    return linear(sd, "final_layer", h)


def transformer_encoder(sd: dict, kin_btk: np.ndarray, heads: int = 8) -> np.ndarray:
    """TransformerEncoderArchitecture forward in eval mode: [B, T, 51] kinematics -> [B, T, 12] forces."""
    sd = {k: np.asarray(v, np.float64) for k, v in sd.items()}
    h = linear(sd, "input_to_embedding", kin_btk.astype(np.float64))
    depth = len({k.split(".")[1] for k in sd if k.startswith("encoder_layers.")})
    for i in range(depth):
        p = f"encoder_layers.{i}"
        h_rot = rotary(h)
        h = layer_norm(sd, f"{p}.norm1", h + self_attention(sd, f"{p}.self_attn", h_rot, h, heads))
        f = linear(sd, f"{p}.feed_forward.fc2", np.maximum(linear(sd, f"{p}.feed_forward.fc1", h), 0.0))
        h = layer_norm(sd, f"{p}.norm2", h + f)
    return linear(sd, "embedding_to_output", h)
