"""Shared fixtures: a tiny causal LM and a toy prompt set, built offline inside the tests."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

CHARS = list("0123456789+-*/=() abcdefghijklmnopqrstuvwxyz{}\\.,?")


def build_tiny_lm(folder, seed: int = 0, hidden: int = 32, layers: int = 2, tie: bool = False) -> str:
    """A 2-layer Qwen2 with a character-level tokenizer, saved as an ordinary HF folder."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    specials = ["<pad>", "<eos>", "<bos>"]
    vocab = {tok: i for i, tok in enumerate(specials + CHARS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>")
    fast.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(vocab),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=128,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        tie_word_embeddings=tie,
    )
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory) -> str:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny_lm"))


@pytest.fixture(scope="session")
def toy_dataset():
    from datasets import Dataset

    prompts = [f"{a}+{b}=" for a in range(8) for b in range(8)]
    return Dataset.from_dict({"prompt": prompts, "answer": [str(eval(p[:-1])) for p in prompts]})


def digit_reward(completions, answer=None, **kwargs):
    """Dense toy reward: share of characters that are digits (varies across samples, so advantages ≠ 0)."""
    return [sum(c.isdigit() for c in text) / max(len(text), 1) for text in completions]


def flat_then_digit_reward(completions, trainer_state=None, **kwargs):
    """0.5 for every completion of the first generation batch (global step 0: every group flat, all advantages
    zero), then `digit_reward`. Keyed on the trainer's state, so a resumed run scores the same batches the same."""
    if trainer_state is not None and trainer_state.global_step == 0:
        return [0.5] * len(completions)
    return digit_reward(completions)
