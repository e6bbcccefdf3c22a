"""Task-1 force-estimation metrics (spec §6.1): mean absolute errors of the left foot's vertical,
anterior-posterior and medio-lateral force profiles and of peak vertical force, in %BW, per trial, per study
(frames pooled) and mean ± SD across studies; a tidy table and a formatter in the paper's layout."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from gaitjax.data.errors import GaitDataError
from gaitjax.evaluation.gait_cycles import (
    GRAVITY_M_PER_S2,
    SPEC_THRESHOLDS,
    GaitThresholds,
    min_trial_frames,
    segment_gait_cycles,
)

# Stances of walking studies whose true peak vertical force lies outside this range are left out of the peak
# metric (spec §6.1), inclusive (N/kg).
WALKING_PEAK_RANGE_N_PER_KG = (8.0, 13.0)

# Metric keys in table order, with the paper's names. Force axes: x = AP, y = vertical, z = ML.
METRICS: tuple[str, ...] = ("vertical_profile", "ap_profile", "ml_profile", "peak_vertical")
METRIC_TITLES = {
    "vertical_profile": "Vertical",
    "ap_profile": "Anterior-posterior",
    "ml_profile": "Medial-lateral",
    "peak_vertical": "Peak vertical",
}
_PROFILE_AXIS = {"vertical_profile": 1, "ap_profile": 0, "ml_profile": 2}


def n_per_kg_to_bw_percent(value_n_per_kg: np.ndarray | float) -> np.ndarray | float:
    """N/kg -> %BW: value / 9.81 x 100."""
    return value_n_per_kg / GRAVITY_M_PER_S2 * 100.0


@dataclasses.dataclass(frozen=True, eq=False)
class TrialErrors:
    """The raw errors of one trial, kept so that studies can pool frames and stances.

    Attributes:
        study: study (dataset) name.
        trial: trial name.
        abs_error_n_per_kg: [F, 3] |true - pred| force (x = AP, y = vertical, z = ML) on the F evaluated
            frames.
        peak_true_n_per_kg: [S] true peak vertical force of each evaluated stance.
        peak_pred_n_per_kg: [S] predicted peak vertical force of the same stances.
        n_cycles: number of valid gait cycles found (0: the whole trial was evaluated).
    """

    study: str
    trial: str
    abs_error_n_per_kg: np.ndarray
    peak_true_n_per_kg: np.ndarray
    peak_pred_n_per_kg: np.ndarray
    n_cycles: int

    def mae_bw_percent(self, metric: str) -> float:
        """This trial's MAE for one of `METRICS` in %BW (NaN when there is nothing to average)."""
        return _mae_bw_percent([self], metric)


def trial_errors(
    true_force_n_per_kg: np.ndarray,
    pred_force_n_per_kg: np.ndarray,
    rate_hz: float,
    *,
    study: str,
    trial: str,
    running: bool = False,
    overground: bool = False,
    keep: np.ndarray | None = None,
    thresholds: GaitThresholds = SPEC_THRESHOLDS,
) -> TrialErrors:
    """Errors of one trial's left-foot force (spec §6.1).

    Steps: drop the frames where `keep` is False and join the rest; segment gait cycles on the **true**
    vertical force; profile errors on every frame inside a valid cycle; one peak per valid stance
    [heel strike, toe-off) = max vertical force (true and pred over the same frames). Walking stances whose
    true peak lies outside `WALKING_PEAK_RANGE_N_PER_KG` are skipped. When no valid cycle is found (including
    trials shorter than `min_trial_frames`), every frame is evaluated, and the whole trial counts as one
    stance for the peak if `overground` (the reference treats overground studies so), else no peak.

    Args:
        true_force_n_per_kg: [T, 3] measured left-foot GRF (N/kg), (AP x, vertical y, ML z).
        pred_force_n_per_kg: [T, 3] estimated left-foot GRF (N/kg).
        rate_hz: sampling rate (Hz); 100 in the reference.
        study: study name.
        trial: trial name.
        running: a running study (no peak-range filter).
        overground: an overground study (see above).
        keep: [T] bool, frames to evaluate (the reference drops `probably_missing` frames); None keeps all.
        thresholds: segmentation rules (`WIDE_THRESHOLDS` for the post-stroke study).

    Returns:
        The trial's raw errors.

    Raises:
        GaitDataError: shapes other than [T, 3] / [T], or non-finite forces.
    """
    true = np.asarray(true_force_n_per_kg, dtype=np.float64)
    pred = np.asarray(pred_force_n_per_kg, dtype=np.float64)
    where = f"study {study!r} trial {trial!r}"
    if true.ndim != 2 or true.shape[1] != 3 or pred.shape != true.shape:
        raise GaitDataError(
            f"{where}: true and predicted forces must both be [T, 3] (x, y, z) in N/kg, got {true.shape} and "
            f"{pred.shape}"
        )
    if keep is not None:
        keep = np.asarray(keep)
        if keep.shape != (true.shape[0],) or keep.dtype != bool:
            raise GaitDataError(
                f"{where}: keep must be a bool array [{true.shape[0]}], got {keep.dtype} {keep.shape}"
            )
        true, pred = true[keep], pred[keep]
    if not (np.all(np.isfinite(true)) and np.all(np.isfinite(pred))):
        raise GaitDataError(f"{where}: forces must be finite (NaN or inf found)")

    cycles, stances = (), ()
    if true.shape[0] >= min_trial_frames(rate_hz, thresholds):
        gait = segment_gait_cycles(true[:, 1], rate_hz, thresholds)
        cycles, stances, frames = gait.cycles, gait.stances, gait.in_cycle_mask()
    if not cycles:
        frames = np.ones(true.shape[0], dtype=bool)
        stances = ((0, true.shape[0]),) if overground and true.shape[0] > 0 else ()
    peaks_true, peaks_pred = [], []
    for start, end in stances:
        peak_true = true[start:end, 1].max()
        lo, hi = WALKING_PEAK_RANGE_N_PER_KG
        if not running and not lo <= peak_true <= hi:
            continue
        peaks_true.append(peak_true)
        peaks_pred.append(pred[start:end, 1].max())
    return TrialErrors(
        study=study,
        trial=trial,
        abs_error_n_per_kg=np.abs(true[frames] - pred[frames]),
        peak_true_n_per_kg=np.asarray(peaks_true, dtype=np.float64),
        peak_pred_n_per_kg=np.asarray(peaks_pred, dtype=np.float64),
        n_cycles=len(cycles),
    )


def _pooled(trials: Sequence[TrialErrors], metric: str) -> np.ndarray:
    """All absolute errors (N/kg) of one metric, pooled over trials."""
    if metric in _PROFILE_AXIS:
        return np.concatenate([t.abs_error_n_per_kg[:, _PROFILE_AXIS[metric]] for t in trials])
    if metric == "peak_vertical":
        return np.concatenate([np.abs(t.peak_true_n_per_kg - t.peak_pred_n_per_kg) for t in trials])
    raise GaitDataError(f"unknown metric {metric!r}; expected one of {METRICS}")


def _mae_bw_percent(trials: Sequence[TrialErrors], metric: str) -> float:
    errors = _pooled(trials, metric)
    return float(n_per_kg_to_bw_percent(errors.mean())) if errors.size else float("nan")


def _row(level: str, study, trial, metric: str, mae: float, sd: float | None, n: int) -> dict:
    return dict(
        level=level, study=study, trial=trial, metric=metric, mae_bw_percent=mae, sd_bw_percent=sd, n=n
    )


def metric_rows(trials: Sequence[TrialErrors], *, ddof: int = 0) -> list[dict]:
    """The tidy table: one row per (level, study, trial, metric).

    Levels:
      - "trial": the MAE over one trial's evaluated frames (profiles) or stances (peak).
      - "study": the MAE over all evaluated frames / stances of the study's trials pooled together, so longer
        trials weigh more (the reference pools frames per dataset).
      - "all": mean and SD of the study values, each study weighted equally; studies without a value for the
        metric (no stance for the peak) are left out and `n` counts those used.

    Args:
        trials: per-trial errors from `trial_errors`; studies appear in order of first appearance.
        ddof: delta degrees of freedom of the SD across studies (0: numpy's default, population SD).

    Returns:
        Rows with keys level, study, trial, metric, mae_bw_percent, sd_bw_percent (None except for "all"), and
        n (frames or stances for trials and studies, studies for "all").
    """
    rows: list[dict] = []
    studies: dict[str, list[TrialErrors]] = {}
    for t in trials:
        studies.setdefault(t.study, []).append(t)
    for t in trials:
        for metric in METRICS:
            n = _pooled([t], metric).size
            value = _mae_bw_percent([t], metric)
            rows.append(_row("trial", t.study, t.trial, metric, value, None, n))
    per_study: dict[str, list[float]] = {metric: [] for metric in METRICS}
    for study, members in studies.items():
        for metric in METRICS:
            value = _mae_bw_percent(members, metric)
            per_study[metric].append(value)
            rows.append(_row("study", study, None, metric, value, None, _pooled(members, metric).size))
    for metric in METRICS:
        values = np.asarray([v for v in per_study[metric] if np.isfinite(v)])
        mean = float(values.mean()) if values.size else float("nan")
        sd = float(values.std(ddof=ddof)) if values.size > ddof else float("nan")
        rows.append(_row("all", None, None, metric, mean, sd, int(values.size)))
    return rows


def format_table(rows: Sequence[dict], *, decimals: int = 1) -> str:
    """The paper's table: one line per study (its MAE in %BW per metric), then "Mean ± SD" across studies.

    Args:
        rows: the output of `metric_rows` (trial rows are ignored).
        decimals: digits after the decimal point.

    Returns:
        The table as text, one line per row, columns separated by at least two spaces; "-" marks a missing
        value.
    """

    def number(value: float | None) -> str:
        return "-" if value is None or not np.isfinite(value) else f"{value:.{decimals}f}"

    studies: dict[str, dict[str, float]] = {}
    summary: dict[str, str] = {}
    for row in rows:
        if row["level"] == "study":
            studies.setdefault(row["study"], {})[row["metric"]] = row["mae_bw_percent"]
        elif row["level"] == "all":
            mean, sd = number(row["mae_bw_percent"]), number(row["sd_bw_percent"])
            summary[row["metric"]] = "-" if mean == "-" else f"{mean} ± {sd}"
    header = ["MAE (%BW)", *(METRIC_TITLES[m] for m in METRICS)]
    body = [[study, *(number(values.get(m)) for m in METRICS)] for study, values in studies.items()]
    if summary:
        body.append(["Mean ± SD", *(summary.get(m, "-") for m in METRICS)])
    widths = [max(len(line[k]) for line in [header, *body]) for k in range(len(header))]
    lines = []
    for line in [header, *body]:
        cells = [
            line[0].ljust(widths[0]),
            *(cell.rjust(w) for cell, w in zip(line[1:], widths[1:], strict=True)),
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
