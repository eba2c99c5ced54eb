"""The trainer's metrics over one RL step, whatever `logging_steps` says.

TRL buffers its metrics in `trainer._metrics["train"]` (one list per name, appended per micro-step, per
optimizer step or per generation) and averages and clears that buffer whenever the Trainer writes a log entry,
every `logging_steps` optimizer steps. An RL step spans K + 1 passes and need not line up with those entries,
so `RLStepWindow` copies each buffered value once, as it appears, into a window of its own: the values a log
entry is about to clear are copied just before (`collect`), the rest when the RL step ends (`close`). Nothing in
TRL's buffer is changed, so TRL's log entries stay exactly as `GRPOTrainer` writes them.

A list that is replaced rather than appended to (TRL sets `num_tokens = [total]`) is told apart from one that
grew by identity, so it is copied again.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable

import torch


class RLStepWindow:
    """Accumulates one RL step's metrics: TRL's buffered ones, the training loss, grad norm and learning rate."""

    def __init__(self):
        self._values: dict[str, list[float]] = defaultdict(list)
        # name -> (TRL's list, how many of its values are copied)
        self._seen: dict[str, tuple[list, int]] = {}
        self._loss: torch.Tensor | None = None  # sum of the optimizer steps' losses, on device (no sync)
        self._optimizer_steps = 0

    def collect(self, buffer: dict[str, list]) -> None:
        """Copies the values of TRL's buffer not copied yet."""
        for name, values in buffer.items():
            seen, count = self._seen.get(name, (None, 0))
            start = count if seen is values else 0
            self._values[name].extend(values[start:])
            self._seen[name] = (values, len(values))

    def add_optimizer_step(self, loss: torch.Tensor, grad_norm, learning_rate: float | None) -> None:
        """One optimizer step: the sum of its micro-steps' losses (left on device), its grad norm and LR."""
        loss = loss.detach()
        self._loss = loss.clone() if self._loss is None else self._loss + loss
        self._optimizer_steps += 1
        if grad_norm is not None:
            self._values["grad_norm"].append(float(grad_norm))
        if learning_rate is not None:
            self._values["learning_rate"].append(float(learning_rate))

    def state_dict(self) -> dict:
        """What a checkpoint inside an RL step keeps, so the resumed RL step's record is complete (plain data)."""
        loss = None if self._loss is None else float(self._loss.float().sum())
        return {"values": {k: list(v) for k, v in self._values.items()}, "loss": loss,
                "optimizer_steps": self._optimizer_steps}

    def load_state_dict(self, state: dict) -> None:
        """Continue a window saved by :meth:`state_dict` (TRL's buffer starts empty after a resume)."""
        self._values = defaultdict(list, {k: list(v) for k, v in state["values"].items()})
        self._seen = {}
        self._loss = None if state["loss"] is None else torch.tensor(state["loss"])
        self._optimizer_steps = state["optimizer_steps"]

    def close(
        self, buffer: dict[str, list], mean_over_processes: Callable[[torch.Tensor], torch.Tensor]
    ) -> dict:
        """The RL step's means (non-finite values left out, as TRL does), then an empty window for the next one.

        `loss` is per optimizer step, like the Trainer's: the micro-steps' sum over the optimizer steps, averaged
        over processes; every process must call this at the same point (it is a collective).
        """
        self.collect(buffer)
        means = {}
        for name, values in self._values.items():
            finite = [v for v in values if v is not None and math.isfinite(v)]
            if finite:
                means[name] = sum(finite) / len(finite)
        if self._loss is not None and self._optimizer_steps:
            loss = mean_over_processes(self._loss.float().reshape(1)).item() / self._optimizer_steps
            if math.isfinite(loss):
                means["loss"] = loss
        self._values = defaultdict(list)
        self._loss, self._optimizer_steps = None, 0
        return means
