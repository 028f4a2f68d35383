"""`fr3e plan` (= `python -m fr3e.cli.plan`, `make plan-table1`): print the paper-profile Table 1 cost plan.

The arithmetic is `fr3e.study.plan`; this module parses and checks the command line.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from fr3e.cli.common import run_cli
from fr3e.study.plan import (
    DEFAULT_CONFIG_DIR,
    Assumptions,
    _parse_throughput,
    estimate_run,
    format_phases,
    format_table,
    load_recipes,
)
from fr3e.training.config import recipe_dir


def main(argv: list[str] | None = None) -> int:
    """The command line; a user error is one line on stderr and status 2 (`fr3e.cli.common.run_cli`)."""
    return run_cli(_main, argv)


def _main(argv: list[str]) -> int:
    from fr3e.cli.common import add_debug_flag
    from fr3e.utils.errors import UserError

    parser = argparse.ArgumentParser(prog="python -m fr3e.cli.plan", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="paper", choices=("paper", "1gpu"),
                        help="paper: the Table 1 recipes on 8-GPU nodes; 1gpu: the one-GPU recipes on one GPU")
    parser.add_argument("--config-dir", default=None,
                        help="folder of recipes (default: the profile's, reproduce/configs/table1 or reproduce/configs/1gpu)")
    parser.add_argument("--gpus", type=int, default=None,
                        help="GPUs per node; runs use a multiple of it (default: 8 for paper, 1 for 1gpu)")
    parser.add_argument("--throughput", action="append",
                        help="vLLM generated tokens/s per GPU by size, e.g. 7b=3363,32b=577 (repeatable)")
    parser.add_argument("--mfu", type=float, default=None, help="training model-FLOP utilisation (0-1)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="GPU dense bf16 peak in TFLOP/s")
    parser.add_argument("--response-tokens", type=float, default=None, help="mean response tokens, all models")
    parser.add_argument("--refill", type=float, default=None, help="dynamic-sampling extra generation fraction")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    if args.gpus is None:
        args.gpus = 1 if args.profile == "1gpu" else 8
    if args.gpus < 1:
        raise UserError(f"--gpus {args.gpus}: a node has at least 1 GPU (H100 nodes: 8).")
    if args.mfu is not None and not 0 < args.mfu <= 1:
        raise UserError(f"--mfu {args.mfu}: a utilisation is a fraction in (0, 1], e.g. --mfu 0.4.")
    for flag, value in (("--peak-tflops", args.peak_tflops), ("--response-tokens", args.response_tokens)):
        if value is not None and value <= 0:
            raise UserError(f"{flag} {value}: use a positive number.")
    if args.refill is not None and args.refill < 0:
        raise UserError(f"--refill {args.refill}: an extra generation fraction is >= 0, e.g. --refill 0.3.")
    for part in (p for item in args.throughput or [] for p in item.split(",")):
        value = part.partition("=")[2]
        try:
            ok = float(value) > 0
        except ValueError:
            ok = False
        if not ok:
            raise UserError(f"--throughput {part!r}: use size=tokens_per_second with a positive number, e.g. "
                            "--throughput 7b=3363,32b=577.")

    a = Assumptions(gpus_per_node=args.gpus)
    a = replace(a, throughput=_parse_throughput(args.throughput, a.throughput))
    if args.mfu is not None:
        a = replace(a, mfu=args.mfu)
    if args.peak_tflops is not None:
        a = replace(a, peak_flops=args.peak_tflops * 1e12)
    if args.response_tokens is not None:
        a = replace(a, mean_response_tokens={k: args.response_tokens for k in a.mean_response_tokens},
                    default_response_tokens=args.response_tokens)
    if args.refill is not None:
        a = replace(a, refill_fraction=args.refill)
    folder = "1gpu" if args.profile == "1gpu" else "table1"
    config_dir = Path(args.config_dir) if args.config_dir else DEFAULT_CONFIG_DIR.parent / folder
    if args.config_dir is None and not config_dir.exists():
        config_dir = recipe_dir() / folder
    if not config_dir.is_dir() or not any(config_dir.glob("*.yaml")):
        raise UserError(f"no *.yaml recipes in {config_dir}; pass --config-dir reproduce/configs/table1 (or a "
                        "folder of your own recipes).")
    configs = load_recipes(config_dir)
    rows = [estimate_run(c, a) for c in configs]
    sys.stdout.write(format_table(rows, a) + "\n\n" + format_phases(configs, args.gpus, a) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
