"""gaitjax.compat."""
