"""`skip_zero_std_batches`: a generation batch whose groups all have equal rewards takes no update.

Under DDP and DeepSpeed ZeRO-2: tests/test_deepspeed.py (`test_a_zero_std_batch_is_skipped_alike_...`).
"""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForCausalLM, TrainerCallback
from trl import GRPOTrainer

from conftest import digit_reward, flat_then_digit_reward
from sfpo import SFPOConfig, SFPOTrainer
from sfpo.algorithm.switch import SFPOSwitch
from sfpo.algorithm.zero_std import all_groups_zero_std
from test_trainer import COMMON, assert_same, grpo_args, sfpo_args, weights

NAN = math.nan


def flat(rows, weights=(1.0,), g=4, aggregation="sum_then_normalize") -> bool:
    return all_groups_zero_std(torch.tensor(rows, dtype=torch.float32), torch.tensor(weights), g, aggregation)


def test_every_group_flat_is_decided_from_the_rewards():
    assert flat([[0.0]] * 4 + [[1.0]] * 4)  # two groups, each flat (the batch's std is not zero)
    assert not flat([[0.0]] * 4 + [[1.0], [1.0], [1.0], [0.0]])  # the second group has a spread
    assert flat([[0.1]] * 8)  # rounding in the mean does not count as a spread
    assert flat([[1.0], [1.0], [NAN], [1.0]])  # unscorable completions are left out, as TRL does
    assert flat([[NAN], [NAN], [NAN], [0.3]])  # one scorable completion: no spread to learn from
    # two functions: their weighted sum decides (TRL's default aggregation) ...
    assert flat([[1.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 2.0]], weights=(2.0, 1.0))
    assert not flat([[1.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 2.0]], weights=(1.0, 1.0))
    # ... or, normalising each function first, every function must be flat in every group
    both = [[1.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 2.0]]
    assert not flat(both, weights=(2.0, 1.0), aggregation="normalize_then_sum")
    assert flat([[1.0, 0.5]] * 4, weights=(1.0, 1.0), aggregation="normalize_then_sum")


def test_the_option_is_validated(tmp_path):
    with pytest.raises(ValueError, match=r"skip_zero_std_batches='yes' is not allowed.*a bool"):
        SFPOConfig(output_dir=str(tmp_path), use_cpu=True, skip_zero_std_batches="yes")


class Records(TrainerCallback):
    def __init__(self):
        self.records = []

    def on_rl_step_end(self, args, state, control, metrics=None, **kwargs):
        self.records.append(metrics)


def train(tiny_lm, data, tmp_path, reward=flat_then_digit_reward, **overrides):
    records = Records()
    args = sfpo_args(tmp_path, weight_decay=0.01, **overrides)  # an update on a flat batch would move weights
    trainer = SFPOTrainer(model=tiny_lm, reward_funcs=reward, args=args, train_dataset=data, callbacks=[records])
    trainer.train()
    return trainer, records.records


@pytest.mark.parametrize("k", [0, 3], ids=["grpo", "sfpo"])
def test_a_zero_std_batch_changes_no_weight_and_no_optimizer_state(tiny_lm, toy_dataset, tmp_path, k):
    start = AutoModelForCausalLM.from_pretrained(tiny_lm).state_dict()
    trainer, records = train(tiny_lm, toy_dataset, tmp_path, sfpo_inner_steps=k, sfpo_max_rl_steps=1,
                             skip_zero_std_batches=True)
    assert records[0]["frac_reward_zero_std"] == 1.0 and records[0]["sfpo/skipped_zero_std_batch"] == 1
    assert_same(weights(trainer), start)
    assert not trainer.optimizer.state and trainer._anchor.copies == []  # no step, no θ0 snapshot
    assert trainer.sfpo_rollouts == 8 and records[0]["sfpo/rollouts"] == 8  # its rollouts still count
    assert trainer.state.global_step == k + 1  # the optimizer-step budget is spent as without the skip
    assert records[0]["sfpo/active"] == 0 and "sfpo/drift_norm" not in records[0] and "entropy" not in records[0]

    control, _ = train(tiny_lm, toy_dataset, tmp_path / "off", sfpo_inner_steps=k, sfpo_max_rl_steps=1)
    assert control.optimizer.state, "without the skip the flat batch takes optimizer steps"
    assert any(not torch.equal(start[n], w) for n, w in weights(control).items())


@pytest.mark.parametrize("k", [0, 3], ids=["grpo", "sfpo"])
def test_training_goes_on_after_a_skipped_batch(tiny_lm, toy_dataset, tmp_path, k):
    start = AutoModelForCausalLM.from_pretrained(tiny_lm).state_dict()
    trainer, records = train(tiny_lm, toy_dataset, tmp_path, sfpo_inner_steps=k, sfpo_max_rl_steps=3,
                             skip_zero_std_batches=True)
    assert [r["sfpo/skipped_zero_std_batch"] for r in records] == [1, 0, 0]
    assert [r["sfpo/rollouts"] for r in records] == [8, 16, 24]
    assert any(not torch.equal(start[n], w) for n, w in weights(trainer).items())
    if k:
        assert [r["sfpo/active"] for r in records] == [0, 1, 1]
        assert all(r["sfpo/drift_norm"] > 0 for r in records[1:])


def test_k0_with_the_skip_off_is_grpo_on_a_zero_std_batch(tiny_lm, toy_dataset, tmp_path):
    grpo = GRPOTrainer(model=tiny_lm, reward_funcs=flat_then_digit_reward, train_dataset=toy_dataset,
                       args=grpo_args(tmp_path, max_steps=3))
    grpo.train()
    sfpo = SFPOTrainer(model=tiny_lm, reward_funcs=flat_then_digit_reward, train_dataset=toy_dataset,
                       args=sfpo_args(tmp_path, sfpo_inner_steps=0, max_steps=3))
    sfpo.train()
    assert_same(weights(grpo), weights(sfpo))


def test_k0_with_the_skip_on_is_grpo_when_no_batch_is_flat(tiny_lm, toy_dataset, tmp_path):
    """Generating ahead of the first micro-step (to decide the skip) changes nothing else."""
    grpo = GRPOTrainer(model=tiny_lm, reward_funcs=digit_reward, train_dataset=toy_dataset,
                       args=grpo_args(tmp_path, max_steps=3))
    grpo.train()
    sfpo = SFPOTrainer(model=tiny_lm, reward_funcs=digit_reward, train_dataset=toy_dataset,
                       args=sfpo_args(tmp_path, sfpo_inner_steps=0, max_steps=3, skip_zero_std_batches=True))
    sfpo.train()
    assert_same(weights(grpo), weights(sfpo))
    assert [e["sfpo/skipped_zero_std_batch"] for e in sfpo.state.log_history if "sfpo/rl_step" in e] == [0, 0, 0]


@pytest.mark.parametrize("checkpoint", ["checkpoint-4", "checkpoint-8"], ids=["inside-skipped", "inside-next"])
def test_resume_across_a_skipped_batch_equals_the_uninterrupted_run(tiny_lm, toy_dataset, tmp_path, checkpoint):
    # K = 2, 2 micro-batches per pass: 6 optimizer steps per RL step; RL step 1 (steps 1-6) is skipped
    def make(out):
        args = SFPOConfig(output_dir=str(out), **{**COMMON, "per_device_train_batch_size": 4,
                                                  "save_strategy": "steps"},
                          steps_per_generation=2, weight_decay=0.01, sfpo_inner_steps=2, sfpo_switch="none",
                          sfpo_max_rl_steps=2, skip_zero_std_batches=True, save_steps=4)
        return SFPOTrainer(model=tiny_lm, reward_funcs=flat_then_digit_reward, args=args, train_dataset=toy_dataset)

    full = make(tmp_path / "full")
    full.train()
    resumed = make(tmp_path / "resumed")
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / checkpoint))
    assert resumed.sfpo_rl_step == full.sfpo_rl_step == 2 and resumed.sfpo_rollouts == full.sfpo_rollouts
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    skips = [e["sfpo/skipped_zero_std_batch"] for e in resumed.state.log_history if "sfpo/rl_step" in e]
    assert skips == [1, 0]


def test_the_entropy_switch_ignores_an_rl_step_without_a_training_pass():
    switch = SFPOSwitch(window=3, threshold=1.0, patience=2)
    for h in (1.0, 1.0, 1.0, 5.0):
        switch.update(len(switch.history), h)
    assert switch.streak == 1 and switch.active
    switch.update(4, None)  # a skipped batch: no entropy, the streak stands
    assert switch.streak == 1 and switch.last_z is None and switch.active
    step = SFPOSwitch(mode="step", stop_step=2)
    step.update(0, 1.0)
    assert not step.update(1, None) and step.switched_at == 2  # a fixed stop step still counts skipped steps
