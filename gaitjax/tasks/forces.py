"""Task 1: ground reaction forces from full or partial kinematics (spec §4.3, §6.1, §7.3).

A trial's 63 model channels (forces unknown) are cut into 150-frame windows; unknown kinematic channels are
filled by DDIM inpainting with the denoiser (or, as the paper's baseline, by the training mid-range: 0 in
normalised space); the force refiner maps the 51 completed kinematic channels to the 12 force channels; and
the windows are stitched back by a per-frame median over the windows covering each frame. Trials shorter
than one window are padded with masked frames, as the released tool does.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from gaitjax.data import channels as ch
from gaitjax.data.errors import GaitDataError
from gaitjax.diffusion.ddim import sample_chunked
from gaitjax.diffusion.schedule import make_schedule
from gaitjax.models.bundle import LoadedModel

MIN_FRAMES = 20  # velocities are low-pass filtered (filtfilt needs > 15 samples); the released floor is 20
_KIN = np.array(ch.KINEMATIC_IDX)
_FORCE = np.array(ch.KINETIC_IDX)

# Named body parts the user can mark unknown, and combinations joined by "+", e.g. "hips+knees".
BODY_PARTS = tuple(ch.BODY_PART_CHANNELS)
_ALIASES = {"hip": "hips", "knee": "knees", "ankle": "ankles", "lumbar": "trunk"}


def unknown_channels(parts: Sequence[str] | str) -> np.ndarray:
    """Kinematic channel indices hidden by named body parts or channel names.

    Args:
        parts: body parts ("trunk", "pelvis", "hips", "knees", "ankles", also singular, or "a+b"
            combinations) and/or model channel names (`channels.MODEL_CHANNELS`).

    Returns:
        Sorted unique channel indices.

    Raises:
        GaitDataError: an unknown name, or a selection that hides every kinematic channel.
    """
    names = [parts] if isinstance(parts, str) else list(parts)
    out: set[int] = set()
    for name in (n.strip() for raw in names for n in raw.split("+") if n.strip()):
        part = _ALIASES.get(name, name)
        if part in ch.BODY_PART_CHANNELS:
            out.update(ch.BODY_PART_CHANNELS[part])
        elif name in ch.CHANNEL_INDEX and ch.CHANNEL_INDEX[name] in ch.KINEMATIC_IDX:
            out.add(ch.CHANNEL_INDEX[name])
        else:
            raise GaitDataError(
                f"unknown body part or kinematic channel {name!r}; expected one of {list(BODY_PARTS)} "
                "(joined by '+') or a kinematic channel name of gaitjax.data.channels.MODEL_CHANNELS"
            )
    if len(out) == len(ch.KINEMATIC_IDX):
        raise GaitDataError("the mask hides every kinematic channel; at least one must be known")
    return np.array(sorted(out), dtype=np.int64)


def window_starts(n_frames: int, step: int, window_len: int = ch.WINDOW_LEN) -> np.ndarray:
    """Starts of windows every `step` frames that together cover all frames (the last may be partial).

    Raises:
        GaitDataError: fewer than MIN_FRAMES frames.
    """
    if n_frames < MIN_FRAMES:
        raise GaitDataError(
            f"trial has {n_frames} frames at 100 Hz; at least {MIN_FRAMES} (0.2 s) are needed to compute "
            "the velocity channels"
        )
    if step < 1:
        raise ValueError(f"window step must be positive, got {step}")
    last = max(n_frames - window_len, 0)
    starts = list(range(0, last + 1, step))
    if starts[-1] < last:
        starts.append(last)  # a final full window ending on the last frame
    return np.array(starts, dtype=np.int64)


def cut_windows(x_tc: np.ndarray, starts: np.ndarray, window_len: int = ch.WINDOW_LEN):
    """[T, C] -> windows [W, L, C] (zero-padded past the end) and valid rows [W, L]."""
    n_t, n_c = x_tc.shape
    out = np.zeros((len(starts), window_len, n_c), np.float32)
    valid = np.zeros((len(starts), window_len), bool)
    for w, s in enumerate(starts):
        stop = min(s + window_len, n_t)
        out[w, : stop - s] = x_tc[s:stop]
        valid[w, : stop - s] = True
    return out, valid


def stitch_median(
    windows_wlc: np.ndarray, valid_wl: np.ndarray, starts: np.ndarray, n_frames: int
) -> np.ndarray:
    """Per-frame median over the windows covering each frame (padded rows never count)."""
    n_w, n_l, n_c = windows_wlc.shape
    cover = np.zeros(n_frames, np.int64)
    for w, s in enumerate(starts):
        cover[s : s + int(valid_wl[w].sum())] += 1
    stack = np.full((int(cover.max()), n_frames, n_c), np.nan, np.float64)
    depth = np.zeros(n_frames, np.int64)
    for w, s in enumerate(starts):
        n = int(valid_wl[w].sum())
        rows = np.arange(s, s + n)
        stack[depth[rows], rows] = windows_wlc[w, :n]
        depth[rows] += 1
    return np.nanmedian(stack, axis=0)


@dataclasses.dataclass(frozen=True)
class ForceEstimate:
    """Result for one trial.

    Attributes:
        x_tc: [T, 63] un-normalised model states: known kinematics as given, unknown kinematics filled,
            force channels estimated.
        filled_c: [63] bool, kinematic channels that were filled.
        samples_stc: [S, T, 63] one entry per diffusion sample when n_samples > 1 (else None).
    """

    x_tc: np.ndarray
    filled_c: np.ndarray
    samples_stc: np.ndarray | None = None


@functools.lru_cache(maxsize=8)
def _refine_fn(module):
    """One jitted apply per refiner architecture (Flax modules hash by their fields)."""
    return jax.jit(lambda params, kin_btk: module.apply({"params": params}, kin_btk, deterministic=True))


def _refine(refiner: LoadedModel, x_wlc: np.ndarray, valid_wl: np.ndarray, batch: int) -> np.ndarray:
    """Refiner forces [W, L, 12] (un-normalised) from un-normalised windows; padded rows are masked to 0."""
    norm = refiner.normalizer
    apply = _refine_fn(refiner.module)
    x_n = np.asarray(norm.transform(x_wlc), np.float32)
    kin = x_n[..., _KIN] * valid_wl[..., None]  # the released input is x·mask
    out = np.zeros(x_wlc.shape[:2] + (len(_FORCE),), np.float32)
    n_w = x_wlc.shape[0]
    for lo in range(0, n_w, batch):
        chunk = kin[lo : lo + batch]
        pad = batch - chunk.shape[0] if n_w > batch else 0
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], np.float32)])
        out[lo : lo + batch] = np.asarray(apply(refiner.params, jnp.asarray(chunk)))[: min(batch, n_w - lo)]
    full = np.zeros_like(x_n)
    full[..., _FORCE] = out
    return np.asarray(norm.inverse(full), np.float32)[..., _FORCE]


def fill_kinematics(
    x_wlc: np.ndarray,
    known_wlc: np.ndarray,
    *,
    method: Literal["diffusion", "median"],
    denoiser: LoadedModel | None,
    key: jax.Array,
    window_ids: np.ndarray,
    batch: int,
    n_steps: int = 50,
) -> np.ndarray:
    """Un-normalised windows with every unknown entry filled (known entries unchanged, bit for bit).

    Args:
        x_wlc: [W, L, 63] un-normalised windows (unknown entries hold anything).
        known_wlc: [W, L, 63] bool, True where the value is known.
        method: "diffusion" (DDIM inpainting, 50 steps, eta 0) or "median" (the paper's baseline: the
            training mid-range, i.e. 0 in normalised space).
        denoiser: the diffusion model (its normaliser defines the normalised space).
        key, window_ids: sampling key and one id per window (noise depends only on these).
        batch: windows per jitted sampler call.
        n_steps: DDIM steps.
    """
    if denoiser is None:
        raise GaitDataError(
            f"filling unknown kinematics ({method}) needs the denoiser, but the model has none"
        )
    norm = denoiser.normalizer
    x_n = np.asarray(norm.transform(x_wlc), np.float32)
    if method == "median":
        filled_n = np.where(known_wlc, x_n, 0.0)
    elif method == "diffusion":
        result = sample_chunked(
            denoiser.denoise_fn(),
            make_schedule(denoiser.schedule),
            known_btc=x_n,
            mask_btc=known_wlc,
            window_ids_b=window_ids,
            key=key,
            max_windows_per_call=batch,
            n_steps=n_steps,
            prediction=denoiser.prediction,
        )
        filled_n = np.asarray(result.x0_btc)
    else:
        raise ValueError(f"fill method must be 'diffusion' or 'median', got {method!r}")
    filled = np.asarray(norm.inverse(filled_n), np.float32)
    return np.where(known_wlc, x_wlc, filled)


def estimate_forces(
    x_tc: np.ndarray,
    unknown_c: Sequence[int] | np.ndarray = (),
    *,
    refiner: LoadedModel | None,
    denoiser: LoadedModel | None = None,
    fill: Literal["diffusion", "median"] = "diffusion",
    window_step: int = ch.WINDOW_LEN,
    key: jax.Array | None = None,
    n_samples: int = 1,
    batch: int = 32,
    n_steps: int = 50,
) -> ForceEstimate:
    """Forces (and missing kinematics) for one trial.

    Args:
        x_tc: [T, 63] un-normalised model states at 100 Hz; force channels are ignored.
        unknown_c: kinematic channel indices to treat as unknown (`unknown_channels`).
        refiner: the force refiner; None uses the diffusion model's own force channels (the paper's
            "diffusion alone" variant), which needs `denoiser`.
        denoiser: the diffusion model, needed when channels are unknown or refiner is None.
        fill: "diffusion" or "median" (see `fill_kinematics`).
        window_step: frames between window starts (150: the released tool; 15: the paper's evaluation).
        key: sampling key (default key(0)); window w of sample s uses id s * n_windows + w.
        n_samples: diffusion samples per window (> 1 only with unknown channels or refiner=None).
        batch: windows per jitted call.
        n_steps: DDIM steps.

    Returns:
        ForceEstimate (median over samples in x_tc; every sample in samples_stc when n_samples > 1).
    """
    x_tc = np.asarray(x_tc, np.float32)
    if x_tc.ndim != 2 or x_tc.shape[1] != ch.N_CHANNELS:
        raise GaitDataError(f"model states must be [T, {ch.N_CHANNELS}], got shape {x_tc.shape}")
    unknown_c = np.asarray(unknown_c, np.int64)
    if np.isin(unknown_c, _FORCE).any():
        raise GaitDataError("unknown_c must list kinematic channels only (forces are always estimated)")
    key = jax.random.key(0) if key is None else key
    n_t = x_tc.shape[0]
    starts = window_starts(n_t, window_step)
    x_wlc, valid_wl = cut_windows(x_tc, starts)
    known_c = np.ones(ch.N_CHANNELS, bool)
    known_c[unknown_c] = False
    known_c[_FORCE] = False
    needs_diffusion = len(unknown_c) > 0 or refiner is None
    n_samples = n_samples if needs_diffusion else 1
    filled_c = ~known_c
    filled_c[_FORCE] = False

    samples = []
    for s in range(n_samples):
        windows = x_wlc
        if needs_diffusion:
            known_wlc = known_c[None, None, :] & valid_wl[..., None]
            ids = s * len(starts) + np.arange(len(starts))
            method = "diffusion" if refiner is None else fill
            windows = fill_kinematics(
                x_wlc, known_wlc, method=method, denoiser=denoiser, key=key, window_ids=ids, batch=batch,
                n_steps=n_steps,
            )  # fmt: skip
        if refiner is not None:
            windows = windows.copy()
            windows[..., _FORCE] = _refine(refiner, windows, valid_wl, batch)
        samples.append(stitch_median(windows, valid_wl, starts, n_t))
    stack = np.stack(samples).astype(np.float32)
    x_out = np.median(stack, axis=0) if n_samples > 1 else stack[0]
    x_out[:, known_c] = x_tc[:, known_c]
    return ForceEstimate(x_tc=x_out, filled_c=filled_c, samples_stc=stack if n_samples > 1 else None)
