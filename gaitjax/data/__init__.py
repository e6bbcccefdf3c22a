"""gaitjax.data."""
