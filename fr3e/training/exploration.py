"""FR3E's exploration for one batch, as a public function the trainer itself calls.

Given first-return trajectories (a prompt's kept base samples with their rewards and per-token entropies),
`explore` runs the rest of the paper's §3 in order:

    uncertainty scores → anchors → states S_0..S_J → M continuations per state → rewards
    → empirical values V(S_j) → modulation α_j → advantages

and returns one `PromptWork` per prompt: its states, every continuation as a `Rollout` (tokens, engine
log-probs, reward, advantage), the values and α of each state. It needs no trainer: a `generate` callable
(an engine's `generate`, or any function with that shape) and a `reward` callable are enough, so it fits a
training loop of one's own (`examples/custom_loop.py`) or another library's.

The two halves are public too, for loops that sample continuations their own way (the trainer's adaptive
budget does): `plan_states` (trajectories → anchors → states) and `score_exploration` (continuation rewards →
values → α → advantages).

Multi-process use: `explore` calls `generate` exactly once, with an empty list when a process has no state,
so an engine whose call is a collective (vLLM tensor parallelism) stays in step across processes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from fr3e.method import anchors as anchors_mod
from fr3e.method import entropy as entropy_mod
from fr3e.method.advantages import keyed_advantages
from fr3e.method.branching import State, StateKey, build_states, value_chains
from fr3e.method.modulation import modulation_by_key
from fr3e.method.values import state_values
from fr3e.training.rollouts import PromptItem, PromptWork, Rollout

MODULATIONS = ("paper", "official", "none")


@dataclass
class Trajectory:
    """One kept first-return trajectory: a base sample of `prompt`, its reward, and the policy's entropy (and,
    for the `surprisal` scorer, log-prob) at each response token.

    trajectory_id: unique within the batch (the trainer uses prompt_id · G_base + sample index).
    entropy, logprobs: (len(response_ids),) float tensors; logprobs may be None unless the scorer needs them.
    """

    prompt: PromptItem
    trajectory_id: int
    response_ids: list[int]
    reward: float
    entropy: torch.Tensor
    logprobs: torch.Tensor | None = None


Planned = tuple[PromptItem, list[State], dict]
"""One prompt's plan: the prompt, its states (S_0 first), and what the logs keep of its trajectories."""

Generate = Callable[[list[list[int]], int], Sequence[Sequence]]
"""generate(prefixes, n) -> per prefix, n completions with `.token_ids` and `.logprobs` (an engine's output)."""

Reward = Callable[[PromptItem, list[int]], float]
"""reward(prompt, response_ids) -> the verifier's reward of one whole response."""


def plan_states(prompts: Sequence[PromptItem], trajectories: Sequence[Trajectory], *, num_anchors: int,
                min_anchor_gap: int = 0, scorer: str = "entropy", eos_token_ids: Sequence[int] = (),
                delimiter_ids: Sequence[int] = (), generator: torch.Generator | None = None) -> list[Planned]:
    """Trajectories → uncertainty scores → the top-`num_anchors` anchors of each → the prompt's states.

    A response ending in EOS never anchors on its last token; the `newline` scorer anchors only after a step
    delimiter (`delimiter_ids`). A prompt without trajectories gets S_0 alone (that is GRPO++'s group).
    Returns one `Planned` per prompt, in the order of `prompts`.
    """
    if num_anchors < 1:
        raise ValueError(f"num_anchors must be >= 1, got {num_anchors}")
    known = {p.prompt_id for p in prompts}
    stray = [t.trajectory_id for t in trajectories if t.prompt.prompt_id not in known]
    if stray:
        raise ValueError(f"trajectories {stray[:5]} belong to prompts not in `prompts`; pass their prompts too")
    anchor_pos = scores = None
    if trajectories:
        T = max(len(t.response_ids) for t in trajectories)
        B = len(trajectories)
        mask = torch.zeros(B, T, dtype=torch.bool)
        ent, logp = torch.zeros(B, T), torch.zeros(B, T)
        ids = torch.zeros(B, T, dtype=torch.long)
        for b, t in enumerate(trajectories):
            n = len(t.response_ids)
            if len(t.entropy) != n or (t.logprobs is not None and len(t.logprobs) != n):
                raise ValueError(f"trajectory {t.trajectory_id}: {n} response tokens but {len(t.entropy)} entropies; "
                                 "give one entropy (and log-prob) per response token")
            mask[b, :n] = True
            ent[b, :n] = t.entropy
            if t.logprobs is not None:
                logp[b, :n] = t.logprobs
            ids[b, :n] = torch.tensor(t.response_ids, dtype=torch.long)
        eos = set(eos_token_ids)
        ends = torch.tensor([len(t.response_ids) > 0 and t.response_ids[-1] in eos for t in trajectories])
        scores = entropy_mod.uncertainty_scores(scorer, mask=mask, entropies=ent, token_logprobs=logp,
                                                response_ids=ids, delimiter_ids=list(delimiter_ids) or None,
                                                generator=generator)  # (B, T)
        eligible = anchors_mod.eligible_positions(mask, ends) & entropy_mod.scored_positions(scorer, scores)
        anchor_pos = anchors_mod.select_anchors(scores, eligible, num_anchors, min_anchor_gap)  # (B, K)
    by_prompt: dict[int, list[int]] = defaultdict(list)
    for b, t in enumerate(trajectories):
        by_prompt[t.prompt.prompt_id].append(b)
    out = []
    for p in prompts:
        rows = by_prompt.get(p.prompt_id, [])
        mine = [trajectories[b] for b in rows]
        states = build_states(p.prompt_id, p.ids, [(t.trajectory_id, t.response_ids, anchor_pos[b].tolist())
                                                   for b, t in zip(rows, mine)])
        info = {"trajectories": [
            {"trajectory_id": t.trajectory_id, "response": t.response_ids, "reward": t.reward,
             "anchors": [a for a in anchor_pos[b].tolist() if a >= 0], "entropy": t.entropy.tolist(),
             "scores": scores[b, : len(t.response_ids)].tolist()} for b, t in zip(rows, mine)]} if trajectories else {}
        out.append((p, states, info))
    return out


def continuation_rollouts(state: State, completions: Sequence, prompt: PromptItem, reward: Reward,
                          score_prefix: bool = True) -> list[Rollout]:
    """`Rollout`s of one state's completions, each rewarded on prefix ⊕ continuation (`score_prefix`, the
    whole response the verifier sees) or on the continuation alone."""
    prefix_response = state.prefix_ids[state.prompt_len:]
    return [Rollout(state.key, state.prefix_ids, state.prompt_len, list(c.token_ids), list(c.logprobs),
                    float(reward(prompt, (prefix_response if score_prefix else []) + list(c.token_ids))))
            for c in completions]


def score_exploration(planned: Sequence[Planned], rollouts: dict[StateKey, list[Rollout]], *,
                      modulation: str = "paper", advantage_scale: str = "none") -> list[PromptWork]:
    """Continuation rewards → V(S_j) (mean reward) → α of every state under each modulation variant → the
    advantage of every rollout under `modulation` (set on each `Rollout`). Nothing is filtered here."""
    if modulation not in MODULATIONS:
        raise ValueError(f"unknown modulation {modulation!r}; choose one of {MODULATIONS}")
    works = []
    for p, states, info in planned:
        missing = [s.key for s in states if s.key not in rollouts or not rollouts[s.key]]
        if missing:
            raise ValueError(f"prompt {p.prompt_id}: no continuation for states {missing[:3]}; every state needs "
                             "at least one")
        rewards = {s.key: [r.reward for r in rollouts[s.key]] for s in states}
        values = {k: float(state_values(torch.tensor([v]))[0]) for k, v in rewards.items()}
        chains = value_chains(states)
        alpha = {variant: modulation_by_key(chains, values, variant) for variant in MODULATIONS}
        rolls = [r for s in states for r in rollouts[s.key]]
        adv = keyed_advantages(torch.tensor([r.reward for r in rolls]), [r.key for r in rolls], alpha[modulation],
                               advantage_scale)
        for r, a in zip(rolls, adv.tolist()):
            r.advantage = a
        works.append(PromptWork(p, states, rewards, rolls, info, values, alpha))
    return works


def explore(prompts: Sequence[PromptItem], trajectories: Sequence[Trajectory], generate: Generate, reward: Reward,
            *, continuations_per_state: int, num_anchors: int, min_anchor_gap: int = 0, scorer: str = "entropy",
            modulation: str = "paper", advantage_scale: str = "none", score_prefix: bool = True,
            eos_token_ids: Sequence[int] = (), delimiter_ids: Sequence[int] = (),
            generator: torch.Generator | None = None) -> list[PromptWork]:
    """FR3E's exploration of one batch: `plan_states`, then `continuations_per_state` completions of every
    state in one `generate` call, rewarded by `reward`, then `score_exploration`.

    With no trajectories, every prompt has S_0 alone and this is GRPO's group of `continuations_per_state`
    samples. Returns one `PromptWork` per prompt (states, rollouts with advantages, values, α).
    """
    planned = plan_states(prompts, trajectories, num_anchors=num_anchors, min_anchor_gap=min_anchor_gap,
                          scorer=scorer, eos_token_ids=eos_token_ids, delimiter_ids=delimiter_ids,
                          generator=generator)
    states = [(p, s) for p, sts, _ in planned for s in sts]
    completions = generate([s.prefix_ids for _, s in states], continuations_per_state)
    if len(completions) != len(states):
        raise ValueError(f"generate returned {len(completions)} groups for {len(states)} prefixes")
    rollouts = {s.key: continuation_rollouts(s, comps, p, reward, score_prefix)
                for (p, s), comps in zip(states, completions)}
    return score_exploration(planned, rollouts, modulation=modulation, advantage_scale=advantage_scale)
