"""GRPO vs SFPO on a real pretrained model on this CPU: SmolLM2-135M-Instruct, full fine-tuning, addition.

Each run is one arm of `sfpo demo --policy smollm2` (4 prompts x 8 rollouts per RL step at temperature 0.7,
held-out accuracy at temperature 0.7, one sample per problem) with a learning rate and a seed, on `addition-50`
(A + B with A, B in 1..50: the demo's 1..30 has only about 112 distinct held-out problems, too few for 200). The plan:
every seed x {grpo, sfpo (K=3, alpha=0.8)} at --lr, plus both arms at --other-lr for --other-lr-seeds. Runs go
one at a time into `--out/<arm>-lr<lr>-seed<seed>/` (config.json, metrics.jsonl, run.json with the time it
took). The benchmark is resumable: a finished run with the same settings is reused, an unfinished one is run
again from the start, a finished one with other settings is an error (use another --out). `--max-new-runs N`
stops after N new runs and `--arms sfpo` runs one arm only, so the plan can be spread over sessions; the
summary covers the seeds where both arms are finished. `--entropy-coef 0` (with another --out) is the ablation
of the demo's entropy bonus. Needs `make smollm2`.

    python benchmarks/smollm2.py --seeds 0 1 2 --steps 16 --eval-every 2 --eval-problems 200 \\
        --lr 1e-5 --other-lr 2e-5 --other-lr-seeds 0 --out benchmarks/results/smollm2

Writes `summary.md` (per-seed and median numbers) and one `sfpo compare` report per learning rate
(`compare-lr<lr>/`: report.md, accuracy / entropy / length plots with the seeds' min-max band).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import time
from pathlib import Path

from sfpo.config import SWITCHES
from sfpo.demo import SMOLLM2, DemoSettings, build_policy, run_arm
from sfpo.report import compare_runs, format_table, load_run, write_report
from sfpo.runlog import read_metrics

ARMS = ("grpo", "sfpo")
# The settings that identify a run (with arm, seed and learning rate): a finished run is reused only if equal.
IDENTITY = (
    "task",
    "policy",
    "steps",
    "prompts_per_step",
    "num_generations",
    "optimizer_steps_per_pass",
    "learning_rate",
    "temperature",
    "eval_every",
    "eval_problems",
    "eval_samples",
    "eval_temperature",
    "eval_top_p",
    "zscore_window",
    "train_problems",
    "entropy_coef",
    "switch",
    "stop_step",
    "skip_zero_std_batches",
    "seed",
)


def run_name(arm: str, lr: float, seed: int) -> str:
    return f"{arm}-lr{lr:g}-seed{seed}"


def identity(settings: DemoSettings) -> dict:
    return {key: getattr(settings, key) for key in IDENTITY}


def finished(folder: Path, settings: DemoSettings) -> bool:
    """True if `folder` holds this run finished; False if absent or unfinished; error if other settings."""
    lines = read_metrics(folder / "metrics.jsonl")
    if not lines or lines[-1]["rl_step"] < settings.steps:
        return False
    saved = json.loads((folder / "config.json").read_text())["demo"]
    wanted = identity(settings)
    defaults = identity(DemoSettings())  # a setting added after the run was made held its default then
    differ = {k: (saved.get(k, defaults[k]), v) for k, v in wanted.items() if saved.get(k, defaults[k]) != v}
    if differ:
        raise SystemExit(
            f"error: {folder} holds a finished run with other settings {differ} (saved, wanted); "
            "use another --out or remove the folder"
        )
    return True


def run_one(settings: DemoSettings, arm: str, folder: Path, policy: str) -> float:
    if folder.exists():  # an interrupted run: start it again (the demo runs save no checkpoints)
        shutil.rmtree(folder)
    started = time.perf_counter()
    run_arm(settings, arm, policy, folder)
    seconds = time.perf_counter() - started
    info = {
        "seconds": round(seconds, 1),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}",
    }
    (folder / "run.json").write_text(json.dumps(info, indent=2) + "\n")
    return seconds


def accuracies(folder: Path) -> list[tuple[int, float]]:
    return [(r["rl_step"], r["eval/accuracy"]) for r in load_run(folder).records if "eval/accuracy" in r]


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
    return "\n\n".join(parts) + "\n"


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
    parser.add_argument("--stop-step", type=int, default=None, help="with --switch step: first plain-GRPO RL step")
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
    parser.add_argument("--max-new-runs", type=int, default=None, help="stop after this many new runs")
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
    except ValueError as err:  # a bad option: name it, before any run folder is touched
        raise SystemExit(f"error: {err}") from None
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
                seconds = run_one(settings, arm, folder, policy)
                print(f"  {folder.name}: {seconds / 60:.1f} min", flush=True)
                new_runs, done = new_runs + 1, True
            elif done:
                print(f"reusing {folder} (finished)", flush=True)
            plan[lr][seed][arm] = done
    pending = [run_name(a, lr, s) for lr in plan for s in plan[lr] for a in plan[lr][s] if not plan[lr][s][a]]
    summary = summarize(out, lrs, plan, base)
    if pending:
        summary += f"\nNot run yet: {', '.join(pending)}.\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(summary)
    print(summary)


if __name__ == "__main__":
    main()
