"""Slow-Fast Policy Optimization (SFPO) on top of TRL's GRPO trainer.

``from sfpo import SFPOConfig, SFPOTrainer`` is the drop-in for TRL's ``GRPOConfig`` / ``GRPOTrainer``.
The heavy imports (torch, TRL) happen on first use, so the light modules (rewards, report, switch) stay
quick to import.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["SFPOConfig", "SFPOTrainer", "__version__"]


def __getattr__(name: str):
    if name == "SFPOConfig":
        from sfpo.config import SFPOConfig

        return SFPOConfig
    if name == "SFPOTrainer":
        from sfpo.trainer import SFPOTrainer

        return SFPOTrainer
    raise AttributeError(f"module 'sfpo' has no attribute {name!r}")
