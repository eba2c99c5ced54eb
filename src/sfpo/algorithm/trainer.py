"""SFPOTrainer: TRL's GRPOTrainer with the slow-fast update (spec §1–§3).

TRL already does everything an RL step needs: rollouts, rewards, group advantages, the loss variants, and
reuse of one generation batch for `num_iterations` passes over the same slices in the same order, with the
old log-probs taken once at the batch's starting weights. With `num_iterations = K + 1` one RL step is:

    pass 1 … pass K        the fast trajectory θ0 → θK       (TRL, unchanged; θ0 snapshot inside its first step)
    reposition             θ̃ = θ0 + α(θK − θ0)             (inside the last optimizer step of pass K)
    pass K+1               the slow correction from θ̃      (TRL, ratios still against θ0's log-probs)

so this class only watches TRL's micro-step counter (`_step`) and arms the two stages of
`sfpo.algorithm.reposition.InStepReposition` for the optimizer steps they belong to; they run in that optimizer's step
hooks, on the tensors it really steps (parameters, FSDP2 shards or DeepSpeed's fp32 master partitions). It
also measures the last pass's entropy for the switch, turns SFPO off for good when the switch fires (from
then on one pass per generation batch, and the sampler's repeats of a batch are skipped unread), adds the
`sfpo/*` metrics to the log entries TRL writes (`logging_steps` still decides when), hands callbacks one record
per RL step (`on_rl_step_end`), and saves what a resume needs inside each checkpoint. The same step hooks keep
non-finite values out of the weights (`sfpo.algorithm.nonfinite`).

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
import os
import time

import torch
from trl import GRPOTrainer

from sfpo.algorithm.checkpoint import (
    STATE_FILE,
    RunState,
    rank_file,
    read_checkpoint_state,
    write_checkpoint_state,
)
from sfpo.algorithm.config import SFPOConfig
from sfpo.algorithm.guards import check_train_dataset, guard_reward_funcs
from sfpo.algorithm.kl_budget import kl_budget_alpha, kl_sums
from sfpo.algorithm.nonfinite import agree
from sfpo.algorithm.reposition import Anchor, InStepReposition, OptimizerStateCopy
from sfpo.algorithm.switch import SFPOSwitch
from sfpo.algorithm.zero_std import all_groups_zero_std

logger = logging.getLogger(__name__)
_rank_file = rank_file  # the names sfpo.app.pipeline imports from here (with STATE_FILE)
__all__ = ["STATE_FILE", "NonFiniteTrainingError", "SFPOTrainer", "untied_missing_keys"]


class SFPOTrainer(GRPOTrainer):
    """Drop-in for `trl.GRPOTrainer`; takes an [`SFPOConfig`] (all GRPOConfig fields plus the SFPO fields)."""

    _tag_names = ["trl", "grpo", "sfpo"]

    # The same parameters, kinds and defaults as GRPOTrainer.__init__ (a test compares the signatures).
    def __init__(
        self,
        model,
        reward_funcs=None,
        args: SFPOConfig | None = None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        reward_processing_classes=None,
        callbacks=None,
        optimizers=(None, None),
        quantization_config=None,
        peft_config=None,
        tools=None,
        rollout_func=None,
        environment_factory=None,
    ):
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            args = SFPOConfig(output_dir=f"{name.split('/')[-1]}-SFPO")
        if not isinstance(args, SFPOConfig):
            raise TypeError(
                f"SFPOTrainer needs args to be an SFPOConfig, got {type(args).__name__}; build the config with "
                "sfpo.SFPOConfig(...) (it takes every GRPOConfig field)"
            )
        self._run = RunState()  # GRPOTrainer.__init__ sets num_iterations, which lives there
        super().__init__(
            model,
            reward_funcs,
            args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            reward_processing_classes=reward_processing_classes,
            callbacks=callbacks,
            optimizers=optimizers,
            quantization_config=quantization_config,
            peft_config=peft_config,
            tools=tools,
            rollout_func=rollout_func,
            environment_factory=environment_factory,
        )
        self._check_loss_scaling()
        self._check_kl_budget_backend()
        variants = {k: getattr(self.args, k) for k, ref in _REFERENCE.items() if getattr(self.args, k) != ref}
        if variants and self.sfpo_k > 0:
            logger.info("SFPO variants beyond the reference code: %s", variants)
        self._in_step: InStepReposition | None = None
        # A reward's exception gets a note naming the function (called once, as TRL does); a NaN, a non-number or
        # a wrong count stops the run naming the function, before any update (sfpo.algorithm.guards).
        self.reward_funcs = guard_reward_funcs(self.reward_funcs, self.reward_func_names,
                                               diagnose=self.args.sfpo_diagnose_reward_errors)
        # Only what TRL would fail on or train zero steps with; an environment_factory supplies the prompts.
        check_train_dataset(self.train_dataset, args, prompt_required=self.environment_factories is None)
        self._sfpo_reset()

    # ------------------------------------------------------------------ state

    @property
    def sfpo_k(self) -> int:
        return self.args.sfpo_inner_steps

    def _sfpo_reset(self) -> None:
        """A fresh run state (at every train() call; a resume then restores it from the checkpoint)."""
        args = self.args
        switch = SFPOSwitch(
            mode=args.sfpo_switch,
            window=args.sfpo_zscore_window,
            threshold=args.sfpo_zscore_threshold,
            two_sided=args.sfpo_zscore_two_sided,
            stop_step=args.sfpo_stop_step,
            warmup=args.sfpo_switch_warmup,
            patience=args.sfpo_switch_patience,
        )
        switch.starts_active()
        self._run = RunState(switch=switch, num_iterations=args.num_iterations if switch.active else 1)
        self._anchor = Anchor(device=args.sfpo_anchor_device)
        self._state_copy = OptimizerStateCopy() if args.sfpo_optimizer_state == "restore" else None

    # The run's state under the names users (and GRPOTrainer itself, for num_iterations) read.
    @property
    def num_iterations(self) -> int:
        """Passes over the current generation batch: K + 1, or 1 once the switch has fired."""
        return self._run.num_iterations

    @num_iterations.setter
    def num_iterations(self, value: int) -> None:
        self._run.num_iterations = value

    @property
    def sfpo_rl_step(self) -> int:
        """Completed RL steps."""
        return self._run.rl_step

    @property
    def sfpo_rollouts(self) -> int:
        """Completions generated so far."""
        return self._run.rollouts

    @property
    def sfpo_skipped_rl_steps(self) -> int:
        """RL steps rolled back for a non-finite value."""
        return self._run.skipped_rl_steps

    @property
    def sfpo_switch(self) -> SFPOSwitch:
        return self._run.switch

    @property
    def _pass_entropies(self) -> list[float]:
        return self._run.step.pass_entropies

    @_pass_entropies.setter
    def _pass_entropies(self, values: list[float]) -> None:
        self._run.step.pass_entropies = values

    @property
    def _alpha_t(self) -> float | None:
        return self._run.step.alpha_t

    @property
    def _kl_fast(self) -> float | None:
        return self._run.step.kl_fast

    @property
    def sfpo_active(self) -> bool:
        """Whether the current RL step runs the slow-fast update (K > 0 and the switch has not fired)."""
        return self.num_iterations > 1

    def _hooks(self) -> InStepReposition | None:
        """The step hooks on the optimizer that really steps (built once the trainer has prepared it): SFPO's
        stages and the non-finite guard. None only for plain GRPO with an optimizer torch cannot hook."""
        if self._in_step is None or self._in_step.optimizer is not self.optimizer:
            if self._in_step is not None:
                self._in_step.remove()
            try:
                self._in_step = InStepReposition(self.optimizer, self.model.parameters(), self._anchor)
            except TypeError:
                if self.sfpo_k > 0:
                    raise
                logger.warning("the optimizer is not a torch optimizer: no non-finite guard for this run")
                self._in_step = None
                return None
            self._in_step.theta0_live = self._run.anchor_live
        self._in_step.anchor = self._anchor  # a resume rebuilds the anchor
        self._in_step.state_copy = self._state_copy
        return self._in_step

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

    def training_step(self, model, inputs, num_items_in_batch):
        spg, ga = self.args.steps_per_generation, self.args.gradient_accumulation_steps
        cycle = spg * self.num_iterations
        phase = self._step % cycle  # TRL's micro-step counter, before this micro-step
        hooks = self._hooks()
        if hooks is not None:
            hooks.settle()  # the optimizer step that followed the previous micro-step has run (or was skipped)
        if self._run.resumed_elapsed is not None:  # resumed inside an RL step: its clock goes on from the checkpoint
            self._run.step.t0, self._run.resumed_elapsed = time.perf_counter() - self._run.resumed_elapsed, None
        if phase == 0:
            self._run.new_rl_step(t0=time.perf_counter())  # timing/* of this RL step start here
            if self.args.skip_zero_std_batches:
                # Generate (and score) now rather than inside GRPOTrainer.training_step, so that a batch without
                # reward signal is known before any forward pass of it.
                model.train()
                self._run.pregenerated = self._prepare_inputs(inputs)
        if self._run.step.zero_std_batch:
            return self._skip_micro_step(phase, cycle, hooks)
        kl_budget = self.args.sfpo_alpha_mode == "kl_budget"
        if hooks is not None:
            # Due in the optimizer step that follows this micro-step: the first one of the RL step snapshots θ0
            # (the weights this generation batch was sampled from) before it updates; the last one of pass K
            # repositions right after it (a pass ends on an optimizer step: spg is a multiple of ga), and with
            # "restore" puts the optimizer state back to θ0's.
            first = self.sfpo_active and phase == ga - 1
            end_of_pass_k = self.sfpo_active and phase == self.sfpo_k * spg - 1
            alpha = self.args.sfpo_alpha if end_of_pass_k and not kl_budget else None
            hooks.expect_step((self._step + 1) % ga == 0, snapshot=first, alpha=alpha,
                              restore=end_of_pass_k and self._state_copy is not None)
            if alpha is not None:
                self._run.step.alpha_t = alpha
        if self.sfpo_active and kl_budget and phase == self.sfpo_k * spg:  # the slow pass starts: weights are θK
            self._kl_budget_reposition(model)

        loss = super().training_step(model, inputs, num_items_in_batch)
        if hooks is not None and hooks.guard is not None:
            # a non-finite loss means the weights (or the batch) are broken: the RL step's updates are void
            if not agree(bool(torch.isfinite(loss).all()), sharded=True, device=loss.device):
                hooks.guard.fail("non-finite loss", rollback=hooks.theta0_live)

        if phase >= cycle - spg:  # the last pass: its entropy feeds the switch
            entropy = self._metrics["train"].get("entropy")  # TRL appends one value per micro-step
            if entropy:
                self._run.step.pass_entropies.append(entropy[-1])
            elif self.args.sfpo_switch == "entropy_zscore" and not self._run.warned_no_entropy:
                self._run.warned_no_entropy = True
                logger.warning("the trainer logged no training entropy (e.g. a fused loss kernel), so the entropy "
                               "switch cannot fire; use sfpo_switch='step' or 'none' to make that explicit")
        if phase == cycle - 1:
            self._end_rl_step()
        return loss

    def _skip_micro_step(self, phase: int, cycle: int, hooks: InStepReposition | None) -> torch.Tensor:
        """A micro-step of a batch whose groups all have zero reward std: no forward, no backward. The optimizer
        step that follows finds no gradients (torch's optimizers then leave weights and state alone; under
        DeepSpeed, whose engine steps inside backward, no step runs at all), and no SFPO stage is armed."""
        self._run.pregenerated = None
        if hooks is not None:
            hooks.expect_step(False)
        self._step += 1  # TRL's micro-step counter, as GRPOTrainer.training_step advances it
        if phase == cycle - 1:
            self._end_rl_step()
        return torch.zeros((), device=self.args.device)

    def _prepare_inputs(self, generation_batch):
        if self._run.pregenerated is not None:  # generated at the start of this micro-step (skip_zero_std_batches)
            inputs, self._run.pregenerated = self._run.pregenerated, None
            return inputs
        return super()._prepare_inputs(generation_batch)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self.args.skip_zero_std_batches and self.model.training:  # gathered over processes: one verdict
            self._run.step.zero_std_batch = all_groups_zero_std(
                rewards_per_func, self.reward_weights, self.num_generations, self.multi_objective_aggregation
            )
        return rewards_per_func

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

    def _end_rl_step(self) -> None:
        step = self._run.step
        skipped = step.zero_std_batch
        ran_sfpo = self.sfpo_active and not skipped
        if ran_sfpo:
            drift = self._hooks().drift_norm()  # a scalar all-reduce where the tensors are sharded
            if drift is not None:  # None: taken at a checkpoint after the reposition, and restored from it
                self._run.step.drift_norm = drift
        entropies = self._run.step.pass_entropies
        entropy = sum(entropies) / len(entropies) if entropies else None
        self._run.rollouts += self.args.generation_batch_size
        was_active = self.sfpo_active
        self.sfpo_switch.update(self._run.rl_step, entropy)
        if was_active and not self.sfpo_switch.active:
            self.num_iterations = 1  # from the next RL step on: one pass per generation batch
            self._follow_switch_in_max_steps(pending=1)  # this RL step's last optimizer step is still to come
        self._run.rl_step += 1
        self._run.closing = True  # its last optimizer step follows this micro-step

        logs = {
            "sfpo/rl_step": self.sfpo_rl_step,
            "sfpo/rollouts": self.sfpo_rollouts,
            "sfpo/active": int(ran_sfpo),
            "sfpo/alpha": (step.alpha_t if step.alpha_t is not None else self.args.sfpo_alpha) if ran_sfpo else 0.0,
        }
        if step.kl_fast is not None:
            logs["sfpo/kl_fast"] = step.kl_fast
        if entropy is not None:
            logs["sfpo/entropy"] = entropy
        if step.drift_norm is not None:
            logs["sfpo/drift_norm"] = step.drift_norm
        if self.sfpo_switch.last_z is not None:
            logs["sfpo/entropy_z"] = self.sfpo_switch.last_z
        if step.t0 is not None:  # a resumed RL step: the time before its checkpoint plus after the resume
            logs["timing/generation_s"] = step.generation_s
            logs["timing/training_s"] = max(time.perf_counter() - step.t0 - step.generation_s, 0.0)
            step.t0 = None
        if self.args.sfpo_switch_patience > 1:
            logs["sfpo/switch_streak"] = self.sfpo_switch.streak
        if self.args.skip_zero_std_batches:
            logs["sfpo/skipped_zero_std_batch"] = int(skipped)
        # `logging_steps` keeps deciding when TRL writes a log entry: sfpo/* ride along in the next one. The
        # RL step's own record goes to callbacks (`on_rl_step_end`) once its last optimizer step has been taken
        # (and `_close_rl_step` has added the guard's counts).
        self._run.pending_logs = logs
        self._run.pending_record = logs
        max_rl = self.args.sfpo_max_rl_steps
        if max_rl is not None and self.sfpo_rl_step >= max_rl:
            self.control.should_training_stop = True

    def _close_rl_step(self) -> None:
        """Count an RL step that hit a non-finite value (its weights are back at θ0); stop after too many."""
        hooks = self._in_step
        if hooks is None or hooks.guard is None:
            return
        guard = hooks.guard
        # the RL step's last optimizer step has run or was skipped (by DeepSpeed): settle it here, so that a skip
        # counts against this RL step, not the next one
        hooks.settle()
        reason = guard.reason
        if guard.rollback_pending:  # found outside a step and no step ran since (e.g. DeepSpeed skipped it)
            hooks.rollback_now()
        failed = guard.new_rl_step()
        hooks.end_rl_step()
        self._run.consecutive_skips = self._run.consecutive_skips + 1 if failed else 0
        if failed:
            self._run.skipped_rl_steps += 1
            logger.warning(f"RL step {self.sfpo_rl_step} skipped ({reason}): its weights are back at its start")
        counts = {"sfpo/skipped_rl_steps": self.sfpo_skipped_rl_steps,
                  "sfpo/skipped_optimizer_steps": guard.skipped_optimizer_steps}
        for logs in (self._run.pending_logs, self._run.pending_record):  # this RL step's log entry and its record
            if logs is not None:
                logs.update(counts)
        limit = self.args.sfpo_max_skipped_rl_steps
        if self._run.consecutive_skips >= limit:
            self._sfpo_stop_error = (
                f"training stopped: {self._run.consecutive_skips} RL steps in a row hit non-finite values (last: "
                f"{reason}) and were rolled back (sfpo_max_skipped_rl_steps={limit}); the checkpoint written now "
                "holds the last good weights. Lower the learning rate, or check the rewards and the data"
            )
            self.control.should_save = True
            self.control.should_training_stop = True

    def train(self, *args, **kwargs):
        self._sfpo_stop_error = None
        result = super().train(*args, **kwargs)
        if self._sfpo_stop_error:
            raise NonFiniteTrainingError(self._sfpo_stop_error)
        return result

    def _generate_and_score_completions(self, inputs):
        # Rollouts: generation, rewards, advantages and the old log-probs, once per RL step.
        start = time.perf_counter()
        out = super()._generate_and_score_completions(inputs)
        if self.model.training:
            self._run.step.generation_s += time.perf_counter() - start
        return out

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.model.training:
            self._run.window.collect(self._metrics["train"])  # TRL's log() averages and clears this buffer
            if self._run.pending_logs:  # the newest RL step ended since the last entry: its sfpo/* join this one
                logs = {**logs, **self._run.pending_logs}
                self._run.pending_logs = {}
        super().log(logs, start_time)

    def _maybe_log_save_evaluate(self, tr_loss, grad_norm, *args, **kwargs):
        # Called after every optimizer step (and at the end of an epoch, with the same step again).
        if self._run.closing:  # after the RL step's last optimizer step, before its log and checkpoint
            self._run.closing = False
            self._close_rl_step()
        if self.state.global_step != self._run.window_step:
            self._run.window_step = self.state.global_step
            # The Trainer sums micro-step losses into tr_loss until it logs (then zeroes it in place).
            loss = tr_loss if self._run.tr_loss_seen is None else tr_loss - self._run.tr_loss_seen
            learning_rate = kwargs.get("learning_rate")
            if learning_rate is None:
                learning_rate = self._get_learning_rate()
            self._run.window.add_optimizer_step(loss, grad_norm, learning_rate)
        if self._run.pending_record is not None:  # an RL step ended with this optimizer step: its record, before any save
            means = self._run.window.close(self._metrics["train"], self._mean_over_processes)
            record, self._run.pending_record = {**means, **self._run.pending_record}, None
            self._call_rl_step_end(record)
        super()._maybe_log_save_evaluate(tr_loss, grad_norm, *args, **kwargs)
        self._run.tr_loss_seen = tr_loss.detach().clone()

    def _mean_over_processes(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.accelerator.gather(tensor).mean()

    def _call_rl_step_end(self, metrics: dict[str, float]) -> None:
        """`on_rl_step_end(args, state, control, metrics=..., model=...)` on every callback that defines it.

        `metrics` holds the trainer's metrics averaged over the RL step (TRL's, `loss`, `grad_norm`,
        `learning_rate`) and the step's `sfpo/*`. It comes once per RL step after the step's last optimizer step,
        before that step's log entry, evaluation and checkpoint.
        """
        for callback in self.callback_handler.callbacks:
            hook = getattr(callback, "on_rl_step_end", None)
            if hook is not None:
                hook(self.args, self.state, self.control, metrics=metrics, model=self.model)

    # ------------------------------------------------------------------ data after the switch

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        if epoch_iterator is not self._run.epoch_iter:  # a new epoch, or the resumed one
            self._run.epoch_iter = epoch_iterator
            if self._run.resume_position is not None:
                self._run.epoch, self._run.loader_pos = self._run.resume_position
                self._run.resume_position = None
            else:
                self._run.epoch, self._run.loader_pos = self._run.epoch + 1, 0
        if self.num_iterations == self.args.num_iterations:  # the sampler's repeats match the schedule
            batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
            self._run.loader_pos += len(batches)
            return batches, num_items
        # Switched off: the sampler still repeats each generation batch for K+1 passes. Use the first pass
        # and skip the repeats unread, so prompts keep coming in order and none is trained on twice.
        spg = self.args.steps_per_generation
        repeats = spg * self.args.num_iterations
        batches = []
        try:
            for _ in range(num_batches):
                while self._run.loader_pos % repeats >= spg:
                    next(epoch_iterator)
                    self._run.loader_pos += 1
                batches.append(next(epoch_iterator))
                self._run.loader_pos += 1
        except StopIteration:
            pass
        return batches, self._get_num_items_in_batch(batches, device)

    def get_train_dataloader(self):
        # The sampler always repeats each generation batch for K+1 passes (what the skip above relies on),
        # even when the switch is already off, e.g. with sfpo_stop_step=0 or on a second train() call.
        current, self.num_iterations = self.num_iterations, self.args.num_iterations
        try:
            return super().get_train_dataloader()
        finally:
            self.num_iterations = current

    def set_initial_training_values(self, args, dataloader):
        values = list(super().set_initial_training_values(args, dataloader))
        num_train_epochs, updates_per_epoch, steps_in_epoch = values[0], values[1], values[5]
        # A run sized by whole epochs: (epochs, loader batches per epoch), to size it anew once the switch fires
        whole = args.max_steps <= 0 and float(args.num_train_epochs).is_integer() and num_train_epochs < 2**31
        self._epoch_plan = (num_train_epochs, steps_in_epoch) if whole and steps_in_epoch else None
        if args.max_steps > 0 and self.sfpo_k > 0 and args.sfpo_switch != "none" and num_train_epochs < 2**31:
            # After the switch an epoch takes K+1 times fewer optimizer steps: allow enough epochs for
            # max_steps to stay the limit.
            fewest_per_epoch = max(updates_per_epoch // args.num_iterations, 1)
            values[0] = max(num_train_epochs, math.ceil(args.max_steps / fewest_per_epoch))
        return tuple(values)

    def _follow_switch_in_max_steps(self, pending: int) -> None:
        """Once the switch has fired in a run sized by epochs, the optimizer steps the data left will take (one
        pass per generation batch from now on) become the Trainer's `max_steps`, so that the progress bar ends at
        100% and the flow callback's stop coincides with the end of the data. `pending`: optimizer steps still due
        for loader batches already drawn."""
        plan = getattr(self, "_epoch_plan", None)
        if plan is None or self.sfpo_switch.active:
            return
        epochs, per_epoch = plan
        spg, ga = self.args.steps_per_generation, self.args.gradient_accumulation_steps
        repeats = spg * self.args.num_iterations  # loader batches per generation batch (the sampler's repeats)
        batches_per_epoch = per_epoch // repeats
        run = self._run
        epoch, pos = (run.epoch, run.loader_pos) if run.epoch >= 0 else (0, 0)
        done, offset = divmod(pos, repeats)
        micro = 0
        if offset:  # a generation batch partly drawn: the rest of its first pass, if any
            micro, done = max(spg - offset, 0), done + 1
        micro += (max(batches_per_epoch - done, 0) + (epochs - epoch - 1) * batches_per_epoch) * spg
        self.state.max_steps = self.state.global_step + pending + micro // ga
        for callback in self.callback_handler.callbacks:
            bar = getattr(callback, "training_bar", None)  # transformers' ProgressCallback (tqdm)
            if bar is not None:
                bar.total = self.state.max_steps
                bar.refresh()

    # ------------------------------------------------------------------ checkpoints

    def _save_checkpoint(self, model, trial):
        # Never write a non-finite value: the guard keeps them out of the weights, this is the last line.
        local = [getattr(p, "ds_tensor", p) for p in self.model.parameters()]  # ZeRO-3: this rank's partition
        local = [p.to_local() if hasattr(p, "to_local") else p for p in local]
        finite = all(bool(torch.isfinite(p).all()) for p in local if p.numel())
        if not agree(finite, sharded=True, device=local[0].device if local else torch.device("cpu")):
            raise NonFiniteTrainingError(
                f"refusing to write checkpoint-{self.state.global_step}: the weights hold non-finite values"
            )
        super()._save_checkpoint(model, trial)
        folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
        self._save_sfpo_state(folder)

    def _save_sfpo_state(self, folder: str) -> None:
        run, step = self._run, self._run.step
        mid_step = self._step % (self.args.steps_per_generation * self.num_iterations) != 0
        theta0_live = mid_step and self._in_step is not None and self._in_step.theta0_live
        rl_window = None
        if mid_step and self._in_step is not None and self._in_step.repositioned:
            step.drift_norm = self._in_step.drift_norm()  # a collective: every rank saves at the same step
        if mid_step:  # the RL step's metrics so far (its rewards and completions came before the checkpoint)
            run.window.collect(self._metrics["train"])
            elapsed = None if step.t0 is None else time.perf_counter() - step.t0
            rl_window = {**run.window.state_dict(), "generation_s": step.generation_s, "elapsed_s": elapsed}
        tensors = {
            "anchor": self._anchor.state_dict() if theta0_live else None,
            "optimizer_state": self._state_copy.state_dict() if theta0_live and self._state_copy is not None else None,
            "buffered_inputs": self._buffered_inputs if mid_step else None,
            "rl_window": rl_window,
        }
        write_checkpoint_state(folder, self.args.process_index, self.args.should_save,
                               run.summary(micro_step=self._step, mid_rl_step=mid_step), tensors)

    def _init_training_state(self, max_steps, num_update_steps_per_epoch, num_train_epochs, resume_from_checkpoint, trial):
        epochs_trained, batches_trained = super()._init_training_state(
            max_steps, num_update_steps_per_epoch, num_train_epochs, resume_from_checkpoint, trial
        )
        self._sfpo_reset()
        if resume_from_checkpoint is None:
            self._follow_switch_in_max_steps(pending=0)  # off from the first RL step (a stop step of 0)
            return epochs_trained, batches_trained
        saved = read_checkpoint_state(resume_from_checkpoint, self.args.process_index, self.accelerator.device,
                                      type(self).__name__)
        s = saved["summary"]
        run = self._run
        run.load_summary(s)
        self._step = s["micro_step"]
        if saved["buffered_inputs"] is not None:
            self._buffered_inputs = saved["buffered_inputs"]
        window = saved.get("rl_window")  # checkpoints from before it have none
        if window is not None:
            run.window.load_state_dict(window)
            run.step.generation_s, run.resumed_elapsed = window["generation_s"], window["elapsed_s"]
        if saved["anchor"] is not None:
            self._anchor.load_state_dict(saved["anchor"])
            run.anchor_live = True
            if self._state_copy is not None:
                if saved.get("optimizer_state") is None:
                    raise ValueError(
                        f"{resume_from_checkpoint} was saved inside an RL step without a copy of θ0's optimizer state "
                        "(sfpo_optimizer_state='keep'), so sfpo_optimizer_state='restore' cannot finish that RL step; "
                        "resume with sfpo_optimizer_state='keep' or from a checkpoint at an RL-step boundary"
                    )
                self._state_copy.load_state_dict(saved["optimizer_state"])
        if self._in_step is not None:  # hooks from an earlier train() call on this trainer
            self._in_step.theta0_live = run.anchor_live
        self._follow_switch_in_max_steps(pending=0)  # resumed after the switch fired
        if self.args.ignore_data_skip:
            return epochs_trained, batches_trained
        # The trainer counts loader batches as optimizer steps × accumulation; after the switch we drew more.
        run.resume_position = (s["epoch"], s["loader_pos"])
        return max(s["epoch"], 0), s["loader_pos"]

    def _issue_warnings_after_load(self, load_result) -> None:
        # A checkpoint of a model with tied weights (e.g. lm_head tied to the embeddings) stores the tensor once,
        # so the tied name comes back "missing" although it shares the loaded tensor: not worth a warning.
        # Any other missing key is still reported, by transformers' own message.
        if hasattr(load_result, "_replace"):  # torch's IncompatibleKeys, a named tuple
            missing = untied_missing_keys(self.accelerator.unwrap_model(self.model), load_result.missing_keys)
            load_result = load_result._replace(missing_keys=missing)
        super()._issue_warnings_after_load(load_result)


def untied_missing_keys(model: torch.nn.Module, missing: list[str]) -> list[str]:
    """The keys of ``missing`` that are not the same tensor as a parameter the checkpoint did hold."""
    params = dict(model.named_parameters(remove_duplicate=False))
    loaded = {params[name].data_ptr() for name in params if name not in missing}
    return [k for k in missing if k not in params or params[k].data_ptr() not in loaded]


class NonFiniteTrainingError(RuntimeError):
    """Training stopped because of non-finite values (see docs/failure-modes.md)."""


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
