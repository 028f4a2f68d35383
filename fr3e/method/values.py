"""Empirical state values V(S_j) (paper §3, "entropy-eliciting explore").

V(S_j) is the mean verifier reward of the M continuations sampled from S_j: with binary rewards, the
empirical probability that S_j leads to a correct answer. Under the adaptive budget (`fr3e.adaptive_budget`,
`fr3e.method.budget`) states hold different numbers of continuations and each V(S_j) is the mean over its own count
(the trainer calls `state_values` one state at a time). Its Wilson score interval says how much
to trust it (M = 16 gives ±0.2 around 0.5), which the walkthrough notebook shows next to every α.

Deviation from the authors' code: values are computed for *every* state before dynamic sampling
filters groups (they compute them after, so a filtered state vanishes from its trajectory's chain and the
next state is compared with an older one). Their v_j is the share of positive advantages,
which equals the mean reward except for all-right groups (where it is 0 instead of 1).
"""

from __future__ import annotations

import math

import torch


def state_values(rewards: torch.Tensor) -> torch.Tensor:
    """Mean reward of each state's continuations.

    rewards: (S, M) float, one row per state.
    returns  (S,) float.
    """
    if rewards.dim() != 2 or rewards.shape[1] == 0:
        raise ValueError(f"rewards must be (S, M) with M >= 1, got {tuple(rewards.shape)}")
    return rewards.float().mean(dim=-1)


def wilson_interval(successes: torch.Tensor, n: int | torch.Tensor, z: float = 1.96) -> tuple[torch.Tensor, torch.Tensor]:
    """Wilson score interval for a binomial proportion (95% for z = 1.96).

    successes: (S,) counts (or sums of 0/1 rewards); n: trials (M).
    returns (low, high), each (S,), inside [0, 1].
    """
    k = successes.float()
    n = torch.as_tensor(n, dtype=torch.float32)
    if torch.any(n <= 0):
        raise ValueError("wilson_interval needs n >= 1 trials")
    p = k / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * torch.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return (centre - half).clamp(0.0, 1.0), (centre + half).clamp(0.0, 1.0)


def z_for(confidence: float) -> float:
    """Two-sided normal quantile, e.g. 0.95 -> 1.96."""
    return math.sqrt(2) * torch.erfinv(torch.tensor(confidence)).item()
