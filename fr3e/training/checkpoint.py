"""Checkpoint integrity and run-directory ownership: what makes an interrupted run safe to resume.

Not paper maths: plumbing the trainer calls around `accelerate`'s save_state / load_state.

- **Manifest.** Every checkpoint gets `manifest.json` (written last, atomically): the size and sha256 of
  every file in it. `usable_checkpoints` lists the checkpoints newest first with the reason each one that
  fails verification was skipped (a file missing, truncated or changed, no manifest), so a run whose latest
  checkpoint was corrupted (a crash mid-write, a full disk, a bad copy) resumes from the one before it.
- **Lock.** `RunLock` holds an exclusive `flock` on `<run>/.lock` for the life of the training process and
  records who holds it (pid, host, start time); a second process on the same run directory is refused with
  that record. The kernel drops the lock when its holder dies, so kill -9 never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import time
from pathlib import Path

from fr3e.utils.io import atomic_write_json

MANIFEST = "manifest.json"


class RunLocked(RuntimeError):
    """Another process is training in this run directory."""


def file_sha256(path: Path, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(ckpt: str | Path) -> dict:
    """Record size and sha256 of every file under `ckpt` in `ckpt/manifest.json` (atomic); returns it."""
    ckpt = Path(ckpt)
    files = {str(p.relative_to(ckpt)): {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
             for p in sorted(ckpt.rglob("*")) if p.is_file() and p.name != MANIFEST}
    manifest = {"files": files, "written": time.time()}
    atomic_write_json(ckpt / MANIFEST, manifest)
    return manifest


def verify_checkpoint(ckpt: str | Path) -> str | None:
    """None when every file of `ckpt`'s manifest is present with its size and checksum; else the problem."""
    ckpt = Path(ckpt)
    try:
        manifest = json.loads((ckpt / MANIFEST).read_text())
    except FileNotFoundError:
        # Checkpoints are renamed into place only after their manifest is written; a committed one without
        # it comes from a version that wrote no manifests: usable, unverified, when its state file is there.
        return None if (ckpt / "trainer_state.json").is_file() else "no manifest.json (the write did not finish)"
    except (OSError, ValueError) as exc:
        return f"unreadable manifest.json ({exc})"
    for name, meta in manifest.get("files", {}).items():
        path = ckpt / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != meta["bytes"]:
            return f"{name} has {path.stat().st_size} bytes, expected {meta['bytes']} (truncated?)"
        if file_sha256(path) != meta["sha256"]:
            return f"{name} does not match its checksum (corrupted)"
    return None


def usable_checkpoints(checkpoints: str | Path) -> tuple[list[Path], list[str]]:
    """(checkpoints that verify, newest first; one line per skipped checkpoint saying why)."""
    found = sorted((p for p in Path(checkpoints).glob("step-*") if p.is_dir()), reverse=True)
    good, skipped = [], []
    for ckpt in found:
        problem = verify_checkpoint(ckpt)
        if problem is None:
            good.append(ckpt)
        else:
            skipped.append(f"{ckpt.name}: {problem}")
    return good, skipped


class RunLock:
    """An exclusive lock on a run directory for the life of one training process (see module docstring)."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / ".lock"
        self._fh = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise RunLocked(f"run directory {self.path.parent} is in use by {holder}. Wait for it to finish or "
                            "stop it (a finished or killed run releases the lock by itself), or use another "
                            "--run-dir.") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
