"""SFPO under DeepSpeed ZeRO on 2 CPU processes (`accelerate launch` with the shipped configs, CPU override).

DeepSpeed keeps fp32 master partitions and copies them into the model after every step, so the reposition
must land on the masters: the tests compare each ZeRO run with the same run under DDP (torchrun), check that
repositioning the model's own weights instead (the negative control) does NOT match, resume mid-RL-step, and
K = 0 against TRL's GRPOTrainer. One launch per back end runs several jobs (tests/_ds_worker.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM

from conftest import build_tiny_lm

pytestmark = pytest.mark.distributed

HERE = Path(__file__).parent
CONFIGS = HERE.parent / "configs" / "accelerate"
# Back-end rounding: DeepSpeed and DDP reduce gradients in a different order (K = 0 already differs by ~2e-6).
# The negative control is off by ~3e-2, so this tolerance separates the two by two orders of magnitude.
TOL = {"rtol": 1e-4, "atol": 1e-4}
# switch warm-up and patience ride along with the variants' runs (window 2: z-scores exist from RL step 1 on)
VARIANTS = {"warmup": 1, "patience": 2, "window": 2}
# kl_budget (with restore and the switch variants): δ small enough that α_t < α in both RL steps
KL_BUDGET = {**VARIANTS, "alpha_mode": "kl_budget", "kl_budget": 1e-4, "optimizer_state": "restore"}
ALPHA = 0.8  # _ds_worker.ALPHA (not imported: importing the worker patches DeepSpeed in this process)


def cpu_config(tmp: Path, name: str, **override) -> Path:
    """A shipped accelerate config with the CPU override: 2 processes, no GPU, fp32 unless told."""
    config = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    config.update(num_processes=2, use_cpu=True, mixed_precision="no")
    for key, value in override.items():
        if key in config.get("deepspeed_config", {}):
            config["deepspeed_config"][key] = value
        else:
            config[key] = value
    path = tmp / f"{name}-cpu.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def launch(out: Path, jobs: list, config: Path | None, port: int) -> dict[str, list[dict]]:
    env = {
        **os.environ,
        "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "OMP_NUM_THREADS": "1",
    }
    worker = [str(HERE / "_ds_worker.py"), str(out), json.dumps(jobs)]
    if config is None:  # the reference: plain DDP
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port)]
    else:
        accelerate = [sys.executable, "-m", "accelerate.commands.launch"]
        cmd = [*accelerate, "--config_file", str(config), "--main_process_port", str(port)]
    done = subprocess.run(cmd + worker, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-6000:]
    return {job: [torch.load(out / f"{job}-rank{r}.pt", weights_only=False) for r in (0, 1)] for job, _ in jobs}


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def assert_close(a: dict, b: dict, **tol) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], **(tol or TOL), msg=lambda m, k=k: f"{k}: {m}")


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ds")
    build_tiny_lm(out / "model")
    return out


@pytest.fixture(scope="module")
def ddp(out):
    jobs = [
        ["ddp", {}],
        ["ddp-lora", {"lora": True}],
        ["ddp-nan", {"nan_at": [1]}],  # pass 1's second micro-step of RL step 1
        ["ddp-nan-last", {"nan_at": [7]}],  # the slow pass's last micro-step: no step of RL step 1 follows
        # the opt-in variants (tests/test_variants.py has their identities on one process)
        ["ddp-restore", {**VARIANTS, "optimizer_state": "restore"}],
        ["ddp-kl", KL_BUDGET],
        ["ddp-zero-std-1", {"zero_std": True, "rl_steps": 1}],  # the skipped batch alone
        ["ddp-zero-std", {"zero_std": True}],
    ]
    return launch(out, jobs, None, 29611)


@pytest.fixture(scope="module")
def zero2(out):
    jobs = [
        ["z2", {}],
        ["z2-control", {"model_side": True}],
        ["z2-interrupted", {"save_steps": 5, "stop_at": 5}],  # step 5 of 8: pass K = 3, before the reposition
        ["z2-resumed", {"resume": str(out / "z2-interrupted" / "checkpoint-5")}],
        ["z2-lora", {"lora": True}],
        ["z2-nan", {"nan_at": [1]}],
        ["z2-restore", {**VARIANTS, "optimizer_state": "restore"}],
        ["z2-kl", KL_BUDGET],
        ["z2-zero-std-1", {"zero_std": True, "rl_steps": 1}],
        ["z2-zero-std", {"zero_std": True}],
    ]
    return launch(out, jobs, cpu_config(out, "zero2"), 29612)


@pytest.fixture(scope="module")
def zero3(out):
    jobs = [
        ["z3", {"save_model": True}],
        ["z3-k0", {"inner_steps": 0}],
        ["z3-grpo", {"trainer": "grpo", "inner_steps": 0}],
        ["z3-vllm", {"vllm": True}],
        ["z3-kl", KL_BUDGET],
        ["z3-nan", {"nan_at": [1]}],
        ["z3-nan-last", {"nan_at": [7]}],
    ]
    return launch(out, jobs, cpu_config(out, "zero3"), 29613)


def test_zero2_and_zero3_match_ddp_and_anchor_the_masters(ddp, zero2, zero3):
    ref = ddp["ddp"][0]
    assert ref["distributed_type"] == "DistributedType.MULTI_CPU" and ref["anchor_on_model_params"]
    for ranks in (zero2["z2"], zero3["z3"]):
        for r in ranks:
            assert r["distributed_type"] == "DistributedType.DEEPSPEED"
            assert r["rl_step"] == 2 and r["global_step"] == 16
            # the anchor holds the optimizer's fp32 master partitions, not the model's weights
            assert not r["anchor_on_model_params"] and r["anchor_dtypes"] == ["torch.float32"]
            assert r["drifts"] == pytest.approx(ref["drifts"], rel=1e-5)  # partitions summed over ranks, once
            assert_close(r["weights"], ref["weights"])
        # one copy of this rank's partition: the two ranks' anchors together are the trainable weights once
        # (plus DeepSpeed's alignment padding)
        total = sum(r["anchor_bytes"] for r in ranks)
        assert 4 * ranks[0]["trainable_numel"] <= total <= 4 * ranks[0]["trainable_numel"] + 4096
        assert ranks[0]["anchor_bytes"] < ref["anchor_bytes"]


def test_repositioning_the_model_weights_is_undone_by_deepspeed(ddp, zero2):
    # the same reposition applied to model.parameters(): DeepSpeed copies the untouched masters back over it
    control = zero2["z2-control"][0]["weights"]
    assert max_diff(control, ddp["ddp"][0]["weights"]) > 1e-2
    assert max_diff(zero2["z2"][0]["weights"], ddp["ddp"][0]["weights"]) < 1e-4


def test_a_nan_loss_rolls_back_the_same_way_under_ddp_zero2_and_zero3(ddp, zero2, zero3):
    """DDP notices the NaN loss (and skips the steps); DeepSpeed's fp32 ZeRO-2/3 skip the NaN-gradient step
    themselves and the guard notices the missing step: either way RL step 1 goes back to θ0 and RL step 2 trains.
    The rollback is found between steps, so under ZeRO it must reach the model's weights (ZeRO-3: its partitions)
    before RL step 2 samples from them, or RL step 2's rollouts and the final weights would differ."""
    for ranks in (ddp["ddp-nan"], zero2["z2-nan"], zero3["z3-nan"]):
        for r in ranks:
            assert r["skipped_rl_steps"] == 1 and r["rl_step"] == 2
            assert all(bool(torch.isfinite(v).all()) for v in r["weights"].values())
    assert_close(zero2["z2-nan"][0]["weights"], ddp["ddp-nan"][0]["weights"])
    assert_close(zero3["z3-nan"][0]["weights"], ddp["ddp-nan"][0]["weights"])
    # found after the RL step's last optimizer step, which DeepSpeed skipped: no step is left to carry θ0 from the
    # masters into ZeRO-3's partitions, so the rollback copies it there itself
    for r in zero3["z3-nan-last"]:
        assert r["skipped_rl_steps"] == 1 and r["rl_step"] == 2
    assert_close(zero3["z3-nan-last"][0]["weights"], ddp["ddp-nan-last"][0]["weights"])
    assert max_diff(ddp["ddp-nan-last"][0]["weights"], ddp["ddp-nan"][0]["weights"]) > 1e-6
    assert max_diff(ddp["ddp-nan"][0]["weights"], ddp["ddp"][0]["weights"]) > 1e-3  # RL step 1 did not count


def test_zero2_resume_mid_rl_step_equals_the_uninterrupted_run(zero2):
    assert zero2["z2-interrupted"][0]["global_step"] == 5
    resumed, straight = zero2["z2-resumed"], zero2["z2"]
    for r, s in zip(resumed, straight):
        assert r["global_step"] == s["global_step"] == 16
        assert_close(r["weights"], s["weights"], rtol=0, atol=1e-6)
        assert r["drifts"] == pytest.approx(s["drifts"], rel=1e-6)


def test_lora_under_zero2_anchors_only_the_adapters(ddp, zero2):
    ref = ddp["ddp-lora"][0]
    for r in zero2["z2-lora"]:
        assert_close(r["weights"], ref["weights"])
        assert not r["anchor_on_model_params"]
    total = sum(r["anchor_bytes"] for r in zero2["z2-lora"])
    assert total == pytest.approx(4 * ref["trainable_numel"], abs=4096)
    assert ref["trainable_numel"] < 0.2 * sum(v.numel() for v in ref["weights"].values())  # adapters only


def test_k0_under_zero3_is_grpo_and_zero3_saves_the_full_model(out, zero3):
    for a, b in zip(zero3["z3-k0"], zero3["z3-grpo"]):
        assert a["global_step"] == b["global_step"] == 4
        assert_close(a["weights"], b["weights"], rtol=0, atol=1e-7)
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(out / "z3-saved")
    weights = {n: p.detach().float() for n, p in saved.named_parameters()}
    assert_close(weights, zero3["z3"][0]["weights"], rtol=0, atol=0)


def test_vllm_under_zero3_gets_the_post_slow_pass_weights(zero3):
    """TRL gathers the ZeRO-3 partitions and sends them to the server once per RL step, at its start: those must be
    the weights after the previous RL step's slow correction, never θ̃ (what pass K+1 started from)."""
    rank0 = zero3["z3-vllm"][0]
    per_rl_step = 8  # (K + 1) passes × 2 optimizer steps
    assert [step for step, _ in rank0["syncs"]] == [0, per_rl_step]
    synced = rank0["syncs"][1][1]
    after = rank0["step_weights"]
    assert max_diff(synced, after[per_rl_step]) == 0.0  # the weights after the slow pass's last step
    assert max_diff(synced, after[per_rl_step - 1]) > 0  # ... not those before it
    assert max_diff(synced, after[6]) > 0  # ... nor θ̃, the weights right after pass K's last step
    # the fake server sampled from what it was sent; TRL found those log-probs equal to its old log-probs at θ0
    assert len(rank0["logp_diffs"]) == 2 and max(rank0["logp_diffs"]) < 1e-4


@pytest.fixture(scope="module")
def zero2_bf16(out):
    # bf16 computes with bf16 copies of the masters: against fp32 DDP every run differs by bf16 rounding (~4e-2,
    # as large as the control's error), so bf16 is checked by an identity instead. With plain SGD and α = 0 the
    # reposition puts the masters back to θ0 exactly, so SFPO's slow pass is the GRPO pass from θ0.
    common = {"sgd": True, "rl_steps": 1, "bf16": True}
    jobs = [
        ["bf16-alpha0", {**common, "alpha": 0.0}],
        ["bf16-control", {**common, "alpha": 0.0, "model_side": True}],
        ["bf16-grpo", {**common, "trainer": "grpo", "inner_steps": 0}],
    ]
    return launch(out, jobs, cpu_config(out, "zero2", mixed_precision="bf16"), 29614)


def test_bf16_alpha_zero_is_one_grpo_pass_on_the_masters(zero2_bf16):
    sfpo, control, grpo = (zero2_bf16[j][0] for j in ("bf16-alpha0", "bf16-control", "bf16-grpo"))
    assert sfpo["global_step"] == 8 and grpo["global_step"] == 2
    assert sfpo["anchor_dtypes"] == ["torch.float32"]  # fp32 masters under a bf16 model
    assert max_diff(sfpo["weights"], grpo["weights"]) < 1e-6
    assert max_diff(control["weights"], grpo["weights"]) > 1e-2  # the model-side reposition is undone


@pytest.mark.slow
def test_zero1_matches_ddp(out, ddp):
    for r in launch(out, [["z1", {}]], cpu_config(out, "zero2", zero_stage=1), 29620)["z1"]:
        assert not r["anchor_on_model_params"]
        assert_close(r["weights"], ddp["ddp"][0]["weights"])


@pytest.mark.slow  # DeepSpeedCPUAdam is JIT-compiled on first use (~100 s on 2 cores)
def test_optimizer_offload_matches_ddp(out, ddp):
    jobs = [["z3-offload", {}]]
    got = launch(out, jobs, cpu_config(out, "zero3-offload"), 29615)
    # with "restore": DeepSpeedCPUAdam's state is put back through its Python-side tensors and step count
    jobs = [["z2-offload", {}], ["z2-offload-restore", {**VARIANTS, "optimizer_state": "restore"}]]
    got |= launch(out, jobs, cpu_config(out, "zero2", offload_optimizer_device="cpu"), 29616)
    for job in ("z3-offload", "z2-offload"):
        for r in got[job]:
            assert not r["anchor_on_model_params"]
            assert_close(r["weights"], ddp["ddp"][0]["weights"])
    for r in got["z2-offload-restore"]:
        assert r["stepping"] == ["DeepSpeedCPUAdam"]
        assert_close(r["weights"], ddp["ddp-restore"][0]["weights"])


def test_variants_under_ddp_and_zero2(ddp, zero2):
    """Optimizer-state restore under DDP and on ZeRO-2's masters (whose Adam state the client optimizer keeps)
    agree; kl_budget runs under DDP with the same α on both ranks."""
    restore, keep = ddp["ddp-restore"], ddp["ddp"]
    for a, b in zip(restore, zero2["z2-restore"]):
        assert b["distributed_type"] == "DistributedType.DEEPSPEED" and not b["anchor_on_model_params"]
        assert_close(b["weights"], a["weights"])
        assert b["drifts"] == pytest.approx(a["drifts"], rel=1e-5)
        for key in ("active", "switched_at", "streak"):
            assert b["switch"][key] == a["switch"][key]
        assert b["switch"]["history"] == pytest.approx(a["switch"]["history"], rel=1e-4)
        assert a["switch"]["active"] and a["switch"]["streak"] in (0, 1)  # warm-up: step 0 never counts
    assert max_diff(restore[0]["weights"], keep[0]["weights"]) > 1e-3  # restore changed the slow passes
    assert max_diff(restore[0]["weights"], restore[1]["weights"]) == 0.0
    kl = ddp["ddp-kl"]
    assert kl[0]["alphas"] == kl[1]["alphas"] and kl[0]["kl_fast"] == kl[1]["kl_fast"]  # one α for all ranks
    assert len(kl[0]["kl_fast"]) == 2 and all(0 < a < ALPHA for a in kl[0]["alphas"])
    assert kl[0]["alphas"] == pytest.approx([min(ALPHA, (1e-4 / k) ** 0.5) for k in kl[0]["kl_fast"]])
    assert max_diff(kl[0]["weights"], kl[1]["weights"]) == 0.0



def test_kl_budget_under_zero2_and_zero3_matches_ddp(ddp, zero2, zero3):
    """kl_budget under DeepSpeed: the forward at θK, then the reposition of the fp32 masters between steps and
    their copy into the model (ZeRO-1/2: update_lp_params; ZeRO-3: the partitions) give DDP's α_t and weights."""
    ref = ddp["ddp-kl"][0]
    for job, runs in (("z2-kl", zero2["z2-kl"]), ("z3-kl", zero3["z3-kl"])):
        for r in runs:
            assert r["distributed_type"] == "DistributedType.DEEPSPEED" and not r["anchor_on_model_params"], job
            assert r["alphas"] == pytest.approx(ref["alphas"], rel=1e-4), job
            assert r["kl_fast"] == pytest.approx(ref["kl_fast"], rel=1e-3), job
            assert r["drifts"] == pytest.approx(ref["drifts"], rel=1e-4), job
            assert_close(r["weights"], ref["weights"])
    # the weights are not what fixed α would give: α_t < α took effect on the masters and reached the model
    assert max_diff(zero2["z2-kl"][0]["weights"], zero2["z2-restore"][0]["weights"]) > 1e-3


def test_a_zero_std_batch_is_skipped_alike_under_ddp_and_zero2(out, ddp, zero2):
    start = {n: p.float() for n, p in AutoModelForCausalLM.from_pretrained(out / "model").named_parameters()}
    for ranks in (ddp["ddp-zero-std-1"], zero2["z2-zero-std-1"]):
        for r in ranks:  # no optimizer step on either rank: the weights (the masters under ZeRO) are the start's
            assert r["zero_std_skips"] == [1] and r["rl_step"] == 1
            assert_close(r["weights"], start, rtol=0, atol=0)
        assert ranks[0]["optimizer_state_empty"] and ranks[1]["optimizer_state_empty"]
    for ranks in (ddp["ddp-zero-std"], zero2["z2-zero-std"]):
        for r in ranks:
            assert r["zero_std_skips"] == [1, 0] and len(r["drifts"]) == 1  # only RL step 2 repositioned
    assert_close(zero2["z2-zero-std"][0]["weights"], ddp["ddp-zero-std"][0]["weights"])
    assert max_diff(ddp["ddp-zero-std"][0]["weights"], start) > 1e-3
