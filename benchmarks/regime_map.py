"""When does SFPO pay? A regime map on the embedded tiny policy (arithmetic), each arm at its own best rate.

Cells (P prompts x 8 rollouts per RL step, M mini-batches per pass, one optimizer step each):

- axis 1, prompts per optimizer step: P = 16 at M = 1, 2, 4, 8 (16, 8, 4, 2 prompts per optimizer step);
- axis 2, rollouts per RL step: P = 8, 16, 32 at M = 1 (64, 128, 256 rollouts);

the cell p16-m1 lies on both and is run once. Arms are names from `sfpo.app.demo.ARMS` (`--arms`, default
grpo,sfpo,grpo-k4; grpo is the baseline every other arm is measured against). Each arm uses, in each cell, its own
rate from --lrs, picked on --sweep-seed by the rule in `pick_rate` (written before anything ran); the picks go to
`picks.json` once and every later invocation reuses them. Then --seeds main runs per arm and cell at the picked
rate. 30 RL steps, entropy bonus 0, `skip_zero_std_batches` on; everything else is the demo's (`DemoSettings`).
The protocol, the metric and the rule that turns the map into one README sentence: docs/regime-map.md.

    python benchmarks/regime_map.py --jobs 2 --out benchmarks/results/regime-map

Order of work: every sweep run of the chosen cells and arms, then the picks, then the main runs cell by cell;
each cell's `summary.md` and `cell.json` are written as soon as it is complete, so that cells can be committed
one by one. The benchmark is resumable: a finished run with the same settings is reused, an unfinished one is run
again from the start, a finished one with other settings is an error (use another --out). `--max-new-runs N` and
`--cells` spread the work over sessions. With --jobs 2 two runs share the machine (one thread each); each run's
time is in its `run.json`.

Layout of --out: `sweep/<cell>/<arm>-lr<rate>/`, `picks.json`, `<cell>/<arm>/seed<k>/`, `<cell>/summary.md`,
`<cell>/cell.json`, and at the top `summary.md` with `ratio-vs-prompts-per-optimizer-step.png` and
`ratio-vs-rollouts-per-rl-step.png`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from bench_runs import finished, run_parallel, write_run_info, write_text_atomic

from sfpo.app.demo import ARMS, DemoSettings, build_policy, run_arm
from sfpo.app.report import compare_runs, load_run

# name: (prompts per RL step, mini-batches per pass M); the order is the order of work
CELLS = {"p16-m1": (16, 1), "p16-m2": (16, 2), "p16-m4": (16, 4), "p16-m8": (16, 8), "p8-m1": (8, 1),
         "p32-m1": (32, 1)}
GENERATIONS = 8  # rollouts per prompt
AXIS_1 = ("p16-m8", "p16-m4", "p16-m2", "p16-m1")  # 2, 4, 8, 16 prompts per optimizer step
AXIS_2 = ("p8-m1", "p16-m1", "p32-m1")  # 64, 128, 256 rollouts per RL step
LRS = (2.5e-5, 5e-5, 1e-4, 2e-4)
SEEDS = (0, 1, 2, 3, 4)
SWEEP_SEED = 100
STEPS = 30
BASELINE = "grpo"
DEFAULT_ARMS = ("grpo", "sfpo", "grpo-k4")
CLIP = "clip_ratio/region_mean"  # TRL's clipped-token fraction, the RL step's mean over its optimizer steps

RATE_RULE = ("the rate with the highest mean held-out accuracy over the sweep run's evaluations (RL step 0 "
             "included); ties: the lower rate")
# An arm pays in a cell (against GRPO) when all three hold; docs/regime-map.md, *The rule*.
PAY_RATIO = 1.5  # median over matched seeds of GRPO's rollouts to its best ÷ the arm's rollouts to reach it
PAY_MATCHED_SHARE = 0.8  # seeds where the arm reached GRPO's best: at least 4 of 5
FINAL_MARGIN = 0.03  # median final accuracy (arm − GRPO) at least −3 points


def prompts_per_optimizer_step(cell: str) -> int:
    prompts, minibatches = CELLS[cell]
    return prompts // minibatches


def rollouts_per_rl_step(cell: str) -> int:
    return CELLS[cell][0] * GENERATIONS


def describe(cell: str) -> str:
    prompts, minibatches = CELLS[cell]
    return (f"{prompts} prompts x {GENERATIONS} rollouts per RL step, {minibatches} mini-batch"
            f"{'es' if minibatches > 1 else ''} per pass ({prompts_per_optimizer_step(cell)} prompts per "
            "optimizer step)")


@dataclass(frozen=True)
class Plan:
    """The runs of a map: which cells and arms, on which seeds, rates and RL steps, under `out`."""

    out: Path
    arms: tuple[str, ...] = DEFAULT_ARMS
    cells: tuple[str, ...] = tuple(CELLS)
    seeds: tuple[int, ...] = SEEDS
    sweep_seed: int = SWEEP_SEED
    lrs: tuple[float, ...] = LRS
    steps: int = STEPS

    @property
    def candidates(self) -> tuple[str, ...]:
        return tuple(arm for arm in self.arms if arm != BASELINE)

    def settings(self, cell: str, arm: str, lr: float, seed: int) -> DemoSettings:
        prompts, minibatches = CELLS[cell]
        return DemoSettings(task="arithmetic", policy="tiny", steps=self.steps, seed=seed, arms=(arm,),
                            prompts_per_step=prompts, num_generations=GENERATIONS,
                            optimizer_steps_per_pass=minibatches, learning_rate=lr, entropy_coef=0.0,
                            skip_zero_std_batches=True)

    def sweep_folder(self, cell: str, arm: str, lr: float) -> Path:
        return self.out / "sweep" / cell / f"{arm}-lr{lr:g}"

    def main_folder(self, cell: str, arm: str, seed: int) -> Path:
        return self.out / cell / arm / f"seed{seed}"

    def sweep_runs(self, cell: str, arms: tuple[str, ...] | None = None) -> list[tuple[DemoSettings, str, Path]]:
        """(settings, arm, folder) of every sweep run of `cell`: each arm at each rate on the sweep seed."""
        return [(self.settings(cell, arm, lr, self.sweep_seed), arm, self.sweep_folder(cell, arm, lr))
                for arm in arms or self.arms for lr in self.lrs]

    def main_runs(self, cell: str, picks: dict) -> list[tuple[DemoSettings, str, Path]]:
        """(settings, arm, folder) of every main run of `cell`: each arm at its picked rate on each seed."""
        return [(self.settings(cell, arm, picks[cell][arm]["lr"], seed), arm, self.main_folder(cell, arm, seed))
                for arm in self.arms for seed in self.seeds]

    def has_picks(self, cell: str, picks: dict) -> bool:
        return all(arm in picks.get(cell, {}) for arm in self.arms)

    def complete(self, cell: str, picks: dict) -> bool:
        """Every main run of `cell` finished (with these settings; other settings are an error)."""
        return self.has_picks(cell, picks) and all(finished(f, s, a) for s, a, f in self.main_runs(cell, picks))


# --- picking each arm's rate ----------------------------------------------------------------------------


def sweep_score(folder: Path) -> float:
    """What the rate rule ranks: the mean held-out accuracy over the run's evaluations (RL step 0 included)."""
    return statistics.fmean(r["eval/accuracy"] for r in load_run(folder).records if "eval/accuracy" in r)


def pick_rate(scores: dict[float, float]) -> float:
    """RATE_RULE: the highest score; between equal scores, the lower rate."""
    return min(scores, key=lambda lr: (-scores[lr], lr))


def picks_file(plan: Plan) -> Path:
    return plan.out / "picks.json"


def load_picks(plan: Plan) -> dict:
    """{cell: {arm: {"lr": rate, "scores": {rate: score}}}} from picks.json; an error if it was made for another
    sweep (seed, rates or RL steps)."""
    path = picks_file(plan)
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    for key, wanted in (("sweep_seed", plan.sweep_seed), ("lrs", list(plan.lrs)), ("steps", plan.steps)):
        if data.get(key) != wanted:
            raise SystemExit(f"error: {path} holds picks made with {key} {data.get(key)}, not {wanted}; the picks "
                             "are final: use the settings they were made with, or another --out")
    return data["picks"]


def update_picks(plan: Plan, cells: tuple[str, ...]) -> dict:
    """The picks, with those of every (cell, arm) whose sweep has just finished added to picks.json. A pick once
    written is final: if its sweep runs now rank the rates otherwise, that is an error."""
    picks = load_picks(plan)
    added = False
    for cell in cells:
        for arm in plan.arms:
            runs = plan.sweep_runs(cell, (arm,))
            if not all(finished(folder, s, arm) for s, arm, folder in runs):
                continue
            scores = {s.learning_rate: sweep_score(folder) for s, _, folder in runs}
            lr = pick_rate(scores)
            saved = picks.get(cell, {}).get(arm)
            if saved is None:
                picks.setdefault(cell, {})[arm] = {"lr": lr, "scores": {f"{k:g}": v for k, v in scores.items()}}
                added = True
            elif saved["lr"] != lr:
                raise SystemExit(
                    f"error: {picks_file(plan)} picked rate {saved['lr']:g} for {arm} in {cell}, but its sweep runs "
                    f"now give {lr:g} (scores {json.dumps({f'{k:g}': v for k, v in scores.items()})}): a sweep run "
                    "changed after the pick, which is final; restore the sweep runs or use another --out")
    if added:
        data = {"rule": RATE_RULE, "sweep_seed": plan.sweep_seed, "lrs": list(plan.lrs), "steps": plan.steps,
                "picks": picks}
        write_text_atomic(picks_file(plan), json.dumps(data, indent=2) + "\n")
    return picks


# --- one run --------------------------------------------------------------------------------------------


def run_one(settings: DemoSettings, arm: str, folder: Path, policy: str, jobs: int) -> float:
    """Runs one arm from the start into `folder` (only ever called on an absent or unfinished run folder) and
    writes its time to run.json; returns the seconds."""
    import torch

    if folder.exists():
        shutil.rmtree(folder)
    started, clock = time.time(), time.perf_counter()
    run_arm(settings, arm, policy, folder)
    seconds = time.perf_counter() - clock
    write_run_info(folder, seconds, started=started, jobs=jobs, threads=torch.get_num_threads())
    return seconds


# --- what a cell shows ----------------------------------------------------------------------------------


def final_accuracy(run) -> float:
    return [r["eval/accuracy"] for r in run.records if "eval/accuracy" in r][-1]


def active_clipped(arm_run, grpo_run) -> tuple[float | None, float | None, int]:
    """(the arm's median clipped-token fraction over the RL steps where its algorithm was on — records with
    sfpo/active == 1, GXPO's gxpo/active —, GRPO's median over the same RL steps where it trained, how many)."""
    active = {r["rl_step"]: r[CLIP] for r in arm_run.records
              if r.get("sfpo/active", r.get("gxpo/active")) == 1 and CLIP in r}
    same = [r[CLIP] for r in grpo_run.records
            if r["rl_step"] in active and CLIP in r and not r.get("sfpo/skipped_zero_std_batch")]
    return _median(list(active.values())), _median(same), len(active)


def _median(values: list) -> float | None:
    """The median of the known values; None if there is none."""
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def pays(numbers: dict) -> bool:
    """The rule of docs/regime-map.md: median ratio ≥ PAY_RATIO, the arm reached GRPO's best in at least
    PAY_MATCHED_SHARE of the seeds, and its median final accuracy is at most FINAL_MARGIN below GRPO's."""
    ratio = numbers["median_ratio"]
    enough = numbers["matched"] >= math.ceil(PAY_MATCHED_SHARE * numbers["seeds"] - 1e-9)
    # rounded: accuracies are counts over the evaluation set, and 0.5 - 0.53 < -0.03 in floats
    return enough and ratio is not None and ratio >= PAY_RATIO and round(numbers["median_final_diff"], 9) >= -FINAL_MARGIN


def cell_numbers(plan: Plan, cell: str, picks: dict) -> dict:
    """Per seed and per arm against GRPO (paired by seed, `sfpo compare`'s code, tolerance 0)."""
    runs = {arm: [load_run(plan.main_folder(cell, arm, s)) for s in plan.seeds] for arm in plan.arms}
    numbers = {"cell": cell, "prompts_per_rl_step": CELLS[cell][0], "minibatches": CELLS[cell][1],
               "prompts_per_optimizer_step": prompts_per_optimizer_step(cell),
               "rollouts_per_rl_step": rollouts_per_rl_step(cell),
               "rates": {arm: picks[cell][arm]["lr"] for arm in plan.arms}, "arms": {}}
    base = runs[BASELINE]
    for arm in plan.candidates:
        result = compare_runs(base, runs[arm])
        seeds = []
        for seed, b, c, pair in zip(plan.seeds, base, runs[arm], result["pairs"]):
            clipped, grpo_clipped, active = active_clipped(c, b)
            seeds.append({"seed": seed, "grpo_best": pair["baseline_best"],
                          "grpo_rollouts_to_best": pair["baseline_rollouts_to_best"],
                          "rollouts_to_match": pair["candidate_rollouts_to_match"], "ratio": pair["rollout_ratio"],
                          "matched": pair["candidate_matched"], "final_diff": final_accuracy(c) - final_accuracy(b),
                          "clipped_active": clipped, "grpo_clipped_same_steps": grpo_clipped,
                          "active_rl_steps": active})
        arm_numbers = {
            "median_ratio": result["rollout_ratio"],  # over the matched seeds, as `sfpo compare` reports it
            "ratio_range": result["rollout_ratio_range"],
            "matched": result["n_matched"],
            "seeds": result["n_pairs"],
            "median_final_diff": statistics.median(s["final_diff"] for s in seeds),
            "clipped_active": _median([s["clipped_active"] for s in seeds]),
            "grpo_clipped_same_steps": _median([s["grpo_clipped_same_steps"] for s in seeds]),
            "per_seed": seeds,
        }
        arm_numbers["pays"] = pays(arm_numbers)
        numbers["arms"][arm] = arm_numbers
    numbers["time"] = part_time([f for _, _, f in plan.main_runs(cell, picks)])
    return numbers


# --- formatting -----------------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def _ratio(x: float | None) -> str:
    return "never" if x is None else f"{x:.2f}x"


def _seed_ratio(s: dict) -> str:
    if s["matched"] and s["ratio"] is None:
        return "n/a (matched at 0 rollouts)"
    return _ratio(s["ratio"])


def _range(r: list | None) -> str:
    return "-" if not r else f"{r[0]:.2f}-{r[1]:.2f}x"


def _points(x: float) -> str:
    return f"{x * 100:+.1f}"


def _rollouts(x: float | None) -> str:
    return "never" if x is None else f"{x:,.0f}"


def part_time(folders: list[Path]) -> dict:
    """Runs with a run.json, the sum of their seconds, and the elapsed time from the first start to the last
    finish (it includes any pause between invocations)."""
    infos = [json.loads((f / "run.json").read_text()) for f in folders if (f / "run.json").is_file()]
    stamp = lambda text: datetime.strptime(text[:19], "%Y-%m-%d %H:%M:%S")  # noqa: E731 (one machine's clock)
    starts = [stamp(i["started"]) for i in infos if "started" in i]
    ends = [stamp(i["finished"]) for i in infos if "finished" in i]
    span = (max(ends) - min(starts)).total_seconds() if starts and ends else None
    return {"runs": len(folders), "timed": len(infos), "seconds": sum(i["seconds"] for i in infos),
            "elapsed": span, "machines": sorted({i.get("machine", "?") for i in infos})}


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:,.0f} min"


def rate(lr: float) -> str:
    """2.5e-5, 1e-4: as the protocol writes rates (folder names keep Python's 2.5e-05, 0.0001)."""
    mantissa, exponent = f"{lr:e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


def cell_markdown(numbers: dict, plan: Plan) -> str:
    cell = numbers["cell"]
    rates = ", ".join(f"{arm} {rate(lr)}" for arm, lr in numbers["rates"].items())
    rows = ["| arm | seed | GRPO best | GRPO rollouts to its best | arm's rollouts to reach it | ratio GRPO ÷ arm | "
            "final accuracy arm − GRPO (points) | clipped while SFPO on: arm / GRPO same steps | active RL steps |",
            "|---|---|---|---|---|---|---|---|---|"]
    for arm, a in numbers["arms"].items():
        for s in a["per_seed"]:
            rows.append(f"| {arm} | {s['seed']} | {_pct(s['grpo_best'])} | {_rollouts(s['grpo_rollouts_to_best'])} | "
                        f"{_rollouts(s['rollouts_to_match'])} | {_seed_ratio(s)} | "
                        f"{_points(s['final_diff'])} | {_pct(s['clipped_active'])} / "
                        f"{_pct(s['grpo_clipped_same_steps'])} | {s['active_rl_steps']} |")
        rows.append(f"| **{arm}** | median | | | | {_ratio(a['median_ratio'])} ({a['matched']}/{a['seeds']} matched, "
                    f"range {_range(a['ratio_range'])}) | {_points(a['median_final_diff'])} | "
                    f"{_pct(a['clipped_active'])} / {_pct(a['grpo_clipped_same_steps'])} | "
                    f"{'pays' if a['pays'] else 'does not pay'} |")
    t = numbers["time"]
    return (f"# Regime map, cell {cell}: {describe(cell)}\n\n{plan.steps} RL steps, seeds "
            f"{', '.join(map(str, plan.seeds))}; rates (picked on seed {plan.sweep_seed}): {rates}. Ratio: GRPO's "
            "rollouts to its best held-out accuracy ÷ the arm's rollouts to first reach it (tolerance 0); medians "
            "of ratios are over the matched seeds.\n\n" + "\n".join(rows)
            + f"\n\nMain runs: {t['timed']} timed, {_minutes(t['seconds'])} of run time in all, "
            f"{_minutes(t['elapsed'])} from the first start to the last finish.\n")


def threshold(paid: dict[int, bool]) -> int | None:
    """The smallest x from which every cell with x' ≥ x pays; None if the largest does not."""
    found = None
    for x in sorted(paid, reverse=True):
        if not paid[x]:
            break
        found = x
    return found


def axis_statement(maps: dict[str, dict], arm: str, axis: tuple[str, ...], x_of, unit: str) -> str | None:
    """The arm's threshold on one axis, in words; None while a cell of the axis is missing."""
    if not all(c in maps and arm in maps[c]["arms"] for c in axis):
        return None
    paid = {x_of(c): maps[c]["arms"][arm]["pays"] for c in axis}
    lowest = threshold(paid)
    exceptions = [x for x, p in paid.items() if p and (lowest is None or x < lowest)]
    also = f" (it also paid at {', '.join(map(str, sorted(exceptions)))} {unit}, below that)" if exceptions else ""
    if lowest is None:
        top = axis[-1]
        a = maps[top]["arms"][arm]
        return (f"{arm}: no threshold: it did not pay at {x_of(top)} {unit}, the largest tested (median ratio "
                f"{_ratio(a['median_ratio'])}, {a['matched']}/{a['seeds']} seeds matched){also}.")
    if lowest == min(paid):
        return f"{arm}: paid at every size tested, {min(paid)} to {max(paid)} {unit}."
    return f"{arm}: paid from {lowest} {unit} up, not below{also}."


def _sizes(xs: list[int]) -> str:
    """[2, 8] → "2 and 8"; [2, 4, 8] → "2, 4 and 8"."""
    words = [str(x) for x in xs]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def readme_sentence(maps: dict[str, dict]) -> str | None:
    """The README sentence the protocol decided on, from axis 1 (None until its four cells are complete)."""
    if not all(c in maps and "sfpo" in maps[c]["arms"] for c in AXIS_1):
        return None
    paid = {prompts_per_optimizer_step(c): maps[c]["arms"]["sfpo"]["pays"] for c in AXIS_1}
    lowest = threshold(paid)
    seeds = maps[AXIS_1[0]]["arms"]["sfpo"]["seeds"]
    how = (f"reached GRPO's best held-out accuracy with at least {PAY_RATIO:g}x fewer rollouts (median of {seeds} "
           f"seeds, at least {math.ceil(PAY_MATCHED_SHARE * seeds - 1e-9)} matched, final accuracy no more than "
           f"{FINAL_MARGIN * 100:g} points lower)")
    # Below the threshold: the sizes where SFPO paid all the same (exceptions) and those where it did not.
    below = sorted(x for x in paid if lowest is None or x < lowest)
    exceptions = [x for x in below if paid[x]]
    others = [x for x in below if not paid[x]]
    if lowest is None:
        text = (f"On the tiny policy the map shows no such rule: SFPO did not save rollouts even at {max(paid)} "
                "prompts per optimizer step, the largest tested"
                + (f" (it did at {_sizes(exceptions)} prompts per optimizer step)." if exceptions else "."))
    elif lowest == min(paid):
        text = (f"On the tiny policy SFPO {how} at every optimizer-step size tested, {min(paid)} to {max(paid)} "
                "prompts per optimizer step.")
    elif exceptions:  # "and not with fewer" would be false: name both
        text = (f"On the tiny policy SFPO {how} when each optimizer step saw at least {lowest} prompts "
                f"({lowest * GENERATIONS} rollouts); below that it did at {_sizes(exceptions)} prompts and not at "
                f"{_sizes(others)}, so the size of an optimizer step alone does not decide it.")
    else:
        text = (f"On the tiny policy SFPO {how} when each optimizer step saw at least {lowest} prompts "
                f"({lowest * GENERATIONS} rollouts), and not with fewer.")
    control = [c for c in AXIS_1 if "grpo-k4" in maps[c]["arms"] and maps[c]["arms"]["grpo-k4"]["pays"]]
    if all("grpo-k4" in maps[c]["arms"] for c in AXIS_1):
        text += (" The equal-compute control (K + 1 plain passes) paid by the same rule at "
                 + (", ".join(str(prompts_per_optimizer_step(c)) for c in sorted(control, key=prompts_per_optimizer_step))
                    + " prompts per optimizer step." if control else "none of these sizes."))
    return text


def plot_axis(maps: dict[str, dict], arms: tuple[str, ...], axis: tuple[str, ...], x_of, xlabel: str,
              path: Path) -> Path | None:
    """Median ratio against the axis, one line per arm, the seeds' range as a band; None if nothing to draw."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    done = [c for c in axis if c in maps]
    if not done:
        return None
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    FigureCanvasAgg(fig)  # Agg, without pyplot's global state
    ax = fig.add_subplot()
    for i, arm in enumerate(arms):
        cells = sorted((c for c in done if arm in maps[c]["arms"]), key=x_of)
        dodge = 2 ** (0.04 * (i - (len(arms) - 1) / 2))  # arms side by side at each x (a log axis)
        points = [(x_of(c) * dodge, maps[c]["arms"][arm]) for c in cells]
        drawn = [(x, a) for x, a in points if a["median_ratio"] is not None]
        color = f"C{i}"
        if drawn:
            xs, ys = [x for x, _ in drawn], [a["median_ratio"] for _, a in drawn]
            lows, highs = [a["ratio_range"][0] for _, a in drawn], [a["ratio_range"][1] for _, a in drawn]
            ax.plot(xs, ys, "o-", color=color, lw=2, label=f"{arm}, median")
            ax.fill_between(xs, lows, highs, color=color, alpha=0.15, lw=0)
            ax.errorbar(xs, ys, yerr=[[y - lo for y, lo in zip(ys, lows)], [hi - y for y, hi in zip(ys, highs)]],
                        fmt="none", ecolor=color, elinewidth=1, capsize=3)
        for x, a in points:
            if a["median_ratio"] is None:  # no seed reached GRPO's best: no ratio, marked at 0
                ax.plot([x], [0.0], "x", color=color, ms=8)
            ax.annotate(f"{a['matched']}/{a['seeds']}", (x, a["median_ratio"] or 0.0), textcoords="offset points",
                        xytext=(5, -10), fontsize="x-small", color=color)
    ax.axhline(1.0, color="gray", ls="--", lw=1, label="GRPO (ratio 1)")
    ax.axhline(PAY_RATIO, color="gray", ls=":", lw=1, label=f"pays: {PAY_RATIO:g}x")
    xs = sorted({x_of(c) for c in done})
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("rollouts to GRPO's best: GRPO ÷ arm")
    ax.set_title("median over the matched seeds (band and bars: their range; label: seeds matched; x: none)",
                 fontsize="small")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=120)
    return path


def map_markdown(plan: Plan, picks: dict, maps: dict[str, dict], plots: list[Path], command: str) -> str:
    demo = plan.settings(plan.cells[0], BASELINE, plan.lrs[0], plan.sweep_seed)
    lines = [
        "# Regime map: when does SFPO pay? (tiny policy, arithmetic)",
        f"Protocol: docs/regime-map.md, written before any run. Summary written "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')} on {platform.node()} ({os.cpu_count()} CPUs) by\n\n    {command}",
        f"Every run: {plan.steps} RL steps of P prompts x {GENERATIONS} rollouts, M mini-batches per pass (one "
        f"optimizer step each), entropy bonus 0, `skip_zero_std_batches` on, the demo's other settings (held-out "
        f"accuracy on {demo.eval_problems} problems x {demo.eval_samples} samples at T = {demo.eval_temperature:g} "
        f"every {demo.eval_every} RL steps, the {demo.switch} switch with a {demo.zscore_window}-step window). "
        f"Seeds {', '.join(map(str, plan.seeds))}. Each arm at its own rate from "
        f"{{{', '.join(rate(lr) for lr in plan.lrs)}}}, picked per cell on seed {plan.sweep_seed}: {RATE_RULE}.",
        "## Rates picked (picks.json)",
        "| cell | " + " | ".join(plan.arms) + " |\n|---|" + "---|" * len(plan.arms),
    ]
    for cell in plan.cells:
        row = [f"{rate(picks[cell][a]['lr'])} (mean {picks[cell][a]['scores'][format(picks[cell][a]['lr'], 'g')]:.1%})"
               if a in picks.get(cell, {}) else "not yet" for a in plan.arms]
        lines[-1] += f"\n| {cell} | " + " | ".join(row) + " |"
    table = ["| cell | prompts / RL step | M | prompts / optimizer step | rollouts / RL step | arm | rate (arm / "
             "GRPO) | median ratio GRPO ÷ arm | seeds' range | matched | median final diff (points) | clipped "
             "while SFPO on: arm / GRPO same steps | pays |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for cell in plan.cells:
        if cell not in maps:
            continue
        m = maps[cell]
        for arm, a in m["arms"].items():
            table.append(
                f"| {cell} | {m['prompts_per_rl_step']} | {m['minibatches']} | {m['prompts_per_optimizer_step']} | "
                f"{m['rollouts_per_rl_step']} | {arm} | {rate(m['rates'][arm])} / {rate(m['rates'][BASELINE])} | "
                f"{_ratio(a['median_ratio'])} | {_range(a['ratio_range'])} | {a['matched']}/{a['seeds']} | "
                f"{_points(a['median_final_diff'])} | {_pct(a['clipped_active'])} / "
                f"{_pct(a['grpo_clipped_same_steps'])} | {'yes' if a['pays'] else 'no'} |")
    lines += ["## The map", "Ratio: per seed, GRPO's rollouts to its best held-out accuracy ÷ the arm's rollouts to "
              "first reach it (tolerance 0); the median and range are over the seeds where the arm reached it "
              "(*matched*). Clipped: TRL's `clip_ratio/region_mean`, each run's median over the RL steps with "
              "`sfpo/active` = 1, GRPO's over the same RL steps; median over seeds. *Pays*: median ratio ≥ "
              f"{PAY_RATIO:g}x, at least {math.ceil(PAY_MATCHED_SHARE * len(plan.seeds) - 1e-9)} of "
              f"{len(plan.seeds)} seeds matched, median final difference ≥ {-FINAL_MARGIN * 100:g} points.",
              "\n".join(table) if len(table) > 2 else "No cell complete yet."]
    statements = []
    for arm in plan.candidates:
        for axis, x_of, unit in ((AXIS_1, prompts_per_optimizer_step, "prompts per optimizer step"),
                                 (AXIS_2, rollouts_per_rl_step, "rollouts per RL step")):
            said = axis_statement(maps, arm, axis, x_of, unit)
            statements.append(f"- {said}" if said else f"- {arm}, {unit}: not all cells of the axis are complete.")
    sentence = readme_sentence(maps)
    lines += ["## What the map says, by the protocol's rule", "\n".join(statements),
              "README sentence (the protocol's template, axis 1): " + (sentence or "not yet: axis 1 incomplete.")]
    times = ["| part | runs | timed | run time (sum) | elapsed, first start to last finish |", "|---|---|---|---|---|"]
    sweep = part_time([f for c in plan.cells for _, _, f in plan.sweep_runs(c)])
    parts = [("rate sweep", sweep)] + [(f"main runs {c}", maps[c]["time"]) for c in plan.cells if c in maps]
    for name, t in parts:
        times.append(f"| {name} | {t['runs']} | {t['timed']} | {_minutes(t['seconds'])} | {_minutes(t['elapsed'])} |")
    machines = sorted({m for _, t in parts for m in t["machines"]})
    lines += ["## How long it took", "\n".join(times),
              f"Machines (run.json): {', '.join(machines) or 'n/a'}. With --jobs 2 two runs share the machine, one "
              "thread each; elapsed spans include any pause between invocations."]
    if plots:
        lines += ["## Plots", "\n\n".join(f"![{p.name}]({p.name})" for p in plots)]
    missing = [c for c in plan.cells if c not in maps]
    if missing:
        lines.append("Not complete yet: " + ", ".join(missing) + ".")
    return "\n\n".join(lines) + "\n"


def write_cell(plan: Plan, cell: str, picks: dict) -> dict:
    numbers = cell_numbers(plan, cell, picks)
    write_text_atomic(plan.out / cell / "cell.json", json.dumps(numbers, indent=2) + "\n")
    write_text_atomic(plan.out / cell / "summary.md", cell_markdown(numbers, plan))
    return numbers


def write_map(plan: Plan, picks: dict, command: str) -> Path:
    plan = replace(plan, cells=tuple(CELLS))  # the summary covers every complete cell, whatever --cells chose
    maps = {c: write_cell(plan, c, picks) for c in plan.cells if plan.complete(c, picks)}
    plots = [p for p in (
        plot_axis(maps, plan.candidates, AXIS_1, prompts_per_optimizer_step, "prompts per optimizer step (16 "
                  "prompts per RL step, M = 8, 4, 2, 1)", plan.out / "ratio-vs-prompts-per-optimizer-step.png"),
        plot_axis(maps, plan.candidates, AXIS_2, rollouts_per_rl_step, "rollouts per RL step (8, 16, 32 prompts "
                  "x 8, M = 1)", plan.out / "ratio-vs-rollouts-per-rl-step.png"),
    ) if p is not None]
    path = plan.out / "summary.md"
    write_text_atomic(path, map_markdown(plan, picks, maps, plots, command))
    return path


# --- the command ----------------------------------------------------------------------------------------


def _names(kind: str, allowed) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(n.strip() for n in text.split(",") if n.strip())
        for name in names:
            if name not in allowed:
                raise argparse.ArgumentTypeError(f"{name!r} is not {kind}; allowed: {', '.join(allowed)}")
        if len(set(names)) != len(names) or not names:
            raise argparse.ArgumentTypeError(f"{text!r}: name each {kind} once, at least one")
        return names

    return parse


def parse(argv: list[str] | None = None) -> tuple[Plan, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/regime-map")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, one thread each (default 1)")
    parser.add_argument("--arms", type=_names("an arm", ARMS), default=DEFAULT_ARMS,
                        help=f"comma-separated arms of sfpo.app.demo.ARMS, grpo among them (default "
                        f"{','.join(DEFAULT_ARMS)})")
    parser.add_argument("--cells", type=_names("a cell", CELLS), default=tuple(CELLS),
                        help=f"comma-separated cells to work on (default all: {','.join(CELLS)})")
    parser.add_argument("--max-new-runs", type=int, default=None, metavar="N", help="start at most N runs")
    parser.add_argument("--steps", type=int, default=STEPS, help="RL steps per run (the protocol: 30)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="main seeds (the protocol: 0-4)")
    parser.add_argument("--sweep-seed", type=int, default=SWEEP_SEED)
    parser.add_argument("--lrs", type=float, nargs="+", default=list(LRS), help="the rate grid of the sweep")
    opts = parser.parse_args(argv)
    problems = []
    if BASELINE not in opts.arms:
        problems.append(f"--arms {','.join(opts.arms)}: must include {BASELINE}, the baseline of every ratio")
    if opts.jobs < 1:
        problems.append(f"--jobs {opts.jobs}: must be an int ≥ 1")
    if opts.max_new_runs is not None and opts.max_new_runs < 0:
        problems.append(f"--max-new-runs {opts.max_new_runs}: must be an int ≥ 0")
    if opts.steps < 1:
        problems.append(f"--steps {opts.steps}: must be an int ≥ 1")
    if opts.sweep_seed in opts.seeds:
        problems.append(f"--sweep-seed {opts.sweep_seed} is also a main seed (--seeds): the picks must come "
                        "from a seed the map does not report")
    if len(set(opts.seeds)) != len(opts.seeds):
        problems.append(f"--seeds {opts.seeds}: names a seed twice")
    if len(set(opts.lrs)) != len(opts.lrs) or not all(math.isfinite(lr) and lr > 0 for lr in opts.lrs):
        problems.append(f"--lrs {opts.lrs}: must be distinct finite numbers > 0")
    if problems:
        parser.error("; ".join(problems))
    arms = (BASELINE, *(a for a in opts.arms if a != BASELINE))
    cells = tuple(c for c in CELLS if c in opts.cells)  # the order of work
    plan = Plan(Path(opts.out), arms, cells, tuple(opts.seeds), opts.sweep_seed, tuple(opts.lrs), opts.steps)
    return plan, opts


def main(argv: list[str] | None = None) -> Path:
    plan, opts = parse(argv)
    command = shlex.join(["python", "benchmarks/regime_map.py", *(sys.argv[1:] if argv is None else argv)])
    started = time.perf_counter()
    budget = math.inf if opts.max_new_runs is None else opts.max_new_runs
    # Every finished run folder is checked against its settings before anything runs (an error if they differ).
    picks = update_picks(plan, plan.cells)
    for s, arm, folder in [r for c in plan.cells for r in plan.sweep_runs(c)] + [
            r for c in plan.cells if plan.has_picks(c, picks) for r in plan.main_runs(c, picks)]:
        finished(folder, s, arm)
    policy = None

    def start(runs: list[tuple[DemoSettings, str, Path]]) -> list[tuple]:
        nonlocal budget, policy
        pending = [r for r in runs if not finished(r[2], r[0], r[1])]
        chosen = pending[: int(min(budget, len(pending)))]
        budget -= len(chosen)
        if chosen and policy is None:
            policy = build_policy(DemoSettings())  # the shipped tiny arithmetic policy: every run starts there
        return [(s, arm, folder, policy, opts.jobs) for s, arm, folder in chosen]

    sweep = start([r for cell in plan.cells for r in plan.sweep_runs(cell)])
    print(f"rate sweep: {len(sweep)} runs to start", flush=True)
    for n, (job, seconds) in enumerate(run_parallel(run_one, sweep, opts.jobs), start=1):
        print(f"  [{n}/{len(sweep)}] {job[2]}: {seconds:.0f} s", flush=True)
    picks = update_picks(plan, plan.cells)

    ready = [c for c in plan.cells if plan.has_picks(c, picks)]
    main_runs = start([r for cell in ready for r in plan.main_runs(cell, picks)])
    print(f"main runs: {len(main_runs)} to start in {', '.join(ready) or 'no cell (sweep incomplete)'}", flush=True)
    cell_of = {folder: cell for cell in ready for _, _, folder in plan.main_runs(cell, picks)}
    for n, (job, seconds) in enumerate(run_parallel(run_one, main_runs, opts.jobs), start=1):
        print(f"  [{n}/{len(main_runs)}] {job[2]}: {seconds:.0f} s", flush=True)
        cell = cell_of[job[2]]
        if plan.complete(cell, picks):  # the cell's summary, so that it can be committed now
            write_cell(plan, cell, picks)
            print(f"cell {cell} complete: {plan.out / cell / 'summary.md'}", flush=True)
    path = write_map(plan, picks, command)
    print(f"{path} written; this invocation took {time.perf_counter() - started:.0f} s", flush=True)
    return path


if __name__ == "__main__":
    main()
