"""The rehearsal's steps in order (`Rehearsal.run`), each recorded in `<dir>/rehearsal.json`, and the
internal subcommands its subprocesses run (`python -m fr3e.cli.rehearsal build-fixture | base-evals | notebook`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from fr3e.rehearsal.checks import check_run, metrics_steps
from fr3e.rehearsal.fixtures import (
    HUB_ID,
    TABLE1_MODEL,
    build_fixture_model,
    hub_env,
    install_hub_cache,
    verify_hub_loading,
)
from fr3e.rehearsal.launch import (
    FULL_SIZES,
    QUICK_SIZES,
    Process,
    Step,
    accelerate_config,
    data_files,
    recipe,
    size_overrides,
    table1_run,
)
from fr3e.utils.io import atomic_write_json
from fr3e.utils.logs import failure_excerpt

logger = logging.getLogger(__name__)


class Rehearsal:
    """Runs the steps in order, records each in `<dir>/rehearsal.json`, prints one progress line per step."""

    def __init__(self, out_dir: Path, quick: bool, timeout: float, cache_dir: Path, stream=sys.stdout):
        self.dir = out_dir.resolve()
        self.quick = quick
        self.timeout = timeout
        self.cache_dir = cache_dir.resolve()
        self.stream = stream
        self.sizes = QUICK_SIZES if quick else FULL_SIZES
        self.hf_home = self.dir / "hf"
        self.runs_root = self.dir / "runs"
        self.logs = self.dir / "logs"
        self.steps: list[Step] = []
        self.start = time.perf_counter()
        self.env = hub_env(self.hf_home)
        self.local = data_files()
        self.benchmark_accuracy = 0.0
        self.fixture_snapshot: Path | None = None

    # ---------------------------------------------------------------------------------------- plumbing
    def say(self, text: str) -> None:
        self.stream.write(f"[rehearsal {time.perf_counter() - self.start:6.1f} s] {text}\n")
        self.stream.flush()

    def record(self, step: Step) -> Step:
        self.steps.append(step)
        mark = {"ok": "ok", "skipped": "SKIPPED"}.get(step.status, step.status.upper())
        self.say(f"{step.name}: {mark} ({step.seconds:.1f} s){' - ' + step.detail.splitlines()[0] if step.detail else ''}")
        if step.status in ("failed", "timeout") and step.detail.count("\n"):
            rest = step.detail.split("\n", 1)[1]
            self.stream.write("    " + rest.replace("\n", "\n    ") + "\n")
        atomic_write_json(self.dir / "rehearsal.json", self.summary())
        return step

    def summary(self) -> dict:
        return {"quick": self.quick, "dir": str(self.dir), "sizes": dataclasses.asdict(self.sizes),
                "seconds": round(time.perf_counter() - self.start, 1),
                "ok": all(s.status == "ok" for s in self.steps),
                "steps": [dataclasses.asdict(s) for s in self.steps]}

    def skipped(self, name: str, why: str) -> Step:
        return self.record(Step(name, "skipped", detail=why))

    def launch(self, name: str, cmd: Sequence[str]) -> Process:
        return Process(cmd, self.logs / f"{name}.log", self.env)

    def finish(self, step: Step, proc: Process, code: int | None, t0: float, what: str) -> bool:
        step.seconds = round(time.perf_counter() - t0, 1)
        step.log = str(proc.log)
        if code is None:
            step.status = "timeout"
            step.detail = (f"{what} did not finish within {self.timeout:.0f} s (killed); last output:\n"
                           + failure_excerpt(proc.output()))
            return False
        if code != 0:
            step.status = "failed"
            step.detail = f"{what} exited with status {code}:\n" + failure_excerpt(proc.output())
            return False
        return True

    # ---------------------------------------------------------------------------------------- steps
    def fixture(self) -> Step:
        step, t0 = Step("fixture model (hub id)"), time.perf_counter()
        log = self.logs / "fixture.log"
        cmd = [sys.executable, "-m", "fr3e.cli.rehearsal", "build-fixture", "--cache-dir", str(self.cache_dir),
               "--hf-home", str(self.hf_home)]
        proc = self.launch("fixture", cmd)
        code = proc.wait(time.monotonic() + self.timeout)
        if not self.finish(step, proc, code, t0, "building and loading the fixture model"):
            return self.record(step)
        info = json.loads(log.read_text().strip().splitlines()[-1])
        step.checks = info
        problems = []
        if info["generation_eos"] != [info["eos_token_id"]] or info["im_end_id"] == info["eos_token_id"]:
            problems.append("EOS layout is not Qwen2.5 base's (generation_config eos = <|endoftext|> only)")
        if "<|im_start|>user" not in info["chat"] or not info["round_trip"]:
            problems.append("chat template or tokenizer round trip")
        step.status = "failed" if problems else "ok"
        self.benchmark_accuracy = info["benchmark_accuracy"]
        self.fixture_snapshot = Path(info["snapshot"])
        step.detail = "; ".join(problems) or (
            f"{HUB_ID} -> {info['model_class']} ({info['parameters']} parameters), {info['tokenizer_class']}, sampled "
            f"accuracy {info['warm_accuracy']:.2f} (training prompts), {info['benchmark_accuracy']:.2f} (benchmarks)")
        return self.record(step)

    def train(self, name: str, method: str, kind: str, overrides: Sequence[str], run_dir: Path,
              kill_after: int = 0, extra_args: Sequence[str] = (), wait_checkpoint: bool = True) -> Step:
        """Launch one run with accelerate on 2 ranks; with kill_after > 0, SIGKILL it once metrics.jsonl has that
        many steps (and, with wait_checkpoint, a checkpoint exists), relaunch the same command and check that it
        resumed (or restarted, without a checkpoint) and logged every step once."""
        from fr3e.study.runs import accelerate_command

        step, t0 = Step(name), time.perf_counter()
        config = accelerate_config(kind, self.dir / "accelerate")
        cmd = accelerate_command(config, recipe(method), overrides, run_dir, cache_dir=self.cache_dir) + list(extra_args)
        step.checks["command"] = " ".join(cmd)
        proc = self.launch(run_dir.name, cmd)
        deadline = time.monotonic() + self.timeout
        if kill_after:
            latest = run_dir / "checkpoints" / "latest"
            while time.monotonic() < deadline and proc.poll() is None and (
                    metrics_steps(run_dir) < kill_after or (wait_checkpoint and not latest.exists())):
                time.sleep(0.1)
            if proc.poll() is not None or (run_dir / "DONE").exists():
                code = proc.wait(deadline)
                if not self.finish(step, proc, code, t0, f"{name} (before the kill)"):
                    return self.record(step)
                step.status, step.detail = "failed", (f"the run finished before metrics.jsonl had {kill_after} "
                                                      "steps and a checkpoint: the kill came too late (raise "
                                                      "Sizes.steps)")
                return self.record(step)
            if time.monotonic() >= deadline:
                proc.kill()
                step.seconds, step.status, step.log = round(time.perf_counter() - t0, 1), "timeout", str(proc.log)
                step.detail = (f"{name}: metrics.jsonl had {metrics_steps(run_dir)} of {kill_after} steps after "
                               f"{self.timeout:.0f} s (killed); last output:\n" + failure_excerpt(proc.output()))
                return self.record(step)
            proc.kill()
            killed_at = metrics_steps(run_dir)
            step.checks["killed_at_step"] = killed_at
            step.checks["checkpoint_at_kill"] = latest.read_text().strip() if latest.exists() else None
            self.say(f"{name}: killed (SIGKILL to the launcher and every rank) at step {killed_at}, "
                     f"checkpoint {step.checks['checkpoint_at_kill']}; relaunching the same command")
            proc = self.launch(run_dir.name, cmd)
            deadline = time.monotonic() + self.timeout
        code = proc.wait(deadline)
        if not self.finish(step, proc, code, t0, name + (" (after the relaunch)" if kill_after else "")):
            return self.record(step)
        resumed = bool(kill_after) and step.checks.get("checkpoint_at_kill") is not None
        problems = self.check_run(run_dir, method, kind, step.checks, resumed=resumed, output=proc.output())
        step.status = "failed" if problems else "ok"
        step.detail = "; ".join(problems) or (f"{step.checks['steps_logged']} steps, {step.checks['eval_rows']} eval "
                                              f"rows, world size {step.checks['world_size']}")
        return self.record(step)

    def check_run(self, run_dir: Path, method: str, kind: str, checks: dict, resumed: bool, output: str) -> list[str]:
        """What a finished run must hold (`fr3e.rehearsal.checks.check_run`); the problems found."""
        return check_run(run_dir, method, kind, checks, resumed, output, self.benchmark_accuracy,
                         self.fixture_snapshot)

    def base_rows(self, overrides: Sequence[str]) -> Step:
        step, t0 = Step("base-model rows (results.base_evals)"), time.perf_counter()
        args = {"models": [HUB_ID], "recipe": str(recipe("fr3e")), "runs_root": str(self.runs_root),
                "overrides": list(overrides), "eval_n": self.sizes.eval_n, "eval_problems": self.sizes.eval_problems,
                "cache_dir": str(self.cache_dir)}
        proc = self.launch("base_evals", [sys.executable, "-m", "fr3e.cli.rehearsal", "base-evals", json.dumps(args)])
        code = proc.wait(time.monotonic() + self.timeout)
        if self.finish(step, proc, code, t0, "fr3e.study.report.base_evals"):
            out = proc.output().strip().splitlines()[-1]
            step.checks["rows"] = json.loads(out)
            step.status, step.detail = "ok", f"{len(step.checks['rows'])} rows"
        return self.record(step)

    def notebook(self, overrides: Sequence[str], fsdp_config: Path) -> Step:
        step, t0 = Step("Table 1 notebook (papermill, paper parameters)"), time.perf_counter()
        params = {"models": [TABLE1_MODEL], "steps": self.sizes.steps, "eval_n": self.sizes.eval_n,
                  "eval_problems": self.sizes.eval_problems, "overrides": list(overrides),
                  "runs_root": str(self.runs_root), "results_dir": str(self.dir / "results"),
                  "cache_dir": str(self.cache_dir), "accelerate_config": str(fsdp_config)}
        proc = self.launch("notebook", [sys.executable, "-m", "fr3e.cli.rehearsal", "notebook", json.dumps(params)])
        code = proc.wait(time.monotonic() + self.timeout)
        if self.finish(step, proc, code, t0, "the Table 1 notebook"):
            out = self.dir / "results" / "table1"
            step.checks["files"] = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
            missing = [f for f in ("data.csv", "summary.json", "02_table1.ipynb") if f not in step.checks["files"]]
            step.status = "failed" if missing else "ok"
            step.detail = f"missing {missing} in {out}" if missing else f"wrote {out}"
        else:
            failed = self.dir / "results" / "table1" / "02_table1.failed.ipynb"
            if failed.exists():
                step.detail += f"\n(executed notebook kept as {failed})"
        return self.record(step)

    # ---------------------------------------------------------------------------------------- sequence
    def run(self) -> bool:
        self.dir.mkdir(parents=True, exist_ok=True)
        for old in (self.runs_root, self.dir / "results", self.logs, self.dir / "accelerate"):
            shutil.rmtree(old, ignore_errors=True)  # every rehearsal trains from scratch (kill/resume needs it)
        mode = "quick" if self.quick else "full"
        self.say(f"{mode} rehearsal of make reproduce-table1 PROFILE=paper in {self.dir} "
                 f"(timeout {self.timeout:.0f} s per step)")
        fixture = self.fixture()
        if fixture.status != "ok":
            self.skipped("training runs, evaluation, notebook", "the fixture model is not available")
            return self.done()
        overrides = size_overrides(self.sizes)
        files: list[str] = []  # the data files travel as overrides (size_overrides)
        fr3e_dir, fr3e_ov = table1_run("fr3e", self.sizes, self.runs_root, overrides)
        if self.quick:
            self.train("FR3E, FSDP2, zero-reward rank 1, kill -9 + resume", "fr3e", "fsdp",
                       fr3e_ov + ["rehearsal_zero_reward_rank=1"], fr3e_dir, kill_after=2, extra_args=files)
            return self.done()
        self.train("FR3E (Table 1 run), FSDP2, kill -9 + resume", "fr3e", "fsdp", fr3e_ov, fr3e_dir, kill_after=2,
                   extra_args=files)
        grpo_dir, grpo_ov = table1_run("grpo_pp", self.sizes, self.runs_root, overrides)
        self.train("GRPO++ (Table 1 run), DDP", "grpo_pp", "ddp", grpo_ov, grpo_dir, extra_args=files)
        zero = dataclasses.replace(self.sizes, steps=3, eval_benchmarks=("gsm8k", "math500"), eval_every=0)
        zero_ov = size_overrides(zero) + [f"steps={zero.steps}", f"data.eval_n={zero.eval_n}",
                                          "rehearsal_zero_reward_rank=1", "name=fr3e-zero-reward-rank1"]
        self.train("FR3E, DDP, zero-reward rank 1, kill -9 before the first checkpoint", "fr3e", "ddp", zero_ov,
                   self.runs_root / "fr3e-zero-reward-rank1", kill_after=1, extra_args=files, wait_checkpoint=False)
        self.base_rows(overrides)
        if (fr3e_dir / "DONE").exists() and (grpo_dir / "DONE").exists():
            self.notebook(overrides, accelerate_config("fsdp", self.dir / "accelerate"))
        else:
            self.skipped("Table 1 notebook", "a Table 1 run has no DONE (the notebook would launch it again, untimed)")
        return self.done()

    def done(self) -> bool:
        summary = self.summary()
        atomic_write_json(self.dir / "rehearsal.json", summary)
        bad = [s.name for s in self.steps if s.status in ("failed", "timeout")]
        self.say(f"{'PASSED' if not bad else 'FAILED'} in {summary['seconds']:.0f} s"
                 + (f"; failed: {', '.join(bad)}" if bad else "") + f" (record: {self.dir / 'rehearsal.json'})")
        return not bad


# ================================================================================================ CLI
def _cmd_build_fixture(args) -> int:
    model_dir = build_fixture_model(cache_dir=args.cache_dir)
    snapshot = install_hub_cache(model_dir, args.hf_home)
    info = verify_hub_loading(args.hf_home)
    meta = json.loads((model_dir / "rehearsal.json").read_text())
    info.update({"model_dir": str(model_dir), "snapshot": str(snapshot),
                 "warm_accuracy": meta["warm_start"][-1]["accuracy"], "warm_start": meta["warm_start"],
                 "benchmark_accuracy": meta["benchmark_accuracy"]})
    sys.stdout.write(json.dumps(info) + "\n")
    return 0


def _cmd_base_evals(args) -> int:
    from fr3e.study.loaders import base_evals

    kw = json.loads(args.spec)
    df = base_evals(kw.pop("models"), kw.pop("recipe"), **kw)
    sys.stdout.write(df.to_json(orient="records") + "\n")
    return 0


def _cmd_notebook(args) -> int:
    from fr3e.study.reproduction import NOTEBOOK_DIR, NOTEBOOKS, full_parameters, run_notebook

    declared = _declared(NOTEBOOK_DIR / NOTEBOOKS["table1"])
    params = {k: v for k, v in {**full_parameters("paper"), **json.loads(args.spec)}.items() if k in declared}
    saved, seconds = run_notebook("table1", params, progress=False)
    sys.stdout.write(json.dumps({"notebook": str(saved), "seconds": seconds}) + "\n")
    return 0


def _declared(notebook: Path) -> set[str]:
    from fr3e.study.reproduction import declared_parameters

    return declared_parameters(notebook)
