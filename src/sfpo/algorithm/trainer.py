"""SFPOTrainer: TRL's GRPOTrainer with the slow-fast update (docs/algorithm.md#one-rl-step).

TRL already does everything an RL step needs: rollouts, rewards, group advantages, the loss variants, and
reuse of one generation batch for `num_iterations` passes over the same slices in the same order, with the
old log-probs taken once at the batch's starting weights. With `num_iterations = K + 1` one RL step is:

    pass 1 … pass K        the fast trajectory θ0 → θK       (TRL, unchanged; θ0 snapshot inside its first step)
    reposition             θ̃ = θ0 + α(θK − θ0)             (inside the last optimizer step of pass K)
    pass K+1               the slow correction from θ̃      (TRL, ratios still against θ0's log-probs)

so this class only arms the two stages of `sfpo.algorithm.reposition.InStepReposition` for the optimizer steps they
belong to; they run in that optimizer's step hooks, on the tensors it really steps (parameters, FSDP2 shards or
DeepSpeed's fp32 master partitions). The last pass's entropy feeds the switch. Everything else an RL step needs
(the switch back to plain GRPO, skipped batches, the non-finite guard, one record per RL step for callbacks,
checkpoints) is shared with GXPO in `sfpo.algorithm.base`.

Opt-in variants (defaults are the reference): `sfpo_optimizer_state="restore"` snapshots the optimizer state with
θ0 and restores it right after the reposition (both in the same hooks); `sfpo_alpha_mode="kl_budget"` defers the
reposition from pass K's last optimizer step to the start of the slow pass, where the model holds θK: one no-grad
forward there gives KL_K and α_t (`sfpo.algorithm.kl_budget`), then the reposition runs, before the slow pass's first forward
(under DeepSpeed on the fp32 masters, then copied into the model as DeepSpeed does after a step).
"""

from __future__ import annotations

import dataclasses
import logging
import math

import torch

from sfpo.algorithm.base import NonFiniteTrainingError, RLStepTrainer, untied_missing_keys
from sfpo.algorithm.checkpoint import STATE_FILE
from sfpo.algorithm.config import SFPOConfig
from sfpo.algorithm.kl_budget import kl_budget_alpha, kl_sums
from sfpo.algorithm.reposition import InStepReposition, OptimizerStateCopy
from sfpo.algorithm.switch import SFPOSwitch

logger = logging.getLogger(__name__)
__all__ = ["STATE_FILE", "NonFiniteTrainingError", "SFPOTrainer", "untied_missing_keys"]


class SFPOTrainer(RLStepTrainer):
    """Drop-in for `trl.GRPOTrainer`; takes an [`SFPOConfig`] (all GRPOConfig fields plus the SFPO fields)."""

    _tag_names = ["trl", "grpo", "sfpo"]
    config_class = SFPOConfig
    algorithm = "SFPO"
    switch_field = "sfpo_switch"

    @property
    def sfpo_k(self) -> int:
        return self.args.sfpo_inner_steps

    @property
    def _alpha_t(self) -> float | None:
        return self._run.step.alpha_t

    @property
    def _kl_fast(self) -> float | None:
        return self._run.step.kl_fast

    def _check_backend(self) -> None:
        self._check_loss_scaling()
        self._check_kl_budget_backend()
        variants = {k: getattr(self.args, k) for k, ref in _REFERENCE.items() if getattr(self.args, k) != ref}
        if variants and self.sfpo_k > 0:
            logger.info("SFPO variants beyond the reference code: %s", variants)

    def _build_switch(self) -> SFPOSwitch:
        args = self.args
        return SFPOSwitch(
            mode=args.sfpo_switch,
            window=args.sfpo_zscore_window,
            threshold=args.sfpo_zscore_threshold,
            two_sided=args.sfpo_zscore_two_sided,
            stop_step=args.sfpo_stop_step,
            warmup=args.sfpo_switch_warmup,
            patience=args.sfpo_switch_patience,
        )

    def _reset_algorithm(self) -> None:
        self._state_copy = OptimizerStateCopy() if self.args.sfpo_optimizer_state == "restore" else None

    def _make_hooks(self) -> InStepReposition:
        return InStepReposition(self.optimizer, self.model.parameters(), self._anchor)

    def _configure_hooks(self, hooks: InStepReposition) -> None:
        hooks.state_copy = self._state_copy

    def _check_loss_scaling(self) -> None:
        """fp16 loss scaling skips optimizer steps on overflow: a skipped step would leave an RL step half done."""
        if self.sfpo_k == 0:
            return
        ds_plugin = getattr(self.accelerator.state, "deepspeed_plugin", None)
        ds_fp16 = ds_plugin is not None and ds_plugin.deepspeed_config.get("fp16", {}).get("enabled") is True
        if self.args.fp16 or ds_fp16:
            raise ValueError(
                "fp16 mixed precision is not supported with sfpo_inner_steps > 0: its loss scaling skips "
                "optimizer steps on overflow, and the snapshot or reposition armed for a skipped step would leave "
                "the RL step half done. Use bf16 (bf16=True, or bf16.enabled in the DeepSpeed config) or fp32"
            )

    def _check_kl_budget_backend(self) -> None:
        """kl_budget repositions between micro-steps (after a forward at θK); under DeepSpeed that moves the fp32
        masters and copies them into the model, which cannot be done while ZeRO has swapped them out to NVMe."""
        if self.sfpo_k == 0 or self.args.sfpo_alpha_mode != "kl_budget":
            return
        plugin = getattr(self.accelerator.state, "deepspeed_plugin", None)
        zero = (plugin.deepspeed_config.get("zero_optimization") or {}) if plugin is not None else {}
        device = (zero.get("offload_optimizer") or {}).get("device")
        if device == "nvme":
            raise ValueError(
                "sfpo_alpha_mode='kl_budget' is not supported with DeepSpeed's offload_optimizer.device='nvme': α_t "
                "needs a forward pass at θK and then a reposition of the fp32 masters between optimizer steps, when "
                "ZeRO keeps them swapped out. Use offload_optimizer.device='cpu' or 'none', or sfpo_alpha_mode='fixed'"
            )

    # ------------------------------------------------------------------ the RL step

    def _arm(self, hooks: InStepReposition, phase: int) -> None:
        # Due in the optimizer step that follows this micro-step: the first one of the RL step snapshots θ0
        # (the weights this generation batch was sampled from) before it updates; the last one of pass K
        # repositions right after it (a pass ends on an optimizer step: spg is a multiple of ga), and with
        # "restore" puts the optimizer state back to θ0's.
        spg, ga = self.args.steps_per_generation, self.args.gradient_accumulation_steps
        kl_budget = self.args.sfpo_alpha_mode == "kl_budget"
        first = self.sfpo_active and phase == ga - 1
        end_of_pass_k = self.sfpo_active and phase == self.sfpo_k * spg - 1
        alpha = self.args.sfpo_alpha if end_of_pass_k and not kl_budget else None
        hooks.expect_step((self._step + 1) % ga == 0, snapshot=first, alpha=alpha,
                          restore=end_of_pass_k and self._state_copy is not None)
        if alpha is not None:
            self._run.step.alpha_t = alpha

    def _before_forward(self, model, phase: int) -> None:
        spg = self.args.steps_per_generation
        if self.sfpo_active and self.args.sfpo_alpha_mode == "kl_budget" and phase == self.sfpo_k * spg:
            self._kl_budget_reposition(model)  # the slow pass starts: the weights are θK

    def _kl_budget_reposition(self, model) -> None:
        """KL_K from one no-grad forward over this micro-batch at θK against its log-probs at θ0 (summed over
        ranks, so every rank picks the same α_t), then θ ← θ0 + α_t(θK − θ0), before this micro-step's forward."""
        inputs = self._buffered_inputs[self._step % self.args.steps_per_generation]
        old = inputs.get("old_per_token_logps")
        if old is None:  # TRL takes them whenever num_iterations > 1, which K > 0 implies
            raise RuntimeError("sfpo_alpha_mode='kl_budget' needs the log-probs at θ0 (old_per_token_logps), "
                               "but the buffered batch has none")
        completion_ids = inputs["completion_ids"]
        extra = {k: inputs[k] for k in _FORWARD_KEYS if inputs.get(k) is not None}
        with torch.no_grad():
            logps, _, _ = self._get_per_token_logps_and_entropies(
                model,
                torch.cat([inputs["prompt_ids"], completion_ids], dim=1),
                torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1),
                completion_ids.size(1),
                **extra,
            )
        mask = inputs["completion_mask"] if "tool_mask" not in inputs else inputs["completion_mask"] * inputs["tool_mask"]
        sums = self.accelerator.reduce(kl_sums(old, logps, mask), reduction="sum")
        kl = float(sums[0] / sums[1].clamp(min=1.0))
        alpha = kl_budget_alpha(self.args.sfpo_alpha, self.args.sfpo_kl_budget, kl)
        if not math.isfinite(kl):
            logger.warning("KL_K is not finite (%s): repositioning to θ0 (α_t = 0) for this RL step", kl)
        self._hooks().reposition_now(alpha)
        self._run.step.alpha_t, self._run.step.kl_fast = alpha, kl

    def _algorithm_logs(self, ran: bool, entropy: float | None) -> dict:
        step = self._run.step
        if ran:
            drift = self._hooks().drift_norm()  # a scalar all-reduce where the tensors are sharded
            if drift is not None:  # None: taken at a checkpoint after the reposition, and restored from it
                step.drift_norm = drift
        logs = {
            "sfpo/active": int(ran),
            "sfpo/alpha": (step.alpha_t if step.alpha_t is not None else self.args.sfpo_alpha) if ran else 0.0,
        }
        if step.kl_fast is not None:
            logs["sfpo/kl_fast"] = step.kl_fast
        if entropy is not None:
            logs["sfpo/entropy"] = entropy
        if step.drift_norm is not None:
            logs["sfpo/drift_norm"] = step.drift_norm
        if self.sfpo_switch.last_z is not None:
            logs["sfpo/entropy_z"] = self.sfpo_switch.last_z
        if self.args.sfpo_switch_patience > 1:
            logs["sfpo/switch_streak"] = self.sfpo_switch.streak
        return logs

    def _before_save(self) -> None:
        if self._in_step is not None and self._in_step.repositioned:
            self._run.step.drift_norm = self._in_step.drift_norm()  # a collective: every rank saves at the same step

    def _missing_optimizer_state(self, checkpoint: str) -> str:
        return (
            f"{checkpoint} was saved inside an RL step without a copy of θ0's optimizer state "
            "(sfpo_optimizer_state='keep'), so sfpo_optimizer_state='restore' cannot finish that RL step; "
            "resume with sfpo_optimizer_state='keep' or from a checkpoint at an RL-step boundary"
        )


# The opt-in variants and their reference values, SFPOConfig's defaults (logged when a run departs from them).
_REFERENCE = {
    f.name: f.default
    for f in dataclasses.fields(SFPOConfig)
    if f.name in ("sfpo_switch_warmup", "sfpo_switch_patience", "sfpo_optimizer_state", "sfpo_alpha_mode",
                  "sfpo_kl_budget")
}

# The multimodal inputs TRL's own loss forwards pass on, if the batch has them.
_FORWARD_KEYS = ("pixel_values", "image_grid_thw", "num_images", "pixel_attention_mask", "spatial_shapes",
                 "num_tiles", "image_sizes", "token_type_ids", "mm_token_type_ids", "image_position_ids")
