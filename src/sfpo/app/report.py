"""Rollouts and wall-clock a candidate run needs to reach a baseline run's best score.

This is the paper's headline measurement: train GRPO (baseline) and SFPO (candidate), find the best value
of an evaluation metric the baseline ever reached, and ask how many rollouts (completions generated) and
seconds the candidate needed to reach it. ``rollout_ratio = baseline_rollouts_to_best /
candidate_rollouts_to_match``; above 1 means the candidate got there with fewer rollouts.

Two run-folder formats are read:

* ``metrics.jsonl`` (this project's trainer): one JSON object per RL step with at least ``rl_step``,
  ``rollouts`` (cumulative completions), ``wall_s`` (cumulative seconds) and metrics such as
  ``eval/accuracy`` (only on lines where evaluation ran).
* TRL's ``trainer_state.json`` (in the folder or its newest ``checkpoint-*``), see
  :func:`completions_per_step` for how rollouts are derived from its optimizer steps.
"""

from __future__ import annotations

import glob
import io
import json
import math
import os
import pickle
import re
import statistics
import uuid
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_METRIC = "eval/accuracy"
BOOKKEEPING = ("rl_step", "rollouts", "wall_s")
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
# TRL appends one end-of-training summary entry; these are not per-step metrics.
TRL_SUMMARY_KEYS = {
    "train_runtime",
    "train_samples_per_second",
    "train_steps_per_second",
    "total_flos",
    "train_loss",
}
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


class ReportError(ValueError):
    """Bad input: the message names the path or option, the value and what is allowed."""


# --- runs -----------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One training run: a name and its per-step records (each has ``rl_step``, ``rollouts``, ``wall_s``)."""

    name: str
    path: Path
    records: list[dict[str, Any]]
    source: str = "metrics.jsonl"
    warnings: list[str] = field(default_factory=list)
    completions_per_step: float | None = None  # only for TRL runs, where rollouts are derived

    def metrics(self) -> list[str]:
        """Names of the numeric metrics logged on at least one record."""
        names = {k for r in self.records for k, v in r.items() if _value(v) is not None}
        return sorted(names - set(BOOKKEEPING))

    def resolve_metric(self, metric: str) -> str:
        """The key holding ``metric`` in this run; ``eval/x`` and TRL's ``eval_x`` stand for each other."""
        available = self.metrics()
        for key in (metric, _metric_alias(metric)):
            if key in available:
                return key
        shown = ", ".join(available) if available else "(none)"
        raise ReportError(f"run {self.path}: no metric {metric!r}; metrics it has: {shown}")

    def points(self, metric: str, x: str = "rollouts") -> list[tuple[float, float]]:
        """(x, value) for the records where both are known; x is ``rollouts``, ``wall_s`` or ``rl_step``."""
        key = self.resolve_metric(metric)
        pts = [(_number(r.get(x)), _value(r.get(key))) for r in self.records]
        return [(a, v) for a, v in pts if a is not None and v is not None]

    def series(self, metric: str) -> list[tuple[float, float | None, float]]:
        """(rollouts, wall_s or None, value) for each record where the metric is present."""
        key = self.resolve_metric(metric)
        out = []
        for r in self.records:
            value = _value(r.get(key))
            if value is not None:
                out.append((_number(r["rollouts"]), _number(r.get("wall_s")), value))
        return out

    def has_wall(self) -> bool:
        return any(_number(r.get("wall_s")) is not None for r in self.records)


def _number(value: Any) -> float | None:
    """A finite number, or None (absent, null, text, NaN, bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def _value(value: Any) -> float | None:
    """A metric value: a finite number, with flags such as ``sfpo/active`` read as 0/1."""
    return float(value) if isinstance(value, bool) else _number(value)


def _metric_alias(metric: str) -> str:
    if metric.startswith("eval/"):
        return "eval_" + metric[len("eval/") :]
    if metric.startswith("eval_"):
        return "eval/" + metric[len("eval_") :]
    return metric


def load_run(path: str | os.PathLike, completions_per_step: float | None = None) -> Run:
    """Load a run folder (or its ``metrics.jsonl`` / ``trainer_state.json`` file).

    ``metrics.jsonl`` wins over ``trainer_state.json`` when a folder has both. ``completions_per_step``
    overrides the rollout derivation for TRL runs (see :func:`completions_per_step`).
    """
    path = Path(path)
    if not path.exists():
        raise ReportError(f"run folder {path} does not exist")
    folder = path.parent if path.is_file() else path
    if path.is_file() and path.name not in ("metrics.jsonl", "trainer_state.json"):
        raise ReportError(f"{path}: expected a run folder, metrics.jsonl or trainer_state.json")
    jsonl = path if path.name == "metrics.jsonl" else folder / "metrics.jsonl"
    if jsonl.is_file() and not (path.is_file() and path.name == "trainer_state.json"):
        records, warnings = read_metrics_jsonl(jsonl)
        return Run(_run_name(folder), folder, records, "metrics.jsonl", warnings)
    state = path if path.name == "trainer_state.json" else _find_trainer_state(folder)
    if state is None:
        raise ReportError(
            f"{path}: no metrics.jsonl or trainer_state.json (also looked in its checkpoint-* folders)"
        )
    return _load_trl_run(folder, state, completions_per_step)


def read_metrics_jsonl(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Parse ``metrics.jsonl``; a broken LAST line (interrupted run) is dropped with a warning."""
    # A run killed mid-write can cut a multi-byte character: decode leniently, the JSON check catches it.
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise ReportError(f"{path} is empty: expected one JSON object per line")
    records, warnings = [], []
    for i, (lineno, line) in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if i == len(lines) - 1:
                warnings.append(f"{path}:{lineno}: ignoring truncated last line (interrupted run?)")
                break
            raise ReportError(f"{path}:{lineno}: invalid JSON line in the middle of the file ({exc.msg})")
        records.append(_check_record(record, path, lineno))
    if not records:
        raise ReportError(f"{path} has no complete line")
    return records, warnings


def _check_record(record: Any, path: Path, lineno: int) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise ReportError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
    for key in ("rl_step", "rollouts"):
        if _number(record.get(key)) is None:
            raise ReportError(f"{path}:{lineno}: missing or non-numeric {key!r} (required on every line)")
    return record


def _run_name(folder: Path) -> str:
    """``name`` (or ``run_name``) from the folder's resolved config, else the folder name."""
    config = _read_config(folder)
    for key in ("name", "run_name"):
        if isinstance(config.get(key), str) and config[key]:
            return config[key]
    return folder.resolve().name


def _read_config(folder: Path) -> dict[str, Any]:
    for name in ("config.json", "config.yaml", "config.yml"):
        file = folder / name
        if file.is_file():
            try:
                text = file.read_text(encoding="utf-8")
                data = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
            except (OSError, ValueError, yaml.YAMLError):
                continue  # a config is only used for labels and batch sizes: not worth failing over
            if isinstance(data, dict):
                return data
    return {}


# --- TRL trainer_state.json -----------------------------------------------------------------------------


def _find_trainer_state(folder: Path) -> Path | None:
    if (folder / "trainer_state.json").is_file():
        return folder / "trainer_state.json"
    checkpoints = [
        p
        for p in folder.glob("checkpoint-*")
        if p.name[11:].isdigit() and (p / "trainer_state.json").is_file()
    ]
    if not checkpoints:
        return None
    return max(checkpoints, key=lambda p: int(p.name[11:])) / "trainer_state.json"


def _load_trl_run(folder: Path, state_file: Path, override: float | None) -> Run:
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except ValueError as exc:  # bad JSON or bad UTF-8
        raise ReportError(f"{state_file}: not readable as JSON ({exc})")
    history = state.get("log_history") if isinstance(state, dict) else None
    if not isinstance(history, list) or not history:
        raise ReportError(f"{state_file}: no entries in 'log_history'")
    warnings: list[str] = []
    per_step = override if override is not None else completions_per_step(folder, state_file, state, warnings)
    records = _trl_records(history, per_step)
    if not records:
        raise ReportError(f"{state_file}: no 'log_history' entry has a 'step'")
    return Run(_run_name(folder), folder, records, "trainer_state.json", warnings, per_step)


def _trl_records(history: list[Any], per_step: float) -> list[dict[str, Any]]:
    """One record per optimizer step: TRL logs train and eval metrics of a step as separate entries."""
    by_step: dict[int, dict[str, Any]] = {}
    for entry in history:
        if not isinstance(entry, dict) or _number(entry.get("step")) is None:
            continue
        step = int(entry["step"])
        record = by_step.setdefault(
            step, {"rl_step": step, "rollouts": _whole(step * per_step), "wall_s": None}
        )
        skip = TRL_SUMMARY_KEYS | {"step", "rl_step", "rollouts"}  # rollouts are derived, never logged
        record.update({k: v for k, v in entry.items() if k not in skip})
    return [by_step[s] for s in sorted(by_step)]


def _whole(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x


def completions_per_step(
    folder: Path, state_file: Path, state: dict[str, Any], warnings: list[str] | None = None
) -> float:
    """Completions generated per optimizer step of a TRL GRPO run (rollouts = step x this).

    TRL generates ``generation_batch_size`` completions (all processes) at a time, spends
    ``steps_per_generation`` micro-batches on each generation and goes over it ``num_iterations`` times;
    an optimizer step takes ``gradient_accumulation_steps`` micro-batches. Hence::

        per optimizer step = generation_batch_size * gradient_accumulation_steps
                             / (steps_per_generation * num_iterations)
                           = per_device_train_batch_size * world_size * gradient_accumulation_steps
                             / num_iterations

    (the second form since ``generation_batch_size = per_device_train_batch_size * world_size *
    steps_per_generation``). Values are read, first found wins, from ``training_args.bin`` (in the folder,
    else next to ``state_file``; read without running any of its code), the folder's ``config.json`` /
    ``config.yaml``, and ``trainer_state.json``'s ``train_batch_size`` (= per-device batch size). Missing
    ``world_size``, ``gradient_accumulation_steps`` and ``num_iterations`` are taken as 1 with a warning.
    """
    warnings = warnings if warnings is not None else []
    known = _batch_settings(folder, state_file, state, warnings)
    ga = known.get("gradient_accumulation_steps")
    iters = known.get("num_iterations")
    gen, spg = known.get("generation_batch_size"), known.get("steps_per_generation")
    if gen and spg and ga:
        return _whole(gen * ga / (spg * (iters or 1)))
    per_device = known.get("per_device_train_batch_size") or known.get("train_batch_size")
    if not per_device:
        raise ReportError(
            f"{folder}: cannot derive rollouts from trainer_state.json: no batch size in training_args.bin, "
            "config or trainer_state.json; pass --completions-per-step N"
        )
    world = known.get("world_size") or known.get("num_processes")
    assumed = [
        f"{k}=1"
        for k, v in (("world_size", world), ("gradient_accumulation_steps", ga), ("num_iterations", iters))
        if not v
    ]
    if assumed:
        warnings.append(
            f"{folder}: assuming {', '.join(assumed)} to derive rollouts (not found); "
            "pass --completions-per-step N if wrong"
        )
    return _whole(per_device * (world or 1) * (ga or 1) / (iters or 1))


_BATCH_KEYS = (
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_iterations",
    "generation_batch_size",
    "steps_per_generation",
    "world_size",
    "num_processes",
)


def _batch_settings(
    folder: Path, state_file: Path, state: dict[str, Any], warnings: list[str]
) -> dict[str, float]:
    known: dict[str, float] = {}
    for source in (_training_args(folder, state_file, warnings), _flatten_config(_read_config(folder))):
        for key in _BATCH_KEYS:
            value = _number(source.get(key))
            if key not in known and value is not None and value > 0:
                known[key] = value
    if _number(state.get("train_batch_size")):
        known.setdefault("train_batch_size", state["train_batch_size"])
    return known


def _flatten_config(config: dict[str, Any]) -> dict[str, Any]:
    """Top-level keys plus those one level down (resolved configs often group trainer settings)."""
    flat = {k: v for v in config.values() if isinstance(v, dict) for k, v in v.items()}
    flat.update(config)
    return flat


def _training_args(folder: Path, state_file: Path, warnings: list[str]) -> dict[str, Any]:
    for file in (folder / "training_args.bin", state_file.parent / "training_args.bin"):
        if file.is_file():
            try:
                args = _read_torch_pickle(file)
            except (OSError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError, EOFError) as exc:
                warnings.append(f"{file}: unreadable ({exc}); ignored")
                continue
            settings = dict(vars(args)) if isinstance(args, _Stub) else {}
            dist = settings.get("distributed_state")
            if isinstance(dist, _Stub) and _number(getattr(dist, "num_processes", None)):
                settings.setdefault("num_processes", dist.num_processes)
            return settings
    return {}


class _Stub:
    """Stands in for every class a pickle names: keeps its state, runs none of its code."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._stub_args = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)


class _StubUnpickler(pickle.Unpickler):
    # Every global resolves to a fresh stub class, so loading a pickle cannot import or call anything.
    def find_class(self, module: str, name: str) -> type:
        return type(name, (_Stub,), {})

    def persistent_load(self, pid: Any) -> None:
        return None  # tensor storages: not needed for settings


def _read_torch_pickle(file: Path) -> Any:
    """The object in a ``torch.save`` zip (``*/data.pkl``), with classes replaced by :class:`_Stub`."""
    with zipfile.ZipFile(file) as archive:
        names = [n for n in archive.namelist() if n.endswith("data.pkl")]
        if not names:
            raise ValueError("no data.pkl inside")
        return _StubUnpickler(io.BytesIO(archive.read(names[0]))).load()


# --- finding runs on the command line -------------------------------------------------------------------


def expand_paths(patterns: Iterable[str]) -> list[Path]:
    """Paths in the given order; a pattern with ``*?[`` that is not an existing path is globbed (sorted)."""
    out: list[Path] = []
    for pattern in patterns:
        if not Path(pattern).exists() and any(c in pattern for c in "*?["):
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise ReportError(f"pattern {pattern!r} matches no path")
            out.extend(Path(m) for m in matches)
        else:
            out.append(Path(pattern))
    return out


def is_run_folder(path: Path) -> bool:
    return path.is_dir() and ((path / "metrics.jsonl").is_file() or _find_trainer_state(path) is not None)


def demo_arms(
    path: str | os.PathLike, baseline: str = "grpo", candidate: str = "sfpo"
) -> tuple[list[Path], list[Path]]:
    """Run folders of a demo folder's two arms; an arm is one run folder or a folder of seed run folders."""
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"demo folder {path} does not exist")
    arms = []
    for arm in (baseline, candidate):
        folder = path / arm
        if is_run_folder(folder):
            arms.append([folder])
            continue
        seeds = (
            sorted((p for p in folder.iterdir() if is_run_folder(p)), key=_natural) if folder.is_dir() else []
        )
        if not seeds:
            raise ReportError(f"{path}: expected a demo folder with run folders {baseline}/ and {candidate}/")
        arms.append(seeds)
    return arms[0], arms[1]


def _natural(path: Path) -> list[Any]:
    """Sort key putting seed2 before seed10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


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
    "whose `sfpo/active` is 0 after at least one record with 1 (none if SFPO never ran or never switched "
    "off). *Generation share* = total `timing/generation_s` / total (`timing/generation_s` + "
    "`timing/training_s`) over the RL steps. With several seeds each number is the median over runs; n/a "
    "where a field is missing."
)


def _rl_step_records(run: Run) -> list[dict[str, Any]]:
    records = [r for r in run.records if (_number(r.get("rl_step")) or 0) >= 1]
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
        return [v for v in (_value(r.get(key)) for r in records) if v is not None]

    length_key = next((k for k in LENGTH_KEYS if any(_value(r.get(k)) is not None for r in records)), None)
    lengths = [(r["rl_step"], _value(r.get(length_key))) for r in records] if length_key else []
    switch, was_active = None, False
    for r in records:
        active = _value(r.get("sfpo/active"))
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
            (_number(r.get("timing/generation_s")), _number(r.get("timing/training_s")))
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


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # open(..., "xb") rather than mkstemp: the file gets the usual umask permissions, not 0600.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
    _atomic_write(report, _report_markdown(result, baselines, candidates, [p.name for p in written]).encode())
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
    _atomic_write(path, buffer.getvalue())
    return path


def _points_or_empty(run: Run, metric: str, x: str) -> list[tuple[float, float]]:
    try:
        return run.points(metric, x)
    except ReportError:
        return []


def plot_metric_vs_step(runs_by_arm: dict[str, Sequence[Run]], metric: str, path: str | os.PathLike) -> Path:
    """``metric`` (e.g. ``entropy``, ``completion_length``) vs RL step for each arm."""
    return plot_runs(runs_by_arm, metric, path, x="rl_step")
