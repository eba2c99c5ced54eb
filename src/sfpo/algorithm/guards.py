"""Guards at the trainer's boundary: reward functions, and a training set the run cannot use.

The rule (drop-in): at `sfpo_inner_steps=0` the guards leave what GRPOTrainer accepts, calls and raises as it is,
apart from the findings below, each listed in the README's "Where SFPOTrainer differs from GRPOTrainer" table.

Reward functions. TRL calls each reward function once per generation batch and turns its output into a tensor.
`SFPOTrainer` wraps every callable reward once, at construction, with :func:`guard_reward_funcs`; the wrapper keeps
the function's name (TRL names its metrics after it) and whether it is async, and:

- when the function raises, lets that exception go on unchanged (the same object, type and message, so a user's
  ``except`` around ``train()`` still catches it) after adding a PEP 678 note naming the function and the batch.
  The function has been called once, as GRPOTrainer calls it. Only with ``sfpo_diagnose_reward_errors=True`` does
  the guard then call it again, one sample at a time, to name the first sample that raises on its own (extra
  calls: paid judge requests, sandbox runs, a stateful reward's counters see them), and a second note says so;
- when its output is not one number (or None) per completion, or holds a NaN or an infinity, raises
  :class:`RewardFunctionError` (a ``ValueError``, as TRL's own length check raises; :class:`RewardTypeError`,
  also a ``TypeError``, where TRL would mostly fail with a ``TypeError`` on that output) naming the function, the
  sample and the value. GRPOTrainer has no such check: it would take a NaN like a None, train on an infinity, and
  read a dict's keys as rewards.

`None` keeps TRL's meaning ("this reward does not apply to this sample"). Rewards are computed right after
generation, before the loss of that batch is taken, so a failing reward never reaches the weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Set
from typing import Any

__all__ = [
    "RewardFunctionError",
    "RewardTypeError",
    "check_reward_output",
    "check_train_dataset",
    "guard_reward_funcs",
    "reward_failure",
]

# Keyword arguments TRL passes that are not per-sample lists.
_SHARED_KWARGS = frozenset({"trainer_state", "log_extra", "log_metric"})
# Every note the guard adds starts with this, so that callers (the CLI) can find a reward's exception.
NOTE_PREFIX = "sfpo: "


class RewardFunctionError(ValueError):
    """A reward function returned something that is not one finite number (or None) per completion."""


class RewardTypeError(RewardFunctionError, TypeError):
    """A reward function returned a non-list, or a value that is not a number (TRL mostly raises TypeError here)."""


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _as_float(value: Any) -> float | None:
    """The value as a float if TRL's tensor conversion would take it as one number, else None."""
    if isinstance(value, (str, bytes)):  # float("1.0") works, torch.tensor(["1.0"]) does not
        return None
    if getattr(value, "ndim", 0) != 0:  # a 1-element array or tensor is a nested list to torch.tensor
        return None
    try:
        return float(value)  # int, float, bool, Decimal, Fraction, numpy scalars, 0-d arrays and tensors
    except (TypeError, ValueError):
        return None


def check_reward_output(name: str, output: Any, n: int) -> list:
    """The reward values as a list, or :class:`RewardFunctionError` naming ``name`` and what is wrong.

    Any ordered iterable is taken (a list, a tuple, an array, a tensor, a generator: TRL iterates it once);
    strings, mappings and sets are not lists of rewards."""
    if isinstance(output, (str, bytes, Mapping, Set)) or not isinstance(output, Iterable):
        raise RewardTypeError(
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
        number = _as_float(value)
        if number is None:
            raise RewardTypeError(
                f"reward function {name!r} returned {_short(value)} ({type(value).__name__}) for sample {i}; each "
                "value must be a finite number, or None for 'not applicable'"
            )
        if not math.isfinite(number):
            raise RewardFunctionError(
                f"reward function {name!r} returned {number} for sample {i}; each value must be finite (use None "
                "to mark a sample the reward does not apply to)"
            )
    return values


# ---------------------------------------------------------------------------------------------- raising rewards


def _add_note(exc: BaseException, note: str) -> None:
    if hasattr(exc, "add_note"):  # Python ≥ 3.11
        exc.add_note(note)
    else:  # PEP 678's attribute, which add_note fills (3.10 stores it, its traceback does not print it)
        exc.__notes__ = [*getattr(exc, "__notes__", []), note]


def _batch_note(name: str, kwargs: dict, n: int) -> str:
    state = kwargs.get("trainer_state")
    step = getattr(state, "global_step", None)
    where = f"on a batch of {n} completions" if n >= 0 else "on a batch"
    if step is not None:
        where += f" (the generation batch at global step {step})"
    return (
        f"{NOTE_PREFIX}raised by reward function {name!r} {where}; it was called once for the batch, as "
        "GRPOTrainer does (sfpo_diagnose_reward_errors=True calls it again per sample to name the one that raises)"
    )


def _diagnosis_note(name: str, n: int, index: int | None, tried: int, completion: Any) -> str:
    head = f"{NOTE_PREFIX}sfpo_diagnose_reward_errors: called {name!r} again on {tried} single sample(s)"
    if index is None:
        return f"{head}; none of the {n} raises on its own (the batch as a whole fails)"
    return f"{head}: sample {index} of {n} raises on its own (completion: {_short(completion, 200)})"


def _sample_kwargs(kwargs: dict, n: int, i: int) -> dict:
    """The keyword arguments of one sample: per-sample lists cut to their i-th item, the rest as they are."""
    out = {}
    for key, value in kwargs.items():
        if key not in _SHARED_KWARGS and isinstance(value, list) and len(value) == n:
            out[key] = value[i : i + 1]
        else:
            out[key] = value
    return out


def _n_samples(kwargs: dict) -> int:
    completions = kwargs.get("completions")
    return len(completions) if isinstance(completions, list) else -1


def guard_reward_funcs(funcs: list, names: list[str], diagnose: bool = False) -> list:
    """Each callable in ``funcs`` wrapped by a guard named after ``names``; models (nn.Module) are left alone.

    ``diagnose``: after a function raised, call it again one sample at a time to name the sample (opt-in)."""
    return [_guard(f, name, diagnose) if _is_plain_callable(f) else f for f, name in zip(funcs, names, strict=True)]


def _is_plain_callable(func: Any) -> bool:
    try:
        import torch.nn as nn

        if isinstance(func, nn.Module):
            return False
    except ImportError:  # pragma: no cover
        pass
    return callable(func) and not getattr(func, "_sfpo_guarded", False)


def _guard(func: Callable, name: str, diagnose: bool) -> Callable:
    from trl.trainer.utils import is_async_callable  # TRL's own test, so both sides agree

    def checked(output, n):
        return check_reward_output(name, output, n) if n >= 0 else output

    if is_async_callable(func):

        async def guarded_async(*args, **kwargs):
            n = _n_samples(kwargs)
            try:
                output = await func(*args, **kwargs)
            except Exception as exc:
                _add_note(exc, _batch_note(name, kwargs, n))
                if diagnose and n > 0:
                    index, tried = None, 0
                    for i in range(n):
                        tried += 1
                        try:
                            await func(*args, **_sample_kwargs(kwargs, n, i))
                        except Exception:
                            index = i
                            break
                    _add_note(exc, _diagnosis_note(name, n, index, tried, _pick(kwargs, index)))
                raise
            return checked(output, n)

        wrapper = guarded_async
    else:

        def guarded(*args, **kwargs):
            n = _n_samples(kwargs)
            try:
                output = func(*args, **kwargs)
            except Exception as exc:
                _add_note(exc, _batch_note(name, kwargs, n))
                if diagnose and n > 0:
                    index, tried = None, 0
                    for i in range(n):
                        tried += 1
                        try:
                            func(*args, **_sample_kwargs(kwargs, n, i))
                        except Exception:
                            index = i
                            break
                    _add_note(exc, _diagnosis_note(name, n, index, tried, _pick(kwargs, index)))
                raise
            return checked(output, n)

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


def reward_failure(exc: BaseException) -> str | None:
    """What the guard noted on ``exc`` (or on an exception it was raised from), or None if no reward raised it.

    For callers that report errors: the notes name the reward function and the batch."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        notes = [n[len(NOTE_PREFIX) :] for n in getattr(exc, "__notes__", ()) if str(n).startswith(NOTE_PREFIX)]
        if notes:
            return "; ".join(notes)
        exc = exc.__cause__ or exc.__context__
    return None


# ---------------------------------------------------------------------------------------------- the training set


def check_train_dataset(dataset: Any, args: Any, prompt_required: bool = True) -> None:
    """ValueError for a training set GRPOTrainer would fail on or train zero steps with, at construction.

    Everything else passes: iterable datasets (nothing to count), any extra columns (images, an `environment`
    column, tool or reward fields). ``prompt_required=False`` when an `environment_factory` is given: TRL then
    takes each prompt from the environment's `reset()`, and the dataset may hold no `prompt` column. Without one,
    TRL's first generation batch fails with ``KeyError: 'prompt'``. An empty or too-small set gives no batch at
    all: TRL's sampler drops an incomplete generation batch, so `train()` takes zero steps without a word (or,
    with `max_steps` unset, raises ValueError asking for it)."""
    if dataset is None or not hasattr(dataset, "__len__"):  # none given, or an IterableDataset: nothing to count
        return
    columns = getattr(dataset, "column_names", None)
    if prompt_required and columns is not None and "prompt" not in columns:
        raise ValueError(
            f"the training set has no 'prompt' column (its columns: {sorted(columns)}); GRPOTrainer reads each "
            "example's 'prompt' unless an environment_factory supplies the prompts"
        )
    prompts_per_batch = args.generation_batch_size // args.num_generations
    if len(dataset) == 0:
        raise ValueError("the training set is empty")
    if len(dataset) < prompts_per_batch:
        raise ValueError(
            f"the training set has {len(dataset)} prompts but one generation batch takes {prompts_per_batch} "
            f"(generation_batch_size {args.generation_batch_size} / num_generations {args.num_generations}), "
            "so training would take zero steps; add prompts or lower generation_batch_size"
        )
