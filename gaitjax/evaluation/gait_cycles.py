"""Gait-cycle segmentation from the vertical ground reaction force of one foot (spec §6.1,
`MotionDataset.grf_to_trial_gait_phase_label`): heel strikes, toe-offs and the valid heel-strike to
heel-strike cycles, with the reference code's thresholds as default and the paper's wider ones as option."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from gaitjax.data.errors import GaitDataError

GRAVITY_M_PER_S2 = 9.81

# Stance = |vertical GRF| > 1 N/kg, about 10.2 %BW (spec §6.1; the paper rounds it to "10% body weight").
STANCE_FORCE_THRESHOLD_N_PER_KG = 1.0
# Valid stance and cycle durations, open intervals (spec §6.1: (10, 150) and (20, 200) frames at 100 Hz).
STANCE_DURATION_S = (0.1, 1.5)
CYCLE_DURATION_S = (0.2, 2.0)
# The wider limits the paper uses for the study with an individual post-stroke (Li2021 in the code:
# stance (10, 300) and cycle (20, 400) frames at 100 Hz).
WIDE_STANCE_DURATION_S = (0.1, 3.0)
WIDE_CYCLE_DURATION_S = (0.2, 4.0)


@dataclasses.dataclass(frozen=True)
class GaitThresholds:
    """Rules that make a stretch of vertical force a valid gait cycle.

    Attributes:
        force_n_per_kg: stance is |vertical GRF| strictly above this (N/kg).
        stance_duration_s: (min, max) stance duration, exclusive at both ends (s).
        cycle_duration_s: (min, max) heel-strike-to-heel-strike duration, exclusive at both ends (s).
    """

    force_n_per_kg: float = STANCE_FORCE_THRESHOLD_N_PER_KG
    stance_duration_s: tuple[float, float] = STANCE_DURATION_S
    cycle_duration_s: tuple[float, float] = CYCLE_DURATION_S

    @property
    def force_bw_percent(self) -> float:
        """The force threshold in %BW."""
        return self.force_n_per_kg / GRAVITY_M_PER_S2 * 100.0


SPEC_THRESHOLDS = GaitThresholds()
WIDE_THRESHOLDS = GaitThresholds(
    stance_duration_s=WIDE_STANCE_DURATION_S, cycle_duration_s=WIDE_CYCLE_DURATION_S
)


@dataclasses.dataclass(frozen=True, eq=False)
class FootGait:
    """Gait events and cycles of one foot. Frame indices count from 0 at the first sample of the input.

    Attributes:
        heel_strikes: [H] int, every frame whose force is above the threshold while the frame before is not.
        toe_offs: [O] int, every frame at or below the threshold while the frame before is above it.
        cycles: valid cycles (start, end): start = a heel strike, end = the next heel strike (exclusive).
        stances: (heel strike, toe-off) of each valid cycle's stance, one per entry of `cycles`; the toe-off
            frame is exclusive, so stance frames are [heel strike, toe-off).
        n_frames: length of the input.
    """

    heel_strikes: np.ndarray
    toe_offs: np.ndarray
    cycles: tuple[tuple[int, int], ...]
    stances: tuple[tuple[int, int], ...]
    n_frames: int

    def in_cycle_mask(self) -> np.ndarray:
        """[n_frames] bool, True on frames inside a valid cycle."""
        mask = np.zeros(self.n_frames, dtype=bool)
        for start, end in self.cycles:
            mask[start:end] = True
        return mask


def _frame_limits(limits_s: tuple[float, float], rate_hz: float) -> tuple[float, float]:
    # Rounded so that e.g. 0.1 s x 100 Hz is exactly 10 frames despite binary floating point.
    return round(limits_s[0] * rate_hz, 9), round(limits_s[1] * rate_hz, 9)


def min_trial_frames(rate_hz: float, thresholds: GaitThresholds = SPEC_THRESHOLDS) -> int:
    """The shortest trial that can hold one valid gait cycle.

    One frame at or below the threshold (so that the heel strike is seen), the shortest valid cycle
    (the smallest whole number of frames above `cycle_duration_s[0]` x rate) and the next heel-strike frame
    that closes it: 23 frames at 100 Hz with the default thresholds.

    Args:
        rate_hz: sampling rate (Hz).
        thresholds: the segmentation rules.

    Returns:
        The minimum number of frames.
    """
    shortest_cycle = math.floor(_frame_limits(thresholds.cycle_duration_s, rate_hz)[0]) + 1
    return shortest_cycle + 2


def _check_force(vgrf_n_per_kg: np.ndarray, rate_hz: float, thresholds: GaitThresholds) -> np.ndarray:
    vgrf = np.asarray(vgrf_n_per_kg, dtype=np.float64)
    if vgrf.ndim != 1:
        raise GaitDataError(f"vertical GRF must be a 1-D array [T] of one foot (N/kg), got {vgrf.shape}")
    if not (np.isfinite(rate_hz) and rate_hz > 0):
        raise GaitDataError(f"rate_hz must be a positive number, got {rate_hz!r}")
    minimum = min_trial_frames(rate_hz, thresholds)
    if vgrf.shape[0] < minimum:
        raise GaitDataError(
            f"trial of {vgrf.shape[0]} frames is too short to hold one gait cycle: at {rate_hz:g} Hz it "
            f"needs at least {minimum} frames ({minimum / rate_hz:.3f} s: a swing frame, a cycle longer than "
            f"{thresholds.cycle_duration_s[0]} s and the next heel strike)"
        )
    if not np.all(np.isfinite(vgrf)):
        k = int(np.argmax(~np.isfinite(vgrf)))
        raise GaitDataError(f"vertical GRF must be finite, frame {k} is {vgrf[k]!r}")
    return vgrf


def find_gait_events(
    vgrf_n_per_kg: np.ndarray, rate_hz: float, thresholds: GaitThresholds = SPEC_THRESHOLDS
) -> tuple[np.ndarray, np.ndarray]:
    """Heel strikes and toe-offs of one foot.

    Stance is |vGRF| > `thresholds.force_n_per_kg`. A heel strike is the first stance frame after a
    non-stance frame; a toe-off is the first non-stance frame after a stance frame. A trial that starts in
    stance has no heel strike at frame 0, and one that ends in stance has no final toe-off.

    The reference marks the frame before each heel strike / toe-off (`np.diff(stance) == +1 / -1`); durations
    are the same, and its labelled cycles start one frame earlier than ours.

    Args:
        vgrf_n_per_kg: [T] vertical GRF of one foot (N/kg).
        rate_hz: sampling rate (Hz).
        thresholds: the segmentation rules (only the force threshold matters here).

    Returns:
        (heel_strikes [H], toe_offs [O]) int frame indices, increasing.

    Raises:
        GaitDataError: not 1-D, non-finite values, or shorter than `min_trial_frames`.
    """
    vgrf = _check_force(vgrf_n_per_kg, rate_hz, thresholds)
    step = np.diff((np.abs(vgrf) > thresholds.force_n_per_kg).astype(np.int8))
    return np.flatnonzero(step == 1) + 1, np.flatnonzero(step == -1) + 1


def segment_gait_cycles(
    vgrf_n_per_kg: np.ndarray, rate_hz: float, thresholds: GaitThresholds = SPEC_THRESHOLDS
) -> FootGait:
    """Valid gait cycles of one foot (spec §6.1).

    A tentative cycle runs from one heel strike to the next, [hs_k, hs_{k+1}). It is valid when it holds
    exactly one toe-off, its stance duration (toe-off - hs_k) / rate lies strictly inside
    `thresholds.stance_duration_s`, and its duration (hs_{k+1} - hs_k) / rate lies strictly inside
    `thresholds.cycle_duration_s`. With the defaults at 100 Hz: stance 11..149 frames, cycle 21..199 frames.

    Args:
        vgrf_n_per_kg: [T] vertical GRF of one foot (N/kg).
        rate_hz: sampling rate (Hz).
        thresholds: `SPEC_THRESHOLDS` (default) or `WIDE_THRESHOLDS` for very slow gait.

    Returns:
        The foot's events and valid cycles.

    Raises:
        GaitDataError: not 1-D, non-finite values, or shorter than `min_trial_frames`.
    """
    heel_strikes, toe_offs = find_gait_events(vgrf_n_per_kg, rate_hz, thresholds)
    stance_lo, stance_hi = _frame_limits(thresholds.stance_duration_s, rate_hz)
    cycle_lo, cycle_hi = _frame_limits(thresholds.cycle_duration_s, rate_hz)
    cycles, stances = [], []
    for start, end in zip(heel_strikes[:-1].tolist(), heel_strikes[1:].tolist(), strict=True):
        inside = toe_offs[(toe_offs > start) & (toe_offs < end)]
        if inside.size != 1:
            continue
        stance = int(inside[0]) - start
        if stance_lo < stance < stance_hi and cycle_lo < end - start < cycle_hi:
            cycles.append((start, end))
            stances.append((start, int(inside[0])))
    return FootGait(heel_strikes, toe_offs, tuple(cycles), tuple(stances), int(np.shape(vgrf_n_per_kg)[0]))


def segment_both_feet(
    vgrf_n_per_kg: np.ndarray, rate_hz: float, thresholds: GaitThresholds = SPEC_THRESHOLDS
) -> dict[str, FootGait]:
    """`segment_gait_cycles` for both feet.

    Args:
        vgrf_n_per_kg: [T, 2] vertical GRF (N/kg), right foot first.
        rate_hz: sampling rate (Hz).
        thresholds: the segmentation rules.

    Returns:
        {"r": right foot, "l": left foot}.

    Raises:
        GaitDataError: a shape other than [T, 2], or a trial `segment_gait_cycles` rejects.
    """
    vgrf = np.asarray(vgrf_n_per_kg)
    if vgrf.ndim != 2 or vgrf.shape[1] != 2:
        raise GaitDataError(
            f"vertical GRF of both feet must be [T, 2] (right, left) in N/kg, got shape {vgrf.shape}"
        )
    return {side: segment_gait_cycles(vgrf[:, k], rate_hz, thresholds) for k, side in enumerate("rl")}
