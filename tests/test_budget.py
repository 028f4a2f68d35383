"""The adaptive exploration budget (fr3e.method.budget): the allocation rule on hand-computed cases,
then one tiny FR3E step with the option on (budget respected, values from the actual counts) and off
(the trainer's engine calls and rollouts are those of the fixed-M path)."""

from pathlib import Path

import pytest
import torch

from fr3e.method import budget
from fr3e.method.budget import CAP_FACTOR, next_round, settled_states, wilson_widths
from fr3e.training.config import ConfigError, FR3EConfig, load_config

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


# ---------------------------------------------------------------------------------- in the trainer
SMALL = ["steps=2", "data.prompts_per_step=4", "data.max_response_tokens=48", "grpo.max_refill_rounds=1"]


def make_trainer(tmp_path, name, extra=()):
    from fr3e.training.trainer import Trainer

    cfg = load_config(ROOT / "reproduce/configs/tiny-fr3e.yaml", SMALL + list(extra))
    trainer = Trainer(cfg, tmp_path / name, progress=False, cache_dir=CACHE)
    calls = []
    generate = trainer.engine.generate

    def recording(prompt_ids, n, max_new_tokens, temperature=1.0, top_p=1.0, seed=None):
        calls.append((len(prompt_ids), n, seed))
        return generate(prompt_ids, n, max_new_tokens, temperature, top_p, seed)

    trainer.engine.generate = recording
    return trainer, calls


def step_record(trainer):
    """One step: its metrics row and, per state, (key, continuation ids, rewards, value)."""
    row = trainer.step()
    states = [(s.key, [r.completion_ids for r in w.rollouts if r.key == s.key], w.rewards[s.key], w.values[s.key])
              for w in trainer._last_works for s in w.states]
    return row, states


@pytest.mark.slow
def test_adaptive_step_respects_the_budget_and_uses_actual_counts(tmp_path):
    from fr3e.utils.seeds import derive_seed

    trainer, calls = make_trainer(tmp_path, "on", ["fr3e.adaptive_budget=true"])
    try:
        row, _ = step_record(trainer)
        works = trainer._last_works
    finally:
        trainer.lock.release()
    m, r = 8, 4  # the recipe's M and the default round
    counts = [len(w.rewards[s.key]) for w in works for s in w.states]
    assert row["continuations_budget"] == m * len(counts)  # states × M over every generation round
    assert row["continuations_generated"] == sum(counts) <= m * len(counts)
    assert row["continuations_saved_frac"] == pytest.approx(1 - sum(counts) / (m * len(counts)))
    assert all(r <= c <= CAP_FACTOR * m for c in counts)
    assert len(set(counts)) > 1 and min(counts) < m  # groups really are of unequal size in this step
    rewards = [w.rewards[s.key] for w in works for s in w.states]
    early = [d and c < m for d, c in zip(settled_states(rewards, r), counts)]
    assert row["states_settled_early"] == sum(early) > 0
    for w in works:
        for s in w.states:
            got = w.rewards[s.key]
            assert w.values[s.key] == pytest.approx(sum(got) / len(got))  # V from the actual count
            rolls = [x for x in w.rollouts if x.key == s.key]
            if rolls:  # kept group: A = α · (r − mean over its own count)
                alpha = w.alpha["paper"][s.key]
                for x in rolls:
                    assert x.advantage == pytest.approx(alpha * (x.reward - sum(got) / len(got)), abs=1e-6)
    # Round 1 asks 4 of every state in one call per generation round, seeded by the adaptive round index.
    base_seeds = {derive_seed(0, 0, 0, "base", g) for g in range(row["refill_rounds"] + 1)}
    explore = [c for c in calls if c[2] not in base_seeds]
    assert len(explore) > row["refill_rounds"] + 1  # more than one engine call per generation round
    assert explore[0][1] == r and explore[0][2] == derive_seed(0, 0, 0, "explore", 0, "adaptive", 0, r)


@pytest.mark.slow
def test_adaptive_step_is_deterministic(tmp_path):
    records = []
    for name in ("a", "b"):
        trainer, _ = make_trainer(tmp_path, name, ["fr3e.adaptive_budget=true", "fr3e.adaptive_width=0.6"])
        try:
            records.append(step_record(trainer))
        finally:
            trainer.lock.release()
    (row_a, states_a), (row_b, states_b) = records
    assert states_a == states_b
    keys = ("continuations_generated", "states_settled_early", "adaptive_rounds", "groups_trained", "reward_all_mean")
    assert [row_a[k] for k in keys] == [row_b[k] for k in keys]


@pytest.mark.slow
def test_option_off_is_the_fixed_m_path(tmp_path, monkeypatch):
    from fr3e.utils.seeds import derive_seed

    def refuse(*args, **kwargs):
        raise AssertionError("the adaptive rule ran with fr3e.adaptive_budget off")

    monkeypatch.setattr(budget, "next_round", refuse)
    trainer, calls = make_trainer(tmp_path, "off", ["fr3e.adaptive_budget=false"])
    try:
        row, states = step_record(trainer)
        rounds = row["refill_rounds"] + 1
    finally:
        trainer.lock.release()
    assert not {"continuations_generated", "continuations_budget", "states_settled_early",
                "continuations_saved_frac", "adaptive_rounds"} & set(row)
    # Exactly the engine calls of the fixed-M path: per generation round, base trajectories, then one call of
    # n = M for all states, seeded by (seed, step, process, "explore", round).
    assert len(calls) == 2 * rounds
    for g in range(rounds):
        assert calls[2 * g][1:] == (4, derive_seed(0, 0, 0, "base", g))
        n_states, n, seed = calls[2 * g + 1]
        assert n == 8 and seed == derive_seed(0, 0, 0, "explore", g)
    assert all(len(rw) == 8 for _, _, rw, _ in states)
    assert sum(calls[2 * g + 1][0] for g in range(rounds)) == len(states)


def test_runs_recorded_before_the_option_still_match():
    from fr3e.training.config import TrainConfig, diff_configs

    old = TrainConfig().to_dict()
    for key in ("adaptive_budget", "adaptive_round", "adaptive_width"):
        del old["fr3e"][key]  # a config.json written before the fields existed
    assert diff_configs(old, TrainConfig().to_dict()) == []
    on = load_config(ROOT / "reproduce/configs/tiny-fr3e.yaml", ["fr3e.adaptive_budget=true"]).to_dict()
    base = load_config(ROOT / "reproduce/configs/tiny-fr3e.yaml").to_dict()
    del base["fr3e"]["adaptive_budget"]
    assert diff_configs(base, on) == ["fr3e.adaptive_budget: None -> True"]
