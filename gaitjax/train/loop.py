"""The training loop: data, model and sharded state from a config; resume or start; step, log (tqdm,
metrics JSONL, TensorBoard when installed), checkpoint, and plot the loss curve."""

from __future__ import annotations

import importlib.util
import json
import math
import time
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
import tqdm
from jax.experimental import multihost_utils

from gaitjax.data import pipeline
from gaitjax.data.normalizer import MinMaxNormalizer
from gaitjax.data.store import Store
from gaitjax.models.registry import build_model
from gaitjax.parallel import mesh as mesh_lib
from gaitjax.train import checkpoint as ckpt_lib
from gaitjax.train import config_check
from gaitjax.train.optim import make_optimizer
from gaitjax.train.state import TrainState, abstract_state, count_params, make_init_fn
from gaitjax.train.step import jit_train_step, make_loss_fn

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"
SYNTHETIC_STORE = "synthetic_store"


class NonFiniteLossError(RuntimeError):
    """Training stopped because the loss became NaN or infinite."""


def _log(message: str) -> None:
    if jax.process_index() == 0:
        tqdm.tqdm.write(message)


def resolve_store(data: config_check.DataConfig, workdir: Path, seed: int) -> Path:
    """The training store: `data.store`, or the synthetic demo store in the workdir (written on first use
    by process 0 while the others wait)."""
    if data.synthetic_trials <= 0:
        return Path(data.store).expanduser()
    path = workdir / SYNTHETIC_STORE
    if jax.process_index() == 0 and not path.is_dir():
        from gaitjax.data.synthetic import write_synthetic_store

        _log(f"writing a synthetic store of {data.synthetic_trials} trials to {path}")
        write_synthetic_store(path, n_trials=data.synthetic_trials, seed=seed)
    multihost_utils.sync_global_devices("synthetic store written")
    return path


class MetricsWriter:
    """Per-step metrics to `<workdir>/metrics.jsonl` (process 0 only) and TensorBoard when installed."""

    def __init__(self, workdir: Path, resume_step: int):
        self.active = jax.process_index() == 0
        self.path = workdir / METRICS_FILE
        self.tb = None
        if not self.active:
            return
        if self.path.exists():
            # A killed run may have logged steps past its last checkpoint; they are redone now.
            rows = [r for r in _read_rows(self.path) if r["step"] < resume_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        self.tb = _tensorboard_writer(workdir / "tensorboard")

    def write(self, rows: list[dict[str, float]]) -> None:
        if not self.active:
            return
        with self.path.open("a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        if self.tb is not None:
            for r in rows:
                for k, v in r.items():
                    if k != "step":
                        self.tb.add_scalar(k, v, r["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _tensorboard_writer(logdir: Path):
    if importlib.util.find_spec("tensorboardX") is not None:
        from tensorboardX import SummaryWriter

        return SummaryWriter(str(logdir))
    if importlib.util.find_spec("tensorboard") is not None and importlib.util.find_spec("torch") is not None:
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(logdir))
    return None


def _read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_metrics(workdir: str | Path) -> list[dict[str, Any]]:
    """The rows of a run's metrics JSONL ({"step": s, "loss": ..., ...}; step = state.step before the
    update whose loss it is), sorted by step."""
    return sorted(_read_rows(Path(workdir) / METRICS_FILE), key=lambda r: r["step"])


def plot_loss(workdir: str | Path) -> Path:
    """Writes `<workdir>/loss.png`: training loss against step (log scale) with a moving average."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(workdir)
    steps = np.array([r["step"] for r in rows])
    loss = np.array([r["loss"] for r in rows])
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, loss, lw=0.6, alpha=0.5, label="loss")
    if len(loss) >= 20:
        w = max(len(loss) // 20, 2)
        ax.plot(steps[w - 1 :], np.convolve(loss, np.ones(w) / w, mode="valid"), lw=1.5, label=f"mean of {w}")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    out = Path(workdir) / PLOT_FILE
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _select_arrays(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    # Only what the losses read goes to the devices.
    return {k: batch[k] for k in ("x_btc", "mask_bt") if k in batch}


def _fetch(pending: list[tuple[int, dict[str, jax.Array]]]) -> list[dict[str, float]]:
    host = jax.device_get([m for _, m in pending])
    rows = [
        {"step": s, **{k: float(v) for k, v in m.items()}} for (s, _), m in zip(pending, host, strict=True)
    ]
    for row in rows:
        if not math.isfinite(row["loss"]):
            raise NonFiniteLossError(
                f"the training loss became {row['loss']} at step {row['step']}; stopping. Lower "
                "config.optim.lr or set config.optim.grad_clip_norm, then resume from the last checkpoint"
            )
    return rows


def train(config: ml_collections.ConfigDict, workdir: str | Path) -> TrainState:
    """Trains the model named by `config` in `workdir`, resuming from the workdir's checkpoint if any.

    Args:
      config: a config from `configs/` (sections seed, data, model, diffusion, optim, train, sampler,
        evals, mesh; plus init_from).
      workdir: run directory (checkpoints/, metrics.jsonl, loss.png).

    Returns:
      The final train state.

    Raises:
      ConfigError, MeshConfigError: bad config. GaitDataError: bad store. NonFiniteLossError: NaN/inf loss.
    """
    run = config_check.resolve(config)
    workdir = Path(workdir).expanduser().resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    mesh = mesh_lib.make_mesh(run.mesh)
    mesh_lib.check_batch_size(run.data.batch_size, mesh)

    # One root key, split once into the named streams: init, train, eval, sample.
    init_key, train_key, _eval_key, _sample_key = jax.random.split(jax.random.key(run.seed), 4)
    overrides = dict(run.model.overrides)
    if run.model.kind == "denoiser":
        overrides["prediction"] = run.diffusion.prediction
    model = build_model(run.model.kind, run.model.preset, **overrides)
    tx = make_optimizer(run.optim)
    abstract = abstract_state(model, run.model.kind, tx)
    shardings = mesh_lib.state_shardings(abstract, mesh)
    _log(
        f"{run.model.kind} ({run.model.preset}): {count_params(abstract.params):,} parameters; "
        f"mesh {dict(mesh.shape)} over {jax.process_count()} process(es)"
    )

    checkpoints = ckpt_lib.Checkpoints(workdir, max_to_keep=run.train.max_to_keep)
    store = Store.open(resolve_store(run.data, workdir, run.seed))
    saved_norm = checkpoints.saved_normalizer()
    normalizer = MinMaxNormalizer.from_json(saved_norm) if saved_norm else store.load_normalizer()
    iterator = pipeline.make_train_iterator(
        store,
        batch_size=run.data.batch_size,
        seed=run.seed,
        normalizer=normalizer,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        num_threads=run.data.num_threads,
        prefetch=run.data.prefetch,
    )
    init = jax.jit(make_init_fn(model, run.model.kind, tx), out_shardings=shardings)
    origin, restored = ckpt_lib.resolve_start(
        checkpoints, run.init_from, abstract, shardings, iterator, lambda: init(init_key)
    )
    state = restored.state
    start = int(jax.device_get(state.step))
    _log(f"starting at step {start} ({origin}); workdir {workdir}")

    step_fn = jit_train_step(
        make_loss_fn(run.model.kind, **vars(run.diffusion)), run.train.ema_decay, shardings, mesh
    )
    writer = MetricsWriter(workdir, start)
    resolved = config.to_dict()
    bar = tqdm.tqdm(
        total=run.train.steps,
        initial=start,
        disable=jax.process_index() != 0,
        dynamic_ncols=True,
        unit="step",
    )
    pending: list[tuple[int, dict[str, jax.Array]]] = []
    t_last = time.perf_counter()
    try:
        for step in range(start, run.train.steps):
            batch = mesh_lib.host_to_global(_select_arrays(next(iterator)), mesh)
            state, metrics = step_fn(state, batch, train_key)
            pending.append((step, metrics))
            done = step + 1
            if (
                done % run.train.log_every == 0
                or done % run.train.checkpoint_every == 0
                or done == run.train.steps
            ):
                rows = _fetch(pending)
                now = time.perf_counter()
                steps_per_s = len(pending) / max(now - t_last, 1e-9)
                t_last, pending = now, []
                writer.write(rows)
                bar.set_postfix(loss=f"{rows[-1]['loss']:.4g}", steps_per_s=f"{steps_per_s:.2f}")
                bar.update(len(rows))
            if done % run.train.checkpoint_every == 0 or done == run.train.steps:
                checkpoints.save(state, iterator, resolved, normalizer.to_json())
    finally:
        bar.close()
        writer.close()
        checkpoints.close()
    if run.train.plot and jax.process_index() == 0 and (workdir / METRICS_FILE).exists():
        _log(f"loss curve: {plot_loss(workdir)}")
    _log(f"done: step {int(jax.device_get(state.step))}, checkpoint in {checkpoints.directory}")
    return state
