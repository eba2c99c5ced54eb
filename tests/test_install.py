"""Reproducible installs: constraints.txt pins what the project needs, and the Makefile passes it (and a PyTorch
index: the CPU wheels where no NVIDIA driver is present, or the one it is given) to every pip call. Nothing here
touches the network: `make -n` only prints the commands."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
            assert match, f"constraints.txt: {line!r} is not NAME==VERSION"
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def test_constraints_pin_every_requirement_within_its_range():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = [*project["dependencies"], *extras["dev"], *extras["smollm2"]]
    pins = _pins()
    for spec in map(Requirement, wanted):
        name = canonicalize_name(spec.name)
        assert name in pins, f"{spec.name} is not pinned in constraints.txt"
        assert spec.specifier.contains(pins[name], prereleases=True), (spec, pins[name])
    assert canonicalize_name("sfpo") not in pins  # the project itself is installed from the checkout
    # nothing machine-specific: no local version labels (e.g. +cpu), so a CPU and a CUDA build both match
    assert not [f"{n}=={v}" for n, v in pins.items() if "+" in v]


def _make_dry_run(tmp_path, *variables: str, env: dict[str, str] | None = None) -> list[str]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venv = tmp_path / "venv"  # a venv that does not exist: make prints the whole install
    if env is None:  # the Makefile's own defaults: not what the caller's environment or an outer make sets
        # (CI runs the tests from `make test` with TORCH_INDEX_URL= in its environment)
        outer = ("TORCH_INDEX_URL", "HAS_NVIDIA_DRIVER", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES", "MAKELEVEL")
        env = {k: v for k, v in os.environ.items() if k not in outer}
    done = subprocess.run(["make", "-n", "-B", f"VENV={venv}", *variables, f"{venv}/.installed"], cwd=ROOT,
                          capture_output=True, text=True, check=True, env=env)
    return [line for line in done.stdout.splitlines() if "pip install" in line]


def _torch_line(lines: list[str]) -> str:
    return next(line for line in lines if line.rstrip().endswith(" torch"))


def test_make_passes_the_constraints_to_every_pip_call(tmp_path):
    lines = _make_dry_run(tmp_path, "HAS_NVIDIA_DRIVER=yes")
    assert len(lines) == 3, lines  # pip itself, torch, the project with the dev extra
    assert all("-c constraints.txt" in line for line in lines)
    assert all("--build-constraint constraints.txt" in line for line in lines[1:])  # pip >= 25.3 by then
    assert not any("index-url" in line for line in lines)  # with a GPU driver: pip's own configuration


def test_make_takes_torch_from_the_index_it_is_given(tmp_path):
    for driver in ("yes", ""):  # whatever the machine has
        lines = _make_dry_run(tmp_path, f"TORCH_INDEX_URL={CPU_INDEX}", f"HAS_NVIDIA_DRIVER={driver}")
        torch_line = _torch_line(lines)
        assert f"--extra-index-url {CPU_INDEX}" in torch_line and "-c constraints.txt" in torch_line
        assert [line for line in lines if CPU_INDEX in line] == [torch_line]  # only torch comes from there
        cuda = "https://download.pytorch.org/whl/cu128"
        lines = _make_dry_run(tmp_path, f"TORCH_INDEX_URL={cuda}", f"HAS_NVIDIA_DRIVER={driver}")
        assert [line for line in lines if "index-url" in line] == [_torch_line(lines)]
        assert f"--extra-index-url {cuda} " in _torch_line(lines) and CPU_INDEX not in "".join(lines)


def test_make_takes_the_cpu_wheels_where_there_is_no_nvidia_driver(tmp_path):
    lines = _make_dry_run(tmp_path, "HAS_NVIDIA_DRIVER=")
    assert [line for line in lines if "index-url" in line] == [_torch_line(lines)]
    assert f"--extra-index-url {CPU_INDEX} " in _torch_line(lines)


def test_an_empty_torch_index_means_pips_own_on_any_machine(tmp_path):
    for driver in ("yes", ""):
        assert not any("index-url" in line
                       for line in _make_dry_run(tmp_path, "TORCH_INDEX_URL=", f"HAS_NVIDIA_DRIVER={driver}"))
    env = {**os.environ, "TORCH_INDEX_URL": ""}  # from the environment as well as on the command line
    assert not any("index-url" in line for line in _make_dry_run(tmp_path, "HAS_NVIDIA_DRIVER=", env=env))


def test_make_detects_the_nvidia_driver(tmp_path):
    """`nvidia-smi` on the PATH counts as a driver; where neither it nor /proc/driver/nvidia is found, the CPU
    wheels are taken."""
    env = {k: v for k, v in os.environ.items() if k not in ("TORCH_INDEX_URL", "HAS_NVIDIA_DRIVER")}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    with_smi = {**env, "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}
    assert not any("index-url" in line for line in _make_dry_run(tmp_path, env=with_smi))
    if shutil.which("nvidia-smi") or Path("/proc/driver/nvidia").exists():
        pytest.skip("this machine has an NVIDIA driver: the no-driver half cannot run here")
    assert f"--extra-index-url {CPU_INDEX} " in _torch_line(_make_dry_run(tmp_path, env=env))


def test_make_without_constraints_lifts_the_pins(tmp_path):
    lines = _make_dry_run(tmp_path, "CONSTRAINTS=")
    assert lines and not any(" -c " in line or "--build-constraint" in line for line in lines)
