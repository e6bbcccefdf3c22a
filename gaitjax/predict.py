"""`gaitjax predict`: ground reaction forces (and any missing kinematics) for OpenSim IK files.

    gaitjax predict --model DIR --osim subject.osim [--mass KG --height M] [--treadmill-speed M_S]
                    [--unknown hips,knee_angle_r,...] [--samples N] trial1.mot ... --out OUTDIR

Per trial: coordinates to radians (rotational columns only), 100 Hz, yaw alignment (skipped with a warning
when the heading turns more than 45 degrees, as the released tool does), the 63 model channels, missing
kinematics filled by diffusion inpainting, forces from the refiner over 150-frame windows, then everything
back to OpenSim quantities at the trial's own frames. A trial needs at least 20 frames at 100 Hz (0.2 s);
shorter than one window (1.5 s) is padded with masked frames. Outputs per trial in OUTDIR:
`<trial>_grf.mot` + `<trial>_external_loads.xml` (for OpenSim inverse dynamics), `<trial>_grf.png`,
`<trial>_summary.json`, and `<trial>_kinematics_filled.mot` when anything was filled; `summary.csv` lists
every trial with its outcome. A bad file is reported by name with the reason; the others still run.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gaitjax.data import channels as ch
from gaitjax.data import preprocess
from gaitjax.data.errors import GaitDataError
from gaitjax.data.osim import parse_osim
from gaitjax.data.representation import model_states_to_osim, osim_to_model_states
from gaitjax.data.storage import read_storage, to_radians, write_storage
from gaitjax.tasks import outputs
from gaitjax.tasks.forces import BODY_PARTS, MIN_FRAMES, estimate_forces, unknown_channels

_COORD = {n: i for i, n in enumerate(ch.OSIM_DOF_COLUMNS)}
_PELVIS = [_COORD[n] for n in ch.JOINTS_3D["pelvis"]]
_PELVIS_T = [_COORD[n] for n in ch.TRANSLATION_COLUMNS]
STANCE_MIN_N = 20.0  # the released tool's COP threshold, also used here to find stances


def coordinate_channels(coordinate: str) -> list[int]:
    """Model channels computed from one OpenSim coordinate (empty for the frozen mtp angles)."""
    if coordinate in ch.FROZEN_DOFS:
        return []
    if coordinate in ch.TRANSLATION_COLUMNS:
        return [ch.CHANNEL_INDEX[coordinate]]  # the pelvis velocity channel of that axis
    if coordinate in ch.ONE_DOF_COLUMNS:
        return [ch.CHANNEL_INDEX[coordinate], ch.CHANNEL_INDEX[f"{coordinate}_vel"]]
    for joint, names in ch.JOINTS_3D.items():
        if coordinate in names:
            return list(ch.SIX_D_IDX[joint]) + list(ch.ANGULAR_VEL_IDX[joint])
    raise GaitDataError(f"{coordinate!r} is not one of the model's coordinates {list(ch.OSIM_DOF_COLUMNS)}")


@dataclasses.dataclass(frozen=True, eq=False)
class Subject:
    """The user's model: coordinate motion types, skeleton (for calcaneus FK), mass and height."""

    osim_path: Path
    motion_types: dict[str, str]
    skeleton: object
    mass_kg: float
    height_m: float

    @classmethod
    def load(cls, osim_path: str | Path, mass_kg: float | None, height_m: float | None) -> Subject:
        from gaitjax.data.prepare import estimate_height_m
        from gaitjax.skeleton.tree import build_skeleton

        model = parse_osim(osim_path)
        skeleton = build_skeleton(model)
        missing = [b for b in ("calcn_r", "calcn_l") if b not in skeleton.body_names]
        if missing:
            raise GaitDataError(
                f"model has no bodies {missing}; the forces are expressed at the calcanei", osim_path
            )
        mass = float(mass_kg) if mass_kg else model.total_mass_kg
        height = float(height_m) if height_m else estimate_height_m(skeleton)
        if not (20 <= mass <= 300 and 0.8 <= height <= 2.6):
            raise GaitDataError(
                f"mass {mass:.1f} kg / height {height:.2f} m look wrong; pass --mass and --height"
            )
        types = {n: c.motion_type for n, c in model.coordinates.items()}
        return cls(Path(osim_path), types, skeleton, mass, height)

    @property
    def signs(self) -> np.ndarray:
        """[23] +1/-1: the model's convention -> GaitDynamics' (see `gaitdynamics_signs`)."""
        from gaitjax.skeleton.tree import gaitdynamics_signs

        return gaitdynamics_signs(self.skeleton, ch.OSIM_DOF_COLUMNS)

    def calcn_fn(self):
        """coords [T, 23] (GaitDynamics order and convention) -> calcaneus origins [T, 2, 3] by our FK of the
        user's model."""
        from gaitjax.skeleton.fk import body_positions_fn
        from gaitjax.skeleton.tree import gaitdynamics_to_q

        sk = self.skeleton
        fk = body_positions_fn(sk, ("calcn_r", "calcn_l"))  # compiled once per model, not once per trial

        def calcn(coords_tc: np.ndarray) -> np.ndarray:
            return fk(gaitdynamics_to_q(sk, ch.OSIM_DOF_COLUMNS, coords_tc))

        return calcn


def _read_coordinates(mot: Path, subject: Subject) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """(time [N], coords [N, 23] rad/m with missing ones 0, missing coordinate names, ignored columns)."""
    table = read_storage(mot)
    known = [c for c in table.columns if c in subject.motion_types]
    ignored = [c for c in table.columns if c not in subject.motion_types]
    ours = [c for c in known if c in _COORD]
    if len(ours) < len(known) / 2 or not ours:
        raise GaitDataError(
            f"only {len(ours)} of its {len(table.columns)} columns are coordinates of the GaitDynamics model "
            f"(e.g. {list(ch.OSIM_DOF_COLUMNS[:4])}) and of {subject.osim_path.name}; columns not in the "
            ".osim: "
            f"{ignored[:6]}. Is this .mot for another model?",
            mot,
        )
    if len(ignored) > len(known):
        raise GaitDataError(
            f"{len(ignored)} of its {len(table.columns)} columns are not coordinates of "
            f"{subject.osim_path.name} "
            f"(e.g. {ignored[:6]}); is this .mot for another model?",
            mot,
        )
    sub = dataclasses.replace(
        table, columns=tuple(known), values=table.values[:, [table.columns.index(c) for c in known]]
    )
    sub = to_radians(sub, subject.motion_types)
    coords = np.zeros((table.n_frames, len(ch.OSIM_DOF_COLUMNS)))
    for k, name in enumerate(sub.columns):
        if name in _COORD:
            coords[:, _COORD[name]] = sub.values[:, k]
    coords *= subject.signs  # to the GaitDynamics convention (knee flexion positive)
    missing = [c for c in ch.OSIM_DOF_COLUMNS if c not in sub.columns and c not in ch.FROZEN_DOFS]
    return table.time_s, coords, missing, ignored


def _unknown_from_user(items: Sequence[str]) -> list[int]:
    out: list[int] = []
    for item in items:
        out += coordinate_channels(item) if item in _COORD else list(unknown_channels(item))
    return out


def _stances(fy_n: np.ndarray, min_frames: int = 10) -> list[tuple[int, int]]:
    on = fy_n > STANCE_MIN_N
    edges = np.flatnonzero(np.diff(on.astype(int))) + 1
    bounds = np.concatenate([[0], edges, [on.size]])
    return [
        (int(a), int(b))
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        if on[a] and b - a >= min_frames
    ]


def _summary(time_s: np.ndarray, grf_n: np.ndarray, mass_kg: float) -> dict:
    bw = mass_kg * 9.81
    out: dict = {"stances": {}}
    strikes = 0
    for k, side in enumerate(("right", "left")):
        st = _stances(grf_n[:, k, 1])
        out["stances"][side] = [
            {
                "start_s": float(time_s[a]),
                "end_s": float(time_s[b - 1]),
                "peak_vertical_bw_percent": float(grf_n[a:b, k, 1].max() / bw * 100),
            }
            for a, b in st
        ]
        strikes += sum(1 for a, _ in st if a > 0)  # a stance already under way at the start is no strike
    duration = float(time_s[-1] - time_s[0])
    out["cadence_steps_per_min"] = strikes / duration * 60 if duration > 0 and strikes else None
    return out


def predict_trial(
    mot: Path,
    subject: Subject,
    bundle,
    out_dir: Path,
    *,
    treadmill_speed_m_s: float = 0.0,
    unknown: Sequence[str] = (),
    n_samples: int = 1,
    seed: int = 0,
) -> dict:
    """Runs one trial and writes its outputs; returns its summary row."""
    import jax

    time_s, coords_src, missing, ignored = _read_coordinates(mot, subject)
    t100, coords = preprocess.resample_to_100hz(time_s, coords_src)
    if coords.shape[0] < MIN_FRAMES:
        raise GaitDataError(
            f"{coords.shape[0]} frames at 100 Hz ({time_s[-1] - time_s[0]:.3f} s); at least {MIN_FRAMES} "
            f"frames ({MIN_FRAMES / 100:.2f} s) are needed",
            mot,
        )
    m_yaw, heading_range = preprocess.yaw_alignment(coords[:, _PELVIS])
    warnings = []
    if np.degrees(heading_range) > 45:
        warnings.append(f"heading turns {np.degrees(heading_range):.0f} deg (> 45): yaw alignment skipped")
        m_yaw = np.eye(3)
    euler, pos, _, _ = preprocess.apply_yaw(m_yaw, coords[:, _PELVIS], coords[:, _PELVIS_T])
    coords[:, _PELVIS], coords[:, _PELVIS_T] = euler, pos
    zeros = np.zeros((coords.shape[0], 2, 3))
    states = osim_to_model_states(
        coords,
        zeros,
        zeros,
        zeros,
        subject.height_m,
        subject.mass_kg,
        fs=100.0,
        belt_speed_m_s=-treadmill_speed_m_s,
    )
    unknown_c = sorted(
        {c for name in missing for c in coordinate_channels(name)} | set(_unknown_from_user(unknown))
    )
    if unknown_c and bundle.denoiser is None:
        raise GaitDataError(
            f"channels for {missing + list(unknown)} must be filled, but the model has no denoiser", mot
        )
    est = estimate_forces(
        states.x_tc,
        unknown_c,
        refiner=bundle.refiner,
        denoiser=bundle.denoiser,
        n_samples=n_samples,
        key=jax.random.key(seed),
    )
    calcn = subject.calcn_fn()
    runs = [est.x_tc] if est.samples_stc is None else list(est.samples_stc)
    inv = [
        model_states_to_osim(
            x, subject.height_m, subject.mass_kg, calcn, states.pos_vec_m, treadmill_speed_m_s
        )
        for x in runs
    ]

    def back(a_tk3):  # aligned frame -> lab frame, then onto the trial's own times
        lab = a_tk3 @ m_yaw  # v_lab = M^T v  <=>  row vectors times M
        return np.stack(
            [np.interp(time_s, t100, lab[:, k, i]) for k in range(2) for i in range(3)], -1
        ).reshape(-1, 2, 3)

    grf_all = np.stack([back(o.grf_n) for o in inv])
    cop_all = np.stack([back(o.cop_m) for o in inv])
    grf_n, cop_m = grf_all.mean(0), cop_all.mean(0)
    fy = grf_n[..., 1:2]
    cop_m = np.where(fy > STANCE_MIN_N, cop_m, 0.0)
    stem = mot.stem
    out_dir.mkdir(parents=True, exist_ok=True)
    grf_path = outputs.write_grf_mot(out_dir / f"{stem}_grf.mot", time_s, grf_n, cop_m, name=f"{stem}_grf")
    outputs.write_external_loads(out_dir / f"{stem}_external_loads.xml", grf_path)
    sd = grf_all.std(0) if len(inv) > 1 else None
    if sd is not None:
        outputs.write_grf_mot(
            out_dir / f"{stem}_grf_sd.mot", time_s, sd, np.zeros_like(sd), name=f"{stem}_grf_sd"
        )
    filled_names = ", ".join(missing + list(unknown))
    title = f"{stem}: predicted GRF ({'filled: ' + filled_names if unknown_c else 'full kinematics'})"
    outputs.plot_forces(out_dir / f"{stem}_grf.png", time_s, grf_n, subject.mass_kg, title, sd)
    if unknown_c:
        filled = np.median(np.stack([o.coords_tc for o in inv]), 0)
        eul, lab_pos, _, _ = preprocess.apply_yaw(m_yaw.T, filled[:, _PELVIS], filled[:, _PELVIS_T])
        filled[:, _PELVIS], filled[:, _PELVIS_T] = eul, lab_pos
        out = np.stack([np.interp(time_s, t100, filled[:, j]) for j in range(filled.shape[1])], -1)
        known = [j for j, n in enumerate(ch.OSIM_DOF_COLUMNS) if n not in missing and n not in ch.FROZEN_DOFS]
        out[:, known] = coords_src[:, known]  # measured coordinates are written as measured
        out *= subject.signs  # back to the model's own convention
        write_storage(
            out_dir / f"{stem}_kinematics_filled.mot",
            ch.OSIM_DOF_COLUMNS,
            time_s,
            out,
            in_degrees=False,
            name=f"{stem}_kinematics_filled",
        )
    summary = _summary(time_s, grf_n, subject.mass_kg)
    summary.update(
        trial=str(mot),
        mass_kg=subject.mass_kg,
        height_m=subject.height_m,
        treadmill_speed_m_s=treadmill_speed_m_s,
        filled_coordinates=missing,
        user_unknown=list(unknown),
        ignored_columns=ignored,
        warnings=warnings,
        n_samples=n_samples,
        model=str(bundle.path),
    )
    outputs.write_json(out_dir / f"{stem}_summary.json", summary)
    peaks = [s["peak_vertical_bw_percent"] for side in summary["stances"].values() for s in side]
    return {
        "trial": str(mot),
        "status": "ok",
        "reason": "; ".join(warnings),
        "frames": int(time_s.size),
        "filled": ",".join(missing + list(unknown)),
        "mean_peak_vertical_bw_percent": float(np.mean(peaks)) if peaks else "",
        "cadence_steps_per_min": summary["cadence_steps_per_min"] or "",
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gaitjax predict", description=__doc__.splitlines()[0])
    parser.add_argument(
        "mot", nargs="+", type=Path, help="OpenSim IK .mot files (degrees or radians, any rate)"
    )
    parser.add_argument(
        "--model", required=True, help="gaitjax bundle (convert-torch) or train.py workdir(s)"
    )
    parser.add_argument("--osim", required=True, type=Path, help="the subject's scaled OpenSim model")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--mass", type=float, help="body mass, kg (default: the .osim total)")
    parser.add_argument(
        "--height", type=float, help="height, m (default: estimated from the .osim leg length)"
    )
    parser.add_argument("--treadmill-speed", type=float, default=0.0, help="belt speed, m/s (0: overground)")
    parser.add_argument(
        "--unknown", default="", help=f"comma-separated coordinates or body parts {list(BODY_PARTS)} to fill"
    )
    parser.add_argument("--samples", type=int, default=1, help="diffusion samples (mean and SD are written)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--bf16", action="store_true", help="bf16 matmuls: ~1.8x faster filling on CPUs with bf16 units"
    )
    args = parser.parse_args(argv)
    from gaitjax.models.bundle import load_bundle

    try:
        if args.samples < 1:
            raise GaitDataError(f"--samples must be at least 1, got {args.samples}")
        if args.treadmill_speed < 0 or args.treadmill_speed > 10:
            raise GaitDataError(f"--treadmill-speed must be in [0, 10] m/s, got {args.treadmill_speed}")
        bundle = load_bundle(args.model, matmul_dtype="bfloat16" if args.bf16 else None)
        if bundle.refiner is None and bundle.denoiser is None:
            raise GaitDataError("the model folder holds neither a refiner nor a denoiser", args.model)
        subject = Subject.load(args.osim, args.mass, args.height)
        unknown = [u.strip() for u in args.unknown.split(",") if u.strip()]
        _unknown_from_user(unknown)  # validate names before any work
    except GaitDataError as e:
        print(f"gaitjax predict: error: {e}", file=sys.stderr)
        return 2
    rows = []
    for mot in args.mot:
        try:
            rows.append(
                predict_trial(
                    mot,
                    subject,
                    bundle,
                    args.out,
                    treadmill_speed_m_s=args.treadmill_speed,
                    unknown=unknown,
                    n_samples=args.samples,
                    seed=args.seed,
                )
            )
            print(f"ok      {mot}", flush=True)
        except GaitDataError as e:
            rows.append({"trial": str(mot), "status": "failed", "reason": str(e)})
            print(f"failed  {mot}: {e}", file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    fields = [
        "trial",
        "status",
        "reason",
        "frames",
        "filled",
        "mean_peak_vertical_bw_percent",
        "cadence_steps_per_min",
    ]
    tmp = args.out / ".summary.csv.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(args.out / "summary.csv")
    n_bad = sum(r["status"] != "ok" for r in rows)
    print(f"{len(rows) - n_bad} of {len(rows)} trials predicted; outputs in {args.out}")
    return 1 if n_bad else 0


if __name__ == "__main__":
    sys.exit(main())
