"""Attempts of the training command line for tests/test_faults.py, each a process of its own forked from this one.

This process does the command's imports once (torch, transformers, accelerate: ~7 s of CPU for every fresh
interpreter on 2 cores); each attempt is still a separate process, killed or signalled like a fresh one, that runs
`fr3e.cli.train.main` as `python -m fr3e.cli.train` does. Not collected by pytest (no test_ prefix).

Protocol: "ready" once the imports are done; then for each JSON line read on stdin, {"argv": [...], "log": path,
"fault": [target, rows, signal name] or null}, one line with the attempt's pid, then one with its exit status as
subprocess reports it (-9 for SIGKILL). The attempt's stdout and stderr go to `log`.

A fault wraps one function (`module:attribute`, or `module:Class.method`) and, at its first call made while the
run's metrics.jsonl holds `rows` rows, the attempt sends itself the signal. The rows pin the step whatever the
number of calls per step: with N >= 1 rows logged, the first generation or policy loss is step N+1's and the first
manifest written is step N's checkpoint (with 0 rows the step-0 probe generates first).

usage: OMP_NUM_THREADS=1 python tests/training_attempts.py     (from the repository root)
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
import traceback
from pathlib import Path

WARM = ["fr3e.cli.train", "fr3e.training.trainer", "fr3e.tasks.model", "fr3e.engines.hf", "fr3e.evaluation.evaluate",
        "fr3e.data.hub", "accelerate", "torch.distributed", "torch._dynamo", "transformers.generation",
        "safetensors.torch"]


def inject(target: str, rows: int, sig: str, run_dir: str) -> None:
    from fr3e.utils.io import read_jsonl

    module_name, attr = target.split(":")
    module = importlib.import_module(module_name)
    owner, name = (getattr(module, attr.split(".")[0]), attr.split(".")[1]) if "." in attr else (module, attr)
    real = getattr(owner, name)
    sent = []

    def wrapped(*args, **kwargs):
        if not sent and len(read_jsonl(Path(run_dir) / "metrics.jsonl")) == rows:
            sent.append(sig)
            os.kill(os.getpid(), signal.Signals[sig])
        return real(*args, **kwargs)

    setattr(owner, name, wrapped)


def attempt(job: dict) -> int:
    """In the forked process: the command line, its output to the job's log; the exit status."""
    fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        argv = job["argv"]
        if job["fault"]:
            inject(*job["fault"], argv[argv.index("--run-dir") + 1])
        from fr3e.cli.train import main

        return main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def serve() -> None:
    import torch

    torch.set_num_threads(1)  # before any parallel region: no thread pool exists at fork
    for name in WARM:
        try:
            importlib.import_module(name)
        except ImportError:  # an attempt imports what it needs itself
            pass
    print("ready", flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = attempt(job)
            finally:
                os._exit(code)
        print(pid, flush=True)
        print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)


if __name__ == "__main__":
    serve()
