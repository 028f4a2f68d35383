"""From run directories to the paper's artefacts: launch runs, load them, aggregate, compare, write results.

Notebooks call these functions and hold no logic of their own (STYLE rule 10). Layers, top to bottom:

- **Runs.** `ensure_runs` asks for every (method recipe × base model × seed) run; a finished run (its
  `DONE` file exists) is reused, a missing one is trained in-process with `fr3e.trainer.train` (or with
  `accelerate launch -m fr3e.train` when an accelerate config is given), an interrupted one resumes.
  Run directories are named deterministically: `<runs_root>/<profile>/<method>-<model>-s<seed>-<steps>`.
- **Loaders.** `load_metrics`, `load_evals`, `load_final_evals`, `load_samples` read `metrics.jsonl`,
  `eval.jsonl` and `samples.jsonl` into pandas, tagged with `method`, `model` and `seed` from `config.json`.
  `base_evals` evaluates the warm-started base models (Table 1's "base" rows), cached on disk.
- **Aggregations** (pure functions on DataFrames, unit-tested): `table1_summary` / `table1` (avg@n in %,
  mean ± sample std over seeds), `deltas` (FR3E − GRPO++ with a 95% paired t-interval over seeds),
  `paper_reference` (the one Table 1 cell the paper's public text gives), `claims_table` ("claim | paper |
  ours | holds?" for each artefact).
- **Artefacts.** `write_artefact` writes `data.csv`, `summary.json`, `figure.png`, `provenance.json`
  atomically into `results/<artefact>/`.
- **Walkthrough.** `walkthrough` runs one FR3E step by hand on one problem with the library's maths
  (entropy → anchors → states → continuations → V(S_j) → α → advantages), in the shape of a samples row.

Statistics, stated once: "± std" is the sample standard deviation (ddof = 1) over seeds; a single seed
shows no ± . Deltas pair the two methods by seed (same seed = same base model, data order and evaluation
problems) and use a Student t-interval on the per-seed differences (95%, n − 1 degrees of freedom);
with one seed there is no interval. "End of training" is the mean over the last quarter of the steps.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fr3e.io import atomic_write_bytes, atomic_write_json, atomic_write_text, read_jsonl

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "reproduce" / "configs"

METHODS = ("grpo_pp", "fr3e")
"""Methods in display order (baseline first)."""
METHOD_LABELS = {"grpo_pp": "GRPO++", "fr3e": "FR3E", "base": "base"}
SYSTEMS = ("base", "GRPO++", "FR3E")
"""Rows of Table 1 per model, in display order."""
BENCHMARKS = ("easy", "medium", "hard")
"""Tiny-profile evaluation splits, easiest first."""
STANDS_IN_FOR = {"easy": "GSM8K", "medium": "MATH500", "hard": "AIME24",
                 "general": "Qwen2.5-7B", "math": "Qwen2.5-Math-7B"}
"""What each tiny split / base model mirrors in the paper's Table 1."""
LATE_FRACTION = 0.25
"""Share of the last (first) steps averaged for "end (start) of training" (our choice)."""
STATISTICS = ("avg@n in %; '± std' = sample std (ddof=1) over seeds, none with one seed; deltas FR3E − GRPO++ "
              "paired by seed with a 95% Student t-interval (n−1 dof) on the per-seed differences; 'end of "
              "training' = mean over the last quarter of the steps, 'start' = the first quarter.")
"""The statistics used by every table and claim, stated once (written into summary.json)."""


# ================================================================================================ runs
@dataclasses.dataclass(frozen=True)
class RunInfo:
    """One requested run: its identity and where it lives."""

    method: str  # "fr3e" | "grpo_pp"
    model: str  # base model: "general" | "math" (tiny) or a hub id (paper)
    seed: int
    steps: int
    run_dir: Path
    recipe: Path

    @property
    def done(self) -> bool:
        return (self.run_dir / "DONE").exists()


PAPER_BASE_MODELS = {"Qwen/Qwen2.5-7B": "qwen2.5-7b", "Qwen/Qwen2.5-Math-7B": "qwen2.5-math-7b",
                     "Qwen/Qwen2.5-32B": "qwen2.5-32b"}
"""Table 1's base models and the stem of their recipes in reproduce/configs/table1/."""


def recipes(profile: str = "tiny") -> dict[str, Path | dict[str, Path]]:
    """The method recipes of a profile, baseline first.

    tiny:  {"grpo_pp": reproduce/configs/tiny-grpo_pp.yaml, "fr3e": ...} (the base model is an override);
    paper: {"grpo_pp": {"Qwen/Qwen2.5-7B": reproduce/configs/table1/qwen2.5-7b-grpo_pp.yaml, ...}, "fr3e": ...}
    (one recipe per base model).
    """
    if profile == "tiny":
        paths: dict = {m: CONFIG_DIR / f"tiny-{m}.yaml" for m in METHODS}
        flat = list(paths.values())
    elif profile == "paper":
        paths = {m: {model: CONFIG_DIR / "table1" / f"{stem}-{m}.yaml" for model, stem in PAPER_BASE_MODELS.items()}
                 for m in METHODS}
        flat = [p for d in paths.values() for p in d.values()]
    else:
        raise ValueError(f"unknown profile {profile!r}; use 'tiny' or 'paper'")
    missing = [str(p) for p in flat if not p.exists()]
    if missing:
        raise FileNotFoundError(f"recipe(s) {missing} missing for profile {profile!r}; they ship with the "
                                "repository under reproduce/configs/ (check out the full repository).")
    return paths


def safe_name(model: str) -> str:
    """A base-model name usable in a directory name ("Qwen/Qwen2.5-7B" -> "Qwen2.5-7B")."""
    return model.rstrip("/").split("/")[-1].replace(" ", "_")


def run_name(method: str, model: str, seed: int, steps: int, overrides: Sequence[str] = ()) -> str:
    """Deterministic run name, e.g. "fr3e-general-s0-60"; extra overrides add a short hash of themselves."""
    name = f"{method}-{safe_name(model)}-s{seed}-{steps}"
    if overrides:
        digest = hashlib.sha256("\n".join(sorted(overrides)).encode()).hexdigest()[:8]
        name += f"-{digest}"
    return name


DEFAULT_CACHE = REPO_ROOT / "runs" / "cache"
"""Where warm-started tiny base models are cached (shared by smoke and full runs; `python -m fr3e.train`
run from the repository root uses the same directory)."""


def _default_launcher(config, run_dir: Path, progress: bool, cache_dir: Path) -> Path:
    from fr3e.trainer import train

    return Path(train(config, run_dir=run_dir, progress=progress, cache_dir=cache_dir))


def _recipe_for(recipe: str | Path | dict, model: str) -> Path:
    if isinstance(recipe, dict):
        if model not in recipe:
            raise ValueError(f"no recipe for base model {model!r}; recipes exist for {sorted(recipe)}")
        return Path(recipe[model])
    return Path(recipe)


def accelerate_command(accelerate_config: str | Path, recipe: Path, overrides: Sequence[str],
                       run_dir: Path, cache_dir: str | Path = DEFAULT_CACHE) -> list[str]:
    """The `accelerate launch -m fr3e.train ...` command line of one run (multi-process training)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config),
           "-m", "fr3e.train", "--config", str(recipe), "--run-dir", str(run_dir), "--cache-dir", str(cache_dir),
           "--no-progress"]
    for item in overrides:
        cmd += ["--set", item]
    return cmd


def ensure_runs(
    recipes: dict[str, str | Path | dict[str, str | Path]],
    models: Sequence[str],
    seeds: Sequence[int],
    steps: int | None = None,
    runs_root: str | Path = "runs",
    overrides: Sequence[str] = (),
    eval_n: int | None = None,
    eval_problems: int | None = None,
    accelerate_config: str | Path | None = None,
    cache_dir: str | Path = DEFAULT_CACHE,
    launcher: Callable[..., Path] | None = None,
    progress: bool = False,
) -> list[RunInfo]:
    """Every (method × model × seed) run, trained if missing, reused if finished.

    recipes: method -> YAML recipe, or method -> {model: recipe} (see `recipes(profile)`);
    models: base models ("general", "math");
    seeds: training seeds; steps: training steps (None = the recipe's); runs_root: parent of `<profile>/`;
    overrides: extra `key=value` overrides for every run (they add a hash to the run names);
    eval_n / eval_problems: samples per problem / problems per benchmark of the evaluation (`data.eval_n`,
    `data.eval_problems`; None = the recipe's);
    accelerate_config: launch each missing run with `accelerate launch` (default: `$ACCELERATE_CONFIG`
    if set, else in-process); cache_dir: warm-started base models (tiny profile);
    launcher: `(config, run_dir, progress, cache_dir) -> run_dir`, default `fr3e.trainer.train` (tests fake it).
    Returns one RunInfo per run, methods in `recipes` order, then models, then seeds.
    """
    from fr3e.config import load_config

    accelerate_config = accelerate_config or os.environ.get("ACCELERATE_CONFIG") or None
    launcher = launcher or _default_launcher
    extra = _eval_overrides(overrides, eval_n, eval_problems)
    plan: list[tuple[RunInfo, list[str]]] = []
    for method, method_recipes in recipes.items():
        for model in models:
            recipe = _recipe_for(method_recipes, model)
            for seed in seeds:
                ov = [f"model.base={model}", f"seed={seed}"] + ([f"steps={steps}"] if steps is not None else [])
                config = load_config(recipe, ov + extra)
                if config.method != method:
                    raise ValueError(f"recipe {recipe} trains method {config.method!r} but is listed as {method!r}")
                name = run_name(method, model, seed, config.steps, extra)
                run_dir = Path(runs_root) / config.profile / name
                plan.append((RunInfo(method, model, seed, config.steps, run_dir, recipe),
                             ov + extra + [f"name={name}"]))
    todo = sum(not info.done for info, _ in plan)
    logger.info("%d runs requested under %s: %d finished, %d to train", len(plan), runs_root, len(plan) - todo, todo)
    for i, (info, ov) in enumerate(plan, start=1):
        if info.done:
            logger.info("run %d/%d %s: finished, reused", i, len(plan), info.run_dir.name)
            continue
        state = "resuming" if (info.run_dir / "metrics.jsonl").exists() else "training"
        logger.info("run %d/%d %s: %s (%d steps)", i, len(plan), info.run_dir.name, state, info.steps)
        start = time.perf_counter()
        if accelerate_config:
            cmd = accelerate_command(accelerate_config, info.recipe, ov, info.run_dir, cache_dir)
            logger.info("launching: %s", shlex.join(cmd))
            subprocess.run(cmd, check=True, cwd=Path.cwd())
        else:
            config = load_config(info.recipe, ov)
            launcher(config, info.run_dir, progress, Path(cache_dir))
        if not info.done:
            raise RuntimeError(f"run {info.run_dir} ended without writing DONE; see its log and re-run to resume")
        logger.info("run %d/%d %s: done in %.0f s", i, len(plan), info.run_dir.name, time.perf_counter() - start)
    return [info for info, _ in plan]


def _eval_overrides(overrides: Sequence[str], eval_n: int | None, eval_problems: int | None) -> list[str]:
    return (list(overrides) + ([f"data.eval_n={eval_n}"] if eval_n is not None else [])
            + ([f"data.eval_problems={eval_problems}"] if eval_problems is not None else []))


def run_dirs(runs: Iterable[RunInfo | str | Path]) -> list[Path]:
    """Run directories of RunInfos or paths."""
    return [r.run_dir if isinstance(r, RunInfo) else Path(r) for r in runs]


# ============================================================================================= loaders
def run_meta(run_dir: str | Path) -> dict:
    """method, model (last path component of model.base), seed, steps, profile and name of a run."""
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.json); train it with "
                                "fr3e.results.ensure_runs or python -m fr3e.train")
    config = json.loads(path.read_text())
    return {"method": config["method"], "model": safe_name(config.get("model", {}).get("base", "?")),
            "seed": int(config["seed"]), "steps": int(config["steps"]),
            "profile": config.get("profile", "tiny"), "run": run_dir.name}


def load_metrics(runs: Iterable[RunInfo | str | Path]) -> pd.DataFrame:
    """All metrics.jsonl rows of the runs, with columns method, model, seed, run added."""
    frames = []
    for d in run_dirs(runs):
        meta = run_meta(d)
        rows = read_jsonl(d / "metrics.jsonl")
        if not rows:
            raise ValueError(f"{d}/metrics.jsonl is empty or missing: the run has not trained a step yet")
        df = pd.DataFrame(rows)
        for key in ("method", "model", "seed", "run"):
            df[key] = meta[key]
        frames.append(df)
    if not frames:
        raise ValueError("no runs given")
    return pd.concat(frames, ignore_index=True)


def _flatten_eval(row: dict) -> dict:
    out = {k: v for k, v in row.items() if k not in ("pass", "avg_ci")}
    lo, hi = row.get("avg_ci", (math.nan, math.nan))
    out["avg_lo"], out["avg_hi"] = lo, hi
    for k, v in (row.get("pass") or {}).items():
        out[f"pass@{k}"] = v
    return out


def load_evals(runs: Iterable[RunInfo | str | Path]) -> pd.DataFrame:
    """All eval.jsonl rows, flattened (avg_lo, avg_hi, pass@k columns), with method, model, seed, run."""
    frames = []
    for d in run_dirs(runs):
        meta = run_meta(d)
        rows = [_flatten_eval(r) for r in read_jsonl(d / "eval.jsonl")]
        if not rows:
            raise ValueError(f"{d}/eval.jsonl is empty or missing: the run has not been evaluated yet")
        df = pd.DataFrame(rows)
        for key in ("method", "model", "seed", "run"):
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


def load_samples(run: RunInfo | str | Path, step: int | None = None) -> list[dict]:
    """samples.jsonl rows of one run; `step` = only that step (-1 = the last logged step)."""
    d = run_dirs([run])[0]
    rows = read_jsonl(d / "samples.jsonl")
    if step is None:
        return rows
    if step == -1 and rows:
        step = max(r["step"] for r in rows)
    return [r for r in rows if r["step"] == step]


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


# ============================================================================= base-model evaluation
def eval_rows(report: dict, step: int = 0) -> list[dict]:
    """`fr3e.evaluate.evaluate`'s report as eval.jsonl rows (the contract's shape)."""
    n = int(report["config"]["n"])
    rows = []
    for name, m in report["benchmarks"].items():
        passes = {k.split("@")[1]: v for k, v in m.items() if k.startswith("pass@")}
        rows.append({"step": step, "benchmark": name, "n": n, "avg": m[f"avg@{n}"],
                     "avg_ci": list(m["ci"][f"avg@{n}"]), "pass": passes, "greedy": m.get("greedy", math.nan),
                     "num_problems": int(m["num_problems"])})
    return rows


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
) -> pd.DataFrame:
    """Evaluate each warm-started base model with the recipe's evaluation settings (Table 1 "base" rows).

    Settings (benchmarks, n, problems, temperature, top-p, response budget) come from `recipe` plus
    `overrides` / `eval_n`, so base and trained models are scored alike. Cached as
    `<runs_root>/<profile>/base-<model>-<hash of settings>.json`. evaluator / warm_starter default to
    `fr3e.evaluate.evaluate` / `fr3e.tasks.warm_start.warm_start` (tests inject fakes).
    Returns flattened rows like `load_evals`, with method "base" and seed `seed`.
    """
    from fr3e.config import load_config

    extra = _eval_overrides(overrides, eval_n, eval_problems)
    frames = []
    for model in models:
        config = load_config(_recipe_for(recipe, model), [f"model.base={model}", *extra])
        d = config.data
        settings = {"benchmarks": list(d.eval_benchmarks), "n": d.eval_n, "num_problems": d.eval_problems or None,
                    "temperature": d.eval_temperature, "top_p": d.eval_top_p,
                    "max_new_tokens": d.max_response_tokens, "seed": seed}
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
        path = Path(runs_root) / config.profile / f"base-{safe_name(model)}-{key}.json"
        if path.exists():
            logger.info("base model %s: evaluation cached at %s", model, path)
            rows = json.loads(path.read_text())["rows"]
        else:
            if evaluator is None:
                from fr3e.evaluate import evaluate as evaluator
            model_dir = _base_model_dir(config, cache_dir, warm_starter)
            logger.info("base model %s: evaluating %s (n=%d)", model, model_dir, d.eval_n)
            start = time.perf_counter()
            report = evaluator(model_dir, progress=False, **settings)
            rows = eval_rows(report, step=0)
            atomic_write_json(path, {"model": model, "model_dir": str(model_dir), "settings": settings,
                                     "seconds": round(time.perf_counter() - start, 2), "rows": rows})
        df = pd.DataFrame([_flatten_eval(r) for r in rows])
        df["method"], df["model"], df["seed"], df["run"] = "base", safe_name(model), seed, path.stem
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _base_model_dir(config, cache_dir: str | Path, warm_starter) -> Path:
    if config.profile == "paper":
        return config.model.base  # a hub id or a local directory
    return tiny_model_dir(config.model.base, cache_dir, warm_starter)


def tiny_model_dir(model: str, cache_dir: str | Path = DEFAULT_CACHE, warm_starter=None) -> Path:
    """A tiny base model's directory: `model` itself when it is a directory (as the trainer accepts),
    else the cached warm start of that name (trained on first use)."""
    if Path(model).is_dir():
        return Path(model)
    if warm_starter is None:
        from fr3e.tasks.warm_start import warm_start as warm_starter
    # The trainer warm-starts with the default seed (0) whatever the run's seed: one base model per name.
    return Path(warm_starter(model, cache_dir=cache_dir, progress=False))


# ========================================================================================= statistics
_T975 = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 5: 2.5706, 6: 2.4469, 7: 2.3646, 8: 2.3060, 9: 2.2622,
         10: 2.2281, 11: 2.2010, 12: 2.1788, 13: 2.1604, 14: 2.1448, 15: 2.1314, 16: 2.1199, 17: 2.1098,
         18: 2.1009, 19: 2.0930, 20: 2.0860, 25: 2.0595, 30: 2.0423, 40: 2.0211, 60: 2.0003, 120: 1.9799}


def t_quantile_975(df: int) -> float:
    """Student t 97.5% quantile (two-sided 95%) for `df` degrees of freedom (table; linear in 1/df between)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df in _T975:
        return _T975[df]
    keys = sorted(_T975)
    if df > keys[-1]:  # towards the normal quantile, linear in 1/df
        z = 1.959964
        return z + (_T975[keys[-1]] - z) * keys[-1] / df
    lo = max(k for k in keys if k < df)
    hi = min(k for k in keys if k > df)
    w = (1 / df - 1 / hi) / (1 / lo - 1 / hi)
    return _T975[hi] + w * (_T975[lo] - _T975[hi])


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample std with ddof=1 (nan for one value), count) of the finite values."""
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan, 0
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else math.nan, int(x.size)


def paired_t_interval(diffs: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high) of a 95% Student t-interval on paired differences; (mean, nan, nan) for one pair."""
    m, s, n = mean_std(diffs)
    if n < 2:
        return m, math.nan, math.nan
    half = t_quantile_975(n - 1) * s / math.sqrt(n)
    return m, m - half, m + half


def fmt_mean_std(mean: float, std: float, digits: int = 1) -> str:
    """"41.2 ± 3.1"; one seed (std nan) gives "41.2"; no value gives "–"."""
    if mean is None or not np.isfinite(mean):
        return "–"
    if std is None or not np.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


# ============================================================================================ Table 1
def _per_seed_scores(evals: pd.DataFrame, metric: str = "avg") -> pd.DataFrame:
    """One row per (model, method, seed): metric in % per benchmark plus their mean ("avg")."""
    wide = evals.pivot_table(index=["model", "method", "seed"], columns="benchmark", values=metric, aggfunc="mean")
    wide = wide * 100.0
    benches = [b for b in BENCHMARKS if b in wide.columns] + [b for b in wide.columns if b not in BENCHMARKS]
    wide = wide[benches]
    wide["avg"] = wide[benches].mean(axis=1)
    wide.columns.name = None
    return wide.reset_index()


def table1_summary(final_evals: pd.DataFrame, base_evals: pd.DataFrame | None = None,
                   metric: str = "avg") -> pd.DataFrame:
    """Long table: model, system (base / GRPO++ / FR3E), benchmark (+ "avg"), mean, std, seeds; in %.

    final_evals: `load_final_evals` rows; base_evals: `base_evals` rows (or None). The "avg" column is the
    mean over benchmarks per seed, then mean ± std over seeds (so its std is the std of seed averages).
    """
    frames = [final_evals] + ([base_evals] if base_evals is not None and len(base_evals) else [])
    per_seed = _per_seed_scores(pd.concat(frames, ignore_index=True), metric)
    value_cols = [c for c in per_seed.columns if c not in ("model", "method", "seed")]
    rows = []
    models = list(dict.fromkeys(per_seed["model"]))
    for model in models:
        for method in ("base", *METHODS):
            sub = per_seed[(per_seed["model"] == model) & (per_seed["method"] == method)]
            if sub.empty:
                continue
            for col in value_cols:
                m, s, n = mean_std(sub[col].tolist())
                rows.append({"model": model, "system": METHOD_LABELS[method], "benchmark": col,
                             "mean": m, "std": s, "seeds": n})
    return pd.DataFrame(rows, columns=["model", "system", "benchmark", "mean", "std", "seeds"])


def table1(final_evals: pd.DataFrame, base_evals: pd.DataFrame | None = None, metric: str = "avg") -> pd.DataFrame:
    """Table 1 in the paper's layout: rows (model, system), columns benchmarks + avg, "mean ± std" in %."""
    summary = table1_summary(final_evals, base_evals, metric)
    summary = summary.assign(cell=[fmt_mean_std(m, s) for m, s in zip(summary["mean"], summary["std"])])
    table = summary.pivot(index=["model", "system"], columns="benchmark", values="cell")
    cols = [b for b in BENCHMARKS if b in table.columns] + \
           [b for b in table.columns if b not in BENCHMARKS and b != "avg"] + ["avg"]
    table = table[cols]
    seeds = summary.groupby(["model", "system"])["seeds"].max()
    table["seeds"] = seeds
    order = {s: i for i, s in enumerate(SYSTEMS)}
    models = list(dict.fromkeys(summary["model"]))
    table = table.reset_index()
    table["_m"] = table["model"].map({m: i for i, m in enumerate(models)})
    table["_s"] = table["system"].map(order)
    table = table.sort_values(["_m", "_s"]).drop(columns=["_m", "_s"]).set_index(["model", "system"])
    table.columns.name = None
    return table


def deltas(final_evals: pd.DataFrame, metric: str = "avg") -> pd.DataFrame:
    """FR3E − GRPO++ per model and benchmark (+ "avg"), in points of %, paired by seed.

    Columns: model, benchmark, grpo_pp, fr3e (means over the paired seeds), delta, ci_low, ci_high
    (95% Student t-interval on the per-seed differences; nan with one seed), seeds, wins (seeds where
    FR3E > GRPO++). Seeds present for only one method are left out.
    """
    per_seed = _per_seed_scores(final_evals, metric)
    value_cols = [c for c in per_seed.columns if c not in ("model", "method", "seed")]
    rows = []
    for model in dict.fromkeys(per_seed["model"]):
        sub = per_seed[per_seed["model"] == model]
        a = sub[sub["method"] == "grpo_pp"].set_index("seed")
        b = sub[sub["method"] == "fr3e"].set_index("seed")
        seeds = sorted(set(a.index) & set(b.index))
        if not seeds:
            continue
        for col in value_cols:
            diff = (b.loc[seeds, col] - a.loc[seeds, col]).tolist()
            m, lo, hi = paired_t_interval(diff)
            rows.append({"model": model, "benchmark": col, "grpo_pp": float(a.loc[seeds, col].mean()),
                         "fr3e": float(b.loc[seeds, col].mean()), "delta": m, "ci_low": lo, "ci_high": hi,
                         "seeds": len(seeds), "wins": int(sum(d > 0 for d in diff))})
    return pd.DataFrame(rows, columns=["model", "benchmark", "grpo_pp", "fr3e", "delta", "ci_low", "ci_high",
                                       "seeds", "wins"])


PAPER_MODELS = ("Qwen2.5-7B", "Qwen2.5-Math-7B", "Qwen2.5-32B")
PAPER_BENCHMARKS = ("AIME24", "GSM8K", "MATH500", "Minerva Math", "Gaokao2023en", "OlympiadBench", "avg")
_PAPER_KNOWN = {("Qwen2.5-32B", "AIME24"): (34.1, 40.2)}
"""The only Table 1 cell the paper's public text gives (abstract / reviews): GRPO++ 34.1, FR3E 40.2."""


def paper_reference() -> pd.DataFrame:
    """The paper's Table 1 as far as it is known: one row per (model, benchmark), "unknown" elsewhere.

    Columns: model, benchmark, GRPO++, FR3E, delta (strings; numbers only where the paper states them).
    Never invented: the paper body could not be read (see /work/shared/PAPER.md).
    """
    rows = []
    for model in PAPER_MODELS:
        for bench in PAPER_BENCHMARKS:
            known = _PAPER_KNOWN.get((model, bench))
            if known:
                g, f = known
                rows.append({"model": model, "benchmark": bench, "GRPO++": f"{g:.1f}", "FR3E": f"{f:.1f}",
                             "delta": f"{f - g:+.1f}"})
            else:
                rows.append({"model": model, "benchmark": bench, "GRPO++": "unknown", "FR3E": "unknown",
                             "delta": "unknown"})
    return pd.DataFrame(rows)


# ============================================================================================= claims
def _phase_means(metrics: pd.DataFrame, col: str, phase: str = "late", frac: float = LATE_FRACTION) -> pd.DataFrame:
    """Mean of `col` over the last (or first) `frac` of each run's steps, then over seeds.

    Returns columns model, method, value (mean over seeds), std (over seeds), seeds.
    """
    rows = []
    for (model, method, seed), g in metrics.groupby(["model", "method", "seed"], sort=False):
        g = g.sort_values("step")
        k = max(1, int(round(frac * len(g))))
        part = g.tail(k) if phase == "late" else g.head(k)
        rows.append({"model": model, "method": method, "seed": seed, "value": float(part[col].mean())})
    per_seed = pd.DataFrame(rows)
    out = []
    for (model, method), g in per_seed.groupby(["model", "method"], sort=False):
        m, s, n = mean_std(g["value"].tolist())
        out.append({"model": model, "method": method, "value": m, "std": s, "seeds": n})
    return pd.DataFrame(out, columns=["model", "method", "value", "std", "seeds"])


def _cmp(fr3e: float, grpo_pp: float, higher: bool) -> bool | None:
    """Does FR3E beat GRPO++ (strictly)? None when either value is missing (nan: not measured)."""
    if not (np.isfinite(fr3e) and np.isfinite(grpo_pp)):
        return None
    return fr3e > grpo_pp if higher else fr3e < grpo_pp


def _compare(per_model: dict[str, bool | None]) -> str:
    """'yes' / 'no' / 'partly (k/N models)'; models without a measurement (None) are left out and named;
    'n/a' when no model has one."""
    missing = [m for m, v in per_model.items() if v is None]
    per_model = {m: v for m, v in per_model.items() if v is not None}
    if not per_model:
        return "n/a (not measured)" if missing else "n/a"
    note = f" (not measured: {', '.join(missing)})" if missing else ""
    k = sum(per_model.values())
    if k == len(per_model):
        return "yes" + note
    if k == 0:
        return "no" + note
    return f"partly ({k}/{len(per_model)} models)" + note


def _by_method(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """model -> {method: value} from a `_phase_means` table."""
    out: dict[str, dict[str, float]] = {}
    for r in table.itertuples():
        out.setdefault(r.model, {})[r.method] = r.value
    return {m: v for m, v in out.items() if "fr3e" in v and "grpo_pp" in v}


def _level_claim(metrics: pd.DataFrame, col: str, claim: str, paper: str, unit: str, higher: bool,
                 digits: int = 2) -> dict:
    """FR3E vs GRPO++ on the end-of-training mean of `col`, per model."""
    vals = _by_method(_phase_means(metrics, col, "late"))
    holds = {m: _cmp(v["fr3e"], v["grpo_pp"], higher) for m, v in vals.items()}
    ours = "; ".join(f"{m}: {v['fr3e']:.{digits}f} vs {v['grpo_pp']:.{digits}f}{unit}" for m, v in vals.items())
    return {"claim": claim, "paper": paper, "ours": ours + " (FR3E vs GRPO++, last quarter of steps)",
            "holds?": _compare(holds)}


def claim_entropy(metrics: pd.DataFrame) -> list[dict]:
    """Fig. 3: FR3E's entropy higher at the end, and it decays slower (late / early ratio)."""
    rows = [_level_claim(metrics, "entropy", "FR3E entropy higher than GRPO++ at the end of training (trained tokens)",
                         "Fig. 3: FR3E's entropy stays higher", " nats", higher=True)]
    if "entropy_base" in metrics:
        rows.append(_level_claim(metrics, "entropy_base",
                                 "FR3E entropy higher than GRPO++ at the end of training (full responses from the prompt)",
                                 "Fig. 3 (same claim, like-for-like tokens)", " nats", higher=True))
    early = _by_method(_phase_means(metrics, "entropy", "early"))
    late = _by_method(_phase_means(metrics, "entropy", "late"))
    ratio = {m: {k: late[m][k] / early[m][k] if early[m][k] else math.nan for k in late[m]} for m in late if m in early}
    holds = {m: _cmp(r["fr3e"], r["grpo_pp"], True) for m, r in ratio.items()}
    ours = "; ".join(f"{m}: {r['fr3e']:.2f} vs {r['grpo_pp']:.2f}" for m, r in ratio.items())
    rows.append({"claim": "FR3E entropy decays slower (end / start ratio higher)",
                 "paper": "Fig. 3: no entropy collapse, slower decay",
                 "ours": ours + " (end/start entropy, FR3E vs GRPO++)", "holds?": _compare(holds)})
    return rows


def claim_length(metrics: pd.DataFrame) -> list[dict]:
    """Fig. 4: FR3E responses longer (`response_length`: prefix ⊕ continuation, the full response)."""
    return [_level_claim(metrics, "response_length", "FR3E responses longer than GRPO++ (trained rollouts, "
                         "prefix + continuation)", "Fig. 4: FR3E responses longer (Math-7B plateaus near 2.5k tokens)",
                         " tokens", higher=True, digits=1)]


def claim_eval_length(final_evals: pd.DataFrame) -> list[dict]:
    """Fig. 4, measured at evaluation (same prompts, same n for every method): mean response tokens."""
    return [_eval_level_claim(final_evals, "mean_response_tokens",
                              "FR3E responses longer than GRPO++ at the final evaluation",
                              "Fig. 4: FR3E responses longer", " tokens", higher=True, digits=1)]


def _eval_level_claim(final_evals: pd.DataFrame, col: str, claim: str, paper: str, unit: str, higher: bool,
                      digits: int = 2, scale: float = 1.0) -> dict:
    """FR3E vs GRPO++ on an evaluation column, mean over benchmarks then seeds, per model."""
    if col not in final_evals or final_evals[col].isna().all():
        return {"claim": claim, "paper": paper, "ours": f"not logged ({col} missing in eval.jsonl)", "holds?": "n/a"}
    per_run = final_evals.groupby(["model", "method", "seed"], sort=False)[col].mean().reset_index()
    vals: dict[str, dict[str, float]] = {}
    for (model, method), g in per_run.groupby(["model", "method"], sort=False):
        vals.setdefault(model, {})[method] = scale * float(g[col].mean())
    vals = {m: v for m, v in vals.items() if "fr3e" in v and "grpo_pp" in v}
    holds = {m: _cmp(v["fr3e"], v["grpo_pp"], higher) for m, v in vals.items()}
    ours = "; ".join(f"{m}: {v['fr3e']:.{digits}f} vs {v['grpo_pp']:.{digits}f}{unit}" for m, v in vals.items())
    return {"claim": claim, "paper": paper, "ours": ours + " (FR3E vs GRPO++, mean over splits)",
            "holds?": _compare(holds)}


def claim_advantage(metrics: pd.DataFrame) -> list[dict]:
    """Fig. 5: FR3E advantages centred and tightly spread (smaller std)."""
    row = _level_claim(metrics, "adv_std", "FR3E advantages more tightly centred (smaller std)",
                       "Fig. 5: FR3E advantages centred and tightly spread around 0", "", higher=False, digits=3)
    means = _by_method(_phase_means(metrics, "adv_mean", "late"))
    row["ours"] += "; mean " + "; ".join(f"{m}: {v['fr3e']:+.3f} vs {v['grpo_pp']:+.3f}" for m, v in means.items())
    return [row]


def composition_shares(metrics: pd.DataFrame, level: str = "prompts") -> pd.DataFrame:
    """Add share columns all_right, all_wrong, mixed (fractions of the `level` groups: prompts | groups)."""
    cols = [f"{level}_all_right", f"{level}_all_wrong", f"{level}_mixed"]
    total = metrics[cols].sum(axis=1).replace(0, np.nan)
    out = metrics.copy()
    for name, col in zip(("all_right", "all_wrong", "mixed"), cols):
        out[name] = metrics[col] / total
    return out


def claim_composition(metrics: pd.DataFrame, level: str = "prompts") -> list[dict]:
    """Figs. 7-8: over training FR3E raises the All-Right share and lowers the All-Wrong share, more than GRPO++."""
    shares = composition_shares(metrics, level)
    change = {}
    for col in ("all_right", "all_wrong"):
        early = _by_method(_phase_means(shares, col, "early"))
        late = _by_method(_phase_means(shares, col, "late"))
        change[col] = {m: {k: late[m][k] - early[m][k] for k in late[m]} for m in late if m in early}
    holds = {}
    for m in change["all_right"]:
        right = _cmp(change["all_right"][m]["fr3e"], change["all_right"][m]["grpo_pp"], True)
        wrong = _cmp(change["all_wrong"][m]["fr3e"], change["all_wrong"][m]["grpo_pp"], False)
        holds[m] = None if right is None or wrong is None else right and wrong
    ours = "; ".join(
        f"{m}: All-Right {100 * change['all_right'][m]['fr3e']:+.0f} vs {100 * change['all_right'][m]['grpo_pp']:+.0f} pts, "
        f"All-Wrong {100 * change['all_wrong'][m]['fr3e']:+.0f} vs {100 * change['all_wrong'][m]['grpo_pp']:+.0f} pts"
        for m in change["all_right"])
    return [{"claim": "FR3E raises All-Right share and lowers All-Wrong share (more than GRPO++)",
             "paper": "Figs. 7-8: FR3E raises All-Right, lowers All-Wrong",
             "ours": ours + f" (change start→end of training, {'prompt' if level == 'prompts' else 'state'} groups, FR3E vs GRPO++)",
             "holds?": _compare(holds)}]


def claim_eval_composition(final_evals: pd.DataFrame) -> list[dict]:
    """Figs. 7-8, measured at evaluation: share of problems whose n samples are all right / all wrong."""
    return [_eval_level_claim(final_evals, "all_right", "FR3E has more All-Right evaluation problems than GRPO++",
                              "Figs. 7-8: FR3E raises All-Right", " %", higher=True, digits=1, scale=100.0),
            _eval_level_claim(final_evals, "all_wrong", "FR3E has fewer All-Wrong evaluation problems than GRPO++",
                              "Figs. 7-8: FR3E lowers All-Wrong", " %", higher=False, digits=1, scale=100.0)]


def claim_table1(final_evals: pd.DataFrame) -> list[dict]:
    """Table 1: FR3E ≥ GRPO++ on avg@n; gains smaller on the math-specialised model."""
    d = deltas(final_evals)
    avg = d[d["benchmark"] == "avg"]
    holds = {r.model: r.delta >= 0 for r in avg.itertuples()}
    parts = []
    for r in avg.itertuples():
        ci = f" [{r.ci_low:+.1f}, {r.ci_high:+.1f}]" if np.isfinite(r.ci_low) else " (1 seed, no CI)"
        parts.append(f"{r.model}: {r.delta:+.1f}{ci}")
    verdict = _compare(holds)
    if verdict != "n/a" and any(np.isfinite(r.ci_low) and r.ci_low <= 0 <= r.ci_high for r in avg.itertuples()):
        verdict += " (CI includes 0)"
    rows = [{"claim": "FR3E ≥ GRPO++ avg (avg@n over the splits)",
             "paper": "Table 1: FR3E ≥ GRPO++ on most; up to +6.1 pts; AIME24/Qwen2.5-32B 40.2 vs 34.1",
             "ours": "; ".join(parts) + " pts FR3E − GRPO++ (95% paired t-interval over seeds)",
             "holds?": verdict}]
    by_model = {r.model: r.delta for r in avg.itertuples()}
    if "general" in by_model and "math" in by_model:
        rows.append({"claim": "FR3E's gain smaller on the math-specialised base model",
                     "paper": "Table 1: clear gains on general models, small on Qwen2.5-Math-7B",
                     "ours": f"general {by_model['general']:+.1f} vs math {by_model['math']:+.1f} pts",
                     "holds?": "yes" if by_model["math"] < by_model["general"] else "no"})
    return rows


CLAIMS: dict[str, tuple[Callable[..., list[dict]] | None, Callable[..., list[dict]] | None]] = {
    "table1": (None, claim_table1),
    "entropy": (claim_entropy, None),
    "length": (claim_length, claim_eval_length),
    "advantage": (claim_advantage, None),
    "all_right": (claim_composition, claim_eval_composition),
}
"""Artefact -> (claims from training metrics, claims from final evaluations)."""


def claim_walkthrough(sample: dict, trajectory_id: int | None = None) -> list[dict]:
    """Figs. 1-2 on one annotated trajectory: anchors are the top-entropy tokens; α follows the value change."""
    trajs = sample["trajectories"]
    traj = trajs[0] if trajectory_id is None else next(t for t in trajs if t["trajectory_id"] == trajectory_id)
    scores = np.asarray(traj.get("scores") or traj["entropy"], dtype=float)
    anchors = list(traj["anchors"])
    eligible = np.ones(scores.size, dtype=bool)
    if scores.size:
        eligible[0] = False  # position 0 and a final EOS are never anchors (fr3e.anchors)
        if traj["tokens"] and traj["tokens"][-1].startswith("</"):
            eligible[-1] = False
    others = scores[eligible & ~np.isin(np.arange(scores.size), anchors)]
    a_scores = scores[anchors] if anchors else np.zeros(0)
    top = bool(a_scores.size and (others.size == 0 or a_scores.min() >= others.max()))
    rows = [{"claim": "Anchors are the K highest-entropy tokens of the base trajectory",
             "paper": "§3 first return: forks = highest-entropy positions",
             "ours": (f"anchor entropies {', '.join(f'{x:.2f}' for x in a_scores)} nats vs other tokens' "
                      f"median {np.median(others) if others.size else math.nan:.2f}, max "
                      f"{others.max() if others.size else math.nan:.2f}"),
             "holds?": "yes" if top else "no"}]
    tid = traj["trajectory_id"]
    chain = sorted((s for s in sample["states"] if s["key"][1] in (-1, tid)), key=lambda s: s["key"][2])
    ok, parts = [], []
    for prev, cur in zip(chain, chain[1:]):
        dv, a = cur["value"] - prev["value"], cur["alpha"]["paper"]
        ok.append((dv > 0 and a < 1) or (dv < 0 and a > 1) or (dv == 0 and abs(a - 1) < 1e-6))
        parts.append(f"S_{cur['key'][2]}: ΔV {dv:+.2f} → α {a:.2f}")
    changed = any(cur["value"] != prev["value"] for prev, cur in zip(chain, chain[1:]))
    verdict = ("yes" if all(ok) else "no") if changed else "n/a (no value change along this trajectory)"
    rows.append({"claim": "α < 1 where the value rose, α > 1 where it fell (paper variant)",
                 "paper": "§3 adaptive advantage modulation α_j = exp(−(V_j − V_{j−1}))",
                 "ours": "; ".join(parts) or "no anchor states", "holds?": verdict if ok else "n/a"})
    return rows


def claims_table(metrics: pd.DataFrame | None = None, final_evals: pd.DataFrame | None = None,
                 artefacts: Sequence[str] | None = None, sample: dict | None = None) -> pd.DataFrame:
    """Rows "claim | paper | ours | holds?" for the requested artefacts (default: all the data allows).

    metrics: `load_metrics`; final_evals: `load_final_evals`; sample: a samples row (walkthrough).
    """
    artefacts = list(artefacts) if artefacts is not None else [*CLAIMS, "walkthrough"]
    rows: list[dict] = []
    for name in artefacts:
        if name == "walkthrough":
            if sample is not None:
                rows += claim_walkthrough(sample)
            continue
        if name not in CLAIMS:
            raise ValueError(f"unknown artefact {name!r}; claims exist for {list(CLAIMS)}")
        from_metrics, from_evals = CLAIMS[name]
        if from_metrics is not None and metrics is not None:
            rows += from_metrics(metrics)
        if from_evals is not None and final_evals is not None:
            rows += from_evals(final_evals)
    return pd.DataFrame(rows, columns=["claim", "paper", "ours", "holds?"])


# ============================================================================================ summary
def training_summary(metrics: pd.DataFrame, cols: Sequence[str]) -> pd.DataFrame:
    """Per (model, method, step): mean and std over seeds of `cols` (the data behind a training-curve figure)."""
    g = metrics.groupby(["model", "method", "step"], sort=False)[list(cols)]
    mean = g.mean().add_suffix("_mean")
    std = g.std(ddof=1).add_suffix("_std")
    n = g.size().rename("seeds")
    return pd.concat([mean, std, n], axis=1).reset_index()


def cost_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per (model, method): generated / prefill / trained tokens and wall seconds per run (mean over seeds)."""
    cols = [c for c in ("gen_tokens", "prefill_tokens", "trained_tokens", "time_step") if c in metrics]
    per_run = metrics.groupby(["model", "method", "seed"], sort=False)[cols].sum()
    return per_run.groupby(["model", "method"], sort=False).mean().reset_index()


# ========================================================================================== artefacts
class Clock:
    """Wall time since construction (a notebook starts one in its first cell)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")

    @property
    def seconds(self) -> float:
        return round(time.perf_counter() - self.start, 1)


def git_sha(root: str | Path = REPO_ROOT) -> str:
    """HEAD's commit, with "-dirty" when the working tree has changes; "unknown" outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def package_versions(names: Sequence[str] = ("fr3e", "torch", "transformers", "accelerate", "numpy", "pandas",
                                            "matplotlib", "papermill")) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def provenance(runs: Iterable[RunInfo | str | Path] = (), profile: str = "tiny", clock: Clock | None = None,
               parameters: dict | None = None, **extra) -> dict:
    """What produced an artefact: run dirs, git sha, profile, wall time, package versions, parameters."""
    record = {
        "run_dirs": [str(d) for d in run_dirs(runs)],
        "git_sha": git_sha(),
        "profile": profile,
        "wall_seconds": clock.seconds if clock else None,
        "started_at": clock.started_at if clock else None,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "packages": package_versions(),
        "parameters": parameters or {},
    }
    record.update(extra)
    return record


def figure_png(figure, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes (dpi capped at 110 to keep committed results small)."""
    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=min(dpi, 110), bbox_inches="tight")
    return buf.getvalue()


def write_artefact(out_dir: str | Path, data: pd.DataFrame, summary: dict, figure, provenance: dict,
                   dpi: int = 100) -> Path:
    """Write data.csv, summary.json, figure.png (dpi ≤ 110) and provenance.json into `out_dir`, atomically.

    `summary` may hold DataFrames (written as lists of records). Returns `out_dir`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "data.csv", data.to_csv(index=not isinstance(data.index, pd.RangeIndex)))
    atomic_write_json(out_dir / "summary.json", _jsonable(summary))
    atomic_write_bytes(out_dir / "figure.png", figure_png(figure, dpi))
    atomic_write_json(out_dir / "provenance.json", _jsonable(provenance))
    logger.info("artefact written to %s", out_dir)
    return out_dir


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, pd.DataFrame):
        frame = obj.reset_index() if not isinstance(obj.index, pd.RangeIndex) else obj
        return _jsonable(frame.to_dict(orient="records"))
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


# ========================================================================================= walkthrough
def walkthrough(
    model_dir: str | Path,
    problem_index: int = 0,
    k: int = 4,
    m: int = 16,
    seed: int = 0,
    split: str = "medium",
    max_new_tokens: int = 128,
    temperature: float = 1.0,
) -> dict:
    """One FR3E step on one problem, by hand, returned as a samples.jsonl row (plus a few extras).

    Samples one base trajectory τ from the model at `model_dir` for problem `problem_index` of `split`,
    computes its token entropies (`fr3e.entropy.token_entropy`), the top-k anchors
    (`fr3e.anchors.select_anchors`), the states S_0..S_k (`fr3e.branching.build_states`), m continuations
    per state, their rewards (prefix ⊕ continuation scored), V(S_j) with Wilson 95% intervals
    (`fr3e.values`), α for both variants (`fr3e.modulation.modulation_factors`) and A = α_paper · Â
    (`fr3e.advantages.group_advantages`). Deterministic in `seed`.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from fr3e.advantages import group_advantages
    from fr3e.anchors import eligible_positions, select_anchors
    from fr3e.branching import build_states
    from fr3e.engines.hf import HFEngine
    from fr3e.entropy import token_entropy
    from fr3e.modulation import modulation_factors
    from fr3e.rewards import reward
    from fr3e.tasks.arithmetic import make_split
    from fr3e.tasks.tokenizer import load_tokenizer
    from fr3e.values import state_values, wilson_interval

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tokenizer = load_tokenizer(model_dir)
    problem = make_split(split, problem_index + 1)[problem_index]
    prompt_ids = tokenizer(problem["prompt"]).input_ids
    engine = HFEngine(model, tokenizer)

    # First return: one base trajectory and its token entropies.
    base = engine.generate([prompt_ids], n=1, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)[0][0]
    response = list(base.token_ids)
    T = len(response)
    with torch.no_grad():
        ids = torch.tensor([prompt_ids + response])  # (1, P + T)
        logits = model(input_ids=ids).logits[:, len(prompt_ids) - 1: len(prompt_ids) - 1 + T]  # (1, T, V)
    entropy = token_entropy(logits)  # (1, T) nats
    mask = eligible_positions(torch.ones(1, T, dtype=torch.bool),
                              torch.tensor([base.finish_reason == "stop"]))  # (1, T)
    anchors = select_anchors(entropy, mask, k)[0]  # (k,) ascending, -1 = none
    anchor_list = [int(a) for a in anchors.tolist() if a >= 0]

    def text(ids_: list[int]) -> str:
        return tokenizer.decode(ids_, skip_special_tokens=True)

    base_reward = reward(text(response), problem["answer"])

    # Entropy-eliciting explore: m continuations from every state, scored on prefix ⊕ continuation.
    states = build_states(0, prompt_ids, [(0, response, anchor_list)])
    conts = engine.generate([s.prefix_ids for s in states], n=m, max_new_tokens=max_new_tokens,
                            temperature=temperature, seed=seed + 1)
    rewards = torch.tensor([[reward(text(response[: s.anchor] + c.token_ids), problem["answer"]) for c in row]
                            for s, row in zip(states, conts)])  # (S, m)
    values = state_values(rewards)  # (S,)
    low, high = wilson_interval(rewards.sum(-1), m)  # (S,), (S,)
    alpha = {v: modulation_factors(values, v) for v in ("paper", "official")}  # chain S_0..S_k, (S,) each
    adv_hat = group_advantages(rewards)  # (S, m)
    adv = alpha["paper"][:, None] * adv_hat  # (S, m)

    state_rows = []
    for j, s in enumerate(states):
        state_rows.append({
            "key": [s.key.prompt_id, s.key.trajectory_id, s.key.state_index],
            "anchor": s.anchor,
            "prefix_text": text(response[: s.anchor]),
            "rewards": rewards[j].tolist(),
            "value": float(values[j]),
            "value_ci": [float(low[j]), float(high[j])],
            "alpha": {"paper": float(alpha["paper"][j]), "official": float(alpha["official"][j])},
            "advantages": [round(float(a), 6) for a in adv[j]],
            "examples": [text(c.token_ids) for c in conts[j][:2]],
        })
    return {
        "step": 0,
        "prompt": problem["prompt"],
        "answer": problem["answer"],
        "trajectories": [{
            "trajectory_id": 0,
            "tokens": [tokenizer.decode([t]) for t in response],
            "entropy": [round(float(h), 5) for h in entropy[0]],
            "scores": [round(float(h), 5) for h in entropy[0]],
            "anchors": anchor_list,
            "reward": float(base_reward),
        }],
        "states": state_rows,
        "settings": {"model_dir": str(model_dir), "split": split, "problem_index": problem_index, "k": k, "m": m,
                     "seed": seed, "max_new_tokens": max_new_tokens, "temperature": temperature,
                     "advantages": "A = alpha_paper * (r - mean)"},
    }


def walkthrough_sample(profile: str = "tiny", model: str = "general", problem_index: int | None = None, k: int = 4,
                       m: int = 16, seed: int = 0, cache_dir: str | Path = DEFAULT_CACHE,
                       runs_root: str | Path = "runs", max_tries: int = 20) -> dict:
    """The walkthrough's annotated sample. tiny: `walkthrough` on the warm-started base model `model`, on
    problem `problem_index`, or (None) on the first of `max_tries` problems whose state values differ (so α
    has something to show; the last one tried otherwise); paper: the first annotated sample (with anchors)
    of the FR3E run of `model` and `seed` under `runs_root` (a 7B model is not sampled by hand here)."""
    if profile == "tiny":
        model_dir = tiny_model_dir(model, cache_dir)
        if problem_index is not None:
            return walkthrough(model_dir, problem_index=problem_index, k=k, m=m, seed=seed)
        for i in range(max_tries):
            sample = walkthrough(model_dir, problem_index=i, k=k, m=m, seed=seed)
            if len({s["value"] for s in sample["states"]}) > 1:
                break
        logger.info("walkthrough: problem %d (first whose state values differ)", i)
        return sample
    found = sorted((Path(runs_root) / profile).glob(f"fr3e-{safe_name(model)}-s{seed}-*"))
    if not found:
        raise FileNotFoundError(f"no FR3E run of {model} (seed {seed}) under {Path(runs_root) / profile}; run the "
                                "table1 notebook (python -m fr3e.reproduce table1) first")
    return first_sample(found[0], step=-1)


def walkthrough_table(sample: dict, trajectory_id: int | None = None) -> pd.DataFrame:
    """One row per state of a samples row: j, anchor, prefix, V with CI, α (both variants), mean |A|."""
    traj = sample["trajectories"][0] if trajectory_id is None else \
        next(t for t in sample["trajectories"] if t["trajectory_id"] == trajectory_id)
    tid = traj["trajectory_id"]
    rows = []
    for s in sample["states"]:
        if s["key"][1] not in (-1, tid):
            continue
        adv = s.get("advantages") or []
        rows.append({"state": f"S_{s['key'][2]}", "anchor": s["anchor"],
                     "prefix (response so far)": s["prefix_text"][-40:],
                     "V": s["value"], "V_low": s["value_ci"][0], "V_high": s["value_ci"][1],
                     "alpha_paper": s["alpha"]["paper"], "alpha_official": s["alpha"]["official"],
                     "mean_|A|": float(np.mean(np.abs(adv))) if adv else math.nan,
                     "right": int(sum(s["rewards"])), "M": len(s["rewards"])})
    return pd.DataFrame(rows)


def describe_runs(runs: Sequence[RunInfo]) -> str:
    """One line per run (used in notebook logs)."""
    return "\n".join(f"{r.method:8s} {r.model:10s} seed {r.seed} steps {r.steps} {'done' if r.done else 'pending'} "
                     f"{r.run_dir}" for r in runs)


# ====================================================================================== results README
ARTEFACT_TITLES = {
    "walkthrough": "Method walkthrough (Fig. 1 made concrete)",
    "table1": "Table 1: accuracy per base model",
    "entropy": "Entropy dynamics (Fig. 3)",
    "length": "Response length (Fig. 4)",
    "advantage": "Advantage distribution (Fig. 5)",
    "all_right": "All-Right / All-Wrong composition (Figs. 7-8)",
}


def _md_table(rows: list[dict], columns: Sequence[str]) -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return head + "".join("| " + " | ".join(str(r.get(c, "")) for c in columns) + " |\n" for r in rows)


def results_readme(results_dir: str | Path) -> str:
    """`results/README.md` from the artefacts' summary.json files: claims, what we measured, whether it held.

    Written from the files alone (no numbers typed by hand), so it always matches the committed results.
    """
    results_dir = Path(results_dir)
    record = {}
    if (results_dir / "reproduce.json").exists():
        record = json.loads((results_dir / "reproduce.json").read_text())
    total = record.get("total_seconds")
    lines = ["# Results of the tiny-profile reproduction", "",
             "Written by `make reproduce` (`python -m fr3e.reproduce`) from the `summary.json` of each artefact; "
             "every number comes from the runs named in that folder's `provenance.json`, whose configs and "
             "environments sit in the run directories. The tiny profile is a CPU miniature of the paper's "
             "pipeline (generated arithmetic, a 0.4M-parameter model): its numbers test the mechanics and the "
             "direction of each claim, not the paper's magnitudes.", ""]
    if record:
        lines += [f"Profile `{record.get('profile')}` ({record.get('profile_reason')}), git `{record.get('git_sha')}`, "
                  f"total wall time {total:.0f} s." if total else "", ""]
    lines += [f"Statistics: {STATISTICS}", ""]
    for artefact, title in ARTEFACT_TITLES.items():
        path = results_dir / artefact / "summary.json"
        if not path.exists():
            continue
        summary = json.loads(path.read_text())
        lines += [f"## {title}", "", f"Folder `{artefact}/`: `figure.png`, `data.csv`, `summary.json`, "
                  "`provenance.json` and the executed notebook.", ""]
        if artefact == "table1" and summary.get("table"):
            cols = [c for c in ("model", "system", "easy", "medium", "hard", "avg", "seeds") if c in summary["table"][0]]
            lines += ["avg@16 in % (mean ± std over seeds):", "", _md_table(summary["table"], cols)]
            if summary.get("deltas"):
                rows = [{**d, "delta": f"{d['delta']:+.1f}",
                         "95% CI": "n/a" if d.get("ci_low") is None else f"[{d['ci_low']:+.1f}, {d['ci_high']:+.1f}]"}
                        for d in summary["deltas"]]
                lines += ["FR3E − GRPO++ (points):", "", _md_table(rows, ["model", "benchmark", "delta", "95% CI"])]
        claims = summary.get("claims") or []
        if claims:
            lines += [_md_table(claims, ["claim", "paper", "ours", "holds?"])]
    return "\n".join(lines).rstrip() + "\n"


def write_results_readme(results_dir: str | Path) -> Path:
    path = Path(results_dir) / "README.md"
    atomic_write_text(path, results_readme(results_dir))
    return path
