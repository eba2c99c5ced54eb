"""The settings every tiny CPU run in the tests shares, in one place: `tiny_cpu(**fields)` is them plus `fields`
(a field given here wins), for `SFPOConfig(**tiny_cpu(...))`, `GXPOConfig(...)` or a shared `dict`."""

from __future__ import annotations

# CPU, fp32, no logging integrations, no checkpoints unless a test asks, no progress bars, no recomputation
TINY_CPU = dict(
    use_cpu=True,
    bf16=False,
    report_to=[],
    save_strategy="no",
    disable_tqdm=True,
    activation_checkpointing=False,
)


def tiny_cpu(**fields) -> dict:
    return {**TINY_CPU, **fields}
