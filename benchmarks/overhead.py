"""What SFPO costs on top of GRPO, per RL step, on the same rollouts.

Prints one table:
- stock TRL GRPOTrainer vs SFPOTrainer with K=0 (the wrapper's own overhead; goal ≤ 1.02×),
- SFPO (K=3, α=0.8) vs GRPO: RL-step time ratio (K+1 passes over the same batch),
- the share of an SFPO RL step spent in snapshot + drift norm + reposition (goal < 1%), and in the non-finite
  guard's two checks per optimizer step (every arm but TRL's),
- anchor bytes vs trainable-parameter bytes (one copy: 1×), with the anchor on the same device and on CPU,
- with `sfpo_optimizer_state="restore"`: the extra copy of the optimizer state (AdamW: 2× the trainable bytes,
  plus step counts) and the time its snapshot and restore take (counted in the stage share),
- peak accelerator memory per arm when a GPU is present.

Arms are interleaved over `--repeats` rounds and the median is reported, since this machine is noisy.

    python benchmarks/overhead.py --policy tiny --steps 6 --repeats 3
    python benchmarks/overhead.py --policy smollm2 --steps 2 --repeats 1
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time
import warnings

import torch

from sfpo.algorithm import nonfinite, reposition
from sfpo.algorithm.config import SFPOConfig

STAGES = [
    (reposition.Anchor, "snapshot"),
    (reposition.Anchor, "reposition"),
    (reposition.InStepReposition, "drift_norm"),
    (reposition.OptimizerStateCopy, "snapshot"),
    (reposition.OptimizerStateCopy, "restore"),
]
GUARD = [(nonfinite.StepGuard, "grads_finite"), (nonfinite.StepGuard, "weights_finite")]


class StageTimer:
    """Wraps methods (SFPO's stages, or the non-finite guard's checks) to add up the time they take."""

    def __init__(self, methods):
        self.methods = methods
        self.seconds = 0.0
        self._originals = {}

    def __enter__(self):
        for owner, name in self.methods:
            original = getattr(owner, name)
            self._originals[owner, name] = original

            def timed(self_, *a, _original=original, **kw):
                start = time.perf_counter()
                try:
                    return _original(self_, *a, **kw)
                finally:
                    self.seconds += time.perf_counter() - start

            setattr(owner, name, timed)
        return self

    def __exit__(self, *exc):
        for (owner, name), original in self._originals.items():
            setattr(owner, name, original)


def policy_and_task(name: str):
    from sfpo.toy.tasks import get_task

    if name == "smollm2":
        from sfpo.toy.smollm2 import smollm2_folder

        return str(smollm2_folder()), get_task("addition"), 32
    from sfpo.toy.tiny import build_tiny_policy

    task = get_task("arithmetic")
    return str(build_tiny_policy(task.name, seed=0)), task, task.max_completion_length


def common_fields(out: str, steps: int, policy: str, max_len: int, device: str) -> dict:
    prompts, gens = (4, 8) if policy == "smollm2" else (16, 8)
    return dict(
        output_dir=out, use_cpu=device == "cpu", bf16=False, activation_checkpointing=False, report_to=[],
        disable_tqdm=True, log_level="error", save_strategy="no", seed=0, logging_steps=1,
        num_generations=gens, per_device_train_batch_size=prompts * gens // 2, steps_per_generation=2,
        learning_rate=1e-5, lr_scheduler_type="constant", max_completion_length=max_len, beta=0.0,
        shuffle_dataset=False,
    )


def run_arm(kind: str, model: str, task, fields: dict, steps: int) -> dict:
    from trl import GRPOConfig, GRPOTrainer

    from sfpo.algorithm.trainer import SFPOTrainer

    data = task.train_dataset(512, seed=0)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if kind == "trl-grpo":
            args = GRPOConfig(**fields, max_steps=steps * 2)
            trainer = GRPOTrainer(model=model, reward_funcs=task.reward, args=args, train_dataset=data)
        else:
            sfpo_fields = {
                "sfpo-k0": dict(sfpo_inner_steps=0),
                "sfpo-k3": dict(sfpo_inner_steps=3, sfpo_alpha=0.8, sfpo_switch="none"),
                "sfpo-k3-cpu-anchor": dict(sfpo_inner_steps=3, sfpo_alpha=0.8, sfpo_switch="none",
                                           sfpo_anchor_device="cpu"),
                "sfpo-k3-restore": dict(sfpo_inner_steps=3, sfpo_alpha=0.8, sfpo_switch="none",
                                        sfpo_optimizer_state="restore"),
            }[kind]
            args = SFPOConfig(**fields, **sfpo_fields, sfpo_max_rl_steps=steps)
            trainer = SFPOTrainer(model=model, reward_funcs=task.reward, args=args, train_dataset=data)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        with StageTimer(STAGES) as stages, StageTimer(GUARD) as guard:
            start = time.perf_counter()
            trainer.train()
            seconds = time.perf_counter() - start
    anchor = getattr(trainer, "_anchor", None)
    trainable = sum(p.numel() * p.element_size() for p in trainer.model.parameters() if p.requires_grad)
    return {
        "step_s": seconds / steps,
        "stage_s": stages.seconds / steps,
        "guard_s": guard.seconds / steps,
        "anchor_bytes": anchor.nbytes if anchor is not None else 0,
        "state_copy_bytes": trainer._state_copy.nbytes if getattr(trainer, "_state_copy", None) else 0,
        "trainable_bytes": trainable,
        "peak_gpu_gb": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", choices=("tiny", "smollm2"), default="tiny")
    parser.add_argument("--steps", type=int, default=6, help="RL steps per arm and round")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the median is reported")
    parser.add_argument("--device", choices=("cpu", "auto"), default="cpu")
    opts = parser.parse_args()
    started = time.perf_counter()
    model, task, max_len = policy_and_task(opts.policy)
    kinds = ["trl-grpo", "sfpo-k0", "sfpo-k3", "sfpo-k3-cpu-anchor", "sfpo-k3-restore"]
    results: dict[str, list[dict]] = {k: [] for k in kinds}
    for round_ in range(opts.repeats):
        for kind in kinds:
            fields = common_fields(f"/tmp/sfpo-overhead/{kind}", opts.steps, opts.policy, max_len, opts.device)
            results[kind].append(run_arm(kind, model, task, fields, opts.steps))
            print(f"round {round_ + 1}/{opts.repeats} {kind}: {results[kind][-1]['step_s']:.2f} s per RL step",
                  flush=True)

    def med(kind, key):
        values = [r[key] for r in results[kind] if r[key] is not None]
        return statistics.median(values) if values else None

    base = med("trl-grpo", "step_s")
    print(f"\npolicy={opts.policy} steps={opts.steps} repeats={opts.repeats} torch={torch.__version__} "
          f"threads={torch.get_num_threads()}")
    print("| arm | s per RL step (median) | ÷ TRL GRPO | snapshot+reposition share | non-finite guard share | "
          "anchor bytes ÷ trainable | optimizer-state copy ÷ trainable | peak GPU GB |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in kinds:
        step = med(kind, "step_s")
        stage = med(kind, "stage_s")
        anchor = results[kind][-1]["anchor_bytes"] / results[kind][-1]["trainable_bytes"]
        state_copy = results[kind][-1]["state_copy_bytes"] / results[kind][-1]["trainable_bytes"]
        peak = med(kind, "peak_gpu_gb")
        guard = med(kind, "guard_s")
        print(f"| {kind} | {step:.3f} | {step / base:.3f}× | {100 * stage / step:.3f}% | {100 * guard / step:.3f}% | "
              f"{anchor:.2f}× | "
              f"{state_copy:.2f}× | "
              f"{'-' if peak is None else f'{peak:.2f}'} |")
    print(f"\nbenchmark took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
