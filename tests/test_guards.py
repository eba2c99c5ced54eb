"""The guards at the trainer's boundary (sfpo.algorithm.guards).

A raising reward is called once, as GRPOTrainer calls it, and its exception goes on unchanged with a note naming the
function; a NaN, wrong-length or non-numeric output stops the run naming the function (a ValueError), before any
update; None keeps TRL's 'not applicable' meaning. A training set is refused only where GRPOTrainer would fail on
it or train zero steps (shown here against GRPOTrainer itself); tests/test_parity.py has the side-by-side runs."""

from __future__ import annotations

import asyncio
import math
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from _tiny_config import tiny_cpu
from conftest import digit_reward
from sfpo import SFPOConfig, SFPOTrainer
from sfpo.algorithm.guards import (
    RewardFunctionError,
    RewardTypeError,
    check_reward_output,
    check_train_dataset,
    guard_reward_funcs,
    reward_failure,
)

BASE = tiny_cpu(
    seed=1,
    per_device_train_batch_size=4,
    num_generations=4,
    steps_per_generation=2,
    max_completion_length=5,
    learning_rate=5e-3,
    lr_scheduler_type="constant",
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


def exploding(seen: list):
    def exploding_reward(completions, prompts=None, **kwargs):
        seen.append(list(prompts))
        return [1.0 / (p != BAD_PROMPT) for p in prompts]  # ZeroDivisionError on one prompt

    return exploding_reward


def test_a_raising_reward_is_called_once_and_its_exception_goes_on_with_a_note(tiny_lm, toy_dataset, tmp_path):
    seen: list[list[str]] = []
    data = toy_dataset.filter(lambda row: row["prompt"] in (BAD_PROMPT, "1+1=", "2+2="))
    trainer = make_trainer(tiny_lm, data, tmp_path, [digit_reward, exploding(seen)])
    before = weights(trainer)
    with pytest.raises(ZeroDivisionError) as err:  # the reward's own type: `except ZeroDivisionError` still works
        trainer.train()
    assert len(seen) == 1 and BAD_PROMPT in seen[0], "called once, on the batch, as GRPOTrainer calls it"
    assert str(err.value) == "float division by zero"
    (note,) = err.value.__notes__
    assert f"reward function 'exploding_reward' on a batch of {len(seen[0])} completions" in note
    assert "global step 0" in note and "sfpo_diagnose_reward_errors=True" in note
    assert reward_failure(err.value) == note.removeprefix("sfpo: ")
    assert_unchanged(before, trainer)


def test_diagnosis_is_opt_in_and_names_the_sample(tiny_lm, toy_dataset, tmp_path):
    seen: list[list[str]] = []
    data = toy_dataset.filter(lambda row: row["prompt"] in (BAD_PROMPT, "1+1=", "2+2="))
    args = SFPOConfig(output_dir=str(tmp_path), **BASE, sfpo_diagnose_reward_errors=True)
    trainer = SFPOTrainer(model=tiny_lm, reward_funcs=[digit_reward, exploding(seen)], args=args, train_dataset=data)
    before = weights(trainer)
    with pytest.raises(ZeroDivisionError) as err:
        trainer.train()
    batch, *again = seen
    index = batch.index(BAD_PROMPT)
    assert again == [[p] for p in batch[: index + 1]], "re-called one sample at a time, up to the first that raises"
    _, diagnosis = err.value.__notes__
    assert f"called 'exploding_reward' again on {index + 1} single sample(s): sample {index} of {len(batch)}" in (
        diagnosis
    )
    assert_unchanged(before, trainer)


def test_diagnosis_says_when_no_single_sample_raises():
    calls = []

    def batch_only(completions, **kwargs):
        calls.append(len(completions))
        if len(completions) > 1:
            raise RuntimeError("the judge takes one sample at a time")
        return [0.0]

    (guarded,) = guard_reward_funcs([batch_only], ["batch_only"], diagnose=True)
    with pytest.raises(RuntimeError) as err:
        guarded(completions=["a", "b"], prompts=["p", "q"])
    assert calls == [2, 1, 1] and "none of the 2 raises on its own" in err.value.__notes__[1]


def test_async_raising_reward_keeps_its_type_and_is_awaited_once():
    calls = []

    async def judge(completions, **kwargs):
        calls.append(len(completions))
        raise ConnectionError("judge unreachable")

    (guarded,) = guard_reward_funcs([judge], ["judge"])
    with pytest.raises(ConnectionError, match="judge unreachable") as err:
        asyncio.run(guarded(completions=["a", "b"], prompts=["p", "q"]))
    assert calls == [2] and "reward function 'judge' on a batch of 2 completions" in err.value.__notes__[0]


def test_reward_failure_follows_the_cause_chain():
    def broken(completions, **kwargs):
        raise KeyError("answer")

    (guarded,) = guard_reward_funcs([broken], ["broken"])
    try:
        try:
            guarded(completions=["a"])
        except KeyError as inner:
            raise RuntimeError("wrapped by a caller") from inner
    except RuntimeError as outer:
        assert "reward function 'broken' on a batch of 1 completions" in reward_failure(outer)
    assert reward_failure(ValueError("not from a reward")) is None


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
    with pytest.raises(ValueError) as err:  # what TRL's own length check raises
        trainer.train()
    assert isinstance(err.value, RewardFunctionError)
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
    # everything TRL turns into one number per completion passes, as the list TRL will iterate
    assert check_reward_output("r", [1, 0.5, None, True], 4) == [1, 0.5, None, True]
    assert check_reward_output("r", torch.tensor([1.0, 2.0]), 2)[1] == 2.0
    assert check_reward_output("r", (x / 2 for x in range(2)), 2) == [0.0, 0.5]  # a generator: TRL reads it once
    assert check_reward_output("r", (Decimal("0.5"), np.float32(1)), 2) == [Decimal("0.5"), np.float32(1)]
    assert check_reward_output("r", np.array([1.0]), 1) == [1.0]
    for bad, kind, word in [
        (None, TypeError, "returned None"),  # TRL: TypeError, 'NoneType' object is not iterable
        (1.0, TypeError, "returned 1.0"),
        ("11", ValueError, "returned '11'"),  # TRL: ValueError, too many dimensions 'str'
        ({0: 1.0, 1: 1.0}, TypeError, "(dict)"),  # TRL would take the keys as rewards
        ([1.0], ValueError, "1 values for 2"),  # TRL: ValueError, returned 1 rewards, but 2 were expected
        ([1.0, float("inf")], ValueError, "inf for sample 1"),  # TRL trains on it
        ([1.0, float("nan")], ValueError, "nan for sample 1"),  # TRL takes it as None
        ([1.0, [2.0]], TypeError, "sample 1"),
        ([1.0, "2"], TypeError, "'2' (str) for sample 1"),  # TRL: TypeError, must be real number, not str
    ]:
        with pytest.raises(RewardFunctionError, match="'r'") as err:
            check_reward_output("r", bad, 2)
        assert isinstance(err.value, kind) and isinstance(err.value, ValueError), (bad, type(err.value))
        assert word in str(err.value)
    assert issubclass(RewardTypeError, TypeError) and issubclass(RewardTypeError, ValueError)


def test_async_rewards_stay_async_and_are_checked():
    async def judge(completions, **kwargs):
        return [math.nan for _ in completions]

    (guarded,) = guard_reward_funcs([judge], ["judge"])
    from trl.trainer.utils import get_callable_name, is_async_callable

    assert is_async_callable(guarded) and get_callable_name(guarded) == "judge"
    with pytest.raises(RewardFunctionError, match="'judge' returned nan for sample 0"):
        asyncio.run(guarded(completions=["a", "b"], prompts=["p", "q"]))


# ---------------------------------------------------------------------------------------------- the training set


def grpo(tiny_lm, data, tmp_path, **overrides):
    fields = {k: v for k, v in BASE.items() if not k.startswith("sfpo_")}
    args = GRPOConfig(output_dir=str(tmp_path / "grpo"), **{**fields, "max_steps": 3, **overrides})
    return GRPOTrainer(model=tiny_lm, reward_funcs=digit_reward, args=args, train_dataset=data)


def sfpo(tiny_lm, data, tmp_path, **overrides):
    args = SFPOConfig(output_dir=str(tmp_path / "sfpo"), **{**BASE, **overrides})
    return SFPOTrainer(model=tiny_lm, reward_funcs=digit_reward, args=args, train_dataset=data)


@pytest.mark.parametrize("rows", [0, 1], ids=["empty", "less-than-one-generation-batch"])
def test_a_set_without_one_generation_batch_is_refused_where_grpo_trains_zero_steps(tiny_lm, toy_dataset,
                                                                                     tmp_path, rows):
    data = toy_dataset.select(range(rows))  # one generation batch takes 8 / 4 = 2 prompts
    grpo_run = grpo(tiny_lm, data, tmp_path)
    grpo_run.train()
    assert grpo_run.state.global_step == 0, "GRPOTrainer trains zero steps, without a word"
    with pytest.raises(ValueError, match="max_steps must be set"):  # or, with max_steps unset, refuses at train()
        grpo(tiny_lm, data, tmp_path, max_steps=-1).train()
    with pytest.raises(ValueError, match="empty" if rows == 0 else "has 1 prompts but one generation batch takes 2"):
        sfpo(tiny_lm, data, tmp_path)  # SFPOTrainer says so at construction
    for k in (0, 3):
        with pytest.raises(ValueError):
            sfpo(tiny_lm, data, tmp_path, sfpo_inner_steps=k)


def test_a_set_without_prompts_is_refused_only_where_grpo_fails_on_it(tiny_lm, toy_dataset, tmp_path):
    data = toy_dataset.rename_column("prompt", "question")
    with pytest.raises(KeyError, match="prompt"):  # GRPOTrainer: at its first generation batch
        grpo(tiny_lm, data, tmp_path).train()
    for k in (0, 3):
        with pytest.raises(ValueError, match=r"no 'prompt' column \(its columns: \['answer', 'question'\]\)"):
            sfpo(tiny_lm, data, tmp_path, sfpo_inner_steps=k)
    # with an environment_factory TRL takes the prompts from reset(): no refusal (run in tests/test_parity.py)
    args = SFPOConfig(output_dir=str(tmp_path), **BASE)
    check_train_dataset(Dataset.from_dict({"environment": ["a", "b"]}), args, prompt_required=False)


def test_what_grpo_accepts_passes_the_check(tmp_path, toy_dataset):
    args = SFPOConfig(output_dir=str(tmp_path), **BASE)
    check_train_dataset(None, args)  # an environment owns the data (TRL builds a placeholder set)
    check_train_dataset(toy_dataset.to_iterable_dataset(), args)  # streamed: TRL cannot count it either
    check_train_dataset(Dataset.from_dict({"prompt": ["a", "b"], "image": [None, None], "tools": [[], []],
                                           "environment": ["x", "y"]}), args)  # fmt: skip


# ---------------------------------------------------------------------------------------------- the CLI


def test_sfpo_train_names_a_raising_reward_whatever_its_type(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import sfpo.app.pipeline
    from sfpo.app.cli import app

    def judge(completions, **kwargs):
        raise FileNotFoundError("rubric.txt")  # a type the CLI otherwise reports as bad input (exit 2)

    monkeypatch.setattr(sfpo.app.pipeline, "build_rewards", lambda recipe: [judge])
    recipe = Path(__file__).resolve().parents[1] / "configs" / "cpu" / "tiny-arithmetic-sfpo.yaml"
    sets = [f"trainer.output_dir={tmp_path / 'run'}", "trainer.sfpo_max_rl_steps=1", "eval=null",
            "trainer.generation_batch_size=8", "trainer.per_device_train_batch_size=4", "trainer.num_generations=4"]
    result = CliRunner().invoke(app, ["train", "--config", str(recipe), *[a for s in sets for a in ("--set", s)]])
    assert result.exit_code == 1, result.output + repr(result.exception)
    assert "error: FileNotFoundError: rubric.txt" in result.output
    assert "reward function 'judge' on a batch of 8 completions" in result.output
