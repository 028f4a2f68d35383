"""Group-relative advantages and their modulation (GRPO; paper §3 for A = α·Â).

Â_i = r_i - mean(r_group)                    (scale "none": authors' code, Dr. GRPO)
Â_i = (r_i - mean(r_group)) / (std + 1e-4)    (scale "std": original GRPO; unbiased std as TRL)

A group is the M continuations of one state (FR3E) or the G rollouts of one prompt (GRPO++; a prompt
is its own S_0). The final advantage of every continuation is A = α(state) · Â, where α comes from
`fr3e.method.modulation` and is looked up by the continuation's state key, never by its row position.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import torch

STD_EPS = 1e-4  # TRL's GRPOTrainer adds 1e-4 to the group std


def group_advantages(rewards: torch.Tensor, scale: str = "none") -> torch.Tensor:
    """Mean-centred rewards per group.

    rewards: (S, M) float, one row per group.
    scale:   "none" | "std".
    returns  (S, M) float; an all-equal group gives zeros.
    """
    rewards = rewards.float()
    centred = rewards - rewards.mean(dim=-1, keepdim=True)  # (S, M)
    if scale == "none":
        return centred
    if scale == "std":
        std = rewards.std(dim=-1, keepdim=True) if rewards.shape[-1] > 1 else torch.zeros_like(centred[:, :1])
        return centred / (std + STD_EPS)
    raise ValueError(f"unknown advantage scale {scale!r}; use 'none' or 'std'")


def group_index(keys: Sequence[Hashable]) -> tuple[torch.Tensor, list[Hashable]]:
    """Map each row's key to a dense group id. returns ((N,) long, unique keys in first-seen order)."""
    ids: dict[Hashable, int] = {}
    out = [ids.setdefault(k, len(ids)) for k in keys]
    return torch.tensor(out, dtype=torch.long), list(ids)


def keyed_advantages(
    rewards: torch.Tensor,
    keys: Sequence[Hashable],
    alpha: dict | None = None,
    scale: str = "none",
) -> torch.Tensor:
    """A = α(key) · Â for rows in any order: groups are found by key, not by position.

    rewards: (N,) float, one continuation per row; keys: N hashable state keys.
    alpha:   key -> α (None or missing key -> α = 1 only when alpha is None; a missing key is an error).
    returns  (N,) float. Permuting the rows permutes the output the same way (shuffle-invariant).
    """
    rewards = rewards.float()
    gid, uniq = group_index(keys)  # (N,)
    n_groups = len(uniq)
    ones = torch.ones_like(rewards)
    count = torch.zeros(n_groups).index_add_(0, gid, ones)  # (S,)
    total = torch.zeros(n_groups).index_add_(0, gid, rewards)
    mean = total / count
    centred = rewards - mean[gid]  # (N,)
    if scale == "std":
        sq = torch.zeros(n_groups).index_add_(0, gid, centred * centred)
        std = torch.sqrt(sq / (count - 1).clamp(min=1))  # unbiased, as torch.std
        std = torch.where(count > 1, std, torch.zeros_like(std))
        centred = centred / (std[gid] + STD_EPS)
    elif scale != "none":
        raise ValueError(f"unknown advantage scale {scale!r}; use 'none' or 'std'")
    if alpha is None:
        return centred
    missing = [k for k in uniq if k not in alpha]
    if missing:
        raise KeyError(f"no modulation factor for state(s) {missing[:3]}")
    factors = torch.tensor([float(alpha[k]) for k in uniq])  # (S,)
    return factors[gid] * centred
