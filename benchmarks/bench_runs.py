"""What the benchmarks share: the settings that identify a run, when a finished run folder is reused, the run's
time in `run.json`, and running several runs at once.

Imported by the scripts next to it (`python benchmarks/<script>.py` puts this folder first on the path).
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from importlib.metadata import PackageNotFoundError, version
from multiprocessing import get_context
from pathlib import Path

from sfpo.app.demo import DemoSettings, arm_fields
from sfpo.app.runlog import read_metrics

# The demo settings that identify a run (with its arm): a finished run is reused only if they are equal.
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


def identity(settings: DemoSettings) -> dict:
    return {key: getattr(settings, key) for key in IDENTITY}


def differences(folder: Path, settings: DemoSettings, arm: str | None = None) -> dict:
    """{setting: (saved, wanted)} where the run in `folder` was made with other settings. With `arm`, also the
    arm's name and its trainer fields (whatever `ARMS[arm]` holds now, e.g. a variant whose δ changed since)."""
    config = json.loads((folder / "config.json").read_text())
    saved = config["demo"]
    wanted = identity(settings)
    defaults = identity(DemoSettings())  # a setting added after the run was made held its default then
    differ = {k: (saved.get(k, defaults[k]), v) for k, v in wanted.items() if saved.get(k, defaults[k]) != v}
    if arm is not None:
        if config.get("arm", arm) != arm:
            differ["arm"] = (config.get("arm"), arm)
        algorithm, fields = arm_fields(arm)
        if config.get("algorithm", "sfpo") != algorithm:  # runs from before the key trained SFPO
            differ["algorithm"] = (config.get("algorithm", "sfpo"), algorithm)
        trainer = config.get("trainer", {})
        differ.update({f"trainer.{k}": (trainer.get(k), v) for k, v in fields.items() if trainer.get(k) != v})
    return differ


def finished(folder: Path, settings: DemoSettings, arm: str | None = None) -> bool:
    """True if `folder` holds this run finished; False if absent or unfinished; error if other settings."""
    lines = read_metrics(folder / "metrics.jsonl")
    if not lines or lines[-1]["rl_step"] < settings.steps:
        return False
    differ = differences(folder, settings, arm)
    if differ:
        raise SystemExit(
            f"error: {folder} holds a finished run with other settings {differ} (saved, wanted); "
            "use another --out or remove the folder"
        )
    return True


# The packages whose versions change a run's numbers (the floating-point path), recorded in run.json.
SOFTWARE = ("sfpo", "torch", "transformers", "trl", "accelerate", "numpy")
# What the code of a run is made of; results folders are left out of "changed", they are what runs write.
CODE_PATHS = ("src", "benchmarks/*.py", "pyproject.toml", "constraints.txt")


def software() -> dict:
    """{package: version} for SOFTWARE, and python."""
    found = {"python": platform.python_version()}
    for name in SOFTWARE:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def code_commit(root: Path = Path(__file__).resolve().parents[1]) -> dict | None:
    """{"commit": HEAD, "changed": whether the code differs from it}, or None outside a git checkout."""
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        changed = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", *CODE_PATHS],
                                 capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"commit": head, "changed": bool(changed)}


def write_run_info(folder: Path, seconds: float, started: float | None = None, **extra) -> dict:
    """`run.json`: the seconds the run took, when it started (`time.time()`) and finished, the machine, and what
    the numbers depend on besides the settings: package versions and the code's commit. A run reused later is
    reused by its settings alone (`finished`); these say what made it, since the same settings on another
    machine or another torch need not give the same numbers."""
    info = {"seconds": round(seconds, 1)}
    if started is not None:
        info["started"] = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started))
    info["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    info["machine"] = f"{platform.node()} {platform.processor() or platform.machine()}"
    info["cpu"] = cpu_model()
    info["cpu_capability"] = cpu_capability()
    info["software"] = software()
    info["code"] = code_commit()
    info.update(extra)
    (folder / "run.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (Linux), else None."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_capability() -> str:
    """The instruction set of PyTorch's CPU kernels here ("AVX512", "AVX2", ...): another one takes another
    floating-point path."""
    import torch

    return torch.backends.cpu.get_cpu_capability()


def one_thread() -> None:
    import torch

    torch.set_num_threads(1)  # parallel runs share the cores; one thread each avoids oversubscription


def run_parallel(fn: Callable, jobs: Iterable[tuple], workers: int) -> Iterator[tuple[tuple, object]]:
    """Yields (job, fn(*job)) as each job finishes. With `workers` > 1 that many run at a time, each in its own
    process with one torch thread (`fn` must be a module-level function); the jobs start in the given order. An
    error stops the jobs not yet started and is raised."""
    jobs = list(jobs)
    if workers <= 1:
        for job in jobs:
            yield job, fn(*job)
        return
    if not jobs:
        return
    pool = ProcessPoolExecutor(min(workers, len(jobs)), mp_context=get_context("spawn"), initializer=one_thread)
    clean = False
    try:
        futures = {pool.submit(fn, *job): job for job in jobs}
        for future in as_completed(futures):
            yield futures[future], future.result()
        clean = True
    finally:
        pool.shutdown(wait=True, cancel_futures=not clean)


def write_text_atomic(path: Path, text: str) -> None:
    """Via a temporary file and a rename, so that a reader (or a kill) never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
