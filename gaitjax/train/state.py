"""The training state pytree (step, params, EMA params, optimizer state) and its shape-first,
sharded initialisation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.sharding import Mesh

from gaitjax.models.registry import example_inputs
from gaitjax.parallel import mesh as mesh_lib


@struct.dataclass
class TrainState:
    """Everything that changes during training; the model and optimizer definitions are static.

    Attributes:
      step: number of optimizer steps taken (int32 scalar).
      params: model parameters.
      ema_params: exponential moving average of `params` (the weights used for inference).
      opt_state: optax state.
      apply_fn: the Flax module's `apply` (static).
      tx: the optax transformation (static).
    """

    step: jax.Array
    params: Any
    ema_params: Any
    opt_state: Any
    apply_fn: Callable = struct.field(pytree_node=False)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)

    def arrays(self) -> dict[str, Any]:
        """The array part as a plain dict (what checkpoints store)."""
        return {
            "step": self.step,
            "params": self.params,
            "ema_params": self.ema_params,
            "opt_state": self.opt_state,
        }

    def with_arrays(self, arrays: dict[str, Any]) -> TrainState:
        """A copy whose array fields come from `arrays` (the inverse of `arrays()`)."""
        return self.replace(**arrays)


def make_init_fn(model: nn.Module, kind: str, tx: optax.GradientTransformation) -> Callable:
    """Returns `init(key) -> TrainState`, pure, for use under `jax.eval_shape` and `jax.jit`.

    The EMA starts as a copy of the initial parameters (spec §3.2: no warm-up).
    """

    def init(key: jax.Array) -> TrainState:
        params_key, dropout_key = jax.random.split(key)
        inputs = [jnp.zeros(spec.shape, spec.dtype) for spec in example_inputs(kind)]
        variables = model.init({"params": params_key, "dropout": dropout_key}, *inputs, deterministic=True)
        params = variables["params"]
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            ema_params=jax.tree.map(jnp.copy, params),
            opt_state=tx.init(params),
            apply_fn=model.apply,
            tx=tx,
        )

    return init


def abstract_state(model: nn.Module, kind: str, tx: optax.GradientTransformation) -> TrainState:
    """The state's shapes and dtypes without allocating anything (`jax.eval_shape`)."""
    return jax.eval_shape(make_init_fn(model, kind, tx), jax.random.key(0))


def init_state(
    model: nn.Module, kind: str, tx: optax.GradientTransformation, key: jax.Array, mesh: Mesh
) -> tuple[TrainState, TrainState]:
    """Initialises the train state directly into its shardings.

    Args:
      model: the Flax module.
      kind: "denoiser", "refiner", "cnn" or "lstm" (picks the example inputs).
      tx: the optimizer.
      key: the "init" stream key.
      mesh: device mesh; leaves are placed by `mesh_lib.state_shardings`.

    Returns:
      (state, shardings): the initial state and the matching pytree of NamedShardings.
    """
    init = make_init_fn(model, kind, tx)
    shardings = mesh_lib.state_shardings(jax.eval_shape(init, key), mesh)
    state = jax.jit(init, out_shardings=shardings)(key)
    return state, shardings


def count_params(params: Any) -> int:
    """Number of scalar parameters in a pytree of arrays or ShapeDtypeStructs."""
    return sum(int(leaf.size) for leaf in jax.tree.leaves(params))
