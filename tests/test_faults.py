"""Interruptions and faults during a run: corrupted checkpoints, the run lock, SIGTERM, failed writes."""

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fr3e.training.checkpoint import RunLock, RunLocked, usable_checkpoints, verify_checkpoint, write_manifest
from fr3e.training.config import ConfigError
from fr3e.training.trainer import TrainingError, train
from fr3e.utils.io import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "runs" / "cache"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_trainer import SMALL, assert_same_run, comparable, one_thread, small_config  # noqa: E402


# ------------------------------------------------------------------------------------ unit: manifest, lock
def test_manifest_detects_missing_truncated_and_changed_files(tmp_path):
    ckpt = tmp_path / "step-000002"
    (ckpt / "sub").mkdir(parents=True)
    (ckpt / "model.safetensors").write_bytes(b"x" * 100)
    (ckpt / "sub" / "rng.pkl").write_bytes(b"abc")
    write_manifest(ckpt)
    assert verify_checkpoint(ckpt) is None
    (ckpt / "model.safetensors").write_bytes(b"x" * 60)
    assert "60 bytes, expected 100" in verify_checkpoint(ckpt)
    (ckpt / "model.safetensors").write_bytes(b"y" * 100)
    assert "checksum" in verify_checkpoint(ckpt)
    (ckpt / "model.safetensors").unlink()
    assert "missing" in verify_checkpoint(ckpt)
    half = tmp_path / "step-000004"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"z")
    good, skipped = usable_checkpoints(tmp_path)
    assert good == [] and len(skipped) == 2 and skipped[0].startswith("step-000004: no manifest")


def test_a_second_process_on_a_run_directory_is_refused(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from fr3e.training.checkpoint import RunLock; "
        f"lock = RunLock({str(tmp_path)!r}); lock.acquire(); print('held', flush=True); time.sleep(30)")],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked, match=rf"in use by pid {holder.pid} on "):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    with RunLock(tmp_path):  # the kernel released the killed holder's lock
        pass


# ------------------------------------------------------------------------------------- through the trainer
@pytest.fixture
def reference_run(small_reference_run):
    """The uninterrupted run, trained with 1 torch thread like the subprocesses below (tests/conftest.py)."""
    return small_reference_run


@pytest.mark.slow
def test_trainer_refuses_a_run_directory_in_use(tmp_path):
    with RunLock(tmp_path / "busy"):
        with pytest.raises(ConfigError, match="is in use by pid"):
            train(small_config(), tmp_path / "busy", progress=False, cache_dir=CACHE)


@pytest.mark.slow
def test_corrupted_latest_checkpoint_resumes_from_the_previous_one(reference_run, tmp_path, caplog):
    """Steps 1-4, checkpoints every 2 steps: corrupt step-000004's weights and drop DONE; the resume skips it with
    a warning, restarts from step 2 and finishes identical to the uninterrupted run."""
    import shutil

    run = tmp_path / "corrupt"
    shutil.copytree(reference_run, run)
    (run / "DONE").unlink()
    shutil.rmtree(run / "model")
    weights = next((run / "checkpoints" / "step-000004").glob("model*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated
    with caplog.at_level("WARNING"):
        one_thread(train, small_config(), run, progress=False, cache_dir=CACHE)
    assert any("skipping checkpoint step-000004" in r.getMessage() for r in caplog.records)
    assert_same_run(reference_run, run)


@pytest.mark.slow
def test_a_failed_checkpoint_write_stops_cleanly_and_keeps_the_previous(reference_run, tmp_path, monkeypatch):
    """The reference run taken back to its step-2 checkpoint resumes; writing step 4's checkpoint fails."""
    import errno
    import shutil

    from accelerate import Accelerator

    run = tmp_path / "full"
    shutil.copytree(reference_run, run)
    (run / "DONE").unlink()
    shutil.rmtree(run / "model")
    shutil.rmtree(run / "checkpoints" / "step-000004")
    real = Accelerator.save_state
    calls = []

    def disk_full(self, output_dir=None, **kw):
        calls.append(output_dir)
        if Path(output_dir).name == ".tmp-step-000004":  # a partial file, then ENOSPC
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            (Path(output_dir) / "model.safetensors").write_bytes(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, output_dir, **kw)

    monkeypatch.setattr(Accelerator, "save_state", disk_full)
    with pytest.raises(TrainingError, match=r"step 4: could not write the checkpoint .*No space left on device.*"
                                            r"step-000002\) is intact"):
        one_thread(train, small_config(), run, progress=False, cache_dir=CACHE)
    assert [Path(c).name for c in calls] == [".tmp-step-000004"]  # resumed at step 2, failed at the next write
    good, _ = usable_checkpoints(run / "checkpoints")
    assert [p.name for p in good] == ["step-000002"]
    assert not (run / "DONE").exists()


GENERATION, UPDATE, CHECKPOINT_WRITE = ("fr3e.engines.hf:HFEngine.generate", "fr3e.training.trainer:policy_loss",
                                        "fr3e.training.resume:write_manifest")


class Attempts:
    """Attempts of the training command on one run directory, each a process forked from one warm process
    (tests/training_attempts.py: the imports once, not once per attempt)."""

    def __init__(self, run: Path):
        self.run, self.count, self.pid = run, 0, None
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "training_attempts.py")], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=dict(os.environ, OMP_NUM_THREADS="1"))
        self.lines = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(line.strip()) for line in self.proc.stdout], daemon=True).start()
        assert self.line(300) == "ready"

    def line(self, timeout: float) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                return self.lines.get(timeout=1)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    raise AssertionError(f"tests/training_attempts.py exited ({self.proc.returncode})") from None
        self.close()
        raise AssertionError(f"no answer from the attempt within {timeout:.0f} s")

    def start(self, fault: tuple[str, int, signal.Signals] | None = None) -> None:
        """`python -m fr3e.cli.train` on the run; `fault` = (function, rows, signal), see training_attempts.py."""
        self.count += 1
        self.log = self.run.parent / f"attempt-{self.count}.log"
        args = ["--config", str(ROOT / "reproduce/configs/tiny-fr3e.yaml"), "--run-dir", str(self.run),
                "--cache-dir", str(CACHE), "--no-progress"] + sum((["--set", s] for s in SMALL), [])
        job = {"argv": args, "log": str(self.log), "fault": fault and [fault[0], fault[1], fault[2].name]}
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        self.pid = int(self.line(60))

    def running(self) -> bool:
        return self.lines.empty()  # the next line is the exit status

    def wait(self, timeout: float = 300) -> tuple[int, str]:
        """(exit status as subprocess reports it, the attempt's stdout and stderr)."""
        code, self.pid = int(self.line(timeout)), None
        return code, self.log.read_text()

    def __call__(self, fault=None) -> tuple[int, str]:
        self.start(fault)
        return self.wait()

    def close(self) -> None:
        if self.pid is not None and self.running():  # an attempt left running by a failure (not yet reaped)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self.pid = None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def attempts(tmp_path):
    """Attempts on `tmp_path/interrupted`; the warm process ends with the test."""
    a = Attempts(tmp_path / "interrupted")
    yield a
    a.close()


def logged_as_reference(reference_run: Path, run: Path, steps: int) -> None:
    """metrics.jsonl of `run` holds steps 1..steps once each, equal to the reference run's."""
    rows = read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, steps + 1))
    assert comparable(rows) == comparable(read_jsonl(reference_run / "metrics.jsonl"))[:steps]


def latest_checkpoint_step(run: Path) -> int:
    good, _ = usable_checkpoints(run / "checkpoints")
    return json.loads((good[0] / "trainer_state.json").read_text())["step"]


@pytest.mark.slow
def test_kill_9_sigterm_and_ctrl_c_anywhere_then_resume_matches_the_uninterrupted_run(reference_run, attempts):
    """One run directory interrupted five times, each attempt of the training command resuming from what the one
    before left; the sixth finishes equal to the uninterrupted run:

    1. kill -9 in step 2's generation, before the first checkpoint: the next attempt starts over;
    2. SIGTERM from outside once that attempt logged step 1: it stops after step 1 or 2 with a checkpoint there;
    3. kill -9 in step 4's update, with step 3 logged after the last checkpoint (step 2);
    4. SIGINT (Ctrl-C) in step 3's generation: it stops after step 3 with a checkpoint out of schedule;
    5. kill -9 in step 4's checkpoint write (files written, no manifest);
    6. the same command once more: it resumes from step 3 and finishes.
    """
    run = attempts.run
    metrics = run / "metrics.jsonl"

    def killed(target, rows):
        code, log = attempts((target, rows, signal.SIGKILL))
        assert code == -signal.SIGKILL, log[-2000:]
        assert not (run / "DONE").exists()

    def stopped(code, log, sig, step):
        assert code != 0 and f"stopped by {sig.name} after step {step} of 4" in log, log[-2000:]
        assert "Run the same command" in log and "Traceback" not in log
        assert latest_checkpoint_step(run) == step  # a checkpoint at the stopping step
        logged_as_reference(reference_run, run, step)

    # 1: no checkpoint yet
    killed(GENERATION, 1)
    assert usable_checkpoints(run / "checkpoints")[0] == []
    logged_as_reference(reference_run, run, 1)

    # 2: the command again starts over; SIGTERM once its own step 1 is logged (attempt 1's row dropped first)
    attempts.start()
    started_over, deadline = False, time.time() + 300
    while time.time() < deadline and attempts.running():
        rows = len(read_jsonl(metrics))
        started_over = started_over or rows == 0
        if started_over and rows >= 1:
            break
        time.sleep(0.05)
    assert attempts.running(), "the run ended before the signal"
    os.kill(attempts.pid, signal.SIGTERM)
    code, log = attempts.wait()
    first_stop = len(read_jsonl(metrics))
    assert first_stop in (1, 2), log[-2000:]
    stopped(code, log, signal.SIGTERM, first_stop)

    # 3: resumed from step 1 or 2, killed in step 4's update
    killed(UPDATE, 3)
    assert latest_checkpoint_step(run) == 2
    logged_as_reference(reference_run, run, 3)

    # 4: resumed from step 2 (step 3's row dropped), Ctrl-C in step 3's first generation
    stopped(*attempts((GENERATION, 2, signal.SIGINT)), signal.SIGINT, 3)

    # 5: resumed from step 3, killed writing step 4's checkpoint
    killed(CHECKPOINT_WRITE, 4)
    assert [p.name for p in usable_checkpoints(run / "checkpoints")[0]] == ["step-000003", "step-000002"]
    partial = run / "checkpoints" / ".tmp-step-000004"
    assert partial.is_dir() and any(partial.iterdir()) and not (partial / "manifest.json").exists()
    logged_as_reference(reference_run, run, 4)

    # 6: resumed from step 3 (the partial checkpoint skipped) to the end
    code, log = attempts()
    assert code == 0, log[-2000:]
    assert_same_run(reference_run, run)
