"""GXPO's stages inside the optimizer step: two probe steps, the extrapolation, the corrective step.

Per mini-batch (one optimizer step's worth of micro-batches), the trainer runs three optimizer steps on the same
micro-batches and says before each which one it is; the work happens in the step hooks of the optimizer that
really steps (`sfpo.algorithm.reposition.InStepReposition`), so it acts on whatever that optimizer holds: the
parameters (one process, DDP), this rank's FSDP2 shards, or DeepSpeed's fp32 master partitions:

    probe 1, pre-hook     θ0 ← θ, s0 ← optimizer state (`Anchor`, `OptimizerStateCopy`, per slot);
                          "gradient": keep c0·g0, the clipped gradient the step is about to apply
    probe 1, post-hook    "adamw_direction": keep u0 = θ1 − θ0 and each slot's (η, wd)
    probe 2, pre-hook     the RMS of the first step over every trainable coordinate (one scalar all-reduce where
                          tensors are sharded); "gradient": q from c1·g1 / c0·g0, kept in the same buffer
    probe 2, post-hook    θ ← θ0 + α·q ⊙ (θ2 − θ0) ("adamw_direction": q from the two directions, rebuilt from
                          θ0, θ1 = θ0 + u0, θ2); "transactional": optimizer state ← s0
    corrective step       the Trainer's own step (and scheduler) from θ̃; after it, θ0 is released

Fallback: when either probe's global gradient norm is ≤ 1e-8 (no signal to extrapolate from), or a probe was skipped
for non-finite gradients, probe 2's post-hook puts θ0 and s0 back instead, so the corrective step is one plain step
from (θ0, s0). A non-finite loss or weights fail the RL step as for SFPO (`sfpo.algorithm.nonfinite`): its
remaining steps are skipped and the weights go back to the anchor, which under GXPO is the current mini-batch's θ0
(earlier mini-batches of the RL step keep their updates).

Memory beyond GRPO: θ0 (one copy of the stepped tensors), one buffer of the same size (u0, or c0·g0 then q), and one
copy of the optimizer state (s0), all on this rank's pieces only.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

from sfpo.algorithm.reposition import InStepReposition, _local
from sfpo.algorithm.retention import (
    ACTIVE_RMS_FRACTION,
    empty_stats,
    extrapolate,
    q_stats,
    retention_from_first_two,
    step_direction,
)

PROBE_1, PROBE_2, CORRECTIVE = "probe1", "probe2", "corrective"
STAGES = (PROBE_1, PROBE_2, CORRECTIVE)
NORM_EPS = 1e-8  # a probe's global gradient norm at or below this: fall back to one plain step


def _wide(t: torch.Tensor) -> torch.Tensor:
    """At least float32 (bf16 weights lose the small differences the retention reads); float64 stays."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def stepped_with_groups(optimizer: torch.optim.Optimizer) -> list[tuple[torch.Tensor, dict]]:
    """The tensors this `step()` call updates (as `stepped_tensors` orders them), each with its param group."""
    seen: set[int] = set()
    out = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                out.append((p, group))
    return out


class GXPOInStep(InStepReposition):
    """`InStepReposition` with GXPO's stages (and none of SFPO's): the trainer calls `expect_step(step_follows,
    stage)` before every micro-step, `stage` one of `STAGES` (or None for a plain step)."""

    def __init__(self, optimizer, model_params, anchor, state_copy, k: int, alpha: float, retention: str,
                 transactional: bool):
        super().__init__(optimizer, model_params, anchor, state_copy)
        self.k, self.alpha, self.retention, self.transactional = k, alpha, retention, transactional
        self.buffers: list[torch.Tensor] = []  # per slot: u0 = θ1 − θ0, or c0·g0 and then q
        self.step_sizes: list[tuple[float, float]] = []  # per slot: (η, wd) of its group at probe 1
        self.slot_keys: list[tuple] = []  # per slot: how its sums reduce over ranks
        self.stage: str | None = None
        self.fallback = False  # this mini-batch falls back to one plain step from (θ0, s0)
        self._threshold = 0.0  # the activity threshold of this mini-batch (ACTIVE_RMS_FRACTION × RMS)
        self._stats: dict[tuple, torch.Tensor] = {}  # this mini-batch's q statistics, per reduction key
        self._done: int | None = None  # a mini-batch's probes have finished: 1 if it fell back, else 0

    @property
    def extra_nbytes(self) -> int:
        """Bytes GXPO holds beside the anchor and the optimizer-state copy (the per-slot buffers)."""
        return sum(b.numel() * b.element_size() for b in self.buffers)

    def expect_step(self, step_follows: bool, stage: str | None = None) -> None:  # type: ignore[override]
        if stage is not None and stage not in STAGES:
            raise ValueError(f"unknown GXPO stage {stage!r}")
        super().expect_step(step_follows, snapshot=step_follows and stage == PROBE_1)
        self.stage = stage if step_follows else None
        if self.stage == PROBE_1:
            self.fallback = False

    # ------------------------------------------------------------------ the hooks

    def _pre_step(self, opt, args, kwargs) -> None:
        first_call = not self._ran
        super()._pre_step(opt, args, kwargs)  # θ0 and s0 at probe 1; the non-finite guard
        if self.stage not in (PROBE_1, PROBE_2) or self._failed():
            return
        pairs = stepped_with_groups(opt)
        if first_call:
            self.fallback |= self._skip or self._grad_norm([p for p, _ in pairs]) <= NORM_EPS
            if self.stage == PROBE_2 and not self.fallback:
                self._key_slots(pairs)
                self._threshold = ACTIVE_RMS_FRACTION * self._first_step_rms()
        if self.fallback:
            return
        with torch.no_grad():
            for i, (p, _group) in enumerate(pairs):
                slot = self._slot + i
                if self.stage == PROBE_1:
                    if self.retention == "gradient":
                        self._buffer(slot, p).copy_(_local(p.grad))  # c0·g0: the Trainer clipped it already
                elif self.retention == "gradient":  # probe 2: q from c1·g1 / c0·g0, into the same buffer
                    buf = self.buffers[slot]
                    q = retention_from_first_two(_wide(buf), _wide(_local(p.grad)), self.k, self._threshold)
                    buf.copy_(q)

    def _post_step(self, opt, args, kwargs) -> None:
        if self.stage == PROBE_1 and not self.fallback and not self._failed():
            with torch.no_grad():
                for i, (p, group) in enumerate(stepped_with_groups(opt)):
                    slot = self._slot + i
                    self.step_sizes[slot:slot + 1] = [(float(group["lr"]), float(group.get("weight_decay", 0.0)))]
                    if self.retention == "adamw_direction":
                        local = _local(p.detach())
                        self._buffer(slot, p).copy_(local - self.anchor.copies[slot].to(local.device))  # u0
        elif self.stage == PROBE_2 and not self._failed():
            pairs = stepped_with_groups(opt)
            with torch.no_grad():
                for i, (p, group) in enumerate(pairs):
                    slot = self._slot + i
                    if self.fallback:  # no signal: back to (θ0, s0); the corrective step is one plain step
                        self.anchor.restore(slot, p)
                        self.state_copy.restore(slot, opt, p)
                        continue
                    self._extrapolate(slot, p, group)
                    if self.transactional:
                        self.state_copy.restore(slot, opt, p)
            if self._done is None:
                self._done = int(self.fallback)
        super()._post_step(opt, args, kwargs)  # slots advance; the weights are checked for non-finite values
        if self.stage == CORRECTIVE:
            self.theta0_live = False  # the mini-batch is done: nothing to roll back to until the next probe 1

    # ------------------------------------------------------------------ pieces

    def _failed(self) -> bool:
        return self.guard is not None and self.guard.failed

    def _key_slots(self, pairs) -> None:
        """How each slot's sums reduce over ranks (`_drift_key`), from the tensors of probe 2's first `step()` call:
        every slot without DeepSpeed, the first group's under ZeRO (whose slots are all master partitions)."""
        keys = [self._drift_key(p) for p, _ in pairs]
        device = _local(pairs[0][0]).device if pairs else None
        if device is not None:  # buffers restored from a checkpoint come back on the CPU
            self.buffers = [b if b.device == device else b.to(device) for b in self.buffers]
        rest = len(self.buffers) - self._slot - len(keys)
        if rest > 0 and self.engine is None:
            raise RuntimeError("GXPO expected every stepped tensor in one step() call without DeepSpeed")
        self.slot_keys = [("partition",)] * self._slot + keys + [("partition",)] * max(rest, 0)

    def _buffer(self, slot: int, p: torch.Tensor) -> torch.Tensor:
        local = _local(p.detach())
        if slot == len(self.buffers):  # first sight of this slot: allocated once, reused every mini-batch
            dtype = torch.promote_types(local.dtype, torch.float32)  # at least fp32: q and u0 need the digits
            self.buffers.append(torch.empty(local.shape, dtype=dtype, device=local.device))
        buf = self.buffers[slot]
        if buf.shape != local.shape:
            raise RuntimeError(f"GXPO buffer slot {slot} holds shape {tuple(buf.shape)} but the optimizer now steps "
                               f"shape {tuple(local.shape)}: the optimizer's tensors changed")
        return buf

    def _extrapolate(self, slot: int, p: torch.Tensor, group: dict) -> None:
        """θ ← θ0 + α·q ⊙ (θ2 − θ0) for one slot, and its share of the logged statistics."""
        local = _local(p.detach())
        theta0 = _wide(self.anchor.copies[slot].to(local.device))
        theta2 = _wide(local)
        if self.retention == "gradient":
            q = _wide(self.buffers[slot])
        else:
            lr0, wd0 = self.step_sizes[slot]
            lr1, wd1 = float(group["lr"]), float(group.get("weight_decay", 0.0))
            if lr0 == 0.0 or lr1 == 0.0:  # no step direction to read: no retention
                q = torch.ones_like(theta2)
            else:
                theta1 = theta0 + _wide(self.buffers[slot])
                d0 = step_direction(theta0, theta1, lr0, wd0)
                d1 = step_direction(theta1, theta2, lr1, wd1)
                q = retention_from_first_two(d0, d1, self.k, self._threshold)
        new = extrapolate(theta0, theta2, q, self.alpha)
        sq = (new - theta0).double().pow(2).sum()
        local.copy_(new)
        key = self.slot_keys[slot]
        stats = q_stats(q, self.k, sq)
        self._stats[key] = stats if key not in self._stats else self._stats[key] + stats

    def _first_step(self, slot: int) -> torch.Tensor | None:
        """The first probe step of one slot, as the retention reads it (c0·g0, or the direction d0)."""
        buf = self.buffers[slot]
        if self.retention == "gradient":
            return _wide(buf)
        lr0, wd0 = self.step_sizes[slot]
        if lr0 == 0.0:
            return None
        theta0 = _wide(self.anchor.copies[slot].to(buf.device))
        return step_direction(theta0, theta0 + _wide(buf), lr0, wd0)

    def _first_step_rms(self) -> float:
        """RMS of the first step over every trainable coordinate on every rank (each element counted once)."""
        sums: dict[tuple, torch.Tensor] = {}
        for slot in range(len(self.buffers)):
            d0 = self._first_step(slot)
            device = self.buffers[slot].device
            piece = (torch.stack([d0.double().pow(2).sum(), torch.tensor(float(d0.numel()), dtype=torch.float64,
                                                                          device=device)])
                     if d0 is not None else torch.zeros(2, dtype=torch.float64, device=device))
            key = self.slot_keys[slot]
            sums[key] = piece if key not in sums else sums[key] + piece.to(sums[key].device)
        total = self._reduce(sums)
        return math.sqrt(float(total[0]) / float(total[1])) if float(total[1]) > 0 else 0.0

    def _grad_norm(self, tensors: list[torch.Tensor]) -> float:
        """This step's global gradient norm (after clipping when the Trainer clips; DeepSpeed's own when it keeps
        one), the same on every rank."""
        norm = getattr(self.engine, "_global_grad_norm", None) if self.engine is not None else None
        if norm is not None:  # DeepSpeed: the norm over every group and rank, before its clip
            return float(norm)
        sums: dict[tuple, torch.Tensor] = {}
        for p in tensors:
            if p.grad is None:
                continue
            key = self._drift_key(p)
            sq = _local(p.grad).detach().double().pow(2).sum().reshape(1)
            sums[key] = sq if key not in sums else sums[key] + sq
        return math.sqrt(float(self._reduce(sums)[0])) if sums else 0.0

    def _reduce(self, sums: dict[tuple, torch.Tensor]) -> torch.Tensor:
        """Σ over the keys of per-key sums, each summed over the ranks that hold different pieces of its tensors
        (as `drift_norm` does): one all-reduce per key, in insertion order (slot order: the same on every rank)."""
        total = None
        for key in sums:
            value = sums[key]
            if key and dist.is_available() and dist.is_initialized():
                group = self._meshes[key[1]].get_group(key[2][0]) if key[0] == "mesh" else self.dp_group
                if dist.get_backend(group) == "nccl" and value.device.type != "cuda":  # e.g. offloaded masters
                    value = value.cuda()
                if key[0] == "mesh":
                    mesh = self._meshes[key[1]]
                    for d in key[2]:
                        dist.all_reduce(value, group=mesh.get_group(d))
                else:
                    dist.all_reduce(value, group=self.dp_group)
            value = value.cpu()
            total = value if total is None else total + value
        return total if total is not None else torch.zeros(1, dtype=torch.float64)

    def take_minibatch(self) -> tuple[int, list[float]] | None:
        """The statistics of the newest mini-batch whose probes finished, once: (fell back, summed q statistics
        over every rank). A collective: every rank calls it at the same point."""
        if self._done is None:
            return None
        fell_back, self._done = self._done, None
        stats, self._stats = self._stats, {}
        if fell_back:  # decided alike on every rank: nothing was extrapolated anywhere, no collective needed
            return 1, empty_stats().tolist()
        return 0, self._reduce(stats).tolist()

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        """What a checkpoint between probe 1 and probe 2 needs besides θ0 and s0."""
        return {"buffers": [b.detach().cpu().clone() for b in self.buffers], "step_sizes": list(self.step_sizes),
                "fallback": self.fallback}

    def load_state_dict(self, state: dict) -> None:
        """Buffers saved by `state_dict`, moved to each slot's device when next used."""
        self.buffers = [b.clone() for b in state["buffers"]]
        self.step_sizes = [tuple(s) for s in state["step_sizes"]]
        self.fallback = bool(state["fallback"])
