"""Issue 33's six classes of wrong verdicts, hostile and correct programs alike.

Each hostile program scores 0 with a right program on the same tests scoring 1 in the same batch; each correct
program scores 1. The cases are written from the classes' descriptions, not from the issue's own (kept
elsewhere), so what is tested is the class: the tests run as written in their own sandbox, the program in
another, and every call crosses as data.
"""

from __future__ import annotations

import resource
import time

import pytest

from sfpo.code import sandbox
from sfpo.code.reward import code_accuracy, make_code_accuracy

ISOLATED = sandbox.mode() == "bwrap"


def fenced(code: str) -> str:
    return f"```python\n{code}\n```"


def judge(tests: str, right: str, hostile: dict[str, str]) -> None:
    """The right program scores 1 and every hostile one 0, in one batch."""
    names = ["right", *hostile]
    programs = [right, *hostile.values()]
    scores = code_accuracy([fenced(p) for p in programs], tests=[tests] * len(programs))
    assert dict(zip(names, scores)) == {"right": 1.0, **{n: 0.0 for n in hostile}}, tests


# ------------------------------------------------------------------------------------------------------
# 1. Judging around a call ran where the program could reach it
# ------------------------------------------------------------------------------------------------------

ADD = "def add(a, b):\n    return a + b\n"
WRONG_ADD = "def add(a, b):\n    return 42.0\n"
JUDGE_PATCHES = {  # each makes a judge say "equal" or "close" whatever it is given, in the program's process
    "builtins": (
        "import builtins\n"
        "builtins.abs = lambda x: 0\nbuiltins.isinstance = lambda *a: True\nbuiltins.all = lambda *a: True\n"
        "builtins.round = lambda *a, **k: 0.3\n"
    ),
    "math_cmath": "import math, cmath\nmath.isclose = cmath.isclose = lambda *a, **k: True\n",
    "operator": "import operator\noperator.eq = operator.ge = operator.le = lambda *a: True\n",
    "re": (
        "import re\n"
        "class M:\n    def group(self, *a): return '5'\n    def __bool__(self): return True\n"
        "re.fullmatch = re.match = re.search = lambda *a, **k: M()\n"
    ),
    "modules": (  # a fresh module imported by the tests would take these from sys.modules
        "import sys, types\n"
        "for name in ('math', 'cmath', 'operator', 're', 'unittest'):\n"
        "    fake = types.ModuleType(name)\n"
        "    fake.__getattr__ = lambda attr: (lambda *a, **k: True)\n"
        "    sys.modules[name] = fake\n"
    ),
}
FORGED_VALUES = {  # values that claim to equal, be close to or contain anything
    "eq": (
        "class Anything(float):\n"
        "    def __eq__(self, o): return True\n    def __ne__(self, o): return False\n"
        "    def __sub__(self, o): return 0.0\n    def __rsub__(self, o): return 0.0\n"
        "    def __abs__(self): return 0.0\n    def __lt__(self, o): return True\n    def __le__(self, o): return True\n"
        "    def __gt__(self, o): return True\n    def __ge__(self, o): return True\n"
        "    def __contains__(self, o): return True\n    def __bool__(self): return True\n"
        "    __hash__ = float.__hash__\n"
        "def add(a, b):\n    return Anything(42.0)\n"
    ),
    "str_subclass": (
        "class S(str):\n    def __eq__(self, o): return True\n    __hash__ = str.__hash__\n"
        "def add(a, b):\n    return S('x')\n"
    ),
}
CLASS_1_TESTS = [
    "assert abs(0.3 - add(0.1, 0.2)) < 1e-9\nassert abs(add(2, 3) - 5) < 1e-9\n",  # flipped
    "s = add(2, 3)\nassert abs(s - 5) <= 1e-9 * abs(5)\n",  # relative, through a name
    "import cmath\nassert cmath.isclose(add(0.1, 0.2), 0.3)\nassert cmath.isclose(add(2, 3), 5)\n",
    "import operator\nassert operator.eq(add(2, 3), 5)\nassert operator.eq(add(-1, 1), 0)\n",
    "from math import isclose as close\nassert close(add(0.1, 0.2), 0.3) and close(add(2, 3), 5)\n",
    "import re\nassert re.fullmatch(r'5', str(add(2, 3)))\nassert re.fullmatch(r'0', str(add(-1, 1)))\n",
    "def same(a, b):\n    return a == b and type(a) is type(b)\nassert same(add(2, 3), 5) and same(add(1, 1), 2)\n",
    "assert add(2, 3) in {5} and add(1, 1) in [2]\nassert not add(2, 3) != 5\n",
    "assert round(add(0.1, 0.2), 6) == 0.3 and isinstance(add(2, 3), int) and add(2, 3) == 5\n",
    "assert all(add(a, b) == a + b for a, b in [(1, 2), (3, 4)])\n",
    "import unittest\nclass T(unittest.TestCase):\n    def test_add(self):\n"
    "        self.assertAlmostEqual(add(0.1, 0.2), 0.3)\n        self.assertEqual(add(2, 3), 5)\n"
    "unittest.main()\n",
]


@pytest.mark.parametrize("tests", CLASS_1_TESTS)
def test_class_1_every_judging_operation_is_the_tests_own(tests):
    hostile = {name: patch + WRONG_ADD for name, patch in JUDGE_PATCHES.items()}
    hostile.update(FORGED_VALUES)
    judge(tests, ADD, hostile)


@pytest.mark.parametrize(
    "tests", ["assert isclose(add(0.1, 0.2), 0.3)\n", "assert math.isclose(add(0.1, 0.2), 0.3)\n"]
)
def test_class_1_judges_the_tests_borrow_from_the_programs_imports_are_the_tests_own(tests):
    # MBPP-style asserts that use the program's `import math` (or `from math import isclose`) without importing
    # it themselves: the tests get their own math.isclose, however the program rebinds or patches its copy
    imports = "import math\nfrom math import isclose\n"
    hostile = {
        "rebinds": imports + "isclose = lambda *a, **k: True\n"
        "class math:\n    isclose = staticmethod(lambda *a, **k: True)\n" + WRONG_ADD,
        "patches": imports + "math.isclose = lambda *a, **k: True\n" + WRONG_ADD,
    }
    if tests.startswith("assert math."):  # a standard module's name is the tests' own module, whatever it is bound to
        hostile["fake_module"] = "import types\nmath = types.ModuleType('math')\nmath.isclose = lambda *a, **k: True\n"
        hostile["fake_module"] += WRONG_ADD
    # (a bare `isclose` that the program defines itself, without importing it, is the program's: docs/sandbox.md)
    judge(tests, imports + ADD, hostile)


# ------------------------------------------------------------------------------------------------------
# 2. The test's Python decides, not a model of it
# ------------------------------------------------------------------------------------------------------

CLASS_2 = [
    (  # where Python raises, the test fails: `not` does not turn an error into a pass
        "assert not 4 in evens(3)\nassert not smallest([12, 15]) > 12\n",
        "def evens(n):\n    return [2 * i for i in range(n) if 2 * i < n]\ndef smallest(xs):\n    return min(xs)\n",
        {"none": "def evens(n):\n    return None\ndef smallest(xs):\n    return None\n"},
    ),
    (  # where Python accepts, the test passes: True == 1, 1.0 == 1
        "assert is_odd(3) == 1\nassert is_odd(4) == 0\nassert half(4) == 2\n",
        "def is_odd(n):\n    return n % 2 == 1\ndef half(n):\n    return n / 2\n",
        {"flipped": "def is_odd(n):\n    return n % 2 == 0\ndef half(n):\n    return n / 2\n"},
    ),
    (  # an argument sorted in place is seen sorted by the test
        "x = [3, 1, 2]\nsort_in_place(x)\nassert x == [1, 2, 3]\n",
        "def sort_in_place(xs):\n    xs.sort()\n",
        {"copy": "def sort_in_place(xs):\n    return sorted(xs)\n"},
    ),
    (  # an argument the program should leave alone is checked after the call, as it is then
        "x = [3, 1, 2]\nassert biggest(x) == 3\nassert x == [3, 1, 2]\n",
        "def biggest(xs):\n    return max(xs)\n",
        {"mutates": "def biggest(xs):\n    xs.sort()\n    return xs[-1]\n",
         "empties": "def biggest(xs):\n    m = max(xs)\n    xs.clear()\n    xs.extend([3, 1, 2, 0])\n    return m\n"},
    ),
    (  # nested containers, aliases and dicts keep their identity across the call
        "grid = [[0, 0], [0, 0]]\nrow = grid[0]\nfill(grid, 7)\nassert grid == [[7, 7], [7, 7]] and row == [7, 7]\n"
        "d = {}\ncount_into(d, 'aab')\nassert d == {'a': 2, 'b': 1}\n"
        "x = [1]\nappend_twice(x, x)\nassert x == [1, 2, 2]\n",
        "def fill(g, v):\n    for r in g:\n        for i in range(len(r)):\n            r[i] = v\n"
        "def count_into(d, s):\n    for c in s:\n        d[c] = d.get(c, 0) + 1\n"
        "def append_twice(a, b):\n    a.append(2)\n    b.append(2)\n",
        {"new_rows": "def fill(g, v):\n    g[:] = [[v] * len(r) for r in g]\n"
         "def count_into(d, s):\n    for c in s:\n        d[c] = d.get(c, 0) + 1\n"
         "def append_twice(a, b):\n    a.append(2)\n    b.append(2)\n"},
    ),
]


@pytest.mark.parametrize("tests, right, hostile", CLASS_2)
def test_class_2_the_tests_own_python_decides(tests, right, hostile):
    judge(tests, right, hostile)


# ------------------------------------------------------------------------------------------------------
# 3. Reaching the tests from the program's process
# ------------------------------------------------------------------------------------------------------

FORGE = (  # writes a passing verdict, and replies that "answer" anything, to every descriptor it has
    "import os\n"
    "def forge():\n"
    "    reply = b'[\"ok\",[],5]'\n"
    "    for fd in range(256):\n"
    "        for data in (b'V 1 1 1\\n', len(reply).to_bytes(4, 'big') + reply):\n"
    "            try:\n"
    "                os.write(fd, data)\n"
    "            except OSError:\n"
    "                pass\n"
)
CLASS_3_HOSTILE = {
    "signal_handler_frame": (
        "import os, signal, sys\n" + FORGE + WRONG_ADD
        + "def handler(signum, frame):\n"
        "    while frame is not None:\n"
        "        frame.f_globals.update(abs=lambda x: 0)\n"
        "        frame = frame.f_back\n"
        "    forge()\n"
        "signal.signal(signal.SIGALRM, handler)\nsignal.setitimer(signal.ITIMER_REAL, 0.01, 0.01)\n"
    ),
    "gc_saveall": (
        "import gc\n" + FORGE + WRONG_ADD
        + "gc.set_debug(gc.DEBUG_SAVEALL)\ngc.collect()\n"
        "for obj in gc.garbage + gc.get_objects():\n"
        "    if isinstance(obj, dict) and 'add' in obj:\n"
        "        obj['abs'] = lambda x: 0\n"
        "forge()\n"
    ),
    "subclasses_and_globals": (
        FORGE + WRONG_ADD
        + "for cls in object.__subclasses__():\n"
        "    for value in list(vars(cls).values()):\n"
        "        g = getattr(value, '__globals__', None)\n"
        "        if isinstance(g, dict):\n"
        "            g.setdefault('__builtins__', {})\n"
        "forge()\n"
    ),
    "submodules": (
        "import sys, collections.abc, importlib, json, unittest.case\n"
        "unittest.case.TestCase.assertEqual = lambda *a, **k: None\n"
        "sys.modules['json'].loads = lambda *a, **k: 5\n" + WRONG_ADD
    ),
    "replies_ahead": "import sys\n" + FORGE + WRONG_ADD + "forge()\n",
    "exits_in_the_call": "def add(a, b):\n    raise SystemExit(0)\n",
    "walks_a_callback": (
        "def add(a, b):\n"
        "    return 42.0\n"
        "def apply(f, x):\n"
        "    g = f.__globals__\n"
        "    g['__builtins__']['abs'] = lambda x: 0\n"
        "    return 42\n"
    ),
}


@pytest.mark.parametrize(
    "tests",
    [
        "for a, b in [(2, 3), (-1, 1)]:\n    assert add(a, b) == a + b\nassert abs(add(0.1, 0.2) - 0.3) < 1e-9\n",
        "import unittest\nclass T(unittest.TestCase):\n    def test_it(self):\n"
        "        self.assertEqual(add(2, 3), 5)\n        self.assertEqual(apply(lambda v: v + 1, 1), 2)\n"
        "if __name__ == '__main__':\n    unittest.main()\n",
    ],
)
def test_class_3_the_tests_process_is_out_of_the_programs_reach(tests):
    right = ADD + "def apply(f, x):\n    return f(x)\n"
    hostile = dict(CLASS_3_HOSTILE)
    if ISOLATED:  # in the fallback, kill(-1) would reach every process of this user on the machine
        hostile["kills_everything"] = "import os, signal\ndef add(a, b):\n    os.kill(-1, signal.SIGKILL)\n"
    judge(tests, right, hostile)


# ------------------------------------------------------------------------------------------------------
# 4. Decoding what the program produced costs the trainer nothing
# ------------------------------------------------------------------------------------------------------

COLLIDING = "M = (1 << 61) - 1  # every multiple of this hashes to 0\n"
CLASS_4_HOSTILE = {
    # about 1 MB of JSON: what fitted under the old 1 MiB results line, and kept the trainer busy for 40 s
    "hash_collisions": COLLIDING + "def add(a, b):\n    return {i * M for i in range(45_000)}\n",
    "collisions_in_a_callback": COLLIDING + "def add(a, b):\n    return b\ndef apply(f, x):\n"
    "    return f({i * M for i in range(200_000)})\n",
    "flood": "def add(a, b):\n    return 'x' * (60 << 20)\n",
    "malformed": (
        "import os, sys\ndef add(a, b):\n"
        "    fd = int(sys.argv[-1])\n"
        "    os.write(fd, (10).to_bytes(4, 'big') + b'[\"ok\",[],5')\n"
        "    os.write(fd, b'\\xff' * 100000)\n"
        "    return 5\n"
    ),
    "too_deep": "def add(a, b):\n    x = []\n    for _ in range(100_000):\n        x = [x]\n    return x\n",
    "oversized_length": (
        "import os, sys\ndef add(a, b):\n    os.write(int(sys.argv[-1]), (1 << 31).to_bytes(4, 'big'))\n"
        "    return 5\n"
    ),
}


def test_class_4_a_costly_or_malformed_answer_costs_its_row_its_time_and_nothing_else():
    tests = "assert add(2, 3) == 5\nassert apply(lambda v: v + 1, 1) == 2\n"
    right = fenced(ADD + "def apply(f, x):\n    return f(x)\n")
    reward = make_code_accuracy(timeout_s=4.0)
    programs = [right, *(fenced(p) for p in CLASS_4_HOSTILE.values()), right + "\n# again"]
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    scores = reward(programs, tests=[tests] * len(programs))
    after, wall = resource.getrusage(resource.RUSAGE_SELF), time.monotonic() - started
    assert scores == [1.0] + [0.0] * len(CLASS_4_HOSTILE) + [1.0]  # the batch goes on after each
    # the trainer's process only started sandboxes and read a few bytes (all its threads' CPU time together)
    assert (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime) < 3.0
    assert wall < 4.0 * len(programs) + 30


# ------------------------------------------------------------------------------------------------------
# 5. Values that are data in every benchmark's harness
# ------------------------------------------------------------------------------------------------------

CLASS_5 = [
    (
        "from collections import Counter\nassert count('aab') == Counter({'a': 2, 'b': 1})\n"
        "assert count('aab').most_common(1) == [('a', 2)]\n",
        "from collections import Counter\ndef count(s):\n    return Counter(s)\n",
        {"wrong_counts": "from collections import Counter\ndef count(s):\n    return Counter(set(s))\n"},
    ),
    (
        "d = group([('a', 1), ('a', 2), ('b', 3)])\nassert d == {'a': [1, 2], 'b': [3]}\nassert d['zzz'] == []\n",
        "from collections import defaultdict\ndef group(pairs):\n    d = defaultdict(list)\n"
        "    for k, v in pairs:\n        d[k].append(v)\n    return d\n",
        {"plain_dict": "def group(pairs):\n    d = {}\n    for k, v in pairs:\n        d.setdefault(k, []).append(v)\n"
         "    return d\n"},
    ),
    (
        "from collections import OrderedDict\nassert order('ba') == OrderedDict([('b', 0), ('a', 1)])\n",
        "from collections import OrderedDict\ndef order(s):\n    return OrderedDict((c, i) for i, c in enumerate(s))\n",
        {"sorted": "from collections import OrderedDict\n"
         "def order(s):\n    return OrderedDict(sorted((c, i) for i, c in enumerate(s)))\n"},
    ),
    (
        "p = point(1, 2)\nassert p.x == 1 and p.y == 2 and p == (1, 2)\n",
        "from collections import namedtuple\nP = namedtuple('P', 'x y')\ndef point(a, b):\n    return P(a, b)\n",
        {"swapped": "from typing import NamedTuple\nclass P(NamedTuple):\n    x: int\n    y: int\n"
         "def point(a, b):\n    return P(b, a)\n"},
    ),
    (
        "assert starts_ab('abc')\nassert not starts_ab('xab')\nassert starts_ab('abz').group() == 'ab'\n",
        "import re\ndef starts_ab(s):\n    return re.match('ab', s)\n",
        {"search": "import re\ndef starts_ab(s):\n    return re.search('ab', s)\n"},
    ),
    (
        "import math\nassert fact(2000) == math.factorial(2000)\nassert fact(2000).bit_length() > 14_300\n",
        "def fact(n):\n    out = 1\n    for i in range(2, n + 1):\n        out *= i\n    return out\n",
        {"off_by_one": "def fact(n):\n    out = 1\n    for i in range(2, n):\n        out *= i\n    return out\n"},
    ),
    (  # a main block reading stdin is not run when the program is called (it is imported)
        "assert double(4) == 8\n",
        "def double(x):\n    return 2 * x\nif __name__ == '__main__':\n    print(double(int(input())))\n",
        {"main_only": "if __name__ == '__main__':\n    def double(x):\n        return 2 * x\n"},
    ),
    (
        "import pytest\nwith pytest.raises(ValueError, match='bad'):\n    parse('x')\nassert parse('12') == 12\n",
        "def parse(s):\n    if not s.isdigit():\n        raise ValueError('bad number')\n    return int(s)\n",
        {"no_raise": "def parse(s):\n    return int(s) if s.isdigit() else None\n",
         "type_error": "def parse(s):\n    if not s.isdigit():\n        raise TypeError('bad number')\n    return int(s)\n",
         "exit": "def parse(s):\n    if not s.isdigit():\n        raise SystemExit('bad')\n    return int(s)\n",
         "not_data": "def parse(s):\n    if not s.isdigit():\n        raise ValueError('bad')\n    class N:\n        pass\n    return N()\n"},
    ),
    (  # a program's own exception class, caught by its builtin base and by its name
        "import pytest\nwith pytest.raises(ValueError):\n    check_age(-1)\n"
        "try:\n    check_age(-2)\nexcept InvalidAge as e:\n    assert 'negative' in str(e)\nelse:\n    raise AssertionError\n",
        "class InvalidAge(ValueError):\n    pass\ndef check_age(n):\n    if n < 0:\n        raise InvalidAge('negative age')\n"
        "    return n\n",
        {"other_base": "class InvalidAge(Exception):\n    pass\ndef check_age(n):\n    if n < 0:\n"
         "        raise InvalidAge('negative age')\n    return n\n"},
    ),
    (
        "import unittest\nclass TestAdd(unittest.TestCase):\n    def test_small(self):\n        self.assertEqual(add(2, 3), 5)\n"
        "    def test_float(self):\n        self.assertAlmostEqual(add(0.1, 0.2), 0.3)\nunittest.main()\n",
        ADD,
        {"wrong": "def add(a, b):\n    return a + b + (0.001 if isinstance(a, float) else 0)\n"},
    ),
    (
        "import pytest\n@pytest.mark.parametrize('a, b, s', [(2, 3, 5), (-1, 1, 0)])\ndef test_add(a, b, s):\n"
        "    assert add(a, b) == s\ndef test_approx():\n    assert add(0.1, 0.2) == pytest.approx(0.3)\n",
        ADD,
        {"wrong": "def add(a, b):\n    return a - b if a < 0 else a + b\n"},
    ),
    (  # more types: deque, bytes, bytearray, complex, frozenset, range, iterators, a design-style class
        "from collections import deque\nassert last(3) == deque([1, 2], maxlen=2)\n"
        "assert enc('hi') == b'hi' and bump(bytearray(b'a')) == bytearray(b'b')\n"
        "assert root(-4) == 2j and frozen([1, 1]) == frozenset({1})\n"
        "assert list(squares(3)) == [0, 1, 4] and list(mapped([1, 2])) == [2, 4] and upto(3) == range(3)\n"
        "s = Stack()\ns.push(1)\ns.push(2)\nassert s.pop() == 2 and len(s) == 1 and s.size == 1\n",
        "from collections import deque\nimport cmath\n"
        "def last(n):\n    return deque(range(n), maxlen=2)\ndef enc(s):\n    return s.encode()\n"
        "def bump(b):\n    return bytearray(x + 1 for x in b)\ndef root(x):\n    return cmath.sqrt(x)\n"
        "def frozen(xs):\n    return frozenset(xs)\ndef squares(n):\n    for i in range(n):\n        yield i * i\n"
        "def mapped(xs):\n    return map(lambda v: 2 * v, xs)\ndef upto(n):\n    return range(n)\n"
        "class Stack:\n    def __init__(self):\n        self.items = []\n    @property\n    def size(self):\n"
        "        return len(self.items)\n    def push(self, x):\n        self.items.append(x)\n"
        "    def pop(self):\n        return self.items.pop()\n    def __len__(self):\n        return len(self.items)\n",
        {"lists": "def last(n):\n    return list(range(n))[-2:]\n"},
    ),
]


@pytest.mark.parametrize("tests, right, hostile", CLASS_5)
def test_class_5_values_that_are_data_cross_with_their_type(tests, right, hostile):
    judge(tests, right, hostile)


def test_class_5_an_object_that_is_not_data_fails_its_call_not_the_test_process():
    # the failed call is not an exception a test can take for an answer; the test process goes on, so that a
    # partial score counts the checks after it
    tests = "try:\n    v = f(1)\nexcept Exception:\n    v = None\nassert g(1) == 1\n"
    box = fenced("class Box:\n    pass\ndef f(x):\n    return Box()\ndef g(x):\n    return x\n")
    data = fenced("def f(x):\n    return x\ndef g(x):\n    return x\n")
    assert code_accuracy([box, data], tests=[tests] * 2) == [0.0, 1.0]
    partial = "assert f(1) == 1\nassert g(1) == 1\n"
    assert make_code_accuracy(partial=True)([box], tests=[partial]) == [0.5]


# ------------------------------------------------------------------------------------------------------
# 6. stdin/stdout compared as LiveCodeBench's checker does (and strictly on request)
# ------------------------------------------------------------------------------------------------------

# the second line is all numbers (compared as numbers), the third is text (compared as text once stripped)
CLASS_6_CASES = [{"input": "1 2\n", "output": "0.5\n3 1.5\nYES\n"}, {"input": "3 4\n", "output": "0.75\n7 1.5\nYES"}]
READ = "a, b = map(int, input().split())\n"
CLASS_6_RIGHT = {
    "padded_float": READ + "print(f'{a / b:.6f}')\nprint(a + b, '1.50')\nprint('YES')\n",
    "outer_spaces": READ + "print(' ', a / b)\nprint(' ', a + b, 1.5, ' ')\nprint('  YES ')\n",
    "crlf_and_blank_lines": "import sys\n" + READ + "sys.stdout.write(f'\\n{a / b}\\r\\n{a + b} 1.5\\r\\nYES\\r\\n\\n\\n')\n",
    "exponent": READ + "print(f'{a / b:e}')\nprint(f'{a + b}.0 1.5E0')\nprint('YES')\n",
}
CLASS_6_HOSTILE = {
    "close_but_not_equal": READ + "print(a / b + 1e-9)\nprint(a + b, 1.5)\nprint('YES')\n",
    "case_of_words": READ + "print(a / b)\nprint(a + b, 1.5)\nprint('yes')\n",
    "inner_spaces_in_text": READ + "print(a / b)\nprint(a + b, 1.5)\nprint('Y ES')\n",
    "extra_line": READ + "print(a / b)\nprint(a + b, 1.5)\nprint('YES')\nprint(0)\n",
    "joined_lines": READ + "print(a / b, a + b, 1.5)\nprint('YES')\n",
    "nan": "print('NaN')\nprint('NaN NaN')\nprint('YES')\n",
}


def test_class_6_stdout_compares_as_livecodebench_does():
    programs = {**CLASS_6_RIGHT, **CLASS_6_HOSTILE}
    scores = code_accuracy([fenced(p) for p in programs.values()], tests=[CLASS_6_CASES] * len(programs))
    assert dict(zip(programs, scores)) == {
        **{n: 1.0 for n in CLASS_6_RIGHT},
        **{n: 0.0 for n in CLASS_6_HOSTILE},
    }


def test_programs_and_tests_that_end_with_exit_are_judged_on_what_they_did():
    # `exit()` is site.py's, which the sandbox's `python -S` leaves out: a right program ending with it passes
    cases = [{"input": "2 3\n", "output": "5\n"}]
    stdio = [READ + "print(a + b)\nexit()\n", READ + "print(a + b)\nquit(0)\n", READ + "print(a - b)\nexit()\n"]
    assert code_accuracy([fenced(p) for p in stdio], tests=[cases] * 3) == [1.0, 1.0, 0.0]
    tests = ["assert add(2, 3) == 5\nexit()\n", "import sys\nassert add(2, 3) == 5\nsys.exit(0)\n",
             "import sys\nassert add(2, 3) == 5\nsys.exit(1)\n"]
    assert code_accuracy([fenced(ADD)] * 3, tests=tests) == [1.0, 1.0, 0.0]


def test_class_6_the_strict_comparison_stays_available():
    strict = make_code_accuracy(stdout_compare="strict")
    exact = READ + "print(a / b)\nprint(a + b, 1.5)\nprint('YES')\n"
    programs = [exact, CLASS_6_RIGHT["padded_float"], CLASS_6_RIGHT["outer_spaces"]]
    assert strict([fenced(p) for p in programs], tests=[CLASS_6_CASES] * 3) == [1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="stdout_compare='loose' is not allowed"):
        make_code_accuracy(stdout_compare="loose")


# ------------------------------------------------------------------------------------------------------
# The verdict stays the tests' own when the tests' sandbox itself is under stress
# ------------------------------------------------------------------------------------------------------


def test_a_row_whose_tests_hang_is_cut_off_and_the_next_rows_are_judged():
    hang = "import time\ntime.sleep(60)\n"
    right = fenced(ADD)
    started = time.monotonic()
    scores = make_code_accuracy(timeout_s=2.0)([right, right, right], tests=[hang, "assert add(1, 1) == 2\n", hang])
    assert scores == [0.0, 1.0, 0.0] and time.monotonic() - started < 30
