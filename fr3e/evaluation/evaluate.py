"""Evaluation harness: avg@n, unbiased pass@k and greedy accuracy per benchmark, with bootstrap CIs.

Paper §4 / official eval script: 16 samples per problem at T=1.0, top_p=0.95; report the mean accuracy
over the samples (avg@16) and pass@16. We add the unbiased pass@k estimator of Chen et al. (2021) for
every power of two k ≤ n, greedy (T=0) accuracy, and a 95% percentile-bootstrap confidence interval over
problems (fixed seed) for each number. Generation goes through the `fr3e.engines.base.Engine` interface,
so the vLLM engine can replace the HF one (paper profile).

Deviations: on the `tiny` profile the benchmarks are the generated splits `easy` / `medium` / `hard` of
`fr3e.tasks.arithmetic` (stand-ins for GSM8K / MATH500 / AIME24), with a fixed problem set (`data_seed`).
"""

from __future__ import annotations

import difflib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fr3e.tasks import arithmetic
from fr3e.tasks.worlds import get_world, reward
from fr3e.utils.io import atomic_write_json
from fr3e.utils.seeds import derive_seed

logger = logging.getLogger(__name__)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k) (Chen et al. 2021)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:  # every k-subset contains a correct sample
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, num_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap CI of the mean of `values` (one value per problem), resampling problems.

    values: (N,) floats. Returns (low, high); (nan, nan) when N == 0. Deterministic in `seed`.
    """
    x = np.asarray(values, dtype=np.float64)  # (N,)
    if x.size == 0:
        return (math.nan, math.nan)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(num_resamples, x.size))  # (R, N)
    means = x[idx].mean(axis=1)  # (R,)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return (float(low), float(high))


def ks_for(n: int) -> list[int]:
    """The k of pass@k we report: powers of two up to n, plus n itself."""
    ks = [2**i for i in range(int(math.log2(n)) + 1)] if n >= 1 else []
    return ks + ([n] if n not in ks else [])


def score_benchmark(correct: np.ndarray, greedy: np.ndarray | None, seed: int = 0) -> dict:
    """Metrics of one benchmark. correct: (N, n) 0/1 per problem and sample; greedy: (N,) 0/1 or None."""
    num_problems, n = correct.shape
    counts = correct.sum(axis=1)  # (N,)
    result: dict = {"num_problems": int(num_problems), "n": int(n), "ci": {}}
    per_problem = {f"avg@{n}": counts / n}
    for k in ks_for(n):
        per_problem[f"pass@{k}"] = np.array([pass_at_k(n, int(c), k) for c in counts])
    if greedy is not None:
        per_problem["greedy"] = greedy.astype(np.float64)
    for name, values in per_problem.items():
        result[name] = float(values.mean()) if num_problems else math.nan
        result["ci"][name] = list(bootstrap_ci(values, seed=seed))
    # Share of problems whose n samples are all right / all wrong / mixed (paper Figs. 7-8 vocabulary).
    result["all_right"] = float((counts == n).mean()) if num_problems else math.nan
    result["all_wrong"] = float((counts == 0).mean()) if num_problems else math.nan
    # The data behind every number above, so a paired per-problem comparison can be recomputed from the logs.
    result["per_problem_correct"] = [int(c) for c in counts]
    if greedy is not None:
        result["per_problem_greedy"] = [int(g) for g in greedy]
    return result


def load_any_tokenizer(path: str | Path):
    """The tokenizer of a model directory or hub id: the tiny world's character tokenizer where the directory
    holds one (`load_tokenizer` avoids a transformers trap: AutoTokenizer on a qwen2 config ignores a custom tokenizer.json), else `AutoTokenizer`."""
    from fr3e.tasks.tokenizer import is_tiny_tokenizer, load_tokenizer

    if Path(path).is_dir() and is_tiny_tokenizer(path):
        return load_tokenizer(path)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _load(model_dir_or_model, tokenizer, need_model: bool):
    """(model or None, tokenizer, name). With an engine given, a model directory only supplies the tokenizer.

    A string that is not a directory is taken as a hub id (paper profile: `Qwen/Qwen2.5-7B`), loaded the way
    `transformers` resolves it (hub cache, `HF_HUB_OFFLINE`)."""
    if isinstance(model_dir_or_model, str | Path):
        from transformers import AutoModelForCausalLM

        path = Path(model_dir_or_model)
        if path.exists() and not (path / "config.json").exists():
            raise FileNotFoundError(f"{path} is not a model directory (no config.json); pass a directory written "
                                    "by fr3e.cli.train (runs/<name>/model) or save_pretrained, or a hub id")
        source = str(path) if path.exists() else str(model_dir_or_model)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval() if need_model else None
        return model, tokenizer or load_any_tokenizer(source), source
    if tokenizer is None:
        raise ValueError("evaluate(model, ...) with a model object needs tokenizer=...")
    return model_dir_or_model, tokenizer, type(model_dir_or_model).__name__


def _datasets(benchmarks, num_problems, data_seed, local_files: Mapping | None = None,
              tiny_world: str = "arithmetic") -> dict:
    """name -> Dataset (prompt, answer). Names: tiny splits of `tiny_world` (generated) or paper benchmarks."""
    from fr3e.data import paper as paper_data

    if isinstance(benchmarks, str):
        benchmarks = [b for b in benchmarks.split(",") if b]
    if isinstance(benchmarks, Mapping):
        return dict(benchmarks)
    out = {}
    for name in benchmarks:
        if name in paper_data.BENCHMARKS:
            local = (local_files or {}).get(name)
            out[name] = paper_data.load_benchmark(name, local=local, limit=num_problems or 0)
            continue
        task = get_world(tiny_world)
        if name not in task.SPLITS:
            raise ValueError(f"unknown benchmark {name!r}; the tiny profile has {task.SPLITS}, the paper "
                             f"profile {paper_data.BENCHMARKS} (or pass a mapping name -> datasets.Dataset with "
                             "prompt/answer columns)")
        size = task.default_eval_sizes[name] if num_problems is None else min(num_problems, task.max_split_size(name))
        out[name] = task.make_split(name, size, seed=data_seed)
    return out


def _concat(values: list) -> list:
    return list(values)


def evaluate(
    model_dir_or_model,
    benchmarks: Sequence[str] | Mapping = arithmetic.SPLITS,
    n: int = 16,
    temperature: float = 1.0,
    top_p: float = 0.95,
    max_new_tokens: int = 128,
    num_problems: int | None = None,
    seed: int = 0,
    engine=None,
    out: str | Path | None = None,
    tokenizer=None,
    greedy: bool = True,
    data_seed: int = 0,
    progress: bool = True,
    local_files: Mapping | None = None,
    rank: int = 0,
    world: int = 1,
    gather: Callable[[list], list] | None = None,
    tiny_world: str = "arithmetic",
) -> dict:
    """Evaluate a model on each benchmark: avg@n, pass@k (k = 1, 2, 4, .., n), greedy accuracy, 95% CIs.

    model_dir_or_model: a model directory or hub id (tokenizer beside it) or a model object (then pass tokenizer).
    benchmarks: tiny split names, paper benchmark names (`fr3e.data.paper.BENCHMARKS`, read from `local_files`
    name -> path where given), or a mapping name -> Dataset with `prompt`, `answer` columns.
    num_problems: problems per benchmark (default: tiny `arithmetic.default_eval_sizes`, paper all). seed:
    sampling seed. engine: any `fr3e.engines.base.Engine` (default: an HFEngine over the model). out: JSON
    path (atomic). Prompts go through `fr3e.data.paper.encode_prompt`, the builder training uses (chat template
    where the tokenizer has one).
    Sharding (several processes): process `rank` of `world` samples problems rank, rank + world, ...; `gather`
    concatenates a list over processes (e.g. `accelerate.utils.gather_object`) and every process returns the
    same report. Each process makes the same engine calls (two per benchmark), whatever its share.
    tiny_world: which embedded world the tiny split names mean (`fr3e.tasks.worlds`); answers of every world
    are scored by `fr3e.tasks.worlds.reward`.
    Returns {"benchmarks": {name: metrics}, "average": {...}, "config": {...}, "seconds", "engine"}.
    """
    from fr3e.data.paper import encode_prompt
    from fr3e.engines.hf import HFEngine

    start = time.perf_counter()
    gather = gather or _concat
    model, tokenizer, model_name = _load(model_dir_or_model, tokenizer, need_model=engine is None)
    engine = engine or HFEngine(model, tokenizer, batch_size=256)
    data = _datasets(benchmarks, num_problems, data_seed, local_files, tiny_world)
    results = {}
    for b, (name, ds) in enumerate(tqdm(data.items(), desc="evaluate", disable=not progress)):
        all_prompts, all_answers = list(ds["prompt"]), [str(a) for a in ds["answer"]]
        mine = list(range(rank, len(ds), world))  # this process's problems
        prompts = [encode_prompt(tokenizer, all_prompts[i]) for i in mine]
        answers = [all_answers[i] for i in mine]
        call_seed = seed + 1000 * b if world == 1 else derive_seed(seed, b, rank)
        samples = engine.generate(prompts, n=n, max_new_tokens=max_new_tokens, temperature=temperature,
                                  top_p=top_p, seed=call_seed)
        texts = [[tokenizer.decode(c.token_ids, skip_special_tokens=True) for c in row] for row in samples]
        g_rows = engine.generate(prompts, n=1, max_new_tokens=max_new_tokens, temperature=0.0) if greedy else None
        records = []  # one per problem: (index, n rewards, greedy reward, lengths, finish reasons, first text)
        for j, (i, row, ans) in enumerate(zip(mine, samples, answers)):
            g = (reward(tokenizer.decode(g_rows[j][0].token_ids, skip_special_tokens=True), ans)
                 if g_rows is not None else None)
            records.append((i, [reward(t, ans) for t in texts[j]], g, [len(c.token_ids) for c in row],
                            [c.finish_reason for c in row], texts[j][0]))
        records = sorted(gather(records), key=lambda r: r[0])  # every problem, in dataset order
        correct = np.array([r[1] for r in records], dtype=np.float64).reshape(len(records), n)
        greedy_correct = np.array([r[2] for r in records], dtype=np.float64) if greedy else None
        metrics = score_benchmark(correct, greedy_correct, seed=seed)
        lengths = [x for r in records for x in r[3]]
        metrics["mean_response_tokens"] = float(np.mean(lengths)) if lengths else math.nan
        metrics["truncated_rate"] = (
            float(np.mean([f == "length" for r in records for f in r[4]])) if lengths else math.nan
        )
        metrics["examples"] = [
            {"prompt": all_prompts[r[0]], "answer": all_answers[r[0]], "response": r[5], "reward": float(r[1][0])}
            for r in records[:3]
        ]
        results[name] = metrics
        logger.info("%s: avg@%d %.3f greedy %s", name, n, metrics[f"avg@{n}"], metrics.get("greedy"))
    keys = [k for k in next(iter(results.values()), {}) if k.startswith(("avg@", "pass@", "greedy"))]
    report = {
        "model": model_name,
        "benchmarks": results,
        "average": {k: float(np.mean([r[k] for r in results.values()])) for k in keys},
        "config": {"n": n, "temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens,
                   "num_problems": {k: len(v) for k, v in data.items()}, "seed": seed, "data_seed": data_seed,
                   "processes": world},
        "seconds": round(time.perf_counter() - start, 2),
        "engine": engine.counters.as_dict(),
    }
    if out is not None and rank == 0:
        atomic_write_json(out, report)
    return report


def eval_rows(report: dict, step: int = 0) -> list[dict]:
    """eval.jsonl rows (one per benchmark) from an `evaluate` report: the trainer's and the base rows' shape."""
    n = int(report["config"]["n"])
    return [{"step": step, "benchmark": name, "n": n, "avg": m[f"avg@{n}"], "avg_ci": list(m["ci"][f"avg@{n}"]),
             "pass": {k.split("@")[1]: v for k, v in m.items() if k.startswith("pass@")},
             "greedy": m.get("greedy"), "num_problems": int(m["num_problems"]),
             "all_right": m.get("all_right"), "all_wrong": m.get("all_wrong"),
             "mean_response_tokens": m.get("mean_response_tokens"),
             "per_problem_correct": m.get("per_problem_correct"), "per_problem_greedy": m.get("per_problem_greedy")}
            for name, m in report["benchmarks"].items()]


def format_table(report: dict) -> str:
    """A small text table: one row per benchmark (and the average), mean with its 95% CI."""
    n = report["config"]["n"]
    cols = [f"avg@{n}", "pass@1", f"pass@{n}", "greedy"]
    lines = [f"{'benchmark':<10} " + " ".join(f"{c:>20}" for c in cols)]
    for name, m in report["benchmarks"].items():
        cells = []
        for c in cols:
            if c in m:
                lo, hi = m["ci"][c]
                cells.append(f"{100 * m[c]:5.1f} [{100 * lo:5.1f},{100 * hi:5.1f}]")
            else:
                cells.append("-")
        lines.append(f"{name:<10} " + " ".join(f"{x:>20}" for x in cells))
    avg = report["average"]
    lines.append(f"{'average':<10} " + " ".join(f"{100 * avg[c]:>20.1f}" if c in avg else f"{'-':>20}" for c in cols))
    return "\n".join(lines)


def check_benchmarks(names: str) -> list[str]:
    """The comma-separated benchmark names of the command line, each a tiny split or a paper benchmark."""
    from fr3e.data import paper as paper_data
    from fr3e.utils.errors import UserError

    known = list(arithmetic.SPLITS) + list(paper_data.BENCHMARKS)
    out = [b.strip() for b in names.split(",") if b.strip()]
    if not out:
        raise UserError(f"--benchmarks is empty; pass comma-separated names from {', '.join(known)}.")
    for name in out:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UserError(f"unknown benchmark {name!r}.{hint} The tiny profile has {', '.join(arithmetic.SPLITS)}; "
                            f"the paper profile {', '.join(paper_data.BENCHMARKS)}.")
    return out
