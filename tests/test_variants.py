"""The opt-in variants beyond the reference: switch warm-up and patience, optimizer-state restore at the
reposition, and the KL-budget α. Defaults stay the reference (tested in test_switch.py / test_trainer.py)."""

from __future__ import annotations

import math

import pytest
import torch
from trl import GRPOTrainer

from conftest import digit_reward
from sfpo import SFPOConfig, SFPOTrainer
from sfpo.algorithm.kl_budget import kl_budget_alpha, kl_sums
from sfpo.algorithm.reposition import stepped_tensors
from sfpo.algorithm.switch import SFPOSwitch
from test_trainer import COMMON, Recorder, assert_same, grpo_args, run, sfpo_args, weights

# ---------------------------------------------------------------- config


@pytest.mark.parametrize(
    "fields, named",
    [
        (dict(sfpo_switch_warmup=-1), "sfpo_switch_warmup=-1"),
        (dict(sfpo_switch_warmup=1.5), "sfpo_switch_warmup=1.5"),
        (dict(sfpo_switch_patience=0), "sfpo_switch_patience=0"),
        (dict(sfpo_switch="none", sfpo_switch_patience=3), "sfpo_switch_patience=3"),
        (dict(sfpo_switch="step", sfpo_stop_step=4, sfpo_switch_warmup=2), "sfpo_switch_warmup=2"),
        (dict(sfpo_optimizer_state="reset"), "sfpo_optimizer_state='reset'"),
        (dict(sfpo_alpha_mode="adaptive"), "sfpo_alpha_mode='adaptive'"),
        (dict(sfpo_alpha_mode="kl_budget"), "sfpo_kl_budget=None"),
        (dict(sfpo_alpha_mode="kl_budget", sfpo_kl_budget=0.0), "sfpo_kl_budget=0.0"),
        (dict(sfpo_alpha_mode="kl_budget", sfpo_kl_budget=float("inf")), "sfpo_kl_budget=inf"),
        (dict(sfpo_kl_budget=0.01), "sfpo_kl_budget=0.01"),
    ],
)
def test_config_rejects_bad_variant_fields(tmp_path, fields, named):
    with pytest.raises(ValueError, match=named.replace("(", r"\(")) as err:
        SFPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], **fields)
    assert "must be" in str(err.value) or "only" in str(err.value)  # says what is allowed


def test_config_defaults_are_the_reference(tmp_path):
    args = SFPOConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    assert (args.sfpo_switch_warmup, args.sfpo_switch_patience) == (0, 1)
    assert (args.sfpo_optimizer_state, args.sfpo_alpha_mode, args.sfpo_kl_budget) == ("keep", "fixed", None)


# ---------------------------------------------------------------- switch: warm-up and patience


def feed(switch: SFPOSwitch, series: list[float]) -> list[bool]:
    return [switch.update(step, h) for step, h in enumerate(series)]


SPIKES = [2.0, 1.9, 2.1, 2.0, 1.95, 2.05, 3.0, 2.0, 2.0, 2.0, 2.0, 3.5, 4.5, 6.0, 2.0]  # spikes at 6 and 11-13


def test_default_warmup_and_patience_are_the_reference_rule():
    ref, explicit = SFPOSwitch(window=5), SFPOSwitch(window=5, warmup=0, patience=1)
    assert feed(ref, SPIKES) == feed(explicit, SPIKES)
    assert ref.switched_at == explicit.switched_at == 7


def test_warmup_ignores_early_crossings_but_keeps_their_entropies():
    switch = SFPOSwitch(window=5, warmup=8)
    active = feed(switch, SPIKES)
    assert switch.switched_at == 12  # the spike at step 6 is in the warm-up; step 11's z counts
    assert active == [True] * 11 + [False] * 4
    assert len(switch.history) == len(SPIKES)  # warm-up entropies fill the window all the same
    edge = SFPOSwitch(window=5, warmup=6)  # step 6 is the first counted step
    feed(edge, SPIKES)
    assert edge.switched_at == 7


def test_patience_needs_consecutive_crossings():
    switch = SFPOSwitch(window=5, patience=3)
    feed(switch, SPIKES)
    assert switch.switched_at == 14  # the lone spike at 6 resets; 11, 12, 13 are three in a row
    two = SFPOSwitch(window=5, patience=2)
    feed(two, SPIKES)
    assert two.switched_at == 13
    never = SFPOSwitch(window=5, patience=4)
    assert all(feed(never, SPIKES)) and never.switched_at is None


def test_patience_with_two_sided_rule_and_steady_trend():
    series = [5.0 - 0.1 * s for s in range(40)]  # the two-sided rule crosses on every step once W values exist
    switch = SFPOSwitch(window=30, two_sided=True, warmup=31, patience=3)
    feed(switch, series)
    assert switch.switched_at == 34  # steps 31, 32, 33 counted


def test_switch_state_dict_carries_the_streak():
    a = SFPOSwitch(window=5, patience=3)
    feed(a, SPIKES[:13])  # streak 2 after steps 11 and 12
    assert a.streak == 2 and a.active
    b = SFPOSwitch(window=5, patience=3)
    b.load_state_dict(a.state_dict())
    assert b.update(13, SPIKES[13]) is False and b.switched_at == 14
    legacy = {k: v for k, v in a.state_dict().items() if k != "streak"}  # a checkpoint from before the option
    c = SFPOSwitch(window=5, patience=3)
    c.load_state_dict(legacy)
    assert c.streak == 0


# ---------------------------------------------------------------- optimizer state: restore


def adam_state(trainer) -> list[dict]:
    opt = trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer
    return [{k: v.clone() for k, v in opt.state[p].items()} for p in stepped_tensors(opt)]


@pytest.mark.parametrize("k", [2, pytest.param(3, marks=pytest.mark.slow)])
def test_alpha_zero_with_restore_is_one_grpo_pass_weights_and_adam_state(tiny_lm, toy_dataset, tmp_path, k):
    # AdamW with a constant learning rate: the slow pass starts from θ̃ = θ0 with θ0's (empty) optimizer state,
    # which is exactly GRPO's first pass. Two optimizer steps per pass, so the pass's second step sees state.
    common = dict(steps_per_generation=2, per_device_train_batch_size=4)
    grpo = run(GRPOTrainer, tiny_lm, grpo_args(tmp_path, max_steps=2, **common), toy_dataset)
    sfpo = run(SFPOTrainer, tiny_lm, sfpo_args(tmp_path, sfpo_inner_steps=k, sfpo_alpha=0.0, sfpo_max_rl_steps=1,
                                               sfpo_optimizer_state="restore", **common), toy_dataset)
    assert sfpo.state.global_step == 2 * (k + 1)
    assert_same(weights(grpo), weights(sfpo), exact=False)
    for g, s in zip(adam_state(grpo), adam_state(sfpo)):
        assert g.keys() == s.keys() == {"step", "exp_avg", "exp_avg_sq"}
        assert float(g["step"]) == float(s["step"]) == 2.0
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(g[key], s[key], rtol=1e-5, atol=1e-9)
    keep = run(SFPOTrainer, tiny_lm, sfpo_args(tmp_path, sfpo_inner_steps=k, sfpo_alpha=0.0, sfpo_max_rl_steps=1,
                                               **common), toy_dataset)
    assert float(adam_state(keep)[0]["step"]) == 2.0 * (k + 1)  # the reference keeps the fast trajectory's state
    assert max(float((a - b).abs().max()) for a, b in zip(weights(keep).values(), weights(grpo).values())) > 1e-4


class StateRecorder(SFPOTrainer):
    """Records the optimizer state at the start of RL step 2 (before its first update) and when its slow pass
    starts (after the reposition)."""

    def _prepare_inputs(self, generation_batch):
        spg = self.args.steps_per_generation
        phase = self._step % (spg * self.num_iterations)
        if self.sfpo_rl_step == 1 and phase == 0:
            self.at_theta0 = adam_state(self)
        if self.sfpo_rl_step == 1 and phase == self.sfpo_k * spg:
            self.at_slow = adam_state(self)
        return super()._prepare_inputs(generation_batch)


@pytest.mark.parametrize("mode", [pytest.param("keep", marks=pytest.mark.slow), "restore"])
def test_restore_puts_back_theta0_state_in_place(tiny_lm, toy_dataset, tmp_path, mode):
    args = sfpo_args(tmp_path, sfpo_inner_steps=2, sfpo_alpha=0.5, sfpo_max_rl_steps=2, sfpo_optimizer_state=mode)
    trainer = run(StateRecorder, tiny_lm, args, toy_dataset)
    # after RL step 1: 3 updates kept, or the state at θ0 (none) restored plus the slow pass's update
    steps = 3.0 if mode == "keep" else 1.0
    assert [float(s["step"]) for s in trainer.at_theta0] == [steps] * len(trainer.at_theta0)
    for before, slow in zip(trainer.at_theta0, trainer.at_slow):
        same = all(torch.equal(before[key], slow[key]) for key in before)
        assert same == (mode == "restore")
    if mode == "restore":
        assert trainer._state_copy.nbytes == sum(
            v.numel() * v.element_size() for s in adam_state(trainer) for v in s.values()
        )  # one extra copy of the optimizer state


# ---------------------------------------------------------------- α from a KL budget


def test_kl_estimate_is_zero_at_theta0_and_grows_with_the_drift():
    old = torch.log(torch.tensor([[0.5, 0.2, 0.9], [0.3, 0.3, 0.1]]))
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    assert kl_sums(old, old, mask).tolist() == [0.0, 5.0]
    near, far = old + 0.05, old + torch.tensor([[0.3, -0.4, 0.2], [0.5, -0.1, 9.0]])
    k_near, k_far = (kl_sums(old, new, mask) for new in (near, far))
    assert 0 < k_near[0] < k_far[0]
    w = math.exp(0.3)  # one token by hand: w log w − (w − 1)
    assert kl_sums(old[:1, :1], far[:1, :1], mask[:1, :1])[0].item() == pytest.approx(w * 0.3 - (w - 1))
    assert k_far[1] == 5  # the masked token (log-ratio 9) does not count


def test_kl_budget_alpha_on_scripted_kls():
    assert kl_budget_alpha(0.8, 0.01, 0.0) == 0.8
    assert kl_budget_alpha(0.8, 0.01, 0.005) == 0.8  # within budget: the configured α
    assert kl_budget_alpha(0.8, 0.01, 0.01) == 0.8
    assert kl_budget_alpha(0.8, 0.01, 0.0125) == 0.8  # sqrt(0.8) > 0.8
    assert kl_budget_alpha(0.8, 0.01, 0.04) == pytest.approx(0.5)
    assert kl_budget_alpha(0.8, 0.01, 1.0) == pytest.approx(0.1)
    assert kl_budget_alpha(0.8, 0.01, float("nan")) == 0.0


class KLRecorder(Recorder):
    """Recorder (θ0, θK, θ̃) that also records the KL_K the trainer measured."""

    def _kl_budget_reposition(self, model):
        super()._kl_budget_reposition(model)
        self.kls = getattr(self, "kls", []) + [(self._kl_fast, self._alpha_t)]


@pytest.mark.parametrize("budget, within", [(1e9, True), (1e-9, False)])
def test_kl_budget_picks_alpha_and_repositions_with_it(tiny_lm, toy_dataset, tmp_path, budget, within):
    args = sfpo_args(tmp_path, sfpo_inner_steps=2, sfpo_alpha=0.8, sfpo_max_rl_steps=2, sfpo_alpha_mode="kl_budget",
                     sfpo_kl_budget=budget, steps_per_generation=2, per_device_train_batch_size=4)
    trainer = run(KLRecorder, tiny_lm, args, toy_dataset)
    (kl, alpha), _ = trainer.kls
    assert kl > 0
    expected = 0.8 if within else math.sqrt(budget / kl)
    assert alpha == pytest.approx(expected) and (alpha == 0.8) == within
    for t0, tk, tt in zip(trainer.theta0, trainer.theta_k, trainer.theta_tilde):
        assert torch.equal(tt, torch.lerp(tk, t0, 1 - alpha))
    logs = [h for h in trainer.state.log_history if "sfpo/rl_step" in h]
    assert [h["sfpo/alpha"] for h in logs] == [a for _, a in trainer.kls]
    assert [h["sfpo/kl_fast"] for h in logs] == [k for k, _ in trainer.kls]
    assert all(h["sfpo/drift_norm"] > 0 for h in logs)
    if within:  # the deferred reposition with α = sfpo_alpha is the fixed-α run, exactly
        fixed = run(SFPOTrainer, tiny_lm, sfpo_args(tmp_path, sfpo_inner_steps=2, sfpo_alpha=0.8, sfpo_max_rl_steps=2,
                                                    steps_per_generation=2, per_device_train_batch_size=4), toy_dataset)
        assert_same(weights(fixed), weights(trainer))


@pytest.mark.slow  # the resume test below runs every variant together too
def test_kl_budget_with_restore_and_patience_runs_together(tiny_lm, toy_dataset, tmp_path):
    args = sfpo_args(tmp_path, sfpo_inner_steps=1, sfpo_alpha=0.9, sfpo_max_rl_steps=3, sfpo_alpha_mode="kl_budget",
                     sfpo_kl_budget=1e-6, sfpo_optimizer_state="restore", sfpo_zscore_window=2,
                     sfpo_switch_warmup=1, sfpo_switch_patience=2)
    trainer = run(SFPOTrainer, tiny_lm, args, toy_dataset)
    logs = [h for h in trainer.state.log_history if "sfpo/rl_step" in h]
    assert len(logs) == 3 and all(0 < h["sfpo/alpha"] < 0.9 for h in logs if h["sfpo/active"])
    assert all("sfpo/switch_streak" in h for h in logs)
    assert COMMON["lr_scheduler_type"] == "constant"


def test_resume_mid_rl_step_with_every_variant_on(tiny_lm, toy_dataset, tmp_path):
    # K=2, 2 optimizer steps per pass: 6 per RL step. checkpoint-4 falls after pass K, before kl_budget's
    # deferred reposition; checkpoint-8 inside RL step 2, where the optimizer-state copy is not empty.
    def make(out):
        args = sfpo_args(out, sfpo_inner_steps=2, sfpo_alpha=0.9, sfpo_max_rl_steps=2, steps_per_generation=2,
                         per_device_train_batch_size=4, sfpo_optimizer_state="restore", sfpo_alpha_mode="kl_budget",
                         sfpo_kl_budget=1e-6, sfpo_zscore_window=2, sfpo_switch_patience=2, save_strategy="steps",
                         save_steps=4)
        return SFPOTrainer(model=tiny_lm, reward_funcs=digit_reward, args=args, train_dataset=toy_dataset)

    full = make(tmp_path / "full")
    full.train()
    final = weights(full)
    alphas = [h["sfpo/alpha"] for h in full.state.log_history if "sfpo/alpha" in h]
    assert all(0 < a < 0.9 for a in alphas)
    for checkpoint in ("checkpoint-4", "checkpoint-8"):
        resumed = make(tmp_path / checkpoint)
        resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "sfpo" / checkpoint))
        assert resumed.state.global_step == full.state.global_step == 12
        assert_same(final, weights(resumed))
        assert resumed.sfpo_switch.state_dict() == full.sfpo_switch.state_dict()


@pytest.mark.parametrize(("offload", "refused"), [("nvme", True), ("cpu", False), (None, False)])
def test_kl_budget_is_refused_only_with_nvme_optimizer_offload(offload, refused):
    """Under DeepSpeed kl_budget moves the fp32 masters between steps: impossible while ZeRO swaps them to NVMe."""
    from types import SimpleNamespace

    zero = {"stage": 3, **({"offload_optimizer": {"device": offload}} if offload else {})}
    plugin = SimpleNamespace(deepspeed_config={"zero_optimization": zero})
    fake = SimpleNamespace(
        sfpo_k=3,
        args=SimpleNamespace(sfpo_alpha_mode="kl_budget"),
        accelerator=SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=plugin)),
    )
    if refused:
        with pytest.raises(ValueError, match="offload_optimizer.device='nvme'"):
            SFPOTrainer._check_kl_budget_backend(fake)
    else:
        SFPOTrainer._check_kl_budget_backend(fake)
