"""What the absl entry points (train.py, evaluate.py) share: one-line errors instead of tracebacks."""

from __future__ import annotations

import sys
from collections.abc import Callable

from absl import flags


def fail(program: str, message: str) -> None:
    """Prints `<program>: error: <message>` to stderr and exits with status 2."""
    print(f"{program}: error: {message}", file=sys.stderr)
    sys.exit(2)


def flags_parser(program: str, *extra_errors: type[Exception]) -> Callable[[list[str]], list[str]]:
    """An absl `flags_parser` that turns an unknown `--config.*` key, a bad config argument (`extra_errors`)
    or a bad flag into one clear line."""

    def parse(argv: list[str]) -> list[str]:
        try:
            return flags.FLAGS(argv)
        except (AttributeError, KeyError) as e:
            key = next((a.split("=")[0] for a in argv if a.startswith("--config.")), "--config.*")
            fail(program, f"unknown config key in {key}: {str(e.args[0] if e.args else e).strip()!r}")
        except (flags.Error, *extra_errors) as e:
            fail(program, str(e))

    return parse
