"""The train step, the optimizer settings and `train.py` end to end: demo run, exact resume after a real
SIGKILL, a 2-process run on 127.0.0.1 against a 1-process run, clear errors for bad configs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import chex
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from gaitjax.models.registry import build_model
from gaitjax.parallel import mesh as mesh_lib
from gaitjax.train.optim import OptimConfig, make_optimizer
from gaitjax.train.state import init_state
from gaitjax.train.step import make_loss_fn, train_step

REPO = Path(__file__).resolve().parents[2]
DEMO = "configs/demo.py:runlocal"


def _train_cmd(workdir: Path, *overrides: str, config: str = DEMO) -> list[str]:
    return [sys.executable, "train.py", f"--config={config}", f"--workdir={workdir}", *overrides]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return {**env, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1", **extra}


def _run(cmd: list[str], timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, env=_env(**env), capture_output=True, text=True, timeout=timeout)


def _metrics(workdir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows}


def _final_arrays(workdir: Path) -> tuple[int, dict]:
    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    path = workdir / "checkpoints" / str(steps[-1]) / "state"
    checkpointer = ocp.PyTreeCheckpointer()
    # As host numpy arrays, so a checkpoint written by two processes reads back in this one.
    as_numpy = jax.tree.map(
        lambda _: ocp.RestoreArgs(restore_type=np.ndarray), checkpointer.metadata(path).item_metadata.tree
    )
    return steps[-1], checkpointer.restore(path, args=ocp.args.PyTreeRestore(restore_args=as_numpy))


def test_adan_follows_the_paper_settings():
    """Paper betas 0.02/0.08/0.01 are 1 - optax's b1/b2/b3; one step from zero moments is hand-derivable."""
    cfg = OptimConfig()
    assert (1 - cfg.b1, 1 - cfg.b2, 1 - cfg.b3) == pytest.approx((0.02, 0.08, 0.01))
    tx = make_optimizer(OptimConfig(lr=0.1, weight_decay=0.0))
    params = {"w": np.array([1.0, -2.0], np.float32)}
    grads = {"w": np.array([0.5, -0.25], np.float32)}
    updates, _ = tx.update(grads, tx.init(params), params)
    # First step: bias-corrected m = g, n = g^2 (the gradient difference is 0), so the update is
    # -lr * (g + (1 - b2) * 0) / (|g| + eps) = -lr * sign(g).
    np.testing.assert_allclose(updates["w"], [-0.1, 0.1], rtol=1e-6)


def test_train_step_lowers_the_loss_and_compiles_once():
    model = build_model("refiner", "released", width=32, depth=1, heads=4, ff_dim=64, dropout=0.0)
    mesh = mesh_lib.make_mesh([("data", -1), ("fsdp", 1)], jax.devices()[:1])
    state, shardings = init_state(
        model, "refiner", make_optimizer(OptimConfig(lr=3e-3)), jax.random.key(0), mesh
    )
    loss_fn = make_loss_fn("refiner")

    @chex.assert_max_traces(n=1)
    def traced(state, batch, key):
        return train_step(state, batch, key, loss_fn=loss_fn, ema_decay=0.999)

    step = jax.jit(traced, donate_argnums=0)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(8, 150, 63)).astype(np.float32)
    x[..., 9:21] = np.tanh(x[..., 21:33] + x[..., 33:45])  # forces that depend on the kinematics
    losses = []
    for i in range(40):
        batch = {"x_btc": x + np.float32(0.0 * i)}  # new host arrays each call: still no retrace
        state, metrics = step(state, batch, jax.random.key(1))
        losses.append(float(metrics["loss"]))
    assert int(state.step) == 40
    assert losses[-1] < 0.5 * losses[0], losses
    # EMA moves towards the parameters but lags them.
    leaf = jax.tree.leaves(state.params)[0]
    ema = jax.tree.leaves(state.ema_params)[0]
    assert not np.allclose(np.asarray(leaf), np.asarray(ema))


@pytest.mark.slow
def test_demo_runlocal_writes_checkpoint_metrics_and_plot_then_finds_itself_done(tmp_path):
    proc = _run(_train_cmd(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    step, _ = _final_arrays(run)
    assert step == 20
    assert (run / "loss.png").stat().st_size > 1000
    losses = _metrics(run)
    assert sorted(losses) == list(range(20)) and all(np.isfinite(v) for v in losses.values())
    again = _run(_train_cmd(run))
    assert again.returncode == 0 and "starting at step 20 (resume)" in again.stdout + again.stderr


@pytest.mark.slow
def test_sigkill_after_a_checkpoint_then_resume_equals_an_uninterrupted_run(tmp_path):
    overrides = (
        "--config.train.steps=120",
        "--config.train.log_every=1",
        "--config.train.checkpoint_every=30",
    )
    ref = _run(_train_cmd(tmp_path / "ref", *overrides))
    assert ref.returncode == 0, ref.stderr[-3000:]

    work = tmp_path / "killed"
    proc = subprocess.Popen(
        _train_cmd(work, *overrides),
        cwd=REPO,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        ckpts = work / "checkpoints"
        if ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir()):
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (
        "the run ended before it could be killed; the test proves nothing"
    )
    killed_at, _ = _final_arrays(work)
    assert killed_at < 120

    resumed = _run(_train_cmd(work, *overrides))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"starting at step {killed_at} (resume)" in resumed.stdout + resumed.stderr
    ref_losses, got_losses = _metrics(tmp_path / "ref"), _metrics(work)
    assert sorted(got_losses) == sorted(ref_losses) == list(range(120))
    assert [got_losses[s] for s in range(120)] == [ref_losses[s] for s in range(120)]
    (_, ref_state), (_, got_state) = _final_arrays(tmp_path / "ref"), _final_arrays(work)
    chex.assert_trees_all_equal(got_state, ref_state)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_on_localhost_agree_with_one(tmp_path):
    overrides = ("--config.train.steps=3", "--config.train.log_every=1", "--config.train.checkpoint_every=3")
    single = _run(_train_cmd(tmp_path / "one", *overrides))
    assert single.returncode == 0, single.stderr[-3000:]

    port = _free_port()
    work = tmp_path / "two"
    procs = [
        subprocess.Popen(
            _train_cmd(
                work, *overrides, f"--coordinator=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}"
            ),
            cwd=REPO,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert "2 process(es)" in outs[0][1] + outs[0][0]
    one, two = _metrics(tmp_path / "one"), _metrics(work)
    assert sorted(two) == [0, 1, 2]
    np.testing.assert_allclose([two[s] for s in range(3)], [one[s] for s in range(3)], rtol=1e-5)
    (_, one_state), (_, two_state) = _final_arrays(tmp_path / "one"), _final_arrays(work)
    chex.assert_trees_all_close(two_state["params"], one_state["params"], atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "config", "env", "message"),
    [
        (("--config.optim.lrr=0.1",), DEMO, {}, "unknown config key in --config.optim.lrr"),
        ((), "configs/gaitdynamics.py:model=paper", {}, "config.data.store is required"),
        (("--config.data.store=/no/such/store",), "configs/gaitdynamics.py", {}, "does not exist"),
        (
            ("--config.data.batch_size=6",),
            DEMO,
            {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"},
            "batch_size=6 is not divisible by the number of devices (4",
        ),
        (("--config.optim.lr=1e30",), DEMO, {}, "the training loss became nan at step"),
    ],
)
def test_bad_configs_stop_with_one_clear_message(tmp_path, args, config, env, message):
    proc = _run(_train_cmd(tmp_path / "w", *args, config=config), **env)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("train.py: error:") and message in last, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
