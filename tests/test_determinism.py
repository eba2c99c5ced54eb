"""Determinism: the same recipe and seed on a CPU give identical metrics and weights, run to run."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from sfpo.app.cli import app
from sfpo.app.runlog import read_metrics

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "cpu" / "tiny-arithmetic-sfpo.yaml"
SMALL = ["trainer.sfpo_max_rl_steps=2", "trainer.sfpo_inner_steps=1", "trainer.generation_batch_size=16",
         "trainer.per_device_train_batch_size=8", "trainer.num_generations=4", "trainer.max_completion_length=12",
         "eval.every=1", "eval.limit=8", "eval.n=1", "trainer.seed=7"]


def clock_free(record: dict) -> dict:
    """A metrics line without the wall-clock readings (the only values allowed to differ)."""
    return {k: v for k, v in record.items()
            if k != "wall_s" and "time" not in k and "per_second" not in k and not k.startswith("timing/")}


def run(out: Path) -> tuple[list[dict], dict]:
    args = ["train", "--config", str(RECIPE)]
    for pair in [f"trainer.output_dir={out}", *SMALL]:
        args += ["--set", pair]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return [clock_free(r) for r in read_metrics(out / "metrics.jsonl")], load_file(out / "final" / "model.safetensors")


def test_same_seed_same_metrics_and_weights(tmp_path):
    metrics_a, weights_a = run(tmp_path / "a")
    metrics_b, weights_b = run(tmp_path / "b")
    assert [r["rl_step"] for r in metrics_a] == [0, 1, 2]
    assert "reward" in metrics_a[1] and "eval/accuracy" in metrics_a[2]
    assert metrics_a == metrics_b
    assert weights_a.keys() == weights_b.keys()
    for key in weights_a:
        assert torch.equal(weights_a[key], weights_b[key]), key
    base = load_file(Path(_tiny_policy()) / "model.safetensors")
    assert any(not torch.equal(base[k], weights_a[k]) for k in base), "training moved the weights"


def _tiny_policy() -> str:
    from sfpo.toy.tiny import build_tiny_policy

    return str(build_tiny_policy("arithmetic", seed=0))
