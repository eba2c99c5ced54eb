"""`sfpo_alpha_mode="kl_budget"`: pick each RL step's α from how far the fast trajectory moved the policy.

    α_t = min(sfpo_alpha, sqrt(δ / KL_K)),   KL_K ≈ KL(π_θK ‖ π_θ0) on this RL step's completion tokens.

Under a linear drift θ0 + α(θK − θ0) the KL to π_θ0 grows as α² (to second order), so α_t puts the repositioned
policy near the budget δ, and never further out than the fixed α would.

The estimate. The completions were sampled from π_θ0 (the rollout policy), and the trainer holds their log-probs
at θ0 (TRL's `old_per_token_logps`). With w = π_θK(y_t | prefix) / π_θ0(y_t | prefix) per completion token,

    k = w·log w − (w − 1)

has expectation KL(π_θK ‖ π_θ0)(· | prefix) under π_θ0's sampling (E[w log w] is that KL and E[w − 1] = 0) and
is never negative. KL_K is its mean over the completion tokens of one micro-batch (all ranks' tokens together),
so it needs one extra no-grad forward over one micro-batch at θK per RL step. The familiar k3 = e^r − 1 − r with
r = log π_θ0 − log π_θK is the unbiased form for tokens sampled from π_θK, which these are not.
"""

from __future__ import annotations

import math

import torch


def kl_sums(old_logps: torch.Tensor, new_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[Σ k over masked tokens, number of masked tokens] (float64), ready to be summed over ranks.

    `old_logps` are at θ0 (where the tokens were sampled), `new_logps` at θK."""
    log_w = (new_logps.double() - old_logps.double()).clamp(max=50.0)  # w = e^50 already means "far out"
    w = log_w.exp()
    k = w * log_w - (w - 1.0)
    m = mask.double()
    return torch.stack([(k * m).sum(), m.sum()])


def kl_budget_alpha(alpha_max: float, budget: float, kl: float) -> float:
    """α_t = min(alpha_max, sqrt(budget / kl)); a KL of 0 allows alpha_max, a non-finite KL allows 0 (θ0)."""
    if not math.isfinite(kl):
        return 0.0
    if kl <= budget:
        return float(alpha_max)
    return min(float(alpha_max), math.sqrt(budget / kl))
