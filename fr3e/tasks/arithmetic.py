"""The embedded arithmetic world: multi-step problems with worked solutions ending in `\\boxed{answer}`.

Stands in for the paper's benchmarks (§4, Table 1) on the `tiny` profile, where nothing is downloaded:

| split    | stands in for | problem `a*b+c`, c 2-digit  | worked steps                                |
|----------|---------------|-----------------------------|---------------------------------------------|
| `easy`   | GSM8K         | `37*6+45`: 2-digit × 1-digit | the product, then +c                        |
| `medium` | MATH500       | `23*47+38`: 2-digit × 2-digit | two partial products, their sum, then +c   |
| `hard`   | AIME24        | `347*28+56`: 3-digit × 2-digit | two partial products, their sum, then +c  |
| `train`  | DeepScaleR    | a mix of the three (`TRAIN_MIX`) |                                        |

A problem is `prompt = "23*47+38=?\\n"` and
`solution = "23*40=920\\n23*7=161\\n920+161=1081\\n1081+38=1119\\n\\boxed{1119}"`; the model is trained
to emit the solution then EOS. All splits share this format and differ in operand sizes only. Difficulty
is tuned so that the SFT warm start (`fr3e.tasks.warm_start`) leaves room for RL: a fair share of mixed
(some right, some wrong) rollout groups.

Train and evaluation problems never overlap: every problem has a canonical key (operands, commutative
products sorted) and the hash of that key puts it either in the evaluation pool (`EVAL_FRACTION` of the key
space) or in the training pool, whatever the split size or seed. Deviation from the paper: the evaluation
sets are generated, not fixed files; they are fixed by `(split, n, seed)`.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported in make_split: `datasets` takes a second to import, the problems need none of it
    import datasets

SPLITS = ("easy", "medium", "hard")
"""Evaluation splits, easiest first (GSM8K-, MATH500-, AIME-like)."""

default_eval_sizes = {"easy": 128, "medium": 128, "hard": 128}
"""Problems per evaluation split used by notebooks and `fr3e.evaluation.evaluate` (our choice: 128 problems × n=16
samples take ~4 s per split on 2 idle CPU cores; the bootstrap 95% CI of avg@16 is about ±6 points)."""

TRAIN_MIX = {"easy": 0.4, "medium": 0.45, "hard": 0.15}
"""Share of each difficulty in the `train` split (our choice: mostly learnable problems, some hard)."""

EVAL_FRACTION = 0.1
"""Share of each difficulty's problem space reserved for evaluation (by hash of the problem key)."""

DATA_SOURCE_PREFIX = "tiny"

STEP_DELIMITER = "\n"
"""What separates two reasoning steps of a worked solution (one line per step): the `newline` scorer's
boundary in this world (`fr3e.scorer=newline`)."""


@dataclass(frozen=True)
class Problem:
    """One generated problem of a tiny world. `key` identifies it for the train/eval partition (arithmetic: up to
    commutativity; paths: the pair)."""

    prompt: str
    solution: str
    answer: str
    difficulty: str
    key: str


def _product_plus(a: int, b: int, c: int, difficulty: str) -> Problem:
    """a*b+c with b = 10·t + u (t, u ≠ 0): a*(10t), a*u, their sum, then +c."""
    tens, units = 10 * (b // 10), b % 10
    p1, p2, product = a * tens, a * units, a * b
    answer = str(product + c)
    solution = (f"{a}*{tens}={p1}\n{a}*{units}={p2}\n{p1}+{p2}={product}\n{product}+{c}={answer}"
                f"\n\\boxed{{{answer}}}")
    key = f"{difficulty}:{min(a, b)}*{max(a, b)}+{c}"
    return Problem(f"{a}*{b}+{c}=?\n", solution, answer, difficulty, key)


def _easy(rng: random.Random) -> Problem:
    """a*b+c with a 2-digit, b 1-digit (2..9), c 2-digit: the product, then the sum."""
    a, b, c = rng.randint(10, 99), rng.randint(2, 9), rng.randint(10, 99)
    product = a * b
    answer = str(product + c)
    solution = f"{a}*{b}={product}\n{product}+{c}={answer}\n\\boxed{{{answer}}}"
    return Problem(f"{a}*{b}+{c}=?\n", solution, answer, "easy", f"easy:{b}*{a}+{c}")


def _two_digit_factor(rng: random.Random) -> int:
    """A 2-digit number that is not a multiple of 10 (so both partial products are non-trivial)."""
    b = rng.randint(11, 99)
    while b % 10 == 0:
        b = rng.randint(11, 99)
    return b


def _medium(rng: random.Random) -> Problem:
    """a*b+c, a and b 2-digit, c 2-digit."""
    return _product_plus(rng.randint(10, 99), _two_digit_factor(rng), rng.randint(10, 99), "medium")


def _hard(rng: random.Random) -> Problem:
    """a*b+c, a 3-digit, b and c 2-digit."""
    return _product_plus(rng.randint(100, 999), _two_digit_factor(rng), rng.randint(10, 99), "hard")


GENERATORS: dict[str, Callable[[random.Random], Problem]] = {"easy": _easy, "medium": _medium, "hard": _hard}


_MEDIUM_PAIRS = len({(min(a, b), max(a, b)) for a in range(10, 100) for b in range(11, 100) if b % 10})
KEY_SPACE = {"easy": 90 * 8 * 90, "medium": _MEDIUM_PAIRS * 90, "hard": 900 * 81 * 90}
"""Number of distinct problem keys of each difficulty (before the train / eval partition)."""


def max_split_size(split: str) -> int:
    """Largest n that make_split accepts: half the expected pool (draws stay far from the coupon-collector tail)."""
    if split in SPLITS:
        return int(0.5 * EVAL_FRACTION * KEY_SPACE[split])
    return int(0.5 * (1 - EVAL_FRACTION) * sum(KEY_SPACE.values()))


def is_eval_problem(key: str) -> bool:
    """True when the problem with this key belongs to the evaluation pool (a fixed hash partition)."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < EVAL_FRACTION


def _split_rng(split: str, seed: int) -> random.Random:
    # A string seed is hashed deterministically by `random` (sha512), unlike hash(str) across processes.
    return random.Random(f"fr3e.tasks.arithmetic/{split}/{seed}")


def iter_problems(split: str, seed: int = 0) -> Iterator[Problem]:
    """An endless deterministic stream of problems of `split` (repeats possible; eval/train pools respected).

    Used by the SFT warm start, which needs more problems than a `Dataset` comfortably holds.
    """
    _check_split(split)
    rng = _split_rng(split, seed)
    want_eval = split in SPLITS
    difficulties, weights = list(TRAIN_MIX), list(TRAIN_MIX.values())
    while True:
        difficulty = split if want_eval else rng.choices(difficulties, weights)[0]
        problem = GENERATORS[difficulty](rng)
        if is_eval_problem(problem.key) == want_eval:
            yield problem


def make_split(split: str, n: int, seed: int = 0) -> datasets.Dataset:
    """`n` distinct problems of `split` ("easy" | "medium" | "hard" | "train"), deterministic in (split, n, seed).

    Columns: id (unique str), prompt (model input), answer, solution (worked steps ending in \\boxed{}),
    data_source ("tiny/<split>"), difficulty. The first m rows of a split of size n > m equal the split
    of size m (problems are drawn from one stream).
    """
    _check_split(split)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    limit = max_split_size(split)
    if n > limit:
        raise ValueError(f"n={n} is more than the {limit} distinct {split!r} problems make_split draws; ask for fewer "
                         f"(the {split!r} pool is {EVAL_FRACTION if split in SPLITS else 1 - EVAL_FRACTION:.0%} "
                         "of its problem space)")
    rows, seen = [], set()
    stream = iter_problems(split, seed)
    misses = 0
    while len(rows) < n:
        problem = next(stream)
        if problem.key in seen:
            misses += 1
            if misses > 100_000:  # unreachable below the limit; a guard against an endless loop
                raise RuntimeError(f"only {len(rows)} distinct {split!r} problems found for n={n}")
            continue
        misses = 0
        seen.add(problem.key)
        rows.append(
            {
                "id": f"{split}-{seed}-{len(rows)}",
                "prompt": problem.prompt,
                "answer": problem.answer,
                "solution": problem.solution,
                "data_source": f"{DATA_SOURCE_PREFIX}/{split}",
                "difficulty": problem.difficulty,
            }
        )
    import datasets

    features = datasets.Features({c: datasets.Value("string") for c in _COLUMNS})
    return datasets.Dataset.from_dict({c: [r[c] for r in rows] for c in _COLUMNS}, features=features)


_COLUMNS = ("id", "prompt", "answer", "solution", "data_source", "difficulty")


def _check_split(split: str) -> None:
    if split not in (*SPLITS, "train"):
        raise ValueError(f"unknown split {split!r}; choose one of {(*SPLITS, 'train')}")
