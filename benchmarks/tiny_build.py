"""Rebuild the tiny policies that ship with the package and check (or refresh) the shipped weights.

The package ships the default tiny policies (seed 0, every tiny task) under ``src/sfpo/tiny_policies/<key>/``,
so that `sfpo demo` never waits for a build. They are exactly what :func:`sfpo.toy.tiny.build_tiny_policy` builds:

    python benchmarks/tiny_build.py --check            # rebuild each one, compare weights bit for bit (exit 1 if not)
    python benchmarks/tiny_build.py --write            # after a recipe change: rebuild and ship the new folders
    python benchmarks/tiny_build.py --tasks pyfunc --check

It prints, per task, the build's wall-clock and CPU seconds (the build runs in a child process, one thread),
the parameter count and the warm start's held-out accuracy (greedy and sampled at T=1), as a markdown table.
`tests/test_tiny.py` runs the same comparison as a slow test.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from sfpo.toy import tiny


def rebuild(task: str, cache: Path) -> tuple[Path, float, float]:
    """A fresh build of the shipped recipe for ``task``: its folder, wall-clock and CPU seconds (the child's)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    folder = tiny.build_tiny_policy(task, seed=0, cache_dir=cache, force=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return folder, wall, cpu


def same_weights(a: Path, b: Path) -> list[str]:
    """Names of the tensors that differ between two policy folders (empty: bit for bit the same)."""
    import torch
    from safetensors.torch import load_file

    x, y = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    if x.keys() != y.keys():
        return sorted(set(x) ^ set(y))
    return [k for k in x if x[k].dtype != y[k].dtype or not torch.equal(x[k], y[k])]


def ship(built: Path) -> Path:
    """Copy a build into the package (readable by all), replacing older shipped builds of the same task."""
    task = tiny.load_tiny_info(built)["task"]
    tiny.SHIPPED_DIR.mkdir(parents=True, exist_ok=True)
    for old in tiny.SHIPPED_DIR.glob(f"{task}-seed0-*"):
        shutil.rmtree(old)
    target = tiny.SHIPPED_DIR / built.name
    shutil.copytree(built, target)
    target.chmod(0o755)
    for f in target.iterdir():
        f.chmod(0o644)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(tiny.SHIPPED_TASKS), choices=tiny.SHIPPED_TASKS)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--check", action="store_true", help="compare each rebuild with the shipped folder")
    what.add_argument("--write", action="store_true", help="ship each rebuild (replaces the shipped folder)")
    parser.add_argument("--cache", help="folder for the rebuilds (default: a temporary folder, removed after)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)

    cache = Path(args.cache) if args.cache else Path(tempfile.mkdtemp(prefix="sfpo-tiny-build-"))
    rows, failed = [], False
    try:
        for task in args.tasks:
            print(f"building {task} ...", file=sys.stderr, flush=True)
            built, wall, cpu = rebuild(task, cache)
            info = tiny.load_tiny_info(built)
            shipped = tiny.shipped_tiny_policy(task)
            if args.write:
                verdict = f"shipped as {ship(built).name}"
            elif shipped is None:
                verdict, failed = "no shipped folder for this recipe (run --write)", True
            else:
                differ = same_weights(built, shipped)
                verdict = "identical weights" if not differ else f"DIFFERENT: {', '.join(differ[:3])}"
                failed = failed or bool(differ)
            acc = info["heldout_accuracy"]
            rows.append({"task": task, "key": info["key"], "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
                         "sft_steps": info["settings"]["sft_steps"], "parameters": info["parameters"],
                         "heldout_n": acc.get("n"), "greedy": acc.get("greedy"),
                         "temperature_1": acc.get("temperature_1"), "verdict": verdict})
    finally:
        if not args.cache:
            shutil.rmtree(cache, ignore_errors=True)
    print("| task | key | fine-tuning steps | build wall s | build CPU s | parameters | held-out greedy | "
          "held-out T=1 | result |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['key']} | {r['sft_steps']} | {r['wall_s']} | {r['cpu_s']} | {r['parameters']:,} | "
              f"{r['greedy']:.1%} | {r['temperature_1']:.1%} (n={r['heldout_n']}) | {r['verdict']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
