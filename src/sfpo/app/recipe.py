"""Recipes: a YAML file → the policy, data, rewards, evaluation and SFPOConfig of one training run.

```yaml
name: my-run
model: Qwen/Qwen2.5-Math-1.5B      # hub id, local folder, or "tiny" (the embedded policy, built offline)
model_kwargs: {dtype: float32}     # passed to from_pretrained
task: null                         # an offline task from sfpo.tasks instead of `dataset` (e.g. arithmetic)
dataset: {names: [dapo-math-17k, math], split: train, chat: auto, data_files: {}, limit: null}
rewards: [math_accuracy_format]    # names from sfpo.rewards (or {name: ..., format_score: ...}); with a
                                   # task, the default is the task's own reward
eval: {benchmarks: [math500, ...], every: 5, n: 4, temperature: 1.0, top_p: 0.7, max_new_tokens: 2560}
peft: null                         # or LoraConfig fields, e.g. {r: 16, lora_alpha: 32, target_modules: all-linear}
trainer: {output_dir: runs/x, ...} # every SFPOConfig field: TRL's GRPOConfig plus sfpo_*
```

`load_recipe` checks every key and value without loading a model or data, so `sfpo train --dry-run` and the
test that walks `configs/` catch a bad recipe before any GPU hour is spent.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sfpo.app.validate import Range, check_trainer_values, did_you_mean

TOP_KEYS = {"name", "model", "model_kwargs", "task", "dataset", "rewards", "eval", "peft", "trainer"}
DATASET_KEYS = {"names", "split", "chat", "data_files", "limit"}
REWARD_OPTIONS = {"format_score", "timeout_s", "require_boxed"}
CODE_REWARD_OPTIONS = {"timeout_s", "memory_mb", "stdout_compare"}
EVAL_KEYS = {"benchmarks", "every", "n", "temperature", "top_p", "max_new_tokens", "limit", "data_files",
             "batch_size", "chat", "save_best"}


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `1e-6` (no dot) as a string; every ML config writes learning rates that way."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def yaml_load(text: str):
    return yaml.load(text, Loader=_Loader)


class RecipeError(ValueError):
    """A recipe that cannot run; the message names the key, the value and what is allowed."""


@dataclass
class Recipe:
    name: str
    model: str
    trainer: Any  # SFPOConfig
    model_kwargs: dict = field(default_factory=dict)
    task: str | None = None
    dataset: dict = field(default_factory=dict)
    rewards: list = field(default_factory=list)
    eval: dict | None = None
    peft: dict | None = None
    raw: dict = field(default_factory=dict)  # the resolved YAML, as written into the run folder

    @property
    def run_dir(self) -> Path:
        return Path(self.trainer.output_dir)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`trainer.learning_rate=1e-6` → (["trainer", "learning_rate"], 1e-6); the value is read as YAML."""
    if "=" not in text:
        raise RecipeError(f"--set {text!r} is not KEY=VALUE (e.g. trainer.learning_rate=1e-6)")
    key, value = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise RecipeError(f"--set {text!r}: the key {key!r} is empty or has an empty part")
    return key.split("."), yaml_load(value) if value else None


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    raw = copy.deepcopy(raw)
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            if node.get(part) is None:
                node[part] = {}
            if not isinstance(node[part], dict):
                raise RecipeError(f"--set {text!r}: {part!r} is not a mapping in the recipe")
            node = node[part]
        node[path[-1]] = value
    return raw


def read_yaml(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"--config {str(path)!r}: no such file")
    try:
        raw = yaml_load(path.read_text())
    except yaml.YAMLError as err:
        raise RecipeError(f"--config {str(path)!r} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"--config {str(path)!r} must hold a mapping of keys, got {type(raw).__name__}")
    return raw


def cpu_only_overrides(raw: dict) -> list[str]:
    """Overrides that let a GPU recipe be validated on a machine without one (bf16/fp16 need a GPU)."""
    import torch

    trainer = raw.get("trainer") if isinstance(raw.get("trainer"), dict) else {}
    if torch.cuda.is_available():
        return []
    return [f"trainer.{key}=false" for key in ("bf16", "fp16") if trainer.get(key)]


def load_recipe(path: str | os.PathLike, overrides: list[str] | None = None) -> Recipe:
    return build_recipe(apply_overrides(read_yaml(path), overrides or []))


def _unknown(keys, allowed: set, where: str) -> None:
    extra = sorted((k for k in keys if k not in allowed), key=str)
    if not extra:
        return
    hints = [did_you_mean(extra[0], allowed)]
    if len(allowed) <= 20:
        hints.append(f"allowed keys: {', '.join(sorted(allowed))}")
    elif not hints[0]:
        hints.append("see `python -c 'help(sfpo.SFPOConfig)'`")
    raise RecipeError(f"unknown key {extra[0]!r} in {where}; {'; '.join(h for h in hints if h)}")


def _hint(name: Any, allowed) -> str:
    close = did_you_mean(name, allowed)
    return (f"{close} " if close else "") + f"allowed: {', '.join(sorted(allowed))}"


def _check_values(section: dict, where: str, rules: dict) -> None:
    """Each key of ``section`` that has a rule: a Range, a type, or a tuple of allowed values."""
    for key, rule in rules.items():
        if key not in section:
            continue
        value = section[key]
        if isinstance(rule, Range):
            ok, allowed = rule.ok(value), rule.describe()
        elif isinstance(rule, tuple):
            ok, allowed = value in rule and type(value) in {type(r) for r in rule}, " or ".join(map(repr, rule))
        else:
            ok, allowed = isinstance(value, rule) and not (rule is int and isinstance(value, bool)), rule.__name__
        if not ok:
            raise RecipeError(f"{where}.{key}={value!r} is not allowed: it must be {allowed}")


def _check_data_files(files: Any, names: list, where: str) -> dict:
    """`{name: path or [paths]}` naming only datasets of `names`, every path present."""
    if files is None:
        return {}
    if not isinstance(files, dict):
        raise RecipeError(f"{where}={files!r} is not allowed: give a mapping {{dataset name: file or folder}}")
    for name, paths in files.items():
        if name not in names:
            hint = did_you_mean(name, names)
            raise RecipeError(f"{where} names {name!r}, which is not one of {names}" + (f"; {hint}" if hint else ""))
        for path in paths if isinstance(paths, list) else [paths]:
            if not isinstance(path, str) or not Path(path).expanduser().exists():
                raise RecipeError(f"{where}.{name}={path!r}: no such file or folder")
    return files


def _check_model(model: Any) -> str:
    if not isinstance(model, str) or not model:
        raise RecipeError(f"model={model!r} is not allowed: give a hub id, a local folder, or 'tiny'")
    if model == "tiny" or Path(model).expanduser().exists():
        return model
    looks_local = model.startswith((".", "/", "~")) or model.count("/") > 1 or os.sep + os.sep in model
    if looks_local:
        raise RecipeError(f"model={model!r}: no such local folder (a hub id looks like 'org/name')")
    return model


def _check_rewards(rewards: Any, task: str | None) -> list:
    from sfpo.app.catalog import REWARDS

    if rewards is None:
        if task is None:
            raise RecipeError("rewards is missing: list reward names, e.g. [math_accuracy]")
        return []
    if not isinstance(rewards, list) or not rewards:
        raise RecipeError(f"rewards={rewards!r} is not allowed: give a non-empty list of reward names")
    for item in rewards:
        name = item.get("name") if isinstance(item, dict) else item
        if name not in REWARDS and name != "task":
            hint = did_you_mean(name, [*REWARDS, "task"])
            raise RecipeError(f"unknown reward {name!r} in rewards; allowed: {', '.join(sorted(REWARDS))}, task"
                              + (f"; {hint}" if hint else ""))
        if isinstance(item, dict) and len(item) > 1:
            _check_reward_options(item)
    return rewards


def _check_reward_options(item: dict) -> None:
    from sfpo.code.reward import make_code_accuracy
    from sfpo.math.reward import make_math_accuracy

    name = item["name"]
    options = {k: v for k, v in item.items() if k != "name"}
    if str(name).startswith("code_accuracy"):
        _unknown(options, CODE_REWARD_OPTIONS, f"rewards ({name})")
        build = lambda: make_code_accuracy(name=name, partial=name.endswith("_partial"), **options)  # noqa: E731
    elif str(name).startswith("math_accuracy"):
        _unknown(options, REWARD_OPTIONS, f"rewards ({name})")
        build = lambda: make_math_accuracy(name=name, **options)  # noqa: E731
    else:
        raise RecipeError(f"rewards: {name!r} takes no options (got {sorted(options)}); only math_accuracy* and "
                          "code_accuracy* do")
    try:
        build()
    except (TypeError, ValueError) as err:
        raise RecipeError(f"rewards ({name}): {err}") from None


def _check_dataset(dataset: Any, task: str | None) -> dict:
    from sfpo.app.catalog import DATASETS

    if task is not None:
        if dataset:
            raise RecipeError("give either task or dataset, not both")
        return {}
    if not isinstance(dataset, dict):
        raise RecipeError(f"dataset={dataset!r} is not allowed: it must be a mapping with at least 'names'")
    _unknown(dataset, DATASET_KEYS, "dataset")
    names = dataset.get("names")
    names = [names] if isinstance(names, str) else names
    if not names or not isinstance(names, list):
        raise RecipeError(f"dataset.names={names!r} is not allowed: give one dataset name or a list")
    for name in names:
        if name not in DATASETS:
            raise RecipeError(f"unknown dataset {name!r} in dataset.names; {_hint(name, DATASETS)}")
    chat = dataset.get("chat", "auto")
    if chat not in (True, False, "auto"):
        raise RecipeError(f"dataset.chat={chat!r} is not allowed: use true, false or auto")
    _check_values(dataset, "dataset", {"split": str, "limit": Range(1, integer=True, none=True)})
    _check_data_files(dataset.get("data_files"), names, "dataset.data_files")
    return {**dataset, "names": names, "chat": chat}


def _check_eval(ev: Any, task: str | None) -> dict | None:
    from sfpo.app.catalog import DATASETS
    from sfpo.toy.tasks import TASKS

    if ev is None:
        return None
    if not isinstance(ev, dict):
        raise RecipeError(f"eval={ev!r} is not allowed: it must be a mapping (or null)")
    _unknown(ev, EVAL_KEYS, "eval")
    benchmarks = ev.get("benchmarks", [task] if task else None)
    if not benchmarks:
        raise RecipeError("eval.benchmarks is missing: list benchmark names (datasets or tasks)")
    for b in benchmarks:
        if b not in DATASETS and b not in TASKS:
            raise RecipeError(f"unknown benchmark {b!r} in eval.benchmarks; {_hint(b, [*DATASETS, *TASKS])}")
    for key, minimum in (("every", 1), ("n", 1), ("max_new_tokens", 1)):
        value = ev.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < minimum):
            raise RecipeError(f"eval.{key}={value!r} is not allowed: it must be an int ≥ {minimum}")
    _check_values(ev, "eval", {"temperature": Range(0), "top_p": Range(0, 1, low_open=True),
                               "limit": Range(1, integer=True, none=True), "batch_size": Range(1, integer=True),
                               "save_best": bool, "chat": (True, False, "auto")})
    _check_data_files(ev.get("data_files"), [b for b in benchmarks if b in DATASETS], "eval.data_files")
    return {**ev, "benchmarks": list(benchmarks)}


def build_recipe(raw: dict) -> Recipe:
    from sfpo.algorithm.config import SFPOConfig
    from sfpo.toy.tasks import TASKS

    _unknown(raw, TOP_KEYS, "the recipe")
    task = raw.get("task")
    if task is not None and task not in TASKS:
        raise RecipeError(f"unknown task {task!r}; {_hint(task, TASKS)}")
    model = _check_model(raw.get("model"))
    if model == "tiny" and task is None:
        raise RecipeError("model='tiny' needs a task (the tiny policy is warm-started on one)")
    trainer_raw = raw.get("trainer")
    if not isinstance(trainer_raw, dict) or "output_dir" not in trainer_raw:
        raise RecipeError("trainer must be a mapping of SFPOConfig fields with at least output_dir")
    allowed = {f.name for f in dataclasses.fields(SFPOConfig) if f.init}
    _unknown(trainer_raw, allowed, "trainer (SFPOConfig fields: TRL's GRPOConfig plus sfpo_*)")
    problem = check_trainer_values(trainer_raw, SFPOConfig)
    if problem:
        raise RecipeError(problem)
    try:
        trainer = SFPOConfig(**trainer_raw)
    except (ValueError, TypeError) as err:
        raise RecipeError(f"trainer: {err}") from None
    peft = _check_peft(raw.get("peft"))
    model_kwargs = raw.get("model_kwargs") or {}
    if not isinstance(model_kwargs, dict):
        raise RecipeError(f"model_kwargs={model_kwargs!r} is not allowed: it must be a mapping")
    _check_dtype(model_kwargs.get("dtype"))
    if "name" in raw and not isinstance(raw["name"], str):
        raise RecipeError(f"name={raw['name']!r} is not allowed: it must be a string")
    return Recipe(
        name=str(raw.get("name") or Path(trainer.output_dir).name),
        model=model,
        trainer=trainer,
        model_kwargs=model_kwargs,
        task=task,
        dataset=_check_dataset(raw.get("dataset"), task),
        rewards=_check_rewards(raw.get("rewards"), task),
        eval=_check_eval(raw.get("eval"), task),
        peft=peft,
        raw=raw,
    )


def _check_peft(peft: Any) -> dict | None:
    if peft is None:
        return None
    if not isinstance(peft, dict):
        raise RecipeError(f"peft={peft!r} is not allowed: give LoraConfig fields as a mapping, or null")
    from peft import LoraConfig

    _unknown(peft, {f.name for f in dataclasses.fields(LoraConfig) if f.init}, "peft (LoraConfig fields)")
    problem = check_trainer_values(peft, LoraConfig)
    if problem:
        raise RecipeError(problem.replace("trainer.", "peft.", 1))
    try:
        LoraConfig(**peft)
    except (TypeError, ValueError) as err:
        raise RecipeError(f"peft: {err}") from None
    return peft


def _check_dtype(dtype: Any) -> None:
    import torch

    if dtype is None or dtype == "auto":
        return
    if not isinstance(dtype, str) or not isinstance(getattr(torch, dtype, None), torch.dtype):
        raise RecipeError(f"model_kwargs.dtype={dtype!r} is not allowed: use auto or a torch dtype name such as "
                          "float32, bfloat16 or float16")


def resolved_yaml(recipe: Recipe) -> str:
    """The recipe as it will run: every SFPOConfig field spelled out (what --dry-run prints)."""
    out = {k: v for k, v in recipe.raw.items() if k != "trainer"}
    out["name"] = recipe.name
    out["trainer"] = {k: v for k, v in recipe.trainer.to_dict().items() if not k.startswith("_")}
    return yaml.safe_dump(out, sort_keys=False, default_flow_style=None)
