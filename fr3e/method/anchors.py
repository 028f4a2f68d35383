"""Anchor selection: the K most uncertain positions of each base trajectory (paper §3, first return).

Rules (each one tested):
- top-K by score, returned in ascending position order (states must nest: S_1 ⊂ S_2 ⊂ ...);
- ties go to the earliest position (deterministic, independent of sort stability);
- position 0 is never an anchor (its state would equal S_0 = the prompt) and neither is the final EOS
  (a prefix ending just before EOS has nothing left to explore);
- optional minimum gap between anchors (greedy in score order);
- fewer eligible positions than K give fewer anchors, padded with -1, never garbage.

Deviation from the authors' code: they take the K lowest-log-prob tokens (surprisal; a scorer option
here) and compute them on a re-ordered batch, so anchors can belong to another response.
"""

from __future__ import annotations

import torch


def eligible_positions(mask: torch.Tensor, ends_with_eos: torch.Tensor | None = None) -> torch.Tensor:
    """Positions that may become anchors.

    mask: (B, T) bool, True on response tokens (left-aligned: response token t at column t).
    ends_with_eos: (B,) bool, True where the last valid token is EOS (then it is excluded).
    returns (B, T) bool.
    """
    mask = mask.bool()
    ok = mask.clone()
    ok[:, 0] = False
    if ends_with_eos is not None:
        lengths = mask.long().sum(-1)  # (B,)
        last = (lengths - 1).clamp(min=0)
        rows = torch.arange(mask.shape[0], device=mask.device)
        drop = ends_with_eos.bool() & (lengths > 0)
        ok[rows[drop], last[drop]] = False
    return ok


def select_anchors(scores: torch.Tensor, mask: torch.Tensor, k: int, min_gap: int = 0) -> torch.Tensor:
    """Top-k anchor positions per trajectory.

    scores: (B, T) float, higher = more uncertain.
    mask:   (B, T) bool, True where a position may be chosen (see `eligible_positions`).
    k:      anchors per trajectory (>= 1).
    min_gap: if > 0, two anchors of a row are at least `min_gap` positions apart.
    returns (B, k) long, ascending within each row, -1 where fewer than k positions qualify.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    B, T = scores.shape
    mask = mask.bool()
    # Sort by score descending, ties by position ascending: a stable sort of -score over positions that
    # are already in ascending order keeps the earliest of equal scores first.
    key = torch.where(mask, scores.float(), torch.full_like(scores, float("-inf"), dtype=torch.float32))
    order = torch.sort(-key, dim=-1, stable=True).indices  # (B, T) positions, best first
    valid_sorted = torch.gather(mask, 1, order)  # (B, T)
    out = torch.full((B, k), -1, dtype=torch.long, device=scores.device)
    if min_gap <= 0:
        take = min(k, T)
        top = order[:, :take]  # (B, take)
        ok = valid_sorted[:, :take]
        top = torch.where(ok, top, torch.full_like(top, T))  # invalid -> T sorts last
        top = torch.sort(top, dim=-1).values
        top = torch.where(top == T, torch.full_like(top, -1), top)
        out[:, :take] = top
        return out
    # Greedy selection with a gap: plain loop over rows (B is small: kept base trajectories).
    for b in range(B):
        chosen: list[int] = []
        for pos, ok in zip(order[b].tolist(), valid_sorted[b].tolist()):
            if not ok or len(chosen) == k:
                break
            if all(abs(pos - c) >= min_gap for c in chosen):
                chosen.append(pos)
        chosen.sort()
        if chosen:
            out[b, : len(chosen)] = torch.tensor(chosen, dtype=torch.long)
    return out
