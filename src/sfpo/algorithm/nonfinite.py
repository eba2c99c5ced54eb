"""Keeping non-finite values out of the weights, inside the optimizer step (docs/failure-modes.md).

Runs in the same step hooks as the SFPO stages (`sfpo.algorithm.reposition.InStepReposition`), so it sees the tensors the
optimizer really steps on every back end. Two checks, each decided the same way on every rank:

- before a step: are this step's gradients finite? If not, the step is skipped, as AMP's grad scaler does: the
  gradients of the stepped tensors are dropped, so the optimizer leaves those tensors *and their state*
  untouched (torch's optimizers and DeepSpeedCPUAdam skip a tensor whose `grad` is None);
- after a step: are the updated tensors finite?

Either failure ends the RL step: its remaining optimizer steps are skipped and, when SFPO keeps an anchor (K > 0),
the weights go back to the RL step's start θ0. Optimizer state that went non-finite is reset (as for a new
tensor); finite state is kept.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

try:  # torch >= 2.4
    from torch.distributed.tensor import DTensor
except ImportError:  # pragma: no cover
    DTensor = ()  # type: ignore[assignment]


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if isinstance(t, DTensor) else t


def _device(tensors) -> torch.device:
    return next((_local(t).device for t in tensors), torch.device("cpu"))


def _all_finite(tensors) -> bool:
    flags = [torch.isfinite(_local(t)).all() for t in tensors if t is not None and _local(t).numel()]
    return bool(torch.stack(flags).all()) if flags else True


def agree(ok: bool, sharded: bool, device: torch.device) -> bool:
    """The same verdict on every rank (a scalar all-reduce): a rank that holds a shard sees only its own piece."""
    if not sharded or not (dist.is_available() and dist.is_initialized()):
        return ok
    flag = torch.tensor([0.0 if ok else 1.0], device=device)  # on the tensors' device: nccl needs a GPU tensor
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return flag.item() == 0.0


class StepGuard:
    """Per-RL-step failure state and the two checks. `sharded` says whether ranks hold different pieces."""

    def __init__(self, sharded: bool, global_norm_source=None):
        self.sharded = sharded
        # DeepSpeed computes the global gradient norm (over all ranks and groups) before it calls the client
        # optimizer's step(): a non-finite norm means a non-finite gradient somewhere
        self._norm_source = global_norm_source
        self.failed = False  # the current RL step hit a non-finite loss or weights: its updates are void
        self.rollback_pending = False  # θ0 to be put back at the next optimizer step (found outside a step)
        self.reason: str | None = None
        self.skipped_optimizer_steps = 0  # cumulative: steps skipped for non-finite gradients

    def grads_finite(self, tensors) -> bool:
        norm = getattr(self._norm_source, "_global_grad_norm", None) if self._norm_source is not None else None
        if norm is not None:  # DeepSpeed reports an invalid group norm as a negative sentinel
            norm = float(norm)
            return math.isfinite(norm) and norm >= 0
        return agree(_all_finite(p.grad for p in tensors), self.sharded, _device(tensors))

    def weights_finite(self, tensors) -> bool:
        return agree(_all_finite(tensors), self.sharded, _device(tensors))

    def fail(self, reason: str, rollback: bool = False) -> None:
        if not self.failed:
            self.failed, self.reason = True, reason
        self.rollback_pending |= rollback

    def new_rl_step(self) -> bool:
        """Start the next RL step; returns whether the one that ended had failed."""
        failed, self.failed, self.rollback_pending, self.reason = self.failed, False, False, None
        return failed

    @staticmethod
    def skip(tensors) -> None:
        """Make the optimizer leave these tensors (and their state) untouched in this step() call."""
        for p in tensors:
            p.grad = None

    @staticmethod
    def reset_nonfinite_state(optimizer: torch.optim.Optimizer, tensors) -> None:
        for p in tensors:
            state = optimizer.state.get(p)
            if state and not _all_finite(v for v in state.values() if torch.is_tensor(v)):
                state.clear()  # re-initialised at the next step, as for a new tensor
