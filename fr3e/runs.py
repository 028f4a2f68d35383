"""Run directories: launch the runs an artefact needs, reuse finished ones, read what they wrote.

- **Runs.** `ensure_runs` asks for every (arm × base model × seed) run. An arm is a method's recipe
  ("grpo_pp", "fr3e") or a control (`CONTROLS`: GRPO++ with a coin-flip reward, GRPO++ with as many
  rollouts as FR3E generates tokens). A finished run (its `DONE` file exists) is reused, an interrupted one
  resumes (the trainer does this per run directory), missing ones are trained in parallel worker processes
  (`python -m fr3e.train`, one per core with one thread each; warm starts of the tiny base models first).
  Run directories are named deterministically: `<runs_root>/<profile>/<arm>-<model>-s<seed>-<steps>[-hash]`.
  Each job's log is `<runs_root>/logs/<job>.log`; `<runs_root>/progress.json` holds every job's state, which
  `progress_line` turns into "runs done / total, steps, estimated remaining" (`fr3e.reproduce` prints it).
  A study whose runs evaluate a few problems during training can ask for a larger evaluation of each final
  model (`final_eval_problems`): one more job per run, written to `<run_dir>/final_eval-p<problems>.json`.
- **Loaders.** `load_metrics`, `load_evals`, `load_final_evals`, `load_samples` read `metrics.jsonl`,
  `eval.jsonl` and `samples.jsonl` into pandas, tagged with `method`, `arm`, `model`, `seed` and `run` from
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

from fr3e.config import recipe_dir
from fr3e.io import atomic_write_json, read_jsonl

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = recipe_dir()

METHODS = ("grpo_pp", "fr3e")
"""Methods in display order (baseline first)."""

# ================================================================================================ arms
@dataclasses.dataclass(frozen=True)
class Control:
    """A control arm of Table 1: a method's recipe with extra overrides, trained and shown as its own row.

    arm: prefix of its run names and its value in the loaders' `arm` column; method: whose recipe it trains;
    label: its Table 1 row; overrides: added to every run of the arm; max_seeds / max_models: only the first
    seeds / base models of the study (None = all); matched_to: an arm whose measured generated tokens per
    prompt set this arm's `grpo.rollouts_per_prompt` (`matched_group_size`), so its runs of a base model wait
    for that arm's runs of the same base model.
    """

    arm: str
    method: str
    label: str
    overrides: tuple[str, ...] = ()
    max_seeds: int | None = None
    max_models: int | None = None
    matched_to: str | None = None


CONTROLS = {
    # issue 11 §4: what RL without signal does here; same recipe, 3 seeds, the general base model only.
    "coin": Control("grpo_pp_coin", "grpo_pp", "GRPO++ (coin reward)", ("reward=coin",), max_seeds=3, max_models=1),
    # issue 11 §4: GRPO++ sampling as many tokens per prompt as FR3E (the paper's baseline samples far fewer).
    "matched": Control("grpo_pp_matched", "grpo_pp", "GRPO++ (matched rollouts)", matched_to="fr3e"),
}
"""The control arms a study may add (`ensure_runs(controls=...)`), by short name."""

ARM_LABELS = {"grpo_pp": "GRPO++", "fr3e": "FR3E", **{c.arm: c.label for c in CONTROLS.values()}}
"""Arm -> Table 1 row label."""


def arm_of(name: str, method: str) -> str:
    """The arm of a run from its name: the name's first dash-separated part when it extends the method's name
    ("grpo_pp_coin-general-s0-60" -> "grpo_pp_coin"), else the method (runs named any other way)."""
    prefix = name.split("-", 1)[0]
    return prefix if prefix.startswith(method) else method


def matched_group_size(metrics: pd.DataFrame) -> tuple[int, float]:
    """(G, ratio): the GRPO++ group size that generates as many tokens per sampled prompt as FR3E did.

    metrics: FR3E `metrics.jsonl` rows with gen_tokens (every token the step generated: base trajectories and
    the continuations of every state, refill rounds included), prompts_used (prompts sampled, refills
    included) and base_length (mean length of a base trajectory, i.e. of a full response from the prompt).
    ratio = Σ gen_tokens / Σ (prompts_used · base_length): full responses' worth of tokens per prompt, which
    is what a GRPO++ group of G rollouts generates. Measured rather than derived from the recipe because
    how many states a prompt gets (≤ keep_right + keep_wrong trajectories × K anchors) and how long their
    continuations are depend on the model. G = the ratio rounded, at least 2 (a group needs two rollouts).
    """
    need = ["gen_tokens", "prompts_used", "base_length"]
    missing = [c for c in need if c not in metrics]
    if missing or metrics.empty:
        raise ValueError(f"matched rollouts need FR3E metrics with {need}; missing {missing or 'all rows'}")
    rows = metrics.dropna(subset=need)
    full = float((rows["prompts_used"] * rows["base_length"]).sum())
    if full <= 0:
        raise ValueError("matched rollouts: the FR3E runs logged no base trajectories (prompts_used · base_length "
                         "sums to 0)")
    ratio = float(rows["gen_tokens"].sum()) / full
    return max(2, int(round(ratio))), ratio


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
    arm: str = ""  # "grpo_pp" | "fr3e" | a control arm (CONTROLS); "" = the method

    def __post_init__(self) -> None:
        if not self.arm:
            object.__setattr__(self, "arm", self.method)

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


def run_name(method: str, model: str, seed: int, steps: int, overrides: Sequence[str] = (),
             arm: str | None = None) -> str:
    """Deterministic run name, e.g. "fr3e-general-s0-60"; extra overrides add a short hash of themselves, a
    control arm replaces the method ("grpo_pp_coin-general-s0-60-1a2b3c4d")."""
    name = f"{arm or method}-{safe_name(model)}-s{seed}-{steps}"
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


def train_command(recipe: Path, overrides: Sequence[str], run_dir: Path,
                  cache_dir: str | Path = DEFAULT_CACHE) -> list[str]:
    """The `python -m fr3e.train ...` command line of one single-process run."""
    cmd = [sys.executable, "-m", "fr3e.train", "--config", str(recipe), "--run-dir", str(run_dir),
           "--cache-dir", str(cache_dir), "--no-progress"]
    for item in overrides:
        cmd += ["--set", item]
    return cmd


@dataclasses.dataclass
class Job:
    """One unit of work of `ensure_runs`: a warm start (tiny base model) or a training run.

    key: stable name ("warm-start-general", or "<arm>-<model>-s<seed>" for a run: a matched-rollouts run's
    directory is known only once the runs it is matched to have finished); deps: keys that must finish first;
    info / overrides: the run (None until resolved, and for a warm start).
    """

    key: str
    kind: str  # "warm_start" | "run" | "eval" (the final model of the run `deps[-1]`, `final_eval`)
    model: str
    deps: list[str] = dataclasses.field(default_factory=list)
    info: RunInfo | None = None
    overrides: list[str] | None = None
    resolve: Callable[[], tuple[RunInfo, list[str]]] | None = None
    eval_problems: int | None = None  # kind "eval": problems per split
    expected_steps: int | None = None  # an unresolved run's steps, for the progress line (its targets' steps)

    @property
    def done(self) -> bool:
        if self.kind == "warm_start":
            return False
        if self.kind == "eval":
            return self.info is not None and final_eval_path(self.info.run_dir, self.eval_problems).exists()
        return self.info is not None and self.info.done


def subprocess_env(threads: int) -> dict[str, str]:
    """Environment of a worker process: `threads` OpenMP / MKL threads, passive waiting.

    Measured on 2 cores: two processes with 2 threads each ran ~10× slower than with 1 thread each, because
    OpenMP threads busy-wait for each other (OMP_WAIT_POLICY=PASSIVE makes them sleep)."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "OMP_WAIT_POLICY": "PASSIVE", "TOKENIZERS_PARALLELISM": "false"}


def default_workers() -> int:
    """Parallel worker processes: `$FR3E_WORKERS` when set (e.g. 1 on a machine shared with other jobs), else
    one per available core."""
    if os.environ.get("FR3E_WORKERS"):
        return max(1, int(os.environ["FR3E_WORKERS"]))
    return _cores()


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


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
    controls: Sequence[str | Control] = (),
    workers: int | None = None,
    command: Callable[[Job], list[str]] | None = None,
    final_eval_problems: int | None = None,
) -> list[RunInfo]:
    """Every (arm × model × seed) run, trained if missing, reused if finished, resumed if interrupted.

    recipes: method -> YAML recipe, or method -> {model: recipe} (see `recipes(profile)`);
    models: base models ("general", "math"); seeds: training seeds; steps: training steps (None = the
    recipe's); runs_root: parent of `<profile>/`, `logs/` and `progress.json`;
    overrides: extra `key=value` overrides for every run (they add a hash to the run names);
    eval_n / eval_problems: samples per problem / problems per benchmark of the evaluation (`data.eval_n`,
    `data.eval_problems`; None = the recipe's);
    controls: control arms to add, by name in `CONTROLS` ("coin", "matched") or as `Control`s;
    workers: runs trained at once, each in its own `python -m fr3e.train` process with cores / workers
    threads (default: one per core, 1 thread each); warm starts of tiny base models run first, as jobs of
    the same pool. A failed run stops the others (they resume later) and raises with its log tail.
    accelerate_config: launch each run with `accelerate launch`, one at a time (default:
    `$ACCELERATE_CONFIG` if set); cache_dir: warm-started base models (tiny profile);
    launcher: train in-process, one run at a time, with `(config, run_dir, progress, cache_dir)` (tests fake
    it); command: `Job -> argv` instead of `train_command` (tests fake it).
    final_eval_problems: also evaluate each finished run's final model on this many problems per split
    (`final_eval`, one job per run, scheduled as soon as its run is done; read with `load_final_eval`).
    Progress (runs done / total, steps, estimated remaining) goes to the log and `<runs_root>/progress.json`.
    Returns one RunInfo per run: methods in `recipes` order, then the controls; models, then seeds.
    """
    accelerate_config = accelerate_config or os.environ.get("ACCELERATE_CONFIG") or None
    extra = _eval_overrides(overrides, eval_n, eval_problems)
    cache_dir = Path(cache_dir).resolve()
    runs_root = Path(runs_root)
    jobs = plan_jobs(recipes, models, seeds, steps, runs_root, extra, controls, cache_dir,
                     warm_starts=launcher is None and accelerate_config is None,
                     final_eval_problems=final_eval_problems)
    runs = [j for j in jobs if j.kind == "run"]
    if launcher is not None:
        workers = 1
        start = _in_process_starter(launcher, progress, cache_dir)
    else:
        workers = 1 if accelerate_config else (workers or default_workers())
        threads = max(1, _cores() // workers)
        if command is None:
            def command(job: Job) -> list[str]:
                return _default_command(job, accelerate_config, cache_dir)
        start = _subprocess_starter(command, subprocess_env(threads), runs_root / "logs")
    todo = sum(not j.done for j in runs)
    logger.info("%d runs requested under %s: %d finished, %d to train (%d at a time)", len(runs), runs_root,
                len(runs) - todo, todo, workers)
    _Scheduler(jobs, start, workers, Status(runs_root / "progress.json")).run()
    return [j.info for j in runs]


def plan_jobs(recipes: dict, models: Sequence[str], seeds: Sequence[int], steps: int | None, runs_root: Path,
              extra: Sequence[str], controls: Sequence[str | Control] = (), cache_dir: Path = DEFAULT_CACHE,
              warm_starts: bool = True, final_eval_problems: int | None = None) -> list[Job]:
    """The jobs of a study in scheduling order: warm starts, the final evaluations (each waits for its run),
    the runs other runs are matched to, the runs matched to them, the rest; each run's config is loaded (and
    its method checked) here."""
    from fr3e.config import load_config

    def plan(arm: str, method: str, model: str, seed: int, arm_overrides: Sequence[str]) -> tuple[RunInfo, list]:
        recipe = _recipe_for(recipes[method], model)
        ov = [f"model.base={model}", f"seed={seed}"] + ([f"steps={steps}"] if steps is not None else [])
        config = load_config(recipe, ov + list(extra) + list(arm_overrides))
        if config.method != method:
            raise ValueError(f"recipe {recipe} trains method {config.method!r} but is listed as {method!r}")
        name = run_name(method, model, seed, config.steps, [*extra, *arm_overrides],
                        arm=None if arm == method else arm)
        info = RunInfo(method, model, seed, config.steps, runs_root / config.profile / name, recipe, arm)
        if warm_starts and config.profile == "tiny":
            warm.setdefault(model, config.model.base)
        return info, ov + list(extra) + list(arm_overrides) + [f"name={name}"]

    warm: dict[str, str] = {}
    main: list[Job] = []
    for method in recipes:
        for model in models:
            for seed in seeds:
                info, ov = plan(method, method, model, seed, ())
                main.append(Job(f"{method}-{safe_name(model)}-s{seed}", "run", model, info=info, overrides=ov))
    extra_jobs: list[Job] = []
    for control in controls:
        c = CONTROLS[control] if isinstance(control, str) else control
        if c.method not in recipes:
            raise ValueError(f"control {c.arm!r} trains {c.method!r}, which has no recipe among {list(recipes)}")
        for model in models[:c.max_models]:
            for seed in seeds[:c.max_seeds]:
                key = f"{c.arm}-{safe_name(model)}-s{seed}"
                if c.matched_to is None:
                    info, ov = plan(c.arm, c.method, model, seed, c.overrides)
                    extra_jobs.append(Job(key, "run", model, info=info, overrides=ov))
                    continue
                targets = [j for j in main if j.info.arm == c.matched_to and j.model == model]
                if not targets:
                    raise ValueError(f"control {c.arm!r} is matched to arm {c.matched_to!r}, which has no runs")

                def resolve(c=c, model=model, seed=seed, targets=targets):
                    g, ratio = matched_group_size(load_metrics([t.info for t in targets]))
                    logger.info("%s on %s: G = %d (FR3E generated %.2f full responses' worth of tokens per "
                                "prompt over %d runs)", c.arm, model, g, ratio, len(targets))
                    return plan(c.arm, c.method, model, seed, [*c.overrides, f"grpo.rollouts_per_prompt={g}"])

                job = Job(key, "run", model, deps=[t.key for t in targets], resolve=resolve,
                          expected_steps=targets[0].info.steps)
                if all(t.done for t in targets):  # known now: the directory shows as finished or resumable
                    job.info, job.overrides = resolve()
                    job.resolve = None
                extra_jobs.append(job)
    warm_jobs = []
    for model, base in warm.items():
        needed = any(not j.done for j in main + extra_jobs if j.model == model)
        if needed and not _warm_start_cached(base, cache_dir):
            warm_jobs.append(Job(f"warm-start-{safe_name(model)}", "warm_start", base))
    for job in main + extra_jobs:
        job.deps += [w.key for w in warm_jobs if w.model == warm.get(job.model)]
    matched_targets = {d for j in extra_jobs for d in j.deps if not d.startswith("warm-start-")}
    first = [j for j in main if j.key in matched_targets]
    dependent = [j for j in extra_jobs if any(d in matched_targets for d in j.deps)]
    rest = [j for j in main + extra_jobs if j not in first and j not in dependent]
    evals = []
    if final_eval_problems:
        for job in first + dependent + rest:
            evals.append(Job(f"eval-{job.key}", "eval", job.model, deps=[job.key], info=job.info,
                             resolve=None if job.info else (lambda job=job: (job.info, [])),
                             eval_problems=final_eval_problems))
    return warm_jobs + evals + first + dependent + rest


def _warm_start_cached(base: str, cache_dir: Path) -> bool:
    """True when the tiny base model `base` needs no training (a directory, or its warm start is cached)."""
    if Path(base).is_dir():
        return True
    from fr3e.tasks.warm_start import BASE_MODELS, config_hash

    if base not in BASE_MODELS:
        return True  # the trainer names the problem itself
    return (cache_dir / f"{base}-{config_hash(base, BASE_MODELS[base], 0)}" / "warm_start.json").exists()


def _default_command(job: Job, accelerate_config, cache_dir: Path) -> list[str]:
    if job.kind == "warm_start":
        # The trainer warm-starts with the default seed (0) whatever the run's seed: one base model per name.
        code = ("import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stdout); "
                "from fr3e.tasks.warm_start import warm_start; "
                f"warm_start({job.model!r}, cache_dir={str(cache_dir)!r}, progress=False, threads=1)")
        return [sys.executable, "-c", code]
    info = job.info
    if job.kind == "eval":
        code = ("import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stdout); "
                "from fr3e.runs import final_eval; "
                f"final_eval({str(info.run_dir.resolve())!r}, {job.eval_problems!r}, cache_dir={str(cache_dir)!r})")
        return [sys.executable, "-c", code]
    if accelerate_config:
        return accelerate_command(accelerate_config, info.recipe, job.overrides, info.run_dir.resolve(), cache_dir)
    return train_command(info.recipe, job.overrides, info.run_dir.resolve(), cache_dir)


# ------------------------------------------------------------------------------------------- scheduler
class _Handle:
    """A started job: `poll()` is None while it runs, else its exit status."""

    def __init__(self, proc: subprocess.Popen | None = None, log: Path | None = None, rc: int | None = None):
        self.proc, self.log, self.rc = proc, log, rc

    def poll(self) -> int | None:
        return self.proc.poll() if self.proc is not None else self.rc

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _subprocess_starter(command: Callable[[Job], list[str]], env: dict, log_dir: Path) -> Callable[[Job], _Handle]:
    def start(job: Job) -> _Handle:
        log_dir.mkdir(parents=True, exist_ok=True)
        log = log_dir / f"{job.key}.log"
        cmd = command(job)
        with open(log, "a") as fh:
            fh.write(f"\n$ {shlex.join(cmd)}\n")
            fh.flush()
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=Path.cwd())
        return _Handle(proc, log)
    return start


def _in_process_starter(launcher, progress: bool, cache_dir: Path) -> Callable[[Job], _Handle]:
    from fr3e.config import load_config

    def start(job: Job) -> _Handle:
        if job.kind == "warm_start":
            tiny_model_dir(job.model, cache_dir)
        elif job.kind == "eval":
            final_eval(job.info.run_dir, job.eval_problems, cache_dir)
        else:
            launcher(load_config(job.info.recipe, job.overrides), job.info.run_dir, progress, cache_dir)
        return _Handle(rc=0)
    return start


def _log_tail(path: Path | None, lines: int = 40) -> str:
    if path is None or not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _steps_done(run_dir: Path) -> int:
    """Training steps a run directory has logged (lines of metrics.jsonl)."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return 0
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


class _Scheduler:
    """Start ready jobs (dependencies finished) in plan order, at most `workers` at once, until all are done."""

    POLL_S = 0.2
    STEPS_EVERY_S = 5.0

    def __init__(self, jobs: list[Job], start: Callable[[Job], _Handle], workers: int, status: Status):
        self.jobs, self.start, self.workers, self.status = jobs, start, workers, status
        self.finished: set[str] = set()
        self.running: dict[str, tuple[Job, _Handle, float]] = {}
        self.total = sum(j.kind == "run" for j in jobs)

    def run(self) -> None:
        pending = []
        for job in self.jobs:
            if job.done:
                self.finished.add(job.key)
                self.status.set(job, "reused", steps_done=job.info.steps)
            else:
                pending.append(job)
                self.status.set(job, "pending")
        self.status.write(self.workers)
        last_steps = 0.0
        try:
            while pending or self.running:
                for job in [j for j in pending if all(d in self.finished for d in j.deps)]:
                    if len(self.running) >= self.workers:
                        break
                    pending.remove(job)
                    self._launch(job)
                for job, handle, t0 in list(self.running.values()):
                    rc = handle.poll()
                    if rc is not None:
                        self._finish(job, handle, rc, t0)
                if time.monotonic() - last_steps >= self.STEPS_EVERY_S:
                    last_steps = time.monotonic()
                    for job, _, _ in self.running.values():
                        if job.kind == "run":
                            self.status.set(job, "running", steps_done=_steps_done(job.info.run_dir))
                    self.status.write(self.workers)
                if pending and not self.running and not any(all(d in self.finished for d in j.deps) for j in pending):
                    raise RuntimeError(f"jobs {[j.key for j in pending]} wait on jobs that never ran")
                if self.running:
                    time.sleep(self.POLL_S)
        except BaseException:
            for job, handle, _ in self.running.values():
                handle.stop()
                self.status.set(job, "stopped")
            self.status.write(self.workers)
            raise

    def _launch(self, job: Job) -> None:
        if job.resolve is not None:
            job.info, job.overrides = job.resolve()
            job.resolve = None
            if job.done:
                self.finished.add(job.key)
                self.status.set(job, "reused", steps_done=job.info.steps)
                return
        if job.kind == "run":
            state = "resuming" if (job.info.run_dir / "metrics.jsonl").exists() else "training"
            logger.info("%s: %s (%d steps)", job.info.run_dir.name, state, job.info.steps)
            self.status.set(job, "running", steps_at_start=_steps_done(job.info.run_dir), started=time.time())
        else:
            logger.info("%s: %s", job.key, "evaluating the final model" if job.kind == "eval" else
                        "training the base model")
            self.status.set(job, "running", started=time.time())
        self.status.write(self.workers)
        t0 = time.perf_counter()
        self.running[job.key] = (job, self.start(job), t0)

    def _finish(self, job: Job, handle: _Handle, rc: int, t0: float) -> None:
        del self.running[job.key]
        seconds = time.perf_counter() - t0
        if rc != 0 or (job.kind == "run" and not job.done):
            self.status.set(job, "failed", seconds=round(seconds, 1))
            why = f"exited with status {rc}" if rc != 0 else "ended without writing DONE"
            raise RuntimeError(f"{job.key} {why}; last lines of {handle.log}:\n{_log_tail(handle.log)}\n"
                               "Fix the cause and re-run: finished runs are reused, interrupted ones resume.")
        self.finished.add(job.key)
        self.status.set(job, "done", seconds=round(seconds, 1),
                        **({"steps_done": job.info.steps} if job.kind == "run" else {}))
        self.status.write(self.workers)
        if job.kind == "run":
            logger.info("%s: done in %.0f s; %s", job.info.run_dir.name, seconds,
                        progress_line(self.status.read(), time.time()))


# --------------------------------------------------------------------------------------------- progress
class Status:
    """`<runs_root>/progress.json`: the state of every job `ensure_runs` was asked for, merged across calls
    (a driver that runs several notebooks reads it to print one progress line; see `progress_line`)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.jobs = self.read().get("jobs", {})

    def read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def set(self, job: Job, state: str, **fields) -> None:
        entry = self.jobs.get(job.key, {})
        if state == "reused" and entry.get("state") == "done":
            return  # trained earlier in this session: keep counting it as trained
        entry.update({"kind": job.kind, "state": state, **fields})
        if job.info is not None:
            entry.update(steps=job.info.steps, run_dir=str(job.info.run_dir))
        elif job.expected_steps is not None:
            entry.setdefault("steps", job.expected_steps)  # counted in the progress line before it resolves
        self.jobs[job.key] = entry

    def write(self, workers: int) -> None:
        atomic_write_json(self.path, {"updated": time.time(), "workers": workers, "jobs": self.jobs})


def progress_line(status: dict, now: float) -> str:
    """"runs 12/33 done (4 reused), 2 running, steps 1840/3300, about 18 min left" from a progress.json.

    Remaining time = steps still to train / steps trained per second since the first run of this status
    started (steps of runs that were finished or half-done before are not counted as trained now).
    """
    jobs = status.get("jobs", {})
    runs = [j for j in jobs.values() if j.get("kind") == "run"]
    done = sum(j["state"] in ("done", "reused") for j in runs)
    reused = sum(j["state"] == "reused" for j in runs)
    running = sum(j["state"] == "running" for j in runs)
    total_steps = sum(j.get("steps", 0) for j in runs if j["state"] != "reused")
    steps_done = sum(min(j.get("steps_done", 0), j.get("steps", 0)) for j in runs if j["state"] != "reused")
    trained = sum(max(0, j.get("steps_done", 0) - j.get("steps_at_start", 0)) for j in runs
                  if j["state"] in ("running", "done") and "started" in j)
    parts = [f"runs {done}/{len(runs)} done" + (f" ({reused} reused)" if reused else "")]
    if running:
        parts.append(f"{running} running")
    evals = [j for j in jobs.values() if j.get("kind") == "eval"]
    if evals:
        parts.append(f"final evaluations {sum(j['state'] in ('done', 'reused') for j in evals)}/{len(evals)} done")
    warm = [j for j in jobs.values() if j.get("kind") == "warm_start" and j["state"] == "running"]
    if warm:
        parts.append(f"{len(warm)} warm start{'s' if len(warm) > 1 else ''} running")
    if total_steps:
        parts.append(f"steps {steps_done}/{total_steps}")
    starts = [j["started"] for j in runs if "started" in j]  # warm starts before the first run train no steps
    remaining = total_steps - steps_done
    if remaining <= 0:
        parts.append("nothing left to train")
    elif trained and starts and now > min(starts):
        parts.append(f"about {format_duration(remaining * (now - min(starts)) / trained)} left")
    else:
        parts.append("time left: after the first steps")
    return ", ".join(parts)


def format_duration(seconds: float) -> str:
    """"1 h 02 min", "18 min 05 s", "42 s"."""
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h} h {m:02d} min"
    return f"{m} min {s:02d} s" if m else f"{s} s"


def _eval_overrides(overrides: Sequence[str], eval_n: int | None, eval_problems: int | None) -> list[str]:
    return (list(overrides) + ([f"data.eval_n={eval_n}"] if eval_n is not None else [])
            + ([f"data.eval_problems={eval_problems}"] if eval_problems is not None else []))


def run_dirs(runs: Iterable[RunInfo | str | Path]) -> list[Path]:
    """Run directories of RunInfos or paths."""
    return [r.run_dir if isinstance(r, RunInfo) else Path(r) for r in runs]


# ============================================================================================= loaders
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
                                "fr3e.runs.ensure_runs or python -m fr3e.train")
    config = json.loads(path.read_text())
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
    out = {k: v for k, v in row.items() if k not in ("pass", "avg_ci")}
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


def load_samples(run: RunInfo | str | Path, step: int | None = None) -> list[dict]:
    """samples.jsonl rows of one run; `step` = only that step (-1 = the last logged step)."""
    d = run_dirs([run])[0]
    rows = read_jsonl(d / "samples.jsonl")
    if step is None:
        return rows
    if step == -1 and rows:
        step = max(r["step"] for r in rows)
    return [r for r in rows if r["step"] == step]


def final_eval_path(run_dir: str | Path, problems: int) -> Path:
    """Where `final_eval` writes the evaluation of a run's final model on `problems` problems per split."""
    return Path(run_dir) / f"final_eval-p{problems}.json"


def final_eval(run_dir: str | Path, problems: int, cache_dir: str | Path = DEFAULT_CACHE,
               evaluator: Callable[..., dict] | None = None) -> Path:
    """Evaluate a finished run's final model (`<run_dir>/model`) on `problems` problems per split, with every
    other setting of the run's own final evaluation (benchmarks, n, temperature, top-p, response budget,
    sampling seed), and write the rows to `final_eval_path` (atomic). For studies whose runs evaluate fewer
    problems during training (cheap curve points) and need a precise final number. Returns the path."""
    from fr3e.config import TrainConfig, from_dict
    from fr3e.seeds import derive_seed

    run_dir = Path(run_dir)
    if not (run_dir / "DONE").exists():
        raise FileNotFoundError(f"{run_dir} has not finished training (no DONE file); train it first "
                                "(fr3e.runs.ensure_runs or python -m fr3e.train)")
    config = from_dict(TrainConfig, json.loads((run_dir / "config.json").read_text()))
    d = config.data
    if evaluator is None:
        from fr3e.evaluate import evaluate as evaluator
    start = time.perf_counter()
    report = evaluator(run_dir / "model", benchmarks=list(d.eval_benchmarks), n=d.eval_n,
                       temperature=d.eval_temperature, top_p=d.eval_top_p, max_new_tokens=d.max_response_tokens,
                       num_problems=problems, seed=derive_seed(config.seed, "eval"),
                       local_files=d.local_files or None, progress=False)
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
                                    "for it, or call fr3e.runs.final_eval")
        return json.loads(path.read_text())["rows"]

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


# ============================================================================= base-model evaluation
def eval_rows(report: dict, step: int = 0) -> list[dict]:
    """`fr3e.evaluate.evaluate`'s report as eval.jsonl rows (the trainer's shape; see fr3e.evaluate.eval_rows)."""
    from fr3e.evaluate import eval_rows as rows

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
        identity = {**settings, **({"local_files": d.local_files} if d.local_files else {})}
        key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]
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
        # Labelled by the model actually evaluated, as ensure_runs labels runs (model.base may be overridden).
        df["method"], df["model"], df["seed"], df["run"] = "base", safe_name(config.model.base), seed, path.stem
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
    return "\n".join(f"{r.arm:15s} {r.model:10s} seed {r.seed} steps {r.steps} {'done' if r.done else 'pending'} "
                     f"{r.run_dir}" for r in runs)

