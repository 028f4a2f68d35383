"""The embedded CPU-sized worlds of the `tiny` profile: tasks, character tokenizer, tiny model, SFT.

`worlds` names the worlds (`arithmetic`, the control without forks, and `paths`, with many correct answers
and free length) and scores an answer of any of them; each world generates problems (easy / medium / hard
evaluation splits, a disjoint train split),
`tokenizer` is a character-level tokenizer, `model` builds a ~0.4M-parameter Qwen3-family decoder and
`warm_start` fine-tunes it into the `general` and `math` base models (cached).
"""

import importlib

_NAMES = {"SPLITS": "arithmetic", "default_eval_sizes": "arithmetic", "make_split": "arithmetic",
          "build_tokenizer": "tokenizer", "load_tokenizer": "tokenizer"}
"""Names importable from `fr3e.tasks`, loaded on first use (the tokenizer pulls in transformers: seconds)."""

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f"fr3e.tasks.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'fr3e.tasks' has no attribute {name!r}")
