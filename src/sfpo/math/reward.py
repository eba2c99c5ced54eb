"""Rule-based math rewards for TRL's GRPO trainer (and so for SFPO); the code rewards are in :mod:`sfpo.code.reward`.

Every reward here has TRL's reward-function signature, ``fn(completions, **kwargs) -> list[float]``:
``completions`` are plain strings or conversational lists (``[{"role": "assistant", "content": ...}]``),
the gold answers come from the dataset's ``answer`` column (TRL passes every column as a keyword), and any
other keyword TRL adds (``prompts``, ``trainer_state``, ``completion_ids``, ``log_metric`` ...) is ignored.

==========================  ==================================================================================
name                        reward
==========================  ==================================================================================
``math_accuracy``           1.0 when the last ``\\boxed{}`` answer verifies against the gold answer, else 0.0
``math_accuracy_format``    the reference code's variant: 1.0 correct, 0.1 when a boxed answer exists but is
                            wrong, 0.0 without a boxed answer (docs/algorithm.md#where-the-paper-is-silent)
``boxed_format``            1.0 when the completion contains a non-empty ``\\boxed{}`` answer
==========================  ==================================================================================

``make_math_accuracy(format_score=..., timeout_s=...)`` builds other variants (YAML recipes set the format
score through it).

Answer checking
---------------
:func:`is_correct` uses math-verify (``parse`` + ``verify``). math-verify's own timeouts rely on
``signal.alarm``, which only works on the main thread, so it is called in its timeout-free mode inside a
small pool of persistent worker processes, and the guard is ours: each check has a wall-clock limit (a soft
``setitimer`` alarm in the worker, then a hard kill from the parent, after which the worker is replaced) and
each worker has an address-space cap (``RLIMIT_AS``). Workers are plain ``python -c`` subprocesses talking
JSON lines over pipes, so they never re-import the caller's ``__main__`` and are safe to start from any
thread, and a forked child gets a fresh pool of its own.

Cheap checks run before any worker is asked: answers over :data:`MAX_ANSWER_CHARS` are wrong, identical
strings (ignoring whitespace) are right, two plain numbers are compared exactly (``1,000`` == ``1000.0``),
and exponent towers three or more levels deep (``10^{10^{10^{10}}}``) that differ from the gold string are
wrong without being evaluated. Before comparing, both sides are lightly cleaned: surrounding ``$``, a
trailing period, thin-space digit groups (``1\\,000``) and trailing unit words (``5 cm``, ``\\text{18
dollars}``) are removed.

Forms known to verify: ``\\frac{1}{2}`` = ``0.5`` = ``1/2`` = ``\\dfrac12``; ``[1, 3)``; ``5\\%`` = ``5`` (and
``0.05``); ``x = 3`` = ``3``; ``\\sqrt{2}/2`` = ``\\frac{\\sqrt2}{2}``; ``1,000`` = ``1{,}000`` = ``1000``;
``2\\pi`` = ``6.283185307``; ``\\{1,2\\}`` = ``\\{2,1\\}``; ``90^\\circ`` = ``90``; ``\\$18`` = ``18``.
Forms that do not verify (math-verify limits): words for numbers (``\\text{ten}`` vs ``10``), an open
interval against a point (``(1,2)`` is an interval, so it never equals the tuple ``(2,1)``, as intended),
and multi-letter unit words directly glued to a number inside math (``18dollars``).

Worker settings come from the environment: ``SFPO_REWARD_WORKERS`` (default: CPUs, at most 4) and
``SFPO_REWARD_WORKER_MEM_MB`` (default 1024; 0 turns the cap off).
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import re
import selectors
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from functools import partial
from pathlib import Path
from typing import Any

from sfpo.common.rewards import RewardSpec
from sfpo.common.text import completion_text, extract_answer, extract_boxed

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_ANSWER_CHARS",
    "boxed_format",
    "check_many",
    "is_correct",
    "make_math_accuracy",
    "math_accuracy",
    "math_accuracy_format",
    "normalize_gold",
    "shutdown_verifier",
]

RewardFn = Callable[..., list[float]]

#: A predicted answer longer than this is scored wrong without parsing it: real final answers are short and
#: parsing cost grows with length.
MAX_ANSWER_CHARS = 1000
#: Gold answers longer than this are only compared as strings (they come from data, but stay bounded).
MAX_GOLD_CHARS = 4000

_STARTUP_TIMEOUT_S = 60.0  # a worker imports sympy; on a loaded machine this can take a while
_HARD_GRACE_S = 1.0  # the parent kills a worker this long after its own soft alarm should have fired
_MAX_START_FAILURES = 3  # per batch; past it the batch gives up on workers instead of looping


_UNESCAPED_DOLLAR_RE = re.compile(r"(?<!\\)\$")
_THOUSANDS_RE = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


def normalize_gold(answer: Any) -> str:
    """Gold answer as a clean string.

    GSM8K solutions keep what follows ``####``; a full solution holding ``\\boxed{}`` keeps its last box;
    numbers lose their thousands commas (``1,000`` -> ``1000``); unescaped ``$`` go; a float that is a whole
    number prints as an integer (``27.0`` -> ``27``); a list (OlympiadBench's multi-part answers) is joined
    with ``", "``; ``None`` gives ``""``.
    """
    if answer is None:
        return ""
    if isinstance(answer, (list, tuple)):
        return ", ".join(part for part in (normalize_gold(a) for a in answer) if part)
    if isinstance(answer, float) and math.isfinite(answer) and answer.is_integer():
        answer = int(answer)
    text = str(answer)
    if "####" in text:
        text = text.rsplit("####", 1)[1]
    elif "\\boxed" in text or "\\fbox" in text:
        boxed = extract_boxed(text)
        if boxed:
            text = boxed
    # Math delimiters ($2$, $-2$) carry no meaning in an answer string; an escaped \$ (currency) stays.
    text = _UNESCAPED_DOLLAR_RE.sub("", text).strip()
    if _THOUSANDS_RE.fullmatch(text):
        text = text.replace(",", "")
    return text


# --------------------------------------------------------------------------------------------------------
# Cheap checks before math-verify
# --------------------------------------------------------------------------------------------------------

_NUM = r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[+-]?\.\d+"
_NUMBER_RE = re.compile(_NUM)
_DIGIT_GROUP_RE = re.compile(r"(?<=\d)\\[,;:! ]\s*(?=\d{3})")
_CURRENCY_RE = re.compile(r"(?:\\\$|\$)\s*(" + _NUM + r")")
_TEXT_NUMBER_RE = re.compile(r"\\(?:text|textbf|mbox|mathrm)\{\s*(" + _NUM + r")\s*([A-Za-z][A-Za-z .]*)?\}")
_TEXT_UNIT_RE = re.compile(r"(" + _NUM + r")\s*\\(?:text|mbox|mathrm)\{\s*([A-Za-z][A-Za-z .]*)\}")
_NUMBER_WORDS_RE = re.compile(r"(?:\\\$|\$)?\s*(" + _NUM + r")\s+([A-Za-z]{2,}(?:\s+[A-Za-z]{2,})*)")
# Words that change a number's value, so "2 pi" must not become "2".
# fmt: off
_MATH_WORDS = frozenset({
    "pi", "sqrt", "inf", "infty", "infinity", "log", "ln", "exp", "sin", "cos", "tan", "sec", "csc", "cot",
    "arcsin", "arccos", "arctan", "mod", "choose", "times", "cdot", "over",
})
# fmt: on


def _strip_units(s: str) -> str:
    m = _CURRENCY_RE.fullmatch(s)
    if m:
        return m.group(1)
    m = _TEXT_NUMBER_RE.fullmatch(s)
    if m and not (m.group(2) and set(m.group(2).lower().split()) & _MATH_WORDS):
        return m.group(1)
    m = _TEXT_UNIT_RE.fullmatch(s) or _NUMBER_WORDS_RE.fullmatch(s)
    if m and not set(m.group(2).lower().split()) & _MATH_WORDS:
        return m.group(1)
    return s


def _clean(s: str) -> str:
    """Light, meaning-preserving cleanup applied to both sides before comparing."""
    s = s.replace("\x00", "").strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if len(s) > len(left) + len(right) and s.startswith(left) and s.endswith(right):
            s = s[len(left) : len(s) - len(right)].strip()
            break
    s = s.rstrip(". ").strip()
    s = _DIGIT_GROUP_RE.sub("", s)  # 1\,000 -> 1000 (math-verify reads it as 1*0)
    return _strip_units(s)


def _exponent_depth(s: str) -> int:
    """How deeply exponents nest (``10^{10^{10}}`` is 3); a cheap guard against towers."""
    stack: list[bool] = []  # one entry per open brace: was it opened as an exponent?
    depth = best = 0
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == "^" or (c == "*" and s.startswith("**", i)):
            j = i + (2 if c == "*" else 1)
            while j < n and s[j] == " ":
                j += 1
            if j < n and s[j] == "{":
                stack.append(True)
                depth += 1
                best = max(best, depth)
                i = j + 1
            else:
                best = max(best, depth + 1)
                i = j + 1
            continue
        if c == "{":
            stack.append(False)
        elif c == "}" and stack and stack.pop():
            depth -= 1
        i += 1
    return best


def _quick_verdict(pred: str, gold: str) -> bool | None:
    """True/False when a cheap rule decides, None when math-verify must."""
    if not pred or not gold:
        return False
    if len(pred) > MAX_ANSWER_CHARS:
        return False
    if pred == gold or "".join(pred.split()) == "".join(gold.split()):
        return True
    p_num, g_num = _NUMBER_RE.fullmatch(pred), _NUMBER_RE.fullmatch(gold)
    if p_num and g_num:
        try:
            if Decimal(pred.replace(",", "")) == Decimal(gold.replace(",", "")):
                return True
        except InvalidOperation:
            return None
        if "." not in pred and "." not in gold:
            return False  # two different integers; decimals go on to math-verify's rounding rules
    if _exponent_depth(pred) >= 3:
        return False
    if len(gold) > MAX_GOLD_CHARS:
        return False
    return None


# --------------------------------------------------------------------------------------------------------
# Worker side (runs in the subprocess)
# --------------------------------------------------------------------------------------------------------


class _SoftTimeout(BaseException):
    """Raised by the worker's own alarm; a BaseException so math-verify's ``except Exception`` lets it by."""


def _worker_main() -> None:  # pragma: no cover - runs in the subprocess
    import resource
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    mem_mb = int(os.environ.get("SFPO_REWARD_WORKER_MEM_MB", "1024") or 0)
    if mem_mb > 0:
        try:
            limit = mem_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ValueError, OSError):
            pass
    # The protocol owns the real stdout; anything a library prints goes to stderr instead.
    proto = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    for name in ("math_verify", "latex2sympy2_extended"):
        logging.getLogger(name).setLevel(logging.CRITICAL)

    from functools import lru_cache

    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]

    @lru_cache(maxsize=2048)
    def parsed(s: str) -> tuple:
        out = parse("\\boxed{" + s + "}", extraction_config=config, parsing_timeout=None)
        if not out:
            out = parse(s, extraction_config=config, parsing_timeout=None)
        return tuple(out)

    def on_alarm(signum, frame):
        raise _SoftTimeout()

    signal.signal(signal.SIGALRM, on_alarm)
    verify(list(parsed("1")), list(parsed("1")), timeout_seconds=None)  # warm the parser up
    proto.write(b"R\n")
    for line in sys.stdin.buffer:
        ok = False
        try:
            req = json.loads(line)
            signal.setitimer(signal.ITIMER_REAL, max(0.05, float(req["t"])))
            try:
                gold, pred = parsed(req["g"]), parsed(req["p"])
                ok = bool(gold and pred and verify(list(gold), list(pred), timeout_seconds=None))
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except BaseException:
            ok = False
        proto.write(b"1\n" if ok else b"0\n")


# --------------------------------------------------------------------------------------------------------
# Parent side: the pool
# --------------------------------------------------------------------------------------------------------

_WORKER_CODE = "import sfpo.math.reward as r; r._worker_main()"


def _default_workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    value = os.environ.get("SFPO_REWARD_WORKERS", "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            logger.warning("SFPO_REWARD_WORKERS=%r is not an integer; using the default", value)
    return max(1, min(4, cpus))


class _Worker:
    __slots__ = ("buf", "deadline", "fd", "proc", "ready", "task")

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.fd = proc.stdout.fileno()
        self.buf = b""
        self.ready = False
        self.task: int | None = None
        self.deadline: float | None = time.monotonic() + _STARTUP_TIMEOUT_S

    def send(self, payload: bytes) -> None:
        view = memoryview(payload)
        while view:
            written = self.proc.stdin.write(view)
            view = view[written or 0 :]

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=2)
        except (subprocess.TimeoutExpired, OSError):
            pass

    def alive(self) -> bool:
        return self.proc.poll() is None


class _VerifierPool:
    """Persistent math-verify workers shared by all threads of one process."""

    def __init__(self, size: int):
        self.size = size
        self.pid = os.getpid()
        self._idle: list[_Worker] = []
        self._count = 0  # live workers, idle or checked out
        self._cond = threading.Condition()

    # -- worker lifecycle ---------------------------------------------------------------------------------
    @staticmethod
    def _spawn() -> _Worker | None:
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parents[2])  # the folder holding the sfpo package
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _WORKER_CODE],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,
                env=env,
                close_fds=True,
            )
        except OSError as exc:
            logger.error("could not start a math-verify worker: %s", exc)
            return None
        return _Worker(proc)

    def _checkout(self, want: int) -> list[_Worker]:
        with self._cond:
            while not self._idle and self._count >= self.size:
                self._cond.wait()
            got = self._idle[:want]
            del self._idle[:want]
            n_new = max(0, min(want - len(got), self.size - self._count))
            self._count += n_new
        for _ in range(n_new):
            w = self._spawn()
            if w is None:
                with self._cond:
                    self._count -= 1
            else:
                got.append(w)
        return got

    def _checkin(self, workers: list[_Worker]) -> None:
        with self._cond:
            for w in workers:
                if w.alive() and w.task is None:  # ready, or still starting: both are worth keeping
                    self._idle.append(w)
                else:
                    w.kill()
                    self._count -= 1
            self._cond.notify_all()

    def shutdown(self) -> None:
        with self._cond:
            idle, self._idle = self._idle, []
            self._count -= len(idle)
        for w in idle:
            w.kill()

    def forget_after_fork(self) -> None:
        """In a forked child: drop the parent's pipes without touching the parent's workers."""
        for w in self._idle:
            for stream in (w.proc.stdin, w.proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
        self._idle = []

    # -- the batch loop -----------------------------------------------------------------------------------
    def run(self, tasks: Sequence[tuple[str, str]], timeout_s: float) -> list[bool]:
        results = [False] * len(tasks)
        if not tasks:
            return results
        pending = deque(range(len(tasks)))
        sends = [0] * len(tasks)
        workers = self._checkout(min(len(tasks), self.size))
        sel = selectors.DefaultSelector()
        start_failures = 0
        for w in workers:
            sel.register(w.fd, selectors.EVENT_READ, w)

        def replace(w: _Worker) -> None:
            nonlocal start_failures
            sel.unregister(w.fd)
            if not w.ready:
                start_failures += 1
            w.kill()
            workers.remove(w)
            if start_failures >= _MAX_START_FAILURES:
                with self._cond:
                    self._count -= 1
                return
            new = self._spawn()
            if new is None:
                with self._cond:
                    self._count -= 1
                return
            workers.append(new)
            sel.register(new.fd, selectors.EVENT_READ, new)

        try:
            while pending or any(w.task is not None for w in workers):
                if not workers:
                    logger.error(
                        "math-verify workers could not be started; %d answers scored as wrong", len(pending)
                    )
                    break
                now = time.monotonic()
                for w in list(workers):
                    if w.ready and w.task is None and pending:
                        i = pending.popleft()
                        pred, gold = tasks[i]
                        payload = json.dumps({"p": pred, "g": gold, "t": timeout_s}).encode() + b"\n"
                        try:
                            w.send(payload)
                        except OSError:
                            sends[i] += 1
                            if sends[i] < 2:
                                pending.appendleft(i)  # the worker was already gone: retry elsewhere once
                            replace(w)
                            continue
                        sends[i] += 1
                        w.task = i
                        w.deadline = now + timeout_s + _HARD_GRACE_S
                deadlines = [w.deadline for w in workers if w.deadline is not None]
                wait = max(0.0, min(deadlines) - now) if deadlines else 0.0
                for key, _ in sel.select(wait):
                    w = key.data
                    if w not in workers:
                        continue
                    try:
                        data = os.read(w.fd, 4096)
                    except OSError:
                        data = b""
                    if not data:  # the worker died (crash, memory cap): its task counts as wrong
                        replace(w)
                        continue
                    w.buf += data
                    while b"\n" in w.buf:
                        line, w.buf = w.buf.split(b"\n", 1)
                        if line == b"R":
                            w.ready, w.deadline = True, None
                        elif w.task is not None:
                            results[w.task] = line == b"1"
                            w.task, w.deadline = None, None
                now = time.monotonic()
                for w in list(workers):
                    if w.deadline is not None and now >= w.deadline:
                        if w.task is None:
                            logger.warning(
                                "a math-verify worker did not start within %.0f s", _STARTUP_TIMEOUT_S
                            )
                        replace(w)  # a timed-out task keeps its False
        finally:
            sel.close()
            self._checkin(workers)
        return results


_POOL: _VerifierPool | None = None
_POOL_LOCK = threading.Lock()


def _get_pool() -> _VerifierPool:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.pid != os.getpid():
            _POOL = _VerifierPool(_default_workers())
        return _POOL


def shutdown_verifier() -> None:
    """Stop the idle math-verify workers (they restart on the next check)."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None and pool.pid == os.getpid():
        pool.shutdown()


def _after_fork_in_child() -> None:
    global _POOL, _POOL_LOCK
    _POOL_LOCK = threading.Lock()
    if _POOL is not None:
        _POOL.forget_after_fork()
    _POOL = None


atexit.register(shutdown_verifier)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# --------------------------------------------------------------------------------------------------------
# Public checks
# --------------------------------------------------------------------------------------------------------


def check_many(pairs: Sequence[tuple[Any, Any]], timeout_s: float = 5.0) -> list[bool]:
    """:func:`is_correct` for many ``(pred, gold)`` pairs at once: duplicates are checked once and the
    rest are spread over the worker pool. Never raises; a failure or timeout counts as wrong."""
    out = [False] * len(pairs)
    try:
        timeout_s = float(timeout_s) if timeout_s and timeout_s > 0 else 5.0
        todo: dict[tuple[str, str], list[int]] = {}
        for i, (pred, gold) in enumerate(pairs):
            if not isinstance(pred, str) or not isinstance(gold, str) or len(pred) > 4 * MAX_ANSWER_CHARS:
                continue  # wrong without even cleaning it: the cleanup is linear but not free on megabytes
            p, g = _clean(pred), _clean(gold)
            verdict = _quick_verdict(p, g)
            if verdict is None:
                todo.setdefault((p, g), []).append(i)
            else:
                out[i] = verdict
        if todo:
            keys = list(todo)
            verdicts = _get_pool().run(keys, timeout_s)
            for key, ok in zip(keys, verdicts):
                for i in todo[key]:
                    out[i] = ok
    except Exception:  # a reward must not take training down
        logger.exception("answer checking failed; the affected answers are scored as wrong")
    return out


def is_correct(pred: str, gold: str, timeout_s: float = 5.0) -> bool:
    """Whether the predicted answer ``pred`` equals ``gold`` mathematically (math-verify, guarded).

    Both are answer strings (not whole completions): use :func:`extract_boxed` / :func:`extract_answer` and
    :func:`normalize_gold` first. Bounded by about ``timeout_s`` + 1 s per check (the very first call also
    waits for the worker processes to start, about a second). Never raises.
    """
    return check_many([(pred, gold)], timeout_s)[0]


# --------------------------------------------------------------------------------------------------------
# Reward functions
# --------------------------------------------------------------------------------------------------------


def _golds(answer: Any, n: int, reward_name: str) -> list[str]:
    if answer is None:
        raise ValueError(
            f"reward {reward_name!r} needs the gold answers: the dataset must have an 'answer' column "
            "(sfpo.app.catalog.load_dataset_recipe provides one)"
        )
    if isinstance(answer, (str, bytes)) or not isinstance(answer, Sequence):
        answer = [answer] * n
    if len(answer) != n:
        raise ValueError(f"reward {reward_name!r}: {n} completions but {len(answer)} gold answers")
    return [normalize_gold(a) for a in answer]


def make_math_accuracy(
    format_score: float = 0.0,
    timeout_s: float = 5.0,
    *,
    require_boxed: bool = True,
    name: str | None = None,
) -> RewardFn:
    """Build a math accuracy reward.

    The reward is 1.0 when the completion's answer verifies against the gold answer, ``format_score`` when a
    boxed answer exists but is wrong, and 0.0 otherwise. With ``require_boxed=True`` (the paper's rule) the
    answer is the last ``\\boxed{}``; with ``False`` it falls back to :func:`extract_answer`'s rules.
    ``name`` becomes the function's ``__name__`` (TRL's metric name); by default ``math_accuracy`` when
    ``format_score`` is 0 and ``math_accuracy_format`` otherwise.
    """
    try:
        format_score = float(format_score)
        timeout_s = float(timeout_s)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"format_score and timeout_s must be numbers: {exc}") from None
    if not (math.isfinite(format_score) and 0.0 <= format_score <= 1.0):
        raise ValueError(f"format_score must be in [0, 1], got {format_score}")
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s}")
    fn_name = name or ("math_accuracy" if format_score == 0.0 else "math_accuracy_format")

    def reward(completions: Sequence[Any], answer: Any = None, **kwargs: Any) -> list[float]:
        golds = _golds(answer, len(completions), fn_name)
        texts = [completion_text(c) for c in completions]
        boxed = [extract_boxed(t) for t in texts]
        preds = boxed if require_boxed else [b or extract_answer(t) for b, t in zip(boxed, texts)]
        verdicts = check_many([(p or "", g) for p, g in zip(preds, golds)], timeout_s)
        return [1.0 if ok else (format_score if b else 0.0) for ok, b in zip(verdicts, boxed)]

    reward.__name__ = reward.__qualname__ = fn_name
    reward.__doc__ = (
        f"{fn_name}: 1.0 when the {'boxed ' if require_boxed else ''}answer verifies, {format_score:g} when a "
        "boxed answer exists but is wrong, else 0.0."
    )
    return reward


def boxed_format(completions: Sequence[Any], **kwargs: Any) -> list[float]:
    """1.0 when the completion contains a non-empty ``\\boxed{...}`` answer, else 0.0."""
    return [1.0 if extract_boxed(completion_text(c)) else 0.0 for c in completions]


math_accuracy = make_math_accuracy(0.0, name="math_accuracy")
math_accuracy_format = make_math_accuracy(0.1, name="math_accuracy_format")

# The math rewards recipes name, with the options each takes (a recipe writes {name: ..., option: value}).
MATH_REWARDS: dict[str, RewardSpec] = {
    spec.name: spec
    for spec in (
        RewardSpec("math_accuracy", partial(make_math_accuracy, format_score=0.0, name="math_accuracy"),
                   ("format_score", "timeout_s", "require_boxed"), math_accuracy),
        RewardSpec("math_accuracy_format", partial(make_math_accuracy, format_score=0.1, name="math_accuracy_format"),
                   ("format_score", "timeout_s", "require_boxed"), math_accuracy_format),
        RewardSpec("boxed_format", lambda: boxed_format, (), boxed_format),
    )
}
