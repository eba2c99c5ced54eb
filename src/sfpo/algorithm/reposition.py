"""The heart of SFPO: snapshot θ0, then reposition θ ← θ0 + α(θK − θ0) before the slow correction.

Both stages run *inside* `optimizer.step()` of the optimizer that really steps, through torch's step hooks:

    pre-hook of the first optimizer step of an RL step     θ0 ← θ                     (`Anchor.snapshot`)
    post-hook of the last optimizer step of pass K         θ ← θ0 + α(θ − θ0)         (`Anchor.reposition`)

so they act on whatever tensors that optimizer holds at that moment: the parameters (one process, DDP), this
rank's local shards (FSDP2 DTensors), or the fp32 master partitions of DeepSpeed ZeRO-1/2/3, with or without
optimizer offload. DeepSpeed copies its masters into the model after every step, so a change of the model's
weights would be undone; a change of the masters is carried into the model by DeepSpeed itself. Under ZeRO-3
the client optimizer's `param_groups` are empty between steps, which is why nothing here reads them outside
`step()`.

`Anchor` keeps one copy per stepped tensor (trainable tensors only, so LoRA costs only the adapters) and
moves them in place with `θ.lerp_(θ0, 1 − α)`, which equals θ0 + α(θ − θ0). Copies are matched to tensors by
*slot*: the order in which the optimizer presents them within one step (ZeRO-1/2 call `step()` once per param
group, ZeRO-3 once per sub-group; the order is the same every step). Optimizer state, scheduler, old log-probs
and advantages are untouched (docs/algorithm.md#the-reposition, as in the reference code), unless
`sfpo_optimizer_state="restore"`: then `OptimizerStateCopy` takes the optimizer state of each stepped tensor in
the same pre-hook as θ0 and puts it back, in place, in the post-hook of pass K's last step.
"""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist

from sfpo.algorithm.nonfinite import StepGuard

try:  # torch >= 2.4
    from torch.distributed.tensor import DTensor
except ImportError:  # pragma: no cover
    DTensor = ()  # type: ignore[assignment]


class NonFiniteWeightsError(RuntimeError):
    """The weights went non-finite and there is no θ0 to roll back to."""


def stepped_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The tensors this call of `optimizer.step()` updates, in a fixed order, each once."""
    seen: set[int] = set()
    tensors = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                tensors.append(p)
    return tensors


def stepping_optimizers(optimizer) -> tuple[list[torch.optim.Optimizer], object | None, object | None]:
    """The torch optimizers that really step, under the wrappers (accelerate's, DeepSpeed's ZeRO optimizer),
    the process group over which their tensors are partitioned and the engine optimizer that reports the global
    gradient norm, if a ZeRO optimizer says so."""
    dp_group, engine, found = None, None, []
    while getattr(optimizer, "optimizer", None) is not None:  # AcceleratedOptimizer, DeepSpeed's ZeRO/BF16
        dp_group = getattr(optimizer, "dp_process_group", dp_group)
        engine = optimizer if hasattr(optimizer, "_global_grad_norm") else engine
        backup = getattr(optimizer, "backup_optimizer", None)  # ZeRO-3 partial offload steps GPU sub-groups here
        if isinstance(backup, torch.optim.Optimizer):
            found.append(backup)
        optimizer = optimizer.optimizer
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"SFPO needs a torch.optim.Optimizer to hook into, but the optimizer that steps is "
            f"{type(optimizer).__name__}; use a torch optimizer (e.g. the trainer's default AdamW)"
        )
    return [optimizer, *found], dp_group, engine


def _local(t: torch.Tensor) -> torch.Tensor:
    """This rank's storage of a tensor (its shard under FSDP2), usable for in-place updates."""
    return t.to_local() if isinstance(t, DTensor) else t


class Anchor:
    """θ0 of the current RL step, one preallocated copy per slot, kept on `device` ("same" or "cpu")."""

    def __init__(self, device: str = "same"):
        if device not in ("same", "cpu"):
            raise ValueError(f"sfpo_anchor_device={device!r} is not allowed; use 'same' or 'cpu'")
        self.device = device
        self.copies: list[torch.Tensor] = []
        self.tensors: list[torch.Tensor] = []  # what each slot anchored last (rollbacks between steps use them)

    @property
    def nbytes(self) -> int:
        return sum(c.numel() * c.element_size() for c in self.copies)

    def _copy(self, slot: int, local: torch.Tensor) -> torch.Tensor:
        if slot == len(self.copies):  # first sight of this slot: allocate once, reuse every RL step
            if self.device == "cpu" and local.device.type != "cpu":
                pin = torch.cuda.is_available()
                self.copies.append(torch.empty(local.shape, dtype=local.dtype, device="cpu", pin_memory=pin))
            else:  # "same", or the tensor already lives on the CPU (optimizer offload): one copy, no transfer
                self.copies.append(torch.empty_like(local))
        c = self.copies[slot]
        if c.shape != local.shape:
            raise RuntimeError(
                f"SFPO anchor slot {slot} holds shape {tuple(c.shape)} but the optimizer now steps shape "
                f"{tuple(local.shape)}: the optimizer's tensors changed (a different model, parallel layout or "
                "number of processes than the anchor was taken or saved with)"
            )
        if c.device != local.device and self.device == "same":  # loaded from a checkpoint (CPU): move it for good
            c = self.copies[slot] = c.to(local.device)
        return c if c.device == local.device else c.to(local.device, non_blocking=True)

    @torch.no_grad()
    def snapshot(self, slot: int, p: torch.Tensor) -> None:
        """θ0 ← θ for one tensor."""
        local = _local(p.detach())
        self._copy(slot, local)  # allocates and checks
        self.copies[slot].copy_(local, non_blocking=True)
        self.tensors[slot:slot + 1] = [p]

    @torch.no_grad()
    def restore(self, slot: int, p: torch.Tensor) -> None:
        """θ ← θ0 for one tensor (a rolled-back RL step)."""
        local = _local(p.detach())
        local.copy_(self._copy(slot, local))

    @torch.no_grad()
    def reposition(self, slot: int, p: torch.Tensor, alpha: float) -> torch.Tensor:
        """θ ← θ0 + α(θ − θ0) for one tensor, in place; returns this piece's squared drift ‖θ − θ0‖²."""
        if slot >= len(self.copies):
            raise RuntimeError(f"SFPO anchor has no slot {slot}: the reposition came before any snapshot")
        local = _local(p.detach())
        theta0 = self._copy(slot, local)
        sq = (local.float() - theta0.float()).pow(2).sum()
        local.lerp_(theta0, 1.0 - float(alpha))
        return sq

    def state_dict(self) -> list[torch.Tensor]:
        return [c.detach().cpu().clone() for c in self.copies]

    def load_state_dict(self, copies: list[torch.Tensor]) -> None:
        """Copies saved by `state_dict`; matched (and shape-checked) to tensors slot by slot when next used, and
        with device "same" moved to each tensor's device then."""
        like = (lambda t: t.pin_memory()) if self.device == "cpu" and torch.cuda.is_available() else (lambda t: t)
        self.copies = [like(c.clone()) for c in copies]
        self.tensors = []


class OptimizerStateCopy:
    """The optimizer's per-tensor state at θ0 (moments and step counts), one copy per slot, restored in place.

    Restoring copies values into the optimizer's own state tensors rather than replacing them: DeepSpeed and
    fused kernels may hold on to those tensors. A tensor with no state at θ0 (before its first update) gets its
    state dropped, so the optimizer initialises it afresh, exactly as at θ0. DeepSpeedCPUAdam keeps β^t in C++
    too, but recomputes it whenever the step count it is handed is not its own plus one, so the restored
    Python-side `step` is what counts.
    """

    def __init__(self):
        self.copies: list[dict] = []

    @property
    def nbytes(self) -> int:
        return sum(v.numel() * v.element_size() for c in self.copies for v in c.values() if torch.is_tensor(v))

    @torch.no_grad()
    def snapshot(self, slot: int, opt: torch.optim.Optimizer, p: torch.Tensor) -> None:
        state = opt.state.get(p, {})
        if slot == len(self.copies):
            self.copies.append({})
        old, new = self.copies[slot], {}
        for key, value in state.items():
            if torch.is_tensor(value):
                buf = old.get(key)
                if not (torch.is_tensor(buf) and buf.shape == value.shape and buf.dtype == value.dtype
                        and buf.device == value.device):
                    buf = torch.empty_like(value)  # allocated once, reused every RL step
                new[key] = buf.copy_(value)
            else:
                new[key] = copy.deepcopy(value)  # e.g. DeepSpeedCPUAdam's int step
        self.copies[slot] = new

    @torch.no_grad()
    def restore(self, slot: int, opt: torch.optim.Optimizer, p: torch.Tensor) -> None:
        if slot >= len(self.copies):
            raise RuntimeError(f"SFPO optimizer-state copy has no slot {slot}: the restore came before any snapshot")
        saved = self.copies[slot]
        if not saved:
            opt.state.pop(p, None)
            return
        state = opt.state[p]
        for key in [k for k in state if k not in saved]:
            del state[key]
        for key, value in saved.items():
            current = state.get(key)
            if torch.is_tensor(value) and torch.is_tensor(current) and current.shape == value.shape:
                current.copy_(value)
            else:
                state[key] = value.clone() if torch.is_tensor(value) else value

    def state_dict(self) -> list[dict]:
        return [{k: v.detach().cpu().clone() if torch.is_tensor(v) else v for k, v in c.items()} for c in self.copies]

    def load_state_dict(self, copies: list[dict]) -> None:
        """Copies saved by `state_dict`; values are copied into the optimizer's own tensors when restored."""
        self.copies = [dict(c) for c in copies]


class InStepReposition:
    """Runs the anchor's two stages, and the non-finite guard (`sfpo.algorithm.nonfinite`), inside `optimizer.step()`.

    The trainer calls `expect_step(...)` before every micro-step, saying whether an optimizer step follows it and
    which stages are due in that step, and `settle()` at the next micro-step. A step the optimizer skipped by
    itself (DeepSpeed's overflow check) fails the RL step under the guard; without the guard, a stage that did
    not run is an error, never a silent wrong update.
    """

    def __init__(self, optimizer, model_params, anchor: Anchor, state_copy: OptimizerStateCopy | None = None,
                 guard: bool = True):
        self.optimizer = optimizer
        self.anchor = anchor
        self.state_copy = state_copy  # set: the optimizer state is snapshotted with θ0 and can be restored
        self.optimizers, self.dp_group, engine = stepping_optimizers(optimizer)
        self.engine = engine  # DeepSpeed's ZeRO / bf16 optimizer: it keeps masters apart from the model
        self._model_ids = {id(p) for p in model_params}
        first = stepped_tensors(self.optimizers[0])  # empty under ZeRO-3 outside step(): then masters, so sharded
        sharded = dist.is_available() and dist.is_initialized() and (
            engine is not None or not first or any(isinstance(p, DTensor) for p in first))
        self.guard = StepGuard(sharded, engine) if guard else None
        self.theta0_live = False  # the anchor holds this RL step's θ0
        self._expecting = self._ran = self._skip = False
        self._snapshot = self._restore = False
        self._alpha: float | None = None
        self._slot = 0
        self._sq_drift: dict[tuple, torch.Tensor] = {}
        self._meshes: dict[int, object] = {}
        self._handles = []
        for opt in self.optimizers:
            self._handles.append(opt.register_step_pre_hook(self._pre_step))
            self._handles.append(opt.register_step_post_hook(self._post_step))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def expect_step(self, step_follows: bool, snapshot: bool = False, alpha: float | None = None,
                    restore: bool = False) -> None:
        """Before a micro-step: snapshot θ0 before the optimizer step that follows it and/or reposition with
        `alpha` right after it; with `restore`, put the optimizer state back to θ0's right after it."""
        if restore and self.state_copy is None:
            raise RuntimeError("SFPO was asked to restore the optimizer state without keeping a copy of it")
        self._expecting, self._ran, self._skip = step_follows, False, False
        self._snapshot, self._alpha, self._restore, self._slot = snapshot, alpha, restore, 0
        if snapshot:
            self._sq_drift = {}

    def settle(self) -> None:
        """After the expected optimizer step: note a step the optimizer skipped by itself."""
        if not self._expecting:
            return
        self._expecting = False
        if self._ran:
            return
        if self.guard is not None:  # DeepSpeed skips a step whose gradient norm is invalid
            self.guard.skipped_optimizer_steps += 1
            self.guard.fail("the optimizer skipped a step (non-finite gradients)", rollback=self.theta0_live)
        elif self._snapshot or self._alpha is not None or self._restore:
            raise RuntimeError(
                "an SFPO stage was due in an optimizer step that never ran (the step was skipped, e.g. by loss "
                "scaling on an overflow); the RL step cannot be completed correctly"
            )

    def end_rl_step(self) -> None:
        self.theta0_live = False

    # Each call of `step()` runs pre-hook, update, post-hook on the same tensors; under ZeRO there is one call
    # per (sub-)group, so slots run on across the calls of one optimizer step.
    def _pre_step(self, opt, args, kwargs) -> None:
        tensors = stepped_tensors(opt)
        first_call, self._ran = not self._ran, True
        if self._snapshot:
            for i, p in enumerate(tensors):
                self.anchor.snapshot(self._slot + i, p)
                if self.state_copy is not None:
                    self.state_copy.snapshot(self._slot + i, opt, p)
            self.theta0_live = True
        g = self.guard
        if g is None:
            return
        if first_call:  # one verdict per optimizer step, the same on every rank
            if g.rollback_pending:
                self._rollback()
            self._skip = g.failed or not g.grads_finite(tensors)
            if self._skip and not g.failed:
                g.skipped_optimizer_steps += 1
        if self._skip:
            g.skip(tensors)

    def _post_step(self, opt, args, kwargs) -> None:
        tensors = stepped_tensors(opt)
        g = self.guard
        if self._alpha is not None and not self._skip:
            self._reposition(tensors, self._slot, self._alpha)
        if self._restore and not self._skip:
            for i, p in enumerate(tensors):
                self.state_copy.restore(self._slot + i, opt, p)
        self._slot += len(tensors)
        if g is not None and not self._skip and not g.weights_finite(tensors):
            if not self.theta0_live:
                raise NonFiniteWeightsError(
                    "the weights went non-finite in an optimizer step whose gradients were finite (an update "
                    "overflowed; is the learning rate far too high?), and plain GRPO (sfpo_inner_steps=0) keeps no "
                    "anchor to roll back to; the newest checkpoint on disk holds the last good weights"
                )
            g.fail("non-finite weights after an optimizer step")
            self._rollback()

    def rollback_now(self) -> None:
        """A rollback found outside a step: θ0 into the tensors the optimizer steps, then into the model where an
        engine keeps separate master copies (DeepSpeed)."""
        self._rollback()
        self._sync_model()

    @torch.no_grad()
    def _sync_model(self) -> None:
        """Carry a change of DeepSpeed's fp32 masters made between steps into the model's weights, as DeepSpeed
        itself does at the end of its step(): ZeRO-1/2 and the bf16 optimizer copy this rank's partition into
        the low-precision flat buffer and all-gather it (`update_lp_params`); ZeRO-3 releases every gathered
        parameter (a forward may leave some gathered for reuse), copies each sub-group's masters into the
        model's partitions (gathered at the next forward) and re-gathers the persistent parameters it keeps
        whole. Without an engine the optimizer steps the model's own parameters: nothing to do."""
        e = self.engine
        if e is None:
            return
        if hasattr(e, "update_lp_params"):  # ZeRO-1/2, bf16 optimizer
            e.update_lp_params()
        elif hasattr(e, "fp32_partitioned_groups_flat"):  # ZeRO-3
            if getattr(e, "swap_optimizer", False):
                raise RuntimeError("SFPO cannot change ZeRO-3's masters between steps while they are swapped out to "
                                   "NVMe (offload_optimizer.device='nvme'); use CPU offload or none")
            e._partition_all_parameters()  # as step() does: no gathered copy (kept for reuse) may outlive this
            for i in range(len(e.fp32_partitioned_groups_flat)):
                e._reassign_or_swap_out_partitioned_parameters(i)
            if getattr(e, "persistent_parameters", None):
                e.persistent_parameters[0].all_gather(e.persistent_parameters)
            if hasattr(e, "invalidate_secondary_tensor"):  # hpZ's secondary copies are stale now
                e.invalidate_secondary_tensor()
        else:
            raise RuntimeError(f"SFPO does not know how {type(e).__name__} copies its master weights into the model")

    @torch.no_grad()
    def _rollback(self) -> None:
        """θ ← θ0 on every anchored tensor (the RL step's updates are void). With a copy of θ0's optimizer
        state ("restore") that state comes back too; otherwise non-finite optimizer state is reset."""
        if self.guard is not None:
            self.guard.rollback_pending = False
        if not self.theta0_live:
            return
        tensors = self._anchored()
        for slot, p in enumerate(tensors):
            self.anchor.restore(slot, p)
            if self.state_copy is not None:
                # into the optimizer that holds this tensor's state (under ZeRO-3 partial offload, maybe the backup)
                owner = next((o for o in self.optimizers if p in o.state), self.optimizers[0])
                self.state_copy.restore(slot, owner, p)
        for o in self.optimizers:
            StepGuard.reset_nonfinite_state(o, tensors)
        self._sq_drift = {}

    def _anchored(self) -> list[torch.Tensor]:
        """Between steps, the tensors of the anchor's slots, in slot order: those it anchored in this process, or
        after a resume inside an RL step (θ0 loaded, nothing anchored yet) the ones the optimizer steps."""
        if len(self.anchor.tensors) == len(self.anchor.copies):
            return self.anchor.tensors
        e = self.engine
        for name in ("single_partition_of_fp32_groups", "fp32_partitioned_groups_flat", "fp32_groups_flat_partition"):
            if e is not None and hasattr(e, name):  # ZeRO-1/2, ZeRO-3, bf16 optimizer: one slot per (sub-)group
                return list(getattr(e, name))
        if e is not None:
            raise RuntimeError(f"SFPO does not know where {type(e).__name__} keeps its master weights")
        return stepped_tensors(self.optimizers[0])

    def _reposition(self, tensors: list[torch.Tensor], first_slot: int, alpha: float) -> None:
        for i, p in enumerate(tensors):
            sq = self.anchor.reposition(first_slot + i, p, alpha)
            key = self._drift_key(p)
            self._sq_drift[key] = sq if key not in self._sq_drift else self._sq_drift[key] + sq

    def reposition_now(self, alpha: float) -> None:
        """The reposition outside `optimizer.step()`, between micro-steps (for an α chosen from the weights θK).

        Where the optimizer steps the model's own parameters (one process, DDP, FSDP2 shards) they are moved in
        place and the next forward uses them. Under DeepSpeed the anchored tensors are the fp32 masters: they
        are moved, then copied into the model the way DeepSpeed does after a step (`_sync_model`)."""
        if not self.theta0_live:
            raise RuntimeError("the SFPO reposition was asked for outside an RL step (no θ0 is held)")
        tensors = self._anchored()
        if self.engine is None and (len(self.optimizers) != 1 or self.dp_group is not None
                                    or any(id(p) not in self._model_ids for p in tensors)):
            raise RuntimeError("the SFPO reposition can only run between optimizer steps when the optimizer steps "
                               "the model's own parameters or DeepSpeed's masters; this one steps other tensors")
        self._reposition(tensors, 0, alpha)
        self._sync_model()

    def _drift_key(self, p: torch.Tensor) -> tuple:
        """How this tensor's squared drift is summed over ranks: a DTensor over its Shard mesh dims (over a
        Replicate dim, e.g. HSDP's replicas, every rank holds the same piece), a tensor that is not a model
        parameter (a ZeRO master partition) over the data-parallel group, a model parameter not at all (each
        rank holds all of it)."""
        if isinstance(p, DTensor):
            dims = tuple(i for i, pl in enumerate(p.placements) if pl.is_shard())
            if dims:
                self._meshes[id(p.device_mesh)] = p.device_mesh
                return ("mesh", id(p.device_mesh), dims)
            return ()
        if id(p) in self._model_ids:
            return ()
        return ("partition",)

    @property
    def repositioned(self) -> bool:
        """This RL step's reposition has run and its drift norm is not taken yet."""
        return bool(self._sq_drift)

    def drift_norm(self) -> float | None:
        """‖θK − θ0‖ of the last reposition, each element counted once; a collective (every rank calls it)."""
        if not self._sq_drift:
            return None
        total = 0.0
        for key, sq in self._sq_drift.items():  # insertion order: the same on every rank
            if key and dist.is_available() and dist.is_initialized():
                if key[0] == "mesh":  # one scalar all-reduce per sharded mesh dim; no weights are gathered
                    mesh = self._meshes[key[1]]
                    for d in key[2]:
                        dist.all_reduce(sq, group=mesh.get_group(d))
                else:
                    dist.all_reduce(sq, group=self.dp_group)
            total += float(sq)
        self._sq_drift = {}
        return total**0.5
