"""Interruptions and faults during a run: corrupted checkpoints, the run lock, SIGTERM, failed writes."""

import json
import os
import signal
import subprocess
import sys
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
from test_trainer import SMALL, assert_same_run, small_config  # noqa: E402


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
@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """The uninterrupted run, with 1 torch thread like the subprocesses below (CPU float sums depend on the
    thread count, so runs are compared at equal threads)."""
    import torch

    out = tmp_path_factory.mktemp("ref") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(small_config(), out, progress=False, cache_dir=CACHE)
    finally:
        torch.set_num_threads(threads)
    return out


def one_thread(fn, *args, **kwargs):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(*args, **kwargs)
    finally:
        torch.set_num_threads(threads)


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
def test_a_failed_checkpoint_write_stops_cleanly_and_keeps_the_previous(tmp_path, monkeypatch):
    import errno

    from accelerate import Accelerator

    real = Accelerator.save_state
    calls = []

    def disk_full(self, output_dir=None, **kw):
        calls.append(output_dir)
        if len(calls) == 2:  # the second checkpoint (step 4): a partial file, then ENOSPC
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            (Path(output_dir) / "model.safetensors").write_bytes(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, output_dir, **kw)

    monkeypatch.setattr(Accelerator, "save_state", disk_full)
    run = tmp_path / "full"
    with pytest.raises(TrainingError, match=r"step 4: could not write the checkpoint .*No space left on device.*"
                                            r"step-000002\) is intact"):
        train(small_config(), run, progress=False, cache_dir=CACHE)
    good, _ = usable_checkpoints(run / "checkpoints")
    assert [p.name for p in good] == ["step-000002"]
    assert not (run / "DONE").exists()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_ctrl_c_stops_at_a_step_boundary_with_a_checkpoint_and_resumes(sig, reference_run, tmp_path):
    run = tmp_path / "term"
    cmd = [sys.executable, "-m", "fr3e.cli.train", "--config", str(ROOT / "reproduce/configs/tiny-fr3e.yaml"),
           "--run-dir", str(run), "--cache-dir", str(CACHE), "--no-progress"] + sum((["--set", s] for s in SMALL), [])
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and len(read_jsonl(run / "metrics.jsonl")) < 1:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the signal"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0 and f"stopped by {sig.name} after step" in err and "Run the same command" in err
    assert "Traceback" not in err
    stopped = json.loads(next(iter(sorted((run / "checkpoints").glob("step-*/trainer_state.json")))).read_text())
    assert stopped["step"] == len(read_jsonl(run / "metrics.jsonl")) < 4  # a checkpoint at the stopping step
    assert subprocess.run(cmd, cwd=ROOT, capture_output=True, env=dict(os.environ, OMP_NUM_THREADS="1")).returncode == 0
    assert_same_run(reference_run, run)


KILL_AT = {
    # where: (module attribute to wrap, call number at which the process SIGKILLs itself)
    "generation": ("fr3e.engines.hf:HFEngine.generate", 5),  # step 3's first generate call (2 per step)
    "update": ("fr3e.training.trainer:policy_loss", 3),  # inside step 3's backward passes
    "checkpoint write": ("fr3e.training.resume:write_manifest", 2),  # step 4's checkpoint: files written, no manifest
}

KILLER = """
import importlib, os, signal, sys
target, count = sys.argv[1], int(sys.argv[2])
module_name, attr = target.split(":")
module = importlib.import_module(module_name)
owner, name = (getattr(module, attr.split(".")[0]), attr.split(".")[1]) if "." in attr else (module, attr)
real = getattr(owner, name)
calls = [0]
def wrapped(*args, **kwargs):
    calls[0] += 1
    if calls[0] == count:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
setattr(owner, name, wrapped)
from fr3e.cli.train import main
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("where", list(KILL_AT))
def test_kill_9_anywhere_then_resume_matches_the_uninterrupted_run(where, reference_run, tmp_path):
    run = tmp_path / "killed"
    args = ["--config", str(ROOT / "reproduce/configs/tiny-fr3e.yaml"), "--run-dir", str(run), "--cache-dir",
            str(CACHE), "--no-progress"] + sum((["--set", s] for s in SMALL), [])
    target, count = KILL_AT[where]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    killed = subprocess.run([sys.executable, "-c", KILLER, target, str(count), *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (run / "DONE").exists()
    resumed = subprocess.run([sys.executable, "-m", "fr3e.cli.train", *args], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_run(reference_run, run)
