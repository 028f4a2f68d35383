"""The verifiable reward: extract the last `\\boxed{...}` answer and compare it with the gold answer.

Paper §3 / official code: binary reward from math-verify (1 if the answer is equivalent to the gold one,
else 0). Deviations and guards, each with its reason:
- The reward scores the full response text the caller passes (for a state's continuation, the trainer
  passes prefix + continuation; the official code scores the continuation only, PAPER.md defect 7).
- Only the LAST `\\boxed{}` counts (as math-verify's `boxed="all"` priority does in practice); a response
  without one scores 0 (no fallback to "the last number", which would reward unboxed guesses).
- Fast path: when both sides are plain integers (the whole tiny task), compare them as integers
  (math-verify costs ~1 ms per call; this ~1 µs).
- Length guard: answers longer than `MAX_ANSWER_CHARS` never reach sympy (a 10,000-digit number must not
  hang the trainer): plain integers are compared as digit strings, anything else scores 0.
- Cost guard: powers / factorials of long numbers (`2^{9999999999}`) are compared as text only, because
  sympy evaluates them for minutes and, off the main thread, math-verify has no timeout at all.
- math-verify uses `signal.alarm` for its timeouts, which only works on the main thread; elsewhere we pass
  `parsing_timeout=None` / `timeout_seconds=None`. Any exception inside math-verify scores 0.
"""

from __future__ import annotations

import logging
import re
import threading

logger = logging.getLogger(__name__)

MAX_ANSWER_CHARS = 200
"""Longest answer (either side) handed to math-verify / sympy (our choice; real answers are far shorter)."""

MATH_VERIFY_TIMEOUT = 1
"""Seconds for each math-verify parse / compare on the main thread (signal.alarm; off it: no timeout)."""

MAX_EXPONENT_DIGITS = 3
"""Answers with `^`, `**` or `!` and a number longer than this are compared as text, never by sympy."""

_DIGITS = re.compile(r"\d+")
_INT = re.compile(r"[+-]?\d+")
_BOXED = "\\boxed"
_BRACE = re.compile(r"[{}]")
_BARE_ARG = re.compile(r"[^\s{}$\\]+")


def extract_boxed(text: str) -> str | None:
    """Content of the LAST `\\boxed{...}` in `text` (nested braces balanced), or None.

    A `\\boxed{` whose braces never close is skipped (the previous complete box, if any, is returned).
    `\\boxed 5` (no braces, a LaTeX single-token argument) returns "5". Linear time in len(text): the
    matching closing brace of every `{` is found in one pass (a 10^5-character output of unclosed boxes
    must not take quadratic time).
    """
    if not text or _BOXED not in text:
        return None
    closing: dict[int, int] = {}  # index of "{" -> index of its matching "}"
    stack: list[int] = []
    for m in _BRACE.finditer(text):
        if m.group() == "{":
            stack.append(m.start())
        elif stack:
            closing[stack.pop()] = m.start()
    pos = text.rfind(_BOXED)
    while pos != -1:
        i = pos + len(_BOXED)
        j = i
        while j < len(text) and text[j] == " ":
            j += 1
        if j < len(text) and text[j] == "{":
            if j in closing:
                return text[j + 1 : closing[j]].strip()
        elif j > i:  # `\\boxed 5`
            arg = _BARE_ARG.match(text, j)
            if arg:
                return arg.group(0)
        pos = text.rfind(_BOXED, 0, pos)
    return None


def _normalize_int(s: str) -> str | None:
    """Canonical form of a plain integer string ("+007" -> "7", "-0" -> "0"), else None."""
    s = s.strip()
    if not _INT.fullmatch(s):
        return None
    digits = s.lstrip("+-").lstrip("0") or "0"
    return "-" + digits if s.startswith("-") and digits != "0" else digits


def verify(pred: str, gold: str) -> bool:
    """True if answer `pred` is mathematically equivalent to `gold` (both answer strings, no \\boxed)."""
    pred, gold = (pred or "").strip(), (gold or "").strip()
    if not pred or not gold:
        return False
    if pred == gold:
        return True
    p_int, g_int = _normalize_int(pred), _normalize_int(gold)
    if p_int is not None and g_int is not None:
        return p_int == g_int
    if len(pred) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
        return False
    if _costly(pred) or _costly(gold):  # sympy would evaluate e.g. 2^{9999999999}: exact text match only
        return "".join(pred.split()) == "".join(gold.split())
    return _math_verify(pred, gold)


def _costly(s: str) -> bool:
    """Powers or factorials with a number of more than MAX_EXPONENT_DIGITS digits anywhere in the answer
    (measured: `2^{9999999999}` or `9999999999!` keeps sympy busy past any timeout)."""
    return any(op in s for op in ("^", "!", "**")) and any(
        len(run) > MAX_EXPONENT_DIGITS for run in _DIGITS.findall(s)
    )


def _math_verify(pred: str, gold: str) -> bool:
    from math_verify import parse
    from math_verify import verify as mv_verify

    on_main = threading.current_thread() is threading.main_thread()
    timeout = MATH_VERIFY_TIMEOUT if on_main else None
    try:
        gold_parsed = parse(f"${gold}$", parsing_timeout=timeout)
        pred_parsed = parse(f"${pred}$", parsing_timeout=timeout)
        if not gold_parsed or not pred_parsed:
            return False
        return bool(mv_verify(gold_parsed, pred_parsed, timeout_seconds=timeout))
    except Exception as err:  # math-verify / sympy failure on a malformed answer: wrong, never a crash
        logger.debug("math-verify failed on %r vs %r: %s", pred, gold, err)
        return False


def reward(text: str, answer: str) -> float:
    """Binary reward of one response: 1.0 if its last \\boxed{} answer verifies against `answer`, else 0.0."""
    try:
        pred = extract_boxed(text)
        return 1.0 if pred is not None and verify(pred, answer) else 0.0
    except Exception as err:  # never let one pathological output kill a training step
        logger.warning("reward failed (scored 0): %s", err)
        return 0.0


def batch_rewards(texts: list[str], answers: list[str]) -> list[float]:
    """`reward` for every (text, answer) pair."""
    if len(texts) != len(answers):
        raise ValueError(f"got {len(texts)} texts but {len(answers)} answers")
    return [reward(t, a) for t, a in zip(texts, answers)]
