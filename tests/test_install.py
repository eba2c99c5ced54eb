"""Reproducible installs: constraints.txt pins what the project needs, and the Makefile passes it (and an optional
PyTorch index) to every pip call. Nothing here touches the network: `make -n` only prints the commands."""

from __future__ import annotations

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


def _make_dry_run(tmp_path, *variables: str) -> list[str]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venv = tmp_path / "venv"  # a venv that does not exist: make prints the whole install
    done = subprocess.run(["make", "-n", "-B", f"VENV={venv}", *variables, f"{venv}/.installed"], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return [line for line in done.stdout.splitlines() if "pip install" in line]


def test_make_passes_the_constraints_to_every_pip_call(tmp_path):
    lines = _make_dry_run(tmp_path)
    assert len(lines) == 3, lines  # pip itself, torch, the project with the dev extra
    assert all("-c constraints.txt" in line for line in lines)
    assert all("--build-constraint constraints.txt" in line for line in lines[1:])  # pip >= 25.3 by then
    assert not any("index-url" in line for line in lines)  # by default: pip's own configuration


def test_make_takes_torch_from_the_index_it_is_given(tmp_path):
    lines = _make_dry_run(tmp_path, f"TORCH_INDEX_URL={CPU_INDEX}")
    torch_line = next(line for line in lines if line.rstrip().endswith(" torch"))
    assert f"--extra-index-url {CPU_INDEX}" in torch_line and "-c constraints.txt" in torch_line
    assert [line for line in lines if CPU_INDEX in line] == [torch_line]  # only torch comes from there


def test_make_without_constraints_lifts_the_pins(tmp_path):
    lines = _make_dry_run(tmp_path, "CONSTRAINTS=")
    assert lines and not any(" -c " in line or "--build-constraint" in line for line in lines)
