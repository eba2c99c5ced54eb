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
from sfpo.app.report import compare_runs, format_table, load_run, plot_runs, write_report
from sfpo.app.runlog import CheckpointEvery

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

    run_arm(settings, arm, policy, folder, progress=on_step, checkpoint_every=checkpoint_every,
            resume_from=checkpoint)
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


def rollouts_to(folder: Path, target: float) -> float | None:
    """Rollouts at the first evaluation with accuracy >= target; None if the run never got there."""
    for r in load_run(folder).records:
        if r.get("eval/accuracy", -1.0) >= target:
            return r["rollouts"]
    return None


def median_clipped(folder: Path) -> float | None:
    """Median over the RL steps that trained of TRL's clipped-token fraction (clip_ratio/region_mean)."""
    values = [r["clip_ratio/region_mean"] for r in load_run(folder).records if "clip_ratio/region_mean" in r]
    return statistics.median(values) if values else None


def standard_error(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


# The pre-registered rule (docs/smollm2-preregistered.md), SFPO against a GRPO arm, per seed and over seeds.
WIN_RATIO, LOSE_RATIO, FINAL_MARGIN = 1.5, 1.2, 0.03


def seed_ratio(baseline: float | None, candidate: float | None) -> float:
    """Baseline's rollouts to target / candidate's: 0 if the candidate never got there, inf if only the baseline
    never did, 1 if neither did (no evidence of a saving)."""
    if candidate is None:
        return 1.0 if baseline is None else 0.0
    return math.inf if baseline is None else baseline / candidate


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
    parts.append(f"Median clipped-token fraction (median over seeds of each run's median): {clipped}.")
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
    parts.append(runs_table(out, plan))
    return "\n\n".join(parts) + "\n"


def runs_table(out: Path, plan: dict) -> str:
    """Every finished run: accuracy, the median clipped-token fraction and the zero-std batches skipped."""
    rows = [
        "## Runs",
        "| run | best / final accuracy | median clipped tokens | skipped zero-std batches | minutes |",
        "|---|---|---|---|---|",
    ]
    for lr in plan:
        for seed in plan[lr]:
            for arm in (a for a in ARMS if plan[lr][seed].get(a)):
                folder = out / run_name(arm, lr, seed)
                acc, clipped = accuracies(folder), median_clipped(folder)
                skipped = sum(r.get("sfpo/skipped_zero_std_batch", 0) for r in load_run(folder).records)
                minutes = json.loads((folder / "run.json").read_text())["seconds"] / 60
                rows.append(
                    f"| {folder.name} | {max(v for _, v in acc):.1%} / {acc[-1][1]:.1%} | "
                    f"{'-' if clipped is None else f'{clipped:.2%}'} | {skipped} | {minutes:.0f} |"
                )
    return "\n".join(rows[:1]) + "\n\n" + "\n".join(rows[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--task",
        default="addition-50",
        help="addition-50 (operands 1..50): `addition` has only ~112 distinct held-out problems",
    )
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--eval-every", type=int, default=2)
    parser.add_argument("--eval-problems", type=int, default=200)
    parser.add_argument("--lr", type=float, default=SMOLLM2["learning_rate"])
    parser.add_argument("--other-lr", type=float, default=2e-5)
    parser.add_argument("--other-lr-seeds", type=int, nargs="*", default=[0], help="none: skip the other lr")
    parser.add_argument(
        "--other-lr-arms", nargs="+", choices=ARMS, default=list(ARMS), help="the arms run at --other-lr"
    )
    parser.add_argument("--prompts-per-step", type=int, default=SMOLLM2["prompts_per_step"])
    parser.add_argument(
        "--optimizer-steps-per-pass",
        type=int,
        default=DemoSettings.optimizer_steps_per_pass,
        help="mini-batches (AdamW steps) per pass over an RL step's rollouts (the paper: 4)",
    )
    parser.add_argument("--switch", choices=SWITCHES, default=DemoSettings.switch, help="when SFPO turns off")
    parser.add_argument(
        "--stop-step", type=int, default=None, help="with --switch step: first plain-GRPO RL step"
    )
    parser.add_argument(
        "--skip-zero-std-batches",
        action="store_true",
        help="no update on a batch whose groups all have equal rewards (every arm)",
    )
    parser.add_argument(
        "--entropy-coef",
        type=float,
        default=DemoSettings.entropy_coef,
        help="entropy bonus for both arms (the demo's default; 0 = off, for the ablation: use another --out)",
    )
    parser.add_argument(
        "--arms",
        nargs="+",
        choices=ARMS,
        default=list(ARMS),
        help="run only these arms (finished runs of the others are still summarized)",
    )
    parser.add_argument(
        "--target",
        type=float,
        default=None,
        help="pre-registered verdict: rollouts to this held-out accuracy, SFPO at --lr vs GRPO at --other-lr",
    )
    parser.add_argument("--max-new-runs", type=int, default=None, help="stop after this many new runs")
    parser.add_argument(
        "--checkpoint-every", type=int, default=0, metavar="N",
        help="save a checkpoint every N RL steps (the newest is kept), so that a killed run resumes from it "
        "instead of starting again; 0: none",
    )
    parser.add_argument("--out", default="benchmarks/results/smollm2")
    opts = parser.parse_args()
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
    try:
        base.validate()
        if opts.checkpoint_every:
            CheckpointEvery(opts.checkpoint_every)
    except ValueError as err:  # a bad option: name it, before any run folder is touched
        raise SystemExit(f"error: {err}".replace("checkpoint_every=", "--checkpoint-every ")) from None
    policy, new_runs, plan = None, 0, {lr: {} for lr in lrs}
    for lr, seed, planned in jobs:
        settings = DemoSettings(**{**vars(base), "learning_rate": lr, "seed": seed})
        plan[lr][seed] = {}
        for arm in planned:
            folder = out / run_name(arm, lr, seed)
            done = finished(folder, settings)
            if not done and arm in opts.arms and (opts.max_new_runs is None or new_runs < opts.max_new_runs):
                policy = policy or build_policy(settings)
                print(f"running {folder} ...", flush=True)
                seconds = run_one(settings, arm, folder, policy, opts.checkpoint_every)
                print(f"  {folder.name}: {seconds / 60:.1f} min", flush=True)
                new_runs, done = new_runs + 1, True
            elif done:
                print(f"reusing {folder} (finished)", flush=True)
            plan[lr][seed][arm] = done
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


if __name__ == "__main__":
    main()
