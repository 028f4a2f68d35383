"""How the rehearsal launches its steps: the sizes it changes, the Table 1 runs and their accelerate configs,
and subprocesses with hard timeouts whose failures are reported with a log excerpt.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fr3e.rehearsal.fixtures import (
    ACCELERATE_DIR,
    BENCHMARK_FILES,
    FIXTURE_DATA,
    HUB_ID,
    REPO_ROOT,
    TABLE1_DIR,
    TABLE1_MODEL,
    TRAIN_FILES,
)
from fr3e.utils.io import atomic_write_text

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sizes:
    """The only recipe values the rehearsal changes (besides `model.base`, `rollout.engine` and the data files)."""

    steps: int = 6
    prompts_per_step: int = 2
    max_prompt_tokens: int = 256
    max_response_tokens: int = 24
    eval_problems: int = 0  # 0 = all (3 per fixture benchmark)
    eval_n: int = 4
    eval_every: int = 3
    checkpoint_every: int = 2
    micro_batch_size: int = 16
    distributed_timeout_s: int = 20
    eval_benchmarks: tuple[str, ...] = ()  # empty: the recipe's six


QUICK_SIZES = Sizes(steps=4, eval_n=2, eval_every=0, checkpoint_every=1, eval_benchmarks=("gsm8k", "math500"))
FULL_SIZES = Sizes()


def data_files(data_dir: str | Path = FIXTURE_DATA) -> dict[str, str]:
    """name -> fixture file for the training mix and the six benchmarks (absolute paths)."""
    data_dir = Path(data_dir).resolve()
    return {name: str(data_dir / f) for name, f in {**TRAIN_FILES, **BENCHMARK_FILES}.items()}


def size_overrides(sizes: Sizes, hub_id: str = HUB_ID) -> list[str]:
    """`--set` overrides of a Table 1 recipe: sizes, the fixture model, the HF engine, fp32.

    The fixture data files go in as `data.local_files.NAME=path` overrides, so the same list reaches the
    training runs, `base_evals` and the notebook (whose only route is its `overrides` parameter).
    """
    out = [f"model.base={hub_id}", "model.dtype=float32", "rollout.engine=hf",
           f"data.prompts_per_step={sizes.prompts_per_step}", f"data.max_prompt_tokens={sizes.max_prompt_tokens}",
           f"data.max_response_tokens={sizes.max_response_tokens}", f"optim.micro_batch_size={sizes.micro_batch_size}",
           f"checkpoint_every={sizes.checkpoint_every}", f"eval_every={sizes.eval_every}",
           f"distributed_timeout_s={sizes.distributed_timeout_s}"]
    if sizes.eval_benchmarks:
        out.append("data.eval_benchmarks=[" + ",".join(sizes.eval_benchmarks) + "]")
    return out + [f"data.local_files.{name}={path}" for name, path in sorted(data_files().items())]


def table1_run(method: str, sizes: Sizes, runs_root: Path, overrides: Sequence[str], seed: int = 0):
    """(run_dir, overrides) of a Table 1 run exactly as `fr3e.study.report.ensure_runs` names and configures it."""
    from fr3e.study.runs import run_name

    extra = list(overrides) + [f"data.eval_n={sizes.eval_n}", f"data.eval_problems={sizes.eval_problems}"]
    name = run_name(method, TABLE1_MODEL, seed, sizes.steps, extra)
    ov = [f"model.base={TABLE1_MODEL}", f"seed={seed}", f"steps={sizes.steps}"] + extra + [f"name={name}"]
    return runs_root / "paper" / name, ov


def recipe(method: str) -> Path:
    return TABLE1_DIR / f"qwen2.5-7b-{method}.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_config(kind: str, out_dir: Path) -> Path:
    """A copy of `reproduce/accelerate/<kind>-cpu-2proc.yaml` with a free rendezvous port (others may use 29500)."""
    import yaml

    src = ACCELERATE_DIR / f"{kind}-cpu-2proc.yaml"
    data = yaml.safe_load(src.read_text())
    data["main_process_port"] = free_port()
    out = out_dir / f"{kind}-cpu-2proc.yaml"
    atomic_write_text(out, f"# {src.relative_to(REPO_ROOT)} with a free port\n" + yaml.safe_dump(data, sort_keys=False))
    return out


# ================================================================================================ processes
@dataclass
class Step:
    """One rehearsal step's record (rehearsal.json)."""

    name: str
    status: str = "pending"  # ok | failed | timeout | skipped
    seconds: float = 0.0
    detail: str = ""
    log: str = ""
    checks: dict = field(default_factory=dict)


class Process:
    """A subprocess in its own process group, logging to a file, with a hard deadline."""

    def __init__(self, cmd: Sequence[str], log: Path, env: dict, cwd: Path = REPO_ROOT):
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = log
        self._fh = open(log, "ab")
        self._fh.write(f"\n$ {' '.join(cmd)}\n".encode())
        self._fh.flush()
        self.proc = subprocess.Popen(list(cmd), stdout=self._fh, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                     start_new_session=True)

    def poll(self) -> int | None:
        return self.proc.poll()

    def kill(self) -> None:
        """SIGKILL the launcher and every process below it, as a node's job killer would.

        Killing the launcher's process group is not enough: torchrun starts each rank in a session of its own,
        so the ranks would outlive it and finish the run. The tree is frozen first so no child escapes.
        """
        import psutil

        try:
            root = psutil.Process(self.proc.pid)
            tree = [root, *root.children(recursive=True)]
            for p in tree:
                with _gone():
                    p.suspend()
            tree += [c for c in root.children(recursive=True) if c not in tree]
            for p in tree:
                with _gone():
                    p.kill()
        except psutil.NoSuchProcess:
            pass
        self.proc.wait()
        self._fh.close()

    def wait(self, deadline: float) -> int | None:
        """Exit status, or None (after killing the group) if the deadline passed."""
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                self._kill_leftovers()
                self._fh.close()
                return code
            time.sleep(0.2)
        self.kill()
        return None

    def _kill_leftovers(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # helpers left in the launcher's group
        except (ProcessLookupError, PermissionError):
            pass

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def _gone():
    """Ignore a process that exited meanwhile."""
    import psutil

    try:
        yield
    except psutil.NoSuchProcess:
        pass
