"""Live dashboards of a training run (TensorBoard, Weights & Biases) through Accelerate's tracker API.

Not paper maths: plumbing beside the trainer, switched on by the config field `report_to` ('none' by default,
'tensorboard', 'wandb', or both). `metrics.jsonl` and `eval.jsonl` stay the record of a run; a dashboard
shows the same numbers while the run trains:

- the Accelerator is built with `log_with=log_with(config.report_to)` (`fr3e.training.distributed.make_accelerator`);
  TensorBoard writes under `run_dir/tensorboard/<run name>/`, W&B under `run_dir/wandb/` (project = the
  run name; `WANDB_MODE=offline` and the other `WANDB_*` variables are wandb's own and apply as usual);
- `RunTracker.start` calls `accelerator.init_trackers` with the flattened config (`optim.lr`, ...) as the
  hyperparameters;
- every metrics row is logged as `train/<key>` at its step, every evaluation row as
  `eval/<benchmark>/<metric>` (`avg`, `avg_ci_low`, `avg_ci_high`, `pass@k`, `greedy`, ...) at its step;
  lists (histograms, per-state values) and non-numbers are left to metrics.jsonl;
- `RunTracker.end` calls `accelerator.end_training`.

Only the main process logs (Accelerate's trackers run on the main process only; the other processes build
no tracker). A resumed run logs into the same directories with the same step numbers, so its curves go on.

A requested dashboard whose package is missing is a user error naming the extra to install, checked before
the model loads (Accelerate itself would drop the tracker silently).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import math
from pathlib import Path

from fr3e.training.config import REPORT_TARGETS
from fr3e.utils.errors import UserError

logger = logging.getLogger(__name__)

PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}
"""report_to target -> the module it needs (the pyproject extra has the target's name)."""


def targets(report_to: str | list[str] | None) -> list[str]:
    """The dashboards `report_to` asks for, in order, without 'none': 'tensorboard,wandb' -> [tensorboard, wandb]."""
    if report_to is None:
        return []
    names = report_to if isinstance(report_to, (list, tuple)) else str(report_to).split(",")
    out = []
    for name in (n.strip() for n in names):
        if name in ("", "none"):
            continue
        if name not in REPORT_TARGETS:
            raise UserError(f"report_to={report_to!r}: {name!r} is not a dashboard; use 'none' or any of "
                            f"{list(REPORT_TARGETS)}.")
        if name not in out:
            out.append(name)
    return out


def check_available(report_to: str | list[str] | None) -> list[str]:
    """`targets(report_to)`, after checking each one's package is installed (else one line naming the extra)."""
    wanted = targets(report_to)
    for name in wanted:
        if importlib.util.find_spec(PACKAGES[name]) is None:
            raise UserError(f"report_to={name} needs the {PACKAGES[name]} package, which is not installed. Install "
                            f"the extra: pip install -c constraints.txt -e '.[{name}]' (or pip install 'fr3e[{name}]'), "
                            "or set report_to=none.")
    return wanted


def log_with(report_to: str | list[str] | None) -> list[str] | None:
    """The `Accelerator(log_with=...)` argument: None when no dashboard is asked for."""
    return check_available(report_to) or None


def flatten(config, prefix: str = "") -> dict[str, bool | int | float | str]:
    """A config dataclass as flat hyperparameters: TrainConfig(optim=OptimConfig(lr=1e-4)) -> {"optim.lr": 1e-4}.

    Values TensorBoard's hparams accept (bool, int, float, str): None becomes "none", lists and mappings
    (data.eval_benchmarks, data.local_files) their text."""
    out: dict[str, bool | int | float | str] = {}
    for f in dataclasses.fields(config):
        value, name = getattr(config, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.update(flatten(value, name + "."))
        elif value is None:
            out[name] = "none"
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = str(value)
    return out


def scalars(row: dict, prefix: str) -> dict[str, float]:
    """The numeric entries of a metrics or evaluation row as `prefix/key` -> float (nested dicts flattened,
    [low, high] pairs named `_low` / `_high`); bools count as 0/1, None, NaN, text and longer lists are left out."""
    out: dict[str, float] = {}
    for key, value in row.items():
        name = f"{prefix}/{key}"
        if isinstance(value, dict):
            out.update(scalars(value, name))
        elif isinstance(value, (list, tuple)) and len(value) == 2 and key.endswith("_ci"):
            for end, v in zip(("low", "high"), value):
                if _number(v):
                    out[f"{name}_{end}"] = float(v)
        elif _number(value):
            out[name] = float(value)
    return out


def _number(value) -> bool:
    return isinstance(value, (bool, int, float)) and math.isfinite(float(value))


def eval_scalars(rows: list[dict]) -> dict[str, float]:
    """Evaluation rows (one per benchmark, `fr3e.evaluation.evaluate.eval_rows`) as `eval/<benchmark>/<metric>` scalars;
    pass@k keys read `pass@1`, `pass@16`."""
    out: dict[str, float] = {}
    for row in rows:
        metrics = {k: v for k, v in row.items() if k not in ("step", "benchmark", "pass")}
        metrics.update({f"pass@{k}": v for k, v in (row.get("pass") or {}).items()})
        out.update(scalars(metrics, f"eval/{row['benchmark']}"))
    return out


class RunTracker:
    """The dashboards of one run, on the trainer's Accelerator; every method is a no-op without dashboards."""

    def __init__(self, accelerator, config, run_dir: str | Path):
        self.accelerator = accelerator
        self.config = config
        self.run_dir = Path(run_dir)
        self.enabled = bool(targets(config.report_to))
        self.started = False

    def start(self) -> None:
        """`init_trackers` with the flattened config as hyperparameters (main process; wandb under run_dir)."""
        if not self.enabled or self.started:
            return
        init_kwargs = {}
        if "wandb" in targets(self.config.report_to):
            (self.run_dir / "wandb").mkdir(parents=True, exist_ok=True)
            init_kwargs["wandb"] = {"dir": str(self.run_dir), "name": self.config.name}
        self.accelerator.init_trackers(self.config.name, config=flatten(self.config),
                                       init_kwargs=init_kwargs)
        self.started = True
        if self.accelerator.is_main_process:
            logger.info("dashboards: %s (%s)", self.config.report_to, self.run_dir)

    def log_metrics(self, row: dict) -> None:
        """One training step's metrics row as `train/<key>` at its step."""
        if self.started:
            self.accelerator.log(scalars({k: v for k, v in row.items() if k != "step"}, "train"), step=int(row["step"]))

    def log_evals(self, rows: list[dict], step: int) -> None:
        """One evaluation (a row per benchmark) as `eval/<benchmark>/<metric>` at `step`."""
        if self.started and rows:
            self.accelerator.log(eval_scalars(rows), step=int(step))

    def end(self) -> None:
        """`end_training`: closes the writers (flushes TensorBoard, finishes the W&B run)."""
        if self.started:
            self.accelerator.end_training()
            self.started = False
