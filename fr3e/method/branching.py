"""States: the prefixes from which FR3E explores (paper §3, "first return").

Given a base trajectory τ (response token ids) with anchors a_1 < ... < a_K, the states are

    S_0 = q                    (the prompt; one per prompt, shared by all of its kept trajectories)
    S_j = q ⊕ τ[:a_j]          (the prefix ends just before the anchor, so the anchor token is re-sampled)

Deviations from the authors' code, each deliberate:
- prefixes are token ids, never decoded text re-tokenized (decoding and re-tokenizing is not token-exact and can split UTF-8);
- every state carries an explicit key (prompt_id, trajectory_id, state_index) and everything downstream
  (values, α, advantages) is looked up by key, never by row position (the authors' code pairs them by position, which misaligns them
  when a trajectory has fewer anchors than K or a group is filtered);
- S_0 is built once per prompt and shared (the authors re-create it per trajectory and sample it twice).
"""

from __future__ import annotations

from dataclasses import dataclass, field

SHARED = -1  # trajectory_id of the shared S_0 of a prompt


@dataclass(frozen=True, order=True)
class StateKey:
    """Identity of one state. S_0 of a prompt has trajectory_id == SHARED and state_index == 0."""

    prompt_id: int
    trajectory_id: int
    state_index: int


@dataclass
class State:
    """One state S_j: the token ids the engine continues from, and where they came from."""

    key: StateKey
    prefix_ids: list[int]  # prompt ids ⊕ response ids[:anchor]
    prompt_len: int
    anchor: int  # a_j: response position the prefix stops before (0 for S_0)
    chain: tuple[StateKey, ...] = field(default=())  # keys S_0 .. S_j of this trajectory's value chain


def build_states(
    prompt_id: int,
    prompt_ids: list[int],
    trajectories: list[tuple[int, list[int], list[int]]],
) -> list[State]:
    """States of one prompt.

    prompt_id:    the prompt's index in the step.
    prompt_ids:   prompt token ids (length P_len).
    trajectories: (trajectory_id, response_ids, anchors) per kept base trajectory; anchors are response
                  positions in ascending order, -1 entries are ignored (fewer anchors than K).
    returns [S_0, S_1^τ1, ..., S_K^τ1, S_1^τ2, ...]; S_0 first and only once.
    """
    s0_key = StateKey(prompt_id, SHARED, 0)
    states = [State(s0_key, list(prompt_ids), len(prompt_ids), 0, (s0_key,))]
    seen_ids: set[int] = set()
    for traj_id, response, anchors in trajectories:
        if traj_id in seen_ids or traj_id == SHARED:
            raise ValueError(f"trajectory_id {traj_id} is repeated or reserved; ids must be unique per step")
        seen_ids.add(traj_id)
        valid = [int(a) for a in anchors if int(a) >= 0]
        if valid != sorted(set(valid)):
            raise ValueError(f"anchors of trajectory {traj_id} must be strictly ascending, got {valid}")
        if valid and valid[-1] >= len(response):
            raise ValueError(f"anchor {valid[-1]} is past the end of trajectory {traj_id} (length {len(response)})")
        chain = [s0_key]
        for j, a in enumerate(valid, start=1):
            key = StateKey(prompt_id, traj_id, j)
            chain.append(key)
            states.append(State(key, list(prompt_ids) + list(response[:a]), len(prompt_ids), a, tuple(chain)))
    return states


def value_chains(states: list[State]) -> dict[int, list[StateKey]]:
    """trajectory_id -> ordered keys (S_0, S_1, ..., S_J) of its value chain (for modulation).

    A trajectory with no anchors has the chain [S_0] only.
    """
    chains: dict[int, list[StateKey]] = {}
    for s in states:
        if s.key.trajectory_id != SHARED:
            chains[s.key.trajectory_id] = list(s.chain)  # later states of a trajectory have longer chains
    return chains
