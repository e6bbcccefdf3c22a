"""Ground reaction forces from OpenSim .mot files: naming schemes, plate-to-foot assignment, resampling.

Conventions (OpenSim): y is vertical; force in N, centre of pressure (COP) in m in the ground frame, free
moment in N·m. A force set is either a foot ("r"/"l") or a force plate ("1".."8").
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.signal

from gaitjax.data.errors import GaitDataError
from gaitjax.data.storage import read_storage

Layout = Literal["feet", "plates"]

# A force column: optional "1_"/"R_" prefix, kind, optional "_r"/"_3" infix, quantity.
_COLUMN_RE = re.compile(
    r"^(?P<pre>\d+_|[RL]_)?ground_(?P<kind>force|torque|moment)(?:_(?P<mid>[rl]|\d+))?_(?P<q>[vpm][xyz]|[xyz])$"
)


@dataclasses.dataclass(frozen=True, eq=False)
class ForceSet:
    """One force set (a foot or a plate).

    Attributes:
        label: "r"/"l" for feet, "1".."8" for plates.
        force_n: [N, 3] ground reaction force in N (ground frame, y up).
        cop_m: [N, 3] centre of pressure in m (ground frame); meaningless where the force is ~0.
        torque_nm: [N, 3] moment columns as the file gives them, N·m (zeros when the file has none). Usually
            the free moment about the COP; Camargo's `_m{x,y,z}` are not (|m_x| reaches 1500 N·m, ~ -p_z·F_y),
            so check before relying on it.
    """

    label: str
    force_n: np.ndarray
    cop_m: np.ndarray
    torque_nm: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class GroundReactions:
    """The force sets of one recording.

    Attributes:
        path: source file (None for derived data).
        scheme: the column naming found: "prefix_number" (`ground_force_*`, `1_ground_force_*`), "suffix_rl"
            (`ground_force_r_*`), "prefix_rl" (`R_ground_force_*`), "numbered" (`ground_force_N_*`) or
            "derived".
        layout: "feet" (labels "r", "l") or "plates" (labels "1".."N").
        sets: the force sets, right foot first for feet, in plate order for plates.
        time_s: [N] seconds.
        valid: [N] bool; False where values were not measured (extrapolated, or a contact outside the
            kinematics record during plate assignment).
    """

    path: Path | None
    scheme: str
    layout: Layout
    sets: tuple[ForceSet, ...]
    time_s: np.ndarray
    valid: np.ndarray

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(s.label for s in self.sets)

    @property
    def rate_hz(self) -> int:
        """round((N - 1) / (t_end - t_0)) in Hz."""
        n = self.time_s.shape[0]
        if n < 2:
            raise GaitDataError("needs at least 2 samples to infer a sampling rate", self.path)
        return int(round((n - 1) / (self.time_s[-1] - self.time_s[0])))

    def __getitem__(self, label: str) -> ForceSet:
        for s in self.sets:
            if s.label == label:
                return s
        raise GaitDataError(f"no force set {label!r} (sets: {self.labels})", self.path)


def _scheme_of(pre: str | None, mid: str | None) -> tuple[str, str]:
    """(scheme, raw set key) of one parsed column."""
    if pre is None and mid is None:
        return "prefix_number", "0"
    if pre is not None and mid is None:
        if pre[0] in "RL":
            return "prefix_rl", pre[0].lower()
        return "prefix_number", pre[:-1]
    if pre is None and mid in ("r", "l"):
        return "suffix_rl", mid
    if pre is None:
        return "numbered", mid
    return "mixed", f"{pre}{mid}"


def read_grf(path: str | Path, *, layout: Layout | None = None) -> GroundReactions:
    """Reads a ground reaction force .mot file in any naming scheme found in the real data.

    Foot or plate: `ground_force_*`/`1_ground_force_*`, `*_r_*`/`*_l_*` and `R_*`/`L_*` name feet (first set =
    right, as SOURCES.md verified with forward kinematics). For numbered sets `ground_force_N_*` the rule is:
    exactly 2 sets -> feet (1 = right, 2 = left; AddBiomechanics-output files), more -> plates (Camargo's 6,
    the sprint's 8). `layout` overrides the rule; feet need exactly 2 sets. Columns that are not forces
    (the legacy Hamner 2010 file repeats coordinates) are ignored.

    Args:
        path: the .mot file.
        layout: "feet", "plates", or None for the rule above.

    Returns:
        The force sets, each with force [N, 3] N, COP [N, 3] m and free moment [N, 3] N·m.

    Raises:
        GaitDataError: no force columns, mixed naming schemes, a set missing force or COP components, or
            `layout="feet"` for a file with other than 2 sets.
    """
    if layout not in ("feet", "plates", None):
        raise GaitDataError(f"layout must be 'feet', 'plates' or None, got {layout!r}")
    table = read_storage(path)
    sets: dict[str, dict[str, int]] = {}
    schemes = set()
    for k, col in enumerate(table.columns):
        m = _COLUMN_RE.match(col)
        if m is None:
            continue
        scheme, key = _scheme_of(m["pre"], m["mid"])
        schemes.add(scheme)
        q = m["q"]
        if m["kind"] != "force" or q[0] == "m":
            q = "m" + q[-1]
        elif q[0] not in "vp":
            raise GaitDataError(f"force column {col!r}: expected a v/p/m x/y/z suffix", table.path)
        sets.setdefault(key, {})[q] = k
    if not sets:
        raise GaitDataError(
            "no ground force columns (expected names like ground_force_vx, ground_force_r_vx, "
            f"R_ground_force_vx or ground_force_1_vx); columns start with {table.columns[:4]}",
            table.path,
        )
    if len(schemes) != 1 or "mixed" in schemes:
        raise GaitDataError(f"mixed force column naming schemes {sorted(schemes)}", table.path)
    scheme = schemes.pop()
    if scheme == "numbered" or scheme == "prefix_number":
        keys = sorted(sets, key=int)
    else:
        keys = sorted(sets, key=lambda key: "rl".index(key))
    if layout is None:
        layout = "feet" if len(keys) == 2 else "plates"
    if layout == "feet" and len(keys) != 2:
        raise GaitDataError(
            f"layout='feet' needs exactly 2 force sets, found {len(keys)}: {keys}", table.path
        )
    labels = ("r", "l") if layout == "feet" else tuple(str(i + 1) for i in range(len(keys)))

    force_sets = []
    for key, label in zip(keys, labels, strict=True):
        cols = sets[key]
        missing = [q for q in ("vx", "vy", "vz", "px", "py", "pz") if q not in cols]
        torque_present = [q in cols for q in ("mx", "my", "mz")]
        if missing or (any(torque_present) and not all(torque_present)):
            raise GaitDataError(
                f"force set {key!r} lacks components {missing or ['some torque/moment axes']}", table.path
            )
        n = table.n_frames

        def take(quantities: tuple[str, str, str], cols: dict[str, int] = cols) -> np.ndarray:
            return np.stack([table.values[:, cols[q]] for q in quantities], axis=1)

        torque = take(("mx", "my", "mz")) if all(torque_present) else np.zeros((n, 3))
        force_sets.append(ForceSet(label, take(("vx", "vy", "vz")), take(("px", "py", "pz")), torque))
    return GroundReactions(
        path=table.path,
        scheme=scheme,
        layout=layout,
        sets=tuple(force_sets),
        time_s=table.time_s,
        valid=np.ones(table.n_frames, dtype=bool),
    )


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True in a 1-D bool mask."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True))


def _contact_intervals(fy_n: np.ndarray, threshold_n: float) -> list[tuple[int, int]]:
    """Runs with F_y > threshold, each grown outward while F_y > 0 (no force step at the threshold)."""
    runs = _runs(fy_n > threshold_n)
    grown = []
    for k, (start, stop) in enumerate(runs):
        lo = grown[-1][1] if grown else 0
        hi = runs[k + 1][0] if k + 1 < len(runs) else fy_n.shape[0]
        while start > lo and fy_n[start - 1] > 0:
            start -= 1
        while stop < hi and fy_n[stop] > 0:
            stop += 1
        grown.append((start, stop))
    return grown


def combine_force_sets(
    label: str, forces_n: np.ndarray, cops_m: np.ndarray, torques_nm: np.ndarray
) -> ForceSet:
    """Sums P force sets into one that has the same net force and the same net moment about any point.

    COP = F_y-weighted mean of the plate COPs (where the total F_y > 0; zero elsewhere). The free moment is
    the sum of free moments plus the moments of each plate force about the combined COP,
    T = sum_i T_i + (p_i - p) x F_i, so the combined set reproduces the total moment exactly; for plates in
    one horizontal plane its x/z components are then zero like the inputs'.

    Args:
        label: the label of the result.
        forces_n: [P, N, 3] forces (N).
        cops_m: [P, N, 3] COPs (m).
        torques_nm: [P, N, 3] free moments (N·m).

    Returns:
        The combined force set ([N, 3] each).
    """
    force = forces_n.sum(axis=0)
    fy = forces_n[..., 1]
    total_fy = fy.sum(axis=0)
    loaded = total_fy > 0
    weighted = (fy[..., None] * cops_m).sum(axis=0)
    cop = np.where(loaded[:, None], weighted / np.where(loaded, total_fy, 1.0)[:, None], 0.0)
    lever = np.where(loaded[None, :, None], cops_m - cop[None], 0.0)
    torque = torques_nm.sum(axis=0) + np.cross(lever, forces_n).sum(axis=0)
    return ForceSet(label, force, cop, torque)


def assign_plates_to_feet(
    grf: GroundReactions,
    kin_time_s: np.ndarray,
    calcn_r_m: np.ndarray,
    calcn_l_m: np.ndarray,
    threshold_n: float = 20.0,
) -> GroundReactions:
    """Assigns each plate contact to the foot whose calcaneus is nearest its COP, then sums per foot.

    A contact is a run of plate F_y > threshold_n, grown outward while F_y > 0; samples outside contacts are
    plate noise and are dropped. The foot is the one whose calcaneus origin (interpolated onto the GRF times)
    has the smaller median horizontal (x-z) distance to the COP over the contact frames inside the
    kinematics record. A contact entirely outside the kinematics record cannot be assigned: it is dropped
    and its frames are marked invalid. Per foot: force and moments combined by `combine_force_sets`.

    Args:
        grf: plate-layout reactions (a feet layout is returned unchanged).
        kin_time_s: [T] kinematics times (s).
        calcn_r_m: [T, 3] right calcaneus origin in the ground frame (m).
        calcn_l_m: [T, 3] left calcaneus origin (m).
        threshold_n: contact threshold on the plate's vertical force (N).

    Returns:
        Feet-layout reactions ("r", "l") on the GRF times.
    """
    if grf.layout == "feet":
        return grf
    kin_time_s = np.asarray(kin_time_s, dtype=np.float64)
    if calcn_r_m.shape != (kin_time_s.shape[0], 3) or calcn_l_m.shape != calcn_r_m.shape:
        raise GaitDataError(
            f"calcaneus positions {calcn_r_m.shape}/{calcn_l_m.shape} must be [T, 3], T={kin_time_s.shape[0]}"
        )
    t = grf.time_s
    feet = {
        side: np.stack([np.interp(t, kin_time_s, pos[:, a]) for a in range(3)], axis=1)
        for side, pos in (("r", calcn_r_m), ("l", calcn_l_m))
    }
    in_kin = (t >= kin_time_s[0] - 1e-9) & (t <= kin_time_s[-1] + 1e-9)
    n_sets, n = len(grf.sets), t.shape[0]
    owner = np.full((n_sets, n), -1, dtype=np.int8)  # 0 = right, 1 = left, -1 = nobody
    valid = grf.valid.copy()
    for p, plate in enumerate(grf.sets):
        for start, stop in _contact_intervals(plate.force_n[:, 1], threshold_n):
            frames = np.arange(start, stop)[in_kin[start:stop]]
            if frames.size == 0:
                valid[start:stop] = False
                continue
            dist = [
                np.median(np.linalg.norm((plate.cop_m[frames] - feet[side][frames])[:, [0, 2]], axis=1))
                for side in ("r", "l")
            ]
            owner[p, start:stop] = int(np.argmin(dist))
    stacked = {
        name: np.stack([getattr(s, name) for s in grf.sets]) for name in ("force_n", "cop_m", "torque_nm")
    }
    sets = []
    for k, side in enumerate(("r", "l")):
        mine = (owner == k)[..., None]
        sets.append(
            combine_force_sets(
                side,
                np.where(mine, stacked["force_n"], 0.0),
                stacked["cop_m"],
                np.where(mine, stacked["torque_nm"], 0.0),
            )
        )
    return GroundReactions(grf.path, "derived", "feet", tuple(sets), t, valid)


def resample_grf(
    grf: GroundReactions,
    target_time_s: np.ndarray,
    *,
    cutoff_hz: float | None = None,
    allow_extrapolate: bool = False,
    cop_threshold_n: float = 20.0,
) -> GroundReactions:
    """Low-passes and linearly interpolates force sets onto other (kinematics) times.

    Filter: zero-phase Butterworth, order 4 (`sosfiltfilt`), default cutoff min(0.4 x target rate,
    0.9 x source Nyquist): below the target Nyquist so the decimation does not alias, and a valid cutoff
    when the source is the slower one. Force and free moment are filtered; the COP is not (it is undefined
    in swing and would smear into stance). Instead F_y·COP is filtered and interpolated, and
    COP = (F_y·COP) / F_y where |F_y| > cop_threshold_n, 0 elsewhere — exact for a constant COP.
    When the rates are equal and every target time matches a source time within 1e-6 s, the matching
    samples are returned unfiltered.

    Args:
        grf: the reactions at their own rate.
        target_time_s: [T] target times (s), increasing.
        cutoff_hz: low-pass cutoff (Hz); None for the default above.
        allow_extrapolate: times outside the GRF record get zero force and `valid=False` instead of an error.
        cop_threshold_n: |F_y| below which the COP is set to 0 (N).

    Returns:
        The reactions at `target_time_s`, with a per-frame `valid` mask.

    Raises:
        GaitDataError: target times outside the record (unless `allow_extrapolate`), or a cutoff at or above
            the source Nyquist frequency.
    """
    target = np.asarray(target_time_s, dtype=np.float64)
    t = grf.time_s
    if target.ndim != 1 or target.size == 0:
        raise GaitDataError(
            f"target_time_s must be a non-empty 1-D array, got shape {target.shape}", grf.path
        )
    if target.size > 1 and np.any(np.diff(target) <= 0):
        raise GaitDataError("target_time_s must be strictly increasing", grf.path)
    target_rate = grf.rate_hz if target.size < 2 else int(round((target.size - 1) / (target[-1] - target[0])))
    idx = np.clip(np.searchsorted(t, target), 1, t.size - 1)
    nearest = np.where(np.abs(t[idx - 1] - target) <= np.abs(t[idx] - target), idx - 1, idx)
    if target_rate == grf.rate_hz and np.all(np.abs(t[nearest] - target) <= 1e-6):
        sets = tuple(
            ForceSet(s.label, s.force_n[nearest], s.cop_m[nearest], s.torque_nm[nearest]) for s in grf.sets
        )
        return GroundReactions(grf.path, grf.scheme, grf.layout, sets, target, grf.valid[nearest])

    inside = (target >= t[0] - 1e-9) & (target <= t[-1] + 1e-9)
    if not inside.all() and not allow_extrapolate:
        raise GaitDataError(
            f"{int((~inside).sum())} target times in [{target[0]:.4f}, {target[-1]:.4f}] s fall outside the "
            f"GRF record [{t[0]:.4f}, {t[-1]:.4f}] s (pass allow_extrapolate=True to zero-fill them)",
            grf.path,
        )
    source_rate_hz = (t.size - 1) / (t[-1] - t[0])
    nyquist_hz = source_rate_hz / 2
    cutoff = min(0.4 * target_rate, 0.9 * nyquist_hz) if cutoff_hz is None else float(cutoff_hz)
    if not 0 < cutoff < nyquist_hz:
        raise GaitDataError(
            f"cutoff {cutoff} Hz must lie in (0, {nyquist_hz:.1f}) Hz (source Nyquist)", grf.path
        )
    sos = scipy.signal.butter(4, cutoff, fs=source_rate_hz, output="sos")

    def smooth_and_sample(x_nc: np.ndarray) -> np.ndarray:
        padlen = min(max(3 * (2 * sos.shape[0] + 1), int(3 * source_rate_hz / cutoff)), x_nc.shape[0] - 1)
        y = scipy.signal.sosfiltfilt(sos, x_nc, axis=0, padlen=padlen) if x_nc.shape[0] > 1 else x_nc
        out = np.stack([np.interp(target, t, y[:, c]) for c in range(y.shape[1])], axis=1)
        return np.where(inside[:, None], out, 0.0)

    sets = []
    for s in grf.sets:
        fy = s.force_n[:, 1:2]
        force = smooth_and_sample(s.force_n)
        torque = smooth_and_sample(s.torque_nm)
        moment = smooth_and_sample(fy * s.cop_m)
        loaded = np.abs(force[:, 1:2]) > cop_threshold_n
        cop = np.where(loaded, moment / np.where(loaded, force[:, 1:2], 1.0), 0.0)
        sets.append(ForceSet(s.label, force, cop, torque))
    valid = inside & (np.interp(target, t, grf.valid.astype(np.float64)) == 1.0)
    return GroundReactions(grf.path, grf.scheme, grf.layout, tuple(sets), target, valid)
