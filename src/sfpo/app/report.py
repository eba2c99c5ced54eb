"""Rollouts and wall-clock a candidate run needs to reach a baseline run's best score, as tables and plots.

This is the paper's headline measurement: train GRPO (baseline) and SFPO (candidate), find the best value
of an evaluation metric the baseline ever reached, and ask how many rollouts (completions generated) and
seconds the candidate needed to reach it. ``rollout_ratio = baseline_rollouts_to_best /
candidate_rollouts_to_match``; above 1 means the candidate got there with fewer rollouts.

The runs come from :mod:`sfpo.app.runs` (``metrics.jsonl`` or TRL's ``trainer_state.json``); its public names
are importable from here too.
"""

from __future__ import annotations

import io
import math
import os
import re
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sfpo.algorithm.atomic import atomic_write_bytes
from sfpo.app.runs import (
    BOOKKEEPING,
    TRL_SUMMARY_KEYS,
    ReportError,
    Run,
    completions_per_step,
    demo_arms,
    expand_paths,
    finite_number,
    is_run_folder,
    load_run,
    metric_value,
    read_metrics_jsonl,
)

__all__ = [
    "BOOKKEEPING",
    "DEFAULT_METRIC",
    "DEFINITIONS",
    "PAIR_COLUMNS",
    "STABILITY_DEFINITIONS",
    "TRL_SUMMARY_KEYS",
    "ReportError",
    "Run",
    "arm_label",
    "arm_stability",
    "arm_timing",
    "compare_pair",
    "compare_runs",
    "completions_per_step",
    "demo_arms",
    "expand_paths",
    "format_table",
    "is_run_folder",
    "load_run",
    "pair_rows",
    "plot_metric_vs_step",
    "plot_runs",
    "read_metrics_jsonl",
    "stability",
    "stability_rows",
    "step_band",
    "step_median",
    "summary_rows",
    "timing",
    "write_report",
]

DEFAULT_METRIC = "eval/accuracy"
# Keys of the comparison that hold one number per pair; the top level holds their medians.
NUMERIC_KEYS = (
    "baseline_best",
    "baseline_rollouts_to_best",
    "baseline_wall_to_best",
    "candidate_best",
    "candidate_rollouts_to_match",
    "candidate_wall_to_match",
    "rollout_ratio",
    "wall_ratio",
)
RATIO_KEYS = ("rollout_ratio", "wall_ratio")
# Only defined where the candidate matched, so their medians are over matched pairs.
MATCH_KEYS = ("candidate_rollouts_to_match", "candidate_wall_to_match", *RATIO_KEYS)
DEFINITIONS = (
    "**Definitions.** *Baseline best* is the best value of the metric over the baseline's evaluations "
    "(highest, or lowest with lower-is-better); *rollouts/wall to best* are the cumulative completions "
    "generated and wall-clock seconds at the first evaluation that reached it. *Rollouts/wall to match* "
    "are the candidate's at its first evaluation with a value >= baseline best - tolerance (<= best + "
    "tolerance when lower is better; ties count as a match), or *never*. *Rollout ratio* = baseline "
    "rollouts to best / candidate rollouts to match, *wall ratio* likewise; above 1 means the candidate "
    "needed fewer. With several seeds, runs are paired in the given order and each summary number is the "
    "median over pairs; candidate-to-match numbers and ratios are medians over the pairs where the "
    "candidate matched (*matched pairs*), and the range is [min, max] over those pairs."
)


# --- comparison -----------------------------------------------------------------------------------------


def _better_or_equal(value: float, target: float, higher_is_better: bool) -> bool:
    return value >= target if higher_is_better else value <= target


def _ratio(base: float | None, cand: float | None) -> float | None:
    if base is None or cand is None or cand <= 0:
        return None
    return base / cand


def compare_pair(
    baseline: Run,
    candidate: Run,
    metric: str = DEFAULT_METRIC,
    tolerance: float = 0.0,
    higher_is_better: bool = True,
) -> dict[str, Any]:
    """The comparison of one (baseline, candidate) pair; see :data:`DEFINITIONS`."""
    base = baseline.series(metric)
    cand = candidate.series(metric)
    pick = max if higher_is_better else min
    best = pick(v for _, _, v in base)
    base_at = next(p for p in base if p[2] == best)  # first time the best was reached
    target = best - tolerance if higher_is_better else best + tolerance
    match = next((p for p in cand if _better_or_equal(p[2], target, higher_is_better)), None)
    cand_rollouts = match[0] if match else None
    cand_wall = match[1] if match else None
    return {
        "baseline": baseline.name,
        "candidate": candidate.name,
        "baseline_path": str(baseline.path),
        "candidate_path": str(candidate.path),
        "baseline_best": best,
        "baseline_rollouts_to_best": base_at[0],
        "baseline_wall_to_best": base_at[1],
        "candidate_best": pick(v for _, _, v in cand),
        "candidate_matched": match is not None,
        "candidate_rollouts_to_match": cand_rollouts,
        "candidate_wall_to_match": cand_wall,
        "rollout_ratio": _ratio(base_at[0], cand_rollouts),
        "wall_ratio": _ratio(base_at[1], cand_wall),
    }


def compare_runs(
    baselines: Sequence[Run],
    candidates: Sequence[Run],
    metric: str = DEFAULT_METRIC,
    tolerance: float = 0.0,
    higher_is_better: bool = True,
) -> dict[str, Any]:
    """Pair baselines and candidates in order and summarise: medians over pairs plus each pair in ``pairs``.

    Candidate-to-match numbers and ratios are medians over the pairs where the candidate matched
    (``matched_pairs`` = "n/N"); ``<ratio>_range`` is [min, max] over those. Null where no pair has a value.
    """
    if not baselines or not candidates:
        raise ReportError("need at least one baseline and one candidate run")
    if len(baselines) != len(candidates):
        raise ReportError(
            f"{len(baselines)} baseline run(s) but {len(candidates)} candidate run(s): "
            "runs are paired in order, so the counts must be equal"
        )
    if not math.isfinite(tolerance) or tolerance < 0:
        raise ReportError(f"--tolerance {tolerance}: must be a number >= 0")
    pairs = [compare_pair(b, c, metric, tolerance, higher_is_better) for b, c in zip(baselines, candidates)]
    matched = [p for p in pairs if p["candidate_matched"]]
    result: dict[str, Any] = {
        "metric": metric,
        "higher_is_better": higher_is_better,
        "tolerance": tolerance,
        "baseline": [r.name for r in baselines],
        "candidate": [r.name for r in candidates],
        "n_pairs": len(pairs),
        "n_matched": len(matched),
        "matched_pairs": f"{len(matched)}/{len(pairs)}",
    }
    for key in NUMERIC_KEYS:
        over = matched if key in MATCH_KEYS else pairs
        values = [p[key] for p in over if p[key] is not None]
        result[key] = statistics.median(values) if values else None
        if key in RATIO_KEYS:
            result[key + "_range"] = [min(values), max(values)] if values else None
    result["notes"] = _notes(baselines, candidates, pairs, matched)
    result["pairs"] = pairs
    result["stability"] = {"baseline": arm_stability(baselines), "candidate": arm_stability(candidates)}
    result["timing"] = {"baseline": arm_timing(baselines), "candidate": arm_timing(candidates)}
    return result


def _notes(
    baselines: Sequence[Run], candidates: Sequence[Run], pairs: list[dict], matched: list[dict]
) -> list[str]:
    notes = []
    if not matched:
        notes.append("the candidate never reached the baseline's best: ratios are null")
    elif len(matched) < len(pairs):
        notes.append(
            f"the candidate reached the baseline's best in {len(matched)} of {len(pairs)} pairs; "
            "candidate-to-match medians and ratios are over those pairs only"
        )
    no_wall = {str(r.path): r for r in (*baselines, *candidates) if not r.has_wall()}  # once per run
    for run in no_wall.values():
        why = " (TRL does not log wall-clock per step)" if run.source == "trainer_state.json" else ""
        notes.append(f"wall-clock unknown for {run.path}{why}: wall ratio is null")
    if any(p["candidate_matched"] and p["rollout_ratio"] is None for p in pairs):
        notes.append("a candidate matched at 0 rollouts (evaluation before training): its ratio is null")
    return notes


# --- stability and where the wall-clock goes ------------------------------------------------------------

STABILITY_KEYS = ("entropy_mean_abs_change", "reward_mean_abs_change", "length_slope", "switch_rl_step")
TIMING_KEYS = ("generation_s_per_step", "training_s_per_step", "generation_share")
LENGTH_KEYS = ("completions/mean_length", "completion_length")  # TRL's name, then runlog's alias
STABILITY_DEFINITIONS = (
    "**Stability** (from `metrics.jsonl` alone, over the RL-step records, `rl_step` >= 1, in `rl_step` "
    "order): *entropy mean abs change* = mean of |H_t - H_t-1| over consecutive records with an `entropy` "
    "value; *reward mean abs change* likewise for `reward`; *length slope* = least-squares slope of "
    "`completions/mean_length` against `rl_step` (tokens per RL step); *switch RL step* = the first `rl_step` "
    "whose `sfpo/active` (GXPO: `gxpo/active`) is 0 after at least one record with 1 (none if the algorithm "
    "never ran or never switched off). *Generation share* = total `timing/generation_s` / total (`timing/generation_s` + "
    "`timing/training_s`) over the RL steps. With several seeds each number is the median over runs; n/a "
    "where a field is missing."
)


def _rl_step_records(run: Run) -> list[dict[str, Any]]:
    records = [r for r in run.records if (finite_number(r.get("rl_step")) or 0) >= 1]
    return sorted(records, key=lambda r: r["rl_step"])


def _mean_abs_change(values: Sequence[float]) -> float | None:
    if len(values) < 2:
        return None
    return statistics.fmean(abs(b - a) for a, b in zip(values, values[1:]))


def _slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of y on x; None with fewer than two distinct x."""
    if len({x for x, _ in points}) < 2:
        return None
    return statistics.linear_regression([x for x, _ in points], [y for _, y in points]).slope


def stability(run: Run) -> dict[str, float | None]:
    """The stability numbers of one run (see :data:`STABILITY_DEFINITIONS`); None where a field is missing."""
    records = _rl_step_records(run)

    def values(key: str) -> list[float]:
        return [v for v in (metric_value(r.get(key)) for r in records) if v is not None]

    length_key = next(
        (k for k in LENGTH_KEYS if any(metric_value(r.get(k)) is not None for r in records)), None
    )
    lengths = [(r["rl_step"], metric_value(r.get(length_key))) for r in records] if length_key else []
    switch, was_active = None, False
    for r in records:
        active = metric_value(r.get("sfpo/active", r.get("gxpo/active")))  # the algorithm's own flag
        if active == 1:
            was_active = True
        elif active == 0 and was_active:
            switch = r["rl_step"]
            break
    return {
        "entropy_mean_abs_change": _mean_abs_change(values("entropy")),
        "reward_mean_abs_change": _mean_abs_change(values("reward")),
        "length_slope": _slope([(x, y) for x, y in lengths if y is not None]),
        "switch_rl_step": switch,
    }


def timing(run: Run) -> dict[str, float | None]:
    """Mean seconds per RL step generating and training, and generation's share of their sum."""
    pairs = [
        (g, t)
        for g, t in (
            (finite_number(r.get("timing/generation_s")), finite_number(r.get("timing/training_s")))
            for r in _rl_step_records(run)
        )
        if g is not None and t is not None
    ]
    if not pairs:
        return dict.fromkeys(TIMING_KEYS)
    gen, train = sum(g for g, _ in pairs), sum(t for _, t in pairs)
    return {
        "generation_s_per_step": gen / len(pairs),
        "training_s_per_step": train / len(pairs),
        "generation_share": gen / (gen + train) if gen + train > 0 else None,
    }


def _median_over_runs(per_run: Sequence[dict[str, float | None]], keys: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in keys:
        known = [r[key] for r in per_run if r[key] is not None]
        out[key] = statistics.median(known) if known else None
    return out


def _per_arm(runs: Sequence[Run], numbers, keys: Sequence[str]) -> dict[str, Any]:
    """Median over runs of each number (None where no run has it), plus each run's numbers."""
    per_run = [numbers(r) for r in runs]
    return {**_median_over_runs(per_run, keys), "n_runs": len(runs), "runs": per_run}


def arm_stability(runs: Sequence[Run]) -> dict[str, Any]:
    return _per_arm(runs, stability, STABILITY_KEYS)


def arm_timing(runs: Sequence[Run]) -> dict[str, Any]:
    return _per_arm(runs, timing, TIMING_KEYS)


def _fmt_opt(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def stability_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(quantity, baseline, candidate) rows of the stability and timing sections."""
    several = result["n_pairs"] > 1
    med = " (median)" if several else ""
    stab, tim = result.get("stability") or {}, result.get("timing") or {}
    rows = []
    for key, label, spec in (
        ("entropy_mean_abs_change", "entropy mean abs change", ".4g"),
        ("reward_mean_abs_change", "reward mean abs change", ".4g"),
        ("length_slope", "length slope (tokens / RL step)", "+.3g"),
        ("switch_rl_step", "switch RL step", "g"),
    ):
        cells = [_fmt_opt(stab.get(arm, {}).get(key), spec) for arm in ("baseline", "candidate")]
        if key == "switch_rl_step":
            cells = ["none" if c == "n/a" else c for c in cells]
        rows.append((label + med, *cells))
    if any(tim.get(arm, {}).get("generation_share") is not None for arm in ("baseline", "candidate")):
        for key, label, spec in (
            ("generation_s_per_step", "generation s per RL step", ".3g"),
            ("training_s_per_step", "training s per RL step", ".3g"),
            ("generation_share", "generation share", ".1%"),
        ):
            rows.append(
                (
                    label + med,
                    *(_fmt_opt(tim.get(arm, {}).get(key), spec) for arm in ("baseline", "candidate")),
                )
            )
    return rows


# --- tables ---------------------------------------------------------------------------------------------


def _fmt_value(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _fmt_rollouts(x: float | None, never: bool) -> str:
    if never:
        return "never"
    return "n/a" if x is None else f"{x:,.0f}"


def _fmt_wall(x: float | None, never: bool) -> str:
    if never:
        return "never"
    return "n/a" if x is None else f"{x:,.1f} s"


def _fmt_ratio(x: float | None, never: bool) -> str:
    if never:
        return "never"
    return "n/a" if x is None else f"{x:.2f}x"


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(quantity, value) rows of the summary table, shared by the markdown and terminal renderings."""
    never = result["n_matched"] == 0
    several = result["n_pairs"] > 1
    med = " (median)" if several else ""

    def ranged(key: str) -> str:
        text = _fmt_ratio(result[key], never)
        rng = result.get(key + "_range")
        if several and rng:
            text += f" [{rng[0]:.2f}x, {rng[1]:.2f}x]"
        return text

    direction = "higher" if result["higher_is_better"] else "lower"
    rows = [
        ("baseline", ", ".join(result["baseline"])),
        ("candidate", ", ".join(result["candidate"])),
        ("metric", f"{result['metric']} ({direction} is better, tolerance {result['tolerance']:g})"),
        (f"baseline best{med}", _fmt_value(result["baseline_best"])),
        (f"baseline rollouts to best{med}", _fmt_rollouts(result["baseline_rollouts_to_best"], False)),
        (f"baseline wall to best{med}", _fmt_wall(result["baseline_wall_to_best"], False)),
        (f"candidate best{med}", _fmt_value(result["candidate_best"])),
        (f"candidate rollouts to match{med}", _fmt_rollouts(result["candidate_rollouts_to_match"], never)),
        (f"candidate wall to match{med}", _fmt_wall(result["candidate_wall_to_match"], never)),
        (f"rollout ratio{med}", ranged("rollout_ratio")),
        (f"wall ratio{med}", ranged("wall_ratio")),
        ("matched pairs", result["matched_pairs"]),
    ]
    return rows


PAIR_COLUMNS = (
    "#",
    "baseline",
    "candidate",
    "best (baseline / candidate)",
    "rollouts (baseline to best / candidate to match)",
    "rollout ratio",
    "wall ratio",
)


def pair_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per pair, columns as in :data:`PAIR_COLUMNS`."""
    rows = []
    for i, p in enumerate(result["pairs"], start=1):
        never = not p["candidate_matched"]
        best = f"{_fmt_value(p['baseline_best'])} / {_fmt_value(p['candidate_best'])}"
        rollouts = (
            f"{_fmt_rollouts(p['baseline_rollouts_to_best'], False)} / "
            f"{_fmt_rollouts(p['candidate_rollouts_to_match'], never)}"
        )
        ratios = (_fmt_ratio(p["rollout_ratio"], never), _fmt_ratio(p["wall_ratio"], never))
        rows.append((str(i), p["baseline"], p["candidate"], best, rollouts, *ratios))
    return rows


def _markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)])


def format_table(result: dict[str, Any]) -> str:
    """The comparison as markdown: the summary table, then one row per pair when there are several."""
    text = _markdown_table(("quantity", "value"), summary_rows(result))
    if result["n_pairs"] > 1:
        text += "\n\n" + _markdown_table(PAIR_COLUMNS, pair_rows(result))
    if result.get("stability"):
        text += "\n\n" + _markdown_table(("stability", "baseline", "candidate"), stability_rows(result))
    return text


# --- report and plots -----------------------------------------------------------------------------------


def _slug(metric: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", metric).strip("_") or "metric"


def arm_label(role: str, runs: Sequence[Run]) -> str:
    names = sorted({r.name for r in runs})
    if len(runs) == 1 or len(names) == 1:
        suffix = f" ({len(runs)} seeds)" if len(runs) > 1 else ""
        return f"{role}: {names[0]}{suffix}"
    return f"{role} ({len(runs)} seeds)"


def write_report(
    result: dict[str, Any],
    baselines: Sequence[Run],
    candidates: Sequence[Run],
    out_dir: str | os.PathLike,
    metric: str = DEFAULT_METRIC,
) -> list[Path]:
    """Write ``report.md`` and the metric-vs-rollouts / metric-vs-wall-clock PNGs; return the paths."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ReportError(f"--out {out_dir}: exists and is not a folder")
    arms = {
        arm_label("baseline", baselines): list(baselines),
        arm_label("candidate", candidates): list(candidates),
    }
    hline = result.get("baseline_best")
    written = []
    plot = plot_runs(arms, metric, out_dir / f"{_slug(metric)}_vs_rollouts.png", x="rollouts", hline=hline)
    written.append(plot)
    if any(r.has_wall() for r in (*baselines, *candidates)):
        written.append(
            plot_runs(arms, metric, out_dir / f"{_slug(metric)}_vs_wall.png", x="wall_s", hline=hline)
        )
    runs = (*baselines, *candidates)
    for keys in (("entropy",), LENGTH_KEYS):  # stability: both arms against rollouts, where logged
        key = next((k for k in keys if any(_points_or_empty(r, k, "rollouts") for r in runs)), None)
        if key is not None:
            written.append(plot_runs(arms, key, out_dir / f"{_slug(keys[-1])}_vs_rollouts.png"))
    report = out_dir / "report.md"
    atomic_write_bytes(report, _report_markdown(result, baselines, candidates, [p.name for p in written]).encode())
    return [report, *written]


def _report_markdown(
    result: dict[str, Any], baselines: Sequence[Run], candidates: Sequence[Run], plots: list[str]
) -> str:
    inputs = [
        (role, r.name, str(r.path), r.source, str(len(r.records)))
        for role, runs in (("baseline", baselines), ("candidate", candidates))
        for r in runs
    ]
    parts = [
        f"# Rollouts to reach the baseline's best {result['metric']}",
        format_table(result),
        "## Inputs",
        _markdown_table(("role", "name", "path", "format", "records"), inputs),
        DEFINITIONS,
        STABILITY_DEFINITIONS,
    ]
    derived = [r for r in (*baselines, *candidates) if r.completions_per_step is not None]
    if derived:
        parts.append(
            "Rollouts of TRL runs = optimizer step x completions per step: "
            + ", ".join(f"{r.name}: {r.completions_per_step:g}" for r in derived)
            + "."
        )
    if result.get("notes"):
        parts.append("## Notes\n\n" + "\n".join(f"- {n}" for n in result["notes"]))
    if plots:
        parts.append("## Plots\n\n" + "\n\n".join(f"![{p}]({p})" for p in plots))
    return "\n\n".join(parts) + "\n"


def _step_values(curves: Sequence[Sequence[tuple[float, float]]]) -> list[tuple[float, list[float]]]:
    """(x, every curve's value at x) on the union of their x values, each curve held until its next point.

    Only the x range every curve covers is used, so no extrapolated value is mixed in.
    """
    curves = [sorted(c) for c in curves if c]
    if not curves:
        return []
    lo, hi = max(c[0][0] for c in curves), min(c[-1][0] for c in curves)
    grid = sorted({x for c in curves for x, _ in c if lo <= x <= hi})
    return [(x, [next(v for px, v in reversed(c) if px <= x) for c in curves]) for x in grid]


def step_median(curves: Sequence[Sequence[tuple[float, float]]]) -> list[tuple[float, float]]:
    """Median across curves on the union of their x values (see :func:`_step_values`)."""
    return [(x, statistics.median(values)) for x, values in _step_values(curves)]


def step_band(curves: Sequence[Sequence[tuple[float, float]]]) -> list[tuple[float, float, float]]:
    """(x, min, max) across curves on the union of their x values: the seeds' band."""
    return [(x, min(values), max(values)) for x, values in _step_values(curves)]


_X_LABELS = {"rollouts": "rollouts (completions generated)", "wall_s": "wall-clock (s)", "rl_step": "RL step"}


def plot_runs(
    runs_by_arm: dict[str, Sequence[Run]],
    metric: str,
    path: str | os.PathLike,
    x: str = "rollouts",
    hline: float | None = None,
    hline_label: str = "baseline best",
) -> Path:
    """One figure of ``metric`` vs ``x`` for all arms: seeds thin over their min-max band, the median bold.

    Runs lacking the metric or ``x`` are left out; it is an error if no run has them.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    FigureCanvasAgg(fig)  # Agg, without pyplot's global state
    ax = fig.add_subplot()
    drawn = 0
    for i, (label, runs) in enumerate(runs_by_arm.items()):
        curves = [c for c in (_points_or_empty(r, metric, x) for r in runs) if c]
        color = f"C{i}"
        if len(curves) > 1:
            for c in curves:
                ax.plot(*zip(*c), color=color, lw=0.8, alpha=0.35, drawstyle="steps-post")
            band = step_band(curves)
            if band:
                xs, lows, highs = zip(*band)
                ax.fill_between(xs, lows, highs, step="post", color=color, alpha=0.15, lw=0)
            median = step_median(curves)
            if median:
                ax.plot(*zip(*median), color=color, lw=2.5, drawstyle="steps-post", label=f"{label}, median")
        elif curves:
            ax.plot(*zip(*curves[0]), color=color, lw=2.0, drawstyle="steps-post", label=label)
        drawn += len(curves)
    if not drawn:
        raise ReportError(f"no run has both {metric!r} and {x!r} to plot")
    if hline is not None:
        ax.axhline(hline, color="gray", ls="--", lw=1, label=f"{hline_label} = {hline:.4g}")
    ax.set_xlabel(_X_LABELS.get(x, x))
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs {_X_LABELS.get(x, x).split(' (')[0]}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _points_or_empty(run: Run, metric: str, x: str) -> list[tuple[float, float]]:
    try:
        return run.points(metric, x)
    except ReportError:
        return []


def plot_metric_vs_step(runs_by_arm: dict[str, Sequence[Run]], metric: str, path: str | os.PathLike) -> Path:
    """``metric`` (e.g. ``entropy``, ``completion_length``) vs RL step for each arm."""
    return plot_runs(runs_by_arm, metric, path, x="rl_step")
