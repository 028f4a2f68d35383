"""Answer extraction and the binary verifier, including pathological model outputs (never raise, never hang)."""

import threading
import time

import pytest

from fr3e.rewards import batch_rewards, extract_boxed, reward, verify

FAST = 2.0  # seconds: every pathological case must finish well within this


@pytest.fixture(autouse=True, scope="module")
def warm_math_verify():
    """Import sympy / latex2sympy once (a one-off ~1-2 s) so the time bounds measure the calls themselves."""
    verify("\\frac{1}{2}", "0.5")


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    elapsed = time.perf_counter() - start
    assert elapsed < FAST, f"{fn.__name__}{args!r:.60} took {elapsed:.2f} s"
    return out


@pytest.mark.parametrize(
    "text, expected",
    [
        ("12*3=36\n\\boxed{36}", "36"),
        ("\\boxed{1} then \\boxed{2}", "2"),  # several boxes: the last one
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),  # nested braces
        ("\\boxed{{a}{b}}", "{a}{b}"),
        ("\\boxed{ 42 }", "42"),
        ("\\boxed 7", "7"),
        ("\\boxed{5} and \\boxed{6", "5"),  # unbalanced last box: the previous complete one
        ("\\boxed{6", None),  # unbalanced only box
        ("no box here: 36", None),
        ("", None),
        ("\\boxed", None),
        ("\\boxed{}", ""),
    ],
)
def test_extract_boxed(text, expected):
    assert timed(extract_boxed, text) == expected


@pytest.mark.parametrize(
    "pred, gold, expected",
    [
        ("1081", "1081", True),
        ("1081", "1080", False),
        ("007", "7", True),  # integer fast path normalises leading zeros and signs
        ("+7", "7", True),
        ("-0", "0", True),
        ("-7", "7", False),
        ("\\frac{1}{2}", "0.5", True),  # LaTeX fraction vs decimal goes through math-verify
        ("0.5", "\\frac12", True),
        ("\\frac{1}{3}", "0.5", False),
        ("x^2", "x^{2}", True),
        ("", "1", False),
        ("1", "", False),
    ],
)
def test_verify(pred, gold, expected):
    assert timed(verify, pred, gold) is expected


def test_reward_pathological_outputs_never_raise_or_hang():
    huge = "9" * 10_000
    cases = [
        ("", "5", 0.0),  # empty output
        ("the answer is 5", "5", 0.0),  # no box: no fallback to the last number
        ("\\boxed{5", "5", 0.0),  # unbalanced braces
        ("}}}{{{\\boxed{}}}", "5", 0.0),
        ("\\boxed{4}\\boxed{5}", "5", 1.0),  # several boxes: the last counts
        ("\\boxed{5}\\boxed{4}", "5", 0.0),
        (f"\\boxed{{{huge}}}", huge, 1.0),  # 10,000-digit number: digit strings compared, no sympy
        (f"\\boxed{{{huge}}}", "5", 0.0),
        (f"\\boxed{{{huge}}}", "\\frac{1}{2}", 0.0),  # length guard before sympy
        (f"\\boxed{{\\frac{{{huge}}}{{3}}}}", "\\frac{1}{3}", 0.0),
        ("\\boxed{\\frac{1}{2}}", "0.5", 1.0),  # LaTeX fraction vs decimal
        ("\\boxed{\ufffd\ufffd}", "5", 0.0),  # replacement characters from non-UTF-8 bytes
        (b"\xff\xfe\\boxed{5}\x80".decode("utf-8", errors="replace"), "5", 1.0),
        ("\\boxed{\x00\x01}", "5", 0.0),
        ("\\boxed{5}" * 2000, "5", 1.0),  # long output
        ("{" * 5000 + "\\boxed{5}", "5", 1.0),
        ("\\boxed{" * 3000, "5", 0.0),
        ("\\boxed{\\sqrt{\\sqrt{\\sqrt{2}}}^{" + "9" * 50 + "}}", "1", 0.0),  # sympy-heavy but short
    ]
    for text, answer, expected in cases:
        assert timed(reward, text, answer) == expected, text[:60]


def test_reward_off_the_main_thread():
    # math-verify's signal.alarm timeouts only work on the main thread; we must not crash elsewhere.
    out = {}

    def work():
        out["r"] = [reward("\\boxed{\\frac{1}{2}}", "0.5"), reward("\\boxed{3}", "3"), reward("\\boxed{x}", "y")]

    t = threading.Thread(target=work)
    t.start()
    t.join(timeout=10)
    assert out["r"] == [1.0, 1.0, 0.0]


def test_batch_rewards():
    assert batch_rewards(["\\boxed{1}", "\\boxed{2}", "x"], ["1", "1", "1"]) == [1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="answers"):
        batch_rewards(["a"], [])


def test_integer_fast_path_is_fast():
    start = time.perf_counter()
    for i in range(10_000):
        reward(f"{i}*2={2 * i}\n\\boxed{{{2 * i}}}", str(2 * i))
    assert time.perf_counter() - start < 1.0  # ~10 µs each, far below math-verify's ~1 ms


def test_costly_powers_are_bounded_on_and_off_the_main_thread():
    heavy = ["2^{9999999999}", "9999999999!", "\\sqrt{2}^{99999999999}", "10**99999999"]
    for pred in heavy:
        assert timed(verify, pred, "1") is False
        assert timed(verify, pred, pred) is True  # identical text still matches
    out = {}
    t = threading.Thread(target=lambda: out.update(r=[verify(p, "1") for p in heavy]))
    start = time.perf_counter()
    t.start()
    t.join(timeout=10)
    assert out["r"] == [False] * 4 and time.perf_counter() - start < FAST
