"""Shared fixtures: where the real gait data lives, and a clear skip when it is absent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GAITJAX_SHARED", REPO_ROOT.parent / "shared"))
REAL_DATA = SHARED / "data" / "real"
GOLDEN_DATA = SHARED / "data" / "golden"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(
            f"real gait data not found at {path} (it lives beside the repository in ../shared; "
            "set GAITJAX_SHARED to its location to run this test)"
        )
    return path


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The folder `../shared/data/real` (skips the test when it is absent)."""
    return _require(REAL_DATA)


@pytest.fixture(scope="session")
def golden_data() -> Path:
    """The folder `../shared/data/golden` (skips the test when it is absent)."""
    return _require(GOLDEN_DATA)


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory) -> Path:
    """A folder with `denoiser/`, `refiner/` and `cnn/` train.py workdirs: 20 steps each on the synthetic demo
    store (`configs/demo.py:runlocal`). Untrained in any useful sense; for end-to-end plumbing tests."""
    root = tmp_path_factory.mktemp("demo_models")
    for name, arg in (
        ("denoiser", "runlocal"),
        ("refiner", "task=refiner,runlocal"),
        ("cnn", "task=cnn,runlocal"),
    ):
        cmd = [sys.executable, "train.py", f"--config=configs/demo.py:{arg}", f"--workdir={root / name}"]
        proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return root
