"""gaitjax.train."""
