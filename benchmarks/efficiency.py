"""Rollouts (and wall-clock) SFPO needs to reach GRPO's best held-out accuracy, on the embedded task.

Three comparisons, each over the same seeds and the same rollout budget, measured with `sfpo compare`'s code:

1. same learning rate (the paper's protocol): GRPO vs SFPO (K=3, α=0.8) at GRPO's best learning rate;
2. each arm at its own best learning rate, both chosen from the same sweep on a separate seed;
3. the equal-compute control: GRPO with K+1 plain passes per batch (α=1, `grpo-k4`) at the same learning rate,
   so the part of any gain that is the reposition itself can be told apart from "more passes per batch";
4. GXPO (K=5, α=0.5, `sfpo demo`'s `gxpo` arm) at its own best rate from the same sweep, against GRPO and against
   SFPO at its own best rate.

    python benchmarks/efficiency.py --seeds 0 1 2 3 4 --steps 30 --lrs 5e-5 1e-4 2e-4 --jobs 2 --out runs/bench-efficiency

The opt-in variants (`--variants sfpo-restore sfpo-kl sfpo-patient`, see `sfpo.app.demo.VARIANT_ARMS`) run next to
the reference arms at every learning rate of --lrs, on the same seeds, and each is compared with GRPO at the
same rate (and with the reference SFPO arm at that rate):

    python benchmarks/efficiency.py --variants sfpo-restore sfpo-kl sfpo-patient --out runs/bench-efficiency

Every run folder is reused once finished, so an interrupted benchmark picks up where it stopped; runs that are
shared (GRPO and SFPO at a rate) are run once. `--skip-reference` runs only the variants' part.

With --jobs 2 two runs share the machine at a time (one thread each): wall-clock columns then measure a loaded
machine, the same for every arm.

Prints the tables and writes one report folder per comparison (report.md + plots) under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from bench_runs import run_parallel

from sfpo.app.demo import VARIANT_ARMS, DemoSettings, build_policy, run_arm
from sfpo.app.report import compare_runs, format_table, load_run, plot_runs, write_report


def run(settings: DemoSettings, arm: str, lr: float, seed: int, folder: Path, policy: str) -> Path:
    """One arm, reused if a finished run is already in `folder` (the benchmark can be resumed)."""
    lines = folder / "metrics.jsonl"
    if lines.exists() and any(json.loads(x)["rl_step"] == settings.steps for x in lines.read_text().splitlines()
                              if x.endswith("}")):
        if _same_arm(folder, arm, lr, seed):
            return folder
        print(f"  {folder}: finished with other settings for {arm} than now; running it again", flush=True)
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    s = DemoSettings(**{**vars(settings), "learning_rate": lr, "seed": seed, "arms": (arm,)})
    start = time.perf_counter()
    run_arm(s, arm, policy, folder)
    print(f"  {arm:8s} lr={lr:g} seed={seed}: {time.perf_counter() - start:.0f} s", flush=True)
    return folder


def _same_arm(folder: Path, arm: str, lr: float, seed: int) -> bool:
    """Whether a finished run was made with the arm's current fields (e.g. a variant's δ changed since)."""
    from sfpo.app.demo import arm_fields

    try:
        config = json.loads((folder / "config.json").read_text())
        trainer = config["trainer"]
    except (OSError, ValueError, KeyError):
        return False
    algorithm, fields = arm_fields(arm)
    wanted = {**fields, "learning_rate": lr, "seed": seed}
    return config.get("algorithm", "sfpo") == algorithm and all(trainer.get(k) == v for k, v in wanted.items())


def run_all(jobs: list[tuple], workers: int) -> list[Path]:
    """Runs (settings, arm, lr, seed, folder, policy) jobs, `workers` at a time, each in its own process."""
    return [folder for _, folder in run_parallel(run, jobs, workers)]


def best_accuracy(folder: Path) -> float:
    return max(r["eval/accuracy"] for r in load_run(folder).records if "eval/accuracy" in r)


def final_accuracy(folder: Path) -> float:
    return [r["eval/accuracy"] for r in load_run(folder).records if "eval/accuracy" in r][-1]


def compare(name: str, base: list[Path], cand: list[Path], out: Path) -> dict:
    baselines, candidates = [load_run(p) for p in base], [load_run(p) for p in cand]
    result = compare_runs(baselines, candidates)
    write_report(result, baselines, candidates, out / name)
    print(f"\n### {name}\n")
    print(format_table(result))
    summary = {
        "baseline best (median)": result["baseline_best"],
        "candidate best (median)": result["candidate_best"],
        "baseline final (mean)": statistics.fmean(final_accuracy(p) for p in base),
        "candidate final (mean)": statistics.fmean(final_accuracy(p) for p in cand),
    }
    print("\n" + " | ".join(f"{k}: {v:.3f}" for k, v in summary.items() if v is not None))
    return {**result, **summary}


def run_variants(base: DemoSettings, policy: str, opts, out: Path) -> dict:
    """GRPO, SFPO and each variant at every learning rate on every seed; each candidate against GRPO (and each
    variant against SFPO) at the same rate. Writes variants-summary.json and one report folder per comparison."""
    arms = ["grpo", "sfpo", *opts.variants]
    runs = {(arm, lr): [out / f"{arm}-lr{lr:g}" / f"seed{seed}" for seed in opts.seeds]
            for arm in arms for lr in opts.lrs}
    print(f"variants {opts.variants} at lrs {opts.lrs}, seeds {opts.seeds}: {len(arms) * len(opts.lrs) * len(opts.seeds)}"
          " runs (finished ones are reused)", flush=True)
    run_all([(base, arm, lr, seed, folder, policy) for (arm, lr), folders in runs.items()
             for seed, folder in zip(opts.seeds, folders)], opts.jobs)
    results = {}
    for lr in opts.lrs:
        for arm in arms[1:]:
            name = f"lr{lr:g}: grpo vs {arm}"
            results[name] = compare(f"variants/lr{lr:g}-grpo-vs-{arm}", runs[("grpo", lr)], runs[(arm, lr)], out)
        for arm in opts.variants:
            name = f"lr{lr:g}: sfpo vs {arm}"
            results[name] = compare(f"variants/lr{lr:g}-sfpo-vs-{arm}", runs[("sfpo", lr)], runs[(arm, lr)], out)
    print("\n## Variants (medians over seeds; ratio = baseline rollouts to its best ÷ candidate rollouts to match)\n")
    print("| comparison | baseline best | candidate best | baseline final | candidate final | rollout ratio [range] "
          "| matched |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        ratio = "never" if r["rollout_ratio"] is None else f"{r['rollout_ratio']:.2f}× {r.get('rollout_ratio_range')}"
        print(f"| {name} | {r['baseline_best']:.3f} | {r['candidate_best']:.3f} | {r['baseline final (mean)']:.3f} | "
              f"{r['candidate final (mean)']:.3f} | {ratio} | {r['matched_pairs']} |")
    print(f"\nseeds {opts.seeds}; {opts.steps} RL steps × {base.prompts_per_step * base.num_generations} rollouts per arm")
    summary = {"variants": {a: VARIANT_ARMS[a] for a in opts.variants}, "lrs": opts.lrs, "seeds": opts.seeds,
               "steps": opts.steps, "results": results}
    (out / "variants-summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--sweep-seed", type=int, default=100)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lrs", type=float, nargs="+", default=[5e-5, 1e-4, 2e-4])
    parser.add_argument("--task", default="arithmetic")
    parser.add_argument("--out", default="runs/bench-efficiency")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="runs in parallel")
    parser.add_argument("--variants", nargs="*", default=[], choices=sorted(VARIANT_ARMS),
                        help="opt-in variants to run at every learning rate next to GRPO and SFPO")
    parser.add_argument("--skip-reference", action="store_true", help="run only the variants' comparisons")
    parser.add_argument("--eval-every", type=int, default=None, help="override the demo's evaluation interval")
    opts = parser.parse_args()
    started = time.perf_counter()
    out = Path(opts.out)
    base = DemoSettings(task=opts.task, steps=opts.steps)
    if opts.eval_every is not None:
        base.eval_every = opts.eval_every
    base.validate()
    policy = build_policy(base)
    if opts.variants:
        run_variants(base, policy, opts, out)
    if opts.skip_reference:
        print(f"benchmark took {time.perf_counter() - started:.0f} s")
        return

    print(f"learning-rate sweep on seed {opts.sweep_seed}: {opts.lrs}", flush=True)
    swept = ("grpo", "sfpo", "gxpo")  # each picks its own rate on the sweep seed
    sweep = [(base, arm, lr, opts.sweep_seed, out / "sweep" / f"{arm}-lr{lr:g}", policy)
             for arm in swept for lr in opts.lrs]
    run_all(sweep, opts.jobs)
    best_lr = {}
    for arm in swept:
        scores = {lr: best_accuracy(out / "sweep" / f"{arm}-lr{lr:g}") for lr in opts.lrs}
        best_lr[arm] = max(scores, key=lambda lr: (scores[lr], -lr))
        print(f"  {arm}: best accuracy by lr {json.dumps({f'{k:g}': round(v, 3) for k, v in scores.items()})}"
              f" -> {best_lr[arm]:g}", flush=True)

    shared = best_lr["grpo"]  # the paper's protocol: one learning rate, the baseline's best
    arms = sorted({("grpo", shared), ("sfpo", shared), ("grpo-k4", shared), ("sfpo", best_lr["sfpo"]),
                   ("gxpo", best_lr["gxpo"])})
    runs = {(arm, lr): [out / f"{arm}-lr{lr:g}" / f"seed{seed}" for seed in opts.seeds] for arm, lr in arms}
    run_all([(base, arm, lr, seed, folder, policy) for (arm, lr), folders in runs.items()
             for seed, folder in zip(opts.seeds, folders)], opts.jobs)

    results = {
        "same-lr: grpo vs sfpo": compare("same-lr-grpo-vs-sfpo", runs[("grpo", shared)], runs[("sfpo", shared)], out),
        "own-lr: grpo vs sfpo": compare("own-lr-grpo-vs-sfpo", runs[("grpo", shared)],
                                        runs[("sfpo", best_lr["sfpo"])], out),
        "same-lr: grpo vs grpo-k4 (equal compute)": compare("same-lr-grpo-vs-grpo-k4", runs[("grpo", shared)],
                                                           runs[("grpo-k4", shared)], out),
        "same-lr: grpo-k4 vs sfpo (the reposition itself)": compare("same-lr-grpo-k4-vs-sfpo",
                                                                   runs[("grpo-k4", shared)],
                                                                   runs[("sfpo", shared)], out),
        # GXPO beside SFPO, each at its own best rate
        "own-lr: grpo vs gxpo": compare("own-lr-grpo-vs-gxpo", runs[("grpo", shared)],
                                        runs[("gxpo", best_lr["gxpo"])], out),
        "own-lr: sfpo vs gxpo": compare("own-lr-sfpo-vs-gxpo", runs[("sfpo", best_lr["sfpo"])],
                                        runs[("gxpo", best_lr["gxpo"])], out),
    }
    print("\n## Summary (medians over seeds; ratio = baseline rollouts to its best ÷ candidate rollouts to match)\n")
    print("| comparison | baseline best | candidate best | rollout ratio [range] | wall ratio | matched |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        ratio = "never" if r["rollout_ratio"] is None else f"{r['rollout_ratio']:.2f}× {r.get('rollout_ratio_range')}"
        wall = "-" if r["wall_ratio"] is None else f"{r['wall_ratio']:.2f}×"
        print(f"| {name} | {r['baseline_best']:.3f} | {r['candidate_best']:.3f} | {ratio} | {wall} | "
              f"{r['matched_pairs']} |")
    print(f"\nlearning rates: grpo best {best_lr['grpo']:g}, sfpo best {best_lr['sfpo']:g}, gxpo best "
          f"{best_lr['gxpo']:g}; seeds {opts.seeds}; "
          f"{opts.steps} RL steps × {base.prompts_per_step * base.num_generations} rollouts per arm")
    (out / "summary.json").write_text(json.dumps({"best_lr": best_lr, "results": results}, indent=2, default=str))
    own = {f"{arm} ({best_lr[arm]:g})": [load_run(f) for f in runs[(arm, best_lr[arm])]] for arm in swept}
    plot_runs(own, "eval/accuracy", out / "own-lr-grpo-sfpo-gxpo.png")  # each arm at its own rate, seeds' band
    print(f"benchmark took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
