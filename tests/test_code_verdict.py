"""How verdicts are made: the tests run as written in their own sandbox and the program is called across the
wire; one correct (and one wrong) program per test shape; extraction in linear time."""

from __future__ import annotations

import json
import random
import re
import time

from sfpo.code.cases import functional_tests
from sfpo.code.reward import (
    MAX_COMPLETION_CHARS,
    code_accuracy,
    code_accuracy_partial,
    extract_program,
    make_code_accuracy,
    parse_tests,
    shape_of_tests,
)


def fenced(code: str) -> str:
    return f"Solution:\n```python\n{code}\n```\n"


ADD = fenced("def add(a, b):\n    return a + b")
ADD_ASSERTS = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\n"
ADD_LOOP = "for a, b, s in [(2, 3, 5), (-1, 1, 0)]:\n    assert add(a, b) == s\n"


def test_shapes_of_each_kind_of_tests():
    cases = [{"input": "1\n", "output": "1\n"}]
    spec = {"fn_name": "add", "inputs": [[1, 2]], "outputs": [3]}
    assert shape_of_tests(cases) == shape_of_tests(json.dumps(cases)) == "stdin_stdout"
    for tests in (ADD_ASSERTS, ADD_LOOP, spec, json.dumps(spec), "if True:\n    assert add(1, 1) == 2\n"):
        assert shape_of_tests(tests) == "calls"
    assert shape_of_tests("") is None and shape_of_tests({"fn_name": "add"}) is None
    assert parse_tests(json.dumps(spec)) == {"mode": "functional", "fn_name": "add", "inputs": [[1, 2]], "outputs": [3]}
    for bad in (
        {"fn_name": "1x", "inputs": [[1]], "outputs": [1]},
        {"fn_name": "f", "inputs": [1], "outputs": [1]},
        {"fn_name": "f", "inputs": [[1]], "outputs": [1, 2]},
    ):
        assert functional_tests(bad) is None


def test_the_reward_logs_no_in_process_fraction():
    logged = []
    make_code_accuracy()([ADD, ADD], tests=[ADD_ASSERTS, ADD_LOOP], log_metric=lambda k, v: logged.append(k))
    assert "code/in_process_fraction" not in logged


# ------------------------------------------------------------------------------------------------------
# One correct and one wrong program per shape
# ------------------------------------------------------------------------------------------------------


def test_each_test_shape_scores_a_correct_program_1_and_a_wrong_one_0():
    stdio = [{"input": "2 3\n", "output": "5\n"}]
    read_add = fenced("a, b = map(int, input().split())\nprint(a + b)")
    read_sub = fenced("a, b = map(int, input().split())\nprint(a - b)")
    sub = fenced("def add(a, b):\n    return a - b")
    rows = [
        (read_add, read_sub, stdio),
        (ADD, sub, ADD_ASSERTS),
        (ADD, sub, ADD_LOOP),
        (ADD, sub, {"fn_name": "add", "inputs": [[2, 3], [-1, 1]], "outputs": [5, 0]}),
    ]
    completions = [r for right, wrong, _ in rows for r in (right, wrong)]
    tests = [t for _, _, t in rows for _ in (0, 1)]
    assert code_accuracy(completions, tests=tests) == [1.0, 0.0] * len(rows)


def test_functional_specs_call_a_solution_method_or_a_function():
    spec = json.dumps(
        {"fn_name": "twoSum", "inputs": [[[2, 7, 11], 9], [[3, 3], 6]], "outputs": [[0, 1], [0, 1]]}
    )
    method = fenced(
        "class Solution:\n"
        "    def twoSum(self, nums, target):\n"
        "        seen = {}\n"
        "        for i, x in enumerate(nums):\n"
        "            if target - x in seen:\n"
        "                return (seen[target - x], i)\n"  # a tuple: LiveCodeBench's runner accepts it as a list
        "            seen[x] = i"
    )
    function = fenced("def twoSum(nums, target):\n    return [0, 1]")
    wrong = fenced("def twoSum(nums, target):\n    return [1, 0]")
    assert code_accuracy([method, function, wrong], tests=[spec] * 3) == [1.0, 1.0, 0.0]


def test_results_are_compared_by_the_tests_own_python_with_tolerance_only_where_stated():
    exact = "assert add(0.1, 0.2) == 0.3\n"
    tolerant = "assert abs(add(0.1, 0.2) - 0.3) < 1e-9\n"
    isclose = "import math\nassert math.isclose(add(0.1, 0.2), 0.3)\n"
    assert code_accuracy([ADD] * 3, tests=[exact, tolerant, isclose]) == [0.0, 1.0, 1.0]
    truth = "assert is_even(4) == True\nassert is_even(3) == False\n"
    as_int = fenced("def is_even(n):\n    return int(n % 2 == 0)")  # 1 == True, as the test's Python has it
    as_bool = fenced("def is_even(n):\n    return n % 2 == 0")
    as_str = fenced("def is_even(n):\n    return str(n % 2 == 0)")
    assert code_accuracy([as_int, as_bool, as_str], tests=[truth] * 3) == [1.0, 1.0, 0.0]
    pair = "assert pair(1) == [1, 1]\n"
    assert code_accuracy(
        [fenced("def pair(x):\n    return (x, x)"), fenced("def pair(x):\n    return [x, x]")],
        tests=[pair] * 2,
    ) == [0.0, 1.0]


def test_a_result_that_is_not_plain_data_fails_the_call():
    tests = "assert seq(3) == [0, 1, 2]\nassert len(seq(2)) == 2\n"
    as_list = fenced("def seq(n):\n    return list(range(n))")
    as_range = fenced("def seq(n):\n    return range(n)")  # == [0, 1, 2] is False in Python too
    as_subclass = fenced("class L(list):\n    pass\ndef seq(n):\n    return L(range(n))")
    assert code_accuracy([as_list, as_range, as_subclass], tests=[tests] * 3) == [1.0, 0.0, 0.0]


def test_partial_scores_count_asserts_cases_and_test_functions():
    half = fenced("def add(a, b):\n    return 5")
    assert code_accuracy_partial([half, half], tests=[ADD_ASSERTS, ADD_LOOP]) == [0.5, 0.5]
    assert code_accuracy([half, half], tests=[ADD_ASSERTS, ADD_LOOP]) == [0.0, 0.0]
    spec = {"fn_name": "add", "inputs": [[2, 3], [-1, 1]], "outputs": [5, 0]}
    unit = (
        "import unittest\nclass T(unittest.TestCase):\n"
        "    def test_a(self):\n        self.assertEqual(add(2, 3), 5)\n"
        "    def test_b(self):\n        self.assertEqual(add(-1, 1), 0)\n"
    )
    assert code_accuracy_partial([half, half], tests=[spec, unit]) == [0.5, 0.5]


def test_a_correct_program_using_introspective_standard_modules_passes():
    # namedtuple, TypeVar and Enum look at their caller's frame (which issue 20's hardened runner refused)
    program = fenced(
        "import collections, dataclasses, enum, functools, heapq, itertools, re, threading, typing\n"
        "T = typing.TypeVar('T')\n"
        "Pair = collections.namedtuple('Pair', 'a b')\n"
        "Color = enum.Enum('Color', 'RED GREEN')\n"
        "@dataclasses.dataclass\n"
        "class Box:\n"
        "    v: int\n"
        "@functools.lru_cache(None)\n"
        "def add(a, b):\n"
        "    t = threading.Thread(target=lambda: None)\n"
        "    t.start(); t.join()\n"
        "    return Box(Pair(a, b).a).v + b + len(re.findall('x', 'x')) - 1 + heapq.nsmallest(1, [0])[0]"
    )
    assert code_accuracy([program], tests=[ADD_LOOP]) == [1.0]


# ------------------------------------------------------------------------------------------------------
# Extraction: linear time, same answers as before
# ------------------------------------------------------------------------------------------------------

_OLD_FENCE_RE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)```", re.DOTALL)
_OLD_OPEN_FENCE_RE = re.compile(r"```[ \t]*[\w+#.-]*[^\n]*\n")


def _old_extract(text: str) -> str:
    """The regular-expression extraction this replaced (quadratic on a fence followed by a long line)."""
    if not text:
        return ""
    blocks = list(_OLD_FENCE_RE.finditer(text))
    tail_start = blocks[-1].end() if blocks else 0
    opened = list(_OLD_OPEN_FENCE_RE.finditer(text, tail_start))
    if opened:
        return text[opened[-1].end() :].strip("\n")
    if blocks:
        return blocks[-1].group(2).strip("\n")
    return text.strip("\n")


def test_extraction_agrees_with_the_regular_expressions_it_replaced():
    rng = random.Random(0)
    pieces = ["```", "`", "\n", "python", " ", "x = 1", "``", "\n\n", "py\n"]
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 14)))
        assert extract_program(text) == _old_extract(text), repr(text)


def test_extraction_of_adversarial_completions_returns_within_a_second():
    n = MAX_COMPLETION_CHARS - 10
    texts = [
        "```" + "a" * n,  # the 16-23 s case at 64k characters with the regular expressions
        "```python\n" + "a" * n,
        "```" * (n // 3),
        "```\n" + "`" * (n - 4),
        "x```" + " " * n,
        ("```py\n" + "a" * 50 + "```") * (n // 60),
    ]
    for text in texts:
        started = time.monotonic()
        extract_program(text)
        assert time.monotonic() - started < 1.0  # generous: milliseconds in practice
    too_long = "```python\ndef add(a, b):\n    return a + b\n```" + " " * MAX_COMPLETION_CHARS
    assert extract_program(too_long) == ""
    assert code_accuracy([too_long], tests=[ADD_ASSERTS]) == [0.0]
