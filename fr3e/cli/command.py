"""The `fr3e` command: one entry point whose subcommands are the package's command lines.

    fr3e train --config reproduce/configs/tiny-fr3e.yaml     # = python -m fr3e.cli.train ...
    fr3e evaluate --model runs/tiny-fr3e --n 16              # = python -m fr3e.cli.evaluate ...
    fr3e --help                                              # every subcommand, one line each

Each subcommand hands the rest of the command line to its module's `main` unchanged, so `fr3e train --help`
is `python -m fr3e.cli.train --help`, and user errors keep their one line and exit status 2 (`fr3e.cli.common.run_cli`).
The `python -m fr3e.<module>` forms keep working; `python -m fr3e` is this command.

The recipes ship inside the wheel (`fr3e train --config tiny-fr3e` finds them anywhere). `reproduce`
(notebooks), `rehearsal` (fixtures) and `bench` (reproduce/bench.py) read files of a source checkout at run
time; from an installed wheel they stop at once with one line saying so (`--help` works everywhere).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from fr3e import __version__
from fr3e.cli.common import EXIT_USER_ERROR, run_cli
from fr3e.utils.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
"""The checkout the package was imported from (site-packages when installed from a wheel)."""

COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("fr3e.cli.train", "train one FR3E or GRPO++ run from a YAML recipe (resumes an interrupted run)"),
    "evaluate": ("fr3e.cli.evaluate", "evaluate a model: avg@n, unbiased pass@k, greedy, with bootstrap intervals"),
    "reproduce": ("fr3e.cli.reproduce", "run the paper-artefact notebooks in order with papermill, write results/"),
    "plan": ("fr3e.cli.plan", "print the paper-profile Table 1 plan: runs, GPUs, tokens, GPU-hours, disk"),
    "smoke": ("fr3e.cli.smoke", "a few FR3E steps of a random Qwen2 model on this machine (GPU plumbing check)"),
    "bench": ("fr3e.cli.bench", "engine tokens/s, step time by phase and the ratio to TRL's GRPOTrainer"),
    "rehearsal": ("fr3e.cli.rehearsal", "CPU dress rehearsal of the paper-profile Table 1 path (2 processes)"),
}
"""Subcommand -> (module whose `main(argv)` it runs, the one line `fr3e --help` shows)."""

CHECKOUT_FILES: dict[str, tuple[str, ...]] = {
    "reproduce": ("notebooks",),
    "rehearsal": ("tests/fixtures/data", "reproduce/accelerate"),
}
"""What a subcommand reads from the source checkout at run time (not shipped in the wheel; the recipes are:
`fr3e.training.config.recipe_dir`). `bench` runs the checkout's reproduce/bench.py (checked in `check_checkout`)."""


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"usage: fr3e <command> [options]   (fr3e {__version__}; FR3E, arXiv 2507.07017)", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {line}" for name, (_, line) in COMMANDS.items()]
    lines += ["", "`fr3e <command> --help` shows a command's options; every command also runs as "
              "`python -m fr3e.cli.<command>`."]
    return "\n".join(lines) + "\n"


def _wants_help(argv: Sequence[str]) -> bool:
    return any(a in ("-h", "--help") for a in argv)


def check_checkout(name: str, argv: Sequence[str], root: Path = ROOT) -> None:
    """A UserError when `name` needs files of a source checkout that are not next to the package."""
    if _wants_help(argv):
        return
    missing = [rel for rel in CHECKOUT_FILES.get(name, ()) if not (root / rel).exists()]
    if name == "bench" and _bench_main() is None and not (root / "reproduce" / "bench.py").exists():
        missing.append("reproduce/bench.py")
    if missing:
        raise UserError(f"fr3e {name} reads {', '.join(missing)} from a source checkout of fr3e, and this "
                        f"installation ({root}) has none. Clone the repository and run `make env` there (or "
                        "pip install -c constraints.txt -e .), then run the command in the checkout.")


def _bench_main() -> Callable | None:
    """`fr3e.cli.bench.main` when the module has a command line of its own."""
    return getattr(importlib.import_module("fr3e.cli.bench"), "main", None)


def _checkout_bench_main(root: Path = ROOT) -> Callable:
    """`main` of the checkout's reproduce/bench.py (the benchmark's command line before fr3e.cli.bench had one)."""
    spec = importlib.util.spec_from_file_location("fr3e_reproduce_bench", root / "reproduce" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def resolve(name: str) -> Callable[[Sequence[str] | None], int]:
    """The `main(argv)` a subcommand runs."""
    if name == "bench":
        return _bench_main() or _checkout_bench_main()
    return importlib.import_module(COMMANDS[name][0]).main


def _dispatch(argv: Sequence[str]) -> int:
    argv = list(argv)
    if not argv:
        sys.stderr.write(usage())
        return EXIT_USER_ERROR
    first = argv[0]
    if first in ("-h", "--help", "help"):
        sys.stdout.write(usage())
        return 0
    if first == "--version":
        sys.stdout.write(f"fr3e {__version__}\n")
        return 0
    if first not in COMMANDS:
        close = difflib.get_close_matches(first, COMMANDS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UserError(f"unknown command {first!r}.{hint} Commands: {', '.join(COMMANDS)} (fr3e --help).")
    check_checkout(first, argv[1:])
    command = resolve(first)
    program, sys.argv[0] = sys.argv[0], f"fr3e {first}"  # argparse's default prog: "usage: fr3e bench ..."
    try:
        return command(argv[1:])
    finally:
        sys.argv[0] = program


def main(argv: Sequence[str] | None = None) -> int:
    """The `fr3e` console script: `fr3e <command> [options]`; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    # The subcommand's own main handles its errors (run_cli); run_cli here covers the dispatch itself.
    return run_cli(_dispatch, args)


if __name__ == "__main__":
    sys.exit(main())
