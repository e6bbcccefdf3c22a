"""Demo: small models trained on an embedded synthetic gait store (written into the workdir on first run).

Commands (2 CPU cores; a few minutes each):
  python train.py --config=configs/demo.py --workdir=runs/demo_denoiser
  python train.py --config=configs/demo.py:task=refiner --workdir=runs/demo_refiner
Each prints the parameter count, "starting at step 0 (scratch)", then a progress bar whose loss falls
visibly (denoiser from about 1 to well below it; refiner by more than half), and writes checkpoints/,
metrics.jsonl and loss.png into the workdir. Rerunning the same command resumes (or finds it done).
CI variant (< 1 minute): python train.py --config=configs/demo.py:runlocal --workdir=/tmp/demo
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
    return config
