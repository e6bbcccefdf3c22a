"""Trains a gaitjax model: `python train.py --config=configs/<name>.py[:args] --workdir=DIR`.

Multi-process: run the same command once per process with --num_processes, --process_id and
--coordinator (host:port of process 0); on managed clusters jax.distributed detects these itself.
"""

from __future__ import annotations

from absl import app, flags, logging
from ml_collections import config_flags

from gaitjax.entry import fail, flags_parser

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, plots).")
_COORDINATOR = flags.DEFINE_string("coordinator", None, "host:port of process 0 (multi-process runs).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process runs).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (multi-process runs).")
flags.mark_flags_as_required(["config", "workdir"])


def _fail(message: str) -> None:
    fail("train.py", message)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
    import jax

    if _NUM_PROCESSES.value and _NUM_PROCESSES.value > 1:
        jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    from gaitjax.data.errors import GaitDataError
    from gaitjax.parallel.mesh import MeshConfigError
    from gaitjax.train.config_check import ConfigError
    from gaitjax.train.loop import NonFiniteLossError, train

    try:
        train(_CONFIG.value, _WORKDIR.value)
    except (ConfigError, MeshConfigError, GaitDataError, NonFiniteLossError) as e:
        _fail(str(e))


if __name__ == "__main__":
    from gaitjax.data.errors import GaitDataError
    from gaitjax.train.config_check import ConfigError

    # An unknown --config.* key or a bad config argument would otherwise end in a long traceback.
    app.run(main, flags_parser=flags_parser("train.py", ConfigError, GaitDataError))
