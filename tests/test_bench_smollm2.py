"""benchmarks/smollm2.py: finished runs are reused, unfinished ones rerun, other settings refused."""

from __future__ import annotations

import importlib.util
import json
import shutil
import statistics
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


# --- round 2 (docs/smollm2-round2.md) and the clipped-token fraction while SFPO is on ---------------------

ROUND1 = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "smollm2-prereg"
EVALS = range(0, 25, 2)  # round 2 evaluates every 2 RL steps of 24


def curve_run(folder: Path, s: DemoSettings, accs: list[float], active_until: int = 0, clipped=None) -> Path:
    """A finished run of settings `s` whose held-out accuracy at RL steps 0, 2, ... is `accs`, with the flag of
    SFPO's active phase on RL steps 1..active_until and `clipped(rl_step)` as its clipped-token fraction."""
    folder.mkdir(parents=True)
    demo = {k: v for k, v in asdict(s).items() if k != "extra"}
    (folder / "config.json").write_text(json.dumps({"name": folder.name, "demo": demo}))
    at = dict(zip(range(0, s.steps + 1, s.eval_every), accs, strict=True))
    lines = []
    for t in range(s.steps + 1):
        r = {"rl_step": t, "rollouts": 64 * t, "wall_s": 10.0 * t}
        if t:
            r |= {"sfpo/active": int(t <= active_until), "timing/generation_s": 2.0, "timing/training_s": 6.0}
            r["clip_ratio/region_mean"] = clipped(t) if clipped else 0.01
        if t in at:
            r["eval/accuracy"] = at[t]
        lines.append(r)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (folder / "run.json").write_text(json.dumps({"seconds": 600.0}))
    return folder


def k300(*counts: int) -> list[float]:
    """Accuracies over the 300 held-out problems, given as problem counts."""
    return [c / 300 for c in counts]


def test_active_phase_clipped_fraction_on_a_fabricated_metrics_jsonl(bench, tmp_path):
    s = settings(seed=0, steps=24, eval_every=2)
    # SFPO on RL steps 1-12 clipping 4% (step 5: 10%), then plain GRPO clipping 0.5%; GRPO 1% throughout
    sfpo = curve_run(tmp_path / "sfpo", s, [0.5] * 13, active_until=12,
                     clipped=lambda t: (0.10 if t == 5 else 0.04) if t <= 12 else 0.005)
    grpo = curve_run(tmp_path / "grpo", s, [0.5] * 13, clipped=lambda t: 0.01 if t <= 12 else 0.002)
    assert bench.active_steps(sfpo) == set(range(1, 13)) and bench.active_steps(grpo) == set()
    assert bench.median_clipped(sfpo) == pytest.approx((0.04 + 0.005) / 2)  # the whole run mixes both phases
    assert bench.clipped_while_on(sfpo, set()) == (pytest.approx(0.04), set(range(1, 13)))
    # GRPO has no active phase of its own: it is read over its seed's SFPO steps
    assert bench.clipped_while_on(grpo, bench.active_steps(sfpo)) == (pytest.approx(0.01), set(range(1, 13)))
    assert bench.clipped_while_on(grpo, set()) == (None, set())
    table = bench.runs_table([(grpo, 0), (sfpo, 0)])
    assert "| grpo | 50.0% / 50.0% | 0.60% | 1.00% (1-12) |" in table  # whole run: median of 12 x 1%, 12 x 0.2%
    assert "| sfpo | 50.0% / 50.0% | 2.25% | 4.00% (1-12) |" in table
    line = bench.clipped_while_on_line({"GRPO": [grpo], "SFPO": [sfpo]}, [0])
    assert line.startswith("Clipped-token fraction while SFPO was on (RL steps 1-12; the GRPO arms over the")
    assert "GRPO 1.0% (runs 1.0-1.0%) | SFPO 4.0% (runs 4.0-4.0%)" in line


def test_round1_summary_is_reproduced_from_its_committed_folders_without_training(bench, tmp_path, monkeypatch):
    for run in ROUND1.glob("*-seed*"):
        (tmp_path / run.name).mkdir()
        for name in ("config.json", "metrics.jsonl", "run.json"):
            (tmp_path / run.name / name).write_bytes((run / name).read_bytes())

    def must_not_run(*args, **kwargs):
        raise AssertionError("a committed round-1 run was run again")

    monkeypatch.setattr(bench, "run_one", must_not_run)
    monkeypatch.setattr(bench, "build_policy", must_not_run)
    argv = ("--seeds 0 1 2 --steps 24 --eval-every 2 --eval-problems 300 --prompts-per-step 8 "
            "--optimizer-steps-per-pass 4 --switch step --stop-step 12 --skip-zero-std-batches --entropy-coef 0 "
            "--lr 2.5e-6 --other-lr 1e-5 --other-lr-seeds 0 1 2 --other-lr-arms grpo --target 0.5").split()
    monkeypatch.setattr(sys, "argv", ["smollm2.py", *argv, "--out", str(tmp_path)])
    bench.main()
    assert (tmp_path / "summary.md").read_text() == (ROUND1 / "summary.md").read_text()


def test_round2_settings_are_round1s_but_one_optimizer_step_per_pass(bench):
    # the committed round-1 SFPO run at 2.5e-6, seed 0: only M differs
    assert bench.differences(ROUND1 / "sfpo-lr2.5e-06-seed0", bench.round2_settings(0, 2.5e-6)) == {
        "optimizer_steps_per_pass": (4, 1)
    }
    from sfpo.app.demo import arm_recipe

    args = arm_recipe(bench.round2_settings(0, 5e-6), "sfpo", "unused", Path("unused")).trainer
    # all 8 x 8 rollouts in one optimizer step
    assert (args.per_device_train_batch_size, args.steps_per_generation) == (64, 1)


def test_round2_m1_takes_one_optimizer_step_per_pass_counted_from_a_tiny_runs_log(bench, tmp_path):
    # the tiny policy with round 2's M: RL step 1 runs SFPO (K + 1 passes), RL step 2 plain GRPO (one pass)
    tiny = DemoSettings(steps=2, eval_every=2, prompts_per_step=4, num_generations=4, eval_problems=8,
                        eval_samples=1, train_problems=64, switch="step", stop_step=1,
                        optimizer_steps_per_pass=bench.ROUND2["optimizer_steps_per_pass"])
    runner = bench.Runner(max_new_runs=None, checkpoint_every=0)
    assert runner.ensure(tiny, "sfpo", tmp_path / "sfpo")
    records = [r for r in bench.read_metrics(tmp_path / "sfpo" / "metrics.jsonl")]
    k = json.loads((tmp_path / "sfpo" / "config.json").read_text())["trainer"]["sfpo_inner_steps"]
    steps = [b["optimizer_step"] - a["optimizer_step"] for a, b in zip(records, records[1:])]
    passes = [k + 1 if r["sfpo/active"] else 1 for r in records[1:]]
    assert [r["sfpo/active"] for r in records[1:]] == [1, 0] and k == 3
    assert steps == passes == [4, 1]


def test_round2_metric_target_best_minus_tolerance_never_and_inf(bench, tmp_path):
    s = bench.round2_settings(0, 2e-5)
    # GRPO's best is 155/300 (RL step 16), so T = 149/300, first reached at RL step 12 (768 rollouts)
    grpo = curve_run(tmp_path / "grpo", s, k300(45, 90, 120, 140, 145, 148, 149, 150, 155, 150, 152, 150, 151))
    fast = curve_run(tmp_path / "fast", s, k300(45, 100, 130, 149, 150, 152, 152, 153, 154, 155, 154, 150, 150))
    r = bench.target_comparison(grpo, fast)
    assert r["target"] == pytest.approx(149 / 300)
    # 149/300 >= 155/300 - 0.02 is False in floats; the metric compares counts exactly
    assert r["baseline_rollouts"] == 768 and r["candidate_rollouts"] == 384
    assert r["ratio"] == 2.0 and r["reached"] and r["verdict"] == "win"
    never = curve_run(tmp_path / "never", s, k300(45, 90, 100, 120, 130, 140, 145, 148, 148, 148, 148, 148, 148))
    r = bench.target_comparison(grpo, never)
    assert r["candidate_rollouts"] is None and r["ratio"] == 0.0 and r["verdict"] == "loss"
    behind = curve_run(tmp_path / "behind", s,
                       k300(45, 100, 130, 149, 150, 152, 152, 153, 154, 150, 145, 142, 141))
    assert bench.target_comparison(grpo, behind)["verdict"] == "inconclusive"  # 2.0x, but final 10 points behind
    # a fixed target GRPO never reaches: inf where the candidate does, 1 where neither does
    assert bench.seed_ratio(None, 384) == float("inf") and bench.seed_ratio(None, None) == 1.0
    table = bench.fixed_target_table([("grpo", 2e-5), ("sfpo", 5e-6)], {("grpo", 2e-5): {0: grpo},
                                     ("sfpo", 5e-6): {0: fast}}, [0])
    assert "| 0 | never | never | SFPO 5e-06 1.00x |" in table  # neither reaches 60%
    high = curve_run(tmp_path / "high", s, k300(45, 100, 130, 149, 150, 180, 190, 190, 190, 190, 190, 190, 190))
    table = bench.fixed_target_table([("grpo", 2e-5), ("sfpo", 5e-6)], {("grpo", 2e-5): {0: grpo},
                                     ("sfpo", 5e-6): {0: high}}, [0])
    assert "| 0 | never | 640 | SFPO 5e-06 inf |" in table
    # a target met at the first evaluation: both at 0 rollouts is no evidence (1), only the candidate: inf
    assert bench.seed_ratio(0, 0) == 1.0 and bench.seed_ratio(128, 0) == float("inf")


def test_pilot_rate_picking_rule_and_ties(bench):
    assert bench.pick_rate({1e-5: 0.40, 2e-5: 0.45, 4e-5: 0.43}) == 2e-5
    assert bench.pick_rate({1e-5: 0.40, 2e-5: 0.45, 4e-5: 0.45}) == 2e-5  # a tie: the lower rate
    # two pilot runs that solved 423 problems in all over RL steps 4, 6, 8: their means differ in the last bit
    a, b = statistics.fmean(k300(100, 100, 223)), statistics.fmean(k300(100, 102, 221))
    assert a != b
    assert bench.pick_rate({4e-5: max(a, b), 1e-5: min(a, b), 2e-5: 0.1}) == 1e-5
    assert bench.pick_rate({2.5e-6: 0.3, 5e-6: 0.3 + 1 / 300 / 3, 1e-5: 0.3}) == 5e-6  # one problem apart


def gxpo_arm(monkeypatch):
    """An arm named gxpo in `sfpo demo` (the benchmark takes any arm by name)."""
    from sfpo.app import demo

    monkeypatch.setitem(demo.ARMS, "gxpo", {**demo.ARMS["sfpo"]})


def round2_argv(monkeypatch, out: Path, *options: str) -> None:
    monkeypatch.setattr(sys, "argv", ["smollm2.py", "--protocol", "round2", *options, "--out", str(out)])


# pilot curves (RL steps 0, 2, 4, 6, 8): GRPO's best mean at 4-8 is 2e-5, 4e-5 ties it (lower rate wins); SFPO's
# and GXPO's is 5e-6
PILOT = {
    ("grpo", 1e-5): k300(50, 60, 70, 80, 90),
    ("grpo", 2e-5): k300(50, 70, 90, 100, 110),
    ("grpo", 4e-5): k300(50, 80, 110, 100, 90),
    ("sfpo", 2.5e-6): k300(50, 60, 70, 80, 90),
    ("sfpo", 5e-6): k300(50, 70, 90, 100, 110),
    ("sfpo", 1e-5): k300(50, 60, 60, 60, 60),
    ("gxpo", 2.5e-6): k300(50, 60, 70, 80, 90),
    ("gxpo", 5e-6): k300(50, 70, 90, 100, 110),
    ("gxpo", 1e-5): k300(50, 80, 80, 80, 80),
}
# main curves (RL steps 0, 2, ..., 24): GRPO at lr_G is best at 210/300, so T = 204/300, reached at RL step 14
# (896 rollouts); SFPO and GXPO reach it at RL step 8 (512: 1.75x) and end 3 problems behind; SFPO misses it in seed 2
MAIN = {
    ("grpo", 2e-5): k300(45, 90, 135, 165, 180, 192, 198, 204, 210, 207, 210, 210, 207),
    ("sfpo", 5e-6): k300(45, 105, 150, 186, 204, 207, 210, 210, 210, 210, 207, 207, 204),
    ("grpo", 5e-6): k300(45, 60, 90, 120, 150, 165, 180, 186, 192, 198, 201, 204, 204),
    ("gxpo", 5e-6): k300(45, 105, 150, 186, 204, 207, 210, 210, 210, 210, 207, 207, 204),
}
MISSES = k300(45, 105, 150, 186, 190, 195, 198, 198, 198, 198, 198, 198, 198)


def test_round2_pilot_picks_each_arm_and_the_main_runs_give_the_verdict(bench, tmp_path, monkeypatch):
    gxpo_arm(monkeypatch)
    ran = []

    def fake(s, arm, folder, policy, checkpoint_every=0):
        ran.append((arm, s.learning_rate, s.seed, s.steps, s.optimizer_steps_per_pass, checkpoint_every))
        if s.seed == 100:
            curve_run(folder, s, PILOT[arm, s.learning_rate], active_until=8 * (arm != "grpo"))
        else:
            accs = MISSES if (arm, s.seed) == ("sfpo", 2) else MAIN[arm, s.learning_rate]
            curve_run(folder, s, accs, active_until=12 * (arm != "grpo"),
                      clipped=lambda t: 0.04 if arm != "grpo" and t <= 12 else 0.005)
        return 1.0

    monkeypatch.setattr(bench, "run_one", fake)
    monkeypatch.setattr(bench, "build_policy", lambda s: "policy")
    round2_argv(monkeypatch, tmp_path, "--stage", "main")
    with pytest.raises(SystemExit, match=r"picks\.json has no pilot pick for grpo, sfpo, gxpo; run the pilot"):
        bench.main()  # the main runs need the pilot's picks
    assert not ran

    round2_argv(monkeypatch, tmp_path, "--stage", "pilot", "--arms", "grpo", "sfpo", "gxpo")
    bench.main()
    assert len(ran) == 9 and {r[2:] for r in ran} == {(100, 8, 1, 2)}  # seed 100, 8 RL steps, M = 1, checkpoints
    picks = json.loads((tmp_path / "picks.json").read_text())
    assert picks["picks"] == {"grpo": 2e-5, "sfpo": 5e-6, "gxpo": 5e-6}
    assert picks["scores"]["grpo"] == {"1e-05": pytest.approx(80 / 300), "2e-05": pytest.approx(100 / 300),
                                       "4e-05": pytest.approx(100 / 300)}
    pilot = (tmp_path / "pilot" / "summary.md").read_text()
    assert "| grpo-lr2e-05-seed100 | 16.7% / 23.3% / 30.0% / 33.3% / 36.7% | 33.33% | **picked** |" in pilot
    assert "Picks (written to `picks.json`): grpo 2e-05, sfpo 5e-06, gxpo 5e-06." in pilot

    ran.clear()
    round2_argv(monkeypatch, tmp_path, "--stage", "main", "--seeds", "0", "1", "2",
                "--arms", "grpo", "sfpo", "gxpo")
    bench.main()
    plan = [("grpo", 2e-5), ("sfpo", 5e-6), ("grpo", 5e-6), ("gxpo", 5e-6)]
    assert [r[:3] for r in ran] == [(a, lr, seed) for seed in (0, 1, 2) for a, lr in plan]
    assert {r[3:] for r in ran} == {(24, 1, 2)}
    summary = (tmp_path / "summary.md").read_text()
    assert "| 0 | 68.0% | 896 | 512 | 1.75x | 69.0% / 68.0% (± 2.7%) | 70.0% / 70.0% | win |" in summary
    assert "| 2 | 68.0% | 896 | never | 0.00x | 69.0% / 66.0% (± 2.7%) | 70.0% / 66.0% | loss |" in summary
    # 2 of 3 seeds reached T: neither a win (3 of 3) nor a loss (median 1.75x, one miss)
    assert ("**primary: SFPO 5e-06 inconclusive against GRPO 2e-05** (reached the target in 2/3 seeds, median "
            "ratio 1.75x, median final difference -1.0 points)") in summary
    assert "Seeds 0-2 do not agree (or are all inconclusive): seeds 3 and 4 run next" in summary
    assert ("**second pre-registered outcome: GXPO 5e-06 wins against GRPO 2e-05** (reached the target in 3/3 "
            "seeds, median ratio 1.75x") in summary
    # secondary: against GRPO at lr_S, whose own best is 204/300 (T = 198/300 at RL step 18)
    assert "**secondary: SFPO 5e-06 wins against GRPO 5e-06** (reached the target in 3/3 seeds" in summary
    # rollouts to 60% (180/300): GRPO 2e-5 at RL step 8, SFPO and GXPO at 6, GRPO 5e-6 at 12
    assert "| 0 | 512 | 384 | 768 | 384 | SFPO 5e-06 1.33x, GRPO 5e-06 0.67x, GXPO 5e-06 1.33x |" in summary
    assert ("Clipped-token fraction while SFPO was on (RL steps 1-12; the GRPO arms over the same RL steps), "
            "median over seeds of each run's median: GRPO 2e-05 0.5%") in summary
    assert "| SFPO 5e-06 | 10 | 2.0 | 6.0 | 25.0% |" in summary  # wall-clock split
    assert (tmp_path / "accuracy-vs-rollouts.png").is_file()
    assert (tmp_path / "compare-gxpo-lr5e-06-vs-grpo-lr2e-05" / "report.md").is_file()
    assert "Not run yet" not in summary

    ran.clear()
    bench.main()  # everything finished: reused, the same summary
    assert not ran and (tmp_path / "summary.md").read_text() == summary


def test_round2_picks_are_never_rewritten(bench, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "run_one", lambda s, arm, folder, policy, checkpoint_every=0:
                        curve_run(folder, s, PILOT[arm, s.learning_rate]) and 1.0)
    monkeypatch.setattr(bench, "build_policy", lambda s: "policy")
    round2_argv(monkeypatch, tmp_path, "--stage", "pilot", "--arms", "grpo", "sfpo")
    bench.main()
    assert bench.read_picks(tmp_path) == {"grpo": 2e-5, "sfpo": 5e-6}
    folder = tmp_path / "pilot" / "sfpo-lr1e-05-seed100"  # its pilot run now scores best
    s = bench.round2_settings(100, 1e-5, 8)
    shutil.rmtree(folder)
    curve_run(folder, s, k300(50, 150, 150, 150, 150))
    with pytest.raises(SystemExit, match=r"picked lr 5e-06 for sfpo, the pilot's run folders now pick 1e-05"):
        bench.main()
    assert bench.read_picks(tmp_path) == {"grpo": 2e-5, "sfpo": 5e-6}


@pytest.mark.parametrize(
    "options, message",
    [
        (["--stage", "main", "--lr", "1e-5"], r"--lr not allowed with --protocol round2"),
        (["--stage", "main", "--optimizer-steps-per-pass", "4"], r"--optimizer-steps-per-pass not allowed"),
        (["--stage", "pilot", "--seeds", "0", "--arms", "grpo", "sfpo"], r"--seeds is not allowed with --stage"),
        (["--stage", "main", "--seeds", "100", "--arms", "grpo", "sfpo"], r"--seeds 100 is the pilot's seed"),
        (["--stage", "main", "--checkpoint-every", "-1", "--arms", "grpo", "sfpo"], r"--checkpoint-every -1 is"),
        (["--stage", "main", "--arms", "grpo", "sfpo", "gxpo2"], r"--arms 'gxpo2' is not an arm of `sfpo demo`; allowed: "),
        (["--stage", "main", "--arms", "sfpo", "grpo-k4"], r"round 2 needs grpo and sfpo"),
        (["--arms", "grpo", "sfpo"], r"needs --stage pilot or --stage main"),
    ],
)
def test_round2_refuses_bad_options_before_touching_a_folder(bench, tmp_path, monkeypatch, options, message):
    round2_argv(monkeypatch, tmp_path / "out", *options)
    with pytest.raises(SystemExit, match=message):
        bench.main()
    assert not (tmp_path / "out").exists()
