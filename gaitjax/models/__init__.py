"""gaitjax.models."""
