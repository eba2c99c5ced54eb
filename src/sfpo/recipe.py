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
import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TOP_KEYS = {"name", "model", "model_kwargs", "task", "dataset", "rewards", "eval", "peft", "trainer"}
DATASET_KEYS = {"names", "split", "chat", "data_files", "limit"}
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
    extra = sorted(set(keys) - allowed)
    if not extra:
        return
    if len(allowed) <= 20:
        hint = f"allowed keys: {', '.join(sorted(allowed))}"
    else:
        close = difflib.get_close_matches(extra[0], allowed, n=3)
        hint = f"did you mean {' or '.join(close)}?" if close else "see `python -c 'help(sfpo.SFPOConfig)'`"
    raise RecipeError(f"unknown key {extra[0]!r} in {where}; {hint}")


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
    from sfpo.rewards import REWARDS

    if rewards is None:
        if task is None:
            raise RecipeError("rewards is missing: list reward names, e.g. [math_accuracy]")
        return []
    if not isinstance(rewards, list) or not rewards:
        raise RecipeError(f"rewards={rewards!r} is not allowed: give a non-empty list of reward names")
    for item in rewards:
        name = item.get("name") if isinstance(item, dict) else item
        if name not in REWARDS and name != "task":
            raise RecipeError(f"unknown reward {name!r} in rewards; allowed: {', '.join(sorted(REWARDS))}, task")
    return rewards


def _check_dataset(dataset: Any, task: str | None) -> dict:
    from sfpo.data import DATASETS

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
            raise RecipeError(f"unknown dataset {name!r} in dataset.names; allowed: {', '.join(sorted(DATASETS))}")
    chat = dataset.get("chat", "auto")
    if chat not in (True, False, "auto"):
        raise RecipeError(f"dataset.chat={chat!r} is not allowed: use true, false or auto")
    return {**dataset, "names": names, "chat": chat}


def _check_eval(ev: Any, task: str | None) -> dict | None:
    from sfpo.data import DATASETS
    from sfpo.tasks import TASKS

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
            raise RecipeError(f"unknown benchmark {b!r} in eval.benchmarks; allowed: "
                              f"{', '.join(sorted(DATASETS))}, {', '.join(sorted(TASKS))}")
    for key, minimum in (("every", 1), ("n", 1), ("max_new_tokens", 1)):
        value = ev.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < minimum):
            raise RecipeError(f"eval.{key}={value!r} is not allowed: it must be an int ≥ {minimum}")
    return {**ev, "benchmarks": list(benchmarks)}


def build_recipe(raw: dict) -> Recipe:
    from sfpo.config import SFPOConfig
    from sfpo.tasks import TASKS

    _unknown(raw, TOP_KEYS, "the recipe")
    task = raw.get("task")
    if task is not None and task not in TASKS:
        raise RecipeError(f"unknown task {task!r}; allowed: {', '.join(sorted(TASKS))}")
    model = _check_model(raw.get("model"))
    if model == "tiny" and task is None:
        raise RecipeError("model='tiny' needs a task (the tiny policy is warm-started on one)")
    trainer_raw = raw.get("trainer")
    if not isinstance(trainer_raw, dict) or "output_dir" not in trainer_raw:
        raise RecipeError("trainer must be a mapping of SFPOConfig fields with at least output_dir")
    allowed = {f.name for f in dataclasses.fields(SFPOConfig) if f.init}
    _unknown(trainer_raw, allowed, "trainer (SFPOConfig fields: TRL's GRPOConfig plus sfpo_*)")
    try:
        trainer = SFPOConfig(**trainer_raw)
    except (ValueError, TypeError) as err:
        raise RecipeError(f"trainer: {err}") from None
    peft = raw.get("peft")
    if peft is not None and not isinstance(peft, dict):
        raise RecipeError(f"peft={peft!r} is not allowed: give LoraConfig fields as a mapping, or null")
    model_kwargs = raw.get("model_kwargs") or {}
    if not isinstance(model_kwargs, dict):
        raise RecipeError(f"model_kwargs={model_kwargs!r} is not allowed: it must be a mapping")
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


def resolved_yaml(recipe: Recipe) -> str:
    """The recipe as it will run: every SFPOConfig field spelled out (what --dry-run prints)."""
    out = {k: v for k, v in recipe.raw.items() if k != "trainer"}
    out["name"] = recipe.name
    out["trainer"] = {k: v for k, v in recipe.trainer.to_dict().items() if not k.startswith("_")}
    return yaml.safe_dump(out, sort_keys=False, default_flow_style=None)
