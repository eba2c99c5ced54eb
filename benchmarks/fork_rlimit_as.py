"""Why the reward verifier starts fresh `python -c` workers instead of forking the trainer (as a pebble or
multiprocessing pool with the fork context would): RLIMIT_AS counts the whole address space, and a forked
child starts with the trainer's. A cap below that leaves the child unable to map anything new; a fresh
interpreter starts at a few MiB, so the 1 GiB default is the verifier's own budget.

Run: python benchmarks/fork_rlimit_as.py
Prints the process's VmSize (after a CUDA step when a GPU is present) and whether a forked child capped at
1 GiB, and at half the parent's VmSize, can allocate 10 MiB; then a fresh `python -c` worker's VmSize.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import torch


def vm_size_gib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmSize")) / 2**20


def capped_fork_allocates(cap_bytes: int) -> str:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        resource.setrlimit(resource.RLIMIT_AS, (cap_bytes, cap_bytes))
        try:
            bytearray(10 << 20)
            verdict = b"ok"
        except MemoryError:
            verdict = b"MemoryError"
        os.write(write, verdict)
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    return os.read(read, 64).decode()


def report(when: str) -> None:
    size = vm_size_gib()
    print(f"{when}: VmSize {size:.2f} GiB; forked child capped at 1 GiB: {capped_fork_allocates(1 << 30)}; "
          f"capped at {size / 2:.2f} GiB: {capped_fork_allocates(int(size / 2 * 2**30))}")


def main() -> None:
    print(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}")
    report("torch imported")
    if torch.cuda.is_available():
        model = torch.nn.Linear(4096, 4096).cuda()
        model(torch.randn(8, 4096, device="cuda")).sum().backward()
        torch.cuda.synchronize()
        report("after a CUDA step")
    probe = "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmSize')))"
    fresh = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    print(f"a fresh `python -c` worker (what sfpo.rewards starts): VmSize {int(fresh) / 2**20:.3f} GiB")


if __name__ == "__main__":
    main()
