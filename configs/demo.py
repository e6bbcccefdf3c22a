"""Demo: small models trained on an embedded SYNTHETIC gait store (written into the workdir on first run).

Commands (2 CPU cores; a few minutes each):
  python train.py --config=configs/demo.py --workdir=runs/demo/denoiser
  python train.py --config=configs/demo.py:task=refiner --workdir=runs/demo/refiner
  python evaluate.py --config=configs/demo.py --workdir=runs/demo/eval
Each training run prints the parameter count, "starting at step 0 (scratch)", then a progress bar whose
loss falls visibly (the x0 loss in the [-10, 10] normalised space starts near 30), and writes checkpoints/,
metrics.jsonl and loss.png; rerunning resumes (or finds it done). evaluate.py prints the task-1 table and
the trunk-sway and speed summaries and writes CSV/JSON tables and PNG figures into runs/demo/eval.
CI variant (< 1 minute each): add `:runlocal` (`:task=refiner,runlocal` for the refiner).
"""

from gaitjax.train.config_check import base_config, parse_arg

_SIZES = {
    "denoiser": {"width": 64, "depth": 2, "heads": 4, "ff_dim": 128},
    "refiner": {"width": 64, "depth": 2, "heads": 4, "ff_dim": 128},
}


def get_config(arg: str | None = None):
    args = parse_arg(arg, {"task": "denoiser", "runlocal": ""})
    runlocal = bool(args["runlocal"])
    config = base_config(kind=args["task"], preset="paper")
    config.model.overrides.update(_SIZES.get(args["task"], {}))
    config.data.synthetic_trials = 6 if runlocal else 48
    config.data.batch_size = 8 if runlocal else 32
    config.optim.lr = 1e-3
    config.train.steps = 20 if runlocal else 1500
    config.train.log_every = 5 if runlocal else 50
    config.train.checkpoint_every = 10 if runlocal else 500
    # evaluate.py: models trained by the two commands above into runs/demo/{denoiser,refiner}.
    config.evals.model = "runs/demo"
    if runlocal:
        config.evals.update(
            masks="none,knees", window_step=150, n_steps=5, n_seeds=2, max_trials=2,
            trunk_sway_factors=(1.0, 2.5), speed_factors=(0.9, 1.1),
        )  # fmt: skip
    return config
