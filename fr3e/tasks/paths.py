"""The embedded path-finding world: find a path between two nodes of one fixed directed graph.

A world with genuine choice points and free length, where the arithmetic world has neither: every node
has three successors, most pairs are joined by many paths, and any path that reaches the target within
`MAX_HOPS` moves counts. A problem is

    prompt   = "K>T:"    (start and target; each node is one character, so one token)
    response = "d,R,T"   (the nodes visited after the start, comma-separated, ending at the target)

The model learns the graph only from its warm start (`fr3e.tasks.warm_start`): supervised walks that head
for the target, mixed with walks that wander (see `sft_walk`). So the base policy is spread over the
successors at each move — forks where the next move decides success — and the length of its answer is its
own choice.

| split    | stands in for | pairs (s, t) whose shortest path has |
|----------|---------------|--------------------------------------|
| `easy`   | GSM8K         | 1-2 moves                            |
| `medium` | MATH500       | 3-4 moves                            |
| `hard`   | AIME24        | 5 or more moves                      |
| `train`  | DeepScaleR    | every distance, the pairs not held out |

Train and evaluation problems never overlap: the key of a problem is its pair, and a hash of the key puts
the pair in the evaluation pool (`EVAL_FRACTION`) or the training pool. The graph is fixed by
`GRAPH_SEED`: 48 nodes, out-degree 3, strongly connected (the first draw that is).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import TYPE_CHECKING

from fr3e.tasks.arithmetic import (
    Problem,  # the same record: prompt, solution (one supervised walk), answer, ...
)

if TYPE_CHECKING:
    import datasets

SPLITS = ("easy", "medium", "hard")
"""Evaluation splits, easiest first (GSM8K-, MATH500-, AIME-like)."""

NUM_NODES = 48
OUT_DEGREE = 3
GRAPH_SEED = "fr3e.tasks.paths/graph/v1"
NODE_NAMES = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuv"[:NUM_NODES]
"""One character per node: the character tokenizer gives each node one token."""

MAX_HOPS = 9
"""Longest accepted answer, in moves (the longest shortest path is 7): 9 nodes and 8 commas, 18 tokens with EOS."""

DISTANCES = {"easy": (1, 2), "medium": (3, 4), "hard": (5, MAX_HOPS)}
"""Shortest-path length range (inclusive) of each evaluation split."""

EVAL_FRACTION = 0.2
"""Share of each split's pairs held out for evaluation (by hash of the pair)."""

DATA_SOURCE_PREFIX = "tiny-paths"
STEP_DELIMITER = ","
"""What separates two moves: the `newline` scorer's boundary in this world (the token after it is a move)."""

ANSWER_PREFIX = "path:"
"""The `answer` column of a problem is `path:<start>><target>`: what the verifier needs (the graph is fixed)."""


@dataclass(frozen=True)
class Graph:
    successors: tuple[tuple[int, ...], ...]
    distance: tuple[tuple[int, ...], ...]  # distance[s][t]: fewest moves from s to t

    def name(self, node: int) -> str:
        return NODE_NAMES[node]


@lru_cache(maxsize=1)
def graph() -> Graph:
    """The world's graph: the first strongly connected draw of `OUT_DEGREE` distinct successors per node."""
    for attempt in range(1000):
        rng = random.Random(f"{GRAPH_SEED}/{attempt}")
        succ = tuple(tuple(sorted(rng.sample([j for j in range(NUM_NODES) if j != i], OUT_DEGREE)))
                     for i in range(NUM_NODES))
        dist = [_bfs(succ, s) for s in range(NUM_NODES)]
        if all(len(d) == NUM_NODES for d in dist):
            return Graph(succ, tuple(tuple(d[t] for t in range(NUM_NODES)) for d in dist))
    raise RuntimeError("no strongly connected graph in 1000 draws")  # unreachable for these sizes


def _bfs(succ, s: int) -> dict[int, int]:
    dist, queue = {s: 0}, [s]
    for u in queue:
        for v in succ[u]:
            if v not in dist:
                dist[v] = dist[u] + 1
                queue.append(v)
    return dist


def difficulty_of(s: int, t: int) -> str:
    d = graph().distance[s][t]
    return next(name for name, (lo, hi) in DISTANCES.items() if lo <= d <= hi)


def is_eval_problem(key: str) -> bool:
    """True when the pair with this key belongs to the evaluation pool (a fixed hash partition)."""
    digest = hashlib.sha256(f"paths/{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < EVAL_FRACTION


@cache
def pairs(split: str) -> tuple[tuple[int, int], ...]:
    """Every (start, target) pair of `split`, in a fixed order (evaluation splits: the held-out pairs of that
    difficulty; `train`: every pair not held out)."""
    _check_split(split)
    out = []
    for s in range(NUM_NODES):
        for t in range(NUM_NODES):
            if s == t:
                continue
            held_out = is_eval_problem(_key(s, t))
            if (split == "train" and not held_out) or (split != "train" and held_out and difficulty_of(s, t) == split):
                out.append((s, t))
    return tuple(out)


def _key(s: int, t: int) -> str:
    return f"{NODE_NAMES[s]}>{NODE_NAMES[t]}"


MAX_SLACK = 4
"""A supervised walk may take up to this many moves more than the shortest path (drawn uniformly per walk)."""


def sft_walk(s: int, t: int, rng: random.Random, p_wander: float = 0.3) -> list[int]:
    """One supervised walk from s toward t (the nodes after s).

    Each walk draws a budget of d(s, t) + slack moves, slack uniform in 0..MAX_SLACK. With probability
    1 - p_wander the walk is *feasible*: each move is uniform over the successors that can still reach t
    within the moves left, so it always arrives, by one of many paths of several lengths. With probability
    p_wander each move is uniform over all successors (it may wander off and run out of moves: a failed walk,
    kept in the data as base models keep their mistakes)."""
    g = graph()
    budget = min(MAX_HOPS, g.distance[s][t] + rng.randint(0, MAX_SLACK))
    walk, node = [], s
    wander = rng.random() < p_wander
    for left in range(budget, 0, -1):
        options = g.successors[node] if wander else [v for v in g.successors[node] if g.distance[v][t] <= left - 1]
        node = rng.choice(options)
        walk.append(node)
        if node == t:
            break
    return walk


def make_problem(s: int, t: int, rng: random.Random | None = None, p_wander: float = 0.3) -> Problem:
    rng = rng or random.Random(f"paths/solution/{s}/{t}")
    walk = sft_walk(s, t, rng, p_wander)
    key = _key(s, t)
    return Problem(prompt=f"{key}:", solution=",".join(NODE_NAMES[v] for v in walk), answer=f"{ANSWER_PREFIX}{key}",
                   difficulty=difficulty_of(s, t), key=key)


def _split_rng(split: str, seed: int) -> random.Random:
    return random.Random(f"fr3e.tasks.paths/{split}/{seed}")


def iter_problems(split: str, seed: int = 0, p_wander: float = 0.3) -> Iterator[Problem]:
    """An endless deterministic stream of problems of `split` (pairs drawn uniformly, with repeats), each with
    a fresh supervised walk; the warm start's data."""
    pool = pairs(split)
    rng = _split_rng(split, seed)
    while True:
        s, t = rng.choice(pool)
        yield make_problem(s, t, rng, p_wander)


def max_split_size(split: str) -> int:
    return len(pairs(split))


def make_split(split: str, n: int, seed: int = 0) -> datasets.Dataset:
    """`n` distinct pairs of `split`, deterministic in (split, n, seed); the same columns as the arithmetic world
    (`solution` is one supervised walk; `answer` is `path:<s>><t>`)."""
    _check_split(split)
    pool = list(pairs(split))
    if not 0 <= n <= len(pool):
        raise ValueError(f"n={n}: the {split!r} split of the path world has {len(pool)} pairs; ask for 0 to {len(pool)}")
    _split_rng(split, seed).shuffle(pool)
    rows = []
    for i, (s, t) in enumerate(pool[:n]):
        p = make_problem(s, t)
        rows.append({"id": f"paths-{split}-{seed}-{i}", "prompt": p.prompt, "answer": p.answer, "solution": p.solution,
                     "data_source": f"{DATA_SOURCE_PREFIX}/{split}", "difficulty": p.difficulty})
    import datasets

    columns = ("id", "prompt", "answer", "solution", "data_source", "difficulty")
    features = datasets.Features({c: datasets.Value("string") for c in columns})
    return datasets.Dataset.from_dict({c: [r[c] for r in rows] for c in columns}, features=features)


def parse_answer(answer: str) -> tuple[int, int]:
    """(start, target) of an `answer` cell `path:<s>><t>`; ValueError naming the cell otherwise."""
    body = answer[len(ANSWER_PREFIX):] if answer.startswith(ANSWER_PREFIX) else None
    if body is None or len(body) != 3 or body[1] != ">" or body[0] not in NODE_NAMES or body[2] not in NODE_NAMES:
        raise ValueError(f"{answer!r} is not a path-world answer (expected {ANSWER_PREFIX}<start>><target>)")
    return NODE_NAMES.index(body[0]), NODE_NAMES.index(body[2])


def parse_path(text: str) -> list[int] | None:
    """The nodes of a response `a,b,c` (surrounding whitespace ignored); None when it is not that shape."""
    parts = text.strip().split(",")
    if not parts or any(len(p) != 1 or p not in NODE_NAMES for p in parts):
        return None
    return [NODE_NAMES.index(p) for p in parts]


def is_valid_path(nodes: list[int] | None, s: int, t: int) -> bool:
    """Every move follows an edge, the path ends at t and reaches it only there, within MAX_HOPS moves."""
    if not nodes or len(nodes) > MAX_HOPS or nodes[-1] != t or t in nodes[:-1]:
        return False
    succ = graph().successors
    return all(b in succ[a] for a, b in zip([s, *nodes[:-1]], nodes))


def reward(text: str, answer: str) -> float:
    """1.0 when `text` is a valid path for the pair in `answer`, else 0.0."""
    s, t = parse_answer(answer)
    return float(is_valid_path(parse_path(text), s, t))


def _check_split(split: str) -> None:
    if split not in (*SPLITS, "train"):
        raise ValueError(f"unknown split {split!r}; choose one of {(*SPLITS, 'train')}")


default_eval_sizes = {name: min(128, len(pairs(name))) for name in SPLITS}
"""Problems per evaluation split: every held-out pair, at most 128."""
