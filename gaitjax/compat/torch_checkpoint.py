"""Converts the released GaitDynamics PyTorch checkpoints (spec Appendix A) into a gaitjax model bundle.

`convert_torch` (CLI: `gaitjax convert-torch`) maps the EMA weights of `GaitDynamicsDiffusion.pt` and
`GaitDynamicsRefinement.pt` onto the Flax denoiser and refiner, keeps each file's own normaliser and writes
a bundle (`gaitjax.models.bundle`). torch is an optional dependency, imported only inside functions here.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from gaitjax.compat.safe_pickle import RESTRICTED_PICKLE
from gaitjax.data.channels import KINEMATIC_IDX, KINETIC_IDX, N_CHANNELS
from gaitjax.data.errors import GaitDataError
from gaitjax.data.normalizer import MinMaxNormalizer
from gaitjax.models.bundle import BUNDLE_FILE, save_bundle
from gaitjax.models.registry import build_model, example_inputs
from gaitjax.models.rotary import rotary_freqs

TORCH_REQUIREMENT = "torch==2.13.0"
SCALER_FIELDS = ("scale_", "min_", "data_min_", "data_max_")
# Denoiser sizes by width D (from input_projection.weight): build_model overrides and depth. Heads cannot be
# read off the shapes (in_proj is [3D, D] for any head count); both variants use head dim 64.
DENOISER_VARIANTS = {512: ({}, 8), 256: ({"width": 256, "depth": 4, "heads": 4}, 4)}
DENOISER_FF, TIME_MLP_MULT = 1024, 4
REFINER_WIDTH, REFINER_DEPTH, REFINER_FF = 192, 6, 512


# ----------------------------------------------------------------------------------------------- reading
def _import_torch():
    try:
        import torch
    except ImportError:
        raise ImportError(
            f"reading PyTorch .pt checkpoints needs PyTorch: pip install {TORCH_REQUIREMENT} "
            "(or pip install 'gaitjax[torch]')"
        ) from None
    return torch


@dataclasses.dataclass(frozen=True)
class TorchCheckpoint:
    """What a released .pt file holds, as numpy.

    Attributes:
        path: the file.
        state_dict: `ema_state_dict`, torch key -> float32 array in torch layout (Linear weights [out, in]).
        normalizer: the file's own min-max normaliser (its released scale_/min_, unchanged).
    """

    path: Path
    state_dict: dict[str, np.ndarray]
    normalizer: MinMaxNormalizer


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def _read_normalizer(norm: Any, torch, path: Path) -> MinMaxNormalizer:
    scaler = _get(norm, "scaler")
    if scaler is None:
        raise GaitDataError("has no 'normalizer' entry with a 'scaler' (Appendix A)", path)
    arrays = {}
    for name in SCALER_FIELDS:
        value, label = _get(scaler, name), f"normalizer.scaler.{name}"
        value = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
        try:
            arr = None if value is None else np.array(value, dtype=np.float32)
        except (TypeError, ValueError):
            arr = None
        if arr is None or arr.shape != (N_CHANNELS,) or not np.isfinite(arr).all():
            found = "missing" if value is None else getattr(arr, "shape", type(value).__name__)
            raise GaitDataError(f"{label} must be {N_CHANNELS} finite numbers, found {found}", path)
        arrays[name] = arr
    if (arrays["scale_"] <= 0).any():
        raise GaitDataError("normalizer.scaler.scale_ has non-positive values", path)
    cols = _get(norm, "cols_to_normalize")
    if cols is not None and not np.array_equal(np.asarray(cols, dtype=object).ravel(), np.arange(N_CHANNELS)):
        raise GaitDataError(f"normalizer.cols_to_normalize must be all {N_CHANNELS} channels 0..62", path)
    # Built from the stored scale_/min_, not re-derived from data_min_/data_max_: torch's 20 / range is a
    # reciprocal times 20, which differs from a true division by up to 1 ulp. So transform is the released
    # x * scale_ + min_ bit for bit.
    return MinMaxNormalizer(**arrays)


def read_checkpoint(path: str | Path) -> TorchCheckpoint:
    """Loads a released .pt file without running any code it names beyond torch's tensor rebuilding.

    Args:
        path: `GaitDynamicsDiffusion.pt` or `GaitDynamicsRefinement.pt` (a torch.save'd dict with
            `ema_state_dict` and `normalizer`).

    Returns:
        The EMA state dict as float32 numpy arrays and the file's normaliser.

    Raises:
        GaitDataError: missing, unreadable or corrupt file, or entries not as in Appendix A.
        ImportError: torch is not installed.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise GaitDataError("no such checkpoint file", path)
    torch = _import_torch()
    try:
        ckpt = torch.load(path, map_location="cpu", pickle_module=RESTRICTED_PICKLE, weights_only=False)
    except Exception as e:  # torch.load raises many types on a corrupt file (zip, pickle, EOF, runtime)
        raise GaitDataError(f"not a readable PyTorch checkpoint ({type(e).__name__}: {e})", path) from None
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("ema_state_dict"), Mapping):
        found = sorted(map(str, ckpt)) if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise GaitDataError(f"expected a dict with 'ema_state_dict' and 'normalizer', found {found}", path)
    state_dict = {}
    for key, value in ckpt["ema_state_dict"].items():
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            what = f"{value.dtype} tensor" if isinstance(value, torch.Tensor) else type(value).__name__
            raise GaitDataError(f"ema_state_dict[{key!r}] is a {what}, expected a float tensor", path)
        state_dict[str(key)] = np.array(value.detach().to("cpu", torch.float32).numpy(), copy=True)
    return TorchCheckpoint(path, state_dict, _read_normalizer(ckpt.get("normalizer"), torch, path))


# ----------------------------------------------------------------------------------------------- mapping
@dataclasses.dataclass(frozen=True)
class _Tensor:
    """One expected torch tensor.

    Attributes:
        shape: its torch shape.
        dest: the Flax paths it fills: none (checked, then dropped), one, or three (rows split q | k | v).
            2-D tensors are Linear weights [out, in] and land transposed, as kernels [in, out].
        freqs_dim: for a rotary `freqs` buffer, the rotated width whose frequencies it must equal.
    """

    shape: tuple[int, ...]
    dest: tuple[tuple[str, ...], ...] = ()
    freqs_dim: int = 0


def _linear(layout: dict, tkey: str, fpath: tuple[str, ...] | None, n_out: int, n_in: int) -> None:
    dest = lambda leaf: () if fpath is None else ((*fpath, leaf),)
    layout[f"{tkey}.weight"] = _Tensor((n_out, n_in), dest("kernel"))
    layout[f"{tkey}.bias"] = _Tensor((n_out,), dest("bias"))


def _layer_norm(layout: dict, tkey: str, fpath: tuple[str, ...], d: int) -> None:
    layout[f"{tkey}.weight"] = _Tensor((d,), ((*fpath, "scale"),))
    layout[f"{tkey}.bias"] = _Tensor((d,), ((*fpath, "bias"),))


def _attention(layout: dict, tkey: str, fpath: tuple[str, ...] | None, d: int) -> None:
    """Packed torch MHA: in_proj rows q | k | v -> query/key/value; out_proj -> out (fpath None: dropped)."""
    dest = lambda leaf: () if fpath is None else tuple((*fpath, n, leaf) for n in ("query", "key", "value"))
    layout[f"{tkey}.in_proj_weight"] = _Tensor((3 * d, d), dest("kernel"))
    layout[f"{tkey}.in_proj_bias"] = _Tensor((3 * d,), dest("bias"))
    _linear(layout, f"{tkey}.out_proj", None if fpath is None else (*fpath, "out"), d, d)


def denoiser_layout(d: int, depth: int) -> dict[str, _Tensor]:
    """Appendix A.1 (`DanceDecoder`) at width d and depth blocks, keyed by torch name, in file order."""
    c = N_CHANNELS
    layout = {"rotary.freqs": _Tensor((d // 2,), freqs_dim=d)}
    _linear(layout, "time_mlp.1", ("time_mlp",), TIME_MLP_MULT * d, d)
    _linear(layout, "to_time_cond.0", ("to_time_cond",), d, TIME_MLP_MULT * d)
    _linear(layout, "input_projection", ("input_projection",), d, c)
    for i in range(depth):
        t, f = f"seqTransDecoder.stack.{i}", f"layers_{i}"
        _attention(layout, f"{t}.self_attn", (f, "self_attn"), d)
        _attention(layout, f"{t}.multihead_attn", None, d)  # the unused cross-attention
        _linear(layout, f"{t}.linear1", (f, "linear1"), DENOISER_FF, d)
        _linear(layout, f"{t}.linear2", (f, "linear2"), d, DENOISER_FF)
        _layer_norm(layout, f"{t}.norm1", (f, "norm1"), d)
        _layer_norm(layout, f"{t}.norm3", (f, "norm3"), d)
        _linear(layout, f"{t}.film1.block.1", (f, "film1", "dense"), 2 * d, d)
        _linear(layout, f"{t}.film3.block.1", (f, "film3", "dense"), 2 * d, d)
        layout[f"{t}.rotary.freqs"] = _Tensor((d // 2,), freqs_dim=d)
    _linear(layout, "final_layer", ("final_layer",), c, d)
    return layout


def refiner_layout() -> dict[str, _Tensor]:
    """Appendix A.2 (`TransformerEncoderArchitecture`), keyed by torch name."""
    d = REFINER_WIDTH
    layout: dict[str, _Tensor] = {}
    _linear(layout, "input_to_embedding", ("input_to_embedding",), d, len(KINEMATIC_IDX))
    for i in range(REFINER_DEPTH):
        t, f = f"encoder_layers.{i}", f"encoder_layers_{i}"
        layout[f"{t}.rotary.freqs"] = _Tensor((d // 2,), freqs_dim=d)
        _attention(layout, f"{t}.self_attn", (f, "self_attn"), d)
        _linear(layout, f"{t}.feed_forward.fc1", (f, "fc1"), REFINER_FF, d)
        _linear(layout, f"{t}.feed_forward.fc2", (f, "fc2"), d, REFINER_FF)
        _layer_norm(layout, f"{t}.norm1", (f, "norm1"), d)
        _layer_norm(layout, f"{t}.norm2", (f, "norm2"), d)
    _linear(layout, "embedding_to_output", ("embedding_to_output",), len(KINETIC_IDX), d)
    return layout


def _identify(sd: Mapping[str, np.ndarray], kind: str, source) -> tuple[dict[str, Any], dict[str, _Tensor]]:
    """The bundle SPEC and the expected layout of a state dict of the given kind."""
    own, other = ("input_to_embedding.weight", "input_projection.weight")[:: 1 if kind == "refiner" else -1]
    if own not in sd and other in sd:
        found = "a diffusion denoiser" if kind == "refiner" else "the force refiner"
        raise GaitDataError(f"holds {found} ({other}), not the {kind}", source)
    if kind == "refiner":
        return {"kind": "refiner", "preset": "released", "overrides": {}}, refiner_layout()
    shape = tuple(sd["input_projection.weight"].shape) if "input_projection.weight" in sd else None
    widths = [w for w in DENOISER_VARIANTS if shape == (w, N_CHANNELS)]
    if not widths:
        expected = " or ".join(str((w, N_CHANNELS)) for w in DENOISER_VARIANTS)
        found = "is missing" if shape is None else f"has shape {shape}"
        raise GaitDataError(f"tensor 'input_projection.weight' {found}, expected {expected}", source)
    overrides, depth = DENOISER_VARIANTS[widths[0]]
    spec = {"kind": "denoiser", "preset": "released", "overrides": dict(overrides)}
    spec.update(prediction="x0", schedule="scaled_linear")  # spec §3.2: x0 target, scaled-linear betas
    return spec, denoiser_layout(widths[0], depth)


def convert_state_dict(
    state_dict: Mapping[str, np.ndarray], kind: str, source: str | Path | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Maps a torch state dict (Appendix A layout) onto the Flax param tree of `build_model`.

    Args:
        state_dict: torch key -> array in torch layout (Linear weights [out, in]).
        kind: "denoiser" (released or paper-size DanceDecoder, told apart by width) or "refiner".
        source: the file, for error messages.

    Returns:
        (SPEC for `save_bundle`, params) where params is the tree under "params" (float32 numpy arrays);
        the unused cross-attention and the rotary `freqs` buffers are checked, then dropped.

    Raises:
        GaitDataError: a missing, unexpected or wrongly shaped tensor, or rotary freqs we cannot reproduce.
    """
    spec, layout = _identify(state_dict, kind, source)
    missing = [k for k in layout if k not in state_dict]
    unexpected = [k for k in state_dict if k not in layout]
    if missing or unexpected:
        parts = [f"missing {k!r} (expected shape {layout[k].shape})" for k in missing[:3]]
        parts += [f"unexpected {k!r} (shape {tuple(state_dict[k].shape)})" for k in unexpected[:3]]
        more = len(missing) + len(unexpected) - len(parts)
        parts += [f"and {more} more"] if more else []
        raise GaitDataError(f"ema_state_dict does not match Appendix A: {'; '.join(parts)}", source)
    params: dict[str, Any] = {}
    for key, entry in layout.items():
        value = np.asarray(state_dict[key], np.float32)
        if value.shape != entry.shape:
            raise GaitDataError(f"tensor {key!r} has shape {value.shape}, expected {entry.shape}", source)
        if entry.freqs_dim:
            expected = np.asarray(rotary_freqs(entry.freqs_dim))
            err = float(np.max(np.abs(value - expected) / expected))
            if err > 1e-5:
                msg = f"differs from 1/10000^(2i/{entry.freqs_dim}) by up to {err:.3g} (relative)"
                raise GaitDataError(f"rotary buffer {key!r} {msg}; this model cannot reproduce it", source)
        parts = np.split(value, len(entry.dest)) if entry.dest else []
        for path, part in zip(entry.dest, parts, strict=True):
            node = params
            for name in path[:-1]:
                node = node.setdefault(name, {})
            node[path[-1]] = np.ascontiguousarray(part.T if part.ndim == 2 else part, np.float32)
    _check_tree(spec, params)
    return spec, params


def _check_tree(spec: dict[str, Any], params: dict[str, Any]) -> None:
    """Guards the mapping itself: the tree must be exactly the Flax module's (paths and shapes)."""
    module = build_model(spec["kind"], spec["preset"], **spec["overrides"])
    init = lambda *a: module.init(jax.random.key(0), *a, deterministic=True)["params"]
    want = jax.tree.map(lambda x: x.shape, jax.eval_shape(init, *example_inputs(spec["kind"])))
    if want != jax.tree.map(np.shape, params):
        raise RuntimeError(f"converter bug: the {spec['kind']} tree does not match build_model's param tree")


# ------------------------------------------------------------------------------------------ bundle + CLI
def _file_info(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"name": path.name, "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def convert_torch(
    diffusion_pt: str | Path | None, refinement_pt: str | Path | None, out_dir: str | Path
) -> Path:
    """Converts the released checkpoints into a gaitjax bundle.

    Args:
        diffusion_pt: `GaitDynamicsDiffusion.pt`, or None to skip the denoiser.
        refinement_pt: `GaitDynamicsRefinement.pt`, or None to skip the refiner.
        out_dir: the bundle folder to write (replaced if it already holds a bundle).

    Returns:
        The bundle folder. Its info records each source file's name, size (B) and sha256, and whether the
        two files' normalisers are identical (each model keeps its own either way).

    Raises:
        GaitDataError: no input given, or an input that does not match Appendix A.
        ImportError: torch is not installed.
    """
    sources = {"denoiser": diffusion_pt, "refiner": refinement_pt}
    models, files = {}, {}
    for name, pt in sources.items():
        if pt is None:
            continue
        ckpt = read_checkpoint(pt)
        spec, params = convert_state_dict(ckpt.state_dict, name, ckpt.path)
        models[name] = (spec, params, ckpt.normalizer)
        files[name] = _file_info(ckpt.path)
    if not models:
        raise GaitDataError("nothing to convert: give the diffusion and/or the refinement checkpoint")
    info: dict[str, Any] = {"converted_from": "GaitDynamics .pt files (ema_state_dict)", "files": files}
    if len(models) == 2:
        same = lambda f: np.array_equal(getattr(models["denoiser"][2], f), getattr(models["refiner"][2], f))
        info["normalizers_identical"] = all(map(same, SCALER_FIELDS))
    return save_bundle(out_dir, models, info)


class _ArgError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise _ArgError(message)


def convert_main(argv: Sequence[str]) -> int:
    """`gaitjax convert-torch --diffusion X.pt --refinement Y.pt --out DIR`.

    Args:
        argv: the arguments after `convert-torch`.

    Returns:
        0 on success (prints what it wrote), 2 on bad input (one `convert-torch: error: ...` line on stderr).
    """
    parser = _Parser(
        prog="gaitjax convert-torch",
        description="Convert the released GaitDynamics PyTorch checkpoints into a gaitjax model bundle.",
    )
    parser.add_argument("--diffusion", type=Path, help="GaitDynamicsDiffusion.pt (the diffusion denoiser)")
    parser.add_argument("--refinement", type=Path, help="GaitDynamicsRefinement.pt (the force refiner)")
    parser.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    try:
        args = parser.parse_args(list(argv))
        if args.diffusion is None and args.refinement is None:
            raise _ArgError("give --diffusion and/or --refinement")
        out = convert_torch(args.diffusion, args.refinement, args.out)
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    except (_ArgError, GaitDataError, ImportError, OSError) as e:
        print(f"convert-torch: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    info = json.loads((out / BUNDLE_FILE).read_text())["info"]
    print(f"convert-torch: wrote {out}")
    for name, src in info["files"].items():
        size = f"{src['bytes']:,} B"
        print(f"  {name}/ (params, normalizer.json) <- {src['name']} ({size}, sha256 {src['sha256']})")
    if info.get("normalizers_identical") is False:
        print("  note: the two files carry different normalisers; each model keeps its own")
    return 0
