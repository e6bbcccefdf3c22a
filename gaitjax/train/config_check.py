"""Checks a training config before anything heavy runs, so each mistake gives one clear message, and
turns the ConfigDict sections into the frozen dataclasses the trainer takes."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import ml_collections

from gaitjax.models.denoiser import DenoiserConfig
from gaitjax.models.refiner import RefinerConfig
from gaitjax.models.registry import MODEL_KINDS
from gaitjax.train.optim import OptimConfig

SECTIONS = ("seed", "data", "model", "diffusion", "optim", "train", "sampler", "evals", "mesh")
PREPARE_HINT = "python -m gaitjax.data.prepare --source DIR --out STORE"


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and what was expected."""


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Attributes:
    store: prepared training store directory ("" with synthetic_trials > 0: a synthetic store is
      written into the workdir on first run).
    synthetic_trials: number of synthetic trials for the demo store (0: use `store`).
    batch_size: global batch size (all devices and processes together).
    num_threads: Grain reader threads (0: one prefetch thread).
    prefetch: batches buffered ahead.
    """

    store: str = ""
    synthetic_trials: int = 0
    batch_size: int = 64
    num_threads: int = 0
    prefetch: int = 2


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Attributes:
    steps: total optimizer steps.
    log_every: steps between metric fetches (progress bar, JSONL, non-finite check).
    checkpoint_every: steps between checkpoints (a final one is always written).
    max_to_keep: checkpoints kept.
    ema_decay: EMA rate of the parameters (0.999, spec §3.2).
    plot: write loss.png at the end.
    """

    steps: int = 1000
    log_every: int = 50
    checkpoint_every: int = 1000
    max_to_keep: int = 3
    ema_decay: float = 0.999
    plot: bool = True


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Attributes:
    kind: "denoiser", "refiner", "cnn" or "lstm".
    preset: "paper" or "released".
    overrides: model config fields passed to `build_model` (e.g. width, depth).
    """

    kind: str = "denoiser"
    preset: str = "paper"
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class DiffusionConfig:
    """Attributes: schedule ("scaled_linear" or "cosine"); prediction ("x0" or "eps")."""

    schedule: str = "scaled_linear"
    prediction: str = "x0"


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The resolved, typed view of a training config."""

    seed: int
    init_from: str
    data: DataConfig
    model: ModelConfig
    diffusion: DiffusionConfig
    optim: OptimConfig
    train: TrainConfig
    mesh: tuple[tuple[str, int], ...]


def _section(config: ml_collections.ConfigDict, name: str, cls: type) -> Any:
    values = config[name].to_dict() if isinstance(config[name], ml_collections.ConfigDict) else config[name]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"config.{name} has unknown keys {unknown}; known keys: {sorted(known)}")
    return cls(**values)


def resolve(config: ml_collections.ConfigDict) -> RunConfig:
    """Validates `config` and returns its typed view.

    Checks (each failure is a ConfigError naming the key): all fixed sections present; model kind and
    preset known; a training store given (unless the synthetic demo store is used) and existing; batch size
    and step counts positive. Device divisibility is checked against the mesh (`mesh.check_batch_size`).

    Raises:
      ConfigError: the first problem found.
    """
    missing = [s for s in SECTIONS if s not in config]
    if missing:
        raise ConfigError(f"config is missing the sections {missing}; every config has {list(SECTIONS)}")
    data = _section(config, "data", DataConfig)
    model = _section(config, "model", ModelConfig)
    run = RunConfig(
        seed=int(config.seed),
        init_from=str(config.get("init_from", "")),
        data=data,
        model=model,
        diffusion=_section(config, "diffusion", DiffusionConfig),
        optim=_section(config, "optim", OptimConfig),
        train=_section(config, "train", TrainConfig),
        mesh=tuple((str(n), int(s)) for n, s in config.mesh),
    )
    if model.kind not in MODEL_KINDS:
        raise ConfigError(f"config.model.kind={model.kind!r}; expected one of {list(MODEL_KINDS)}")
    if model.preset not in ("paper", "released"):
        raise ConfigError(f"config.model.preset={model.preset!r}; expected 'paper' or 'released'")
    if data.synthetic_trials <= 0:
        if not data.store:
            raise ConfigError(
                "config.data.store is required: pass --config.data.store=STORE, a directory written by "
                f"`{PREPARE_HINT}`"
            )
        if not Path(data.store).expanduser().is_dir():
            raise ConfigError(
                f"config.data.store={data.store!r} does not exist; prepare it with `{PREPARE_HINT}`"
            )
    if data.batch_size < 1:
        raise ConfigError(f"config.data.batch_size must be positive, got {data.batch_size}")
    for key in ("steps", "log_every", "checkpoint_every"):
        if getattr(run.train, key) < 1:
            raise ConfigError(f"config.train.{key} must be positive, got {getattr(run.train, key)}")
    if run.optim.name not in ("adan", "adam"):
        raise ConfigError(f"config.optim.name={run.optim.name!r}; expected 'adan' or 'adam'")
    return run


def parse_arg(arg: str | None, defaults: dict[str, str]) -> dict[str, str]:
    """Parses a config-file argument "key=value,key=value" (or a bare word = a flag set to "1").

    Args:
      arg: the text after ":" in `--config=configs/x.py:arg` (None or "" for none).
      defaults: the allowed keys and their default values.

    Returns:
      `defaults` updated with the parsed values.

    Raises:
      ConfigError: an unknown key.
    """
    out = dict(defaults)
    for item in filter(None, (arg or "").split(",")):
        key, _, value = item.partition("=")
        key = key.strip()
        if key not in defaults:
            raise ConfigError(f"unknown config argument {key!r} in {arg!r}; known: {sorted(defaults)}")
        out[key] = value.strip() if _ else "1"
    return out


def base_config(kind: str = "denoiser", preset: str = "paper") -> ml_collections.ConfigDict:
    """The defaults every config file starts from: the paper's training recipe for `kind` at `preset`.

    Args:
      kind: "denoiser", "refiner", "cnn" or "lstm".
      preset: "paper" or "released" (architecture; the learning rate follows it: 1e-3 paper, 4e-4
        released, spec §3.3; the baselines use their released Adam settings, spec §7.5).

    Returns:
      A ConfigDict with the fixed sections; `model.overrides` lists every architecture field of the
      preset so each can be changed from the command line.
    """
    if kind not in MODEL_KINDS:
        raise ConfigError(f"model kind {kind!r}; expected one of {list(MODEL_KINDS)}")
    if preset not in ("paper", "released"):
        raise ConfigError(f"model preset {preset!r}; expected 'paper' or 'released'")
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.init_from = ""
    c.data = dataclasses.asdict(DataConfig(batch_size=256))
    c.model = {"kind": kind, "preset": preset, "overrides": _preset_fields(kind, preset)}
    c.diffusion = dataclasses.asdict(DiffusionConfig())
    steps = {"denoiser": 100_000, "refiner": 300_000, "cnn": 300_000, "lstm": 79_000}[kind]
    if kind in ("denoiser", "refiner"):
        optim = OptimConfig(lr=1e-3 if preset == "paper" else 4e-4)
    else:
        optim = OptimConfig(
            name="adam", lr=3e-5 if kind == "cnn" else 5e-3, b1=0.9, b2=0.999, weight_decay=0.0
        )
    c.optim = dataclasses.asdict(optim)
    c.train = dataclasses.asdict(TrainConfig(steps=steps, log_every=100, checkpoint_every=5000))
    c.sampler = {"n_steps": 50}
    from gaitjax.evaluation.runner import EvalConfig  # evaluate.py reads this section

    c.evals = dataclasses.asdict(EvalConfig())
    c.mesh = [("data", -1), ("fsdp", 1)]
    return c


def _preset_fields(kind: str, preset: str) -> dict[str, Any]:
    if kind == "denoiser":
        fields = dataclasses.asdict(getattr(DenoiserConfig, preset)())
        fields.pop("prediction")  # set from config.diffusion.prediction
        return fields
    if kind == "refiner":
        return dataclasses.asdict(getattr(RefinerConfig, preset)())
    return {}
