"""Run by test_fsdp.py under torchrun (2 CPU processes, gloo).

    _fsdp_worker.py OUT direct        plain loop on fully_shard'ed models: SFPO's step hooks on local shards
    _fsdp_worker.py OUT trainer fsdp  SFPOTrainer under accelerate's FSDP2
    _fsdp_worker.py OUT trainer ddp   the same run under DDP, as the reference
    _fsdp_worker.py OUT trainer fsdp gxpo, ... ddp gxpo   the same with GXPOTrainer (2 mini-batches an RL step)

Each writes OUT/<job>-rank<r>.pt. Full weights are gathered with `full_tensor()` only to write these records,
never by the code under test.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from _tiny_config import tiny_cpu

K, ALPHA, LR, RL_STEPS = 2, 0.5, 1e-2, 2


def batch(step: int, rank: int) -> torch.Tensor:
    """The token batch rank `rank` trains on at optimizer step `step` (the test rebuilds the same ones)."""
    g = torch.Generator().manual_seed(1000 * step + rank)
    return torch.randint(3, 50, (2, 8), generator=g)


def backward(model, optimizer, step: int, rank: int) -> None:
    optimizer.zero_grad()
    x = batch(step, rank)
    model(input_ids=x, labels=x).loss.backward()  # FSDP2 averages the gradients over the shard group


def full(model) -> dict[str, torch.Tensor]:
    """Full weights for the record (a collective: every rank calls it)."""
    return {
        n: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().clone()
        for n, p in model.named_parameters()
    }


def comm_counts(mode) -> dict[str, int]:
    return {str(k): v for k, v in mode.get_comm_counts().items()}


def direct(out: Path) -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor.debug import CommDebugMode
    from transformers import AutoModelForCausalLM

    from sfpo.algorithm.reposition import Anchor, InStepReposition, OptimizerStateCopy

    dist.init_process_group("gloo")
    rank = dist.get_rank()

    def sharded(mesh):
        model = AutoModelForCausalLM.from_pretrained(out / "model")
        model.train()
        for layer in model.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
        # θK exists only inside the K-th step, between the update and the reposition: a post-hook registered
        # before SFPO's sees it (local shards only, so no collective runs inside the step)
        seen = {}
        opt.register_step_post_hook(lambda o, a, k: seen.update(theta=[p.detach().to_local().clone() for p in model.parameters()]))
        anchor = Anchor()
        return model, opt, anchor, InStepReposition(opt, model.parameters(), anchor), seen

    def optimizer_step(opt, hooks, **due):
        """One optimizer step with SFPO's stages due; returns the collectives the step ran (the guard's two
        scalar verdicts are in every step, so a step with stages due must run exactly what a plain one runs)."""
        hooks.expect_step(True, **due)
        with CommDebugMode() as comm:
            opt.step()
        hooks.settle()
        return comm_counts(comm)

    # FSDP: every parameter Shard(0) over both ranks.
    model, opt, anchor, hooks, seen = sharded(init_device_mesh("cpu", (2,)))
    rec = {"steps": []}
    step = 0
    for _ in range(RL_STEPS):
        theta0 = full(model)
        comms = []
        for k in range(K):
            backward(model, opt, step, rank)
            comms.append(optimizer_step(opt, hooks, snapshot=k == 0, alpha=ALPHA if k == K - 1 else None))
            step += 1
        theta_k = {
            n: DTensor.from_local(local, p.device_mesh, p.placements, shape=p.shape, stride=p.stride()).full_tensor()
            for (n, p), local in zip(model.named_parameters(), seen["theta"])
        }
        theta_tilde = full(model)
        with CommDebugMode() as drift_comm:
            drift = hooks.drift_norm()
        backward(model, opt, step, rank)  # the slow correction
        plain = optimizer_step(opt, hooks)
        step += 1
        rec["steps"].append(
            {"theta0": theta0, "theta_k": theta_k, "theta_tilde": theta_tilde, "drift": drift,
             "comm": {"armed_steps": comms, "plain_step": plain, "drift": comm_counts(drift_comm)}}
        )
    rec["final"] = full(model)
    rec.update(
        anchor_bytes=anchor.nbytes,
        full_bytes=sum(p.numel() * p.element_size() for p in model.parameters()),
        copies_plain=all(type(c) is torch.Tensor for c in anchor.copies),
        placements=sorted({str(p.placements) for p in model.parameters()}),
    )

    # HSDP with a replica dim of 2 and a shard dim of 1: every parameter (Replicate(), Shard(0)), each rank holds
    # all of it. The drift norm must count each element once, not once per replica.
    mesh = init_device_mesh("cpu", (2, 1), mesh_dim_names=("replicate", "shard"))
    model, opt, anchor, hooks, _ = sharded(mesh)
    for s in range(K):
        backward(model, opt, s, rank)
        optimizer_step(opt, hooks, snapshot=s == 0, alpha=ALPHA if s == K - 1 else None)
    rec["hsdp"] = {
        "placements": sorted({str(p.placements) for p in model.parameters()}),
        "drift": hooks.drift_norm(),
    }

    # kl_budget's deferred reposition (between optimizer steps) and the optimizer-state restore, on the shards:
    # the same θ̃ as the in-step reposition of the first RL step above, and θ0's (empty) optimizer state back.
    model, opt, anchor, hooks, _ = sharded(init_device_mesh("cpu", (2,)))
    hooks.state_copy = OptimizerStateCopy()
    for k in range(K):
        backward(model, opt, k, rank)
        optimizer_step(opt, hooks, snapshot=k == 0, restore=k == K - 1)
    rec["deferred"] = {"restored_empty": all(len(opt.state[p]) == 0 for p in model.parameters())}
    hooks.reposition_now(ALPHA)
    rec["deferred"]["theta_tilde"] = full(model)
    torch.save(rec, out / f"direct-rank{rank}.pt")
    dist.destroy_process_group()


def force_fsdp_on_cpu() -> None:
    """accelerate 1.15 keeps FSDP for GPU-type backends only: on CPU, `AcceleratorState` leaves a run with an
    fsdp_plugin as MULTI_CPU and the plugin is silently dropped (the model is wrapped in DDP). torch's FSDP2 itself
    runs on CPU with gloo, so restore the choice accelerate would make on a GPU."""
    import accelerate.state
    from accelerate.utils import DistributedType

    original = accelerate.state.AcceleratorState.__init__
    plugin = []

    def init(self, *args, **kwargs):
        if kwargs.get("fsdp_plugin") is not None:
            plugin.append(kwargs["fsdp_plugin"])
        original(self, *args, **kwargs)
        # AcceleratorState is rebuilt later without the plugin (shared state), so apply it every time
        if plugin and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = plugin[0]

    accelerate.state.AcceleratorState.__init__ = init


def trainer(out: Path, backend: str, algorithm: str = "sfpo") -> None:
    from datasets import Dataset

    from conftest import digit_reward
    from sfpo import GXPOConfig, GXPOTrainer, SFPOConfig, SFPOTrainer

    extra = {}
    if backend == "fsdp":
        force_fsdp_on_cpu()
        fsdp_config = {
            "fsdp_version": 2,
            "transformer_layer_cls_to_wrap": ["Qwen2DecoderLayer"],
            "reshard_after_forward": True,
            "state_dict_type": "FULL_STATE_DICT",
        }
        extra = {"fsdp": True, "fsdp_config": fsdp_config}
    data = Dataset.from_dict({"prompt": [f"{a}+{b}=" for a in range(8) for b in range(8)]})
    common = tiny_cpu(
        output_dir=str(out / f"run-{backend}-{algorithm}"),
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=5,
        learning_rate=5e-3,
        sfpo_max_rl_steps=RL_STEPS,
        ddp_backend="gloo",
        logging_steps=1,
        **extra,
    )
    if algorithm == "gxpo":
        args = GXPOConfig(**common, steps_per_generation=2, gxpo_switch="none")
        cls = GXPOTrainer
    else:
        args = SFPOConfig(**common, sfpo_inner_steps=K, sfpo_alpha=ALPHA)
        cls = SFPOTrainer
    t = cls(model=str(out / "model"), reward_funcs=digit_reward, args=args, train_dataset=data)
    t.train()
    params = list(t.model.parameters())
    rec = {
        "distributed_type": str(t.accelerator.distributed_type),
        "dtensor": all(hasattr(p, "placements") for p in params),
        "anchor_bytes": t._anchor.nbytes,
        "full_bytes": sum(p.numel() * p.element_size() for p in params),
        "drifts": [h["sfpo/drift_norm"] for h in t.state.log_history if "sfpo/drift_norm" in h],
        "rl_step": t.sfpo_rl_step,
        "weights": full(t.model),
    }
    if algorithm == "gxpo":
        rec.update(gxpo=[{k: v for k, v in h.items() if k.startswith("gxpo/")} for h in t.state.log_history
                         if "gxpo/active" in h], extra_bytes=t._in_step.extra_nbytes)
    name = f"trainer-{backend}" if algorithm == "sfpo" else f"trainer-{backend}-{algorithm}"
    torch.save(rec, out / f"{name}-rank{args.process_index}.pt")


if __name__ == "__main__":
    out = Path(sys.argv[1])
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if sys.argv[2] == "direct":
        direct(out)
    else:
        trainer(out, *sys.argv[3:])
        torch.distributed.barrier()  # both ranks have written their records
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # gloo's threads can abort in interpreter teardown after everything was written
