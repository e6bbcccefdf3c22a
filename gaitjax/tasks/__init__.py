"""gaitjax.tasks."""
