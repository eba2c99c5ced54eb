"""The names recipes, `sfpo eval` and `sfpo train` refer to: every dataset recipe and every reward, by name.

The domains own their recipes and rewards (:mod:`sfpo.math`, :mod:`sfpo.code.reward`); this module only joins them, so
that a YAML recipe can say ``dataset: {names: [gsm8k]}`` or ``rewards: [code_accuracy]``.
"""

from __future__ import annotations

from typing import Any

from sfpo.code.data import CODE_DATASETS
from sfpo.code.reward import code_accuracy, code_accuracy_partial
from sfpo.common.datasets import DatasetRecipe, load_recipe
from sfpo.math.data import MATH_DATASETS
from sfpo.math.reward import RewardFn, boxed_format, math_accuracy, math_accuracy_format

__all__ = ["DATASETS", "REWARDS", "get_recipe", "get_reward", "load_dataset_recipe"]

DATASETS: dict[str, DatasetRecipe] = {**MATH_DATASETS, **CODE_DATASETS}

REWARDS: dict[str, RewardFn] = {
    "math_accuracy": math_accuracy,
    "math_accuracy_format": math_accuracy_format,
    "boxed_format": boxed_format,
    "code_accuracy": code_accuracy,
    "code_accuracy_partial": code_accuracy_partial,
}


def get_recipe(name: str) -> DatasetRecipe:
    """The recipe called ``name``; ``ValueError`` listing the known names otherwise."""
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}") from None


def get_reward(name: str) -> RewardFn:
    """The registered reward called ``name``; ``ValueError`` naming the allowed ones otherwise."""
    try:
        return REWARDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown reward {name!r}; allowed: {', '.join(sorted(REWARDS))}") from None


def load_dataset_recipe(name: str, *args: Any, **kwargs: Any):
    """Load the recipe called ``name``: :func:`sfpo.common.datasets.load_recipe` with that recipe (same further
    arguments: split, data_files, limit, tokenizer, chat, instruction, cache_dir). ``ValueError`` for an unknown
    name."""
    return load_recipe(get_recipe(name), *args, **kwargs)
