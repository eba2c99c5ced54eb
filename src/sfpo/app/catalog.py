"""The names recipes, `sfpo eval` and `sfpo train` refer to: every dataset recipe and every reward, by name.

The domains own their recipes and rewards (:mod:`sfpo.math`, :mod:`sfpo.code.reward`); this module only joins them, so
that a YAML recipe can say ``dataset: {names: [gsm8k]}`` or ``rewards: [code_accuracy]``.
"""

from __future__ import annotations

from typing import Any

from sfpo.code.data import CODE_DATASETS
from sfpo.code.reward import CODE_REWARDS
from sfpo.common.datasets import DatasetRecipe, load_recipe
from sfpo.common.rewards import RewardSpec
from sfpo.math.data import MATH_DATASETS
from sfpo.math.reward import MATH_REWARDS, RewardFn

__all__ = ["DATASETS", "REWARDS", "REWARD_SPECS", "build_reward", "get_recipe", "get_reward", "load_dataset_recipe"]

DATASETS: dict[str, DatasetRecipe] = {**MATH_DATASETS, **CODE_DATASETS}

# Every reward a recipe can name, with the options it takes: the one place a name is resolved and built.
REWARD_SPECS: dict[str, RewardSpec] = {**MATH_REWARDS, **CODE_REWARDS}
REWARDS: dict[str, RewardFn] = {name: spec.default for name, spec in REWARD_SPECS.items()}


def get_recipe(name: str) -> DatasetRecipe:
    """The recipe called ``name``; ``ValueError`` listing the known names otherwise."""
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}") from None


def get_reward(name: str) -> RewardFn:
    """The registered reward called ``name``; ``ValueError`` naming the allowed ones otherwise."""
    return build_reward(name)


def build_reward(name: str, options: dict[str, Any] | None = None) -> RewardFn:
    """The reward called ``name`` built with ``options`` (a recipe's ``{name: ..., option: value}``); a bare name
    is the ready-made function. ``ValueError`` naming the reward, the option or the allowed names otherwise."""
    try:
        spec = REWARD_SPECS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown reward {name!r}; allowed: {', '.join(sorted(REWARD_SPECS))}") from None
    return spec.build(options)


def load_dataset_recipe(name: str, *args: Any, **kwargs: Any):
    """Load the recipe called ``name``: :func:`sfpo.common.datasets.load_recipe` with that recipe (same further
    arguments: split, data_files, limit, tokenizer, chat, instruction, cache_dir). ``ValueError`` for an unknown
    name."""
    return load_recipe(get_recipe(name), *args, **kwargs)
