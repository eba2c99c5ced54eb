"""Bad input everywhere: every case exits with code 2 and a message naming the key or option, the value and
what is allowed (or the closest valid name), before any training and without touching a run folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sfpo.app.cli import app

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "cpu" / "tiny-arithmetic-sfpo.yaml"
FIXTURES = ROOT / "tests" / "fixtures" / "data"
DATASET_RECIPE = {
    "model": "org/some-model",  # a hub id: a dry run never loads it
    "dataset": {"names": ["gsm8k"], "data_files": {"gsm8k": str(FIXTURES / "gsm8k.jsonl")}},
    "rewards": ["math_accuracy"],
    "trainer": {"output_dir": "runs/x", "use_cpu": True},
}


def invoke(args: list[str]):
    return CliRunner().invoke(app, args)


def sets(*pairs: str) -> list[str]:
    return [arg for pair in pairs for arg in ("--set", pair)]


@pytest.fixture(scope="module")
def dataset_recipe(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("recipe") / "gsm8k.yaml"
    path.write_text(yaml.safe_dump(DATASET_RECIPE))
    return str(path)


# (arguments, message fragments). "@tiny" / "@data" stand for `train --dry-run --config <recipe>`.
CASES = [
    # --- YAML keys (through --set, exactly as if written in the file) ---
    ("@tiny bogus=1", ["unknown key 'bogus'", "the recipe"]),
    ("@tiny trainer.learning_rat=1e-4", ["unknown key 'learning_rat'", "did you mean 'learning_rate'"]),
    ("@tiny trainer.learning_rate=abc", ["trainer.learning_rate='abc'", "a number"]),
    ("@tiny trainer.learning_rate=-1", ["trainer.learning_rate=-1", "> 0"]),
    ("@tiny trainer.learning_rate=.nan", ["trainer.learning_rate=nan"]),
    ("@tiny trainer.learning_rate=.inf", ["trainer.learning_rate=inf", "> 0"]),
    ("@tiny trainer.num_generations=1", ["trainer.num_generations=1", "≥ 2"]),
    ("@tiny trainer.per_device_train_batch_size=0", ["per_device_train_batch_size=0", "≥ 1"]),
    ("@tiny trainer.lr_scheduler_type=cosin", ["lr_scheduler_type='cosin'", "did you mean 'cosine'"]),
    ("@tiny trainer.save_strategy=step", ["save_strategy='step'", "did you mean 'steps'"]),
    ("@tiny trainer.bf16=maybe", ["trainer.bf16='maybe'", "true or false"]),
    ("@tiny trainer.seed=-3", ["trainer.seed=-3", "[0, 4294967295]"]),
    ("@tiny trainer.top_p=0", ["trainer.top_p=0", "(0, 1]"]),
    ("@tiny trainer.max_completion_length=0", ["max_completion_length=0", "≥ 1"]),
    ("@tiny trainer.sfpo_alpha=2", ["sfpo_alpha=2", "[0, 1]"]),
    ("@tiny trainer.sfpo_inner_steps=-1", ["sfpo_inner_steps=-1", "≥ 0"]),
    ("@tiny trainer.sfpo_switch=entropy", ["sfpo_switch='entropy'", "'entropy_zscore'"]),
    ("@tiny trainer.num_iterations=2", ["num_iterations=2", "sfpo_inner_steps"]),
    ("@tiny eval.every=0", ["eval.every=0", "≥ 1"]),
    ("@tiny eval.top_p=2", ["eval.top_p=2", "(0, 1]"]),
    ("@tiny eval.evry=3", ["unknown key 'evry'", "did you mean 'every'"]),
    ("@tiny eval.benchmarks=[mathh500]", ["unknown benchmark 'mathh500'", "did you mean 'math500'"]),
    ("@tiny eval.save_best=yes_please", ["eval.save_best='yes_please'", "bool"]),
    ("@tiny task=arithmetik", ["unknown task 'arithmetik'", "did you mean 'arithmetic'"]),
    ("@tiny model=./no/such/model", ["model='./no/such/model'", "no such local folder"]),
    ("@tiny model_kwargs.dtype=float33", ["model_kwargs.dtype='float33'", "bfloat16"]),
    ("@tiny peft.rr=8", ["unknown key 'rr'", "peft", "did you mean 'r'"]),
    ("@tiny name=[1]", ["name=[1]", "string"]),
    ("@data rewards=[math_acuracy]", ["unknown reward 'math_acuracy'", "did you mean 'math_accuracy'"]),
    (
        "@data rewards=[{name: math_accuracy, format_scor: 0.1}]",
        ["'format_scor'", "did you mean 'format_score'"],
    ),
    ("@data rewards=[{name: math_accuracy, format_score: 2}]", ["format_score", "[0, 1]"]),
    ("@data rewards=[{name: boxed_format, format_score: 0.1}]", ["'boxed_format' takes no options"]),
    ("@data dataset.nmes=[gsm8k]", ["unknown key 'nmes'", "did you mean 'names'"]),
    ("@data dataset.names=[gsm8kk]", ["unknown dataset 'gsm8kk'", "did you mean 'gsm8k'"]),
    ("@data dataset.limit=0", ["dataset.limit=0", "≥ 1"]),
    ("@data dataset.chat=sometimes", ["dataset.chat='sometimes'", "true, false or auto"]),
    ("@data dataset.data_files.gsm8k=/no/such/file.jsonl", ["/no/such/file.jsonl", "no such file"]),
    ("@data dataset.data_files.math=x.jsonl", ["'math', which is not one of", "gsm8k"]),
    ("@data rewards=null", ["rewards is missing"]),
    # --- the recipe file and --set syntax ---
    ("train --config /no/such.yaml", ["--config '/no/such.yaml'", "no such file"]),
    ("@tiny trainer.learning_rate", ["KEY=VALUE"]),
    ("@tiny trainer..x=1", ["empty part"]),
    # --- CLI options ---
    ("trian", ["No such command 'trian'", "Did you mean 'train'"]),
    ("demo --stpes 3", ["No such option: --stpes", "--steps"]),
    ("demo --steps abc", ["Invalid value for '--steps'", "valid integer"]),
    ("demo --steps 0", ["--steps 0", "≥ 1"]),
    ("demo --seed -1", ["--seed -1", "[0, 4294967295]"]),
    ("demo --learning-rate inf", ["--learning-rate inf", "finite number > 0"]),
    ("demo --entropy-coef -0.1", ["--entropy-coef -0.1", "finite number ≥ 0"]),
    ("demo --task chess", ["--task 'chess'", "arithmetic"]),
    ("demo --arms grpo,ppo", ["'ppo'", "sfpo"]),
    ("eval --model tiny --benchmarks arithmetic --top-p 1.5", ["--top-p 1.5", "(0, 1]"]),
    ("eval --model tiny --benchmarks arithmetic --temperature -1", ["--temperature -1", "≥ 0"]),
    ("eval --model tiny --benchmarks arithmetic --backend tpu", ["--backend 'tpu'", "auto, hf or vllm"]),
    ("eval --model tiny --benchmarks arithmetic --limit 0", ["--limit 0", "≥ 1"]),
    ("eval --model tiny --benchmarks arithmetic --data-files math500=x.jsonl", ["'math500' is not among"]),
    ("eval --model tiny --benchmarks arithmetic --task chess", ["--task 'chess'"]),
    ("eval --model tiny --benchmarks arithmetic --chat maybe", ["--chat 'maybe'"]),
    ("compare a b --tolerance -1", ["--tolerance -1"]),
]


@pytest.mark.parametrize(("command", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_naming_key_value_and_allowed(command, words, dataset_recipe, tmp_path):
    head, *rest = command.split(" ", 1)
    if head in ("@tiny", "@data"):
        recipe = str(TINY) if head == "@tiny" else dataset_recipe
        args = [
            "train",
            "--dry-run",
            "--config",
            recipe,
            *sets(f"trainer.output_dir={tmp_path / 'run'}"),
            *sets(*rest),
        ]
    else:
        args = command.split(" ")
    result = invoke(args)
    assert result.exit_code == 2, result.output + repr(result.exception)
    for word in words:
        assert word in result.output, result.output
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------------------------
# Checks that need the model or the data: made before training starts, still exit 2.
# ------------------------------------------------------------------------------------------------------------


def write_recipe(path: Path, model: str, data_file: Path, out: Path, **trainer) -> Path:
    recipe = {
        "model": model,
        "dataset": {"names": ["gsm8k"], "data_files": {"gsm8k": str(data_file)}, "chat": False},
        "rewards": ["math_accuracy"],
        "trainer": {
            "output_dir": str(out),
            "use_cpu": True,
            "report_to": "none",
            "per_device_train_batch_size": 4,
            "num_generations": 4,
            "steps_per_generation": 2,
            "max_completion_length": 4,
            "sfpo_max_rl_steps": 1,
            **trainer,
        },
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


def short_rows(n: int) -> list[dict]:
    return [{"question": f"{i}+1?", "answer": f"#### {i + 1}"} for i in range(n)]


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def no_chat_template_copy(tiny_lm: str, folder: Path) -> str:
    shutil.copytree(tiny_lm, folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return str(folder)


@pytest.mark.parametrize(
    "case, words",
    [
        ("missing-fields", ["dataset 'gsm8k'", "lacks the field(s)", "question"]),
        ("empty-file", ["dataset 'gsm8k'", "no rows"]),
        ("too-few-rows", ["has 1 prompts", "one generation batch takes 2"]),
        ("prompt-too-long", ["prompts are longer than", "max_position_embeddings = 128"]),
        ("chat-without-template", ["no chat template", "dataset.chat: false"]),
        ("folder-holds-a-run", ["already holds a run", "--resume"]),
        ("output-is-a-file", ["is a file"]),
        ("resume-other-recipe", ["different recipe", "learning_rate"]),
    ],
)
def test_data_and_folder_checks_before_training(case, words, tiny_lm, tmp_path):
    out = tmp_path / "run"
    data = jsonl(tmp_path / "ok.jsonl", short_rows(8))
    model, flags, trainer = tiny_lm, [], {}
    chat = False
    if case == "missing-fields":
        data = jsonl(tmp_path / "bad.jsonl", [{"q": "1+1", "a": "2"}])
    elif case == "empty-file":
        data = tmp_path / "empty.jsonl"
        data.write_text("")
    elif case == "too-few-rows":
        data = jsonl(tmp_path / "one.jsonl", short_rows(1))
    elif case == "prompt-too-long":
        data = (
            FIXTURES / "gsm8k.jsonl"
        )  # real GSM8K problems: hundreds of characters, the tiny LM has 128 positions
    elif case == "chat-without-template":
        model, chat = no_chat_template_copy(tiny_lm, tmp_path / "lm"), True
    elif case == "folder-holds-a-run":
        out.mkdir()
        (out / "metrics.jsonl").write_text("")
    elif case == "output-is-a-file":
        out.write_text("")
    elif case == "resume-other-recipe":
        (out / "checkpoint-1").mkdir(parents=True)
        for name in ("trainer_state.json", "sfpo_state.json", "sfpo_state-rank0.pt"):
            (out / "checkpoint-1" / name).write_text("{}")
        first = write_recipe(tmp_path / "first.yaml", model, data, out, learning_rate=1e-3)
        from sfpo.app.recipe import load_recipe, resolved_yaml

        (out / "config.yaml").write_text(resolved_yaml(load_recipe(first)))
        flags, trainer = ["--resume"], {"learning_rate": 2e-3}
    path = write_recipe(tmp_path / "r.yaml", model, data, out, **trainer)
    if chat:
        raw = yaml.safe_load(path.read_text())
        raw["dataset"]["chat"] = True
        path.write_text(yaml.safe_dump(raw))
    before = sorted(p.name for p in out.iterdir()) if out.is_dir() else None
    result = invoke(["train", "--config", str(path), *flags])
    assert result.exit_code == 2, result.output + repr(result.exception)
    for word in words:
        assert word in result.output, result.output
    assert (sorted(p.name for p in out.iterdir()) if out.is_dir() else None) == before, (
        "the run folder changed"
    )
