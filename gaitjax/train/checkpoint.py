"""orbax checkpoints of a run: train state, per-process data-iterator state, resolved config and
normaliser saved together; the resume precedence (workdir checkpoint > config.init_from > scratch)."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from gaitjax.train.state import TrainState


class IteratorHandler(ocp.CheckpointHandler):
    """Saves `iterator.get_state()` as JSON, one file per process (each process reads its own data slice).

    Bytes states are stored base64-encoded; dict states as JSON (numpy scalars become Python numbers).
    """

    def save(self, directory: epath.Path, args: IteratorSave) -> None:
        state = args.iterator.get_state()
        if isinstance(state, bytes):
            payload = {"bytes_b64": base64.b64encode(state).decode("ascii")}
        else:
            payload = {"state": state}
        text = json.dumps(payload, default=_json_default)
        (directory / _process_file()).write_text(text)

    def restore(self, directory: epath.Path, args: IteratorRestore) -> Any:
        path = directory / _process_file()
        if not path.exists():
            raise FileNotFoundError(
                f"{path}: no data-iterator state for this process; was the checkpoint written with a "
                "different number of processes?"
            )
        payload = json.loads(path.read_text())
        state = base64.b64decode(payload["bytes_b64"]) if "bytes_b64" in payload else payload["state"]
        args.iterator.set_state(state)
        return args.iterator


def _process_file() -> str:
    return f"process_{jax.process_index()}-of-{jax.process_count()}.json"


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a data-iterator checkpoint")


@ocp.args.register_with_handler(IteratorHandler, for_save=True)
@dataclasses.dataclass
class IteratorSave(ocp.args.CheckpointArgs):
    iterator: Any


@ocp.args.register_with_handler(IteratorHandler, for_restore=True)
@dataclasses.dataclass
class IteratorRestore(ocp.args.CheckpointArgs):
    iterator: Any


@dataclasses.dataclass
class Restored:
    """What a resume brings back besides the state (already placed on devices)."""

    state: TrainState
    config: dict[str, Any] | None
    normalizer: dict[str, Any] | None


class Checkpoints:
    """One orbax CheckpointManager over `<workdir>/checkpoints`, synchronous saves (a save that returns
    is committed, so a SIGKILL afterwards cannot lose it; a kill during a save leaves a temporary
    directory orbax ignores).

    Args:
      workdir: run directory.
      max_to_keep: number of most recent checkpoints kept.
    """

    def __init__(self, workdir: str | Path, max_to_keep: int = 3):
        self.directory = Path(workdir).resolve() / "checkpoints"
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=False),
            item_names=("state", "data", "config", "normalizer"),
        )

    def latest_step(self) -> int | None:
        """Step of the newest committed checkpoint, or None."""
        return self.manager.latest_step()

    def saved_normalizer(self) -> dict[str, Any] | None:
        """The normaliser stored with the latest checkpoint (None without a checkpoint)."""
        step = self.latest_step()
        if step is None:
            return None
        got = self.manager.restore(step, args=ocp.args.Composite(normalizer=ocp.args.JsonRestore()))
        return got["normalizer"] or None

    def save(
        self, state: TrainState, iterator: Any, config: dict[str, Any], normalizer: dict[str, Any] | None
    ) -> None:
        """Saves everything needed to resume at `state.step` (every process must call this)."""
        step = int(jax.device_get(state.step))
        items = {
            "state": ocp.args.StandardSave(state.arrays()),
            "data": IteratorSave(iterator),
            "config": ocp.args.JsonSave(json.loads(json.dumps(config, default=str))),
            "normalizer": ocp.args.JsonSave(normalizer or {}),
        }
        self.manager.save(step, args=ocp.args.Composite(**items), force=True)
        self.manager.wait_until_finished()

    def restore(
        self, abstract: TrainState, shardings: TrainState, iterator: Any, step: int | None = None
    ) -> Restored:
        """Restores the latest (or given) checkpoint into the sharded abstract state and sets the iterator.

        Args:
          abstract: `jax.eval_shape` of the state (the restore target's structure and dtypes).
          shardings: NamedSharding per leaf (where arrays land).
          iterator: the data iterator whose state is overwritten.
          step: checkpoint step (default: latest).
        """
        step = self.latest_step() if step is None else step
        target = _sharded_target(abstract, shardings)
        got = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target),
                data=IteratorRestore(iterator),
                config=ocp.args.JsonRestore(),
                normalizer=ocp.args.JsonRestore(),
            ),
        )
        return Restored(abstract.with_arrays(got["state"]), got["config"], got["normalizer"] or None)

    def close(self) -> None:
        self.manager.close()


def _sharded_target(abstract: TrainState, shardings: TrainState) -> dict[str, Any]:
    return jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract.arrays(), shardings.arrays()
    )


def load_params(path: str | Path, abstract: TrainState, shardings: TrainState) -> tuple[Any, Any]:
    """Reads params and EMA params from another run (for `config.init_from`).

    Args:
      path: a run's workdir, its `checkpoints` folder, or one step folder inside it.
      abstract, shardings: as in `Checkpoints.restore`; only the params subtrees are used.

    Returns:
      (params, ema_params) placed by `shardings`.
    """
    path = Path(path).resolve()
    if (path / "checkpoints").is_dir():
        path = path / "checkpoints"
    if (path / "state").is_dir():
        step_dir = path
    else:
        steps = sorted(int(p.name) for p in path.glob("*") if p.name.isdigit())
        if not steps:
            raise FileNotFoundError(f"config.init_from={str(path)!r} holds no checkpoint")
        step_dir = path / str(steps[-1])
    target = _sharded_target(abstract, shardings)
    target = {"params": target["params"], "ema_params": target["ema_params"]}
    got = ocp.PyTreeCheckpointer().restore(
        step_dir / "state", args=ocp.args.PyTreeRestore(item=target, partial_restore=True)
    )
    return got["params"], got["ema_params"]


def resolve_start(
    checkpoints: Checkpoints,
    init_from: str,
    abstract: TrainState,
    shardings: TrainState,
    iterator: Any,
    make_fresh: Callable[[], TrainState],
) -> tuple[str, Restored]:
    """The one place that decides where training starts: workdir checkpoint > init_from > scratch.

    Args:
      checkpoints: this run's checkpoints.
      init_from: `config.init_from` ("" for none): parameters to start from with a fresh optimizer.
      abstract, shardings: abstract state and its shardings (restore target).
      iterator: data iterator, restored only on resume.
      make_fresh: returns a newly initialised state (called for init_from and scratch only).

    Returns:
      (origin, restored): origin is "resume", "init_from" or "scratch".
    """
    if checkpoints.latest_step() is not None:
        return "resume", checkpoints.restore(abstract, shardings, iterator)
    if init_from:
        params, ema_params = load_params(init_from, abstract, shardings)
        state = make_fresh().replace(params=params, ema_params=ema_params)
        return "init_from", Restored(state, None, None)
    return "scratch", Restored(make_fresh(), None, None)
