"""gaitjax.skeleton."""
