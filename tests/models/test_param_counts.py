"""Parameter counts of every preset (jax.eval_shape, nothing allocated) against the issue's/spec's numbers,
with the per-layer breakdown of spec §3.1 derived by hand, and the Appendix A shapes."""

from __future__ import annotations

import jax
import pytest

from gaitjax.models.registry import build_model, count_params, example_inputs


def _abstract_params(kind: str, preset: str) -> dict:
    module = build_model(kind, preset)
    variables = jax.eval_shape(
        lambda *a: module.init(jax.random.key(0), *a, deterministic=True), *example_inputs(kind)
    )
    return variables["params"]


def _size(tree) -> int:
    return sum(leaf.size for leaf in jax.tree_util.tree_leaves(tree))


@pytest.mark.parametrize(
    ("kind", "preset", "expected"),
    [
        ("denoiser", "released", 27_392_063),
        ("denoiser", "paper", 4_769_855),
        ("refiner", "released", 2_090_124),
        ("refiner", "paper", 2_090_124),
        ("cnn", "released", 983_936),
        ("cnn", "paper", 983_936),
        ("lstm", "released", 322_716),
        ("lstm", "paper", 322_716),
    ],
)
def test_preset_param_counts(kind, preset, expected):
    assert count_params(build_model(kind, preset), example_inputs(kind)) == expected


def test_count_params_accepts_plain_shapes():
    # Plain tuples mean float32; the count does not depend on batch or window length.
    assert count_params(build_model("refiner"), [(3, 40, 51)]) == 2_090_124


def test_released_denoiser_breakdown_matches_spec():
    params = _abstract_params("denoiser", "released")
    d, f, c, m = 512, 1024, 63, 2048
    # Hand derivation (weights + biases) next to the spec §3.1 literals.
    attn = 3 * d * d + 3 * d + d * d + d
    ff = d * f + f + f * d + d
    norms = 2 * (2 * d)
    films = 2 * (d * 2 * d + 2 * d)
    assert (attn, ff, norms, films) == (1_050_624, 1_050_112, 2_048, 1_050_624)
    assert (d * m + m, m * d + d, c * d + d, d * c + c) == (1_050_624, 1_049_088, 32_768, 32_319)

    for i in range(8):
        layer = params[f"layers_{i}"]
        assert _size(layer["self_attn"]) == 1_050_624
        assert _size(layer["linear1"]) + _size(layer["linear2"]) == 1_050_112
        assert _size(layer["norm1"]) + _size(layer["norm3"]) == 2_048
        assert _size(layer["film1"]) + _size(layer["film3"]) == 1_050_624
    assert _size(params["time_mlp"]) == 1_050_624
    assert _size(params["to_time_cond"]) == 1_049_088
    assert _size(params["input_projection"]) == 32_768
    assert _size(params["final_layer"]) == 32_319
    assert sorted(params) == sorted(
        ["input_projection", "time_mlp", "to_time_cond", "final_layer"] + [f"layers_{i}" for i in range(8)]
    )
    # With the unused cross-attention (same shapes as self-attention) the torch model has 35,797,055
    # parameters, i.e. the released 143 MB file.
    assert _size(params) + 8 * 1_050_624 == 35_797_055


def test_released_denoiser_shapes_are_transposed_torch_shapes():
    layer = _abstract_params("denoiser", "released")["layers_3"]
    # Appendix A.1: torch weights are [out, in]; kernels here are [in, out].
    expected = {
        ("self_attn", "query", "kernel"): (512, 512),
        ("self_attn", "key", "bias"): (512,),
        ("self_attn", "value", "kernel"): (512, 512),
        ("self_attn", "out", "kernel"): (512, 512),
        ("linear1", "kernel"): (512, 1024),
        ("linear2", "kernel"): (1024, 512),
        ("norm1", "scale"): (512,),
        ("norm3", "bias"): (512,),
        ("film1", "dense", "kernel"): (512, 1024),
        ("film3", "dense", "bias"): (1024,),
    }
    for path, shape in expected.items():
        node = layer
        for name in path:
            node = node[name]
        assert node.shape == shape, path


def test_paper_denoiser_breakdown():
    params = _abstract_params("denoiser", "paper")
    d, f, c, m = 256, 1024, 63, 1024
    per_layer = (4 * d * d + 4 * d) + (2 * d * f + f + d) + 4 * d + 2 * (2 * d * d + 2 * d)
    outside = (d * m + m) + (m * d + d) + (c * d + d) + (d * c + c)
    assert 4 * per_layer + outside == 4_769_855
    assert _size(params["layers_0"]) == per_layer
    assert params["time_mlp"]["kernel"].shape == (256, 1024)


def test_refiner_breakdown():
    params = _abstract_params("refiner", "released")
    d, f = 192, 512
    per_layer = (4 * d * d + 4 * d) + (d * f + f + f * d + d) + 4 * d
    assert per_layer == 346_304
    assert (51 * d + d) + 6 * per_layer + (d * 12 + 12) == 2_090_124
    for i in range(6):
        assert _size(params[f"encoder_layers_{i}"]) == per_layer
    assert params["encoder_layers_0"]["fc1"]["kernel"].shape == (192, 512)
    assert params["input_to_embedding"]["kernel"].shape == (51, 192)
    assert params["embedding_to_output"]["kernel"].shape == (192, 12)


def test_baseline_breakdowns():
    cnn = _abstract_params("cnn", "released")
    convs = [(51, 128), (128, 128), (128, 256), (256, 256)]
    for i, (c_in, c_out) in enumerate(convs):
        assert cnn[f"conv_{i}"]["kernel"].shape == (7, c_in, c_out)
    assert sum(7 * a * b + b for a, b in convs) + 2 * (256 * 256 + 256) + 256 * 12 == 983_936
    assert "bias" not in cnn["output"]

    lstm = _abstract_params("lstm", "released")
    # torch.nn.LSTM: 4H(in + H) weights and two bias vectors of 4H.
    assert 4 * 216 * (51 + 216) + 8 * 216 + 4 * 76 * (216 + 76) + 8 * 76 + 76 * 12 + 12 == 322_716
    assert lstm["lstm_0"]["w_ih"].shape == (51, 864)
    assert lstm["lstm_1"]["w_hh"].shape == (76, 304)
