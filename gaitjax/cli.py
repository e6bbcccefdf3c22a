"""The `gaitjax` console script: `gaitjax predict ...` and `gaitjax convert-torch ...`."""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = """usage: gaitjax COMMAND [ARGS]

commands:
  predict        ground reaction forces (and missing kinematics) for OpenSim IK .mot files
  convert-torch  turn the released GaitDynamics .pt weights into a gaitjax model bundle

`gaitjax COMMAND --help` describes each command's arguments."""


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "predict":
        from gaitjax.predict import main as run
    elif command == "convert-torch":
        from gaitjax.compat.torch_checkpoint import convert_main as run
    else:
        print(f"gaitjax: error: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    return run(rest)


if __name__ == "__main__":
    sys.exit(main())
