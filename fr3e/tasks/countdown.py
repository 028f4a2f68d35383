"""A candidate tiny world, Countdown-3 by try-and-check: reach a target from three numbers with two operations,
trying combinations until one works.

    prompt   = "4 7 9>19:"                      (three numbers from 2 to 9, ascending; the target)
    response = "9+7=16,16+4=20x;7*4=28,28-9=19="  (attempts separated by ';': a failed one ends with 'x', the
                                                   one that reaches the target with '=')

An attempt combines two of the numbers, then the result with the third, each operation `+`, `-` or `*` with
the larger operand first (so no result is negative): 27 attempts per problem (9 or 18 when numbers repeat), of
which one or more reach the problem's target. Only the last attempt is checked: it must use the three numbers, compute
correctly, reach the target and end with '='; the failed attempts before it are scratch work.

The base models learn from randomised depth-first search (`sft_trace`): the attempts in a random order, cut
after 1-4 of them, so a trace stops at the first attempt that works or gives up (about 83% give up).
The first token of every attempt is a fork (which pair to combine, which operation), the length of a response
is the number of attempts, and RL can learn both to choose better attempts and to keep trying.

| split    | stands in for | (numbers, target) problems with |
|----------|---------------|---------------------------------|
| `easy`   | GSM8K         | 3 or more attempts that work    |
| `medium` | MATH500       | 2 attempts that work            |
| `hard`   | AIME24        | exactly 1 attempt that works    |
| `train`  | DeepScaleR    | every problem not held out      |

A hash of the key (`4 7 9>19`) holds `EVAL_FRACTION` of the problems out for evaluation; the same three numbers
appear in training with other targets, so a held-out problem's attempts can occur in training traces as failed
ones (hash the numbers instead for a stricter split). Measured as a candidate in reproduce/worlds/README.md; its
base models are not shipped (they train on first use).
"""

from __future__ import annotations

import hashlib
import itertools
import random
import re
from collections.abc import Iterator
from functools import cache
from typing import TYPE_CHECKING

from fr3e.tasks.arithmetic import Problem

if TYPE_CHECKING:
    import datasets

SPLITS = ("easy", "medium", "hard")
NUMBERS = range(2, 10)
"""Each of the three numbers (with repeats)."""
TARGETS = range(1, 100)
"""Targets: results of an attempt from 1 to 99 (two digits at most)."""
OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
MAX_ATTEMPTS = 4
"""A supervised trace stops after at most this many attempts (drawn uniformly from 1 to 4 per trace)."""
EVAL_FRACTION = 0.3
"""Share of the problems held out for evaluation (by hash of the key): few problems have several solutions."""
DATA_SOURCE_PREFIX = "tiny-countdown"
STEP_DELIMITER = ";"
"""What separates two attempts: the token after it chooses the next attempt."""
ANSWER_PREFIX = "countdown:"
"""The `answer` column of a problem is `countdown:<numbers>><target>`, e.g. `countdown:4 7 9>19`."""


def _step(a: int, b: int, op: str) -> str:
    hi, lo = max(a, b), min(a, b)
    return f"{hi}{op}{lo}={OPS[op](hi, lo)}"


def attempts(numbers: tuple[int, int, int]) -> tuple[tuple[str, int], ...]:
    """Every distinct attempt on `numbers` as (text without its mark, result), in a fixed order."""
    out: dict[str, int] = {}
    for i, j in itertools.combinations(range(3), 2):
        (a, b), d = (numbers[i], numbers[j]), numbers[3 - i - j]
        for op1, op2 in itertools.product(OPS, repeat=2):
            c = OPS[op1](max(a, b), min(a, b))
            e = OPS[op2](max(c, d), min(c, d))
            out.setdefault(f"{_step(a, b, op1)},{_step(c, d, op2)}", e)
    return tuple(out.items())


@cache
def problems() -> dict[str, tuple[str, ...]]:
    """Split name -> the keys of its problems (`"4 7 9>19"`), fixed order; `train` holds every key not held out."""
    out: dict[str, list[str]] = {s: [] for s in (*SPLITS, "train")}
    for numbers in itertools.combinations_with_replacement(NUMBERS, 3):
        results = [e for _, e in attempts(numbers)]
        for target in sorted(set(results)):
            if target not in TARGETS:
                continue
            key = f"{' '.join(map(str, numbers))}>{target}"
            if not is_eval_problem(key):
                out["train"].append(key)
                continue
            hits = results.count(target)
            out["easy" if hits >= 3 else "medium" if hits == 2 else "hard"].append(key)
    return {k: tuple(v) for k, v in out.items()}


def is_eval_problem(key: str) -> bool:
    digest = hashlib.sha256(f"countdown/{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < EVAL_FRACTION


def parse_key(key: str) -> tuple[tuple[int, int, int], int]:
    numbers, target = key.split(">")
    a, b, c = (int(x) for x in numbers.split())
    return (a, b, c), int(target)


def sft_trace(numbers: tuple[int, int, int], target: int, rng: random.Random) -> str:
    """Randomised depth-first search: attempts in a random order, cut after 1-MAX_ATTEMPTS of them; stops at the
    first that reaches `target` (marked '='), else gives up after the last (marked 'x')."""
    order = list(attempts(numbers))
    rng.shuffle(order)
    done = []
    for text, result in order[: rng.randint(1, MAX_ATTEMPTS)]:
        if result == target:
            return ";".join([*done, text + "="])
        done.append(text + "x")
    return ";".join(done)


def make_problem(key: str, rng: random.Random | None = None, difficulty: str = "train") -> Problem:
    numbers, target = parse_key(key)
    rng = rng or random.Random(f"countdown/solution/{key}")
    return Problem(prompt=f"{key}:", solution=sft_trace(numbers, target, rng), answer=f"{ANSWER_PREFIX}{key}",
                   difficulty=difficulty, key=key)


def iter_problems(split: str, seed: int = 0) -> Iterator[Problem]:
    """An endless deterministic stream of problems of `split` (drawn uniformly, with repeats), each with a fresh
    search trace; the warm start's data."""
    pool = problems()[_check_split(split)]
    rng = random.Random(f"fr3e.tasks.countdown/{split}/{seed}")
    while True:
        yield make_problem(rng.choice(pool), rng, split)


def max_split_size(split: str) -> int:
    return len(problems()[_check_split(split)])


def make_split(split: str, n: int, seed: int = 0) -> datasets.Dataset:
    """`n` distinct problems of `split`, deterministic in (split, n, seed); the columns of the other worlds."""
    pool = list(problems()[_check_split(split)])
    if not 0 <= n <= len(pool):
        raise ValueError(f"n={n}: the {split!r} split of the Countdown world has {len(pool)} problems; ask for 0 to "
                         f"{len(pool)}")
    random.Random(f"fr3e.tasks.countdown/{split}/{seed}").shuffle(pool)
    rows = []
    for i, key in enumerate(pool[:n]):
        p = make_problem(key, difficulty=split)
        rows.append({"id": f"countdown-{split}-{seed}-{i}", "prompt": p.prompt, "answer": p.answer,
                     "solution": p.solution, "data_source": f"{DATA_SOURCE_PREFIX}/{split}", "difficulty": split})
    import datasets

    columns = ("id", "prompt", "answer", "solution", "data_source", "difficulty")
    features = datasets.Features({c: datasets.Value("string") for c in columns})
    return datasets.Dataset.from_dict({c: [r[c] for r in rows] for c in columns}, features=features)


def final_attempt(text: str) -> str | None:
    """The last attempt of a response if it claims success (ends with '='), without that mark; else None."""
    last = text.strip().split(";")[-1]
    return last[:-1] if last.endswith("=") else None


def solution_key(text: str) -> str:
    """What makes two correct responses different solutions: their successful attempt (the failed attempts
    before it are search, not solution)."""
    return final_attempt(text) or text.strip()


STEP = re.compile(r"(\d+)([-+*])(\d+)=(-?\d+)", re.ASCII)
"""One step of an attempt: two operands, an operation, a result (negative only in a wrong attempt)."""


def _parse_step(step: str) -> tuple[int, str, int, int] | None:
    """(a, op, b, result) of `a op b=result`; None for anything else (a malformed step scores 0, never raises)."""
    m = STEP.fullmatch(step)
    return (int(m[1]), m[2], int(m[3]), int(m[4])) if m else None


def is_solution(attempt: str, numbers: tuple[int, int, int], target: int) -> bool:
    """`a o b=c,c o d=e` (either operand order in each step) that computes correctly, uses each of `numbers`
    once, carries c into the second step and ends at `target`."""
    parts = attempt.split(",")
    if len(parts) != 2:
        return False
    first, second = _parse_step(parts[0]), _parse_step(parts[1])
    if first is None or second is None:
        return False
    a, op1, b, c = first
    x, op2, y, e = second
    if OPS[op1](a, b) != c or OPS[op2](x, y) != e or e != target:
        return False
    if x == c:
        d = y
    elif y == c:
        d = x
    else:
        return False
    return sorted((a, b, d)) == sorted(numbers)


def reward(text: str, answer: str) -> float:
    """1.0 when the response's last attempt is a correct solution of the problem in `answer`, else 0.0."""
    if not answer.startswith(ANSWER_PREFIX):
        raise ValueError(f"{answer!r} is not a Countdown answer (expected {ANSWER_PREFIX}<numbers>><target>)")
    numbers, target = parse_key(answer[len(ANSWER_PREFIX):])
    attempt = final_attempt(text)
    return float(attempt is not None and is_solution(attempt, numbers, target))


def _check_split(split: str) -> str:
    if split not in (*SPLITS, "train"):
        raise ValueError(f"unknown split {split!r}; choose one of {(*SPLITS, 'train')}")
    return split


default_eval_sizes = {name: min(128, len(problems()[name])) for name in SPLITS}
"""Problems per evaluation split: at most 128 held-out problems."""
