"""The trainer's state across RL steps, and what a checkpoint keeps of it for an exact resume.

Two dataclasses hold everything the trainer keeps beyond TRL's own attributes:

- `RLStepState`: what one RL step accumulates (entropies, the reposition's α and drift, clocks); a fresh one at the
  start of every RL step;
- `RunState`: what lives across RL steps (counts, the data position, the switch, the metrics window) and the
  current RL step's `RLStepState`; a fresh one at the start of every `train()` call, then restored from the
  checkpoint when resuming.

A field is saved when its metadata says so (`saved(...)`); `summary()` writes the saved fields under their names,
`load_summary()` reads them back, and a name a checkpoint lacks keeps its default (the checkpoints of earlier
versions lack the newer ones). A checkpoint folder gets `sfpo_state.json` (this summary, human-readable, from the
main process) and one `sfpo_state-rank<r>.pt` per process (the summary and this rank's tensors: the anchor and
buffered rollouts when saved inside an RL step).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field

from sfpo.algorithm.atomic import atomic_torch_save, atomic_write_text
from sfpo.algorithm.steplog import RLStepWindow
from sfpo.algorithm.switch import SFPOSwitch

STATE_FILE = "sfpo_state.json"  # human-readable summary, written by the main process


def rank_file(rank: int) -> str:
    return f"sfpo_state-rank{rank}.pt"  # per-rank tensors: anchor (mid-step), buffered rollouts (mid-step)


def saved(default=None, *, factory=None):
    """A dataclass field that goes into the checkpoint's summary under its own name."""
    if factory is not None:
        return field(default_factory=factory, metadata={"saved": True})
    return field(default=default, metadata={"saved": True})


def _saved_fields(obj) -> list[str]:
    return [f.name for f in dataclasses.fields(obj) if f.metadata.get("saved")]


def _to_summary(obj) -> dict:
    return {name: _plain(getattr(obj, name)) for name in _saved_fields(obj)}


def _from_summary(obj, summary: dict) -> None:
    for name in _saved_fields(obj):
        if name in summary:
            setattr(obj, name, _plain(summary[name]))


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value


@dataclass
class RLStepState:
    """One RL step's accumulators, reset at its first micro-step."""

    pass_entropies: list[float] = saved(factory=list)  # the last pass's entropies (they feed the switch)
    zero_std_batch: bool = saved(False)  # skip_zero_std_batches: this generation batch has no reward signal
    drift_norm: float | None = saved(None)  # ‖θK − θ0‖ of the reposition
    alpha_t: float | None = saved(None)  # the α this RL step repositioned with
    kl_fast: float | None = saved(None)  # KL_K (kl_budget only)
    t0: float | None = None  # perf_counter at the RL step's start (timing/*)
    generation_s: float = 0.0  # seconds spent generating and scoring its rollouts

    def summary(self) -> dict:
        return _to_summary(self)

    def load_summary(self, summary: dict) -> None:
        _from_summary(self, summary)


@dataclass
class RunState:
    """The trainer's state across RL steps; `step` is the current RL step's."""

    rl_step: int = saved(0)  # completed RL steps
    rollouts: int = saved(0)  # completions generated so far
    skipped_rl_steps: int = saved(0)  # RL steps rolled back for a non-finite value
    consecutive_skips: int = saved(0)
    num_iterations: int = saved(1)  # passes over the current generation batch (1 once the switch fired)
    epoch: int = saved(-1)  # the loader's epoch
    loader_pos: int = saved(0)  # loader batches drawn in the current epoch
    switch: SFPOSwitch = field(default_factory=SFPOSwitch)
    step: RLStepState = field(default_factory=RLStepState)
    window: RLStepWindow = field(default_factory=RLStepWindow)  # the trainer's metrics over the current RL step
    # Between a micro-step and the optimizer step, log or checkpoint that follow it (never saved):
    closing: bool = False  # the RL step ended with this micro-step; its last optimizer step follows
    pending_logs: dict = field(default_factory=dict)  # the newest RL step's metrics, until a log entry takes them
    pending_record: dict | None = None  # an ended RL step's metrics, until its last optimizer step
    window_step: int = -1  # global_step of the last optimizer step added to the window
    tr_loss_seen: object = None  # the Trainer's running loss sum after the last step
    resumed_elapsed: float | None = None  # a resumed RL step's seconds before its checkpoint
    anchor_live: bool = False  # restored: the anchor holds this RL step's θ0
    resume_position: tuple[int, int] | None = None  # (epoch, loader_pos) from a checkpoint
    epoch_iter: object = None  # the loader iterator of the current epoch
    pregenerated: object = None  # the first micro-batch, generated ahead of training_step's own _prepare_inputs
    warned_no_entropy: bool = False

    def new_rl_step(self, **fields) -> RLStepState:
        self.step = type(self.step)(**fields)
        return self.step

    def summary(self, micro_step: int, mid_rl_step: bool) -> dict:
        """The checkpoint's summary: the saved fields of the run and of the current RL step (the same names as
        in the checkpoints of earlier versions, plus newer ones)."""
        return {
            **_to_summary(self),
            "micro_step": micro_step,
            "mid_rl_step": mid_rl_step,
            **self.step.summary(),
            "switch": self.switch.state_dict(),
        }

    def load_summary(self, summary: dict) -> None:
        _from_summary(self, summary)
        self.step.load_summary(summary)
        self.switch.load_state_dict(summary["switch"])


def write_checkpoint_state(folder: str, rank: int, main_process: bool, summary: dict, tensors: dict) -> None:
    """This rank's file (summary and tensors) and, from the main process, the human-readable summary."""
    os.makedirs(folder, exist_ok=True)
    atomic_torch_save({"summary": summary, **tensors}, os.path.join(folder, rank_file(rank)))
    if main_process:
        atomic_write_text(os.path.join(folder, STATE_FILE), json.dumps(summary, indent=2))


def read_checkpoint_state(folder: str, rank: int, device, trainer_name: str) -> dict:
    """What `write_checkpoint_state` wrote for this rank: {"summary": ..., tensors ...}."""
    import torch

    path = os.path.join(folder, rank_file(rank))
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{folder} has no {rank_file(rank)}: it was not written by {trainer_name} (or by fewer processes), "
            "so the RL step cannot be resumed exactly"
        )
    # DeepSpeed on a CPU names the device "cpu:0", which torch.load cannot map
    return torch.load(path, map_location="cpu" if device.type == "cpu" else device, weights_only=False)
