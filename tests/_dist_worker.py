"""Run by test_distributed.py under torchrun: SFPO (or, with a second argument `gxpo`, GXPO) steps on 2 CPU processes
(gloo), weights saved per rank."""

import sys
from pathlib import Path

import torch
from datasets import Dataset

from _tiny_config import tiny_cpu
from conftest import build_tiny_lm, digit_reward
from sfpo import GXPOConfig, GXPOTrainer, SFPOConfig, SFPOTrainer

out = Path(sys.argv[1])
gxpo = sys.argv[2:] == ["gxpo"]
rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else int(__import__("os").environ["RANK"])
model_dir = out / "model"
if not (model_dir / "config.json").exists() and rank == 0:
    build_tiny_lm(model_dir)
data = Dataset.from_dict({"prompt": [f"{a}+{b}=" for a in range(8) for b in range(8)]})
common = tiny_cpu(
    output_dir=str(out / "run"), per_device_train_batch_size=4, num_generations=4, max_completion_length=5,
    learning_rate=5e-3, sfpo_max_rl_steps=2, ddp_backend="gloo",
)
if gxpo:  # two mini-batches an RL step
    args = GXPOConfig(**common, steps_per_generation=2, gxpo_switch="none")
else:
    args = SFPOConfig(**common, sfpo_inner_steps=2, sfpo_alpha=0.5)
with args.main_process_first():
    pass  # rank 0 has built the model before the others read it
trainer = (GXPOTrainer if gxpo else SFPOTrainer)(model=str(model_dir), reward_funcs=digit_reward, args=args,
                                                  train_dataset=data)
trainer.train()
state = {k: v.detach().cpu() for k, v in trainer.model.state_dict().items()}
torch.save({"weights": state, "rl_step": trainer.sfpo_rl_step, "world": args.world_size},
           out / f"{'gxpo-' if gxpo else ''}rank{rank}.pt")
# Both ranks have written their files: end here, since gloo's threads can abort in interpreter teardown
# ("terminate called without an active exception"), which would fail a run whose results are all written.
torch.distributed.barrier()
sys.stdout.flush()
sys.stderr.flush()
__import__("os")._exit(0)
