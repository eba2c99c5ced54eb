"""The trainer's run state as a whole (sfpo.algorithm.checkpoint): reset, saved and restored in one piece, and the
checkpoints of earlier versions (their summary keys) still resume exactly."""

from __future__ import annotations

import json

import torch

from _tiny_config import tiny_cpu
from conftest import digit_reward
from sfpo import SFPOConfig, SFPOTrainer
from sfpo.algorithm.checkpoint import STATE_FILE, RLStepState, RunState, rank_file
from sfpo.algorithm.switch import SFPOSwitch

# What the trainer wrote into sfpo_state.json before the state became dataclasses.
LEGACY_KEYS = {"rl_step", "rollouts", "num_iterations", "micro_step", "epoch", "loader_pos", "mid_rl_step",
               "pass_entropies", "zero_std_batch", "drift_norm", "alpha_t", "kl_fast", "switch"}


def test_summary_keeps_the_legacy_keys_and_round_trips():
    run = RunState(rl_step=3, rollouts=96, skipped_rl_steps=1, consecutive_skips=1, num_iterations=4, epoch=0,
                   loader_pos=17, switch=SFPOSwitch(window=2))
    run.switch.update(0, 1.0)
    run.new_rl_step(pass_entropies=[0.5, 0.25], drift_norm=0.1, alpha_t=0.8, t0=123.0, generation_s=2.0)
    summary = run.summary(micro_step=40, mid_rl_step=True)
    assert LEGACY_KEYS <= set(summary) and set(summary) - LEGACY_KEYS == {"skipped_rl_steps", "consecutive_skips"}
    json.dumps(summary)  # plain data
    back = RunState(switch=SFPOSwitch(window=2))
    back.load_summary(json.loads(json.dumps(summary)))
    assert back.summary(micro_step=40, mid_rl_step=True) == summary
    assert back.step.t0 is None and back.step.generation_s == 0.0  # clocks are not in the summary


def test_a_legacy_summary_loads_with_defaults_for_what_it_lacks():
    legacy = {"rl_step": 2, "rollouts": 16, "num_iterations": 1, "micro_step": 14, "epoch": 0, "loader_pos": 20,
              "mid_rl_step": True, "pass_entropies": [1.5], "drift_norm": None,
              "switch": {"active": False, "switched_at": 1, "history": [1.0, 2.0], "last_z": None}}
    run = RunState(skipped_rl_steps=5)
    run.load_summary(legacy)
    assert (run.rl_step, run.rollouts, run.num_iterations, run.epoch, run.loader_pos) == (2, 16, 1, 0, 20)
    assert run.step.pass_entropies == [1.5] and run.step == RLStepState(pass_entropies=[1.5])
    assert run.skipped_rl_steps == 5  # not in the summary: left as it was (0 in a fresh run state)
    assert not run.switch.active and run.switch.switched_at == 1 and run.switch.streak == 0


def test_a_checkpoint_with_the_legacy_summary_resumes_exactly(tiny_lm, toy_dataset, tmp_path):
    def make(out):
        args = SFPOConfig(**tiny_cpu(
            output_dir=str(out), seed=1, per_device_train_batch_size=4, num_generations=4, steps_per_generation=2,
            max_completion_length=5, learning_rate=5e-3, lr_scheduler_type="constant", sfpo_inner_steps=2,
            sfpo_switch="none", sfpo_max_rl_steps=2, save_strategy="steps", save_steps=4,
        ))
        return SFPOTrainer(model=tiny_lm, reward_funcs=digit_reward, args=args, train_dataset=toy_dataset)

    full = make(tmp_path / "full")
    full.train()
    checkpoint = tmp_path / "full" / "checkpoint-4"  # inside RL step 1, before the reposition
    saved = torch.load(checkpoint / rank_file(0), weights_only=False)
    assert saved["summary"]["mid_rl_step"] and saved["anchor"] is not None
    saved["summary"] = {k: v for k, v in saved["summary"].items() if k in LEGACY_KEYS}
    torch.save(saved, checkpoint / rank_file(0))
    (checkpoint / STATE_FILE).write_text(json.dumps(saved["summary"]))

    resumed = make(tmp_path / "resumed")
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert (resumed.sfpo_rl_step, resumed.sfpo_rollouts) == (full.sfpo_rl_step, full.sfpo_rollouts) == (2, 16)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_anchor_copies_loaded_from_a_checkpoint_follow_the_tensors_device():
    """A checkpoint holds θ0 on the CPU. With sfpo_anchor_device="same" the copies move to the parameter's device
    at their next use and stay there (not a transfer at every use); with "cpu" they stay on the CPU. The meta
    device stands in for an accelerator."""
    from sfpo.algorithm.reposition import Anchor

    saved = Anchor()
    saved.snapshot(0, torch.arange(3.0))
    p = torch.zeros(3, device="meta")
    same, cpu = Anchor("same"), Anchor("cpu")
    for anchor in (same, cpu):
        anchor.load_state_dict(saved.state_dict())
        anchor.reposition(0, p, 0.5)
    assert same.copies[0].device.type == "meta" and cpu.copies[0].device.type == "cpu"
    same.snapshot(0, p)  # the next RL step's θ0 goes into the moved copy
    assert same.copies[0].device.type == "meta" and torch.equal(cpu.copies[0], torch.arange(3.0))
