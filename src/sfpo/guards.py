"""Guards at the trainer's boundary: reward functions, and a training set the run cannot use.

TRL calls each reward function once per generation batch and turns its output into a tensor; a function
that raises surfaces as a bare traceback from deep inside the trainer, and a NaN (or a string, or a short
list) either crashes later or silently poisons the group advantages. `SFPOTrainer` wraps every callable
reward once, at construction, with :func:`guard_reward_funcs`: the wrapper keeps the function's name (TRL
names its metrics after it) and whether it is async, and checks what comes back:

- it raised: :class:`RewardFunctionError` names the function, the sample index and the exception. The index
  is found by calling the function again on one sample at a time (only on this failure path);
- it returned something that is not a list of one value per completion, a value that is not a number, or a
  NaN / infinity: :class:`RewardFunctionError` names the function, the sample index and the value.

`None` keeps TRL's meaning ("this reward does not apply to this sample"; TRL turns it into NaN and leaves it
out of the weighted sum). Rewards are computed right after generation, before the loss of that batch is
taken, so a failing reward never reaches the weights.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["RewardFunctionError", "check_reward_output", "check_train_dataset", "guard_reward_funcs"]

# Keyword arguments TRL passes that are not per-sample lists.
_SHARED_KWARGS = frozenset({"trainer_state", "log_extra", "log_metric"})


class RewardFunctionError(RuntimeError):
    """A reward function raised or returned something that is not one finite number (or None) per sample."""


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_number(value: Any) -> bool:
    if isinstance(value, numbers.Real):  # int, float, bool, numpy scalars
        return True
    item = getattr(value, "item", None)  # 0-d torch / numpy arrays
    return callable(item) and getattr(value, "ndim", None) == 0


def check_reward_output(name: str, output: Any, n: int) -> list:
    """The reward values as a list, or :class:`RewardFunctionError` naming ``name`` and what is wrong."""
    if isinstance(output, (str, bytes)) or not isinstance(output, (Sequence, *_array_types())):
        raise RewardFunctionError(
            f"reward function {name!r} returned {_short(output)} ({type(output).__name__}); it must return a list "
            f"with one float (or None for 'not applicable') per completion, here {n}"
        )
    values = list(output)
    if len(values) != n:
        raise RewardFunctionError(
            f"reward function {name!r} returned {len(values)} values for {n} completions; it must return one "
            "value per completion (None for 'not applicable')"
        )
    for i, value in enumerate(values):
        if value is None:
            continue
        if not _is_number(value):
            raise RewardFunctionError(
                f"reward function {name!r} returned {_short(value)} ({type(value).__name__}) for sample {i}; each "
                "value must be a finite number, or None for 'not applicable'"
            )
        if not math.isfinite(float(value)):
            raise RewardFunctionError(
                f"reward function {name!r} returned {float(value)} for sample {i}; each value must be finite (use "
                "None to mark a sample the reward does not apply to)"
            )
    return values


def _array_types() -> tuple:
    types = []
    try:
        import numpy

        types.append(numpy.ndarray)
    except ImportError:  # pragma: no cover - numpy comes with torch
        pass
    try:
        import torch

        types.append(torch.Tensor)
    except ImportError:  # pragma: no cover
        pass
    return tuple(types)


def _sample_kwargs(kwargs: dict, n: int, i: int) -> dict:
    """The keyword arguments of one sample: per-sample lists cut to their i-th item, the rest as they are."""
    out = {}
    for key, value in kwargs.items():
        if key not in _SHARED_KWARGS and isinstance(value, list) and len(value) == n:
            out[key] = value[i : i + 1]
        else:
            out[key] = value
    return out


def _raised(name: str, exc: BaseException, index: int | None, n: int, completion: Any) -> RewardFunctionError:
    where = (
        f"on sample {index} of {n} (completion: {_short(completion, 200)})"
        if index is not None
        else f"on a batch of {n} completions (no single sample raises on its own)"
    )
    return RewardFunctionError(f"reward function {name!r} raised {type(exc).__name__}: {exc} {where}")


def _n_samples(kwargs: dict) -> int:
    completions = kwargs.get("completions")
    return len(completions) if isinstance(completions, list) else -1


def guard_reward_funcs(funcs: list, names: list[str]) -> list:
    """Each callable in ``funcs`` wrapped by a guard named after ``names``; models (nn.Module) are left alone."""
    return [_guard(f, name) if _is_plain_callable(f) else f for f, name in zip(funcs, names, strict=True)]


def _is_plain_callable(func: Any) -> bool:
    try:
        import torch.nn as nn

        if isinstance(func, nn.Module):
            return False
    except ImportError:  # pragma: no cover
        pass
    return callable(func) and not getattr(func, "_sfpo_guarded", False)


def _guard(func: Callable, name: str) -> Callable:
    from trl.trainer.utils import is_async_callable  # TRL's own test, so both sides agree

    if is_async_callable(func):

        async def guarded_async(*args, **kwargs):
            n = _n_samples(kwargs)
            try:
                output = await func(*args, **kwargs)
            except Exception as exc:
                index = None
                for i in range(max(n, 0)):
                    try:
                        await func(*args, **_sample_kwargs(kwargs, n, i))
                    except Exception:
                        index = i
                        break
                raise _raised(name, exc, index, n, _pick(kwargs, index)) from exc
            return check_reward_output(name, output, n) if n >= 0 else output

        wrapper = guarded_async
    else:

        def guarded(*args, **kwargs):
            n = _n_samples(kwargs)
            try:
                output = func(*args, **kwargs)
            except Exception as exc:
                index = None
                for i in range(max(n, 0)):
                    try:
                        func(*args, **_sample_kwargs(kwargs, n, i))
                    except Exception:
                        index = i
                        break
                raise _raised(name, exc, index, n, _pick(kwargs, index)) from exc
            return check_reward_output(name, output, n) if n >= 0 else output

        wrapper = guarded
    # TRL names the reward's metrics (and its error messages) after __name__.
    wrapper.__name__ = wrapper.__qualname__ = name
    wrapper.__doc__ = getattr(func, "__doc__", None)
    wrapper.__wrapped__ = func
    wrapper._sfpo_guarded = True
    return wrapper


def _pick(kwargs: dict, index: int | None) -> Any:
    if index is None:
        return None
    return kwargs["completions"][index]


def check_train_dataset(dataset: Any, args: Any) -> None:
    """ValueError unless ``dataset`` can feed one generation batch: TRL's sampler drops an incomplete batch,
    so an empty or too-small dataset otherwise trains for zero steps without a word."""
    if dataset is None or not hasattr(dataset, "__len__"):  # none given, or an IterableDataset: nothing to count
        return
    columns = getattr(dataset, "column_names", None)
    if columns is not None and "prompt" not in columns:
        raise ValueError(f"the training set has no 'prompt' column (its columns: {sorted(columns)})")
    prompts_per_batch = args.generation_batch_size // args.num_generations
    if len(dataset) == 0:
        raise ValueError("the training set is empty")
    if len(dataset) < prompts_per_batch:
        raise ValueError(
            f"the training set has {len(dataset)} prompts but one generation batch takes {prompts_per_batch} "
            f"(generation_batch_size {args.generation_batch_size} / num_generations {args.num_generations}); "
            "add prompts or lower generation_batch_size"
        )
