"""Atomic file writes: a reader never sees a half-written JSON, YAML or checkpoint file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from fr3e.utils.errors import UserError


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, fsync it, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_default) + "\n")


def _default(obj: Any):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


DAMAGED_FIX = ("move the run directory away (or delete it) and run the command again to start over; to keep the "
               "run, restore the file from a copy")
"""What to do about a damaged file of a run directory (the default advice of `DamagedFile`)."""


class DamagedFile(UserError):
    """A file that should hold JSON (or JSON lines) is truncated, not JSON or not text; the message names the file,
    what is wrong and what to do."""

    def __init__(self, path: str | Path, what: str, fix: str = DAMAGED_FIX):
        super().__init__(f"{path} is damaged ({what}); {fix}.")
        self.path = Path(path)


def _text(path: Path, fix: str) -> str:
    try:
        return path.read_text()
    except UnicodeDecodeError as exc:
        raise DamagedFile(path, f"not text: byte {exc.start} is not UTF-8", fix) from None


def read_json(path: str | Path, fix: str = DAMAGED_FIX) -> Any:
    """The JSON value in `path`; a truncated, non-JSON or binary file raises `DamagedFile` naming it and `fix`."""
    path = Path(path)
    text = _text(path, fix)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        what = "empty" if not text.strip() else f"not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        raise DamagedFile(path, what, fix) from None


def read_jsonl(path: str | Path, fix: str = DAMAGED_FIX) -> list[dict]:
    """Rows of a JSON-lines file, or of its gzipped copy `<path>.gz` when only that exists (committed run logs);
    a torn last line (a run killed mid-write) is ignored; a damaged line before it, or a binary file, raises
    `DamagedFile` naming the file, the line and `fix`."""
    path = Path(path)
    packed = path.with_name(path.name + ".gz")
    if not path.exists() and packed.exists():
        import gzip

        try:
            lines = gzip.decompress(packed.read_bytes()).decode().splitlines()
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise DamagedFile(packed, f"not a gzipped text file: {exc}", fix) from None
    elif not path.exists():
        return []
    else:
        lines = _text(path, fix).splitlines()
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if i == len(lines) - 1:
                break
            raise DamagedFile(path, f"line {i + 1} of {len(lines)} is not valid JSON: {exc.msg}", fix) from None
    return rows


def rewrite_jsonl(path: str | Path, rows: list[dict]) -> None:
    """Replace a JSON-lines file atomically (used to truncate logs back to a checkpoint on resume)."""
    atomic_write_text(path, "".join(json.dumps(r, default=_default) + "\n" for r in rows))


def append_jsonl(path: str | Path, row: dict) -> None:
    """Append one row and flush it to disk (one line per write keeps the file parseable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, default=_default) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
