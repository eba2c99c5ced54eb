"""From a recipe to a trained run folder, and from a model to benchmark scores (`sfpo train`, `sfpo eval`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sfpo.app.recipe import Recipe, RecipeError, resolved_yaml

logger = logging.getLogger(__name__)


class ModelUnavailableError(RuntimeError):
    pass


def resolve_model(model: str, task: str | None = None) -> str:
    """'tiny' → the embedded policy's folder (built offline and cached); anything else unchanged."""
    if model == "tiny":
        from sfpo.toy.tiny import build_tiny_policy

        return str(build_tiny_policy(task or "arithmetic", seed=0))
    return model


def _torch_kwargs(model_kwargs: dict) -> dict:
    import torch

    kwargs = dict(model_kwargs)
    dtype = kwargs.get("dtype")
    if isinstance(dtype, str) and dtype != "auto":
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise RecipeError(f"model_kwargs.dtype={dtype!r} is not a torch dtype (e.g. float32, bfloat16)")
        kwargs["dtype"] = getattr(torch, dtype)
    return kwargs


def load_policy(model: str, model_kwargs: dict | None = None):
    """(model, tokenizer) from a hub id or a local folder, with a clear error when neither works."""
    from transformers import AutoModelForCausalLM

    from sfpo.toy.tiny import load_tokenizer

    try:
        tokenizer = load_tokenizer(model)
        policy = AutoModelForCausalLM.from_pretrained(model, **_torch_kwargs(model_kwargs or {}))
    except OSError as err:
        raise ModelUnavailableError(
            f"could not load model {model!r} from a local folder or the hub ({err.__class__.__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); pass a local folder with config.json and weights"
        ) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return policy, tokenizer


def build_rewards(recipe: Recipe) -> list:
    """The recipe's reward functions: registry names (with options) or "task", the task's own reward."""
    from sfpo.app.catalog import build_reward
    from sfpo.toy.tasks import get_task

    if not recipe.rewards:
        return [get_task(recipe.task).reward]
    funcs = []
    for item in recipe.rewards:
        if item == "task" or (isinstance(item, dict) and item.get("name") == "task"):
            funcs.append(get_task(recipe.task).reward)
        elif isinstance(item, dict):
            funcs.append(build_reward(item["name"], {k: v for k, v in item.items() if k != "name"}))
        else:
            funcs.append(build_reward(item))
    return funcs


def build_train_dataset(recipe: Recipe, tokenizer):
    from datasets import concatenate_datasets

    from sfpo.app.catalog import load_dataset_recipe
    from sfpo.toy.tasks import get_task

    if recipe.task is not None:
        return get_task(recipe.task).train_dataset(recipe.dataset.get("limit") or 4096, seed=recipe.trainer.seed)
    spec = recipe.dataset
    files = spec.get("data_files") or {}
    parts = []
    for name in spec["names"]:
        try:
            parts.append(load_dataset_recipe(name, split=spec.get("split"), data_files=files.get(name),
                                             limit=spec.get("limit"), tokenizer=tokenizer,
                                             chat=spec.get("chat", "auto")))
        except (ValueError, StopIteration) as err:  # StopIteration: `datasets` on an empty JSON file
            where = f" from {files[name]!r}" if name in files else ""
            raise RecipeError(f"dataset {name!r}{where}: {str(err) or 'the file holds no rows'}") from None
        except Exception as err:  # a local file `datasets` cannot parse (the hub path raises its own errors)
            if name not in files:
                raise
            raise RecipeError(f"dataset {name!r}: {files[name]!r} could not be read ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''})") from None
    return parts[0] if len(parts) == 1 else concatenate_datasets(parts)


def check_train_data(recipe: Recipe, data, tokenizer, policy) -> None:
    """Refuse, before training, data the run cannot use: no rows, too few for one generation batch, a
    conversational prompt without a chat template, or prompts that leave no room for the completion."""
    from sfpo.algorithm.guards import check_train_dataset

    what = f"task {recipe.task!r}" if recipe.task else f"dataset {', '.join(recipe.dataset['names'])}"
    try:
        check_train_dataset(data, recipe.trainer)
    except ValueError as err:
        raise RecipeError(f"{what}: {err}") from None
    prompts = list(data["prompt"])
    conversational = isinstance(prompts[0], list)
    if conversational and not getattr(tokenizer, "chat_template", None):
        raise RecipeError(f"{what} has chat prompts but the tokenizer of {recipe.model!r} has no chat template; "
                          "set dataset.chat: false (plain prompts) or use a model with a chat template")
    limit, source = _max_length(recipe, policy)
    if limit is None:
        return
    if conversational:
        prompts = tokenizer.apply_chat_template(prompts, tokenize=False, add_generation_prompt=True)
    lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    room = limit - recipe.trainer.max_completion_length
    too_long = [i for i, n in enumerate(lengths) if n > room]
    if too_long:
        i = max(too_long, key=lambda j: lengths[j])
        raise RecipeError(
            f"{what}: {len(too_long)} of {len(lengths)} prompts are longer than {room} tokens ({source} = {limit} "
            f"minus trainer.max_completion_length = {recipe.trainer.max_completion_length}); the longest is row "
            f"{i} with {lengths[i]} tokens. Lower max_completion_length, raise the limit, or drop long prompts"
        )


def _max_length(recipe: Recipe, policy) -> tuple[int | None, str]:
    if recipe.trainer.vllm_max_model_length:
        return recipe.trainer.vllm_max_model_length, "trainer.vllm_max_model_length"
    limit = getattr(policy.config, "max_position_embeddings", None)
    return (limit, "the model's max_position_embeddings") if isinstance(limit, int) else (None, "")


def build_eval_sets(benchmarks: list[str], tokenizer, chat: Any = "auto", data_files: dict | None = None,
                    limit: int | None = None) -> list:
    """Benchmarks are dataset recipes (math_accuracy, or code_accuracy for code) or offline tasks (their own reward)."""
    from sfpo.app.catalog import get_reward, load_dataset_recipe
    from sfpo.common.evaluate import EvalSet
    from sfpo.toy.tasks import TASKS

    sets = []
    for name in benchmarks:
        if name in TASKS:
            task = TASKS[name]
            held_out = task.eval_set(limit or 200)
            sets.append(EvalSet(name, list(held_out["prompt"]), list(held_out["answer"]), task.reward))
            continue
        ds = load_dataset_recipe(name, data_files=(data_files or {}).get(name), limit=limit, tokenizer=tokenizer,
                                 chat=chat)
        if "tests" in ds.column_names:  # a code benchmark: run the programs against the tests
            from sfpo.code.reward import code_eval_set

            sets.append(code_eval_set(name, ds))
            continue
        sets.append(EvalSet(name, list(ds["prompt"]), list(ds["answer"]), get_reward("math_accuracy"),
                            ids=list(ds["id"])))
    return sets


def make_evaluator(recipe: Recipe, tokenizer):
    from sfpo.common.evaluate import evaluate

    ev = recipe.eval
    sets = build_eval_sets(ev["benchmarks"], tokenizer, ev.get("chat", recipe.dataset.get("chat", "auto")),
                           ev.get("data_files"), ev.get("limit"))

    def evaluator(model) -> dict:
        result = evaluate(model, tokenizer, sets, n=ev.get("n", 4), temperature=ev.get("temperature", 1.0),
                          top_p=ev.get("top_p", 0.7), max_new_tokens=ev.get("max_new_tokens", 2560),
                          batch_size=ev.get("batch_size", 32), seed=recipe.trainer.seed, backend="hf")
        return result.metrics()

    return evaluator


def checkpoint_is_complete(folder: Path, world_size: int = 1) -> bool:
    """Whether a checkpoint's save finished: `SFPOTrainer` writes `sfpo_state.json` (main process) after the
    model, optimizer, RNG and trainer state, and each rank's `sfpo_state-rank<r>.pt`, so a `kill -9` during a
    save leaves a folder without them. transformers' own `get_last_checkpoint` takes the highest number."""
    from sfpo.algorithm.checkpoint import STATE_FILE, rank_file

    needed = ["trainer_state.json", STATE_FILE, *(rank_file(r) for r in range(world_size))]
    return all((folder / name).is_file() for name in needed)


def last_checkpoint(run_dir: Path, world_size: int | None = None) -> str | None:
    """The newest complete `checkpoint-<step>` in `run_dir` (incomplete ones are skipped with a warning)."""
    if not run_dir.is_dir():
        return None
    world_size = world_size or int(os.environ.get("WORLD_SIZE", "1"))
    steps = sorted(
        (int(p.name.split("-", 1)[1]), p) for p in run_dir.glob("checkpoint-*")
        if p.is_dir() and p.name.split("-", 1)[1].isdigit()
    )
    for _, folder in reversed(steps):
        if checkpoint_is_complete(folder, world_size):
            return str(folder)
        logger.warning("skipping %s: its save did not finish (the run was killed while saving)", folder)
    return None


def check_run_dir(recipe: Recipe, resume: bool | str) -> str | None:
    """Refuse to write a new run over an old one; with resume, return the checkpoint to continue from (the
    newest complete one, or the one `resume` names)."""
    run_dir = recipe.run_dir
    if run_dir.exists() and not run_dir.is_dir():
        raise RecipeError(f"trainer.output_dir {str(run_dir)!r} is a file, not a folder")
    started = run_dir.is_dir() and any(run_dir.iterdir())
    if isinstance(resume, str):
        if not checkpoint_is_complete(Path(resume), int(os.environ.get("WORLD_SIZE", "1"))):
            raise RecipeError(f"resume: {resume!r} is not a complete checkpoint (its save did not finish, or it is "
                              "not a checkpoint-* folder written by SFPOTrainer)")
        _check_same_run(recipe, run_dir / "config.yaml")
        return resume
    if resume:
        ckpt = last_checkpoint(run_dir)
        if ckpt is None:
            raise RecipeError(f"--resume: {str(run_dir)!r} holds no checkpoint to resume from (no complete checkpoint-* folder)")
        _check_same_run(recipe, run_dir / "config.yaml")
        return ckpt
    if started:
        raise RecipeError(f"trainer.output_dir {str(run_dir)!r} already holds a run; pass --resume to continue it "
                          "or choose another output_dir (e.g. --set trainer.output_dir=runs/new)")
    return None


# Keys a resumed run may change: where and how often it logs and saves, how long it runs, its evaluation.
RESUME_MAY_CHANGE = {"name", "eval", "output_dir", "logging_dir", "local_rank", "sfpo_max_rl_steps", "max_steps",
                     "num_train_epochs", "save_steps", "save_strategy", "save_total_limit", "logging_steps",
                     "report_to", "run_name", "disable_tqdm", "log_level", "log_level_replica"}


def _check_same_run(recipe: Recipe, saved_config: Path) -> None:
    """--resume continues the run in the folder only with the recipe it was started with (an exact resume
    needs the same model, data and settings); what may change is in RESUME_MAY_CHANGE."""
    import yaml

    if not saved_config.is_file():
        return
    try:
        before = yaml.safe_load(saved_config.read_text())
    except yaml.YAMLError:
        return
    now = yaml.safe_load(resolved_yaml(recipe))

    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in d.items():
            if key in RESUME_MAY_CHANGE:
                continue
            if isinstance(value, dict) and key != "model_kwargs":
                out.update(flat(value, f"{prefix}{key}."))
            else:
                out[prefix + str(key)] = value
        return out

    a, b = flat({"algorithm": "sfpo", **(before or {})}), flat(now)  # runs from before the key trained SFPO
    changed = [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if changed:
        raise RecipeError(
            f"--resume: {str(recipe.run_dir)!r} holds a run made with a different recipe ({'; '.join(changed[:5])}"
            f"{'; ...' if len(changed) > 5 else ''}); resume with the recipe it was started with (a longer run: "
            "--set trainer.sfpo_max_rl_steps=N), or choose another output_dir"
        )


def train(recipe: Recipe, resume: bool | str = False, *, progress: Callable[[dict], None] | None = None,
          callbacks: Sequence = (), extra_files: dict[str, str] | None = None, save_final: bool = True,
          quiet: bool = False) -> Path:
    """Trains one run into `trainer.output_dir` (config.yaml, metrics.jsonl, checkpoints, best/, final/).

    The one training path: `sfpo train` calls it with a recipe from YAML, `sfpo demo` with a recipe per arm.
    `resume`: True continues from the newest complete checkpoint in the run folder, a path from that checkpoint.
    `progress(record)` hears each RL step's metrics line; `callbacks` are added to the trainer; `extra_files`
    ({name: text}) are written beside config.yaml; `save_final=False` keeps no final weights; `quiet` leaves
    progress to `progress` (no raw log dicts, no info messages from transformers).
    """
    from peft import LoraConfig
    from transformers.trainer_callback import PrinterCallback

    from sfpo.algorithm.atomic import atomic_write_text
    from sfpo.algorithm.interrupt import GracefulStop
    from sfpo.app.quiet import quiet_training
    from sfpo.app.recipe import algorithm_classes
    from sfpo.app.runlog import RunRecorder

    checkpoint = check_run_dir(recipe, resume)
    model_path = resolve_model(recipe.model, recipe.task)
    policy, tokenizer = load_policy(model_path, recipe.model_kwargs)
    data = build_train_dataset(recipe, tokenizer)
    check_train_data(recipe, data, tokenizer, policy)
    rewards = build_rewards(recipe)
    run_dir = recipe.run_dir
    peft_config = LoraConfig(**recipe.peft) if recipe.peft else None
    with quiet_training(quiet):
        _, trainer_class = algorithm_classes(recipe.algorithm)  # SFPOTrainer, or GXPOTrainer
        trainer = trainer_class(model=policy, reward_funcs=rewards, args=recipe.trainer, train_dataset=data,
                                processing_class=tokenizer, peft_config=peft_config)
        if quiet:
            trainer.remove_callback(PrinterCallback)  # raw log dicts on stdout; `progress` reports instead
        evaluator = make_evaluator(recipe, tokenizer) if recipe.eval else None
        # Written only once everything has loaded, so a bad model or dataset leaves no half-made run behind.
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", resolved_yaml(recipe))
        for name, text in (extra_files or {}).items():
            atomic_write_text(run_dir / name, text)
        RunRecorder(run_dir, evaluator=evaluator, eval_every=(recipe.eval or {}).get("every", 5),
                    save_best=(recipe.eval or {}).get("save_best", True), on_step=progress).attach(trainer)
        for callback in callbacks:
            trainer.add_callback(callback)
        with GracefulStop().attach(trainer) as stop:  # SIGINT / SIGTERM: checkpoint at the next optimizer step
            trainer.train(resume_from_checkpoint=checkpoint)
    if stop.stopped:
        raise stop.interrupted()
    if save_final:
        trainer.save_model(str(run_dir / "final"))
        if trainer.accelerator.is_main_process:
            tokenizer.save_pretrained(str(run_dir / "final"))
    return run_dir


def run_eval(model: str, benchmarks: list[str], out: str | os.PathLike | None, n: int = 4, temperature: float = 1.0,
             top_p: float = 0.7, max_new_tokens: int = 2560, data_files: dict | None = None, limit: int | None = None,
             chat: Any = "auto", batch_size: int = 32, seed: int = 0, backend: str = "auto", task: str | None = None):
    from sfpo.common.evaluate import evaluate, markdown_table, write_eval

    path = resolve_model(model, task)
    policy, tokenizer = load_policy(path)
    sets = build_eval_sets(benchmarks, tokenizer, chat, data_files, limit)
    result = evaluate(policy, tokenizer, sets, n=n, temperature=temperature, top_p=top_p,
                      max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed, backend=backend,
                      model_path=path)
    result.settings.update(model=model, benchmarks=benchmarks)
    files = write_eval(result, out) if out else []
    return result, markdown_table(result), files

