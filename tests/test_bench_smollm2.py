"""benchmarks/smollm2.py: finished runs are reused, unfinished ones rerun, other settings refused."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from sfpo.app.demo import SMOLLM2, DemoSettings
from sfpo.app.runlog import read_metrics

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "smollm2.py"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(SCRIPT.parent))  # as `python benchmarks/smollm2.py` has it: its shared module
    try:
        spec = importlib.util.spec_from_file_location("bench_smollm2", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return module


def settings(**changes) -> DemoSettings:
    base = {**SMOLLM2, "policy": "smollm2", "task": "addition-50", "steps": 2, "eval_every": 1, "eval_problems": 20}
    return DemoSettings(**{**base, **changes})


def fake_run(folder: Path, s: DemoSettings, last_step: int, accuracy: float = 0.5) -> Path:
    """What run_one leaves: config.json (the demo settings), metrics.jsonl, run.json."""
    folder.mkdir(parents=True)
    demo = {k: v for k, v in asdict(s).items() if k != "extra"}
    (folder / "config.json").write_text(json.dumps({"name": folder.name, "demo": demo}))
    lines = [
        {"rl_step": t, "rollouts": 32 * t, "wall_s": 10.0 * t, "eval/accuracy": accuracy + 0.1 * t}
        for t in range(last_step + 1)
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (folder / "run.json").write_text(json.dumps({"seconds": 60.0}))
    return folder


def test_finished_reused_unfinished_not_other_settings_refused(bench, tmp_path):
    s = settings(seed=0)
    assert not bench.finished(tmp_path / "absent", s)
    assert not bench.finished(fake_run(tmp_path / "half", s, last_step=1), s)
    assert bench.finished(fake_run(tmp_path / "done", s, last_step=2), s)
    with pytest.raises(SystemExit, match=r"done holds a finished run with other settings .*learning_rate"):
        bench.finished(tmp_path / "done", settings(seed=0, learning_rate=3e-5))


def test_a_setting_added_later_reads_as_its_default_and_still_separates_runs(bench, tmp_path):
    s = settings(seed=0)
    old = fake_run(tmp_path / "old", s, last_step=2)
    config = json.loads((old / "config.json").read_text())
    del config["demo"]["entropy_coef"]  # a run made before the entropy bonus was a setting
    (old / "config.json").write_text(json.dumps(config))
    assert bench.finished(old, s)
    with pytest.raises(SystemExit, match=r"entropy_coef.*\(0\.001, 0\.0\)"):
        bench.finished(old, settings(seed=0, entropy_coef=0.0))


def test_arms_option_runs_only_the_named_arm(bench, tmp_path, monkeypatch):
    ran = []

    def record(s, arm, folder, policy, checkpoint_every=0):
        ran.append((arm, s.entropy_coef))
        fake_run(folder, s, last_step=s.steps)
        return 1.0

    monkeypatch.setattr(bench, "run_one", record)
    monkeypatch.setattr(bench, "build_policy", lambda s: "policy")
    argv = ["smollm2.py", "--seeds", "0", "--steps", "2", "--eval-every", "1", "--eval-problems", "20"]
    argv += ["--other-lr-seeds", "--entropy-coef", "0", "--arms", "sfpo", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    assert ran == [("sfpo", 0.0)]
    assert "Not run yet: grpo-lr1e-05-seed0." in (tmp_path / "summary.md").read_text()


@pytest.mark.parametrize(
    "option, message",
    [
        (["--entropy-coef", "-1"], r"--entropy-coef -1\.0 is not allowed: it must be a finite number ≥ 0"),
        (["--checkpoint-every", "-2"], r"--checkpoint-every -2 is not allowed: it must be an int ≥ 1"),
    ],
)
def test_a_bad_option_exits_naming_it_and_writes_nothing(bench, tmp_path, monkeypatch, option, message):
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["smollm2.py", *option, "--out", str(out)])
    with pytest.raises(SystemExit, match=message):
        bench.main()
    assert not out.exists()


def test_rerun_of_a_finished_plan_runs_nothing_and_summarizes(bench, tmp_path, monkeypatch):
    s = settings(seed=0)
    for arm, acc in (("grpo", 0.3), ("sfpo", 0.4)):
        fake_run(tmp_path / bench.run_name(arm, s.learning_rate, 0), s, last_step=2, accuracy=acc)

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished run was run again")

    monkeypatch.setattr(bench, "run_one", must_not_run)
    monkeypatch.setattr(bench, "build_policy", must_not_run)
    argv = [
        "smollm2.py",
        "--seeds",
        "0",
        "--steps",
        "2",
        "--eval-every",
        "1",
        "--eval-problems",
        "20",
        "--other-lr-seeds",
        "--out",
        str(tmp_path),
    ]
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    summary = (tmp_path / "summary.md").read_text()
    # GRPO best 0.5 at 64 rollouts; SFPO reaches 0.5 at 32: ratio 2.00x
    assert "| 0 | 50.0% / 50.0% | 60.0% / 60.0% | 64 / 32 | 2.00x |" in summary
    assert "Not run yet" not in summary
    assert (tmp_path / "compare-lr1e-05" / "report.md").is_file()


def test_the_preregistered_rule(bench):
    inf = float("inf")
    assert bench.seed_ratio(800, 400) == 2.0 and bench.seed_ratio(800, None) == 0.0
    assert bench.seed_ratio(None, 400) == inf and bench.seed_ratio(None, None) == 1.0
    row = lambda ratio, reached=True, diff=0.0: {"ratio": ratio, "reached": reached, "final_diff": diff}  # noqa: E731
    assert bench.verdict([row(2.0), row(1.6), row(inf)])[0] == "wins"
    assert bench.verdict([row(2.0), row(1.6), row(0.0, reached=False)])[0] == "inconclusive"  # 2 of 3 reached
    assert bench.verdict([row(2.0), row(2.0), row(2.0, diff=-0.05)])[0] == "wins"  # median final difference 0
    assert bench.verdict([row(2.0), row(2.0, diff=-0.05), row(2.0, diff=-0.04)])[0] == "inconclusive"
    assert bench.verdict([row(1.1), row(1.15), row(3.0)])[0] == "loses"  # median ratio < 1.2
    five = [row(2.0), row(2.0), row(2.0), row(0.0, False), row(0.0, False)]
    assert bench.verdict(five)[0] == "loses"  # missed in 2 seeds
    assert bench.verdict(five[:4] + [row(1.5)])[0] == "wins"  # 4 of 5 reached, median 2.0
    assert bench.seed_verdict(1.5, True, -0.03) == "win" and bench.seed_verdict(1.19, True, 0.0) == "loss"
    # exactly 3 points behind (9 of 300 problems) is within, though 0.5 - 0.53 < -0.03 in floats
    assert bench.seed_verdict(1.5, True, 150 / 300 - 159 / 300) == "win"
    assert bench.seed_verdict(1.5, True, 150 / 300 - 160 / 300) == "inconclusive"
    assert bench.verdict([row(2.0, diff=150 / 300 - 159 / 300)] * 3)[0] == "wins"
    assert bench.seed_verdict(1.3, True, 0.0) == "inconclusive" and bench.seed_verdict(9, False, 0) == "loss"


def test_target_option_writes_the_preregistered_verdict(bench, tmp_path, monkeypatch):
    def record(s, arm, folder, policy, checkpoint_every=0):
        # SFPO reaches 0.5 at RL step 1, GRPO at RL step 2 (at either rate)
        fake_run(folder, s, last_step=s.steps, accuracy=0.41 if arm == "sfpo" else 0.31)
        return 1.0

    monkeypatch.setattr(bench, "run_one", record)
    monkeypatch.setattr(bench, "build_policy", lambda s: "policy")
    argv = ["smollm2.py", "--seeds", "0", "1", "2", "--steps", "2", "--eval-every", "1", "--eval-problems", "20",
            "--lr", "5e-6", "--other-lr", "1e-5", "--other-lr-seeds", "0", "1", "2", "--other-lr-arms", "grpo",
            "--target", "0.5", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    summary = (tmp_path / "summary.md").read_text()
    assert not (tmp_path / "sfpo-lr1e-05-seed0").exists()  # --other-lr-arms grpo: no SFPO run at 1e-5
    assert "**primary: SFPO at 5e-06 wins against GRPO 1e-05** (reached the target in 3/3 seeds, median ratio 2.00x" in summary
    assert "Seeds 0-2 agree: seeds 3 and 4 are not needed." in summary
    assert (tmp_path / "accuracy-vs-rollouts.png").is_file()
    # the secondary figures against the primary baseline (rollouts and wall-clock to its best) come with it
    assert (tmp_path / "compare-sfpo-lr5e-06-vs-grpo-lr1e-05" / "report.md").is_file()
    assert "### SFPO 5e-06 against GRPO 1e-05: rollouts and wall-clock to GRPO's best" in summary


class Killed(Exception):
    """Stands for a SIGKILL: the run stops where it is, with nothing cleaned up."""


def test_a_killed_run_resumes_from_its_checkpoint_and_ends_as_the_uninterrupted_run(bench, tmp_path, monkeypatch):
    from sfpo.app.demo import build_policy

    # SFPO on the tiny policy, the skip on, a fixed stop step: a checkpoint inside SFPO's active phase (after RL
    # step 2) and a resumed piece that crosses the switch
    tiny = DemoSettings(steps=4, eval_every=1, prompts_per_step=4, num_generations=4, eval_problems=8,
                        eval_samples=1, train_problems=64, switch="step", stop_step=3, skip_zero_std_batches=True)
    policy = build_policy(tiny)
    plain = tmp_path / "plain"
    bench.run_one(tiny, "sfpo", plain, policy)  # no checkpoints
    assert not list(plain.glob("checkpoint-*")) and "pieces" not in json.loads((plain / "run.json").read_text())

    real_run_arm = bench.run_arm

    def killed_at_step_3(*args, progress=None, **kwargs):
        def on_step(record):
            progress(record)
            if record["rl_step"] == 3:
                raise Killed

        return real_run_arm(*args, progress=on_step, **kwargs)

    folder = tmp_path / "killed"
    monkeypatch.setattr(bench, "run_arm", killed_at_step_3)
    with pytest.raises(Killed):
        bench.run_one(tiny, "sfpo", folder, policy, checkpoint_every=2)
    assert [p.name for p in folder.glob("checkpoint-*")]
    assert list(json.loads((folder / "elapsed.json").read_text())["seconds_at"]) == ["2"]
    assert bench.resumable(folder, tiny) is not None
    assert bench.resumable(folder, DemoSettings(**{**vars(tiny), "learning_rate": 5e-5})) is None  # other settings

    monkeypatch.setattr(bench, "run_arm", real_run_arm)
    bench.run_one(tiny, "sfpo", folder, policy, checkpoint_every=2)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "config.yaml", "metrics.jsonl", "run.json"]
    assert json.loads((folder / "run.json").read_text())["pieces"] == 2

    def trained(run):  # the record of every RL step but its clocks
        clocks = ("wall_s", "step_time")
        return [{k: v for k, v in r.items() if k not in clocks and not k.startswith("timing/")}
                for r in read_metrics(run / "metrics.jsonl")]

    resumed, uninterrupted = trained(folder), trained(plain)
    assert [r["rl_step"] for r in resumed] == [0, 1, 2, 3, 4]
    assert resumed == uninterrupted
    # stop_step counts RL steps from 0: records 1-3 ran SFPO, record 4 plain GRPO, so the resumed piece (records 3
    # and 4) crossed the switch
    assert [r["sfpo/active"] for r in resumed[1:]] == [1, 1, 1, 0]
