"""Checks of recipe values by type and range, with messages that give the key, the value and what is allowed.

`SFPOConfig` checks its own `sfpo_*` fields; TRL's and transformers' fields are plain dataclass fields whose
wrong values (a string learning rate, a negative batch size, a NaN) otherwise surface deep inside training.
:func:`check_trainer_values` checks every field against its annotation and the common ones against a range.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import types
import typing
from dataclasses import dataclass
from typing import Any


def did_you_mean(name: Any, allowed) -> str:
    """' did you mean 'x'?' for a close match among ``allowed``, else ''."""
    close = difflib.get_close_matches(str(name), [str(a) for a in allowed], n=2, cutoff=0.6)
    return f"did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Range:
    """A number in [low, high] (or (low, high] with ``low_open``); ``integer`` for ints only; ``none`` allows null."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    integer: bool = False
    none: bool = False
    also: tuple = ()  # extra allowed values, e.g. -1 for "no limit"

    def ok(self, value: Any) -> bool:
        if value is None:
            return self.none
        if value in self.also and is_number(value):
            return True
        if not (is_int(value) if self.integer else is_number(value)) or not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high

    def describe(self) -> str:
        kind = "an int" if self.integer else "a number"
        low, high = (_num(self.low), _num(self.high))
        if self.low is not None and self.high is not None:
            text = f"{kind} in {'(' if self.low_open else '['}{low}, {high}]"
        elif self.low is not None:
            text = f"{kind} {'>' if self.low_open else '≥'} {low}"
        else:
            text = f"a finite {kind[2:] if kind.startswith('a ') else kind[3:]}"
        extras = [repr(a) for a in self.also] + (["null"] if self.none else [])
        return text + (f" (or {', '.join(extras)})" if extras else "")


def _num(x: float | None) -> str:
    return str(int(x)) if x is not None and float(x).is_integer() else f"{x:g}" if x is not None else ""


POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
COUNT = Range(1, integer=True)
FRACTION = Range(0, 1, low_open=True)

# TRL / transformers fields that a recipe commonly sets; the rest get the type check only.
TRAINER_RANGES: dict[str, Range] = {
    "learning_rate": POSITIVE,
    "num_generations": Range(2, integer=True, none=True),
    "per_device_train_batch_size": COUNT,
    "per_device_eval_batch_size": COUNT,
    "gradient_accumulation_steps": COUNT,
    "steps_per_generation": Range(1, integer=True, none=True),
    "generation_batch_size": Range(1, integer=True, none=True),
    "max_completion_length": Range(1, integer=True, none=True),
    "vllm_max_model_length": Range(1, integer=True, none=True),
    "temperature": POSITIVE,
    "top_p": FRACTION,
    "min_p": Range(0, 1, none=True),
    "repetition_penalty": POSITIVE,
    "epsilon": NON_NEGATIVE,
    "epsilon_high": Range(0, none=True),
    "beta": NON_NEGATIVE,
    "entropy_coef": NON_NEGATIVE,
    "weight_decay": NON_NEGATIVE,
    "max_grad_norm": NON_NEGATIVE,
    "adam_beta1": Range(0, 1),
    "adam_beta2": Range(0, 1),
    "adam_epsilon": POSITIVE,
    "warmup_steps": Range(0),
    "num_train_epochs": POSITIVE,
    "max_steps": Range(1, integer=True, also=(-1,)),
    "logging_steps": POSITIVE,
    "save_steps": POSITIVE,
    "eval_steps": Range(0, low_open=True, none=True),
    "save_total_limit": Range(1, integer=True, none=True),
    "seed": Range(0, 2**32 - 1, integer=True),
    "data_seed": Range(0, 2**32 - 1, integer=True, none=True),
    "dataloader_num_workers": Range(0, integer=True),
}


def _resolve(annotation: Any) -> Any:
    if isinstance(annotation, str):  # modules written with `from __future__ import annotations`
        try:
            return eval(
                annotation, {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict}
            )
        except Exception:
            return Any
    return annotation


def fits(value: Any, annotation: Any) -> bool:
    """Whether a YAML value can stand for a field annotated ``annotation`` (unknown classes: yes)."""
    tp = _resolve(annotation)
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, arg) for arg in typing.get_args(tp))
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if tp is type(None) or tp is None:
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return is_int(value)
    if tp is float:
        return is_number(value)
    if tp is str:
        return isinstance(value, str)
    if tp is list or origin is list:
        return isinstance(value, list)
    if tp is dict or origin is dict:
        return isinstance(value, dict)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return isinstance(value, tp) or value in {m.value for m in tp}
    return True


def describe(annotation: Any) -> str:
    tp = _resolve(annotation)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        parts = [describe(arg) for arg in typing.get_args(tp)]
        return " or ".join(dict.fromkeys(parts))
    if typing.get_origin(tp) is typing.Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    names = {
        bool: "true or false",
        int: "an int",
        float: "a number",
        str: "a string",
        type(None): "null",
        None: "null",
        list: "a list",
        dict: "a mapping",
    }
    if tp in names:
        return names[tp]
    origin = typing.get_origin(tp)
    if origin in names:
        return names[origin]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    return getattr(tp, "__name__", str(tp))


def check_trainer_values(raw: dict, config_cls) -> str | None:
    """The first problem with ``raw`` trainer values (an error message), or None when all fit."""
    fields = {f.name: f for f in dataclasses.fields(config_cls) if f.init}
    for key, value in raw.items():
        field = fields.get(key)
        if field is None or key.startswith("sfpo_") or key == "num_iterations":
            continue  # unknown keys are reported elsewhere; SFPOConfig checks its own fields
        if isinstance(value, float) and math.isnan(value):
            return f"trainer.{key}=nan is not allowed: it must be a number"
        choices = field.metadata.get("choices") if field.metadata else None
        if (
            choices
            and value is not None
            and isinstance(value, str)
            and value not in [str(c) for c in choices]
        ):
            hint = did_you_mean(value, choices)
            return (
                f"trainer.{key}={value!r} is not allowed: use one of {', '.join(repr(str(c)) for c in choices)}"
                + (f"; {hint}" if hint else "")
            )
        enum_cls = _enum_in(field.type)
        if enum_cls is not None and isinstance(value, str) and value not in {m.value for m in enum_cls}:
            allowed = [m.value for m in enum_cls]
            hint = did_you_mean(value, allowed)
            return f"trainer.{key}={value!r} is not allowed: use one of {', '.join(map(repr, allowed))}" + (
                f"; {hint}" if hint else ""
            )
        if not fits(value, field.type):
            return f"trainer.{key}={value!r} is not allowed: it must be {describe(field.type)}"
        rule = TRAINER_RANGES.get(key)
        if rule is not None and not rule.ok(value):
            return f"trainer.{key}={value!r} is not allowed: it must be {rule.describe()}"
    return None


def _enum_in(annotation: Any):
    """The Enum class in an annotation such as `SchedulerType | str` (transformers' choice fields)."""
    tp = _resolve(annotation)
    args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    return next((a for a in args if isinstance(a, type) and issubclass(a, enum.Enum)), None)
