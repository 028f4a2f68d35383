"""The reward on a corpus of pathological model outputs (tests/fixtures/pathological): every entry is scored
without raising, with its expected reward, within a per-output time bound, on the main thread and off it."""

import importlib.util
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fr3e.method import rewards
from fr3e.method.rewards import MATH_VERIFY_TIMEOUT, call_with_deadline, reward, verify

pytestmark = pytest.mark.timing  # wall-time bounds: `make test` runs this file alone, after the parallel tests

_MAKER = Path(__file__).parent / "fixtures" / "pathological" / "make_corpus.py"
_spec = importlib.util.spec_from_file_location("make_corpus", _MAKER)
make_corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_corpus)

PER_OUTPUT = MATH_VERIFY_TIMEOUT + 1.0  # seconds: the deadline, plus slack for one C call on a busy machine (0.68 s seen)
WHOLE_CORPUS = 8.0  # seconds for every entry in a row (measured ~2.3 s alone on a 2-core machine)

CORPUS = make_corpus.read_small() + make_corpus.large_entries()


@pytest.fixture(autouse=True, scope="module")
def warm_math_verify():
    """Import sympy / latex2sympy once (a one-off ~0.3-2 s) so the bounds measure the calls themselves."""
    verify("\\frac{1}{2}", "0.5")


def score_all(entries: list[dict]) -> list[tuple[float, float]]:
    """(reward, seconds) of each entry, scored in order on the calling thread."""
    out = []
    for e in entries:
        start = time.perf_counter()
        out.append((reward(e["text"], e["gold"]), time.perf_counter() - start))
    return out


def check(entries: list[dict], scored: list[tuple[float, float]], total: float) -> None:
    wrong = [(e["id"], r, e["expected"]) for e, (r, _) in zip(entries, scored)
             if e["expected"] is not None and r != e["expected"]]
    slow = [(e["id"], round(s, 2)) for e, (_, s) in zip(entries, scored) if s > PER_OUTPUT]
    assert not wrong, f"(id, reward, expected): {wrong}"
    assert not slow, f"over {PER_OUTPUT} s: {slow}"
    assert all(r in (0.0, 1.0) for r, _ in scored)
    assert total < WHOLE_CORPUS, f"corpus took {total:.1f} s"


def test_corpus_is_large_and_committed_file_matches_its_script():
    assert len(CORPUS) >= 50
    assert len({e["id"] for e in CORPUS}) == len(CORPUS)  # ids are unique
    # corpus.jsonl is what make_corpus.py writes: rerun the script after editing its list
    assert make_corpus.read_small() == make_corpus.small_entries()
    assert {"format", "braces", "encoding", "sympy", "size"} <= {e["category"] for e in CORPUS}
    assert max(len(e["text"]) for e in CORPUS) >= 1_000_000
    assert any("\ud800" in e["text"] for e in CORPUS)  # lone surrogates survive the JSON round trip


def test_corpus_on_the_main_thread():
    assert threading.current_thread() is threading.main_thread()
    start = time.perf_counter()
    scored = score_all(CORPUS)
    check(CORPUS, scored, time.perf_counter() - start)


def test_corpus_on_a_worker_thread():
    # math-verify's own timeouts (signal.alarm) do nothing here: the bound must come from fr3e.method.rewards
    with ThreadPoolExecutor(max_workers=1) as pool:
        start = time.perf_counter()
        scored = pool.submit(score_all, CORPUS).result(timeout=60)
        total = time.perf_counter() - start
    check(CORPUS, scored, total)


def test_heavy_entries_on_concurrent_worker_threads():
    heavy = [e for e in CORPUS if e["category"] in ("sympy", "braces")]
    with ThreadPoolExecutor(max_workers=3) as pool:
        start = time.perf_counter()
        futures = [pool.submit(reward, e["text"], e["gold"]) for e in heavy]
        results = [f.result(timeout=60) for f in futures]
        total = time.perf_counter() - start
    assert all(r in (0.0, 1.0) for r in results)
    assert total < WHOLE_CORPUS, f"{len(heavy)} heavy entries on 3 threads took {total:.1f} s"


def test_false_negatives_of_the_old_reward_are_fixed():
    # x^2+2024: the old cost guard sent any answer with ^ and a 4-digit number to a text comparison;
    # 4\,023: latex2sympy reads the thin space as addition, 4 + 023 = 27
    assert reward("\\boxed{x^2+2024}", "2024+x^2") == 1.0
    assert reward("\\boxed{4\\,023}", "4023") == 1.0
    assert reward("\\boxed{4\\,024}", "4023") == 0.0


@pytest.mark.parametrize("on_main", [True, False])
def test_deadline_interrupts_python_work_on_any_thread(on_main):
    def spin():
        while True:
            pass

    def run():
        start = time.perf_counter()
        with pytest.raises(rewards._Deadline):
            call_with_deadline(spin, 0.2)
        return time.perf_counter() - start

    if on_main:
        elapsed = run()
    else:
        with ThreadPoolExecutor(max_workers=1) as pool:
            elapsed = pool.submit(run).result(timeout=10)
    assert 0.2 <= elapsed < 1.0


def test_deadline_never_fires_after_the_call_returned():
    assert call_with_deadline(lambda: 7, 0.05) == 7
    time.sleep(0.2)  # past the deadline: a leaked asynchronous exception would be raised in this loop
    for _ in range(100_000):
        pass
    assert call_with_deadline(lambda: 8, 5.0) == 8


def test_timeout_scores_zero_and_the_next_answer_is_still_verified(monkeypatch):
    monkeypatch.setattr(rewards, "MATH_VERIFY_TIMEOUT", 0.001)
    assert reward("\\boxed{\\int_0^{\\infty} e^{-x^2} dx}", "\\frac{\\sqrt{\\pi}}{2}") == 0.0
    monkeypatch.setattr(rewards, "MATH_VERIFY_TIMEOUT", 1.0)
    assert reward("\\boxed{\\frac{1}{2}}", "0.5") == 1.0
