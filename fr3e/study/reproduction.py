"""Reproduce the paper's artefacts: run the notebooks in order with papermill and keep what they write.

    python -m fr3e.cli.reproduce [--profile auto|tiny|paper] [--smoke] [--dry-run] all|walkthrough|table1|...

Every notebook in `notebooks/` has one cell tagged `parameters` whose defaults are the fast smoke values
(what nbval runs). This driver injects the full values of the chosen profile (or, with `--smoke`, the
smoke values again), executes the notebook with the `python3` kernel in `notebooks/`, and saves the
executed notebook (huge outputs trimmed) as `<results_dir>/<artefact>/<notebook>.ipynb`, next to the
`data.csv`, `summary.json`, `figure.png` and `provenance.json` the notebook writes itself. The wall time
of each notebook is added to that provenance, and the total goes to `<results_dir>/reproduce.json`.
`all` runs every artefact but the studies (`STUDIES`: compute, ablations), each of which is its own target
with its own hour of training; running one rewrites `<results_dir>/README.md` like `all` does.

Profiles: `tiny` (CPU, an embedded world, minutes to an hour on 2 cores) and `paper` (Qwen2.5
on CUDA GPUs, needs `pip install -e '.[gpu]'` and days of a GPU node). `auto` picks `paper` when
`torch.cuda.device_count() > 0` and `tiny` otherwise, and says why. The tiny profile studies the path world
(`fr3e.study.runs.STUDY_WORLD`, results in `results/`); `--world arithmetic` runs the control without forks into
`results/arithmetic/`.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from fr3e.study.artefacts import git_sha
from fr3e.study.runs import ONE_GPU_BASE_MODELS, PAPER_BASE_MODELS, REPO_ROOT, STUDY_WORLD
from fr3e.utils.io import atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = {
    "walkthrough": "01_walkthrough.ipynb",
    "table1": "02_table1.ipynb",
    "entropy": "03_entropy.ipynb",
    "length": "04_length.ipynb",
    "advantage": "05_advantage.ipynb",
    "all_right": "06_all_right.ipynb",
    "compute": "07_compute.ipynb",
    "ablations": "08_ablations.ipynb",
}
"""Artefact -> notebook, in execution order (table1 trains the runs the later notebooks read)."""
STUDIES = ("compute", "ablations")
"""Artefacts that `all` leaves out: each is its own target with its own hour on 2 cores
(`make reproduce-compute`, `make reproduce-ablations`), training runs of its own."""
KERNEL = "python3"

SMOKE_PARAMETERS = {
    "profile": "tiny",
    "world": STUDY_WORLD,
    "models": ["general"],
    "seeds": [0],
    "steps": 4,
    "eval_n": 4,
    "eval_problems": 16,
    "overrides": ["data.prompts_per_step=4", "grpo.max_refill_rounds=1"],
    "runs_root": "../runs/smoke",
    "results_dir": "../runs/smoke/results",
    "cache_dir": "../runs/cache",
    "source": "train",
    "committed_dir": "../results",
    "accelerate_config": None,
    "controls": ["coin", "matched"],
    "smooth": 1,
    "model": "general",
    "problem_index": None,
    "k": 4,
    "m": 8,
    "seed": 0,
    "study_seeds": [0],
    "study_steps": 2,
    "study_overrides": ["data.prompts_per_step=4", "grpo.max_refill_rounds=1"],
    "eval_every": 1,
    "curve_problems": 4,
    "final_problems": 8,
    "ablation_models": ["general"],
    "ablation_steps": 2,
    "ablation_eval_every": 1,
    "ablation_values": {"K": [1, 2], "scorer": ["entropy", "random"]},
    "card_problems": 4,
}
"""The notebooks' `parameters` defaults (nbval runs them; a test checks every notebook agrees). Paths are
relative to notebooks/, where the kernel runs. The smoke runs train on 4 prompts per step with one refill
round (the recipes: 16 and 2), so that every notebook checks the whole path in seconds, not minutes."""

TINY_SEEDS = [0, 1, 2, 3, 4]
"""Training seeds per arm of the full tiny reproduction (at least 5 seeds per arm for Table 1; the
coin-reward control trains the first 3, `fr3e.study.runs.CONTROLS`)."""
STUDY_PARAMETERS = {"study_seeds": [0, 1, 2], "study_steps": 50, "study_overrides": [], "eval_every": 10,
                    "curve_problems": 32, "final_problems": 512, "ablation_models": ["general"],
                    "ablation_steps": 35, "ablation_eval_every": 10, "ablation_values": None}
"""The full tiny values of the compute and ablation studies, sized to fit an hour each (under 60 minutes on 2
cores) with the unit costs measured in the Table 1 runs (`fr3e.study.costs.Costs`; the estimate is in each
notebook): 3 seeds; compute at 50 steps on both base models (the recipe's 100 would need ~85 minutes), ablations
at 35 steps on `general` (50 would need ~75); a curve point every 10 steps on 32 problems per split; every final
model evaluated on 512 problems per split, like Table 1."""
TINY_EVAL_PROBLEMS = 512
"""Problems per evaluation split of the full tiny reproduction (at least 512; 128 problems × n=16
gave about ±6 points per split). Training steps, learning rate and the rest come from the recipes
(reproduce/configs/tiny-*.yaml), never from here."""

MAX_STREAM_CHARS = 20_000
"""Longest text kept per stream output in a saved notebook (the tail is kept)."""
MAX_OUTPUT_BYTES = 1_500_000
"""An output larger than this is replaced by a note in the saved notebook."""


class ProfileError(SystemExit):
    """The requested profile cannot run on this machine; the message says what it needs."""


def cuda_devices() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - a broken CUDA setup counts as no GPU
        return 0


PAPER_GPUS = 8
"""GPUs the paper profile's launch config starts one process on each (reproduce/accelerate/fsdp-8gpu.yaml)."""


def paper_requirements(device_count: int) -> list[str]:
    """What the paper profile still needs on this machine (empty when it can run)."""
    missing = []
    if device_count < PAPER_GPUS:
        missing.append(f"{PAPER_GPUS} CUDA GPUs (torch.cuda.device_count() is {device_count}; the paper profile trains "
                       "Qwen2.5-7B/32B with FSDP over 8 processes, see reproduce/accelerate/README.md)")
    try:
        import vllm  # noqa: F401
    except Exception:  # noqa: BLE001
        missing.append("vLLM for rollouts: pip install -e '.[gpu]' -c constraints.txt")
    table1 = REPO_ROOT / "reproduce" / "configs" / "table1"
    if not table1.is_dir() or not any(table1.glob("*.yaml")):
        missing.append(f"the Table 1 recipes in {table1.relative_to(REPO_ROOT)}/")
    return missing


ONE_GPU_MEMORY_GB = 60
"""GPU memory the one-GPU recipes need: the binding phase of `make plan PROFILE=1gpu` (about 53 GB) with headroom."""


def gpu_memory_gb() -> float:
    """Memory of CUDA device 0 in GB (0 without one)."""
    try:
        import torch

        return torch.cuda.get_device_properties(0).total_memory / 1e9 if torch.cuda.is_available() else 0.0
    except Exception:  # noqa: BLE001 - a broken CUDA setup counts as no GPU
        return 0.0


def one_gpu_requirements(device_count: int, memory_gb: float) -> list[str]:
    """What the one-GPU profile still needs on this machine (empty when it can run)."""
    missing = []
    if device_count < 1:
        missing.append("one CUDA GPU (torch.cuda.device_count() is 0)")
    elif memory_gb < ONE_GPU_MEMORY_GB:
        missing.append(f"a GPU with at least {ONE_GPU_MEMORY_GB} GB (device 0 has {memory_gb:.0f} GB; lower "
                       "rollout.kv_cache_gb and optim.micro_batch_tokens in reproduce/configs/1gpu/ for a smaller one)")
    folder = REPO_ROOT / "reproduce" / "configs" / "1gpu"
    if not folder.is_dir() or not any(folder.glob("*.yaml")):
        missing.append(f"the one-GPU recipes in {folder.relative_to(REPO_ROOT)}/")
    return missing


def select_profile(requested: str = "auto", device_count: int | None = None,
                   memory_gb: float | None = None) -> tuple[str, str]:
    """(profile, reason). `paper` or `1gpu` without what it needs raises ProfileError naming each missing piece."""
    if requested not in ("auto", "tiny", "paper", "1gpu"):
        raise ValueError(f"unknown profile {requested!r}; use auto, tiny, paper or 1gpu")
    n = cuda_devices() if device_count is None else device_count
    if requested == "tiny":
        return "tiny", "requested with --profile tiny"
    if requested == "1gpu":
        memory = gpu_memory_gb() if memory_gb is None else memory_gb
        missing = one_gpu_requirements(n, memory)
        if missing:
            raise ProfileError("the 1gpu profile cannot run here; it needs:\n  - " + "\n  - ".join(missing)
                               + "\nIts runs are the recipes in reproduce/configs/1gpu/ (make plan PROFILE=1gpu). "
                               "On a CPU machine use --profile tiny.")
        return "1gpu", f"requested with --profile 1gpu ({n} CUDA GPU(s), device 0 {memory:.0f} GB)"
    missing = paper_requirements(n)
    if requested == "auto":
        if n == 0:
            return "tiny", "--profile auto: no CUDA GPU visible (torch.cuda.device_count() == 0)"
        if not missing:
            return "paper", f"--profile auto: {n} CUDA GPU(s) visible and everything the paper profile needs"
        return "tiny", (f"--profile auto: {n} CUDA GPU(s) visible, but the paper profile needs "
                        + "; ".join(missing) + " (ask for it with --profile paper to see the whole list)")
    if missing:
        raise ProfileError("the paper profile cannot run here; it needs:\n  - " + "\n  - ".join(missing)
                           + "\nThe runs are the recipes in reproduce/configs/table1/; plan them first with "
                           "`make plan-table1` (python -m fr3e.cli.plan). On a CPU machine use --profile tiny.")
    return "paper", f"requested with --profile paper ({n} CUDA GPU(s))"


def results_dir_of(world: str = STUDY_WORLD) -> str:
    """Where a full tiny reproduction writes (notebook-relative): `../results` for the studied world,
    `../results/<world>` for another (the arithmetic control: `../results/arithmetic`)."""
    from fr3e.tasks.worlds import CANDIDATE_WORLDS, get_world

    get_world(world)  # a clear error for an unknown world
    if world in CANDIDATE_WORLDS:
        raise ValueError(f"world {world!r} is a candidate measured on the worlds' scorecard only (no study recipes): "
                         f"python reproduce/worlds/scorecard.py --world {world}; the studies run on paths or arithmetic")
    return "../results" if world == STUDY_WORLD else f"../results/{world}"


def full_parameters(profile: str, world: str = STUDY_WORLD) -> dict:
    """The full-reproduction parameters of a profile (what `make reproduce` injects); `world`: the tiny world."""
    if profile == "tiny":
        return {**SMOKE_PARAMETERS, "world": world, "models": ["general", "math"], "seeds": list(TINY_SEEDS),
                "steps": None, "eval_n": 16, "eval_problems": TINY_EVAL_PROBLEMS, "overrides": [],
                "runs_root": "../runs", "results_dir": results_dir_of(world), "controls": ["coin", "matched"],
                "smooth": 5, "m": 16, "card_problems": 64, **STUDY_PARAMETERS}
    if profile == "paper":
        model = next(iter(PAPER_BASE_MODELS))
        return {**SMOKE_PARAMETERS, "profile": "paper", "models": list(PAPER_BASE_MODELS), "seeds": [0],
                "steps": None, "eval_n": 16, "eval_problems": None, "overrides": [], "runs_root": "../runs", "results_dir": "../results",
                "accelerate_config": "../reproduce/accelerate/fsdp-8gpu.yaml", "smooth": 10, "model": model,
                "m": 16, "controls": []}  # controls on 7B-32B models are a budget decision (make plan-table1)
    if profile == "1gpu":
        model = next(iter(ONE_GPU_BASE_MODELS))
        return {**SMOKE_PARAMETERS, "profile": "1gpu", "models": list(ONE_GPU_BASE_MODELS), "seeds": [0],
                "steps": None, "eval_n": None, "eval_problems": None, "overrides": [], "runs_root": "../runs",
                "results_dir": "../results/1gpu", "accelerate_config": None, "smooth": 5, "model": model, "m": 8,
                "controls": []}  # one process on one GPU; the recipes' evaluation settings
    raise ValueError(f"unknown profile {profile!r}")


def parameters_for(profile: str, smoke: bool, notebook: str | Path | None = None, world: str = STUDY_WORLD) -> dict:
    """Parameters to inject: smoke or full values, restricted to the names the notebook declares."""
    params = copy.deepcopy({**SMOKE_PARAMETERS, "world": world} if smoke else full_parameters(profile, world))
    if smoke and profile != "tiny":
        raise ValueError("--smoke runs the tiny profile only")
    if notebook is not None:
        declared = declared_parameters(notebook)
        params = {k: v for k, v in params.items() if k in declared}
    return params


def declared_parameters(notebook: str | Path) -> set[str]:
    """Names assigned in the notebook's `parameters` cell."""
    import ast

    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{notebook} must have exactly one code cell tagged 'parameters', found {len(cells)}")
    names = set()
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def resolve(path: str | Path) -> Path:
    """A notebook-relative path (the kernel runs in notebooks/) as an absolute path."""
    p = Path(path)
    return p if p.is_absolute() else (NOTEBOOK_DIR / p).resolve()


def strip_outputs(nb, max_stream: int = MAX_STREAM_CHARS, max_bytes: int = MAX_OUTPUT_BYTES) -> int:
    """Trim huge outputs in place: long streams keep their tail, oversized outputs become a note,
    widget state is dropped. Returns how many outputs were changed."""
    import nbformat

    changed = 0
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and len(out.get("text", "")) > max_stream:
                out["text"] = f"[... {len(out['text']) - max_stream} characters trimmed ...]\n" + out["text"][-max_stream:]
                changed += 1
            data = out.get("data", {})
            if "application/vnd.jupyter.widget-view+json" in data:
                data.pop("application/vnd.jupyter.widget-view+json")
                changed += 1
            size = len(json.dumps(out))
            if size > max_bytes:
                out = nbformat.v4.new_output("stream", name="stdout",
                                             text=f"[output of {size} bytes removed from the saved notebook]\n")
                changed += 1
            outputs.append(out)
        cell["outputs"] = outputs
    return changed


class ProgressLine:
    """One progress line for a whole reproduction: elapsed time, the notebook running, and the runs of
    `<runs_root>/progress.json` (`fr3e.study.runs.progress_line`: runs done / total, steps, estimated remaining).

    The runs train inside the notebook's kernel, whose output papermill does not show, so a thread here reads
    the status file `fr3e.study.runs.ensure_runs` keeps. On a terminal the line is rewritten in place every
    `every_s` seconds; otherwise a new line is written when the runs' state changes, at most every `every_s`
    seconds, and at least every `quiet_s` seconds.
    """

    def __init__(self, stream=None, every_s: float = 2.0, quiet_s: float = 60.0):
        import threading

        self.stream = stream or sys.stderr
        self.every_s, self.quiet_s = every_s, quiet_s
        self.start = time.time()
        self.label, self.status_path = "", None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last = ("", 0.0)
        self._width = 0

    def line(self) -> str:
        from fr3e.study.launch import format_duration, progress_line

        now = time.time()
        text = f"[{format_duration(now - self.start)}] {self.label}"
        if self.status_path is not None and self.status_path.exists():
            try:
                text += " | " + progress_line(json.loads(self.status_path.read_text()), now)
            except (OSError, ValueError):
                pass  # being replaced: next tick
        return text

    def show(self, force: bool = False) -> None:
        text = self.line()
        if self.stream.isatty():
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            key = text.split("] ", 1)[-1].split(", about")[0]  # the state, without the clock
            if force or key != self._last[0] or time.time() - self._last[1] >= self.quiet_s:
                self.stream.write(text + "\n")
                self._last = (key, time.time())
        self.stream.flush()

    def follow(self, label: str, status_path: Path | None) -> None:
        """Show `label` and the runs of `status_path` from now on (starts the thread on first use)."""
        import threading

        self.label, self.status_path = label, status_path
        self.show(force=True)
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.show()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.show(force=True)
        if self.stream.isatty():
            self.stream.write("\n")


def status_path(parameters: dict) -> Path | None:
    """The progress file `fr3e.study.runs.ensure_runs` writes for these notebook parameters (None without runs)."""
    root = parameters.get("runs_root")
    return resolve(root) / "progress.json" if root else None


def run_notebook(artefact: str, parameters: dict, progress: bool = True) -> tuple[Path, float]:
    """Execute one notebook with papermill; save it, trimmed, as <results_dir>/<artefact>/<name>.ipynb.

    progress: papermill's per-cell bar (the reproduce driver shows its own line instead).
    Returns (saved notebook, seconds). A failing notebook is kept as <name>.failed.ipynb and re-raised.
    """
    import nbformat
    import papermill

    name = NOTEBOOKS[artefact]
    out_dir = resolve(parameters.get("results_dir", SMOKE_PARAMETERS["results_dir"])) / artefact
    out_dir.mkdir(parents=True, exist_ok=True)
    running = out_dir / f".running-{name}"
    final = out_dir / name
    start = time.perf_counter()
    try:
        papermill.execute_notebook(str(NOTEBOOK_DIR / name), str(running), parameters=parameters,
                                   kernel_name=KERNEL, cwd=str(NOTEBOOK_DIR), progress_bar=progress,
                                   log_output=False, request_save_on_cell_execute=True)
    except BaseException:
        if running.exists():
            running.replace(out_dir / name.replace(".ipynb", ".failed.ipynb"))
        raise
    seconds = time.perf_counter() - start
    nb = nbformat.read(str(running), as_version=4)
    strip_outputs(nb)
    atomic_write_text(final, nbformat.writes(nb))
    running.unlink(missing_ok=True)
    prov = out_dir / "provenance.json"
    if prov.exists():
        record = json.loads(prov.read_text())
        record.update({"notebook": f"notebooks/{name}", "notebook_seconds": round(seconds, 1),
                       "injected_parameters": parameters})
        atomic_write_json(prov, record)
    return final, seconds


def reproduce(targets: Sequence[str], profile: str = "auto", smoke: bool = False, dry_run: bool = False,
              device_count: int | None = None, world: str = STUDY_WORLD) -> dict:
    """Run the notebooks of `targets` ("all" or artefact names) in order; returns the timing record. world: the
    tiny world (`fr3e.tasks.worlds`; the paper profile ignores it)."""
    chosen, why = select_profile("tiny" if smoke and profile == "auto" else profile, device_count)
    results_dir_of(world)  # an unknown world fails before anything runs
    logger.info("profile %s (%s)%s%s", chosen, why, f", world {world}" if chosen == "tiny" else "",
                ", smoke parameters" if smoke else "")
    names = [t for t in NOTEBOOKS if t in targets or ("all" in targets and t not in STUDIES)]
    unknown = [t for t in targets if t != "all" and t not in NOTEBOOKS]
    if unknown:
        raise ValueError(f"unknown artefact(s) {unknown}; choose from all, {', '.join(NOTEBOOKS)} (all leaves out "
                         f"{' and '.join(STUDIES)})")
    record: dict = {"profile": chosen, "profile_reason": why, "smoke": smoke, "git_sha": git_sha(),
                    **({"world": world} if chosen == "tiny" else {}),
                    "notebooks": {}, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    start = time.perf_counter()
    results_dir = None
    line = None if dry_run else ProgressLine()
    before = committed_table1(resolve(parameters_for(chosen, smoke, world=world)["results_dir"])) \
        if "table1" in names and not dry_run else None
    try:
        for i, artefact in enumerate(names, start=1):
            params = parameters_for(chosen, smoke, NOTEBOOK_DIR / NOTEBOOKS[artefact], world)
            results_dir = params.get("results_dir", results_dir)
            logger.info("notebook %d/%d: %s -> %s/%s/", i, len(names), NOTEBOOKS[artefact],
                        params.get("results_dir"), artefact)
            logger.info("parameters: %s", json.dumps(params))
            if dry_run:
                record["notebooks"][artefact] = {"parameters": params}
                continue
            status = status_path(parameters_for(chosen, smoke, world=world))  # runs_root, also for notebooks without runs
            if i == 1 and status is not None:
                status.unlink(missing_ok=True)  # count the runs of this reproduction only
            line.follow(f"notebook {i}/{len(names)} {artefact}", status)
            saved, seconds = run_notebook(artefact, params, progress=False)
            logger.info("notebook %d/%d: %s done in %.0f s (saved %s)", i, len(names), NOTEBOOKS[artefact], seconds,
                        saved)
            record["notebooks"][artefact] = {"seconds": round(seconds, 1), "notebook": _repo_relative(saved)}
    finally:
        if line is not None:
            line.close()
    record["total_seconds"] = round(time.perf_counter() - start, 1)
    if not dry_run and results_dir is not None:
        archive_artefact_runs(resolve(results_dir), names)
        if before:
            record["table1_vs_committed"] = compare_with_committed(before, resolve(results_dir))
        if any(n not in STUDIES for n in names):  # a study alone keeps its time in its own provenance.json
            atomic_write_json(resolve(results_dir) / "reproduce.json", record)
        if "all" in targets or any(n in STUDIES for n in names):
            from fr3e.study.artefacts import write_results_readme

            write_results_readme(resolve(results_dir))
    logger.info("total wall time %s", _duration(record["total_seconds"]))
    return record


def committed_table1(results_dir: Path) -> list[dict] | None:
    """The Table 1 already in `results_dir` (the committed one on a fresh clone), read before it is rewritten."""
    path = results_dir / "table1" / "summary.json"
    return json.loads(path.read_text()).get("table") if path.exists() else None


def compare_with_committed(before: list[dict], results_dir: Path) -> dict:
    """Compare the Table 1 just written with the one it replaced (`fr3e.study.tables.compare_tables`), log what
    differs beyond the seed spread, and return the record kept in reproduce.json."""
    from fr3e.study.tables import compare_tables

    after = json.loads((results_dir / "table1" / "summary.json").read_text()).get("table") or []
    cmp = compare_tables(before, after)
    if cmp.empty:
        return {"cells": 0}
    out = cmp[~cmp["within"]]
    largest = cmp.loc[cmp["difference"].abs().idxmax()]
    logger.info("Table 1 against the numbers it replaced: %d of %d cells within 1.96 standard errors of the seed "
                "spread (one-seed rows: equal to the printed digit); largest difference %+.1f points (%s, %s, %s)",
                len(cmp) - len(out), len(cmp), largest["difference"], largest["model"], largest["system"],
                largest["benchmark"])
    for r in out.itertuples():
        logger.info("  outside: %s %s %s: %.1f -> %.1f (%+.1f, tolerance %.1f)", r.model, r.system, r.benchmark,
                    r.committed, r.reproduced, r.difference, r.tolerance)
    return {"cells": len(cmp), "within": int(cmp["within"].sum()), "outside": out.to_dict("records"),
            "largest_difference": float(largest["difference"])}


def archive_artefact_runs(results_dir: Path, artefacts: Sequence[str]) -> list[Path]:
    """Archive the logs of every run the artefacts' provenance.json name into `<results_dir>/runs/`
    (`fr3e.study.artefacts.archive_runs`), so their verdicts can be recomputed from the repository alone."""
    from fr3e.study.artefacts import archive_runs

    dirs: dict[str, Path] = {}
    for artefact in artefacts:
        prov = results_dir / artefact / "provenance.json"
        if prov.exists():
            for d in json.loads(prov.read_text()).get("run_dirs") or []:
                dirs.setdefault(Path(d).name, resolve(d))
    archived = archive_runs(list(dirs.values()), results_dir)
    if archived:
        logger.info("archived the logs of %d runs in %s", len(archived), results_dir / "runs")
    return archived


def _repo_relative(path: str | Path) -> str:
    """`path` relative to the repository root when it lies inside it (records stay valid in any clone)."""
    path = Path(path).resolve()
    try:
        return path.relative_to(REPO_ROOT.resolve()).as_posix()
    except ValueError:
        return str(path)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s} s" if m else f"{s} s"
