"""GXPO's per-coordinate retention: how far K steps would have gone, estimated from two.

Under plain gradient descent on a diagonal quadratic, each coordinate's step shrinks by a constant ratio r from one
step to the next (g_{k+1} = r·g_k with r = 1 − ηh), so K steps move it S_K(r) = 1 + r + … + r^(K−1) times the first
step, and two steps S_2(r) = 1 + r times. Hence θ_K − θ0 = q ⊙ (θ2 − θ0) with

    q = S_K(r) / S_2(r),

exactly, and GXPO moves to θ̃ = θ0 + α·q ⊙ (θ2 − θ0) after two probe steps. Away from that model q is an estimate,
so it is bounded:

- r is clamped to [−2, 3] (a non-finite r counts as 1: a coordinate whose steps agree);
- q is clamped to [1, K/2 + 1] (never shorter than the two probe steps, at most a little past r = 1's K/2);
- |S_2(r)| ≤ 1e-8 (r ≈ −1: the two steps cancel) gives q = 1;
- a coordinate whose first step is tiny against the rest (|d0| ≤ 1e-3 · RMS over all trainable coordinates) is not
  trusted with a ratio: q = 1.

r comes from one of two estimators (`gxpo_retention`):

- "adamw_direction": the ratio of the optimizer's own step directions, d_t = ((1 − η·wd)·θ_t − θ_{t+1}) / η with
  the learning rate η and weight decay wd of the tensor's group at that step (AdamW's update without its decay;
  for SGD the gradient itself); η = 0 gives q = 1;
- "gradient": the ratio of the clipped gradients that drove the two steps, r = (c1·g1) / (c0·g0).

Everything here is elementwise on one tensor (in float32 at least); the RMS is an input, taken by the caller over
every trainable coordinate on every rank, so all back ends and layouts decide alike.
"""

from __future__ import annotations

import torch

R_MIN, R_MAX = -2.0, 3.0
S2_EPS = 1e-8  # |S_2(r)| at or below this: the two probe steps cancel, no retention
ACTIVE_RMS_FRACTION = 1e-3  # a coordinate is active when |d0| exceeds this fraction of the RMS of d0
STAT_BINS = 100  # histogram bins over q ∈ [1, K/2 + 1] for the logged quantiles


def q_max(k: int) -> float:
    return k / 2 + 1


def retention_scale(r: torch.Tensor, k: int) -> torch.Tensor:
    """q = S_K(r) / S_2(r) per coordinate, with r clamped to [−2, 3] (non-finite → 1) and q to [1, K/2 + 1]."""
    r = torch.where(torch.isfinite(r), r, torch.ones_like(r)).clamp(R_MIN, R_MAX)
    s_k = torch.ones_like(r)
    for _ in range(k - 1):  # Horner: 1 + r(1 + r(1 + …)), K − 1 times
        s_k = 1 + r * s_k
    s_2 = 1 + r
    q = torch.where(s_2.abs() <= S2_EPS, torch.ones_like(r), s_k / torch.where(s_2.abs() <= S2_EPS, 1.0, s_2))
    return q.clamp(1.0, q_max(k))


def step_direction(theta: torch.Tensor, theta_next: torch.Tensor, lr: float, weight_decay: float) -> torch.Tensor:
    """d = ((1 − η·wd)·θ − θ_next) / η: the optimizer's step direction with its decoupled weight decay taken out."""
    return ((1.0 - lr * weight_decay) * theta - theta_next) / lr


def retention_from_first_two(first: torch.Tensor, second: torch.Tensor, k: int, threshold: float) -> torch.Tensor:
    """q for each coordinate from its first and second step (directions or clipped gradients): r = second / first
    where |first| > threshold, q = 1 elsewhere."""
    active = first.abs() > threshold
    r = second / torch.where(active, first, torch.ones_like(first))
    return torch.where(active, retention_scale(r, k), torch.ones_like(r))


def extrapolate(theta0: torch.Tensor, theta2: torch.Tensor, q: torch.Tensor, alpha: float) -> torch.Tensor:
    """θ̃ = θ0 + α·q ⊙ (θ2 − θ0)."""
    return theta0 + (alpha * q) * (theta2 - theta0)


# ---------------------------------------------------------------- the logged distribution of α·q

STAT_HEAD = 6  # [coordinates, Σq, #(q = 1), #(q = K/2 + 1), #(q > 1), Σ(θ̃ − θ0)²], then the histogram


def q_stats(q: torch.Tensor, k: int, sq_displacement: torch.Tensor) -> torch.Tensor:
    """One tensor's contribution (float64, additive over tensors, mini-batches and ranks)."""
    top = q_max(k)
    q = q.detach().float().reshape(-1)
    floor, ceiling = (q <= 1.0), (q >= top)
    hist = torch.histc(q, bins=STAT_BINS, min=1.0, max=top).double()
    hist[0] -= floor.sum()  # the point masses at the two bounds are counted apart from the bins
    hist[-1] -= ceiling.sum()
    head = torch.stack([torch.tensor(float(q.numel()), device=q.device), q.double().sum(), floor.sum().double(),
                        ceiling.sum().double(), (q > 1.0).sum().double(), sq_displacement.double().reshape(())])
    return torch.cat([head.double(), hist])


def empty_stats(device=None) -> torch.Tensor:
    return torch.zeros(STAT_HEAD + STAT_BINS, dtype=torch.float64, device=device)


def q_quantile(stats: list[float], k: int, p: float) -> float:
    """The p-quantile of q from summed `q_stats`: exact at the bounds' point masses, else interpolated within a
    histogram bin (of width (K/2) / STAT_BINS)."""
    n, _, floor, ceiling = stats[0], stats[1], stats[2], stats[3]
    hist = stats[STAT_HEAD:]
    target = p * n
    if target <= floor:
        return 1.0
    if target >= n - ceiling:
        return q_max(k)
    width = (q_max(k) - 1.0) / STAT_BINS
    seen = floor
    for i, count in enumerate(hist):
        if count > 0 and seen + count >= target:
            return 1.0 + width * (i + (target - seen) / count)
        seen += count
    return q_max(k)
