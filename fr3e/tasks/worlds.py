"""The tiny profile's worlds by name, and the one reward function that scores an answer from any of them.

| world        | module                    | what it is                                                   |
|--------------|---------------------------|--------------------------------------------------------------|
| `arithmetic` | `fr3e.tasks.arithmetic`   | worked multiplications: one correct solution, length fixed   |
| `paths`      | `fr3e.tasks.paths`        | paths in a fixed digraph: many correct answers, free length  |
| `countdown`  | `fr3e.tasks.countdown`    | Countdown-3 by try-and-check: a candidate, scorecard only    |

Each world module has the same surface: `SPLITS`, `default_eval_sizes`, `make_split(split, n, seed)`,
`iter_problems(split, seed)`, `STEP_DELIMITER` and `DATA_SOURCE_PREFIX`. A config picks one with
`data.world`; evaluation and the warm start take the same name.
"""

from __future__ import annotations

import importlib
from types import ModuleType

WORLDS = ("arithmetic", "paths", "countdown")
"""The worlds of the tiny profile; `arithmetic` is the control without forks, `countdown` a candidate measured on
the worlds' scorecard (reproduce/worlds/), with no committed study results."""

CANDIDATE_WORLDS = ("countdown",)
"""Worlds measured on the scorecard only: no study recipes, no shipped base models, no results."""

DEFAULT_WORLD = "arithmetic"


def get_world(name: str) -> ModuleType:
    """The module of world `name`; a ValueError that lists the worlds otherwise."""
    if name not in WORLDS:
        raise ValueError(f"unknown tiny world {name!r}; choose one of {', '.join(WORLDS)} (data.world)")
    return importlib.import_module(f"fr3e.tasks.{name}")


def reward(text: str, answer: str) -> float:
    """1.0 when `text` answers correctly, else 0.0, for an `answer` cell of any world or of the paper's data.

    A path-world answer names its pair (`path:<s>><t>`) and is checked against the world's graph, a Countdown
    answer its numbers and target (`countdown:4 7 9>19`); anything
    else is a mathematical answer (`fr3e.method.rewards.reward`: `\\boxed{}` extraction and verification)."""
    from fr3e.tasks import countdown, paths

    if answer.startswith(paths.ANSWER_PREFIX):
        return paths.reward(text, answer)
    if answer.startswith(countdown.ANSWER_PREFIX):
        return countdown.reward(text, answer)
    from fr3e.method.rewards import reward as math_reward

    return math_reward(text, answer)
