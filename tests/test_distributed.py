"""Two processes (torchrun, gloo, use_cpu=True): both ranks hold identical weights after SFPO steps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import build_tiny_lm

pytestmark = pytest.mark.distributed


def test_two_ranks_end_identical(tmp_path):
    build_tiny_lm(tmp_path / "model")
    here = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": f"{here}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           str(here / "_dist_worker.py"), str(tmp_path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["world"] == r1["world"] == 2 and r0["rl_step"] == r1["rl_step"] == 2
    start = AutoModelForCausalLM.from_pretrained(tmp_path / "model").state_dict()
    moved = False
    for k, v in r0["weights"].items():
        assert torch.equal(v, r1["weights"][k]), f"ranks differ on {k}"
        moved |= not torch.equal(v, start[k])
    assert moved


def test_two_ranks_end_identical_under_gxpo(tmp_path):
    build_tiny_lm(tmp_path / "model")
    here = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": f"{here}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29534",
           str(here / "_dist_worker.py"), str(tmp_path), "gxpo"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    r0, r1 = (torch.load(tmp_path / f"gxpo-rank{r}.pt") for r in (0, 1))
    assert r0["world"] == r1["world"] == 2 and r0["rl_step"] == r1["rl_step"] == 2
    start = AutoModelForCausalLM.from_pretrained(tmp_path / "model").state_dict()
    assert all(torch.equal(v, r1["weights"][k]) for k, v in r0["weights"].items()), "ranks differ"
    assert any(not torch.equal(v, start[k]) for k, v in r0["weights"].items())
