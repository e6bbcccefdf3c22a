"""AddBiomechanics .b3d subjects read through nimblephysics into plain numpy (read-only use of nimble).

nimblephysics 0.10.52.1 under numpy 2 segfaults when numpy arrays are passed into it, and in
`SubjectOnDisk.readForcePlates`; this module only calls getters and reads raw plates from the frames.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from gaitjax.data.errors import GaitDataError

# nimble's enum name for "this frame's ground reaction force can be trusted".
_NOT_MISSING = "notMissingGRF"


@dataclasses.dataclass(frozen=True, eq=False)
class B3dTrial:
    """One trial of the chosen processing pass.

    Attributes:
        name: nimble trial name (e.g. "walking2_segment_0").
        original_name: name of the source recording (e.g. "walking2").
        timestep_s: sampling interval (s).
        rate_hz: round(1 / timestep_s).
        coordinate_names: the D degree-of-freedom names of the pass skeleton, in `poses` column order.
        poses: [N, D] coordinates (rad for rotations, m for translations).
        contact_force_n: [N, B, 3] ground contact force per contact body (N, ground frame), or None when the
            pass has no dynamics (its force fields are then zeros and meaningless).
        contact_cop_m: [N, B, 3] centre of pressure per contact body (m, ground frame), or None (as above).
        plate_force_n: [P, N, 3] raw force-plate forces (N, ground frame).
        plate_cop_m: [P, N, 3] raw force-plate centres of pressure (m).
        plate_torque_nm: [P, N, 3] raw force-plate torques (N·m).
        missing_grf: [N] bool, True where AddBiomechanics flags the GRF as missing/untrustworthy.
        missing_grf_reason: [N] nimble's reason name per frame ("notMissingGRF" where present).
    """

    name: str
    original_name: str
    timestep_s: float
    rate_hz: int
    coordinate_names: tuple[str, ...]
    poses: np.ndarray
    contact_force_n: np.ndarray | None
    contact_cop_m: np.ndarray | None
    plate_force_n: np.ndarray
    plate_cop_m: np.ndarray
    plate_torque_nm: np.ndarray
    missing_grf: np.ndarray
    missing_grf_reason: tuple[str, ...]

    @property
    def n_frames(self) -> int:
        return int(self.poses.shape[0])

    @property
    def time_s(self) -> np.ndarray:
        """[N] frame times from 0 (s)."""
        return np.arange(self.n_frames) * self.timestep_s


@dataclasses.dataclass(frozen=True, eq=False)
class B3dSubject:
    """A .b3d subject: header values, the chosen pass and its trials.

    Attributes:
        path: the file.
        mass_kg, height_m: subject mass (kg) and height (m) from the header.
        sex: "male"/"female"/... as stored, None when unknown.
        age_years: age as stored, None when unknown (nimble stores <= 0).
        ground_force_bodies: contact body names, in the order of the pass's per-body force columns.
        pass_types: type name of every processing pass ("KINEMATICS", "DYNAMICS", ...).
        pass_index: the pass whose poses/forces the trials hold.
        opensim_text: the OpenSim model (.osim XML) embedded for that pass.
        trials: trials that have the chosen pass.
        skipped_trials: (trial name, reason) for trials that do not.
    """

    path: Path
    mass_kg: float
    height_m: float
    sex: str | None
    age_years: int | None
    ground_force_bodies: tuple[str, ...]
    pass_types: tuple[str, ...]
    pass_index: int
    opensim_text: str
    trials: tuple[B3dTrial, ...]
    skipped_trials: tuple[tuple[str, str], ...]

    @property
    def pass_type(self) -> str:
        return self.pass_types[self.pass_index]


@contextlib.contextmanager
def _native_output_silenced() -> Iterator[None]:
    """Silences stdout/stderr at the file-descriptor level (nimble's C++ prints skeleton warnings)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def _choose_pass(pass_types: tuple[str, ...], pass_index: int | None, path: Path) -> int:
    if pass_index is not None:
        if not 0 <= pass_index < len(pass_types):
            raise GaitDataError(
                f"pass_index {pass_index} out of range: the file has passes {pass_types}", path
            )
        return pass_index
    if not pass_types:
        raise GaitDataError("the file has no processing passes", path)
    if "DYNAMICS" in pass_types:
        return len(pass_types) - 1 - pass_types[::-1].index("DYNAMICS")
    if "KINEMATICS" in pass_types:
        return len(pass_types) - 1 - pass_types[::-1].index("KINEMATICS")
    return len(pass_types) - 1


def _read_trial(subject, trial: int, pass_index: int, dof_names: tuple[str, ...], n_bodies: int) -> B3dTrial:
    n = subject.getTrialLength(trial)
    timestep_s = float(subject.getTrialTimestep(trial))
    frames = subject.readFrames(trial, 0, n, includeSensorData=True, includeProcessingPasses=True)
    if len(frames) != n:
        raise RuntimeError(f"read {len(frames)} of {n} frames")
    passes = [frame.processingPasses[pass_index] for frame in frames]
    poses = np.array([np.asarray(p.pos, dtype=np.float64) for p in passes]).reshape(n, -1)
    dynamics = str(passes[0].type.name) == "DYNAMICS" if n else False
    force = cop = None
    if dynamics:
        force = np.array([np.asarray(p.groundContactForce, dtype=np.float64) for p in passes]).reshape(
            n, -1, 3
        )
        cop = np.array([np.asarray(p.groundContactCenterOfPressure) for p in passes], dtype=np.float64)
        cop = cop.reshape(n, -1, 3)
        if force.shape[1] != n_bodies:
            raise RuntimeError(f"{force.shape[1]} contact bodies in the pass, {n_bodies} in the header")

    def plates(attribute: str) -> np.ndarray:
        per_frame = [[np.asarray(v, dtype=np.float64) for v in getattr(f, attribute)] for f in frames]
        n_plates = len(per_frame[0]) if per_frame else 0
        if any(len(vs) != n_plates for vs in per_frame):
            raise RuntimeError(f"{attribute}: the number of force plates changes between frames")
        return np.array(per_frame, dtype=np.float64).reshape(n, n_plates, 3).transpose(1, 0, 2)

    reasons = tuple(r.name for r in subject.getMissingGRF(trial))
    if poses.shape[1] != len(dof_names) or len(reasons) != n:
        raise RuntimeError(f"{poses.shape[1]} poses for {len(dof_names)} DoFs, {len(reasons)} GRF flags")
    return B3dTrial(
        name=subject.getTrialName(trial),
        original_name=subject.getTrialOriginalName(trial),
        timestep_s=timestep_s,
        rate_hz=int(round(1.0 / timestep_s)),
        coordinate_names=dof_names,
        poses=poses,
        contact_force_n=force,
        contact_cop_m=cop,
        plate_force_n=plates("rawForcePlateForces"),
        plate_cop_m=plates("rawForcePlateCenterOfPressures"),
        plate_torque_nm=plates("rawForcePlateTorques"),
        missing_grf=np.array([r != _NOT_MISSING for r in reasons], dtype=bool),
        missing_grf_reason=reasons,
    )


def read_b3d(path: str | Path, *, pass_index: int | None = None) -> B3dSubject:
    """Reads an AddBiomechanics .b3d file (SubjectOnDisk) into numpy.

    Args:
        path: the .b3d file.
        pass_index: processing pass to read; None picks the last DYNAMICS pass, else the last KINEMATICS
            pass, else the last pass.

    Returns:
        The subject with its trials. Per-body contact forces/COPs are given only for a dynamics pass; raw
        force plates and the missing-GRF flags always.

    Raises:
        GaitDataError: a missing path, or a file nimble cannot read (corrupt or truncated).
    """
    path = Path(path)
    if not path.is_file():
        raise GaitDataError("file does not exist (expected an AddBiomechanics .b3d file)", path)
    import nimblephysics_libs._nimblephysics as nimble  # Heavy native import, only when needed.

    try:
        subject = nimble.biomechanics.SubjectOnDisk(str(path))
        pass_types = tuple(
            str(subject.getProcessingPassType(k).name) for k in range(subject.getNumProcessingPasses())
        )
        chosen = _choose_pass(pass_types, pass_index, path)
        with _native_output_silenced():
            skeleton = subject.readSkel(chosen, "", True)
        dof_names = tuple(skeleton.getDofByIndex(k).getName() for k in range(skeleton.getNumDofs()))
        bodies = tuple(subject.getGroundForceBodies())
        trials, skipped = [], []
        for trial in range(subject.getNumTrials()):
            name = subject.getTrialName(trial)
            if subject.getTrialNumProcessingPasses(trial) <= chosen:
                skipped.append(
                    (name, f"has {subject.getTrialNumProcessingPasses(trial)} passes, needs pass {chosen}")
                )
                continue
            trials.append(_read_trial(subject, trial, chosen, dof_names, len(bodies)))
        sex = str(subject.getBiologicalSex())
        age = int(subject.getAgeYears())
        return B3dSubject(
            path=path,
            mass_kg=float(subject.getMassKg()),
            height_m=float(subject.getHeightM()),
            sex=sex if sex and sex != "unknown" else None,
            age_years=age if age > 0 else None,
            ground_force_bodies=bodies,
            pass_types=pass_types,
            pass_index=chosen,
            opensim_text=str(subject.getOpensimFileText(chosen)),
            trials=tuple(trials),
            skipped_trials=tuple(skipped),
        )
    except (RuntimeError, MemoryError) as err:
        raise GaitDataError(
            f"nimblephysics cannot read this .b3d file (corrupt or truncated?): {err}", path
        ) from None
