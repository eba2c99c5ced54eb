"""Run by test_interrupt.py under torchrun: rank 1 alone gets SIGTERM during step 3; both ranks must stop at the
same optimizer step and write their part of the checkpoint."""

import os
import signal
import sys
from pathlib import Path

import torch
from datasets import Dataset
from transformers import TrainerCallback

from _tiny_config import tiny_cpu
from conftest import digit_reward
from sfpo import SFPOConfig, SFPOTrainer
from sfpo.algorithm.interrupt import GracefulStop

out = Path(sys.argv[1])
rank = int(os.environ["RANK"])


class SignalOnRank1(TrainerCallback):
    def on_optimizer_step(self, args, state, control, **kwargs):
        if rank == 1 and state.global_step == 2:  # inside step 3, before its step end
            os.kill(os.getpid(), signal.SIGTERM)


data = Dataset.from_dict({"prompt": [f"{a}+{b}=" for a in range(8) for b in range(8)]})
args = SFPOConfig(
    **tiny_cpu(
        output_dir=str(out / "run"),
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=5,
        learning_rate=5e-3,
        sfpo_inner_steps=2,
        sfpo_alpha=0.5,
        sfpo_max_rl_steps=2,
        ddp_backend="gloo",
    )
)
trainer = SFPOTrainer(
    model=str(out / "model"),
    reward_funcs=digit_reward,
    args=args,
    train_dataset=data,
    callbacks=[SignalOnRank1()],
)
with GracefulStop().attach(trainer) as stop:
    trainer.train()
torch.save(
    {"stopped_step": stop.stopped_step, "signum": stop.signum, "global_step": trainer.state.global_step},
    out / f"stop-rank{rank}.pt",
)
# Both ranks have written their records: end here, since gloo's threads can abort in interpreter teardown.
torch.distributed.barrier()
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
