"""A model bundle: the trained denoiser and/or refiner with their normalisers, ready for inference.

On disk (what `gaitjax convert-torch` writes, and what `gaitjax predict --model` reads):

    DIR/bundle.json                 {"format": "gaitjax-bundle", "version": 1, "info": {...},
                                     "models": {"denoiser": SPEC, "refiner": SPEC}}
    DIR/<name>/params/              orbax PyTree checkpoint of the Flax params (EMA weights)
    DIR/<name>/normalizer.json      the min-max normaliser that model was trained with

SPEC = {"kind": ..., "preset": ..., "overrides": {...}, "prediction": "x0"|"eps", "schedule": ...}.
`load_bundle` also accepts a `train.py` workdir (one model, its EMA params from the last checkpoint) or a
folder whose `denoiser/` and `refiner/` subfolders are such workdirs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import orbax.checkpoint as ocp

from gaitjax.data.errors import GaitDataError
from gaitjax.data.normalizer import MinMaxNormalizer
from gaitjax.models.registry import build_model

BUNDLE_FILE = "bundle.json"
FORMAT = "gaitjax-bundle"
VERSION = 1
NAMES = ("denoiser", "refiner")


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedModel:
    """One model ready to apply: `module.apply({"params": params}, ..., deterministic=True)`."""

    spec: dict[str, Any]
    module: nn.Module
    params: Any
    normalizer: MinMaxNormalizer

    @property
    def prediction(self) -> str:
        return self.spec.get("prediction", "x0")

    @property
    def schedule(self) -> str:
        return self.spec.get("schedule", "scaled_linear")

    def denoise_fn(self) -> jax.tree_util.Partial:
        """`f(x_btc, t_b)` for the DDIM sampler, with the params as traced arguments. The function inside is
        one object per architecture, so repeated sampler calls hit the jit cache instead of retracing."""
        return jax.tree_util.Partial(_denoiser_apply(self.module), self.params)


@functools.lru_cache(maxsize=16)
def _denoiser_apply(module: nn.Module):
    def apply(params, x_btc, t_b):
        return module.apply({"params": params}, x_btc, t_b, deterministic=True)

    return apply


@dataclasses.dataclass(frozen=True, eq=False)
class Bundle:
    """The models of a bundle (either may be None) and where they came from."""

    path: Path
    denoiser: LoadedModel | None
    refiner: LoadedModel | None
    info: dict[str, Any]


def _module(spec: dict[str, Any]) -> nn.Module:
    overrides = dict(spec.get("overrides", {}))
    if spec["kind"] == "denoiser":
        overrides["prediction"] = spec.get("prediction", "x0")
    return build_model(spec["kind"], spec["preset"], **overrides)


def _as_numpy_restore(checkpointer: ocp.PyTreeCheckpointer, path: Path) -> Any:
    """Host numpy arrays whatever devices wrote them (a checkpoint from 2 processes reads back in one)."""
    from absl import logging

    level = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)  # orbax warns about a missing per-item metadata file; harmless
    try:
        tree = checkpointer.metadata(path).item_metadata.tree
        args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
        return checkpointer.restore(path, args=ocp.args.PyTreeRestore(restore_args=args))
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise GaitDataError(f"unreadable parameter checkpoint ({type(e).__name__}: {e})", path) from None
    finally:
        logging.set_verbosity(level)


def save_bundle(
    out_dir: str | Path,
    models: dict[str, tuple[dict[str, Any], Any, MinMaxNormalizer]],
    info: dict[str, Any] | None = None,
) -> Path:
    """Writes a bundle atomically (a temporary sibling folder renamed into place).

    Args:
        out_dir: the bundle folder (replaced if it already holds a bundle; refused if it holds other files).
        models: name ("denoiser"/"refiner") -> (SPEC, params pytree, normaliser).
        info: free JSON-serialisable provenance (e.g. the source files and their sizes).

    Returns:
        The bundle folder.
    """
    out_dir = Path(out_dir).absolute()
    unknown = sorted(set(models) - set(NAMES))
    if unknown or not models:
        raise ValueError(f"bundle models must be among {NAMES} (at least one), got {sorted(models)}")
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / BUNDLE_FILE).is_file():
        raise GaitDataError("exists and is neither a bundle nor empty; refusing to replace it", out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        checkpointer = ocp.PyTreeCheckpointer()
        specs = {}
        for name, (spec, params, normalizer) in models.items():
            _module(spec)  # fails early on a bad spec
            (tmp / name).mkdir()
            checkpointer.save(tmp / name / "params", jax.tree.map(np.asarray, params))
            normalizer.save(tmp / name / "normalizer.json")
            specs[name] = spec
        doc = {"format": FORMAT, "version": VERSION, "info": info or {}, "models": specs}
        (tmp / BUNDLE_FILE).write_text(json.dumps(doc, indent=1, sort_keys=True))
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _load_bundle_dir(path: Path) -> Bundle:
    try:
        doc = json.loads((path / BUNDLE_FILE).read_text())
        if doc.get("format") != FORMAT:
            raise ValueError(f"format {doc.get('format')!r}")
        if doc.get("version") != VERSION:
            raise ValueError(f"version {doc.get('version')!r}, this code reads {VERSION}")
        specs = doc["models"]
    except (OSError, ValueError, KeyError) as e:
        raise GaitDataError(f"not a readable gaitjax bundle ({e})", path / BUNDLE_FILE) from None
    checkpointer = ocp.PyTreeCheckpointer()
    loaded = {}
    for name, spec in specs.items():
        params = _as_numpy_restore(checkpointer, path / name / "params")
        normalizer = MinMaxNormalizer.load(path / name / "normalizer.json")
        loaded[name] = LoadedModel(spec, _module(spec), params, normalizer)
    return Bundle(path, loaded.get("denoiser"), loaded.get("refiner"), doc.get("info", {}))


def _load_workdir(path: Path) -> LoadedModel:
    """EMA params, config and normaliser of the newest checkpoint of a `train.py` workdir."""
    root = path / "checkpoints"
    steps = sorted(int(p.name) for p in root.iterdir() if p.name.isdigit()) if root.is_dir() else []
    if not steps:
        raise GaitDataError("holds no checkpoint (expected a train.py workdir with checkpoints/)", path)
    step_dir = root / str(steps[-1])
    try:
        config = json.loads((step_dir / "config" / "metadata").read_text())
        norm = json.loads((step_dir / "normalizer" / "metadata").read_text())
    except (OSError, ValueError):
        config = norm = None
    if not config or not norm:
        raise GaitDataError("checkpoint lacks its config or normaliser", step_dir)
    model = config["model"]
    spec = {
        "kind": model["kind"],
        "preset": model["preset"],
        "overrides": {k: v for k, v in model["overrides"].items()},
        "prediction": config["diffusion"].get("prediction", "x0"),
        "schedule": config["diffusion"].get("schedule", "scaled_linear"),
    }
    for key, value in spec["overrides"].items():
        if isinstance(value, list):
            spec["overrides"][key] = tuple(value)
    state = _as_numpy_restore(ocp.PyTreeCheckpointer(), step_dir / "state")
    return LoadedModel(spec, _module(spec), state["ema_params"], MinMaxNormalizer.from_json(norm))


def load_bundle(path: str | Path, *, matmul_dtype: str | None = None) -> Bundle:
    """Loads a bundle folder, a train.py workdir, or a folder of `denoiser/` and `refiner/` workdirs.

    Args:
        path: the folder.
        matmul_dtype: None keeps the models' own setting; "bfloat16" runs their matmuls in bf16 (about 1.8x
            faster sampling on CPUs with bf16 units; see benchmarks/bench_sampling.py for the deviation).

    Raises:
        GaitDataError: nothing loadable at `path` (the message says what was expected).
    """
    bundle = _load_any(Path(path).expanduser().resolve())
    if matmul_dtype is None:
        return bundle

    def with_dtype(m: LoadedModel | None) -> LoadedModel | None:
        if m is None:
            return None
        spec = {**m.spec, "overrides": {**m.spec.get("overrides", {}), "matmul_dtype": matmul_dtype}}
        return dataclasses.replace(m, spec=spec, module=_module(spec))

    return dataclasses.replace(
        bundle, denoiser=with_dtype(bundle.denoiser), refiner=with_dtype(bundle.refiner)
    )


def _load_any(path: Path) -> Bundle:
    if not path.is_dir():
        raise GaitDataError("no such model folder (expected a gaitjax bundle or a train.py workdir)", path)
    if (path / BUNDLE_FILE).is_file():
        return _load_bundle_dir(path)
    if (path / "checkpoints").is_dir():
        m = _load_workdir(path)
        named = {"denoiser": m} if m.spec["kind"] == "denoiser" else {"refiner": m}
        return Bundle(path, named.get("denoiser"), named.get("refiner"), {"workdir": str(path)})
    subs = {n: _load_workdir(path / n) for n in NAMES if (path / n / "checkpoints").is_dir()}
    if not subs:
        raise GaitDataError(
            f"holds no {BUNDLE_FILE}, no checkpoints/ and no denoiser/ or refiner/ workdir; expected a "
            "gaitjax bundle (`gaitjax convert-torch`) or train.py workdirs",
            path,
        )
    info = {"workdirs": {n: str(path / n) for n in subs}}
    return Bundle(path, subs.get("denoiser"), subs.get("refiner"), info)
