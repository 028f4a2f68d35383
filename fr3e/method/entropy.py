"""Token-wise uncertainty of a sampled trajectory (paper §3, "first return": locating the forks).

The paper ranks positions by the policy's full-vocabulary entropy H_t = -Σ_v π(v|q,τ<t) log π(v|q,τ<t).
The authors' released code ranks by the *surprisal* of the sampled token, -log π(τ_t|q,τ<t), instead.
Both, plus two controls, sit behind one interface so the choice is a config field (`fr3e.scorer`):

    entropy    exact H_t in nats from the trainer's own forward pass (paper; our default)
    surprisal  -log π(τ_t) of the sampled token (authors' code)
    random     i.i.d. uniform scores (control: are *high-entropy* forks what matters?)
    newline    1 at the first token of every reasoning step (after the task's step delimiter: one "\\n" in
               the tiny arithmetic world, "\\n\\n" in the paper's data), 0 elsewhere (step-level control)

Deviations: none from the paper's formula. `token_entropy` works in fp32 even for bf16 logits (bf16
log-softmax loses ~2 significant digits on a 152k vocabulary) and is chunked over T so a (B, T, 152k)
input needs no second full-size temporary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

SCORER_NAMES = ("entropy", "surprisal", "random", "newline")


def token_entropy(logits: torch.Tensor, mask: torch.Tensor | None = None, chunk: int = 128) -> torch.Tensor:
    """Exact full-vocabulary entropy of every position.

    logits: (B, T, V) any float dtype (raw, temperature 1).
    mask:   (B, T) bool, True at positions to score; masked positions return 0.
    chunk:  positions per slice of T (bounds the fp32 temporary to B·chunk·V floats).
    returns (B, T) float32, nats.
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must be (B, T, V), got shape {tuple(logits.shape)}")
    B, T, _ = logits.shape
    out = torch.empty(B, T, dtype=torch.float32, device=logits.device)
    for start in range(0, T, chunk):
        x = logits[:, start:start + chunk].float()  # (B, c, V) fp32 copy of one slice only
        logp = torch.log_softmax(x, dim=-1)
        out[:, start:start + chunk] = -(logp.exp() * logp).sum(-1)  # (B, c)
    if mask is not None:
        out = out.masked_fill(~mask.bool(), 0.0)
    return out


def surprisal(token_logprobs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """-log π(τ_t) of the sampled tokens (the authors' uncertainty).

    token_logprobs: (B, T) log-probs of the tokens actually sampled; mask: (B, T) bool.
    returns (B, T) float32, nats; masked positions 0.
    """
    out = -token_logprobs.float()
    if mask is not None:
        out = out.masked_fill(~mask.bool(), 0.0)
    return out


def random_scores(mask: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform(0, 1) scores on valid positions (control scorer). mask: (B, T) bool -> (B, T) float32."""
    scores = torch.rand(mask.shape, generator=generator, dtype=torch.float32)
    return scores.masked_fill(~mask.bool(), 0.0)


def step_boundary_scores(response_ids: torch.Tensor, mask: torch.Tensor,
                         delimiter_ids: Sequence[int]) -> torch.Tensor:
    """1.0 at every position that starts a new step (the token right after `delimiter_ids`), 0 elsewhere.

    response_ids: (B, T) long; mask: (B, T) bool; delimiter_ids: the step delimiter as token ids, L >= 1
    (the tiny world's "\\n" is one id; "\\n\\n" is two ids of a character tokenizer, one of Qwen's BPE).
    A delimiter that ends the response starts no step. With more boundaries than K, `select_anchors` keeps
    the earliest.
    """
    d = list(delimiter_ids)
    if not d:
        raise ValueError("delimiter_ids is empty: give the step delimiter's token ids")
    B, T = response_ids.shape
    L = len(d)
    boundary = torch.zeros((B, T), dtype=torch.bool)
    if T > L:
        hit = torch.ones((B, T - L), dtype=torch.bool)  # hit[:, s]: delimiter occupies s .. s+L-1
        for i, tok in enumerate(d):
            hit &= response_ids[:, i: T - L + i] == tok
        boundary[:, L:] = hit  # the token after the delimiter
    return (boundary & mask.bool()).float()


def newline_scores(response_ids: torch.Tensor, mask: torch.Tensor, newline_id: int) -> torch.Tensor:
    """`step_boundary_scores` for a "\\n\\n" delimiter of two `newline_id` tokens."""
    return step_boundary_scores(response_ids, mask, [newline_id, newline_id])


def scored_positions(scorer: str, scores: torch.Tensor) -> torch.Tensor:
    """Positions a scorer allows as anchors. scores: (B, T); returns (B, T) bool.

    Dense scorers (entropy, surprisal, random) score every token: all positions. The `newline` scorer marks
    step boundaries only: a trajectory with fewer boundaries than K gets fewer anchors, never anchors at
    zero-score positions that would merely be the earliest tokens.
    """
    if scorer == "newline":
        return scores > 0
    return torch.ones_like(scores, dtype=torch.bool)


def uncertainty_scores(
    scorer: str,
    *,
    mask: torch.Tensor,
    entropies: torch.Tensor | None = None,
    token_logprobs: torch.Tensor | None = None,
    response_ids: torch.Tensor | None = None,
    newline_id: int | None = None,
    generator: torch.Generator | None = None,
    delimiter_ids: Sequence[int] | None = None,
) -> torch.Tensor:
    """Dispatch to one scorer by name; every input and the output are (B, T), aligned on response tokens."""
    if scorer == "entropy":
        if entropies is None:
            raise ValueError("scorer 'entropy' needs entropies (B, T) from token_entropy")
        return entropies.float().masked_fill(~mask.bool(), 0.0)
    if scorer == "surprisal":
        if token_logprobs is None:
            raise ValueError("scorer 'surprisal' needs token_logprobs (B, T)")
        return surprisal(token_logprobs, mask)
    if scorer == "random":
        return random_scores(mask, generator)
    if scorer == "newline":
        if response_ids is None or (newline_id is None and not delimiter_ids):
            raise ValueError("scorer 'newline' needs response_ids (B, T) and delimiter_ids (or newline_id for \\n\\n)")
        if delimiter_ids:
            return step_boundary_scores(response_ids, mask, delimiter_ids)
        return newline_scores(response_ids, mask, newline_id)
    raise ValueError(f"unknown scorer {scorer!r}; use one of {list(SCORER_NAMES)}")


def top_share_threshold(entropies: torch.Tensor, share: float) -> float:
    """The entropy at or above which a token is among the top `share` of `entropies` (1-D, nats): the
    ceil(share · N)-th largest value, so at least that many tokens pass `>=` (more where values tie). For
    policy-gradient updates on the high-entropy minority only ("Beyond the 80/20 Rule", Wang et al. 2025).
    share: in (0, 1]; 1 returns the minimum (every token passes). Empty input: +inf (no token passes)."""
    if not 0 < share <= 1:
        raise ValueError(f"share={share}: use a value in (0, 1]")
    flat = entropies.reshape(-1).float()
    if flat.numel() == 0:
        return float("inf")
    k = max(1, math.ceil(share * flat.numel() - 1e-9))  # 0.2 · 15 is 3.0000000000000004 in floats
    return float(torch.topk(flat, k).values.min())
