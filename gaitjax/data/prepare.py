"""`python -m gaitjax.data.prepare --source DIR --out STORE`: real gait files -> a prepared store.

Per trial, in order: coordinates to radians (unit from the header, rotational columns only) and to the
GaitDynamics convention (knee flexion positive: models whose knee flexes negatively, like gait2392 and
Hamner's, are negated; see `gaitjax.skeleton.tree.gaitdynamics_signs`), resampling to
100 Hz, forward kinematics of the trial's own `.osim` (calcanei and toes), force plates assigned to feet,
GRF filtered and resampled onto the 100 Hz frames, yaw alignment to the median heading, belt-speed estimate
from the stance toes, every pruning rule, then the 63-channel representation of the whole trial, split into
the jitter-free pieces. A file that cannot be used is recorded as pruned with its reason; the run goes on.

Subject facts: mass and height come from a `.b3d` header or a `_subject.json` (AddBiomechanics) when one is
found; otherwise mass is the `.osim` total and height is estimated from the model's standing leg length:
the hip joint centre lies at about 0.53 x height (Winter's trochanter height) and the calcaneus origin a
few centimetres above the floor, so height = (hip centre - calcaneus origin, vertical) / 0.52, good to about
5 %. The index records which source each trial used (`extra.mass_source`, `extra.height_source`).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gaitjax.data import channels as ch
from gaitjax.data import preprocess, pruning, representation
from gaitjax.data.discover import FoundTrial, discover, source_files
from gaitjax.data.errors import GaitDataError
from gaitjax.data.grf import ForceSet, GroundReactions, assign_plates_to_feet, read_grf, resample_grf
from gaitjax.data.osim import parse_osim
from gaitjax.data.storage import read_storage, to_radians
from gaitjax.data.store import Store, StoreWriter, TrialMeta

LEG_LENGTH_PER_HEIGHT = 0.52
FOOT_BODIES = ("calcn_r", "calcn_l", "toes_r", "toes_l")
_COORD = {name: i for i, name in enumerate(ch.OSIM_DOF_COLUMNS)}


@dataclasses.dataclass(frozen=True, eq=False)
class TrialInput:
    """One trial in OpenSim terms, before preprocessing.

    Attributes:
        meta: identity and subject facts (rate_hz is the source rate).
        skeleton: kinematic tree of the trial's model.
        time_s: [N] kinematics times, s.
        q_tn: [N, n_coords] coordinates in `skeleton.coordinate_names` order, rad / m.
        grf: ground reactions on their own times, feet or plates.
        grf_ok_t: [N] bool on the kinematics times, False where the source flags the GRF as missing.
    """

    meta: TrialMeta
    skeleton: object
    time_s: np.ndarray
    q_tn: np.ndarray
    grf: GroundReactions
    grf_ok_t: np.ndarray


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What became of one trial: kept pieces [(meta, x_tc, valid_t)], or a pruning reason."""

    name: str
    pieces: tuple = ()
    reason: str = ""
    meta: TrialMeta | None = None
    n_frames: int = 0


@functools.lru_cache(maxsize=64)
def _model(osim_path: str):
    """Parsed model and skeleton of one .osim, shared by all its trials (FK then compiles once per model)."""
    from gaitjax.skeleton.tree import build_skeleton

    model = parse_osim(osim_path)
    return model, build_skeleton(model)


def _foot_fk(skeleton):
    """q [N, n_coords] -> [N, 4, 3] origins of calcn_r, calcn_l, toes_r, toes_l (m); one jit per model."""
    from gaitjax.skeleton.fk import body_positions_fn

    try:
        return body_positions_fn(skeleton, FOOT_BODIES)
    except KeyError as e:
        raise GaitDataError(f"{e.args[0]}; expected {FOOT_BODIES}") from None


def estimate_height_m(skeleton) -> float:
    """Standing height from the model's leg length at the default pose (see the module docstring)."""
    import jax.numpy as jnp

    from gaitjax.skeleton.fk import forward_kinematics

    fk = forward_kinematics(skeleton, jnp.asarray(skeleton.default_q, jnp.float32))
    joints = [j for j in ("hip_r", "hip_l") if j in skeleton.joint_names]
    if not joints or "calcn_r" not in skeleton.body_names:
        raise GaitDataError(f"model {skeleton.name!r} has no hip_r/calcn_r to estimate height from")
    hip_y = float(np.asarray(fk.joint_pos_m)[skeleton.joint_names.index(joints[0]), 1])
    calcn_y = float(np.asarray(fk.body_pos_m)[skeleton.body_names.index("calcn_r"), 1])
    return (hip_y - calcn_y) / LEG_LENGTH_PER_HEIGHT


def _subject_facts(found: FoundTrial, model, skeleton) -> tuple[float, float, dict]:
    facts = {}
    if found.subject_json is not None:
        try:
            facts = json.loads(Path(found.subject_json).read_text())
        except (OSError, ValueError) as e:
            raise GaitDataError(f"unreadable subject file ({e})", found.subject_json) from None
    mass = facts.get("massKg")
    height = facts.get("heightM")
    extra = {
        "mass_source": "_subject.json" if mass else "osim_total",
        "height_source": "_subject.json" if height else "estimated_from_leg_length",
    }
    mass_kg = float(mass) if mass else model.total_mass_kg
    height_m = float(height) if height else estimate_height_m(skeleton)
    return mass_kg, height_m, extra


def load_opensim_trial(found: FoundTrial) -> TrialInput:
    """Reads an OpenSim trial (IK .mot + GRF .mot + .osim) into a TrialInput."""
    model, skeleton = _model(str(found.osim_path))
    motion_types = {n: c.motion_type for n, c in model.coordinates.items()}
    table = to_radians(read_storage(found.ik_path), motion_types)
    q_tn = np.tile(np.asarray(skeleton.default_q, np.float64), (table.n_frames, 1))
    for k, name in enumerate(table.columns):
        q_tn[:, skeleton.coordinate_index[name]] = table.values[:, k]
    mass_kg, height_m, extra = _subject_facts(found, model, skeleton)
    meta = TrialMeta(
        study=found.study,
        subject=found.subject,
        trial=found.trial,
        source=str(found.ik_path),
        mass_kg=mass_kg,
        height_m=height_m,
        rate_hz=float(table.rate_hz),
        extra={**extra, "grf_file": str(found.grf_path), "osim_file": str(found.osim_path)},
    )
    grf = read_grf(found.grf_path)
    return TrialInput(meta, skeleton, table.time_s, q_tn, grf, np.ones(table.n_frames, bool))


def load_b3d_trials(found: FoundTrial) -> list[TrialInput]:
    """Reads every trial of a .b3d (the chosen pass; raw plates when the pass has no dynamics)."""
    from gaitjax.data.b3d import read_b3d
    from gaitjax.skeleton.tree import build_skeleton

    subject = read_b3d(found.b3d_path)
    skeleton = build_skeleton(parse_osim(subject.opensim_text))
    out = []
    for trial in subject.trials:
        q_tn = np.tile(np.asarray(skeleton.default_q, np.float64), (trial.n_frames, 1))
        for k, name in enumerate(trial.coordinate_names):
            if name in skeleton.coordinate_index:
                q_tn[:, skeleton.coordinate_index[name]] = trial.poses[:, k]
        if trial.contact_force_n is not None:
            bodies = subject.ground_force_bodies
            sets = tuple(
                ForceSet(
                    side,
                    trial.contact_force_n[:, i],
                    trial.contact_cop_m[:, i],
                    np.zeros((trial.n_frames, 3)),
                )
                for side, i in (("r", bodies.index("calcn_r")), ("l", bodies.index("calcn_l")))
            )
            layout = "feet"
        else:
            sets = tuple(
                ForceSet(str(p + 1), trial.plate_force_n[p], trial.plate_cop_m[p], trial.plate_torque_nm[p])
                for p in range(trial.plate_force_n.shape[0])
            )
            layout = "plates"
        grf = GroundReactions(
            found.b3d_path, "b3d", layout, sets, trial.time_s, np.ones(trial.n_frames, bool)
        )
        meta = TrialMeta(
            study=found.study,
            subject=found.subject,
            trial=trial.name,
            source=str(found.b3d_path),
            mass_kg=subject.mass_kg,
            height_m=subject.height_m,
            rate_hz=float(trial.rate_hz),
            extra={"mass_source": "b3d_header", "height_source": "b3d_header", "pass": subject.pass_type},
        )
        out.append(TrialInput(meta, skeleton, trial.time_s, q_tn, grf, ~trial.missing_grf))
    return out


def process_trial(inp: TrialInput, *, evaluation: bool = False, treadmill: bool | None = None) -> Outcome:
    """Preprocesses, prunes and converts one trial (see the module docstring for the order)."""
    meta, skel = inp.meta, inp.skeleton
    missing = [c for c in ch.OSIM_DOF_COLUMNS if c not in skel.coordinate_index and c not in ch.FROZEN_DOFS]
    if missing:
        return Outcome(meta.name, reason=f"model_lacks_coordinates: {missing}", meta=meta)
    if inp.time_s.shape[0] < 2:
        return Outcome(meta.name, reason=f"{pruning.REASON_SHORT}: {inp.time_s.shape[0]} frames", meta=meta)
    t100, q100 = preprocess.resample_to_100hz(inp.time_s, inp.q_tn)
    _, ok100 = preprocess.resample_to_100hz(inp.time_s, ~inp.grf_ok_t)
    n_t = t100.shape[0]
    feet_m = _foot_fk(skel)(q100)  # [T, 4, 3]
    grf = assign_plates_to_feet(inp.grf, t100, feet_m[:, 0], feet_m[:, 1])
    grf = resample_grf(grf, t100, allow_extrapolate=True)
    valid_t = grf.valid & ~ok100
    force_n = np.stack([grf["r"].force_n, grf["l"].force_n], axis=1)
    cop_m = np.stack([grf["r"].cop_m, grf["l"].cop_m], axis=1)
    force_n[~valid_t] = 0.0
    cop_m[~valid_t] = 0.0

    from gaitjax.skeleton.tree import q_to_gaitdynamics

    coords = q_to_gaitdynamics(skel, ch.OSIM_DOF_COLUMNS, q100)  # knee flexion positive, as GaitDynamics
    pelvis = [_COORD[n] for n in ch.JOINTS_3D["pelvis"]]
    pelvis_t = [_COORD[n] for n in ch.TRANSLATION_COLUMNS]
    m_yaw, heading_range = preprocess.yaw_alignment(coords[:, pelvis])
    euler, pos, force_n, _ = preprocess.apply_yaw(m_yaw, coords[:, pelvis], coords[:, pelvis_t], force_n)
    coords[:, pelvis], coords[:, pelvis_t] = euler, pos
    cop_m, feet_m = cop_m @ m_yaw.T, feet_m @ m_yaw.T  # the whole body turns about the vertical axis
    cop_m[~valid_t] = 0.0
    grf_n_per_kg = force_n / meta.mass_kg
    calcn_m = feet_m[:, :2]

    verdict = pruning.prune_trial(
        coords, grf_n_per_kg, cop_m, calcn_m, meta.mass_kg, heading_range, evaluation=evaluation
    )
    if verdict.reasons:
        return Outcome(meta.name, reason="; ".join(verdict.reasons), meta=meta, n_frames=n_t)
    belt = preprocess.estimate_belt_speed(feet_m[:, 2], feet_m[:, 3], grf_n_per_kg[..., 1], 100.0, treadmill)
    states = representation.osim_to_model_states(
        coords, grf_n_per_kg, cop_m, calcn_m, meta.height_m, meta.mass_kg, fs=100.0, belt_speed_m_s=belt
    )
    extra = {
        **meta.extra,
        "source_rate_hz": meta.rate_hz,
        "yaw_rad": float(np.arctan2(m_yaw[0, 2], m_yaw[0, 0])),
        "heading_range_deg": float(np.degrees(heading_range)),
        "belt_speed_mean_m_s": float(np.mean(belt)),
        "valid_fraction": float(valid_t.mean()),
    }
    pieces = []
    for k, (start, stop) in enumerate(verdict.pieces):
        name = meta.trial if len(verdict.pieces) == 1 else f"{meta.trial}_seg{k}"
        piece_extra = {
            **extra,
            "pos_vec_m": [float(v) for v in coords[start, pelvis_t]],
            "frames": [start, stop],
        }
        piece_meta = dataclasses.replace(meta, trial=name, rate_hz=100.0, extra=piece_extra)
        pieces.append((piece_meta, states.x_tc[start:stop].astype(np.float32), valid_t[start:stop]))
    return Outcome(meta.name, pieces=tuple(pieces), meta=meta, n_frames=n_t)


def _placeholder_meta(found: FoundTrial) -> TrialMeta:
    files = source_files(found)
    return TrialMeta(found.study, found.subject, found.trial, files[0] if files else "", 1.0, 1.0, 100.0)


def _outcomes(found: FoundTrial, evaluation: bool) -> list[Outcome]:
    if found.problem:
        return [Outcome(found.name, reason=found.problem, meta=_placeholder_meta(found))]
    try:
        inputs = load_b3d_trials(found) if found.kind == "b3d" else [load_opensim_trial(found)]
    except GaitDataError as e:
        return [Outcome(found.name, reason=f"unreadable: {e}", meta=_placeholder_meta(found))]
    outs = []
    for inp in inputs:
        try:
            outs.append(process_trial(inp, evaluation=evaluation))
        except GaitDataError as e:
            outs.append(Outcome(inp.meta.name, reason=f"unusable: {e}", meta=inp.meta))
    return outs


def prepare(
    sources: Sequence[str | Path], out: str | Path, *, kind: str = "train", progress: bool = True
) -> Store:
    """Discovers, processes and writes every trial under `sources` into the store `out`.

    Args:
        sources: folders (or .b3d files) to search.
        out: store directory (created, or replaced atomically when it already holds a store).
        kind: "train" (pruning as in the paper) or "eval" (short trials kept whole and served padded).
        progress: show a tqdm bar.

    Returns:
        The opened store; `store.fate_table()` lists every trial with its fate.
    """
    from tqdm import tqdm

    found = discover(sources)
    info = {"sources": [str(Path(s).resolve()) for s in sources], "command": "gaitjax.data.prepare"}
    names: set[str] = set()
    with StoreWriter(out, kind=kind, info=info) as writer:
        bar = tqdm(found, desc="prepare", unit="file", disable=not progress, dynamic_ncols=True)
        for f in bar:
            bar.set_postfix_str(f.name[-40:])
            for outcome in _outcomes(f, evaluation=kind == "eval"):
                if outcome.meta.name in names:  # a grf-only file sharing an IK trial's name
                    outcome = dataclasses.replace(
                        outcome, meta=dataclasses.replace(outcome.meta, trial=f"{outcome.meta.trial}#2")
                    )
                names.add(outcome.meta.name)
                if outcome.reason:
                    writer.add_pruned(outcome.meta, outcome.reason, n_frames=outcome.n_frames)
                for meta, x_tc, valid_t in outcome.pieces:
                    names.add(meta.name)
                    writer.add_trial(meta, x_tc, valid_t)
    return Store.open(out)


def _print_report(store: Store) -> None:
    rows = store.fate_table()
    kept = sum(r["status"] == "kept" for r in rows)
    print(f"{store.path}: {kept} kept, {len(rows) - kept} pruned or unusable")
    for r in rows:
        reason = f"  ({r['reason']})" if r.get("reason") else ""
        print(f"  {r['status']:7s} {r['study']}/{r['subject']}/{r['trial']}{reason}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gaitjax.data.prepare", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--source", action="append", required=True, help="folder or .b3d file (repeatable)")
    parser.add_argument("--out", required=True, help="store directory to write")
    parser.add_argument("--kind", choices=("train", "eval"), default="train")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        store = prepare(args.source, args.out, kind=args.kind, progress=not args.quiet)
    except GaitDataError as e:
        print(f"prepare: error: {e}", file=sys.stderr)
        return 2
    _print_report(store)
    report = store.write_report(store.path / "report.csv")
    print(f"report: {report}  ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
