"""GXPOTrainer: TRL's GRPOTrainer with GXPO's update (Gradient Extrapolation-Based Policy Optimization).

Per mini-batch (one optimizer step's micro-batches, M of them per generation batch), from θ0 and optimizer state s0:

    probe 1            a real optimizer step on the mini-batch: θ0 → θ1
    probe 2            another on the same micro-batches: θ1 → θ2
    extrapolation      θ̃ = θ0 + α·q ⊙ (θ2 − θ0), q the per-coordinate retention (`sfpo.algorithm.retention`);
                       optimizer state back to s0 ("transactional") or kept
    corrective step    the Trainer's own step (and scheduler) from θ̃ on the same micro-batches

so an RL step is 3·M optimizer steps in mini-batch-major order (mb 1, mb 1, mb 1, mb 2, …). TRL's `num_iterations`
(here 3) keeps generation, the old log-probs (the rollout's, taken once per generation batch) and the sampler's
repeats right; TRL would visit the slices pass-major, so `_prepare_inputs` picks the mini-batch-major slice. The
stages run in the step hooks of the optimizer that really steps (`sfpo.algorithm.extrapolation.GXPOInStep`), so one
mechanism serves one process, DDP, FSDP2 shards and DeepSpeed's fp32 master partitions. The corrective passes'
entropies feed the switch (scored against the preceding window); once it fires, every RL step is plain GRPO.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sfpo.algorithm.base import RLStepTrainer
from sfpo.algorithm.checkpoint import RLStepState, saved
from sfpo.algorithm.config import GXPO_PASSES, GXPOConfig
from sfpo.algorithm.extrapolation import CORRECTIVE, STAGES, GXPOInStep
from sfpo.algorithm.reposition import OptimizerStateCopy
from sfpo.algorithm.retention import empty_stats, q_quantile
from sfpo.algorithm.switch import SFPOSwitch


@dataclass
class GXPOStepState(RLStepState):
    """One GXPO RL step's accumulators (its corrective entropies are `pass_entropies`)."""

    minibatches: int = saved(0)  # mini-batches whose probes finished
    fallbacks: int = saved(0)  # of which fell back to one plain step
    q_stats: list[float] = saved(factory=list)  # summed `retention.q_stats` over the extrapolated mini-batches
    displacement_norms: list[float] = saved(factory=list)  # ‖θ̃ − θ0‖ per extrapolated mini-batch


class GXPOTrainer(RLStepTrainer):
    """Drop-in for `trl.GRPOTrainer`; takes a [`GXPOConfig`] (all GRPOConfig fields plus the GXPO fields)."""

    _tag_names = ["trl", "grpo", "gxpo"]
    config_class = GXPOConfig
    algorithm = "GXPO"
    switch_field = "gxpo_switch"

    @property
    def gxpo_active(self) -> bool:
        """Whether the current RL step runs GXPO (the switch has not fired)."""
        return self.sfpo_active

    def _check_backend(self) -> None:
        if self._deepspeed_fp16():
            raise ValueError(
                "fp16 mixed precision is not supported with GXPO: its loss scaling skips optimizer steps on "
                "overflow, which would leave a mini-batch's probes or extrapolation undone. Use bf16 (bf16.enabled "
                "in the DeepSpeed config) or fp32"
            )

    def _build_switch(self) -> SFPOSwitch:
        args = self.args
        return SFPOSwitch(
            mode=args.gxpo_switch,
            window=args.gxpo_zscore_window,
            threshold=args.gxpo_zscore_threshold,
            stop_step=args.gxpo_stop_step,
            warmup=args.gxpo_switch_warmup,
            patience=args.gxpo_switch_patience,
            preceding=True,
        )

    def _new_step_state(self) -> GXPOStepState:
        return GXPOStepState()

    def _reset_algorithm(self) -> None:
        # s0 is kept whatever gxpo_optimizer_state says: a fallback puts it back in "keep" too
        self._state_copy = OptimizerStateCopy()
        self._pending_hooks_state: dict | None = None

    @property
    def _needs_hooks(self) -> bool:
        return True

    def _make_hooks(self) -> GXPOInStep:
        args = self.args
        return GXPOInStep(self.optimizer, self.model.parameters(), self._anchor, self._state_copy, k=args.gxpo_k,
                          alpha=args.gxpo_alpha, retention=args.gxpo_retention,
                          transactional=args.gxpo_optimizer_state == "transactional")

    def _configure_hooks(self, hooks: GXPOInStep) -> None:
        hooks.state_copy = self._state_copy
        if self._pending_hooks_state is not None:  # resumed between a mini-batch's probes
            hooks.load_state_dict(self._pending_hooks_state)
            self._pending_hooks_state = None

    # ------------------------------------------------------------------ the RL step

    def _stage(self, phase: int) -> str:
        ga = self.args.gradient_accumulation_steps
        return STAGES[(phase % (GXPO_PASSES * ga)) // ga]

    def _arm(self, hooks: GXPOInStep, phase: int) -> None:
        step_follows = (self._step + 1) % self.args.gradient_accumulation_steps == 0
        hooks.expect_step(step_follows, stage=self._stage(phase) if self.sfpo_active else None)

    def _prepare_inputs(self, generation_batch):
        inputs = super()._prepare_inputs(generation_batch)  # generates at the batch's start; pass-major slice
        if self.model.training and self.sfpo_active:
            ga = self.args.gradient_accumulation_steps
            phase = self._step % (self.args.steps_per_generation * GXPO_PASSES)
            minibatch = phase // (GXPO_PASSES * ga)
            inputs = self._buffered_inputs[minibatch * ga + phase % ga]  # the same micro-batches three times
        return inputs

    def _feeds_switch(self, phase: int) -> bool:
        return not self.sfpo_active or self._stage(phase) == CORRECTIVE

    def _after_settle(self, hooks: GXPOInStep) -> None:
        taken = hooks.take_minibatch()  # a collective, at the same micro-step on every rank
        if taken is None:
            return
        fell_back, stats = taken
        step = self._run.step
        step.minibatches += 1
        step.fallbacks += fell_back
        if not fell_back:
            step.q_stats = [a + b for a, b in zip(step.q_stats or empty_stats().tolist(), stats)]
            step.displacement_norms.append(math.sqrt(stats[5]))

    def _before_save(self) -> None:
        if self._in_step is not None:
            self._after_settle(self._in_step)

    def _algorithm_logs(self, ran: bool, entropy: float | None) -> dict:
        step, args = self._run.step, self.args
        if self._in_step is not None:
            self._after_settle(self._in_step)
        logs = {"gxpo/active": int(ran)}
        if ran:
            stats, alpha = step.q_stats, args.gxpo_alpha
            if stats and stats[0] > 0:
                n = stats[0]
                logs["gxpo/alpha_q_mean"] = alpha * stats[1] / n
                logs["gxpo/alpha_q_p10"] = alpha * q_quantile(stats, args.gxpo_k, 0.1)
                logs["gxpo/alpha_q_p90"] = alpha * q_quantile(stats, args.gxpo_k, 0.9)
                logs["gxpo/extrapolated_fraction"] = stats[4] / n
            if step.displacement_norms:  # the mean over the RL step's extrapolated mini-batches
                logs["gxpo/displacement_norm"] = sum(step.displacement_norms) / len(step.displacement_norms)
            logs["gxpo/fallbacks"] = step.fallbacks
        if entropy is not None:
            logs["gxpo/entropy"] = entropy
        if self.sfpo_switch.last_z is not None:
            logs["gxpo/entropy_z"] = self.sfpo_switch.last_z
        if self.sfpo_switch.mode == "entropy_zscore":
            logs["gxpo/switch_streak"] = self.sfpo_switch.streak
        return logs

    # ------------------------------------------------------------------ checkpoints

    def _extra_checkpoint_tensors(self, theta0_live: bool) -> dict:
        hooks = self._in_step
        return {"gxpo": hooks.state_dict() if theta0_live and hooks is not None else None}

    def _restore_extra(self, saved_state: dict, checkpoint: str) -> None:
        state = saved_state.get("gxpo")
        if saved_state["anchor"] is not None and state is None:
            raise ValueError(f"{checkpoint} was saved inside a GXPO mini-batch without GXPO's buffers (not written by "
                             "GXPOTrainer?), so that mini-batch cannot be finished exactly")
        self._pending_hooks_state = state
        if state is not None and self._in_step is not None:  # hooks from an earlier train() call on this trainer
            self._configure_hooks(self._in_step)

    def _missing_optimizer_state(self, checkpoint: str) -> str:
        return (f"{checkpoint} was saved inside a GXPO mini-batch without a copy of its starting optimizer state "
                "(not written by GXPOTrainer?), so that mini-batch cannot be finished exactly")

