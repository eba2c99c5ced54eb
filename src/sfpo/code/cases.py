"""Call-based tests judged on the host: parse test code into calls and expected values, compare the results.

A program and its tests used to share one interpreter, where a program can forge the verdict (an object whose
``__eq__`` is always true, a patched ``builtins.abs``, the runner's frames). Here the test code is parsed on the
host, with :mod:`ast`, into

- **calls**: the expressions whose values come from the program (``add(2, 3)``, ``set(similar(a, b))``), sent to
  the sandbox as source and evaluated there after the program (:file:`_run_calls.py`); each value comes back as
  JSON data of builtin types (``None``, ``bool``, ``int``, ``float``, ``complex``, ``str``, ``bytes``, and
  ``list``, ``tuple``, ``dict``, ``set``, ``frozenset`` of those); anything else is a failed call;
- **checks**: what the test asserts about those values, against **expected values that stay on the host**
  (literals, or builtins applied to literals, evaluated here: ``set((4, 5))``, ``2.0/3.0``, ``float('inf')``).

So a program scores only by returning the right values. The comparison is type-strict (:func:`strict_equal`):
``True`` is not ``1``, a list is not a tuple, a set is not a frozenset; ints and floats compare by value, as the
test's own ``==`` does (MBPP writes ``== 240`` for a function whose reference returns ``240.0``). A tolerance
applies only where the test states one: ``abs(f(x) - y) < tol`` and ``math.isclose(f(x), y, rel_tol=...)``.

Parsed forms, in ``assert`` statements at the top level or in a ``check(candidate)`` function that the tests call
as ``check(entry_point)`` (HumanEval): ``a == b``, ``a != b``, ``a is None/True/False`` (and ``is not``), ``a < b``
and the other orderings (numbers, or strings), ``a in b`` and ``not in``, ``abs(a - b) < tol``,
``math.isclose(a, b, ...)``, ``type(a) is T``, ``isinstance(a, T)``, a bare call ``f(x)`` (truthiness, when
no comparison or judging builtin sits inside it), ``not``, ``and``, ``or``. Where neither side of ``==`` is a host value (HumanEval/33 compares the candidate with the program's own
``sort_third``), both sides are calls. Imports, function and class definitions, and other assignments before the
first assert run in the sandbox as set-up (MBPP's ``test_setup_code``); assignments of host values stay here and
are sent only when a call uses them. Anything else (loops, ``if``, a ``check`` with statements of its own, an
assert after set-up code) makes :func:`parse_call_tests` return None: those tests run in-process instead
(:mod:`sfpo.code.reward`, docs/sandbox.md).

:func:`functional_tests` builds the same structure from LiveCodeBench's functional problems (``fn_name``,
``inputs``, ``outputs``), where the expected values are JSON, so tuples in results compare as lists there.
"""

from __future__ import annotations

import ast
import functools
import json
import math
import operator
import sys
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CallTests",
    "Check",
    "decode_results",
    "functional_tests",
    "in_process_modules",
    "parse_call_tests",
    "score_checks",
    "strict_equal",
]

_MAX_SEQUENCE = 1_000_000  # host-side evaluation of expected values refuses anything bigger
_MAX_DEPTH = 64


class _NotParsed(Exception):
    """The tests use a form the parser does not take: they run in-process instead."""


@dataclass(frozen=True)
class Check:
    """One asserted fact about call results. ``kind`` selects the predicate (see :func:`_holds`)."""

    kind: str
    calls: tuple[int, ...] = ()
    expected: Any = None
    options: tuple = ()
    parts: tuple[Check, ...] = ()


@dataclass(frozen=True)
class CallTests:
    """Parsed tests: what runs in the sandbox (set-up, calls) and what is compared on the host (checks).

    ``frames[k]`` is the local namespace of calls made inside a ``check`` function: the names bound to program
    names (``{"candidate": "add"}``) and set-up code run in it; frame 0 is the top level (no extra names).
    ``json_lists``: expected values came from JSON, so tuples in results compare as lists (LiveCodeBench).
    """

    setup: tuple[str, ...]
    calls: tuple[dict, ...]
    checks: tuple[Check, ...]
    frames: tuple[dict, ...] = field(default_factory=lambda: ({"bind": {}, "setup": []},))
    json_lists: bool = False

    def payload(self, program: str) -> dict:
        """What the sandbox runner reads on stdin."""
        return {
            "program": program,
            "setup": list(self.setup),
            "frames": list(self.frames),
            "calls": list(self.calls),
        }


# ---------------------------------------------------------------------------------------------------------
# Expected values: evaluated on the host, from literals and a few pure builtins
# ---------------------------------------------------------------------------------------------------------

_PURE_CALLS = {
    f.__name__: f
    for f in (
        set,
        frozenset,
        tuple,
        list,
        dict,
        sorted,
        float,
        int,
        str,
        bool,
        abs,
        round,
        len,
        min,
        max,
        sum,
    )
    + (chr, ord, complex, range, reversed)
}
_MATH = {name: getattr(math, name) for name in ("pi", "e", "tau", "inf", "nan", "sqrt", "exp", "log", "log2")}
_MATH.update({name: getattr(math, name) for name in ("log10", "floor", "ceil", "fabs")})
_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_, ast.Invert: operator.invert}
_DATA_TYPES = {
    t.__name__: t for t in (int, float, complex, str, bytes, bool, list, tuple, dict, set, frozenset)
}


def _sized(value: Any) -> Any:
    if (
        isinstance(value, (str, bytes, list, tuple, set, frozenset, dict, range))
        and len(value) > _MAX_SEQUENCE
    ):
        raise _NotParsed("expected value too large to build on the host")
    if isinstance(value, int) and value.bit_length() > 100_000:
        raise _NotParsed("expected value too large to build on the host")
    return value


def _host_value(node: ast.AST, consts: dict[str, Any]) -> Any:
    """The value of a test expression that needs no program, or _NotParsed."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id in consts:
        return consts[node.id]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        if any(isinstance(e, ast.Starred) for e in node.elts):
            raise _NotParsed("starred element")
        items = [_host_value(e, consts) for e in node.elts]
        kind = {ast.Tuple: tuple, ast.List: list, ast.Set: set}[type(node)]
        return _sized(kind(items))
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise _NotParsed("dict unpacking")
        return {_host_value(k, consts): _host_value(v, consts) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_host_value(node.operand, consts))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _host_value(node.left, consts), _host_value(node.right, consts)
        if isinstance(node.op, ast.Pow) and isinstance(right, int) and isinstance(left, int):
            if right > 10_000 or abs(left).bit_length() * max(right, 0) > 100_000:
                raise _NotParsed("power too large to build on the host")
        if isinstance(node.op, ast.Mult):
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, bytes, list, tuple)) and isinstance(n, int):
                    if len(seq) * n > _MAX_SEQUENCE:
                        raise _NotParsed("sequence too large to build on the host")
        return _sized(_BINOPS[type(node.op)](left, right))
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "math":
        if node.attr in _MATH and "math" not in consts:
            return _MATH[node.attr]
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Name) and func.id in _PURE_CALLS and func.id not in consts:
            fn = _PURE_CALLS[func.id]
        elif isinstance(func, ast.Attribute):
            fn = _host_value(func, consts)
            if not callable(fn):
                raise _NotParsed("not a function")
        else:
            raise _NotParsed("call of a non-builtin")
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise _NotParsed("starred argument")
        args = [_host_value(a, consts) for a in node.args]
        kwargs = {}
        for kw in node.keywords:
            if kw.arg not in ("reverse", "key") or (kw.arg == "key" and not _is_none(kw.value)):
                raise _NotParsed("keyword argument")
            kwargs[kw.arg] = _host_value(kw.value, consts)
        if fn is range and len(range(*args)) > _MAX_SEQUENCE:
            raise _NotParsed("range too large")
        return _sized(fn(*args, **kwargs))
    raise _NotParsed(f"{type(node).__name__} needs the program")


def _is_none(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _try_host(node: ast.AST, consts: dict[str, Any]) -> tuple[bool, Any]:
    try:
        value = _host_value(node, consts)
    except _NotParsed:
        return False, None
    except Exception:  # the expression itself fails (1/0): what the test means is unclear, so not parsed
        raise _NotParsed("expected value raised") from None
    if not _is_data(value):
        raise _NotParsed("expected value is not data")
    return True, value


def _is_data(value: Any, depth: int = 0) -> bool:
    t = type(value)
    if value is None or t in (bool, int, float, complex, str, bytes):
        return True
    if depth > _MAX_DEPTH:
        return False
    if t in (list, tuple, set, frozenset):
        return all(_is_data(v, depth + 1) for v in value)
    if t is dict:
        return all(_is_data(k, depth + 1) and _is_data(v, depth + 1) for k, v in value.items())
    return False


# ---------------------------------------------------------------------------------------------------------
# Parsing asserts into calls and checks
# ---------------------------------------------------------------------------------------------------------


class _Builder:
    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.frames: list[dict] = [{"bind": {}, "setup": []}]
        self.used: list[set[str]] = [set()]  # names each frame's calls read

    def call(self, node: ast.AST, frame: int) -> int:
        self.calls.append({"expr": ast.unparse(node), "frame": frame})
        self.used[frame] |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        return len(self.calls) - 1


_ORDER = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge}
_ORDER_BY_NAME = {op.__name__: fn for op, fn in _ORDER.items()}
_FLIP = {ast.Lt: ast.Gt, ast.LtE: ast.GtE, ast.Gt: ast.Lt, ast.GtE: ast.LtE}


def _function_name(f: ast.AST) -> str | None:
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
        return f"{f.value.id}.{f.attr}"
    return None


def _is_call_to(node: ast.AST, *names: str) -> bool:
    return isinstance(node, ast.Call) and not node.keywords and _function_name(node.func) in names


def _type_names(node: ast.AST) -> tuple[type, ...]:
    nodes = node.elts if isinstance(node, ast.Tuple) else [node]
    out = []
    for n in nodes:
        if isinstance(n, ast.Name) and n.id in _DATA_TYPES:
            out.append(_DATA_TYPES[n.id])
        elif _is_call_to(n, "type") and len(n.args) == 1 and _is_none(n.args[0]):
            out.append(type(None))
        else:
            raise _NotParsed("not a builtin data type")
    return tuple(out)


def _check(node: ast.AST, b: _Builder, frame: int, consts: dict[str, Any]) -> Check:
    if isinstance(node, ast.BoolOp):
        kind = "all" if isinstance(node.op, ast.And) else "any"
        return Check(kind, parts=tuple(_check(v, b, frame, consts) for v in node.values))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        is_host, value = _try_host(node.operand, consts)
        if is_host:
            return Check("const", expected=not value)
        return Check("not", parts=(_check(node.operand, b, frame, consts),))
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        return _compare(node.left, node.ops[0], node.comparators[0], b, frame, consts)
    if isinstance(node, ast.Call) and _function_name(node.func) in ("math.isclose", "isclose"):
        return _isclose(node, b, frame, consts)
    if _is_call_to(node, "isinstance") and len(node.args) == 2:
        return Check("isinstance", (b.call(node.args[0], frame),), _type_names(node.args[1]))
    is_host, value = _try_host(node, consts)
    if is_host:
        return Check("const", expected=bool(value))
    if not _is_answer(node):
        raise _NotParsed("a truthiness test that the sandbox would judge")
    return Check("truthy", (b.call(node, frame),))


# Builtins that judge rather than answer: in the sandbox they run under the program's builtins and objects
_JUDGEMENTS = frozenset(
    (
        "all",
        "any",
        "isinstance",
        "issubclass",
        "hasattr",
        "callable",
        "bool",
        "isclose",
        "math.isclose",
        "eval",
    )
)


def _is_answer(node: ast.AST) -> bool:
    """Whether an assert's whole expression is a value the program answers (``is_prime(5)``), so that its
    truthiness can be taken on the host; a comparison or another judgement inside it (``0 < f(x) < 4``,
    ``all(f(x))``) would be decided in the sandbox, where a program's objects and builtins decide it."""
    if not isinstance(node, ast.Call) or _function_name(node.func) in _JUDGEMENTS:
        return False
    judging = (ast.Compare, ast.BoolOp, ast.IfExp)
    return not any(
        isinstance(n, judging) or (isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.Not))
        for n in ast.walk(node)
    )


def _compare(
    left: ast.AST, op: ast.cmpop, right: ast.AST, b: _Builder, frame: int, consts: dict[str, Any]
) -> Check:
    negate = isinstance(op, (ast.NotEq, ast.IsNot, ast.NotIn))
    for a, c in ((left, right), (right, left)):  # type(x) is T
        if _is_call_to(a, "type") and len(a.args) == 1:
            if not isinstance(op, (ast.Is, ast.IsNot, ast.Eq, ast.NotEq)):
                raise _NotParsed("ordering of types")
            check = Check("type_is", (b.call(a.args[0], frame),), _type_names(c)[0])
            return Check("not", parts=(check,)) if negate else check
    left_host, left_value = _try_host(left, consts)
    right_host, right_value = _try_host(right, consts)
    if left_host and right_host:
        return Check("const", expected=_host_compare(op, left_value, right_value))
    if isinstance(op, (ast.Eq, ast.NotEq, ast.Is, ast.IsNot)):
        if isinstance(op, (ast.Is, ast.IsNot)):
            singleton = right_value if right_host else left_value
            if not (left_host or right_host) or not (singleton is None or type(singleton) is bool):
                raise _NotParsed("'is' against something other than None, True or False")
        if left_host or right_host:
            expected, other = (right_value, left) if right_host else (left_value, right)
            check = Check("eq", (b.call(other, frame),), expected)
        else:
            check = Check("eq2", (b.call(left, frame), b.call(right, frame)))
        return Check("not", parts=(check,)) if negate else check
    if type(op) in _ORDER:
        if not (left_host or right_host):
            raise _NotParsed("ordering between two program values")
        if right_host:  # abs(a - b) < tol
            close = _abs_close(left, op, right_value, b, frame, consts)
            if close is not None:
                return close
        op_type, other, bound = (
            (type(op), left, right_value) if right_host else (_FLIP[type(op)], right, left_value)
        )
        return Check("order", (b.call(other, frame),), bound, (op_type.__name__,))
    if isinstance(op, (ast.In, ast.NotIn)):
        if right_host and not left_host:
            check = Check("in", (b.call(left, frame),), right_value)
        elif left_host and not right_host:
            check = Check("contains", (b.call(right, frame),), left_value)
        else:
            raise _NotParsed("membership between two program values")
        return Check("not", parts=(check,)) if negate else check
    raise _NotParsed(f"comparison {type(op).__name__}")


def _abs_close(
    left: ast.AST, op: ast.cmpop, tol: Any, b: _Builder, frame: int, consts: dict[str, Any]
) -> Check | None:
    if not isinstance(op, (ast.Lt, ast.LtE)) or not _is_call_to(left, "abs", "math.fabs"):
        return None
    if (
        len(left.args) != 1
        or not isinstance(left.args[0], ast.BinOp)
        or not isinstance(left.args[0].op, ast.Sub)
    ):
        return None
    diff = left.args[0]
    a_host, a_value = _try_host(diff.left, consts)
    c_host, c_value = _try_host(diff.right, consts)
    if a_host == c_host or not _is_number(tol):
        return None
    expected, other = (c_value, diff.left) if c_host else (a_value, diff.right)
    if not _is_number(expected):
        return None
    return Check("abs_close", (b.call(other, frame),), expected, (type(op).__name__, tol))


def _isclose(node: ast.Call, b: _Builder, frame: int, consts: dict[str, Any]) -> Check:
    if len(node.args) != 2:
        raise _NotParsed("isclose needs two positional arguments")
    options = {"rel_tol": 1e-09, "abs_tol": 0.0}
    for kw in node.keywords:
        if kw.arg not in options:
            raise _NotParsed(f"isclose keyword {kw.arg}")
        is_host, value = _try_host(kw.value, consts)
        if not is_host or not _is_number(value):
            raise _NotParsed("isclose tolerance needs the program")
        options[kw.arg] = value
    a_host, a_value = _try_host(node.args[0], consts)
    c_host, c_value = _try_host(node.args[1], consts)
    if a_host == c_host:
        raise _NotParsed("isclose without exactly one program value")
    expected, other = (c_value, node.args[0]) if c_host else (a_value, node.args[1])
    if not _is_number(expected):
        raise _NotParsed("isclose against a non-number")
    return Check("close", (b.call(other, frame),), expected, (options["rel_tol"], options["abs_tol"]))


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def _host_compare(op: ast.cmpop, a: Any, c: Any) -> bool:
    if isinstance(op, (ast.Eq, ast.Is)):
        return strict_equal(a, c)
    if isinstance(op, (ast.NotEq, ast.IsNot)):
        return not strict_equal(a, c)
    if type(op) in _ORDER:
        return _ordered(type(op).__name__, a, c) is True
    if isinstance(op, (ast.In, ast.NotIn)):
        found = _member(a, c)
        return found if isinstance(op, ast.In) else not found
    raise _NotParsed("comparison")


_CHECK_BODY = (ast.Assert, ast.Expr, ast.Pass, ast.Import, ast.ImportFrom, ast.Assign)


def _check_function(node: ast.FunctionDef, consts: dict[str, Any]) -> tuple[str, list[ast.stmt]] | None:
    """``def check(candidate): <asserts>``: its parameter name and body, or None when it does more."""
    a = node.args
    if node.decorator_list or a.posonlyargs or a.kwonlyargs or a.vararg or a.kwarg or a.defaults:
        return None
    if len(a.args) != 1:
        return None
    for stmt in node.body:
        if not isinstance(stmt, _CHECK_BODY):
            return None
        if isinstance(stmt, ast.Expr) and not isinstance(stmt.value, (ast.Constant, ast.Name)):
            return None  # a docstring, or a bare name (HumanEval/129 has a lone `print`)
        if isinstance(stmt, ast.Assign) and _assigned_name(stmt) is None:
            return None  # (a value the host cannot build is refused when the function is expanded)
    return a.args[0].arg, node.body


def _assigned_name(stmt: ast.stmt) -> str | None:
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
        return stmt.targets[0].id
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
        return stmt.target.id
    return None


@functools.lru_cache(maxsize=4096)
def parse_call_tests(source: str) -> CallTests | None:
    """Test code parsed into calls and host-side checks, or None when it needs the in-process runner."""
    try:
        return _parse(source)
    except (_NotParsed, SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _parse(source: str) -> CallTests:
    tree = ast.parse(source)
    b = _Builder()
    consts: dict[str, Any] = {}
    const_stmts: dict[str, tuple[int, ast.stmt]] = {}  # name -> (position among set-up, its assignment)
    setup: list[ast.stmt] = []
    check_fns: dict[str, tuple[str, list[ast.stmt]]] = {}
    checks: list[Check] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.Assert):
            checks.append(_check(stmt.test, b, 0, consts))
            continue
        if isinstance(stmt, ast.Pass) or (
            isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
        ):
            continue
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            call = stmt.value
            name = call.func.id if isinstance(call.func, ast.Name) else None
            if name not in check_fns or call.keywords or len(call.args) != 1:
                raise _NotParsed("a top-level call that is not check(entry_point)")
            if not isinstance(call.args[0], ast.Name):
                raise _NotParsed("check() of something other than a name")
            checks.extend(_expand_check(check_fns[name], call.args[0].id, b, consts))
            continue
        if checks:
            raise _NotParsed("set-up code after an assert")
        name = _assigned_name(stmt)
        value_node = stmt.value if name is not None else None
        if name is not None:
            is_host, value = _try_host_or_none(value_node, consts)
            if is_host:
                consts[name] = value
                const_stmts[name] = (len(setup), stmt)
                continue
            consts.pop(name, None)
        if isinstance(stmt, ast.FunctionDef):
            found = _check_function(stmt, consts)
            if found is not None:
                check_fns[stmt.name] = found
                continue
        if isinstance(
            stmt, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)
        ):
            setup.append(stmt)
            continue
        raise _NotParsed(f"{type(stmt).__name__} statement")
    # Host constants go in only where a call or set-up code reads them (and what those read in turn): an expected
    # value assigned to a name and compared against stays out.
    frame_needs = []
    for frame, used in zip(b.frames[1:], b.used[1:]):
        local = frame.pop("locals")
        taken = _closure(used, {name: stmt for stmt, name in local if name})
        frame["setup"] = [ast.unparse(stmt) for stmt, name in local if not name or name in taken]
        frame_needs.append(used | {n for stmt, _ in local for n in _names(stmt)})
    used_top = set().union(b.used[0], *frame_needs, *(_names(s) for s in setup))
    taken = _closure(used_top, {name: stmt for name, (_, stmt) in const_stmts.items()})
    for name in sorted(taken, key=lambda n: const_stmts[n][0], reverse=True):
        position, stmt = const_stmts[name]
        setup.insert(position, stmt)
    return CallTests(
        setup=tuple(ast.unparse(s) for s in setup),
        calls=tuple(b.calls),
        checks=tuple(checks),
        frames=tuple(b.frames),
    )


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _closure(used: set[str], assignments: dict[str, ast.stmt]) -> set[str]:
    """The assigned names that ``used`` reads, directly or through other assignments."""
    taken: set[str] = set()
    todo = [n for n in used if n in assignments]
    while todo:
        name = todo.pop()
        if name not in taken:
            taken.add(name)
            todo.extend(n for n in _names(assignments[name].value) if n in assignments)
    return taken


def _try_host_or_none(node: ast.AST | None, consts: dict[str, Any]) -> tuple[bool, Any]:
    if node is None:
        return False, None
    try:
        return _try_host(node, consts)
    except _NotParsed:
        return False, None


def _expand_check(
    fn: tuple[str, list[ast.stmt]], entry: str, b: _Builder, consts: dict[str, Any]
) -> list[Check]:
    param, body = fn
    frame = len(b.frames)
    local_stmts: list[
        tuple[ast.stmt, str | None]
    ] = []  # set-up run in the frame: (statement, name it assigns)
    b.frames.append({"bind": {param: entry}, "setup": [], "locals": local_stmts})
    b.used.append(set())
    local_consts = dict(consts)
    local_consts.pop(param, None)
    checks = []
    for stmt in body:
        if isinstance(stmt, ast.Assert):
            checks.append(_check(stmt.test, b, frame, local_consts))
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            local_stmts.append((stmt, None))  # imports always run, as they would in check()
            for alias in stmt.names:
                local_consts.pop((alias.asname or alias.name).split(".")[0], None)
        elif isinstance(stmt, ast.Assign):
            name = stmt.targets[0].id
            is_host, value = _try_host(stmt.value, local_consts)
            if not is_host:
                raise _NotParsed("assignment the host cannot evaluate")
            local_consts[name] = value
            local_stmts.append((stmt, name))
    return checks


# ---------------------------------------------------------------------------------------------------------
# LiveCodeBench functional problems
# ---------------------------------------------------------------------------------------------------------


def functional_tests(spec: Any) -> CallTests | None:
    """``{"fn_name": str, "inputs": [[arg, ...], ...], "outputs": [value, ...]}`` (JSON values) as calls.

    Each case calls ``Solution().fn_name(*args)`` when the program defines ``class Solution`` with that method
    (LeetCode's starter code), else the function ``fn_name(*args)``, and expects ``outputs[i]``.
    """
    if not isinstance(spec, dict):
        return None
    name, inputs, outputs = spec.get("fn_name"), spec.get("inputs"), spec.get("outputs")
    if not isinstance(name, str) or not name.isidentifier():
        return None
    if (
        not isinstance(inputs, list)
        or not isinstance(outputs, list)
        or len(inputs) != len(outputs)
        or not inputs
    ):
        return None
    if not all(isinstance(args, list) for args in inputs) or not _is_data(outputs) or not _is_data(inputs):
        return None
    calls = tuple({"fn": name, "args": args, "frame": 0} for args in inputs)
    checks = tuple(Check("eq", (i,), out) for i, out in enumerate(outputs))
    return CallTests(setup=(), calls=calls, checks=checks, json_lists=True)


# ---------------------------------------------------------------------------------------------------------
# Results and verdicts
# ---------------------------------------------------------------------------------------------------------


def _tag(value: Any, lists: bool, depth: int = 0) -> Any:
    """A hashable, type-carrying form of a data value: equal tags mean strictly equal values."""
    if depth > _MAX_DEPTH:
        raise ValueError("nested too deeply")
    t = type(value)
    if value is None:
        return ("none",)
    if t is bool:
        return ("bool", value)
    if t is int or t is float:
        return ("num", value)  # 240 == 240.0, as the test's == has it
    if t in (complex, str, bytes):
        return (t.__name__, value)
    if t is list or (lists and t is tuple):
        return ("list", tuple(_tag(v, lists, depth + 1) for v in value))
    if t is tuple:
        return ("tuple", tuple(_tag(v, lists, depth + 1) for v in value))
    if t is set or t is frozenset:
        return (t.__name__, frozenset(_tag(v, lists, depth + 1) for v in value))
    if t is dict:
        return (
            "dict",
            frozenset((_tag(k, lists, depth + 1), _tag(v, lists, depth + 1)) for k, v in value.items()),
        )
    raise TypeError(f"{t.__name__} is not data")


def strict_equal(a: Any, b: Any, json_lists: bool = False) -> bool:
    """Type-strict equality of data values (``True != 1``, ``[1] != (1,)``, ``{1} != frozenset({1})``; ints and
    floats by value). ``json_lists``: tuples count as lists (expected values that came from JSON)."""
    try:
        return _tag(a, json_lists) == _tag(b, json_lists)
    except (TypeError, ValueError, RecursionError):
        return False


def _member(item: Any, container: Any, json_lists: bool = False) -> bool:
    if type(container) is str:
        return type(item) is str and item in container
    if type(container) is bytes:
        return type(item) is bytes and item in container
    if type(container) is dict:
        container = list(container)
    if type(container) not in (list, tuple, set, frozenset):
        return False
    return any(strict_equal(item, x, json_lists) for x in container)


def _ordered(op_name: str, value: Any, bound: Any) -> bool | None:
    both_numbers = _is_number(value) and _is_number(bound)
    if not both_numbers and not (type(value) is str and type(bound) is str):
        return False
    return _ORDER_BY_NAME[op_name](value, bound)


class _Error:
    """A call that raised, or whose result was not data."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


_MARK = b"\x1esfpo-results "


def decode_results(stdout: bytes, n_calls: int) -> list[Any] | None:
    """The runner's last results line as values (a :class:`_Error` per failed call), None if absent or malformed."""
    at = stdout.rfind(_MARK)
    if at < 0:
        return None
    line = stdout[at + len(_MARK) :].split(b"\n", 1)[0]
    try:
        raw = json.loads(line)
        if type(raw) is not list or len(raw) != n_calls:
            return None
        return [_decode_item(item) for item in raw]
    except (ValueError, TypeError, RecursionError, KeyError, UnicodeDecodeError):
        return None


def _decode_item(item: Any) -> Any:
    if type(item) is not dict or len(item) != 1:
        raise ValueError("malformed result")
    if "v" in item:
        return _decode(item["v"])
    return _Error(str(item.get("e", "error"))[:100])


def _decode(x: Any, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        raise ValueError("nested too deeply")
    t = type(x)
    if x is None or t in (bool, int, float, str):
        return x
    if t is list:
        return [_decode(v, depth + 1) for v in x]
    if t is dict and len(x) == 1:
        ((kind, body),) = x.items()
        if kind == "bytes" and type(body) is str:
            return bytes.fromhex(body)
        if (
            kind == "complex"
            and type(body) is list
            and len(body) == 2
            and all(type(v) is float for v in body)
        ):
            return complex(*body)
        if type(body) is not list:
            raise ValueError("malformed value")
        if kind == "dict":
            if not all(type(p) is list and len(p) == 2 for p in body):
                raise ValueError("malformed dict")
            return {_decode(k, depth + 1): _decode(v, depth + 1) for k, v in body}
        items = [_decode(v, depth + 1) for v in body]
        maker = {"tuple": tuple, "set": set, "frozenset": frozenset}.get(kind)
        if maker is not None:
            return maker(items)
    raise ValueError("malformed value")


def _holds(check: Check, values: list[Any], json_lists: bool) -> bool | None:
    """True or False; None when a call it needs failed (an assert that raised: a failure whatever the form)."""
    kind = check.kind
    if kind == "const":
        return bool(check.expected)
    if kind in ("all", "any"):  # left to right, short-circuiting like Python's and/or
        for part in check.parts:
            result = _holds(part, values, json_lists)
            if result is None or result is (kind == "any"):
                return result
        return kind == "all"
    if kind == "not":
        inner = _holds(check.parts[0], values, json_lists)
        return None if inner is None else not inner
    got = [values[i] for i in check.calls]
    if any(isinstance(v, _Error) for v in got):
        return None
    value = got[0]
    if kind == "eq":
        return strict_equal(value, check.expected, json_lists)
    if kind == "eq2":
        return strict_equal(value, got[1], json_lists)
    if kind == "truthy":
        return bool(value)
    if kind == "order":
        return _ordered(check.options[0], value, check.expected)
    if kind == "in":
        return _member(value, check.expected, json_lists)
    if kind == "contains":
        return _member(check.expected, value, json_lists)
    if kind == "type_is":
        return type(value) is check.expected
    if kind == "isinstance":
        return isinstance(value, check.expected)
    if kind == "close":
        rel_tol, abs_tol = check.options
        return _is_number(value) and math.isclose(value, check.expected, rel_tol=rel_tol, abs_tol=abs_tol)
    if kind == "abs_close":
        op_name, tol = check.options
        return _is_number(value) and _ordered(op_name, abs(value - check.expected), tol) is True
    raise ValueError(f"unknown check kind {kind!r}")


def score_checks(tests: CallTests, values: list[Any] | None) -> tuple[int, int]:
    """(checks that hold, checks): with no values (the program failed), none holds."""
    n = len(tests.checks)
    if values is None:
        return 0, n
    return sum(_holds(c, values, tests.json_lists) is True for c in tests.checks), n


# ---------------------------------------------------------------------------------------------------------
# In-process tests: which standard modules the runner imports fresh for them
# ---------------------------------------------------------------------------------------------------------

_SHARED_MODULES = frozenset({"sys", "builtins"})  # one per interpreter: a fresh copy cannot be made


@functools.lru_cache(maxsize=4096)
def in_process_modules(source: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(modules the tests import, standard-module names the tests use without importing them)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return (), ()
    imported: set[str] = set()
    bound: set[str] = set()
    loaded: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                imported.add(alias.name)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            bound.add(node.name)
    stdlib = getattr(sys, "stdlib_module_names", frozenset())
    free = {n for n in loaded - bound if n in stdlib} - _SHARED_MODULES
    modules = {m for m in imported if m.split(".")[0] not in _SHARED_MODULES}
    return tuple(sorted(modules)), tuple(sorted(free))
