"""`fr3e rehearsal` (= `python -m fr3e.cli.rehearsal`, `make rehearse-table1`): the CPU dress rehearsal of the paper path.

The rehearsal itself is `fr3e.rehearsal`; this module parses and checks the command line.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from fr3e.cli.common import add_debug_flag, check_writable, run_cli
from fr3e.rehearsal.fixtures import DEFAULT_CACHE, DEFAULT_DIR
from fr3e.rehearsal.runner import Rehearsal, _cmd_base_evals, _cmd_build_fixture, _cmd_notebook
from fr3e.utils.errors import UserError


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; a user error is one line on stderr and status 2 (`fr3e.cli.common.run_cli`)."""
    return run_cli(_main, argv)


def _main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m fr3e.cli.rehearsal", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the reduced rehearsal of make test (< 2 min)")
    parser.add_argument("--dir", type=Path, default=None, help="rehearsal directory (default runs/rehearsal[-quick])")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where the fixture model is cached")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per step (default 240, quick 150)")
    parser.add_argument("--fresh", action="store_true", help="delete the rehearsal directory first")
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("build-fixture", help="(internal) build, install and load the fixture model; print JSON")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--hf-home", type=Path, required=True)
    for name in ("base-evals", "notebook"):
        sub.add_parser(name, help=f"(internal) the {name} step; argument: JSON").add_argument("spec")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    if args.command == "build-fixture":
        return _cmd_build_fixture(args)
    if args.command == "base-evals":
        return _cmd_base_evals(args)
    if args.command == "notebook":
        return _cmd_notebook(args)
    out_dir = args.dir or (DEFAULT_DIR.parent / ("rehearsal-quick" if args.quick else "rehearsal"))
    if args.timeout is not None and args.timeout <= 0:
        raise UserError(f"--timeout {args.timeout}: seconds per step must be positive (default 240, quick 150).")
    check_writable(out_dir, what="rehearsal directory", flag="--dir")
    check_writable(args.cache_dir, what="cache directory", flag="--cache-dir")
    if args.fresh and out_dir.exists():
        shutil.rmtree(out_dir)
    timeout = args.timeout or (150.0 if args.quick else 240.0)
    ok = Rehearsal(out_dir, args.quick, timeout, args.cache_dir).run()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
