"""DDIM sampling with inpainting and optional gradient guidance: the whole loop is one `lax.scan` in one
`jit`; every window draws its noise from its own key, so samples do not depend on batching (spec §4.1-4.2).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from gaitjax.data.errors import GaitDataError
from gaitjax.diffusion.guidance import Guidance, apply_guidance
from gaitjax.diffusion.schedule import NoiseSchedule, eps_from_x0, q_sample, x0_from_eps

DenoiseFn = Callable[[jax.Array, jax.Array], jax.Array]
Prediction = Literal["x0", "eps"]


@dataclasses.dataclass(frozen=True)
class SampleResult:
    """Output of the sampler.

    Attributes:
        x0_btc: final windows [B, T, C] (normalized units); entries with mask 1 equal `known_btc` (as float32)
            bit for bit.
        trajectory_sbtc: when requested, the window after each DDIM step [S, B, T, C], S = n_steps (the known
            part already re-noised to t_next); the last entry equals `x0_btc`. Otherwise None.
    """

    x0_btc: jax.Array
    trajectory_sbtc: jax.Array | None = None


def ddim_timesteps(n_steps: int = 50, n_train: int = 1000) -> np.ndarray:
    """The (t, t_next) pairs of the released DDIM loop: int(linspace(-1, n_train - 1, n_steps + 1)) reversed.

    For 50 steps of a 1000-step schedule: (999, 979), (979, 959), ..., (39, 19), (19, -1). Computed in
    integers (t_k = -1 + floor(k n_train / n_steps), equal to torch's truncation of the linspace) so that no
    float rounding can shift a step.

    Args:
        n_steps: number of sampling steps S, 1..n_train.
        n_train: number of diffusion steps of the schedule.

    Returns:
        int32 array [S, 2] of (t, t_next); t_next = -1 marks the final step.
    """
    if not isinstance(n_steps, (int, np.integer)) or not 1 <= n_steps <= n_train:
        raise ValueError(f"n_steps must be an int in 1..{n_train}, got {n_steps!r}")
    times = -1 + (np.arange(n_steps + 1, dtype=np.int64) * n_train) // n_steps
    times = times[::-1]
    return np.stack([times[:-1], times[1:]], axis=1).astype(np.int32)


def _window_keys(key: jax.Array, window_ids_b: jax.Array) -> jax.Array:
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(window_ids_b)


def _window_normals(keys_b: jax.Array, shape_tc: tuple[int, int], n: int) -> tuple[jax.Array, ...]:
    """n independent standard-normal arrays [B, T, C], each window's drawn from its own key only."""
    split_bn = jax.vmap(lambda k: jax.random.split(k, n))(keys_b)
    return tuple(
        jax.vmap(lambda k: jax.random.normal(k, shape_tc, jnp.float32))(split_bn[:, i]) for i in range(n)
    )


@functools.partial(
    jax.jit, static_argnames=("n_steps", "prediction", "return_trajectory", "n_grad_steps", "guided")
)
def _sample_jit(
    denoise_fn,
    loss_fn,
    schedule: NoiseSchedule,
    known_btc: jax.Array,
    mask_btc: jax.Array,
    window_ids_b: jax.Array,
    key: jax.Array,
    eta: jax.Array,
    lr: jax.Array,
    t_start: jax.Array,
    t_end: jax.Array,
    batch_args,
    *,
    n_steps: int,
    prediction: str,
    return_trajectory: bool,
    n_grad_steps: int,
    guided: bool,
):
    b, t_len, c = known_btc.shape
    pairs = jnp.asarray(ddim_timesteps(n_steps, schedule.n_steps))
    keys_b = _window_keys(key, window_ids_b)
    # x_T ~ N(0, I) over all channels; the known values are not inserted before the first call (spec §4.1).
    (x_btc,) = _window_normals(jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys_b), (t_len, c), 1)

    def x0_denoiser(x, t_b):
        # A user's denoiser may compute in float64 (x64 enabled); the carry stays float32.
        out = denoise_fn(x, t_b).astype(x.dtype)
        return out if prediction == "x0" else x0_from_eps(schedule, x, t_b, out)

    def step(x, xs):
        s, t, t_next = xs
        t_b = jnp.full((b,), t, jnp.int32)
        if guided:
            active = (t_end <= t) & (t <= t_start)
            x = jax.lax.cond(
                active,
                lambda x: apply_guidance(
                    x0_denoiser, loss_fn, x, t_b, n_grad_steps=n_grad_steps, lr=lr, batch_args=batch_args
                ),
                lambda x: x,
                x,
            )
        out = denoise_fn(x, t_b).astype(x.dtype)
        if prediction == "x0":
            x0_hat, eps_hat = out, eps_from_x0(schedule, x, t_b, out)
        else:
            x0_hat, eps_hat = x0_from_eps(schedule, x, t_b, out), out
        last = t_next < 0
        t_next_safe = jnp.maximum(t_next, 0)
        abar = schedule.alphas_cumprod[t]
        abar_next = jnp.where(last, 1.0, schedule.alphas_cumprod[t_next_safe])
        sigma = eta * jnp.sqrt((1.0 - abar / abar_next) * (1.0 - abar_next) / (1.0 - abar))
        c_eps = jnp.sqrt(jnp.maximum(1.0 - abar_next - sigma**2, 0.0))
        z_btc, z_known_btc = _window_normals(
            jax.vmap(lambda k: jax.random.fold_in(k, s + 1))(keys_b), (t_len, c), 2
        )
        x_next = jnp.sqrt(abar_next) * x0_hat + c_eps * eps_hat + sigma * z_btc
        # Known part re-noised to the *next* level with fresh noise (RePaint-style replacement).
        known_noisy = q_sample(schedule, known_btc, jnp.full((b,), t_next_safe, jnp.int32), z_known_btc)
        x_next = jnp.where(mask_btc, known_noisy, x_next)
        # Final step: x = x0_hat, then the known entries are imposed exactly. The released loop returns
        # x0_hat here and leaves the merge to its callers (spec §8.11); we do it so no caller can forget.
        x_next = jnp.where(last, jnp.where(mask_btc, known_btc, x0_hat), x_next)
        x_next = x_next.astype(x.dtype)
        return x_next, (x_next if return_trajectory else None)

    xs = (jnp.arange(n_steps, dtype=jnp.int32), pairs[:, 0], pairs[:, 1])
    x_btc, traj_sbtc = jax.lax.scan(step, x_btc, xs)
    return x_btc, traj_sbtc


def _validate(known_btc, mask_btc, window_ids_b, n_steps, eta, prediction, guidance):
    if prediction not in ("x0", "eps"):
        raise ValueError(f"prediction must be 'x0' or 'eps', got {prediction!r}")
    if not (isinstance(eta, (int, float, np.floating)) and math.isfinite(eta) and eta >= 0):
        raise ValueError(f"eta must be a finite number >= 0, got {eta!r}")
    if not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive int, got {n_steps!r}")
    shape = tuple(np.shape(known_btc))
    if len(shape) != 3 or 0 in shape:
        raise GaitDataError(f"known_btc must be a non-empty array [B, T, C], got shape {shape}")
    if not jnp.issubdtype(jnp.result_type(known_btc), jnp.floating):
        raise GaitDataError(f"known_btc must be floating point, got dtype {jnp.result_type(known_btc)}")
    if tuple(np.shape(mask_btc)) != shape:
        raise GaitDataError(f"mask_btc shape {tuple(np.shape(mask_btc))} must equal known_btc shape {shape}")
    if tuple(np.shape(window_ids_b)) != shape[:1]:
        raise GaitDataError(
            f"window_ids_b must have shape ({shape[0]},), got {tuple(np.shape(window_ids_b))}"
        )
    if not jnp.issubdtype(jnp.result_type(window_ids_b), jnp.integer):
        raise GaitDataError(f"window_ids_b must be integers, got dtype {jnp.result_type(window_ids_b)}")
    if not isinstance(mask_btc, jax.core.Tracer):
        mask_np = np.asarray(mask_btc)
        bad = ~((mask_np == 0) | (mask_np == 1))
        if bad.any():
            b, t, c = np.argwhere(bad)[0]
            raise GaitDataError(
                f"mask_btc must hold only 0 (generate) or 1 (known); found {mask_np[b, t, c]!r} at "
                f"window {b}, frame {t}, channel {c}"
            )
    if guidance is not None and guidance.batch_args is not None:
        for leaf in jax.tree.leaves(guidance.batch_args):
            if np.shape(leaf)[:1] != shape[:1]:
                raise GaitDataError(
                    f"guidance.batch_args leaves need leading axis B={shape[0]}, got shape {np.shape(leaf)}"
                )


def _run(
    denoise_fn, schedule, known_btc, mask_btc, window_ids_b, key, n_steps, eta, guidance, traj, prediction
):
    guided = guidance is not None and guidance.loss_fn is not None and guidance.n_grad_steps > 0
    # Functions travel as `Partial` pytrees: a `Partial(apply, params)` passes params as traced arguments
    # (not baked-in constants), and the same function object hits the jit cache on every call.
    as_partial = lambda f: f if isinstance(f, jax.tree_util.Partial) else jax.tree_util.Partial(f)
    x_btc, traj_sbtc = _sample_jit(
        as_partial(denoise_fn),
        as_partial(guidance.loss_fn) if guided else None,
        schedule,
        jnp.asarray(known_btc, jnp.float32),
        jnp.asarray(mask_btc).astype(bool),
        jnp.asarray(window_ids_b, jnp.int32),
        key,
        jnp.float32(eta),
        jnp.float32(guidance.lr if guided else 0.0),
        jnp.int32(guidance.t_start if guided else 0),
        jnp.int32(guidance.t_end if guided else 0),
        guidance.batch_args if guided else None,
        n_steps=int(n_steps),
        prediction=prediction,
        return_trajectory=bool(traj),
        n_grad_steps=int(guidance.n_grad_steps) if guided else 0,
        guided=guided,
    )
    return x_btc, traj_sbtc


def sample(
    denoise_fn: DenoiseFn,
    schedule: NoiseSchedule,
    *,
    known_btc: jax.Array | np.ndarray,
    mask_btc: jax.Array | np.ndarray,
    window_ids_b: jax.Array | np.ndarray,
    key: jax.Array,
    n_steps: int = 50,
    eta: float = 0.0,
    guidance: Guidance | None = None,
    return_trajectory: bool = False,
    prediction: Prediction = "x0",
) -> SampleResult:
    """DDIM inpainting (optionally guided) of a batch of windows; one jitted `lax.scan` over the steps.

    Per pair (t, t_next) of `ddim_timesteps`: [guidance steps on x]; x0_hat, eps_hat from the denoiser;
    x = x0_hat if t_next < 0 else sqrt(abar_next) x0_hat + c eps_hat + sigma z, with
    sigma = eta sqrt((1 - abar/abar_next)(1 - abar_next)/(1 - abar)) and c = sqrt(1 - abar_next - sigma^2);
    then the known entries are replaced by q_sample(known, t_next) with fresh noise, and after the final step
    by the known values themselves (spec §4.1).

    Window b's noise comes only from fold_in(key, window_ids_b[b]) and the step index, so its sample does
    not depend on the batch size, chunking or device count (given a denoiser that treats windows
    independently and a guidance loss that sums over windows). Equal ids give equal noise.

    Args:
        denoise_fn: `denoise_fn(x_t [B,T,C] float32, t_b [B] int32) -> [B,T,C]`: x0_hat, or eps_hat when
            prediction="eps". Any JAX-traceable function; pass `jax.tree_util.Partial(apply_fn, params)` so
            parameters are traced arguments rather than constants compiled into the sampler.
        schedule: the diffusion schedule (its length is the number of training steps).
        known_btc: known values [B, T, C] (normalized units); only entries with mask 1 are used.
        mask_btc: [B, T, C] of 0/1 (or bool): 1 = known, 0 = generate. All zeros = unconditional sampling.
        window_ids_b: integer id per window [B]; seeds its noise.
        key: PRNG key (typed or raw uint32[2]).
        n_steps: number of DDIM steps (paper: 50).
        eta: DDIM stochasticity (0 = deterministic given x_T, as released).
        guidance: optional gradient guidance (see `Guidance`); None = plain inpainting.
        return_trajectory: also return the window after each step.
        prediction: what denoise_fn returns: "x0" (released model) or "eps".

    Returns:
        SampleResult with x0_btc [B, T, C] float32 (and trajectory_sbtc [S, B, T, C] when requested).

    Raises:
        GaitDataError: wrong shapes/dtypes, or mask values other than 0/1.
        ValueError: bad settings (n_steps, eta, prediction).
    """
    _validate(known_btc, mask_btc, window_ids_b, n_steps, eta, prediction, guidance)
    x_btc, traj = _run(
        denoise_fn, schedule, known_btc, mask_btc, window_ids_b, key, n_steps, eta, guidance,
        return_trajectory, prediction,
    )  # fmt: skip
    return SampleResult(x0_btc=x_btc, trajectory_sbtc=traj)


def _pad_rows(a: np.ndarray, n_rows: int) -> np.ndarray:
    return (
        np.concatenate([a, np.zeros((n_rows - a.shape[0],) + a.shape[1:], a.dtype)])
        if n_rows > a.shape[0]
        else a
    )


def sample_chunked(
    denoise_fn: DenoiseFn,
    schedule: NoiseSchedule,
    *,
    known_btc: jax.Array | np.ndarray,
    mask_btc: jax.Array | np.ndarray,
    window_ids_b: jax.Array | np.ndarray,
    key: jax.Array,
    max_windows_per_call: int,
    mesh: Mesh | None = None,
    n_steps: int = 50,
    eta: float = 0.0,
    guidance: Guidance | None = None,
    return_trajectory: bool = False,
    prediction: Prediction = "x0",
) -> SampleResult:
    """`sample` over a large batch in fixed-size chunks, each sharded over the mesh's batch axes.

    Every chunk has the same size (the last one is padded with fully unknown dummy windows that are then
    dropped), so the jitted sampler is traced once. With a mesh, each chunk's batch axis is split over the
    mesh axes "data" (and "fsdp" when present); the chunk size is a multiple of their product. Results equal
    those of one unchunked `sample` call, window for window.

    Args:
        denoise_fn, schedule, known_btc, mask_btc, window_ids_b, key, n_steps, eta, return_trajectory,
            prediction: as in `sample`.
        max_windows_per_call: memory budget, in windows per jitted call (rounded down to a multiple of the
            number of batch shards).
        mesh: optional device mesh with a "data" axis.
        guidance: as in `sample`; its `batch_args` are chunked with the windows.

    Returns:
        SampleResult over all B windows.
    """
    _validate(known_btc, mask_btc, window_ids_b, n_steps, eta, prediction, guidance)
    n_windows = np.shape(known_btc)[0]
    if mesh is None:
        axes, n_shards = (), 1
    else:
        axes = tuple(a for a in ("data", "fsdp") if a in mesh.axis_names)
        if "data" not in axes:
            raise ValueError(f"mesh must have a 'data' axis, got axes {mesh.axis_names}")
        n_shards = int(np.prod([mesh.shape[a] for a in axes]))
    budget = (int(max_windows_per_call) // n_shards) * n_shards
    if budget < 1:
        raise ValueError(
            f"max_windows_per_call={max_windows_per_call} is below the {n_shards} batch shards of the mesh"
        )
    chunk = min(budget, -(-n_windows // n_shards) * n_shards)
    n_padded = -(-n_windows // chunk) * chunk
    sharding = None if mesh is None else NamedSharding(mesh, P(axes))

    known_np = _pad_rows(np.asarray(known_btc, np.float32), n_padded)
    mask_np = _pad_rows(np.asarray(mask_btc).astype(bool), n_padded)
    ids_np = _pad_rows(np.asarray(window_ids_b, np.int32), n_padded)
    batch_args = None
    if guidance is not None and guidance.batch_args is not None:
        batch_args = jax.tree.map(lambda a: _pad_rows(np.asarray(a), n_padded), guidance.batch_args)

    xs, trajs = [], []
    for lo in range(0, n_padded, chunk):
        put = lambda a, lo=lo: jax.device_put(a[lo : lo + chunk], sharding)
        chunk_guidance = guidance
        if batch_args is not None:
            chunk_guidance = dataclasses.replace(guidance, batch_args=jax.tree.map(put, batch_args))
        x_btc, traj = _run(
            denoise_fn, schedule, put(known_np), put(mask_np), put(ids_np), key, n_steps, eta, chunk_guidance,
            return_trajectory, prediction,
        )  # fmt: skip
        xs.append(x_btc)
        trajs.append(traj)
    x_btc = jnp.concatenate(xs)[:n_windows]
    traj = jnp.concatenate(trajs, axis=1)[:, :n_windows] if return_trajectory else None
    return SampleResult(x0_btc=x_btc, trajectory_sbtc=traj)
