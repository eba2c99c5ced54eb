"""How verdicts are made: tests parsed on the host into calls and expected values, compared type-strictly;
one correct (and one wrong) program per test shape; extraction in linear time."""

from __future__ import annotations

import json
import random
import re
import time

import pytest

from sfpo.code.cases import CallTests, functional_tests, in_process_modules, parse_call_tests, strict_equal
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


# ------------------------------------------------------------------------------------------------------
# Type-strict comparison on the host
# ------------------------------------------------------------------------------------------------------


def test_strict_equal_tells_apart_what_python_equality_conflates():
    assert not strict_equal(True, 1) and not strict_equal(1, True) and not strict_equal(False, 0)
    assert not strict_equal([1, 2], (1, 2)) and not strict_equal({1}, frozenset({1}))
    assert not strict_equal({"a": True}, {"a": 1}) and not strict_equal([True], [1.0])
    assert not strict_equal("1", 1) and not strict_equal(None, 0) and not strict_equal(b"a", "a")
    # ints and floats compare by value, as the test's own == does (MBPP writes == 240 for 240.0)
    assert strict_equal(240, 240.0) and strict_equal([1, (2, {3: "x"})], [1.0, (2, {3: "x"})])
    assert strict_equal({(1, 2): [True]}, {(1, 2): [True]}) and strict_equal(set(), set())
    # tuples count as lists only for expected values that came from JSON (LiveCodeBench)
    assert strict_equal((1, [2, 3]), [1, (2, 3)], json_lists=True) and not strict_equal((1,), [1])
    assert not strict_equal(0.1 + 0.2, 0.3)  # no tolerance unless the test states one


# ------------------------------------------------------------------------------------------------------
# Parsing: which tests become calls, and what stays on the host
# ------------------------------------------------------------------------------------------------------


def test_asserts_become_calls_and_expected_values_stay_on_the_host():
    secret = 987654321987
    tests = (
        "import math\n"
        f"assert f(1) == {secret}\n"
        f"assert math.isclose(f(2), {secret}.5, rel_tol=1e-9)\n"
        f"assert abs(f(3) - {secret}) < 1e-6\n"
        f"assert set(f(4)) == set(({secret}, 2))\n"
        f"assert f(5) in [{secret}, 7] and f(6) is not None\n"
        f"EXPECTED = [{secret}]\n"
    )
    parsed = parse_call_tests(tests.replace(f"EXPECTED = [{secret}]\n", ""))
    assert isinstance(parsed, CallTests) and len(parsed.calls) == 6 and len(parsed.checks) == 5
    payload = json.dumps(parsed.payload("def f(x): return x"))
    assert str(secret) not in payload  # only the calls go into the sandbox
    assert [c["expr"] for c in parsed.calls] == ["f(1)", "f(2)", "f(3)", "set(f(4))", "f(5)", "f(6)"]
    # an expected value held in a name stays out too; an input held in a name goes in
    named = parse_call_tests(f"EXPECTED = {secret}\nXS = [1, 2]\nassert f(XS) == EXPECTED\n")
    assert named.setup == ("XS = [1, 2]",) and str(secret) not in json.dumps(named.payload(""))


def test_humaneval_check_functions_bind_the_candidate():
    tests = (
        "METADATA = {'author': 'x'}\n\n"
        "def check(candidate):\n"
        "    import math\n"
        "    assert candidate([1.0, 2.0, 3.0]) == 2.0\n"
        "    assert abs(candidate([1.0, 2.0]) - 1.5) < 1e-6\n"
        "    assert True, 'always'\n"
        "\ncheck(mean)\n"
    )
    parsed = parse_call_tests(tests)
    assert parsed.frames[1]["bind"] == {"candidate": "mean"} and parsed.frames[1]["setup"] == ["import math"]
    right = fenced("def mean(xs):\n    return sum(xs) / len(xs)")
    wrong = fenced("def mean(xs):\n    return sum(xs) / len(xs) + 1e-3")
    assert code_accuracy([right, wrong], tests=[tests] * 2) == [1.0, 0.0]


@pytest.mark.parametrize(
    "tests",
    [
        ADD_LOOP,
        "if True:\n    assert add(1, 1) == 2\n",
        "def check(candidate):\n    for i in range(3):\n        assert candidate(i, i) == 2 * i\ncheck(add)\n",
        "assert add(1, 2) == 3\nx = 5\nassert add(x, 1) == 6\n",  # set-up after an assert
        "assert 0 < add(1, 2) < 4\n",  # chained comparison
        "print('hi')\nassert add(1, 1) == 2\n",
        "assert add(1 +, 2) == 3\n",  # not Python
    ],
)
def test_tests_the_parser_does_not_take_run_in_process(tests):
    assert parse_call_tests(tests) is None
    assert shape_of_tests(tests) == "in_process"


def test_shapes_of_each_kind_of_tests():
    cases = [{"input": "1\n", "output": "1\n"}]
    spec = {"fn_name": "add", "inputs": [[1, 2]], "outputs": [3]}
    assert shape_of_tests(cases) == shape_of_tests(json.dumps(cases)) == "stdin_stdout"
    assert shape_of_tests(ADD_ASSERTS) == shape_of_tests(spec) == shape_of_tests(json.dumps(spec)) == "calls"
    assert shape_of_tests(ADD_LOOP) == "in_process"
    assert shape_of_tests("") is None and shape_of_tests({"fn_name": "add"}) is None
    assert isinstance(parse_tests(json.dumps(spec)), CallTests)
    for bad in (
        {"fn_name": "1x", "inputs": [[1]], "outputs": [1]},
        {"fn_name": "f", "inputs": [1], "outputs": [1]},
    ):
        assert functional_tests(bad) is None


def test_in_process_tests_get_the_standard_modules_they_use():
    modules, free = in_process_modules(
        "import math, os.path\nfrom collections import Counter\nfor x in range(2):\n    assert re.match('a', f(x))\n"
    )
    assert modules == ("collections", "math", "os.path") and free == ("re",)
    assert in_process_modules("import sys\nassert sys.maxsize\n") == ((), ())  # one per interpreter


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


def test_results_are_compared_type_strictly_with_tolerance_only_where_stated():
    exact = "assert add(0.1, 0.2) == 0.3\n"
    tolerant = "assert abs(add(0.1, 0.2) - 0.3) < 1e-9\n"
    isclose = "import math\nassert math.isclose(add(0.1, 0.2), 0.3)\n"
    assert code_accuracy([ADD] * 3, tests=[exact, tolerant, isclose]) == [0.0, 1.0, 1.0]
    truth = "assert is_even(4) == True\nassert is_even(3) == False\n"
    as_int = fenced("def is_even(n):\n    return int(n % 2 == 0)")  # 1 == True in Python; not here
    as_bool = fenced("def is_even(n):\n    return n % 2 == 0")
    assert code_accuracy([as_int, as_bool], tests=[truth] * 2) == [0.0, 1.0]
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


def test_partial_scores_count_checks_for_parsed_tests():
    half = fenced("def add(a, b):\n    return 5")
    assert code_accuracy_partial([half], tests=[ADD_ASSERTS]) == [0.5]
    assert code_accuracy([half], tests=[ADD_ASSERTS]) == [0.0]


def test_the_in_process_fraction_is_logged_per_batch():
    logged = []
    reward = make_code_accuracy()
    reward(
        [ADD, ADD, ADD, "x"],
        tests=[ADD_ASSERTS, ADD_LOOP, ADD_LOOP, ADD_LOOP],
        log_metric=lambda k, v: logged.append((k, v)),
    )
    assert logged == [("code/in_process_fraction", 0.75)]


def test_a_correct_program_using_introspective_standard_modules_passes_in_process():
    # namedtuple, TypeVar and Enum look at their caller's frame; the hardened runner refuses frames but the
    # standard library takes that as "no frames here"
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
