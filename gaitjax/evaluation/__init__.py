"""gaitjax.evaluation."""
