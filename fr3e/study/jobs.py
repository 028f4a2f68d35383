"""Planning the runs an artefact needs (`plan_jobs`): one `Job` per (arm × base model × seed) run that is not
finished yet, plus a final-evaluation job per run when a study asks for one, each with the command that
runs it. A matched-rollouts control's group size is resolved from its FR3E runs once they have finished.
`fr3e.study.launch` executes the plan.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from fr3e.study.loaders import load_metrics
from fr3e.study.runs import (
    CONTROLS,
    DEFAULT_CACHE,
    Control,
    RunInfo,
    _recipe_for,
    accelerate_command,
    final_eval_path,
    matched_group_size,
    profile_dir,
    run_name,
    safe_name,
    train_command,
)

logger = logging.getLogger(__name__)


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
    world: str = "arithmetic"  # kind "warm_start": the tiny world whose base model `model` is (data.world)

    @property
    def done(self) -> bool:
        if self.kind == "warm_start":
            return False
        if self.kind == "eval":
            return self.info is not None and final_eval_path(self.info.run_dir, self.eval_problems).exists()
        return self.info is not None and self.info.done


def plan_jobs(recipes: dict, models: Sequence[str], seeds: Sequence[int], steps: int | None, runs_root: Path,
              extra: Sequence[str], controls: Sequence[str | Control] = (), cache_dir: Path = DEFAULT_CACHE,
              warm_starts: bool = True, final_eval_problems: int | None = None) -> list[Job]:
    """The jobs of a study in scheduling order: warm starts, the final evaluations (each waits for its run),
    the runs other runs are matched to, the runs matched to them, the rest; each run's config is loaded (and
    its method checked) here."""
    from fr3e.training.config import load_config

    def plan(arm: str, method: str, model: str, seed: int, arm_overrides: Sequence[str]) -> tuple[RunInfo, list]:
        recipe = _recipe_for(recipes[method], model)
        ov = [f"model.base={model}", f"seed={seed}"] + ([f"steps={steps}"] if steps is not None else [])
        config = load_config(recipe, ov + list(extra) + list(arm_overrides))
        if config.method != method:
            raise ValueError(f"recipe {recipe} trains method {config.method!r} but is listed as {method!r}")
        name = run_name(method, model, seed, config.steps, [*extra, *arm_overrides],
                        arm=None if arm == method else arm)
        run_dir = runs_root / profile_dir(config.profile, config.data.world) / name
        info = RunInfo(method, model, seed, config.steps, run_dir, recipe, arm)
        if warm_starts and config.profile == "tiny":
            warm.setdefault(model, (config.model.base, config.data.world))
        return info, ov + list(extra) + list(arm_overrides) + [f"name={name}"]

    warm: dict[str, tuple[str, str]] = {}  # model -> (base model, world)
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
                    info, ov = plan(c.arm, c.method, model, seed, c.overrides_for(model))
                    extra_jobs.append(Job(key, "run", model, info=info, overrides=ov))
                    continue
                targets = [j for j in main if j.info.arm == c.matched_to and j.model == model]
                if not targets:
                    raise ValueError(f"control {c.arm!r} is matched to arm {c.matched_to!r}, which has no runs")

                def resolve(c=c, model=model, seed=seed, targets=targets):
                    g, ratio = matched_group_size(load_metrics([t.info for t in targets]))
                    logger.info("%s on %s: G = %d (FR3E generated %.2f full responses' worth of tokens per "
                                "prompt over %d runs)", c.arm, model, g, ratio, len(targets))
                    return plan(c.arm, c.method, model, seed, [*c.overrides_for(model), f"grpo.rollouts_per_prompt={g}"])

                job = Job(key, "run", model, deps=[t.key for t in targets], resolve=resolve,
                          expected_steps=targets[0].info.steps)
                if all(t.done for t in targets):  # known now: the directory shows as finished or resumable
                    job.info, job.overrides = resolve()
                    job.resolve = None
                extra_jobs.append(job)
    warm_jobs = []
    for model, (base, world) in warm.items():
        needed = any(not j.done for j in main + extra_jobs if j.model == model)
        if needed and not _warm_start_cached(base, cache_dir, world):
            warm_jobs.append(Job(f"warm-start-{safe_name(model)}", "warm_start", base, world=world))
    for job in main + extra_jobs:
        job.deps += [w.key for w in warm_jobs if (w.model, w.world) == warm.get(job.model)]
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


def _warm_start_cached(base: str, cache_dir: Path, world: str = "arithmetic") -> bool:
    """True when the tiny base model `base` of `world` needs no training (a directory, or its warm start is
    cached)."""
    if Path(base).is_dir():
        return True
    from fr3e.tasks.warm_start import base_models, config_hash, directory_name

    models = base_models(world)
    if base not in models:
        return True  # the trainer names the problem itself
    key = config_hash(base, models[base], 0, world)
    return (cache_dir / directory_name(base, key, world) / "warm_start.json").exists()


def _default_command(job: Job, accelerate_config, cache_dir: Path) -> list[str]:
    if job.kind == "warm_start":
        # The trainer warm-starts with the default seed (0) whatever the run's seed: one base model per name.
        code = ("import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stdout); "
                "from fr3e.tasks.warm_start import warm_start; "
                f"warm_start({job.model!r}, cache_dir={str(cache_dir)!r}, progress=False, threads=1, world={job.world!r})")
        return [sys.executable, "-c", code]
    info = job.info
    if job.kind == "eval":
        code = ("import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stdout); "
                "from fr3e.study.loaders import final_eval; "
                f"final_eval({str(info.run_dir.resolve())!r}, {job.eval_problems!r}, cache_dir={str(cache_dir)!r})")
        return [sys.executable, "-c", code]
    if accelerate_config:
        return accelerate_command(accelerate_config, info.recipe, job.overrides, info.run_dir.resolve(), cache_dir)
    return train_command(info.recipe, job.overrides, info.run_dir.resolve(), cache_dir)
