"""`fr3e reproduce` (= `python -m fr3e.cli.reproduce`, `make reproduce`): run the paper-artefact notebooks in order.

The driver is `fr3e.study.reproduction`; this module parses the command line and turns its errors into one line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from fr3e.cli.common import run_cli
from fr3e.study.reproduction import NOTEBOOKS, STUDIES, ProfileError, reproduce


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; a user error is one line on stderr and status 2 (`fr3e.cli.common.run_cli`)."""
    return run_cli(_main, argv)


def _one_line(message: str) -> str:
    """ProfileError's bulleted list as one line: 'needs: A; B. Then ...'."""
    return message.replace(":\n  - ", ": ").replace("\n  - ", "; ").replace("\n", ". ")


def _main(argv: Sequence[str]) -> int:
    from fr3e.cli.common import add_debug_flag
    from fr3e.utils.errors import UserError

    parser = argparse.ArgumentParser(prog="python -m fr3e.cli.reproduce", description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", default=["all"], metavar="ARTEFACT",
                        help=f"all (default; without {' and '.join(STUDIES)}) or any of: {', '.join(NOTEBOOKS)}")
    parser.add_argument("--profile", default="auto", choices=("auto", "tiny", "paper", "1gpu"),
                        help="tiny (CPU), paper (8 GPUs, vLLM), 1gpu (one GPU, HF engine); auto: paper where all it "
                             "needs is there, tiny otherwise")
    parser.add_argument("--world", default=None, metavar="WORLD",
                        help="tiny world: paths (default; real forks, results/) or arithmetic (the control without "
                             "forks, results/arithmetic/)")
    parser.add_argument("--smoke", action="store_true", help="fast smoke parameters (the notebooks' defaults)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and parameters, run nothing")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        from fr3e.study.runs import STUDY_WORLD

        record = reproduce(args.targets, args.profile, args.smoke, args.dry_run, world=args.world or STUDY_WORLD)
    except ProfileError as exc:  # a GPU-only profile without GPUs (a SystemExit, so select_profile exits alone)
        raise UserError(_one_line(str(exc.code))) from None
    except ValueError as exc:  # unknown artefact, --smoke with the paper profile (--debug: both tracebacks)
        raise UserError(str(exc)) from exc
    if args.dry_run:
        sys.stdout.write(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
