"""Log excerpts: the part of a subprocess's output that says why it failed (its last traceback)."""

from __future__ import annotations

import re

_TRACEBACK = "Traceback (most recent call last)"
_CHAINED = ("The above exception", "During handling")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def failure_excerpt(text: str, max_lines: int = 30) -> str:
    """The most telling part of a failed process's output: the first traceback (rank prefixes kept, chained
    exceptions followed to the last one), a papermill cell error, else the lines that mention an error, else
    the tail."""
    lines = [_ANSI.sub("", line) for line in text.splitlines()]
    cells = [i for i, line in enumerate(lines) if line.startswith("Exception encountered at")]  # papermill
    if cells:
        block = [line for line in lines[cells[-1]:] if line.strip() and not set(line.strip()) <= {"-"}]
        return "\n".join(block[:1] + block[1:][-(max_lines - 1):])
    starts = [i for i, line in enumerate(lines) if _TRACEBACK in line]
    if starts:
        prefix = lines[starts[0]].split(_TRACEBACK)[0]
        own = [line for line in lines[starts[0]:] if line.startswith(prefix)]  # this rank's lines only
        end = len(own) - 1
        for i, line in enumerate(own[1:], start=1):
            body = line[len(prefix):]
            if not body.strip() or body.startswith((" ", "\t", _TRACEBACK)) or body.startswith(_CHAINED):
                continue
            following = [x[len(prefix):] for x in own[i + 1:] if x[len(prefix):].strip()]
            if not following or not following[0].startswith(_CHAINED):
                end = i  # the exception line that ends the (chained) traceback
                break
        return "\n".join(own[: end + 1][-max_lines:])
    errors = [line for line in lines if re.search(r"error|timed out|timeout|Killed", line, re.IGNORECASE)]
    return "\n".join((errors or lines)[-max_lines:])
