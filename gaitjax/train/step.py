"""The pure train step (loss -> grads -> Adan -> EMA) and its one jitted, sharded, donating instance.
The task is a loss function picked by config, not a second step."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from gaitjax.diffusion import losses
from gaitjax.diffusion.schedule import make_schedule
from gaitjax.parallel import mesh as mesh_lib
from gaitjax.train.state import TrainState

# loss_fn(apply_fn, params, batch, key) -> (scalar loss, dict of scalar metrics)
LossFn = Callable[[Callable, Any, dict[str, jax.Array], jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


def make_loss_fn(kind: str, *, schedule: str = "scaled_linear", prediction: str = "x0") -> LossFn:
    """Picks the training loss for a model kind.

    Args:
      kind: "denoiser" (diffusion loss on the full 63-channel window) or "refiner"/"cnn"/"lstm" (force loss:
        51 kinematic channels in, 12 force channels out; L1 for the LSTM baseline as released, spec §7.5).
      schedule: noise schedule kind for the denoiser ("scaled_linear" released, "cosine" paper).
      prediction: denoiser target, "x0" (released) or "eps".

    Returns:
      `loss_fn(apply_fn, params, batch, key) -> (loss, aux)`; `batch["x_btc"]` is [B, 150, 63] normalised.
    """
    if kind == "denoiser":
        sched = make_schedule(schedule)

        def denoiser_loss(apply_fn, params, batch, key):
            def denoise(p, x_t_btc, t_b, rngs):
                return apply_fn({"params": p}, x_t_btc, t_b, rngs=rngs, deterministic=False)

            return losses.diffusion_loss(denoise, params, batch["x_btc"], key, sched, prediction=prediction)

        return denoiser_loss
    if kind in ("refiner", "cnn", "lstm"):
        loss_type = "l1" if kind == "lstm" else "mse"

        def force_loss(apply_fn, params, batch, key):
            def regress(p, kin_btk, rngs):
                return apply_fn({"params": p}, kin_btk, rngs=rngs, deterministic=False)

            return losses.force_loss(
                regress, params, batch["x_btc"], key, mask_bt=batch.get("mask_bt"), loss_type=loss_type
            )

        return force_loss
    raise ValueError(f"config.model.kind must be denoiser, refiner, cnn or lstm, got {kind!r}")


def train_step(
    state: TrainState, batch: dict[str, jax.Array], train_key: jax.Array, *, loss_fn: LossFn, ema_decay: float
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step.

    The step's randomness (noise, diffusion step, dropout) comes from `fold_in(train_key, state.step)`, so a
    resumed run draws the same keys as an uninterrupted one.

    Args:
      state: current state.
      batch: global arrays; `x_btc` [B, 150, 63] normalised windows (plus whatever else the loader gives).
      train_key: the "train" stream key (never stored in the state).
      loss_fn: from `make_loss_fn`.
      ema_decay: EMA rate (0.999); ema <- decay·ema + (1 - decay)·params after the update.

    Returns:
      (new state, metrics): metrics holds scalar `loss`, `grad_norm` and the loss's aux values, all
      computed from the parameters before the update.
    """
    key = jax.random.fold_in(train_key, state.step)

    def objective(params):
        return loss_fn(state.apply_fn, params, batch, key)

    (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema_params = jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, state.ema_params, params)
    new_state = state.replace(step=state.step + 1, params=params, ema_params=ema_params, opt_state=opt_state)
    grad_norm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads)))
    metrics = {"loss": loss, "grad_norm": grad_norm}
    metrics.update({k: jnp.mean(v) for k, v in aux.items() if jnp.ndim(v) == 0})
    return new_state, metrics


def jit_train_step(loss_fn: LossFn, ema_decay: float, state_shardings: TrainState, mesh: Mesh) -> Callable:
    """The single jitted instance of `train_step`: state donated, batch over ("data", "fsdp"), key and
    metrics replicated.

    Returns:
      `step(state, batch, train_key) -> (state, metrics)`.
    """
    return jax.jit(
        functools.partial(train_step, loss_fn=loss_fn, ema_decay=ema_decay),
        donate_argnums=0,
        in_shardings=(state_shardings, mesh_lib.batch_sharding(mesh), mesh_lib.replicated(mesh)),
        out_shardings=(state_shardings, mesh_lib.replicated(mesh)),
    )
