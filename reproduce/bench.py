"""`make bench`: engine tokens/s, FR3E and GRPO++ step time by phase, and the ratio to TRL's GRPOTrainer.

Thin CLI over `fr3e.cli.bench.run_all` (all logic and its documentation live there): prints one table and writes
the numbers as JSON (default runs/bench/bench.json). About 3-5 minutes on 2 idle CPU cores.

    .venv/bin/python reproduce/bench.py [--steps 5] [--trl-batches 3] [--skip-trl] [--out runs/bench/bench.json]
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fr3e.cli import bench  # noqa: E402
from fr3e.cli.common import add_debug_flag, check_writable, run_cli
from fr3e.data.hub import resolve_model
from fr3e.training.config import load_config  # noqa: E402
from fr3e.utils.errors import UserError  # noqa: E402
from fr3e.utils.io import atomic_write_text  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/bench/bench.json", help="JSON output path (default: %(default)s)")
    p.add_argument("--steps", type=int, default=5, help="training steps per recipe; step 1 is dropped (default: 5)")
    p.add_argument("--trl-batches", type=int, default=3, help="timed TRL generation batches after 1 warm-up")
    p.add_argument("--engine-repeats", type=int, default=3, help="timed engine calls (median reported)")
    p.add_argument("--fr3e-recipe", default="reproduce/configs/tiny-fr3e.yaml")
    p.add_argument("--grpo-recipe", default="reproduce/configs/tiny-grpo_pp.yaml")
    p.add_argument("--cache-dir", default="runs/cache", help="warm-start model cache (default: %(default)s)")
    p.add_argument("--model-dir", default=None,
                   help="use this tiny model directory instead of the recipes' warm start (trained on first use)")
    p.add_argument("--skip-trl", action="store_true", help="do not time TRL's GRPOTrainer")
    p.add_argument("--threads", type=int, default=0,
                   help="torch CPU threads (default 0: torch's own choice, one per core)")
    add_debug_flag(p)
    return p.parse_args(argv)


def _load(x: list[float]) -> str:
    return "/".join(f"{v:.1f}" for v in x) if x else "n/a"


def format_table(r: dict) -> str:
    e = r["engine"]
    lines = [
        f"fr3e bench: tiny model {Path(r['model_dir']).name}, {r['torch_threads']} torch threads, "
        f"{r['cpu_count']} CPUs, OMP_WAIT_POLICY={r.get('omp_wait_policy') or 'default'}; load avg (1/5/15 min) start {_load(r['load_start'])}, end {_load(r['load_end'])}",
        "",
        f"1. HFEngine: {e['tokens_per_s']:,.0f} generated tok/s (median of {len(e['runs'])}) at batch "
        f"{e['rows']} = {e['num_prompts']} prompts x n={e['n']}, max_new_tokens {e['max_new_tokens']}, "
        f"T={e['temperature']}, mean length {e['mean_length']:.1f}; runs "
        + ", ".join(f"{x['tokens_per_s']:,.0f}" for x in e["runs"]),
        "",
        "2. Step time by phase (mean over steps 2..N; seconds, share of the step in brackets)",
    ]
    cols = [("FR3E", r["fr3e"]), ("GRPO++ DS off", r["grpo_pp_equal"]), ("GRPO++ DS on", r["grpo_pp"])]
    head = f"{'':24}" + "".join(f"{name:>22}" for name, _ in cols)
    lines += [head, "-" * len(head)]

    def row(label, fn):
        lines.append(f"{label:24}" + "".join(f"{fn(x):>22}" for _, x in cols))

    for p in bench.PHASES:
        row(f"  {p}" + (" (bookkeeping)" if p == "other" else ""),
            lambda x, p=p: f"{x['phases_s'][p]:.3f} ({100 * x['phase_shares'][p]:4.1f}%)")
    row("step", lambda x: f"{x['step_s']:.3f} ± {x['step_s_std']:.3f}")
    row("generated tokens/step", lambda x: f"{x['tokens']['gen_tokens']:,.0f}")
    row("prefill tokens/step", lambda x: f"{x['tokens']['prefill_tokens']:,.0f}")
    row("trained tokens/step", lambda x: f"{x['tokens']['trained_tokens_total']:,.0f}")
    row("trained completions", lambda x: f"{x['tokens']['rollouts_trained']:.1f}")
    row("refill rounds", lambda x: f"{x['tokens']['refill_rounds']:.2f}")
    row("gen tok/s in generate", lambda x: f"{x['generated_tokens_per_s']:,.0f}")
    share = r["fr3e"]["bookkeeping_share"]
    lines.append(f"FR3E bookkeeping share time_other/time_step = {100 * share:.1f}% "
                 f"({'meets' if share < 0.10 else 'MISSES'} the < 10% target)")
    if "trl" in r:
        t, ours = r["trl"], r["grpo_pp_equal"]
        ratio = r["ours_over_trl"]
        lines += [
            "",
            f"3. TRL GRPOTrainer (dapo, eps 0.2/0.28, beta 0, G={t['num_generations']}, {t['completions_per_step']} "
            f"completions per generation batch, steps_per_generation={t['steps_per_generation']}, "
            f"max_completion_length {t['max_completion_length']}, HF generate on CPU)",
            f"   TRL  : {t['step_s']:.3f} ± {t['step_s_std']:.3f} s per generation batch "
            f"(mean of {t['timed_batches']} after {t['warmup']} warm-up), mean completion length "
            f"{t['mean_completion_length']:.1f}, ~{t['gen_tokens']:,.0f} generated tokens",
            f"   ours : {ours['step_s']:.3f} ± {ours['step_s_std']:.3f} s per step (GRPO++, dynamic sampling off, "
            f"{ours['completions_per_step']:.0f} completions), mean completion length "
            f"{ours['mean_completion_length']:.1f}",
            f"   ours / TRL at equal completions = {ratio:.2f} ({'meets' if ratio <= 1.0 else 'MISSES'} the "
            f"'no slower than TRL' target); per generated token {r['ours_over_trl_per_gen_token']:.2f}",
            f"   with dynamic sampling on, ours = {r['grpo_pp']['step_s']:.3f} s "
            f"({r['grpo_pp']['tokens']['refill_rounds']:.2f} refill rounds/step, "
            f"{r['grpo_pp']['tokens']['prompts_used']:.1f} prompts sampled/step)",
            "   differences: sampler (our KV-cached HFEngine vs model.generate), our dual clip c=3 (TRL: none),",
            "   per-update token normalisation (see tests/test_trl_equivalence.py), different samples.",
        ]
    lines.append(f"\ntotal {r['wall_s']:.0f} s")
    return "\n".join(lines)


def main(argv=None) -> int:
    """The command line; a user error is one line on stderr and status 2 (`fr3e.cli.common.run_cli`)."""
    return run_cli(_main, argv)


def check_args(args: argparse.Namespace) -> None:
    """What can be checked before minutes of benchmarking: counts, recipes, the model directory, the output."""
    for flag in ("steps", "trl_batches", "engine_repeats"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: use 1 or more.")
    if args.steps < 2:
        raise UserError(f"--steps {args.steps}: step 1 is dropped as warm-up, so time at least 2 steps (default 5).")
    if args.threads < 0:
        raise UserError(f"--threads {args.threads}: use 0 (torch's choice) or a positive count.")
    for recipe in (args.fr3e_recipe, args.grpo_recipe):
        load_config(recipe)  # a missing or malformed recipe: ConfigError, one line
    if args.model_dir is not None:
        model = Path(resolve_model(args.model_dir, cache_dir=args.cache_dir))
        if not (model / "tokenizer.json").exists():
            raise UserError(f"{args.model_dir} is not a tiny model directory (no tokenizer.json); pass one written by "
                            "fr3e.cli.train (runs/<name>/model) or fr3e.tasks.warm_start, or leave --model-dir out.")
        args.model_dir = str(model)
    check_writable(Path(args.out).parent, what="output directory", flag="--out")


def _main(argv) -> int:
    args = parse_args(argv)
    check_args(args)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("fr3e.cli.bench").setLevel(logging.INFO)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result = bench.run_all(args.fr3e_recipe, args.grpo_recipe, steps=args.steps, trl_batches=args.trl_batches,
                           engine_repeats=args.engine_repeats, cache_dir=args.cache_dir, skip_trl=args.skip_trl,
                           model_dir=args.model_dir)
    print(format_table(result))
    atomic_write_text(args.out, bench.to_json(result))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
