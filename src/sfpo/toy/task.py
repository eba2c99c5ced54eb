"""What every offline task is: a problem generator, a prompt format, a fixed held-out set and a verifiable reward.

Held-out problems are chosen by a hash of their content, not by seed, so the evaluation set is disjoint
from every training stream whatever seed or size either is drawn with, and is the same list on every
machine (``random.Random`` and ``zlib.crc32`` are platform independent). The tasks themselves are in
:mod:`sfpo.toy.tasks` and :mod:`sfpo.toy.pyfunc`.
"""

from __future__ import annotations

import random
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sfpo.common.text import completion_text

if TYPE_CHECKING:  # datasets is imported lazily: it is slow to import and only needed to build datasets
    from datasets import Dataset

__all__ = ["EVAL_SEED", "Problem", "Task"]

EVAL_SEED = 1_000_003  # the one seed the held-out stream is drawn with; never used for training
_HELDOUT_SALT = b"sfpo-heldout:"
_HELDOUT_BUCKETS = 8  # one problem in eight is held out
_MAX_TRIES_PER_PROBLEM = 1000  # guards against a problem space too small for the number asked



@dataclass(frozen=True)
class Problem:
    """One problem: the question the prompt is made from, the gold answer, and a worked solution.

    ``solution`` is a full completion (short chain of thought ending in ``\\boxed{answer}``), used only
    to warm-start the tiny policy by supervised fine-tuning.
    """

    question: str
    answer: str
    solution: str


@dataclass(frozen=True)
class Task(ABC):
    """A procedural task: problem generator, prompt format, fixed held-out set and verifiable reward."""

    name: str

    # --- what each task defines ---------------------------------------------------------------

    @abstractmethod
    def make_problem(self, rng: random.Random) -> Problem:
        """Draw one problem with ``rng`` (all randomness must come from it, for reproducibility)."""

    @abstractmethod
    def score(self, text: str, answer: str) -> float:
        """1.0 when the completion ``text`` ends with a correct ``\\boxed{}`` answer, else 0.0."""

    @property
    @abstractmethod
    def max_completion_length(self) -> int:
        """Tokens (characters, for the tiny policy) that always fit a worked solution, with slack."""

    def prompt(self, question: str) -> str:
        """The prompt the policy sees; the default is the question itself (already a prompt format)."""
        return question

    def split_key(self, problem: Problem) -> str:
        """The content that decides whether a problem is held out (same key, same side of the split)."""
        return problem.question

    # --- shared machinery ---------------------------------------------------------------------

    def is_heldout(self, problem: Problem) -> bool:
        digest = zlib.crc32(_HELDOUT_SALT + self.split_key(problem).encode())
        return digest % _HELDOUT_BUCKETS == 0

    def _stream(self, seed: int, heldout: bool) -> Iterator[Problem]:
        rng = random.Random(seed)
        misses = 0
        while True:
            problem = self.make_problem(rng)
            if self.is_heldout(problem) == heldout:
                misses = 0
                yield problem
            else:
                misses += 1
                if misses > _MAX_TRIES_PER_PROBLEM * _HELDOUT_BUCKETS:
                    raise RuntimeError(
                        f"task {self.name!r}: no {'held-out' if heldout else 'training'} problems"
                    )

    def train_problems(self, n: int, seed: int = 0) -> list[Problem]:
        """``n`` training problems (repeats allowed, as in any i.i.d. stream), never a held-out one."""
        stream = self._stream(seed, heldout=False)
        return [next(stream) for _ in range(n)]

    def eval_problems(self, n: int = 200) -> list[Problem]:
        """The first ``n`` distinct held-out problems: the same list on every call and every machine."""
        stream = self._stream(EVAL_SEED, heldout=True)
        seen: dict[str, Problem] = {}
        tries = 0
        while len(seen) < n:
            problem = next(stream)
            if problem.question not in seen:
                seen[problem.question] = problem
                tries = 0
            else:
                tries += 1
                if tries > _MAX_TRIES_PER_PROBLEM:
                    raise ValueError(
                        f"task {self.name!r} has only about {len(seen)} distinct held-out problems; "
                        f"n={n} asked (use a harder setting or a smaller n)"
                    )
        return list(seen.values())

    def _dataset(self, problems: list[Problem]) -> Dataset:
        from datasets import Dataset

        return Dataset.from_dict(
            {"prompt": [self.prompt(p.question) for p in problems], "answer": [p.answer for p in problems]}
        )

    def train_dataset(self, n: int = 4096, seed: int = 0) -> Dataset:
        """Columns ``prompt`` (a plain string) and ``answer`` (gold string), ready for GRPOTrainer."""
        return self._dataset(self.train_problems(n, seed))

    def eval_set(self, n: int = 200) -> Dataset:
        """The fixed held-out set, same columns as :meth:`train_dataset`."""
        return self._dataset(self.eval_problems(n))

    def reward(self, completions: list[Any], answer: list[str], **kwargs: Any) -> list[float]:
        """TRL reward function: 1.0 per correct completion, 0.0 otherwise (extra dataset columns ignored)."""
        return [self.score(completion_text(c), a) for c, a in zip(completions, answer, strict=True)]
