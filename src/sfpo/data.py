"""Named math dataset recipes, loaded from the Hugging Face Hub or from local files with the same mapping.

Every recipe yields a :class:`datasets.Dataset` with four columns:

- ``prompt``: the problem followed by the answer instruction (the paper's template, no system prompt),
  either as a conversational list ``[{"role": "user", "content": ...}]`` that TRL renders with the chat
  template, or as the plain formatted string for base models;
- ``answer``: the gold answer, normalized by :func:`sfpo.rewards.normalize_gold` (what the rewards read);
- ``problem``: the bare problem text;
- ``id``: a stable string id (``<recipe>-<source id>`` or ``<recipe>-<split>-<row>``).

=====================  ======================================  ========  ==========================================
name                   hub id (config)                         split     fields used (schema of the hub copy)
=====================  ======================================  ========  ==========================================
``gsm8k``              ``openai/gsm8k`` (``main``)             train     ``question``; ``answer`` (gold after ####)
``math``               ``DigitalLearningGmbH/MATH-lighteval``  train     ``problem``; ``solution`` (last \\boxed)
``math500``            ``HuggingFaceH4/MATH-500``              test      ``problem``; ``answer``; ``unique_id``
``dapo-math-17k``      ``BytedTsinghua-SIA/DAPO-Math-17k``     train     ``prompt[0].content``;
                                                                         ``reward_model.ground_truth``;
                                                                         ``extra_info.index``
``aime24``             ``HuggingFaceH4/aime_2024``             train     ``problem``; ``answer``; ``id``
``aime25``             ``math-ai/aime25``                      test      ``problem``; ``answer``; ``id``
``amc23``              ``math-ai/amc23``                       test      ``question``; ``answer``; ``id``
``minerva``            ``math-ai/minervamath``                 test      ``question``; ``answer``
``olympiadbench``      ``math-ai/olympiadbench``               test      ``question`` (+ ``context``);
                                                                         ``final_answer`` (list); ``id``
``skywork-or1-math``   ``Skywork/Skywork-OR1-RL-Data``         math      ``prompt`` (user message);
                                                                         ``reward_model.ground_truth`` (JSON
                                                                         list); ``extra_info.index``
=====================  ======================================  ========  ==========================================

These are the copies that the verl / open-r1 / SimpleRL / Understand-R1-Zero recipes load. The schemas come
from the hub dataset cards and public preprocessing scripts, not from a download (none was possible here):

- DAPO-Math-17k rows are verl RL rows: ``prompt`` is a one-message chat whose content wraps the problem in
  DAPO's own instruction ("Solve the following math problem step by step. The last line ... Answer:
  $Answer ...\\n\\n<problem>\\n\\nRemember to put your answer on its own line after "Answer:"."); that wrapper
  is removed so the paper's ``\\boxed{}`` instruction is the only one. The hub file repeats each problem
  many times, so this recipe keeps the first row of each distinct problem.
- Skywork-OR1-RL-Data's ``math`` split has the same verl layout; ``ground_truth`` is a JSON-encoded list
  (one answer in practice; several are joined with ", "). A trailing "reason step by step ... \\boxed{}"
  sentence in the prompt, if any, is removed before the instruction is added.
- OlympiadBench's ``final_answer`` is a list of strings such as ``["$2^{1009}$"]``; ``context``, when set,
  is put before the question. ``amc23`` answers may be floats (``27.0`` becomes ``27``).

Code recipes (``mbpp``, ``humaneval``, ``livecodebench``, ``deepcoder``; :mod:`sfpo.code_data`) load the same
way and give ``prompt``, ``tests``, ``problem`` and ``id`` instead (``tests`` is what ``code_accuracy`` reads).

Local files: ``data_files=`` takes a ``.jsonl``/``.json``/``.parquet`` file, a folder of them, a list of
either, or a ``{split: files}`` dict; the rows must have the hub copy's fields (same mapping).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfpo.rewards import extract_boxed, normalize_gold

logger = logging.getLogger(__name__)

__all__ = [
    "DATASETS",
    "DEFAULT_INSTRUCTION",
    "DatasetRecipe",
    "DatasetUnavailableError",
    "format_prompt",
    "get_recipe",
    "load_dataset_recipe",
]

#: The paper's prompt: the problem, then this instruction (no system prompt). It is verl's wording, which
#: the reference code inherits.
DEFAULT_INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."

RowFn = Callable[[Mapping[str, Any]], "tuple[str | None, Any, Any]"]


class DatasetUnavailableError(RuntimeError):
    """The Hugging Face Hub could not be reached (or is switched off) and the dataset is not cached."""


@dataclass(frozen=True)
class DatasetRecipe:
    """Where a dataset lives and how one of its rows becomes ``(problem, gold answer, id)``.

    Either name the ``problem_field`` / ``answer_field`` (and optionally ``id_field``) columns, or give a
    ``row_fn`` returning ``(problem, answer, id_or_None)`` together with the top-level ``fields`` it reads.
    """

    name: str
    hub_id: str
    description: str
    config: str | None = None
    split: str = "train"
    problem_field: str | None = None
    answer_field: str | None = None
    id_field: str | None = None
    row_fn: RowFn | None = None
    fields: tuple[str, ...] = ()
    dedupe: bool = False
    kind: str = "math"  # "code": rows become prompt + tests (sfpo.code_data)
    # A copy of the recipe's split shipped inside an installed package, read when the hub cannot be reached
    packaged: Callable[[], Any] | None = None

    def required_fields(self) -> tuple[str, ...]:
        if self.row_fn is not None:
            return self.fields
        return tuple(f for f in (self.problem_field, self.answer_field) if f)

    def convert(self, row: Mapping[str, Any]) -> tuple[str | None, Any, Any]:
        if self.row_fn is not None:
            return self.row_fn(row)
        row_id = row.get(self.id_field) if self.id_field else None
        return row.get(self.problem_field), row.get(self.answer_field), row_id


# ---------------------------------------------------------------------------------------------------------
# Row functions for the schemas that need more than two column names
# ---------------------------------------------------------------------------------------------------------

_DAPO_PREFIX = "Solve the following math problem step by step."
_DAPO_SUFFIX_RE = re.compile(r"\s*Remember to put your answer on its own line after \"Answer:\"\.?\s*$")
_BOXED_INSTRUCTION_RE = re.compile(
    r"\s*(?:please\s+)?(?:let's\s+)?(?:reason|think)\s+step\s+by\s+step[^\n]*\\boxed\{\}\.?\s*$",
    re.IGNORECASE,
)


def _user_content(prompt: Any) -> str | None:
    """The user message of a verl-style chat prompt (or the prompt itself when it is a string)."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, Sequence):
        messages = [m for m in prompt if isinstance(m, Mapping)]
        users = [m for m in messages if m.get("role") == "user"] or messages
        if users and isinstance(users[-1].get("content"), str):
            return users[-1]["content"]
    return None


def _field(row: Mapping[str, Any], outer: str, inner: str) -> Any:
    value = row.get(outer)
    return value.get(inner) if isinstance(value, Mapping) else None


def _dapo_row(row: Mapping[str, Any]) -> tuple[str | None, Any, Any]:
    text = _user_content(row.get("prompt"))
    if text is not None:
        text = text.strip()
        if text.startswith(_DAPO_PREFIX) and "\n\n" in text:
            text = text.split("\n\n", 1)[1]
        text = _DAPO_SUFFIX_RE.sub("", text).strip()
    return text, _field(row, "reward_model", "ground_truth"), _field(row, "extra_info", "index")


def _skywork_row(row: Mapping[str, Any]) -> tuple[str | None, Any, Any]:
    text = _user_content(row.get("prompt"))
    if text is not None:
        text = _BOXED_INSTRUCTION_RE.sub("", text.strip()).strip()
    gold = _field(row, "reward_model", "ground_truth")
    if isinstance(gold, str) and gold.lstrip().startswith("["):
        try:
            gold = json.loads(gold)
        except ValueError:
            pass  # not JSON after all: keep the string
    return text, gold, _field(row, "extra_info", "index")


def _math_row(row: Mapping[str, Any]) -> tuple[str | None, Any, Any]:
    solution = row.get("solution")
    gold = extract_boxed(solution) if isinstance(solution, str) else None
    return row.get("problem"), gold, None


def _olympiad_row(row: Mapping[str, Any]) -> tuple[str | None, Any, Any]:
    question = row.get("question")
    context = row.get("context")
    if isinstance(question, str) and isinstance(context, str) and context.strip():
        question = context.strip() + "\n\n" + question
    return question, row.get("final_answer"), row.get("id")


DATASETS: dict[str, DatasetRecipe] = {
    r.name: r
    for r in (
        DatasetRecipe(
            "gsm8k",
            "openai/gsm8k",
            "Grade-school word problems (7.5k train / 1.3k test); gold is the number after ####.",
            config="main",
            problem_field="question",
            answer_field="answer",
        ),
        DatasetRecipe(
            "math",
            "DigitalLearningGmbH/MATH-lighteval",
            "Hendrycks MATH, lighteval copy (7.5k train / 5k test); gold is the solution's last \\boxed.",
            config="default",
            row_fn=_math_row,
            fields=("problem", "solution"),
        ),
        DatasetRecipe(
            "math500",
            "HuggingFaceH4/MATH-500",
            "MATH-500 evaluation subset of the MATH test set.",
            split="test",
            problem_field="problem",
            answer_field="answer",
            id_field="unique_id",
        ),
        DatasetRecipe(
            "dapo-math-17k",
            "BytedTsinghua-SIA/DAPO-Math-17k",
            "DAPO's 17k integer-answer competition problems (duplicates in the hub file are dropped).",
            row_fn=_dapo_row,
            fields=("prompt", "reward_model"),
            dedupe=True,
        ),
        DatasetRecipe(
            "aime24",
            "HuggingFaceH4/aime_2024",
            "AIME 2024 I and II (30 problems).",
            problem_field="problem",
            answer_field="answer",
            id_field="id",
        ),
        DatasetRecipe(
            "aime25",
            "math-ai/aime25",
            "AIME 2025 I and II (30 problems).",
            split="test",
            problem_field="problem",
            answer_field="answer",
            id_field="id",
        ),
        DatasetRecipe(
            "amc23",
            "math-ai/amc23",
            "AMC 2023 (40 problems).",
            split="test",
            problem_field="question",
            answer_field="answer",
            id_field="id",
        ),
        DatasetRecipe(
            "minerva",
            "math-ai/minervamath",
            "Minerva Math / OCWCourses (272 problems).",
            split="test",
            problem_field="question",
            answer_field="answer",
        ),
        DatasetRecipe(
            "olympiadbench",
            "math-ai/olympiadbench",
            "OlympiadBench English text-only math, open-ended (675 problems).",
            split="test",
            row_fn=_olympiad_row,
            fields=("question", "final_answer"),
        ),
        DatasetRecipe(
            "skywork-or1-math",
            "Skywork/Skywork-OR1-RL-Data",
            "Skywork-OR1 RL data, math split (about 105k problems).",
            split="math",
            row_fn=_skywork_row,
            fields=("prompt", "reward_model"),
        ),
    )
}


# The code recipes (mbpp, humaneval, livecodebench, deepcoder) add themselves to DATASETS.
import sfpo.code_data  # noqa: E402,F401


def get_recipe(name: str) -> DatasetRecipe:
    """The recipe called ``name``; ``ValueError`` listing the known names otherwise."""
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}") from None


def format_prompt(problem: str, instruction: str | None = DEFAULT_INSTRUCTION, chat: bool = True) -> Any:
    """The paper's prompt for one problem: a one-message user chat, or the plain string when ``chat`` is
    False. The instruction follows the problem after a space, as in verl's preprocessing."""
    text = problem.strip()
    if instruction:
        text = f"{text} {instruction.strip()}"
    return [{"role": "user", "content": text}] if chat else text


# ---------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------

_LOCAL_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
_OFFLINE_LOCK = threading.Lock()


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


@contextlib.contextmanager
def _respect_offline_env():
    """Honour HF_HUB_OFFLINE / HF_DATASETS_OFFLINE set after the libraries were imported.

    ``datasets`` and ``huggingface_hub`` read the variables once, at import, and otherwise spend about
    20 s in retries before failing without a network; their module flags are read at call time, so they
    are switched on for the duration of the load.
    """
    if not (_env_true("HF_HUB_OFFLINE") or _env_true("HF_DATASETS_OFFLINE")):
        yield
        return
    import datasets.config
    import huggingface_hub.constants as hub_constants

    with _OFFLINE_LOCK:
        saved = (datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE)
        datasets.config.HF_HUB_OFFLINE = hub_constants.HF_HUB_OFFLINE = True
        try:
            yield
        finally:
            datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved


def _hub_error(recipe: DatasetRecipe, split: str, exc: BaseException) -> DatasetUnavailableError:
    offline = _env_true("HF_HUB_OFFLINE") or _env_true("HF_DATASETS_OFFLINE")
    why = "offline mode is on (HF_HUB_OFFLINE)" if offline else "the Hugging Face Hub could not be reached"
    return DatasetUnavailableError(
        f"could not load dataset {recipe.name!r} ({recipe.hub_id}, split {split!r}): {why} and no cached copy "
        f"was found ({type(exc).__name__}: {exc}).\n"
        f"Pass a local copy with the hub copy's fields instead (.jsonl, .json or .parquet; fields: "
        f"{', '.join(recipe.required_fields())}): `--data-files {recipe.name}=path/to/{recipe.name}.jsonl` for "
        f"sfpo eval, `data_files: {{{recipe.name}: path/to/{recipe.name}.jsonl}}` under a recipe's dataset: or "
        f"eval:, or load_dataset_recipe({recipe.name!r}, data_files='path/to/{recipe.name}.jsonl') in Python."
    )


def _is_offline_error(exc: BaseException) -> bool:
    """Errors that mean "cannot reach or find it on the hub", as opposed to bad arguments."""
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return True  # includes FileNotFoundError, DatasetNotFoundError and LocalEntryNotFoundError
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(
        names
        & {
            "DatasetNotFoundError",
            "LocalEntryNotFoundError",
            "OfflineModeIsEnabled",
            "HfHubHTTPError",
            "HTTPError",
            "TransportError",
            "RequestError",
        }
    )


def _local_files(data_files: Any) -> list[str]:
    items = [data_files] if isinstance(data_files, (str, os.PathLike)) else list(data_files)
    files: list[str] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _LOCAL_BUILDERS)
            if not found:
                raise FileNotFoundError(
                    f"no .jsonl, .json or .parquet files in folder {str(path)!r} (data_files)"
                )
            files.extend(str(p) for p in found)
        elif path.is_file():
            if path.suffix.lower() not in _LOCAL_BUILDERS:
                raise ValueError(
                    f"data file {str(path)!r} has an unsupported extension; use .jsonl, .json or .parquet"
                )
            files.append(str(path))
        else:
            raise FileNotFoundError(f"data file not found: {str(path)!r} (data_files)")
    if not files:
        raise ValueError("data_files is empty")
    return files


def _load_local(data_files: Any, split: str, cache_dir: str | None):
    import datasets

    if isinstance(data_files, Mapping):
        if split not in data_files:
            raise ValueError(f"data_files has splits {sorted(data_files)}, not the requested split {split!r}")
        data_files = data_files[split]
    files = _local_files(data_files)
    builders = {_LOCAL_BUILDERS[Path(f).suffix.lower()] for f in files}
    if len(builders) > 1:
        raise ValueError(f"data_files mixes JSON and Parquet files: {files}")
    return datasets.load_dataset(builders.pop(), data_files=files, split="train", cache_dir=cache_dir), files


def _check_fields(ds, recipe: DatasetRecipe, source: str) -> None:
    needed = recipe.required_fields()
    missing = [f for f in needed if f not in ds.column_names]
    if missing:
        raise ValueError(
            f"{source} cannot be read as dataset {recipe.name!r}: it lacks the field(s) {missing}. "
            f"The recipe needs {list(needed)} (the {recipe.hub_id} schema); its fields are "
            f"{sorted(ds.column_names)}."
        )


def _first_unique_rows(ds, recipe: DatasetRecipe, limit: int | None) -> list[int]:
    """Indices of the first row of each distinct problem (stops early once ``limit`` are found)."""
    seen: set[str] = set()
    keep: list[int] = []
    for i, row in enumerate(ds.select_columns(list(recipe.required_fields()))):
        problem = recipe.convert(row)[0]
        key = " ".join(problem.split()) if isinstance(problem, str) else None
        if key and key not in seen:
            seen.add(key)
            keep.append(i)
            if limit is not None and len(keep) >= limit:
                break
    return keep


def _output_features(chat: bool):
    from datasets import Features, Value

    text = Value("string")
    prompt = [{"role": text, "content": text}] if chat else text
    return Features({"prompt": prompt, "answer": text, "problem": text, "id": text})


def load_dataset_recipe(
    name: str,
    split: str | None = None,
    data_files: Any = None,
    limit: int | None = None,
    tokenizer: Any = None,
    chat: bool | str = "auto",
    instruction: str | None = DEFAULT_INSTRUCTION,
    cache_dir: str | None = None,
):
    """Load recipe ``name`` as a dataset with ``prompt``, ``answer``, ``problem`` and ``id`` columns.

    ``split`` defaults to the recipe's split (it picks the entry of a ``{split: files}`` ``data_files``
    dict; plain local files are one split). ``data_files`` loads local JSONL/JSON/Parquet files or folders
    instead of the hub. ``limit`` keeps the first rows. ``chat``: True gives conversational prompts,
    False plain strings, ``"auto"`` chat when ``tokenizer`` has a chat template (and when no tokenizer is
    given). Rows without a problem or a gold answer are dropped.

    Raises ``ValueError`` (unknown name, bad arguments, local rows lacking the recipe's fields),
    ``FileNotFoundError`` (missing local path) and :class:`DatasetUnavailableError` (hub unreachable or
    offline, and nothing cached).
    """
    recipe = get_recipe(name)
    if chat not in (True, False, "auto"):
        raise ValueError(f"chat must be True, False or 'auto', got {chat!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer or None, got {limit!r}")
    if chat == "auto":
        chat = tokenizer is None or bool(getattr(tokenizer, "chat_template", None))
    split = split or recipe.split

    if data_files is not None:
        ds, files = _load_local(data_files, split, cache_dir)
        source = files[0] if len(files) == 1 else f"data_files {files}"
    else:
        import datasets

        try:
            with _respect_offline_env():
                ds = datasets.load_dataset(recipe.hub_id, recipe.config, split=split, cache_dir=cache_dir)
            source = f"{recipe.hub_id} ({split})"
        except Exception as exc:
            if not _is_offline_error(exc):
                raise
            if recipe.packaged is None or split != recipe.split:
                raise _hub_error(recipe, split, exc) from exc
            try:
                ds = recipe.packaged()
            except ImportError as missing:
                raise DatasetUnavailableError(f"{_hub_error(recipe, split, exc)}\nOr: {missing}.") from missing
            source = f"the packaged copy of {recipe.name}"
            logger.info("%s: the hub is unreachable; using %s (%d rows)", recipe.name, source, len(ds))
    _check_fields(ds, recipe, source)

    if recipe.dedupe:
        ds = ds.select(_first_unique_rows(ds, recipe, limit))
    elif limit is not None:
        ds = ds.select(range(min(limit, len(ds))))

    if recipe.kind == "code":
        from sfpo.code_data import CODE_INSTRUCTION, code_rows

        return code_rows(recipe, ds, split, chat, CODE_INSTRUCTION if instruction == DEFAULT_INSTRUCTION else instruction)

    def to_row(row: Mapping[str, Any], idx: int) -> dict[str, Any]:
        problem, gold, row_id = recipe.convert(row)
        problem = problem.strip() if isinstance(problem, str) else ""
        answer = normalize_gold(gold)
        if row_id is None or row_id == "":
            row_id = f"{split}-{idx}"
        return {
            "prompt": format_prompt(problem, instruction, chat=chat),
            "answer": answer,
            "problem": problem,
            "id": f"{recipe.name}-{row_id}",
        }

    n_before = len(ds)
    ds = ds.map(
        to_row,
        with_indices=True,
        remove_columns=ds.column_names,
        features=_output_features(chat),  # explicit: otherwise a float "answer" column (amc23) stays float
        desc=f"formatting {recipe.name}",
    )
    ds = ds.filter(lambda row: bool(row["problem"]) and bool(row["answer"]))
    if len(ds) < n_before:
        logger.warning("%s: dropped %d rows without a problem or a gold answer", source, n_before - len(ds))
    return ds
