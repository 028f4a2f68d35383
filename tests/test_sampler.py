"""The rollout sampler draws from the distribution it claims: softmax(logits / T), cut to top-p, renormalised.

A chi-square test of 10^5 draws against that distribution on a 1,000-token vocabulary with -inf logits, for
T in {1, 0.7} x top-p in {1, 0.9}, on every sampling path of `fr3e.engines.hf`: `torch.multinomial` (CPU),
the exponential race (GPU), and the fused log-space race of `sample_with_logprob` (GPU, T = 1, top-p = 1; at
other settings it calls the race).
Seeds are fixed, so the test is deterministic; a sampler off by a small fraction of a token's mass fails it.
"""

import math

import pytest
import torch

from fr3e.engines.hf import check_logprobs, sample_next, sample_with_logprob

V, DRAWS, BATCH = 1000, 100_000, 10_000


def logits_with_holes() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(V, generator=g, dtype=torch.float64) * 2.0
    logits[::7] = float("-inf")  # about 14% of the vocabulary cannot be drawn
    return logits


def intended(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """The distribution the sampler claims, in float64: tempered softmax, then the smallest top set of mass >= top_p."""
    p = torch.softmax(logits / temperature, -1)
    if top_p < 1:
        sorted_p, order = p.sort(descending=True)
        keep = (sorted_p.cumsum(-1) - sorted_p) < top_p
        p = torch.zeros_like(p).scatter_(-1, order, sorted_p * keep)
        p = p / p.sum()
    return p


def chi_square_p_value(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Pearson's test; bins expected below 5 are pooled. p from the Wilson–Hilferty approximation."""
    n = counts.sum().item()
    expected = probs * n
    big = expected >= 5
    obs = torch.cat([counts[big].double(), counts[~big].double().sum()[None]])
    exp = torch.cat([expected[big], expected[~big].sum()[None]])
    if exp[-1] < 5:  # a pooled bin too small to test is folded into the largest bin
        obs[obs.argmax()] += obs[-1]
        exp[exp.argmax()] += exp[-1]
        obs, exp = obs[:-1], exp[:-1]
    stat = ((obs - exp) ** 2 / exp).sum().item()
    k = len(obs) - 1
    z = ((stat / k) ** (1 / 3) - (1 - 2 / (9 * k))) / math.sqrt(2 / (9 * k))
    return 0.5 * math.erfc(z / math.sqrt(2))


def draw(path: str, logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(1234)
    counts = torch.zeros(V, dtype=torch.long)
    batch = logits.float().expand(BATCH, V).contiguous()
    for _ in range(DRAWS // BATCH):
        if path == "multinomial":
            tok = sample_next(batch, temperature, top_p, g, race=False)
        elif path == "race":
            tok = sample_next(batch, temperature, top_p, g, race=True)
        else:
            tok, logp = sample_with_logprob(batch, temperature, top_p, g, fused=True)
            assert torch.isfinite(logp).all()
        counts += torch.bincount(tok, minlength=V)
    return counts


SETTINGS = [(1.0, 1.0), (0.7, 1.0), (1.0, 0.9), (0.7, 0.9)]
# The fused path has its own draw at T = 1, top-p = 1 only; elsewhere it calls sample_next (the race on a GPU).
CASES = [("multinomial", t, p) for t, p in SETTINGS] + [("race", t, p) for t, p in SETTINGS] + [("fused", 1.0, 1.0)]


@pytest.mark.parametrize("path,temperature,top_p", CASES, ids=[f"{a}-T{t}-p{p}" for a, t, p in CASES])
def test_sampled_frequencies_match_the_intended_distribution(path, temperature, top_p):
    logits = logits_with_holes()
    probs = intended(logits, temperature, top_p)
    counts = draw(path, logits, temperature, top_p)
    assert counts.sum() == DRAWS
    assert counts[probs == 0].sum() == 0  # never a -inf token, never one outside the top-p set
    assert chi_square_p_value(counts, probs) > 1e-3


def test_the_chi_square_test_rejects_a_slightly_wrong_sampler():
    """The power behind the test above: drawing at T = 0.75 when T = 0.7 is claimed is caught."""
    logits = logits_with_holes()
    counts = draw("multinomial", logits, 0.75, 1.0)
    assert chi_square_p_value(counts, intended(logits, 0.7, 1.0)) < 1e-6
    counts = draw("multinomial", logits, 1.0, 0.92)  # top-p off by 0.02
    assert chi_square_p_value(counts, intended(logits, 1.0, 0.9)) < 1e-6


def test_nan_or_all_minus_inf_logits_raise_a_clear_error():
    g = torch.Generator().manual_seed(0)
    good = torch.zeros(3, 10)
    for broken in (float("nan"), float("-inf")):
        logits = good.clone()
        logits[1] = broken
        with pytest.raises(ValueError, match="NaN logits, or -inf for every token.*rows \\[1\\]"):
            sample_next(logits, 1.0, 1.0, g)
        with pytest.raises(ValueError, match="NaN logits"):
            sample_with_logprob(logits, 1.0, 1.0, g)
    one_nan = good.clone()
    one_nan[2, 4] = float("nan")
    with pytest.raises(ValueError, match="rows \\[2\\]"):
        sample_next(one_nan, 0.0, 1.0, g)
    # on a GPU the draw does not read back; the chunk's log-probs are checked when they come back
    logps = torch.tensor([[-0.1, -0.2, float("nan")], [-0.3, float("nan"), float("nan")]])
    check_logprobs(logps, [2, 1])  # NaNs past each row's length are padding
    with pytest.raises(ValueError, match="token 2 of row 0"):
        check_logprobs(logps, [3, 1])
