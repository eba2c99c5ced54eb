"""Whether a generation batch carries any reward signal (`skip_zero_std_batches`).

GRPO's advantage is a completion's reward minus its group's mean (optionally divided by a std). When every group of
a batch has equal rewards, every advantage is zero and the policy-gradient term has nothing to say; what is left of
the loss (an entropy bonus, a KL term) would still move the weights, and Adam turns even a tiny gradient into a
full-size step. This module decides "every group is flat" from the rewards TRL computed, with TRL's own test for a
zero std (`torch.isclose(std, 0)`, as behind its `frac_reward_zero_std` metric), per aggregation mode:

- `sum_then_normalize` (TRL's default): the weighted sum of the reward functions is flat in every group;
- `normalize_then_sum`: every reward function is flat in every group (each is normalised within its group first).

Unscorable completions (every function returned None, NaN here) are left out, as TRL leaves them out of the group
mean; a group with fewer than two scorable completions has no signal either. The rewards TRL passes are gathered
over all processes, so every rank reaches the same verdict without a collective.
"""

from __future__ import annotations

import torch
from trl.trainer.utils import nanstd


def _flat(values: torch.Tensor) -> torch.Tensor:
    """Per group (rows of `values`): True when the non-NaN values have zero std, or fewer than two exist."""
    std = nanstd(values, dim=1)
    return torch.isclose(std, torch.zeros_like(std)) | torch.isnan(std)


def all_groups_zero_std(
    rewards_per_func: torch.Tensor, weights: torch.Tensor, num_generations: int, aggregation: str
) -> bool:
    """True when no group of the batch has a reward spread: every advantage of the batch is zero."""
    grouped = rewards_per_func.view(-1, num_generations, rewards_per_func.size(1))
    if aggregation == "normalize_then_sum":
        per_func = grouped.permute(0, 2, 1).reshape(-1, num_generations)  # (group, func) rows
        return bool(_flat(per_func).all())
    rewards = (grouped * weights.to(grouped.device)).nansum(dim=2)
    rewards[torch.isnan(grouped).all(dim=2)] = torch.nan  # unscorable: out of the group's statistics
    return bool(_flat(rewards).all())
