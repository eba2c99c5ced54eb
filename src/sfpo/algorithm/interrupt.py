"""Stop on SIGINT / SIGTERM at the next optimizer step, with a checkpoint, instead of dying mid-step.

A preempted node or a Ctrl-C sends a signal; Python's default reaction (KeyboardInterrupt, or death by
SIGTERM) throws away everything since the last periodic checkpoint. :class:`GracefulStop` catches the first
SIGINT or SIGTERM, lets the current optimizer step finish, and then asks the trainer for a checkpoint and a
stop through the ordinary callback controls (`should_save`, `should_training_stop`): the checkpoint is a
normal `checkpoint-<step>` folder (SFPO's may fall inside an RL step; `SFPOTrainer` saves what an exact
resume needs), and the run log has every finished RL step. A second signal while waiting stops at once.

Under several processes every rank must stop at the same step, so the flag is max-reduced across ranks at
each step end (one tiny collective per optimizer step).
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from transformers import TrainerCallback

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(RuntimeError):
    """Training stopped on a signal after saving ``checkpoint``; ``exit_code`` is the shell's 128 + signal."""

    def __init__(self, signum: int, checkpoint: str | None, step: int):
        self.signum, self.checkpoint, self.step = signum, checkpoint, step
        name = signal.Signals(signum).name
        where = f"checkpoint written to {checkpoint}" if checkpoint else "no checkpoint could be written"
        super().__init__(f"stopped by {name} after optimizer step {step}; {where}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class GracefulStop(TrainerCallback):
    """Install with ``with GracefulStop().attach(trainer) as stop: trainer.train()``; then check ``stop.stopped``."""

    def __init__(self):
        self.signum: int | None = None  # the first signal received
        self.stopped_step: int | None = None  # optimizer step at which training was asked to stop
        self.output_dir: str | None = None
        self._previous: dict[int, object] = {}

    def attach(self, trainer) -> GracefulStop:
        trainer.add_callback(self)
        self.output_dir = trainer.args.output_dir
        return self

    # ------------------------------------------------------------------ signal handlers

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for sig in SIGNALS:
                if signal.getsignal(sig) is not signal.SIG_IGN:  # e.g. SIGINT in a background job stays ignored
                    self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _on_signal(self, signum, frame) -> None:
        if self.signum is not None:  # asked twice: give the signal its usual effect now
            self._restore()
            os.kill(os.getpid(), signum)
            return
        self.signum = signum
        print(
            f"\n{signal.Signals(signum).name} received: stopping after the current optimizer step with a checkpoint "
            "(send it again to stop at once, without one)",
            file=sys.stderr,
            flush=True,
        )

    # ------------------------------------------------------------------ trainer events

    def on_step_end(self, args, state, control, **kwargs):
        signum = self._agreed_signal(args)
        if signum:
            self.signum = self.signum or signum
            self.stopped_step = state.global_step
            control.should_save = True
            control.should_training_stop = True
        return control

    def _agreed_signal(self, args) -> int:
        """The signal any rank received (0 when none), the same on every rank."""
        import torch
        import torch.distributed as dist

        local = self.signum or 0
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return local
        flag = torch.tensor([local], dtype=torch.int64, device=args.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item())

    @property
    def stopped(self) -> bool:
        return self.stopped_step is not None

    def interrupted(self) -> TrainingInterrupted:
        """The exception describing the stop (call only when ``stopped``)."""
        checkpoint = (
            os.path.join(self.output_dir, f"checkpoint-{self.stopped_step}") if self.output_dir else None
        )
        if checkpoint and not os.path.isdir(checkpoint):
            checkpoint = None
        return TrainingInterrupted(self.signum, checkpoint, self.stopped_step)
