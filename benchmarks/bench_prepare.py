"""Seconds to prepare the whole of ../shared/data/real (OpenSim folders and the .b3d) into a store.

Run: `python benchmarks/bench_prepare.py [--source DIR]`; prints one JSON line per figure (cold run, which
includes compiling forward kinematics once per model, and a second run in the same process).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import emit  # noqa: E402

from gaitjax.data.prepare import prepare  # noqa: E402

DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    args = parser.parse_args()
    if not args.source.is_dir():
        sys.exit(f"bench_prepare: no data at {args.source} (pass --source DIR)")
    with tempfile.TemporaryDirectory() as tmp:
        for run in ("cold", "warm"):
            t0 = time.perf_counter()
            store = prepare([args.source], Path(tmp) / "store", progress=False)
            seconds = time.perf_counter() - t0
            rows = store.fate_table()
            emit(
                f"prepare_real_data_{run}",
                round(seconds, 2),
                "s",
                trials=len(rows),
                kept=sum(r["status"] == "kept" for r in rows),
                frames_kept=int(sum(r["n_frames"] for r in rows if r["status"] == "kept")),
            )


if __name__ == "__main__":
    main()
