"""Adaptive exploration budget: how many continuations each state gets (our extension; not in the paper).

The paper (§3, "entropy-eliciting explore") and the authors' code give every state S_j the same M
continuations. A state whose first continuations all agree carries little information for V(S_j) and none
for its group advantage, while a state near V = 0.5 carries the most. With `fr3e.adaptive_budget` on, the
trainer samples continuations in rounds and asks `next_round` after each one how many more every state
gets:

    round 1      every state gets R = `fr3e.adaptive_round` continuations (R ≤ M);
    settled      a state is settled when its first R rewards are all equal, or when the Wilson 95% interval
                 of its success rate is narrower than w = `fr3e.adaptive_width` (w = 0: that rule is off),
                 or when it holds CAP_FACTOR·M continuations (the per-state cap);
    later rounds the budget left, S·M minus what was sampled, goes to the unsettled states, at most R each
                 per round, one continuation at a time in priority order (widest Wilson interval first, i.e.
                 the value nearest 0.5 at equal counts; ties to the lower state index) until every request is
                 met or the budget is spent;
    stop         when no state is given anything.

So the total never exceeds the fixed budget S·M, no state gets fewer than R when S·M allows a first round,
none gets more than CAP_FACTOR·M, and when no state settles every state ends with exactly M (M a multiple
of R, or the remainder spread one by one). The rule is deterministic: it reads only the rewards so far.

Our choices, each documented here because the paper has no adaptive budget:
- CAP_FACTOR = 2: a state never takes more than twice the paper's M (an unsettled state near 0.5 would
  otherwise absorb the whole saving; 2M = 16 at the tiny recipe's M = 8, the authors' M);
- the pool is the states of one generation round of one process (the trainer's `_explore` call), so a
  prompt's budget never moves to a prompt sampled later in the step, and processes never wait on each
  other's rewards;
- priority by Wilson width rather than binomial variance p(1-p)/n: it is defined (and largest) for a state
  whose rewards so far are all equal, where the plug-in variance is 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fr3e.method.values import wilson_interval

CAP_FACTOR = 2  # per-state cap = CAP_FACTOR · M (our choice, see the module docstring)
Z95 = 1.96  # two-sided 95% normal quantile, as the value intervals of fr3e.method.values and samples.jsonl


def wilson_widths(rewards: Sequence[Sequence[float]], z: float = Z95) -> torch.Tensor:
    """Width of the Wilson interval of each state's success rate; 1.0 for a state with no reward yet.

    rewards: S lists of 0/1 rewards (ragged). returns (S,) float.
    """
    n = torch.tensor([len(r) for r in rewards], dtype=torch.float32)  # (S,)
    k = torch.tensor([float(sum(r)) for r in rewards], dtype=torch.float32)  # (S,)
    width = torch.ones(len(rewards))
    seen = n > 0
    if seen.any():
        lo, hi = wilson_interval(k[seen], n[seen], z)
        width[seen] = hi - lo
    return width


def settled_states(rewards: Sequence[Sequence[float]], round_size: int, width: float = 0.0) -> list[bool]:
    """Whether each state's outcome is settled (no more continuations needed).

    rewards: S lists of rewards in sampling order. round_size: R, the agreement rule reads the first R
    rewards (a state with fewer is never settled by it). width: settle when the Wilson 95% width < width
    (0 = rule off). The per-state cap is applied by `next_round`, not here.
    """
    widths = wilson_widths(rewards).tolist()
    out = []
    for r, w in zip(rewards, widths):
        agree = len(r) >= round_size and len(set(r[:round_size])) == 1
        out.append(agree or (width > 0 and len(r) > 0 and w < width))
    return out


def next_round(
    rewards: Sequence[Sequence[float]],
    budget: int,
    round_size: int,
    cap: int,
    width: float = 0.0,
) -> list[int]:
    """Continuations each state gets in the next round (all zeros: stop).

    rewards: S lists of the rewards each state has so far (empty before round 1), in sampling order.
    budget:  total continuations for the S states (the non-adaptive S·M).
    round_size: R, most continuations a state gets per round. cap: most a state gets in all (CAP_FACTOR·M).
    width:   Wilson-width settling threshold (0 = off).
    returns  S ints, each in [0, R], with sum(counts so far) + sum(returned) <= budget.
    """
    if round_size < 1 or cap < 1 or budget < 0:
        raise ValueError(f"need round_size >= 1, cap >= 1, budget >= 0; got {round_size}, {cap}, {budget}")
    counts = [len(r) for r in rewards]
    left = budget - sum(counts)
    done = settled_states(rewards, round_size, width)
    want = [0 if d or c >= cap else min(round_size, cap - c) for d, c in zip(done, counts)]
    widths = wilson_widths(rewards).tolist()
    order = sorted((j for j, w in enumerate(want) if w > 0), key=lambda j: (-widths[j], j))
    give = [0] * len(rewards)
    while left > 0 and order:
        for j in order:
            if left == 0:
                break
            give[j] += 1
            left -= 1
        order = [j for j in order if give[j] < want[j]]
    return give
