"""Execution rewards for code generation: run the completion's program against its tests in the sandbox.

``code_accuracy(completions, tests, **kwargs)`` has TRL's reward signature (``tests`` is the dataset column
of that name). The program is the last fenced code block of a completion (```` ```python ```` or plain
```` ``` ````), or the whole completion when it has none; completions over :data:`MAX_COMPLETION_CHARS`
characters score 0 unread. ``tests[i]`` takes one of three shapes, and in each the verdict is made outside the
process that ran the program, except in the third:

- **stdin/stdout**: a list of ``{"input": str, "output": str}`` cases (or that list as a JSON string, which is
  how the dataset recipes store it): the program reads ``input`` on stdin and its stdout must equal ``output``,
  compared on the host line by line after stripping trailing whitespace (trailing blank lines ignored);
- **calls**: a string of Python test code (asserts, MBPP / HumanEval style) that :mod:`sfpo.code.cases` parses
  on the host into calls and expected values, or a LiveCodeBench functional spec (``{"fn_name", "inputs",
  "outputs"}``, as a dict or its JSON). Only the calls enter the sandbox; their values come back as data and are
  compared on the host, type-strictly, with expected values the program never sees;
- **in-process**: test code the parser does not take (loops, ``if``, random inputs). It runs after the program
  in the program's process under a hardened runner (``_run_asserts.py``: an audit hook, fresh builtins and
  modules, a fresh nonce printed only when the tests ran to their end), in a sandbox without ``/proc``. It is
  counted: the reward logs ``code/in_process_fraction`` through TRL's ``log_metric``, and ``sfpo eval`` prints
  how many problems of each benchmark run this way. docs/sandbox.md says what these tests still trust.

The score is 1.0 when every test ran and passed, else 0.0 (``make_code_accuracy(partial=True)`` gives the
fraction of stdin/stdout cases, or of parsed checks, that passed instead). No tests, no program, or a garbage
completion score 0.0: nothing a completion contains makes the reward raise. It does raise ``ValueError`` for a
set-up error (no ``tests`` column, a length mismatch) and :class:`sfpo.code.sandbox.SandboxUnavailableError` when
``SFPO_SANDBOX=bwrap`` asks for a sandbox that cannot run. Programs run in parallel (``SFPO_CODE_WORKERS``
threads, default: the CPU count), each test in a fresh sandbox (:mod:`sfpo.code.sandbox`); identical (program, tests)
pairs in a batch run once.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import secrets
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sfpo.code import sandbox
from sfpo.code.cases import (
    CallTests,
    decode_results,
    functional_tests,
    in_process_modules,
    parse_call_tests,
    score_checks,
)
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
_CALL_RUNNER = Path(__file__).with_name("_run_calls.py").read_text(encoding="utf-8")
_ASSERT_RUNNER = Path(__file__).with_name("_run_asserts.py").read_text(encoding="utf-8")


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


def parse_tests(tests: Any) -> list[dict[str, str]] | CallTests | str | None:
    """Normalise one row's tests: stdin/stdout cases, a functional spec (as :class:`CallTests`), a string of test
    code, or None if unusable."""
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


def _plan(tests: Any) -> list[dict[str, str]] | CallTests | str | None:
    """parse_tests, then test code parsed into calls where it can be (a string stays a string: in-process)."""
    parsed = parse_tests(tests)
    if isinstance(parsed, str):
        return parse_call_tests(parsed) or parsed
    return parsed


def shape_of_tests(tests: Any) -> str | None:
    """How a row's tests are judged: ``"stdin_stdout"``, ``"calls"`` (on the host), ``"in_process"``, or None."""
    plan = _plan(tests)
    if plan is None:
        return None
    return (
        "calls" if isinstance(plan, CallTests) else "in_process" if isinstance(plan, str) else "stdin_stdout"
    )


def _same_output(got: bytes, want: str) -> bool:
    try:
        text = got.decode("utf-8")
    except UnicodeDecodeError:
        return False
    a = [line.rstrip() for line in text.splitlines()]
    b = [line.rstrip() for line in want.splitlines()]
    while a and not a[-1]:
        a.pop()
    while b and not b[-1]:
        b.pop()
    return a == b


def run_tests(program: str, tests: Any, limits: sandbox.Limits | None = None, partial: bool = False) -> float:
    """Score one program against one row's tests (see the module docstring). Never raises."""
    try:
        plan = _plan(tests)
    except Exception:
        logger.exception("reading a row's tests failed; it is scored 0")
        return 0.0
    return _run_plan(program, plan, limits, partial)


def _run_plan(program: str, plan: Any, limits: sandbox.Limits | None, partial: bool) -> float:
    try:
        if not program.strip() or plan is None:
            return 0.0
        if isinstance(plan, CallTests):
            payload = json.dumps(plan.payload(program)).encode()
            result = sandbox.run_python(["-c", _CALL_RUNNER], payload, limits)
            values = decode_results(result.stdout, len(plan.calls)) if result.ok else None
            passed, total = score_checks(plan, values)
            if total == 0:  # nothing asserted: the program (and the set-up) must run, as before
                return float(values is not None)
            return passed / total if partial else float(passed == total)
        if isinstance(plan, str):
            nonce = secrets.token_hex(16)
            modules, free = in_process_modules(plan)
            payload = json.dumps(
                {"nonce": nonce, "program": program, "tests": plan, "modules": modules, "free_modules": free}
            ).encode()
            result = sandbox.run_python(["-c", _ASSERT_RUNNER], payload, limits, proc=False)
            return float(result.ok and result.stdout.rstrip(b"\n").endswith(b"\n" + nonce.encode()))
        passed = 0
        for case in plan:
            result = sandbox.run_python(["-c", program], case["input"].encode(), limits)
            if result.ok and _same_output(result.stdout, case["output"]):
                passed += 1
            elif not partial:
                return 0.0
        return passed / len(plan)
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
) -> Callable[..., list[float]]:
    """Build a code reward with these per-test limits; ``partial=True`` scores the fraction of cases passed."""
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
                        plans[key] = _plan(row_tests)
                    except Exception:
                        logger.exception("reading a row's tests failed; it is scored 0")
                        plans[key] = None
            log_metric = kwargs.get("log_metric")
            if callable(log_metric) and n:
                log_metric("code/in_process_fraction", sum(isinstance(plans[k], str) for k in keys) / n)
            jobs: dict[tuple[str, str], tuple[str, Any, list[int]]] = {}
            for i, (completion, key) in enumerate(zip(completions, keys)):
                program = extract_program(completion)
                if program.strip() and plans[key] is not None:
                    jobs.setdefault((program, key), (program, plans[key], []))[2].append(i)
            if jobs:
                items = list(jobs.values())
                with ThreadPoolExecutor(max_workers=min(_workers(), len(items))) as pool:
                    scores = list(pool.map(lambda job: _run_plan(job[0], job[1], limits, partial), items))
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
                   ("timeout_s", "memory_mb"), code_accuracy),
        RewardSpec("code_accuracy_partial",
                   functools.partial(make_code_accuracy, partial=True, name="code_accuracy_partial"),
                   ("timeout_s", "memory_mb"), code_accuracy_partial),
    )
}


def code_eval_set(name: str, ds, reward: Callable[..., list[float]] | None = None):
    """An :class:`sfpo.common.evaluate.EvalSet` for a code dataset (columns ``prompt``, ``tests``, ``id``): a sample is
    correct when its program passes every test (pass@1; avg@n over n samples). Its ``test_shapes`` counts the
    problems per way of judging (:func:`shape_of_tests`), which ``sfpo eval`` prints."""
    from sfpo.common.evaluate import EvalSet

    scorer = reward or code_accuracy

    def score(completions: Sequence[Any], answer: Sequence[Any], **kwargs: Any) -> list[float]:
        return scorer(completions, tests=list(answer))

    tests = list(ds["tests"])
    shapes = {"calls": 0, "stdin_stdout": 0, "in_process": 0}
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
