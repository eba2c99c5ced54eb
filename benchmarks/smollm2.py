"""GRPO vs SFPO on a real pretrained model on this CPU: SmolLM2-135M-Instruct, full fine-tuning, addition.

Each seed is one `sfpo demo --policy smollm2` (same settings for both arms: 4 prompts × 8 rollouts per RL step
at temperature 0.7, lr 1e-5, 100 held-out problems at temperature 0.7); the seeds are then compared with
`sfpo compare`'s code. Needs `make smollm2`.

    python benchmarks/smollm2.py --seeds 0 --steps 12 --out runs/bench-smollm2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sfpo.demo import SMOLLM2, DemoSettings, run_demo
from sfpo.report import compare_runs, format_table, load_run, write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=SMOLLM2["steps"])
    parser.add_argument("--out", default="runs/bench-smollm2")
    opts = parser.parse_args()
    started = time.perf_counter()
    out = Path(opts.out)
    for seed in opts.seeds:
        folder = out / f"seed{seed}"
        if not (folder / "report.md").exists():
            settings = DemoSettings(**{**SMOLLM2, "policy": "smollm2", "seed": seed, "steps": opts.steps})
            run_demo(settings, folder)
    base = [load_run(out / f"seed{s}" / "grpo") for s in opts.seeds]
    cand = [load_run(out / f"seed{s}" / "sfpo") for s in opts.seeds]
    result = compare_runs(base, cand)
    write_report(result, base, cand, out)
    print(format_table(result))
    for arm, runs in (("grpo", base), ("sfpo", cand)):
        for run in runs:
            evals = [(r["rl_step"], round(r["eval/accuracy"], 3)) for r in run.records if "eval/accuracy" in r]
            print(f"{arm} {run.path}: accuracy by RL step {evals}; wall {run.records[-1]['wall_s']:.0f} s")
    print(f"benchmark took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
