"""Evaluates trained gaitjax models: `python evaluate.py --config=configs/<name>.py[:args] --workdir=DIR`.

Runs what `config.evals` names (task 1 force table with full and masked kinematics, task 2 trunk sway ->
knee adduction moment, task 3 running speed) on the store it names, prints the tables in the paper's form
and writes CSV/JSON tables and PNG figures into the workdir. Set the models with --config.evals.model=DIR.
"""

from __future__ import annotations

from absl import app, flags, logging
from ml_collections import config_flags

from gaitjax.entry import fail, flags_parser

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file (its evals section).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory for tables and figures.")
flags.mark_flags_as_required(["config", "workdir"])


def _fail(message: str) -> None:
    fail("evaluate.py", message)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    from gaitjax.data.errors import GaitDataError
    from gaitjax.evaluation.runner import evaluate

    try:
        evaluate(_CONFIG.value, _WORKDIR.value)
    except GaitDataError as e:
        _fail(str(e))


if __name__ == "__main__":
    from gaitjax.data.errors import GaitDataError

    app.run(main, flags_parser=flags_parser("evaluate.py", GaitDataError))
