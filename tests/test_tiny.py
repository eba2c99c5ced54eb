"""The embedded tiny policy: offline build, determinism, Hugging Face loading, and the build cache."""

from __future__ import annotations

import dataclasses
import os

import pytest

from sfpo.toy import tiny
from sfpo.toy.tasks import get_task

# Small enough to build in a couple of seconds; the recipe is the same as the default one.
SMALL = {
    "hidden_size": 32,
    "num_layers": 1,
    "num_heads": 2,
    "intermediate_size": 64,
    "sft_steps": 8,
    "batch_size": 8,
    "eval_problems": 8,
}


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(os.path.join(folder, "model.safetensors"))


@pytest.fixture(scope="module")
def small_policy(tmp_path_factory):
    return tiny.build_tiny_policy("arithmetic", seed=0, cache_dir=tmp_path_factory.mktemp("cache"), **SMALL)


def test_build_is_deterministic_per_seed(small_policy, tmp_path):
    again = tiny.build_tiny_policy("arithmetic", seed=0, cache_dir=tmp_path / "a", **SMALL)
    other = tiny.build_tiny_policy("arithmetic", seed=1, cache_dir=tmp_path / "b", **SMALL)
    reference, same, different = _weights(small_policy), _weights(again), _weights(other)
    assert again != small_policy
    assert reference.keys() == same.keys()
    assert all((reference[k] == same[k]).all() for k in reference)
    assert any(not (reference[k] == different[k]).all() for k in reference)


def test_build_is_the_same_whatever_the_callers_cpu_settings(small_policy, tmp_path, monkeypatch):
    # A machine without AVX-512 (simulated: torch limited to AVX2) or another thread count builds the same
    # weights: the build runs in a child process with the CPU-independent kernels.
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    elsewhere = tiny.build_tiny_policy("arithmetic", seed=0, cache_dir=tmp_path, **SMALL)
    assert tiny.load_tiny_info(elsewhere)["cpu_capability"] == "DEFAULT"
    reference, same = _weights(small_policy), _weights(elsewhere)
    assert all((reference[k] == same[k]).all() for k in reference)


def test_folder_loads_offline_and_generates(small_policy):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(small_policy)
    tokenizer = AutoTokenizer.from_pretrained(small_policy)
    prompt = get_task("arithmetic").eval_set(1)["prompt"][0]
    ids = tokenizer(prompt, return_tensors="pt")
    assert ids["input_ids"].shape[1] == len(prompt)  # one token per character, nothing prepended
    assert tokenizer.decode(ids["input_ids"][0]) == prompt
    out = model.generate(**ids, max_new_tokens=5, do_sample=True, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] > ids["input_ids"].shape[1]
    assert isinstance(tokenizer.decode(out[0], skip_special_tokens=True), str)
    # Chat prompts work too (ChatML), with EOS = <|im_end|> for both prompt styles.
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
    )
    assert chat.endswith("<|im_start|>assistant\n")
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert len(tokenizer(chat)["input_ids"]) < len(chat)  # special tokens are single tokens
    with torch.no_grad():
        assert model(**tokenizer(chat, return_tensors="pt")).logits.shape[-1] == len(tokenizer)


def test_build_record(small_policy):
    info = tiny.load_tiny_info(small_policy)
    assert info["task"] == "arithmetic" and info["seed"] == 0 and info["version"] == tiny.TINY_VERSION
    assert info["settings"]["hidden_size"] == 32
    assert set(info["heldout_accuracy"]) == {"n", "greedy", "temperature_1"}
    assert info["max_completion_length"] == get_task("arithmetic").max_completion_length


def test_cache_hit_does_not_rebuild(small_policy, monkeypatch):
    before = os.stat(os.path.join(small_policy, "model.safetensors")).st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("rebuilt although cached")

    monkeypatch.setattr(tiny, "_build_portable", no_training)
    again = tiny.build_tiny_policy("arithmetic", seed=0, cache_dir=small_policy.parent, **SMALL)
    assert again == small_policy
    assert os.stat(os.path.join(again, "model.safetensors")).st_mtime_ns == before


def test_cache_key_covers_settings(tmp_path, monkeypatch):
    base = tiny.tiny_cache_path("arithmetic", 0, tmp_path, **SMALL)
    assert tiny.tiny_cache_path("arithmetic", 0, tmp_path, **{**SMALL, "sft_steps": 9}) != base
    assert tiny.tiny_cache_path("countdown", 0, tmp_path, **SMALL) != base
    assert tiny.tiny_cache_path("arithmetic", 1, tmp_path, **SMALL) != base
    assert base.parent == tmp_path
    monkeypatch.setenv("SFPO_CACHE_DIR", str(tmp_path / "env"))
    assert tiny.tiny_cache_path().parent == tmp_path / "env" / "tiny"
    with pytest.raises(ValueError, match="hidden"):
        tiny.tiny_cache_path(hiden_size=3)


def test_task_defaults_then_overrides():
    _, countdown = tiny._resolve("countdown", {})
    assert countdown.sft_steps == tiny.TASK_DEFAULTS["countdown"]["sft_steps"]
    assert tiny._resolve("countdown", {"sft_steps": 5})[1].sft_steps == 5
    assert tiny._resolve("arithmetic", {})[1] == tiny.TinySettings()


def test_leftover_temp_folder_is_not_a_cache_hit(tmp_path):
    final = tiny.tiny_cache_path("arithmetic", 0, tmp_path, **SMALL)
    # What a killed build leaves behind: a temp folder with some files, and a final folder without the marker.
    leftover = tmp_path / f".{final.name}.tmp-killed"
    leftover.mkdir(parents=True)
    (leftover / "config.json").write_text("{}")
    final.mkdir()
    (final / "config.json").write_text("{truncated")
    built = tiny.build_tiny_policy("arithmetic", seed=0, cache_dir=tmp_path, **SMALL)
    assert built == final
    assert (built / tiny.INFO_FILE).is_file()
    assert tiny.load_tiny_info(built)["seed"] == 0


def test_failed_build_leaves_nothing(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tiny, "_build_portable", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tiny.build_tiny_policy("arithmetic", seed=0, cache_dir=tmp_path, **SMALL)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("task", tiny.SHIPPED_TASKS)
def test_the_default_policy_ships_for_todays_recipe(task):
    """The package holds the default build of every tiny task, under the key of today's recipe: a change to the
    recipe (settings, task, version) that would make the shipped weights stale fails here until they are rebuilt
    (`python benchmarks/tiny_build.py --write`)."""
    folder = tiny.shipped_tiny_policy(task)
    assert folder is not None, f"no shipped {task} policy for today's recipe {tiny.tiny_cache_path(task).name}"
    assert folder.parent == tiny.SHIPPED_DIR and tiny.build_tiny_policy(task) == folder  # used without a build
    info = tiny.load_tiny_info(folder)
    _, settings = tiny._resolve(task, {})
    assert info["key"] == folder.name and info["version"] == tiny.TINY_VERSION and info["seed"] == 0
    assert info["settings"] == dataclasses.asdict(settings) and info["cpu_capability"] == "DEFAULT"
    # the tied lm_head is stored once
    assert sum(t.numel() for t in _weights(folder).values()) == info["parameters"]
    assert tiny.load_tokenizer(folder).eos_token == "<|im_end|>"


@pytest.mark.slow
@pytest.mark.parametrize("task", tiny.SHIPPED_TASKS)
def test_the_builder_reproduces_the_shipped_weights(task, tmp_path):
    """The shipped folders are this builder's output: a fresh build gives the same weights bit for bit and the
    same held-out measurement. Minutes per task (`benchmarks/tiny_build.py --check` does the same and times it)."""
    shipped = tiny.shipped_tiny_policy(task)
    built = tiny.build_tiny_policy(task, seed=0, cache_dir=tmp_path, force=True)
    assert built.parent == tmp_path and built.name == shipped.name
    a, b = _weights(built), _weights(shipped)
    assert a.keys() == b.keys()
    assert all(a[k].dtype == b[k].dtype and (a[k] == b[k]).all() for k in a)
    assert tiny.load_tiny_info(built)["heldout_accuracy"] == tiny.load_tiny_info(shipped)["heldout_accuracy"]


def test_the_default_arithmetic_policy_lands_in_the_warm_start_band():
    """The default recipe: held-out accuracy at temperature 1.0 well above 0, far from 1 (the build's record;
    the slow test above shows a fresh build records the same)."""
    accuracy = tiny.load_tiny_info(tiny.shipped_tiny_policy("arithmetic"))["heldout_accuracy"]
    assert 0.1 <= accuracy["temperature_1"] <= 0.6
    assert accuracy["greedy"] >= accuracy["temperature_1"] - 0.05


def test_load_tokenizer_keeps_the_character_vocabulary_of_a_tiny_policy_folder(tmp_path):
    """A tiny-policy folder declares model_type qwen2, for which AutoTokenizer forces Qwen2Tokenizer (it dropped
    the spaces of this vocabulary); load_tokenizer loads the folder's own tokenizer, as built."""
    from transformers import Qwen2Config

    from sfpo.toy.tiny import INFO_FILE, build_tokenizer, load_tokenizer

    built = build_tokenizer()
    built.save_pretrained(tmp_path)
    Qwen2Config(vocab_size=len(built), hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                num_key_value_heads=1, intermediate_size=8).save_pretrained(tmp_path)
    (tmp_path / INFO_FILE).write_text("{}")
    loaded = load_tokenizer(tmp_path)
    text = "What is 3 + 4? f=lambda x: 7 * x"
    assert loaded(text)["input_ids"] == built(text)["input_ids"]
    assert len(loaded(text)["input_ids"]) == len(text)  # one token per character, spaces included
    assert loaded.decode(loaded(text)["input_ids"]) == text


def test_a_build_reports_its_progress(tmp_path):
    seen = []
    tiny.build_tiny_policy("arithmetic", seed=0, cache_dir=tmp_path, progress=lambda *a: seen.append(a), **SMALL)
    train = [(done, total) for phase, done, total in seen if phase == "train"]
    assert train[0] == (0, SMALL["sft_steps"]) and train[-1] == (SMALL["sft_steps"], SMALL["sft_steps"])
    assert [done for phase, done, _ in seen if phase == "eval"] == [0, 1, 2]  # before, between, after the two
    assert seen.index(("eval", 0, 2)) > seen.index(("train", SMALL["sft_steps"], SMALL["sft_steps"]))
