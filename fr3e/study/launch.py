"""Launching the runs an artefact needs (`ensure_runs`): finished runs are reused, interrupted ones resume,
missing ones train in parallel worker processes (`python -m fr3e.cli.train`, one per core with one thread each;
warm starts of the tiny base models first), and `<runs_root>/progress.json` holds every job's state, which
`progress_line` turns into "runs done / total, steps, estimated remaining". Which runs, named how, with which
command, is decided in `fr3e.study.runs` (`plan_jobs`); this module only executes that plan.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from fr3e.study.jobs import Job, _default_command, plan_jobs
from fr3e.study.loaders import final_eval, tiny_model_dir
from fr3e.study.runs import DEFAULT_CACHE, Control, RunInfo, _eval_overrides
from fr3e.utils.io import atomic_write_json

logger = logging.getLogger(__name__)


def _default_launcher(config, run_dir: Path, progress: bool, cache_dir: Path) -> Path:
    from fr3e.training.trainer import train

    return Path(train(config, run_dir=run_dir, progress=progress, cache_dir=cache_dir))


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


def _on_the_gpu(recipes) -> bool:
    """Whether the recipes run the paper data path (the paper and one-GPU profiles), which trains on the GPU."""
    from fr3e.training.config import load_config

    flat = [p for v in recipes.values() for p in (v.values() if isinstance(v, dict) else [v])]
    return any(load_config(p).profile == "paper" for p in flat)


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
    workers: runs trained at once, each in its own `python -m fr3e.cli.train` process with cores / workers
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
        if workers is None and _on_the_gpu(recipes):
            workers = 1  # paper-data recipes (paper, 1gpu) train on the GPU: one run at a time, never side by side
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
    from fr3e.training.config import load_config

    def start(job: Job) -> _Handle:
        if job.kind == "warm_start":
            tiny_model_dir(job.model, cache_dir, world=job.world)
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
