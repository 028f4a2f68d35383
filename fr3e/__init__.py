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

The method's modules are also reachable from the top, so `from fr3e import entropy, anchors` and
`fr3e.modulation.modulation_factors(...)` work (loaded on first use: `import fr3e` stays cheap).
"""

import importlib

__version__ = "0.1.0"

METHOD_MODULES = ("advantages", "anchors", "branching", "budget", "entropy", "losses", "modulation", "rewards",
                  "sampling", "values")
"""The modules of `fr3e.method`, importable as `fr3e.<name>`."""

__all__ = ["__version__", *METHOD_MODULES]


def __getattr__(name: str):
    if name in METHOD_MODULES:
        module = importlib.import_module(f"fr3e.method.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'fr3e' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *METHOD_MODULES])
