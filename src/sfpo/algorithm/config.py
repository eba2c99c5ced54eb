"""SFPOConfig and GXPOConfig: TRL's GRPOConfig plus each algorithm's fields, validated.

SFPO's defaults are the paper's (K=3, α=0.8, entropy switch with W=30, τ=1.0). `num_iterations` follows from K:
one RL step is K fast passes plus the slow correction over the same generation batch, which is TRL's
`num_iterations = K + 1` with the old log-probs taken once at θ0. GXPO's (K=5, α=0.5, the switch on the preceding
30 entropies with τ=3, patience 3, warm-up 50) are its authors' efficiency runs; an RL step is three passes over
each mini-batch (`num_iterations = 3`). The run-control fields both share (`RLStepConfig`) keep SFPO's names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from trl import GRPOConfig

SWITCHES = ("entropy_zscore", "step", "none")
ANCHOR_DEVICES = ("same", "cpu")
OPTIMIZER_STATES = ("keep", "restore")
ALPHA_MODES = ("fixed", "kl_budget")
GXPO_RETENTIONS = ("adamw_direction", "gradient")
GXPO_OPTIMIZER_STATES = ("transactional", "keep")
GXPO_PASSES = 3  # probe 1, probe 2, the corrective step: passes over each mini-batch while GXPO is on


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bad(name: str, value, allowed: str) -> ValueError:
    return ValueError(f"{name}={value!r} is not allowed: {name} must be {allowed}")


@dataclass
class RLStepConfig(GRPOConfig):
    r"""
    The run-control fields SFPO and GXPO share (documented on [`SFPOConfig`]); every [`trl.GRPOConfig`] field too.
    """

    sfpo_anchor_device: str = field(
        default="same", metadata={"help": "Where the θ0 copy lives.", "choices": list(ANCHOR_DEVICES)}
    )
    sfpo_max_rl_steps: int | None = field(
        default=None, metadata={"help": "Stop after this many RL steps (generation batches)."}
    )
    sfpo_max_skipped_rl_steps: int = field(
        default=3,
        metadata={"help": "Stop after this many RL steps in a row were rolled back for non-finite values."},
    )
    skip_zero_std_batches: bool = field(
        default=False,
        metadata={"help": "Skip the update (every pass) on a generation batch whose groups all have zero reward std."},
    )
    sfpo_diagnose_reward_errors: bool = field(
        default=False,
        metadata={"help": "After a reward function raised, call it again per sample to name the sample (extra calls)."},
    )

    def _validate_run_control(self) -> None:
        if self.sfpo_anchor_device not in ANCHOR_DEVICES:
            raise _bad("sfpo_anchor_device", self.sfpo_anchor_device, "'same' or 'cpu'")
        m = self.sfpo_max_rl_steps
        if m is not None and (not _is_int(m) or m < 1):
            raise _bad("sfpo_max_rl_steps", m, "an int ≥ 1 or None")
        if not _is_int(self.sfpo_max_skipped_rl_steps) or self.sfpo_max_skipped_rl_steps < 1:
            raise _bad("sfpo_max_skipped_rl_steps", self.sfpo_max_skipped_rl_steps, "an int ≥ 1")
        if not isinstance(self.skip_zero_std_batches, bool):
            raise _bad("skip_zero_std_batches", self.skip_zero_std_batches, "a bool")
        if not isinstance(self.sfpo_diagnose_reward_errors, bool):
            raise _bad("sfpo_diagnose_reward_errors", self.sfpo_diagnose_reward_errors, "a bool")

    def _check_passes_end_on_optimizer_steps(self, algorithm: str, field_name: str) -> None:
        """A pass must end on an optimizer step, or a stage would land in the middle of an accumulated gradient."""
        spg, ga = self.steps_per_generation, self.gradient_accumulation_steps
        if spg % ga != 0:
            divisors = [d for d in range(1, spg + 1) if spg % d == 0]
            off = "sfpo_inner_steps=0 for plain GRPO" if algorithm == "SFPO" else "SFPOTrainer for plain GRPO"
            raise ValueError(
                f"steps_per_generation={spg} must be a multiple of gradient_accumulation_steps={ga} when "
                f"{field_name}, so that each pass over the generation batch ends on an optimizer step "
                f"(GRPOTrainer allows it; {algorithm} cannot): set steps_per_generation to {ga}, {2 * ga}, {3 * ga}, "
                f"..., or gradient_accumulation_steps to one of {divisors}, or {off}"
            )

    def _budget_max_steps(self, passes: int) -> None:
        """`sfpo_max_rl_steps` sets `max_steps` (left at -1) to the optimizer steps of that many RL steps at
        `passes` passes each; the RL-step count stops the run, whatever the switch does."""
        if self.sfpo_max_rl_steps is not None and self.max_steps <= 0:
            optimizer_steps_per_pass = self.steps_per_generation // self.gradient_accumulation_steps
            self.max_steps = self.sfpo_max_rl_steps * passes * max(optimizer_steps_per_pass, 1)


@dataclass
class SFPOConfig(RLStepConfig):
    r"""
    Configuration for [`SFPOTrainer`]: every [`trl.GRPOConfig`] field, plus:

    Parameters:
        sfpo_inner_steps (`int`, defaults to `3`):
            K, the fast passes over each generation batch before the reposition. 0 is plain GRPO.
        sfpo_alpha (`float`, defaults to `0.8`):
            α in [0, 1]: the reposition θ̃ = θ0 + α(θK − θ0). α=1 is K+1 plain passes.
        sfpo_switch (`str`, defaults to `"entropy_zscore"`):
            When SFPO turns itself off, for good: `"entropy_zscore"`, `"step"` (at `sfpo_stop_step`) or `"none"`.
        sfpo_zscore_window (`int`, defaults to `30`): W, RL steps in the z-score window (newest included).
        sfpo_zscore_threshold (`float`, defaults to `1.0`): τ.
        sfpo_zscore_two_sided (`bool`, defaults to `False`):
            Use the paper's |z| ≥ τ instead of the reference code's z ≥ τ.
        sfpo_stop_step (`int` or `None`): with `sfpo_switch="step"`, the first RL step run as plain GRPO,
            counted from 0: `12` runs SFPO on the first 12 RL steps.
        sfpo_switch_warmup (`int`, defaults to `0`):
            With the entropy switch: the z-scores of the first this-many RL steps never count.
        sfpo_switch_patience (`int`, defaults to `1`):
            With the entropy switch: consecutive RL steps whose z crosses τ needed to fire (1 = reference).
        sfpo_optimizer_state (`str`, defaults to `"keep"`):
            `"keep"` (reference): the slow pass inherits the fast trajectory's optimizer state. `"restore"`: the
            optimizer state (moments and step counts) is put back to its value at θ0 before the slow pass, so the
            slow pass is a plain GRPO step from θ̃; costs one extra copy of this rank's optimizer state.
        sfpo_alpha_mode (`str`, defaults to `"fixed"`):
            `"fixed"`: α = `sfpo_alpha`. `"kl_budget"`: each RL step uses α_t = min(sfpo_alpha, sqrt(δ / KL_K)),
            KL_K an estimate of KL(π_θK ‖ π_θ0) from one extra forward pass over one micro-batch.
        sfpo_kl_budget (`float` or `None`): δ > 0, required with `sfpo_alpha_mode="kl_budget"`.
        sfpo_anchor_device (`str`, defaults to `"same"`): where the θ0 copy lives, `"same"` or `"cpu"`.
        sfpo_max_rl_steps (`int` or `None`):
            Stop after this many RL steps (generation batches), whatever the switch does. `max_steps` keeps
            TRL's meaning (optimizer steps) and is set from this when left at -1.
        sfpo_max_skipped_rl_steps (`int`, defaults to `3`):
            An RL step that hits a non-finite loss or weights is rolled back to its start; after this many in a
            row training stops (a checkpoint of the last good weights is written first).
        skip_zero_std_batches (`bool`, defaults to `False`):
            Skip the update on a generation batch in which every group's rewards are equal (TRL's
            `frac_reward_zero_std` = 1: all advantages are zero): no forward, backward or optimizer step in any of its
            passes, no θ0 snapshot or reposition. Its rollouts still count. For GRPO (K = 0) and SFPO alike. Off in the
            reference code and in TRL; DAPO's dynamic sampling drops such groups and samples more instead.
        sfpo_diagnose_reward_errors (`bool`, defaults to `False`):
            After a reward function raised on a batch, call it again one sample at a time to name the first
            sample that raises on its own (added as a note to the reward's exception, which is re-raised
            unchanged). Off by default: GRPOTrainer calls each reward once per batch, and the extra calls reach
            paid judges, sandboxes and stateful rewards.
        num_iterations (`int` or `None`): follows from K (K + 1); any other value is an error.
    """

    sfpo_inner_steps: int = field(default=3, metadata={"help": "K: fast passes per RL step (0 = plain GRPO)."})
    sfpo_alpha: float = field(default=0.8, metadata={"help": "α in [0, 1]: reposition θ0 + α(θK − θ0)."})
    sfpo_switch: str = field(
        default="entropy_zscore",
        metadata={"help": "When SFPO turns itself off.", "choices": list(SWITCHES)},
    )
    sfpo_zscore_window: int = field(default=30, metadata={"help": "W: entropy z-score window (RL steps), ≥ 2."})
    sfpo_zscore_threshold: float = field(default=1.0, metadata={"help": "τ: z-score threshold, > 0."})
    sfpo_zscore_two_sided: bool = field(
        default=False, metadata={"help": "Paper's |z| ≥ τ instead of the reference code's z ≥ τ."}
    )
    sfpo_stop_step: int | None = field(
        default=None, metadata={"help": "With sfpo_switch='step': first RL step run as plain GRPO."}
    )
    sfpo_switch_warmup: int = field(
        default=0, metadata={"help": "Entropy switch: RL steps whose z-score never counts (0 = reference)."}
    )
    sfpo_switch_patience: int = field(
        default=1, metadata={"help": "Entropy switch: consecutive RL steps with z ≥ τ needed (1 = reference)."}
    )
    sfpo_optimizer_state: str = field(
        default="keep",
        metadata={"help": "Optimizer state for the slow pass: 'keep' (reference) or 'restore' (θ0's).",
                  "choices": list(OPTIMIZER_STATES)},
    )
    sfpo_alpha_mode: str = field(
        default="fixed",
        metadata={"help": "'fixed' α, or 'kl_budget': α_t = min(sfpo_alpha, sqrt(δ / KL_K)).",
                  "choices": list(ALPHA_MODES)},
    )
    sfpo_kl_budget: float | None = field(
        default=None, metadata={"help": "δ > 0 for sfpo_alpha_mode='kl_budget'."}
    )
    num_iterations: int | None = field(
        default=None, metadata={"help": "Follows from sfpo_inner_steps (K + 1); leave unset."}
    )

    def __post_init__(self):
        self._validate_sfpo_fields()
        k_plus_1 = self.sfpo_inner_steps + 1
        if self.num_iterations is None:
            self.num_iterations = k_plus_1
        elif self.num_iterations != k_plus_1:
            raise ValueError(
                f"num_iterations={self.num_iterations!r} conflicts with sfpo_inner_steps={self.sfpo_inner_steps}: "
                f"under SFPO num_iterations follows from sfpo_inner_steps (K + 1 = {k_plus_1}); leave "
                "num_iterations unset, or set sfpo_inner_steps instead"
            )
        if self.sfpo_inner_steps > 0 and self.fp16:
            raise ValueError(
                "fp16=True is not allowed with sfpo_inner_steps > 0: fp16 loss scaling skips optimizer steps on "
                "overflow, which would leave an RL step's snapshot or reposition undone. Use bf16=True or fp32"
            )
        super().__post_init__()
        if self.sfpo_inner_steps > 0:
            self._check_passes_end_on_optimizer_steps("SFPO", "sfpo_inner_steps > 0")
        self._budget_max_steps(k_plus_1)

    def _validate_sfpo_fields(self) -> None:
        k = self.sfpo_inner_steps
        if not _is_int(k) or k < 0:
            raise _bad("sfpo_inner_steps", k, "an int ≥ 0 (0 = plain GRPO)")
        a = self.sfpo_alpha
        if not _is_number(a) or not 0.0 <= a <= 1.0:
            raise _bad("sfpo_alpha", a, "a float in [0, 1]")
        if self.sfpo_switch not in SWITCHES:
            raise _bad("sfpo_switch", self.sfpo_switch, f"one of {', '.join(repr(s) for s in SWITCHES)}")
        w = self.sfpo_zscore_window
        if not _is_int(w) or w < 2:
            raise _bad("sfpo_zscore_window", w, "an int ≥ 2")
        t = self.sfpo_zscore_threshold
        if not _is_number(t) or not t > 0:
            raise _bad("sfpo_zscore_threshold", t, "a float > 0")
        if not isinstance(self.sfpo_zscore_two_sided, bool):
            raise _bad("sfpo_zscore_two_sided", self.sfpo_zscore_two_sided, "a bool")
        s = self.sfpo_stop_step
        if self.sfpo_switch == "step":
            if not _is_int(s) or s < 0:
                raise _bad("sfpo_stop_step", s, "an int ≥ 0 when sfpo_switch='step'")
        elif s is not None:
            raise ValueError(
                f"sfpo_stop_step={s!r} is only used with sfpo_switch='step', but sfpo_switch={self.sfpo_switch!r}; "
                "set sfpo_switch='step' or leave sfpo_stop_step unset"
            )
        for name, default, minimum in (("sfpo_switch_warmup", 0, 0), ("sfpo_switch_patience", 1, 1)):
            v = getattr(self, name)
            if not _is_int(v) or v < minimum:
                raise _bad(name, v, f"an int ≥ {minimum}")
            if v != default and self.sfpo_switch != "entropy_zscore":
                raise ValueError(
                    f"{name}={v!r} only applies to the entropy switch, but sfpo_switch={self.sfpo_switch!r}; "
                    f"set sfpo_switch='entropy_zscore' or leave {name} at {default}"
                )
        if self.sfpo_optimizer_state not in OPTIMIZER_STATES:
            raise _bad("sfpo_optimizer_state", self.sfpo_optimizer_state, "'keep' or 'restore'")
        if self.sfpo_alpha_mode not in ALPHA_MODES:
            raise _bad("sfpo_alpha_mode", self.sfpo_alpha_mode, "'fixed' or 'kl_budget'")
        d = self.sfpo_kl_budget
        if self.sfpo_alpha_mode == "kl_budget":
            if not _is_number(d) or not math.isfinite(d) or not d > 0:
                raise _bad("sfpo_kl_budget", d, "a finite float > 0 when sfpo_alpha_mode='kl_budget'")
        elif d is not None:
            raise ValueError(
                f"sfpo_kl_budget={d!r} is only used with sfpo_alpha_mode='kl_budget', but sfpo_alpha_mode="
                f"{self.sfpo_alpha_mode!r}; set sfpo_alpha_mode='kl_budget' or leave sfpo_kl_budget unset"
            )
        self._validate_run_control()
        n = self.num_iterations
        if n is not None and (not _is_int(n) or n < 1):
            raise _bad("num_iterations", n, f"unset, or equal to sfpo_inner_steps + 1 = {k + 1 if _is_int(k) else '?'}")


@dataclass
class GXPOConfig(RLStepConfig):
    r"""
    Configuration for [`GXPOTrainer`]: every [`trl.GRPOConfig`] field, the run-control fields of [`SFPOConfig`]
    (`sfpo_max_rl_steps`, `sfpo_max_skipped_rl_steps`, `skip_zero_std_batches`, `sfpo_anchor_device`,
    `sfpo_diagnose_reward_errors`), plus:

    Parameters:
        gxpo_k (`int`, defaults to `5`):
            K ≥ 2, the horizon the retention extrapolates to: θ̃ = θ0 + α·q ⊙ (θ2 − θ0) with q = S_K(r)/S_2(r) in
            [1, K/2 + 1]. Only two probe steps are ever taken; K = 2 gives q ≡ 1.
        gxpo_alpha (`float`, defaults to `0.5`):
            α in (0, 1]: how far toward the K-step estimate to move. α·q is the effective multiplier, in
            [α, α(K/2 + 1)]; α > 1 would step past the estimate itself.
        gxpo_retention (`str`, defaults to `"adamw_direction"`):
            How r is measured per coordinate: `"adamw_direction"`, the ratio of the two probe steps' optimizer
            directions (the authors' latest), or `"gradient"`, the ratio of their clipped gradients (the paper's).
        gxpo_optimizer_state (`str`, defaults to `"transactional"`):
            `"transactional"`: the optimizer state goes back to the mini-batch's start before the corrective step,
            so it advances once per mini-batch, as GRPO's does; `"keep"`: the probes' updates of it are kept.
        gxpo_switch (`str`, defaults to `"entropy_zscore"`):
            When GXPO turns itself off, for good (plain GRPO from then on): `"entropy_zscore"`, `"step"` (at
            `gxpo_stop_step`) or `"none"`.
        gxpo_stop_step (`int` or `None`): with `gxpo_switch="step"`, the first RL step run as plain GRPO (from 0).
        gxpo_zscore_window (`int`, defaults to `30`): W, the entropies *before* the newest it is scored against.
        gxpo_zscore_threshold (`float`, defaults to `3.0`): τ; the switch counts z ≥ τ (one-sided).
        gxpo_switch_patience (`int`, defaults to `3`): consecutive counted RL steps with z ≥ τ needed to fire.
        gxpo_switch_warmup (`int`, defaults to `50`): RL steps whose z-score never counts.
        num_iterations (`int` or `None`): follows (3: probe, probe, corrective); any other value is an error.
    """

    gxpo_k: int = field(default=5, metadata={"help": "K ≥ 2: the horizon the retention extrapolates to."})
    gxpo_alpha: float = field(default=0.5, metadata={"help": "α in (0, 1]: θ̃ = θ0 + α·q ⊙ (θ2 − θ0)."})
    gxpo_retention: str = field(
        default="adamw_direction",
        metadata={"help": "Retention ratio from the optimizer's step directions or the clipped gradients.",
                  "choices": list(GXPO_RETENTIONS)},
    )
    gxpo_optimizer_state: str = field(
        default="transactional",
        metadata={"help": "Optimizer state for the corrective step: the mini-batch's start ('transactional') or "
                          "the probes' ('keep').", "choices": list(GXPO_OPTIMIZER_STATES)},
    )
    gxpo_switch: str = field(
        default="entropy_zscore", metadata={"help": "When GXPO turns itself off.", "choices": list(SWITCHES)}
    )
    gxpo_stop_step: int | None = field(
        default=None, metadata={"help": "With gxpo_switch='step': first RL step run as plain GRPO."}
    )
    gxpo_zscore_window: int = field(
        default=30, metadata={"help": "W: the preceding entropies the newest is scored against, ≥ 2."}
    )
    gxpo_zscore_threshold: float = field(default=3.0, metadata={"help": "τ: z-score threshold, > 0."})
    gxpo_switch_patience: int = field(
        default=3, metadata={"help": "Entropy switch: consecutive RL steps with z ≥ τ needed."}
    )
    gxpo_switch_warmup: int = field(
        default=50, metadata={"help": "Entropy switch: RL steps whose z-score never counts."}
    )
    num_iterations: int | None = field(
        default=None, metadata={"help": "Follows from GXPO (3 passes per mini-batch); leave unset."}
    )

    def __post_init__(self):
        self._validate_gxpo_fields()
        if self.num_iterations is None:
            self.num_iterations = GXPO_PASSES
        elif self.num_iterations != GXPO_PASSES:
            raise ValueError(
                f"num_iterations={self.num_iterations!r} is not allowed under GXPO: it follows from the algorithm "
                f"({GXPO_PASSES} passes over each mini-batch: two probes and the corrective step); leave it unset"
            )
        if self.fp16:
            raise ValueError(
                "fp16=True is not allowed with GXPO: fp16 loss scaling skips optimizer steps on overflow, which would "
                "leave a mini-batch's probes or extrapolation undone. Use bf16=True or fp32"
            )
        super().__post_init__()
        self._check_passes_end_on_optimizer_steps("GXPO", "training with GXPO")
        self._budget_max_steps(GXPO_PASSES)

    def _validate_gxpo_fields(self) -> None:
        k = self.gxpo_k
        if not _is_int(k) or k < 2:
            raise _bad("gxpo_k", k, "an int ≥ 2 (K = 2 gives no extrapolation beyond the probes: q ≡ 1)")
        a = self.gxpo_alpha
        if not _is_number(a) or not math.isfinite(a) or not 0.0 < a <= 1.0:
            raise _bad("gxpo_alpha", a, "a float in (0, 1]")
        if self.gxpo_retention not in GXPO_RETENTIONS:
            raise _bad("gxpo_retention", self.gxpo_retention, "'adamw_direction' or 'gradient'")
        if self.gxpo_optimizer_state not in GXPO_OPTIMIZER_STATES:
            raise _bad("gxpo_optimizer_state", self.gxpo_optimizer_state, "'transactional' or 'keep'")
        if self.gxpo_switch not in SWITCHES:
            raise _bad("gxpo_switch", self.gxpo_switch, f"one of {', '.join(repr(s) for s in SWITCHES)}")
        w = self.gxpo_zscore_window
        if not _is_int(w) or w < 2:
            raise _bad("gxpo_zscore_window", w, "an int ≥ 2")
        t = self.gxpo_zscore_threshold
        if not _is_number(t) or not math.isfinite(t) or not t > 0:
            raise _bad("gxpo_zscore_threshold", t, "a finite float > 0")
        s = self.gxpo_stop_step
        if self.gxpo_switch == "step":
            if not _is_int(s) or s < 0:
                raise _bad("gxpo_stop_step", s, "an int ≥ 0 when gxpo_switch='step'")
        elif s is not None:
            raise ValueError(
                f"gxpo_stop_step={s!r} is only used with gxpo_switch='step', but gxpo_switch={self.gxpo_switch!r}; "
                "set gxpo_switch='step' or leave gxpo_stop_step unset"
            )
        for name, default, minimum in (("gxpo_switch_warmup", 50, 0), ("gxpo_switch_patience", 3, 1)):
            v = getattr(self, name)
            if not _is_int(v) or v < minimum:
                raise _bad(name, v, f"an int ≥ {minimum}")
            if v != default and self.gxpo_switch != "entropy_zscore":
                raise ValueError(
                    f"{name}={v!r} only applies to the entropy switch, but gxpo_switch={self.gxpo_switch!r}; "
                    f"set gxpo_switch='entropy_zscore' or leave {name} at {default}"
                )
        self._validate_run_control()
        n = self.num_iterations
        if n is not None and (not _is_int(n) or n < 1):
            raise _bad("num_iterations", n, f"unset, or {GXPO_PASSES} (it follows from GXPO)")
