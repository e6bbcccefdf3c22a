"""Model behaviour: time embedding and activation values, LayerNorm epsilon, equality with torch modules
loaded through the documented parameter mapping, dropout, and a few optimiser steps lowering each loss."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gaitjax.data.channels import KINEMATIC_IDX, KINETIC_IDX
from gaitjax.diffusion.losses import diffusion_loss, force_loss
from gaitjax.diffusion.schedule import make_schedule
from gaitjax.models.denoiser import DenoiserConfig, activation_fn, sinusoidal_embedding
from gaitjax.models.registry import build_model

SMALL_DENOISER = dict(width=32, depth=2, heads=4, ff_dim=64)
SMALL_REFINER = dict(width=32, depth=2, heads=4, ff_dim=64)


def test_sinusoidal_embedding_hand_values():
    # dim 8: half 4, f_k = exp(-k ln(1e4) / 3) = 10000^(-k/3).
    f = [1.0, 10000 ** (-1 / 3), 10000 ** (-2 / 3), 1e-4]
    emb = np.asarray(sinusoidal_embedding(jnp.array([0, 1, 999], jnp.int32), 8))
    for row, t in zip(emb, (0, 1, 999), strict=True):
        expected = [math.sin(t * fk) for fk in f] + [math.cos(t * fk) for fk in f]
        np.testing.assert_allclose(row, expected, atol=2e-5)
    np.testing.assert_array_equal(emb[0], [0, 0, 0, 0, 1, 1, 1, 1])


def test_gelu_is_exact_erf_form():
    x = np.linspace(-4, 4, 81, dtype=np.float32)
    out = np.asarray(activation_fn("gelu")(jnp.asarray(x)))
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64)])
    np.testing.assert_allclose(out, exact, atol=1e-6)
    tanh_approx = np.asarray(jax.nn.gelu(jnp.asarray(x), approximate=True))
    assert np.abs(tanh_approx - exact).max() > 1e-4  # the test distinguishes the two forms
    np.testing.assert_array_equal(np.asarray(activation_fn("relu")(jnp.asarray(x))), np.maximum(x, 0))


def test_presets():
    paper, released = DenoiserConfig.paper(), DenoiserConfig.released()
    assert (paper.width, paper.depth, paper.heads, paper.ff_dim, paper.activation) == (
        256,
        4,
        4,
        1024,
        "relu",
    )
    assert (released.width, released.depth, released.heads, released.activation) == (512, 8, 8, "gelu")
    assert paper.ln_eps == released.ln_eps == 1e-5 and paper.dropout == 0.1
    with pytest.raises(ValueError, match="activation"):
        DenoiserConfig(activation="silu")
    with pytest.raises(ValueError, match="unknown"):
        build_model("denoiser", widht=3)


def _init(kind, preset="released", batch=2, frames=16, **overrides):
    module = build_model(kind, preset, **overrides)
    key = jax.random.key(0)
    if kind == "denoiser":
        args = (jax.random.normal(key, (batch, frames, 63)), jnp.array([3, 800][:batch], jnp.int32))
    else:
        args = (jax.random.normal(key, (batch, frames, 51)),)
    params = module.init(jax.random.key(1), *args, deterministic=True)["params"]
    return module, params, args


@pytest.mark.parametrize("kind", ["denoiser", "refiner"])
def test_layer_norms_use_eps_1e_5(kind):
    overrides = SMALL_DENOISER if kind == "denoiser" else SMALL_REFINER
    module, params, args = _init(kind, **overrides)
    norms = []

    def interceptor(next_fun, call_args, kwargs, context):
        if isinstance(context.module, nn.LayerNorm):
            norms.append(context.module.clone(parent=None, name=None))  # same attributes, no parent
        return next_fun(*call_args, **kwargs)

    with nn.intercept_methods(interceptor):
        module.apply({"params": params}, *args, deterministic=True)
    d = overrides["width"]
    # Constant offset plus a +-delta pattern: mean 0.5, variance delta^2 = 1e-5.
    delta = math.sqrt(1e-5)
    crafted = 0.5 + delta * jnp.where(jnp.arange(d) % 2 == 0, 1.0, -1.0)
    unit = {"params": {"scale": jnp.ones(d), "bias": jnp.zeros(d)}}
    outputs = [np.asarray(norm.apply(unit, crafted)) for norm in norms]
    assert len(outputs) == 4  # two norms in each of the two blocks
    # (x - mean) / sqrt(var + eps) with var = eps = 1e-5 gives +-1/sqrt(2) (1e-6 would give +-0.953).
    for out in outputs:
        np.testing.assert_allclose(np.abs(out), 1 / math.sqrt(2), atol=2e-3)


def _torch_rotate(x, torch):
    """rotary-embedding-torch's interleaved form: x cos + rotate_half(x) sin, freqs repeated per pair."""
    t, d = x.shape[-2:]
    freqs = 1.0 / (10000 ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    angles = torch.arange(t, dtype=torch.float64)[:, None] * freqs.repeat_interleave(2)[None, :]
    pairs = x.reshape(*x.shape[:-1], d // 2, 2)
    rotated_half = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).reshape(x.shape)
    return x * angles.cos() + rotated_half * angles.sin()


def _torch_state(params, prefix_map):
    """Flax params -> torch state dict through the mapping documented in the module docstrings."""
    import torch

    state = {}
    flat = {"/".join(k.key for k in path): np.asarray(v, np.float64) for path, v in
            jax.tree_util.tree_leaves_with_path(params)}  # fmt: skip
    for name, value in flat.items():
        parts = name.split("/")
        for flax_prefix, torch_prefix in prefix_map.items():
            if parts[0].startswith(flax_prefix):
                parts[0] = torch_prefix + parts[0][len(flax_prefix) :]
        if parts[-2] in ("query", "key", "value"):
            continue  # packed below
        leaf = {"kernel": "weight", "scale": "weight", "bias": "bias"}[parts[-1]]
        mid = {"out": "out_proj", "dense": "block.1", "fc1": "feed_forward.fc1", "fc2": "feed_forward.fc2",
               "time_mlp": "time_mlp.1", "to_time_cond": "to_time_cond.0"}  # fmt: skip
        torch_name = ".".join([mid.get(p, p) for p in parts[:-1]] + [leaf])
        state[torch_name] = torch.tensor(value.T if parts[-1] == "kernel" else value)
    for name in flat:
        parts = name.split("/")
        if parts[-2] == "query":
            base = "/".join(parts[:-2])
            torch_base = [k for k in state if k.endswith("self_attn.out_proj.weight")]
            prefix = next(k for k in torch_base if _same_layer(k, parts[0], prefix_map))[
                : -len("out_proj.weight")
            ]
            w = [flat[f"{base}/{n}/kernel"].T for n in ("query", "key", "value")]
            b = [flat[f"{base}/{n}/bias"] for n in ("query", "key", "value")]
            state[prefix + "in_proj_weight"] = torch.tensor(np.concatenate(w, 0))
            state[prefix + "in_proj_bias"] = torch.tensor(np.concatenate(b, 0))
    return state


def _same_layer(torch_key, flax_layer, prefix_map):
    for flax_prefix, torch_prefix in prefix_map.items():
        if flax_layer.startswith(flax_prefix):
            return torch_key.startswith(torch_prefix + flax_layer[len(flax_prefix) :] + ".")
    return False


def test_denoiser_equals_torch_modules_loaded_through_mapping():
    torch = pytest.importorskip("torch")
    tnn = torch.nn
    cfg = dict(SMALL_DENOISER, activation="gelu", rotary="released")
    module, params, (x, t) = _init("denoiser", **cfg)
    d = cfg["width"]

    class FiLM(tnn.Module):
        def __init__(self):
            super().__init__()
            self.block = tnn.Sequential(tnn.Mish(), tnn.Linear(d, 2 * d))

    class Layer(tnn.Module):
        def __init__(self):
            super().__init__()
            self.self_attn = tnn.MultiheadAttention(d, cfg["heads"], batch_first=True)
            self.linear1, self.linear2 = tnn.Linear(d, cfg["ff_dim"]), tnn.Linear(cfg["ff_dim"], d)
            self.norm1, self.norm3 = tnn.LayerNorm(d, eps=1e-5), tnn.LayerNorm(d, eps=1e-5)
            self.film1, self.film3 = FiLM(), FiLM()

        def forward(self, h, temb):
            z = self.norm1(h)
            qk = _torch_rotate(z, torch)
            a = self.self_attn(qk, qk, z, need_weights=False)[0]
            scale, shift = self.film1.block(temb)[:, None].chunk(2, dim=-1)
            h = h + (scale + 1) * a + shift
            f = self.linear2(tnn.functional.gelu(self.linear1(self.norm3(h))))
            scale, shift = self.film3.block(temb)[:, None].chunk(2, dim=-1)
            return h + (scale + 1) * f + shift

    class Decoder(tnn.Module):
        def __init__(self):
            super().__init__()
            self.input_projection = tnn.Linear(63, d)
            self.time_mlp = tnn.Sequential(tnn.Identity(), tnn.Linear(d, 4 * d), tnn.Mish())
            self.to_time_cond = tnn.Sequential(tnn.Linear(4 * d, d))
            self.seqTransDecoder = tnn.Module()
            self.seqTransDecoder.stack = tnn.ModuleList([Layer() for _ in range(cfg["depth"])])
            self.final_layer = tnn.Linear(d, 63)

        def forward(self, x, temb_sin):
            h = self.input_projection(x)
            temb = self.to_time_cond(self.time_mlp(temb_sin))
            for layer in self.seqTransDecoder.stack:
                h = layer(h, temb)
            return self.final_layer(h)

    ref = Decoder().double().eval()
    ref.load_state_dict(_torch_state(params, {"layers_": "seqTransDecoder.stack."}), strict=True)
    half = d // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float64) * -(math.log(10000) / (half - 1)))
    ang = torch.tensor(np.asarray(t), dtype=torch.float64)[:, None] * freqs[None]
    with torch.no_grad():
        expected = ref(
            torch.tensor(np.asarray(x), dtype=torch.float64), torch.cat([ang.sin(), ang.cos()], -1)
        )
    out = module.apply({"params": params}, x, t, deterministic=True)
    np.testing.assert_allclose(np.asarray(out), expected.numpy(), rtol=1e-4, atol=1e-5)


def test_refiner_equals_torch_modules_loaded_through_mapping():
    torch = pytest.importorskip("torch")
    tnn = torch.nn
    module, params, (kin,) = _init("refiner", **SMALL_REFINER)
    d, f = SMALL_REFINER["width"], SMALL_REFINER["ff_dim"]

    class Layer(tnn.Module):
        def __init__(self):
            super().__init__()
            self.self_attn = tnn.MultiheadAttention(d, SMALL_REFINER["heads"], batch_first=True)
            self.feed_forward = tnn.Module()
            self.feed_forward.fc1, self.feed_forward.fc2 = tnn.Linear(d, f), tnn.Linear(f, d)
            self.norm1, self.norm2 = tnn.LayerNorm(d, eps=1e-5), tnn.LayerNorm(d, eps=1e-5)

        def forward(self, h):
            qk = _torch_rotate(h, torch)
            h = self.norm1(h + self.self_attn(qk, qk, h, need_weights=False)[0])
            return self.norm2(h + self.feed_forward.fc2(torch.relu(self.feed_forward.fc1(h))))

    class Encoder(tnn.Module):
        def __init__(self):
            super().__init__()
            self.input_to_embedding = tnn.Linear(51, d)
            self.encoder_layers = tnn.ModuleList([Layer() for _ in range(SMALL_REFINER["depth"])])
            self.embedding_to_output = tnn.Linear(d, 12)

        def forward(self, x):
            h = self.input_to_embedding(x)
            for layer in self.encoder_layers:
                h = layer(h)
            return self.embedding_to_output(h)

    ref = Encoder().double().eval()
    ref.load_state_dict(_torch_state(params, {"encoder_layers_": "encoder_layers."}), strict=True)
    with torch.no_grad():
        expected = ref(torch.tensor(np.asarray(kin), dtype=torch.float64))
    out = module.apply({"params": params}, kin, deterministic=True)
    np.testing.assert_allclose(np.asarray(out), expected.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["denoiser", "refiner", "cnn", "lstm"])
def test_output_shapes_and_dropout(kind):
    overrides = {"denoiser": SMALL_DENOISER, "refiner": SMALL_REFINER, "cnn": {}, "lstm": {}}[kind]
    module, params, args = _init(kind, **overrides)
    out = module.apply({"params": params}, *args, deterministic=True)
    assert out.shape == (2, 16, 63 if kind == "denoiser" else 12)
    assert bool(jnp.all(jnp.isfinite(out)))
    noisy = module.apply({"params": params}, *args, deterministic=False, rngs={"dropout": jax.random.key(3)})
    assert float(jnp.max(jnp.abs(noisy - out))) > 1e-4


def test_cnn_uses_replicate_padding():
    # With edge replication, a window that is constant in time gives a constant output; zero padding would
    # bend the first and last 3 x 4 frames.
    module, params, _ = _init("cnn")
    x = jnp.broadcast_to(jax.random.normal(jax.random.key(4), (1, 1, 51)), (1, 40, 51))
    out = np.asarray(module.apply({"params": params}, x, deterministic=True))
    np.testing.assert_allclose(out, np.broadcast_to(out[:, 20:21], out.shape), rtol=1e-5, atol=1e-5)


def test_lstm_is_causal():
    # Changing frame 10 must leave frames 0..9 untouched and change later frames.
    module, params, (kin,) = _init("lstm", frames=20)
    out = module.apply({"params": params}, kin, deterministic=True)
    out2 = module.apply({"params": params}, kin.at[:, 10].add(1.0), deterministic=True)
    np.testing.assert_array_equal(np.asarray(out[:, :10]), np.asarray(out2[:, :10]))
    assert float(jnp.max(jnp.abs(out[:, 10:] - out2[:, 10:]))) > 1e-4


@pytest.mark.parametrize(
    ("kind", "overrides"),
    [
        ("denoiser", dict(SMALL_DENOISER, rotary="paper", activation="relu")),
        ("denoiser", dict(SMALL_DENOISER, prediction="eps")),
        ("refiner", SMALL_REFINER),
        ("cnn", dict(conv_channels=(32, 32), hidden=32)),
        ("lstm", dict(hidden=(32, 16))),
    ],
)
def test_few_adam_steps_lower_the_loss(kind, overrides):
    module = build_model(kind, "paper" if kind == "denoiser" else "released", **overrides)
    batch = 3.0 * jax.random.uniform(jax.random.key(5), (4, 32, 63), minval=-1, maxval=1)
    # Forces that are a function of the kinematics (as in gait), so a regressor has something to learn:
    # independent random targets leave an L1 regressor (the LSTM) nothing but slow memorisation.
    kin_idx, force_idx = np.array(KINEMATIC_IDX), np.array(KINETIC_IDX)
    batch = batch.at[..., force_idx].set(batch[..., kin_idx[:12]])
    loss_key = jax.random.key(6)  # fixed: the same t, noise and dropout at every step
    if kind == "denoiser":
        schedule = make_schedule()
        params = module.init(jax.random.key(7), batch, jnp.zeros(4, jnp.int32), deterministic=True)["params"]

        def loss_fn(p):
            apply = lambda p, x, t, rngs: module.apply({"params": p}, x, t, deterministic=False, rngs=rngs)  # noqa: E731
            return diffusion_loss(apply, p, batch, loss_key, schedule, prediction=module.config.prediction)[0]
    else:
        params = module.init(jax.random.key(7), batch[..., :51], deterministic=True)["params"]

        def loss_fn(p):
            apply = lambda p, x, rngs: module.apply({"params": p}, x, deterministic=False, rngs=rngs)  # noqa: E731
            return force_loss(apply, p, batch, loss_key, loss_type="l1" if kind == "lstm" else "mse")[0]

    # The L1-trained LSTM learns slowly at 3e-3 (a tanh-bounded recurrent net under a sign gradient).
    opt = optax.adam(2e-2 if kind == "lstm" else 3e-3)

    @jax.jit
    def step(p, s):
        loss, grads = jax.value_and_grad(loss_fn)(p)
        updates, s = opt.update(grads, s, p)
        return optax.apply_updates(p, updates), s, loss

    state = opt.init(params)
    losses = []
    for _ in range(12):
        params, state, loss = step(params, state)
        losses.append(float(loss))
    assert losses[-1] < 0.8 * losses[0], losses


def test_released_denoiser_forward_runs_on_cpu():
    module = build_model("denoiser", "released")
    x = jax.random.normal(jax.random.key(8), (2, 150, 63))
    t = jnp.array([0, 999], jnp.int32)
    params = jax.jit(lambda: module.init(jax.random.key(9), x, t, deterministic=True))()["params"]
    out = jax.jit(lambda p, x, t: module.apply({"params": p}, x, t, deterministic=True))(params, x, t)
    assert out.shape == (2, 150, 63) and bool(jnp.all(jnp.isfinite(out)))
