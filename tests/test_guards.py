"""Reward-function faults: a raising, NaN, wrong-length or non-numeric reward stops the run naming the
function, before any update; None keeps TRL's 'not applicable' meaning."""

from __future__ import annotations

import asyncio
import math

import pytest
import torch

from conftest import digit_reward
from sfpo import SFPOConfig, SFPOTrainer
from sfpo.guards import RewardFunctionError, check_reward_output, guard_reward_funcs

BASE = dict(
    use_cpu=True,
    bf16=False,
    report_to=[],
    disable_tqdm=True,
    activation_checkpointing=False,
    seed=1,
    per_device_train_batch_size=4,
    num_generations=4,
    steps_per_generation=2,
    max_completion_length=5,
    learning_rate=5e-3,
    lr_scheduler_type="constant",
    save_strategy="no",
    sfpo_inner_steps=1,
    sfpo_max_rl_steps=2,
)
BAD_PROMPT = "3+4="


def make_trainer(tiny_lm, toy_dataset, tmp_path, rewards):
    args = SFPOConfig(output_dir=str(tmp_path), **BASE)
    return SFPOTrainer(model=tiny_lm, reward_funcs=rewards, args=args, train_dataset=toy_dataset)


def weights(trainer):
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def assert_unchanged(before, trainer):
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the weights moved before the reward error"


def test_raising_reward_names_function_sample_and_exception(tiny_lm, toy_dataset, tmp_path):
    seen: list[list[str]] = []

    def exploding_reward(completions, prompts=None, **kwargs):
        seen.append(list(prompts))
        return [1.0 / (p != BAD_PROMPT) for p in prompts]  # ZeroDivisionError on one prompt

    data = toy_dataset.filter(lambda row: row["prompt"] in (BAD_PROMPT, "1+1=", "2+2="))
    trainer = make_trainer(tiny_lm, data, tmp_path, [digit_reward, exploding_reward])
    before = weights(trainer)
    with pytest.raises(RewardFunctionError) as err:
        trainer.train()
    message = str(err.value)
    assert "'exploding_reward'" in message and "ZeroDivisionError" in message
    batch = seen[0]
    index = int(message.split("on sample ")[1].split(" ")[0])
    assert batch[index] == BAD_PROMPT and BAD_PROMPT not in batch[:index], message
    assert f"of {len(batch)}" in message
    assert_unchanged(before, trainer)


@pytest.mark.parametrize(
    "output, words",
    [
        (lambda n: [0.5] * (n - 1) + [math.nan], ["'bad_reward'", "nan", "sample"]),
        (lambda n: [0.5] * (n + 1), ["'bad_reward'", "values for"]),
        (lambda n: ["1.0"] * n, ["'bad_reward'", "'1.0'", "str"]),
    ],
    ids=["nan", "wrong-length", "string"],
)
def test_bad_reward_values_stop_before_any_update(tiny_lm, toy_dataset, tmp_path, output, words):
    def bad_reward(completions, **kwargs):
        return output(len(completions))

    trainer = make_trainer(tiny_lm, toy_dataset, tmp_path, [digit_reward, bad_reward])
    before = weights(trainer)
    with pytest.raises(RewardFunctionError) as err:
        trainer.train()
    for word in words:
        assert word in str(err.value)
    assert_unchanged(before, trainer)


def test_none_still_means_not_applicable(tiny_lm, toy_dataset, tmp_path):
    def sometimes(completions, **kwargs):
        return [None if i % 2 else 1.0 for i in range(len(completions))]

    trainer = make_trainer(tiny_lm, toy_dataset, tmp_path, [digit_reward, sometimes])
    before = weights(trainer)
    trainer.train()
    assert trainer.reward_func_names == ["digit_reward", "sometimes"]  # metric names unchanged by the guard
    after = trainer.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_check_reward_output_table():
    assert check_reward_output("r", [1, 0.5, None, True], 4) == [1, 0.5, None, True]
    assert check_reward_output("r", torch.tensor([1.0, 2.0]), 2)[1] == 2.0
    for bad, word in [
        (None, "returned None"),
        ("11", "returned '11'"),
        ([1.0], "1 values for 2"),
        ([1.0, float("inf")], "inf for sample 1"),
        ([1.0, [2.0]], "sample 1"),
    ]:
        with pytest.raises(RewardFunctionError, match="'r'") as err:
            check_reward_output("r", bad, 2)
        assert word in str(err.value)


def test_async_rewards_stay_async_and_are_checked():
    async def judge(completions, **kwargs):
        return [math.nan for _ in completions]

    (guarded,) = guard_reward_funcs([judge], ["judge"])
    from trl.trainer.utils import get_callable_name, is_async_callable

    assert is_async_callable(guarded) and get_callable_name(guarded) == "judge"
    with pytest.raises(RewardFunctionError, match="'judge' returned nan for sample 0"):
        asyncio.run(guarded(completions=["a", "b"], prompts=["p", "q"]))
