"""Runs and arms: what a run is called, where its directory is, and which command trains it.

- **Arms.** A method's recipe ("grpo_pp", "fr3e") or a control (`CONTROLS`: GRPO++ with a coin-flip reward,
  GRPO++ with as many rollouts as FR3E generates tokens, `matched_group_size`); `arm_of` names a run's arm.
- **Names.** Run directories are named deterministically: `<runs_root>/<profile>/<arm>-<model>-s<seed>-<steps>[-hash]`
  (`run_name`); `RunInfo` describes one; `recipes` lists a profile's recipes; a study's larger final
  evaluation of a run is written to `<run_dir>/final_eval-p<problems>.json` (`final_eval_path`).
- **Commands.** `train_command` (`python -m fr3e.cli.train ...`, one process) and `accelerate_command`
  (`accelerate launch -m fr3e.cli.train ...`, several).

Which runs an artefact needs is `fr3e.study.jobs`; launching them `fr3e.study.launch`; reading what they
wrote `fr3e.study.loaders`. Every public name of these modules is importable from `fr3e.study.report`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from fr3e.training.config import recipe_dir

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = recipe_dir()

METHODS = ("grpo_pp", "fr3e")
"""Methods in display order (baseline first)."""

# ================================================================================================ arms
@dataclasses.dataclass(frozen=True)
class Control:
    """A control arm of Table 1: a method's recipe with extra overrides, trained and shown as its own row.

    arm: prefix of its run names and its value in the loaders' `arm` column; method: whose recipe it trains;
    label: its Table 1 row; overrides: added to every run of the arm; per_model: (base model, overrides) pairs
    added after `overrides` to that base model's runs only (`overrides_for`); max_seeds / max_models: only the first
    seeds / base models of the study (None = all); matched_to: an arm whose measured generated tokens per
    prompt set this arm's `grpo.rollouts_per_prompt` (`matched_group_size`), so its runs of a base model wait
    for that arm's runs of the same base model.
    """

    arm: str
    method: str
    label: str
    overrides: tuple[str, ...] = ()
    max_seeds: int | None = None
    max_models: int | None = None
    matched_to: str | None = None
    per_model: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def overrides_for(self, model: str) -> tuple[str, ...]:
        """The overrides of this arm's runs of base model `model`: `overrides`, then that model's `per_model` ones
        (a ValueError for a model the arm has no `per_model` entry for, rather than a silent default)."""
        per_model = dict(self.per_model)
        if per_model and model not in per_model:
            raise ValueError(f"arm {self.arm!r} sets per-model overrides for {sorted(per_model)}, not for {model!r}; "
                             "add an entry to its per_model")
        return (*self.overrides, *per_model.get(model, ()))


CONTROLS = {
    # control: what RL without signal does here; same recipe, 3 seeds, the general base model only.
    "coin": Control("grpo_pp_coin", "grpo_pp", "GRPO++ (coin reward)", ("reward=coin",), max_seeds=3, max_models=1),
    # control: GRPO++ sampling as many tokens per prompt as FR3E (the paper's baseline samples far fewer).
    "matched": Control("grpo_pp_matched", "grpo_pp", "GRPO++ (matched rollouts)", matched_to="fr3e"),
}
"""The control arms a study may add (`ensure_runs(controls=...)`), by short name."""

ARM_LABELS = {"grpo_pp": "GRPO++", "fr3e": "FR3E", **{c.arm: c.label for c in CONTROLS.values()}}
"""Arm -> Table 1 row label."""


def arm_of(name: str, method: str) -> str:
    """The arm of a run from its name: the name's first dash-separated part when it extends the method's name
    ("grpo_pp_coin-general-s0-60" -> "grpo_pp_coin"), else the method (runs named any other way)."""
    prefix = name.split("-", 1)[0]
    return prefix if prefix.startswith(method) else method


def matched_group_size(metrics: pd.DataFrame) -> tuple[int, float]:
    """(G, ratio): the GRPO++ group size that generates as many tokens per sampled prompt as FR3E did.

    metrics: FR3E `metrics.jsonl` rows with gen_tokens (every token the step generated: base trajectories and
    the continuations of every state, refill rounds included), prompts_used (prompts sampled, refills
    included) and base_length (mean length of a base trajectory, i.e. of a full response from the prompt).
    ratio = Σ gen_tokens / Σ (prompts_used · base_length): full responses' worth of tokens per prompt, which
    is what a GRPO++ group of G rollouts generates. Measured rather than derived from the recipe because
    how many states a prompt gets (≤ keep_right + keep_wrong trajectories × K anchors) and how long their
    continuations are depend on the model. G = the ratio rounded, at least 2 (a group needs two rollouts).
    """
    need = ["gen_tokens", "prompts_used", "base_length"]
    missing = [c for c in need if c not in metrics]
    if missing or metrics.empty:
        raise ValueError(f"matched rollouts need FR3E metrics with {need}; missing {missing or 'all rows'}")
    rows = metrics.dropna(subset=need)
    full = float((rows["prompts_used"] * rows["base_length"]).sum())
    if full <= 0:
        raise ValueError("matched rollouts: the FR3E runs logged no base trajectories (prompts_used · base_length "
                         "sums to 0)")
    ratio = float(rows["gen_tokens"].sum()) / full
    return max(2, int(round(ratio))), ratio


# ================================================================================================ runs
@dataclasses.dataclass(frozen=True)
class RunInfo:
    """One requested run: its identity and where it lives."""

    method: str  # "fr3e" | "grpo_pp"
    model: str  # base model: "general" | "math" (tiny) or a hub id (paper)
    seed: int
    steps: int
    run_dir: Path
    recipe: Path
    arm: str = ""  # "grpo_pp" | "fr3e" | a control arm (CONTROLS); "" = the method

    def __post_init__(self) -> None:
        if not self.arm:
            object.__setattr__(self, "arm", self.method)

    @property
    def done(self) -> bool:
        return (self.run_dir / "DONE").exists()


PAPER_BASE_MODELS = {"Qwen/Qwen2.5-7B": "qwen2.5-7b", "Qwen/Qwen2.5-Math-7B": "qwen2.5-math-7b",
                     "Qwen/Qwen2.5-32B": "qwen2.5-32b"}
"""Table 1's base models and the stem of their recipes in reproduce/configs/table1/."""

ONE_GPU_BASE_MODELS = {"Qwen/Qwen2.5-Math-1.5B": "qwen2.5-math-1.5b"}
"""The one-GPU profile's base model and the stem of its recipes in reproduce/configs/1gpu/ (the paper's data and
verifier on one GPU with the HF engine: `make reproduce PROFILE=1gpu`, `make plan PROFILE=1gpu`)."""

PROFILES = ("tiny", "paper", "1gpu")


STUDY_WORLD = "paths"
"""The tiny world the reproduction studies by default (`make reproduce`): paths in a digraph, where a response has
real forks. `arithmetic` (one worked solution per problem) is the control without forks (`WORLD=arithmetic`)."""


def recipe_stem(world: str = "arithmetic") -> str:
    """The tiny recipes' file stem of a world: `tiny` (arithmetic, the first world) or `tiny-<world>`."""
    from fr3e.tasks.worlds import get_world

    get_world(world)  # a clear error for an unknown world
    return "tiny" if world == "arithmetic" else f"tiny-{world}"


def profile_dir(profile: str, world: str = "arithmetic") -> str:
    """The folder under `runs_root` that holds a profile's run directories and base-model evaluations: `tiny`
    for the arithmetic world, `tiny-<world>` for another tiny world (so two worlds never share a run), `paper`."""
    return recipe_stem(world) if profile == "tiny" else profile


def recipes(profile: str = "tiny", world: str = "arithmetic") -> dict[str, Path | dict[str, Path]]:
    """The method recipes of a profile, baseline first.

    tiny:  {"grpo_pp": reproduce/configs/tiny-grpo_pp.yaml, "fr3e": ...} for the arithmetic world,
           reproduce/configs/tiny-<world>-<method>.yaml for another world (the base model is an override);
    paper: {"grpo_pp": {"Qwen/Qwen2.5-7B": reproduce/configs/table1/qwen2.5-7b-grpo_pp.yaml, ...}, "fr3e": ...}
    (one recipe per base model; `world` does not apply); 1gpu: the same shape over reproduce/configs/1gpu/.
    """
    if profile == "tiny":
        stem = recipe_stem(world)
        paths: dict = {m: CONFIG_DIR / f"{stem}-{m}.yaml" for m in METHODS}
        flat = list(paths.values())
    elif profile in ("paper", "1gpu"):
        folder, models = ("table1", PAPER_BASE_MODELS) if profile == "paper" else ("1gpu", ONE_GPU_BASE_MODELS)
        paths = {m: {model: CONFIG_DIR / folder / f"{stem}-{m}.yaml" for model, stem in models.items()}
                 for m in METHODS}
        flat = [p for d in paths.values() for p in d.values()]
    else:
        raise ValueError(f"unknown profile {profile!r}; use one of {', '.join(PROFILES)}")
    missing = [str(p) for p in flat if not p.exists()]
    if missing:
        raise FileNotFoundError(f"recipe(s) {missing} missing for profile {profile!r}; they ship with the "
                                "repository under reproduce/configs/ (check out the full repository).")
    return paths


def safe_name(model: str) -> str:
    """A base-model name usable in a directory name ("Qwen/Qwen2.5-7B" -> "Qwen2.5-7B")."""
    return model.rstrip("/").split("/")[-1].replace(" ", "_")


def run_name(method: str, model: str, seed: int, steps: int, overrides: Sequence[str] = (),
             arm: str | None = None) -> str:
    """Deterministic run name, e.g. "fr3e-general-s0-60"; extra overrides add a short hash of themselves, a
    control arm replaces the method ("grpo_pp_coin-general-s0-60-1a2b3c4d")."""
    name = f"{arm or method}-{safe_name(model)}-s{seed}-{steps}"
    if overrides:
        digest = hashlib.sha256("\n".join(sorted(overrides)).encode()).hexdigest()[:8]
        name += f"-{digest}"
    return name


DEFAULT_CACHE = REPO_ROOT / "runs" / "cache"
"""Where warm-started tiny base models are cached (shared by smoke and full runs; `python -m fr3e.cli.train`
run from the repository root uses the same directory)."""


def _recipe_for(recipe: str | Path | dict, model: str) -> Path:
    if isinstance(recipe, dict):
        if model not in recipe:
            raise ValueError(f"no recipe for base model {model!r}; recipes exist for {sorted(recipe)}")
        return Path(recipe[model])
    return Path(recipe)


def accelerate_command(accelerate_config: str | Path, recipe: Path, overrides: Sequence[str],
                       run_dir: Path, cache_dir: str | Path = DEFAULT_CACHE) -> list[str]:
    """The `accelerate launch -m fr3e.cli.train ...` command line of one run (multi-process training)."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config),
           "-m", "fr3e.cli.train", "--config", str(recipe), "--run-dir", str(run_dir), "--cache-dir", str(cache_dir),
           "--no-progress"]
    for item in overrides:
        cmd += ["--set", item]
    return cmd


def train_command(recipe: Path, overrides: Sequence[str], run_dir: Path,
                  cache_dir: str | Path = DEFAULT_CACHE) -> list[str]:
    """The `python -m fr3e.cli.train ...` command line of one single-process run."""
    cmd = [sys.executable, "-m", "fr3e.cli.train", "--config", str(recipe), "--run-dir", str(run_dir),
           "--cache-dir", str(cache_dir), "--no-progress"]
    for item in overrides:
        cmd += ["--set", item]
    return cmd


# ------------------------------------------------------------------------------------------- scheduler


# --------------------------------------------------------------------------------------------- progress


def _eval_overrides(overrides: Sequence[str], eval_n: int | None, eval_problems: int | None) -> list[str]:
    return (list(overrides) + ([f"data.eval_n={eval_n}"] if eval_n is not None else [])
            + ([f"data.eval_problems={eval_problems}"] if eval_problems is not None else []))


def run_dirs(runs: Iterable[RunInfo | str | Path]) -> list[Path]:
    """Run directories of RunInfos or paths."""
    return [r.run_dir if isinstance(r, RunInfo) else Path(r) for r in runs]


# ============================================================================================= loaders


def final_eval_path(run_dir: str | Path, problems: int) -> Path:
    """Where `final_eval` writes the evaluation of a run's final model on `problems` problems per split."""
    return Path(run_dir) / f"final_eval-p{problems}.json"


# ============================================================================= base-model evaluation


def describe_runs(runs: Sequence[RunInfo]) -> str:
    """One line per run (used in notebook logs)."""
    return "\n".join(f"{r.arm:15s} {r.model:10s} seed {r.seed} steps {r.steps} {'done' if r.done else 'pending'} "
                     f"{r.run_dir}" for r in runs)


ARCHIVE = "runs"
"""`<results_dir>/runs/<profile folder>/<run>/`: each run's logs beside the results, without weights or
checkpoints, so every verdict can be recomputed from the repository alone (`fr3e.study.committed.claims_from_committed`,
written by `fr3e.study.artefacts.archive_runs`)."""


def archived_run(results_dir: str | Path, run_dir: str | Path) -> Path:
    """Where `run_dir` (`.../<profile folder>/<run>`) is archived under `results_dir`."""
    run_dir = Path(run_dir)
    return Path(results_dir) / ARCHIVE / run_dir.parent.name / run_dir.name
