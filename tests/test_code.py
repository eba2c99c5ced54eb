"""Code rewards and the sandbox: right and wrong programs in both test formats, hostile programs, garbage."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid

import pytest

from sfpo.app.catalog import REWARDS, get_reward
from sfpo.code.reward import (
    code_accuracy,
    code_accuracy_partial,
    extract_program,
    make_code_accuracy,
    parse_tests,
    sandbox,
)

ISOLATED = sandbox.mode() == "bwrap"
needs_isolation = pytest.mark.skipif(
    not ISOLATED, reason="bubblewrap unavailable: the fallback does not isolate this"
)

ADD_IO = [{"input": "2 3\n", "output": "5\n"}, {"input": "10 -4\n", "output": "6"}]
ADD_ASSERTS = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"


def fenced(code: str, lang: str = "python") -> str:
    return f"Here is my solution.\n```{lang}\n{code}\n```\nDone."


# ------------------------------------------------------------------------------------------------------
# Extraction and test parsing
# ------------------------------------------------------------------------------------------------------


def test_extract_program_takes_the_last_fenced_block_or_the_whole_text():
    text = "first\n```python\nx = 1\n```\nthen\n```\ny = 2\n```\n"
    assert extract_program(text) == "y = 2"
    assert extract_program("print(1)\n") == "print(1)"
    assert extract_program("```py\nprint(3)\n") == "print(3)"  # truncated: the open block's body
    assert extract_program([{"role": "assistant", "content": fenced("z = 3")}]) == "z = 3"
    assert extract_program(None) == "" and extract_program(42) == ""


def test_parse_tests_reads_cases_json_and_code():
    assert parse_tests(ADD_IO) == ADD_IO
    assert parse_tests(json.dumps(ADD_IO)) == ADD_IO
    assert parse_tests(ADD_ASSERTS) == ADD_ASSERTS
    for bad in ("", "   ", [], [{"input": 1, "output": "x"}], [{"input": "x"}], None, 7):
        assert parse_tests(bad) is None


# ------------------------------------------------------------------------------------------------------
# Correct and wrong programs, both formats
# ------------------------------------------------------------------------------------------------------


def test_stdin_stdout_cases_score_right_and_wrong_programs():
    right = fenced("a, b = map(int, input().split())\nprint(a + b)   ")
    wrong = fenced("a, b = map(int, input().split())\nprint(a - b)")
    half = fenced("a, b = map(int, input().split())\nprint(5)")
    crash = fenced("raise SystemExit(3)")
    scores = code_accuracy([right, wrong, half, crash], tests=[ADD_IO] * 4)
    assert scores == [1.0, 0.0, 0.0, 0.0]
    assert code_accuracy_partial([half], tests=[json.dumps(ADD_IO)]) == [0.5]


def test_assert_tests_score_right_and_wrong_programs():
    right = fenced("def add(a, b):\n    return a + b")
    wrong = fenced("def add(a, b):\n    return a * b")
    syntax = fenced("def add(a, b) return a + b")
    missing = fenced("def plus(a, b):\n    return a + b")
    assert code_accuracy([right, wrong, syntax, missing], tests=[ADD_ASSERTS] * 4) == [1.0, 0.0, 0.0, 0.0]


def test_program_output_does_not_disturb_the_assert_verdict():
    noisy = fenced(
        "import sys\nprint('hello')\nsys.stderr.write('x' * 1000)\ndef add(a, b):\n    return a + b"
    )
    assert code_accuracy([noisy], tests=[ADD_ASSERTS]) == [1.0]


def test_registered_by_name_and_needs_the_tests_column():
    assert (
        REWARDS["code_accuracy"] is code_accuracy
        and get_reward("code_accuracy_partial") is code_accuracy_partial
    )
    with pytest.raises(ValueError, match="'tests' column"):
        code_accuracy(["print(1)"])
    with pytest.raises(ValueError, match="2 completions but 1 test sets"):
        code_accuracy(["a", "b"], tests=[ADD_IO])
    with pytest.raises(ValueError, match="timeout_s"):
        make_code_accuracy(timeout_s=-1)


# ------------------------------------------------------------------------------------------------------
# Garbage completions
# ------------------------------------------------------------------------------------------------------


def test_garbage_completions_score_zero_without_raising(caplog):
    garbage = [
        "",
        None,
        "I don't know.",
        "```\n```",
        3.5,
        [{"role": "assistant", "content": None}],
        "\x00\x01",
        "print(1)\x00",
        "print('\ud800')",
        "x" * 200_000,
    ]
    assert code_accuracy(garbage, tests=[ADD_IO] * len(garbage)) == [0.0] * len(garbage)
    assert code_accuracy(garbage, tests=[ADD_ASSERTS] * len(garbage)) == [0.0] * len(garbage)
    # rows whose tests are unusable score 0 rather than passing vacuously
    right = fenced("def add(a, b):\n    return a + b")
    assert code_accuracy([right, right, right], tests=["", [], None]) == [0.0, 0.0, 0.0]
    assert not [r for r in caplog.records if r.levelname == "ERROR"]  # refused up front, not by a crash


# ------------------------------------------------------------------------------------------------------
# Hostile programs: each scores 0.0 and the host is unaffected
# ------------------------------------------------------------------------------------------------------


def test_early_exit_before_the_asserts_is_not_a_pass():
    exits = [
        "import sys\nsys.exit(0)",
        "import os\nos._exit(0)",
        "raise SystemExit",
        "exit()",
        "import os, sys\nsys.stdout.write('\\n' * 3)\nos._exit(0)",
        "import os\nos.write = lambda fd, data: 0\nimport sys\nsys.exit(0)",
    ]
    progs = [fenced("def add(a, b):\n    return a + b\n" + e) for e in exits]
    assert code_accuracy(progs, tests=[ADD_ASSERTS] * len(progs)) == [0.0] * len(progs)


def test_infinite_loops_return_within_the_time_limit():
    reward = make_code_accuracy(timeout_s=1.0)
    loops = [
        fenced("while True:\n    pass"),
        fenced("import time\ntime.sleep(60)"),
        fenced("def add(a, b):\n    while True: pass"),
    ]
    started = time.monotonic()
    assert reward(loops * 2, tests=[ADD_ASSERTS, ADD_IO, ADD_ASSERTS] * 2) == [0.0] * 6
    # six one-second limits, stopped by the limit rather than by the programs (which never end)
    assert time.monotonic() - started < 30


def test_memory_bomb_is_stopped():
    reward = make_code_accuracy(timeout_s=10.0, memory_mb=256)
    bombs = [
        fenced("x = bytearray(8 * 1024**3)\ndef add(a, b): return a + b"),
        fenced("chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 1024**2))"),
    ]
    assert reward(bombs, tests=[ADD_ASSERTS, ADD_IO]) == [0.0, 0.0]


def test_output_flooding_is_capped():
    flood = "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)"
    limits = sandbox.Limits(timeout_s=10.0, output_bytes=1 << 20)
    result = sandbox.run_python(["-c", flood], limits=limits)
    assert result.output_capped and not result.ok and len(result.stdout) <= limits.output_bytes
    assert code_accuracy([fenced(flood)], tests=[ADD_IO]) == [0.0]


def test_secrets_in_the_trainers_environment_are_not_visible(monkeypatch):
    secret = "s3cret-" + uuid.uuid4().hex
    monkeypatch.setenv("SFPO_TEST_SECRET", secret)
    leak_io = fenced("import os\nprint(os.environ.get('SFPO_TEST_SECRET', 'none'))")
    leak_assert = fenced("import os\ndef add(a, b): return a + b")
    cases = [{"input": "", "output": secret}]
    asserts = f"import os\nassert os.environ.get('SFPO_TEST_SECRET') == {secret!r}\n"
    assert code_accuracy([leak_io, leak_assert], tests=[cases, asserts]) == [0.0, 0.0]
    # the program really ran: it printed what it saw
    assert (
        sandbox.run_python(["-c", "import os; print(os.environ.get('SFPO_TEST_SECRET'))"]).stdout == b"None\n"
    )


@needs_isolation
def test_a_parent_process_environment_cannot_be_read_through_proc():
    prog = f"import os\nprint(open('/proc/{os.getpid()}/environ').read())"
    result = sandbox.run_python(["-c", prog])
    assert result.returncode != 0 and b"PATH" not in result.stdout


@needs_isolation
def test_writes_outside_the_working_directory_do_not_appear(tmp_path):
    target = tmp_path / "escaped.txt"
    prog = fenced(f"open({str(target)!r}, 'w').write('x')\ndef add(a, b): return a + b")
    home = fenced("import os\nopen(os.path.expanduser('~/../../root/sfpo-escape'), 'w').write('x')")
    assert code_accuracy([prog, home], tests=[ADD_ASSERTS, ADD_IO]) == [0.0, 0.0]
    assert not target.exists() and not os.path.exists("/root/sfpo-escape")
    # the working directory itself is writable, private and empty at the start
    result = sandbox.run_python(
        ["-c", "import os; print(os.listdir('.')); open('f', 'w').write('1'); print('ok')"]
    )
    assert result.stdout == b"[]\nok\n"


@needs_isolation
def test_network_connections_to_the_host_reach_nothing():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        prog = fenced(
            "import socket\n"
            f"s = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
            "s.sendall(b'stolen')\n"
            "def add(a, b): return a + b"
        )
        assert code_accuracy([prog], tests=[ADD_ASSERTS]) == [0.0]
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()


def _processes_with(token: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if token.encode() in f.read():
                        found.append(int(pid))
            except OSError:
                pass
    return found


@needs_isolation
def test_background_processes_are_killed_when_the_program_ends():
    token = "sfpo-orphan-" + uuid.uuid4().hex
    daemon = (
        "import os, subprocess, sys\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)', {token!r}],"
        " start_new_session=True)\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        f"    os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(300)', {token!r}])\n"
        "def add(a, b): return a + b\n"
    )
    # passing tests: the program ends normally; its children must still be gone
    assert code_accuracy([fenced(daemon)], tests=[ADD_ASSERTS]) == [1.0]
    # killed at its time limit: its children must be gone too
    assert make_code_accuracy(timeout_s=1.0)([fenced(daemon + "while True: pass")], tests=[ADD_IO]) == [0.0]
    deadline = time.monotonic() + 5
    while _processes_with(token) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_with(token) == []


def test_many_programs_run_in_parallel_and_duplicates_once():
    right = fenced("def add(a, b):\n    return a + b")
    wrong = fenced("def add(a, b):\n    return 0")
    batch = [right, wrong] * 16
    assert code_accuracy(batch, tests=ADD_ASSERTS) == [1.0, 0.0] * 16


@pytest.mark.skipif(
    "pids" not in sandbox._cgroup_parents(),
    reason="no writable pids cgroup here: the process count is bounded by the time limit only",
)
def test_a_fork_bomb_hits_the_process_limit():
    bomb = (
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    for _ in range(2000):\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60)\n"
        "            os._exit(0)\n"
        "        n += 1\n"
        "except OSError:\n"
        "    pass\n"
        "print(n)\n"
    )
    limits = sandbox.Limits(timeout_s=10.0, max_processes=32)
    result = sandbox.run_python(["-c", bomb], limits=limits)
    assert result.returncode == 0 and 0 < int(result.stdout) < 32
    assert code_accuracy([fenced(bomb)], tests=[ADD_IO]) == [0.0]


@pytest.mark.skipif("memory" not in sandbox._cgroup_parents(), reason="no writable memory cgroup here")
def test_many_processes_cannot_add_up_past_the_sandbox_memory():
    # each child stays under its own address-space cap; 16 of them would hold 3.2 GB together. A child prints
    # "held" once its 200 MB are resident; the memory cgroup's OOM killer may kill it afterwards, so what is bounded
    # is how many of those are still alive together, which the parent reports after they have all had their turn.
    hog = (
        "import os, time\n"
        "pids = []\n"
        "for _ in range(16):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        x = b'x' * (200 * 1024**2)\n"
        "        print('held', os.getpid(), flush=True)\n"
        "        time.sleep(30)\n"
        "        os._exit(0)\n"
        "    pids.append(pid)\n"
        "time.sleep(4)\n"
        "alive = [p for p in pids if os.waitpid(p, os.WNOHANG)[0] == 0]\n"
        "print('alive', *alive, flush=True)\n"
    )
    limits = sandbox.Limits(timeout_s=20.0, memory_mb=512, disk_mb=16)
    result = sandbox.run_python(["-c", hog], limits=limits)
    lines = [line.split() for line in result.stdout.decode().splitlines()]
    held = {words[1] for words in lines if words[:1] == ["held"]}
    assert held  # the children ran
    alive = next((set(words[1:]) for words in lines if words[:1] == ["alive"]), None)
    if alive is None:  # the parent itself was killed: the sandbox as a whole was held to its memory
        assert result.returncode != 0
    else:
        assert len(held & alive) * 200 <= 512 + 16


def test_limits_hold_without_the_prlimit_tool(monkeypatch):
    which = sandbox.shutil.which
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None if name == "prlimit" else which(name))
    assert sandbox._rlimit_prefix(sandbox.Limits())[0] == sandbox.python_executable()  # the exec shim
    limits = sandbox.Limits(memory_mb=256)
    assert sandbox.run_python(["-c", "print(6 * 7)"], limits=limits).stdout == b"42\n"
    bomb = sandbox.run_python(["-c", "x = bytearray(1024**3)"], limits=limits)
    assert bomb.returncode not in (0, None)


def test_a_required_sandbox_that_cannot_run_is_an_error_not_a_zero(monkeypatch):
    monkeypatch.setattr(sandbox, "_MODE", None)
    monkeypatch.setenv("SFPO_SANDBOX", "bwrap")
    monkeypatch.setattr(sandbox, "_probe_bwrap", lambda features: "bubblewrap (bwrap) is not installed")
    with pytest.raises(sandbox.SandboxUnavailableError, match="not installed"):
        code_accuracy(["print(1)"], tests=[ADD_IO])
    monkeypatch.setenv("SFPO_SANDBOX", "chroot")
    with pytest.raises(ValueError, match="SFPO_SANDBOX='chroot'"):
        sandbox.mode()
