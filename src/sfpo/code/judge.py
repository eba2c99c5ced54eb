"""Two sandboxes per row: the tests in one, the program in another, every call crossing between them as data.

The trainer's process only starts sandboxes, passes pipe ends, copies bytes it does not read, and reads a verdict
of a few bytes from the tests' sandbox. It never decodes anything a program produced.

- **The tests' sandbox** (:class:`TestsSandbox`, ``_run_tests.py``): one per reward worker for the length of a
  batch, without ``/proc``. For each row it forks a fresh process that runs the row's tests as written (or
  LiveCodeBench's functional harness, or the stdin/stdout checker); decoding the program's values happens
  there, under ``RLIMIT_CPU`` and the sandbox's memory limits, and a row that does not answer within its time
  limit gets the whole sandbox killed and replaced.
- **The program's sandbox** (``_run_program.py``): a fresh sandbox per row for call-based tests, connected to
  the row's tests' process by two pipes and to nothing else (stdin and stdout are ``/dev/null``); for
  stdin/stdout problems, a fresh sandbox per case as before, whose stdout goes to the tests' sandbox unread.

The wire format is in ``_wire.py``; docs/sandbox.md gives the threat model.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import logging
import marshal
import math
import os
import select
import socket
import subprocess
import threading
import time
import zlib
from pathlib import Path

from sfpo.code import sandbox

logger = logging.getLogger(__name__)

__all__ = ["JudgePool", "TestsSandbox", "judge_code", "judge_stdio"]

_HERE = Path(__file__).parent
_WIRE = (_HERE / "_wire.py").read_text(encoding="utf-8")
TESTS_RUNNER = _WIRE + "\n" + (_HERE / "_run_tests.py").read_text(encoding="utf-8")
PROGRAM_RUNNER = _WIRE + "\n" + (_HERE / "_run_program.py").read_text(encoding="utf-8")
# A runner goes in compiled (docstrings stripped) and compressed, rather than as source: compiling the program's
# runner took ~10 ms of every row.
# The sandbox runs the interpreter behind this one (sandbox.python_executable), so the marshal format matches.
_LOAD = "import marshal,binascii,sys,zlib;exec(marshal.loads(zlib.decompress(binascii.a2b_base64(sys.argv[1]))))"


@functools.cache
def _compiled(source: str, name: str) -> str:
    code = marshal.dumps(compile(source, name, "exec", optimize=2))
    return base64.b64encode(zlib.compress(code, 9)).decode("ascii")


def runner_args(source: str, name: str, *args: str) -> list[str]:
    """``python -I -S`` arguments that run a runner's source, loaded compiled, with ``args`` after it."""
    return ["-c", _LOAD, _compiled(source, name), *args]
# stdin/stdout programs run as `__main__`, with `exit()` and `quit()` (which `-S` leaves out with the rest of
# site.py: competitive programs end with them) as sys.exit
_STDIO_MAIN = (
    "def _run():\n"
    "    import builtins, sys\n"
    "    builtins.exit = builtins.quit = sys.exit\n"
    "    code = compile(sys.argv.pop(1), '<string>', 'exec')\n"
    "    del globals()['_run']\n"
    "    exec(code, globals())\n"
    "_run()\n"
)
_START_S = 30.0  # for the tests' sandbox to import its modules and say it is ready
_VERDICT_BYTES = 64


class TestsSandbox:
    """The tests' sandbox of one worker: started on first use, replaced when a row breaks it."""

    def __init__(self, limits: sandbox.Limits) -> None:
        self.limits = limits
        self._started: sandbox.Started | None = None
        self._sock: socket.socket | None = None

    def _start(self) -> bool:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # the sandbox as a whole lives for a batch; each row's process gets its own CPU limit
        limits = sandbox.Limits(
            timeout_s=self.limits.timeout_s,
            cpu_s=24 * 3600.0,
            memory_mb=self.limits.memory_mb,
            disk_mb=self.limits.disk_mb,
            max_processes=self.limits.max_processes,
            cpus=self.limits.cpus,
        )
        isolated = "1" if sandbox.mode() == "bwrap" else "0"
        try:
            started = sandbox.start_python(
                runner_args(TESTS_RUNNER, "<tests' sandbox>", str(theirs.fileno()), isolated),
                limits,
                proc=False,
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        if isinstance(started, str):
            ours.close()
            logger.error("the tests' sandbox could not start: %s", started)
            return False
        self._started, self._sock = started, ours
        if _read(ours.fileno(), 1, time.monotonic() + _START_S) != b"R":
            logger.error("the tests' sandbox did not start within %.0f s", _START_S)
            self.close()
            return False
        return True

    def submit(self, payload: dict, fds: list[int]) -> bool:
        """Hand a row to the tests' sandbox (starting it if needed; once more on a fresh one if it has died)."""
        data = json.dumps(payload).encode()
        header = len(data).to_bytes(8, "big")
        for _ in range(2):
            if self._sock is None and not self._start():
                return False
            try:
                socket.send_fds(self._sock, [header], fds)
                self._sock.sendall(data)
                return True
            except OSError:
                self.close()
        return False

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
        if self._started is not None:
            self._started.stop()
            self._started = None


class JudgePool:
    """One :class:`TestsSandbox` per thread, for a batch: ``with JudgePool(limits) as pool: pool.get()``."""

    def __init__(self, limits: sandbox.Limits) -> None:
        self.limits = limits
        self._local = threading.local()
        self._all: list[TestsSandbox] = []
        self._lock = threading.Lock()

    def get(self) -> TestsSandbox:
        tests = getattr(self._local, "tests", None)
        if tests is None:
            tests = self._local.tests = TestsSandbox(self.limits)
            with self._lock:
                self._all.append(tests)
        return tests

    def close(self) -> None:
        with self._lock:
            for tests in self._all:
                tests.close()
            self._all.clear()

    def __enter__(self) -> JudgePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read(fd: int, limit: int, deadline: float, until: bytes | None = None) -> bytes:
    """Up to ``limit`` bytes from ``fd`` before ``deadline`` (stopping at EOF, or after ``until``)."""
    out = b""
    while len(out) < limit and (until is None or until not in out):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, limit - len(out))
        if not chunk:
            break
        out += chunk
    return out


def _write(fd: int, data: bytes, deadline: float) -> bool:
    view = memoryview(data)
    while view:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        _, ready, _ = select.select([], [fd], [], left)
        if not ready:
            return False
        try:
            view = view[os.write(fd, view[: 1 << 16]) :]
        except BlockingIOError:
            continue
        except OSError:
            return False
    return True


def _cpu_s(limits: sandbox.Limits) -> int:
    return max(1, math.ceil(limits.cpu_s if limits.cpu_s is not None else limits.timeout_s))


def judge_code(
    program: str, row: dict, limits: sandbox.Limits, tests: TestsSandbox
) -> tuple[int, int, bool] | None:
    """Run a row of test code (``{"mode": "code", "tests", "partial"}``) or a functional problem (``{"mode":
    "functional", "fn_name", "inputs", "outputs", "partial"}``) against the program: (passed, total, completed),
    or None when there is no verdict within ``limits.timeout_s``."""
    to_program_r, to_program_w = os.pipe()
    from_program_r, from_program_w = os.pipe()
    verdict_r, verdict_w = os.pipe()
    host_ends = [to_program_w, from_program_r, verdict_w]
    started: sandbox.Started | str | None = None
    try:
        started = sandbox.start_python(
            runner_args(PROGRAM_RUNNER, "<program's sandbox>", str(to_program_r), str(from_program_w)),
            limits,
            pass_fds=(to_program_r, from_program_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        os.close(to_program_r)
        os.close(from_program_w)
        if isinstance(started, str):
            return None
        payload = {**row, "program": program, "cpu_s": _cpu_s(limits)}
        if not tests.submit(payload, host_ends):
            return None
        for fd in host_ends:
            os.close(fd)
        host_ends = []
        line = _read(verdict_r, _VERDICT_BYTES, time.monotonic() + limits.timeout_s, until=b"\n")
    finally:
        for fd in host_ends:
            os.close(fd)
        os.close(verdict_r)
        if isinstance(started, sandbox.Started):
            started.stop()
    parts = line.split()
    if len(parts) != 4 or parts[0] != b"V" or not line.endswith(b"\n"):
        tests.close()  # no verdict in time: whatever that row left running goes with its sandbox
        return None
    try:
        passed, total, completed = (int(p) for p in parts[1:])
    except ValueError:
        tests.close()
        return None
    if not 0 <= passed <= total:
        return None
    return passed, total, bool(completed)


def judge_stdio(
    program: str,
    cases: list[dict[str, str]],
    limits: sandbox.Limits,
    tests: TestsSandbox,
    *,
    partial: bool = False,
    compare: str = "livecodebench",
) -> float:
    """Run the program once per case (stdin in) and have the tests' sandbox compare each stdout with the case's
    output: the fraction of cases passed (stopping at the first failure unless ``partial``)."""
    cases_r, cases_w = os.pipe()
    verdict_r, verdict_w = os.pipe()
    passed = 0
    try:
        payload = {
            "mode": "stdio",
            "outputs": [c["output"] for c in cases],
            "compare": compare,
            "cpu_s": _cpu_s(limits),
        }
        submitted = tests.submit(payload, [cases_r, verdict_w])
        os.close(cases_r)
        os.close(verdict_w)
        cases_r = verdict_w = -1
        if not submitted:
            return 0.0
        os.set_blocking(cases_w, False)
        for case in cases:
            result = sandbox.run_python(["-c", _STDIO_MAIN, program], case["input"].encode(), limits)
            if not result.ok and not partial:  # crashed or timed out: a failure without a comparison
                break
            out = result.stdout if result.ok else b""
            frame = bytes([1 if result.ok else 0]) + len(out).to_bytes(8, "big") + out
            deadline = time.monotonic() + limits.timeout_s
            answer = _read(verdict_r, 1, deadline) if _write(cases_w, frame, deadline) else b""
            if answer not in (b"0", b"1"):
                tests.close()  # the checker did not answer in time (or broke): replaced for the next row
                break
            if answer == b"1":
                passed += 1
            elif not partial:
                break
    finally:
        for fd in (cases_r, cases_w, verdict_r, verdict_w):
            if fd >= 0:
                os.close(fd)
    return passed / len(cases)
