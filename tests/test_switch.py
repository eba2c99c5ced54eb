"""The entropy switch (docs/algorithm.md#the-switch) on scripted series, and what the trainer does once it has fired."""

from __future__ import annotations

import math

import pytest
from transformers import TrainerCallback

from _tiny_config import tiny_cpu
from conftest import digit_reward
from sfpo import SFPOConfig, SFPOTrainer
from sfpo.algorithm.switch import SFPOSwitch, entropy_zscore


class RLSteps(TrainerCallback):
    def __init__(self):
        self.records = []

    def on_rl_step_end(self, args, state, control, metrics=None, **kwargs):
        self.records.append(metrics)


def feed(switch: SFPOSwitch, series: list[float]) -> list[bool]:
    return [switch.update(step, h) for step, h in enumerate(series)]


def test_zscore_uses_population_std_and_includes_newest():
    history = [1.0, 2.0, 3.0, 4.0]
    mean, std = 2.5, math.sqrt(1.25)
    assert entropy_zscore(history, 4) == pytest.approx((4.0 - mean) / (std + 1e-9))
    assert entropy_zscore(history, 5) is None
    assert entropy_zscore([2.0, 1.0, 1.0, 5.0], 3) == pytest.approx((5 - 7 / 3) / math.sqrt(((1 - 7 / 3) ** 2 * 2 + (5 - 7 / 3) ** 2) / 3))


def test_downward_trend_fires_two_sided_rule_as_soon_as_window_is_full():
    series = [5.0 - 0.1 * s for s in range(40)]
    two = SFPOSwitch(window=30, threshold=1.0, two_sided=True)
    active = feed(two, series)
    assert two.switched_at == 30 and active.index(False) == 29  # decided after step 29, applies from step 30
    assert two.last_z == pytest.approx(-1.675, abs=1e-3)  # the newest point sits ~1.7 sigma below the mean
    one = SFPOSwitch(window=30, threshold=1.0, two_sided=False)
    assert all(feed(one, series)) and one.switched_at is None


def test_preceding_window_scores_the_newest_value_against_the_values_before_it():
    history = [1.0, 2.0, 3.0, 10.0]
    mean, std = 2.0, math.sqrt(2 / 3)
    assert entropy_zscore(history, 3, preceding=True) == pytest.approx((10.0 - mean) / (std + 1e-9))
    assert entropy_zscore(history[:3], 3, preceding=True) is None  # needs W values before the newest
    # a window that holds the scored value bounds z by sqrt(W - 1); the preceding window does not
    assert entropy_zscore(history, 4) <= math.sqrt(3) < entropy_zscore(history, 3, preceding=True)
    gxpo = SFPOSwitch(window=3, threshold=3.0, patience=2, preceding=True)
    assert feed(gxpo, [1.0, 2.0, 1.0, 2.0, 9.0, 20.0, 1.0]) == [True] * 5 + [False] * 2 and gxpo.switched_at == 6


def test_upward_spike_fires_one_sided_rule_and_stays_off():
    series = [2.0, 1.9, 2.1, 2.0, 1.95, 2.05, 3.0, 2.0, 2.0, 2.0]
    switch = SFPOSwitch(window=5, threshold=1.0)
    active = feed(switch, series)
    assert active == [True] * 6 + [False] * 4
    assert switch.switched_at == 7  # the spike at step 6 turns SFPO off from step 7 on
    switch.update(10, 0.0)
    assert not switch.active, "sticky"


def test_no_decision_before_window_and_none_mode_never_fires():
    switch = SFPOSwitch(window=4, threshold=0.5)
    assert feed(switch, [1.0, 9.0, 1.0]) == [True] * 3 and switch.last_z is None
    never = SFPOSwitch(mode="none", window=2, threshold=0.1)
    assert all(feed(never, [1.0, 9.0, 1.0, 20.0]))


def test_step_switch():
    switch = SFPOSwitch(mode="step", stop_step=3)
    assert feed(switch, [1.0] * 5) == [True, True, False, False, False] and switch.switched_at == 3
    zero = SFPOSwitch(mode="step", stop_step=0)
    zero.starts_active()
    assert not zero.active and zero.switched_at == 0


class Scripted(SFPOTrainer):
    """Replaces the measured entropy by a scripted series and records what each RL step did."""

    series: list[float] = []

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.record = []
        self.prompts = []
        self.losses = 0

    def _compute_loss(self, model, inputs):
        self.losses += 1  # one forward + backward per micro-step
        return super()._compute_loss(model, inputs)

    def _generate_and_score_completions(self, inputs):
        self.prompts.append(sorted({x["prompt"] for x in inputs}))
        return super()._generate_and_score_completions(inputs)

    def _end_rl_step(self):
        self._pass_entropies = [self.series[self.sfpo_rl_step]]
        self.record.append((self.sfpo_active, self._step, self.state.global_step, self.losses))
        super()._end_rl_step()


@pytest.mark.parametrize("two_sided", [False, True])
def test_trainer_after_switch_makes_one_pass_per_batch_and_keeps_prompt_order(tiny_lm, toy_dataset, tmp_path, two_sided):
    # window 3: one-sided fires on the spike at step 4; two-sided fires on the drop at step 2.
    Scripted.series = [3.0, 3.0, 1.0, 1.0, 9.0, 1.0, 1.0, 1.0]
    expected_switch = 3 if two_sided else 5
    args = SFPOConfig(**tiny_cpu(
        output_dir=str(tmp_path), shuffle_dataset=False, per_device_train_batch_size=4, num_generations=4,
        steps_per_generation=2, max_completion_length=4, sfpo_inner_steps=2, sfpo_zscore_window=3,
        sfpo_zscore_two_sided=two_sided, sfpo_max_rl_steps=8,
    ))
    rl_steps = RLSteps()
    trainer = Scripted(model=tiny_lm, reward_funcs=digit_reward, args=args, train_dataset=toy_dataset,
                       callbacks=[rl_steps])
    trainer.train()
    assert trainer.sfpo_switch.switched_at == expected_switch
    active = [r[0] for r in trainer.record]
    assert active == [True] * expected_switch + [False] * (8 - expected_switch)
    losses = [b[3] - a[3] for a, b in zip([(None, 0, 0, 0)] + trainer.record, trainer.record)]
    opt_steps = [b[2] - a[2] for a, b in zip([(None, 0, 0, 0)] + trainer.record, trainer.record)]
    # SFPO step: 3 passes × 2 micro-steps; plain step: 1 pass × 2 micro-steps; one optimizer step per micro-step
    assert losses == [6] * expected_switch + [2] * (8 - expected_switch)
    assert opt_steps[1:] == losses[1:]  # recorded just before each step's last optimizer step
    assert trainer.state.global_step == sum(losses)
    assert [r[1] for r in trainer.record] == [sum(losses[: i + 1]) for i in range(8)]  # TRL's micro-step counter
    # every generation batch is the next 2 prompts of the dataset: nothing skipped, nothing repeated
    order = toy_dataset["prompt"]
    assert trainer.prompts == [sorted(order[2 * i : 2 * i + 2]) for i in range(8)]
    # one on_rl_step_end record per RL step (logging_steps=10 decides only where TRL's log entries fall)
    assert [m["sfpo/active"] for m in rl_steps.records] == [int(a) for a in active]
    assert [m["sfpo/rl_step"] for m in rl_steps.records] == list(range(1, 9))
    # backward passes over a mini-batch (M = 2): (K + 1)·M while SFPO runs, M after the switch
    assert [m["sfpo/backward_passes"] for m in rl_steps.records] == [6] * expected_switch + [2] * (8 - expected_switch)


def test_stop_step_zero_is_plain_grpo_from_the_first_batch(tiny_lm, toy_dataset, tmp_path):
    args = SFPOConfig(**tiny_cpu(
        output_dir=str(tmp_path), shuffle_dataset=False, per_device_train_batch_size=4, num_generations=4,
        steps_per_generation=2, max_completion_length=4, sfpo_inner_steps=2, sfpo_switch="step", sfpo_stop_step=0,
        sfpo_max_rl_steps=3,
    ))
    Scripted.series = [1.0] * 3
    trainer = Scripted(model=tiny_lm, reward_funcs=digit_reward, args=args, train_dataset=toy_dataset)
    trainer.train()
    assert [r[0] for r in trainer.record] == [False] * 3 and trainer.losses == 6
    order = toy_dataset["prompt"]
    assert trainer.prompts == [sorted(order[2 * i : 2 * i + 2]) for i in range(3)]


class Bar(TrainerCallback):
    """Reads the progress bar (transformers' ProgressCallback, which runs after user callbacks) as training ends."""

    def on_train_end(self, args, state, control, **kwargs):
        bar = next(c.training_bar for c in self.trainer.callback_handler.callbacks if hasattr(c, "training_bar"))
        self.total, self.n, self.global_step, self.max_steps = bar.total, bar.n, state.global_step, state.max_steps


@pytest.mark.parametrize("stop_step", [0, 1])
def test_progress_bar_total_follows_the_switch_in_a_run_sized_by_epochs(tiny_lm, toy_dataset, tmp_path, stop_step):
    # 8 prompts, 2 per generation batch: 4 RL steps in one epoch; K=2, one optimizer step per micro-step. Planned as
    # if SFPO stayed on: 4 × 6 = 24 optimizer steps; after the switch an RL step takes 2.
    args = SFPOConfig(**tiny_cpu(
        output_dir=str(tmp_path), disable_tqdm=False, shuffle_dataset=False, per_device_train_batch_size=4,
        num_generations=4,
        steps_per_generation=2, max_completion_length=4, sfpo_inner_steps=2, sfpo_switch="step",
        sfpo_stop_step=stop_step, num_train_epochs=1,
    ))
    bar = Bar()
    trainer = SFPOTrainer(model=tiny_lm, reward_funcs=digit_reward, args=args,
                          train_dataset=toy_dataset.select(range(8)), callbacks=[bar])
    bar.trainer = trainer
    trainer.train()
    assert trainer.sfpo_rl_step == 4
    assert bar.global_step == 6 * stop_step + 2 * (4 - stop_step)
    assert bar.max_steps == bar.total == bar.n == bar.global_step  # the bar ends at 100%


@pytest.mark.parametrize("stop_step", [0, 1])
def test_progress_bar_total_follows_the_switch_in_a_run_sized_in_rl_steps(tiny_lm, toy_dataset, tmp_path, stop_step):
    # sfpo_max_rl_steps=4 plans 4 × 6 optimizer steps (K=2, two per pass); after the switch an RL step takes 2
    args = SFPOConfig(**tiny_cpu(
        output_dir=str(tmp_path), disable_tqdm=False, shuffle_dataset=False, per_device_train_batch_size=4,
        num_generations=4, steps_per_generation=2, max_completion_length=4, sfpo_inner_steps=2, sfpo_switch="step",
        sfpo_stop_step=stop_step, sfpo_max_rl_steps=4,
    ))
    assert args.max_steps == 24
    bar = Bar()
    trainer = SFPOTrainer(model=tiny_lm, reward_funcs=digit_reward, args=args, train_dataset=toy_dataset,
                          callbacks=[bar])
    bar.trainer = trainer
    trainer.train()
    assert trainer.sfpo_rl_step == 4
    assert bar.global_step == 6 * stop_step + 2 * (4 - stop_step)
    assert bar.max_steps == bar.total == bar.n == bar.global_step  # the bar ends at 100%
