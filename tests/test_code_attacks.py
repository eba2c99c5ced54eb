"""Programs that try to score without solving (issue 20's attacks) and the sandbox's former leaks.

Every attack here defines a wrong ``add`` and tries to make the tests pass anyway. Each runs against the same
tests written two ways: plain asserts, and the same checks in a loop (which issue 20's design ran in the
program's process under a hardened runner; now both run in the tests' own sandbox). Each must score 0.
"""

from __future__ import annotations

import errno
import os
import socket

import pytest

from sfpo.code import sandbox, syscall_filter
from sfpo.code.reward import code_accuracy, make_code_accuracy, shape_of_tests

ISOLATED = sandbox.mode() == "bwrap"
needs_isolation = pytest.mark.skipif(
    not ISOLATED, reason="bubblewrap unavailable: the fallback does not isolate this"
)
needs_seccomp = pytest.mark.skipif(
    not ISOLATED or syscall_filter.bpf_program() is None, reason="no bubblewrap or no libseccomp here"
)


def fenced(code: str) -> str:
    return f"```python\n{code}\n```"


# The tests each attack targets, in the two assert shapes; a right add passes all of them
TESTS = {
    "int": {
        "calls": "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n",
        "loop": "for a, b, s in [(2, 3, 5), (-1, 1, 0)]:\n    assert add(a, b) == s\n",
    },
    "abs": {
        "calls": "assert abs(add(0.1, 0.2) - 0.3) < 1e-9\nassert abs(add(1.5, 1.0) - 2.5) < 1e-9\n",
        "loop": "for a, b, s in [(0.1, 0.2, 0.3), (1.5, 1.0, 2.5)]:\n    assert abs(add(a, b) - s) < 1e-9\n",
    },
    "isclose": {
        "calls": "import math\nassert math.isclose(add(0.1, 0.2), 0.3)\nassert math.isclose(add(1.5, 1.0), 2.5)\n",
        "loop": (
            "import math\nfor a, b, s in [(0.1, 0.2, 0.3), (1.5, 1.0, 2.5)]:\n    assert math.isclose(add(a, b), s)\n"
        ),
    },
}
RIGHT = fenced("def add(a, b):\n    return a + b")
WRONG = "def add(a, b):\n    return 42.0\n"
WALK_FRAMES = (  # from a frame, up to the runner's: write its nonce, as the runner would
    "def steal(f):\n"
    "    while f is not None:\n"
    "        nonce = f.f_locals.get('nonce')\n"
    "        if isinstance(nonce, bytes):\n"
    "            os.write(1, b'\\n' + nonce + b'\\n')\n"
    "            os._exit(0)\n"
    "        f = f.f_back\n"
)


def test_both_ways_of_writing_the_tests_call_the_program_and_a_right_program_passes_both():
    for tests in TESTS.values():
        assert {shape_of_tests(t) for t in tests.values()} == {"calls"}
        assert code_accuracy([RIGHT, RIGHT], tests=list(tests.values())) == [1.0, 1.0]
        assert code_accuracy([fenced(WRONG)] * 2, tests=list(tests.values())) == [0.0, 0.0]


# name -> (the tests it targets, the program). Against the runner sfpo had before (program and tests in one
# interpreter, the nonce in its frame), each of these but the last two scored 1.0 (checked when they were
# written); the last two are older attacks that the nonce already stopped.
ATTACKS = {
    "eq_always_true": (
        "int",
        "class Anything:\n"
        "    def __eq__(self, other): return True\n"
        "    def __ne__(self, other): return False\n"
        "    __hash__ = object.__hash__\n"
        "def add(a, b):\n"
        "    return Anything()\n",
    ),
    "noop_exec": ("int", "import builtins\nbuiltins.exec = lambda *args, **kwargs: None\n" + WRONG),
    "compile_strips_asserts": (
        "int",
        "import builtins\n"
        "_compile = builtins.compile\n"
        "builtins.compile = lambda source, filename, mode, *a, **k: _compile(source, filename, mode, 0, True, 2)\n"
        + WRONG,
    ),
    "patched_abs": ("abs", "import builtins\nbuiltins.abs = lambda x: 0\n" + WRONG),
    "patched_isclose": ("isclose", "import math\nmath.isclose = lambda *args, **kwargs: True\n" + WRONG),
    "fake_module_through_import": (
        "isclose",
        "import builtins, sys, types\n"
        "fake = types.ModuleType('math')\n"
        "fake.isclose = lambda *args, **kwargs: True\n"
        "_import = builtins.__import__\n"
        "builtins.__import__ = lambda name, *a, **k: fake if name == 'math' else _import(name, *a, **k)\n"
        "sys.modules['math'] = fake\n" + WRONG,
    ),
    "getframe_reads_the_nonce": (
        "int",
        "import os, sys\n" + WRONG + WALK_FRAMES + "steal(sys._getframe())\n",
    ),
    "traceback_frame_reads_the_nonce": (
        "int",
        "import os\n" + WRONG + WALK_FRAMES + "try:\n    1 / 0\nexcept ZeroDivisionError as e:\n"
        "    steal(e.__traceback__.tb_frame)\n",
    ),
    "tracer_reads_the_nonce": (
        "int",
        "import os, sys\n" + WRONG + WALK_FRAMES + "def tracer(frame, event, arg):\n"
        "    steal(frame)\n"
        "    return tracer\n"
        "sys.settrace(tracer)\n",
    ),
    "ctypes_reads_the_nonce": (
        "int",
        "import os, ctypes\n"
        + WRONG
        + WALK_FRAMES
        + "ctypes.pythonapi.PyEval_GetFrame.restype = ctypes.py_object\n"
        "steal(ctypes.pythonapi.PyEval_GetFrame())\n",
    ),
    "proc_self_mem": (  # the nonce is still in the heap, from the JSON read on stdin: scan our own memory
        "int",
        "import os, re\n" + WRONG + "try:\n"
        "    maps = open('/proc/self/maps').read().splitlines()\n"
        "    mem = open('/proc/self/mem', 'rb', 0)\n"
        "    for line in maps:\n"
        "        addr, perms = line.split()[:2]\n"
        "        if not perms.startswith('rw'):\n"
        "            continue\n"
        "        lo, hi = (int(x, 16) for x in addr.split('-'))\n"
        "        try:\n"
        "            mem.seek(lo)\n"
        "            chunk = mem.read(hi - lo)\n"
        "        except (OSError, OverflowError, ValueError):\n"
        "            continue\n"
        '        m = re.search(rb\'"nonce": "([0-9a-f]{32})"\', chunk)\n'
        "        if m:\n"
        "            os.write(1, b'\\n' + m.group(1) + b'\\n')\n"
        "            os._exit(0)\n"
        "except OSError:\n"
        "    pass\n",
    ),
    "early_exit": ("int", "import os\n" + WRONG + "os._exit(0)\n"),
    "print_success": ("int", "import os\n" + WRONG + "os.write(1, b'\\n' + b'0' * 32 + b'\\n')\n"),
}


@pytest.mark.parametrize("shape", ["calls", "loop"])
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_an_attack_does_not_score(attack, shape):
    target, program = ATTACKS[attack]
    assert code_accuracy([fenced(program)], tests=[TESTS[target][shape]]) == [0.0]


def test_the_attacks_fail_for_the_reason_intended():
    """The program's sandbox holds nothing of the tests: frames, the garbage collector's objects and its own memory
    can be read there (no hook refuses them now), and none of them has the expected value, the tests or a verdict
    to forge. The program below searches all three for the expected value and returns what it finds."""
    secret = 918273645546372819
    search = (
        "import gc, os, re, sys\n"
        "def frames():\n"
        "    for frame in sys._current_frames().values():\n"
        "        while frame is not None:\n"
        "            yield from frame.f_locals.values()\n"
        "            yield from frame.f_globals.values()\n"
        "            frame = frame.f_back\n"
        "def found():\n"
        "    for value in [*gc.get_objects(), *frames()]:\n"
        "        for text in re.findall(r'9182736455\\d{8}', repr(value)[:100000]):\n"
        "            return int(text)\n"
        "    try:\n"
        "        with open('/proc/self/maps') as maps, open('/proc/self/mem', 'rb', 0) as mem:\n"
        "            for line in maps:\n"
        "                span, perms = line.split()[:2]\n"
        "                lo, hi = (int(x, 16) for x in span.split('-'))\n"
        "                if perms.startswith('r') and hi - lo < 1 << 28:\n"
        "                    try:\n"
        "                        mem.seek(lo)\n"
        "                        m = re.search(rb'9182736455\\d{8}', mem.read(hi - lo))\n"
        "                    except (OSError, OverflowError, ValueError):\n"
        "                        continue\n"
        "                    if m:\n"
        "                        return int(m.group())\n"
        "    except OSError:\n"
        "        pass\n"
        "    return 0\n"
        "def add(a, b):\n"
        "    return found()\n"
    )
    right = fenced("def add(a, b):\n    return a + b")
    far = 10**17  # the inputs do not look like the expected value
    for tests in (
        f"assert add({secret - far}, {far}) == {secret}\n",
        f"for a in [{secret - far}]:\n    assert add(a, {far}) == {secret}\n",
    ):
        assert code_accuracy([fenced(search), right], tests=[tests, tests]) == [0.0, 1.0]
    # the search works: where the value does enter the program's sandbox (as an input), it is found
    assert code_accuracy([fenced(search)], tests=[f"assert add({secret}, 0) == {secret}\n"]) == [1.0]


@needs_isolation
def test_in_process_tests_run_without_proc():
    result = sandbox.run_python(["-c", "import os; print(os.path.exists('/proc/self/mem'))"], proc=False)
    assert result.stdout == b"False\n"
    assert (
        sandbox.run_python(["-c", "import os; print(os.path.exists('/proc/self/mem'))"]).stdout == b"True\n"
    )


# ------------------------------------------------------------------------------------------------------
# Sandbox leaks
# ------------------------------------------------------------------------------------------------------

KEYCTL = (
    "import ctypes, sys\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "nr = {'x86_64': 250, 'aarch64': 219}[__import__('platform').machine()]\n"
    "ring = libc.syscall(nr, 0, -3, 0)\n"  # KEYCTL_GET_KEYRING_ID of the session keyring
    "err1 = ctypes.get_errno()\n"
    "buf = ctypes.create_string_buffer(4096)\n"
    "n = libc.syscall(nr, 11, -3, buf, 4096)\n"  # KEYCTL_READ
    "print(ring, err1, n, ctypes.get_errno())\n"
)


@needs_seccomp
def test_the_session_keyring_cannot_be_read():
    result = sandbox.run_python(["-c", KEYCTL])
    ring, err1, n, err2 = map(int, result.stdout.split())
    assert (ring, err1, n, err2) == (-1, errno.EPERM, -1, errno.EPERM)
    proc_keys = sandbox.run_python(["-c", "print(open('/proc/keys').read())"])
    assert proc_keys.returncode != 0 or proc_keys.stdout.strip() == b""


@needs_seccomp
def test_the_seccomp_filter_refuses_namespaces_tracing_and_other_socket_families():
    probe = (
        "import ctypes, socket\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "out = []\n"
        "for name, args in (('unshare', (0x10000000,)), ('ptrace', (0, 0, 0, 0))):\n"
        "    r = getattr(libc, name)(*args)\n"
        "    out.append(f'{name} {r} {ctypes.get_errno()}')\n"
        "for family in (socket.AF_UNIX, socket.AF_INET, 40, 38):\n"  # 40 AF_VSOCK, 38 AF_ALG
        "    try:\n"
        "        socket.socket(family, socket.SOCK_SEQPACKET if family == 38 else socket.SOCK_STREAM).close()\n"
        "        out.append(f'socket {family} ok')\n"
        "    except OSError as e:\n"
        "        out.append(f'socket {family} {e.errno}')\n"
        "print(chr(10).join(out))\n"
    )
    lines = sandbox.run_python(["-c", probe]).stdout.decode().splitlines()
    assert lines == [
        f"unshare -1 {errno.EPERM}",
        f"ptrace -1 {errno.EPERM}",
        "socket 1 ok",
        "socket 2 ok",
        f"socket 40 {errno.EPERM}",
        f"socket 38 {errno.EPERM}",
    ]


@needs_isolation
def test_nested_user_namespaces_are_refused():
    prog = "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nprint(libc.unshare(0x10000000), ctypes.get_errno())"
    ret, err = sandbox.run_python(["-c", prog]).stdout.split()
    assert int(ret) == -1 and int(err) != 0


@needs_isolation
def test_writes_past_disk_mb_fail_everywhere():
    limits = sandbox.Limits(disk_mb=8, timeout_s=20.0)
    prog = (
        "import errno, os\n"
        "def fill(path, mb):\n"
        "    try:\n"
        "        with open(path, 'wb') as f:\n"
        "            for _ in range(mb):\n"
        "                f.write(b'x' * (1 << 20))\n"
        "                f.flush()\n"
        "                os.fsync(f.fileno())\n"
        "        return 'ok'\n"
        "    except OSError as e:\n"
        "        return errno.errorcode[e.errno]\n"
        "print(fill('/work/a', 3), fill('/tmp/b', 3), fill('/dev/shm/c', 3))\n"
        "for path in ('/x', '/dev/x', '/usr/x', '/proc/x', '/root/x', '/etc/x', '/home/x'):\n"
        "    print(path, fill(path, 1))\n"
    )
    result = sandbox.run_python(["-c", prog], limits=limits)
    lines = result.stdout.decode().splitlines()
    # /work, /tmp and /dev/shm are one tmpfs of disk_mb: 3 + 3 MB fit, the next 3 do not
    assert lines[0] == "ok ok ENOSPC", lines
    for line in lines[1:]:
        path, outcome = line.split()
        assert outcome in ("EROFS", "EACCES", "ENOENT", "EPERM"), line


@pytest.mark.skipif("cpu" not in sandbox._cgroup_parents(), reason="no writable cpu cgroup here")
def test_a_sandbox_as_a_whole_gets_at_most_its_cpus():
    # four processes spin for two seconds of wall-clock time; under a 0.2-CPU cap they get about 0.4 s of CPU
    # together (unbounded, on two cores, they would get up to 4 s)
    spin = (
        "import os, resource, time\n"
        "pids = []\n"
        "for _ in range(4):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        end = time.monotonic() + 2.0\n"
        "        while time.monotonic() < end:\n"
        "            pass\n"
        "        os._exit(0)\n"
        "    pids.append(pid)\n"
        "for pid in pids:\n"
        "    os.waitpid(pid, 0)\n"
        "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(usage.ru_utime + usage.ru_stime)\n"
    )
    result = sandbox.run_python(["-c", spin], limits=sandbox.Limits(timeout_s=20.0, cpus=0.2))
    assert result.ok
    assert float(result.stdout) < 0.2 * 2.0 * 2  # generous: twice the quota


def test_limits_refuse_a_bad_cpu_count():
    with pytest.raises(ValueError, match="Limits.cpus=0"):
        sandbox.Limits(cpus=0)


def test_a_program_that_outlives_its_calls_is_cut_off_and_scored_on_its_answers():
    # a thread still running when the calls are done does not hold the verdict back
    prog = fenced(
        "import threading, time\nthreading.Thread(target=time.sleep, args=(60,)).start()\ndef add(a, b):\n    return a + b"
    )
    assert make_code_accuracy(timeout_s=10.0)([prog], tests=[TESTS["int"]["calls"]]) == [1.0]


@needs_isolation
def test_network_stays_closed_for_the_call_runner():
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        prog = fenced(
            "import socket\n"
            "def add(a, b):\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(json_answer)\n"
            "    return a + b\n"
            "json_answer = b'x'\n"
        )
        assert code_accuracy([prog], tests=[TESTS["int"]["calls"]]) == [0.0]
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()


def test_the_filter_lists_what_docs_sandbox_md_says():
    doc = open(os.path.join(os.path.dirname(__file__), "..", "docs", "sandbox.md")).read()
    for name in ("keyctl", "add_key", "request_key", "ptrace", "unshare", "AF_VSOCK"):
        assert name in doc
    assert {"keyctl", "add_key", "request_key"} <= set(syscall_filter.REFUSED_SYSCALLS)


@needs_seccomp
@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the x32 ABI is an x86-64 thing")
def test_a_system_call_through_another_abi_kills_the_process():
    prog = (
        "import ctypes, sys\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print('before', flush=True)\n"
        "libc.syscall(0x40000000 | 250, 0, -3, 0)\n"  # keyctl through the x32 ABI
        "print('survived', flush=True)\n"
    )
    result = sandbox.run_python(["-c", prog])
    assert result.stdout == b"before\n" and result.returncode != 0
