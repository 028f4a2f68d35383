"""Minimal reproduction: `optim.updates_per_batch` > 1 splits GRPO groups across optimizer steps.

    python reproduce/sweeps/group_split.py

The trainer (`Trainer._update`) splits the rollouts of a batch into `updates_per_batch` mini-batches with
a seeded permutation of *rows* (`order[i::updates_per_batch]`), so the G rollouts of one prompt land in
different optimizer steps. Within a whole group the advantages r - mean(r) sum to zero, so every token
the G rollouts share (the prompt-conditioned prefix before they diverge: operand copies, the first
partial products) gets zero net gradient. Inside one mini-batch they no longer sum to zero: the shared
prefix is pushed up or down at random, with Adam scaling that noise to a full-size step. This script
draws the trainer's split for a typical group (1 right of 8: advantages +0.875, 7 x -0.125) and prints
the distribution of the net advantage that the shared prefix receives in each optimizer step.
"""

from __future__ import annotations

import sys

import torch


def net_prefix_weight(rewards: torch.Tensor, updates: int, seed: int) -> list[float]:
    """Sum of advantages of one group's rollouts inside each mini-batch. rewards: (G,) 0/1."""
    adv = rewards - rewards.mean()  # (G,)
    order = torch.randperm(len(rewards), generator=torch.Generator().manual_seed(seed))
    parts = [order[i::updates] for i in range(updates)]  # the trainer's split (one group shown)
    return [float(adv[p].sum()) for p in parts]


def main() -> int:
    rewards = torch.tensor([1.0, 0, 0, 0, 0, 0, 0, 0])
    for updates in (1, 2):
        sums = torch.tensor([net_prefix_weight(rewards, updates, s) for s in range(10_000)])  # (N, updates)
        sys.stdout.write(f"updates_per_batch={updates}: net advantage on the shared prefix per step: mean "
                         f"{sums.mean():+.3f}, mean |.| {sums.abs().mean():.3f}, max |.| {sums.abs().max():.3f} "
                         f"(a single rollout's |A| is 0.875 or 0.125)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
