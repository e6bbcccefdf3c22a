"""A small denoiser (or refiner) trained on the real gait data in ../shared/data/real, sized for 2 CPU cores.

Commands:
  python -m gaitjax.data.prepare --source ../shared/data/real --out stores/small_real
  python train.py --config=configs/small_real.py --workdir=runs/small_real
  python train.py --config=configs/small_real.py:task=refiner --workdir=runs/small_real_refiner
The second prints the parameter count, "starting at step 0 (scratch)", then a progress bar with the loss
falling over 2,000 steps (about 10 minutes), and writes checkpoints/, metrics.jsonl and loss.png.
Use --config.data.store=DIR if the store lives elsewhere.
"""

from gaitjax.train.config_check import base_config, parse_arg


def get_config(arg: str | None = None):
    args = parse_arg(arg, {"task": "denoiser"})
    config = base_config(kind=args["task"], preset="paper")
    config.model.overrides.update({"width": 128, "depth": 3, "heads": 4, "ff_dim": 256})
    config.data.store = "stores/small_real"
    config.data.batch_size = 32
    config.train.steps = 2000
    config.train.log_every = 50
    config.train.checkpoint_every = 500
    return config
