"""Run untrusted Python programs (model completions) in a throwaway OS-level sandbox.

One call of :func:`run_python` runs one program once, in a fresh process tree:

- **bubblewrap** (``bwrap``, packaged by Debian and Ubuntu) builds new user, mount, PID, network, IPC and UTS
  namespaces. The root is read-only: read-only binds of ``/usr``, ``/lib*``, ``/bin`` and the Python
  installation, a ``/dev`` holding only ``null``, ``zero``, ``full``, ``random`` and ``urandom``, a fresh
  ``/proc`` (without ``/proc/keys`` and the like; left out altogether with ``proc=False``). The one writable
  place is the working directory ``/work``, a tmpfs capped at ``Limits.disk_mb``; ``/tmp`` and ``/dev/shm`` are
  links to it, so everything a program writes counts against that cap, and it vanishes with the sandbox. The
  network namespace has only its own loopback, so the host (127.0.0.1 included) is unreachable. The
  environment is cleared (``PATH``, ``HOME``, ``TMPDIR`` and ``LANG`` only), capabilities are dropped, the
  program runs as uid 65534 in its namespace and may not create user namespaces of its own
  (``--disable-userns``, bubblewrap 0.8 and later), and ``--die-with-parent`` plus the PID namespace mean that
  when the program ends, or is killed, every process it started is killed too.
- **a seccomp filter** (:mod:`sfpo.code.syscall_filter`, through ``bwrap --seccomp``) refuses the kernel keyrings,
  ``ptrace`` and other processes' memory, new namespaces and mounts, and kernel interfaces a test has no use for.
- **resource limits** (``prlimit`` from util-linux, else a small exec shim) cap each process's address space
  (``Limits.memory_mb``), CPU seconds, file size and open files, and disable core dumps. (``RLIMIT_NPROC``
  is not used: it counts every process of the user, the trainer's threads included, and does not bind root.)
- **cgroups**, where this process can create them (v1 hierarchies, or its own v2 cgroup): each run gets a
  pids cgroup (``max_processes``), a memory cgroup (``memory_mb`` + ``disk_mb`` for the whole sandbox, tmpfs
  included) and a cpu cgroup (``Limits.cpus`` CPUs for the whole sandbox, through ``cpu.max`` or
  ``cpu.cfs_quota_us``).
- **the parent** enforces the wall-clock limit, reads at most ``Limits.output_bytes`` of stdout, and kills
  the whole process group when either is exceeded.

Without a working ``bwrap`` (not installed, or user namespaces forbidden), programs run with the same
resource limits in their own session and process group, in a private temporary directory (removed
afterwards) with the same cleared environment, and the group is killed at the end. That fallback does not
isolate the network or the file system, has no seccomp filter, and a process that leaves its process group
(``setsid``) survives; this is logged once. ``SFPO_SANDBOX=bwrap|rlimit`` forces a mode (``bwrap`` raises when
it cannot work).

docs/sandbox.md gives the threat model.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

from sfpo.code import syscall_filter

logger = logging.getLogger(__name__)

__all__ = [
    "Limits",
    "RunResult",
    "SandboxUnavailableError",
    "Started",
    "mode",
    "python_executable",
    "run_python",
    "start_python",
]

#: argv strings above this are refused by the kernel (MAX_ARG_STRLEN is 128 KiB); longer programs are not run.
MAX_SOURCE_BYTES = 120_000
_SANDBOX_UID = 65534  # "nobody" inside the user namespace
_WORKDIR = "/work"


class SandboxUnavailableError(RuntimeError):
    """``SFPO_SANDBOX=bwrap`` was asked for but bubblewrap cannot run here."""


@dataclass(frozen=True)
class Limits:
    """Per-run limits. ``cpu_s`` defaults to the wall-clock limit, rounded up to whole seconds."""

    timeout_s: float = 5.0
    cpu_s: float | None = None
    memory_mb: int = 1024  # address space per process
    output_bytes: int = 1 << 20  # stdout read; more kills the run
    disk_mb: int = 64  # everything the program can write (bwrap mode): /work, with /tmp and /dev/shm in it
    max_processes: int = 64  # per sandbox, through a pids cgroup where one can be created
    open_files: int = 256
    cpus: float = 1.0  # CPU time per wall-clock second, for the whole sandbox, through a cpu cgroup

    def __post_init__(self) -> None:
        names = ("timeout_s", "memory_mb", "output_bytes", "disk_mb", "max_processes", "open_files", "cpus")
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"Limits.{name}={value!r} is not allowed: it must be a positive number")
        if self.cpu_s is not None and not self.cpu_s > 0:
            raise ValueError(f"Limits.cpu_s={self.cpu_s!r} is not allowed: it must be > 0 or None")


@dataclass
class RunResult:
    returncode: int | None  # None when the run was killed by the parent (timeout or output cap)
    stdout: bytes
    timed_out: bool = False
    output_capped: bool = False
    error: str | None = None  # set when the sandbox itself could not start

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.output_capped and self.error is None


# ---------------------------------------------------------------------------------------------------------
# Set-up: which interpreter, which isolation
# ---------------------------------------------------------------------------------------------------------


def python_executable() -> str:
    """The real interpreter behind this (possibly virtual-env) Python; programs get the standard library only."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return os.path.realpath(base)


def _python_prefix() -> str:
    return os.path.realpath(sys.base_prefix)


# Sets the limits in the child, then execs the command: used when the prlimit tool is missing.
_SHIM = (
    "import os, resource, sys\n"
    "for name, value in zip(('AS', 'CPU', 'FSIZE', 'NOFILE', 'CORE'), sys.argv[1:6]):\n"
    "    v = int(value)\n"
    "    try:\n"
    "        resource.setrlimit(getattr(resource, 'RLIMIT_' + name), (v, v))\n"
    "    except (ValueError, OSError):\n"
    "        pass\n"
    "os.execv(sys.argv[6], sys.argv[6:])\n"
)


def _rlimit_prefix(limits: Limits) -> list[str]:
    cpu = math.ceil(limits.cpu_s if limits.cpu_s is not None else limits.timeout_s)
    values = {
        "as": limits.memory_mb * 1024 * 1024,
        "cpu": max(1, cpu),
        "fsize": limits.disk_mb * 1024 * 1024,
        "nofile": limits.open_files,
        "core": 0,
    }
    prlimit = shutil.which("prlimit")
    if prlimit:
        return [prlimit, *(f"--{k}={v}" for k, v in values.items()), "--"]
    return [python_executable(), "-I", "-S", "-c", _SHIM, *(str(v) for v in values.values())]


# /proc entries that show host-wide state no test needs: key names and quotas, kernel memory, timers,
# the scheduler (Docker masks the same ones). Each is hidden under /dev/null where the host has it.
_MASKED_PROC = ("keys", "key-users", "kcore", "timer_list", "sched_debug", "latency_stats", "sysrq-trigger")
_DEV_NODES = ("null", "zero", "full", "random", "urandom")


def _bwrap_features(bwrap: str) -> frozenset[str]:
    """The optional flags this bubblewrap knows (``--disable-userns`` needs 0.8), read from its --help."""
    try:
        text = subprocess.run([bwrap, "--help"], capture_output=True, timeout=10).stdout.decode(
            errors="replace"
        )
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(f for f in ("--disable-userns", "--remount-ro", "--size") if f in text)


def _bwrap_prefix(
    bwrap: str, limits: Limits, features: frozenset[str], proc: bool = True, seccomp_fd: int | None = None
) -> list[str]:
    args = [bwrap]
    for path in ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin"):
        args += ["--ro-bind-try", path, path]
    prefix = _python_prefix()
    args += ["--ro-bind", prefix, prefix]
    # /dev is built here rather than with --dev, whose /dev/shm is a writable tmpfs outside disk_mb
    args += ["--dir", "/dev"]
    for node in _DEV_NODES:
        args += ["--dev-bind-try", f"/dev/{node}", f"/dev/{node}"]
    args += ["--symlink", "/proc/self/fd", "/dev/fd"]
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        args += ["--symlink", f"/proc/self/fd/{i}", f"/dev/{name}"]
    for path in ("/tmp", "/dev/shm"):  # every writable place is the one capped tmpfs
        args += ["--symlink", _WORKDIR, path]
    if proc:
        args += ["--proc", "/proc"]
        for name in _MASKED_PROC:
            if os.path.exists(f"/proc/{name}"):
                args += ["--ro-bind", "/dev/null", f"/proc/{name}"]
    args += ["--size", str(limits.disk_mb * 1024 * 1024), "--tmpfs", _WORKDIR, "--chdir", _WORKDIR]
    if "--remount-ro" in features:
        args += ["--remount-ro", "/"]
    args += ["--unshare-all", "--unshare-user", "--uid", str(_SANDBOX_UID), "--gid", str(_SANDBOX_UID)]
    if "--disable-userns" in features:
        args += ["--disable-userns"]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    args += ["--die-with-parent", "--new-session", "--cap-drop", "ALL", "--clearenv"]
    for key, value in _env(_WORKDIR).items():
        args += ["--setenv", key, value]
    return [*args, "--"]


def _seccomp_pipe() -> int | None:
    """A pipe's read end holding the seccomp filter, for ``bwrap --seccomp FD`` (None without libseccomp)."""
    program = syscall_filter.bpf_program()
    if program is None:
        return None
    r, w = os.pipe()
    try:
        os.write(w, program)  # a few KiB: well under a pipe's buffer
    finally:
        os.close(w)
    return r


def _env(workdir: str) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"}


_MODE: str | None = None
_MODE_LOCK = threading.Lock()
_FEATURES: frozenset[str] = frozenset()  # of the bwrap in use, set with _MODE

# cgroups bound a whole sandbox where rlimits cannot: its process count (RLIMIT_NPROC counts all the user's processes) and
# its total memory (RLIMIT_AS is per process). Used where this process may create them; probed once.
_CGROUP_LIMIT_FILES = {  # controller -> (cgroup v1 file, cgroup v2 file)
    "pids": ("pids.max", "pids.max"),
    "memory": ("memory.limit_in_bytes", "memory.max"),
    "cpu": ("cpu.cfs_quota_us", "cpu.max"),
}
_CPU_PERIOD_US = 100_000  # the kernel's default CFS period (v1 cpu.cfs_period_us, v2 cpu.max's second field)
_CGROUP_PARENTS: dict[str, tuple[str, str]] | None = None  # controller -> (parent folder, limit file)
_CGROUP_LOCK = threading.Lock()
_CGROUP_COUNTER = iter(range(1 << 62))
# Joins each cgroup folder given before "--", then execs the command: the sandbox starts inside them.
_JOIN_CGROUPS = (
    'while [ "$1" != -- ]; do echo $$ > "$1/cgroup.procs" || exit 125; shift; done; shift; exec "$@"'
)


def _cgroup_candidates() -> dict[str, list[tuple[str, str]]]:
    """Per controller, the folders where a child cgroup could go: v1 hierarchies, then this process's v2 cgroup."""
    found: dict[str, list[tuple[str, str]]] = {c: [] for c in _CGROUP_LIMIT_FILES}
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return found
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller, (v1_file, v2_file) in _CGROUP_LIMIT_FILES.items():
            if controller in controllers.split(","):
                found[controller].append(
                    (os.path.join("/sys/fs/cgroup", controller, path.lstrip("/")), v1_file)
                )
            elif controllers == "":
                found[controller].append((os.path.join("/sys/fs/cgroup", path.lstrip("/")), v2_file))
    return found


def _limit_value(controller: str, limit_file: str, limits: Limits) -> str:
    if controller == "pids":
        return str(limits.max_processes)
    if controller == "memory":
        return str((limits.memory_mb + limits.disk_mb) << 20)
    quota = max(1000, round(limits.cpus * _CPU_PERIOD_US))
    return f"{quota} {_CPU_PERIOD_US}" if limit_file == "cpu.max" else str(quota)


def _new_cgroup(parent: str, limit_file: str, value: str) -> str | None:
    path = os.path.join(parent, f"sfpo-sandbox-{os.getpid()}-{next(_CGROUP_COUNTER)}")
    try:
        os.mkdir(path)
    except OSError:
        return None
    try:
        with open(os.path.join(path, limit_file), "w") as f:
            f.write(value)
    except OSError:
        _remove_cgroup(path)
        return None
    return path


_STALE_CGROUPS: list[str] = []  # cgroups whose killed processes had not left yet; removed later


def _remove_cgroup(path: str, wait_s: float = 0.0) -> bool:
    """Remove an emptied cgroup; its killed processes may take a moment to leave it."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)


def _release_cgroups(paths: list[str]) -> None:
    """Remove these cgroups now if they are empty, else on a later call (or at exit): runs do not wait for it."""
    with _CGROUP_LOCK:
        todo = _STALE_CGROUPS + paths
        _STALE_CGROUPS[:] = [p for p in todo if not _remove_cgroup(p)]


@atexit.register
def _remove_stale_cgroups() -> None:
    for path in _STALE_CGROUPS:
        if not _remove_cgroup(path, wait_s=2.0):
            logger.debug("could not remove cgroup %s", path)


def _cgroup_parents() -> dict[str, tuple[str, str]]:
    """The controllers (pids, memory, cpu) under which each run gets its own limited cgroup here."""
    global _CGROUP_PARENTS
    with _CGROUP_LOCK:
        if _CGROUP_PARENTS is not None:
            return _CGROUP_PARENTS
        usable: dict[str, tuple[str, str]] = {}
        sh = shutil.which("sh")
        for controller, candidates in _cgroup_candidates().items() if sh else ():
            for parent, limit_file in candidates:
                path = _new_cgroup(parent, limit_file, _limit_value(controller, limit_file, Limits()))
                if path is None:
                    continue
                try:
                    join = [sh, "-c", _JOIN_CGROUPS, "sh", path, "--", "true"]
                    ok = subprocess.run(join, capture_output=True, timeout=10).returncode == 0
                except (OSError, subprocess.TimeoutExpired):
                    ok = False
                _remove_cgroup(path, wait_s=1.0)
                if ok:
                    usable[controller] = (parent, limit_file)
                    break
        _CGROUP_PARENTS = usable
        return usable


def _new_cgroups(limits: Limits) -> list[str]:
    """One fresh cgroup per usable controller, limited: processes, memory (one process's cap plus the disk), CPU."""
    made = []
    for controller, (parent, limit_file) in _cgroup_parents().items():
        path = _new_cgroup(parent, limit_file, _limit_value(controller, limit_file, limits))
        if path is not None:
            made.append(path)
    return made


def _probe_bwrap(features: frozenset[str]) -> str | None:
    """None when a bwrap sandbox (with the seccomp filter, where there is one) runs a trivial program here."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    fd = _seccomp_pipe()
    cmd = [
        *_rlimit_prefix(Limits()),
        *_bwrap_prefix(bwrap, Limits(), features, seccomp_fd=fd),
        python_executable(),
        "-I",
        "-S",
        "-c",
        "print('ok')",
    ]
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
            pass_fds=() if fd is None else (fd,),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap could not run ({exc})"
    finally:
        if fd is not None:
            os.close(fd)
    if proc.returncode != 0 or proc.stdout.strip() != b"ok":
        return f"bwrap failed: {proc.stderr.decode(errors='replace').strip()[:300]}"
    return None


def _warn_missing_bwrap_parts(features: frozenset[str]) -> None:
    """Say once what this bubblewrap mode does not bound here, and what still holds."""
    missing = sorted(set(_CGROUP_LIMIT_FILES) - set(_cgroup_parents()))
    if missing:
        what = {"pids": "process count", "memory": "total memory", "cpu": "total CPU use"}
        logger.warning(
            "code sandbox: no writable %s cgroup here, so a sandbox's %s is not bounded as a whole (per-process "
            "rlimits and the wall-clock limit still apply: a sandbox's processes may use every core until it)",
            " or ".join(missing),
            " and ".join(what[m] for m in missing),
        )
    why = syscall_filter.unavailable_reason()
    if why is not None:
        logger.warning(
            "code sandbox: no seccomp filter (%s): programs can use the kernel keyrings (the trainer's session "
            "keyring is readable), ptrace and the other calls sfpo.code.syscall_filter refuses. Install libseccomp2.",
            why,
        )
    if "--disable-userns" not in features:
        logger.warning(
            "code sandbox: this bubblewrap has no --disable-userns (0.8 or later has it); nested user namespaces "
            "are refused by the seccomp filter only"
        )
    if "--remount-ro" not in features:
        logger.warning(
            "code sandbox: this bubblewrap has no --remount-ro; the sandbox's root directory stays writable "
            "(an uncapped tmpfs, bounded by the memory cgroup only)"
        )


def mode() -> str:
    """``"bwrap"`` or ``"rlimit"`` (the fallback), decided once per process by a probe run."""
    global _MODE
    with _MODE_LOCK:
        if _MODE is not None:
            return _MODE
        wanted = os.environ.get("SFPO_SANDBOX", "").strip().lower()
        if wanted not in ("", "bwrap", "rlimit"):
            raise ValueError(
                f"SFPO_SANDBOX={wanted!r} is not allowed: use bwrap or rlimit (or leave it unset)"
            )
        if wanted == "rlimit":
            _MODE = "rlimit"
        else:
            bwrap = shutil.which("bwrap")
            features = _bwrap_features(bwrap) if bwrap else frozenset()
            why = _probe_bwrap(features)
            if why is None:
                global _FEATURES
                _MODE, _FEATURES = "bwrap", features
                _warn_missing_bwrap_parts(features)
            elif wanted == "bwrap":
                raise SandboxUnavailableError(f"SFPO_SANDBOX=bwrap but {why}")
            else:
                _MODE = "rlimit"
                logger.warning(
                    "code sandbox: %s; programs run with resource limits and a process-group kill only. "
                    "NOT isolated: network (127.0.0.1 and beyond is reachable), file system (the program can "
                    "read and write what this user can), processes that call setsid() survive the run; no "
                    "seccomp filter (the kernel keyrings are readable), and the program runs as the same user "
                    "as the tests' process, which it can signal or trace, so verdicts are not protected. "
                    "Install bubblewrap (apt-get install bubblewrap) for the full sandbox.",
                    why,
                )
        return _MODE


# ---------------------------------------------------------------------------------------------------------
# Running one program
# ---------------------------------------------------------------------------------------------------------


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        proc.kill()


def _communicate(proc: subprocess.Popen, stdin: bytes, limits: Limits) -> RunResult:
    """Feed stdin and read stdout together, under the wall-clock limit and the output cap."""
    deadline = time.monotonic() + limits.timeout_s
    out = bytearray()
    sel = selectors.DefaultSelector()
    view = memoryview(stdin)
    timed_out = capped = False
    try:
        if view:
            os.set_blocking(proc.stdin.fileno(), False)
            sel.register(proc.stdin, selectors.EVENT_WRITE)
        else:
            proc.stdin.close()
        sel.register(proc.stdout, selectors.EVENT_READ)
        ended = False
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            if not ended and proc.poll() is not None:
                # The program is done: whatever it left running goes now, so its pipes reach EOF.
                ended = True
                _kill_group(proc)
            for key, _ in sel.select(min(left, 0.05) if not ended else left):
                if key.fileobj is proc.stdin:
                    try:
                        n = os.write(proc.stdin.fileno(), view[:65536])
                    except BlockingIOError:
                        continue
                    except OSError:  # the program closed its stdin or exited: stop feeding it
                        n = len(view)
                    view = view[n:]
                    if not view:
                        sel.unregister(proc.stdin)
                        with contextlib.suppress(OSError):
                            proc.stdin.close()
                else:
                    data = os.read(proc.stdout.fileno(), 65536)
                    if not data:
                        sel.unregister(proc.stdout)
                        continue
                    out += data
                    if len(out) > limits.output_bytes:
                        capped = True
                        break
            if capped:
                break
        if not timed_out and not capped:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
    finally:
        sel.close()
        # Always: a program's children may still be running in its group (in bwrap mode the PID namespace
        # is gone once the program exits, and this kill reaches bwrap itself when the program does not).
        _kill_group(proc)
        for stream in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
    killed = timed_out or capped
    return RunResult(
        returncode=None if killed else proc.returncode,
        stdout=bytes(out[: limits.output_bytes]),
        timed_out=timed_out,
        output_capped=capped,
    )


class Started:
    """A sandbox that is running: its process (the group leader), and what goes when it is stopped."""

    def __init__(self, process: subprocess.Popen, cgroups: list[str], workdir: str | None) -> None:
        self.process, self._cgroups, self._workdir = process, cgroups, workdir

    def stop(self) -> None:
        """Kill everything in it and release its cgroups and folder (idempotent)."""
        _kill_group(self.process)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        if self._cgroups:
            _release_cgroups(self._cgroups)
            self._cgroups = []
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None


def _check_args(args: list[str]) -> str | None:
    try:
        size = sum(len(a.encode("utf-8")) for a in args)
    except UnicodeEncodeError:
        return "program is not valid text (lone surrogates)"
    if size > MAX_SOURCE_BYTES:
        return f"program over {MAX_SOURCE_BYTES} bytes"
    if any("\x00" in a for a in args):
        return "program contains a NUL character"
    return None


def start_python(
    args: list[str],
    limits: Limits | None = None,
    *,
    proc: bool = True,
    pass_fds: tuple[int, ...] = (),
    stdin: int = subprocess.PIPE,
    stdout: int = subprocess.PIPE,
) -> Started | str:
    """Start ``python -I -S <args>`` in a fresh sandbox and return it running (or why it could not start).

    ``pass_fds`` are inherited by the sandbox under the same numbers (pipes to another sandbox); ``stdin`` and
    ``stdout`` are ``subprocess.PIPE`` or ``subprocess.DEVNULL``. The caller stops it (:meth:`Started.stop`).
    """
    limits = limits or Limits()
    why = _check_args(args)
    if why is not None:
        return why
    current = mode()
    workdir, cgroups, seccomp_fd = None, [], None
    try:
        if current == "bwrap":
            seccomp_fd = _seccomp_pipe()
            bwrap = _bwrap_prefix(shutil.which("bwrap") or "bwrap", limits, _FEATURES, proc, seccomp_fd)
            cmd = [*_rlimit_prefix(limits), *bwrap]
            cwd, env = "/", _env(_WORKDIR)
        else:
            workdir = tempfile.mkdtemp(prefix="sfpo-sandbox-")
            cmd, cwd, env = _rlimit_prefix(limits), workdir, _env(workdir)
        cmd += [python_executable(), "-I", "-S", *args]
        cgroups = _new_cgroups(limits)
        if cgroups:
            cmd = [shutil.which("sh") or "/bin/sh", "-c", _JOIN_CGROUPS, "sh", *cgroups, "--", *cmd]
        fds = tuple(pass_fds) + (() if seccomp_fd is None else (seccomp_fd,))
        try:
            process = subprocess.Popen(
                cmd,
                stdin=stdin,
                stdout=stdout,
                stderr=subprocess.DEVNULL,
                cwd=cwd,
                env=env,
                close_fds=True,
                pass_fds=fds,
                start_new_session=True,
            )
        except OSError as exc:
            if cgroups:
                _release_cgroups(cgroups)
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)
            return f"could not start the sandbox: {exc}"
        return Started(process, cgroups, workdir)
    finally:
        if seccomp_fd is not None:
            os.close(seccomp_fd)


def run_python(
    args: list[str], stdin: bytes = b"", limits: Limits | None = None, *, proc: bool = True
) -> RunResult:
    """Run ``python -I -S <args>`` in the sandbox (e.g. ``["-c", source]``); stdin in, stdout out.

    ``proc=False`` leaves ``/proc`` out of the sandbox (bwrap mode), so that no process in it can read its own
    or another's memory through ``/proc/<pid>/mem``. stderr is discarded. Never raises for anything the program
    does; a sandbox that cannot start gives a result with ``error`` set.
    """
    limits = limits or Limits()
    started = start_python(args, limits, proc=proc)
    if isinstance(started, str):
        return RunResult(None, b"", error=started)
    try:
        return _communicate(started.process, stdin, limits)
    finally:
        started.stop()
