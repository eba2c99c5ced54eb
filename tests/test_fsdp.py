"""SFPO under FSDP2 on 2 CPU processes (torchrun, gloo): the anchor and the reposition act on each rank's local
shard, with no gather of full weights, and give the unsharded result."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from _fsdp_worker import ALPHA, LR, RL_STEPS, K, batch
from conftest import build_tiny_lm

pytestmark = pytest.mark.distributed

HERE = Path(__file__).parent
TOL = {"rtol": 1e-5, "atol": 1e-6}  # float32; sharded and unsharded runs sum gradients in a different order


def launch(out: Path, *job: str) -> list[dict]:
    env = {
        **os.environ,
        "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(HERE / "_fsdp_worker.py"),
        str(out),
        *job,
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    return [torch.load(out / f"{'-'.join(job)}-rank{r}.pt", weights_only=False) for r in (0, 1)]


def assert_close(a: dict, b: dict, **tol) -> None:
    assert a.keys() == b.keys()
    for k, v in a.items():
        torch.testing.assert_close(v, b[k], **(tol or TOL), msg=lambda m, k=k: f"{k}: {m}")


def unsharded_reference(model_dir: Path) -> tuple[list[dict], dict]:
    """The worker's loop on one process, unsharded: each optimizer step on the mean loss of both ranks' batches
    (what FSDP's averaged gradients give), and the reposition written out as θ0 + α(θK − θ0)."""
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)

    def weights():
        return {n: p.detach().clone() for n, p in model.named_parameters()}

    def step(i):
        opt.zero_grad()
        loss = sum(model(input_ids=x, labels=x).loss for x in (batch(i, 0), batch(i, 1))) / 2
        loss.backward()
        opt.step()

    steps, i = [], 0
    for _ in range(RL_STEPS):
        theta0 = weights()
        for _ in range(K):
            step(i)
            i += 1
        theta_k = weights()
        theta_tilde = {n: theta0[n] + ALPHA * (theta_k[n] - theta0[n]) for n in theta0}
        drift = math.sqrt(sum(float((theta_k[n].double() - theta0[n].double()).pow(2).sum()) for n in theta0))
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(theta_tilde[n])
        step(i)
        i += 1
        steps.append({"theta0": theta0, "theta_k": theta_k, "theta_tilde": theta_tilde, "drift": drift})
    return steps, weights()


def test_anchor_and_reposition_act_on_local_shards(tmp_path):
    build_tiny_lm(tmp_path / "model")
    ranks = launch(tmp_path, "direct")
    ref_steps, ref_final = unsharded_reference(tmp_path / "model")

    full_bytes = ranks[0]["full_bytes"]
    assert sum(r["anchor_bytes"] for r in ranks) == full_bytes  # the two shards cover the weights once
    for r in ranks:
        assert r["placements"] == ["(Shard(dim=0),)"]
        assert r["copies_plain"]  # plain local tensors, not DTensors
        assert abs(r["anchor_bytes"] / full_bytes - 0.5) < 0.02, "each rank's anchor must be shard-sized"

    rec = ranks[0]  # full weights are the same gathered tensors on both ranks
    for i, (got, ref) in enumerate(zip(rec["steps"], ref_steps, strict=True)):
        for r in ranks:
            # snapshot and reposition add no collective to the optimizer step; the drift norm is one scalar
            # all-reduce: no weight is gathered
            comm = r["steps"][i]["comm"]
            assert all(c == comm["plain_step"] for c in comm["armed_steps"]), comm
            assert comm["drift"] == {"c10d.allreduce_": 1}
            assert r["steps"][i]["drift"] == pytest.approx(ref["drift"], rel=1e-5)
        assert_close(got["theta0"], ref["theta0"])
        assert_close(got["theta_k"], ref["theta_k"])
        # the repositioned shards, gathered, are θ0 + α(θK − θ0) of the gathered full weights ...
        own = {n: got["theta0"][n] + ALPHA * (got["theta_k"][n] - got["theta0"][n]) for n in got["theta0"]}
        assert_close(got["theta_tilde"], own, rtol=1e-6, atol=1e-7)
        # ... and of the unsharded run
        assert_close(got["theta_tilde"], ref["theta_tilde"])
        assert not any(torch.equal(got["theta_tilde"][n], got["theta_k"][n]) for n in own)
    assert_close(rec["final"], ref_final)

    # kl_budget's reposition between steps and the optimizer-state restore act on the shards too
    for r in ranks:
        assert r["deferred"]["restored_empty"]
        assert_close(r["deferred"]["theta_tilde"], rec["steps"][0]["theta_tilde"], rtol=0, atol=0)

    # HSDP (a Replicate mesh dim): the drift norm counts every element once, not once per replica
    for r in ranks:
        assert r["hsdp"]["placements"] == ["(Replicate(), Shard(dim=0))"]
        assert r["hsdp"]["drift"] == pytest.approx(ref_steps[0]["drift"], rel=1e-5)


def test_sfpo_trainer_under_fsdp2_matches_ddp(tmp_path):
    build_tiny_lm(tmp_path / "model")
    fsdp = launch(tmp_path, "trainer", "fsdp")
    ddp = launch(tmp_path, "trainer", "ddp")

    full_bytes = ddp[0]["full_bytes"]
    for r in fsdp:  # really sharded (accelerate did not fall back to DDP), anchor on the shard
        assert r["distributed_type"] == "DistributedType.FSDP" and r["dtensor"]
        assert abs(r["anchor_bytes"] / full_bytes - 0.5) < 0.02
    assert sum(r["anchor_bytes"] for r in fsdp) == full_bytes
    for r in ddp:
        assert r["distributed_type"] == "DistributedType.MULTI_CPU" and not r["dtensor"]
        assert r["anchor_bytes"] == full_bytes

    start = {
        n: p.detach() for n, p in AutoModelForCausalLM.from_pretrained(tmp_path / "model").named_parameters()
    }
    assert any(not torch.equal(start[n], w) for n, w in ddp[0]["weights"].items()), (
        "training must move the weights"
    )
    for r in fsdp + ddp:
        assert r["rl_step"] == RL_STEPS and len(r["drifts"]) == RL_STEPS
        assert r["drifts"] == pytest.approx(ddp[0]["drifts"], rel=1e-5)
        assert_close(r["weights"], ddp[0]["weights"])
