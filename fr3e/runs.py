"""Run directories: launch the runs an artefact needs, reuse finished ones, read what they wrote.

- **Runs.** `ensure_runs` asks for every (method recipe × base model × seed) run; a finished run (its
  `DONE` file exists) is reused, a missing one is trained in-process with `fr3e.trainer.train` (or with
  `accelerate launch -m fr3e.train` when an accelerate config is given), an interrupted one resumes.
  Run directories are named deterministically: `<runs_root>/<profile>/<method>-<model>-s<seed>-<steps>`.
- **Loaders.** `load_metrics`, `load_evals`, `load_final_evals`, `load_samples` read `metrics.jsonl`,
  `eval.jsonl` and `samples.jsonl` into pandas, tagged with `method`, `model`, `seed` and `run` from
  `config.json` (`load_metrics` also with `group_size`, the size of a prompt-level rollout group).
- **Base models.** `base_evals` evaluates the warm-started base models (Table 1's "base" rows), cached on disk.

Aggregation, statistics and claims live in `fr3e.results`, `fr3e.stats` and `fr3e.claims`; every public
name here is also importable from `fr3e.results`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pandas as pd

from fr3e.io import atomic_write_json, read_jsonl

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "reproduce" / "configs"

METHODS = ("grpo_pp", "fr3e")
"""Methods in display order (baseline first)."""

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
    """method, model (last path component of model.base), seed, steps, profile, name and group_size of a run.

    group_size: rollouts in one prompt-level group, the group whose All-Right / All-Wrong shares the trainer
    logs as `prompts_*`: FR3E's S_0 group holds `fr3e.continuations_per_state`, GRPO++'s group
    `grpo.rollouts_per_prompt` (None when the config does not say).
    """
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.json); train it with "
                                "fr3e.runs.ensure_runs or python -m fr3e.train")
    config = json.loads(path.read_text())
    size_key = ("fr3e", "continuations_per_state") if config["method"] == "fr3e" else ("grpo", "rollouts_per_prompt")
    group_size = config.get(size_key[0], {}).get(size_key[1])
    return {"method": config["method"], "model": safe_name(config.get("model", {}).get("base", "?")),
            "seed": int(config["seed"]), "steps": int(config["steps"]),
            "profile": config.get("profile", "tiny"), "run": run_dir.name,
            "group_size": int(group_size) if group_size is not None else None}


def load_metrics(runs: Iterable[RunInfo | str | Path]) -> pd.DataFrame:
    """All metrics.jsonl rows of the runs, with columns method, model, seed, run, group_size added."""
    frames = []
    for d in run_dirs(runs):
        meta = run_meta(d)
        rows = read_jsonl(d / "metrics.jsonl")
        if not rows:
            raise ValueError(f"{d}/metrics.jsonl is empty or missing: the run has not trained a step yet")
        df = pd.DataFrame(rows)
        for key in ("method", "model", "seed", "run", "group_size"):
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
        df["method"], df["model"], df["seed"], df["run"] = "base", safe_name(model), seed, path.stem
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _evaluate_paper_base(config, evaluator, settings: dict, cache_dir) -> dict:
    """A paper-profile base model scored exactly as the trainer scores its policy: loaded like the trainer
    loads it (hub id or directory, its own tokenizer, the recipe's dtype, on the GPU when there is one), the
    recipe's engine, the chat-template prompts, the benchmark files of `data.local_files`."""
    import torch

    from fr3e.trainer import build_engine, load_policy

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


def describe_runs(runs: Sequence[RunInfo]) -> str:
    """One line per run (used in notebook logs)."""
    return "\n".join(f"{r.method:8s} {r.model:10s} seed {r.seed} steps {r.steps} {'done' if r.done else 'pending'} "
                     f"{r.run_dir}" for r in runs)

