"""Reading training-run folders: the per-RL-step records a comparison or a plot needs.

Two run-folder formats are read:

* ``metrics.jsonl`` (this project's trainer): one JSON object per RL step with at least ``rl_step``,
  ``rollouts`` (cumulative completions), ``wall_s`` (cumulative seconds) and metrics such as
  ``eval/accuracy`` (only on lines where evaluation ran).
* TRL's ``trainer_state.json`` (in the folder or its newest ``checkpoint-*``), see
  :func:`completions_per_step` for how rollouts are derived from its optimizer steps and the pickled
  training arguments (``training_args.bin``, read without running any of its code).
"""

from __future__ import annotations

import glob
import io
import json
import math
import os
import pickle
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

BOOKKEEPING = ("rl_step", "rollouts", "wall_s")
# TRL appends one end-of-training summary entry; these are not per-step metrics.
TRL_SUMMARY_KEYS = {
    "train_runtime",
    "train_samples_per_second",
    "train_steps_per_second",
    "total_flos",
    "train_loss",
}


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
        names = {k for r in self.records for k, v in r.items() if metric_value(v) is not None}
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
        pts = [(finite_number(r.get(x)), metric_value(r.get(key))) for r in self.records]
        return [(a, v) for a, v in pts if a is not None and v is not None]

    def series(self, metric: str) -> list[tuple[float, float | None, float]]:
        """(rollouts, wall_s or None, value) for each record where the metric is present."""
        key = self.resolve_metric(metric)
        out = []
        for r in self.records:
            value = metric_value(r.get(key))
            if value is not None:
                out.append((finite_number(r["rollouts"]), finite_number(r.get("wall_s")), value))
        return out

    def has_wall(self) -> bool:
        return any(finite_number(r.get("wall_s")) is not None for r in self.records)


def finite_number(value: Any) -> float | None:
    """A finite number, or None (absent, null, text, NaN, bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def metric_value(value: Any) -> float | None:
    """A metric value: a finite number, with flags such as ``sfpo/active`` read as 0/1."""
    return float(value) if isinstance(value, bool) else finite_number(value)


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
        if finite_number(record.get(key)) is None:
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
        if not isinstance(entry, dict) or finite_number(entry.get("step")) is None:
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
            value = finite_number(source.get(key))
            if key not in known and value is not None and value > 0:
                known[key] = value
    if finite_number(state.get("train_batch_size")):
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
            if isinstance(dist, _Stub) and finite_number(getattr(dist, "num_processes", None)):
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
