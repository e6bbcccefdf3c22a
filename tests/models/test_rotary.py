"""Rotary embedding: a hand-computed small case, the relative-position property of the paper form, and the
rotary self-attention module against a NumPy re-implementation."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gaitjax.models.rotary import RotarySelfAttention, apply_rotary, rotary_freqs


def test_freqs_hand_values():
    # f_i = 1 / 10000^(2i / dim): dim 4 -> [1, 0.01]; dim 8 -> [1, 0.1, 0.01, 0.001].
    np.testing.assert_allclose(np.asarray(rotary_freqs(4)), [1.0, 0.01], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(rotary_freqs(8)), [1.0, 0.1, 0.01, 0.001], rtol=1e-6)
    assert rotary_freqs(512).shape == (256,)


def test_released_form_hand_computed_dim4_three_positions():
    x = np.array([[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 2.0, -3.0], [-2.0, 1.5, 0.25, 1.0]], np.float32)
    out = np.asarray(apply_rotary(jnp.asarray(x), jnp.arange(3)))
    expected = []
    for pos, (x0, x1, x2, x3) in enumerate(x):
        a, b = pos * 1.0, pos * 0.01  # angles of pair (x0, x1) and pair (x2, x3)
        expected.append(
            [
                x0 * math.cos(a) - x1 * math.sin(a),
                x1 * math.cos(a) + x0 * math.sin(a),
                x2 * math.cos(b) - x3 * math.sin(b),
                x3 * math.cos(b) + x2 * math.sin(b),
            ]
        )
    np.testing.assert_allclose(out, np.array(expected), rtol=1e-6, atol=1e-6)
    # Position 0 is the identity.
    np.testing.assert_array_equal(out[0], x[0])


def test_rotation_applies_along_second_to_last_axis_and_preserves_norm():
    x = jax.random.normal(jax.random.key(0), (2, 3, 10, 8))  # [B, H, T, K]
    out = apply_rotary(x, jnp.arange(10))
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5)
    # Every batch/head entry at the same frame gets the same rotation.
    single = apply_rotary(x[1, 2], jnp.arange(10))
    np.testing.assert_allclose(np.asarray(out[1, 2]), np.asarray(single), rtol=1e-6)


@pytest.mark.parametrize("dim", [8, 64])
def test_paper_form_scores_depend_only_on_offset(dim):
    kq, kk = jax.random.split(jax.random.key(dim))
    q = jax.random.normal(kq, (dim,))
    k = jax.random.normal(kk, (dim,))

    def score(m: float, n: float) -> float:
        q_rot = apply_rotary(q[None, :], jnp.array([m], jnp.float32))[0]
        k_rot = apply_rotary(k[None, :], jnp.array([n], jnp.float32))[0]
        return float(jnp.dot(q_rot, k_rot))

    for m, n in [(0, 0), (3, 7), (10, 2), (40, 41)]:
        base = score(m, n)
        for shift in (1, 17, 100):
            assert score(m + shift, n + shift) == pytest.approx(base, abs=2e-4 * math.sqrt(dim))
    # ...and the score does change with the offset (the property is not vacuous).
    assert abs(score(0, 5) - score(0, 0)) > 1e-2


def _np_rotate(x_td: np.ndarray) -> np.ndarray:
    t, d = x_td.shape[-2:]
    out = np.empty_like(x_td)
    for i in range(d // 2):
        ang = np.arange(t) / 10000.0 ** (2 * i / d)
        c, s = np.cos(ang)[:, None], np.sin(ang)[:, None]
        xe, xo = x_td[..., 2 * i : 2 * i + 1], x_td[..., 2 * i + 1 : 2 * i + 2]
        out[..., 2 * i : 2 * i + 1] = xe * c - xo * s
        out[..., 2 * i + 1 : 2 * i + 2] = xo * c + xe * s
    return out


def _np_attention(p: dict, z: np.ndarray, heads: int, mode: str) -> np.ndarray:
    """Multi-head attention in float64 NumPy, one batch element [T, D]."""
    t, d = z.shape
    kd = d // heads

    def lin(name, x):
        return x @ np.asarray(p[name]["kernel"], np.float64) + np.asarray(p[name]["bias"], np.float64)

    qk_in = _np_rotate(z) if mode == "released" else z
    q, k, v = lin("query", qk_in), lin("key", qk_in), lin("value", z)
    heads_out = []
    for h in range(heads):
        qh, kh, vh = (a[:, h * kd : (h + 1) * kd] for a in (q, k, v))
        if mode == "paper":
            qh, kh = _np_rotate(qh), _np_rotate(kh)
        s = qh @ kh.T / math.sqrt(kd)
        w = np.exp(s - s.max(axis=1, keepdims=True))
        heads_out.append((w / w.sum(axis=1, keepdims=True)) @ vh)
    return lin("out", np.concatenate(heads_out, axis=1))


@pytest.mark.parametrize("mode", ["released", "paper", "none"])
def test_rotary_attention_matches_numpy(mode):
    module = RotarySelfAttention(heads=4, rotary=mode, attn_dropout=0.1)
    z = jax.random.normal(jax.random.key(1), (2, 12, 16))
    params = module.init(jax.random.key(2), z, deterministic=True)["params"]
    # Non-zero biases so a q/k/v mix-up or a missing bias shows.
    params = jax.tree_util.tree_map(
        lambda a: a + 0.1 * jax.random.normal(jax.random.key(a.size), a.shape), params
    )
    out = np.asarray(module.apply({"params": params}, z, deterministic=True))
    for b in range(2):
        expected = _np_attention(params, np.asarray(z[b], np.float64), 4, mode)
        np.testing.assert_allclose(out[b], expected, rtol=1e-4, atol=1e-5)


def test_released_and_paper_forms_differ_and_dropout_acts_on_probabilities():
    z = jax.random.normal(jax.random.key(3), (1, 10, 16))
    rel = RotarySelfAttention(heads=2, rotary="released", attn_dropout=0.5)
    params = rel.init(jax.random.key(4), z, deterministic=True)
    pap = RotarySelfAttention(heads=2, rotary="paper", attn_dropout=0.5)
    out_rel = rel.apply(params, z, deterministic=True)
    out_pap = pap.apply(params, z, deterministic=True)
    assert float(jnp.max(jnp.abs(out_rel - out_pap))) > 1e-3
    dropped = rel.apply(params, z, deterministic=False, rngs={"dropout": jax.random.key(5)})
    assert float(jnp.max(jnp.abs(dropped - out_rel))) > 1e-3


def test_init_follows_torch_multihead_attention():
    d = 256
    module = RotarySelfAttention(heads=4)
    params = module.init(jax.random.key(6), jnp.zeros((1, 3, d)), deterministic=True)["params"]
    bound_in = math.sqrt(6.0 / (4 * d))  # xavier-uniform over the packed [3D, D] in_proj
    for name in ("query", "key", "value"):
        kernel = np.asarray(params[name]["kernel"])
        assert np.abs(kernel).max() <= bound_in and np.abs(kernel).max() > 0.95 * bound_in
        assert np.all(np.asarray(params[name]["bias"]) == 0)
    out_kernel = np.asarray(params["out"]["kernel"])
    assert np.abs(out_kernel).max() <= 1 / math.sqrt(d) and np.abs(out_kernel).max() > 0.95 / math.sqrt(d)
    assert np.all(np.asarray(params["out"]["bias"]) == 0)
