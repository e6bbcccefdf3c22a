"""DDIM sampler: released timesteps, oracle denoisers, exact inpainting, per-step formula, Gaussian moments,
batch/chunk invariance, single trace, sharding, and input validation."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax.sharding import Mesh

from gaitjax.data.errors import GaitDataError
from gaitjax.diffusion.ddim import ddim_timesteps, sample, sample_chunked
from gaitjax.diffusion.schedule import make_schedule

SCHEDULE = make_schedule("scaled_linear")
ABAR = np.asarray(SCHEDULE.alphas_cumprod, np.float64)


def _mix_tt(t_len: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    return (np.eye(t_len) + 0.1 * rng.normal(size=(t_len, t_len))).astype(np.float32)


def _cheap_denoiser(t_len: int):
    """A nonlinear x0 predictor that mixes frames within a window but never across windows."""
    mix_tt = jnp.asarray(_mix_tt(t_len))

    def denoise(x_btc, t_b):
        scale_b = 1.0 - t_b.astype(jnp.float32)[:, None, None] / 2000.0
        return 0.8 * jnp.tanh(jnp.einsum("st,btc->bsc", mix_tt, x_btc)) * scale_b + 0.1

    return denoise


def _random_mask(rng, shape) -> np.ndarray:
    """Random entries, plus whole known frames and whole known channels (per-frame patterns)."""
    b, t, c = shape
    mask = rng.random(shape) < 0.3
    mask[0, t // 3 : t // 2, :] = True  # a block of fully known frames
    mask[1, :, 0] = True  # a fully known channel
    mask[-1, ::2, :] = True  # every other frame known
    return mask.astype(np.float32)


def test_timesteps_match_released_expression():
    pairs = ddim_timesteps(50, 1000)
    assert pairs.shape == (50, 2)
    assert tuple(pairs[0]) == (999, 979) and tuple(pairs[1]) == (979, 959)
    assert tuple(pairs[-2]) == (39, 19) and tuple(pairs[-1]) == (19, -1)
    assert np.all(pairs[:, 0] - pairs[:, 1] == 20)
    assert ddim_timesteps(3, 1000).tolist() == [[999, 665], [665, 332], [332, -1]]  # -1 + k*1000/3, truncated
    for n in (1, 7, 50, 333, 1000):  # the released code's own torch expression
        times = list(reversed(torch.linspace(-1, 999, steps=n + 1).int().tolist()))
        np.testing.assert_array_equal(ddim_timesteps(n, 1000), np.stack([times[:-1], times[1:]], 1))


@pytest.mark.parametrize("bad", [0, 1001, 2.5])
def test_timesteps_reject_bad_counts(bad):
    with pytest.raises(ValueError, match="n_steps"):
        ddim_timesteps(bad, 1000)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_x0_oracle_returns_x0(eta):
    rng = np.random.default_rng(0)
    x0_btc = rng.normal(size=(3, 6, 4)).astype(np.float32) * 5
    oracle = lambda x, t: jnp.broadcast_to(jnp.asarray(x0_btc), x.shape) + 0.0 * x
    result = sample(
        oracle, SCHEDULE, known_btc=np.zeros_like(x0_btc), mask_btc=np.zeros_like(x0_btc),
        window_ids_b=np.arange(3), key=jax.random.key(0), eta=eta,
    )  # fmt: skip
    np.testing.assert_allclose(np.asarray(result.x0_btc), x0_btc, rtol=0, atol=1e-6)


def test_eps_oracle_returns_x0():
    rng = np.random.default_rng(1)
    x0_btc = rng.normal(size=(3, 6, 4)).astype(np.float32) * 5

    def eps_oracle(x_btc, t_b):  # the true noise of x_t relative to the fixed x0
        abar_b11 = SCHEDULE.alphas_cumprod[t_b][:, None, None]
        return (x_btc - jnp.sqrt(abar_b11) * x0_btc) / jnp.sqrt(1.0 - abar_b11)

    result = sample(
        eps_oracle, SCHEDULE, known_btc=np.zeros_like(x0_btc), mask_btc=np.zeros_like(x0_btc),
        window_ids_b=np.arange(3), key=jax.random.key(3), prediction="eps",
    )  # fmt: skip
    np.testing.assert_allclose(np.asarray(result.x0_btc), x0_btc, rtol=0, atol=1e-5)


def test_inpainted_known_entries_equal_input_bit_for_bit():
    rng = np.random.default_rng(2)
    shape = (4, 12, 5)
    known_btc = rng.normal(size=shape).astype(np.float32) * 3
    mask_btc = _random_mask(rng, shape)
    result = sample(
        _cheap_denoiser(12), SCHEDULE, known_btc=known_btc, mask_btc=mask_btc, window_ids_b=np.arange(4),
        key=jax.random.key(5), eta=0.5,
    )  # fmt: skip
    x_btc = np.asarray(result.x0_btc)
    known = mask_btc == 1
    np.testing.assert_array_equal(x_btc[known], known_btc[known])
    assert not np.any(x_btc[~known] == known_btc[~known])  # the rest is generated, not copied


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_each_step_follows_the_ddim_and_replacement_formulas(eta):
    """Recomputes steps 1..S-1 in float64 numpy from the recorded trajectory (spec §4.1).

    Unknown entries: x_next = sqrt(abar_next) x0_hat + c eps_hat + sigma z, so (x_next - mean) / sigma must
    be standard normal (eta > 0) or zero (eta = 0). Known entries: q_sample(known, t_next) with fresh noise."""
    rng = np.random.default_rng(3)
    shape = (3, 10, 4)
    known_btc = rng.normal(size=shape).astype(np.float32)
    mask_btc = _random_mask(rng, shape)
    denoise = _cheap_denoiser(10)
    result = sample(
        denoise, SCHEDULE, known_btc=known_btc, mask_btc=mask_btc, window_ids_b=np.arange(3),
        key=jax.random.key(9), n_steps=10, eta=eta, return_trajectory=True,
    )  # fmt: skip
    traj = np.asarray(result.trajectory_sbtc, np.float64)
    assert traj.shape == (10,) + shape
    np.testing.assert_array_equal(traj[-1], np.asarray(result.x0_btc))
    known, pairs = mask_btc == 1, ddim_timesteps(10)
    mix_tt = _mix_tt(10).astype(np.float64)
    z_known, z_sigma = [], []
    for s in range(1, 10):
        (t, t_next), x = pairs[s], traj[s - 1]
        x0_hat = 0.8 * np.tanh(np.einsum("st,btc->bsc", mix_tt, x)) * (1 - t / 2000.0) + 0.1
        eps_hat = (x / np.sqrt(ABAR[t]) - x0_hat) / np.sqrt(1 / ABAR[t] - 1)
        if t_next < 0:
            np.testing.assert_allclose(traj[s][~known], x0_hat[~known], rtol=1e-4, atol=1e-4)
            continue
        a, an = ABAR[t], ABAR[t_next]
        sigma = eta * np.sqrt((1 - a / an) * (1 - an) / (1 - a))
        mean = np.sqrt(an) * x0_hat + np.sqrt(1 - an - sigma**2) * eps_hat
        if eta == 0:
            np.testing.assert_allclose(traj[s][~known], mean[~known], rtol=1e-4, atol=1e-4)
        else:
            z_sigma.append(((traj[s] - mean) / sigma)[~known])
        z_known.append(((traj[s] - np.sqrt(an) * known_btc) / np.sqrt(1 - an))[known])
    # Fresh standard-normal noise at every step, independent from step to step.
    for z in (z_known, z_sigma) if eta > 0 else (z_known,):
        z = np.stack(z)
        assert abs(z.mean()) < 0.1 and abs(z.std() - 1) < 0.1
        assert np.abs(np.corrcoef(z[0], z[1])[0, 1]) < 0.2


def _gaussian_moments(mu_c, s_c, eta, n_steps=50):
    """Exact mean/std after DDIM from x_T ~ N(0, 1) for data N(mu, s^2) with the exact posterior mean.

    Every step is affine in x for Gaussian data, so mean and variance follow a scalar recursion."""
    m, v = np.zeros_like(mu_c), np.ones_like(mu_c)
    for t, t_next in ddim_timesteps(n_steps):
        a = ABAR[t]
        k = s_c**2 * np.sqrt(a) / (a * s_c**2 + 1 - a)  # x0_hat = k x + mu (1 - k sqrt(a))
        g0, h0 = k, mu_c * (1 - k * np.sqrt(a))
        r = np.sqrt(1 / a - 1)
        ge, he = (1 / np.sqrt(a) - g0) / r, -h0 / r
        if t_next < 0:
            return g0 * m + h0, np.sqrt(g0**2 * v)
        an = ABAR[t_next]
        sig = eta * np.sqrt((1 - a / an) * (1 - an) / (1 - a))
        c = np.sqrt(1 - an - sig**2)
        gain, bias = np.sqrt(an) * g0 + c * ge, np.sqrt(an) * h0 + c * he
        m, v = gain * m + bias, gain**2 * v + sig**2
    raise AssertionError("unreachable")


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_gaussian_data_sample_moments(eta):
    mu_c = np.array([2.0, -1.0, 0.0, 5.0])
    s_c = np.array([0.5, 1.0, 2.0, 3.0])

    def posterior_mean(x_btc, t_b):
        a = SCHEDULE.alphas_cumprod[t_b][:, None, None]
        return mu_c + s_c**2 * jnp.sqrt(a) / (a * s_c**2 + 1 - a) * (x_btc - jnp.sqrt(a) * mu_c)

    n_windows, t_len = 512, 4
    result = sample(
        posterior_mean, SCHEDULE, known_btc=np.zeros((n_windows, t_len, 4), np.float32),
        mask_btc=np.zeros((n_windows, t_len, 4)), window_ids_b=np.arange(n_windows), key=jax.random.key(1),
        eta=eta,
    )  # fmt: skip
    x_nc = np.asarray(result.x0_btc, np.float64).reshape(-1, 4)
    mean_c, std_c = _gaussian_moments(mu_c, s_c, eta)
    n = x_nc.shape[0]
    np.testing.assert_array_less(np.abs(x_nc.mean(0) - mean_c), 4 * std_c / np.sqrt(n))
    np.testing.assert_array_less(np.abs(x_nc.std(0) / std_c - 1), 4 / np.sqrt(2 * n))


def test_same_keys_same_samples_whatever_batch_and_chunking():
    rng = np.random.default_rng(4)
    shape = (7, 8, 3)
    known_btc = rng.normal(size=shape).astype(np.float32)
    mask_btc = _random_mask(rng, shape)
    ids_b = np.array([10, 3, 99, 4, 5, 6, 12345])
    denoise, key = _cheap_denoiser(8), jax.random.key(11)
    kw = dict(n_steps=20, eta=1.0)
    full = np.asarray(sample(denoise, SCHEDULE, known_btc=known_btc, mask_btc=mask_btc, window_ids_b=ids_b,
                             key=key, **kw).x0_btc)  # fmt: skip
    part = np.asarray(sample(denoise, SCHEDULE, known_btc=known_btc[2:4], mask_btc=mask_btc[2:4],
                             window_ids_b=ids_b[2:4], key=key, **kw).x0_btc)  # fmt: skip
    np.testing.assert_allclose(part, full[2:4], rtol=0, atol=1e-6)
    for max_windows in (3, 4, 7):  # 3 chunks with padding, 2 chunks with padding, one chunk
        chunked = sample_chunked(
            denoise, SCHEDULE, known_btc=known_btc, mask_btc=mask_btc, window_ids_b=ids_b, key=key,
            max_windows_per_call=max_windows, return_trajectory=True, **kw,
        )  # fmt: skip
        np.testing.assert_allclose(np.asarray(chunked.x0_btc), full, rtol=0, atol=1e-6)
        assert chunked.trajectory_sbtc.shape == (20,) + shape
    other_key = np.asarray(sample(denoise, SCHEDULE, known_btc=known_btc, mask_btc=mask_btc,
                                  window_ids_b=ids_b, key=jax.random.key(12), **kw).x0_btc)  # fmt: skip
    assert np.abs(other_key - full)[mask_btc == 0].min() > 0  # a different key changes every generated entry


def test_sampler_traces_once_across_calls_and_chunks():
    denoise_inner = _cheap_denoiser(6)

    @chex.assert_max_traces(n=1)
    def denoise(x_btc, t_b):
        return denoise_inner(x_btc, t_b)

    rng = np.random.default_rng(5)
    for call in range(3):  # new data, ids and keys of the same shape
        known_btc = rng.normal(size=(4, 6, 3)).astype(np.float32)
        mask_btc = (rng.random((4, 6, 3)) < 0.5).astype(np.float32)
        sample(denoise, SCHEDULE, known_btc=known_btc, mask_btc=mask_btc, window_ids_b=rng.integers(0, 99, 4),
               key=jax.random.key(call), n_steps=5)  # fmt: skip
    big = rng.normal(size=(10, 6, 3)).astype(np.float32)
    sample_chunked(denoise, SCHEDULE, known_btc=big, mask_btc=np.ones_like(big), window_ids_b=np.arange(10),
                   key=jax.random.key(7), n_steps=5, max_windows_per_call=4)  # fmt: skip


def test_real_window_shape_with_cheap_denoiser():
    rng = np.random.default_rng(6)
    shape = (2, 150, 63)
    known_btc = rng.normal(size=shape).astype(np.float32)
    mask_btc = np.zeros(shape, np.float32)
    mask_btc[:, :, :51] = 1.0  # kinematics known, forces generated
    mask_btc[1, 100:, :] = 0.0  # padded tail frames of a short trial
    w_ct = jnp.asarray(rng.normal(size=(63, 63)).astype(np.float32) / 8)
    denoise = lambda x, t: jnp.tanh(x @ w_ct) * (1.0 - t[:, None, None] / 1000.0)
    result = sample(denoise, SCHEDULE, known_btc=known_btc, mask_btc=mask_btc, window_ids_b=np.arange(2),
                    key=jax.random.key(0))  # fmt: skip
    x_btc = np.asarray(result.x0_btc)
    assert x_btc.shape == shape and x_btc.dtype == np.float32 and np.all(np.isfinite(x_btc))
    np.testing.assert_array_equal(x_btc[mask_btc == 1], known_btc[mask_btc == 1])


def test_sharded_chunks_on_a_one_device_mesh_match_unsharded():
    rng = np.random.default_rng(8)
    known_btc = rng.normal(size=(5, 6, 3)).astype(np.float32)
    mask_btc = _random_mask(rng, known_btc.shape)
    mesh = Mesh(np.asarray(jax.devices()[:1]), ("data",))
    kw = dict(
        known_btc=known_btc, mask_btc=mask_btc, window_ids_b=np.arange(5), key=jax.random.key(2), n_steps=8
    )
    plain = sample(_cheap_denoiser(6), SCHEDULE, **kw).x0_btc
    sharded = sample_chunked(_cheap_denoiser(6), SCHEDULE, max_windows_per_call=2, mesh=mesh, **kw).x0_btc
    np.testing.assert_allclose(np.asarray(sharded), np.asarray(plain), rtol=0, atol=1e-6)


def test_unconditional_all_zero_mask_is_allowed():
    zeros = np.zeros((2, 5, 3), np.float32)
    result = sample(_cheap_denoiser(5), SCHEDULE, known_btc=zeros, mask_btc=zeros, window_ids_b=np.arange(2),
                    key=jax.random.key(0), n_steps=4)  # fmt: skip
    assert np.all(np.isfinite(np.asarray(result.x0_btc)))


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (dict(mask_btc=np.full((2, 5, 3), 0.5, np.float32)), GaitDataError, "only 0 .* or 1"),
        (dict(mask_btc=np.ones((2, 5, 4))), GaitDataError, "mask_btc shape"),
        (dict(known_btc=np.ones((5, 3), np.float32)), GaitDataError, r"\[B, T, C\]"),
        (dict(known_btc=np.ones((2, 5, 3), np.int32)), GaitDataError, "floating point"),
        (dict(window_ids_b=np.arange(3)), GaitDataError, "window_ids_b must have shape"),
        (dict(window_ids_b=np.array([0.0, 1.0])), GaitDataError, "integers"),
        (dict(eta=-0.1), ValueError, "eta"),
        (dict(prediction="v"), ValueError, "prediction"),
        (dict(n_steps=0), ValueError, "n_steps"),
    ],
)
def test_bad_input_raises_clear_errors(change, error, match):
    kw = dict(known_btc=np.zeros((2, 5, 3), np.float32), mask_btc=np.ones((2, 5, 3), np.float32),
              window_ids_b=np.arange(2), key=jax.random.key(0), n_steps=3)  # fmt: skip
    kw.update(change)
    with pytest.raises(error, match=match):
        sample(_cheap_denoiser(5), SCHEDULE, **kw)


def test_chunk_budget_below_shard_count_is_rejected():
    mesh = Mesh(np.asarray(jax.devices()[:1]), ("data",))
    zeros = np.zeros((2, 5, 3), np.float32)
    with pytest.raises(ValueError, match="max_windows_per_call"):
        sample_chunked(_cheap_denoiser(5), SCHEDULE, known_btc=zeros, mask_btc=zeros, window_ids_b=np.arange(2),
                       key=jax.random.key(0), max_windows_per_call=0, mesh=mesh)  # fmt: skip
