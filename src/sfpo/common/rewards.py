"""A reward as recipes name it: the ready function, the factory that builds it with options, and those options.

Each domain declares its rewards next to their factories (`sfpo.math.reward.MATH_REWARDS`,
`sfpo.code.reward.CODE_REWARDS`); `sfpo.app.catalog` joins them into the one registry that recipe validation
and the training pipeline both build from, so a name and its options are checked and built in one place.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

RewardFn = Callable[..., list[float]]


@dataclass(frozen=True)
class RewardSpec:
    """`factory(**options)` builds the reward (TRL's signature, `__name__` = `name`); `options` are the keys it
    takes; `default` is `factory()`, built once, the function a bare name in a recipe refers to."""

    name: str
    factory: Callable[..., RewardFn]
    options: tuple[str, ...] = ()
    default: RewardFn | None = None

    def build(self, options: Mapping[str, Any] | None = None) -> RewardFn:
        """The reward with these options; ValueError naming the reward and the option for a bad one."""
        options = dict(options or {})
        unknown = sorted((k for k in options if k not in self.options), key=str)
        if unknown and not self.options:
            raise ValueError(f"reward {self.name!r} takes no options (got {unknown[0]!r})")
        if unknown:
            close = difflib.get_close_matches(str(unknown[0]), self.options, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"reward {self.name!r} has no option {unknown[0]!r}{hint}; its options: "
                             f"{', '.join(self.options)}")
        if not options and self.default is not None:
            return self.default
        try:
            return self.factory(**options)
        except (TypeError, ValueError) as err:
            raise ValueError(f"reward {self.name!r}: {err}") from None

