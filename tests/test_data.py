"""Tests for sfpo.math.data: every recipe loads from hand-written local files in its hub schema."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

import sfpo.math.data as D
from sfpo.app.catalog import DATASETS, get_recipe, load_dataset_recipe
from sfpo.common.datasets import DEFAULT_INSTRUCTION, DatasetUnavailableError
from sfpo.math.data import format_prompt
from sfpo.math.reward import math_accuracy

FIXTURES = Path(__file__).parent / "fixtures" / "data"

# Gold answers each fixture must produce, in order, after normalization.
EXPECTED_ANSWERS = {
    "gsm8k": ["12", "1335", "8"],
    "math": ["\\frac{1}{2}", "4", "(-2, 2)"],
    "math500": ["3\\sqrt{2}", "9"],
    "dapo-math-17k": ["12", "12"],  # the third row repeats the first problem and is dropped
    "aime24": ["024", "24"],
    "aime25": ["56", "14"],
    "amc23": ["55", "18"],  # floats in the hub copy
    "minerva": ["10", "3"],
    "olympiadbench": ["2, -2", "10"],
    "skywork-or1-math": ["12", "\\frac{3}{4}"],
}


MATH_DATASETS = sorted(n for n, r in DATASETS.items() if r.kind == "math")  # code recipes: test_code_data.py


def read_rows(name: str) -> list[dict]:
    with open(FIXTURES / f"{name}.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def write_parquet(rows: list[dict], path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def check_dataset(ds, name: str, chat: bool = True) -> None:
    assert set(ds.column_names) == {"prompt", "answer", "problem", "id"}
    assert ds["answer"] == EXPECTED_ANSWERS[name]
    ids = ds["id"]
    assert len(set(ids)) == len(ids) and all(i.startswith(f"{name}-") for i in ids)
    for row in ds:
        assert row["problem"]
        if chat:
            assert isinstance(row["prompt"], list) and len(row["prompt"]) == 1
            assert row["prompt"][0]["role"] == "user"
            text = row["prompt"][0]["content"]
        else:
            text = row["prompt"]
            assert isinstance(text, str)
        assert text.startswith(row["problem"])
        assert text.endswith(DEFAULT_INSTRUCTION)
        assert "\\boxed{}" in text


def test_every_recipe_has_a_fixture_and_a_docstring_row():
    assert set(MATH_DATASETS) == set(EXPECTED_ANSWERS)
    for name in MATH_DATASETS:
        recipe = DATASETS[name]
        assert recipe.name == name
        assert (FIXTURES / f"{name}.jsonl").is_file()
        assert f"``{name}``" in D.__doc__ and recipe.hub_id in D.__doc__
        assert recipe.description and recipe.required_fields()


@pytest.mark.parametrize("name", MATH_DATASETS)
def test_recipe_loads_local_jsonl(name, tmp_path):
    ds = load_dataset_recipe(name, data_files=str(FIXTURES / f"{name}.jsonl"), cache_dir=str(tmp_path))
    check_dataset(ds, name)


@pytest.mark.parametrize("name", MATH_DATASETS)
def test_recipe_loads_parquet_written_from_rows(name, tmp_path):
    path = write_parquet(read_rows(name), tmp_path / f"{name}.parquet")
    ds = load_dataset_recipe(name, data_files=path, chat=False, cache_dir=str(tmp_path / "cache"))
    check_dataset(ds, name, chat=False)


def test_folder_list_and_split_dict(tmp_path):
    rows = read_rows("gsm8k")
    folder = tmp_path / "gsm8k"
    folder.mkdir()
    for i, part in enumerate((rows[:2], rows[2:])):
        (folder / f"part{i}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    (folder / "notes.txt").write_text("ignored")
    cache = str(tmp_path / "cache")
    check_dataset(load_dataset_recipe("gsm8k", data_files=folder, cache_dir=cache), "gsm8k")
    files = sorted(str(p) for p in folder.glob("*.jsonl"))
    check_dataset(load_dataset_recipe("gsm8k", data_files=files, cache_dir=cache), "gsm8k")
    ds = load_dataset_recipe("gsm8k", split="test", data_files={"test": files}, cache_dir=cache)
    assert ds["id"][0] == "gsm8k-test-0"
    with pytest.raises(ValueError, match="not the requested split 'train'"):
        load_dataset_recipe("gsm8k", data_files={"test": files}, cache_dir=cache)


def test_chat_modes_and_instruction(tmp_path):
    path = str(FIXTURES / "math500.jsonl")
    cache = str(tmp_path)

    class Tok:
        def __init__(self, template):
            self.chat_template = template

    auto_chat = load_dataset_recipe(
        "math500", data_files=path, tokenizer=Tok("{{ messages }}"), cache_dir=cache
    )
    auto_raw = load_dataset_recipe("math500", data_files=path, tokenizer=Tok(None), cache_dir=cache)
    no_tok = load_dataset_recipe("math500", data_files=path, cache_dir=cache)
    assert isinstance(auto_chat[0]["prompt"], list) and isinstance(no_tok[0]["prompt"], list)
    assert auto_raw[0]["prompt"] == auto_chat[0]["prompt"][0]["content"]
    assert auto_raw[0]["prompt"] == f"{auto_raw[0]['problem']} {DEFAULT_INSTRUCTION}"

    custom = load_dataset_recipe(
        "math500", data_files=path, chat=False, instruction="Box it.", cache_dir=cache
    )
    assert custom[0]["prompt"].endswith(" Box it.")
    bare = load_dataset_recipe("math500", data_files=path, chat=False, instruction=None, cache_dir=cache)
    assert bare[0]["prompt"] == bare[0]["problem"]
    with pytest.raises(ValueError, match="chat must be"):
        load_dataset_recipe("math500", data_files=path, chat="yes")


def test_format_prompt():
    assert format_prompt(" 1+1? ", chat=False) == f"1+1? {DEFAULT_INSTRUCTION}"
    assert format_prompt("1+1?") == [{"role": "user", "content": f"1+1? {DEFAULT_INSTRUCTION}"}]


def test_limit(tmp_path):
    ds = load_dataset_recipe("gsm8k", data_files=FIXTURES / "gsm8k.jsonl", limit=2, cache_dir=str(tmp_path))
    assert ds["answer"] == ["12", "1335"]
    ds = load_dataset_recipe(
        "dapo-math-17k", data_files=FIXTURES / "dapo-math-17k.jsonl", limit=1, cache_dir=str(tmp_path)
    )
    assert len(ds) == 1
    with pytest.raises(ValueError, match="limit"):
        load_dataset_recipe("gsm8k", data_files=FIXTURES / "gsm8k.jsonl", limit=-1)


def test_schema_specific_mappings(tmp_path):
    cache = str(tmp_path)
    dapo = load_dataset_recipe("dapo-math-17k", data_files=FIXTURES / "dapo-math-17k.jsonl", cache_dir=cache)
    for problem in dapo["problem"]:
        assert "Solve the following" not in problem and "Remember to put" not in problem
    assert dapo["id"][0] == "dapo-math-17k-9a1c0d2e-0001"
    olympiad = load_dataset_recipe(
        "olympiadbench", data_files=FIXTURES / "olympiadbench.jsonl", cache_dir=cache
    )
    assert olympiad["problem"][1].startswith("Let $f(x) = x^2 + 1$.")  # context goes first
    math500 = load_dataset_recipe("math500", data_files=FIXTURES / "math500.jsonl", cache_dir=cache)
    assert math500["id"][0] == "math500-test/algebra/901.json"

    # Skywork prompts that already carry a boxed instruction do not get it twice.
    rows = read_rows("skywork-or1-math")
    rows[0]["prompt"][0]["content"] += (
        " Let's think step by step and output the final answer within \\boxed{}."
    )
    path = tmp_path / "sky.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    sky = load_dataset_recipe("skywork-or1-math", data_files=path, chat=False, cache_dir=cache)
    assert sky[0]["prompt"].count("\\boxed{}") == 1


def test_rows_without_gold_are_dropped(tmp_path):
    rows = read_rows("math")
    rows[1]["solution"] = "No boxed answer in this solution."
    path = tmp_path / "math.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = load_dataset_recipe("math", data_files=path, cache_dir=str(tmp_path))
    assert ds["answer"] == ["\\frac{1}{2}", "(-2, 2)"]


def test_answers_feed_the_reward(tmp_path):
    ds = load_dataset_recipe("gsm8k", data_files=FIXTURES / "gsm8k.jsonl", cache_dir=str(tmp_path))
    completions = ["so \\boxed{12}", "\\boxed{1,335}", "\\boxed{9}"]
    assert math_accuracy(completions, answer=ds["answer"]) == [1.0, 1.0, 0.0]


def test_missing_fields_error_lists_fields(tmp_path):
    path = tmp_path / "wrong.jsonl"
    path.write_text(json.dumps({"query": "1+1?", "label": "2"}) + "\n")
    with pytest.raises(ValueError) as err:
        load_dataset_recipe("gsm8k", data_files=path, cache_dir=str(tmp_path))
    message = str(err.value)
    assert "'question'" in message and "'answer'" in message  # needed
    assert "'label'" in message and "'query'" in message  # present
    with pytest.raises(ValueError, match="reward_model"):
        load_dataset_recipe("dapo-math-17k", data_files=FIXTURES / "gsm8k.jsonl", cache_dir=str(tmp_path))


def test_unknown_name():
    with pytest.raises(ValueError, match=r"unknown dataset 'gsm9k'.*gsm8k.*math500"):
        load_dataset_recipe("gsm9k")
    with pytest.raises(ValueError, match="known datasets"):
        get_recipe("nope")


def test_bad_local_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="data file not found"):
        load_dataset_recipe("gsm8k", data_files=tmp_path / "missing.jsonl")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no .jsonl"):
        load_dataset_recipe("gsm8k", data_files=empty)
    csv = tmp_path / "rows.csv"
    csv.write_text("question,answer\n")
    with pytest.raises(ValueError, match="unsupported extension"):
        load_dataset_recipe("gsm8k", data_files=csv)
    mixed = [FIXTURES / "gsm8k.jsonl", write_parquet(read_rows("gsm8k"), tmp_path / "g.parquet")]
    with pytest.raises(ValueError, match="mixes"):
        load_dataset_recipe("gsm8k", data_files=mixed)


def test_offline_hub_gives_a_clear_error(monkeypatch, tmp_path):
    import datasets.config

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = datasets.config.HF_HUB_OFFLINE
    start = time.monotonic()
    with pytest.raises(DatasetUnavailableError) as err:
        load_dataset_recipe("gsm8k", cache_dir=str(tmp_path))
    assert time.monotonic() - start < 15
    message = str(err.value)
    assert "openai/gsm8k" in message and "HF_HUB_OFFLINE" in message
    assert "data_files=" in message and "--data-files" in message
    assert isinstance(err.value, RuntimeError)
    assert datasets.config.HF_HUB_OFFLINE == before  # the temporary switch is undone


def test_recipes_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DATASETS["gsm8k"].hub_id = "elsewhere"  # type: ignore[misc]
