"""Named math dataset recipes, loaded from the Hugging Face Hub or from local files with the same mapping.

Every recipe yields a :class:`datasets.Dataset` with four columns:

- ``prompt``: the problem followed by the answer instruction (the paper's template, no system prompt),
  either as a conversational list ``[{"role": "user", "content": ...}]`` that TRL renders with the chat
  template, or as the plain formatted string for base models;
- ``answer``: the gold answer, normalized by :func:`sfpo.math.reward.normalize_gold` (what the rewards read);
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

Code recipes (``mbpp``, ``humaneval``, ``livecodebench``, ``deepcoder``; :mod:`sfpo.code.data`) load the same
way and give ``prompt``, ``tests``, ``problem`` and ``id`` instead (``tests`` is what ``code_accuracy`` reads).

Local files: ``data_files=`` takes a ``.jsonl``/``.json``/``.parquet`` file, a folder of them, a list of
either, or a ``{split: files}`` dict; the rows must have the hub copy's fields (same mapping). Loading itself is
:func:`sfpo.common.datasets.load_recipe`; by name, :func:`sfpo.app.catalog.load_dataset_recipe`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from sfpo.common.datasets import DEFAULT_INSTRUCTION, DatasetRecipe, format_rows
from sfpo.common.text import extract_boxed
from sfpo.math.reward import normalize_gold

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_INSTRUCTION", "MATH_DATASETS", "format_prompt", "math_rows"]


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


def format_prompt(problem: str, instruction: str | None = DEFAULT_INSTRUCTION, chat: bool = True) -> Any:
    """The paper's prompt for one problem: a one-message user chat, or the plain string when ``chat`` is
    False. The instruction follows the problem after a space, as in verl's preprocessing."""
    text = problem.strip()
    if instruction:
        text = f"{text} {instruction.strip()}"
    return [{"role": "user", "content": text}] if chat else text


def math_rows(recipe: DatasetRecipe, ds, split: str, chat: bool, instruction: str | None, source: str):
    """The loaded hub/local rows of a math recipe as ``prompt``, ``answer``, ``problem``, ``id``."""

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

    return format_rows(recipe, ds, to_row, "answer", chat, source, "a problem or a gold answer")


MATH_DATASETS: dict[str, DatasetRecipe] = {
    r.name: r
    for r in (
        DatasetRecipe(
            "gsm8k",
            "openai/gsm8k",
            "Grade-school word problems (7.5k train / 1.3k test); gold is the number after ####.",
            config="main",
            problem_field="question",
            answer_field="answer",
            rows=math_rows,
        ),
        DatasetRecipe(
            "math",
            "DigitalLearningGmbH/MATH-lighteval",
            "Hendrycks MATH, lighteval copy (7.5k train / 5k test); gold is the solution's last \\boxed.",
            config="default",
            row_fn=_math_row,
            fields=("problem", "solution"),
            rows=math_rows,
        ),
        DatasetRecipe(
            "math500",
            "HuggingFaceH4/MATH-500",
            "MATH-500 evaluation subset of the MATH test set.",
            split="test",
            problem_field="problem",
            answer_field="answer",
            id_field="unique_id",
            rows=math_rows,
        ),
        DatasetRecipe(
            "dapo-math-17k",
            "BytedTsinghua-SIA/DAPO-Math-17k",
            "DAPO's 17k integer-answer competition problems (duplicates in the hub file are dropped).",
            row_fn=_dapo_row,
            fields=("prompt", "reward_model"),
            dedupe=True,
            rows=math_rows,
        ),
        DatasetRecipe(
            "aime24",
            "HuggingFaceH4/aime_2024",
            "AIME 2024 I and II (30 problems).",
            problem_field="problem",
            answer_field="answer",
            id_field="id",
            rows=math_rows,
        ),
        DatasetRecipe(
            "aime25",
            "math-ai/aime25",
            "AIME 2025 I and II (30 problems).",
            split="test",
            problem_field="problem",
            answer_field="answer",
            id_field="id",
            rows=math_rows,
        ),
        DatasetRecipe(
            "amc23",
            "math-ai/amc23",
            "AMC 2023 (40 problems).",
            split="test",
            problem_field="question",
            answer_field="answer",
            id_field="id",
            rows=math_rows,
        ),
        DatasetRecipe(
            "minerva",
            "math-ai/minervamath",
            "Minerva Math / OCWCourses (272 problems).",
            split="test",
            problem_field="question",
            answer_field="answer",
            rows=math_rows,
        ),
        DatasetRecipe(
            "olympiadbench",
            "math-ai/olympiadbench",
            "OlympiadBench English text-only math, open-ended (675 problems).",
            split="test",
            row_fn=_olympiad_row,
            fields=("question", "final_answer"),
            rows=math_rows,
        ),
        DatasetRecipe(
            "skywork-or1-math",
            "Skywork/Skywork-OR1-RL-Data",
            "Skywork-OR1 RL data, math split (about 105k problems).",
            split="math",
            row_fn=_skywork_row,
            fields=("prompt", "reward_model"),
            rows=math_rows,
        ),
    )
}
