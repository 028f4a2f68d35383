"""The clipped policy-gradient loss of GRPO++ and FR3E (PPO clip + Clip-Higher + dual clip).

Per valid token t of sequence i, with ratio ρ = exp(logp - old_logp) and advantage A_i:

    l = max(-A·ρ, -A·clip(ρ, 1-ε_low, 1+ε_high))          (PPO clip, asymmetric: DAPO's Clip-Higher)
    l = min(l, -c·A)  where A < 0 and c > 1                (dual clip, Ye et al. 2020; authors' c = 3)

Aggregation: "token-mean" = Σ l / (number of valid tokens in the *whole* batch), "seq-mean" = mean over
sequences of each sequence's token mean. The normaliser can be passed in (`num_tokens` / `num_seqs`) so
micro-batches and ranks share one global normalisation.

Deviation from the authors' code: their token mean is per micro-batch, which re-weights
sequences by the micro-batch they land in; ours is global. No KL term and no entropy bonus (as theirs).
"""

from __future__ import annotations

import torch


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    dual_clip: float = 0.0,
    aggregation: str = "token-mean",
    num_tokens: float | None = None,
    num_seqs: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate loss and its diagnostics.

    logp, old_logp: (B, T) log-probs of the sampled tokens under the current / behaviour policy.
    advantages:     (B,) per sequence or (B, T) per token.
    mask:           (B, T) bool, True on tokens that train (continuation tokens only).
    num_tokens:     global count of valid tokens for "token-mean" (default: this batch's).
    num_seqs:       global count of sequences for "seq-mean" (default: this batch's).
    returns (loss scalar, stats) with stats (all detached scalars, sums over this batch so callers can
    add them across micro-batches): clip_low, clip_high, dual_clip (token counts), ratio_sum, kl_sum,
    tokens.
    """
    mask = mask.bool()
    m = mask.float()
    if advantages.dim() == 1:
        advantages = advantages[:, None].expand_as(logp)  # (B, T)
    log_ratio = (logp - old_logp).masked_fill(~mask, 0.0)
    ratio = torch.exp(log_ratio)  # (B, T)
    surr1 = -advantages * ratio
    surr2 = -advantages * torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    per_token = torch.maximum(surr1, surr2)  # (B, T)
    dual_hit = torch.zeros_like(mask)
    if dual_clip > 0:
        cap = -advantages * dual_clip
        neg = advantages < 0
        dual_hit = neg & (per_token > cap) & mask
        per_token = torch.where(neg, torch.minimum(per_token, cap), per_token)
    per_token = per_token * m
    if aggregation == "token-mean":
        denom = float(num_tokens) if num_tokens is not None else m.sum().clamp(min=1.0)
        loss = per_token.sum() / denom
    elif aggregation == "seq-mean":
        seq_len = m.sum(-1).clamp(min=1.0)  # (B,)
        denom = float(num_seqs) if num_seqs is not None else max(int(mask.any(-1).sum()), 1)
        loss = (per_token.sum(-1) / seq_len).sum() / denom
    else:
        raise ValueError(f"unknown aggregation {aggregation!r}; use 'token-mean' or 'seq-mean'")
    with torch.no_grad():
        clip_low = ((ratio < 1.0 - eps_low) & (advantages < 0) & mask).sum()
        clip_high = ((ratio > 1.0 + eps_high) & (advantages > 0) & mask).sum()
        kl = ((ratio - 1.0) - log_ratio) * m  # k3 estimator of KL(old || new), >= 0
        stats = {
            "clip_low": clip_low.float(),
            "clip_high": clip_high.float(),
            "dual_clip": dual_hit.sum().float(),
            "ratio_sum": (ratio * m).sum(),
            "kl_sum": kl.sum(),
            "tokens": m.sum(),
        }
    return loss, stats
