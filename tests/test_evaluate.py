"""Evaluation harness: pass@k and bootstrap CIs by hand, then the harness with a scripted engine and a model."""

import itertools
import json
import math

import numpy as np
import pytest

from fr3e.cli.evaluate import main
from fr3e.engines.base import Completion, EngineCounters
from fr3e.evaluation.evaluate import bootstrap_ci, evaluate, ks_for, pass_at_k, score_benchmark
from fr3e.tasks.arithmetic import make_split

pytestmark = pytest.mark.usefixtures("cpu_threads")


# ------------------------------------------------------------------------------------------ pass@k
@pytest.mark.parametrize(
    "n, c, k, expected",
    [
        (4, 0, 1, 0.0),
        (4, 4, 1, 1.0),
        (4, 1, 1, 0.25),  # 1 - C(3,1)/C(4,1) = 1 - 3/4
        (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
        (4, 2, 2, 5 / 6),  # 1 - C(2,2)/C(4,2) = 1 - 1/6
        (4, 2, 3, 1.0),  # n - c = 2 < k = 3: every 3-subset holds a correct sample
        (16, 4, 1, 0.25),  # pass@1 = c / n
        (16, 1, 16, 1.0),
        (16, 1, 8, 0.5),  # 1 - C(15,8)/C(16,8) = 1 - 6435/12870
    ],
)
def test_pass_at_k_by_hand(n, c, k, expected):
    assert math.isclose(pass_at_k(n, c, k), expected, rel_tol=1e-12)


def test_pass_at_k_equals_the_subset_count():
    # The obvious loop: the share of k-subsets of the n samples that contain at least one correct sample.
    for n in range(1, 7):
        for c in range(n + 1):
            samples = [1] * c + [0] * (n - c)
            for k in range(1, n + 1):
                subsets = list(itertools.combinations(samples, k))
                brute = sum(any(s) for s in subsets) / len(subsets)
                assert math.isclose(pass_at_k(n, c, k), brute, rel_tol=1e-12, abs_tol=1e-15)


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_ks_for():
    assert ks_for(16) == [1, 2, 4, 8, 16]
    assert ks_for(12) == [1, 2, 4, 8, 12]
    assert ks_for(1) == [1]


# -------------------------------------------------------------------------------------- bootstrap
def test_bootstrap_ci_by_hand():
    assert bootstrap_ci([0.5] * 10) == (0.5, 0.5)  # no spread, no interval
    assert bootstrap_ci([1.0]) == (1.0, 1.0)
    assert all(math.isnan(x) for x in bootstrap_ci([]))
    # Two problems [0, 1]: resampled means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4, so the 2.5% and
    # 97.5% quantiles are 0 and 1.
    assert bootstrap_ci([0.0, 1.0], num_resamples=4000) == (0.0, 1.0)


def test_bootstrap_ci_matches_the_normal_approximation():
    # 400 problems, half right: mean 0.5, standard error 0.5 / sqrt(400) = 0.025, CI ≈ 0.5 ± 1.96 · 0.025.
    values = [0.0, 1.0] * 200
    low, high = bootstrap_ci(values, num_resamples=4000, seed=1)
    assert abs(low - 0.451) < 0.01 and abs(high - 0.549) < 0.01
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)  # deterministic in seed


def test_score_benchmark_by_hand():
    correct = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]])
    m = score_benchmark(correct, greedy=np.array([1, 0, 1]))
    assert m["num_problems"] == 3 and m["n"] == 4
    assert math.isclose(m["avg@4"], (0.5 + 0 + 1) / 3)
    assert math.isclose(m["pass@1"], m["avg@4"])
    assert math.isclose(m["pass@2"], (5 / 6 + 0 + 1) / 3)  # problem 1: 1 - C(2,2)/C(4,2)
    assert math.isclose(m["pass@4"], 2 / 3)
    assert math.isclose(m["greedy"], 2 / 3)
    assert m["all_right"] == m["all_wrong"] == 1 / 3
    assert m["per_problem_correct"] == [2, 0, 4] and m["per_problem_greedy"] == [1, 0, 1]
    for key in ("avg@4", "pass@2", "greedy"):
        low, high = m["ci"][key]
        assert low <= m[key] <= high


# ---------------------------------------------------------------------------------------- harness
class ScriptedEngine:
    """Answers every problem with its gold solution on even samples and with a wrong box on odd ones;
    greedy (temperature 0) is always right. Exercises the harness without a model."""

    def __init__(self, tokenizer, datasets):
        self.tok = tokenizer
        self.solutions = {p: s for ds in datasets for p, s in zip(ds["prompt"], ds["solution"])}
        self.counters = EngineCounters()

    def generate(self, prompt_ids, n, max_new_tokens, temperature=1.0, top_p=1.0, seed=None):
        out = []
        for ids in prompt_ids:
            solution = self.solutions[self.tok.decode(ids, skip_special_tokens=True)]
            right = self.tok(solution, add_special_tokens=False).input_ids + [self.tok.eos_token_id]
            wrong = self.tok("\\boxed{-1}", add_special_tokens=False).input_ids + [self.tok.eos_token_id]
            row = [right if (k % 2 == 0 or temperature == 0) else wrong for k in range(n)]
            out.append([Completion(r, [0.0] * len(r), "stop") for r in row])
        return out

    def sync_weights(self, model):
        pass


def test_evaluate_with_a_scripted_engine(tiny_sft, tmp_path):
    model, tok = tiny_sft
    data = {name: make_split(name, 6) for name in ("easy", "hard")}
    engine = ScriptedEngine(tok, data.values())
    out = tmp_path / "eval.json"
    report = evaluate(model, benchmarks=("easy", "hard"), n=4, num_problems=6, engine=engine, tokenizer=tok,
                      out=out, progress=False)
    for name in ("easy", "hard"):
        m = report["benchmarks"][name]
        assert m["num_problems"] == 6 and m["avg@4"] == 0.5 and m["pass@1"] == 0.5
        assert m["pass@2"] == 5 / 6 and m["pass@4"] == 1.0 and m["greedy"] == 1.0
        assert m["ci"]["avg@4"] == [0.5, 0.5]
    assert report["average"]["avg@4"] == 0.5
    assert json.loads(out.read_text())["benchmarks"]["easy"]["avg@4"] == 0.5
    assert [p.name for p in tmp_path.iterdir()] == ["eval.json"]  # no temp file left


def test_evaluate_a_model_directory(tiny_sft_dir, tmp_path):
    report = evaluate(tiny_sft_dir, benchmarks="easy,medium", n=4, num_problems=8, max_new_tokens=48,
                      out=tmp_path / "r.json", progress=False)
    assert set(report["benchmarks"]) == {"easy", "medium"}
    for m in report["benchmarks"].values():
        assert 0 <= m["avg@4"] <= m["pass@2"] <= m["pass@4"] <= 1
        assert m["num_problems"] == 8 and len(m["examples"]) == 3
    assert report["engine"]["generated_tokens"] > 0
    # Same seed, same numbers.
    again = evaluate(tiny_sft_dir, benchmarks="easy,medium", n=4, num_problems=8, max_new_tokens=48, progress=False)
    assert again["benchmarks"]["easy"]["avg@4"] == report["benchmarks"]["easy"]["avg@4"]


def test_evaluate_errors_teach(tmp_path, tiny_sft):
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        evaluate(tmp_path, progress=False)
    with pytest.raises(ValueError, match="tokenizer"):
        evaluate(tiny_sft[0], progress=False)
    with pytest.raises(ValueError, match="unknown benchmark"):
        evaluate(*tiny_sft[:1], tokenizer=tiny_sft[1], benchmarks=["aime2024"], progress=False)


def test_cli_prints_a_table_and_writes_json(tiny_sft_dir, tmp_path, capsys):
    out = tmp_path / "cli.json"
    main(["--model", str(tiny_sft_dir), "--benchmarks", "easy", "--n", "2", "--num-problems", "4",
          "--max-new-tokens", "40", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "avg@2" in printed and "easy" in printed and "average" in printed
    assert json.loads(out.read_text())["config"]["n"] == 2


def test_per_problem_counts_reach_the_run_logs_and_give_back_the_means(tmp_path):
    """The evaluation rows carry each problem's correct count, and `load_problem_counts` reads them back in the
    evaluation set's order, so a paired per-problem interval can be recomputed from committed logs."""
    import json

    from fr3e.evaluation.evaluate import eval_rows
    from fr3e.study.loaders import load_evals, load_problem_counts

    rng = np.random.default_rng(0)
    correct = {b: (rng.random((12, 4)) < p).astype(int) for b, p in (("easy", 0.8), ("hard", 0.2))}
    report = {"config": {"n": 4}, "benchmarks": {b: score_benchmark(c, greedy=c[:, 0]) for b, c in correct.items()}}
    run = tmp_path / "fr3e-general-s0-10-abc"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"method": "fr3e", "name": run.name, "seed": 0, "steps": 10,
                                                 "model": {"base": "general"}}))
    (run / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in eval_rows(report, step=10)))
    counts = load_problem_counts([run])
    for b, c in correct.items():
        mine = counts[counts["benchmark"] == b]
        assert mine["correct"].tolist() == c.sum(axis=1).tolist() and mine["greedy"].tolist() == c[:, 0].tolist()
        assert math.isclose(mine["correct"].mean() / 4, report["benchmarks"][b]["avg@4"])
    assert "per_problem_correct" not in load_evals([run]).columns  # the flat frames stay scalar
    old = [{k: v for k, v in r.items() if not k.startswith("per_problem")} for r in eval_rows(report, step=10)]
    (run / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    with pytest.raises(ValueError, match="no per-problem counts"):
        load_problem_counts([run])
