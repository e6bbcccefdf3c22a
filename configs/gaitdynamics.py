"""GaitDynamics training on a prepared store, at the paper's or the released size.

Command (denoiser at the paper's size; the store comes from `python -m gaitjax.data.prepare`):
  python train.py --config=configs/gaitdynamics.py:model=paper,task=denoiser \
      --config.data.store=STORE --workdir=runs/denoiser_paper
Arguments after ":" (comma-separated): model=paper|released, task=denoiser|refiner|cnn|lstm.
It prints the parameter count (denoiser paper 4,769,855; released 27,392,063; refiner 2,090,124), the
mesh, "starting at step 0 (scratch)" (or the resumed step), then a progress bar with loss and steps/s,
and writes checkpoints/, metrics.jsonl and loss.png into the workdir. Without --config.data.store it
stops with one message saying the store is required.
"""

from gaitjax.train.config_check import base_config, parse_arg


def get_config(arg: str | None = None):
    args = parse_arg(arg, {"model": "paper", "task": "denoiser"})
    return base_config(kind=args["task"], preset=args["model"])
