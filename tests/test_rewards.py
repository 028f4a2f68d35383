"""Answer extraction and the binary verifier, including pathological model outputs (never raise, never hang)."""

import threading
import time

import pytest

from fr3e.method.rewards import _costly, batch_rewards, extract_boxed, join_thousands, reward, verify

pytestmark = pytest.mark.timing  # wall-time bounds: `make test` runs this file alone, after the parallel tests

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
        ("x^2+2024", "2024+x^2", True),  # ^ next to a 4-digit number is not costly: sympy compares them
        ("4\\,023", "4023", True),  # thin-space thousands separator (latex2sympy alone: 4 + 023 = 27)
        ("4023", "4{,}023", True),
        ("1,000,000", "1000000", True),  # integer fast path reads comma groups
        ("1,000,001", "1000000", False),
        ("4^{1012}", "2^{2024}", True),  # 610-digit powers are cheap for sympy
        ("\u0664\u0662", "42", False),  # only ASCII digits take the integer fast path
    ],
)
def test_verify(pred, gold, expected):
    assert timed(verify, pred, gold) is expected


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("4\\,023", "4023"),
        ("1\\,000\\,000", "1000000"),
        ("4{,}023", "4023"),
        ("4~023", "4023"),
        ("1 000 000", "1000000"),
        ("4\\,023.5", "4023.5"),
        ("x = 12\\,345", "x = 12345"),
        ("12\\,34", "12\\,34"),  # second group is not three digits
        ("1234\\,567", "1234\\,567"),  # first group longer than three
        ("0.123\\,456", "0.123\\,456"),  # decimals: left alone
        ("1,000", "1,000"),  # commas are math-verify's
        ("2 \\frac{1}{2}", "2 \\frac{1}{2}"),
    ],
)
def test_join_thousands(answer, expected):
    assert join_thousands(answer) == expected


@pytest.mark.parametrize(
    "answer, expected",
    [
        # cheap: every power / factorial stays under MAX_RESULT_DIGITS = 10,000 digits
        ("x^2+2024", False),
        ("2^{2024}", False),  # 2024 * log10(2) = 609.3 digits
        ("10^{9999}", False),  # 10,000 digits: at the limit
        ("100!", False),  # < 100^100: 200 digits
        ("(2n+1)!", False),  # symbolic
        ("e^{-x^2}", False),
        ("x^{y^{z}}", False),  # letters stay symbolic
        ("\\binom{10}{3}", False),
        ("2^{2^{2^2}}", False),  # 2^16 = 65536
        # costly
        ("2^{99999}", True),  # 30,103 digits
        ("2^{2^{2^{2^2}}}", True),  # 2^65536: 19,729 digits
        ("9^{9^9}", True),  # exponent 387,420,489
        ("(10!)!", True),
        ("5000!", True),  # < 5000^5000: 18,495 digits
        ("10**99999999", True),
        ("\\binom{10^{6}}{500000}", True),  # <= 2^(10^6)
        ("\\prod_{i=1}^{999999} i", True),  # the bound 999,999 raises a command (counted as 10) to it
        ("2^{0 \\cdot x + 9^9}", True),  # x * 0 vanishes, 9^9 remains
    ],
)
def test_costly(answer, expected):
    assert _costly(answer) is expected


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
