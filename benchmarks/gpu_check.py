"""GPU check of SFPO under DeepSpeed ZeRO-2, ZeRO-3 and FSDP2 on a 0.5B model: peak memory and weight match.

For the day an accelerator is lent (about 5–8 minutes on one GPU). For each back end it runs GRPO (K = 0) and
SFPO (K = 3, α = 0.8) for 2 RL steps from the same random-initialised Qwen2-0.5B-shaped model (offline: no hub),
each arm in its own `accelerate launch`, and prints

- peak GPU memory per arm, and whether SFPO ≤ GRPO + one fp32 copy of the trainable partition (the anchor);
- the largest weight difference of SFPO under each back end against SFPO without one (plain single-GPU run),
  in fp32, where the in-step reposition makes them agree up to reduction-order rounding.

    python benchmarks/gpu_check.py [--out runs/gpu-check] [--processes 1]

Needs trl and deepspeed next to torch/transformers/accelerate (`pip install -e ".[deepspeed]"`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = {"plain": None, "zero2": "zero2", "zero3": "zero3", "fsdp": "fsdp"}
ARMS = {"grpo": 0, "sfpo": 3}
RL_STEPS = 2


def build_model(folder: Path) -> None:
    """Qwen2-0.5B's shape with random weights, and a character-level tokenizer (no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    chars = list("0123456789+-*/=() abcdefghijklmnopqrstuvwxyz{}\\.,?")
    vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<bos>", *chars])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>")
    fast.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        pad_token_id=0, eos_token_id=1, bos_token_id=2,
    )
    Qwen2ForCausalLM(config).save_pretrained(folder)
    fast.save_pretrained(folder)


def accelerate_config(out: Path, backend: str, processes: int) -> Path:
    config = yaml.safe_load((ROOT / "configs" / "accelerate" / f"{BACKENDS[backend]}.yaml").read_text())
    config.update(num_processes=processes, mixed_precision="no")  # fp32: the weight match is exact up to rounding
    path = out / f"{backend}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def worker(out: Path, backend: str, arm: str) -> None:
    from datasets import Dataset

    from sfpo import SFPOConfig, SFPOTrainer

    def reward(completions, **kw):
        return [sum(c.isdigit() for c in text) / max(len(text), 1) for text in completions]

    args = SFPOConfig(
        output_dir=str(out / f"{backend}-{arm}"), report_to=[], disable_tqdm=True, bf16=False, seed=0,
        per_device_train_batch_size=16, num_generations=8, steps_per_generation=2, max_completion_length=64,
        learning_rate=1e-5, lr_scheduler_type="constant", logging_steps=1, save_strategy="no",
        sfpo_inner_steps=ARMS[arm], sfpo_alpha=0.8, sfpo_max_rl_steps=RL_STEPS, activation_checkpointing=False,
    )
    data = Dataset.from_dict({"prompt": [f"{a}+{b}=" for a in range(16) for b in range(16)]})
    trainer = SFPOTrainer(model=str(out / "model"), reward_funcs=reward, args=args, train_dataset=data)
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    params = list(trainer.model.parameters())
    if any(hasattr(p, "ds_id") for p in params):
        import deepspeed

        with deepspeed.zero.GatheredParameters(params):
            weights = {n: p.detach().float().cpu().clone() for n, p in trainer.model.named_parameters()}
    else:
        weights = {n: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().float().cpu().clone()
                   for n, p in trainer.model.named_parameters()}
    record = {
        "peak_gb": torch.cuda.max_memory_allocated() / 2**30,
        "anchor_gb": trainer._anchor.nbytes / 2**30 if ARMS[arm] else 0.0,
        "seconds": seconds,
        "distributed_type": str(trainer.accelerator.distributed_type),
    }
    if args.process_index == 0:
        torch.save(weights, out / f"{backend}-{arm}.pt")
        (out / f"{backend}-{arm}.json").write_text(json.dumps(record))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/gpu-check"))
    parser.add_argument("--processes", type=int, default=1, help="GPUs per run (the anchor is per-rank partition)")
    parser.add_argument("--worker", nargs=2, metavar=("BACKEND", "ARM"), help=argparse.SUPPRESS)
    ns = parser.parse_args()
    out = ns.out.resolve()
    if ns.worker:
        worker(out, *ns.worker)
        return
    if not torch.cuda.is_available():
        sys.exit("gpu_check.py needs a CUDA GPU")
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "model" / "config.json").exists():
        build_model(out / "model")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    for backend, config in BACKENDS.items():
        for arm in ARMS:
            if (out / f"{backend}-{arm}.json").exists():
                continue  # finished runs are reused
            me = [str(Path(__file__).resolve()), "--out", str(out), "--worker", backend, arm]
            if config is None:
                cmd = [sys.executable, *me]
            else:
                cfg = accelerate_config(out, backend, ns.processes)
                cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(cfg), *me]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{backend}/{arm} FAILED:\n{done.stderr[-3000:]}")
    print(f"{'back end':<8} {'GRPO peak GB':>13} {'SFPO peak GB':>13} {'anchor GB':>10} {'SFPO-GRPO':>10} "
          f"{'≤ anchor?':>9} {'max |Δw| vs plain':>18}")
    plain = torch.load(out / "plain-sfpo.pt") if (out / "plain-sfpo.pt").exists() else None
    for backend in BACKENDS:
        try:
            g, s = (json.loads((out / f"{backend}-{arm}.json").read_text()) for arm in ARMS)
        except FileNotFoundError:
            print(f"{backend:<8} (missing)")
            continue
        extra = s["peak_gb"] - g["peak_gb"]
        diff = "-"
        if plain is not None and backend != "plain":
            w = torch.load(out / f"{backend}-sfpo.pt")
            diff = f"{max(float((w[k] - plain[k]).abs().max()) for k in plain):.2e}"
        print(f"{backend:<8} {g['peak_gb']:>13.2f} {s['peak_gb']:>13.2f} {s['anchor_gb']:>10.2f} {extra:>10.2f} "
              f"{'yes' if extra <= s['anchor_gb'] + 0.05 else 'NO':>9} {diff:>18}")


if __name__ == "__main__":
    main()
