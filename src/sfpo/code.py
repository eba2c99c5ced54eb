"""Execution rewards for code generation: run the completion's program against its tests in the sandbox.

``code_accuracy(completions, tests, **kwargs)`` has TRL's reward signature (``tests`` is the dataset column
of that name). The program is the last fenced code block of a completion (```` ```python ```` or plain
```` ``` ````), or the whole completion when it has none. ``tests[i]`` is one of:

- a list of ``{"input": str, "output": str}`` cases (or that list as a JSON string, which is how the
  dataset recipes store it): the program reads ``input`` on stdin and its stdout must equal ``output``,
  compared line by line after stripping trailing whitespace (trailing blank lines ignored);
- a string of Python test code (asserts, MBPP / HumanEval style), run after the program in the same
  process. It passes only when the test code runs to its end: a program that exits early (``sys.exit(0)``,
  ``os._exit(0)``) before the asserts has not passed.

The score is 1.0 when every test ran and passed, else 0.0 (``make_code_accuracy(partial=True)`` gives the
fraction of stdin/stdout cases passed instead). No tests, no program, or a garbage completion score 0.0:
nothing a completion contains makes the reward raise. It does raise ``ValueError`` for a set-up error (no
``tests`` column, a length mismatch) and :class:`sfpo.sandbox.SandboxUnavailableError` when
``SFPO_SANDBOX=bwrap`` asks for a sandbox that cannot run. Programs run in parallel (``SFPO_CODE_WORKERS`` threads, default: the CPU count),
each test in a fresh sandbox (:mod:`sfpo.sandbox`); identical (program, tests) pairs in a batch run once.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import secrets
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sfpo import sandbox

logger = logging.getLogger(__name__)

__all__ = [
    "code_accuracy",
    "code_eval_set",
    "extract_program",
    "make_code_accuracy",
    "parse_tests",
    "run_tests",
]

_FENCE_RE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)```", re.DOTALL)
_OPEN_FENCE_RE = re.compile(r"```[ \t]*[\w+#.-]*[^\n]*\n")


def _text(completion: Any) -> str:
    from sfpo.rewards import _completion_text

    return _completion_text(completion)


def extract_program(completion: Any) -> str:
    """The last fenced code block of a completion (its body), else the whole completion; ``""`` for garbage.

    A final fence left open (a truncated completion) gives what follows it.
    """
    text = _text(completion)
    if not text:
        return ""
    blocks = list(_FENCE_RE.finditer(text))
    tail_start = blocks[-1].end() if blocks else 0
    opened = list(_OPEN_FENCE_RE.finditer(text, tail_start))
    if opened:  # an unterminated last block
        return text[opened[-1].end() :].strip("\n")
    if blocks:
        return blocks[-1].group(2).strip("\n")
    return text.strip("\n")


def parse_tests(tests: Any) -> list[dict[str, str]] | str | None:
    """Normalise one row's tests: a list of stdin/stdout cases, a string of test code, or None if unusable."""
    if isinstance(tests, str):
        stripped = tests.strip()
        if stripped.startswith("["):
            try:
                decoded = json.loads(stripped)
            except ValueError:
                decoded = None
            if isinstance(decoded, list):
                return parse_tests(decoded)
        return tests if stripped else None
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


# Runs the program, then the tests, in one namespace; prints a fresh nonce only if the tests ran to their end.
# The nonce arrives on stdin (read before the program starts) and the write function is bound beforehand,
# so exiting early, or replacing sys.exit / os.write, cannot produce it.
_ASSERT_RUNNER = """
def _sfpo_run():
    import json, os, sys, io
    payload = json.loads(sys.stdin.read())
    sys.stdin = io.StringIO("")
    write, nonce = os.write, payload.pop("nonce").encode()
    scope = {"__name__": "__main__", "__builtins__": __builtins__}
    exec(compile(payload.pop("program"), "<program>", "exec"), scope)
    exec(compile(payload.pop("tests"), "<tests>", "exec"), scope)
    try:
        sys.stdout.flush()
    except Exception:
        pass
    write(1, b"\\n" + nonce + b"\\n")
_sfpo_run()
"""


def run_tests(program: str, tests: Any, limits: sandbox.Limits | None = None, partial: bool = False) -> float:
    """Score one program against one row's tests (see the module docstring). Never raises."""
    try:
        parsed = parse_tests(tests)
        if not program.strip() or parsed is None:
            return 0.0
        if isinstance(parsed, str):
            nonce = secrets.token_hex(16)
            payload = json.dumps({"nonce": nonce, "program": program, "tests": parsed}).encode()
            result = sandbox.run_python(["-c", _ASSERT_RUNNER], payload, limits)
            return float(result.ok and result.stdout.rstrip(b"\n").endswith(b"\n" + nonce.encode()))
        passed = 0
        for case in parsed:
            result = sandbox.run_python(["-c", program], case["input"].encode(), limits)
            if result.ok and _same_output(result.stdout, case["output"]):
                passed += 1
            elif not partial:
                return 0.0
        return passed / len(parsed)
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


def _key(program: str, tests: Any) -> str:
    return (
        program
        + "\x00"
        + (tests if isinstance(tests, str) else json.dumps(tests, sort_keys=True, default=str))
    )


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
            jobs: dict[str, tuple[str, Any, list[int]]] = {}
            for i, (completion, row_tests) in enumerate(zip(completions, tests)):
                program = extract_program(completion)
                if program.strip():
                    key = _key(program, row_tests)
                    jobs.setdefault(key, (program, row_tests, []))[2].append(i)
            if jobs:
                items = list(jobs.values())
                with ThreadPoolExecutor(max_workers=min(_workers(), len(items))) as pool:
                    scores = list(pool.map(lambda job: run_tests(job[0], job[1], limits, partial), items))
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


def code_eval_set(name: str, ds, reward: Callable[..., list[float]] | None = None):
    """An :class:`sfpo.evaluate.EvalSet` for a code dataset (columns ``prompt``, ``tests``, ``id``): a sample is
    correct when its program passes every test (pass@1; avg@n over n samples)."""
    from sfpo.evaluate import EvalSet

    scorer = reward or code_accuracy

    def score(completions: Sequence[Any], answer: Sequence[Any], **kwargs: Any) -> list[float]:
        return scorer(completions, tests=list(answer))

    return EvalSet(
        name, list(ds["prompt"]), list(ds["tests"]), score, ids=list(ds["id"]), extract=extract_program
    )
