"""What SFPO and GXPO share on top of TRL's GRPOTrainer: the RL step around TRL's `num_iterations` passes.

TRL reuses one generation batch for `num_iterations` passes (its micro-step counter `_step` says where in them a
micro-step is), with the old log-probs taken once at the batch's starting weights. `RLStepTrainer` watches that
counter and leaves to each algorithm (a subclass) only what differs: which stages its optimizer steps carry
(`_arm`, run in the optimizer's step hooks: `sfpo.algorithm.reposition`), which passes feed the switch, and its
`sfpo/*` or `gxpo/*` metrics. Shared here: the switch back to plain GRPO (one pass per generation batch from then on,
the sampler's repeats skipped unread), skipping batches without reward signal, the non-finite guard's RL-step
accounting, one record per RL step for callbacks (`on_rl_step_end`) whatever `logging_steps` says, and what a
checkpoint needs for an exact resume (`sfpo.algorithm.checkpoint`).
"""

from __future__ import annotations

import logging
import math
import os
import time

import torch
from trl import GRPOTrainer

from sfpo.algorithm.checkpoint import RLStepState, RunState, read_checkpoint_state, write_checkpoint_state
from sfpo.algorithm.guards import check_train_dataset, guard_reward_funcs
from sfpo.algorithm.nonfinite import agree
from sfpo.algorithm.reposition import Anchor, InStepReposition
from sfpo.algorithm.switch import SFPOSwitch
from sfpo.algorithm.zero_std import all_groups_zero_std

logger = logging.getLogger(__name__)


class NonFiniteTrainingError(RuntimeError):
    """Training stopped because of non-finite values (see docs/failure-modes.md)."""


class RLStepTrainer(GRPOTrainer):
    """The RL-step machinery of [`SFPOTrainer`] and [`GXPOTrainer`]; not used on its own."""

    config_class: type = type(None)  # the subclass's config (SFPOConfig, GXPOConfig)
    algorithm = ""  # "SFPO", "GXPO": in messages and default output folders
    switch_field = ""  # the config field of the switch's mode, for messages

    # The same parameters, kinds and defaults as GRPOTrainer.__init__ (a test compares the signatures).
    def __init__(
        self,
        model,
        reward_funcs=None,
        args=None,
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
        name = self.config_class.__name__
        if args is None:
            model_name = model if isinstance(model, str) else model.config._name_or_path
            args = self.config_class(output_dir=f"{model_name.split('/')[-1]}-{self.algorithm}")
        if not isinstance(args, self.config_class):
            raise TypeError(
                f"{type(self).__name__} needs args to be an {name}, got {type(args).__name__}; build the config "
                f"with sfpo.{name}(...) (it takes every GRPOConfig field)"
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
        self._check_backend()
        self._in_step: InStepReposition | None = None
        # A reward's exception gets a note naming the function (called once, as TRL does); a NaN, a non-number or
        # a wrong count stops the run naming the function, before any update (sfpo.algorithm.guards).
        self.reward_funcs = guard_reward_funcs(self.reward_funcs, self.reward_func_names,
                                               diagnose=self.args.sfpo_diagnose_reward_errors)
        # Only what TRL would fail on or train zero steps with; an environment_factory supplies the prompts.
        check_train_dataset(self.train_dataset, args, prompt_required=self.environment_factories is None)
        self._sfpo_reset()

    # ------------------------------------------------------------------ what an algorithm supplies

    def _check_backend(self) -> None:
        """Refuse, at construction, a set-up the algorithm cannot run correctly on."""

    def _build_switch(self) -> SFPOSwitch:
        raise NotImplementedError

    def _new_step_state(self) -> RLStepState:
        return RLStepState()

    def _reset_algorithm(self) -> None:
        """Fresh algorithm state beside the anchor (optimizer-state copies and the like)."""

    @property
    def _needs_hooks(self) -> bool:
        """Whether this run needs the step hooks for its own stages (not only for the non-finite guard)."""
        return self.args.num_iterations > 1

    def _make_hooks(self) -> InStepReposition:
        raise NotImplementedError

    def _configure_hooks(self, hooks: InStepReposition) -> None:
        """Hand the hooks what a resume or a new train() call rebuilt."""

    def _arm(self, hooks: InStepReposition, phase: int) -> None:
        """Before a micro-step: tell the hooks whether an optimizer step follows and which stages it carries."""
        raise NotImplementedError

    def _before_forward(self, model, phase: int) -> None:
        """Anything due between the previous optimizer step and this micro-step's forward."""

    def _after_settle(self, hooks: InStepReposition) -> None:
        """At the start of a micro-step, once the previous optimizer step has settled."""

    def _feeds_switch(self, phase: int) -> bool:
        """Whether this micro-step's training entropy feeds the switch."""
        spg = self.args.steps_per_generation
        return phase >= spg * self.num_iterations - spg  # the last pass

    def _algorithm_logs(self, ran: bool, entropy: float | None) -> dict:
        """The algorithm's metrics of the RL step that just ended (a collective where they need one)."""
        raise NotImplementedError

    def _extra_checkpoint_tensors(self, theta0_live: bool) -> dict:
        return {}

    def _restore_extra(self, saved: dict, checkpoint: str) -> None:
        """Put back what `_extra_checkpoint_tensors` saved."""

    # ------------------------------------------------------------------ state

    def _sfpo_reset(self) -> None:
        """A fresh run state (at every train() call; a resume then restores it from the checkpoint)."""
        switch = self._build_switch()
        switch.starts_active()
        self._run = RunState(switch=switch, num_iterations=self.args.num_iterations if switch.active else 1,
                             step=self._new_step_state())
        self._anchor = Anchor(device=self.args.sfpo_anchor_device)
        self._reset_algorithm()

    # The run's state under the names users (and GRPOTrainer itself, for num_iterations) read.
    @property
    def num_iterations(self) -> int:
        """Passes over the current generation batch: the algorithm's, or 1 once the switch has fired."""
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
    def sfpo_active(self) -> bool:
        """Whether the current RL step runs the algorithm (it has more than one pass and the switch has not
        fired)."""
        return self.num_iterations > 1

    def _hooks(self) -> InStepReposition | None:
        """The step hooks on the optimizer that really steps (built once the trainer has prepared it): the
        algorithm's stages and the non-finite guard. None only for plain GRPO with an optimizer torch cannot hook."""
        if self._in_step is None or self._in_step.optimizer is not self.optimizer:
            if self._in_step is not None:
                self._in_step.remove()
            try:
                self._in_step = self._make_hooks()
            except TypeError:
                if self._needs_hooks:
                    raise
                logger.warning("the optimizer is not a torch optimizer: no non-finite guard for this run")
                self._in_step = None
                return None
            self._in_step.theta0_live = self._run.anchor_live
        self._in_step.anchor = self._anchor  # a resume rebuilds the anchor
        self._configure_hooks(self._in_step)
        return self._in_step

    def _deepspeed_fp16(self) -> bool:
        ds_plugin = getattr(self.accelerator.state, "deepspeed_plugin", None)
        return ds_plugin is not None and ds_plugin.deepspeed_config.get("fp16", {}).get("enabled") is True

    # ------------------------------------------------------------------ the RL step

    def training_step(self, model, inputs, num_items_in_batch):
        cycle = self.args.steps_per_generation * self.num_iterations
        phase = self._step % cycle  # TRL's micro-step counter, before this micro-step
        hooks = self._hooks()
        if hooks is not None:
            hooks.settle()  # the optimizer step that followed the previous micro-step has run (or was skipped)
            self._after_settle(hooks)
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
        if hooks is not None:
            self._arm(hooks, phase)
        self._before_forward(model, phase)

        loss = super().training_step(model, inputs, num_items_in_batch)
        if hooks is not None and hooks.guard is not None:
            # a non-finite loss means the weights (or the batch) are broken: the RL step's updates are void
            if not agree(bool(torch.isfinite(loss).all()), sharded=True, device=loss.device):
                hooks.guard.fail("non-finite loss", rollback=hooks.theta0_live)

        if self._feeds_switch(phase):
            entropy = self._metrics["train"].get("entropy")  # TRL appends one value per micro-step
            if entropy:
                self._run.step.pass_entropies.append(entropy[-1])
            elif self.sfpo_switch.mode == "entropy_zscore" and not self._run.warned_no_entropy:
                self._run.warned_no_entropy = True
                logger.warning("the trainer logged no training entropy (e.g. a fused loss kernel), so the entropy "
                               f"switch cannot fire; use {self.switch_field}='step' or 'none' to make that explicit")
        if phase == cycle - 1:
            self._end_rl_step()
        return loss

    def _skip_micro_step(self, phase: int, cycle: int, hooks: InStepReposition | None) -> torch.Tensor:
        """A micro-step of a batch whose groups all have zero reward std: no forward, no backward. The optimizer
        step that follows finds no gradients (torch's optimizers then leave weights and state alone; under
        DeepSpeed, whose engine steps inside backward, no step runs at all), and no stage is armed."""
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

    def _end_rl_step(self) -> None:
        run, step = self._run, self._run.step
        skipped = step.zero_std_batch
        ran = self.sfpo_active and not skipped
        spg, ga = self.args.steps_per_generation, self.args.gradient_accumulation_steps
        # backward passes over a mini-batch (one optimizer step's micro-batches): passes × mini-batches
        backward = 0 if skipped else self.num_iterations * spg / ga
        entropies = step.pass_entropies
        entropy = sum(entropies) / len(entropies) if entropies else None
        run.rollouts += self.args.generation_batch_size
        was_active = self.sfpo_active
        self.sfpo_switch.update(run.rl_step, entropy)
        if was_active and not self.sfpo_switch.active:
            self.num_iterations = 1  # from the next RL step on: one pass per generation batch
            self._follow_switch_in_max_steps(pending=1)  # this RL step's last optimizer step is still to come
        run.rl_step += 1
        run.closing = True  # its last optimizer step follows this micro-step

        logs = {"sfpo/rl_step": run.rl_step, "sfpo/rollouts": run.rollouts, **self._algorithm_logs(ran, entropy)}
        if step.t0 is not None:  # a resumed RL step: the time before its checkpoint plus after the resume
            logs["timing/generation_s"] = step.generation_s
            logs["timing/training_s"] = max(time.perf_counter() - step.t0 - step.generation_s, 0.0)
            step.t0 = None
        if self.args.skip_zero_std_batches:
            logs["sfpo/skipped_zero_std_batch"] = int(skipped)
        logs["sfpo/backward_passes"] = int(backward) if float(backward).is_integer() else backward
        # `logging_steps` keeps deciding when TRL writes a log entry: these ride along in the next one. The
        # RL step's own record goes to callbacks (`on_rl_step_end`) once its last optimizer step has been taken
        # (and `_close_rl_step` has added the guard's counts).
        run.pending_logs = logs
        run.pending_record = logs
        max_rl = self.args.sfpo_max_rl_steps
        if max_rl is not None and run.rl_step >= max_rl:
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
        run = self._run
        run.consecutive_skips = run.consecutive_skips + 1 if failed else 0
        if failed:
            run.skipped_rl_steps += 1
            logger.warning(f"RL step {run.rl_step} skipped ({reason}): its weights are back at its start")
        counts = {"sfpo/skipped_rl_steps": run.skipped_rl_steps,
                  "sfpo/skipped_optimizer_steps": guard.skipped_optimizer_steps}
        for logs in (run.pending_logs, run.pending_record):  # this RL step's log entry and its record
            if logs is not None:
                logs.update(counts)
        limit = self.args.sfpo_max_skipped_rl_steps
        if run.consecutive_skips >= limit:
            self._sfpo_stop_error = (
                f"training stopped: {run.consecutive_skips} RL steps in a row hit non-finite values (last: "
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
            if self._run.pending_logs:  # the newest RL step ended since the last entry: its metrics join this one
                logs = {**logs, **self._run.pending_logs}
                self._run.pending_logs = {}
        super().log(logs, start_time)

    def _maybe_log_save_evaluate(self, tr_loss, grad_norm, *args, **kwargs):
        # Called after every optimizer step (and at the end of an epoch, with the same step again).
        run = self._run
        if run.closing:  # after the RL step's last optimizer step, before its log and checkpoint
            run.closing = False
            self._close_rl_step()
        if self.state.global_step != run.window_step:
            run.window_step = self.state.global_step
            # The Trainer sums micro-step losses into tr_loss until it logs (then zeroes it in place).
            loss = tr_loss if run.tr_loss_seen is None else tr_loss - run.tr_loss_seen
            learning_rate = kwargs.get("learning_rate")
            if learning_rate is None:
                learning_rate = self._get_learning_rate()
            run.window.add_optimizer_step(loss, grad_norm, learning_rate)
        if run.pending_record is not None:  # an RL step ended with this optimizer step: its record, before any save
            means = run.window.close(self._metrics["train"], self._mean_over_processes)
            record, run.pending_record = {**means, **run.pending_record}, None
            self._call_rl_step_end(record)
        super()._maybe_log_save_evaluate(tr_loss, grad_norm, *args, **kwargs)
        run.tr_loss_seen = tr_loss.detach().clone()

    def _mean_over_processes(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.accelerator.gather(tensor).mean()

    def _call_rl_step_end(self, metrics: dict[str, float]) -> None:
        """`on_rl_step_end(args, state, control, metrics=..., model=...)` on every callback that defines it.

        `metrics` holds the trainer's metrics averaged over the RL step (TRL's, `loss`, `grad_norm`,
        `learning_rate`), the run's `sfpo/*` and the algorithm's metrics. It comes once per RL step after the step's
        last optimizer step, before that step's log entry, evaluation and checkpoint.
        """
        for callback in self.callback_handler.callbacks:
            hook = getattr(callback, "on_rl_step_end", None)
            if hook is not None:
                hook(self.args, self.state, self.control, metrics=metrics, model=self.model)

    # ------------------------------------------------------------------ data after the switch

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        run = self._run
        if epoch_iterator is not run.epoch_iter:  # a new epoch, or the resumed one
            run.epoch_iter = epoch_iterator
            if run.resume_position is not None:
                run.epoch, run.loader_pos = run.resume_position
                run.resume_position = None
            else:
                run.epoch, run.loader_pos = run.epoch + 1, 0
        if self.num_iterations == self.args.num_iterations:  # the sampler's repeats match the schedule
            batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
            run.loader_pos += len(batches)
            return batches, num_items
        # Switched off: the sampler still repeats each generation batch for every pass. Use the first pass
        # and skip the repeats unread, so prompts keep coming in order and none is trained on twice.
        spg = self.args.steps_per_generation
        repeats = spg * self.args.num_iterations
        batches = []
        try:
            for _ in range(num_batches):
                while run.loader_pos % repeats >= spg:
                    next(epoch_iterator)
                    run.loader_pos += 1
                batches.append(next(epoch_iterator))
                run.loader_pos += 1
        except StopIteration:
            pass
        return batches, self._get_num_items_in_batch(batches, device)

    def get_train_dataloader(self):
        # The sampler always repeats each generation batch for every pass (what the skip above relies on), even
        # when the switch is already off, e.g. with a stop step of 0 or on a second train() call.
        current, self.num_iterations = self.num_iterations, self.args.num_iterations
        try:
            return super().get_train_dataloader()
        finally:
            self.num_iterations = current

    def set_initial_training_values(self, args, dataloader):
        values = list(super().set_initial_training_values(args, dataloader))
        num_train_epochs, updates_per_epoch, steps_in_epoch = values[0], values[1], values[5]
        if args.max_steps > 0 and args.num_iterations > 1 and self.sfpo_switch.mode != "none" and num_train_epochs < 2**31:
            # After the switch an epoch takes num_iterations times fewer optimizer steps: allow enough epochs for
            # max_steps to stay the limit.
            fewest_per_epoch = max(updates_per_epoch // args.num_iterations, 1)
            values[0] = max(num_train_epochs, math.ceil(args.max_steps / fewest_per_epoch))
        # A run sized by whole epochs: (epochs, loader batches per epoch), to size it anew once the switch fires
        whole = args.max_steps <= 0 and float(args.num_train_epochs).is_integer() and num_train_epochs < 2**31
        self._epoch_plan = (num_train_epochs, steps_in_epoch) if whole and steps_in_epoch else None
        return tuple(values)

    def _follow_switch_in_max_steps(self, pending: int) -> None:
        """Once the switch has fired, the optimizer steps the run has left (one pass per generation batch from now
        on: what is left of an `sfpo_max_rl_steps` budget, or of the data in a run sized by epochs) become the
        Trainer's `max_steps`, so that the progress bar ends at 100% and the flow callback's stop coincides with the
        run's end. `pending`: optimizer steps still due for loader batches already drawn (the current RL step's
        last)."""
        if self.sfpo_switch.active:
            return
        spg, ga = self.args.steps_per_generation, self.args.gradient_accumulation_steps
        max_rl = self.args.sfpo_max_rl_steps
        if max_rl is not None:  # a budget in RL steps: what is left of it takes one pass per RL step now
            left = max(max_rl - self._run.rl_step - pending, 0)
            self._set_max_steps(min(self.state.max_steps, self.state.global_step + pending + left * (spg // ga)))
            return
        plan = getattr(self, "_epoch_plan", None)
        if plan is None:
            return
        epochs, per_epoch = plan
        repeats = spg * self.args.num_iterations  # loader batches per generation batch (the sampler's repeats)
        batches_per_epoch = per_epoch // repeats
        run = self._run
        epoch, pos = (run.epoch, run.loader_pos) if run.epoch >= 0 else (0, 0)
        done, offset = divmod(pos, repeats)
        micro = 0
        if offset:  # a generation batch partly drawn: the rest of its first pass, if any
            micro, done = max(spg - offset, 0), done + 1
        micro += (max(batches_per_epoch - done, 0) + (epochs - epoch - 1) * batches_per_epoch) * spg
        self._set_max_steps(self.state.global_step + pending + micro // ga)

    def _set_max_steps(self, max_steps: int) -> None:
        """The Trainer's `max_steps` and the progress bar's total (transformers' ProgressCallback, tqdm)."""
        self.state.max_steps = max_steps
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

    def _mid_rl_step(self) -> bool:
        return self._step % (self.args.steps_per_generation * self.num_iterations) != 0

    def _before_save(self) -> None:
        """Bring the RL step's state up to date before it is written (a collective: every rank saves at once)."""

    def _save_sfpo_state(self, folder: str) -> None:
        run, step = self._run, self._run.step
        mid_step = self._mid_rl_step()
        theta0_live = mid_step and self._in_step is not None and self._in_step.theta0_live
        rl_window = None
        if mid_step:
            self._before_save()
            # the RL step's metrics so far (its rewards and completions came before the checkpoint)
            run.window.collect(self._metrics["train"])
            elapsed = None if step.t0 is None else time.perf_counter() - step.t0
            rl_window = {**run.window.state_dict(), "generation_s": step.generation_s, "elapsed_s": elapsed}
        state_copy = getattr(self, "_state_copy", None)
        tensors = {
            "anchor": self._anchor.state_dict() if theta0_live else None,
            "optimizer_state": state_copy.state_dict() if theta0_live and state_copy is not None else None,
            "buffered_inputs": self._buffered_inputs if mid_step else None,
            "rl_window": rl_window,
            **self._extra_checkpoint_tensors(theta0_live),
        }
        write_checkpoint_state(folder, self.args.process_index, self.args.should_save,
                               run.summary(micro_step=self._step, mid_rl_step=mid_step), tensors)

    def _missing_optimizer_state(self, checkpoint: str) -> str:
        return f"{checkpoint} was saved inside an RL step without a copy of θ0's optimizer state"

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
            state_copy = getattr(self, "_state_copy", None)
            if state_copy is not None:
                if saved.get("optimizer_state") is None:
                    raise ValueError(self._missing_optimizer_state(resume_from_checkpoint))
                state_copy.load_state_dict(saved["optimizer_state"])
        self._restore_extra(saved, resume_from_checkpoint)
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
