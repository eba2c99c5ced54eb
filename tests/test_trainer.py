"""SFPOTrainer against TRL's GRPOTrainer: the identities of docs/algorithm.md#one-rl-step and the
reference code's semantics (docs/algorithm.md#where-the-paper-is-silent)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM
from trl import GRPOConfig, GRPOTrainer

from _tiny_config import tiny_cpu
from conftest import digit_reward
from sfpo import SFPOConfig, SFPOTrainer
from sfpo.algorithm.reposition import stepped_tensors

COMMON = tiny_cpu(
    per_device_train_batch_size=8,
    num_generations=4,
    max_completion_length=6,
    learning_rate=5e-3,
    lr_scheduler_type="constant",
    seed=0,
    shuffle_dataset=False,
    logging_steps=1,
    )


def sfpo_args(tmp_path, **overrides) -> SFPOConfig:
    return SFPOConfig(output_dir=str(tmp_path / "sfpo"), **{**COMMON, **overrides})


def grpo_args(tmp_path, **overrides) -> GRPOConfig:
    return GRPOConfig(output_dir=str(tmp_path / "grpo"), **{**COMMON, **overrides})


def weights(trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def assert_same(a: dict, b: dict, exact: bool = True) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if exact:
            assert torch.equal(a[k], b[k]), k
        else:
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def run(cls, model, args, data, **kw):
    trainer = cls(model=model, reward_funcs=digit_reward, args=args, train_dataset=data, **kw)
    trainer.train()
    return trainer


def test_k0_is_grpo(tiny_lm, toy_dataset, tmp_path):
    grpo = run(GRPOTrainer, tiny_lm, grpo_args(tmp_path, max_steps=3), toy_dataset)
    sfpo = run(SFPOTrainer, tiny_lm, sfpo_args(tmp_path, sfpo_inner_steps=0, max_steps=3), toy_dataset)
    assert_same(weights(grpo), weights(sfpo))
    assert sfpo.sfpo_rl_step == 3 and sfpo.sfpo_rollouts == 3 * 8
    initial = AutoModelForCausalLM.from_pretrained(tiny_lm).state_dict()
    assert any(not torch.equal(initial[k], v) for k, v in weights(sfpo).items()), "training must move the weights"


def test_alpha_one_is_k_plus_one_passes(tiny_lm, toy_dataset, tmp_path):
    grpo = run(GRPOTrainer, tiny_lm, grpo_args(tmp_path, num_iterations=3, max_steps=6), toy_dataset)
    sfpo = run(
        SFPOTrainer, tiny_lm, sfpo_args(tmp_path, sfpo_inner_steps=2, sfpo_alpha=1.0, max_steps=6), toy_dataset
    )
    assert sfpo.sfpo_rl_step == 2
    assert_same(weights(grpo), weights(sfpo))


def test_alpha_zero_with_sgd_is_one_grpo_step(tiny_lm, toy_dataset, tmp_path):
    common = dict(optim="sgd", weight_decay=0.0, learning_rate=0.5)
    start = SFPOTrainer(
        model=tiny_lm, reward_funcs=digit_reward, args=sfpo_args(tmp_path, max_steps=1), train_dataset=toy_dataset
    )
    theta0 = weights(start)
    grpo = run(GRPOTrainer, tiny_lm, grpo_args(tmp_path, max_steps=1, **common), toy_dataset)
    sfpo = run(
        SFPOTrainer,
        tiny_lm,
        sfpo_args(tmp_path, sfpo_inner_steps=3, sfpo_alpha=0.0, sfpo_max_rl_steps=1, **common),
        toy_dataset,
    )
    assert sfpo.state.global_step == 4  # 3 fast passes + the slow one, one optimizer step each
    assert_same(weights(grpo), weights(sfpo), exact=False)
    moved = [k for k in theta0 if not torch.equal(theta0[k], weights(sfpo)[k])]
    assert moved, "the slow correction must have moved the weights"


class Recorder(SFPOTrainer):
    """Records θ0, θK and the weights the slow pass starts from, plus the AdamW moments around the reposition.

    θK exists only inside the last optimizer step of pass K, between the update and SFPO's reposition: a step
    post-hook registered before SFPO's own (which registers at its first micro-step) sees it there."""

    def training_step(self, model, inputs, num_items_in_batch):
        if not hasattr(self, "theta0"):
            self.theta0 = [p.detach().clone() for p in stepped_tensors(self.optimizer)]
            self.optimizer.optimizer.register_step_post_hook(self._record_theta_k)
        return super().training_step(model, inputs, num_items_in_batch)

    def _record_theta_k(self, opt, args, kwargs):
        if self._step == self.sfpo_k * self.args.steps_per_generation and not hasattr(self, "theta_k"):
            self.theta_k = [p.detach().clone() for p in stepped_tensors(opt)]
            self.moments_before = [opt.state[p]["exp_avg"].clone() for p in stepped_tensors(opt)]

    def _prepare_inputs(self, generation_batch):
        spg = self.args.steps_per_generation
        if self._step % (spg * self.num_iterations) == self.sfpo_k * spg and not hasattr(self, "theta_tilde"):
            self.theta_tilde = [p.detach().clone() for p in stepped_tensors(self.optimizer)]
            self.moments_after = [self.optimizer.state[p]["exp_avg"].clone() for p in stepped_tensors(self.optimizer)]
        return super()._prepare_inputs(generation_batch)


def test_slow_pass_starts_from_the_repositioned_weights(tiny_lm, toy_dataset, tmp_path):
    alpha = 0.3
    args = sfpo_args(tmp_path, sfpo_inner_steps=2, sfpo_alpha=alpha, sfpo_max_rl_steps=1, gradient_accumulation_steps=2)
    trainer = run(Recorder, tiny_lm, args, toy_dataset)
    for t0, tk, tt in zip(trainer.theta0, trainer.theta_k, trainer.theta_tilde):
        assert torch.equal(tt, torch.lerp(tk, t0, 1 - alpha))
        torch.testing.assert_close(tt, t0 + alpha * (tk - t0), rtol=1e-6, atol=1e-6)  # float32 rounding
    assert any(not torch.equal(t0, tk) for t0, tk in zip(trainer.theta0, trainer.theta_k)), "fast passes moved"
    for before, after in zip(trainer.moments_before, trainer.moments_after):
        assert torch.equal(before, after), "optimizer state must survive the reposition"
    # 2 fast passes + 1 slow pass, each pass = steps_per_generation / accumulation = 1 optimizer step here
    assert trainer.state.global_step == 3
    assert trainer.sfpo_rl_step == 1


def test_anchor_on_cpu_and_logged_metrics(tiny_lm, toy_dataset, tmp_path):
    args = sfpo_args(tmp_path, sfpo_inner_steps=1, sfpo_anchor_device="cpu", sfpo_max_rl_steps=2, sfpo_zscore_window=2)
    trainer = run(SFPOTrainer, tiny_lm, args, toy_dataset)
    anchor = trainer._anchor
    assert all(c.device.type == "cpu" for c in anchor.copies)
    trainable = stepped_tensors(trainer.optimizer)
    assert anchor.nbytes == sum(p.numel() * p.element_size() for p in trainable)
    rl_logs = [h for h in trainer.state.log_history if "sfpo/rl_step" in h]
    assert [h["sfpo/rl_step"] for h in rl_logs] == [1, 2]
    assert [h["sfpo/rollouts"] for h in rl_logs] == [8, 16]
    assert all(h["sfpo/active"] == 1 and h["sfpo/alpha"] == 0.8 and h["sfpo/drift_norm"] > 0 for h in rl_logs)
    assert "sfpo/entropy_z" in rl_logs[1] and "sfpo/entropy_z" not in rl_logs[0]


@pytest.mark.parametrize(
    "variant",
    [
        dict(loss_type="grpo"),
        dict(loss_type="dr_grpo"),
        dict(loss_type="bnpo"),
        dict(loss_type="dapo", epsilon_high=0.28),
        dict(loss_type="grpo", importance_sampling_level="sequence"),  # GSPO's sequence-level ratios
        dict(loss_type="cispo"),
    ],
    ids=["grpo", "dr_grpo", "bnpo", "dapo", "gspo", "cispo"],
)
def test_loss_variants_run_the_slow_fast_update(tiny_lm, toy_dataset, tmp_path, variant):
    args = sfpo_args(tmp_path, sfpo_inner_steps=1, sfpo_alpha=0.5, sfpo_max_rl_steps=1, **variant)
    trainer = run(Recorder, tiny_lm, args, toy_dataset)
    for t0, tk, tt in zip(trainer.theta0, trainer.theta_k, trainer.theta_tilde):
        assert torch.equal(tt, torch.lerp(tk, t0, 0.5))
    final = [p.detach() for p in stepped_tensors(trainer.optimizer)]
    assert any(not torch.equal(a, b) for a, b in zip(trainer.theta_tilde, final)), "the slow pass moved the weights"
