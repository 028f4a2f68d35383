"""Reading run directories into pandas: `load_metrics`, `load_evals`, `load_final_evals`, `load_samples` read
`metrics.jsonl`, `eval.jsonl` and `samples.jsonl`, tagged with `method`, `arm`, `model`, `seed` and `run` from
`config.json` (`load_metrics` also with `group_size`, the size of a prompt-level rollout group);
`final_eval` evaluates a finished run's model on more problems (cached beside it); `base_evals` evaluates
the warm-started base models (Table 1's "base" rows), cached on disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pandas as pd

from fr3e.study.runs import (
    DEFAULT_CACHE,
    RunInfo,
    _eval_overrides,
    _recipe_for,
    arm_of,
    final_eval_path,
    profile_dir,
    run_dirs,
    safe_name,
)
from fr3e.utils.io import atomic_write_json, read_json, read_jsonl

logger = logging.getLogger(__name__)

# Evaluation-row fields that hold one entry per problem (`fr3e.evaluation.evaluate.score_benchmark`): kept out of
# the flat frames, read by `load_problem_counts`.
PER_PROBLEM = ("per_problem_correct", "per_problem_greedy")


def run_meta(run_dir: str | Path) -> dict:
    """method, arm, model (last path component of model.base), seed, steps, profile, name and group_size of a run.

    arm: `arm_of` the run's name: the method, or the control arm that trained it ("grpo_pp_coin").

    group_size: rollouts in one prompt-level group, the group whose All-Right / All-Wrong shares the trainer
    logs as `prompts_*`: FR3E's S_0 group holds `fr3e.continuations_per_state`, GRPO++'s group
    `grpo.rollouts_per_prompt` (None when the config does not say).
    """
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.json); train it with "
                                "fr3e.study.runs.ensure_runs or python -m fr3e.cli.train")
    config = read_json(path)
    size_key = ("fr3e", "continuations_per_state") if config["method"] == "fr3e" else ("grpo", "rollouts_per_prompt")
    group_size = config.get(size_key[0], {}).get(size_key[1])
    return {"method": config["method"], "arm": arm_of(config.get("name") or run_dir.name, config["method"]),
            "model": safe_name(config.get("model", {}).get("base", "?")),
            "seed": int(config["seed"]), "steps": int(config["steps"]),
            "profile": config.get("profile", "tiny"), "run": run_dir.name,
            "group_size": int(group_size) if group_size is not None else None}


def load_metrics(runs: Iterable[RunInfo | str | Path]) -> pd.DataFrame:
    """All metrics.jsonl rows of the runs, with columns method, arm, model, seed, run, group_size added."""
    frames = []
    for d in run_dirs(runs):
        meta = run_meta(d)
        rows = read_jsonl(d / "metrics.jsonl")
        if not rows:
            raise ValueError(f"{d}/metrics.jsonl is empty or missing: the run has not trained a step yet")
        df = pd.DataFrame(rows)
        for key in ("method", "arm", "model", "seed", "run", "group_size"):
            df[key] = meta[key]
        frames.append(df)
    if not frames:
        raise ValueError("no runs given")
    return pd.concat(frames, ignore_index=True)


def _flatten_eval(row: dict) -> dict:
    out = {k: v for k, v in row.items() if k not in ("pass", "avg_ci") and k not in PER_PROBLEM}
    lo, hi = row.get("avg_ci", (math.nan, math.nan))
    out["avg_lo"], out["avg_hi"] = lo, hi
    for k, v in (row.get("pass") or {}).items():
        out[f"pass@{k}"] = v
    return out


def load_evals(runs: Iterable[RunInfo | str | Path]) -> pd.DataFrame:
    """All eval.jsonl rows, flattened (avg_lo, avg_hi, pass@k columns), with method, arm, model, seed, run."""
    def rows_of(d: Path) -> list[dict]:
        rows = read_jsonl(d / "eval.jsonl")
        if not rows:
            raise ValueError(f"{d}/eval.jsonl is empty or missing: the run has not been evaluated yet")
        return rows

    return _eval_frame(runs, rows_of)


def _eval_frame(runs: Iterable[RunInfo | str | Path], rows_of: Callable[[Path], list[dict]]) -> pd.DataFrame:
    """The evaluation rows `rows_of(run_dir)` of every run, flattened, with method, arm, model, seed, run."""
    frames = []
    for d in run_dirs(runs):
        meta = run_meta(d)
        df = pd.DataFrame([_flatten_eval(r) for r in rows_of(d)])
        for key in ("method", "arm", "model", "seed", "run"):
            df[key] = meta[key]
        frames.append(df)
    if not frames:
        raise ValueError("no runs given")
    return pd.concat(frames, ignore_index=True)


def load_final_evals(runs: Iterable[RunInfo | str | Path]) -> pd.DataFrame:
    """The final evaluation of every run (the rows with the run's largest step), one row per benchmark."""
    df = load_evals(runs)
    last = df.groupby("run")["step"].transform("max")
    return df[df["step"] == last].reset_index(drop=True)


def load_problem_counts(runs: Iterable[RunInfo | str | Path], problems: int | None = None) -> pd.DataFrame:
    """One row per run, benchmark and problem of each run's final evaluation: `correct` (of `n` samples) and
    `greedy` (0/1, NaN when not measured), with method, arm, model, seed, run. `problems`: read the
    `final_eval` on that many problems per split; None: the last eval.jsonl rows. Problems are in the evaluation
    set's fixed order, so `problem` pairs them across runs. Runs logged before per-problem counts were recorded
    raise an error naming the run."""
    rows = []
    for d in run_dirs(runs):
        meta = {k: v for k, v in run_meta(d).items() if k in ("method", "arm", "model", "seed", "run")}
        if problems:
            path = final_eval_path(d, problems)
            final = read_json(path, f"delete {path.name} to evaluate the final model again")["rows"]
        else:
            evals = read_jsonl(d / "eval.jsonl")
            if not evals:
                raise ValueError(f"{d}/eval.jsonl is empty or missing: the run has not been evaluated yet")
            last = max(e["step"] for e in evals)
            final = [r for r in evals if r["step"] == last]
        for row in final:
            counts = row.get("per_problem_correct")
            if counts is None:
                raise ValueError(f"run {d.name}: its evaluation rows carry no per-problem counts (logged before "
                                 "they were recorded); evaluate it again to get them")
            greedy = row.get("per_problem_greedy") or [math.nan] * len(counts)
            rows += [{**meta, "benchmark": row["benchmark"], "problem": i, "correct": int(c), "n": int(row["n"]),
                      "greedy": g} for i, (c, g) in enumerate(zip(counts, greedy))]
    return pd.DataFrame(rows)


def load_probe(runs: Iterable[RunInfo | str | Path]) -> pd.DataFrame:
    """probe.jsonl rows of every run (the entropy of each policy on one fixed probe set, `probe_every`), tagged
    with method, arm, model, seed, run; empty (with those columns) when no run probed."""
    frames = []
    for d in run_dirs(runs):
        meta = run_meta(d)
        df = pd.DataFrame(read_jsonl(d / "probe.jsonl"))
        if len(df):
            frames.append(df.assign(**{k: meta[k] for k in ("method", "arm", "model", "seed", "run")}))
    if not frames:
        return pd.DataFrame(columns=["step", "entropy", "method", "arm", "model", "seed", "run"])
    return pd.concat(frames, ignore_index=True)


def load_samples(run: RunInfo | str | Path, step: int | None = None) -> list[dict]:
    """samples.jsonl rows of one run; `step` = only that step (-1 = the last logged step)."""
    d = run_dirs([run])[0]
    rows = read_jsonl(d / "samples.jsonl")
    if step is None:
        return rows
    if step == -1 and rows:
        step = max(r["step"] for r in rows)
    return [r for r in rows if r["step"] == step]


def final_eval(run_dir: str | Path, problems: int, cache_dir: str | Path = DEFAULT_CACHE,
               evaluator: Callable[..., dict] | None = None) -> Path:
    """Evaluate a finished run's final model (`<run_dir>/model`) on `problems` problems per split, with every
    other setting of the run's own final evaluation (benchmarks, n, temperature, top-p, response budget,
    sampling seed), and write the rows to `final_eval_path` (atomic). For studies whose runs evaluate fewer
    problems during training (cheap curve points) and need a precise final number. Returns the path."""
    from fr3e.training.config import TrainConfig, from_dict
    from fr3e.utils.seeds import derive_seed

    run_dir = Path(run_dir)
    if not (run_dir / "DONE").exists():
        raise FileNotFoundError(f"{run_dir} has not finished training (no DONE file); train it first "
                                "(fr3e.study.runs.ensure_runs or python -m fr3e.cli.train)")
    config = from_dict(TrainConfig, read_json(run_dir / "config.json"))
    d = config.data
    if evaluator is None:
        from fr3e.evaluation.evaluate import evaluate as evaluator
    start = time.perf_counter()
    world = {"tiny_world": d.world} if config.profile == "tiny" else {}
    report = evaluator(run_dir / "model", benchmarks=list(d.eval_benchmarks), n=d.eval_n,
                       temperature=d.eval_temperature, top_p=d.eval_top_p, max_new_tokens=d.max_response_tokens,
                       num_problems=problems, seed=derive_seed(config.seed, "eval"),
                       local_files=d.local_files or None, progress=False, **world)
    path = final_eval_path(run_dir, problems)
    atomic_write_json(path, {"problems": problems, "n": d.eval_n, "seconds": round(time.perf_counter() - start, 2),
                             "rows": eval_rows(report, step=config.steps)})
    return path


def load_final_eval(runs: Iterable[RunInfo | str | Path], problems: int) -> pd.DataFrame:
    """The `final_eval` rows of the runs on `problems` problems per split, flattened like `load_evals`, with
    method, arm, model, seed, run."""
    def rows_of(d: Path) -> list[dict]:
        path = final_eval_path(d, problems)
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: ask ensure_runs(..., final_eval_problems={problems}) "
                                    "for it, or call fr3e.study.runs.final_eval")
        return read_json(path, f"delete {path.name} to evaluate the final model again")["rows"]

    return _eval_frame(runs, rows_of)


def first_sample(run: RunInfo | str | Path, step: int = -1, with_anchors: bool = True) -> dict:
    """One samples.jsonl row of a run (default: the last logged step), preferring one with anchors."""
    rows = load_samples(run, step)
    if not rows:
        raise ValueError(f"{run_dirs([run])[0]}/samples.jsonl has no rows for step {step}")
    if with_anchors:
        for r in rows:
            if any(t.get("anchors") for t in r.get("trajectories", [])):
                return r
    return rows[0]


def eval_rows(report: dict, step: int = 0) -> list[dict]:
    """`fr3e.evaluation.evaluate.evaluate`'s report as eval.jsonl rows (the trainer's shape; see fr3e.evaluation.evaluate.eval_rows)."""
    from fr3e.evaluation.evaluate import eval_rows as rows

    return rows(report, step)


def base_evals(
    models: Sequence[str],
    recipe: str | Path | dict[str, str | Path],
    runs_root: str | Path = "runs",
    overrides: Sequence[str] = (),
    eval_n: int | None = None,
    eval_problems: int | None = None,
    seed: int = 0,
    cache_dir: str | Path = DEFAULT_CACHE,
    evaluator: Callable[..., dict] | None = None,
    warm_starter: Callable[..., Path] | None = None,
    read_only: bool = False,
) -> pd.DataFrame:
    """Evaluate each warm-started base model with the recipe's evaluation settings (Table 1 "base" rows).

    Settings (benchmarks, n, problems, temperature, top-p, response budget) come from `recipe` plus
    `overrides` / `eval_n`, so base and trained models are scored alike. Cached as
    `<runs_root>/<profile>/base-<model>-<hash of settings>.json`. evaluator / warm_starter default to
    `fr3e.evaluation.evaluate.evaluate` / `fr3e.tasks.warm_start.warm_start` (tests inject fakes). read_only:
    `runs_root` is only read (a notebook opened on committed results reads the archive): an evaluation missing
    there is computed and cached under the repository's runs/ instead (an evaluation of a shipped base model; no
    training).
    Returns flattened rows like `load_evals`, with method "base" and seed `seed`.
    """
    from fr3e.training.config import load_config

    extra = _eval_overrides(overrides, eval_n, eval_problems)
    frames = []
    for model in models:
        config = load_config(_recipe_for(recipe, model), [f"model.base={model}", *extra])
        d = config.data
        settings = {"benchmarks": list(d.eval_benchmarks), "n": d.eval_n, "num_problems": d.eval_problems or None,
                    "temperature": d.eval_temperature, "top_p": d.eval_top_p,
                    "max_new_tokens": d.max_response_tokens, "seed": seed,
                    **({"tiny_world": d.world} if config.profile == "tiny" and d.world != "arithmetic" else {})}
        identity = {**settings, **({"local_files": d.local_files} if d.local_files else {})}
        key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]
        path = Path(runs_root) / profile_dir(config.profile, d.world) / f"base-{safe_name(model)}-{key}.json"
        if read_only and not path.exists():
            path = DEFAULT_CACHE.parent / path.relative_to(runs_root)
        if path.exists():
            logger.info("base model %s: evaluation cached at %s", model, path)
            rows = read_json(path, f"delete {path} to evaluate the base model again")["rows"]
        else:
            if evaluator is None:
                from fr3e.evaluation.evaluate import evaluate as evaluator
            start = time.perf_counter()
            if config.profile == "paper":
                model_dir, report = config.model.base, _evaluate_paper_base(config, evaluator, settings, cache_dir)
            else:
                model_dir = _base_model_dir(config, cache_dir, warm_starter)
                logger.info("base model %s: evaluating %s (n=%d)", model, model_dir, d.eval_n)
                report = evaluator(model_dir, progress=False, **settings)
            rows = eval_rows(report, step=0)
            atomic_write_json(path, {"model": model, "model_dir": str(model_dir), "settings": settings,
                                     "seconds": round(time.perf_counter() - start, 2), "rows": rows})
        df = pd.DataFrame([_flatten_eval(r) for r in rows])
        # Labelled by the model actually evaluated, as ensure_runs labels runs (model.base may be overridden).
        df["method"], df["model"], df["seed"], df["run"] = "base", safe_name(config.model.base), seed, path.stem
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _evaluate_paper_base(config, evaluator, settings: dict, cache_dir) -> dict:
    """A paper-profile base model scored exactly as the trainer scores its policy: loaded like the trainer
    loads it (hub id or directory, its own tokenizer, the recipe's dtype, on the GPU when there is one), the
    recipe's engine, the chat-template prompts, the benchmark files of `data.local_files`."""
    import torch

    from fr3e.training.trainer import build_engine, load_policy

    model, tokenizer, source = load_policy(config, cache_dir, progress=False)
    if torch.cuda.is_available():
        model = model.to("cuda")
    engine = build_engine(config, model.eval(), tokenizer, source)
    logger.info("base model %s: evaluating with the %s engine (n=%d)", source, config.rollout.engine,
                config.data.eval_n)
    return evaluator(model, tokenizer=tokenizer, engine=engine, local_files=config.data.local_files,
                     progress=False, **settings)


def _base_model_dir(config, cache_dir: str | Path, warm_starter) -> Path:
    if config.profile == "paper":
        return config.model.base  # a hub id or a local directory
    return tiny_model_dir(config.model.base, cache_dir, warm_starter, world=config.data.world)


def tiny_model_dir(model: str, cache_dir: str | Path = DEFAULT_CACHE, warm_starter=None,
                   world: str = "arithmetic") -> Path:
    """A tiny base model's directory: `model` itself when it is a directory (as the trainer accepts),
    else the cached warm start of that name in `world` (trained on first use)."""
    if Path(model).is_dir():
        return Path(model)
    if warm_starter is None:
        from fr3e.tasks.warm_start import warm_start as warm_starter
    # The trainer warm-starts with the default seed (0) whatever the run's seed: one base model per name.
    return Path(warm_starter(model, cache_dir=cache_dir, progress=False, world=world))
