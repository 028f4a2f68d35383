"""The embedded CPU-sized world of the `tiny` profile: arithmetic task, character tokenizer, tiny model, SFT.

`arithmetic` generates problems (easy / medium / hard evaluation splits, a disjoint train split),
`tokenizer` is a character-level tokenizer, `model` builds a ~0.4M-parameter Qwen3-family decoder and
`warm_start` fine-tunes it into the `general` and `math` base models (cached).
"""

from fr3e.tasks.arithmetic import SPLITS, default_eval_sizes, make_split
from fr3e.tasks.tokenizer import build_tokenizer, load_tokenizer

__all__ = ["SPLITS", "build_tokenizer", "default_eval_sizes", "load_tokenizer", "make_split"]
