"""The public exploration API (`fr3e.explore` and its halves) and the example that trains with it."""

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import fr3e
from fr3e.method.branching import SHARED

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Done:
    token_ids: list
    logprobs: list


def scripted_generate(calls):
    """Continuation k of every prefix is `[7 + k % 2]`: half of them say 7 (right), half 8 (wrong), except after
    an anchored prefix ending in 5, whose continuations are all right (a state with value 1)."""
    def generate(prefixes, n):
        calls.append((prefixes, n))
        return [[Done([7] if p[-1] == 5 else [7 + k % 2], [-0.5]) for k in range(n)] for p in prefixes]
    return generate


def reward(prompt, response_ids):
    return float(response_ids[-1] == 7)


def test_explore_gives_states_values_alpha_and_advantages_in_the_papers_order():
    prompts = [fr3e.PromptItem(0, [1, 2], "7", "q0"), fr3e.PromptItem(1, [1, 3], "7", "q1")]
    # prompt 0: one right and one wrong trajectory; the entropy peaks at response position 2 and 1
    trajs = [fr3e.Trajectory(prompts[0], 10, [4, 5, 6, 7], 1.0, torch.tensor([0.1, 0.2, 0.9, 0.0])),
             fr3e.Trajectory(prompts[0], 11, [4, 4, 8], 0.0, torch.tensor([0.1, 0.8, 0.0]))]
    calls = []
    works = fr3e.explore(prompts, trajs, scripted_generate(calls), reward, continuations_per_state=4, num_anchors=1)
    assert len(calls) == 1 and calls[0][1] == 4  # one engine call for the whole batch
    w0, w1 = works
    assert [(s.key.trajectory_id, s.anchor) for s in w0.states] == [(SHARED, 0), (10, 2), (11, 1)]
    assert [s.prefix_ids for s in w0.states] == [[1, 2], [1, 2, 4, 5], [1, 2, 4]]
    assert [s.key.trajectory_id for s in w1.states] == [SHARED]  # no trajectory: S_0 alone (GRPO's group)
    values = [w0.values[s.key] for s in w0.states]
    assert values == [0.5, 1.0, 0.5]
    # the value chain of trajectory 10 goes 0.5 -> 1.0; α comes from fr3e.modulation on that chain
    chains = fr3e.value_chains(w0.states)
    assert w0.alpha["paper"] == fr3e.modulation_by_key(chains, w0.values, "paper")
    # advantages: α · (r − mean) per state; the all-right state carries none
    for s in w0.states:
        rolls = [r for r in w0.rollouts if r.key == s.key]
        mean = sum(r.reward for r in rolls) / len(rolls)
        assert [r.advantage for r in rolls] == pytest.approx([w0.alpha["paper"][s.key] * (r.reward - mean)
                                                              for r in rolls])
    # scored on prefix ⊕ continuation: the anchored prefix's response tokens are in what the reward saw
    assert all(r.prefix_ids == w0.states[1].prefix_ids for r in w0.rollouts if r.key == w0.states[1].key)


def test_the_halves_compose_to_explore_and_errors_name_the_fix():
    prompts = [fr3e.PromptItem(0, [1, 2], "7", "q0")]
    trajs = [fr3e.Trajectory(prompts[0], 3, [4, 5, 6], 1.0, torch.tensor([0.3, 0.1, 0.2]))]
    planned = fr3e.plan_states(prompts, trajs, num_anchors=2)
    comps = scripted_generate([])([s.prefix_ids for s in planned[0][1]], 2)
    rollouts = {s.key: fr3e.continuation_rollouts(s, c, prompts[0], reward) for s, c in zip(planned[0][1], comps)}
    by_hand = fr3e.score_exploration(planned, rollouts)
    at_once = fr3e.explore(prompts, trajs, scripted_generate([]), reward, continuations_per_state=2, num_anchors=2)
    assert [r.advantage for r in by_hand[0].rollouts] == [r.advantage for r in at_once[0].rollouts]
    with pytest.raises(ValueError, match="one entropy"):
        fr3e.plan_states(prompts, [fr3e.Trajectory(prompts[0], 3, [4, 5], 1.0, torch.tensor([0.1]))], num_anchors=1)
    with pytest.raises(ValueError, match="pass their prompts too"):
        fr3e.plan_states([], trajs, num_anchors=1)
    with pytest.raises(ValueError, match="unknown modulation"):
        fr3e.score_exploration(planned, rollouts, modulation="paper-ish")
    with pytest.raises(ValueError, match="no continuation"):
        fr3e.score_exploration(planned, {})


def test_the_public_names_resolve():
    for name in fr3e.__all__:
        assert getattr(fr3e, name) is not None, name


def test_custom_loop_example_trains_with_the_public_api(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "custom_loop.py"), "--steps", "10", "--prompts", "4"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=280)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "step  10  first-return accuracy" in out.stdout
    before, after = map(float, re.search(r"([\d.]+) before, ([\d.]+) after 10 steps", out.stdout).groups())
    assert 0 < before < 1 and 0 <= after <= 1
