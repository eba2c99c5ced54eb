"""SFPOTrainer as a drop-in for TRL's GRPOTrainer, feature by feature (issue 14).

Each GRPOTrainer feature that runs on a CPU offline is trained twice with the same script, once with TRL's
GRPOTrainer and once with SFPOTrainer:

- K = 0 against GRPOTrainer: the same log entries (keys, positions and values; timings aside) and the same weights.
- K = 3 against GRPOTrainer with num_iterations = 4, which takes as many passes over each generation batch and so
  the same optimizer steps and log positions: the same keys in every entry, plus `sfpo/*` in the entries written
  after an RL step ended, and different weights (the reposition moved them).

A reward that raises (sync or async) is run the same way at K = 0 and K = 3 (issue 22): the same calls, the same
exception (type and message) after the same steps; SFPOTrainer only adds a note naming the function.

`logging_steps` is chosen so that there is an entry mid-run and the final summary carries the metrics of the
steps after it, as TRL writes it. Models and tokenizers are built here, offline: a character-level tokenizer
with Qwen2.5's chat template (so TRL recognises it for tool calling; passed as `processing_class`, since loading
it from a Qwen2 folder would give Qwen2's byte-level pipeline), a tiny Qwen2 and a tiny Qwen3-MoE.
Tool calls come from a scripted `generate`, as in TRL's own tool tests, so both trainers see the same rollouts.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import string
from contextlib import nullcontext
from unittest.mock import patch

import pytest
import torch
from datasets import Dataset
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer
from trl.chat_template_utils import qwen2_5_chat_template

from _tiny_config import tiny_cpu
from sfpo import SFPOConfig, SFPOTrainer
from sfpo.app.runlog import RunRecorder, read_metrics

SFPO_PREFIXES = ("sfpo/", "timing/")  # keys SFPOTrainer adds to TRL's log entries
TIMINGS = {"step_time", "train_runtime", "train_samples_per_second", "train_steps_per_second",
           "timing/generation_s", "timing/training_s"}  # wall-clock readings
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MARKUP = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<tools>", "</tools>"]
GROUP = 3  # num_generations; the scripted generate cycles through 3 kinds of answer

COMMON = tiny_cpu(
    per_device_train_batch_size=GROUP,  # one prompt's group per generation batch: long tool prompts stay cheap
    num_generations=GROUP,
    max_completion_length=48,
    learning_rate=1e-2,
    lr_scheduler_type="constant",
    seed=0,
    shuffle_dataset=False,
)


# ---------------------------------------------------------------------------------------------- models


def chat_tokenizer():
    """Character-level tokenizer whose chat template is Qwen2.5's, so TRL sets up tool-call parsing for it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = [c for c in string.printable if c not in "\t\r\x0b\x0c"]
    vocab = {tok: i for i, tok in enumerate(SPECIALS + MARKUP + chars)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        additional_special_tokens=SPECIALS[1:],
    )
    fast.add_tokens(MARKUP)
    fast.padding_side = "left"
    fast.chat_template = qwen2_5_chat_template
    return fast


def _save(model, tokenizer, folder) -> str:
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def dense_lm(tmp_path_factory) -> str:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = chat_tokenizer()
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
    )  # fmt: skip
    return _save(Qwen2ForCausalLM(config), tokenizer, tmp_path_factory.mktemp("dense"))


@pytest.fixture(scope="module")
def moe_lm(tmp_path_factory) -> str:
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    tokenizer = chat_tokenizer()
    torch.manual_seed(0)
    config = Qwen3MoeConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, moe_intermediate_size=32,
        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=16, num_experts=4,
        num_experts_per_tok=2, output_router_logits=True, router_aux_loss_coef=0.01, max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False,
    )  # fmt: skip
    return _save(Qwen3MoeForCausalLM(config), tokenizer, tmp_path_factory.mktemp("moe"))


# ---------------------------------------------------------------------------------------------- data and rewards


def sums(n: int = 16) -> Dataset:
    prompts = [f"{a}+{b}=" for a in range(4) for b in range(4)][:n]
    return Dataset.from_dict({"prompt": prompts, "answer": [str(eval(p[:-1])) for p in prompts]})


def chat_sums(n: int = 16, **columns) -> Dataset:
    prompts = [[{"role": "user", "content": f"What is {a} times {b}?"}] for a in range(4) for b in range(4)][
        :n
    ]
    return Dataset.from_dict({"prompt": prompts, **{k: v[:n] for k, v in columns.items()}})


def digit_share(completions, **kwargs):
    return [sum(c.isdigit() for c in text) / max(len(text), 1) for text in completions]


def short(completions, log_metric=None, **kwargs):
    """Prefers short completions; also reports a metric of its own through TRL's `log_metric`."""
    lengths = [len(text) for text in completions]
    if log_metric is not None:
        log_metric("short/mean_chars", sum(lengths) / len(lengths))
    return [-n / 48 for n in lengths]


def answer_chars(completions, **kwargs):
    """Length of the last message of a conversational completion ("Done!" after a tool call, else the answer)."""
    return [float(len(messages[-1]["content"])) for messages in completions]


def multiply_tool(a: int, b: int) -> int:
    """
    Multiplies two integers.

    Args:
        a: The first integer.
        b: The second integer.

    Returns:
        The product of the two integers.
    """
    return a * b


class AdderEnv:
    """An environment that owns its reward: the running total of its `add` tool."""

    def __init__(self):
        self.total = 0

    def reset(self, **kwargs) -> str:
        self.total = 0
        return "Add 3 and 4."

    def add(self, a: int, b: int) -> int:
        """
        Adds two integers to the running total.

        Args:
            a: The first integer.
            b: The second integer.

        Returns:
            The running total.
        """
        self.total += a + b
        return self.total

    def get_reward(self) -> float:
        return float(self.total)


class ScaleEnv:
    """A second environment, with a tool of its own and no reward."""

    def __init__(self):
        self.factor = 1

    def reset(self, **kwargs) -> None:
        self.factor = 1

    def scale(self, a: int, b: int) -> int:
        """
        Scales the product of two integers by the environment's factor.

        Args:
            a: The first integer.
            b: The second integer.

        Returns:
            The scaled product.
        """
        return self.factor * a * b


def scripted_generate(tokenizer):
    """A `generate` that answers like a tool-using model, the same for every trainer.

    In a group of 3: a valid call of the first tool the prompt offers, a call with a wrong argument name (the tool
    fails), and a plain answer; after a tool response, "Done!".
    """

    def generate(input_ids, **kwargs):
        rows = []
        for i, ids in enumerate(input_ids.tolist()):
            prompt = tokenizer.decode(ids)
            if "<tool_response>" in prompt:
                text = "Done!<|im_end|>"
            else:
                match = re.search(r"\"name\": \"(\w+)\"", prompt)
                assert match, prompt[:2000]
                name = match.group(1)
                args = ['{"a": 3, "b": 4}', '{"a": 3, "c": 4}', None][i % GROUP]
                text = (
                    "I know it: 12<|im_end|>"
                    if args is None
                    else f'<tool_call>\n{{"name": "{name}", "arguments": {args}}}\n</tool_call><|im_end|>'
                )
            rows.append(tokenizer(text)["input_ids"])
        width = max(map(len, rows))
        pad = tokenizer.pad_token_id
        completions = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=input_ids.device)
        return torch.cat([input_ids, completions], dim=1)

    return generate


def sampled_rollout(prompts, trainer):
    """A `rollout_func`: samples with the policy itself and returns the sampled tokens' log-probs."""
    tokenizer = trainer.processing_class
    prompt_ids = [tokenizer(p)["input_ids"] for p in prompts]
    model = trainer.accelerator.unwrap_model(trainer.model)
    completion_ids, logprobs = [], []
    with torch.no_grad():
        for ids in prompt_ids:
            out = model.generate(
                torch.tensor([ids]), do_sample=True, max_new_tokens=8, output_scores=True,
                return_dict_in_generate=True, pad_token_id=tokenizer.pad_token_id,
            )  # fmt: skip
            scores = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
            completion_ids.append(out.sequences[0, len(ids) :].tolist())
            logprobs.append(scores[0].tolist())
    return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": logprobs,
            "rollout_tokens": [len(c) for c in completion_ids]}  # fmt: skip


def rollout_length(completions, rollout_tokens, **kwargs):
    """Reads the extra field the rollout function returned."""
    return [float(n) for n in rollout_tokens]


async def async_digit_share(completions, **kwargs):
    """An async reward (e.g. an LLM judge): TRL awaits it on its event loop."""
    return digit_share(completions)


def odd_only(completions, **kwargs):
    """None ("not applicable", TRL's convention) for every other sample: TRL leaves those out of the sum."""
    return [None if i % 2 == 0 else float(len(text)) / 16 for i, text in enumerate(completions)]


# ---------------------------------------------------------------------------------------------- the feature set


def feature(name: str, dense_lm: str, moe_lm: str) -> dict:
    """Trainer kwargs, config overrides, a context for training, and the keys the final log entry must hold."""
    from peft import LoraConfig

    spec = dict(model=dense_lm, kwargs={}, args={}, scripted=False, keys=set())
    if name == "plain":
        spec.update(kwargs=dict(reward_funcs=digit_share, train_dataset=sums()), keys={"reward", "entropy"})
    elif name == "peft":
        lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
        spec.update(
            kwargs=dict(reward_funcs=digit_share, train_dataset=sums(), peft_config=lora), keys={"reward"}
        )
    elif name == "multi_reward":
        spec.update(
            kwargs=dict(reward_funcs=[digit_share, short], train_dataset=sums()),
            args=dict(reward_weights=[1.0, 0.5]),
            keys={"rewards/digit_share/mean", "rewards/short/mean", "short/mean_chars"},
        )
    elif name == "entropy_control":
        spec.update(
            kwargs=dict(reward_funcs=digit_share, train_dataset=sums()),
            args=dict(
                entropy_coef=0.01, use_adaptive_entropy=True, entropy_target=10.0, entropy_coef_delta=0.01
            ),
            keys={"entropy_coef", "policy_loss"},
        )
    elif name == "moe":
        spec.update(
            model=moe_lm, kwargs=dict(reward_funcs=digit_share, train_dataset=sums()), keys={"aux_loss"}
        )
    elif name == "tools":
        spec.update(
            kwargs=dict(reward_funcs=answer_chars, train_dataset=chat_sums(), tools=[multiply_tool]),
            scripted=True,
            keys={"tools/call_frequency", "tools/failure_frequency", "rewards/answer_chars/mean"},
        )
    elif name == "environment":  # rewards owned by the environment; no reward_funcs, no dataset
        spec.update(kwargs=dict(environment_factory=AdderEnv), scripted=True,
                    keys={"tools/call_frequency", "rewards/AdderEnv/mean"})  # fmt: skip
    elif name == "environments":  # several environments, routed by the dataset's `environment` column
        data = chat_sums(environment=["adder", "scale"] * 8)
        spec.update(
            kwargs=dict(reward_funcs=answer_chars, train_dataset=data,
                        environment_factory={"adder": AdderEnv, "scale": ScaleEnv}),
            scripted=True,
            keys={"tools/call_frequency", "rewards/AdderEnv/mean", "rewards/answer_chars/mean"},
        )  # fmt: skip
    elif name == "environments_only":  # an environment-only dataset: no `prompt` column, reset() gives the prompt
        data = Dataset.from_dict({"environment": ["adder", "scale"] * 8})
        spec.update(
            kwargs=dict(reward_funcs=answer_chars, train_dataset=data,
                        environment_factory={"adder": AdderEnv, "scale": ScaleEnv}),
            scripted=True,
            keys={"tools/call_frequency", "rewards/AdderEnv/mean", "rewards/answer_chars/mean"},
        )  # fmt: skip
    elif name == "iterable":  # an IterableDataset: TRL streams it (no length, no sampler)
        spec.update(kwargs=dict(reward_funcs=digit_share, train_dataset=sums().to_iterable_dataset()),
                    keys={"reward"})  # fmt: skip
    elif name == "async_reward":
        spec.update(
            kwargs=dict(reward_funcs=[async_digit_share, short], train_dataset=sums()),
            keys={"rewards/async_digit_share/mean", "rewards/short/mean"},
        )
    elif name == "none_reward":  # a reward returning None for some samples
        spec.update(
            kwargs=dict(reward_funcs=[digit_share, odd_only], train_dataset=sums()),
            keys={"rewards/odd_only/mean", "rewards/digit_share/mean"},
        )
    elif name == "rollout_func":
        spec.update(
            kwargs=dict(
                reward_funcs=[digit_share, rollout_length], train_dataset=sums(), rollout_func=sampled_rollout
            ),
            keys={"rewards/rollout_length/mean"},
        )
    else:
        raise KeyError(name)
    if not spec["scripted"]:  # sampled by the tiny policy: short completions keep these cheap
        spec["args"] = {"max_completion_length": 16, **spec["args"]}
    return spec


FEATURES = ["plain", "peft", "tools", "environment", "environments", "environments_only", "rollout_func",
            "iterable", "multi_reward", "async_reward", "none_reward", "moe", "entropy_control"]  # fmt: skip
# K = 3 runs 8 optimizer steps per trainer; with ~850-token tool prompts that is the heavy part of this file.
HEAVY_AT_K3 = {"tools", "environment", "environments", "environments_only"}
K3_FEATURES = [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY_AT_K3 else n for n in FEATURES]


def make(cls, config_cls, spec: dict, out, **args):
    config = config_cls(output_dir=str(out), **{**COMMON, **spec["args"], **args})
    return cls(model=spec["model"], args=config, processing_class=chat_tokenizer(), **spec["kwargs"])


def train(cls, config_cls, spec: dict, out, **args):
    trainer = make(cls, config_cls, spec, out, **args)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    context = (
        patch.object(trainer.model, "generate", side_effect=scripted_generate(trainer.processing_class))
        if spec["scripted"]
        else nullcontext()
    )
    with context:
        trainer.train()
    after = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert any(not torch.equal(before[n], after[n]) for n in before), (
        "training must move the trainable weights"
    )
    return trainer, after


def same_value(a, b) -> bool:
    """Logged values agree: close floats, or both None / NaN (TRL logs those for a reward that never applied)."""
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-7)


def trl_keys(entry: dict) -> set[str]:
    return {k for k in entry if not k.startswith(SFPO_PREFIXES)}


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")


# ---------------------------------------------------------------------------------------------- tests


def test_constructor_signature_is_grpo_trainers():
    ours = inspect.signature(SFPOTrainer.__init__).parameters
    theirs = inspect.signature(GRPOTrainer.__init__).parameters
    assert [(p.name, p.kind, p.default) for p in ours.values()] == [
        (p.name, p.kind, p.default) for p in theirs.values()
    ]


@pytest.mark.parametrize("name", FEATURES)
def test_k0_is_grpo_feature_by_feature(name, dense_lm, moe_lm, tmp_path):
    spec = feature(name, dense_lm, moe_lm)
    grpo, grpo_w = train(GRPOTrainer, GRPOConfig, spec, tmp_path / "grpo", max_steps=3, logging_steps=2)
    sfpo, sfpo_w = train(SFPOTrainer, SFPOConfig, spec, tmp_path / "sfpo", max_steps=3, logging_steps=2,
                         sfpo_inner_steps=0)  # fmt: skip
    theirs, ours = grpo.state.log_history, sfpo.state.log_history
    assert [e["step"] for e in ours] == [e["step"] for e in theirs] == [2, 3]
    for a, b in zip(theirs, ours):
        assert trl_keys(b) == set(a), f"step {a['step']}: {set(a) ^ trl_keys(b)}"
        for key in set(a) - TIMINGS:
            assert same_value(a[key], b[key]), (a["step"], key, a[key], b[key])
    assert spec["keys"] <= set(theirs[-1]), spec["keys"] - set(theirs[-1])
    assert (
        "train_loss" in ours[-1] and ours[-1]["sfpo/rl_step"] == 3
    )  # the summary carries the newest RL step
    assert ours[0]["sfpo/rl_step"] == 2 and ours[0]["sfpo/active"] == 0
    assert grpo_w.keys() == sfpo_w.keys()
    for n in grpo_w:
        torch.testing.assert_close(grpo_w[n], sfpo_w[n], rtol=1e-5, atol=1e-6, msg=n)


@pytest.mark.parametrize("name", K3_FEATURES)
def test_k3_trains_and_logs_grpos_keys_plus_sfpo(name, dense_lm, moe_lm, tmp_path):
    spec = feature(name, dense_lm, moe_lm)
    # GRPO with num_iterations = K + 1 takes the same optimizer steps per generation batch.
    grpo, grpo_w = train(GRPOTrainer, GRPOConfig, spec, tmp_path / "grpo", max_steps=8, logging_steps=3,
                         num_iterations=4)  # fmt: skip
    sfpo, sfpo_w = train(SFPOTrainer, SFPOConfig, spec, tmp_path / "sfpo", logging_steps=3, sfpo_inner_steps=3,
                         sfpo_max_rl_steps=2, sfpo_switch="none")  # fmt: skip
    theirs, ours = grpo.state.log_history, sfpo.state.log_history
    assert [e["step"] for e in ours] == [e["step"] for e in theirs] == [3, 6, 8]
    for a, b in zip(theirs, ours):
        assert trl_keys(b) == set(a), f"step {a['step']}: {set(a) ^ trl_keys(b)}"
    logged = set().union(*ours)  # a generation batch's metrics land in the entry after its first pass
    assert spec["keys"] <= logged, spec["keys"] - logged
    # RL steps end at optimizer steps 4 and 8: each one's sfpo/* join the next entry TRL writes.
    assert [e.get("sfpo/rl_step") for e in ours] == [None, 1, 2]
    assert all(e["sfpo/active"] == 1 and e["sfpo/drift_norm"] > 0 for e in ours[1:])
    assert any(not torch.allclose(grpo_w[n], sfpo_w[n]) for n in grpo_w), (
        "the reposition must change the weights"
    )


class JudgeDown(Exception):
    """A user's own exception class, e.g. an LLM judge's API error."""


def flaky_judge_reward(kind: str, fail_on_call: int):
    """A reward that raises JudgeDown on its `fail_on_call`-th call, and the list of its calls (batch sizes)."""
    calls = []

    def score(completions):
        calls.append(len(completions))
        if len(calls) == fail_on_call:
            raise JudgeDown(f"judge unavailable (call {len(calls)})")
        return digit_share(completions)

    def flaky_judge(completions, **kwargs):
        return score(completions)

    async def flaky_judge_async(completions, **kwargs):
        return score(completions)

    flaky_judge_async.__name__ = "flaky_judge"
    return (flaky_judge if kind == "sync" else flaky_judge_async), calls


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("k", [0, 3])
def test_a_raising_reward_is_called_and_raises_as_under_grpo(k, kind, dense_lm, moe_lm, tmp_path):
    """The reward's own exception (type, message) after the same calls; SFPO only adds a note naming it."""
    spec = feature("plain", dense_lm, moe_lm)
    runs = {}
    for cls, config_cls, extra in [
        (GRPOTrainer, GRPOConfig, dict(num_iterations=k + 1)),
        (SFPOTrainer, SFPOConfig, dict(sfpo_inner_steps=k, sfpo_switch="none")),
    ]:
        reward, calls = flaky_judge_reward(kind, fail_on_call=2)  # the second generation batch fails
        spec["kwargs"]["reward_funcs"] = [digit_share, reward]
        trainer = make(cls, config_cls, spec, tmp_path / cls.__name__, max_steps=8, logging_steps=1, **extra)
        with pytest.raises(JudgeDown) as err:
            trainer.train()
        weights = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
        runs[cls] = (trainer, err.value, calls, weights)
    (grpo, theirs, grpo_calls, grpo_w), (sfpo, ours, sfpo_calls, sfpo_w) = runs.values()
    assert sfpo_calls == grpo_calls == [GROUP, GROUP]  # once per generation batch, never per sample
    assert type(ours) is type(theirs) is JudgeDown and str(ours) == str(theirs) == "judge unavailable (call 2)"
    assert getattr(theirs, "__notes__", []) == []
    (note,) = ours.__notes__
    step = k + 1  # the second generation batch starts after the first one's K + 1 passes
    assert f"reward function 'flaky_judge' on a batch of {GROUP} completions" in note
    assert f"at global step {step}" in note and "called once" in note
    assert sfpo.state.global_step == grpo.state.global_step == step
    assert [trl_keys(e) for e in sfpo.state.log_history] == [set(e) for e in grpo.state.log_history]
    if k == 0:  # what was trained before the failure is GRPO's, value for value
        for a, b in zip(grpo.state.log_history, sfpo.state.log_history):
            assert all(same_value(a[key], b[key]) for key in set(a) - TIMINGS)
        for n in grpo_w:
            torch.testing.assert_close(grpo_w[n], sfpo_w[n], rtol=1e-5, atol=1e-6, msg=n)


class RLSteps(TrainerCallback):
    """Keeps the records of SFPOTrainer's `on_rl_step_end` event."""

    def __init__(self):
        self.records = []

    def on_rl_step_end(self, args, state, control, metrics=None, **kwargs):
        self.records.append((state.global_step, dict(metrics)))


def test_rl_step_records_do_not_depend_on_logging_steps(dense_lm, moe_lm, tmp_path):
    """One record per RL step, after its last optimizer step, with the same values whatever logging_steps says."""
    spec = feature("multi_reward", dense_lm, moe_lm)
    runs = {}
    for logging_steps in (1, 5):
        args = SFPOConfig(output_dir=str(tmp_path / str(logging_steps)), logging_steps=logging_steps,
                          sfpo_inner_steps=1, sfpo_max_rl_steps=3, sfpo_switch="none",
                          **{**COMMON, **spec["args"]})  # fmt: skip
        recorder, steps = RunRecorder(tmp_path / f"run{logging_steps}"), RLSteps()
        trainer = SFPOTrainer(
            model=spec["model"],
            args=args,
            processing_class=chat_tokenizer(),
            callbacks=[steps],
            **spec["kwargs"],
        )
        recorder.attach(trainer)
        trainer.train()
        runs[logging_steps] = (
            trainer,
            steps.records,
            read_metrics(tmp_path / f"run{logging_steps}" / "metrics.jsonl"),
        )
    every, sparse = runs[1], runs[5]
    assert (
        [s for s, _ in every[1]] == [s for s, _ in sparse[1]] == [2, 4, 6]
    )  # K + 1 = 2 optimizer steps each
    assert [r["rl_step"] for r in sparse[2]] == [1, 2, 3] and [r["rollouts"] for r in sparse[2]] == [3, 6, 9]
    for (_, a), (_, b) in zip(every[1], sparse[1]):
        assert a.keys() == b.keys()
        for key in a.keys() - TIMINGS:
            assert math.isclose(a[key], b[key], rel_tol=1e-6, abs_tol=1e-9), key
    # With logging_steps=1 TRL logs every optimizer step: the record is the mean of the RL step's entries.
    history = [e for e in every[0].state.log_history if "loss" in e]
    for rl_step, (_, record) in enumerate(every[1]):
        entries = history[2 * rl_step : 2 * rl_step + 2]
        for key in ("loss", "grad_norm", "reward", "entropy", "rewards/short/mean", "short/mean_chars"):
            values = [e[key] for e in entries if key in e]
            assert math.isclose(record[key], sum(values) / len(values), rel_tol=1e-5), key
    line = sparse[2][-1]
    assert {
        "reward",
        "entropy",
        "completion_length",
        "loss",
        "grad_norm",
        "learning_rate",
        "sfpo/drift_norm",
    } <= set(line)
    json.dumps(line)


def test_where_sfpo_differs_the_error_says_what_to_change(tmp_path):
    base = tiny_cpu(output_dir=str(tmp_path), per_device_train_batch_size=6,
                    num_generations=3, gradient_accumulation_steps=2, steps_per_generation=3)  # fmt: skip
    GRPOConfig(**base)  # TRL allows it
    SFPOConfig(**base, sfpo_inner_steps=0)  # so does plain GRPO under SFPO
    with pytest.raises(ValueError, match=r"steps_per_generation=3 .*gradient_accumulation_steps=2.*set "
                                         r"steps_per_generation to 2, 4, 6"):  # fmt: skip
        SFPOConfig(**base, sfpo_inner_steps=3)
    with pytest.raises(ValueError, match=r"num_iterations=2 conflicts with sfpo_inner_steps=3"):
        SFPOConfig(**{**base, "steps_per_generation": 2}, num_iterations=2)
