"""What a finished rehearsal run must hold: steps logged once each, two ranks, FSDP state when asked for,
weights that moved, a final evaluation on every benchmark.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from fr3e.utils.io import read_jsonl

logger = logging.getLogger(__name__)

def weight_change(base_dir: Path, model_dir: Path) -> float | None:
    """Largest |trained - base| over the tensors two safetensors model directories share (None if unreadable)."""
    from safetensors.torch import load_file

    try:
        base = {k: v for f in sorted(base_dir.glob("*.safetensors")) for k, v in load_file(f).items()}
        new = {k: v for f in sorted(model_dir.glob("*.safetensors")) for k, v in load_file(f).items()}
    except (OSError, ValueError):
        return None
    shared = [k for k in base if k in new and base[k].shape == new[k].shape]
    if not shared:
        return None
    return max(float((new[k].float() - base[k].float()).abs().max()) for k in shared)


def metrics_steps(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return len(read_jsonl(path)) if path.exists() else 0


def check_run(run_dir: Path, method: str, kind: str, checks: dict, resumed: bool, output: str,
              benchmark_accuracy: float, fixture_snapshot: Path | None) -> list[str]:
    """What a finished run must hold; returns the problems found (empty = fine)."""
    problems = []
    config = json.loads((run_dir / "config.json").read_text())
    env = json.loads((run_dir / "env.json").read_text()) if (run_dir / "env.json").exists() else {}
    rows = read_jsonl(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").exists() else []
    evals = read_jsonl(run_dir / "eval.jsonl") if (run_dir / "eval.jsonl").exists() else []
    checks.update({"world_size": env.get("world_size"), "steps_logged": len(rows),
                   "steps": [r.get("step") for r in rows], "eval_rows": len(evals),
                   "final_eval": {e["benchmark"]: e.get("avg") for e in evals if e.get("step") == config["steps"]},
                   "done": (run_dir / "DONE").exists()})
    if not checks["done"]:
        problems.append("no DONE file")
    if env.get("world_size") != 2:
        problems.append(f"world size {env.get('world_size')} in env.json, expected 2 ranks")
    if [r.get("step") for r in rows] != list(range(1, config["steps"] + 1)):
        problems.append(f"metrics.jsonl steps {checks['steps']}, expected 1..{config['steps']} once each")
    if resumed and "resumed" not in output:
        problems.append("the relaunch did not log 'resumed ... from step'")
    model_dir = run_dir / "model"
    checks["model_files"] = sorted(p.name for p in model_dir.iterdir()) if model_dir.is_dir() else []
    if not any(n.endswith((".safetensors", ".bin")) for n in checks["model_files"]):
        problems.append("no weights in the final model directory")
    benches = list(config["data"]["eval_benchmarks"])
    missing = [b for b in benches if b not in checks["final_eval"]]
    if missing:
        problems.append(f"no final evaluation row for {missing}")
    scores = [v for v in checks["final_eval"].values() if v is not None]
    if scores and max(scores) == 0 and benchmark_accuracy >= 0.2:
        problems.append(
            f"the final evaluation scores 0 on every benchmark, but the fixture model answers "
            f"{benchmark_accuracy:.0%} of these problems when prompted through the chat template and "
            "stopped at <|im_end|>: evaluation prompts or stop tokens differ from training's")
    change = weight_change(fixture_snapshot, model_dir) if fixture_snapshot else None
    checks["max_weight_change"] = change
    if change == 0.0:
        problems.append("the saved model equals the base model: no update reached the final weights")
    ckpts = sorted((run_dir / "checkpoints").glob("step-*"))
    files = sorted(p.name for p in ckpts[-1].iterdir()) if ckpts else []
    checks["checkpoint_files"] = files
    fsdp = any("fsdp" in n for n in files)
    if kind == "fsdp" and not fsdp:
        problems.append("FSDP was not active: the checkpoint holds no FSDP state (" + ", ".join(files) + "); "
                        "accelerate turns an FSDP config into MULTI_CPU DDP when Accelerator(cpu=True)")
    return problems
