"""GRPO vs SFPO on a real pretrained model on this CPU: SmolLM2-135M-Instruct, full fine-tuning, addition.

Each run is one arm of `sfpo demo --policy smollm2` (4 prompts x 8 rollouts per RL step at temperature 0.7,
held-out accuracy at temperature 0.7, one sample per problem) with a learning rate and a seed, on `addition-50`
(A + B with A, B in 1..50: the demo's 1..30 has only about 112 distinct held-out problems, too few for 200). The plan:
every seed x {grpo, sfpo (K=3, alpha=0.8)} at --lr, plus both arms at --other-lr for --other-lr-seeds. Runs go
one at a time into `--out/<arm>-lr<lr>-seed<seed>/` (config.json, metrics.jsonl, run.json with the time it
took). The benchmark is resumable: a finished run with the same settings is reused, an unfinished one is run
again from the start (or, with `--checkpoint-every N`, continued from its newest checkpoint, saved every N RL
steps), a finished one with other settings is an error (use another --out). `--max-new-runs N`
stops after N new runs and `--arms sfpo` runs one arm only, so the plan can be spread over sessions; the
summary covers the seeds where both arms are finished. `--entropy-coef 0` (with another --out) is the ablation
of the demo's entropy bonus. Needs `make smollm2`.

    python benchmarks/smollm2.py --seeds 0 1 2 --steps 16 --eval-every 2 --eval-problems 200 \\
        --lr 1e-5 --other-lr 2e-5 --other-lr-seeds 0 --out benchmarks/results/smollm2

Writes `summary.md` (per-seed and median numbers) and one `sfpo compare` report per learning rate
(`compare-lr<lr>/`: report.md, accuracy / entropy / length plots with the seeds' min-max band). With --target,
also the pre-registered verdict, `accuracy-vs-rollouts.png` (the three arms, the seeds' band) and
`compare-sfpo-lr<lr>-vs-grpo-lr<other-lr>/`, the same report against the primary baseline.

`--protocol round2` is the second pre-registered experiment (docs/smollm2-round2.md): its settings
are fixed here (round 1's with one AdamW step per pass), `--stage pilot` runs the rate grid on seed 100 and
writes each arm's pick to `<out>/picks.json`, `--stage main` runs every seed at the picked rates and writes
the verdict (rollouts to GRPO's best - 2 points). `--arms` names the arms (any `sfpo demo` arm, e.g.
gxpo; grpo and sfpo are required).

    python benchmarks/smollm2.py --protocol round2 --stage pilot --arms grpo sfpo gxpo \\
        --out benchmarks/results/smollm2-round2
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import time
from pathlib import Path

from bench_runs import differences, finished, write_run_info

from sfpo.algorithm.config import SWITCHES
from sfpo.algorithm.trainer import STATE_FILE
from sfpo.app.demo import SMOLLM2, DemoSettings, build_policy, run_arm
from sfpo.app.pipeline import last_checkpoint
from sfpo.app.report import compare_runs, format_table, load_run, plot_runs, timing, write_report
from sfpo.app.runlog import CheckpointEvery, read_metrics

ARMS = ("grpo", "sfpo")


def run_name(arm: str, lr: float, seed: int) -> str:
    return f"{arm}-lr{lr:g}-seed{seed}"


def resumable(folder: Path, settings: DemoSettings) -> str | None:
    """The newest complete checkpoint of an unfinished run of these settings in `folder`, if any."""
    checkpoint = last_checkpoint(folder, world_size=1)
    if checkpoint is None or not (folder / "config.json").is_file():
        return None
    return None if differences(folder, settings) else checkpoint


def run_one(settings: DemoSettings, arm: str, folder: Path, policy: str, checkpoint_every: int = 0) -> float:
    """Run (or continue) one arm; returns the seconds the run took. With `checkpoint_every`, a run killed
    part-way resumes from its newest checkpoint, and its time counts the work up to that checkpoint in each
    piece (`elapsed.json`); without one, or with other settings, it starts again."""
    checkpoint = resumable(folder, settings) if checkpoint_every else None
    elapsed = folder / "elapsed.json"
    before, pieces, seconds_at = 0.0, 1, {}  # seconds_at: the run's seconds at each checkpoint (RL step)
    if checkpoint is not None:
        saved = json.loads(elapsed.read_text()) if elapsed.is_file() else {}
        rl_step = json.loads((Path(checkpoint) / STATE_FILE).read_text())["rl_step"]
        seconds_at = {k: v for k, v in saved.get("seconds_at", {}).items() if int(k) <= rl_step}
        before, pieces = seconds_at.get(str(rl_step), 0.0), saved.get("pieces", 1) + 1
        print(f"  resuming from {checkpoint} (RL step {rl_step})", flush=True)
    elif folder.exists():  # an interrupted run without a checkpoint to go on from: start it again
        shutil.rmtree(folder)
    started = time.perf_counter()

    def on_step(record: dict) -> None:  # its checkpoint is saved right after this line
        if checkpoint_every and record["rl_step"] and record["rl_step"] % checkpoint_every == 0:
            seconds_at[str(record["rl_step"])] = round(before + time.perf_counter() - started, 1)
            elapsed.write_text(json.dumps({"pieces": pieces, "seconds_at": seconds_at}) + "\n")

    run_arm(
        settings,
        arm,
        policy,
        folder,
        progress=on_step,
        checkpoint_every=checkpoint_every,
        resume_from=checkpoint,
    )
    seconds = before + time.perf_counter() - started
    for done in folder.glob("checkpoint-*"):  # finished: the weights are not part of the result
        shutil.rmtree(done)
    if checkpoint_every:
        (folder / "README.md").unlink(missing_ok=True)  # the model card TRL writes with a checkpoint
    elapsed.unlink(missing_ok=True)
    # pieces: resumed after an interruption; `seconds` leaves out the work redone
    write_run_info(folder, seconds, **({"pieces": pieces} if pieces > 1 else {}))
    return seconds


def accuracies(folder: Path) -> list[tuple[int, float]]:
    return [(r["rl_step"], r["eval/accuracy"]) for r in load_run(folder).records if "eval/accuracy" in r]


def reaches(accuracy: float, target: float) -> bool:
    """accuracy >= target, exactly: accuracies and targets are counts over the evaluation set (in floats
    155/300 - 0.02 is 0.4966666666666667, 149/300 is 0.49666666666666665: a plain `>=` calls it short)."""
    return round(accuracy - target, 9) >= 0


def rollouts_to(folder: Path, target: float) -> float | None:
    """Rollouts at the first evaluation with accuracy >= target; None if the run never got there."""
    for r in load_run(folder).records:
        if "eval/accuracy" in r and reaches(r["eval/accuracy"], target):
            return r["rollouts"]
    return None


# A record's flag that the slow-fast update was on in that RL step (SFPO's; GXPO logs its own, same meaning).
ACTIVE_FLAGS = ("sfpo/active", "gxpo/active")


def active_steps(folder: Path) -> set[int]:
    """The RL steps (numbered as in metrics.jsonl) where the run's slow-fast update was on; none for GRPO."""
    return {
        r["rl_step"]
        for r in read_metrics(folder / "metrics.jsonl")
        if any(r.get(f) == 1 for f in ACTIVE_FLAGS)
    }


def median_clipped(folder: Path, steps: set[int] | None = None) -> float | None:
    """Median of TRL's clipped-token fraction (clip_ratio/region_mean) over the RL steps that trained, or over
    those of them in `steps` (e.g. the steps where SFPO was on); None if there are none."""
    values = [
        r["clip_ratio/region_mean"]
        for r in read_metrics(folder / "metrics.jsonl")
        if "clip_ratio/region_mean" in r and (steps is None or r["rl_step"] in steps)
    ]
    return statistics.median(values) if values else None


def clipped_while_on(folder: Path, seed_steps: set[int]) -> tuple[float | None, set[int]]:
    """(median clipped-token fraction over the RL steps where the slow-fast update was on, those steps): the
    run's own active steps, or for a run without any (GRPO) `seed_steps`, its seed's SFPO run's, so that both
    arms are read over the same RL step numbers."""
    steps = active_steps(folder) or seed_steps
    return (median_clipped(folder, steps) if steps else None), steps


def span(steps: set[int]) -> str:
    """RL steps as a range ("1-12") when consecutive, else listed."""
    if not steps:
        return "none"
    low, high = min(steps), max(steps)
    if len(steps) == high - low + 1:
        return str(low) if low == high else f"{low}-{high}"
    return ", ".join(str(s) for s in sorted(steps))


def standard_error(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


# The pre-registered rule (docs/smollm2-preregistered.md), SFPO against a GRPO arm, per seed and over seeds.
WIN_RATIO, LOSE_RATIO, FINAL_MARGIN = 1.5, 1.2, 0.03


def seed_ratio(baseline: float | None, candidate: float | None) -> float:
    """Baseline's rollouts to target / candidate's: 0 if the candidate never got there, inf if only the baseline
    never did, 1 if neither did (no evidence of a saving). A target already met at the first evaluation (0
    rollouts) counts the same way: inf if only the candidate met it there, 1 if both did."""
    if candidate is None:
        return 1.0 if baseline is None else 0.0
    if baseline is None:
        return math.inf
    if candidate == 0:
        return 1.0 if baseline == 0 else math.inf
    return baseline / candidate


def within_margin(final_diff: float) -> bool:
    """final_diff >= -3 points, exactly: accuracies are counts over the evaluation set, and 0.5 - 0.53 is
    -0.030000000000000027 in floats, which a plain comparison would call a miss."""
    return round(final_diff, 9) >= -FINAL_MARGIN


def seed_verdict(ratio: float, reached: bool, final_diff: float) -> str:
    if not reached or ratio < LOSE_RATIO:
        return "loss"
    if ratio >= WIN_RATIO and within_margin(final_diff):
        return "win"
    return "inconclusive"


def verdict(rows: list[dict]) -> tuple[str, str]:
    """(wins | loses | inconclusive, the numbers behind it) over the seeds in `rows` (ratio, reached, final_diff)."""
    n = len(rows)
    reached = sum(r["reached"] for r in rows)
    ratio = statistics.median(r["ratio"] for r in rows)
    final_diff = statistics.median(r["final_diff"] for r in rows)
    needed = n if n < 5 else 4  # 3 of 3, or 4 of 5
    why = (
        f"reached the target in {reached}/{n} seeds, median ratio {ratio:.2f}x, median final difference "
        f"{final_diff * 100:+.1f} points"
    )
    if reached >= needed and ratio >= WIN_RATIO and within_margin(final_diff):
        return "wins", why
    if ratio < LOSE_RATIO or n - reached >= 2:
        return "loses", why
    return "inconclusive", why


def preregistered(out: Path, lr: float, other_lr: float, seeds: list[int], target: float, n_eval: int) -> str:
    """The pre-registered comparison: SFPO at `lr` against GRPO at `other_lr` (primary) and at `lr` (secondary)."""
    arms = {"grpo-ref": ("grpo", other_lr), "grpo": ("grpo", lr), "sfpo": ("sfpo", lr)}
    folders = {k: {s: out / run_name(arm, a_lr, s) for s in seeds} for k, (arm, a_lr) in arms.items()}
    label = {"grpo-ref": f"GRPO {other_lr:g}", "grpo": f"GRPO {lr:g}", "sfpo": f"SFPO {lr:g}"}
    parts = [f"## Pre-registered verdict: rollouts to {target:.0%} held-out accuracy ({len(seeds)} seeds)"]
    rows = [
        f"| seed | {label['grpo-ref']} | {label['sfpo']} | ratio | {label['grpo']} | ratio vs {label['grpo']} | "
        "final (± s.e.) ref / SFPO / same-lr | best ref / SFPO / same-lr | seed verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    fmt = lambda x: "never" if x is None else f"{x:,.0f}"  # noqa: E731
    fmt_ratio = lambda r: "inf" if math.isinf(r) else f"{r:.2f}x"  # noqa: E731
    judged = {"grpo-ref": [], "grpo": []}
    for seed in seeds:
        reach = {k: rollouts_to(folders[k][seed], target) for k in arms}
        acc = {k: accuracies(folders[k][seed]) for k in arms}
        final = {k: acc[k][-1][1] for k in arms}
        best = {k: max(v for _, v in acc[k]) for k in arms}
        for base in judged:
            judged[base].append(
                {
                    "ratio": seed_ratio(reach[base], reach["sfpo"]),
                    "reached": reach["sfpo"] is not None,
                    "final_diff": final["sfpo"] - final[base],
                }
            )
        primary = judged["grpo-ref"][-1]
        rows.append(
            f"| {seed} | {fmt(reach['grpo-ref'])} | {fmt(reach['sfpo'])} | {fmt_ratio(primary['ratio'])} | "
            f"{fmt(reach['grpo'])} | {fmt_ratio(judged['grpo'][-1]['ratio'])} | "
            + " / ".join(f"{final[k]:.1%}" for k in ("grpo-ref", "sfpo", "grpo"))
            + f" (± {standard_error(final['sfpo'], n_eval):.1%}) | "
            + " / ".join(f"{best[k]:.1%}" for k in ("grpo-ref", "sfpo", "grpo"))
            + f" | {seed_verdict(primary['ratio'], primary['reached'], primary['final_diff'])} |"
        )
    parts.append("\n".join(rows))
    for base, role in (("grpo-ref", "primary"), ("grpo", "secondary")):
        outcome, why = verdict(judged[base])
        parts.append(f"**{role}: SFPO at {lr:g} {outcome} against {label[base]}** ({why}).")
    per_seed = {seed_verdict(r["ratio"], r["reached"], r["final_diff"]) for r in judged["grpo-ref"]}
    if len(seeds) == 3:
        agree = len(per_seed) == 1 and per_seed != {"inconclusive"}
        parts.append(
            "Seeds 0-2 agree: seeds 3 and 4 are not needed."
            if agree
            else "Seeds 0-2 do not agree: seeds 3 and 4 run next."
        )
    clipped = " | ".join(
        f"{label[k]} {statistics.median(c) * 100:.1f}%"
        for k in arms
        if (c := [v for v in (median_clipped(folders[k][s]) for s in seeds) if v is not None])
    )
    parts.append(
        "Median clipped-token fraction over the whole run (median over seeds of each run's median): "
        f"{clipped}."
    )
    parts.append(clipped_while_on_line({label[k]: list(folders[k].values()) for k in arms}, seeds))
    runs = {f"{label[k]} ({arms[k][0]})": [load_run(folders[k][s]) for s in seeds] for k in arms}
    plot_runs(
        runs,
        "eval/accuracy",
        out / "accuracy-vs-rollouts.png",
        hline=target,
        hline_label=f"target {target:.0%}",
    )
    # Secondary, against the primary baseline: rollouts and wall-clock to its best, stability (an `sfpo compare`)
    base_runs, sfpo_runs = runs[f"{label['grpo-ref']} (grpo)"], runs[f"{label['sfpo']} (sfpo)"]
    result = compare_runs(base_runs, sfpo_runs)
    folder = f"compare-sfpo-lr{lr:g}-vs-grpo-lr{other_lr:g}"
    write_report(result, base_runs, sfpo_runs, out / folder)
    parts += [
        f"### {label['sfpo']} against {label['grpo-ref']}: rollouts and wall-clock to GRPO's best ({folder}/)",
        format_table(result),
    ]
    return "\n\n".join(parts)


def summarize(out: Path, lrs: list[float], plan: dict, settings: DemoSettings) -> str:
    """Per-seed rows and medians for each learning rate with at least one finished (grpo, sfpo) pair."""
    parts = [
        f"# SmolLM2-135M-Instruct: GRPO vs SFPO (K=3, alpha=0.8)\n\n{settings.steps} RL steps x "
        f"{settings.prompts_per_step * settings.num_generations} rollouts, held-out accuracy on "
        f"{settings.eval_problems} problems (T={settings.eval_temperature}, {settings.eval_samples} sample) "
        f"every {settings.eval_every} RL steps."
    ]
    for lr in lrs:
        seeds = [s for s in plan[lr] if all(plan[lr][s].get(arm) for arm in ARMS)]
        if not seeds:
            continue
        folders = {arm: [out / run_name(arm, lr, s) for s in seeds] for arm in ARMS}
        base, cand = ([load_run(p) for p in folders[arm]] for arm in ARMS)
        result = compare_runs(base, cand)
        write_report(result, base, cand, out / f"compare-lr{lr:g}")
        rows = [
            "| seed | GRPO best / final | SFPO best / final | rollouts GRPO to best / SFPO to match | "
            "rollout ratio | run time GRPO / SFPO (min) |",
            "|---|---|---|---|---|---|",
        ]
        for seed, pair in zip(seeds, result["pairs"]):
            g, f = (accuracies(out / run_name(arm, lr, seed)) for arm in ARMS)
            minutes = [
                json.loads((out / run_name(arm, lr, seed) / "run.json").read_text())["seconds"] / 60
                for arm in ARMS
            ]
            ratio = f"{pair['rollout_ratio']:.2f}x" if pair["rollout_ratio"] else "never"
            match = pair["candidate_rollouts_to_match"]
            rows.append(
                f"| {seed} | {max(v for _, v in g):.1%} / {g[-1][1]:.1%} | {max(v for _, v in f):.1%} / "
                f"{f[-1][1]:.1%} | {pair['baseline_rollouts_to_best']:,.0f} / "
                f"{'never' if match is None else f'{match:,.0f}'} | {ratio} | "
                f"{minutes[0]:.0f} / {minutes[1]:.0f} |"
            )
        finals = {arm: statistics.median(accuracies(p)[-1][1] for p in folders[arm]) for arm in ARMS}
        bests = {
            arm: statistics.median(max(v for _, v in accuracies(p)) for p in folders[arm]) for arm in ARMS
        }
        ratio = result["rollout_ratio"]
        rows.append(
            f"| median | {bests['grpo']:.1%} / {finals['grpo']:.1%} | {bests['sfpo']:.1%} / "
            f"{finals['sfpo']:.1%} | | {'never' if ratio is None else f'{ratio:.2f}x'} "
            f"({result['matched_pairs']} matched) | |"
        )
        parts += [f"## lr {lr:g}: {len(seeds)} seed(s)", "\n".join(rows), format_table(result)]
    finished_runs = [
        (out / run_name(arm, lr, seed), seed)
        for lr in plan
        for seed in plan[lr]
        for arm in ARMS
        if plan[lr][seed].get(arm)
    ]
    parts.append(runs_table(finished_runs))
    return "\n\n".join(parts) + "\n"


def seed_active_steps(runs: list[tuple[Path, int]]) -> dict[int, set[int]]:
    """Per seed, the RL steps in which any of its runs had the slow-fast update on (the step switch makes them
    the same for every SFPO run of a seed)."""
    steps: dict[int, set[int]] = {}
    for folder, seed in runs:
        steps.setdefault(seed, set()).update(active_steps(folder))
    return steps


def clipped_while_on_line(arms: dict[str, list[Path]], seeds: list[int]) -> str:
    """Each arm's clipped-token fraction over the RL steps where SFPO was on (GRPO arms: the same RL steps of
    the same seed), median over seeds of each run's median, with the runs' range."""
    on = seed_active_steps([(f, s) for folders in arms.values() for f, s in zip(folders, seeds)])
    cells, spans = [], set()
    for label, folders in arms.items():
        values = []
        for folder, seed in zip(folders, seeds):
            value, steps = clipped_while_on(folder, on.get(seed, set()))
            if value is not None:
                values.append(value)
                spans.add(span(steps))
        if values:
            cells.append(
                f"{label} {statistics.median(values) * 100:.1f}% "
                f"(runs {min(values) * 100:.1f}-{max(values) * 100:.1f}%)"
            )
    where = f"RL steps {', '.join(sorted(spans))}" if spans else "no RL step"
    return (
        f"Clipped-token fraction while SFPO was on ({where}; the GRPO arms over the same RL steps), median "
        f"over seeds of each run's median: {' | '.join(cells) if cells else 'none'}."
    )


def runs_table(runs: list[tuple[Path, int]]) -> str:
    """Every finished run (folder, seed): accuracy, the median clipped-token fraction over the whole run and
    over the RL steps where SFPO was on (a GRPO run: its seed's SFPO run's), the zero-std batches skipped."""
    on = seed_active_steps(runs)
    rows = [
        "## Runs",
        "| run | best / final accuracy | median clipped tokens | "
        "median clipped tokens while SFPO on (RL steps) | skipped zero-std batches | minutes |",
        "|---|---|---|---|---|---|",
    ]
    for folder, seed in runs:
        acc, clipped = accuracies(folder), median_clipped(folder)
        while_on, steps = clipped_while_on(folder, on.get(seed, set()))
        skipped = sum(r.get("sfpo/skipped_zero_std_batch", 0) for r in load_run(folder).records)
        minutes = json.loads((folder / "run.json").read_text())["seconds"] / 60
        rows.append(
            f"| {folder.name} | {max(v for _, v in acc):.1%} / {acc[-1][1]:.1%} | "
            f"{'-' if clipped is None else f'{clipped:.2%}'} | "
            f"{'-' if while_on is None else f'{while_on:.2%} ({span(steps)})'} | {skipped} | {minutes:.0f} |"
        )
    return "\n".join(rows[:1]) + "\n\n" + "\n".join(rows[1:])


# --- Round 2 (docs/smollm2-round2.md): one AdamW step per pass, each arm at its own pilot-picked rate ------

# Round 1's settings (docs/smollm2-preregistered.md) but M = 1: an optimizer step sees all 8 x 8 rollouts.
ROUND2 = {
    "task": "addition-50",
    "steps": 24,
    "eval_every": 2,
    "eval_problems": 300,
    "prompts_per_step": 8,
    "optimizer_steps_per_pass": 1,
    "switch": "step",
    "stop_step": 12,  # SFPO (and GXPO) on RL steps 0-11, plain GRPO from 12
    "skip_zero_std_batches": True,
    "entropy_coef": 0.0,
}
ROUND2_CHECKPOINT_EVERY = 2
ROUND2_ARMS = ("grpo", "sfpo", "gxpo")
PILOT_SEED, PILOT_STEPS = 100, 8
PILOT_SCORED = (4, 6, 8)  # the pick: the highest mean held-out accuracy at these RL steps
GRPO_GRID = (1e-5, 2e-5, 4e-5)  # one AdamW step per batch, a quarter of round 1's: a higher grid
CANDIDATE_GRID = (2.5e-6, 5e-6, 1e-5)  # SFPO's, and every other slow-fast arm's (GXPO)
TOLERANCE = 0.02  # the target: GRPO's best held-out accuracy minus 2 points (about one s.e. at 300 problems)
FIXED_TARGET = 0.6  # secondary: rollouts to a fixed 60%
PICKS = "picks.json"


def round2_settings(seed: int, lr: float, steps: int = ROUND2["steps"]) -> DemoSettings:
    return DemoSettings(
        **{**SMOLLM2, "policy": "smollm2", **ROUND2, "steps": steps, "seed": seed, "learning_rate": lr}
    )


def pilot_grid(arm: str) -> tuple[float, ...]:
    return GRPO_GRID if arm == "grpo" else CANDIDATE_GRID


def pilot_score(folder: Path) -> float:
    """Mean held-out accuracy over the pilot run's evaluations at RL steps 4, 6 and 8."""
    acc = dict(accuracies(folder))
    missing = [t for t in PILOT_SCORED if t not in acc]
    if missing:
        raise SystemExit(
            f"error: {folder} has no held-out accuracy at RL step(s) {missing}; the pilot rule "
            f"needs RL steps {', '.join(map(str, PILOT_SCORED))}"
        )
    return statistics.fmean(acc[t] for t in PILOT_SCORED)


def pick_rate(scores: dict[float, float]) -> float:
    """The rate with the highest score; ties (equal to 1e-9, as the scores are means of counts over the
    evaluation set) go to the lower rate."""
    return max(scores, key=lambda lr: (round(scores[lr], 9), -lr))


def label(arm: str, lr: float) -> str:
    return f"{arm.upper()} {lr:g}"


def read_picks(out: Path) -> dict[str, float]:
    path = out / PICKS
    return json.loads(path.read_text())["picks"] if path.is_file() else {}


def write_picks(out: Path, picks: dict[str, float], scores: dict[str, dict[float, float]]) -> None:
    """Add the arms picked now to `<out>/picks.json`; a pick already written is never changed (an error if the
    pilot's folders now say otherwise)."""
    path = out / PICKS
    saved = json.loads(path.read_text()) if path.is_file() else {"picks": {}, "scores": {}}
    for arm, lr in picks.items():
        if arm in saved["picks"] and saved["picks"][arm] != lr:
            raise SystemExit(
                f"error: {path} picked lr {saved['picks'][arm]:g} for {arm}, the pilot's run folders now "
                f"pick {lr:g}; the pilot changed after its picks were written (restore it, or use another "
                "--out)"
            )
    saved["rule"] = (
        f"seed {PILOT_SEED}, {PILOT_STEPS} RL steps: the highest mean held-out accuracy at RL steps "
        f"{', '.join(map(str, PILOT_SCORED))}; ties: the lower rate (docs/smollm2-round2.md)"
    )
    saved["picks"].update(picks)
    saved["scores"].update({arm: {f"{lr:g}": v for lr, v in s.items()} for arm, s in scores.items()})
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(saved, indent=2) + "\n")


def main_plan(picks: dict[str, float], arms: tuple[str, ...]) -> list[tuple[str, float]]:
    """(arm, lr) of every main run of a seed: GRPO at lr_G, SFPO at lr_S, GRPO at lr_S, each other arm at its
    pick; GRPO at lr_S is GRPO at lr_G when both picked the same rate."""
    plan = [("grpo", picks["grpo"]), ("sfpo", picks["sfpo"]), ("grpo", picks["sfpo"])]
    plan += [(arm, picks[arm]) for arm in arms if arm not in ("grpo", "sfpo")]
    return list(dict.fromkeys(plan))


def target_comparison(base: Path, cand: Path, tolerance: float = TOLERANCE) -> dict:
    """Round 2's metric for one seed: T = the baseline's best held-out accuracy - `tolerance`; each run's
    rollouts at its first evaluation >= T; ratio = baseline's / candidate's (`seed_ratio`: 0 where the
    candidate never reaches T); the per-seed verdict of round 1 with this target."""
    b, c = accuracies(base), accuracies(cand)
    target = max(v for _, v in b) - tolerance
    base_rollouts, cand_rollouts = rollouts_to(base, target), rollouts_to(cand, target)
    ratio = seed_ratio(base_rollouts, cand_rollouts)
    reached = cand_rollouts is not None
    final_diff = c[-1][1] - b[-1][1]
    return {
        "target": target,
        "baseline_rollouts": base_rollouts,
        "candidate_rollouts": cand_rollouts,
        "ratio": ratio,
        "reached": reached,
        "final_diff": final_diff,
        "finals": (b[-1][1], c[-1][1]),
        "bests": (max(v for _, v in b), max(v for _, v in c)),
        "verdict": seed_verdict(ratio, reached, final_diff),
    }


def fmt_rollouts(x: float | None) -> str:
    return "never" if x is None else f"{x:,.0f}"


def fmt_ratio(r: float) -> str:
    return "inf" if math.isinf(r) else f"{r:.2f}x"


def target_section(
    title: str,
    role: str,
    base: tuple[str, float],
    cand: tuple[str, float],
    folders: dict[tuple[str, float], dict[int, Path]],
    seeds: list[int],
    n_eval: int,
) -> tuple[str, list]:
    """A per-seed table of the round-2 metric, candidate against baseline, and the verdict over the seeds."""
    b, c = label(*base), label(*cand)
    rows = [
        f"| seed | target T | {b} to T | {c} to T | ratio | final {b} / {c} (± s.e.) | best {b} / {c} | "
        "seed verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    judged = []
    for seed in seeds:
        r = target_comparison(folders[base][seed], folders[cand][seed])
        judged.append(r)
        rows.append(
            f"| {seed} | {r['target']:.1%} | {fmt_rollouts(r['baseline_rollouts'])} | "
            f"{fmt_rollouts(r['candidate_rollouts'])} | {fmt_ratio(r['ratio'])} | "
            f"{r['finals'][0]:.1%} / {r['finals'][1]:.1%} (± {standard_error(r['finals'][1], n_eval):.1%}) | "
            f"{r['bests'][0]:.1%} / {r['bests'][1]:.1%} | {r['verdict']} |"
        )
    outcome, why = verdict(judged)
    text = f"{title}\n\n" + "\n".join(rows) + f"\n\n**{role}: {c} {outcome} against {b}** ({why})."
    return text, judged


def seeds_line(seeds: list[int], judged: list[dict]) -> str:
    """Round 1's rule for seeds 3 and 4, on SFPO's primary per-seed verdicts."""
    if seeds != [0, 1, 2]:
        return ""
    per_seed = {r["verdict"] for r in judged}
    agree = len(per_seed) == 1 and per_seed != {"inconclusive"}
    return (
        f"Seeds 0-2 agree (each a {per_seed.pop()}): seeds 3 and 4 are not run."
        if agree
        else "Seeds 0-2 do not agree (or are all inconclusive): seeds 3 and 4 run next (`--seeds 0 1 2 3 4`)."
    )


def fixed_target_table(plan: list[tuple[str, float]], folders: dict, seeds: list[int]) -> str:
    """Rollouts to a fixed 60% held-out accuracy per seed and run, and each ratio against GRPO at lr_G."""
    base = plan[0]
    head = " | ".join(label(*k) for k in plan)
    rows = [f"| seed | {head} | ratios vs {label(*base)} |", "|---|" + "---|" * len(plan) + "---|"]
    for seed in seeds:
        reach = {k: rollouts_to(folders[k][seed], FIXED_TARGET) for k in plan}
        ratios = ", ".join(f"{label(*k)} {fmt_ratio(seed_ratio(reach[base], reach[k]))}" for k in plan[1:])
        rows.append(f"| {seed} | " + " | ".join(fmt_rollouts(reach[k]) for k in plan) + f" | {ratios} |")
    return "\n".join(rows)


def accuracy_table(plan: list[tuple[str, float]], folders: dict, seeds: list[int], n_eval: int) -> str:
    rows = ["| run | best (median) | final (median) | final per seed (± s.e.) |", "|---|---|---|---|"]
    for k in plan:
        acc = [accuracies(folders[k][s]) for s in seeds]
        finals = [a[-1][1] for a in acc]
        per_seed = ", ".join(f"{f:.1%} ± {standard_error(f, n_eval):.1%}" for f in finals)
        rows.append(
            f"| {label(*k)} | {statistics.median(max(v for _, v in a) for a in acc):.1%} | "
            f"{statistics.median(finals):.1%} | {per_seed} |"
        )
    return "\n".join(rows)


def wall_table(plan: list[tuple[str, float]], folders: dict, seeds: list[int]) -> str:
    """Wall-clock split per arm: minutes per run, and generation / training seconds per RL step (medians)."""
    rows = [
        "| run | minutes per run (median) | generation s per RL step | training s per RL step | "
        "generation share |",
        "|---|---|---|---|---|",
    ]
    for k in plan:
        minutes = [json.loads((folders[k][s] / "run.json").read_text())["seconds"] / 60 for s in seeds]
        split = [timing(load_run(folders[k][s])) for s in seeds]

        def med(key, split=split):
            values = [t[key] for t in split if t[key] is not None]
            return statistics.median(values) if values else None

        gen, train, share = med("generation_s_per_step"), med("training_s_per_step"), med("generation_share")
        rows.append(
            f"| {label(*k)} | {statistics.median(minutes):.0f} | "
            + " | ".join("-" if v is None else f"{v:.1f}" for v in (gen, train))
            + f" | {'-' if share is None else f'{share:.1%}'} |"
        )
    return "\n".join(rows)


def round2_summary(
    out: Path, plan: list[tuple[str, float]], seeds: list[int], picks: dict[str, float]
) -> str:
    """The verdict and the secondary figures over `seeds` (every run of the plan finished)."""
    n_eval = ROUND2["eval_problems"]
    folders = {k: {s: out / run_name(k[0], k[1], s) for s in seeds} for k in plan}
    primary, same_rate = ("grpo", picks["grpo"]), ("grpo", picks["sfpo"])
    candidates = [k for k in plan if k[0] != "grpo"]
    parts = [
        f"## Verdict: rollouts to GRPO-at-lr_G's best held-out accuracy - {TOLERANCE * 100:.0f} points "
        f"({len(seeds)} seeds)"
    ]
    sfpo_judged = []
    for cand in candidates:
        role = "primary" if cand[0] == "sfpo" else "second pre-registered outcome"
        text, judged = target_section(
            f"### {label(*cand)} against {label(*primary)} ({role})",
            role,
            primary,
            cand,
            folders,
            seeds,
            n_eval,
        )
        parts.append(text)
        if cand[0] == "sfpo":
            sfpo_judged = judged
            if line := seeds_line(seeds, judged):
                parts.append(line)
    parts.append("## Secondary (reported, not deciding)")
    if same_rate != primary:
        for cand in candidates:
            text, _ = target_section(
                f"### {label(*cand)} against {label(*same_rate)} (target: its best - "
                f"{TOLERANCE * 100:.0f} points)",
                "secondary",
                same_rate,
                cand,
                folders,
                seeds,
                n_eval,
            )
            parts.append(text)
    else:
        parts.append(
            f"GRPO's and SFPO's picks are the same rate ({picks['grpo']:g}): the same-rate comparison is "
            "the primary one."
        )
    parts += [
        f"### Rollouts to a fixed {FIXED_TARGET:.0%}",
        fixed_target_table(plan, folders, seeds),
        "### Best and final held-out accuracy",
        accuracy_table(plan, folders, seeds, n_eval),
        "### Clipped tokens",
        clipped_while_on_line({label(*k): [folders[k][s] for s in seeds] for k in plan}, seeds),
        "### Wall-clock",
        wall_table(plan, folders, seeds),
    ]
    runs = {label(*k): [load_run(folders[k][s]) for s in seeds] for k in plan}
    median_target = statistics.median(r["target"] for r in sfpo_judged)
    plot_runs(
        runs,
        "eval/accuracy",
        out / "accuracy-vs-rollouts.png",
        hline=median_target,
        hline_label=f"median target (GRPO {picks['grpo']:g} best - {TOLERANCE * 100:.0f} pts)",
    )
    for cand in candidates:  # rollouts and wall-clock to GRPO-at-lr_G's best, stability (`sfpo compare`)
        base_runs, cand_runs = runs[label(*primary)], runs[label(*cand)]
        result = compare_runs(base_runs, cand_runs)
        folder = f"compare-{cand[0]}-lr{cand[1]:g}-vs-grpo-lr{primary[1]:g}"
        write_report(result, base_runs, cand_runs, out / folder)
        parts += [
            f"### {label(*cand)} against {label(*primary)}: rollouts and wall-clock to GRPO's best "
            f"({folder}/)",
            format_table(result),
        ]
    return "\n\n".join(parts)


class Runner:
    """Runs what is not finished yet, one at a time, up to --max-new-runs; builds the policy on first need."""

    def __init__(self, max_new_runs: int | None, checkpoint_every: int):
        self.max_new_runs, self.checkpoint_every = max_new_runs, checkpoint_every
        self.policy, self.new_runs = None, 0

    def ensure(self, settings: DemoSettings, arm: str, folder: Path, allowed: bool = True) -> bool:
        """True once `folder` holds this run finished (reused, or run now)."""
        done = finished(folder, settings)
        if not done and allowed and (self.max_new_runs is None or self.new_runs < self.max_new_runs):
            self.policy = self.policy or build_policy(settings)
            print(f"running {folder} ...", flush=True)
            seconds = run_one(settings, arm, folder, self.policy, self.checkpoint_every)
            print(f"  {folder.name}: {seconds / 60:.1f} min", flush=True)
            self.new_runs, done = self.new_runs + 1, True
        elif done:
            print(f"reusing {folder} (finished)", flush=True)
        return done


def round2_pilot(out: Path, arms: tuple[str, ...], runner: Runner) -> str:
    """Run the pilot grid (seed 100, 8 RL steps), pick each arm's rate by the rule and write `picks.json`."""
    pilot = out / "pilot"
    grid = [(arm, lr) for arm in arms for lr in pilot_grid(arm)]
    done = {}
    for arm, lr in grid:
        settings = round2_settings(PILOT_SEED, lr, PILOT_STEPS)
        done[arm, lr] = runner.ensure(settings, arm, pilot / run_name(arm, lr, PILOT_SEED))
    scores = {
        arm: {lr: pilot_score(pilot / run_name(arm, lr, PILOT_SEED)) for lr in pilot_grid(arm)}
        for arm in arms
        if all(done[arm, lr] for lr in pilot_grid(arm))
    }
    picks = {arm: pick_rate(s) for arm, s in scores.items()}
    if picks:
        write_picks(out, picks, scores)
    finished_runs = []
    rows = [
        f"| run | held-out accuracy at RL step 0 / 2 / 4 / 6 / 8 | mean at RL steps "
        f"{', '.join(map(str, PILOT_SCORED))} | pick |",
        "|---|---|---|---|",
    ]
    for arm, lr in (k for k in grid if done[k]):
        folder = pilot / run_name(arm, lr, PILOT_SEED)
        finished_runs.append((folder, PILOT_SEED))
        acc = " / ".join(f"{v:.1%}" for _, v in accuracies(folder))
        picked = "**picked**" if picks.get(arm) == lr else ""
        rows.append(f"| {folder.name} | {acc} | {pilot_score(folder):.2%} | {picked} |")
    text = [
        f"# SmolLM2-135M-Instruct, round 2: the pilot (docs/smollm2-round2.md)\n\nSeed {PILOT_SEED}, "
        f"{PILOT_STEPS} RL steps x 64 rollouts, one AdamW step per pass, SFPO on throughout. The rule: "
        f"each arm's rate is the one with the highest mean held-out accuracy at RL steps "
        f"{', '.join(map(str, PILOT_SCORED))}; ties: the lower rate.",
        "\n".join(rows) if finished_runs else "No pilot run has finished.",
    ]
    if picks:
        text.append(
            "Picks (written to `picks.json`): " + ", ".join(f"{a} {lr:g}" for a, lr in picks.items()) + "."
        )
    if finished_runs:
        text.append(runs_table(finished_runs))
    pending = [run_name(*k, PILOT_SEED) for k in grid if not done[k]]
    if pending:
        text.append(f"Not run yet: {', '.join(pending)}.")
    summary = "\n\n".join(text) + "\n"
    pilot.mkdir(parents=True, exist_ok=True)
    (pilot / "summary.md").write_text(summary)
    return summary


def round2_main(out: Path, arms: tuple[str, ...], seeds: list[int], runner: Runner) -> str:
    """Run the main plan at the pilot's picks, seed by seed, and write the summary with the verdict."""
    picks = read_picks(out)
    missing = [arm for arm in arms if arm not in picks]
    if missing:
        raise SystemExit(
            f"error: {out / PICKS} has no pilot pick for {', '.join(missing)}; run the pilot first "
            f"(--stage pilot --arms {' '.join(arms)})"
        )
    plan = main_plan(picks, arms)
    done = {}
    for seed in seeds:
        for arm, lr in plan:
            done[arm, lr, seed] = runner.ensure(round2_settings(seed, lr), arm, out / run_name(arm, lr, seed))
    judged = [s for s in seeds if all(done[arm, lr, s] for arm, lr in plan)]
    text = [
        f"# SmolLM2-135M-Instruct, round 2 (docs/smollm2-round2.md)\n\n{ROUND2['steps']} RL steps x 64 "
        f"rollouts (8 prompts x 8), one AdamW step per pass, SFPO on RL steps 0-{ROUND2['stop_step'] - 1}; "
        "held-out "
        f"accuracy on {ROUND2['eval_problems']} problems every {ROUND2['eval_every']} RL steps. Pilot picks: "
        + ", ".join(f"{arm} {lr:g}" for arm, lr in picks.items() if arm in arms)
        + "."
    ]
    if judged:
        text.append(round2_summary(out, plan, judged, picks))
        text.append(runs_table([(out / run_name(arm, lr, s), s) for s in judged for arm, lr in plan]))
    pending = [run_name(arm, lr, s) for s in seeds for arm, lr in plan if not done[arm, lr, s]]
    if pending:
        text.append(f"Not run yet: {', '.join(pending)}.")
    summary = "\n\n".join(text) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(summary)
    return summary


# Options that set round 1's runs; round 2 fixes them in ROUND2 (the protocol page) and refuses them.
ROUND1_OPTIONS = {
    "task": "addition-50",
    "steps": 16,
    "eval_every": 2,
    "eval_problems": 200,
    "lr": SMOLLM2["learning_rate"],
    "other_lr": 2e-5,
    "other_lr_seeds": [0],
    "other_lr_arms": list(ARMS),
    "prompts_per_step": SMOLLM2["prompts_per_step"],
    "optimizer_steps_per_pass": DemoSettings.optimizer_steps_per_pass,
    "switch": DemoSettings.switch,
    "stop_step": None,
    "skip_zero_std_batches": False,
    "entropy_coef": DemoSettings.entropy_coef,
    "target": None,
}


def check_arms(opts) -> tuple[str, ...]:
    """The arms by name: round 1's plan has grpo and sfpo; round 2 takes any `sfpo demo` arm (`run_arm` is
    given the name), and needs grpo and sfpo."""
    from sfpo.app import demo

    if opts.protocol == "round1":
        arms = tuple(opts.arms or ARMS)
        for arm in arms:
            if arm not in ARMS:
                raise SystemExit(
                    f"error: --arms {arm!r} is not in round 1's plan; allowed: {', '.join(ARMS)}"
                )
        return arms
    arms = tuple(opts.arms or ROUND2_ARMS)
    for arm in arms:
        if arm not in demo.ARMS:
            raise SystemExit(
                f"error: --arms {arm!r} is not an arm of `sfpo demo`; allowed: {', '.join(demo.ARMS)}"
            )
    if len(set(arms)) != len(arms) or not {"grpo", "sfpo"} <= set(arms):
        raise SystemExit(
            f"error: --arms {' '.join(arms)!r} is not allowed: round 2 needs grpo and sfpo, each once"
        )
    return arms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--protocol",
        choices=("round1", "round2"),
        default="round1",
        help="round1: the options below set the runs; round2: docs/smollm2-round2.md, settings fixed here",
    )
    parser.add_argument(
        "--stage", choices=("pilot", "main"), default=None, help="round 2: the pilot or the main runs"
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=None, help="round 1: default 0 1 2; round 2 main: 0 1 2"
    )
    parser.add_argument(
        "--task",
        default=None,
        help="addition-50 (operands 1..50): `addition` has only ~112 distinct held-out problems",
    )
    parser.add_argument("--steps", type=int, default=None, help="default 16")
    parser.add_argument("--eval-every", type=int, default=None, help="default 2")
    parser.add_argument("--eval-problems", type=int, default=None, help="default 200")
    parser.add_argument("--lr", type=float, default=None, help=f"default {SMOLLM2['learning_rate']:g}")
    parser.add_argument("--other-lr", type=float, default=None, help="default 2e-5")
    parser.add_argument(
        "--other-lr-seeds", type=int, nargs="*", default=None, help="none: skip the other lr; default 0"
    )
    parser.add_argument(
        "--other-lr-arms",
        nargs="+",
        choices=ARMS,
        default=None,
        help="the arms run at --other-lr (default both)",
    )
    parser.add_argument(
        "--prompts-per-step", type=int, default=None, help=f"default {SMOLLM2['prompts_per_step']}"
    )
    parser.add_argument(
        "--optimizer-steps-per-pass",
        type=int,
        default=None,
        help="mini-batches (AdamW steps) per pass over an RL step's rollouts (the paper: 4; default "
        f"{DemoSettings.optimizer_steps_per_pass})",
    )
    parser.add_argument("--switch", choices=SWITCHES, default=None, help="when SFPO turns off")
    parser.add_argument(
        "--stop-step", type=int, default=None, help="with --switch step: first plain-GRPO RL step"
    )
    parser.add_argument(
        "--skip-zero-std-batches",
        action="store_true",
        default=None,
        help="no update on a batch whose groups all have equal rewards (every arm)",
    )
    parser.add_argument(
        "--entropy-coef",
        type=float,
        default=None,
        help="entropy bonus for both arms (the demo's default; 0 = off, for the ablation: use another --out)",
    )
    parser.add_argument(
        "--arms",
        nargs="+",
        default=None,
        help="round 1: run only these of grpo, sfpo (finished runs of the others are still summarized); "
        "round 2: the arms of the plan, by `sfpo demo` name (default grpo sfpo gxpo)",
    )
    parser.add_argument(
        "--target",
        type=float,
        default=None,
        help="pre-registered verdict: rollouts to this held-out accuracy, SFPO at --lr vs GRPO at --other-lr",
    )
    parser.add_argument("--max-new-runs", type=int, default=None, help="stop after this many new runs")
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="N",
        help="save a checkpoint every N RL steps (the newest is kept), so that a killed run resumes from it "
        f"instead of starting again; 0: none (round 1's default; round 2's: {ROUND2_CHECKPOINT_EVERY})",
    )
    parser.add_argument("--out", default="benchmarks/results/smollm2")
    opts = parser.parse_args()
    if opts.protocol == "round2":
        main_round2(opts)
        return
    arms = check_arms(opts)
    if opts.stage is not None:
        raise SystemExit("error: --stage is a round-2 option (--protocol round2)")
    for key, default in ROUND1_OPTIONS.items():
        if getattr(opts, key) is None:
            setattr(opts, key, default)
    if opts.seeds is None:
        opts.seeds = [0, 1, 2]
    out = Path(opts.out)
    jobs = [(opts.lr, s, ARMS) for s in opts.seeds]
    jobs += [(opts.other_lr, s, tuple(opts.other_lr_arms)) for s in opts.other_lr_seeds]
    lrs = list(dict.fromkeys(lr for lr, _, _ in jobs))
    base = DemoSettings(
        **{
            **SMOLLM2,
            "policy": "smollm2",
            "task": opts.task,
            "steps": opts.steps,
            "eval_every": opts.eval_every,
            "eval_problems": opts.eval_problems,
            "entropy_coef": opts.entropy_coef,
            "prompts_per_step": opts.prompts_per_step,
            "optimizer_steps_per_pass": opts.optimizer_steps_per_pass,
            "switch": opts.switch,
            "stop_step": opts.stop_step,
            "skip_zero_std_batches": opts.skip_zero_std_batches,
        }
    )
    checkpoint_every = opts.checkpoint_every or 0
    try:
        base.validate()
        if opts.checkpoint_every:
            CheckpointEvery(opts.checkpoint_every)
    except ValueError as err:  # a bad option: name it, before any run folder is touched
        raise SystemExit(f"error: {err}".replace("checkpoint_every=", "--checkpoint-every ")) from None
    runner, plan = Runner(opts.max_new_runs, checkpoint_every), {lr: {} for lr in lrs}
    for lr, seed, planned in jobs:
        settings = DemoSettings(**{**vars(base), "learning_rate": lr, "seed": seed})
        plan[lr][seed] = {}
        for arm in planned:
            plan[lr][seed][arm] = runner.ensure(
                settings, arm, out / run_name(arm, lr, seed), allowed=arm in arms
            )
    pending = [run_name(a, lr, s) for lr in plan for s in plan[lr] for a in plan[lr][s] if not plan[lr][s][a]]
    summary = summarize(out, lrs, plan, base)
    if opts.target is not None:
        seeds = [
            s
            for s in opts.seeds
            if plan[opts.lr][s].get("grpo")
            and plan[opts.lr][s].get("sfpo")
            and plan.get(opts.other_lr, {}).get(s, {}).get("grpo")
        ]
        if seeds:
            summary += (
                "\n"
                + preregistered(out, opts.lr, opts.other_lr, seeds, opts.target, opts.eval_problems)
                + "\n"
            )
    if pending:
        summary += f"\nNot run yet: {', '.join(pending)}.\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(summary)
    print(summary)


def main_round2(opts) -> None:
    """Round 2: the protocol's settings, refusing round 1's setting options, before any folder is touched."""
    given = [f"--{k.replace('_', '-')}" for k in ROUND1_OPTIONS if getattr(opts, k) is not None]
    if given:
        raise SystemExit(
            f"error: {', '.join(given)} not allowed with --protocol round2: its settings are fixed by "
            "docs/smollm2-round2.md"
        )
    if opts.stage is None:
        raise SystemExit("error: --protocol round2 needs --stage pilot or --stage main")
    if opts.stage == "pilot" and opts.seeds is not None:
        raise SystemExit(
            f"error: --seeds is not allowed with --stage pilot: the pilot runs seed {PILOT_SEED}"
        )
    arms = check_arms(opts)
    seeds = opts.seeds if opts.seeds is not None else [0, 1, 2]
    if PILOT_SEED in seeds:
        raise SystemExit(f"error: --seeds {PILOT_SEED} is the pilot's seed, not used by the main runs")
    every = ROUND2_CHECKPOINT_EVERY if opts.checkpoint_every is None else opts.checkpoint_every
    if every:
        try:
            CheckpointEvery(every)
        except ValueError as err:
            raise SystemExit(f"error: {err}".replace("checkpoint_every=", "--checkpoint-every ")) from None
    runner, out = Runner(opts.max_new_runs, every), Path(opts.out)
    if opts.stage == "pilot":
        summary = round2_pilot(out, arms, runner)
    else:
        summary = round2_main(out, arms, seeds, runner)
    print(summary)


if __name__ == "__main__":
    main()
