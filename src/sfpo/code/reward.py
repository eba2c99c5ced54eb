"""Execution rewards for code generation: run the completion's program against its tests in the sandbox.

``code_accuracy(completions, tests, **kwargs)`` has TRL's reward signature (``tests`` is the dataset column
of that name). The program is the last fenced code block of a completion (```` ```python ```` or plain
```` ``` ````), or the whole completion when it has none; completions over :data:`MAX_COMPLETION_CHARS`
characters score 0 unread. ``tests[i]`` takes one of two shapes, and in both the verdict is made in a sandbox of
the tests' own, apart from the program's (:mod:`sfpo.code.judge`):

- **stdin/stdout**: a list of ``{"input": str, "output": str}`` cases (or that list as a JSON string, which is
  how the dataset recipes store it): the program runs once per case with ``input`` on stdin, and the tests'
  sandbox compares its stdout with ``output`` as LiveCodeBench's checker does (strip, lines, then tokens, numbers
  as numbers), or line by line with ``stdout_compare="strict"``;
- **calls**: a string of Python test code (asserts, loops, ``check(candidate)``, unittest or pytest style: MBPP,
  HumanEval), or a LiveCodeBench functional spec (``{"fn_name", "inputs", "outputs"}``, as a dict or its JSON).
  The tests run as written in their sandbox; the program is imported in its own; each call the tests make
  crosses between them as data (:mod:`sfpo.code._wire`), so every comparison is the tests' own.

The score is 1.0 when every test ran and passed, else 0.0 (``make_code_accuracy(partial=True)`` gives the
fraction of stdin/stdout cases, functional cases, asserts or test functions that passed instead). No tests, no
program, or a garbage completion score 0.0: nothing a completion contains makes the reward raise. It does raise
``ValueError`` for a set-up error (no ``tests`` column, a length mismatch) and
:class:`sfpo.code.sandbox.SandboxUnavailableError` when ``SFPO_SANDBOX=bwrap`` asks for a sandbox that cannot run.
Programs run in parallel (``SFPO_CODE_WORKERS`` threads, default: the CPU count), each in a fresh sandbox
(:mod:`sfpo.code.sandbox`), each worker with one tests' sandbox for the batch; identical (program, tests) pairs in a
batch run once. docs/sandbox.md gives the threat model.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sfpo.code import judge, sandbox
from sfpo.code.cases import functional_tests
from sfpo.common.rewards import RewardSpec
from sfpo.common.text import completion_text

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_COMPLETION_CHARS",
    "code_accuracy",
    "code_eval_set",
    "extract_program",
    "make_code_accuracy",
    "parse_tests",
    "run_tests",
    "shape_of_tests",
]

#: Longer completions score 0 without being read (about 100k tokens; the sandbox runs programs of 120 kB at most
#: from the command line, and a reasoning trace around them rarely needs more).
MAX_COMPLETION_CHARS = 400_000
_FENCE = "```"
#: how stdin/stdout cases compare: LiveCodeBench's checker (the default), or line by line
STDOUT_COMPARES = ("livecodebench", "strict")


def extract_program(completion: Any) -> str:
    """The last fenced code block of a completion (its body), else the whole completion; ``""`` for garbage.

    A final fence left open (a truncated completion) gives what follows it. A fence is three backticks, then the
    rest of that line (the language), then the body up to the next three backticks. Plain ``str.find`` scans,
    each from where the last stopped, so the time is linear in the length (regular expressions backtracked
    here: 64k characters of a fence without newlines took 16-23 s); over :data:`MAX_COMPLETION_CHARS` gives ``""``.
    """
    text = completion_text(completion)
    if not text or len(text) > MAX_COMPLETION_CHARS:
        return ""
    block, pos = None, 0
    while True:  # complete blocks, left to right; if the leftmost opening has no close, no later one has
        start = text.find(_FENCE, pos)
        newline = text.find("\n", start + 3) if start >= 0 else -1
        end = text.find(_FENCE, newline + 1) if newline >= 0 else -1
        if end < 0:
            break
        block, pos = (newline + 1, end), end + 3
    opened = None
    while True:  # after the last complete block, the last fence line opens a block that never closes
        start = text.find(_FENCE, pos)
        newline = text.find("\n", start + 3) if start >= 0 else -1
        if newline < 0:
            break
        opened = pos = newline + 1
    if opened is not None:
        return text[opened:].strip("\n")
    if block is not None:
        return text[block[0] : block[1]].strip("\n")
    return text.strip("\n")


def parse_tests(tests: Any) -> list[dict[str, str]] | dict | str | None:
    """Normalise one row's tests: stdin/stdout cases, a functional spec (as ``{"mode": "functional", ...}``), a
    string of test code, or None if unusable."""
    if isinstance(tests, str):
        stripped = tests.strip()
        if stripped.startswith(("[", "{")):
            try:
                decoded = json.loads(stripped)
            except ValueError:
                decoded = None
            if isinstance(decoded, (list, dict)):
                return parse_tests(decoded)
        return tests if stripped else None
    if isinstance(tests, dict):
        return functional_tests(tests)
    if isinstance(tests, Sequence) and not isinstance(tests, (bytes, bytearray)):
        cases = []
        for case in tests:
            if not isinstance(case, dict) or not isinstance(case.get("input"), str):
                return None
            if not isinstance(case.get("output"), str):
                return None
            cases.append({"input": case["input"], "output": case["output"]})
        return cases or None
    return None


def shape_of_tests(tests: Any) -> str | None:
    """How a row's tests are judged: ``"stdin_stdout"`` (stdout compared), ``"calls"`` (test code or a functional
    spec calling the program), or None when unusable."""
    plan = parse_tests(tests)
    if plan is None:
        return None
    return "stdin_stdout" if isinstance(plan, list) else "calls"


def run_tests(
    program: str,
    tests: Any,
    limits: sandbox.Limits | None = None,
    partial: bool = False,
    stdout_compare: str = "livecodebench",
) -> float:
    """Score one program against one row's tests (see the module docstring). Never raises."""
    try:
        plan = parse_tests(tests)
    except Exception:
        logger.exception("reading a row's tests failed; it is scored 0")
        return 0.0
    limits = limits or sandbox.Limits()
    with judge.JudgePool(limits) as pool:
        return _run_plan(program, plan, limits, partial, stdout_compare, pool)


def _run_plan(
    program: str, plan: Any, limits: sandbox.Limits, partial: bool, compare: str, pool: judge.JudgePool
) -> float:
    try:
        if not program.strip() or plan is None or sandbox._check_args([program]) is not None:
            return 0.0
        if isinstance(plan, list):
            fraction = judge.judge_stdio(program, plan, limits, pool.get(), partial=partial, compare=compare)
            return fraction if partial else float(fraction == 1.0)
        row = plan if isinstance(plan, dict) else {"mode": "code", "tests": plan}
        verdict = judge.judge_code(program, {**row, "partial": partial}, limits, pool.get())
        if verdict is None:
            return 0.0
        passed, total, completed = verdict
        if partial:
            return passed / total if total else float(completed)
        return float(completed and passed == total)
    except Exception:  # a reward must not take training down
        logger.exception("running a program failed; it is scored 0")
        return 0.0


def _workers() -> int:
    raw = os.environ.get("SFPO_CODE_WORKERS", "")
    try:
        value = int(raw) if raw.strip() else (os.cpu_count() or 1)
    except ValueError:
        raise ValueError(f"SFPO_CODE_WORKERS={raw!r} is not allowed: it must be an int >= 1") from None
    if value < 1:
        raise ValueError(f"SFPO_CODE_WORKERS={raw!r} is not allowed: it must be an int >= 1")
    return value


def _tests_key(tests: Any) -> str:
    return tests if isinstance(tests, str) else json.dumps(tests, sort_keys=True, default=str)


def make_code_accuracy(
    timeout_s: float = 5.0,
    memory_mb: int = 1024,
    partial: bool = False,
    *,
    name: str | None = None,
    stdout_compare: str = "livecodebench",
) -> Callable[..., list[float]]:
    """Build a code reward with these per-test limits; ``partial=True`` scores the fraction of cases passed;
    ``stdout_compare`` is how stdin/stdout cases compare (:data:`STDOUT_COMPARES`)."""
    if stdout_compare not in STDOUT_COMPARES:
        raise ValueError(
            f"stdout_compare={stdout_compare!r} is not allowed: use {' or '.join(map(repr, STDOUT_COMPARES))}"
        )
    try:
        limits = sandbox.Limits(timeout_s=float(timeout_s), memory_mb=int(memory_mb))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"code reward options: {exc}") from None
    if not math.isfinite(limits.timeout_s):
        raise ValueError(f"timeout_s must be a finite number of seconds, got {timeout_s}")
    fn_name = name or ("code_accuracy_partial" if partial else "code_accuracy")

    def reward(completions: Sequence[Any], tests: Any = None, **kwargs: Any) -> list[float]:
        n = len(completions)
        if tests is None:
            raise ValueError(
                f"reward {fn_name!r} needs the tests: the dataset must have a 'tests' column "
                "(the code dataset recipes and code tasks provide one)"
            )
        if isinstance(tests, str) or not isinstance(tests, Sequence):
            tests = [tests] * n
        if len(tests) != n:
            raise ValueError(f"reward {fn_name!r}: {n} completions but {len(tests)} test sets")
        sandbox.mode()  # a sandbox that was required but cannot run is a set-up error: raised, not scored 0
        out = [0.0] * n
        try:
            # each distinct test set is read (and its test code parsed) once per batch: the rollouts of a
            # prompt share it, and stdin/stdout suites can be megabytes of JSON
            keys = [_tests_key(t) for t in tests]
            plans: dict[str, Any] = {}
            for key, row_tests in zip(keys, tests):
                if key not in plans:
                    try:
                        plans[key] = parse_tests(row_tests)
                    except Exception:
                        logger.exception("reading a row's tests failed; it is scored 0")
                        plans[key] = None
            jobs: dict[tuple[str, str], tuple[str, Any, list[int]]] = {}
            for i, (completion, key) in enumerate(zip(completions, keys)):
                program = extract_program(completion)
                if program.strip() and plans[key] is not None:
                    jobs.setdefault((program, key), (program, plans[key], []))[2].append(i)
            if jobs:
                items = list(jobs.values())
                with judge.JudgePool(limits) as judges:
                    with ThreadPoolExecutor(max_workers=min(_workers(), len(items))) as pool:
                        scores = list(
                            pool.map(
                                lambda job: _run_plan(job[0], job[1], limits, partial, stdout_compare, judges),
                                items,
                            )
                        )
                for (_, _, rows), score in zip(items, scores):
                    for i in rows:
                        out[i] = score
        except Exception:
            logger.exception("code reward failed; the batch is scored 0")
        return out

    reward.__name__ = reward.__qualname__ = fn_name
    reward.__doc__ = f"{fn_name}: programs run against their tests in the sandbox ({timeout_s:g} s per test)."
    return reward


code_accuracy = make_code_accuracy(name="code_accuracy")
code_accuracy_partial = make_code_accuracy(partial=True, name="code_accuracy_partial")

# The code rewards recipes name, with the options each takes (per-test limits of the sandbox).
CODE_REWARDS: dict[str, RewardSpec] = {
    spec.name: spec
    for spec in (
        RewardSpec("code_accuracy", functools.partial(make_code_accuracy, name="code_accuracy"),
                   ("timeout_s", "memory_mb", "stdout_compare"), code_accuracy),
        RewardSpec("code_accuracy_partial",
                   functools.partial(make_code_accuracy, partial=True, name="code_accuracy_partial"),
                   ("timeout_s", "memory_mb", "stdout_compare"), code_accuracy_partial),
    )
}


def code_eval_set(name: str, ds, reward: Callable[..., list[float]] | None = None):
    """An :class:`sfpo.common.evaluate.EvalSet` for a code dataset (columns ``prompt``, ``tests``, ``id``): a sample is
    correct when its program passes every test (pass@1; avg@n over n samples). Its ``test_shapes`` counts the
    problems per shape of tests (:func:`shape_of_tests`), which ``sfpo eval`` prints."""
    from sfpo.common.evaluate import EvalSet

    scorer = reward or code_accuracy

    def score(completions: Sequence[Any], answer: Sequence[Any], **kwargs: Any) -> list[float]:
        return scorer(completions, tests=list(answer))

    tests = list(ds["tests"])
    shapes = {"calls": 0, "stdin_stdout": 0}
    for t in tests:
        shape = shape_of_tests(t)
        if shape is not None:
            shapes[shape] += 1
    return EvalSet(
        name,
        list(ds["prompt"]),
        tests,
        score,
        ids=list(ds["id"]),
        extract=extract_program,
        test_shapes=shapes,
    )
