"""Run directories: every run describes itself (config, environment, metrics, samples, checkpoints).

    runs/<name>/
      config.json      resolved TrainConfig
      env.json         git sha, package versions, devices, world size, seed
      metrics.jsonl    one row per training step
      eval.jsonl       one row per (evaluation step, benchmark)
      samples.jsonl    a few annotated trajectories (anchors, states, values, α) every few steps
      checkpoints/     step-N/ (model, optimizer, scheduler, RNG, data position) and `latest`
      model/           the final policy as a Hugging Face model directory (tokenizer beside it)
      DONE             written last: the run finished and is reused as it is

A run directory with a different config refuses to resume and says which fields differ; one whose start
failed before the first step (config and env only) takes the new config instead.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from fr3e.training.config import ConfigError, TrainConfig, diff_configs, from_dict
from fr3e.utils.io import atomic_write_json, atomic_write_text, read_json, read_jsonl, rewrite_jsonl

PACKAGES = ("torch", "transformers", "accelerate", "trl", "datasets", "tokenizers", "math-verify", "vllm",
            "papermill", "numpy")


def git_sha(cwd: str | Path | None = None) -> str | None:
    """The commit of the package source (with '-dirty' when tracked files have changes), None outside git.

    Changes under `results/` and to the world scorecards (`reproduce/worlds/scorecard-*.json`) do not count: the
    reproduction and the scorecard rewrite those files while their runs go on, and they are outputs, not the code
    that made them."""
    here = Path(cwd or Path(__file__).resolve().parent)
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                                ":(top,exclude)results", ":(top,exclude,glob)reproduce/worlds/scorecard-*.json"],
                               cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment(seed: int | None = None, world_size: int = 1) -> dict:
    """What produced a number: versions, devices, git sha, seed."""
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "git_sha": git_sha(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "cuda_devices": devices,
        "cpu_threads": torch.get_num_threads(),
        "world_size": world_size,
        "seed": seed,
    }


@dataclass
class RunDir:
    """Paths and readers of one run directory."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    # paths
    @property
    def config_file(self) -> Path:
        return self.path / "config.json"

    @property
    def env_file(self) -> Path:
        return self.path / "env.json"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def eval_file(self) -> Path:
        return self.path / "eval.jsonl"

    @property
    def samples_file(self) -> Path:
        return self.path / "samples.jsonl"

    @property
    def probe_file(self) -> Path:
        return self.path / "probe.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    @property
    def done_file(self) -> Path:
        return self.path / "DONE"

    # readers
    def is_finished(self) -> bool:
        return self.done_file.exists()

    def config(self) -> TrainConfig:
        return from_dict(TrainConfig, read_json(self.config_file))

    def metrics(self) -> list[dict]:
        return read_jsonl(self.metrics_file)

    def evals(self) -> list[dict]:
        return read_jsonl(self.eval_file)

    def samples(self) -> list[dict]:
        return read_jsonl(self.samples_file)

    # writers
    def has_progress(self) -> bool:
        """True once the run produced something worth keeping: a checkpoint, a metrics row or DONE."""
        return (self.is_finished() or self.latest_checkpoint() is not None
                or any(self.checkpoints.glob("step-*")) or bool(self.metrics()))

    def prepare(self, config: TrainConfig, world_size: int = 1) -> None:
        """Create the directory for `config`, or check that an existing one holds the same config.

        A directory whose start failed before the first step (config.json and env.json only, e.g. the model
        or the data could not be loaded) is not a run to protect: it takes the new config, so a corrected
        start (another model.base, a --data file) is not refused as "a different config"."""
        if self.config_file.exists() and not self.has_progress():
            old = read_json(self.config_file)
            if diff_configs(old, config.to_dict()):
                atomic_write_json(self.config_file, config.to_dict())
        if self.config_file.exists():
            old = read_json(self.config_file)
            diff = diff_configs(old, config.to_dict())
            if diff:
                raise ConfigError(
                    f"run directory {self.path} holds a different config, refusing to resume. Differences: "
                    + "; ".join(diff) + ". Use another --run-dir, or delete the directory to start over.")
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.config_file, config.to_dict())
        atomic_write_json(self.env_file, environment(config.seed, world_size))

    def latest_checkpoint(self) -> Path | None:
        pointer = self.checkpoints / "latest"
        if not pointer.exists():
            return None
        path = self.checkpoints / pointer.read_text().strip()
        return path if (path / "trainer_state.json").exists() else None

    def commit_checkpoint(self, tmp: Path, step: int, keep: int = 2) -> Path:
        """Move a fully written checkpoint into place, point `latest` at it, prune older ones."""
        final = self.checkpoints / f"step-{step:06d}"
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        atomic_write_text(self.checkpoints / "latest", final.name + "\n")
        old = sorted(p for p in self.checkpoints.glob("step-*") if p.is_dir())
        for p in old[:-keep]:
            shutil.rmtree(p, ignore_errors=True)
        return final

    def truncate_logs(self, step: int) -> None:
        """Drop log rows written after checkpoint `step` (they will be produced again on resume)."""
        for file in (self.metrics_file, self.eval_file, self.samples_file, self.probe_file):
            rows = read_jsonl(file)
            kept = [r for r in rows if r.get("step", 0) <= step]
            if len(kept) != len(rows) or file.exists():
                rewrite_jsonl(file, kept)

    def mark_done(self, summary: dict) -> None:
        atomic_write_json(self.done_file, summary)
