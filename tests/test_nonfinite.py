"""The non-finite guard: no NaN reaches the weights, a broken RL step goes back to θ0, and a run that keeps
breaking stops with a checkpoint of the last good weights (docs/failure-modes.md)."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from _tiny_config import tiny_cpu
from conftest import digit_reward
from sfpo import SFPOConfig, SFPOTrainer
from sfpo.algorithm.trainer import NonFiniteTrainingError

COMMON = tiny_cpu(
    per_device_train_batch_size=8, num_generations=4, max_completion_length=6,
    steps_per_generation=2, learning_rate=5e-3, lr_scheduler_type="constant", seed=0,
    shuffle_dataset=False, logging_steps=1,
)


class Injector(SFPOTrainer):
    """Returns a NaN loss at the chosen micro-steps (TRL's `_step`), and records the weights at RL-step starts."""

    nan_at: set[int] = set()

    def compute_loss(self, model, inputs, *args, **kwargs):
        loss = super().compute_loss(model, inputs, *args, **kwargs)
        return loss * math.nan if self._step in self.nan_at else loss

    def training_step(self, model, inputs, num_items_in_batch):
        if self._step % (self.args.steps_per_generation * self.num_iterations) == 0:
            self.starts = [*getattr(self, "starts", []), weights(self)]
        return super().training_step(model, inputs, num_items_in_batch)


def weights(trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def run(tiny_lm, data, tmp_path, nan_at, **overrides):
    cls = type("Injected", (Injector,), {"nan_at": set(nan_at)})
    args = SFPOConfig(output_dir=str(tmp_path / "run"), **{**COMMON, **overrides})
    trainer = cls(model=tiny_lm, reward_funcs=digit_reward, args=args, train_dataset=data)
    trainer.train()
    return trainer


def all_finite(trainer) -> bool:
    state = [v for s in trainer.optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    return all(bool(torch.isfinite(t).all()) for t in [*weights(trainer).values(), *state])


def same(a, b) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("where", [1, 5], ids=["fast-trajectory", "slow-pass"])
def test_nan_loss_rolls_the_rl_step_back_to_theta0(tiny_lm, toy_dataset, tmp_path, where):
    # K = 2, two optimizer steps per pass: micro-steps 0-3 are the fast trajectory, 4-5 the slow pass
    trainer = run(tiny_lm, toy_dataset, tmp_path, {where}, sfpo_inner_steps=2, sfpo_alpha=0.5, sfpo_max_rl_steps=3)
    assert trainer.sfpo_rl_step == 3 and trainer.sfpo_skipped_rl_steps == 1
    start0, start1, start2 = trainer.starts
    assert same(start1, start0), "the broken RL step must leave the weights at its θ0"
    assert not same(start2, start1) and not same(weights(trainer), start2), "training goes on with the next batch"
    assert all_finite(trainer)
    logged = [h["sfpo/skipped_rl_steps"] for h in trainer.state.log_history if "sfpo/skipped_rl_steps" in h]
    assert logged[-1] == 1


def test_plain_grpo_skips_the_rest_of_a_broken_rl_step(tiny_lm, toy_dataset, tmp_path):
    # K = 0 keeps no anchor: the step after the NaN loss is skipped, the earlier one stands
    trainer = run(tiny_lm, toy_dataset, tmp_path, {1}, sfpo_inner_steps=0, sfpo_max_rl_steps=3)
    assert trainer.sfpo_skipped_rl_steps == 1
    start0, start1, start2 = trainer.starts
    assert not same(start1, start0)  # micro-step 0's optimizer step was taken
    assert not same(start2, start1) and all_finite(trainer)


def test_non_finite_gradients_skip_only_that_step(tiny_lm, toy_dataset, tmp_path):
    class NanGrad(SFPOTrainer):
        def training_step(self, model, inputs, num_items_in_batch):
            loss = super().training_step(model, inputs, num_items_in_batch)
            if self._step == 3:  # after micro-step 2's backward: poison one gradient, keep the loss finite
                next(p for p in model.parameters() if p.grad is not None).grad[0] = math.inf
            return loss

    args = SFPOConfig(output_dir=str(tmp_path / "run"), **COMMON, sfpo_inner_steps=2, sfpo_max_rl_steps=2,
                      max_grad_norm=0.0)
    trainer = NanGrad(model=tiny_lm, reward_funcs=digit_reward, args=args, train_dataset=toy_dataset)
    trainer.train()
    assert trainer._in_step.guard.skipped_optimizer_steps == 1
    assert trainer.sfpo_skipped_rl_steps == 0  # the loss was finite: only that step is skipped
    assert all_finite(trainer)


def test_a_run_that_keeps_breaking_stops_with_the_last_good_weights(tiny_lm, toy_dataset, tmp_path):
    with pytest.raises(NonFiniteTrainingError, match=r"3 RL steps in a row.*last good weights"):
        run(tiny_lm, toy_dataset, tmp_path, {1, 7, 13, 19}, sfpo_inner_steps=2, sfpo_max_rl_steps=6,
            save_strategy="steps", save_steps=1000)
    checkpoints = sorted((tmp_path / "run").glob("checkpoint-*"))
    assert len(checkpoints) == 1
    saved = AutoModelForCausalLM.from_pretrained(checkpoints[-1]).state_dict()
    initial = AutoModelForCausalLM.from_pretrained(tiny_lm).state_dict()
    assert all(torch.isfinite(v).all() for v in saved.values())
    assert all(torch.equal(saved[k], initial[k]) for k in initial), "every RL step was rolled back"


def test_a_diverging_learning_rate_never_reaches_a_checkpoint(tiny_lm, toy_dataset, tmp_path):
    # the case users hit: lr 1e30 made the weights non-finite, they were saved, and generation then crashed
    with pytest.raises(NonFiniteTrainingError, match="in a row"):
        run(tiny_lm, toy_dataset, tmp_path, set(), sfpo_inner_steps=1, learning_rate=1e30, sfpo_max_rl_steps=8,
            save_strategy="steps", save_steps=2)
    for checkpoint in (tmp_path / "run").glob("checkpoint-*"):
        saved = AutoModelForCausalLM.from_pretrained(checkpoint).state_dict()
        assert all(torch.isfinite(v).all() for v in saved.values()), checkpoint.name


def test_max_skipped_rl_steps_is_validated(tmp_path):
    with pytest.raises(ValueError, match=r"sfpo_max_skipped_rl_steps=0 is not allowed.*an int ≥ 1"):
        SFPOConfig(output_dir=str(tmp_path), use_cpu=True, sfpo_max_skipped_rl_steps=0)
