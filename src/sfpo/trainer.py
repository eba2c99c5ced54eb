"""SFPOTrainer: TRL's GRPOTrainer with the slow-fast update (spec §1–§3).

TRL already does everything an RL step needs: rollouts, rewards, group advantages, the loss variants, and
reuse of one generation batch for `num_iterations` passes over the same slices in the same order, with the
old log-probs taken once at the batch's starting weights. With `num_iterations = K + 1` one RL step is:

    pass 1 … pass K        the fast trajectory θ0 → θK       (TRL, unchanged)
    reposition             θ̃ = θ0 + α(θK − θ0)             (here, before the first micro-step of pass K+1)
    pass K+1               the slow correction from θ̃      (TRL, ratios still against θ0's log-probs)

so this class only watches TRL's micro-step counter (`_step`) and acts at the two phase boundaries. It
also measures the last pass's entropy for the switch, turns SFPO off for good when the switch fires (from
then on one pass per generation batch, and the sampler's repeats of a batch are skipped unread), logs the
`sfpo/*` metrics once per RL step, and saves what a resume needs inside each checkpoint.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time

import torch
from accelerate.utils import DistributedType
from trl import GRPOTrainer

from sfpo.config import SFPOConfig
from sfpo.reposition import Anchor, optimizer_tensors
from sfpo.switch import SFPOSwitch

logger = logging.getLogger(__name__)
STATE_FILE = "sfpo_state.json"  # human-readable summary, written by the main process


def _rank_file(rank: int) -> str:
    return f"sfpo_state-rank{rank}.pt"  # per-rank tensors: anchor (mid-step), buffered rollouts (mid-step)


class SFPOTrainer(GRPOTrainer):
    """Drop-in for `trl.GRPOTrainer`; takes an [`SFPOConfig`] (all GRPOConfig fields plus the SFPO fields)."""

    _tag_names = ["trl", "grpo", "sfpo"]

    def __init__(self, model, reward_funcs, args: SFPOConfig | None = None, *pargs, **kwargs):
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            args = SFPOConfig(output_dir=f"{name.split('/')[-1]}-SFPO")
        if not isinstance(args, SFPOConfig):
            raise TypeError(
                f"SFPOTrainer needs args to be an SFPOConfig, got {type(args).__name__}; build the config with "
                "sfpo.SFPOConfig(...) (it takes every GRPOConfig field)"
            )
        uses_deepspeed = bool(args.deepspeed) or os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true")
        _check_backend(uses_deepspeed, args.sfpo_inner_steps)  # before TRL builds anything
        super().__init__(model, reward_funcs, args, *pargs, **kwargs)
        _check_backend(self.accelerator.distributed_type == DistributedType.DEEPSPEED, args.sfpo_inner_steps)
        self._sfpo_reset()

    # ------------------------------------------------------------------ state

    @property
    def sfpo_k(self) -> int:
        return self.args.sfpo_inner_steps

    def _sfpo_reset(self) -> None:
        args = self.args
        self.num_iterations = args.num_iterations
        self.sfpo_switch = SFPOSwitch(
            mode=args.sfpo_switch,
            window=args.sfpo_zscore_window,
            threshold=args.sfpo_zscore_threshold,
            two_sided=args.sfpo_zscore_two_sided,
            stop_step=args.sfpo_stop_step,
        )
        self.sfpo_switch.starts_active()
        if not self.sfpo_switch.active:
            self.num_iterations = 1
        self.sfpo_rl_step = 0  # completed RL steps
        self.sfpo_rollouts = 0  # completions generated so far
        self._anchor: Anchor | None = None
        self._anchor_live = False  # the anchor holds this RL step's θ0
        self._pending_anchor: list[torch.Tensor] | None = None
        self._pass_entropies: list[float] = []
        self._drift_norm: float | None = None
        self._sfpo_logs: dict[str, float] = {}
        self._rl_step_t0, self._generation_s = None, 0.0  # wall-clock split of the current RL step
        self._warned_no_entropy = False
        self._epoch_iter = None
        self._epoch = -1
        self._loader_pos = 0  # loader batches drawn in the current epoch
        self._resume_position: tuple[int, int] | None = None  # (epoch, loader_pos) from a checkpoint

    @property
    def sfpo_active(self) -> bool:
        """Whether the current RL step runs the slow-fast update (K > 0 and the switch has not fired)."""
        return self.num_iterations > 1

    def _anchor_for(self) -> Anchor:
        if self._anchor is None:
            self._anchor = Anchor(optimizer_tensors(self.optimizer), device=self.args.sfpo_anchor_device)
            if self._pending_anchor is not None:
                self._anchor.load_state_dict(self._pending_anchor)
                self._pending_anchor = None
        return self._anchor

    # ------------------------------------------------------------------ the RL step

    def training_step(self, model, inputs, num_items_in_batch):
        spg = self.args.steps_per_generation
        cycle = spg * self.num_iterations
        phase = self._step % cycle  # TRL's micro-step counter, before this micro-step
        if phase == 0:
            self._rl_step_t0, self._generation_s = time.perf_counter(), 0.0  # timing/* of this RL step
            self._pass_entropies = []
            self._drift_norm = None
            if self.sfpo_active:  # θ0: the weights this generation batch is sampled from
                self._anchor_for().snapshot()
                self._anchor_live = True
        if self.sfpo_active and phase == self.sfpo_k * spg:  # pass K just ended on an optimizer step
            anchor = self._anchor_for()
            self._drift_norm = anchor.drift_norm()
            anchor.reposition(self.args.sfpo_alpha)

        loss = super().training_step(model, inputs, num_items_in_batch)

        if phase >= cycle - spg:  # the last pass: its entropy feeds the switch
            entropy = self._metrics["train"].get("entropy")  # TRL appends one value per micro-step
            if entropy:
                self._pass_entropies.append(entropy[-1])
            elif self.args.sfpo_switch == "entropy_zscore" and not self._warned_no_entropy:
                self._warned_no_entropy = True
                logger.warning("the trainer logged no training entropy (e.g. a fused loss kernel), so the entropy "
                               "switch cannot fire; use sfpo_switch='step' or 'none' to make that explicit")
        if phase == cycle - 1:
            self._end_rl_step()
        return loss

    def _end_rl_step(self) -> None:
        ran_sfpo = self.sfpo_active
        entropy = sum(self._pass_entropies) / len(self._pass_entropies) if self._pass_entropies else None
        self.sfpo_rollouts += self.args.generation_batch_size
        self.sfpo_switch.update(self.sfpo_rl_step, entropy)
        if ran_sfpo and not self.sfpo_switch.active:
            self.num_iterations = 1  # from the next RL step on: one pass per generation batch
        self.sfpo_rl_step += 1
        self._anchor_live = False

        logs = {
            "sfpo/rl_step": self.sfpo_rl_step,
            "sfpo/rollouts": self.sfpo_rollouts,
            "sfpo/active": int(ran_sfpo),
            "sfpo/alpha": self.args.sfpo_alpha if ran_sfpo else 0.0,
        }
        if entropy is not None:
            logs["sfpo/entropy"] = entropy
        if self._drift_norm is not None:
            logs["sfpo/drift_norm"] = self._drift_norm
        if self.sfpo_switch.last_z is not None:
            logs["sfpo/entropy_z"] = self.sfpo_switch.last_z
        if self._rl_step_t0 is not None:  # unknown for an RL step resumed mid-way
            logs["timing/generation_s"] = self._generation_s
            logs["timing/training_s"] = max(time.perf_counter() - self._rl_step_t0 - self._generation_s, 0.0)
            self._rl_step_t0 = None
        self._sfpo_logs = logs
        self.control.should_log = True  # one log line per RL step, whatever logging_steps says
        max_rl = self.args.sfpo_max_rl_steps
        if max_rl is not None and self.sfpo_rl_step >= max_rl:
            self.control.should_training_stop = True

    def _generate_and_score_completions(self, inputs):
        # Rollouts: generation, rewards, advantages and the old log-probs, once per RL step.
        start = time.perf_counter()
        out = super()._generate_and_score_completions(inputs)
        if self.model.training:
            self._generation_s += time.perf_counter() - start
        return out

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.model.training and self._sfpo_logs:
            logs = {**logs, **self._sfpo_logs}
            self._sfpo_logs = {}
        super().log(logs, start_time)

    # ------------------------------------------------------------------ data after the switch

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        if epoch_iterator is not self._epoch_iter:  # a new epoch, or the resumed one
            self._epoch_iter = epoch_iterator
            if self._resume_position is not None:
                self._epoch, self._loader_pos = self._resume_position
                self._resume_position = None
            else:
                self._epoch, self._loader_pos = self._epoch + 1, 0
        if self.num_iterations == self.args.num_iterations:  # the sampler's repeats match the schedule
            batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
            self._loader_pos += len(batches)
            return batches, num_items
        # Switched off: the sampler still repeats each generation batch for K+1 passes. Use the first pass
        # and skip the repeats unread, so prompts keep coming in order and none is trained on twice.
        spg = self.args.steps_per_generation
        repeats = spg * self.args.num_iterations
        batches = []
        try:
            for _ in range(num_batches):
                while self._loader_pos % repeats >= spg:
                    next(epoch_iterator)
                    self._loader_pos += 1
                batches.append(next(epoch_iterator))
                self._loader_pos += 1
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
        num_train_epochs, updates_per_epoch = values[0], values[1]
        if args.max_steps > 0 and self.sfpo_k > 0 and args.sfpo_switch != "none" and num_train_epochs < 2**31:
            # After the switch an epoch takes K+1 times fewer optimizer steps: allow enough epochs for
            # max_steps to stay the limit.
            fewest_per_epoch = max(updates_per_epoch // args.num_iterations, 1)
            values[0] = max(num_train_epochs, math.ceil(args.max_steps / fewest_per_epoch))
        return tuple(values)

    # ------------------------------------------------------------------ checkpoints

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
        self._save_sfpo_state(folder)

    def _save_sfpo_state(self, folder: str) -> None:
        mid_step = self._step % (self.args.steps_per_generation * self.num_iterations) != 0
        summary = {
            "rl_step": self.sfpo_rl_step,
            "rollouts": self.sfpo_rollouts,
            "num_iterations": self.num_iterations,
            "micro_step": self._step,
            "epoch": self._epoch,
            "loader_pos": self._loader_pos,
            "mid_rl_step": mid_step,
            "pass_entropies": self._pass_entropies,
            "drift_norm": self._drift_norm,
            "switch": self.sfpo_switch.state_dict(),
        }
        tensors = {
            "anchor": self._anchor.state_dict() if (mid_step and self._anchor_live) else None,
            "buffered_inputs": self._buffered_inputs if mid_step else None,
        }
        os.makedirs(folder, exist_ok=True)
        _atomic_torch_save({"summary": summary, **tensors}, os.path.join(folder, _rank_file(self.args.process_index)))
        if self.args.should_save:
            _atomic_write_text(os.path.join(folder, STATE_FILE), json.dumps(summary, indent=2))

    def _init_training_state(self, max_steps, num_update_steps_per_epoch, num_train_epochs, resume_from_checkpoint, trial):
        epochs_trained, batches_trained = super()._init_training_state(
            max_steps, num_update_steps_per_epoch, num_train_epochs, resume_from_checkpoint, trial
        )
        self._sfpo_reset()
        if resume_from_checkpoint is None:
            return epochs_trained, batches_trained
        path = os.path.join(resume_from_checkpoint, _rank_file(self.args.process_index))
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{resume_from_checkpoint} has no {_rank_file(self.args.process_index)}: it was not written by "
                "SFPOTrainer (or by fewer processes), so the SFPO step cannot be resumed exactly"
            )
        saved = torch.load(path, map_location=self.accelerator.device, weights_only=False)
        s = saved["summary"]
        self.sfpo_rl_step, self.sfpo_rollouts = s["rl_step"], s["rollouts"]
        self.num_iterations, self._step = s["num_iterations"], s["micro_step"]
        self._pass_entropies, self._drift_norm = list(s["pass_entropies"]), s["drift_norm"]
        self.sfpo_switch.load_state_dict(s["switch"])
        if saved["buffered_inputs"] is not None:
            self._buffered_inputs = saved["buffered_inputs"]
        if saved["anchor"] is not None:
            self._pending_anchor, self._anchor_live = saved["anchor"], True
        if self.args.ignore_data_skip:
            return epochs_trained, batches_trained
        # The trainer counts loader batches as optimizer steps × accumulation; after the switch we drew more.
        self._resume_position = (s["epoch"], s["loader_pos"])
        return max(s["epoch"], 0), s["loader_pos"]


def _check_backend(uses_deepspeed: bool, inner_steps: int) -> None:
    if uses_deepspeed and inner_steps > 0:
        raise NotImplementedError(
            "SFPO under DeepSpeed is not supported yet: DeepSpeed's optimizer owns fp32 master partitions that "
            "overwrite the model's weights after each step, so a reposition of the model weights would be "
            "silently undone. Use DDP or FSDP (configs/accelerate/), or sfpo_inner_steps=0 (plain GRPO)"
        )


def _atomic_torch_save(obj, path: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    os.close(fd)
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_write_text(path: str, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
