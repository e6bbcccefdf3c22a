"""gaitjax.diffusion."""
