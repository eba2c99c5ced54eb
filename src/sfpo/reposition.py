"""The heart of SFPO: snapshot θ0, then reposition θ ← θ0 + α(θK − θ0) before the slow correction.

`Anchor` holds one copy of the trainable tensors the optimizer updates (trainable parameters only, so LoRA
costs only the adapters) and moves them in place with `lerp_`:

    θ.lerp_(θ0, 1 − α)   ==   θ0 + α(θ − θ0)

No second "fast" copy is kept. Optimizer state, scheduler, old log-probs and advantages are untouched
(spec §3). Under FSDP2 the parameters are DTensors: each rank anchors and moves its own local shard, with
no gather of full weights.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

try:  # torch >= 2.4
    from torch.distributed.tensor import DTensor
except ImportError:  # pragma: no cover
    DTensor = ()  # type: ignore[assignment]


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The tensors `optimizer.step()` really updates, in a fixed order, each once."""
    seen: set[int] = set()
    tensors = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                tensors.append(p)
    return tensors


def _local(t: torch.Tensor) -> torch.Tensor:
    """This rank's storage of a parameter (its shard under FSDP2), usable for in-place updates."""
    return t.to_local() if isinstance(t, DTensor) else t


class Anchor:
    """θ0 of the current RL step for a fixed list of tensors, kept on `device` ("same" or "cpu")."""

    def __init__(self, params: Iterable[torch.Tensor], device: str = "same"):
        if device not in ("same", "cpu"):
            raise ValueError(f"sfpo_anchor_device={device!r} is not allowed; use 'same' or 'cpu'")
        self.params = list(params)
        self.device = device
        pin = device == "cpu" and torch.cuda.is_available()
        self.copies = []
        for p in self.params:
            local = _local(p.detach())
            if device == "cpu":
                self.copies.append(torch.empty(local.shape, dtype=local.dtype, device="cpu", pin_memory=pin))
            else:
                self.copies.append(torch.empty_like(local))

    @property
    def nbytes(self) -> int:
        return sum(c.numel() * c.element_size() for c in self.copies)

    @torch.no_grad()
    def snapshot(self) -> None:
        """θ0 ← θ (in place into the preallocated copies)."""
        for p, c in zip(self.params, self.copies):
            c.copy_(_local(p.detach()), non_blocking=True)

    def _on(self, c: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return c if c.device == like.device else c.to(like.device, non_blocking=True)

    @torch.no_grad()
    def drift_norm(self) -> float:
        """‖θ − θ0‖ over all anchored tensors; each element counted once however it is sharded or replicated."""
        # Squared drift of the local pieces, grouped by the mesh dims they are sharded over: a DTensor is summed
        # over its Shard dims only (over a Replicate dim, e.g. HSDP's replica groups, every rank holds the same
        # piece and a world all-reduce would count it once per replica); a plain tensor is whole on each rank.
        partial: dict[tuple, torch.Tensor] = {}
        meshes = {}
        for p, c in zip(self.params, self.copies):
            local = _local(p.detach())
            sq = (local.float() - self._on(c, local).float()).pow(2).sum()
            key: tuple = ()
            if isinstance(p, DTensor):
                dims = tuple(i for i, pl in enumerate(p.placements) if pl.is_shard())
                if dims:
                    meshes[id(p.device_mesh)] = p.device_mesh
                    key = (id(p.device_mesh), dims)
            partial[key] = sq if key not in partial else partial[key] + sq
        total = 0.0
        for key, sq in partial.items():
            if key:
                mesh, dims = meshes[key[0]], key[1]
                for d in dims:  # one scalar all-reduce per sharded mesh dim; no weights are gathered
                    torch.distributed.all_reduce(sq, group=mesh.get_group(d))
            total += float(sq)
        return total**0.5

    @torch.no_grad()
    def reposition(self, alpha: float) -> None:
        """θ ← θ0 + α(θ − θ0), in place on the tensors the optimizer updates."""
        weight = 1.0 - float(alpha)
        for p, c in zip(self.params, self.copies):
            local = _local(p.detach())
            local.lerp_(self._on(c, local), weight)

    def state_dict(self) -> list[torch.Tensor]:
        return [c.detach().cpu().clone() for c in self.copies]

    @torch.no_grad()
    def load_state_dict(self, copies: list[torch.Tensor]) -> None:
        if len(copies) != len(self.copies) or any(a.shape != b.shape for a, b in zip(copies, self.copies)):
            raise ValueError(
                "the saved SFPO anchor does not match the trainable parameters of this model "
                f"({len(copies)} saved tensors vs {len(self.copies)} trainable)"
            )
        for c, saved in zip(self.copies, copies):
            c.copy_(saved)
