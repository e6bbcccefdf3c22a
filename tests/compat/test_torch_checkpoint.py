"""Tests for the released-weight converter: tensor placement (Appendix A), forward equivalence against an
independent NumPy model (spec §3.1, §5), normalisers, determinism, and refusal of bad files."""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from released_reference import dance_decoder, transformer_encoder  # noqa: E402

from gaitjax.compat.torch_checkpoint import convert_main, convert_state_dict, convert_torch, read_checkpoint  # noqa: E402
from gaitjax.data.errors import GaitDataError  # noqa: E402
from gaitjax.models.bundle import load_bundle  # noqa: E402

PAPER = dict(d=256, depth=4, heads=4)
RELEASED = dict(d=512, depth=8, heads=8)


# ---------------------------------------------------------------- Appendix A layouts and fake checkpoints
def linear(keys: dict, name: str, n_out: int, n_in: int) -> None:
    keys[f"{name}.weight"], keys[f"{name}.bias"] = (n_out, n_in), (n_out,)


def attention(keys: dict, name: str, d: int) -> None:
    keys[f"{name}.in_proj_weight"], keys[f"{name}.in_proj_bias"] = (3 * d, d), (3 * d,)
    linear(keys, f"{name}.out_proj", d, d)


def appendix_a1(d: int, depth: int, **_) -> dict[str, tuple]:
    """A.1: DanceDecoder key -> shape (FF 1024, time MLP 4d)."""
    keys = {"rotary.freqs": (d // 2,)}
    linear(keys, "time_mlp.1", 4 * d, d)
    linear(keys, "to_time_cond.0", d, 4 * d)
    linear(keys, "input_projection", d, 63)
    for i in range(depth):
        p = f"seqTransDecoder.stack.{i}"
        attention(keys, f"{p}.self_attn", d)
        attention(keys, f"{p}.multihead_attn", d)
        linear(keys, f"{p}.linear1", 1024, d)
        linear(keys, f"{p}.linear2", d, 1024)
        for n in ("norm1", "norm3"):
            keys[f"{p}.{n}.weight"], keys[f"{p}.{n}.bias"] = (d,), (d,)
        linear(keys, f"{p}.film1.block.1", 2 * d, d)
        linear(keys, f"{p}.film3.block.1", 2 * d, d)
        keys[f"{p}.rotary.freqs"] = (d // 2,)
    linear(keys, "final_layer", 63, d)
    return keys


def appendix_a2() -> dict[str, tuple]:
    """A.2: TransformerEncoderArchitecture key -> shape."""
    keys: dict[str, tuple] = {}
    linear(keys, "input_to_embedding", 192, 51)
    for i in range(6):
        p = f"encoder_layers.{i}"
        keys[f"{p}.rotary.freqs"] = (96,)
        attention(keys, f"{p}.self_attn", 192)
        linear(keys, f"{p}.feed_forward.fc1", 512, 192)
        linear(keys, f"{p}.feed_forward.fc2", 192, 512)
        for n in ("norm1", "norm2"):
            keys[f"{p}.{n}.weight"], keys[f"{p}.{n}.bias"] = (192,), (192,)
    linear(keys, "embedding_to_output", 12, 192)
    return keys


def random_state_dict(keys: dict[str, tuple], seed: int) -> dict[str, torch.Tensor]:
    """torch-default-like scales: weights U(+-1/sqrt(fan_in)), LayerNorm weights near 1, rotary freqs exact."""
    rng = np.random.default_rng(seed)
    sd = {}
    for key, shape in keys.items():
        if key.endswith("rotary.freqs"):
            dim = 2 * shape[0]
            sd[key] = 1.0 / (10000 ** (torch.arange(0, dim, 2).float() / dim))
            continue
        if len(shape) == 2:
            a = rng.uniform(-1, 1, shape) / np.sqrt(shape[1])
        elif ".norm" in key and key.endswith("weight"):
            a = 1.0 + 0.1 * rng.standard_normal(shape)
        else:
            a = 0.05 * rng.standard_normal(shape)
        sd[key] = torch.from_numpy(a.astype(np.float32))
    return sd


def released_scaler_arrays(seed: int) -> dict[str, torch.Tensor]:
    """The reference MinMaxScaler's fitted tensors (spec §2.9), computed in torch; channel 5 is degenerate."""
    rng = np.random.default_rng(seed)
    data_min = torch.from_numpy((3 * rng.standard_normal(63)).astype(np.float32))
    data_max = data_min + torch.from_numpy(rng.uniform(0.01, 5, 63).astype(np.float32))
    data_max[5] = data_min[5]
    data_range = data_max - data_min
    data_range[data_range < 10 * torch.finfo(torch.float32).eps] = 1.0
    scale = 20.0 / data_range
    return dict(
        scale_=scale,
        min_=-10.0 - data_min * scale,
        data_min_=data_min,
        data_max_=data_max,
        data_range_=data_range,
    )


def save_checkpoint(
    path: Path, sd: dict, scaler: dict, modules=("data.preprocess", "data.scaler"), extra=None
) -> Path:
    """torch.save as the reference does, with its classes pickled under the given module paths."""
    mods = {m: types.ModuleType(m) for m in modules}
    norm_cls = type("Normalizer", (), {"__module__": modules[0]})
    scaler_cls = type("MinMaxScaler", (), {"__module__": modules[1]})
    mods[modules[0]].Normalizer, mods[modules[1]].MinMaxScaler = norm_cls, scaler_cls
    scaler_obj = scaler_cls()
    scaler_obj.__dict__.update(feature_range=(-10, 10), clip=True, copy=True, n_samples_seen_=1234, **scaler)
    norm = norm_cls()
    norm.__dict__.update(scaler=scaler_obj, cols_to_normalize=list(range(63)))
    with pytest.MonkeyPatch.context() as mp:
        for name in {m.split(".")[0] for m in modules} - set(mods):
            mp.setitem(sys.modules, name, types.ModuleType(name))
        for name, mod in mods.items():
            mp.setitem(sys.modules, name, mod)
        torch.save({"ema_state_dict": dict(sd), "normalizer": norm, **(extra or {})}, path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Paper-size denoiser and released refiner checkpoints (with different normalisers), converted once."""
    root = tmp_path_factory.mktemp("ckpt")
    den_sd = random_state_dict(appendix_a1(**PAPER), seed=1)
    ref_sd = random_state_dict(appendix_a2(), seed=2)
    den_sc, ref_sc = released_scaler_arrays(3), released_scaler_arrays(4)
    den = save_checkpoint(root / "GaitDynamicsDiffusion.pt", den_sd, den_sc)
    ref = save_checkpoint(root / "GaitDynamicsRefinement.pt", ref_sd, ref_sc)
    bundle = convert_torch(den, ref, root / "bundle")
    return types.SimpleNamespace(
        root=root, den=den, ref=ref, den_sd=den_sd, ref_sd=ref_sd, den_sc=den_sc, ref_sc=ref_sc, bundle=bundle
    )


# ------------------------------------------------------------------------------------------ placement
def expected_leaves(sd: dict, kind: str) -> dict[str, np.ndarray]:
    """Flax leaf path -> array, from the mapping in the denoiser/refiner docstrings (weights transposed)."""
    sd = {k: v.numpy() for k, v in sd.items()}
    out = {}

    def lin(t, f):
        out[f"{f}/kernel"], out[f"{f}/bias"] = sd[f"{t}.weight"].T, sd[f"{t}.bias"]

    def ln(t, f):
        out[f"{f}/scale"], out[f"{f}/bias"] = sd[f"{t}.weight"], sd[f"{t}.bias"]

    def mha(t, f):
        d = sd[f"{t}.in_proj_weight"].shape[1]
        for j, n in enumerate(("query", "key", "value")):
            out[f"{f}/{n}/kernel"] = sd[f"{t}.in_proj_weight"][j * d : (j + 1) * d].T
            out[f"{f}/{n}/bias"] = sd[f"{t}.in_proj_bias"][j * d : (j + 1) * d]
        lin(f"{t}.out_proj", f"{f}/out")

    if kind == "denoiser":
        for n in ("input_projection", "final_layer"):
            lin(n, n)
        lin("time_mlp.1", "time_mlp")
        lin("to_time_cond.0", "to_time_cond")
        for i in range(len({k.split(".")[2] for k in sd if k.startswith("seqTransDecoder")})):
            t, f = f"seqTransDecoder.stack.{i}", f"layers_{i}"
            mha(f"{t}.self_attn", f"{f}/self_attn")
            for n in ("linear1", "linear2"):
                lin(f"{t}.{n}", f"{f}/{n}")
            for n in ("norm1", "norm3"):
                ln(f"{t}.{n}", f"{f}/{n}")
            for n in ("film1", "film3"):
                lin(f"{t}.{n}.block.1", f"{f}/{n}/dense")
    else:
        lin("input_to_embedding", "input_to_embedding")
        lin("embedding_to_output", "embedding_to_output")
        for i in range(6):
            t, f = f"encoder_layers.{i}", f"encoder_layers_{i}"
            mha(f"{t}.self_attn", f"{f}/self_attn")
            lin(f"{t}.feed_forward.fc1", f"{f}/fc1")
            lin(f"{t}.feed_forward.fc2", f"{f}/fc2")
            for n in ("norm1", "norm2"):
                ln(f"{t}.{n}", f"{f}/{n}")
    return out


def flat(params) -> dict[str, np.ndarray]:
    return {"/".join(k.key for k in p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(params)}


def assert_placed(params, sd, kind):
    got, want = flat(params), expected_leaves(sd, kind)
    assert sorted(got) == sorted(want)
    for path, a in want.items():
        assert got[path].dtype == np.float32 and np.array_equal(got[path], a), path


def test_bundle_tensors_land_where_appendix_a_says(files):
    bundle = load_bundle(files.bundle)
    assert_placed(bundle.denoiser.params, files.den_sd, "denoiser")
    assert_placed(bundle.refiner.params, files.ref_sd, "refiner")
    assert bundle.denoiser.spec == {
        "kind": "denoiser",
        "preset": "released",
        "overrides": {"width": 256, "depth": 4, "heads": 4},
        "prediction": "x0",
        "schedule": "scaled_linear",
    }
    assert bundle.refiner.spec["kind"] == "refiner" and bundle.refiner.spec["overrides"] == {}
    info = bundle.info["files"]
    assert info["denoiser"]["name"] == "GaitDynamicsDiffusion.pt"
    assert info["refiner"]["bytes"] == files.ref.stat().st_size and len(info["refiner"]["sha256"]) == 64


def test_released_size_denoiser_placement(tmp_path):
    sd = random_state_dict(appendix_a1(**RELEASED), seed=5)
    assert len(sd) == 177
    path = save_checkpoint(tmp_path / "GaitDynamicsDiffusion.pt", sd, released_scaler_arrays(6))
    spec, params = convert_state_dict(read_checkpoint(path).state_dict, "denoiser", path)
    assert spec["preset"] == "released" and spec["overrides"] == {}
    assert_placed(params, sd, "denoiser")
    assert sum(a.size for a in flat(params).values()) == 27_392_063  # spec §3.1 without cross-attention


# ---------------------------------------------------------------------------------- forward passes
def test_forward_matches_independent_numpy_model(files):
    bundle = load_bundle(files.bundle)
    rng = np.random.default_rng(7)
    x = (4 * rng.standard_normal((2, 150, 63))).astype(np.float32)
    t = np.array([999, 37], np.int32)
    den = bundle.denoiser
    got = den.module.apply({"params": den.params}, x, t, deterministic=True)
    want = dance_decoder({k: v.numpy() for k, v in files.den_sd.items()}, x, t, heads=PAPER["heads"])
    assert np.abs(want).max() > 1.0
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-4)

    kin = (4 * rng.standard_normal((2, 150, 51))).astype(np.float32)
    ref = bundle.refiner
    got = ref.module.apply({"params": ref.params}, kin, deterministic=True)
    want = transformer_encoder({k: v.numpy() for k, v in files.ref_sd.items()}, kin)
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-4)


# ------------------------------------------------------------------------------ normalisers, determinism
def test_each_model_keeps_its_own_released_normaliser(files):
    bundle = load_bundle(files.bundle)
    x = (10 * np.random.default_rng(8).standard_normal((5, 63))).astype(np.float32)
    for model, sc in ((bundle.denoiser, files.den_sc), (bundle.refiner, files.ref_sc)):
        norm = model.normalizer
        for name in ("scale_", "min_", "data_min_", "data_max_"):
            assert np.array_equal(getattr(norm, name), sc[name].numpy()), name
        released = (torch.from_numpy(x) * sc["scale_"] + sc["min_"]).numpy()
        assert np.array_equal(norm.transform(x), released)
        assert np.array_equal(
            norm.inverse(released), ((torch.from_numpy(released) - sc["min_"]) / sc["scale_"]).numpy()
        )
    assert norm.scale_[5] == 20.0  # the degenerate channel: range replaced by 1
    assert bundle.info["normalizers_identical"] is False


def test_converting_twice_is_identical(files, tmp_path):
    again = convert_torch(files.den, files.ref, tmp_path / "again")
    a, b = load_bundle(files.bundle), load_bundle(again)
    for name in ("denoiser", "refiner"):
        pa, pb = flat(getattr(a, name).params), flat(getattr(b, name).params)
        assert sorted(pa) == sorted(pb)
        for path in pa:
            assert pa[path].dtype == pb[path].dtype and pa[path].tobytes() == pb[path].tobytes(), path
        norm_a, norm_b = (root / name / "normalizer.json" for root in (files.bundle, again))
        assert norm_a.read_text() == norm_b.read_text()
    assert (files.bundle / "bundle.json").read_text() == (again / "bundle.json").read_text()


def test_unknown_classes_become_stand_ins_and_run_no_code(files, tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    path = save_checkpoint(
        tmp_path / "user.pt",
        files.ref_sd,
        files.ref_sc,
        modules=("gait_dynamics", "gait_dynamics"),
        extra={"x": Payload()},
    )
    ckpt = read_checkpoint(path)
    assert not marker.exists()
    assert np.array_equal(ckpt.normalizer.scale_, files.ref_sc["scale_"].numpy())


# ----------------------------------------------------------------------------------------- bad input
def _renamed(sd):
    sd = dict(sd)
    sd["encoder_layers.3.feed_forward.fc_1.weight"] = sd.pop("encoder_layers.3.feed_forward.fc1.weight")
    return sd


def _reshaped(sd):
    return {**sd, "encoder_layers.2.self_attn.in_proj_weight": torch.zeros(575, 192)}


def _bad_freqs(sd):
    return {**sd, "encoder_layers.0.rotary.freqs": sd["encoder_layers.0.rotary.freqs"] * 2}


@pytest.mark.parametrize(
    "edit, needles",
    [
        (
            _renamed,
            [
                "encoder_layers.3.feed_forward.fc1.weight",
                "encoder_layers.3.feed_forward.fc_1.weight",
                "(512, 192)",
            ],
        ),
        (_reshaped, ["encoder_layers.2.self_attn.in_proj_weight", "(575, 192)", "(576, 192)"]),
        (_bad_freqs, ["encoder_layers.0.rotary.freqs"]),
    ],
)
def test_layout_mismatch_names_file_and_tensor(files, tmp_path, edit, needles):
    path = save_checkpoint(tmp_path / "bad.pt", edit(files.ref_sd), files.ref_sc)
    with pytest.raises(GaitDataError) as e:
        convert_torch(None, path, tmp_path / "out")
    assert str(path) in str(e.value) and all(n in str(e.value) for n in needles), str(e.value)
    assert not (tmp_path / "out").exists()


def test_swapped_files_and_bad_normaliser(files, tmp_path):
    with pytest.raises(GaitDataError, match="refiner.*not the denoiser"):
        convert_torch(files.ref, None, tmp_path / "out")
    sc = {**files.ref_sc, "scale_": files.ref_sc["scale_"][:51]}
    path = save_checkpoint(tmp_path / "norm.pt", files.ref_sd, sc)
    with pytest.raises(
        GaitDataError, match=r"normalizer\.scaler\.scale_ must be 63 finite numbers, found \(51,\)"
    ):
        read_checkpoint(path)


@pytest.mark.parametrize("kind", ["truncated", "garbage", "missing", "plain_tensor"])
def test_unreadable_files_name_the_file(files, tmp_path, kind):
    path = tmp_path / f"{kind}.pt"
    if kind == "truncated":
        path.write_bytes(files.ref.read_bytes()[: files.ref.stat().st_size // 2])
    elif kind == "garbage":
        path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 8395671\n")
    elif kind == "plain_tensor":
        torch.save(torch.zeros(3), path)
    with pytest.raises(GaitDataError) as e:
        read_checkpoint(path)
    assert str(path) in str(e.value)


def test_cli(files, tmp_path, capsys):
    assert convert_main(["--refinement", str(files.ref), "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "GaitDynamicsRefinement.pt" in out and str(tmp_path / "b") in out
    assert json.loads((tmp_path / "b" / "bundle.json").read_text())["models"].keys() == {"refiner"}

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00not a checkpoint")
    for argv in (["--diffusion", str(bad), "--out", str(tmp_path / "c")], ["--out", "x"], [], ["--bogus"]):
        assert convert_main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("convert-torch: error: ") and err.count("\n") == 1 and "Traceback" not in err, (
            err
        )
    assert convert_main(["--diffusion", str(bad), "--out", str(tmp_path / "c")]) == 2
    assert str(bad) in capsys.readouterr().err


def test_without_torch_says_what_to_install(files, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)
    assert convert_main(["--refinement", str(files.ref), "--out", str(tmp_path / "b")]) == 2
    assert "pip install torch==2.13.0" in capsys.readouterr().err
