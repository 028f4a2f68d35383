"""Score a tiny world on its base models and on GRPO++ only: the numbers a world is chosen on.

    python reproduce/worlds/scorecard.py --world paths                 # base models + GRPO++ learning-rate sweep
    python reproduce/worlds/scorecard.py --world paths --skip-grpo     # base models only (minutes)

Writes `reproduce/worlds/scorecard-<world>.json` (atomic): for each base model the world card of
`fr3e.evaluation.worldcard.measure` (forks, avg@16 / pass@16 per split, distinct correct answers, length
spread, mixed groups at G=8); for each GRPO++ learning rate the run directory, the held-out avg@16 curve, the
world card of the final model, the per-step entropy, clip fraction and probe entropy. FR3E never runs here:
the world and the GRPO++ recipe are chosen on these numbers before FR3E is run on the world.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from fr3e.evaluation.worldcard import measure  # noqa: E402
from fr3e.tasks.warm_start import warm_start  # noqa: E402
from fr3e.utils.io import atomic_write_json, read_jsonl  # noqa: E402


def grpo_run(world: str, base: str, lr: float, steps: int, runs: Path, cache: Path, extra: list[str],
             tag: str = "") -> Path:
    """One GRPO++ run of the tiny recipe on `world` (reused when finished; resumed when interrupted)."""
    run_dir = runs / f"{world}-grpo_pp-{base}-lr{lr:g}{tag}-{steps}"
    sets = [f"data.world={world}", f"model.base={base}", f"optim.lr={lr}", f"steps={steps}",
            f"name={run_dir.name}", "eval_every=25", "checkpoint_every=25", *extra]
    cmd = [sys.executable, "-m", "fr3e.cli.train", "--config", str(ROOT / "reproduce/configs/tiny-grpo_pp.yaml"),
           "--run-dir", str(run_dir), "--cache-dir", str(cache), "--no-progress"] + sum((["--set", s] for s in sets), [])
    print(">>", " ".join(cmd[2:]), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)
    return run_dir


def summarise_run(run_dir: Path) -> dict:
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    evals = read_jsonl(run_dir / "eval.jsonl")
    curve: dict[int, dict] = {}
    for row in evals:
        curve.setdefault(row["step"], {})[row["benchmark"]] = row["avg"]
    probe = read_jsonl(run_dir / "probe.jsonl") if (run_dir / "probe.jsonl").exists() else []
    pick = ("step", "entropy", "clip_high_frac", "clip_low_frac", "response_length", "reward_mean", "gen_tokens")
    env = json.loads((run_dir / "env.json").read_text())
    return {"run_dir": str(run_dir.relative_to(ROOT)) if run_dir.is_relative_to(ROOT) else str(run_dir),
            "git_sha": env.get("git_sha"),
            "eval_avg": {str(s): {**v, "mean": sum(v.values()) / len(v)} for s, v in sorted(curve.items())},
            "metrics": [{k: m.get(k) for k in pick if k in m} for m in metrics],
            "probe": probe}


def gate(card: dict) -> list[tuple[str, bool | None, str]]:
    """(line, passed, the numbers) for every line of the gate; passed is None where nothing was measured yet."""
    lines = []
    base = card["bases"].get("general", {}).get("card")
    if base:
        sp = base["splits"]
        lines.append(("forks: median response has >= 3 positions with entropy >= 0.5 nats on every split",
                      all(v["forks_median"] >= 3 for v in sp.values()),
                      ", ".join(f"{k} {v['forks_median']:g}" for k, v in sp.items())))
        lines.append(("diversity: median problem has >= 2 distinct correct answers among 16",
                      all(v["distinct_correct_median"] >= 2 for v in sp.values()),
                      ", ".join(f"{k} {v['distinct_correct_median']:g}" for k, v in sp.items())))
        avg, pas = base["mean"]["avg"], base["mean"]["pass"]
        lines.append(("headroom: general avg@16 (mean of splits) in [15%, 45%]", 0.15 <= avg <= 0.45, f"{100 * avg:.1f}%"))
        lines.append(("headroom: pass@16 - avg@16 >= 30 points", pas - avg >= 0.30, f"{100 * (pas - avg):.1f} points"))
        hard = sp["hard"]
        lines.append(("headroom: hard avg@16 <= 15% and pass@16 >= 30%", hard["avg"] <= 0.15 and hard["pass"] >= 0.30,
                      f"avg {100 * hard['avg']:.1f}%, pass {100 * hard['pass']:.1f}%"))
        mixed = base["train"]["mixed_groups"]
        lines.append(("signal: >= half the training groups mixed at G=8", mixed >= 0.5, f"{100 * mixed:.0f}%"))
        cv = base["mean"]["length_cv"]
        lines.append(("length is free: within-prompt CV of response length >= 0.2", cv >= 0.2, f"{cv:.2f}"))
    runs = card.get("grpo_pp", {})
    if base and runs:
        best_lr, best = max(runs.items(), key=lambda kv: kv[1]["card"]["mean"]["avg"])
        gain = best["card"]["mean"]["avg"] - base["mean"]["avg"]
        lines.append(("RL moves it: GRPO++ (its best learning rate) gains >= +15 points avg@16 on general",
                      gain >= 0.15, f"lr {best_lr}: {100 * base['mean']['avg']:.1f}% -> "
                                    f"{100 * best['card']['mean']['avg']:.1f}% ({100 * gain:+.1f})"))
        e0, e1 = base["mean"]["step_entropy"], best["card"]["mean"]["step_entropy"]
        d0, d1 = base["mean"]["distinct_correct_median"], best["card"]["mean"]["distinct_correct_median"]
        lines.append(("collapse observable (preferred, not required): GRPO++ loses >= half its entropy at the moves",
                      e1 <= 0.5 * e0, f"move entropy {e0:.3f} -> {e1:.3f} nats; distinct correct {d0:.1f} -> {d1:.1f}"))
        clip = [m.get("clip_high_frac", 0.0) + m.get("clip_low_frac", 0.0) for m in best["metrics"]]
        lines.append(("clipping acts: clip fraction > 0 per step", bool(clip) and min(clip) > 0,
                      f"mean {sum(clip) / max(1, len(clip)):.4f}, steps with none {sum(c == 0 for c in clip)}"))
    return lines


def render(card: dict) -> str:
    """The scorecard as markdown: one row per model and split, then the GRPO++ sweep, then the gate."""
    rows = ["| model | split | avg@16 | pass@16 | forks (median) | move entropy | distinct correct (median) | "
            "length (mean) | length CV |", "|---|---|---|---|---|---|---|---|---|"]
    models = [(f"base `{k}`", v["card"]) for k, v in card["bases"].items()]
    models += [(f"GRPO++ lr {k}", v["card"]) for k, v in card.get("grpo_pp", {}).items()]
    for label, c in models:
        order = sorted(c["splits"], key=lambda k: ("easy", "medium", "hard").index(k) if k in ("easy", "medium", "hard") else 9)
        mean = {"mean_length": sum(v["mean_length"] for v in c["splits"].values()) / len(c["splits"]), **c["mean"]}
        for split, m in [*((k, c["splits"][k]) for k in order), ("mean", mean)]:
            rows.append(f"| {label} | {split} | {100 * m['avg']:.1f} | {100 * m['pass']:.1f} | {m['forks_median']:.1f} | "
                        f"{m['step_entropy']:.3f} | {m['distinct_correct_median']:.1f} | "
                        f"{m.get('mean_length', float('nan')):.1f} | {m['length_cv']:.2f} |")
    out = ["\n".join(rows), ""]
    for k, v in card["bases"].items():
        out.append(f"- base `{k}`: training groups mixed at G={v['card']['group_size']}: "
                   f"{100 * v['card']['train']['mixed_groups']:.0f}%; warm start {v['warm_start']['config']['steps']} "
                   f"steps, {v['warm_start']['num_parameters']:,} parameters, final SFT loss "
                   f"{v['warm_start']['final_loss']:.3f}")
    for k, v in card.get("grpo_pp", {}).items():
        curve = ", ".join(f"{s}: {100 * e['mean']:.1f}" for s, e in sorted(v["eval_avg"].items(), key=lambda kv: int(kv[0])))
        out.append(f"- GRPO++ lr {k} (`{v['run_dir']}`): held-out avg@16 by step {curve}")
    out += ["", "| gate line | met | measured |", "|---|---|---|"]
    out += [f"| {line} | {'yes' if ok else '**no**'} | {numbers} |" for line, ok, numbers in gate(card)]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", default="paths")
    parser.add_argument("--bases", default="general,math")
    parser.add_argument("--grpo-lrs", default="3e-4,1e-4,5e-5", help="GRPO++ learning rates (base `general`)")
    parser.add_argument("--steps", type=int, default=100, help="GRPO++ steps (the Table 1 budget)")
    parser.add_argument("--set", dest="extra", action="append", default=[], help="more trainer overrides")
    parser.add_argument("--tag", default="", help="suffix of the sweep entries (runs with other --set values)")
    parser.add_argument("--skip-grpo", action="store_true")
    parser.add_argument("--runs", default="runs/worlds")
    parser.add_argument("--cache-dir", default="runs/cache")
    parser.add_argument("--out", default=None)
    parser.add_argument("--render", action="store_true", help="print the scorecard as markdown and stop")
    args = parser.parse_args(argv)
    out = Path(args.out or ROOT / f"reproduce/worlds/scorecard-{args.world}.json")
    card = json.loads(out.read_text()) if out.exists() else {}
    if args.render:
        sys.stdout.write(render(card))
        return 0
    card.update({"world": args.world, "bases": card.get("bases", {}), "grpo_pp": card.get("grpo_pp", {})})
    from fr3e.training.runlog import environment

    card.setdefault("provenance", []).append({"command": ["python", "reproduce/worlds/scorecard.py", *(argv or sys.argv[1:])],
                                              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **environment()})
    for base in args.bases.split(","):
        start = time.perf_counter()
        model_dir = warm_start(base, cache_dir=args.cache_dir, world=args.world)
        info = json.loads((model_dir / "warm_start.json").read_text())
        if card["bases"].get(base, {}).get("card", {}).get("model") == model_dir.name:
            continue  # measured already (deterministic)
        card["bases"][base] = {"warm_start": {k: info[k] for k in ("hash", "config", "train_seconds", "final_loss",
                                                                   "num_parameters")},
                               "card": measure(model_dir, args.world)}
        card["bases"][base]["card"]["model"] = model_dir.name
        card["bases"][base]["seconds"] = round(time.perf_counter() - start, 1)
        atomic_write_json(out, card)
        print(json.dumps({base: card["bases"][base]["card"]["mean"]}, indent=1), flush=True)
    if not args.skip_grpo:
        for lr in (float(x) for x in args.grpo_lrs.split(",")):
            key = f"{lr:g}{args.tag}"
            if key in card["grpo_pp"]:
                continue
            run_dir = grpo_run(args.world, "general", lr, args.steps, ROOT / args.runs, Path(args.cache_dir), args.extra,
                               args.tag)
            entry = summarise_run(run_dir)
            entry["card"] = measure(run_dir / "model", args.world)
            entry["card"]["model"] = entry["run_dir"] + "/model"
            entry["overrides"] = args.extra
            card["grpo_pp"][key] = entry
            atomic_write_json(out, card)
            print(json.dumps({f"lr {lr:g}": entry["card"]["mean"]}, indent=1), flush=True)
    for line, passed, numbers in gate(card):
        print(f"[{'pass' if passed else 'MISS'}] {line}: {numbers}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
