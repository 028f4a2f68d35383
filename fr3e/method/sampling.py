"""Which rollouts are kept and which groups train (GRPO++ rejection sampling; authors' base selection).

- `select_base_trajectories`: of the base trajectories of one prompt, keep at most `keep_right` correct and
  `keep_wrong` wrong ones, in sampling order (authors' code: ≤1 + ≤1). Base trajectories are never trained
  on; they only supply anchors.
- `signal_groups`: dynamic sampling (DAPO §3.2, the "++" of GRPO++): a group whose rewards are all equal
  (All-Right or All-Wrong) has zero advantage everywhere and no gradient, so it is dropped and the batch is
  refilled from further prompts. Here groups are dropped only *after* values and α are computed.
- `group_outcomes`: All-Right / All-Wrong / mixed labels for the composition figures (paper Figs. 7-8).
"""

from __future__ import annotations

import torch

ALL_RIGHT, ALL_WRONG, MIXED = "all_right", "all_wrong", "mixed"


def select_base_trajectories(rewards: list[float], keep_right: int = 1, keep_wrong: int = 1) -> list[int]:
    """Indices (ascending) of the kept base trajectories of one prompt.

    rewards: the G_base binary rewards in sampling order.
    """
    kept, right, wrong = [], 0, 0
    for i, r in enumerate(rewards):
        if r > 0.5 and right < keep_right:
            kept.append(i)
            right += 1
        elif r <= 0.5 and wrong < keep_wrong:
            kept.append(i)
            wrong += 1
    return kept


def signal_groups(rewards: torch.Tensor) -> torch.Tensor:
    """Groups that carry a learning signal (rewards not all equal).

    rewards: (S, M) float. returns (S,) bool.
    """
    return (rewards.max(dim=-1).values - rewards.min(dim=-1).values) > 0


def group_outcomes(rewards: torch.Tensor) -> list[str]:
    """'all_right' / 'all_wrong' / 'mixed' per group. rewards: (S, M) binary."""
    lo, hi = rewards.min(dim=-1).values, rewards.max(dim=-1).values
    out = []
    for a, b in zip(lo.tolist(), hi.tolist()):
        out.append(ALL_RIGHT if a > 0.5 else ALL_WRONG if b <= 0.5 else MIXED)
    return out


def global_quota(counts: list[list[int]], target: int) -> list[list[int]]:
    """How many of its signal-carrying prompts each process trains, so that the batch target holds globally.

    counts: (R, W) signal-carrying prompts found by each of W processes in each of R generation rounds.
    The prompts are ranked by (round, process, sampling order) and the first `target` of that order train.
    returns (R, W) ints with quota[r][w] <= counts[r][w] and total min(target, sum(counts)).
    A per-process trim (each keeps ceil(target / W)) under-fills the batch when signal falls unevenly.
    """
    if target < 0:
        raise ValueError(f"target must be >= 0, got {target}")
    left = target
    quota = []
    for row in counts:
        out = []
        for c in row:
            take = min(int(c), left)
            out.append(take)
            left -= take
        quota.append(out)
    return quota


def minibatches_by_group(keys: list, parts: int, seed: int) -> list[list[int]]:
    """Split rollout indices into `parts` mini-batches that never split a group (rollouts with one key).

    keys: (N,) the group key of every rollout (its state). Groups are visited in a seeded random order and
    each goes to the part with the fewest rollouts so far (ties: the lowest part), so parts stay balanced.
    Within a whole group the advantages r − mean(r) sum to zero and the tokens its rollouts share (the
    prefix before they diverge) get no net gradient; a row-level split would push them up or down at
    random in each optimizer step. returns `parts` sorted index lists (some empty when groups < parts).
    """
    if parts < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
    groups: dict = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    members = list(groups.values())
    order = torch.randperm(len(members), generator=torch.Generator().manual_seed(seed)).tolist()
    out: list[list[int]] = [[] for _ in range(parts)]
    for g in order:
        target = min(range(parts), key=lambda p: (len(out[p]), p))
        out[target].extend(members[g])
    return [sorted(p) for p in out]
