"""Public names of the rewards (kept stable across the package's layout): TRL-signature reward functions of both
domains and the registry recipes pick them from. The code lives in :mod:`sfpo.math.reward`,
:mod:`sfpo.code.reward` and :mod:`sfpo.app.catalog`."""

from sfpo.app.catalog import REWARDS, get_reward
from sfpo.code.reward import code_accuracy, code_accuracy_partial, make_code_accuracy
from sfpo.common.text import completion_text, extract_answer, extract_boxed
from sfpo.math.reward import (
    boxed_format,
    check_many,
    is_correct,
    make_math_accuracy,
    math_accuracy,
    math_accuracy_format,
    normalize_gold,
)

__all__ = [
    "REWARDS",
    "boxed_format",
    "check_many",
    "code_accuracy",
    "code_accuracy_partial",
    "completion_text",
    "extract_answer",
    "extract_boxed",
    "get_reward",
    "is_correct",
    "make_code_accuracy",
    "make_math_accuracy",
    "math_accuracy",
    "math_accuracy_format",
    "normalize_gold",
]
