"""Models and the Hugging Face hub: the model names every command accepts, and a fast offline check.

`resolve_model` turns a name into something `from_pretrained` can load: 'general' / 'math' (the tiny profile's
warm-started base models), a run directory (its final model/), a model directory, or a hub id. A hub id is
checked before any work starts (`check_hub_model`): one HEAD request with a short timeout, so an offline
machine fails within seconds with a message naming the fix, instead of after about a minute of retries in
`transformers`.
"""

from __future__ import annotations

import difflib
import logging
import os
import sys
from functools import lru_cache
from pathlib import Path

from fr3e.utils.errors import UserError

logger = logging.getLogger(__name__)

HUB_TIMEOUT_S = 3.0
"""Seconds the one reachability probe of the hub may take. Our choice: long enough for a slow network, short
enough that an offline machine fails at once (transformers' own retries take ~50 s)."""

TINY_MODELS = ("general", "math")
"""The embedded warm-started base models (fr3e.tasks.warm_start.BASE_MODELS) every command accepts by name."""

MODEL_HELP = ("'general' or 'math' (tiny warm-started models), a run directory (its model/), a model directory, "
              "or a hub id such as Qwen/Qwen2.5-7B")


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
                  tiny_names: bool = True, world: str = "arithmetic") -> str:
    """The model directory or hub id that `name` stands for; every command accepts the same names.

    'general' / 'math' -> the cached warm start (trained on first use, 1-3 min); a run directory -> its
    model/; a model directory -> itself; 'org/name' -> a hub id, checked (cached or the hub answers).
    `tiny_names=False` returns 'general' / 'math' unchanged (the trainer warm-starts them itself); `world`
    says which tiny world's base model the name means (`fr3e.tasks.worlds`).
    Raises UserError for anything else, saying which names are accepted.
    """
    if name in TINY_MODELS:
        if not tiny_names:
            return name
        from fr3e.tasks.warm_start import warm_start

        return str(warm_start(name, cache_dir=cache_dir, progress=progress, world=world))
    path = Path(name).expanduser()
    if path.is_dir():
        for model_dir in (path, path / "model"):  # a model directory, or a run directory's final model
            if _is_model_dir(model_dir):
                _check_weights(model_dir)
                return str(model_dir)
        if (path / "checkpoints").is_dir() or (path / "env.json").is_file():
            raise UserError(
                f"run directory {path} has no final model yet (model/ is written when the run finishes). Finish "
                f"the run (python -m fr3e.cli.train --config ... --run-dir {path}) or pass another model.")
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
