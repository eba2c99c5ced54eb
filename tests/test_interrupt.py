"""Interruption: SIGTERM stops `sfpo train` with a checkpoint and `--resume` reaches the uninterrupted run's
weights; `kill -9` at a save leaves the newest complete checkpoint loadable and metrics.jsonl readable."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from sfpo.algorithm.interrupt import GracefulStop
from sfpo.app.cli import app
from sfpo.app.pipeline import checkpoint_is_complete, last_checkpoint
from sfpo.app.runlog import read_metrics

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "cpu" / "tiny-arithmetic-sfpo.yaml"
# 2 RL steps of 4 prompts x 4 completions, K=1, 2 optimizer steps per pass: 4 optimizer steps per RL step.
SMALL = [
    "eval=null",
    "trainer.sfpo_max_rl_steps=2",
    "trainer.sfpo_inner_steps=1",
    "trainer.generation_batch_size=16",
    "trainer.per_device_train_batch_size=8",
    "trainer.num_generations=4",
    "trainer.max_completion_length=12",
    "trainer.save_steps=1000",
]
DEADLINE_S = 300  # only against a hang; nothing here is timed


def sets(*pairs: str) -> list[str]:
    return [arg for pair in pairs for arg in ("--set", pair)]


def start_train(run: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [
        sys.executable,
        "-m",
        "sfpo.app.cli",
        "train",
        "--config",
        str(RECIPE),
        *sets(f"trainer.output_dir={run}", *SMALL, *extra),
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if proc.poll() is not None:
            pytest.fail(
                f"sfpo train ended (rc {proc.returncode}) before the test could signal it:\n"
                + proc.stderr.read()[-3000:]
            )
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("sfpo train made no progress")
        time.sleep(0.05)


def train_in_process(run: Path, *flags: str) -> None:
    result = CliRunner().invoke(
        app, ["train", "--config", str(RECIPE), *flags, *sets(f"trainer.output_dir={run}", *SMALL)]
    )
    assert result.exit_code == 0, result.output + repr(result.exception)


def test_sigterm_checkpoints_and_resume_matches_the_uninterrupted_run(tmp_path):
    run = tmp_path / "interrupted"
    proc = start_train(run)
    wait_for(lambda: bool(read_metrics(run / "metrics.jsonl")), proc)  # RL step 1 done: mid-training
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "interrupted: stopped by SIGTERM" in err and "--resume" in err
    checkpoint = last_checkpoint(run)
    assert checkpoint is not None and checkpoint_is_complete(Path(checkpoint))
    step = int(checkpoint.rsplit("-", 1)[1])
    assert 4 <= step < 8, "stopped within one optimizer step of the signal, before the end"
    assert [r["rl_step"] for r in read_metrics(run / "metrics.jsonl")] == list(range(1, step // 4 + 1))
    assert not (run / "final").exists()

    train_in_process(run, "--resume")
    train_in_process(tmp_path / "full")
    resumed = load_file(run / "final" / "model.safetensors")
    full = load_file(tmp_path / "full" / "final" / "model.safetensors")
    for key in full:
        torch.testing.assert_close(resumed[key], full[key], rtol=0, atol=1e-6, msg=key)
    assert [r["rl_step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2]


def test_kill_9_during_a_save_leaves_a_loadable_checkpoint_and_readable_metrics(tmp_path):
    from transformers import AutoModelForCausalLM

    run = tmp_path / "killed"
    proc = start_train(run, "trainer.save_steps=2")  # checkpoint-2, -4, -6, ... of 16 steps
    wait_for(lambda: (run / "checkpoint-6").exists(), proc)  # kill as the third save starts (of 4)
    proc.kill()
    proc.communicate(timeout=DEADLINE_S)
    with open(run / "metrics.jsonl", "a") as f:  # and as if a line was being written
        f.write('{"rl_step": 9, "rollo')

    checkpoint = Path(last_checkpoint(run))
    assert checkpoint.name in ("checkpoint-4", "checkpoint-6") and checkpoint_is_complete(checkpoint)
    AutoModelForCausalLM.from_pretrained(checkpoint)
    torch.load(checkpoint / "optimizer.pt", weights_only=True)
    torch.load(checkpoint / "sfpo_state-rank0.pt", weights_only=False)
    assert json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] == int(
        checkpoint.name[11:]
    )
    assert all(r["rl_step"] < 9 for r in read_metrics(run / "metrics.jsonl"))

    # A save cut short at any file: a newer folder without the completeness marker is skipped.
    torn = run / "checkpoint-100"
    shutil.copytree(checkpoint, torn)
    (torn / "sfpo_state.json").unlink()
    (torn / "model.safetensors").write_bytes((torn / "model.safetensors").read_bytes()[:100])
    assert last_checkpoint(run) == str(checkpoint)


def test_second_signal_stops_at_once():
    previous = signal.signal(
        signal.SIGINT, signal.default_int_handler
    )  # a background job starts with SIG_IGN
    try:
        _second_signal()
    finally:
        signal.signal(signal.SIGINT, previous)


def _second_signal():
    stop = GracefulStop()
    with stop, pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signum == signal.SIGINT, "the first signal only sets the flag"
        os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.distributed
def test_a_signal_on_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    from conftest import build_tiny_lm

    build_tiny_lm(tmp_path / "model")
    here = Path(__file__).parent
    env = {
        **os.environ,
        "PYTHONPATH": f"{here}{os.pathsep}{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29541",
        str(here / "_interrupt_worker.py"),
        str(tmp_path),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=DEADLINE_S)
    assert done.returncode == 0, done.stderr[-4000:]
    r0, r1 = (torch.load(tmp_path / f"stop-rank{r}.pt") for r in (0, 1))
    assert r0["stopped_step"] == r1["stopped_step"] == r0["global_step"] == 3, (r0, r1)
    assert r0["signum"] == r1["signum"] == signal.SIGTERM  # rank 0 learned it from rank 1
    checkpoint = tmp_path / "run" / "checkpoint-3"
    assert checkpoint_is_complete(checkpoint, world_size=2) and not checkpoint_is_complete(
        checkpoint, world_size=3
    )
    assert last_checkpoint(tmp_path / "run", world_size=2) == str(checkpoint)


@pytest.mark.slow
def test_sigterm_during_demo_writes_checkpoint_and_metrics(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sfpo.app.cli",
            "demo",
            "--steps",
            "6",
            "--eval-every",
            "1",
            "--arms",
            "sfpo",
            "--out",
            str(out),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: len(read_metrics(out / "sfpo" / "metrics.jsonl")) >= 2, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "interrupted" in err
    checkpoint = last_checkpoint(out / "sfpo")
    assert checkpoint is not None
    assert len(read_metrics(out / "sfpo" / "metrics.jsonl")) >= 2
