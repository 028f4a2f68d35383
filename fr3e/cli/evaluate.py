"""`fr3e evaluate` (= `python -m fr3e.cli.evaluate`): evaluate a model on the tiny or the paper benchmarks.

The harness is `fr3e.evaluation.evaluate`; this module parses the command line and checks it before any
model is loaded.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from fr3e.cli.common import add_debug_flag, check_writable, run_cli
from fr3e.data import hub
from fr3e.tasks.arithmetic import SPLITS
from fr3e.utils.errors import UserError


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; a user error is one line on stderr and status 2 (`fr3e.cli.common.run_cli`)."""
    return run_cli(_main, argv)


def _main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m fr3e.cli.evaluate",
                                     description="Evaluate a model on the tiny or the paper benchmarks.")
    parser.add_argument("--model", required=True, help=hub.MODEL_HELP)
    parser.add_argument("--benchmarks", default=",".join(SPLITS),
                        help="comma-separated tiny splits (easy, medium, hard) or paper benchmarks (gsm8k, ...)")
    parser.add_argument("--world", default="arithmetic",
                        help="tiny world of the split names and of the 'general' / 'math' base models: arithmetic "
                             "(the control without forks) or paths (fr3e.tasks.worlds)")
    parser.add_argument("--data", action="append", default=[], metavar="NAME=PATH",
                        help="use a local file for a hub benchmark, e.g. --data gsm8k=/data/gsm8k.jsonl; repeatable")
    parser.add_argument("--n", type=int, default=16, help="samples per problem (paper: 16)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (paper: 1.0)")
    parser.add_argument("--top-p", type=float, default=0.95, help="nucleus top-p (paper: 0.95)")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="response budget in tokens")
    parser.add_argument("--num-problems", type=int, default=None, help="problems per benchmark")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--out", default=None, help="write the JSON report here")
    parser.add_argument("--cache-dir", default="runs/cache", help="where the 'general' / 'math' warm starts are cached")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    for flag, value in (("--n", args.n), ("--max-new-tokens", args.max_new_tokens), ("--num-problems", args.num_problems)):
        if value is not None and value < 1:
            raise UserError(f"{flag} {value}: use 1 or more (paper: --n 16; leave --num-problems out for the default).")
    if args.temperature < 0 or not 0 < args.top_p <= 1:
        raise UserError(f"--temperature {args.temperature}, --top-p {args.top_p}: use temperature >= 0 and "
                            "0 < top-p <= 1 (paper: 1.0 and 0.95).")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import torch  # here, not at the top: `--help` and argument errors answer at once

    from fr3e.data import paper as paper_data
    from fr3e.evaluation.evaluate import check_benchmarks, evaluate, format_table
    from fr3e.tasks.worlds import WORLDS

    if args.world not in WORLDS:
        raise UserError(f"--world {args.world}: the tiny worlds are {', '.join(WORLDS)}.")
    benchmarks = check_benchmarks(args.benchmarks)
    local = {k: str(v) for k, v in paper_data.parse_data_overrides(args.data).items()}
    for name, path in local.items():
        if not Path(path).is_file():
            raise UserError(f"data file {path} (--data {name}=...) does not exist; pass an existing .jsonl, "
                                ".json or .parquet file in the hub dataset's format.")
    if any(b in paper_data.BENCHMARKS and b not in local for b in benchmarks):
        hub.hub_reachable()  # offline: datasets fail at once, naming --data, instead of retrying
    if args.out is not None:
        check_writable(Path(args.out).parent, what="output directory", flag="--out")
    model = hub.resolve_model(args.model, cache_dir=args.cache_dir, world=args.world)
    if not torch.cuda.is_available():
        from fr3e.tasks.warm_start import training_threads

        torch.set_num_threads(training_threads())  # 1 thread on a busy CPU: much faster there (measured)
    report = evaluate(model, benchmarks=benchmarks, n=args.n, temperature=args.temperature,
                      top_p=args.top_p, max_new_tokens=args.max_new_tokens, num_problems=args.num_problems,
                      seed=args.seed, out=args.out, local_files=local or None, tiny_world=args.world)
    sys.stdout.write(format_table(report) + "\n")
    sys.stdout.write(f"({report['seconds']:.1f} s, {report['engine']['generated_tokens']} generated tokens)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
