"""Slow-Fast Policy Optimization (SFPO), and GXPO beside it, on top of TRL's GRPO trainer.

``from sfpo import SFPOConfig, SFPOTrainer`` (or ``GXPOConfig, GXPOTrainer``) is the drop-in for TRL's
``GRPOConfig`` / ``GRPOTrainer``.
The heavy imports (torch, TRL) happen on first use, so the light modules (rewards, report, switch) stay
quick to import.

Layers, each importing only those before it: :mod:`sfpo.algorithm` (the trainer and its parts) →
:mod:`sfpo.common` (completion text, datasets, evaluation) → :mod:`sfpo.math`, :mod:`sfpo.code` (the domains) →
:mod:`sfpo.toy` (offline tasks, tiny policy, SmolLM2) → :mod:`sfpo.app` (command line, recipes, demo, report);
`sfpo.rewards`, `sfpo.tasks`, `sfpo.tiny` and `sfpo.cli` re-export public names at stable paths.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["GXPOConfig", "GXPOTrainer", "SFPOConfig", "SFPOTrainer", "__version__"]


def __getattr__(name: str):
    if name == "SFPOConfig":
        from sfpo.algorithm.config import SFPOConfig

        return SFPOConfig
    if name == "SFPOTrainer":
        from sfpo.algorithm.trainer import SFPOTrainer

        return SFPOTrainer
    if name == "GXPOConfig":
        from sfpo.algorithm.config import GXPOConfig

        return GXPOConfig
    if name == "GXPOTrainer":
        from sfpo.algorithm.gxpo import GXPOTrainer

        return GXPOTrainer
    raise AttributeError(f"module 'sfpo' has no attribute {name!r}")
