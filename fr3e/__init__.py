"""fr3e: a reference implementation and reproduction of FR3E (arXiv 2507.07017).

FR3E ("First Return, Entropy-Eliciting Explore") finds the high-entropy tokens of a sampled solution,
re-samples many continuations from the prefixes that end there, measures each prefix's empirical value
and scales the advantages by the change in value.

The package is layered, each layer importing only the ones below it (docs/architecture.md; the rule is
checked by import-linter in `make test`):

    fr3e.cli         the `fr3e` command and every `python -m fr3e.cli.<command>`
    fr3e.rehearsal   the CPU dress rehearsal of the paper path
    fr3e.study       runs, aggregation, statistics, claims, figures: what the notebooks call
    fr3e.training    config, the trainer, checkpoints, run directories, trackers, model cards
    fr3e.evaluation  avg@n, pass@k and greedy accuracy with bootstrap intervals
    fr3e.data        the paper profile's datasets and the model names every command accepts
    fr3e.engines     rollout engines (HF, vLLM)     fr3e.tasks   the tiny profile's embedded world
    fr3e.method      the paper's §3 as pure functions: entropy, anchors, branching, values, modulation, ...
    fr3e.utils       atomic files, seeds, the user-error type

The public API, in the order of the paper's §3 (each loaded on first use: `import fr3e` stays cheap):

    fr3e.token_entropy            per-token entropy of the policy (nats)
    fr3e.uncertainty_scores       entropy / surprisal / random / step-boundary scores of response tokens
    fr3e.eligible_positions, fr3e.select_anchors     the top-K anchors of each trajectory
    fr3e.build_states, fr3e.value_chains             states S_0..S_J (prefixes to continue from)
    fr3e.state_values             V(S_j): the mean reward of a state's continuations
    fr3e.modulation_factors, fr3e.modulation_by_key  α_j from the value change
    fr3e.keyed_advantages         A = α · group-normalised reward, groups found by state
    fr3e.policy_loss              PPO clip with Clip-Higher and the dual clip (GRPO++'s loss)
    fr3e.select_base_trajectories, fr3e.signal_groups  first-return selection and dynamic sampling
    fr3e.explore                  all of the above for one batch, given a `generate` and a `reward`
    fr3e.plan_states, fr3e.score_exploration         its two halves; fr3e.Trajectory, fr3e.PromptItem

`examples/custom_loop.py` trains the tiny model with `fr3e.explore` in a loop of its own. The method's
modules are reachable from the top as well (`from fr3e import entropy, anchors`).
"""

import importlib

__version__ = "0.1.0"

METHOD_MODULES = ("advantages", "anchors", "branching", "budget", "entropy", "losses", "modulation", "rewards",
                  "sampling", "values")
"""The modules of `fr3e.method`, importable as `fr3e.<name>`."""

PUBLIC = {
    "token_entropy": "fr3e.method.entropy", "uncertainty_scores": "fr3e.method.entropy",
    "eligible_positions": "fr3e.method.anchors", "select_anchors": "fr3e.method.anchors",
    "build_states": "fr3e.method.branching", "value_chains": "fr3e.method.branching",
    "State": "fr3e.method.branching", "StateKey": "fr3e.method.branching",
    "state_values": "fr3e.method.values",
    "modulation_factors": "fr3e.method.modulation", "modulation_by_key": "fr3e.method.modulation",
    "group_advantages": "fr3e.method.advantages", "keyed_advantages": "fr3e.method.advantages",
    "policy_loss": "fr3e.method.losses",
    "select_base_trajectories": "fr3e.method.sampling", "signal_groups": "fr3e.method.sampling",
    "explore": "fr3e.training.exploration", "plan_states": "fr3e.training.exploration",
    "score_exploration": "fr3e.training.exploration", "continuation_rollouts": "fr3e.training.exploration",
    "Trajectory": "fr3e.training.exploration",
    "PromptItem": "fr3e.training.rollouts", "Rollout": "fr3e.training.rollouts", "PromptWork": "fr3e.training.rollouts",
}
"""Public name -> the module that defines it."""

__all__ = ["__version__", *METHOD_MODULES, *PUBLIC]


def __getattr__(name: str):
    if name in METHOD_MODULES:
        module = importlib.import_module(f"fr3e.method.{name}")
        globals()[name] = module
        return module
    if name in PUBLIC:
        value = getattr(importlib.import_module(PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fr3e' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *METHOD_MODULES, *PUBLIC])
