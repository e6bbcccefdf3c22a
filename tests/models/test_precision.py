"""Reduced-precision matmuls (`matmul_dtype="bfloat16"`): the parameter tree does not change, every matmul
really runs on bf16 operands, the gradient rule is exact, and the outputs stay within bf16's rounding error.

Bounds: bf16 keeps 8 significant bits, unit roundoff u = 2^-8 = 3.9e-3. Rounding both operands of a
product perturbs it by at most 2u relative; summed over a dot product, the rounding errors have random
signs and add in quadrature like the values, so each matmul's output moves by about u relative to its
size. Randomly initialised pre-norm/post-norm transformers have a gain of about 1, so the network output
moves by O(u): measured 1.0u (denoiser paper), 1.3u (denoiser released), 0.95u (refiner). The tests assert
< 4u for the relative RMS error and > u/10, so a model that silently stays in float32 (error ~1e-7) fails.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gaitjax.models.denoiser import DenoiserConfig
from gaitjax.models.refiner import RefinerConfig
from gaitjax.models.registry import build_model, example_inputs
from gaitjax.models.rotary import lowp_einsum

U_BF16 = 2.0**-8  # unit roundoff of bfloat16 (8 significant bits)
SMALL = dict(width=32, depth=2, heads=4, ff_dim=64)


def _inputs(kind: str, batch: int = 2, frames: int = 150):
    key = jax.random.key(0)
    if kind == "denoiser":
        return (jax.random.normal(key, (batch, frames, 63)), jnp.array([20, 950, 400, 0][:batch], jnp.int32))
    return (jax.random.normal(key, (batch, frames, 51)),)


def _pair(kind: str, preset: str, **overrides):
    """The float32 and bf16 models and one set of float32 parameters (initialised by the float32 model)."""
    m32 = build_model(kind, preset, **overrides)
    m16 = build_model(kind, preset, matmul_dtype="bfloat16", **overrides)
    args = _inputs(kind)
    params = jax.jit(lambda: m32.init(jax.random.key(1), *args, deterministic=True))()["params"]
    return m32, m16, params, args


def _rel_rms(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_matmul_dtype_defaults_to_float32_and_is_validated():
    assert DenoiserConfig().matmul_dtype == "float32" and RefinerConfig().matmul_dtype == "float32"
    assert DenoiserConfig.paper().matmul_dtype == RefinerConfig.released().matmul_dtype == "float32"
    for bad in ("bf16", "float16", "float64"):
        with pytest.raises(ValueError, match="matmul_dtype"):
            DenoiserConfig(matmul_dtype=bad)
        with pytest.raises(ValueError, match="matmul_dtype"):
            RefinerConfig(matmul_dtype=bad)
    assert build_model("denoiser", "paper", matmul_dtype="bfloat16").config.matmul_dtype == "bfloat16"


@pytest.mark.parametrize(
    ("kind", "preset"), [("denoiser", "paper"), ("denoiser", "released"), ("refiner", "released")]
)
def test_param_tree_does_not_depend_on_matmul_dtype(kind, preset):
    def abstract(matmul_dtype):
        module = build_model(kind, preset, matmul_dtype=matmul_dtype)
        return jax.eval_shape(
            lambda *a: module.init(jax.random.key(0), *a, deterministic=True), *example_inputs(kind)
        )["params"]

    p32, p16 = abstract("float32"), abstract("bfloat16")
    assert jax.tree.structure(p32) == jax.tree.structure(p16)
    assert jax.tree.leaves(jax.tree.map(lambda a: (a.shape, a.dtype), p32)) == jax.tree.leaves(
        jax.tree.map(lambda a: (a.shape, a.dtype), p16)
    )
    assert {leaf.dtype for leaf in jax.tree.leaves(p16)} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize("kind", ["denoiser", "refiner"])
def test_initial_values_do_not_depend_on_matmul_dtype(kind):
    args = _inputs(kind, frames=16)
    inits = [
        build_model(kind, "released", matmul_dtype=dt, **SMALL).init(
            jax.random.key(3), *args, deterministic=True
        )
        for dt in ("float32", "bfloat16")
    ]
    jax.tree.map(np.testing.assert_array_equal, inits[0], inits[1])


@pytest.mark.parametrize(
    ("kind", "preset"),
    [
        ("denoiser", "paper"),
        pytest.param("denoiser", "released", marks=pytest.mark.slow),
        ("refiner", "released"),
    ],
)
def test_bf16_output_deviation_is_within_bf16_rounding(kind, preset):
    m32, m16, params, args = _pair(kind, preset)
    y32 = jax.jit(lambda p, *a: m32.apply({"params": p}, *a, deterministic=True))(params, *args)
    y16 = jax.jit(lambda p, *a: m16.apply({"params": p}, *a, deterministic=True))(params, *args)
    assert y16.dtype == jnp.float32
    rel = _rel_rms(y16, y32)
    assert U_BF16 / 10 < rel < 4 * U_BF16, rel
    # ~19k entries with an RMS error below 4u of the output's std: the largest stays below ~4.5 RMS.
    max_over_std = float(jnp.max(jnp.abs(y16 - y32)) / jnp.std(y32))
    assert max_over_std < 18 * U_BF16, max_over_std


@pytest.mark.slow
def test_bf16_gradients_stay_within_bf16_rounding():
    # The released denoiser's GELU is smooth, so its gradients move by O(u) like its outputs. (With ReLU,
    # units whose pre-activation lies within rounding error of 0 flip their derivative, and the paper
    # model's input gradient moves by ~8u whichever precision the backward pass uses.)
    m32, m16, params, (x, t) = _pair("denoiser", "released")
    probe = jax.random.normal(jax.random.key(5), x.shape)

    def grads(module):
        loss = lambda x, p: jnp.sum(probe * module.apply({"params": p}, x, t, deterministic=True))
        return jax.jit(jax.grad(loss, argnums=(0, 1)))(x, params)

    (gx32, gp32), (gx16, gp16) = grads(m32), grads(m16)
    assert U_BF16 / 10 < _rel_rms(gx16, gx32) < 4 * U_BF16
    flat = lambda tree: np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(tree)])
    assert U_BF16 / 10 < _rel_rms(flat(gp16), flat(gp32)) < 4 * U_BF16
    assert {leaf.dtype for leaf in jax.tree.leaves(gp16)} == {jnp.dtype(jnp.float32)}


_DOT = re.compile(r"stablehlo\.dot_general .*: \((tensor<[^>]*>), (tensor<[^>]*>)\) -> (tensor<[^>]*>)")


def _dots(hlo_text: str) -> list[tuple[str, str, str]]:
    """(lhs, rhs, result) element types of every dot_general in a lowered StableHLO module."""
    elem = lambda tensor: tensor.rsplit("x", 1)[-1].rstrip(">")
    return [tuple(elem(t) for t in m.groups()) for m in _DOT.finditer(hlo_text)]


@pytest.mark.parametrize(
    ("kind", "n_dots_per_block", "n_dots_outside"), [("denoiser", 10, 4), ("refiner", 8, 2)]
)
def test_every_matmul_runs_on_bf16_operands(kind, n_dots_per_block, n_dots_outside):
    # Per denoiser block: q, k, v, out, scores, values, linear1, linear2, film1, film3; outside: input
    # projection, time MLP (2), final layer. Per refiner block: the 6 attention matmuls and fc1, fc2.
    m32, m16, params, args = _pair(kind, "released", **SMALL)

    def lowered(module, grad):
        apply = lambda x, p: module.apply({"params": p}, x, *args[1:], deterministic=True)
        fn = jax.grad(lambda x, p: jnp.sum(apply(x, p) ** 2)) if grad else apply
        return jax.jit(fn).lower(args[0], params).as_text()

    fwd16, grad16 = _dots(lowered(m16, False)), _dots(lowered(m16, True))
    assert len(fwd16) == SMALL["depth"] * n_dots_per_block + n_dots_outside
    assert set(fwd16) == {("bf16", "bf16", "f32")}
    # The backward matmuls (guidance, training) run in bf16 too: the forward's dots, then the gradient's,
    # all bf16 x bf16 -> f32 (JAX's own transpose would multiply the f32 cotangent by a bf16 operand).
    assert len(grad16) > 1.5 * len(fwd16) and set(grad16) == {("bf16", "bf16", "f32")}
    for grad in (False, True):
        text32 = lowered(m32, grad)
        assert set(_dots(text32)) == {("f32", "f32", "f32")} and "bf16" not in text32


@pytest.mark.parametrize(
    ("spec", "shape_a", "shape_b"),
    [
        ("...i,io->...o", (2, 5, 6), (6, 7)),
        ("bhtk,bhsk->bhts", (2, 3, 5, 4), (2, 3, 5, 4)),
        ("bhts,bhsk->bhtk", (2, 3, 5, 5), (2, 3, 5, 4)),
    ],
)
def test_lowp_einsum_is_exact_on_bf16_values_and_its_gradient_rule_is_right(spec, shape_a, shape_b):
    # Small integers are exact in bf16, their products and short sums exact in float32: forward and both
    # gradients must equal float32 einsum and its autodiff gradients bit for bit.
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.integers(-8, 9, shape_a), jnp.float32)
    b = jnp.asarray(rng.integers(-8, 9, shape_b), jnp.float32)
    out = jnp.einsum(spec, a, b)
    probe = jnp.asarray(rng.integers(-8, 9, out.shape), jnp.float32)
    np.testing.assert_array_equal(lowp_einsum(spec, a, b), out)
    g16 = jax.grad(lambda a, b: jnp.sum(probe * lowp_einsum(spec, a, b)), argnums=(0, 1))(a, b)
    g32 = jax.grad(lambda a, b: jnp.sum(probe * jnp.einsum(spec, a, b)), argnums=(0, 1))(a, b)
    for got, want in zip(g16, g32, strict=True):
        assert got.dtype == jnp.float32
        np.testing.assert_array_equal(got, want)
    # Non-representable values are rounded: the result differs from float32, by about u.
    a_real = jax.random.normal(jax.random.key(0), shape_a)
    rel = _rel_rms(lowp_einsum(spec, a_real, b), jnp.einsum(spec, a_real, b))
    assert U_BF16 / 10 < rel < 2 * U_BF16


def test_lowp_einsum_rejects_specs_summing_inside_one_operand():
    with pytest.raises(ValueError, match="sums an index"):
        lowp_einsum("ij,jk->i", jnp.ones((2, 3)), jnp.ones((3, 4)))
