"""The whole CPU path: `sfpo train` on the tiny recipe, then `sfpo eval` on what it wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sfpo.app.cli import app

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "cpu" / "tiny-arithmetic-sfpo.yaml"
SMALL = ["trainer.sfpo_max_rl_steps=2", "trainer.generation_batch_size=16", "trainer.per_device_train_batch_size=8",
         "trainer.num_generations=4", "trainer.save_steps=3", "eval.every=1", "eval.limit=8", "eval.n=1"]


def sets(*pairs: str) -> list[str]:
    return [arg for pair in pairs for arg in ("--set", pair)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("train") / "run"
    result = CliRunner().invoke(app, ["train", "--config", str(RECIPE), *sets(f"trainer.output_dir={run}", *SMALL)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return run


def test_train_writes_the_run_folder(trained):
    assert (trained / "config.yaml").is_file()
    lines = [json.loads(x) for x in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [r["rl_step"] for r in lines] == [0, 1, 2]
    assert all("eval/accuracy" in r and "eval/arithmetic" in r for r in lines)
    assert lines[-1]["rollouts"] == 32 and lines[-1]["sfpo/active"] == 1
    assert (trained / "final" / "config.json").is_file() and (trained / "best" / "config.json").is_file()
    assert (trained / "checkpoint-3" / "sfpo_state.json").is_file()


def test_train_refuses_to_overwrite_a_run_and_resume_needs_a_checkpoint(trained, tmp_path):
    again = CliRunner().invoke(app, ["train", "--config", str(RECIPE), *sets(f"trainer.output_dir={trained}", *SMALL)])
    assert again.exit_code == 2 and "already holds a run" in again.output
    empty = CliRunner().invoke(app, ["train", "--config", str(RECIPE), "--resume",
                                     *sets(f"trainer.output_dir={tmp_path / 'new'}", *SMALL)])
    assert empty.exit_code == 2 and "no checkpoint" in empty.output


def test_eval_on_the_trained_model(trained, tmp_path):
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, ["eval", "--model", str(trained / "final"), "--benchmarks", "arithmetic",
                                      "--n", "2", "--limit", "8", "--max-new-tokens", "48", "--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    summary = json.loads((out / "eval.json").read_text())
    assert set(summary["scores"]) == {"arithmetic"} and 0.0 <= summary["average"] <= 1.0
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 16 and {s["sample"] for s in samples} == {0, 1}
    assert all(set(s) >= {"id", "completion", "extracted", "correct", "gold"} for s in samples)
    assert "| avg@2 (%)" in (out / "eval.md").read_text()


def test_eval_on_a_local_benchmark_file(trained, tmp_path):
    fixture = ROOT / "tests" / "fixtures" / "data" / "gsm8k.jsonl"
    result = CliRunner().invoke(app, ["eval", "--model", str(trained / "final"), "--benchmarks", "gsm8k",
                                      "--data-files", f"gsm8k={fixture}", "--n", "1", "--max-new-tokens", "8",
                                      "--chat", "false", "--out", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    samples = [json.loads(x) for x in (tmp_path / "e" / "samples.jsonl").read_text().splitlines()]
    golds = [json.loads(x)["answer"].split("####")[-1].strip().replace(",", "") for x in fixture.read_text().splitlines()]
    assert [s["gold"] for s in samples] == golds


@pytest.mark.parametrize(
    "args, words",
    [
        (["--model", "./no/such/folder", "--benchmarks", "arithmetic"], ["./no/such/folder"]),
        (["--model", "tiny", "--benchmarks", "math5000"], ["unknown benchmark 'math5000'"]),
        (["--model", "tiny", "--benchmarks", "arithmetic", "--n", "0"], ["--n 0"]),
    ],
)
def test_eval_bad_input_exits_2(args, words):
    result = CliRunner().invoke(app, ["eval", *args])
    assert result.exit_code == 2, result.output
    for word in words:
        assert word in result.output
