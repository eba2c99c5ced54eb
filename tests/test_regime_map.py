"""benchmarks/regime_map.py: the runs a cell needs, reuse and refusal of run folders, the rate-picking rule, the
ratios and matched counts, the clipped fraction while SFPO was on, the threshold rule; on fabricated run folders."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from sfpo.app.demo import ARMS

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "regime_map.py"


@pytest.fixture(scope="module")
def rm():
    sys.path.insert(0, str(SCRIPT.parent))  # as `python benchmarks/regime_map.py` has it: its shared module
    try:
        spec = importlib.util.spec_from_file_location("bench_regime_map", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclass looks itself up there
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return module


def fake_run(folder: Path, settings, arm: str, accuracy: dict[int, float] | None = None, last_step: int | None = None,
             records: dict[int, dict] | None = None, seconds: float = 60.0) -> Path:
    """What run_one leaves: config.json (demo settings, the arm's trainer fields), metrics.jsonl, run.json.
    `accuracy` maps an evaluated RL step to its held-out accuracy; `records` adds fields to RL steps."""
    last = settings.steps if last_step is None else last_step
    accuracy = accuracy or {t: 0.3 for t in range(0, last + 1, settings.eval_every)}
    folder.mkdir(parents=True)
    demo = {k: v for k, v in asdict(settings).items() if k != "extra"}
    trainer = {**ARMS[arm], "learning_rate": settings.learning_rate, "seed": settings.seed}
    (folder / "config.json").write_text(json.dumps({"name": arm, "arm": arm, "demo": demo, "trainer": trainer}))
    per_step = settings.prompts_per_step * settings.num_generations
    lines = []
    for t in range(last + 1):
        line = {"rl_step": t, "rollouts": per_step * t, "wall_s": 2.0 * t, **(records or {}).get(t, {})}
        if t in accuracy:
            line["eval/accuracy"] = accuracy[t]
        lines.append(line)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    started = 1_800_000_000 + 100 * sum(map(ord, str(folder)))
    (folder / "run.json").write_text(json.dumps({
        "seconds": seconds, "machine": "test", "started": _stamp(started), "finished": _stamp(started + seconds)}))
    return folder


def _stamp(unix: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(unix))


def test_the_cells_and_the_runs_each_needs(rm, tmp_path):
    assert {c: (rm.prompts_per_optimizer_step(c), rm.rollouts_per_rl_step(c)) for c in rm.CELLS} == {
        "p16-m1": (16, 128), "p16-m2": (8, 128), "p16-m4": (4, 128), "p16-m8": (2, 128), "p8-m1": (8, 64),
        "p32-m1": (32, 256)}
    assert [rm.prompts_per_optimizer_step(c) for c in rm.AXIS_1] == [2, 4, 8, 16]
    assert [rm.rollouts_per_rl_step(c) for c in rm.AXIS_2] == [64, 128, 256]
    assert set(rm.AXIS_1) & set(rm.AXIS_2) == {"p16-m1"}  # shared by both axes, one cell, run once

    plan = rm.Plan(tmp_path)
    sweep = plan.sweep_runs("p16-m4")
    assert [(a, s.learning_rate, s.seed) for s, a, _ in sweep] == [
        (a, lr, 100) for a in ("grpo", "sfpo", "grpo-k4") for lr in (2.5e-5, 5e-5, 1e-4, 2e-4)]
    for s, arm, _ in sweep:
        s.validate()
        assert (s.task, s.policy, s.steps, s.prompts_per_step, s.num_generations, s.optimizer_steps_per_pass) == (
            "arithmetic", "tiny", 30, 16, 8, 4)
        assert s.entropy_coef == 0 and s.skip_zero_std_batches and s.switch == "entropy_zscore"
        assert s.zscore_window == 10 and s.arms == (arm,)
    picks = {"p32-m1": {"grpo": {"lr": 2e-4}, "sfpo": {"lr": 5e-5}, "grpo-k4": {"lr": 2.5e-5}}}
    main = plan.main_runs("p32-m1", picks)
    assert [(a, s.learning_rate, s.seed, f.relative_to(tmp_path).as_posix()) for s, a, f in main][:6] == [
        ("grpo", 2e-4, seed, f"p32-m1/grpo/seed{seed}") for seed in range(5)] + [
        ("sfpo", 5e-5, 0, "p32-m1/sfpo/seed0")]
    assert {s.prompts_per_step for s, _, _ in main} == {32} and {s.optimizer_steps_per_pass for s, _, _ in main} == {1}
    every = [f for c in rm.CELLS for _, _, f in plan.sweep_runs(c)]
    every += [f for c in rm.CELLS for _, _, f in plan.main_runs(c, {c: picks["p32-m1"]})]
    assert len(every) == len(set(every)) == 72 + 90  # the count: 72 on the sweep seed, 90 main
    assert not plan.has_picks("p16-m1", picks) and plan.has_picks("p32-m1", picks)
    # another arm of ARMS (the lead adds gxpo later) is only a name here
    other = rm.Plan(tmp_path, arms=("grpo", "sfpo-kl"))
    assert [a for _, a, _ in other.sweep_runs("p8-m1")] == ["grpo"] * 4 + ["sfpo-kl"] * 4


def test_a_finished_run_is_reused_and_one_with_other_settings_refused(rm, tmp_path):
    plan = rm.Plan(tmp_path, steps=6)
    s = plan.settings("p16-m2", "sfpo", 5e-5, 0)
    assert not rm.finished(tmp_path / "absent", s, "sfpo")
    assert not rm.finished(fake_run(tmp_path / "half", s, "sfpo", last_step=4), s, "sfpo")
    done = fake_run(tmp_path / "done", s, "sfpo")
    assert rm.finished(done, s, "sfpo")
    with pytest.raises(SystemExit, match=r"done holds a finished run with other settings .*learning_rate"):
        rm.finished(done, plan.settings("p16-m2", "sfpo", 1e-4, 0), "sfpo")
    with pytest.raises(SystemExit, match=r"optimizer_steps_per_pass.*\(2, 4\)"):
        rm.finished(done, plan.settings("p16-m4", "sfpo", 5e-5, 0), "sfpo")
    config = json.loads((done / "config.json").read_text())
    config["trainer"]["sfpo_alpha"] = 0.5  # the arm's fields changed since the run was made
    (done / "config.json").write_text(json.dumps(config))
    with pytest.raises(SystemExit, match=r"trainer\.sfpo_alpha.*\(0\.5, 0\.8\)"):
        rm.finished(done, s, "sfpo")


def test_the_rate_rule_highest_mean_accuracy_ties_to_the_lower_rate(rm, tmp_path):
    assert rm.pick_rate({2.5e-5: 0.30, 5e-5: 0.41, 1e-4: 0.41, 2e-4: 0.40}) == 5e-5
    assert rm.pick_rate({2e-4: 0.5, 1e-4: 0.5}) == 1e-4
    plan = rm.Plan(tmp_path, arms=("grpo",), steps=6)
    curves = {2.5e-5: [0.25, 0.25, 0.5], 5e-5: [0.25, 0.5, 0.25], 1e-4: [0.25, 0.375, 0.375], 2e-4: [0.25, 0.5, 0.]}
    for s, arm, folder in plan.sweep_runs("p8-m1"):
        fake_run(folder, s, arm, dict(zip((0, 3, 6), curves[s.learning_rate])))
    # the mean over the evaluations (RL step 0 included), not the best: 1/3 each for the first three
    assert rm.sweep_score(plan.sweep_folder("p8-m1", "grpo", 2e-4)) == pytest.approx(0.25)
    picks = rm.update_picks(plan, ("p8-m1",))
    assert picks["p8-m1"]["grpo"]["lr"] == 2.5e-5  # a three-way tie: the lowest rate
    saved = json.loads((tmp_path / "picks.json").read_text())
    assert saved["sweep_seed"] == 100 and saved["lrs"] == [2.5e-5, 5e-5, 1e-4, 2e-4] and "lower rate" in saved["rule"]
    assert rm.update_picks(plan, ("p8-m1",)) == picks  # reused as written
    # a sweep run that now ranks the rates otherwise: the pick is final, an error
    folder = plan.sweep_folder("p8-m1", "grpo", 1e-4)
    lines = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    lines[-1]["eval/accuracy"] = 0.875
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    with pytest.raises(SystemExit, match=r"picked rate 2\.5e-05 for grpo in p8-m1, but its sweep runs now give 0\.0001"):
        rm.update_picks(plan, ("p8-m1",))
    with pytest.raises(SystemExit, match=r"picks made with lrs \[2\.5e-05, 5e-05, 0\.0001, 0\.0002\], not \[5e-05"):
        rm.load_picks(rm.Plan(tmp_path, arms=("grpo",), steps=6, lrs=(5e-5, 1e-4)))
    # a sweep not finished yet gives no pick
    assert "p16-m1" not in rm.update_picks(rm.Plan(tmp_path, arms=("grpo",), steps=6), ("p16-m1",))


def test_the_clipped_fraction_while_sfpo_was_on_next_to_grpo_over_the_same_steps(rm, tmp_path):
    s = rm.Plan(tmp_path, steps=6).settings("p8-m1", "sfpo", 5e-5, 0)
    clip = "clip_ratio/region_mean"
    sfpo = {1: {"sfpo/active": 1, clip: 0.04}, 2: {"sfpo/active": 1, clip: 0.03},
            3: {"sfpo/active": 0, "sfpo/skipped_zero_std_batch": 1},  # on, but the batch was skipped: no update
            4: {"sfpo/active": 1, clip: 0.05}, 5: {"sfpo/active": 0, clip: 0.001}, 6: {"sfpo/active": 0, clip: 0.002}}
    grpo = {1: {"sfpo/active": 0, clip: 0.01}, 2: {"sfpo/active": 0, "sfpo/skipped_zero_std_batch": 1},
            3: {"sfpo/active": 0, clip: 0.5}, 4: {"sfpo/active": 0, clip: 0.02}, 5: {"sfpo/active": 0, clip: 0.9},
            6: {"sfpo/active": 0, clip: 0.9}}
    from sfpo.app.report import load_run

    arm_run = load_run(fake_run(tmp_path / "sfpo", s, "sfpo", records=sfpo))
    grpo_run = load_run(fake_run(tmp_path / "grpo", s, "grpo", records=grpo))
    # SFPO on RL steps 1, 2, 4: median of 0.04, 0.03, 0.05; GRPO on the same steps where it trained: 1 and 4
    assert rm.active_clipped(arm_run, grpo_run) == (0.04, pytest.approx(0.015), 3)
    assert rm.active_clipped(grpo_run, arm_run) == (None, None, 0)  # GRPO never ran SFPO


def cell_runs(rm, plan, cell, curves: dict[str, list[list[float]]], picks) -> None:
    """Main runs of `cell` with held-out accuracy at RL steps 0, 3, 6 from `curves[arm][seed]`."""
    for s, arm, folder in plan.main_runs(cell, picks):
        fake_run(folder, s, arm, dict(zip((0, 3, 6), curves[arm][s.seed])))


def test_ratios_matched_counts_and_the_pay_rule_per_cell(rm, tmp_path):
    plan = rm.Plan(tmp_path, arms=("grpo", "sfpo", "grpo-k4"), steps=6)
    picks = {"p8-m1": {"grpo": {"lr": 1e-4}, "sfpo": {"lr": 5e-5}, "grpo-k4": {"lr": 2.5e-5}}}
    grpo = [[0.25, 0.3, 0.4]] * 5  # best 0.4 at RL step 6: 384 rollouts
    sfpo = [[0.25, 0.4, 0.45], [0.25, 0.45, 0.4], [0.25, 0.4, 0.35], [0.25, 0.3, 0.4], [0.25, 0.3, 0.35]]
    k4 = [[0.25, 0.3, 0.3]] * 4 + [[0.25, 0.4, 0.1]]
    cell_runs(rm, plan, "p8-m1", {"grpo": grpo, "sfpo": sfpo, "grpo-k4": k4}, picks)
    assert plan.complete("p8-m1", picks)
    numbers = rm.cell_numbers(plan, "p8-m1", picks)
    a = numbers["arms"]["sfpo"]
    assert [s["ratio"] for s in a["per_seed"]] == [2.0, 2.0, 2.0, 1.0, None]
    assert [s["rollouts_to_match"] for s in a["per_seed"]] == [192, 192, 192, 384, None]
    assert [s["grpo_rollouts_to_best"] for s in a["per_seed"]] == [384] * 5
    assert (a["matched"], a["seeds"], a["median_ratio"], a["ratio_range"]) == (4, 5, 2.0, [1.0, 2.0])
    assert a["median_final_diff"] == pytest.approx(0.0)  # +0.05, 0, -0.05, 0, -0.05
    assert a["pays"]
    b = numbers["arms"]["grpo-k4"]
    assert (b["matched"], b["median_ratio"], b["pays"]) == (1, 2.0, False)  # 1 of 5 matched
    assert numbers["rates"] == {"grpo": 1e-4, "sfpo": 5e-5, "grpo-k4": 2.5e-5}
    assert numbers["time"]["timed"] == 15 and numbers["time"]["seconds"] == 15 * 60.0

    pays = lambda ratio, matched, diff: rm.pays(  # noqa: E731
        {"median_ratio": ratio, "matched": matched, "seeds": 5, "median_final_diff": diff})
    assert pays(1.5, 4, 0.0) and not pays(1.49, 5, 0.0) and not pays(3.0, 3, 0.0) and not pays(None, 0, 0.0)
    assert not pays(2.0, 5, -0.031)
    assert pays(2.0, 4, 0.5 - 0.53)  # exactly 3 points below, though 0.5 - 0.53 < -0.03 in floats


def test_the_threshold_and_the_readme_sentence(rm):
    assert rm.threshold({2: False, 4: True, 8: True, 16: True}) == 4
    assert rm.threshold({2: True, 4: False, 8: True, 16: True}) == 8
    assert rm.threshold({2: True, 4: True, 8: True, 16: False}) is None
    assert rm.threshold({2: True, 4: True, 8: True, 16: True}) == 2

    def maps(sfpo: list[bool], k4: list[bool]) -> dict:  # pays per cell of axis 1, 2 to 16 prompts
        arm = lambda p: {"pays": p, "median_ratio": 1.2, "matched": 3, "seeds": 5}  # noqa: E731
        return {c: {"arms": {"sfpo": arm(p), "grpo-k4": arm(q)}} for c, p, q in zip(rm.AXIS_1, sfpo, k4)}

    m = maps([False, True, True, True], [False] * 4)
    unit = "prompts per optimizer step"
    assert rm.axis_statement(m, "sfpo", rm.AXIS_1, rm.prompts_per_optimizer_step, unit) == (
        "sfpo: paid from 4 prompts per optimizer step up, not below.")
    assert rm.axis_statement(m, "sfpo", rm.AXIS_2, rm.rollouts_per_rl_step, "rollouts per RL step") is None
    sentence = rm.readme_sentence(m)
    assert "when each optimizer step saw at least 4 prompts (32 rollouts), and not with fewer." in sentence
    assert "1.5x fewer rollouts (median of 5 seeds, at least 4 matched, final accuracy no more than 3 points" in sentence
    assert sentence.endswith("The equal-compute control (K + 1 plain passes) paid by the same rule at none of "
                             "these sizes.")
    m = maps([True, False, True, True], [False, False, True, True])
    assert "also paid at 2 prompts per optimizer step, below that" in rm.axis_statement(
        m, "sfpo", rm.AXIS_1, rm.prompts_per_optimizer_step, unit)
    assert rm.readme_sentence(m).endswith("paid by the same rule at 8, 16 prompts per optimizer step.")
    # an exception below the threshold: the sentence names it instead of "and not with fewer"
    assert ("at least 8 prompts (64 rollouts); below that it did at 2 prompts and not at 4, so the size of an "
            "optimizer step alone does not decide it.") in rm.readme_sentence(m)
    assert "not with fewer" not in rm.readme_sentence(m)
    assert ("below that it did at 4 prompts and not at 2 and 8" in
            rm.readme_sentence(maps([False, True, False, True], [False] * 4)))
    assert rm.readme_sentence(maps([True, False, True, False], [False] * 4)).endswith(
        "16 prompts per optimizer step, the largest tested (it did at 2 and 8 prompts per optimizer step). The "
        "equal-compute control (K + 1 plain passes) paid by the same rule at none of these sizes.")
    m = maps([True, True, True, False], [False] * 4)
    assert rm.readme_sentence(m).startswith("On the tiny policy the map shows no such rule: SFPO did not save "
                                            "rollouts even at 16 prompts per optimizer step")
    assert "no threshold: it did not pay at 16" in rm.axis_statement(m, "sfpo", rm.AXIS_1,
                                                                     rm.prompts_per_optimizer_step, unit)
    assert "at every optimizer-step size tested, 2 to 16" in rm.readme_sentence(maps([True] * 4, [False] * 4))
    del m["p16-m1"]
    assert rm.readme_sentence(m) is None  # axis 1 incomplete


def test_the_command_sweeps_first_picks_once_then_runs_cells_and_reuses_everything(rm, tmp_path, monkeypatch):
    ran = []
    better = {"grpo": 1e-4, "sfpo": 5e-5, "grpo-k4": 2.5e-5}  # the fake runs' best rate per arm

    def fake_run_one(settings, arm, folder, policy, jobs):
        ran.append((arm, settings.learning_rate, settings.seed, settings.prompts_per_step))
        if settings.seed == 100:  # the sweep
            top = 0.5 if settings.learning_rate == better[arm] else 0.3
            curve = {0: 0.25, 3: top, 6: top}
        else:  # main runs: GRPO's best 0.5 at RL step 6, the others reach it at RL step 3
            curve = {0: 0.25, 3: 0.4, 6: 0.5} if arm == "grpo" else {0: 0.25, 3: 0.5, 6: 0.6}
        fake_run(folder, settings, arm, curve)
        return 1.0

    monkeypatch.setattr(rm, "run_one", fake_run_one)
    monkeypatch.setattr(rm, "build_policy", lambda s: "policy")
    out = tmp_path / "map"
    argv = ["--out", str(out), "--steps", "6", "--seeds", "0", "1", "--cells", "p16-m1,p8-m1", "--jobs", "1"]
    rm.main([*argv, "--max-new-runs", "20"])
    assert len(ran) == 20 and all(seed == 100 for *_, seed, _ in ran)  # the sweep comes first
    assert "p16-m1" in json.loads((out / "picks.json").read_text())["picks"]  # its sweep finished: picked
    rm.main(argv)
    assert len(ran) == 24 + 12  # the rest of the sweep, then both cells' main runs
    assert [r[3] for r in ran[24:]] == [16] * 6 + [8] * 6  # cell by cell, in the order of work
    picks = json.loads((out / "picks.json").read_text())["picks"]
    assert {c: {a: p["lr"] for a, p in picks[c].items()} for c in picks} == {"p16-m1": better, "p8-m1": better}
    for cell in ("p16-m1", "p8-m1"):
        numbers = json.loads((out / cell / "cell.json").read_text())
        assert numbers["arms"]["sfpo"]["median_ratio"] == 2.0 and numbers["arms"]["sfpo"]["matched"] == 2
        assert "| **sfpo** | median | | | | 2.00x (2/2 matched, range 2.00-2.00x)" in (out / cell / "summary.md").read_text()
    summary = (out / "summary.md").read_text()
    assert "| p8-m1 | 8 | 1 | 8 | 64 | sfpo | 5e-5 / 1e-4 | 2.00x | 2.00-2.00x | 2/2 | +10.0 |" in summary
    assert "| p16-m1 | 1e-4 (mean 41.7%) | 5e-5 (mean 41.7%) | 2.5e-5 (mean 41.7%) |" in summary
    assert "| rate sweep | 72 | 24 |" in summary and "Not complete yet: p16-m2, p16-m4, p16-m8, p32-m1." in summary
    assert "--cells p16-m1,p8-m1" in summary
    assert (out / "ratio-vs-prompts-per-optimizer-step.png").is_file()  # p16-m1 is on axis 1
    assert (out / "ratio-vs-rollouts-per-rl-step.png").is_file()

    rm.main(argv)  # everything finished: nothing runs again
    assert len(ran) == 36
    # a finished run with other settings is an error before anything runs
    config = json.loads((out / "p8-m1" / "sfpo" / "seed1" / "config.json").read_text())
    config["demo"]["learning_rate"] = 2e-4
    (out / "p8-m1" / "sfpo" / "seed1" / "config.json").write_text(json.dumps(config))
    with pytest.raises(SystemExit, match=r"p8-m1/sfpo/seed1 holds a finished run with other settings"):
        rm.main([*argv, "--cells", "p32-m1,p8-m1"])
    assert len(ran) == 36  # not even p32-m1's sweep started


@pytest.mark.parametrize("option, message", [
    (["--arms", "sfpo,grpo-k4"], "must include grpo"),
    (["--arms", "grpo,nope"], "'nope' is not an arm; allowed: grpo, sfpo"),
    (["--cells", "p16-m3"], "'p16-m3' is not a cell"),
    (["--sweep-seed", "3"], "--sweep-seed 3 is also a main seed"),
    (["--lrs", "1e-4", "0"], "--lrs .* must be distinct finite numbers > 0"),
])
def test_a_bad_option_exits_naming_it_and_writes_nothing(rm, tmp_path, capsys, option, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit):
        rm.main(["--out", str(out), *option])
    import re

    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()


def test_a_real_run_is_timed_and_then_reused(rm, tmp_path):
    """One RL step of SFPO on the tiny policy: run.json holds its time and what made it (package versions, the
    code's commit), and the folder counts as this finished run (the saved trainer fields match the arm's), not as
    one with other settings."""
    import torch

    from sfpo.app.demo import DemoSettings, build_policy

    plan = rm.Plan(tmp_path, steps=1)
    settings, arm, folder = plan.sweep_runs("p8-m1", ("sfpo",))[0]
    settings.eval_every = 1
    settings.eval_problems = 16
    rm.run_one(settings, arm, folder, build_policy(DemoSettings()), 1)
    info = json.loads((folder / "run.json").read_text())
    assert info["seconds"] > 0 and info["jobs"] == 1 and {"started", "finished", "threads", "cpu"} <= set(info)
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert info["software"]["torch"] == torch.__version__ and info["software"]["sfpo"]
    if info["code"] is not None:  # a checkout (not an unpacked source tree)
        assert len(info["code"]["commit"]) == 40 and isinstance(info["code"]["changed"], bool)
    assert rm.finished(folder, settings, arm)
    assert [r["rl_step"] for r in rm.load_run(folder).records] == [0, 1]
