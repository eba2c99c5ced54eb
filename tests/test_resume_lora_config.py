"""Checkpoints mid-RL-step, LoRA, and configuration errors."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM
from trl import GRPOConfig

from conftest import digit_reward
from sfpo import SFPOConfig, SFPOTrainer
from sfpo.algorithm.reposition import stepped_tensors

BASE = dict(
    use_cpu=True, bf16=False, report_to=[], disable_tqdm=True, activation_checkpointing=False, seed=1,
    per_device_train_batch_size=4, num_generations=4, steps_per_generation=2, max_completion_length=5,
    learning_rate=5e-3, lr_scheduler_type="constant",
)


@pytest.mark.parametrize(
    "extra, checkpoint",
    [
        # K=2, 6 optimizer steps per RL step: checkpoint-4 falls between pass 2 and the reposition
        (dict(sfpo_switch="none", sfpo_max_rl_steps=2, save_steps=4), "checkpoint-4"),
        # switched off after step 0 (6 opt steps), then 2 per step: checkpoint-9 is inside RL step 2
        (dict(sfpo_switch="step", sfpo_stop_step=1, sfpo_max_rl_steps=4, save_steps=3), "checkpoint-9"),
    ],
    ids=["mid-step-before-reposition", "mid-step-after-switch"],
)
def test_resume_mid_rl_step_reproduces_uninterrupted_run(tiny_lm, toy_dataset, tmp_path, extra, checkpoint):
    def make(out):
        args = SFPOConfig(output_dir=str(out), sfpo_inner_steps=2, save_strategy="steps", **BASE, **extra)
        return SFPOTrainer(model=tiny_lm, reward_funcs=digit_reward, args=args, train_dataset=toy_dataset)

    full = make(tmp_path / "full")
    full.train()
    resumed = make(tmp_path / "resumed")
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / checkpoint))
    assert resumed.sfpo_rl_step == full.sfpo_rl_step and resumed.sfpo_rollouts == full.sfpo_rollouts
    assert resumed.state.global_step == full.state.global_step
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert (tmp_path / "full" / checkpoint / "sfpo_state.json").is_file()


def test_resume_from_a_plain_trl_checkpoint_is_refused(tiny_lm, toy_dataset, tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "trainer_state.json").write_text('{"global_step": 1, "log_history": []}')
    args = SFPOConfig(output_dir=str(tmp_path / "o"), save_strategy="no", max_steps=2, **BASE)
    trainer = SFPOTrainer(model=tiny_lm, reward_funcs=digit_reward, args=args, train_dataset=toy_dataset)
    with pytest.raises((FileNotFoundError, ValueError, OSError)):
        trainer.train(resume_from_checkpoint=str(tmp_path / "ckpt"))


def test_lora_moves_only_adapters(tiny_lm, toy_dataset, tmp_path):
    args = SFPOConfig(output_dir=str(tmp_path), save_strategy="no", sfpo_inner_steps=2, sfpo_max_rl_steps=2, **BASE)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0, task_type="CAUSAL_LM")
    trainer = SFPOTrainer(model=tiny_lm, reward_funcs=digit_reward, args=args, train_dataset=toy_dataset, peft_config=lora)
    trainer.train()
    base = AutoModelForCausalLM.from_pretrained(tiny_lm).state_dict()
    after = trainer.model.state_dict()
    lora_moved = 0
    for name, value in after.items():
        if "lora_" in name:
            lora_moved += "lora_B" in name and bool(value.abs().sum() > 0)  # B starts at zero
            continue
        key = name.replace("base_model.model.", "").replace(".base_layer", "")
        assert torch.equal(value, base[key]), f"base weight {key} changed"
    assert lora_moved > 0
    anchored = trainer._anchor.tensors
    assert anchored and all(p.requires_grad for p in anchored)
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    assert all("lora_" in names[id(p)] for p in anchored)
    assert trainer._anchor.nbytes == sum(p.numel() * p.element_size() for p in stepped_tensors(trainer.optimizer))


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("sfpo_inner_steps", -1, "int ≥ 0"),
        ("sfpo_inner_steps", 1.5, "int ≥ 0"),
        ("sfpo_inner_steps", True, "int ≥ 0"),
        ("sfpo_alpha", 1.2, "[0, 1]"),
        ("sfpo_alpha", -0.1, "[0, 1]"),
        ("sfpo_alpha", "0.5", "[0, 1]"),
        ("sfpo_switch", "entropy", "'entropy_zscore', 'step', 'none'"),
        ("sfpo_zscore_window", 1, "int ≥ 2"),
        ("sfpo_zscore_threshold", 0.0, "> 0"),
        ("sfpo_zscore_threshold", -1.0, "> 0"),
        ("sfpo_zscore_two_sided", "yes", "bool"),
        ("sfpo_stop_step", 5, "sfpo_switch='step'"),
        ("sfpo_anchor_device", "cuda", "'same' or 'cpu'"),
        ("sfpo_max_rl_steps", 0, "int ≥ 1"),
        ("num_iterations", 2, "sfpo_inner_steps"),
    ],
)
def test_invalid_values_raise_naming_field_value_and_allowed(tmp_path, field, value, message):
    with pytest.raises(ValueError) as err:
        SFPOConfig(output_dir=str(tmp_path), use_cpu=True, **{field: value})
    text = str(err.value)
    assert field in text and repr(value) in text and message in text


def test_step_switch_needs_a_stop_step_and_passes_must_end_on_optimizer_steps(tmp_path):
    with pytest.raises(ValueError, match="sfpo_stop_step=None"):
        SFPOConfig(output_dir=str(tmp_path), use_cpu=True, sfpo_switch="step")
    with pytest.raises(ValueError, match="steps_per_generation=3 must be a multiple of gradient_accumulation_steps=2"):
        SFPOConfig(output_dir=str(tmp_path), use_cpu=True, steps_per_generation=3, gradient_accumulation_steps=2)


def test_num_iterations_follows_k_and_rl_budget_sets_max_steps(tmp_path):
    cfg = SFPOConfig(output_dir=str(tmp_path), use_cpu=True, sfpo_inner_steps=3, num_iterations=4,
                     steps_per_generation=4, gradient_accumulation_steps=2, sfpo_max_rl_steps=10)
    assert cfg.num_iterations == 4 and cfg.max_steps == 10 * 4 * 2
    assert SFPOConfig(output_dir=str(tmp_path), use_cpu=True, sfpo_inner_steps=0).num_iterations == 1


def test_wrong_config_type_and_fp16_loss_scaling_are_refused(tiny_lm, tmp_path):
    with pytest.raises(TypeError, match="SFPOConfig"):
        SFPOTrainer(model=tiny_lm, reward_funcs=digit_reward, args=GRPOConfig(output_dir=str(tmp_path), use_cpu=True))
    # fp16 loss scaling skips optimizer steps on overflow, which would leave an RL step half done
    with pytest.raises(ValueError, match=r"fp16=True is not allowed.*bf16"):
        SFPOConfig(output_dir=str(tmp_path), use_cpu=True, fp16=True, sfpo_inner_steps=3)


def test_fp16_in_a_deepspeed_config_is_refused():
    """A DeepSpeed config can turn fp16 on by itself (accelerate's `mixed_precision: fp16`, or a JSON file)."""
    from types import SimpleNamespace

    plugin = SimpleNamespace(deepspeed_config={"fp16": {"enabled": True}, "zero_optimization": {"stage": 2}})
    trainer = SimpleNamespace(sfpo_k=3, args=SimpleNamespace(fp16=False),
                              accelerator=SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=plugin)))
    with pytest.raises(ValueError, match="fp16 mixed precision is not supported with sfpo_inner_steps > 0.*bf16"):
        SFPOTrainer._check_loss_scaling(trainer)
    plugin.deepspeed_config["fp16"]["enabled"] = False
    SFPOTrainer._check_loss_scaling(trainer)  # bf16 / fp32 DeepSpeed configs pass
    trainer.sfpo_k, plugin.deepspeed_config["fp16"]["enabled"] = 0, True
    SFPOTrainer._check_loss_scaling(trainer)  # plain GRPO may use fp16


def _record(run_dir, rl_step):
    from sfpo.app.runlog import read_metrics

    return next(r for r in read_metrics(run_dir / "metrics.jsonl") if r["rl_step"] == rl_step)


def test_resumed_rl_step_record_has_the_uninterrupted_keys_and_values(toy_dataset, tmp_path):
    """metrics.jsonl after a resume inside an RL step: that step's record is as complete as without the break
    (its rewards and completions were generated before the checkpoint), and no tied-weight warning is logged."""
    from transformers.utils import logging as hf_logging

    from conftest import build_tiny_lm
    from sfpo.app.runlog import RunRecorder

    tied = build_tiny_lm(tmp_path / "tied", tie=True)  # lm_head shares the embeddings, as the tiny policy's does

    def make(out):
        args = SFPOConfig(output_dir=str(out), sfpo_inner_steps=2, save_strategy="steps", save_steps=4,
                          sfpo_switch="none", sfpo_max_rl_steps=2, logging_steps=1, **BASE)
        trainer = SFPOTrainer(model=tied, reward_funcs=digit_reward, args=args, train_dataset=toy_dataset)
        RunRecorder(out).attach(trainer)
        return trainer

    make(tmp_path / "full").train()
    warnings: list[str] = []
    handler = _ListHandler(warnings)
    hf_logging.get_logger("transformers.trainer").addHandler(handler)
    try:
        # 6 optimizer steps per RL step (K=2): checkpoint-4 lies inside RL step 1, after its generation
        make(tmp_path / "resumed").train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-4"))
    finally:
        hf_logging.get_logger("transformers.trainer").removeHandler(handler)
    full, resumed = _record(tmp_path / "full", 1), _record(tmp_path / "resumed", 1)
    assert set(resumed) == set(full)
    assert {"reward", "completion_length", "timing/generation_s", "timing/training_s", "loss"} <= set(resumed)
    for key, value in full.items():
        if key not in ("wall_s", "step_time") and not key.startswith("timing/"):  # clocks differ; the rest must not
            assert resumed[key] == pytest.approx(value, rel=1e-6), key
    assert not [w for w in warnings if "missing keys" in w], warnings


class _ListHandler(__import__("logging").Handler):
    def __init__(self, sink):
        super().__init__()
        self.sink = sink

    def emit(self, record):
        self.sink.append(record.getMessage())


def test_only_tied_missing_keys_are_dropped(tmp_path):
    from conftest import build_tiny_lm
    from sfpo.algorithm.trainer import untied_missing_keys

    tied = AutoModelForCausalLM.from_pretrained(build_tiny_lm(tmp_path / "t", tie=True))
    untied = AutoModelForCausalLM.from_pretrained(build_tiny_lm(tmp_path / "u", tie=False))
    assert untied_missing_keys(tied, ["lm_head.weight"]) == []
    assert untied_missing_keys(untied, ["lm_head.weight"]) == ["lm_head.weight"]
    # both names of a tied pair missing: nothing loaded the tensor, so both are reported
    both = ["lm_head.weight", "model.embed_tokens.weight"]
    assert untied_missing_keys(tied, both) == both
