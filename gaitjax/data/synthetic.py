"""SYNTHETIC gait source: parametric walking and running on the generic Rajagopal model. NOT HUMAN DATA.

Every array made here is invented, so demos and unit tests run on a machine without any real gait data;
a store written here is flagged `synthetic=True` and its studies are called "synthetic_a", "synthetic_b", ...
Nothing learned or measured on it says anything about people.

Design (one trial, all parameters drawn from a numpy Generator, so a seed fixes everything):
- Subject: height 1.5-1.95 m, mass = BMI(19-28)·height² clipped to 50-95 kg. The generic Rajagopal model
  (shipped in the nimblephysics wheel; 1.70 m) is scaled uniformly: positions = height/1.70 · generic FK.
- Gait: walk 0.8-1.8 m/s or run 2.5-4.5 m/s; stride frequency and duty factor (stance fraction of a stride)
  from speed; stride frequency also ∝ 1/sqrt(height). Overground (progression at the speed along a random
  heading within ±45°, so yaw alignment has work to do) or treadmill (no progression, belt speed known).
- Kinematics: each coordinate is a few Fourier harmonics of the stride phase. Hip flexion, knee angle and
  ankle angle come from textbook keypoints (Rajagopal signs: flexion and dorsiflexion positive; the model's
  knee_angle range is [0, 120°], so the knee stays ≥ 0), time-warped so toe-off falls at the duty factor;
  pelvis, hip ad/rotation, subtalar and lumbar are small sinusoids. Amplitudes, phases and offsets are
  randomised per trial; the left leg is the right one half a stride later. Arms stay at their defaults.
- Forces, from physics on the model. Each foot carries a smooth stance profile (vertical double hump for
  walking, a single hump for running; braking-then-propulsion fore-aft; small medial force), zero in swing,
  scaled so the mean vertical force over a stride is body weight. The whole-body centre of mass (COM,
  mass-weighted body COMs from our JAX forward kinematics) is made to follow the path whose acceleration
  is exactly (F_r + F_l)/m − g: the periodic part is integrated twice in Fourier space, and the pelvis
  translation is solved as target COM − FK COM with the pelvis at the origin. Hence GRF = m·(a_COM + g)
  holds for the output kinematics: the forces are a deterministic, learnable function of the motion, and
  zero in flight. The ground plane is set so the stance heel sits at a plausible height.
- COP: on the ground (y = 0) under each foot, moving from near the calcaneus origin to just past the toes
  (mtp) origin over stance, from FK of calcn and toes.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
from scipy.interpolate import CubicSpline

from gaitjax.data import channels as ch
from gaitjax.data import representation, rotation
from gaitjax.data.errors import GaitDataError

GRAVITY_M_S2 = 9.81
GENERIC_HEIGHT_M = 1.70  # stature of the unscaled Rajagopal 2015 model
FS_HZ = 100.0
HEEL_HEIGHT_M = 0.035  # calcaneus origin above the floor in flat stance, generic model (scaled with height)
MAX_FRAMES = 800  # 8 s at 100 Hz; FK is padded to this so it compiles once
_GRID = 512  # phase samples per stride for the force integration
_N_HARMONICS = 6  # harmonics kept of each keypoint pattern
_COORD = {n: i for i, n in enumerate(ch.OSIM_DOF_COLUMNS)}

# One leg's sagittal patterns (degrees, Rajagopal signs), keypoints (phase from heel strike, value); the
# first entry is the template's toe-off phase, which is warped onto the trial's duty factor.
_SAGITTAL = {
    "walk": (
        0.62,
        {
            "hip_flexion": ((0.0, 28), (0.12, 24), (0.3, 8), (0.5, -10), (0.62, -2), (0.75, 22), (0.87, 32)),
            "knee_angle": ((0.0, 4), (0.14, 17), (0.4, 5), (0.62, 38), (0.72, 60), (0.85, 35), (0.95, 6)),
            "ankle_angle": ((0.0, 0), (0.07, -6), (0.3, 6), (0.48, 10), (0.62, -15), (0.72, -10), (0.88, 1)),
        },
    ),
    "run": (
        0.38,
        {
            "hip_flexion": ((0.0, 36), (0.19, 16), (0.38, -8), (0.55, 6), (0.8, 50), (0.92, 44)),
            "knee_angle": ((0.0, 20), (0.15, 40), (0.38, 18), (0.6, 100), (0.75, 80), (0.93, 24)),
            "ankle_angle": ((0.0, 4), (0.15, 20), (0.38, -22), (0.55, -10), (0.8, 6), (0.93, 5)),
        },
    ),
}
# Smaller motions: (mean deg, ((harmonic, amplitude deg, phase rad), ...)); value = Σ a·cos(2πkφ + phase).
# Whole-body coordinates use the right leg's phase; per-leg ones (no suffix) each leg's own phase.
_BODY = {
    "pelvis_tilt": (-3.0, ((2, 2.0, 0.3),)),
    "pelvis_list": (0.0, ((1, 4.0, 1.6),)),
    "pelvis_rotation": (0.0, ((1, 5.0, 0.0),)),
    "lumbar_extension": (0.0, ((2, 2.0, -0.4),)),
    "lumbar_bending": (0.0, ((1, 3.0, -1.4),)),
    "lumbar_rotation": (0.0, ((1, 3.0, np.pi),)),
}
_LEG = {
    "hip_adduction": (0.0, ((1, 5.0, -0.9), (2, 1.5, 0.5))),
    "hip_rotation": (0.0, ((1, 4.0, 0.5),)),
    "subtalar_angle": (0.0, ((1, 3.0, 1.0),)),
}


@dataclasses.dataclass(frozen=True)
class SyntheticTrial:
    """One SYNTHETIC trial in the ground frame (x forward at heading 0, y up, z right); feet ordered (r, l).

    Attributes:
        coords_tc: [T, 23] coordinates in channels.OSIM_DOF_COLUMNS order (rad; pelvis_t* in m).
        grf_n: [T, 2, 3] ground reaction force per foot, N.
        cop_m: [T, 2, 3] centre of pressure per foot on the floor (y = 0), m.
        calcn_m: [T, 2, 3] calcaneus body origins from FK, m.
        toes_m: [T, 2, 3] toes body origins (mtp joint centres) from FK, m.
        com_m: [T, 3] whole-body centre of mass from FK, m.
        mass_kg: body mass, kg.
        height_m: stature, m.
        meta: generating parameters (gait, speed_m_s, stride_hz, duty, treadmill, belt_speed_m_s,
            heading_rad, phase0, synthetic=True).
    """

    coords_tc: np.ndarray
    grf_n: np.ndarray
    cop_m: np.ndarray
    calcn_m: np.ndarray
    toes_m: np.ndarray
    com_m: np.ndarray
    mass_kg: float
    height_m: float
    meta: dict[str, Any]


def rajagopal_osim_path() -> Path:
    """Path of the generic Rajagopal 2015 model inside the installed nimblephysics wheel.

    Raises:
        GaitDataError: nimblephysics is not installed or its wheel lacks the model.
    """
    spec = importlib.util.find_spec("nimblephysics")
    if spec is None or not spec.submodule_search_locations:
        raise GaitDataError(
            "the synthetic gait source needs the Rajagopal2015.osim model shipped with nimblephysics, "
            "which is not installed (pip install nimblephysics)"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    path = folder / "models" / "rajagopal_data" / "Rajagopal2015.osim"
    if not path.is_file():
        raise GaitDataError("nimblephysics is installed but its generic Rajagopal model is missing", path)
    return path


@functools.cache
def _model_fk():
    """(skeleton, jitted FK [T, n_coords] -> COM [T, 3], calcn [T, 2, 3], toes [T, 2, 3]); the only JAX."""
    import jax

    from gaitjax.data.osim import parse_osim
    from gaitjax.skeleton import fk
    from gaitjax.skeleton.tree import build_skeleton

    skel = build_skeleton(parse_osim(rajagopal_osim_path()))
    idx = skel.body_index
    feet = np.array([[idx["calcn_r"], idx["calcn_l"]], [idx["toes_r"], idx["toes_l"]]])

    def frames(q_tn):  # FK is batched over leading axes, so one jit covers all frames
        out = fk.forward_kinematics(skel, fk.apply_couplers(skel, q_tn))
        return fk.whole_body_com_m(skel, out), out.body_pos_m[:, feet[0]], out.body_pos_m[:, feet[1]]

    return skel, jax.jit(frames)


def _fk(q_tn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generic-model FK of [T, n_coords] poses (T ≤ MAX_FRAMES), padded so one compilation serves all."""
    _, fk = _model_fk()
    n_t = q_tn.shape[0]
    padded = np.concatenate([q_tn, np.repeat(q_tn[-1:], MAX_FRAMES - n_t, axis=0)])
    com, calcn, toes = (np.asarray(a, np.float64)[:n_t] for a in fk(padded))
    return com, calcn, toes


def _keypoint_harmonics(points, toe_off_template: float, duty: float) -> np.ndarray:
    """Harmonics c[0..K] (value = Re Σ c_k e^{2πikφ}) of a periodic spline through time-warped keypoints."""
    phase = np.array([p for p, _ in points], np.float64)
    value = np.deg2rad([v for _, v in points])
    warped = np.where(
        phase <= toe_off_template,
        phase / toe_off_template * duty,
        duty + (phase - toe_off_template) / (1 - toe_off_template) * (1 - duty),
    )
    spline = CubicSpline(np.append(warped, 1.0), np.append(value, value[0]), bc_type="periodic")
    spectrum = np.fft.rfft(spline(np.arange(256) / 256)) / 256
    spectrum[1:] *= 2
    return spectrum[: _N_HARMONICS + 1]


def _sinusoid_harmonics(mean_deg: float, terms, scale: float = 1.0) -> np.ndarray:
    c = np.zeros(_N_HARMONICS + 1, complex)
    c[0] = np.deg2rad(mean_deg)
    for k, amp, ph in terms:
        c[k] = np.deg2rad(amp) * scale * np.exp(1j * ph)
    return c


def _perturb(c: np.ndarray, rng: np.random.Generator, amp_sd: float, phase_sd: float, mean_sd_deg: float):
    k = c.shape[0] - 1
    out = c * (1 + amp_sd * rng.standard_normal(k + 1)) * np.exp(1j * phase_sd * rng.standard_normal(k + 1))
    out[0] = c[0].real + np.deg2rad(mean_sd_deg) * rng.standard_normal()
    return out


def _basis(phase_t: np.ndarray) -> np.ndarray:
    """[T, K+1] complex e^{2πikφ} for k = 0..K, shared by every pattern evaluated at these phases."""
    return np.exp(2j * np.pi * np.outer(phase_t, np.arange(_N_HARMONICS + 1)))


def _evaluate(c: np.ndarray, basis: np.ndarray) -> np.ndarray:
    return basis.real @ c.real - basis.imag @ c.imag


def _stance_fraction(phase_t: np.ndarray, duty: float) -> np.ndarray:
    """u in [0, 1) during stance (phase mod 1 < duty), NaN in swing."""
    p = np.mod(phase_t, 1.0)
    return np.where(p < duty, p / duty, np.nan)


def _foot_force(phase_t: np.ndarray, duty: float, side: float, shape: dict[str, float]) -> np.ndarray:
    """[T, 3] force per unit mass in the walking frame (x forward, y up, z right); side +1 right, -1 left."""
    u = _stance_fraction(phase_t, duty)
    hump = np.sin(np.pi * u)
    dip = shape["dip"] * np.sin(3 * np.pi * u)  # walking's mid-stance dip between two humps
    vert = shape["scale"] * (hump * (1 + shape["skew"] * np.cos(np.pi * u)) + dip)
    fore = -shape["fore"] * np.sin(2 * np.pi * u) * hump
    lateral = -side * shape["medial"] * hump
    return np.nan_to_num(np.stack([fore, vert, lateral], axis=-1))


def _force_shape(gait: str, duty: float, rng: np.random.Generator) -> dict[str, float]:
    """Random profile shape, scaled so the stride-mean vertical force of both feet is g (N/kg)."""
    walk = gait == "walk"
    shape = {
        "scale": 1.0,
        "skew": rng.uniform(-0.15, 0.15),
        "dip": rng.uniform(0.25, 0.4) if walk else 0.0,
        "fore": 0.0,
        "medial": 0.0,
    }
    grid = np.arange(_GRID) / _GRID
    mean_vert = np.mean(_foot_force(grid, duty, 1.0, shape)[:, 1]) * 2
    shape["scale"] = GRAVITY_M_S2 / mean_vert
    peak = np.max(_foot_force(grid, duty, 1.0, shape)[:, 1])
    shape["fore"] = peak * (rng.uniform(0.15, 0.22) if walk else rng.uniform(0.12, 0.18))
    shape["medial"] = peak * rng.uniform(0.03, 0.07)
    return shape


def _com_oscillation(phase_t: np.ndarray, stride_hz: float, duty: float, shape: dict) -> np.ndarray:
    """[T, 3] periodic COM displacement (walking frame, zero stride mean) whose acceleration is ΣF/m − g."""
    grid = np.arange(_GRID) / _GRID
    acc = _foot_force(grid, duty, 1.0, shape) + _foot_force(grid + 0.5, duty, -1.0, shape)
    acc[:, 1] -= GRAVITY_M_S2
    spectrum = np.fft.rfft(acc, axis=0)
    k = np.arange(spectrum.shape[0])
    spectrum[1:] /= -((2 * np.pi * k[1:] * stride_hz) ** 2)[:, None]
    spectrum[0] = spectrum[-1] = 0.0  # zero stride mean; no Nyquist term
    disp = np.fft.irfft(spectrum, n=_GRID, axis=0)
    spline = CubicSpline(np.append(grid, 1.0), np.concatenate([disp, disp[:1]]), bc_type="periodic")
    return spline(np.mod(phase_t, 1.0))


def _subject(rng: np.random.Generator) -> tuple[float, float]:
    height = rng.uniform(1.5, 1.95)
    return height, float(np.clip(rng.uniform(19.0, 28.0) * height**2, 50.0, 95.0))


def generate_trial(
    rng: np.random.Generator,
    *,
    gait: str | None = None,
    treadmill: bool | None = None,
    duration_s: float | None = None,
    height_m: float | None = None,
    mass_kg: float | None = None,
) -> SyntheticTrial:
    """Draws one SYNTHETIC trial (see the module docstring for the model).

    Args:
        rng: source of every random choice; the same generator state gives the same trial.
        gait: "walk" or "run" (None: either, equally likely).
        treadmill: treadmill (no progression) or overground (None: treadmill with probability 0.4).
        duration_s: trial length in s, 1.5-8 (None: uniform 3-8 s).
        height_m, mass_kg: subject (None: drawn as in the module docstring).

    Returns:
        A SyntheticTrial at 100 Hz.
    """
    gait = gait or ("walk" if rng.random() < 0.5 else "run")
    if gait not in _SAGITTAL:
        raise GaitDataError(f"gait must be 'walk' or 'run', got {gait!r}")
    if treadmill is None:
        treadmill = bool(rng.random() < 0.4)
    duration_s = rng.uniform(3.0, 8.0) if duration_s is None else duration_s
    n_t = int(round(duration_s * FS_HZ))
    if not 150 <= n_t <= MAX_FRAMES:
        raise GaitDataError(f"duration_s must give 150-{MAX_FRAMES} frames at 100 Hz, got {duration_s} s")
    if height_m is None or mass_kg is None:
        height_m, mass_kg = _subject(rng)
    scale = height_m / GENERIC_HEIGHT_M
    walk = gait == "walk"
    speed = rng.uniform(0.8, 1.8) if walk else rng.uniform(2.5, 4.5)
    stride_hz = (0.53 + 0.35 * speed if walk else 1.25 + 0.05 * speed) / np.sqrt(scale)
    stride_hz *= rng.uniform(0.95, 1.05)
    duty = (0.68 - 0.05 * speed if walk else 0.45 - 0.04 * speed) + rng.uniform(-0.02, 0.02)
    heading = rng.uniform(-np.pi / 4, np.pi / 4)
    phase0 = rng.uniform()
    time_s = np.arange(n_t) / FS_HZ
    phase_r = phase0 + stride_hz * time_s
    phases = {"r": phase_r, "l": phase_r + 0.5}
    bases = {side: _basis(phase) for side, phase in phases.items()}

    skel, _ = _model_fk()
    names = skel.coordinate_index
    q = np.repeat(skel.default_q[None], n_t, axis=0)
    toe_off, patterns = _SAGITTAL[gait]
    for joint, points in patterns.items():
        base = _perturb(_keypoint_harmonics(points, toe_off, duty), rng, 0.08, 0.05, 2.0)
        for side in phases:
            q[:, names[f"{joint}_{side}"]] = _evaluate(_perturb(base, rng, 0.03, 0.02, 0.5), bases[side])
    for joint, (mean, terms) in _LEG.items():
        base = _perturb(_sinusoid_harmonics(mean, terms), rng, 0.2, 0.2, 1.5)
        for side in phases:
            q[:, names[f"{joint}_{side}"]] = _evaluate(base, bases[side])
    for name, (mean, terms) in _BODY.items():
        c = _perturb(_sinusoid_harmonics(mean, terms, 1.0 if walk else 1.5), rng, 0.2, 0.2, 2.0)
        q[:, names[name]] = _evaluate(c, bases["r"])
    for side in "rl":  # keep the knee inside the model's range [0, 2.09 rad]
        knee = q[:, names[f"knee_angle_{side}"]]
        knee += max(0.0, np.deg2rad(1.0) - knee.min())
    pelvis = [names[n] for n in ch.JOINTS_3D["pelvis"]]
    heading_rot = rotation.axis_rotation("Y", heading)
    q[:, pelvis] = rotation.matrix_to_euler_zxy(heading_rot @ rotation.euler_zxy_to_matrix(q[:, pelvis]))
    translation = [names[n] for n in ch.TRANSLATION_COLUMNS]
    q[:, translation] = 0.0
    com0, calcn, toes = (scale * a for a in _fk(q))

    shape = _force_shape(gait, duty, rng)
    force = np.stack([_foot_force(phases[s], duty, sign, shape) for s, sign in (("r", 1.0), ("l", -1.0))], 1)
    com = _com_oscillation(phase_r, stride_hz, duty, shape)
    if not treadmill:
        com[:, 0] += speed * time_s
    com = com @ heading_rot.T
    stance_w = force[:, :, 1] / np.maximum(force[:, :, 1].sum(), 1e-12)
    heel_y = calcn[:, :, 1] + (com[:, 1] - com0[:, 1])[:, None]  # before the floor is placed
    com[:, 1] += HEEL_HEIGHT_M * scale - np.sum(stance_w * heel_y)
    pelvis_pos = com - com0
    q[:, translation] = pelvis_pos
    calcn, toes = calcn + pelvis_pos[:, None], toes + pelvis_pos[:, None]

    u = np.nan_to_num(np.stack([_stance_fraction(phases[s], duty) for s in "rl"], 1))[..., None]
    start = rng.uniform(0.0, 0.15) if walk else rng.uniform(0.2, 0.5)
    cop = calcn + (start + (rng.uniform(1.05, 1.2) - start) * u) * (toes - calcn)
    cop[..., 1] = 0.0
    meta = {
        "synthetic": True,
        "gait": gait,
        "speed_m_s": float(speed),
        "stride_hz": float(stride_hz),
        "duty": float(duty),
        "treadmill": treadmill,
        "belt_speed_m_s": float(speed) if treadmill else 0.0,
        "heading_rad": float(heading),
        "phase0": float(phase0),
    }
    return SyntheticTrial(
        coords_tc=q[:, [names[c] for c in ch.OSIM_DOF_COLUMNS]],
        grf_n=force @ heading_rot.T * mass_kg,
        cop_m=cop,
        calcn_m=calcn,
        toes_m=toes,
        com_m=com,
        mass_kg=float(mass_kg),
        height_m=float(height_m),
        meta=meta,
    )


def study_names(n_studies: int) -> tuple[str, ...]:
    """ "synthetic_a", "synthetic_b", ... (at most 26)."""
    if not 1 <= n_studies <= 26:
        raise GaitDataError(f"n_studies must be 1-26, got {n_studies}")
    return tuple(f"synthetic_{chr(ord('a') + i)}" for i in range(n_studies))


def trial_to_model_states(trial: SyntheticTrial) -> tuple[np.ndarray, np.ndarray]:
    """Yaw-aligns a SYNTHETIC trial and converts it to the 63 model channels, as real trials are.

    Args:
        trial: from `generate_trial`.

    Returns:
        (x_tc [T, 63] float32 un-normalised model states, pos_vec_m [3] aligned frame-0 pelvis position).
    """
    from gaitjax.data import preprocess

    pelvis = [_COORD[n] for n in ch.JOINTS_3D["pelvis"]]
    translation = [_COORD[n] for n in ch.TRANSLATION_COLUMNS]
    coords = trial.coords_tc.copy()
    m, _ = preprocess.yaw_alignment(coords[:, pelvis])
    coords[:, pelvis], coords[:, translation], grf_n, _ = preprocess.apply_yaw(
        m, coords[:, pelvis], coords[:, translation], trial.grf_n
    )
    belt = -trial.meta["belt_speed_m_s"] if trial.meta["treadmill"] else None
    states = representation.osim_to_model_states(
        coords,
        grf_n / trial.mass_kg,
        trial.cop_m @ m.T,
        trial.calcn_m @ m.T,
        trial.height_m,
        trial.mass_kg,
        fs=FS_HZ,
        belt_speed_m_s=belt,
    )
    return states.x_tc.astype(np.float32), states.pos_vec_m


def write_synthetic_store(
    out_dir: str | Path, *, n_trials: int = 32, seed: int = 0, n_studies: int = 3
) -> Path:
    """Generates SYNTHETIC trials and writes them as a training store flagged `synthetic=True`.

    Trial i belongs to study i mod n_studies and to one of 3 subjects of that study (a subject keeps its
    height and mass across trials); each trial draws from `np.random.default_rng([seed, i])`, so the store
    is deterministic given the seed and trial i does not depend on n_trials.

    Args:
        out_dir: the store directory (created or replaced).
        n_trials: number of trials.
        seed: root seed.
        n_studies: number of studies ("synthetic_a", ...), for study-uniform sampling.

    Returns:
        The store directory.
    """
    from gaitjax.data.store import StoreWriter, TrialMeta

    studies = study_names(n_studies)
    info = {"generator": "gaitjax.data.synthetic", "seed": seed, "n_trials": n_trials}
    info["note"] = "SYNTHETIC gait from a parametric model, NOT HUMAN DATA"
    with StoreWriter(out_dir, kind="train", synthetic=True, info=info) as writer:
        for i in range(n_trials):
            study, subject = i % n_studies, (i // n_studies) % 3
            height_m, mass_kg = _subject(np.random.default_rng([seed, study, subject, 1]))
            trial = generate_trial(np.random.default_rng([seed, i]), height_m=height_m, mass_kg=mass_kg)
            x_tc, pos_vec_m = trial_to_model_states(trial)
            meta = TrialMeta(
                study=studies[study],
                subject=f"{studies[study]}_subject{subject}",
                trial=f"trial{i:03d}_{trial.meta['gait']}",
                source=f"synthetic:seed={seed}",
                mass_kg=trial.mass_kg,
                height_m=trial.height_m,
                rate_hz=FS_HZ,
                extra={**trial.meta, "pos_vec_m": [float(v) for v in pos_vec_m]},
            )
            writer.add_trial(meta, x_tc, np.ones(x_tc.shape[0], bool))
    return Path(out_dir)
