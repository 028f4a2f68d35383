"""Run one hyper-parameter sweep of the tiny recipes and write its results table.

    python reproduce/sweeps/run.py reproduce/sweeps/lr.yaml [--dry-run] [--only NAME ...]

A sweep file names a base recipe, the overrides every run shares (`set`) and the settings to try:
`grid` (one factor at a time: each listed value replaces that one key of `set`) and/or `runs` (named
combinations). Keys are the dotted `TrainConfig` fields of `python -m fr3e.cli.train --set`, plus two keys
of the warm start: `warm_start.steps` and `warm_start.lr` (the SFT of `fr3e.tasks.warm_start`, cached
like the default base models; the run then starts from that directory).

For every setting the driver
1. evaluates the base model once with the run's own evaluation protocol (`data.eval_*`, the seed the
   trainer uses for its final evaluation), and once at the training sampler (`rollout.temperature`,
   `rollout.top_p`) for the headroom pass@16 - pass@1 (cached in `runs/sweep/base/`);
2. trains it with `python -m fr3e.cli.train` in `runs/sweep/<sweep>/<setting>/` (one process, 1 thread,
   nice 10; a finished run is reused, an interrupted one resumes);
3. appends one row to `reproduce/sweeps/<sweep>/results.csv`: base and final avg@n per split, the gain
   of their mean, entropy and batch reward at the start / end of training (mean of the first / last
   `EDGE` steps), the share of All-Wrong groups, the engine/trainer log-prob gap, grad norm, wall time.

The results are also written as a markdown table (`results.md`) beside the CSV.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RUNS = ROOT / "runs" / "sweep"
CODE = ROOT  # where the `fr3e` package is imported from (--code: a pinned copy, e.g. `git archive <sha> fr3e`)
EDGE = 10  # steps averaged for "start" and "end" values of a training curve
WARM_KEYS = ("warm_start.steps", "warm_start.lr")


def slug(overrides: dict) -> str:
    """A readable directory name for one setting, e.g. {'optim.lr': 3e-4} -> 'lr=3e-04'."""
    if not overrides:
        return "base"
    parts = []
    for key, value in overrides.items():
        short = key.split(".")[-1] if not key.startswith("warm_start.") else "ws_" + key.split(".")[-1]
        text = f"{value:.0e}" if isinstance(value, float) and (value < 1e-2) else str(value)
        parts.append(f"{short}={text}")
    return ",".join(parts)


def settings(sweep: dict) -> list[tuple[str, dict]]:
    """(name, overrides) for every run of a sweep: `set` merged with each grid value / named run."""
    shared = dict(sweep.get("set") or {})
    out: list[tuple[str, dict]] = []
    for key, values in (sweep.get("grid") or {}).items():
        for value in values:
            out.append((slug({key: value}), {**shared, key: value}))
    for name, extra in (sweep.get("runs") or {}).items():
        out.append((name, {**shared, **(extra or {})}))
    seen = set()
    unique = []
    for name, ov in out:  # a grid value equal to the shared one appears once per key: keep the first
        key = json.dumps(ov, sort_keys=True)
        if key not in seen:
            seen.add(key)
            unique.append((name, ov))
    return unique


def base_model_dir(recipe_base: str, overrides: dict) -> tuple[str, dict]:
    """The model.base to train from: the recipe's name, or a warm start built with the overrides."""
    base = overrides.get("model.base", recipe_base)
    warm = {k.split(".")[1]: v for k, v in overrides.items() if k in WARM_KEYS}
    if not warm:
        return base, {}
    from fr3e.tasks.warm_start import BASE_MODELS, warm_start

    config = dataclasses.replace(BASE_MODELS[base], **warm)
    path = warm_start(base, cache_dir=ROOT / "runs" / "cache", config=config, progress=False, threads=1)
    return str(path), warm


def evaluate_base(model_dir: Path, config, tag: str, temperature: float, top_p: float) -> dict:
    """Evaluation report of a base model (cached by its directory and the protocol)."""
    from fr3e.evaluation.evaluate import evaluate
    from fr3e.utils.seeds import derive_seed

    d = config.data
    protocol = {"model": str(model_dir), "n": d.eval_n, "t": temperature, "top_p": top_p,
                "max_new": d.max_response_tokens, "problems": d.eval_problems, "bench": list(d.eval_benchmarks),
                "seed": derive_seed(config.seed, "eval")}
    key = hashlib.sha256(json.dumps(protocol, sort_keys=True).encode()).hexdigest()[:12]
    path = RUNS / "base" / f"{Path(model_dir).name}-{tag}-{key}.json"
    if path.exists():
        return json.loads(path.read_text())
    report = evaluate(model_dir, benchmarks=list(d.eval_benchmarks), n=d.eval_n, temperature=temperature,
                      top_p=top_p, max_new_tokens=d.max_response_tokens, num_problems=d.eval_problems or None,
                      seed=protocol["seed"], greedy=tag == "eval", progress=False)
    report["protocol"] = protocol
    from fr3e.utils.io import atomic_write_json

    atomic_write_json(path, report)
    return report


def train(recipe: str, overrides: dict, run_dir: Path, model_base: str) -> None:
    """One training run in a child process (1 thread, nice 10); returns when it has finished."""
    sets = [f"{k}={v}" for k, v in overrides.items() if k not in WARM_KEYS and k != "model.base"]
    sets.append(f"model.base={model_base}")
    cmd = ["nice", "-n", "10", sys.executable, "-m", "fr3e.cli.train", "--config", str(ROOT / recipe),
           "--run-dir", str(run_dir), "--cache-dir", str(ROOT / "runs" / "cache"), "--no-progress"]
    cmd += [x for s in sets for x in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(CODE)}
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(run_dir.parent / f"{run_dir.name}.log", "a") as log:
        subprocess.run(cmd, cwd=CODE, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)


def _mean(xs) -> float:
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return sum(xs) / len(xs) if xs else math.nan


def summarise(name: str, overrides: dict, run_dir: Path, base_eval: dict, base_train: dict) -> dict:
    """One results row from a finished run directory and its base model's reports."""
    from fr3e.utils.io import read_jsonl

    metrics = read_jsonl(run_dir / "metrics.jsonl")
    final_step = max(r["step"] for r in read_jsonl(run_dir / "eval.jsonl"))
    final = {r["benchmark"]: r for r in read_jsonl(run_dir / "eval.jsonl") if r["step"] == final_step}
    splits = list(final)
    n = next(iter(final.values()))["n"]
    row: dict = {"setting": name, "overrides": json.dumps(overrides, sort_keys=True)}
    for s in splits:
        b = base_train["benchmarks"][s]
        row[f"headroom_{s}"] = 100 * (b[f"pass@{n}"] - b["pass@1"])
        row[f"base_pass{n}_{s}"] = 100 * b[f"pass@{n}"]
    for s in splits:
        row[f"base_{s}"] = 100 * base_eval["benchmarks"][s][f"avg@{n}"]
        row[f"final_{s}"] = 100 * final[s]["avg"]
    row["base_avg"] = _mean(row[f"base_{s}"] for s in splits)
    row["final_avg"] = _mean(row[f"final_{s}"] for s in splits)
    row["gain"] = row["final_avg"] - row["base_avg"]
    row["final_greedy_avg"] = 100 * _mean(final[s]["greedy"] for s in splits)
    row["base_greedy_avg"] = 100 * _mean(base_eval["benchmarks"][s]["greedy"] for s in splits)
    head, tail = metrics[:EDGE], metrics[-EDGE:]
    for key, col in (("entropy", "entropy"), ("reward_all_mean", "reward")):
        row[f"{col}_start"] = _mean(r[key] for r in head)
        row[f"{col}_end"] = _mean(r[key] for r in tail)
    row["entropy_ratio"] = row["entropy_end"] / row["entropy_start"] if row["entropy_start"] else math.nan

    def share(rows, what):
        total = sum(r["groups_all_right"] + r["groups_all_wrong"] + r["groups_mixed"] for r in rows)
        return sum(r[f"groups_{what}"] for r in rows) / total if total else math.nan

    row["all_wrong_start"], row["all_wrong_end"] = share(head, "all_wrong"), share(tail, "all_wrong")
    row["all_right_start"], row["all_right_end"] = share(head, "all_right"), share(tail, "all_right")
    row["logprob_gap"] = _mean(r["logprob_gap"] for r in metrics)
    row["grad_norm"] = _mean(r["grad_norm"] for r in metrics)
    row["clip_frac"] = _mean(r["clip_low_frac"] + r["clip_high_frac"] for r in metrics)
    row["steps"] = len(metrics)
    row["wall_s"] = metrics[-1]["wall"]
    return row


def to_markdown(rows: list[dict]) -> str:
    """The README-style table: setting, base avg, final per split, gain, entropy start/end, wall."""
    if not rows:
        return ""
    splits = [k[len("final_"):] for k in rows[0] if k.startswith("final_") and k not in ("final_avg", "final_greedy_avg")]
    head = (["setting", "base avg"] + [f"final {s}" for s in splits]
            + ["final avg", "gain", "entropy start→end", "reward start→end", "all-wrong start→end", "wall s"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["setting"], f"{r['base_avg']:.1f}"] + [f"{r[f'final_{s}']:.1f}" for s in splits] + [
            f"{r['final_avg']:.1f}", f"{r['gain']:+.1f}", f"{r['entropy_start']:.3f}→{r['entropy_end']:.3f}",
            f"{r['reward_start']:.2f}→{r['reward_end']:.2f}",
            f"{r['all_wrong_start']:.2f}→{r['all_wrong_end']:.2f}", f"{r['wall_s']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(out_dir: Path, rows: list[dict]) -> None:
    from fr3e.utils.io import atomic_write_text

    if not rows:
        return
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for r in rows for k in r))
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(out_dir / "results.csv", buf.getvalue())
    atomic_write_text(out_dir / "results.md", to_markdown(rows))


def run_sweep(path: Path, only: list[str] | None = None, dry_run: bool = False) -> list[dict]:
    from fr3e.training.config import load_config

    sweep = yaml.safe_load(path.read_text())
    name = path.stem
    recipe = sweep["recipe"]
    out_dir = path.parent / name
    rows = []
    for setting, overrides in settings(sweep):
        run_dir = RUNS / name / setting
        selected = not only or setting in only
        if dry_run:
            if selected:
                sys.stdout.write(f"{setting}: {overrides} -> {run_dir}\n")
            continue
        from fr3e.training.runlog import RunDir

        if not selected and not RunDir(run_dir).is_finished():
            continue  # neither asked for nor finished: nothing to train or report
        t0 = time.perf_counter()
        recipe_base = load_config(ROOT / recipe).model.base
        model_base, _ = base_model_dir(recipe_base, overrides)
        sets = [f"{k}={v}" for k, v in overrides.items() if k not in WARM_KEYS and k != "model.base"]
        config = load_config(ROOT / recipe, sets + [f"model.base={model_base}"])
        from fr3e.training.policy import load_policy

        _, _, source = load_policy(config, ROOT / "runs" / "cache", progress=False)
        base_eval = evaluate_base(Path(source), config, "eval", config.data.eval_temperature, config.data.eval_top_p)
        base_train = evaluate_base(Path(source), config, "train", config.rollout.temperature, config.rollout.top_p)
        if selected:
            train(recipe, overrides, run_dir, model_base)
        row = summarise(setting, overrides, run_dir, base_eval, base_train)
        rows.append(row)
        write_results(out_dir, rows)
        sys.stdout.write(f"{setting}: base {row['base_avg']:.1f} -> {row['final_avg']:.1f} ({row['gain']:+.1f}), "
                         f"entropy {row['entropy_start']:.3f} -> {row['entropy_end']:.3f}, "
                         f"wall {row['wall_s']:.0f} s ({time.perf_counter() - t0:.0f} s with evals)\n")
        sys.stdout.flush()
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweeps", nargs="+", type=Path, help="sweep YAML files (reproduce/sweeps/*.yaml)")
    parser.add_argument("--only", nargs="*", default=None,
                        help="train only these settings (names as in --dry-run); the table still lists every "
                             "finished run of the sweep")
    parser.add_argument("--dry-run", action="store_true", help="list the settings and run directories")
    parser.add_argument("--code", type=Path, default=None,
                        help="import fr3e from this directory instead of the working tree (a pinned copy made "
                             "with `git archive <sha> fr3e | tar -x -C DIR`, so edits in progress do not leak in)")
    args = parser.parse_args(argv)
    global CODE
    if args.code is not None:
        CODE = args.code.resolve()
        sys.path.insert(0, str(CODE))
    import torch

    torch.set_num_threads(1)
    os.chdir(ROOT)
    for path in args.sweeps:
        run_sweep(path, args.only, args.dry_run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
