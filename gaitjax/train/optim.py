"""The optimizer from `config.optim`: optax Adan with the paper's settings (Adam for the baselines),
constant learning rate, optional global-norm gradient clipping."""

from __future__ import annotations

import dataclasses

import optax


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Optimizer settings (the `optim` section of a config).

    Attributes:
      name: "adan" (denoiser, refiner) or "adam" (CNN/LSTM baselines, spec §7.5).
      lr: constant learning rate (no schedule, no warm-up; spec §3.3).
      b1, b2, b3: EMA rates in optax's convention. The Adan paper's betas (0.02, 0.08, 0.01) are
        1 - these (0.98, 0.92, 0.99). Adam uses b1, b2 only.
      eps: added to the square root of the second moment.
      weight_decay: decoupled weight decay on all parameters (0.02 for Adan).
      grad_clip_norm: clip the global gradient norm to this value; 0 disables clipping.
    """

    name: str = "adan"
    lr: float = 4e-4
    b1: float = 0.98
    b2: float = 0.92
    b3: float = 0.99
    eps: float = 1e-8
    weight_decay: float = 0.02
    grad_clip_norm: float = 0.0


def make_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
    """Builds the optax transformation for `cfg`.

    Adan differs from the released PyTorch Adan (lucidrains) on purpose: optax updates the moments on the
    first step (the released one only decays the weights: θ /= 1 + lr·wd), its bias corrections count the
    moment updates (the released one is off by one), and weight decay is θ -= lr·wd·θ rather than
    θ /= 1 + lr·wd (equal to first order). We train our own weights, so these quirks are not reproduced.
    `eps_root` is 0 so the denominator is √n̂ + eps as in both Adan references.

    Args:
      cfg: optimizer settings.

    Returns:
      An optax GradientTransformation taking gradients and params.

    Raises:
      ValueError: unknown optimizer name.
    """
    if cfg.name == "adan":
        tx = optax.adan(
            cfg.lr, b1=cfg.b1, b2=cfg.b2, b3=cfg.b3, eps=cfg.eps, eps_root=0.0, weight_decay=cfg.weight_decay
        )
    elif cfg.name == "adam":
        tx = optax.adamw(cfg.lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay)
    else:
        raise ValueError(f"config.optim.name must be 'adan' or 'adam', got {cfg.name!r}")
    if cfg.grad_clip_norm > 0:
        tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), tx)
    return tx
