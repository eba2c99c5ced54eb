"""What every dataset recipe shares: where a dataset lives, and loading it from the hub or from local files.

A :class:`DatasetRecipe` names a hub copy (id, config, split) and says how one of its rows becomes ``(problem,
gold, id)``; the domain that owns the recipe formats the loaded rows (:mod:`sfpo.math.data`: ``answer``;
:mod:`sfpo.code.data`: ``tests``). :func:`load_recipe` reads the hub copy (honouring ``HF_HUB_OFFLINE``, falling
back to a copy packaged in an installed library where the recipe has one) or local ``.jsonl``/``.json``/``.parquet``
files with the same fields, checks the fields, drops duplicate problems where asked, and hands the rows to the
domain. The named registry of every recipe is :data:`sfpo.app.catalog.DATASETS`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_INSTRUCTION", "DatasetRecipe", "DatasetUnavailableError", "format_rows", "load_recipe"]

#: The paper's prompt: the problem, then this instruction (no system prompt). It is verl's wording, which
#: the reference code inherits. Code recipes put their own instruction in its place.
DEFAULT_INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."

RowFn = Callable[[Mapping[str, Any]], "tuple[str | None, Any, Any]"]


class DatasetUnavailableError(RuntimeError):
    """The Hugging Face Hub could not be reached (or is switched off) and the dataset is not cached."""


@dataclass(frozen=True)
class DatasetRecipe:
    """Where a dataset lives and how one of its rows becomes ``(problem, gold answer, id)``.

    Either name the ``problem_field`` / ``answer_field`` (and optionally ``id_field``) columns, or give a
    ``row_fn`` returning ``(problem, answer, id_or_None)`` together with the top-level ``fields`` it reads.
    """

    name: str
    hub_id: str
    description: str
    config: str | None = None
    split: str = "train"
    problem_field: str | None = None
    answer_field: str | None = None
    id_field: str | None = None
    row_fn: RowFn | None = None
    fields: tuple[str, ...] = ()
    dedupe: bool = False
    kind: str = "math"  # "code": rows become prompt + tests (sfpo.code.data)
    # A copy of the recipe's split shipped inside an installed package, read when the hub cannot be reached
    packaged: Callable[[], Any] | None = None
    # The domain's formatting of the loaded rows: rows(recipe, ds, split, chat, instruction, source) -> Dataset
    rows: Callable[..., Any] | None = None

    def required_fields(self) -> tuple[str, ...]:
        if self.row_fn is not None:
            return self.fields
        return tuple(f for f in (self.problem_field, self.answer_field) if f)

    def convert(self, row: Mapping[str, Any]) -> tuple[str | None, Any, Any]:
        if self.row_fn is not None:
            return self.row_fn(row)
        row_id = row.get(self.id_field) if self.id_field else None
        return row.get(self.problem_field), row.get(self.answer_field), row_id


_LOCAL_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
_OFFLINE_LOCK = threading.Lock()


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


@contextlib.contextmanager
def _respect_offline_env():
    """Honour HF_HUB_OFFLINE / HF_DATASETS_OFFLINE set after the libraries were imported.

    ``datasets`` and ``huggingface_hub`` read the variables once, at import, and otherwise spend about
    20 s in retries before failing without a network; their module flags are read at call time, so they
    are switched on for the duration of the load.
    """
    if not (_env_true("HF_HUB_OFFLINE") or _env_true("HF_DATASETS_OFFLINE")):
        yield
        return
    import datasets.config
    import huggingface_hub.constants as hub_constants

    with _OFFLINE_LOCK:
        saved = (datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE)
        datasets.config.HF_HUB_OFFLINE = hub_constants.HF_HUB_OFFLINE = True
        try:
            yield
        finally:
            datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved


def _hub_error(recipe: DatasetRecipe, split: str, exc: BaseException) -> DatasetUnavailableError:
    offline = _env_true("HF_HUB_OFFLINE") or _env_true("HF_DATASETS_OFFLINE")
    why = "offline mode is on (HF_HUB_OFFLINE)" if offline else "the Hugging Face Hub could not be reached"
    return DatasetUnavailableError(
        f"could not load dataset {recipe.name!r} ({recipe.hub_id}, split {split!r}): {why} and no cached copy "
        f"was found ({type(exc).__name__}: {exc}).\n"
        f"Pass a local copy with the hub copy's fields instead (.jsonl, .json or .parquet; fields: "
        f"{', '.join(recipe.required_fields())}): `--data-files {recipe.name}=path/to/{recipe.name}.jsonl` for "
        f"sfpo eval, `data_files: {{{recipe.name}: path/to/{recipe.name}.jsonl}}` under a recipe's dataset: or "
        f"eval:, or load_dataset_recipe({recipe.name!r}, data_files='path/to/{recipe.name}.jsonl') in Python."
    )


def _is_offline_error(exc: BaseException) -> bool:
    """Errors that mean "cannot reach or find it on the hub", as opposed to bad arguments."""
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return True  # includes FileNotFoundError, DatasetNotFoundError and LocalEntryNotFoundError
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(
        names
        & {
            "DatasetNotFoundError",
            "LocalEntryNotFoundError",
            "OfflineModeIsEnabled",
            "HfHubHTTPError",
            "HTTPError",
            "TransportError",
            "RequestError",
        }
    )


def _local_files(data_files: Any) -> list[str]:
    items = [data_files] if isinstance(data_files, (str, os.PathLike)) else list(data_files)
    files: list[str] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _LOCAL_BUILDERS)
            if not found:
                raise FileNotFoundError(
                    f"no .jsonl, .json or .parquet files in folder {str(path)!r} (data_files)"
                )
            files.extend(str(p) for p in found)
        elif path.is_file():
            if path.suffix.lower() not in _LOCAL_BUILDERS:
                raise ValueError(
                    f"data file {str(path)!r} has an unsupported extension; use .jsonl, .json or .parquet"
                )
            files.append(str(path))
        else:
            raise FileNotFoundError(f"data file not found: {str(path)!r} (data_files)")
    if not files:
        raise ValueError("data_files is empty")
    return files


def _load_local(data_files: Any, split: str, cache_dir: str | None):
    import datasets

    if isinstance(data_files, Mapping):
        if split not in data_files:
            raise ValueError(f"data_files has splits {sorted(data_files)}, not the requested split {split!r}")
        data_files = data_files[split]
    files = _local_files(data_files)
    builders = {_LOCAL_BUILDERS[Path(f).suffix.lower()] for f in files}
    if len(builders) > 1:
        raise ValueError(f"data_files mixes JSON and Parquet files: {files}")
    return datasets.load_dataset(builders.pop(), data_files=files, split="train", cache_dir=cache_dir), files


def _check_fields(ds, recipe: DatasetRecipe, source: str) -> None:
    needed = recipe.required_fields()
    missing = [f for f in needed if f not in ds.column_names]
    if missing:
        raise ValueError(
            f"{source} cannot be read as dataset {recipe.name!r}: it lacks the field(s) {missing}. "
            f"The recipe needs {list(needed)} (the {recipe.hub_id} schema); its fields are "
            f"{sorted(ds.column_names)}."
        )


def _first_unique_rows(ds, recipe: DatasetRecipe, limit: int | None) -> list[int]:
    """Indices of the first row of each distinct problem (stops early once ``limit`` are found)."""
    seen: set[str] = set()
    keep: list[int] = []
    for i, row in enumerate(ds.select_columns(list(recipe.required_fields()))):
        problem = recipe.convert(row)[0]
        key = " ".join(problem.split()) if isinstance(problem, str) else None
        if key and key not in seen:
            seen.add(key)
            keep.append(i)
            if limit is not None and len(keep) >= limit:
                break
    return keep


def load_recipe(
    recipe: DatasetRecipe,
    split: str | None = None,
    data_files: Any = None,
    limit: int | None = None,
    tokenizer: Any = None,
    chat: bool | str = "auto",
    instruction: str | None = DEFAULT_INSTRUCTION,
    cache_dir: str | None = None,
):
    """Load ``recipe`` as a dataset with ``prompt``, ``problem``, ``id`` and the domain's gold column (``answer``
    for math, ``tests`` for code), formatted by the recipe's ``rows`` function.

    ``split`` defaults to the recipe's split (it picks the entry of a ``{split: files}`` ``data_files``
    dict; plain local files are one split). ``data_files`` loads local JSONL/JSON/Parquet files or folders
    instead of the hub. ``limit`` keeps the first rows. ``chat``: True gives conversational prompts,
    False plain strings, ``"auto"`` chat when ``tokenizer`` has a chat template (and when no tokenizer is
    given). Rows without a problem or a gold answer are dropped.

    Raises ``ValueError`` (bad arguments, local rows lacking the recipe's fields),
    ``FileNotFoundError`` (missing local path) and :class:`DatasetUnavailableError` (hub unreachable or
    offline, and nothing cached).
    """
    if chat not in (True, False, "auto"):
        raise ValueError(f"chat must be True, False or 'auto', got {chat!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer or None, got {limit!r}")
    if chat == "auto":
        chat = tokenizer is None or bool(getattr(tokenizer, "chat_template", None))
    split = split or recipe.split

    if data_files is not None:
        ds, files = _load_local(data_files, split, cache_dir)
        source = files[0] if len(files) == 1 else f"data_files {files}"
    else:
        import datasets

        try:
            with _respect_offline_env():
                ds = datasets.load_dataset(recipe.hub_id, recipe.config, split=split, cache_dir=cache_dir)
            source = f"{recipe.hub_id} ({split})"
        except Exception as exc:
            if not _is_offline_error(exc):
                raise
            if recipe.packaged is None or split != recipe.split:
                raise _hub_error(recipe, split, exc) from exc
            try:
                ds = recipe.packaged()
            except ImportError as missing:
                raise DatasetUnavailableError(f"{_hub_error(recipe, split, exc)}\nOr: {missing}.") from missing
            source = f"the packaged copy of {recipe.name}"
            logger.info("%s: the hub is unreachable; using %s (%d rows)", recipe.name, source, len(ds))
    _check_fields(ds, recipe, source)

    if recipe.dedupe:
        ds = ds.select(_first_unique_rows(ds, recipe, limit))
    elif limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    return recipe.rows(recipe, ds, split, chat, instruction, source)


def format_rows(recipe: DatasetRecipe, ds, to_row: Callable, gold: str, chat: bool, where: str, lacking: str):
    """The domain's ``to_row(row, index)`` over the loaded rows: ``prompt``, ``<gold>``, ``problem``, ``id``, all
    strings (explicit features: a numeric gold column, amc23's, would otherwise stay numeric); rows without a
    problem or a gold value are dropped, with a warning naming ``where`` and what they lacked."""
    from datasets import Features, Value

    text = Value("string")
    prompt = [{"role": text, "content": text}] if chat else text
    features = Features({"prompt": prompt, gold: text, "problem": text, "id": text})
    n_before = len(ds)
    ds = ds.map(to_row, with_indices=True, remove_columns=ds.column_names, features=features,
                desc=f"formatting {recipe.name}")
    ds = ds.filter(lambda row: bool(row["problem"]) and bool(row[gold]))
    if len(ds) < n_before:
        logger.warning("%s: dropped %d rows without %s", where, n_before - len(ds), lacking)
    return ds
