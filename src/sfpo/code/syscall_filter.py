"""The seccomp filter every bubblewrap sandbox loads (``bwrap --seccomp FD``), built with libseccomp.

The namespaces of :mod:`sfpo.code.sandbox` do not cover everything the kernel offers a process. A test program has no
use for the calls below, and some of them reach past the sandbox, so they fail with ``EPERM``:

- the kernel keyrings: ``keyctl``, ``add_key``, ``request_key``. bubblewrap passes the trainer's session keyring
  through, and the sandbox's uid maps to the trainer's, so ``KEYCTL_READ`` would dump its keys (e.g. a Kerberos
  credential cache);
- other processes' memory: ``ptrace``, ``process_vm_readv``, ``process_vm_writev``, ``kcmp``;
- new namespaces and mounts: ``unshare``, ``setns``, ``clone`` with any ``CLONE_NEW*`` flag, ``mount``,
  ``umount2``, ``pivot_root``, ``chroot`` and the new mount API (``open_tree``, ``move_mount``, ``fsopen``,
  ``fsconfig``, ``fsmount``, ``fspick``, ``mount_setattr``). ``clone3`` fails with ``ENOSYS`` instead, as in
  Docker's and Flatpak's filters: its flags sit in memory a filter cannot read, and glibc falls back to ``clone``;
- kernel interfaces that are attack surface and nothing else here: ``bpf``, ``perf_event_open``,
  ``userfaultfd``, ``io_uring_*``, ``kexec_*``, module loading, ``swapon``/``swapoff``, ``reboot``, ``syslog``,
  ``acct``, ``quotactl``, ``open_by_handle_at``, ``name_to_handle_at``;
- sockets other than ``AF_UNIX``, ``AF_INET``, ``AF_INET6`` and ``AF_NETLINK``: notably ``AF_VSOCK``, which
  reaches a virtual machine's host outside any network namespace, and ``AF_ALG``.

Everything else is allowed. A system call made through another ABI than the native one (``int 0x80`` on x86-64)
kills the process (libseccomp's default for a foreign architecture), so the list cannot be bypassed that way.

libseccomp is used through its own Python bindings (``import seccomp``: Debian's ``python3-seccomp``) where they
are importable, else through ``pyseccomp`` (PyPI), a ctypes binding to the same ``libseccomp.so.2`` with the same
API. The filter is compiled to BPF once per process; :func:`bpf_program` returns it, or ``None`` with the reason
(:func:`unavailable_reason`) when libseccomp is missing, in which case the sandbox runs without it and says so.
"""

from __future__ import annotations

import errno
import logging
import tempfile
import threading

logger = logging.getLogger(__name__)

__all__ = ["REFUSED_SYSCALLS", "bpf_program", "unavailable_reason"]

REFUSED_SYSCALLS = (
    # keyrings
    "keyctl",
    "add_key",
    "request_key",
    # other processes
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    # namespaces and mounts
    "unshare",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    # attack surface
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "swapon",
    "swapoff",
    "reboot",
    "syslog",
    "acct",
    "quotactl",
    "open_by_handle_at",
    "name_to_handle_at",
)

# CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWTIME
_CLONE_NEW_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x80)
_ALLOWED_SOCKET_FAMILIES = (1, 2, 10, 16)  # AF_UNIX, AF_INET, AF_INET6, AF_NETLINK
_AF_MAX = 46  # families at or above this do not exist yet; refused too

_LOCK = threading.Lock()
_BUILT: tuple[bytes | None, str | None] | None = None


def _bindings():
    try:
        import seccomp  # libseccomp's own bindings (Debian: python3-seccomp)

        return seccomp
    except ImportError:
        pass
    import pyseccomp  # raises RuntimeError when libseccomp.so.2 is not installed

    return pyseccomp


def _build() -> bytes:
    sc = _bindings()
    eperm = sc.ERRNO(errno.EPERM)
    filt = sc.SyscallFilter(sc.ALLOW)
    for name in REFUSED_SYSCALLS:
        try:
            filt.add_rule(eperm, name)
        except (OSError, ValueError, RuntimeError):  # not a system call on this architecture
            logger.debug("seccomp: %s is not a system call here; skipped", name)
    filt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for flag in _CLONE_NEW_FLAGS:
        filt.add_rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    for family in range(_AF_MAX):
        if family not in _ALLOWED_SOCKET_FAMILIES:
            filt.add_rule(eperm, "socket", sc.Arg(0, sc.EQ, family))
    filt.add_rule(eperm, "socket", sc.Arg(0, sc.GE, _AF_MAX))
    with tempfile.TemporaryFile() as f:
        filt.export_bpf(f)
        f.seek(0)
        program = f.read()
    if not program or len(program) % 8:
        raise RuntimeError(f"libseccomp exported {len(program)} bytes, not a BPF program")
    return program


def _built() -> tuple[bytes | None, str | None]:
    global _BUILT
    with _LOCK:
        if _BUILT is None:
            try:
                _BUILT = (_build(), None)
            except Exception as exc:  # ImportError, RuntimeError (no libseccomp), OSError
                _BUILT = (None, f"{type(exc).__name__}: {exc}")
        return _BUILT


def bpf_program() -> bytes | None:
    """The compiled filter (a BPF program for ``bwrap --seccomp``), or None when libseccomp is unavailable."""
    return _built()[0]


def unavailable_reason() -> str | None:
    """Why :func:`bpf_program` is None (None when it is not)."""
    return _built()[1]
