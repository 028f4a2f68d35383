"""The adaptive exploration budget (fr3e.budget; issue 12 §3): the allocation rule on hand-computed cases,
then one tiny FR3E step with the option on (budget respected, values from the actual counts) and off
(the trainer's engine calls and rollouts are those of the fixed-M path)."""

from pathlib import Path

import pytest
import torch

from fr3e.budget import CAP_FACTOR, next_round, settled_states, wilson_widths
from fr3e.config import ConfigError, FR3EConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "runs" / "cache"


def run_rule(outcomes, m, round_size, width=0.0, cap_factor=CAP_FACTOR):
    """Drive next_round to the end; state j's k-th reward is outcomes[j][k]. returns (counts, rounds)."""
    rewards = [[] for _ in outcomes]
    rounds = []
    while True:
        give = next_round(rewards, len(outcomes) * m, round_size, cap_factor * m, width)
        if not any(give):
            return [len(r) for r in rewards], rounds
        rounds.append(give)
        for r, o, g in zip(rewards, outcomes, give):
            r.extend(o[len(r): len(r) + g])


# ------------------------------------------------------------------------------------- the rule
def test_all_settled_after_round_one():
    # 3 states, M = 8, R = 4: round 1 gives 4 each (12 of the 24); every first 4 rewards agree -> stop.
    counts, rounds = run_rule([[1.0] * 16, [0.0] * 16, [1.0] * 16], m=8, round_size=4)
    assert rounds == [[4, 4, 4]]
    assert counts == [4, 4, 4]  # 12 generated against 3 x 8 = 24: a saving of 1/2


def test_none_settled_every_state_gets_exactly_m():
    # 2 states, M = 8, R = 4, rewards alternate so no state agrees: 4 + 4 each, then the budget (16) is spent.
    alt = [1.0, 0.0] * 16
    counts, rounds = run_rule([alt, alt], m=8, round_size=4)
    assert rounds == [[4, 4], [4, 4]] and counts == [8, 8]
    # M = 6 is not a multiple of R = 4: after round 1 (8 of 12) the 4 left go one at a time, 2 each.
    counts, rounds = run_rule([alt, alt], m=6, round_size=4)
    assert rounds == [[4, 4], [2, 2]] and counts == [6, 6]


def test_mixed_reallocation_priority_and_cap():
    # 3 states, M = 4, R = 2, cap 8, budget 12.
    # round 1: [2, 2, 2] (6 left). S0 = [1, 1] agrees -> settled; S1 = [1, 0], S2 = [0, 1] both 1/2, same width.
    # round 2: S1 and S2 ask 2 each, 6 left covers it: [0, 2, 2] (2 left).
    # S1 = [1, 0, 1, 1] (3/4, width 0.65), S2 = [0, 1, 0, 1] (2/4, width 0.70): S2 is nearer 0.5, so first.
    # round 3: 2 left, one at a time in priority order: S2 then S1 -> [0, 1, 1]. Totals 2 + 5 + 5 = 12.
    outcomes = [[1.0, 1.0] + [0.0] * 10, [1.0, 0.0, 1.0, 1.0] + [0.0] * 8, [0.0, 1.0] * 6]
    counts, rounds = run_rule(outcomes, m=4, round_size=2)
    assert rounds == [[2, 2, 2], [0, 2, 2], [0, 1, 1]]
    assert counts == [2, 5, 5] and sum(counts) == 12
    w = wilson_widths([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 1.0]])
    assert w[1] > w[0]  # 2/4 is less certain than 3/4
    # Only one continuation left: it goes to the widest interval (S2), not to the lower index.
    assert next_round([[1.0, 1.0], [1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 1.0]], 11, 2, 8) == [0, 0, 1]

    # The cap: 4 states, M = 4, R = 2, cap 2M = 8, budget 16. Three agree at once (6 used, the 4th 2: 8 used).
    # The 4th never settles: 2 per round until it holds the cap 8 (rounds 2, 3, 4); 2 stay unspent (14 <= 16).
    outcomes = [[1.0] * 20, [0.0] * 20, [1.0] * 20, [1.0, 0.0] * 10]
    counts, rounds = run_rule(outcomes, m=4, round_size=2)
    assert rounds == [[2, 2, 2, 2], [0, 0, 0, 2], [0, 0, 0, 2], [0, 0, 0, 2]]
    assert counts == [2, 2, 2, 8] and sum(counts) == 14


def test_width_rule():
    # Wilson 95% widths of 1/2 successes (z = 1.96, z^2 = 3.8416):
    #   n = 4: half = 1.96 sqrt(.25/4 + 3.8416/64) / (1 + 3.8416/4) = 1.96 * 0.35004 / 1.9604 = 0.3500 -> 0.700
    #   n = 8: half = 1.96 sqrt(.25/8 + 3.8416/256) / (1 + 3.8416/8) = 1.96 * 0.21507 / 1.4802 = 0.2848 -> 0.570
    torch.testing.assert_close(wilson_widths([[1.0, 0.0] * 2, [1.0, 0.0] * 4, []]),
                               torch.tensor([0.6999, 0.5696, 1.0]), atol=1e-3, rtol=0)
    half = [[1.0, 0.0] * 2, [1.0, 0.0] * 4]
    assert settled_states(half, 4, width=0.6) == [False, True]
    assert settled_states(half, 4, width=0.0) == [False, False]  # 0 = off
    # With w = 0.6, M = 8, R = 4: after 8 alternating rewards each state settles; nothing past M is drawn.
    counts, _ = run_rule([[1.0, 0.0] * 16] * 2, m=8, round_size=4, width=0.6)
    assert counts == [8, 8]
    # Agreement reads the first R rewards only, and needs R of them.
    assert settled_states([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0]], 4) == [False, True, False]


def test_budget_never_exceeded_and_deterministic():
    gen = torch.Generator().manual_seed(0)
    for trial in range(30):
        s, m, r = 1 + trial % 5, 2 + trial % 7, 2 + trial % 3
        r = min(r, m)
        p = torch.rand(s, generator=gen)
        outcomes = (torch.rand(s, CAP_FACTOR * m, generator=gen) < p[:, None]).float().tolist()
        counts, rounds = run_rule(outcomes, m, r)
        again = run_rule(outcomes, m, r)
        assert (counts, rounds) == again  # the rule reads only the rewards so far
        assert sum(counts) <= s * m and all(r <= c <= CAP_FACTOR * m for c in counts)
        assert all(0 <= g <= r for rnd in rounds for g in rnd)
        # A state that ends with fewer than M continuations is settled (never starved while budget is left).
        final = [o[:c] for o, c in zip(outcomes, counts)]
        done = settled_states(final, r)
        assert all(d or c >= m or sum(counts) == s * m for d, c in zip(done, counts))


def test_rule_rejects_bad_arguments_and_config_validates():
    with pytest.raises(ValueError, match="round_size"):
        next_round([[]], 4, 0, 8)
    assert FR3EConfig().adaptive_budget is False  # off by default: the paper's fixed M
    with pytest.raises(ConfigError, match="adaptive_round"):
        FR3EConfig(adaptive_round=1)
    with pytest.raises(ConfigError, match="adaptive_round <= M"):
        FR3EConfig(adaptive_budget=True, continuations_per_state=4, adaptive_round=8)
    with pytest.raises(ConfigError, match="adaptive_width"):
        FR3EConfig(adaptive_width=1.5)
    cfg = load_config(ROOT / "reproduce/configs/tiny-fr3e.yaml", ["fr3e.adaptive_budget=true"])
    assert cfg.fr3e.adaptive_budget and cfg.fr3e.adaptive_round == 4 and cfg.fr3e.adaptive_width == 0.0
