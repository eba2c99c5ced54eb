"""Public names of the tiny-policy builder (kept stable across the package's layout); the code lives in
:mod:`sfpo.toy.tiny`."""

from sfpo.toy.tiny import (
    INFO_FILE,
    PORTABLE_ENV,
    TASK_DEFAULTS,
    TINY_VERSION,
    TinySettings,
    build_tiny_policy,
    build_tokenizer,
    generation_kwargs_for,
    load_tiny_info,
    load_tokenizer,
    shipped_tiny_policy,
    tiny_cache_path,
)

__all__ = [
    "INFO_FILE",
    "PORTABLE_ENV",
    "TASK_DEFAULTS",
    "TINY_VERSION",
    "TinySettings",
    "build_tiny_policy",
    "build_tokenizer",
    "generation_kwargs_for",
    "load_tiny_info",
    "load_tokenizer",
    "shipped_tiny_policy",
    "tiny_cache_path",
]
