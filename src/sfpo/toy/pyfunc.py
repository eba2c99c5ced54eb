"""``pyfunc``: an offline code-generation task for the embedded tiny policy, scored by running the code.

The prompt gives a function at x = 0, 1, 2; the policy writes a Python program defining ``f``, which is run
in the sandbox (:mod:`sfpo.code.reward`) against held-out inputs::

    f(0)=2,f(1)=5,f(2)=8;   ->  5-2=3 8-5=3
                                ```
                                f=lambda x:3*x+2
                                ```

Functions are ``a*x+b`` or ``a*x*x+b`` with a in 1..9 and b in 0..99. The worked solution takes
the two differences d1 = f(1)-f(0) and d2 = f(2)-f(1): equal differences mean a line with slope d1, unequal
ones the square with a = d1; b is f(0). The gold ``answer`` is the test code (asserts at x = -3, 3, 4, 5, 7,
10, each requiring an ``int`` result), so the reward reads no other column; the held-out split is by function,
so held-out problems are functions the training stream never shows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from sfpo.common.text import completion_text
from sfpo.toy.task import Problem, Task

__all__ = ["PyFuncTask"]

_HELDOUT_INPUTS = (-3, 3, 4, 5, 7, 10)


def _sub(a: int, b: int) -> str:
    return f"{a}-({b})" if b < 0 else f"{a}-{b}"


@dataclass(frozen=True)
class PyFuncTask(Task):
    """Write ``f`` from three of its values; reward 1.0 when ``f`` is right on six held-out inputs."""

    name: str = "pyfunc"
    max_slope: int = 9
    max_offset: int = 99
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.max_slope < 1 or self.max_offset < 0:
            raise ValueError(
                f"max_slope={self.max_slope}, max_offset={self.max_offset}: need slope >= 1, offset >= 0"
            )

    @property
    def max_completion_length(self) -> int:
        return 64  # the longest worked solution is about 45 characters

    def split_key(self, problem: Problem) -> str:
        return problem.answer  # the tests name the function: one function, one side of the split

    def make_problem(self, rng: random.Random) -> Problem:
        # Positive coefficients keep the worked subtractions free of signs: a 440k-parameter policy warm-started
        # on signed two-digit values solved 2% of held-out functions at temperature 1 (measured), too few for RL.
        a = rng.randint(1, self.max_slope)
        b = rng.randint(0, self.max_offset)
        square = rng.random() < 0.5
        term = f"{a}*x*x" if square else f"{a}*x"
        body = term if b == 0 else f"{term}{b:+d}"

        def f(x: int) -> int:
            return a * x * x + b if square else a * x + b

        values = [f(x) for x in (0, 1, 2)]
        question = ",".join(f"f({x})={v}" for x, v in zip((0, 1, 2), values)) + ";"
        d1, d2 = values[1] - values[0], values[2] - values[1]
        solution = f"{_sub(values[1], values[0])}={d1} {_sub(values[2], values[1])}={d2}\n```\nf=lambda x:{body}\n```"
        tests = "".join(f"assert type(f({x})) is int and f({x}) == {f(x)}\n" for x in _HELDOUT_INPUTS)
        return Problem(question, tests, solution)

    def reward(self, completions: list[Any], answer: list[str], **kwargs: Any) -> list[float]:
        """Runs every completion's program against its tests in the sandbox, in parallel."""
        from sfpo.code.reward import make_code_accuracy

        texts = [completion_text(c) for c in completions]
        return make_code_accuracy(timeout_s=self.timeout_s, memory_mb=256, name=self.name)(
            texts, tests=list(answer)
        )

    def score(self, text: str, answer: str) -> float:
        return self.reward([text], [answer])[0]
