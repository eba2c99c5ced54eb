"""The comparison library on hand-made run folders whose answers are worked out by hand."""

from __future__ import annotations

import io
import json
import pickle
import zipfile

import pytest

from sfpo.app.report import (
    ReportError,
    arm_stability,
    compare_runs,
    demo_arms,
    format_table,
    load_run,
    plot_metric_vs_step,
    stability,
    step_band,
    step_median,
    timing,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_run(folder, points, metric="eval/accuracy", name=None, wall=True):
    """A run folder: one line per (rollouts, wall_s, value) point; value None = no evaluation that step."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for step, (rollouts, wall_s, value) in enumerate(points, start=1):
        record = {"rl_step": step, "rollouts": rollouts, "reward": 0.1 * step, "entropy": 1.0 / step}
        if wall:
            record["wall_s"] = wall_s
        if value is not None:
            record[metric] = value
        lines.append(json.dumps(record))
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if name:
        (folder / "config.json").write_text(json.dumps({"name": name}))
    return folder


def run(tmp_path, sub, points, **kw):
    return load_run(write_run(tmp_path / sub, points, **kw))


# Baseline best 0.6 first at 300 rollouts / 30 s; candidate first >= 0.6 at 200 rollouts / 24 s.
BASE = [(100, 10.0, 0.2), (200, 20.0, 0.4), (300, 30.0, 0.6), (400, 40.0, 0.5)]
CAND = [(100, 12.0, 0.3), (150, 18.0, None), (200, 24.0, 0.6), (300, 36.0, 0.7)]


def test_simple_match(tmp_path):
    result = compare_runs([run(tmp_path, "b", BASE)], [run(tmp_path, "c", CAND)])
    assert result["baseline_best"] == 0.6
    assert result["baseline_rollouts_to_best"] == 300
    assert result["baseline_wall_to_best"] == 30.0
    assert result["candidate_best"] == 0.7
    assert result["candidate_rollouts_to_match"] == 200
    assert result["candidate_wall_to_match"] == 24.0
    assert result["rollout_ratio"] == pytest.approx(300 / 200)
    assert result["wall_ratio"] == pytest.approx(30 / 24)
    assert result["matched_pairs"] == "1/1"
    assert result["rollout_ratio_range"] == [pytest.approx(1.5), pytest.approx(1.5)]
    assert len(result["pairs"]) == 1 and result["pairs"][0]["candidate_matched"] is True
    assert "1.50x" in format_table(result)


def test_never_matched(tmp_path):
    cand = [(100, 1.0, 0.1), (200, 2.0, 0.59)]
    result = compare_runs([run(tmp_path, "b", BASE)], [run(tmp_path, "c", cand)])
    for key in ("candidate_rollouts_to_match", "candidate_wall_to_match", "rollout_ratio", "wall_ratio"):
        assert result[key] is None
    assert result["rollout_ratio_range"] is None
    assert result["candidate_best"] == 0.59
    assert result["matched_pairs"] == "0/1"
    assert "never" in format_table(result)
    assert any("never" in n for n in result["notes"])


def test_ties_count_and_first_occurrence_is_used(tmp_path):
    base = [(100, 1.0, 0.5), (200, 2.0, 0.5), (300, 3.0, 0.4)]
    cand = [(100, 1.0, 0.4), (300, 3.0, 0.5), (400, 4.0, 0.5)]
    result = compare_runs([run(tmp_path, "b", base)], [run(tmp_path, "c", cand)])
    assert result["baseline_rollouts_to_best"] == 100  # first of the two 0.5s
    assert result["candidate_rollouts_to_match"] == 300  # equal to the best is a match
    assert result["rollout_ratio"] == pytest.approx(100 / 300)


def test_tolerance(tmp_path):
    cand = [(100, 5.0, 0.58), (250, 25.0, 0.6)]
    b, c = run(tmp_path, "b", BASE), run(tmp_path, "c", cand)
    assert compare_runs([b], [c])["candidate_rollouts_to_match"] == 250
    loose = compare_runs([b], [c], tolerance=0.05)
    assert loose["candidate_rollouts_to_match"] == 100
    assert loose["rollout_ratio"] == pytest.approx(3.0)
    with pytest.raises(ReportError, match="tolerance"):
        compare_runs([b], [c], tolerance=-0.1)


def test_lower_is_better(tmp_path):
    base = [(100, 1.0, 2.0), (200, 2.0, 1.0), (300, 3.0, 1.5)]
    cand = [(50, 1.0, 1.2), (100, 2.0, 0.9)]
    b = run(tmp_path, "b", base, metric="loss")
    c = run(tmp_path, "c", cand, metric="loss")
    result = compare_runs([b], [c], metric="loss", higher_is_better=False)
    assert result["baseline_best"] == 1.0 and result["baseline_rollouts_to_best"] == 200
    assert result["candidate_best"] == 0.9 and result["candidate_rollouts_to_match"] == 100
    assert result["rollout_ratio"] == pytest.approx(2.0)


def test_several_seeds_median_range_and_matched_pairs(tmp_path):
    base = [(100, 10.0, 0.5), (400, 40.0, 0.8)]  # best 0.8 at 400 rollouts in every seed
    cands = [
        [(200, 10.0, 0.8)],  # ratio 2
        [(400, 40.0, 0.9)],  # ratio 1
        [(400, 40.0, 0.7)],  # never
    ]
    bases = [run(tmp_path, f"b{i}", base) for i in range(3)]
    cand_runs = [run(tmp_path, f"c{i}", pts) for i, pts in enumerate(cands)]
    result = compare_runs(bases, cand_runs)
    assert result["n_pairs"] == 3 and result["n_matched"] == 2 and result["matched_pairs"] == "2/3"
    assert result["rollout_ratio"] == pytest.approx(1.5)  # median of 2 and 1: matched pairs only
    assert result["rollout_ratio_range"] == [pytest.approx(1.0), pytest.approx(2.0)]
    assert result["wall_ratio"] == pytest.approx((4.0 + 1.0) / 2)
    assert result["candidate_rollouts_to_match"] == 300  # median of 200 and 400
    assert result["candidate_best"] == 0.8  # median of 0.8, 0.9, 0.7 over all pairs
    assert result["baseline_best"] == 0.8 and result["baseline_rollouts_to_best"] == 400
    assert [p["candidate_matched"] for p in result["pairs"]] == [True, True, False]
    assert any("2 of 3" in n for n in result["notes"])
    table = format_table(result)
    assert "[1.00x, 2.00x]" in table and "never" in table  # summary range and the unmatched pair's row


def test_mismatched_counts(tmp_path):
    b = run(tmp_path, "b", BASE)
    with pytest.raises(ReportError, match="2 baseline run"):
        compare_runs([b, b], [run(tmp_path, "c", CAND)])


def test_no_wall_clock_gives_null_wall_ratio(tmp_path):
    result = compare_runs([run(tmp_path, "b", BASE, wall=False)], [run(tmp_path, "c", CAND)])
    assert result["rollout_ratio"] == pytest.approx(1.5)
    assert result["wall_ratio"] is None and result["baseline_wall_to_best"] is None
    assert any("wall-clock unknown" in n for n in result["notes"])


def test_name_from_config_else_folder(tmp_path):
    assert run(tmp_path, "x", BASE, name="grpo-seed0").name == "grpo-seed0"
    assert run(tmp_path, "y", BASE).name == "y"


# --- reading metrics.jsonl --------------------------------------------------------------------------------


def test_truncated_last_line_is_ignored_with_warning(tmp_path):
    folder = write_run(tmp_path / "r", BASE)
    with open(folder / "metrics.jsonl", "a") as f:
        f.write('{"rl_step": 5, "rollouts": 500, "eval/acc')  # interrupted mid-write
    loaded = load_run(folder)
    assert len(loaded.records) == len(BASE)
    assert loaded.warnings and "truncated last line" in loaded.warnings[0]


def test_last_line_cut_inside_a_utf8_character(tmp_path):
    folder = write_run(tmp_path / "r", BASE)
    with open(folder / "metrics.jsonl", "ab") as f:
        f.write('{"rl_step": 5, "note": "é'.encode()[:-1])
    assert len(load_run(folder).records) == len(BASE)


def test_flags_are_plottable_metrics(tmp_path):
    folder = write_run(tmp_path / "r", BASE)
    with open(folder / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"rl_step": 5, "rollouts": 500, "sfpo/active": True}) + "\n")
    loaded = load_run(folder)
    assert "sfpo/active" in loaded.metrics()
    assert loaded.points("sfpo/active", x="rl_step") == [(5, 1.0)]


def test_truncated_middle_line_is_an_error(tmp_path):
    folder = write_run(tmp_path / "r", BASE)
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    lines[1] = lines[1][:15]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ReportError, match=r"metrics.jsonl:2: invalid JSON"):
        load_run(folder)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: None, "does not exist"),
        (lambda d: d.mkdir(), "no metrics.jsonl or trainer_state.json"),
        (lambda d: (d.mkdir(), (d / "metrics.jsonl").write_text("")), "is empty"),
        (lambda d: (d.mkdir(), (d / "metrics.jsonl").write_text('{"rl_step": 1}\n')), "'rollouts'"),
    ],
)
def test_bad_run_folders(tmp_path, setup, message):
    setup(tmp_path / "run")
    with pytest.raises(ReportError, match=message):
        load_run(tmp_path / "run")


def test_unknown_metric_lists_available(tmp_path):
    b, c = run(tmp_path, "b", BASE), run(tmp_path, "c", CAND)
    with pytest.raises(
        ReportError, match=r"no metric 'eval/pass@1'; metrics it has: entropy, eval/accuracy, reward"
    ):
        compare_runs([b], [c], metric="eval/pass@1")


# --- TRL trainer_state.json -------------------------------------------------------------------------------


def write_trl_run(folder, history, train_batch_size=4, checkpoint=None):
    target = folder / checkpoint if checkpoint else folder
    target.mkdir(parents=True, exist_ok=True)
    state = {"global_step": history[-1]["step"], "train_batch_size": train_batch_size, "log_history": history}
    (target / "trainer_state.json").write_text(json.dumps(state))
    return folder


TRL_HISTORY = [
    {"loss": 0.1, "reward": 0.2, "step": 5, "epoch": 0.1},
    {"eval_accuracy": 0.4, "eval_loss": 1.0, "step": 5, "epoch": 0.1},
    {"loss": 0.1, "reward": 0.3, "step": 10, "epoch": 0.2},
    {"eval_accuracy": 0.6, "step": 10, "epoch": 0.2},
    {"train_runtime": 12.5, "train_loss": 0.1, "step": 10, "epoch": 0.2},
]


def test_trl_rollouts_from_batch_settings(tmp_path):
    # per-device 4 (trainer_state) x world 2 x accumulation 3 / iterations 2 = 12 completions per step
    folder = write_trl_run(tmp_path / "trl", TRL_HISTORY)
    config = {"trainer": {"gradient_accumulation_steps": 3, "num_iterations": 2}, "world_size": 2}
    (folder / "config.json").write_text(json.dumps(config))
    loaded = load_run(folder)
    assert loaded.source == "trainer_state.json" and loaded.completions_per_step == 12
    assert [r["rollouts"] for r in loaded.records] == [60, 120]  # train + eval entries merged per step
    assert loaded.records[0]["eval_accuracy"] == 0.4 and loaded.records[0]["reward"] == 0.2
    assert "train_runtime" not in loaded.metrics()
    # eval/accuracy finds TRL's eval_accuracy; wall-clock is not logged per step
    result = compare_runs([loaded], [loaded])
    assert result["baseline_best"] == 0.6 and result["baseline_rollouts_to_best"] == 120
    assert result["wall_ratio"] is None
    assert any("TRL does not log wall-clock" in n for n in result["notes"])


def test_trl_defaults_warn_and_override_wins(tmp_path):
    folder = write_trl_run(tmp_path / "trl", TRL_HISTORY, checkpoint="checkpoint-10")
    write_trl_run(tmp_path / "trl", TRL_HISTORY[:2], train_batch_size=99, checkpoint="checkpoint-5")
    loaded = load_run(folder)  # newest checkpoint: batch 4, everything else assumed 1
    assert loaded.completions_per_step == 4 and loaded.records[-1]["rollouts"] == 40
    assert "assuming world_size=1" in loaded.warnings[0]
    assert load_run(folder, completions_per_step=8).records[-1]["rollouts"] == 80


def test_trl_without_batch_size_asks_for_override(tmp_path):
    folder = write_trl_run(tmp_path / "trl", TRL_HISTORY, train_batch_size=None)
    with pytest.raises(ReportError, match="--completions-per-step"):
        load_run(folder)


class FakeGRPOConfig:
    """Pickled like TRL's config; the loader must read it without importing this module."""

    def __init__(self):
        self.per_device_train_batch_size = 4
        self.gradient_accumulation_steps = 2
        self.num_iterations = 2
        self.steps_per_generation = 2
        self.generation_batch_size = 16  # 4 per device x 2 processes x 2 steps per generation


def test_trl_training_args_bin_is_read_without_running_code(tmp_path):
    folder = write_trl_run(tmp_path / "trl", TRL_HISTORY)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:  # torch.save's layout: <name>/data.pkl in a zip
        archive.writestr("training_args/data.pkl", pickle.dumps(FakeGRPOConfig()))
    (folder / "training_args.bin").write_bytes(buffer.getvalue())
    # 16 x 2 / (2 x 2) = 8 = 4 x 2 processes x 2 accumulation / 2 iterations
    assert load_run(folder).completions_per_step == 8


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_trl_real_training_args_bin(tmp_path):
    trl = pytest.importorskip("trl")
    torch = pytest.importorskip("torch")
    args = trl.GRPOConfig(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        num_iterations=2,
        num_generations=4,
        use_cpu=True,
        bf16=False,
        report_to=[],
    )
    folder = write_trl_run(tmp_path / "trl", TRL_HISTORY, checkpoint="checkpoint-10")
    torch.save(args, folder / "checkpoint-10" / "training_args.bin")
    expected = 4 * args.world_size * 2 / 2
    loaded = load_run(folder)
    assert loaded.completions_per_step == expected and not loaded.warnings


# --- demo folders, report and plots -----------------------------------------------------------------------


def test_demo_arms_single_runs_and_seed_folders(tmp_path):
    write_run(tmp_path / "demo" / "grpo", BASE)
    for seed in (10, 2):
        write_run(tmp_path / "demo" / "sfpo" / f"seed{seed}", CAND)
    base, cand = demo_arms(tmp_path / "demo")
    assert base == [tmp_path / "demo" / "grpo"]
    assert cand == [tmp_path / "demo" / "sfpo" / "seed2", tmp_path / "demo" / "sfpo" / "seed10"]
    with pytest.raises(ReportError, match="grpo/ and sfpo/"):
        demo_arms(tmp_path / "demo" / "sfpo")


def test_step_median():
    a = [(0, 1.0), (10, 3.0), (20, 5.0)]
    b = [(5, 2.0), (15, 4.0), (30, 6.0)]
    # common range [5, 20]; each curve holds its last value until its next point
    assert step_median([a, b]) == [(5, 1.5), (10, 2.5), (15, 3.5), (20, 4.5)]
    assert step_band([a, b]) == [(5, 1.0, 2.0), (10, 2.0, 3.0), (15, 3.0, 4.0), (20, 4.0, 5.0)]


def test_write_report_and_plots(tmp_path):
    bases = [run(tmp_path, f"b{i}", BASE) for i in range(2)]
    cands = [run(tmp_path, f"c{i}", CAND) for i in range(2)]
    result = compare_runs(bases, cands)
    out = tmp_path / "out"
    files = write_report(result, bases, cands, out, "eval/accuracy")
    names = sorted(f.name for f in files)
    # these runs log entropy but no completion length: no length plot
    assert names == [
        "entropy_vs_rollouts.png",
        "eval_accuracy_vs_rollouts.png",
        "eval_accuracy_vs_wall.png",
        "report.md",
    ]
    for f in files:
        assert f.stat().st_size > 0
    for f in files[1:]:
        assert f.read_bytes().startswith(PNG_MAGIC)
    report = (out / "report.md").read_text()
    assert format_table(result) in report and "Definitions" in report and str(bases[0].path) in report
    assert sorted(p.name for p in out.iterdir()) == names  # no temp files left behind
    step_plot = plot_metric_vs_step({"grpo": bases, "sfpo": cands}, "entropy", out / "entropy.png")
    assert step_plot.read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(ReportError, match="no run has"):
        plot_metric_vs_step({"grpo": bases}, "completion_length", out / "len.png")
    assert not (out / "len.png").exists()


# --- stability and timing --------------------------------------------------------------------------------


def write_records(folder, records):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return load_run(folder)


def step(rl_step, **fields):
    return {"rl_step": rl_step, "rollouts": 16 * rl_step, **fields}


# SFPO on for RL steps 1-2, off from 3; written out of rl_step order, with an rl_step-0 line to be ignored.
# In rl_step order: entropy 1.0, 1.5, 0.5, 1.0 -> |changes| 0.5, 1.0, 0.5 -> mean 2/3;
# reward 0.2, 0.4, 0.1, 0.5 -> 0.2, 0.3, 0.4 -> mean 0.3;
# length (1,10) (2,12) (3,14) (4,20): slope = sum(dx*dy) / sum(dx^2) = 16 / 5 = 3.2.
SWITCHED = [
    step(0, entropy=9.0, reward=9.0, **{"completions/mean_length": 99.0, "sfpo/active": 0}),
    step(2, entropy=1.5, reward=0.4, **{"completions/mean_length": 12.0, "sfpo/active": 1}),
    step(1, entropy=1.0, reward=0.2, **{"completions/mean_length": 10.0, "sfpo/active": True}),
    step(3, entropy=0.5, reward=0.1, **{"completions/mean_length": 14.0, "sfpo/active": 0}),
    step(4, entropy=1.0, reward=0.5, **{"completions/mean_length": 20.0, "sfpo/active": 0}),
]


def test_stability_known_answers(tmp_path):
    numbers = stability(write_records(tmp_path / "a", SWITCHED))
    assert numbers["entropy_mean_abs_change"] == pytest.approx(2 / 3)
    assert numbers["reward_mean_abs_change"] == pytest.approx(0.3)
    assert numbers["length_slope"] == pytest.approx(3.2)
    assert numbers["switch_rl_step"] == 3


def test_stability_missing_fields_and_no_switch(tmp_path):
    # GRPO: never active, so no switch; one entropy value gives no change; no length field at all.
    grpo = write_records(
        tmp_path / "g",
        [step(1, entropy=1.0, reward=0.0, **{"sfpo/active": 0}), step(2, reward=1.0, **{"sfpo/active": 0})],
    )
    assert stability(grpo) == {
        "entropy_mean_abs_change": None,
        "reward_mean_abs_change": 1.0,
        "length_slope": None,
        "switch_rl_step": None,
    }
    # Active to the end: never switched off. The length alias counts when TRL's name is absent.
    on = write_records(
        tmp_path / "on", [step(s, completion_length=30.0 - s, **{"sfpo/active": 1}) for s in (1, 2, 3)]
    )
    assert stability(on)["switch_rl_step"] is None
    assert stability(on)["length_slope"] == pytest.approx(-1.0)


def test_stability_median_over_seeds_and_in_the_comparison(tmp_path):
    switched = write_records(tmp_path / "a", [{**r, "eval/accuracy": 0.5} for r in SWITCHED])
    # entropy 2.0, 1.0 -> change 1.0; switch at rl_step 2
    other = write_records(
        tmp_path / "b",
        [
            step(1, entropy=2.0, **{"sfpo/active": 1, "eval/accuracy": 0.4}),
            step(2, entropy=1.0, **{"sfpo/active": 0, "eval/accuracy": 0.6}),
        ],
    )
    no_entropy = write_records(
        tmp_path / "c", [step(1, **{"eval/accuracy": 0.1}), step(2, **{"eval/accuracy": 0.2})]
    )
    arm = arm_stability([switched, other, no_entropy])
    assert arm["entropy_mean_abs_change"] == pytest.approx((2 / 3 + 1.0) / 2)  # median of the two known
    assert arm["switch_rl_step"] == pytest.approx(2.5)
    assert arm["length_slope"] == pytest.approx(3.2)
    assert arm["n_runs"] == 3 and arm["runs"][2]["entropy_mean_abs_change"] is None
    result = compare_runs([no_entropy], [switched])
    assert result["stability"]["baseline"]["entropy_mean_abs_change"] is None
    assert result["stability"]["candidate"]["switch_rl_step"] == 3
    table = format_table(result)
    assert (
        "entropy mean abs change" in table and "0.6667" in table and "| switch RL step | none | 3 |" in table
    )


def test_timing_share(tmp_path):
    run = write_records(
        tmp_path / "t",
        [
            step(0, **{"timing/generation_s": 50.0, "timing/training_s": 0.0}),
            step(1, **{"timing/generation_s": 1.0, "timing/training_s": 2.0}),
            step(2, **{"timing/generation_s": 3.0, "timing/training_s": 6.0}),
            step(3),
        ],
    )
    assert timing(run) == {
        "generation_s_per_step": pytest.approx(2.0),
        "training_s_per_step": pytest.approx(4.0),
        "generation_share": pytest.approx(4 / 12),
    }
    assert timing(write_records(tmp_path / "none", [step(1)])) == dict.fromkeys(
        ("generation_s_per_step", "training_s_per_step", "generation_share")
    )


def test_report_plots_entropy_and_length_against_rollouts(tmp_path):
    base = write_records(tmp_path / "b", [{**r, "eval/accuracy": 0.5} for r in SWITCHED])
    cand = write_records(tmp_path / "c", [{**r, "eval/accuracy": 0.6} for r in SWITCHED])
    files = write_report(compare_runs([base], [cand]), [base], [cand], tmp_path / "out")
    names = {f.name for f in files}
    assert {"entropy_vs_rollouts.png", "completion_length_vs_rollouts.png"} <= names
    assert (tmp_path / "out" / "entropy_vs_rollouts.png").read_bytes()[:8] == PNG_MAGIC
    assert "**Stability**" in (tmp_path / "out" / "report.md").read_text()
