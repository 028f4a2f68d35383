"""The verifiable reward: extract the last `\\boxed{...}` answer and compare it with the gold answer.

Paper §3 / official code: binary reward from math-verify (1 if the answer is equivalent to the gold one,
else 0). Deviations and guards, each with its reason:
- The reward scores the full response text the caller passes (for a state's continuation, the trainer
  passes prefix + continuation; the official code scores the continuation only, see the README, "Where we differ from the authors' code").
- Only the LAST `\\boxed{}` counts (as math-verify's `boxed="all"` priority does in practice); a response
  without one scores 0 (no fallback to "the last number", which would reward unboxed guesses).
- Thousands separators: `4\\,023`, `4{,}023`, `4\\ 023`, `4~023`, `1 000 000` (digit groups of exactly three)
  are joined before comparing, because latex2sympy reads `4\\,023` as 4 + 023 = 27. Commas (`4,023`) are
  left to math-verify, which already reads them as thousands separators.
- Fast path: when both sides are plain integers (the whole tiny task, also `1,000,000`), compare them as
  integers (math-verify costs ~1 ms per call; this ~1 µs).
- Length guard: answers longer than `MAX_ANSWER_CHARS` or nested deeper than `MAX_ANSWER_DEPTH` never
  reach sympy (a 10,000-digit number must not hang the trainer): plain integers are compared as digit
  strings, anything else scores 0.
- Cost guard: an answer whose powers, factorials or binomials could evaluate to numbers of more than
  `MAX_RESULT_DIGITS` digits (`9^{9^{9^9}}`, `(10!)!`, `\\sum_{i=1}^{10^9}`) is compared as text only,
  because sympy evaluates such integers inside single C calls that no timeout can interrupt.
- Deadline: the whole math-verify check gets `MATH_VERIFY_TIMEOUT` seconds on ANY thread; past it the
  answer scores 0. math-verify's own timeouts use `signal.alarm`, which only works on the main thread, so
  we pass `parsing_timeout=None` / `timeout_seconds=None` and interrupt it ourselves: a timer thread
  raises `_Deadline` in the checking thread (`PyThreadState_SetAsyncExc`, delivered between bytecodes,
  exactly where a signal handler would run). Any exception inside math-verify scores 0.

Known limits: equal values that trip the cost guard score 0 unless their texts match (`9^{9^9}` vs
`9^{387420489}`); digit groups after a decimal point are not joined (`3.141\\,592`); an answer that needs
longer than the deadline scores 0, so a very slow but correct answer depends on the machine's speed (the
corpus in tests/fixtures/pathological lists which entries reach it); like math-verify's signal.alarm, the
interruption can stop sympy or the LaTeX parser halfway through filling one of their caches.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import math
import re
import threading

logger = logging.getLogger(__name__)

MAX_ANSWER_CHARS = 200
"""Longest answer (either side) handed to math-verify / sympy (our choice; real answers are far shorter)."""

MAX_ANSWER_DEPTH = 16
"""Deepest (), [] or {} nesting handed to math-verify (our choice: real answers nest fewer than 8 deep;
measured: latex2sympy's parser takes 0.1 s on `{{5}}`, 1.9 s on 12 nested braces, 25 s on 16, 240 s on 18)."""

MATH_VERIFY_TIMEOUT = 1.0
"""Seconds for one whole math-verify check (both parses and the comparison), on any thread (our choice:
ordinary answers take 1-100 ms, the first one of a kind included; the old main-thread limit was 1 s per
parse and per comparison, and off the main thread there was none)."""

MAX_RESULT_DIGITS = 10_000
"""Largest number (in decimal digits) a power, factorial or binomial in an answer may evaluate to before the
answer is compared as text only (our choice: 2^{2024} has 610 digits; Python builds a 10^4-digit integer
in well under a millisecond, a 10^8-digit one in minutes, uninterruptibly)."""

_INT = re.compile(r"[+-]?\d+", re.ASCII)
_COMMA_INT = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+", re.ASCII)
_BOXED = "\\boxed"
_BRACE = re.compile(r"[{}]")
_BARE_ARG = re.compile(r"[^\s{}$\\]+")
_THOUSANDS_SEP = r"(?:\\[,:; !]|\\thinspace ?|\{,\}|~| |\u2009|\u202f|\u00a0)"
_THOUSANDS = re.compile(rf"(?<![\d.,])(\d{{1,3}})((?:{_THOUSANDS_SEP}\d{{3}})+)(?!\d|{_THOUSANDS_SEP}\d|,\d)",
                        re.ASCII)
_SEPARATOR = re.compile(_THOUSANDS_SEP)


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


def join_thousands(answer: str) -> str:
    """`answer` with thin-space / tilde / `{,}` / space thousands separators removed from digit groups.

    "4\\,023" -> "4023", "1\\,000\\,000" -> "1000000", "4{,}023" -> "4023", "1 000 000" -> "1000000".
    Only a run of groups of exactly three digits after a first group of one to three counts: "12\\,34",
    "0.5\\,000" and "1,000" are returned unchanged (commas are math-verify's to read).
    """
    return _THOUSANDS.sub(lambda m: m.group(1) + _SEPARATOR.sub("", m.group(2)), answer)


def _normalize_int(s: str) -> str | None:
    """Canonical form of a plain integer string ("+007" -> "7", "-0" -> "0", "1,000" -> "1000"), else None."""
    s = s.strip()
    if _COMMA_INT.fullmatch(s):
        s = s.replace(",", "")
    if not _INT.fullmatch(s):
        return None
    digits = s.lstrip("+-").lstrip("0") or "0"
    return "-" + digits if s.startswith("-") and digits != "0" else digits


def _depth(s: str) -> int:
    """Deepest nesting of (), [] and {} in `s` (unbalanced closers ignored)."""
    depth = deepest = 0
    for ch in s:
        if ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}" and depth:
            depth -= 1
    return deepest


def verify(pred: str, gold: str) -> bool:
    """True if answer `pred` is mathematically equivalent to `gold` (both answer strings, no \\boxed)."""
    pred, gold = (pred or "").strip(), (gold or "").strip()
    if not pred or not gold:
        return False
    if pred == gold:
        return True
    pred, gold = join_thousands(pred), join_thousands(gold)
    p_int, g_int = _normalize_int(pred), _normalize_int(gold)
    if p_int is not None and g_int is not None:
        return p_int == g_int
    if max(len(pred), len(gold)) > MAX_ANSWER_CHARS or max(_depth(pred), _depth(gold)) > MAX_ANSWER_DEPTH:
        return False
    if _costly(pred) or _costly(gold):  # sympy would evaluate e.g. 9^{9^9} in one C call: exact text only
        return "".join(pred.split()) == "".join(gold.split())
    return _math_verify(pred, gold)


# ------------------------------------------------------------------------------------------ cost guard
_TOKEN = re.compile(r"\d+(?:\.\d*)?|\.\d+|\\[A-Za-z]+|\\.|\*\*|\S")
_IGNORED = frozenset({"\\left", "\\right", "\\,", "\\;", "\\:", "\\!", "\\ ", "\\quad", "\\qquad", "$",
                      "\\displaystyle", "\\big", "\\Big", "\\bigl", "\\bigr", "\\Bigl", "\\Bigr"})
_ADD = frozenset({"+", "-", "\\pm", "\\mp"})
_MUL = frozenset({"*", "/", "\\cdot", "\\times", "\\div"})  # a / b is bounded like a * b (see _number)
_POW = frozenset({"^", "**"})
_CLOSER = {"(": ")", "{": "}", "[": "]"}
_FRAC = frozenset({"\\frac", "\\dfrac", "\\tfrac", "\\cfrac"})
_BINOM = frozenset({"\\binom", "\\dbinom", "\\tbinom"})
_TEXT = frozenset({"\\text", "\\textbf", "\\textit", "\\mathrm", "\\mathbf", "\\operatorname", "\\mbox"})
_LOG10_2 = math.log10(2)


class _TooCostly(Exception):
    """A power, factorial or binomial in the answer may evaluate to more than MAX_RESULT_DIGITS digits."""


def _pow10(x: float) -> float:
    return math.inf if x > 300 else 10.0**x


def _number(token: str) -> float:
    """Upper bound of log10(max(|v|, 1/|v|)) for a decimal literal v ("2024" -> 3.31, "0.001" -> 3)."""
    whole, _, frac = token.partition(".")
    whole = whole.lstrip("0")
    if whole:
        return math.log10(int(whole[:15])) + max(0, len(whole) - 15) + 1e-9
    return len(frac) - len(frac.lstrip("0")) + 1.0


class _Magnitude:
    """Recursive-descent reader of a LaTeX answer that returns an upper bound of log10|value| of every
    subexpression (letters count as 1, since sympy keeps them symbolic; commands as 10; a sum as twice its larger term) and raises
    `_TooCostly` as soon as a power, factorial or binomial may exceed MAX_RESULT_DIGITS digits. It accepts
    any token sequence (unknown tokens separate terms), so it never fails on malformed LaTeX."""

    def __init__(self, answer: str):
        self.tokens = [t for t in _TOKEN.findall(answer) if t not in _IGNORED]
        self.i = 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def starts_atom(self, t: str | None) -> bool:
        if t is None:
            return False
        return t[0].isdigit() or t[0] == "." or t.isalpha() or t in _CLOSER or (
            t[0] == "\\" and t[1:].isalpha())

    def sequence(self, stop: str | None) -> float:
        """Largest term until `stop` (a closing bracket) or the end; separators and stray tokens skipped."""
        best = 0.0
        while self.peek() is not None and self.peek() != stop:
            start = self.i
            best = max(best, self.sum(stop))
            if self.i == start:
                self.i += 1
        return best

    def sum(self, stop: str | None) -> float:
        total = 0.0
        while True:
            while self.peek() in _ADD:
                self.i += 1
            term = self.product(stop)
            total = max(total, term) + (_LOG10_2 if total and term else 0.0)
            if self.peek() not in _ADD:
                return total

    def product(self, stop: str | None) -> float:
        total = 0.0
        while True:
            t = self.peek()
            if t in _MUL:
                self.i += 1
            elif t != stop and self.starts_atom(t):
                total += self.power(stop)
            else:
                return total

    def power(self, stop: str | None) -> float:
        value = self.atom()
        while True:
            t = self.peek()
            if t == "_":  # subscript: read (its own powers are checked), value unchanged
                self.i += 1
                self.argument()
            elif t in _POW:
                self.i += 1
                exponent = self.argument()
                value = 0.0 if value == 0 else value * _pow10(exponent)
                self.check(value)
            elif t == "!":  # n! < n^n; a double factorial n!! is bounded by n!
                self.i += 1
                if self.peek() == "!":
                    self.i += 1
                value = _pow10(value) * max(value, 1.0)
                self.check(value)
            elif t == "'":
                self.i += 1
            else:
                return value

    def argument(self) -> float:
        """A LaTeX argument: a braced group or one token (a whole number, conservatively)."""
        t = self.peek()
        if t is None:
            return 0.0
        if self.starts_atom(t):
            return self.atom()
        self.i += 1
        return 0.0

    def atom(self) -> float:
        t = self.tokens[self.i]
        self.i += 1
        if t[0].isdigit() or t[0] == ".":
            return _number(t)
        if t in _CLOSER:
            value = self.sequence(_CLOSER[t])
            if self.peek() == _CLOSER[t]:
                self.i += 1
            return value
        if t in _FRAC:
            return self.argument() + self.argument()
        if t in _BINOM:  # C(n, k) <= 2^n
            value = _pow10(self.argument()) * _LOG10_2
            self.argument()
            self.check(value)
            return value
        if t == "\\sqrt":
            if self.peek() == "[":
                self.atom()
            return self.argument()
        if t in _TEXT:
            self.argument()
            return 1.0
        return 0.0 if t.isalpha() else 1.0  # a letter stays symbolic; \pi, \sum... count as 10

    def check(self, digits: float) -> None:
        if not digits <= MAX_RESULT_DIGITS:  # also catches nan
            raise _TooCostly(f"a subexpression may have ~{digits:.3g} digits")


def _costly(answer: str) -> bool:
    """True if sympy might evaluate a number of more than MAX_RESULT_DIGITS digits from `answer`
    ("9^{9^9}", "(10!)!", "2^{10^{10}}", "\\prod_{i=1}^{10^6} i"); False for "2^{2024}", "x^2+2024", "100!".

    Measured: `2^{9999999999}` or `9^{9^9}` keeps sympy inside one C integer operation for minutes, where
    neither signal.alarm nor our deadline can interrupt it."""
    if not any(op in answer for op in ("^", "*", "!", "binom")):
        return False
    try:
        _Magnitude(answer).sequence(None)
    except (_TooCostly, RecursionError, OverflowError):
        return True
    return False


# ------------------------------------------------------------------------------------------ deadline
class _Deadline(BaseException):
    """Raised inside a thread whose math-verify check ran past MATH_VERIFY_TIMEOUT (a BaseException, so the
    library's own `except Exception` handlers cannot swallow it)."""


def call_with_deadline(fn, seconds: float):
    """`fn()` run on the calling thread (main or not), interrupted by `_Deadline` after `seconds`.

    A timer thread raises the exception asynchronously in the calling thread; it is delivered between two
    bytecodes, so a single long C call (a huge integer power) delays it until that call returns. If `fn`
    returns first, the pending exception is withdrawn under a lock, so it can never surface later.
    """
    target = ctypes.c_ulong(threading.get_ident())
    lock = threading.Lock()
    state = {"fired": False, "done": False}

    def fire() -> None:
        with lock:
            if not state["done"]:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(target, ctypes.py_object(_Deadline))
                state["fired"] = True

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        return fn()
    finally:
        with lock:
            state["done"] = True
            if state["fired"]:  # raised but maybe not yet delivered: withdraw it
                ctypes.pythonapi.PyThreadState_SetAsyncExc(target, None)
        timer.cancel()


@functools.cache
def _math_verify_api():
    """math-verify's `parse` and `verify`, imported and warmed up once (its first parse builds the LaTeX
    parser, ~0.1-1 s, which must not count against the deadline of the first answer)."""
    from math_verify import parse
    from math_verify import verify as mv_verify

    parse("$1$", parsing_timeout=None)
    return parse, mv_verify


def _math_verify(pred: str, gold: str) -> bool:
    parse, mv_verify = _math_verify_api()

    def check() -> bool:
        gold_parsed = parse(f"${gold}$", parsing_timeout=None)
        pred_parsed = parse(f"${pred}$", parsing_timeout=None)
        if not gold_parsed or not pred_parsed:
            return False
        return bool(mv_verify(gold_parsed, pred_parsed, timeout_seconds=None))

    try:
        return call_with_deadline(check, MATH_VERIFY_TIMEOUT)
    except _Deadline:
        logger.debug("math-verify ran past %s s on %r vs %r (scored 0)", MATH_VERIFY_TIMEOUT, pred, gold)
        return False
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
