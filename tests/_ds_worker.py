"""Run by test_deepspeed.py on 2 CPU processes, under `accelerate launch` (DeepSpeed) or torchrun (the DDP reference).

    _ds_worker.py OUT '[["JOB", {"trainer": "sfpo", "inner_steps": 3, ...}], ...]'

Runs the jobs one after the other in the same processes (one launch per back end keeps the tests fast). Each
trains the tiny model of OUT/model for RL_STEPS RL steps and writes OUT/<JOB>-rank<r>.pt with the final full
weights (gathered under ZeRO-3 only to write this record), the logged drift norms and what the anchor holds.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import sys
from pathlib import Path

import torch

RL_STEPS, ALPHA = 2, 0.8
# The first DeepSpeed comm init JIT-compiles a CPU shared-memory all-reduce that training never uses: skip it.
importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None


def full_weights(trainer) -> dict[str, torch.Tensor]:
    model = trainer.model
    params = [p for _, p in model.named_parameters()]
    if any(hasattr(p, "ds_id") for p in params):  # ZeRO-3: each rank holds a partition
        import deepspeed

        with deepspeed.zero.GatheredParameters(params):
            return {n: p.detach().float().clone() for n, p in model.named_parameters()}
    return {n: p.detach().float().clone() for n, p in model.named_parameters()}


def main(out: Path, job: str, opts: dict) -> None:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from _tiny_config import tiny_cpu
    from conftest import digit_reward, flat_then_digit_reward
    from sfpo import GXPOConfig, GXPOTrainer, SFPOConfig, SFPOTrainer
    from sfpo.algorithm.base import RLStepTrainer

    common = tiny_cpu(
        output_dir=str(out / job), bf16=opts.get("bf16", False), per_device_train_batch_size=4, num_generations=4,
        steps_per_generation=2,
        max_completion_length=5, learning_rate=5e-3, lr_scheduler_type="constant", logging_steps=1, seed=0,
        ddp_backend="gloo", save_strategy="steps" if opts.get("save_steps") else "no",
        save_steps=opts.get("save_steps") or 500,
    )
    reward = digit_reward
    if opts.get("zero_std"):  # the first generation batch has no reward spread, and is skipped
        common.update(weight_decay=0.01)  # so that an update on it would move the weights
        reward = flat_then_digit_reward
    if opts.get("vllm"):
        common.update(use_vllm=True, vllm_mode="server")
    if opts.get("sgd"):  # no optimizer state: the α = 0 identity holds exactly
        common.update(optim="sgd", weight_decay=0.0, learning_rate=0.5)
    k, rl_steps = opts.get("inner_steps", 3), opts.get("rl_steps", RL_STEPS)
    if opts.get("trainer") == "grpo":
        args = GRPOConfig(**common, max_steps=rl_steps * 2 * (k + 1), num_iterations=k + 1)
        cls = GRPOTrainer
    elif opts.get("trainer") == "gxpo":  # M = 2 mini-batches (steps_per_generation = 2): 6 optimizer steps an RL step
        args = GXPOConfig(**common, sfpo_max_rl_steps=rl_steps, gxpo_switch="none",
                          gxpo_retention=opts.get("retention", "adamw_direction"))
        cls = GXPOTrainer
        if opts.get("nan_at") is not None:
            cls = type("NanLoss", (cls,), {"nan_at": set(opts["nan_at"]), "compute_loss": _nan_loss})
    else:
        alpha = opts.get("alpha", ALPHA)
        # the control repositions the model itself (below); SFPO's own reposition is a no-op at α = 1
        variants = dict(  # the opt-in variants (defaults: the reference)
            sfpo_optimizer_state=opts.get("optimizer_state", "keep"),
            sfpo_alpha_mode=opts.get("alpha_mode", "fixed"),
            sfpo_kl_budget=opts.get("kl_budget"),
            sfpo_switch_warmup=opts.get("warmup", 0),
            sfpo_switch_patience=opts.get("patience", 1),
            sfpo_zscore_window=opts.get("window", 30),
        )
        args = SFPOConfig(**common, sfpo_inner_steps=k, sfpo_alpha=1.0 if opts.get("model_side") else alpha,
                          sfpo_max_rl_steps=rl_steps, skip_zero_std_batches=bool(opts.get("zero_std")), **variants)
        args.control_alpha = alpha
        cls = ModelSideReposition if opts.get("model_side") else SFPOTrainer
        if opts.get("nan_at") is not None:  # a NaN loss at these micro-steps: the non-finite guard's rollback
            cls = type("NanLoss", (cls,), {"nan_at": set(opts["nan_at"]), "compute_loss": _nan_loss})

    callbacks, server = [], None
    if opts.get("vllm"):  # TRL's server mode with its HTTP client replaced by a fake server that keeps the weights
        import transformers.integrations.deepspeed as hf_deepspeed
        from trl.generation.vllm_generation import VLLMGeneration

        from _fake_vllm import FakeVLLMServer

        # the fake server holds a whole model: build it outside the ZeRO-3 partitioned init
        zero3, hf_deepspeed._hf_deepspeed_config_weak_ref = hf_deepspeed._hf_deepspeed_config_weak_ref, None
        server = FakeVLLMServer(str(out / "model"))
        hf_deepspeed._hf_deepspeed_config_weak_ref = zero3
        VLLMGeneration._init_vllm = lambda self: setattr(self, "vllm_client", server)
        step_weights = {}

        class AfterEachStep(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):  # a gather under ZeRO-3: every rank runs it
                step_weights[state.global_step] = full_weights(trainer)

        callbacks.append(AfterEachStep())
    if opts.get("stop_at"):  # an interruption: stop (after the checkpoint due at this step) mid-RL-step

        class Stop(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                if state.global_step == opts["stop_at"]:
                    control.should_training_stop = True

        callbacks.append(Stop())
    peft_config = None
    if opts.get("lora"):
        from peft import LoraConfig

        peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    data = Dataset.from_dict({"prompt": [f"{a}+{b}=" for a in range(8) for b in range(8)]})
    try:
        trainer = cls(model=str(out / "model"), reward_funcs=reward, args=args, train_dataset=data,
                      callbacks=callbacks, peft_config=peft_config)
    except ValueError as err:
        if not opts.get("expect_error"):
            raise
        torch.save({"error": str(err)}, out / f"{job}-rank{args.process_index}.pt")
        return
    if server is not None:
        server.trainer = trainer
    trainer.train(resume_from_checkpoint=opts.get("resume"))
    rec = {
        "distributed_type": str(trainer.accelerator.distributed_type),
        "weights": full_weights(trainer),
        "drifts": [h["sfpo/drift_norm"] for h in trainer.state.log_history if "sfpo/drift_norm" in h],
        "global_step": trainer.state.global_step,
    }
    if server is not None:
        rec["syncs"] = [(step, {k: v.float() for k, v in w.items()}) for step, w in server.syncs]
        rec["step_weights"] = step_weights
        rec["logp_diffs"] = [h["sampling/sampling_logp_difference/max"] for h in trainer.state.log_history
                             if "sampling/sampling_logp_difference/max" in h]
    if isinstance(trainer, GXPOTrainer):
        rec.update(
            gxpo=[{k: v for k, v in h.items() if k.startswith("gxpo/")} for h in trainer.state.log_history
                  if "gxpo/active" in h],
            extra_bytes=trainer._in_step.extra_nbytes,
            state_copy_bytes=trainer._state_copy.nbytes,
            adam_steps=sorted({float(s["step"]) for o in trainer._hooks().optimizers for s in o.state.values()}),
        )
    if isinstance(trainer, RLStepTrainer):
        model_ids = {id(p) for p in trainer.model.parameters()}
        anchor = trainer._anchor
        rec.update(
            rl_step=trainer.sfpo_rl_step,
            skipped_rl_steps=trainer.sfpo_skipped_rl_steps,
            alphas=[h["sfpo/alpha"] for h in trainer.state.log_history if "sfpo/alpha" in h],
            zero_std_skips=[h["sfpo/skipped_zero_std_batch"] for h in trainer.state.log_history
                            if "sfpo/skipped_zero_std_batch" in h],
            optimizer_state_empty=all(not o.state for o in trainer._hooks().optimizers),
            kl_fast=[h["sfpo/kl_fast"] for h in trainer.state.log_history if "sfpo/kl_fast" in h],
            switch=trainer.sfpo_switch.state_dict(),
            stepping=sorted({type(o).__name__ for o in trainer._hooks().optimizers}),
            anchor_bytes=anchor.nbytes,
            anchor_on_model_params=any(id(t) in model_ids for t in anchor.tensors),
            anchor_dtypes=sorted({str(c.dtype) for c in anchor.copies}),
            trainable_numel=sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel()
                                for p in trainer.model.parameters() if p.requires_grad),
        )
    if opts.get("save_model"):
        trainer.save_model(str(out / f"{job}-saved"))
    torch.save(rec, out / f"{job}-rank{args.process_index}.pt")
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


from sfpo import SFPOTrainer  # noqa: E402


def _nan_loss(self, model, inputs, *args, **kwargs):
    loss = SFPOTrainer.compute_loss(self, model, inputs, *args, **kwargs)
    return loss * float("nan") if self._step in self.nan_at else loss


class ModelSideReposition(SFPOTrainer):
    """Negative control: the reposition applied to `model.parameters()` between micro-steps (a module-level
    Lookahead), with SFPO's own in-step reposition disabled by α = 1. Under ZeRO the optimizer's fp32 masters
    keep θK and are copied back over the model at the next step, so this must NOT match the reference."""

    def training_step(self, model, inputs, num_items_in_batch):
        spg = self.args.steps_per_generation
        phase = self._step % (spg * self.num_iterations)
        params = [p for p in self.model.parameters() if p.requires_grad]
        with torch.no_grad():
            if phase == 0:
                self._theta0 = [p.detach().clone() for p in params]
            if phase == self.sfpo_k * spg:
                for p, theta0 in zip(params, self._theta0):
                    p.lerp_(theta0, 1.0 - self.args.control_alpha)
        return super().training_step(model, inputs, num_items_in_batch)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    for job, opts in json.loads(sys.argv[2]):
        main(Path(sys.argv[1]), job, opts)
        gc.collect()
    sys.stdout.flush()
    sys.stderr.flush()
    # DeepSpeed's CPU back end sometimes aborts in interpreter teardown after everything was written: end here.
    os._exit(0)
