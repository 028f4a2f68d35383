"""The records one training step passes between its stages: prompts, rollouts, what each prompt produced,
and the seeded stream of training prompts (its position is checkpointed)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fr3e.method.branching import State, StateKey
from fr3e.utils.seeds import derive_seed


@dataclass
class PromptItem:
    """One training prompt in a step: a step-unique id, its token ids and gold answer."""

    prompt_id: int
    ids: list[int]
    answer: str
    text: str


@dataclass
class Rollout:
    """One continuation that may train: the state it came from, its tokens, reward and advantage."""

    key: StateKey
    prefix_ids: list[int]
    prompt_len: int
    completion_ids: list[int]
    engine_logprobs: list[float]
    reward: float
    advantage: float = 0.0


@dataclass
class PromptWork:
    """Everything one prompt produced in one step (before and after dynamic sampling)."""

    prompt: PromptItem
    states: list[State]
    rewards: dict[StateKey, list[float]]
    rollouts: list[Rollout]
    base: dict = field(default_factory=dict)  # base trajectories and anchors (FR3E), for logs and samples
    values: dict[StateKey, float] = field(default_factory=dict)
    alpha: dict[str, dict[StateKey, float]] = field(default_factory=dict)


class PromptStream:
    """An endless, seeded, epoch-shuffled stream of training-set indices; its position is checkpointed."""

    def __init__(self, size: int, seed: int, position: int = 0):
        if size < 1:
            raise ValueError("the training set is empty")
        self.size, self.seed, self.position = size, seed, position

    def take(self, count: int) -> list[int]:
        out = []
        for _ in range(count):
            epoch, offset = divmod(self.position, self.size)
            order = np.random.default_rng(derive_seed(self.seed, "epoch", epoch)).permutation(self.size)
            out.append(int(order[offset]))
            self.position += 1
        return out
