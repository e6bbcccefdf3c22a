"""Builds any gaitjax model by kind and preset, and counts parameters without allocating them."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from gaitjax.data.channels import KINEMATIC_IDX, N_CHANNELS, WINDOW_LEN
from gaitjax.models.baselines import CNNRegressor, LSTMRegressor
from gaitjax.models.denoiser import Denoiser, DenoiserConfig
from gaitjax.models.refiner import Refiner, RefinerConfig

ModelKind = Literal["denoiser", "refiner", "cnn", "lstm"]
Preset = Literal["paper", "released"]
MODEL_KINDS: tuple[str, ...] = ("denoiser", "refiner", "cnn", "lstm")


def build_model(kind: ModelKind, preset: Preset = "released", **overrides) -> nn.Module:
    """Builds a model.

    Args:
        kind: "denoiser" (diffusion model), "refiner" (force refiner), "cnn" or "lstm" (baselines).
        preset: "released" (the released checkpoints' sizes) or "paper" (the paper's). The baselines have
            one size; both presets give it.
        **overrides: config fields to change (DenoiserConfig / RefinerConfig fields, or the baseline
            module's attributes), e.g. `width=64, depth=2`.

    Returns:
        The unbound Flax module. The denoiser is called as `(x_btc, t_b, deterministic=...)`, the others
        as `(kin_btk, deterministic=...)`.
    """
    if preset not in ("paper", "released"):
        raise ValueError(f"unknown preset {preset!r}; expected 'paper' or 'released'")
    if kind == "denoiser":
        base = DenoiserConfig.paper() if preset == "paper" else DenoiserConfig.released()
        return Denoiser(_replace(base, overrides))
    if kind == "refiner":
        base = RefinerConfig.paper() if preset == "paper" else RefinerConfig.released()
        return Refiner(_replace(base, overrides))
    if kind == "cnn":
        return CNNRegressor(**overrides)
    if kind == "lstm":
        return LSTMRegressor(**overrides)
    raise ValueError(f"unknown model kind {kind!r}; expected one of {MODEL_KINDS}")


def _replace(config, overrides: dict):
    known = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown {type(config).__name__} fields {unknown}; known fields: {sorted(known)}")
    return dataclasses.replace(config, **overrides)


def example_inputs(kind: ModelKind, batch: int = 1, n_frames: int = WINDOW_LEN) -> list[jax.ShapeDtypeStruct]:
    """Abstract positional inputs of a model kind (for `count_params`, `init` shapes, `eval_shape`).

    Args:
        kind: the model kind.
        batch: batch size B.
        n_frames: window length T.

    Returns:
        [x [B, T, 63] float32, t [B] int32] for the denoiser, [kin [B, T, 51] float32] otherwise.
    """
    if kind == "denoiser":
        return [
            jax.ShapeDtypeStruct((batch, n_frames, N_CHANNELS), jnp.float32),
            jax.ShapeDtypeStruct((batch,), jnp.int32),
        ]
    if kind in ("refiner", "cnn", "lstm"):
        return [jax.ShapeDtypeStruct((batch, n_frames, len(KINEMATIC_IDX)), jnp.float32)]
    raise ValueError(f"unknown model kind {kind!r}; expected one of {MODEL_KINDS}")


def count_params(module: nn.Module, input_shapes: Sequence[tuple[int, ...] | jax.ShapeDtypeStruct]) -> int:
    """Number of scalar parameters of a module, from `jax.eval_shape` (nothing is allocated).

    Args:
        module: the Flax module.
        input_shapes: shapes of the positional call arguments; plain tuples mean float32, or give
            `jax.ShapeDtypeStruct`s (e.g. from `example_inputs`).

    Returns:
        The total parameter count.
    """
    specs = [
        s if isinstance(s, jax.ShapeDtypeStruct) else jax.ShapeDtypeStruct(s, jnp.float32)
        for s in input_shapes
    ]

    def init(*args):
        return module.init(jax.random.key(0), *args, deterministic=True)

    variables = jax.eval_shape(init, *specs)
    return sum(leaf.size for leaf in jax.tree_util.tree_leaves(variables["params"]))
