"""When SFPO turns itself off (docs/algorithm.md#the-switch).

The entropy switch keeps the per-RL-step training entropy H_s and, once W values exist, computes

    z = (H_last - mean(window)) / (std(window) + 1e-9)      over the last W values, newest included,

with the population std. The reference code switches off when z >= tau (an upward spike); the paper's
Algorithm 1 when |z| >= tau. The decision taken after step s applies from step s+1 on and is sticky.

Two opt-in guards beyond the reference (both off by default, which is the reference rule):
- warm-up W0: the z-scores of RL steps 0 … W0-1 never count (their entropies still fill the window);
- patience P: the switch fires only after P consecutive counted RL steps whose z crosses tau.

Pure Python on purpose: the same decision must come out on every rank, and it is checked by eye against
the paper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

ZSCORE_EPS = 1e-9


def entropy_zscore(history: list[float], window: int, preceding: bool = False) -> float | None:
    """z-score of the newest entropy against the last `window` values (newest included), or with `preceding`
    against the `window` values before it (GXPO's rule: a value never dilutes its own score); None if too few."""
    if len(history) < window + preceding:
        return None
    recent = history[-window - 1:-1] if preceding else history[-window:]
    mean = sum(recent) / window
    std = math.sqrt(sum((h - mean) ** 2 for h in recent) / window)  # population std
    return (history[-1] - mean) / (std + ZSCORE_EPS)


@dataclass
class SFPOSwitch:
    """Sticky on/off state of SFPO across RL steps.

    `mode` is "entropy_zscore", "step" or "none". Call `update(rl_step, entropy)` once at the end of each
    RL step (rl_step counts from 0); `active` then says whether the *next* RL step runs SFPO.
    """

    mode: str = "entropy_zscore"
    window: int = 30
    threshold: float = 1.0
    two_sided: bool = False
    stop_step: int | None = None
    warmup: int = 0  # W0: RL steps whose z-score never counts
    patience: int = 1  # P: consecutive crossings needed
    preceding: bool = False  # score against the W values before the newest (GXPO), not a window holding it
    active: bool = True
    switched_at: int | None = None  # first RL step that ran as plain GRPO
    history: list[float] = field(default_factory=list)
    last_z: float | None = None
    streak: int = 0  # consecutive counted RL steps whose z crossed tau, up to the newest

    def starts_active(self) -> None:
        """Apply a fixed stop step of 0 before the first RL step."""
        if self.mode == "step" and self.stop_step is not None and self.stop_step <= 0 and self.active:
            self.active, self.switched_at = False, 0

    def update(self, rl_step: int, entropy: float | None) -> bool:
        """Record step `rl_step`'s training entropy and decide for step `rl_step + 1`. Returns `active`.

        `entropy=None` (no training pass ran) leaves the entropy rule's state as it was; a fixed stop step
        still counts the RL step."""
        if entropy is not None and math.isfinite(entropy):
            self.history.append(float(entropy))
        self.last_z = entropy_zscore(self.history, self.window, self.preceding) if entropy is not None else None
        if not self.active:
            return False
        fire = False
        if self.mode == "entropy_zscore":
            if entropy is None:  # nothing measured (e.g. a skipped zero-std batch): no evidence either way
                return self.active
            crossed = self.last_z is not None and rl_step >= self.warmup and (
                abs(self.last_z) >= self.threshold if self.two_sided else self.last_z >= self.threshold
            )
            self.streak = self.streak + 1 if crossed else 0
            fire = self.streak >= self.patience
        elif self.mode == "step" and self.stop_step is not None:
            fire = rl_step + 1 >= self.stop_step
        if fire:
            self.active, self.switched_at = False, rl_step + 1
        return self.active

    def state_dict(self) -> dict:
        return {
            "active": self.active,
            "switched_at": self.switched_at,
            "history": list(self.history),
            "last_z": self.last_z,
            "streak": self.streak,
        }

    def load_state_dict(self, state: dict) -> None:
        self.active = bool(state["active"])
        self.switched_at = state["switched_at"]
        self.history = [float(h) for h in state["history"]]
        self.last_z = state.get("last_z")
        self.streak = int(state.get("streak", 0))  # checkpoints from before the patience option have none
