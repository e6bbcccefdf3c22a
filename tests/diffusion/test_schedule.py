"""Noise schedules against spec §3.2 values, hand formulas and torch; q_sample and the x0/eps conversions."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gaitjax.diffusion.schedule import NoiseSchedule, eps_from_x0, make_schedule, q_sample, x0_from_eps

BUFFERS = (
    "betas",
    "alphas_cumprod",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
)


@pytest.mark.parametrize(
    ("t", "value", "half_ulp"),
    [
        (0, 0.9999, 0.5e-4),
        (19, 0.99746, 0.5e-5),
        (99, 0.97170, 0.5e-5),
        (499, 0.33319, 0.5e-5),
        (979, 1.0907e-3, 0.5e-7),
        (999, 7.334e-4, 0.5e-7),
    ],
)
def test_scaled_linear_alphas_cumprod_match_spec(t, value, half_ulp):
    abar = np.asarray(make_schedule("scaled_linear").alphas_cumprod)
    assert abs(float(abar[t]) - value) <= half_ulp


def test_scaled_linear_betas_endpoints_and_dtypes():
    s = make_schedule("scaled_linear")
    betas = np.asarray(s.betas)
    assert betas.shape == (1000,)
    assert betas[0] == np.float32(1e-4)
    assert betas[-1] == np.float32(0.02)
    # Midpoint of a linear ramp in sqrt space: ((0.01 + sqrt(0.02)) / 2)^2.
    mid = ((0.01 + math.sqrt(0.02)) / 2) ** 2
    assert abs(float(betas[499] + betas[500]) / 2 - mid) < 2e-4  # two neighbours straddle the midpoint
    for name in BUFFERS:
        assert getattr(s, name).dtype == jnp.float32, name
        assert getattr(s, name).shape == (1000,), name


def test_buffers_match_torch_reference_construction():
    torch = pytest.importorskip("torch")
    betas = (torch.linspace(math.sqrt(1e-4), math.sqrt(0.02), 1000, dtype=torch.float64) ** 2).float()
    alphas = 1.0 - betas
    abar = torch.cumprod(alphas, dim=0)
    expected = {
        "betas": betas,
        "alphas_cumprod": abar,
        "sqrt_alphas_cumprod": torch.sqrt(abar),
        "sqrt_one_minus_alphas_cumprod": torch.sqrt(1.0 - abar),
        "sqrt_recip_alphas_cumprod": torch.sqrt(1.0 / abar),
        "sqrt_recipm1_alphas_cumprod": torch.sqrt(1.0 / abar - 1),
    }
    s = make_schedule("scaled_linear")
    for name, value in expected.items():
        np.testing.assert_allclose(
            np.asarray(getattr(s, name)), value.numpy(), rtol=2e-7, atol=0, err_msg=name
        )


def test_cosine_schedule():
    s = make_schedule("cosine")
    abar = np.asarray(s.alphas_cumprod, np.float64)
    betas = np.asarray(s.betas, np.float64)
    assert np.all(np.diff(abar) < 0)
    # abar_0 = 1 - beta_0 with beta_0 = 1 - f(1) / f(0), f(t) = cos^2((t / T + s) / (1 + s) * pi / 2).
    f = [math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2 for t in (0, 1)]
    assert abs(abar[0] - f[1] / f[0]) < 1e-7
    assert abar[0] > 0.9999
    assert betas.max() == pytest.approx(0.999, abs=1e-7)  # the last beta is 1 before clipping
    assert betas[-1] == pytest.approx(0.999, abs=1e-7)
    assert np.all(betas >= 0)


def test_unknown_schedule_kind_is_rejected():
    with pytest.raises(ValueError, match="cosine"):
        make_schedule("quadratic")


def test_q_sample_matches_formula_and_broadcasts():
    s = make_schedule()
    k1, k2 = jax.random.split(jax.random.key(0))
    x0 = jax.random.normal(k1, (3, 5, 63))
    noise = jax.random.normal(k2, (3, 5, 63))
    t = jnp.array([0, 499, 999], jnp.int32)
    x_t = np.asarray(q_sample(s, x0, t, noise))
    abar = np.asarray(s.alphas_cumprod, np.float64)
    for b, tb in enumerate([0, 499, 999]):
        expected = math.sqrt(abar[tb]) * np.asarray(x0[b]) + math.sqrt(1 - abar[tb]) * np.asarray(noise[b])
        np.testing.assert_allclose(x_t[b], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["scaled_linear", "cosine"])
def test_eps_and_x0_conversions_invert_q_sample(kind):
    s = make_schedule(kind)
    k1, k2 = jax.random.split(jax.random.key(1))
    x0 = 10.0 * jax.random.uniform(k1, (6, 150, 63), minval=-1, maxval=1)  # data live in [-10, 10]
    noise = jax.random.normal(k2, x0.shape)
    t = jnp.array([0, 1, 19, 500, 980, 999], jnp.int32)
    x_t = q_sample(s, x0, t, noise)
    # Float32 rounding bound per window: a few ulps of the largest term, divided by the output scale.
    ulp = 8 * 2.0**-23
    sr = np.asarray(s.sqrt_recip_alphas_cumprod)[np.asarray(t)]
    srm1 = np.asarray(s.sqrt_recipm1_alphas_cumprod)[np.asarray(t)]
    big = sr * np.abs(np.asarray(x_t)).max(axis=(1, 2)) + 10.0
    tol_x0, tol_eps = ulp * big, ulp * big / srm1
    # The true x0 implies the true noise and vice versa.
    x0_back = np.asarray(x0_from_eps(s, x_t, t, noise))
    eps_back = np.asarray(eps_from_x0(s, x_t, t, x0))
    for b in range(6):
        np.testing.assert_allclose(x0_back[b], np.asarray(x0)[b], atol=tol_x0[b], rtol=0, err_msg=f"t={t[b]}")
        np.testing.assert_allclose(
            eps_back[b], np.asarray(noise)[b], atol=tol_eps[b], rtol=0, err_msg=f"t={t[b]}"
        )
    # The two conversions are inverse functions of each other for any estimate.
    x0_hat = jnp.flip(x0, axis=0)
    round_trip = np.asarray(x0_from_eps(s, x_t, t, eps_from_x0(s, x_t, t, x0_hat)))
    for b in range(6):
        np.testing.assert_allclose(round_trip[b], np.asarray(x0_hat)[b], atol=2 * tol_x0[b], rtol=0)


def test_schedule_is_a_pytree_usable_under_jit():
    s = make_schedule()
    assert isinstance(s, NoiseSchedule)
    assert len(jax.tree_util.tree_leaves(s)) == 6
    assert s.n_steps == 1000
    fn = jax.jit(lambda sched, x, t, n: q_sample(sched, x, t, n))
    x = jnp.ones((2, 4, 3))
    out = fn(s, x, jnp.array([5, 7]), jnp.zeros_like(x))
    np.testing.assert_allclose(np.asarray(out[1]), np.sqrt(np.asarray(s.alphas_cumprod)[7]) * np.ones((4, 3)))
