"""`sfpo demo`: a short run writes a complete demo folder; bad options exit 2 before any work."""

from __future__ import annotations

import io
import json
import re

import pytest
from typer.testing import CliRunner

from sfpo.app.cli import app
from sfpo.app.demo import DemoSettings, run_demo, summarize


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """A short demo, its printed output captured as a pipe would (no terminal, so no live bar)."""
    from rich.console import Console

    out = tmp_path_factory.mktemp("demo") / "run"
    settings = DemoSettings(steps=2, eval_every=1, prompts_per_step=4, num_generations=4, eval_problems=8,
                            eval_samples=1, train_problems=64, arms=("grpo", "sfpo"))
    printed = io.StringIO()
    folder = run_demo(settings, out, console=Console(file=printed, width=120))
    return folder, printed.getvalue()


@pytest.fixture(scope="module")
def demo_folder(demo_run):
    return demo_run[0]


def test_demo_talks_through_every_phase(demo_run):
    folder, printed = demo_run
    lines = printed.splitlines()

    def first(fragment: str) -> int:
        found = [i for i, line in enumerate(lines) if fragment in line]
        assert found, f"no line with {fragment!r} in:\n{printed}"
        return found[0]

    # in order: the estimate, the policy, each arm's plan, its evaluation before training, its RL steps (each
    # with its held-out accuracy here: eval_every=1), then the report
    order = [first("estimate: about"), first("policy: tiny arithmetic policy")]
    for arm in ("grpo", "sfpo"):
        order += [first(f"{arm}: 2 RL steps x 16 rollouts"), first(f"{arm}: held-out accuracy before training"),
                  first(f"{arm}: RL step 1/2"), first(f"{arm}: RL step 2/2")]
    order += [first("report: comparing the arms"), first("demo finished in")]
    assert order == sorted(order), printed
    assert "held-out" in lines[first("grpo: RL step 1/2")] and "reward" in lines[first("sfpo: RL step 2/2")]
    assert "shipped with sfpo" in lines[first("policy: tiny arithmetic policy")]
    # what the summary table says about matching is what report.md says
    report = (folder / "report.md").read_text()
    matched = re.search(r"\| matched pairs \| (\S+) \|", report).group(1)
    ratio = re.search(r"\| rollout ratio \| ([^|]+?) \|", report).group(1)
    assert f"rollout ratio GRPO ÷ sfpo: {ratio}; matched pairs {matched}" in " ".join(printed.split())


def test_demo_writes_a_complete_run_folder(demo_folder):
    for arm in ("grpo", "sfpo"):
        config = json.loads((demo_folder / arm / "config.json").read_text())
        assert config["arm"] == arm and config["trainer"]["sfpo_inner_steps"] == (3 if arm == "sfpo" else 0)
        lines = [json.loads(line) for line in (demo_folder / arm / "metrics.jsonl").read_text().splitlines()]
        assert [r["rl_step"] for r in lines] == [0, 1, 2]
        assert [r["rollouts"] for r in lines] == [0, 16, 32]
        assert all("eval/accuracy" in r for r in lines)
        for r in lines[1:]:
            for key in ("wall_s", "reward", "entropy", "completion_length", "sfpo/active", "sfpo/rollouts"):
                assert key in r, (arm, key)
        assert lines[2]["wall_s"] >= lines[1]["wall_s"] > 0
        assert all(r["sfpo/active"] == (arm == "sfpo") for r in lines[1:])
        for r in lines[1:]:  # the wall-clock split of every RL step
            assert r["timing/generation_s"] > 0 and r["timing/training_s"] > 0, (arm, r)
            step_wall = r["wall_s"] - lines[r["rl_step"] - 1]["wall_s"]  # wall_s is rounded to 1 ms
            assert r["timing/generation_s"] + r["timing/training_s"] <= step_wall + 0.002
    report = (demo_folder / "report.md").read_text()
    assert "grpo" in report and "sfpo" in report
    assert "entropy mean abs change" in report and "generation share" in report
    for png in ("eval_accuracy_vs_rollouts.png", "entropy_vs_rollouts.png", "completion_length_vs_rollouts.png"):
        assert (demo_folder / png).read_bytes()[:4] == b"\x89PNG", png


def test_interrupted_run_leaves_no_line_that_breaks_the_report(demo_folder, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(demo_folder, copy)
    with open(copy / "sfpo" / "metrics.jsonl", "a") as f:
        f.write('{"rl_step": 3, "rollouts": 4')  # killed mid-write
    result = summarize(copy, ("grpo", "sfpo"))
    assert result["baseline_best"] is not None


@pytest.mark.parametrize(
    "args, words",
    [
        (["--task", "chess"], ["--task", "'chess'", "arithmetic"]),
        (["--steps", "0"], ["--steps", "0", "≥ 1"]),
        (["--arms", "grpo,ppo"], ["'ppo'", "sfpo"]),
        (["--policy", "gpt5"], ["--policy", "'gpt5'"]),
    ],
)
def test_bad_options_exit_2(args, words, tmp_path):
    result = CliRunner().invoke(app, ["demo", *args, "--out", str(tmp_path / "d")])
    assert result.exit_code == 2, result.output
    for word in words:
        assert word in result.output
    assert not (tmp_path / "d").exists()


def test_unwritable_or_used_out_exits_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = CliRunner().invoke(app, ["demo", "--out", str(blocker / "sub")])
    assert result.exit_code == 2 and "--out" in result.output
    used = tmp_path / "used"
    used.mkdir()
    (used / "metrics.jsonl").write_text("")
    result = CliRunner().invoke(app, ["demo", "--out", str(used)])
    assert result.exit_code == 2 and "already exists" in result.output
