"""The evaluations `evaluate.py` runs: the task-1 force table (full and masked kinematics, diffusion filling
and the paper's mid-range baseline) and the gait-modification tasks 2 and 3, on a prepared store.

Outputs in the workdir: `task1_rows.csv` (tidy, every trial, study and condition), `task1_table.txt` (the
paper's form), `task1_mae.png`; per modification task `<task>_rows.csv`, `<task>_summary.json` and
`<task>.png` (mean over trials with a ±SD-over-seeds band, the measured value at factor 1); and
`results.json` with every summary.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import jax
import ml_collections
import numpy as np

from gaitjax.data import channels as ch
from gaitjax.data.errors import GaitDataError
from gaitjax.data.store import Store
from gaitjax.evaluation.metrics import METRIC_TITLES, METRICS, format_table, metric_rows, trial_errors
from gaitjax.models.bundle import Bundle, LoadedModel, load_bundle
from gaitjax.tasks.forces import estimate_forces, unknown_channels
from gaitjax.tasks.grid import plot_summary, summarise, write_table
from gaitjax.tasks.modifications import context_from_trial, run_task

TASK_NAMES = ("task1", "trunk_sway", "speed")
_LEFT_GRF = list(ch.GRF_IDX["l"])


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """The `evals` section of a config.

    Attributes:
        model: a gaitjax bundle or a folder of `denoiser/` and `refiner/` train.py workdirs.
        store: an evaluation store (`python -m gaitjax.data.prepare --kind eval`); "" with
            data.synthetic_trials > 0 writes held-out SYNTHETIC trials into the workdir.
        tasks: comma-separated subset of task1, trunk_sway, speed.
        masks: task-1 conditions: "none" and body parts ("trunk", "hips+knees", ...), comma-separated.
        fills: task-1 filling methods for masked conditions: "diffusion", "median" or both.
        window_step: task-1 frames between windows (paper: 15; 150 = no overlap, faster).
        trunk_sway_factors, speed_factors: the grids (paper: 1, 2, 2.5, 3 and 0.75..1.25).
        n_seeds: samples per trial and factor; guided: use the hinge guidance; n_steps: DDIM steps.
        max_trials: use at most this many trials per task (0: all); batch: windows per jitted call.
        matmul_dtype: "" runs the models as trained; "bfloat16" rounds matmul operands to bf16.
        baselines: more task-1 force models, "NAME=WORKDIR,..." (e.g. "cnn=runs/cnn,lstm=runs/lstm").
        diffusion_alone: also estimate forces with the diffusion model alone (paper's model 0).
    """

    model: str = ""
    store: str = ""
    tasks: str = "task1,trunk_sway,speed"
    masks: str = "none,trunk,pelvis,hips,knees,ankles"
    fills: str = "diffusion,median"
    window_step: int = 15
    trunk_sway_factors: tuple = (1.0, 2.0, 2.5, 3.0)
    speed_factors: tuple = (0.75, 0.85, 0.95, 1.05, 1.15, 1.25)
    n_seeds: int = 3
    guided: bool = True
    n_steps: int = 50
    max_trials: int = 0
    batch: int = 64
    matmul_dtype: str = ""
    baselines: str = ""
    diffusion_alone: bool = False
    every: int = 0  # reserved: evaluation during training (not used yet)


def eval_config(config: ml_collections.ConfigDict) -> EvalConfig:
    """The typed `evals` section; unknown keys and bad task names are clear errors."""
    values = dict(config.evals)
    known = {f.name for f in dataclasses.fields(EvalConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise GaitDataError(f"config.evals has unknown keys {unknown}; known keys: {sorted(known)}")
    for key in ("trunk_sway_factors", "speed_factors"):
        if key in values:
            values[key] = tuple(float(v) for v in values[key])
    ev = EvalConfig(**values)
    bad = [t for t in _split(ev.tasks) if t not in TASK_NAMES]
    if bad or not _split(ev.tasks):
        raise GaitDataError(f"config.evals.tasks={ev.tasks!r}: expected some of {list(TASK_NAMES)}")
    if not ev.model:
        raise GaitDataError(
            "config.evals.model is required: a gaitjax bundle or a folder of train.py workdirs"
        )
    return ev


def _split(text: str) -> list[str]:
    return [t.strip() for t in str(text).split(",") if t.strip()]


def _skeleton(store: Store, entry):
    from gaitjax.data.prepare import _model
    from gaitjax.data.synthetic import rajagopal_osim_path

    osim = entry.meta.extra.get("osim_file")
    if store.synthetic or not osim:
        osim = str(rajagopal_osim_path())  # the synthetic trials' model (generic size)
    return _model(osim)[1]


def _trials(store: Store, max_trials: int):
    trials = list(store.trials)
    return trials[:max_trials] if max_trials > 0 else trials


def _force_models(bundle: Bundle, ev: EvalConfig) -> list[tuple[str, LoadedModel | None]]:
    """(name, force model) pairs: the refiner, each baseline workdir, and None for "diffusion alone"."""
    models: list[tuple[str, LoadedModel | None]] = [("refiner", bundle.refiner)]
    for item in _split(ev.baselines):
        name, _, path = item.partition("=")
        if not path:
            raise GaitDataError(f"config.evals.baselines item {item!r}: expected NAME=WORKDIR")
        model = load_bundle(path, matmul_dtype=ev.matmul_dtype or None).refiner
        if model is None:
            raise GaitDataError(
                f"config.evals.baselines {name}: {path} holds no force model (cnn, lstm, refiner)"
            )
        models.append((name.strip(), model))
    if ev.diffusion_alone:
        models.append(("diffusion", None))
    return models


def run_task1(bundle: Bundle, store: Store, ev: EvalConfig, key: jax.Array) -> tuple[list[dict], str]:
    """Task 1 over every force model, trial and condition: tidy rows and the tables in the paper's form."""
    conditions = []
    for name, model in _force_models(bundle, ev):
        for mask in _split(ev.masks):
            if mask == "none":
                conditions.append((name, model, "none", "-", np.array([], np.int64)))
            else:  # the diffusion model alone generates the masked channels itself: one "fill" only
                fills = _split(ev.fills) if model is not None else ["diffusion"]
                conditions += [(name, model, mask, f, unknown_channels(mask)) for f in fills]
    all_rows, text = [], []
    for name, model, mask, fill, unknown in conditions:
        errors = []
        for e in _trials(store, ev.max_trials):
            x_tc, valid_t = store.trial_states(e.trial_id), store.trial_valid(e.trial_id)
            est = estimate_forces(
                x_tc,
                unknown,
                refiner=model,
                denoiser=bundle.denoiser,
                fill=fill if len(unknown) else "median",
                window_step=ev.window_step,
                key=key,
                batch=ev.batch,
                n_steps=ev.n_steps,
            )
            speed = float(np.mean(np.abs(x_tc[:, ch.CHANNEL_INDEX["pelvis_tx"]]))) * e.meta.height_m
            errors.append(
                trial_errors(
                    x_tc[:, _LEFT_GRF],
                    est.x_tc[:, _LEFT_GRF],
                    100.0,
                    study=e.meta.study,
                    trial=e.meta.trial,
                    running=speed > 2.2,
                    overground=abs(e.meta.extra.get("belt_speed_mean_m_s", 0.0)) < 0.2,
                    keep=valid_t,
                )
            )
        rows = metric_rows(errors)
        for r in rows:
            all_rows.append({"model": name, "mask": mask, "fill": fill, **r})
        filled = "" if mask == "none" else f" (filled by {fill})"
        text.append(f"== task 1, {name}: unknown = {mask}{filled}")
        text.append(format_table(rows))
    return all_rows, "\n".join(text)


def _plot_task1(rows: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    overall = [r for r in rows if r["level"] == "all"]
    conds = list(dict.fromkeys((r["model"], r["mask"], r["fill"]) for r in overall))
    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.4 * len(METRICS), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], METRICS, strict=True):
        vals = [
            next(r for r in overall if (r["model"], r["mask"], r["fill"]) == c and r["metric"] == metric)
            for c in conds
        ]
        mean = [v["mae_bw_percent"] for v in vals]
        sd = [
            0.0 if v["sd_bw_percent"] is None or not np.isfinite(v["sd_bw_percent"]) else v["sd_bw_percent"]
            for v in vals
        ]
        names = list(dict.fromkeys(n for n, _, _ in conds))
        colours = [plt.get_cmap("tab10")(names.index(n)) for n, _, _ in conds]
        ax.bar(range(len(conds)), mean, yerr=sd, color=colours, alpha=0.85, capsize=3)
        ax.set_xticks(
            range(len(conds)),
            [f"{n}: {m}" if f == "-" else f"{n}: {m}/{f}" for n, m, f in conds],
            fontsize=7,
            rotation=60,
            ha="right",
        )
        ax.set_title(METRIC_TITLES[metric], fontsize=9)
        ax.set_ylabel("MAE (%BW)")
    fig.suptitle("Task 1: force estimation error, mean ± SD across studies")
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def _write_csv(rows: list[dict], path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["empty"])
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    return path


def _format_summary(task: str, summary: dict, measured: dict[str, float]) -> str:
    lines = [f"== {task}: mean over trials (± SD over seeds); measured at factor 1 in brackets"]
    for metric, by_factor in summary.items():
        cells = "  ".join(f"x{f:g}: {m:.3g} ± {s:.2g}" for f, (m, s) in sorted(by_factor.items()))
        lines.append(f"{metric:32s} {cells}  [{measured.get(metric, float('nan')):.3g}]")
    return "\n".join(lines)


def evaluate(config: ml_collections.ConfigDict, workdir: str | Path, *, progress: bool = True) -> dict:
    """Runs the evaluations named by `config.evals` and writes their tables and figures into `workdir`."""
    from tqdm import tqdm

    ev = eval_config(config)
    workdir = Path(workdir).expanduser().resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    bundle = load_bundle(ev.model, matmul_dtype=ev.matmul_dtype or None)
    if ev.store:
        store = Store.open(ev.store)
    elif int(config.data.get("synthetic_trials", 0)) > 0:
        from gaitjax.data.synthetic import write_synthetic_store

        n = ev.max_trials or 6
        store = Store.open(
            write_synthetic_store(workdir / "synthetic_eval_store", n_trials=n, seed=config.seed + 1)
        )
    else:
        raise GaitDataError(
            "config.evals.store is required: a store from `python -m gaitjax.data.prepare --kind eval`"
        )
    tasks = _split(ev.tasks)
    if "task1" in tasks and bundle.refiner is None:
        raise GaitDataError(f"task 1 needs a refiner; {bundle.path} has none")
    if any(t != "task1" for t in tasks) and bundle.denoiser is None:
        raise GaitDataError(f"tasks 2 and 3 need a denoiser; {bundle.path} has none")
    key = jax.random.key(int(config.seed))
    results: dict = {"model": str(bundle.path), "store": str(store.path), "synthetic": store.synthetic}
    for task in tqdm(tasks, desc="evaluate", disable=not progress):
        if task == "task1":
            rows, text = run_task1(bundle, store, ev, key)
            _write_csv(rows, workdir / "task1_rows.csv")
            (workdir / "task1_table.txt").write_text(text + "\n")
            _plot_task1(rows, workdir / "task1_mae.png")
            print(text, flush=True)
            results["task1"] = [r for r in rows if r["level"] == "all"]
            continue
        factors = ev.trunk_sway_factors if task == "trunk_sway" else ev.speed_factors
        contexts = []
        for e in _trials(store, ev.max_trials):
            x_tc, valid_t = store.trial_states(e.trial_id), store.trial_valid(e.trial_id)
            contexts.append(
                context_from_trial(
                    task, e.meta.name, x_tc, valid_t, e.meta.mass_kg, e.meta.height_m, _skeleton(store, e)
                )
            )
        rows, measured_rows = run_task(
            task,
            bundle.denoiser,
            contexts,
            factors,
            n_seeds=ev.n_seeds,
            key=key,
            guided=ev.guided,
            n_steps=ev.n_steps,
            max_windows_per_call=ev.batch,
        )
        write_table(rows + measured_rows, workdir / f"{task}_rows.csv")
        measured = {
            m: float(np.nanmean([r["value"] for r in measured_rows if r["metric"] == m]))
            for m in {r["metric"] for r in measured_rows}
        }
        summary = summarise(rows)
        tag = " (SYNTHETIC data)" if store.synthetic else ""
        title = f"{task}{tag}: {len(contexts)} trials x {ev.n_seeds} seeds"
        plot_summary(rows, workdir / f"{task}.png", title, measured)
        doc = {
            "factors": list(factors),
            "summary": {m: {str(f): v for f, v in s.items()} for m, s in summary.items()},
            "measured_at_factor_1": measured,
        }
        (workdir / f"{task}_summary.json").write_text(json.dumps(doc, indent=1))
        print(_format_summary(task, summary, measured), flush=True)
        results[task] = doc
    (workdir / "results.json").write_text(json.dumps(results, indent=1, default=str))
    return results
