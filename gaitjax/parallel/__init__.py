"""gaitjax.parallel."""
