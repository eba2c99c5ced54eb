"""``sfpo compare`` end to end through typer's CliRunner (stdout and stderr are captured separately)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sfpo.app.cli import _spread_multi_values, app

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
KEYS = (
    "baseline_best",
    "baseline_rollouts_to_best",
    "baseline_wall_to_best",
    "candidate_best",
    "candidate_rollouts_to_match",
    "candidate_wall_to_match",
    "rollout_ratio",
    "wall_ratio",
)
# Baseline best 0.6 first at 300 rollouts / 30 s; candidate first >= 0.6 at 200 rollouts / 24 s.
BASE = [(100, 10.0, 0.2), (200, 20.0, 0.4), (300, 30.0, 0.6), (400, 40.0, 0.5)]
CAND = [(100, 12.0, 0.3), (200, 24.0, 0.6), (300, 36.0, 0.7)]
NEVER = [(100, 12.0, 0.3), (200, 24.0, 0.5)]


def write_run(folder, points):
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps({"rl_step": i, "rollouts": r, "wall_s": w, "reward": 0.5, "eval/accuracy": v})
        for i, (r, w, v) in enumerate(points, start=1)
    ]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return str(folder)


def invoke(*args):
    return CliRunner().invoke(app, ["compare", *map(str, args)])


def assert_bad_input(result, *fragments):
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert "error:" in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def test_json_is_one_object_with_the_keys(tmp_path):
    result = invoke(write_run(tmp_path / "b", BASE), write_run(tmp_path / "c", CAND), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # the whole of stdout is one JSON object
    assert isinstance(data, dict) and set(KEYS) <= set(data)
    assert data["rollout_ratio"] == pytest.approx(1.5)
    assert data["wall_ratio"] == pytest.approx(30 / 24)
    assert data["candidate_rollouts_to_match"] == 200 and data["matched_pairs"] == "1/1"


def test_table_output(tmp_path):
    result = invoke(write_run(tmp_path / "b", BASE), write_run(tmp_path / "c", CAND))
    assert result.exit_code == 0, result.output
    assert "rollout ratio" in result.stdout and "1.50x" in result.stdout and "1.25x" in result.stdout


def test_never_matched(tmp_path):
    args = (write_run(tmp_path / "b", BASE), write_run(tmp_path / "c", NEVER))
    table = invoke(*args)
    assert table.exit_code == 0 and "never" in table.stdout
    data = json.loads(invoke(*args, "--json").stdout)
    assert data["rollout_ratio"] is None and data["wall_ratio"] is None
    assert data["candidate_rollouts_to_match"] is None and data["matched_pairs"] == "0/1"


def test_tolerance_option(tmp_path):
    args = (write_run(tmp_path / "b", BASE), write_run(tmp_path / "c", NEVER), "--json")
    data = json.loads(invoke(*args, "--tolerance", "0.1").stdout)
    assert data["candidate_rollouts_to_match"] == 200 and data["rollout_ratio"] == pytest.approx(1.5)
    assert_bad_input(invoke(*args, "--tolerance", "-0.1"), "--tolerance -0.1", ">= 0")


def test_several_seeds_and_forms(tmp_path):
    bases = [write_run(tmp_path / f"grpo-{i}", BASE) for i in range(3)]
    fast = [(150, 10.0, 0.6)]  # ratio 2 in rollouts, 3 in wall
    cands = [write_run(tmp_path / "sfpo-0", fast), write_run(tmp_path / "sfpo-1", CAND)]
    cands.append(write_run(tmp_path / "sfpo-2", NEVER))
    spread = invoke("--baseline", *bases, "--candidate", *cands, "--json")
    assert spread.exit_code == 0, spread.output
    data = json.loads(spread.stdout)
    assert data["matched_pairs"] == "2/3" and len(data["pairs"]) == 3
    assert data["rollout_ratio"] == pytest.approx((2.0 + 1.5) / 2)
    assert data["rollout_ratio_range"] == [pytest.approx(1.5), pytest.approx(2.0)]
    repeated = [x for flag, paths in (("-b", bases), ("-c", cands)) for p in paths for x in (flag, p)]
    globbed = ["--baseline", str(tmp_path / "grpo-*"), "--candidate", str(tmp_path / "sfpo-*")]
    for form in (repeated, globbed):
        assert json.loads(invoke(*form, "--json").stdout) == data
    table = invoke("--baseline", *bases, "--candidate", *cands)
    assert "2/3" in table.stdout and "[1.50x, 2.00x]" in table.stdout


def test_mismatched_seed_counts(tmp_path):
    bases = [write_run(tmp_path / f"b{i}", BASE) for i in range(2)]
    result = invoke("--baseline", *bases, "--candidate", write_run(tmp_path / "c", CAND))
    assert_bad_input(result, "2 baseline run(s) but 1 candidate run(s)")


def test_demo_folder(tmp_path):
    write_run(tmp_path / "demo" / "grpo", BASE)
    write_run(tmp_path / "demo" / "sfpo", CAND)
    data = json.loads(invoke(tmp_path / "demo", "--json").stdout)
    assert data["baseline"] == ["grpo"] and data["candidate"] == ["sfpo"]
    assert data["rollout_ratio"] == pytest.approx(1.5)
    assert_bad_input(invoke(tmp_path / "demo" / "grpo"), "single run folder")


def test_truncated_last_line_warns_on_stderr(tmp_path):
    base = write_run(tmp_path / "b", BASE)
    with open(tmp_path / "b" / "metrics.jsonl", "a") as f:
        f.write('{"rl_step": 9, "rollo')
    result = invoke(base, write_run(tmp_path / "c", CAND), "--json")
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "truncated last line" in result.stderr
    assert json.loads(result.stdout)["baseline_rollouts_to_best"] == 300


def test_truncated_middle_line(tmp_path):
    base = write_run(tmp_path / "b", BASE)
    path = tmp_path / "b" / "metrics.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = lines[1][:20]
    path.write_text("\n".join(lines) + "\n")
    assert_bad_input(invoke(base, write_run(tmp_path / "c", CAND)), f"{path}:2", "invalid JSON")


def test_missing_folder(tmp_path):
    result = invoke(tmp_path / "nope", write_run(tmp_path / "c", CAND))
    assert_bad_input(result, str(tmp_path / "nope"), "does not exist")


def test_folder_without_metrics_and_empty_file(tmp_path):
    (tmp_path / "bare").mkdir()
    cand = write_run(tmp_path / "c", CAND)
    assert_bad_input(invoke(tmp_path / "bare", cand), "no metrics.jsonl or trainer_state.json")
    (tmp_path / "bare" / "metrics.jsonl").write_text("")
    assert_bad_input(invoke(tmp_path / "bare", cand), "is empty")


def test_no_such_metric_lists_available(tmp_path):
    result = invoke(
        write_run(tmp_path / "b", BASE), write_run(tmp_path / "c", CAND), "--metric", "eval/pass@1"
    )
    assert_bad_input(result, "no metric 'eval/pass@1'", "metrics it has: eval/accuracy, reward")


def test_out_writes_report_and_pngs(tmp_path):
    out = tmp_path / "report"
    result = invoke(write_run(tmp_path / "b", BASE), write_run(tmp_path / "c", CAND), "--json", "--out", out)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert sorted(data["files"]) == sorted(
        str(out / n) for n in ("report.md", "eval_accuracy_vs_rollouts.png", "eval_accuracy_vs_wall.png")
    )
    assert "| rollout ratio | 1.50x |" in (out / "report.md").read_text()
    for name in ("eval_accuracy_vs_rollouts.png", "eval_accuracy_vs_wall.png"):
        data = (out / name).read_bytes()
        assert len(data) > 1000 and data.startswith(PNG_MAGIC)


def test_trl_trainer_state_with_override(tmp_path):
    history = [
        {"reward": 0.1, "step": 10},
        {"eval_accuracy": 0.6, "step": 10},
        {"eval_accuracy": 0.7, "step": 20},
    ]
    (tmp_path / "trl").mkdir()
    state = {"train_batch_size": 8, "log_history": history}
    (tmp_path / "trl" / "trainer_state.json").write_text(json.dumps(state))
    cand = write_run(tmp_path / "c", CAND)
    result = invoke(
        tmp_path / "trl", cand, "--metric", "eval_accuracy", "--completions-per-step", "50", "--json"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    # baseline best 0.7 at optimizer step 20 = 1000 rollouts; candidate reaches it at 300
    assert data["baseline_rollouts_to_best"] == 1000 and data["candidate_rollouts_to_match"] == 300
    assert data["wall_ratio"] is None and any("TRL does not log" in n for n in data["notes"])
    derived = invoke(tmp_path / "trl", cand, "--json")  # 8 per device, the rest assumed 1: warned
    assert "assuming" in derived.stderr
    assert json.loads(derived.stdout)["baseline_rollouts_to_best"] == 160
    assert_bad_input(invoke(tmp_path / "trl", cand, "--completions-per-step", "0"), "--completions-per-step")


def test_usage_errors(tmp_path):
    cand = write_run(tmp_path / "c", CAND)
    assert_bad_input(invoke(cand, cand, cand), "got 3 positional path(s)")
    assert_bad_input(invoke("--baseline", cand), "--baseline and --candidate go together")
    assert_bad_input(invoke(cand, "--baseline", cand, "--candidate", cand), "use one form")
    assert_bad_input(invoke("--baseline", cand, "--candidate", str(tmp_path / "x*")), "matches no path")


def test_spread_multi_values():
    args = ["--baseline", "a", "b", "--json", "-c", "c", "d", "e", "--metric", "m"]
    assert _spread_multi_values(args) == [
        "--baseline", "a", "--baseline", "b", "--json",
        "-c", "c", "-c", "d", "-c", "e", "--metric", "m",
    ]  # fmt: skip
    assert _spread_multi_values(["--baseline", "--json"]) == ["--baseline", "--json"]


def test_json_has_stability_per_arm(tmp_path):
    base = write_run(tmp_path / "b", BASE)
    lines = [
        json.dumps(
            {
                "rl_step": i,
                "rollouts": r,
                "wall_s": w,
                "eval/accuracy": v,
                "entropy": e,
                "sfpo/active": int(i < 3),
            }
        )
        for i, ((r, w, v), e) in enumerate(zip(CAND, (1.0, 0.6, 0.9)), start=1)
    ]
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    result = invoke(base, tmp_path / "c", "--json")
    assert result.exit_code == 0, result.output
    stability = json.loads(result.stdout)["stability"]
    assert set(stability) == {"baseline", "candidate"}
    assert (
        stability["baseline"]["reward_mean_abs_change"] == 0.0
        and stability["baseline"]["entropy_mean_abs_change"] is None
    )
    assert stability["candidate"]["entropy_mean_abs_change"] == pytest.approx(0.35)  # (0.4 + 0.3) / 2
    assert stability["candidate"]["switch_rl_step"] == 3


# The baseline's best is its evaluation before training, which the candidate shares: matched, but at 0 rollouts.
AT_START_BASE = [(0, 0.0, 0.6), (100, 10.0, 0.5), (200, 20.0, 0.55)]
AT_START_CAND = [(0, 0.0, 0.6), (100, 12.0, 0.4)]


@pytest.mark.parametrize(
    "base, cand", [(BASE, CAND), (BASE, NEVER), (AT_START_BASE, AT_START_CAND)], ids=["matched", "never", "at-start"]
)
def test_console_and_report_agree(tmp_path, base, cand):
    """Every row of report.md's summary is on the console with the same value (matched pairs included)."""
    import re

    result = CliRunner().invoke(
        app, ["compare", write_run(tmp_path / "b", base), write_run(tmp_path / "c", cand), "--out", str(tmp_path / "r")],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    report = (tmp_path / "r" / "report.md").read_text()
    summary = report.split("\n\n")[1]  # the first table after the title
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in summary.splitlines()[2:]]
    assert rows and any(q == "matched pairs" for q, _ in rows)
    console = [re.sub(r"[│┃|]", " ", line) for line in result.stdout.splitlines()]
    for quantity, value in rows:
        assert any(quantity in line and f" {value} " in f" {line} " for line in console), (quantity, value)
    for note in re.findall(r"^- (.+)$", report, flags=re.M):
        assert f"note: {note}" in " ".join(result.stdout.split()), note
