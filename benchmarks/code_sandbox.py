"""Throughput of the code reward: programs scored per second.

Scores batches of 128 distinct completions (as one RL step of 16 prompts x 8 rollouts would give) with
``code_accuracy``, in three shapes:

- ``stdin/stdout x3``: stdin/stdout problems with three test cases each (a program's sandbox per case; the stdouts
  go to the worker's tests' sandbox, which compares them);
- ``asserts``: the ``pyfunc`` task's asserts (``assert type(f(3)) is int and f(3) == 11``, six of them): a
  program's sandbox per program, its calls answered for the tests, which run in the worker's tests' sandbox (one
  forked process per row);
- ``loop``: the same six checks written as a ``for`` loop (issue 20's design ran these in the program's process;
  now they are judged exactly like the asserts).

Half of the programs are right, and the scores are checked, so a broken sandbox cannot look fast. Prints the
sandbox mode, the worker count, and the median over ``--repeats`` batches.

    python benchmarks/code_sandbox.py --repeats 5
    SFPO_SANDBOX=rlimit python benchmarks/code_sandbox.py --repeats 5   # the fallback, for comparison
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import time

from sfpo.code import sandbox
from sfpo.code.reward import _workers, code_accuracy
from sfpo.toy.tasks import get_task

_ASSERT_RE = re.compile(r"assert type\(f\((-?\d+)\)\) is int and f\(-?\d+\) == (-?\d+)")


def pyfunc_batch(n: int, seed: int) -> tuple[list[str], list[str], list[float]]:
    problems = get_task("pyfunc").train_problems(n, seed=seed)
    completions, expected = [], []
    for i, p in enumerate(problems):
        # a distinct program per completion (an unused default argument), so de-duplication saves no run;
        # odd ones add 1 to the function, which makes them wrong at every held-out input
        head = f"f=lambda x,_k={seed * n + i}:" + ("1+" if i % 2 else "")
        completions.append(p.solution.replace("f=lambda x:", head, 1))
        expected.append(0.0 if i % 2 else 1.0)
    return completions, [p.answer for p in problems], expected


def loop_batch(n: int, seed: int) -> tuple[list[str], list[str], list[float]]:
    """The pyfunc checks as a loop: the same programs and checks, tests that issue 20's host parser did not take."""
    completions, tests, expected = pyfunc_batch(n, seed)
    looped = []
    for t in tests:
        pairs = ", ".join(f"({x}, {y})" for x, y in _ASSERT_RE.findall(t))
        looped.append(f"for x, y in [{pairs}]:\n    assert type(f(x)) is int and f(x) == y\n")
    return completions, looped, expected


def stdio_batch(n: int, seed: int) -> tuple[list[str], list[str], list[float]]:
    cases = json.dumps(
        [{"input": f"{a} {b}\n", "output": f"{a + b}\n"} for a, b in ((1, 2), (10, -3), (7, 7))]
    )
    completions, expected = [], []
    for i in range(n):
        op = "-" if i % 2 else "+"
        completions.append(
            f"```python\n# {seed * n + i}\na, b = map(int, input().split())\nprint(a {op} b)\n```"
        )
        expected.append(0.0 if i % 2 else 1.0)
    return completions, [cases] * n, expected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shapes", default="stdio,calls,loop", help="comma-separated subset")
    args = parser.parse_args()
    print(
        f"sandbox mode: {sandbox.mode()}; workers: {_workers()}; CPUs: {os.cpu_count()}; batch: {args.batch}"
    )
    shapes = {
        "stdio": ("stdin/stdout x3", stdio_batch, 3),
        "calls": ("asserts", pyfunc_batch, 1),
        "loop": ("loop", loop_batch, 1),
    }
    for key in args.shapes.split(","):
        name, make, runs_per_program = shapes[key.strip()]
        rates = []
        for r in range(args.repeats):
            completions, tests, expected = make(args.batch, seed=r)
            started = time.perf_counter()
            scores = code_accuracy(completions, tests=tests)
            seconds = time.perf_counter() - started
            if scores != expected:
                raise SystemExit(f"{name}: wrong scores ({sum(scores)} right, expected {sum(expected)})")
            rates.append(args.batch / seconds)
        rate = statistics.median(rates)
        print(
            f"{name:18s} {rate:7.1f} programs/s  ({rate * runs_per_program:7.1f} program sandboxes/s; "
            f"{args.batch / rate:5.2f} s per batch of {args.batch}; range {min(rates):.1f}-{max(rates):.1f})"
        )


if __name__ == "__main__":
    main()
