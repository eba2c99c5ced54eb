"""The offline tasks of the embedded default: arithmetic, countdown and addition (plus ``pyfunc``, a code task in
:mod:`sfpo.toy.pyfunc`), and the registry the demo, recipes and the tiny policy builder pick them from.

Each task owns its prompt format, its worked solutions (for the tiny policy's warm start) and its
reward. Prompts are short raw strings (``"(7+5)*3-4="``) because the embedded policy is a character-level
model trained from scratch; a completion ends with its final answer in ``\\boxed{...}``::

    (7+5)*3-4=  ->  7+5=12 12*3=36 36-4=32 \\boxed{32}
    3,5,7->22:  ->  3*5=15 15+7=22 \\boxed{3*5+7}
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from sfpo.common.text import extract_answer, extract_boxed
from sfpo.toy.pyfunc import PyFuncTask
from sfpo.toy.task import Problem, Task

__all__ = ["TASKS", "AdditionTask", "ArithmeticTask", "CountdownTask", "generation_kwargs_for", "get_task"]

_OPS = "+-*/"
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


# --- expression trees shared by both tasks -------------------------------------------------------

# A node is an int (a leaf) or a tuple (op, left, right).
Node = Any


def _random_tree(rng: random.Random, leaves: list[int], ops: str) -> Node:
    """A random binary tree over ``leaves`` in the given order (all tree shapes reachable)."""
    if len(leaves) == 1:
        return leaves[0]
    split = rng.randint(1, len(leaves) - 1)
    return (rng.choice(ops), _random_tree(rng, leaves[:split], ops), _random_tree(rng, leaves[split:], ops))


def _render(node: Node) -> str:
    """Infix with only the parentheses needed so that left-to-right parsing gives back this tree."""
    if not isinstance(node, tuple):
        return str(node)
    op, left, right = node
    left_s, right_s = _render(left), _render(right)
    if isinstance(left, tuple) and _PRECEDENCE[left[0]] < _PRECEDENCE[op]:
        left_s = f"({left_s})"
    # A right operand of equal precedence is bracketed too: 7-(5-3) needs it, and 7+(5+3) keeps the
    # written order equal to the worked solution's order.
    if isinstance(right, tuple) and _PRECEDENCE[right[0]] <= _PRECEDENCE[op]:
        right_s = f"({right_s})"
    return f"{left_s}{op}{right_s}"


def _apply(op: str, a: Fraction, b: Fraction) -> Fraction:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        raise ZeroDivisionError
    return a / b


def _fmt(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def _evaluate(node: Node, steps: list[str]) -> Fraction:
    """Value of the tree; appends one ``a+b=c`` line per operation in evaluation (post-)order."""
    if not isinstance(node, tuple):
        return Fraction(node)
    op, left, right = node
    a, b = _evaluate(left, steps), _evaluate(right, steps)
    value = _apply(op, a, b)
    right_s = f"({_fmt(b)})" if b < 0 else _fmt(b)  # "2-(-2)", not "2--2"
    steps.append(f"{_fmt(a)}{op}{right_s}={_fmt(value)}")
    return value


_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_GROUPED = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d*)?")  # 1,000 and 12,345.5


def _parse_number(text: str | None) -> Fraction | None:
    """A plain number literal (``32``, ``-5``, ``32.0``, ``1,000``) as an exact fraction, else None."""
    if text is None:
        return None
    text = text.strip().replace(" ", "").replace("{,}", ",").rstrip(".")
    if _GROUPED.fullmatch(text):
        text = text.replace(",", "")
    if not _NUMBER.fullmatch(text):
        return None
    return Fraction(text)


# --- arithmetic --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArithmeticTask(Task):
    """Multi-step integer arithmetic: ``(7+5)*3-4=`` -> ``7+5=12 12*3=36 36-4=32 \\boxed{32}``.

    Difficulty knobs: ``n_operands`` (steps = n_operands - 1), operand range ``[min_value, max_value]``
    and the operators. Division is off by default (answers stay integers).
    """

    name: str = "arithmetic"
    n_operands: int = 3
    min_value: int = 1
    max_value: int = 9
    ops: str = "+-*"

    def __post_init__(self) -> None:
        if self.n_operands < 2:
            raise ValueError(f"n_operands={self.n_operands}: must be at least 2")
        if not 0 <= self.min_value <= self.max_value:
            raise ValueError(f"min_value={self.min_value}, max_value={self.max_value}: need 0 <= min <= max")
        if not self.ops or set(self.ops) - set(_OPS):
            raise ValueError(f"ops={self.ops!r}: must be a non-empty subset of {_OPS!r}")

    @property
    def max_completion_length(self) -> int:
        # Each step like "-72*(-9)=648 " is at most ~15 characters at the default range, then
        # "\boxed{-648}" and EOS; rounded up so a slightly rambling policy still finishes.
        digits = len(str(self.max_value**self.n_operands)) + 1
        return (self.n_operands - 1) * (3 * digits + 5) + (digits + 8)

    def make_problem(self, rng: random.Random) -> Problem:
        while True:
            leaves = [rng.randint(self.min_value, self.max_value) for _ in range(self.n_operands)]
            tree = _random_tree(rng, leaves, self.ops)
            steps: list[str] = []
            try:
                value = _evaluate(tree, steps)
            except ZeroDivisionError:
                continue
            if value.denominator != 1 or any("/" in s.split("=")[1] for s in steps):
                continue  # keep every intermediate result an integer
            answer = str(value.numerator)
            return Problem(f"{_render(tree)}=", answer, " ".join(steps) + f" \\boxed{{{answer}}}")

    def score(self, text: str, answer: str) -> float:
        # Same extraction as the math pipeline (sfpo.common.text.extract_boxed), then an exact numeric compare.
        # When the box holds a number literal this agrees with math_accuracy on integer answers (both take
        # 32, 32.0, +32 and 1,000 alike; tests check it) and costs no sympy worker. Unlike math_accuracy it
        # rejects an unevaluated expression such as \boxed{30+2}: the task asks for the value.
        predicted = _parse_number(extract_boxed(text))
        gold = _parse_number(answer)
        return float(predicted is not None and gold is not None and predicted == gold)


# --- countdown ---------------------------------------------------------------------------------

_MAX_EXPRESSION_CHARS = 80  # an answer longer than this is garbage; it also bounds the parser's recursion
_LATEX_OPS = (
    ("\\times", "*"),
    ("\\cdot", "*"),
    ("×", "*"),
    ("\\div", "/"),
    ("÷", "/"),
    ("\\left", ""),
    ("\\right", ""),
)
_TOKEN = re.compile(r"\d+|[-+*/()]")


class _Invalid(Exception):
    pass


def parse_expression(text: str) -> tuple[Fraction, list[int]]:
    """Parse and evaluate ``+ - * / ( )`` over non-negative integers, exactly; no ``eval``.

    Returns the value and the integer literals used, in order. Raises ``ValueError`` on anything else
    (other characters, unary signs, division by zero, unbalanced parentheses, over-long text).
    """
    if len(text) > _MAX_EXPRESSION_CHARS:
        raise ValueError("expression too long")
    for latex, op in _LATEX_OPS:
        text = text.replace(latex, op)
    tokens = _TOKEN.findall(text)  # spaces separate tokens ("3 4" is two numbers, then rejected)
    if "".join(tokens) != re.sub(r"\s+", "", text) or not tokens:
        raise ValueError(f"not an arithmetic expression: {text!r}")
    numbers: list[int] = []
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise _Invalid("unexpected end")
        pos += 1
        return tokens[pos - 1]

    def expr() -> Fraction:  # expr := term (('+'|'-') term)*
        value = term()
        while peek() in ("+", "-"):
            value = _apply(take(), value, term())
        return value

    def term() -> Fraction:  # term := atom (('*'|'/') atom)*
        value = atom()
        while peek() in ("*", "/"):
            value = _apply(take(), value, atom())
        return value

    def atom() -> Fraction:  # atom := integer | '(' expr ')'
        token = take()
        if token == "(":
            value = expr()
            if take() != ")":
                raise _Invalid("unbalanced parentheses")
            return value
        if token.isdigit():
            numbers.append(int(token))
            return Fraction(int(token))
        raise _Invalid(f"unexpected {token!r}")

    try:
        value = expr()
        if pos != len(tokens):
            raise _Invalid(f"trailing {tokens[pos]!r}")
    except (_Invalid, ZeroDivisionError) as error:
        raise ValueError(str(error) or "division by zero") from None
    return value, numbers


@dataclass(frozen=True)
class CountdownTask(Task):
    """Reach a target from given numbers: ``3,5,7->22:`` -> ``3*5=15 15+7=22 \\boxed{3*5+7}``.

    Every given number must be used exactly once, with ``+ - * /`` and parentheses; intermediate
    results of the generated solutions are positive integers (the game's rule), but any expression
    that uses the numbers and hits the target exactly is accepted. The gold ``answer`` is one valid
    expression: the reward reads the numbers and the target from it, so no extra dataset columns are
    needed. Difficulty knobs: ``n_numbers`` and the range ``[min_value, max_value]``.
    """

    name: str = "countdown"
    n_numbers: int = 3
    min_value: int = 1
    max_value: int = 9
    ops: str = "+-*/"

    def __post_init__(self) -> None:
        if self.n_numbers < 2:
            raise ValueError(f"n_numbers={self.n_numbers}: must be at least 2")
        if not 1 <= self.min_value <= self.max_value:
            raise ValueError(f"min_value={self.min_value}, max_value={self.max_value}: need 1 <= min <= max")
        if not self.ops or set(self.ops) - set(_OPS):
            raise ValueError(f"ops={self.ops!r}: must be a non-empty subset of {_OPS!r}")

    @property
    def max_completion_length(self) -> int:
        digits = len(str(self.max_value**self.n_numbers))
        steps = (self.n_numbers - 1) * (3 * digits + 3)
        boxed = self.n_numbers * (len(str(self.max_value)) + 3) + 8
        return 8 + steps + boxed

    def split_key(self, problem: Problem) -> str:
        # The same numbers in another order are the same puzzle: keep them on the same side of the split.
        numbers, target = problem.question.rstrip(":").split("->")
        return ",".join(sorted(numbers.split(","), key=int)) + "->" + target

    def make_problem(self, rng: random.Random) -> Problem:
        while True:
            numbers = [rng.randint(self.min_value, self.max_value) for _ in range(self.n_numbers)]
            tree = _random_tree(rng, numbers, self.ops)
            steps: list[str] = []
            try:
                value = _evaluate(tree, steps)
            except ZeroDivisionError:
                continue
            results = [Fraction(s.split("=")[1]) for s in steps]
            if any(r <= 0 or r.denominator != 1 for r in results):
                continue
            shown = numbers[:]
            rng.shuffle(shown)  # the solution's order is not given away by the question
            expression = _render(tree)
            question = f"{','.join(map(str, shown))}->{value.numerator}:"
            return Problem(question, expression, " ".join(steps) + f" \\boxed{{{expression}}}")

    def score(self, text: str, answer: str) -> float:
        boxed = extract_boxed(text)
        if boxed is None:
            return 0.0
        try:
            target, allowed = parse_expression(answer)
            if "=" in boxed:  # "3*5+7=22" is fine when the right side is the target
                boxed, _, rhs = boxed.rpartition("=")
                if _parse_number(rhs) != target:
                    return 0.0
            value, used = parse_expression(boxed)
        except ValueError:
            return 0.0
        return float(value == target and sorted(used) == sorted(allowed))


# --- addition, for small pretrained chat models ---------------------------------------------------


@dataclass(frozen=True)
class AdditionTask(Task):
    """``What is 12 + 7?`` as a chat message, for a pretrained instruct model such as SmolLM2-135M.

    Such a model rarely writes ``\boxed{}``, so the answer is read with ``sfpo.common.text.extract_answer``
    (the boxed answer first, then "the answer is X", then the last number): the math pipeline's own
    extraction, then an exact numeric compare. With operands in 1..30 SmolLM2-135M-Instruct answers 44% greedily and 11%
    sampling at temperature 1.0 (25% at 0.7; measured in the shared environment notes): room for RL.
    Operands in 1..30 leave only about 112 distinct held-out problems (one pair in eight is held out), too few
    to resolve a few points; ``addition-50`` (operands in 1..50, about 312 held out) is for evaluations of 200+.
    """

    name: str = "addition"
    min_value: int = 1
    max_value: int = 30

    @property
    def max_completion_length(self) -> int:
        return 48

    def prompt(self, question: str) -> Any:
        return [{"role": "user", "content": question}]

    def make_problem(self, rng: random.Random) -> Problem:
        a, b = rng.randint(self.min_value, self.max_value), rng.randint(self.min_value, self.max_value)
        question = f"What is {a} + {b}? Give the final answer as a number at the end."
        return Problem(question, str(a + b), f"{a} + {b} = {a + b}. The answer is {a + b}.")

    def score(self, text: str, answer: str) -> float:
        predicted = _parse_number(extract_answer(text))
        return float(predicted is not None and predicted == _parse_number(answer))


# --- registry ----------------------------------------------------------------------------------

TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        ArithmeticTask(),
        CountdownTask(),
        AdditionTask(),
        AdditionTask(name="addition-50", max_value=50),
        PyFuncTask(),
    )
}


def get_task(name: str | Task) -> Task:
    """The registered task called ``name`` (a ``Task`` is passed through)."""
    if isinstance(name, Task):
        return name
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; allowed: {', '.join(sorted(TASKS))}") from None


def generation_kwargs_for(task: str | Task) -> dict[str, int]:
    """Generation settings for GRPOConfig that fit ``task``'s worked solutions (in tokens/characters)."""
    return {"max_completion_length": get_task(task).max_completion_length}
