"""fr3e.study.report, fr3e.study.runs, fr3e.study.claims: loaders on fabricated run directories, aggregations and claims with
hand-computed expectations (the statistics themselves are tested in tests/test_stats.py).

The fixture tests/fixtures/runs/tiny/ holds 8 fabricated runs: {grpo_pp, fr3e} × {general, math} × seeds
{0, 1}, 4 steps each, final evaluation at step 4 (plus an earlier one at step 2 that must be ignored).
Final avg@16 per (model, method, seed) as (easy, medium, hard):
    general grpo_pp s0 (.50, .20, .05)  s1 (.60, .30, .15)      fr3e s0 (.55, .25, .10)  s1 (.70, .35, .15)
    math    grpo_pp s0 (.90, .80, .50)  s1 (.90, .70, .50)      fr3e s0 (.90, .80, .60)  s1 (.90, .80, .50)
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from fr3e.study import artefacts, claims, committed, loaders, stats  # noqa: E402
from fr3e.study import report as results  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "runs" / "tiny"
RUN_DIRS = sorted(FIXTURE.iterdir())


@pytest.fixture(scope="module")
def metrics() -> pd.DataFrame:
    return results.load_metrics(RUN_DIRS)


@pytest.fixture(scope="module")
def final() -> pd.DataFrame:
    return results.load_final_evals(RUN_DIRS)


# ---------------------------------------------------------------------------------------------- loaders
def test_load_metrics_tags_every_row(metrics):
    assert len(metrics) == 8 * 4
    assert set(metrics["method"]) == {"fr3e", "grpo_pp"}
    assert set(metrics["model"]) == {"general", "math"}
    assert set(metrics["seed"]) == {0, 1}
    assert metrics.groupby("run")["step"].apply(list).map(lambda s: s == [1, 2, 3, 4]).all()


def test_load_final_evals_keeps_only_the_last_step(final):
    assert len(final) == 8 * 3 and set(final["step"]) == {4}
    row = final[(final["run"] == "fr3e-general-s1-4") & (final["benchmark"] == "medium")].iloc[0]
    assert row["avg"] == 0.35 and row["pass@16"] == pytest.approx(1.0)
    assert (row["avg_lo"], row["avg_hi"]) == pytest.approx((0.30, 0.40))


def test_load_samples_and_first_sample():
    run = FIXTURE / "fr3e-general-s0-4"
    rows = results.load_samples(run, step=-1)
    assert len(rows) == 1 and rows[0]["step"] == 4
    assert results.first_sample(run)["trajectories"][0]["anchors"] == [3, 12, 20]


def test_run_meta_errors_teach(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        results.run_meta(tmp_path)


# ------------------------------------------------------------------------------------------- statistics
def test_statistics_live_in_stats_and_stay_importable_from_results():
    # the hand-computed cases are in tests/test_stats.py; notebooks still reach them through fr3e.study.report
    assert results.paired_t_interval is stats.paired_t_interval and results.mean_std is stats.mean_std
    assert results.claims_table is claims.claims_table  # resolved lazily from fr3e.study.claims


# ---------------------------------------------------------------------------------------------- table 1
def test_table1_mean_std_over_seeds(final):
    table = results.table1(final)
    # general GRPO++ easy: 50, 60 -> 55.0 ± 7.07; avg per seed: (50+20+5)/3 = 25, (60+30+15)/3 = 35 -> 30.0 ± 7.1
    assert table.loc[("general", "GRPO++"), "easy"] == "55.0 ± 7.1"
    assert table.loc[("general", "GRPO++"), "avg"] == "30.0 ± 7.1"
    # general FR3E easy: 55, 70 -> 62.5 ± 10.6
    assert table.loc[("general", "FR3E"), "easy"] == "62.5 ± 10.6"
    # math FR3E avg per seed: (90+80+60)/3 = 76.67, (90+80+50)/3 = 73.33 -> 75.0 ± 2.4
    assert table.loc[("math", "FR3E"), "avg"] == "75.0 ± 2.4"
    assert list(table.columns) == ["easy", "medium", "hard", "avg", "seeds"]
    assert list(table.index) == [("general", "GRPO++"), ("general", "FR3E"), ("math", "GRPO++"), ("math", "FR3E")]


def test_table1_with_base_rows(final):
    base = pd.DataFrame([{"model": m, "method": "base", "seed": 0, "benchmark": b, "avg": v}
                         for m, vals in {"general": (0.4, 0.1, 0.0), "math": (0.8, 0.6, 0.3)}.items()
                         for b, v in zip(("easy", "medium", "hard"), vals)])
    table = results.table1(final, base)
    assert list(table.index)[:3] == [("general", "base"), ("general", "GRPO++"), ("general", "FR3E")]
    assert table.loc[("general", "base"), "easy"] == "40.0"  # one evaluation: no ±
    assert table.loc[("math", "base"), "avg"] == "56.7"  # (80 + 60 + 30) / 3
    summary = results.table1_summary(final, base)
    assert set(summary["system"]) == {"base", "GRPO++", "FR3E"}


def test_deltas_paired_by_seed(final):
    d = results.deltas(final).set_index(["model", "benchmark"])
    # general easy: diffs 55-50 = 5, 70-60 = 10 -> mean 7.5, sd 3.5355, se 2.5, t(1) = 12.7062 -> ±31.77
    row = d.loc[("general", "easy")]
    assert row["delta"] == pytest.approx(7.5)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((7.5 - 31.7655, 7.5 + 31.7655), abs=1e-3)
    assert row["wins"] == 2 and row["seeds"] == 2
    assert row["sd"] == pytest.approx(3.5355, abs=1e-4)  # sqrt(((5 - 7.5)² + (10 - 7.5)²) / 1)
    # general avg: per-seed diffs 30-25 = 5 and 40-35 = 5 -> CI collapses to [5, 5]
    assert d.loc[("general", "avg"), ["delta", "ci_low", "ci_high"]].tolist() == pytest.approx([5, 5, 5])
    assert d.loc[("math", "avg"), "delta"] == pytest.approx(10 / 3)
    assert d.loc[("math", "easy"), "wins"] == 0  # a tie is not a win


def test_deltas_skip_unpaired_seeds(final):
    extra = final[(final["method"] == "fr3e")].assign(seed=7)
    d = results.deltas(pd.concat([final, extra]))
    assert (d["seeds"] == 2).all()


def test_paper_reference_never_invents():
    ref = results.paper_reference()
    known = ref[ref["FR3E"] != "unknown"]
    assert len(known) == 1
    row = known.iloc[0]
    assert (row["model"], row["benchmark"], row["GRPO++"], row["FR3E"], row["delta"]) == \
        ("Qwen2.5-32B", "AIME24", "34.1", "40.2", "+6.1")
    assert len(ref) == 3 * 7


# ----------------------------------------------------------------------------------------------- claims
def _verdicts(table: pd.DataFrame) -> dict[tuple[str, str], str]:
    return {(c, m): v for c, m, v in zip(table["claim"], table["model"], table["verdict"])}


def _nt(interval: str) -> str:
    """The verdict of an interval without width (the fixture's seeds agree exactly)."""
    return (f"not testable here ({interval}: every seed gave the same difference, so the world fixes this "
            "quantity or nothing varied)")


def test_claims_table_rows_and_verdicts(metrics, final):
    table = claims.claims_table(metrics, final, details=True)
    assert list(table.columns) == claims.COLUMNS + claims.DETAIL_COLUMNS
    assert list(claims.claims_table(metrics, final).columns) == ["claim", "model", "paper", "ours", "verdict"]
    assert all(any(v.startswith(name) for name in stats.VERDICTS) for v in table["verdict"])
    by = _verdicts(table)
    # general avg per seed: FR3E − GRPO++ = 30 − 25 = 5 and 40 − 35 = 5 -> [5, 5]
    assert by[(claims.TABLE1_CLAIM, "general")] == _nt("+5.0 [+5.0, +5.0]")  # was holds: every seed agreed exactly
    # per-seed gains: general 5, 5; math 10/3, 10/3 -> math − general = −1.67 with sd 0 -> [−1.7, −1.7]
    assert by[(claims.MATH_CLAIM, "math − general")] == _nt("−1.7 [−1.7, −1.7]")  # was holds: every seed agreed exactly
    # end-of-training entropy (last quarter = step 4): general FR3E 0.70, 0.71 vs GRPO++ 0.40, 0.41 -> +0.30 each
    key = "FR3E entropy higher than GRPO++ at the end of training (trained tokens)"
    assert by[(key, "general")] == _nt("+0.300 [+0.300, +0.300]")  # was holds: every seed agreed exactly
    assert by[(key, "math")] == _nt("−0.100 [−0.100, −0.100]")  # was contradicted: every seed agreed exactly  # 0.30, 0.31 vs 0.40, 0.41
    # the same, on full responses: math 0.40, 0.41 on both sides -> a zero-width interval at 0 contains 0
    key = "FR3E entropy higher than GRPO++ at the end of training (full responses from the prompt)"
    assert by[(key, "math")] == _nt("+0.000 [+0.000, +0.000]")  # was inconclusive: every seed agreed exactly
    # advantage std 0.3 vs 0.5: the paper says lower, the interval [−0.2, −0.2] is below 0 -> holds
    assert by[("FR3E advantages more tightly centred (smaller std)", "general")] == _nt("−0.200 [−0.200, −0.200]")  # was holds: every seed agreed exactly
    key = "FR3E responses longer than GRPO++ (trained rollouts, prefix + continuation)"
    assert by[(key, "general")] == _nt("+9.0 [+9.0, +9.0]")  # was holds: every seed agreed exactly  # 33 vs 24 tokens in both seeds


def test_claim_table1_interval_contains_zero():
    rows = []
    for seed, (g, f) in enumerate([(0.30, 0.40), (0.40, 0.30), (0.35, 0.40)]):
        for method, v in (("grpo_pp", g), ("fr3e", f)):
            rows += [{"model": "general", "method": method, "seed": seed, "benchmark": b, "avg": v}
                     for b in ("easy", "medium", "hard")]
    row = claims.claim_table1(pd.DataFrame(rows))[0]
    # per-seed diffs +10, −10, +5: mean 1.667; deviations 8.333, −11.667, 3.333 -> s² = 216.67 / 2 = 108.33,
    # s = 10.408, se = 10.408 / √3 = 6.009, half = 4.3027 · 6.009 = 25.86 -> [−24.2, +27.5]
    assert row["verdict"] == "inconclusive (+1.7 [−24.2, +27.5])"
    assert row["model"] == "general" and "95% paired t-interval over 3 seeds" in row["ours"]


def test_difference_of_differences_from_deltas_with_or_without_sd():
    # per-seed gains: general 5, 5, 8 (mean 6, s² 3); math 1, 2, 3 (mean 2, s² 1) -> math − general = −4,
    # Welch se √(3/3 + 1/3) = 1.1547, df 3.2 -> 3, t 3.1824 -> half 3.6747 -> [−7.7, −0.3]: smaller on math
    rows = []
    for model, diffs in (("general", [5.0, 5.0, 8.0]), ("math", [1.0, 2.0, 3.0])):
        m, lo, hi = stats.paired_t_interval(diffs)
        rows.append({"model": model, "benchmark": "avg", "grpo_pp": 40.0, "fr3e": 40.0 + m, "delta": m,
                     "ci_low": lo, "ci_high": hi, "sd": stats.mean_std(diffs)[1], "seeds": 3, "wins": 3})
    d = pd.DataFrame(rows)
    row = claims.claim_table1_from_deltas(d)[-1]
    assert row["model"] == "math − general" and row["verdict"] == "holds (−4.0 [−7.7, −0.3])"
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((-7.67473, -0.32527), abs=1e-4)
    # a committed deltas table without the sd column: the sd is recovered from the t-interval
    again = claims.claim_table1_from_deltas(d.drop(columns=["sd"]))[-1]
    assert (again["ci_low"], again["ci_high"]) == pytest.approx((row["ci_low"], row["ci_high"]), abs=1e-9)
    # one seed: no interval, never a verdict from the point estimates
    one = d.assign(seeds=1, ci_low=np.nan, ci_high=np.nan, sd=np.nan)
    assert claims.claim_table1_from_deltas(one)[-1]["verdict"].startswith("inconclusive (−4.0, no interval")


def test_composition_claims_compare_like_with_like(metrics):
    shares = results.composition_shares(metrics)
    first = shares[(shares["run"] == "fr3e-general-s0-4") & (shares["step"] == 1)].iloc[0]
    assert (first["all_right"], first["all_wrong"], first["mixed"]) == pytest.approx((0.25, 0.5, 0.25))
    # the fixture's prompt groups: FR3E M = 16 continuations of S_0, GRPO++ G = 4 rollouts -> not comparable
    assert set(metrics.loc[metrics["method"] == "fr3e", "group_size"]) == {16}
    rows = claims.claims_table(metrics, artefacts=["all_right"])
    assert rows["verdict"].str.startswith("inconclusive (not like for like: prompt groups of different sizes "
                                          "(FR3E 16, GRPO++ 4 rollouts)").all()
    # same group sizes: FR3E All-Right 2/8 -> 5/8 (+37.5 pts), GRPO++ 2/8 -> 3/8 (+12.5) in both seeds -> +25
    same = claims.claims_table(metrics.assign(group_size=8), artefacts=["all_right"])
    by = _verdicts(same)
    key = "FR3E raises the All-Right share of prompt groups more than GRPO++ (end − start of training)"
    assert by[(key, "general")].startswith("not testable here (+25.0 [+25.0, +25.0]: every seed gave the same")  # no width
    assert "FR3E +37.5 vs GRPO++ +12.5 pts" in same["ours"].iloc[0]


def test_eval_composition_claim_hand_computed(final):
    rows = claims.eval_claim(next(s for s in claims.SPECS if s.kind == "eval" and s.column == "all_right"), final)
    per = final.groupby(["model", "method", "seed"])["all_right"].mean().mul(100)
    diffs = [per[("general", "fr3e", s)] - per[("general", "grpo_pp", s)] for s in (0, 1)]
    m, lo, hi = stats.paired_t_interval(diffs)
    assert rows[0]["model"] == "general" and (rows[0]["ci_low"], rows[0]["ci_high"]) == pytest.approx((lo, hi))


def test_one_seed_uses_a_paired_bootstrap_over_steps():
    # one seed, 8 steps: last quarter = steps 7, 8; FR3E entropy 0.5, 0.7 vs GRPO++ 0.2, 0.3 -> diffs 0.3, 0.4.
    # Resample means are 0.3 (p 1/4), 0.35 (1/2), 0.4 (1/4): percentiles 2.5% -> 0.3, 97.5% -> 0.4.
    rows = [{"model": "general", "method": m, "seed": 0, "step": t, "entropy": v, "run": m}
            for m, late in (("fr3e", (0.5, 0.7)), ("grpo_pp", (0.2, 0.3)))
            for t, v in zip(range(1, 9), (1.0,) * 6 + late)]
    spec = claims.SPECS[0]
    row = claims.level_claim(spec, pd.DataFrame(rows))[0]
    # the estimate is the difference of the last-quarter means: 0.6 − 0.25 = 0.35
    assert row["verdict"] == "holds (+0.350 [+0.300, +0.400])"
    assert "1 seed: 95% paired bootstrap over the 2 last-quarter steps" in row["ours"]


def test_claim_verdict_when_reversed(metrics):
    swap = {"fr3e": "grpo_pp", "grpo_pp": "fr3e"}
    swapped = metrics.assign(method=metrics["method"].map(swap), arm=metrics["arm"].map(swap))
    rows = claims.claims_table(swapped, artefacts=["advantage"])
    assert rows["verdict"].str.startswith("not testable here (+0.200 [+0.200, +0.200]").all()  # both seeds agree exactly


def test_eval_claims_missing_columns_say_so(final):
    rows = claims.claims_table(final_evals=final.drop(columns=["mean_response_tokens"]), artefacts=["length"])
    assert rows["verdict"].str.startswith("inconclusive (no interval: mean_response_tokens not logged").all()
    assert "not logged" in rows["ours"].iloc[0]


def test_walkthrough_claims_on_fixture_sample():
    sample = results.first_sample(FIXTURE / "fr3e-general-s0-4")
    rows = results.claims_table(sample=sample, artefacts=["walkthrough"])
    assert [v.split(" ")[0] for v in rows["verdict"]] == ["holds", "holds"]
    assert rows["verdict"].iloc[0].startswith("holds (exact check on one trajectory: lowest anchor − highest other")
    table = results.walkthrough_table(sample)
    assert table["state"].tolist() == ["S_0", "S_1", "S_2", "S_3"]
    assert table["right"].tolist() == [2, 3, 1, 4]


def test_training_summary(metrics):
    s = results.training_summary(metrics, ["entropy"])
    row = s[(s["model"] == "general") & (s["method"] == "fr3e") & (s["step"] == 4)].iloc[0]
    # seeds: 0.70, 0.71 -> mean 0.705, std 0.00707
    assert row["entropy_mean"] == pytest.approx(0.705) and row["entropy_std"] == pytest.approx(0.0070711, abs=1e-6)
    assert row["seeds"] == 2


# ------------------------------------------------------------------------------------------------- runs
RECIPE = "method: {method}\nprofile: tiny\nsteps: 9\n"


def _recipes(tmp_path):
    out = {}
    for method in ("grpo_pp", "fr3e"):
        path = tmp_path / f"tiny-{method}.yaml"
        path.write_text(RECIPE.format(method=method))
        out[method] = path
    return out


def test_ensure_runs_trains_missing_and_reuses_finished(tmp_path, caplog):
    calls = []

    def fake_train(config, run_dir, progress, cache_dir):
        calls.append((config.method, config.model.base, config.seed, config.steps, config.name, Path(run_dir)))
        Path(run_dir).mkdir(parents=True)
        (Path(run_dir) / "DONE").write_text("")
        return run_dir

    recipes = _recipes(tmp_path)
    with caplog.at_level(logging.INFO, logger="fr3e.study.launch"):
        runs = results.ensure_runs(recipes, ["general", "math"], [0, 1], steps=3, runs_root=tmp_path / "runs",
                                   launcher=fake_train)
    assert len(runs) == 8 and len(calls) == 8
    assert [r.method for r in runs[:4]] == ["grpo_pp"] * 4
    assert runs[0].run_dir == tmp_path / "runs" / "tiny" / "grpo_pp-general-s0-3"
    assert calls[0][:5] == ("grpo_pp", "general", 0, 3, "grpo_pp-general-s0-3")
    assert "fr3e-math-s1-3: training (3 steps)" in caplog.text and "runs 8/8 done" in caplog.text
    # second call: everything finished, nothing launched
    again = results.ensure_runs(recipes, ["general", "math"], [0, 1], steps=3, runs_root=tmp_path / "runs",
                                launcher=fake_train)
    assert len(calls) == 8 and [r.run_dir for r in again] == [r.run_dir for r in runs]


def test_ensure_runs_names_and_steps_from_recipe(tmp_path):
    def fake_train(config, run_dir, progress, cache_dir):
        assert config.data.eval_n == 4 and config.data.eval_problems == 16
        Path(run_dir).mkdir(parents=True)
        (Path(run_dir) / "DONE").write_text("")

    runs = results.ensure_runs(_recipes(tmp_path), ["general"], [0], steps=None, runs_root=tmp_path,
                               eval_n=4, eval_problems=16, launcher=fake_train)
    assert runs[0].steps == 9  # the recipe's
    name = runs[0].run_dir.name
    assert name.startswith("grpo_pp-general-s0-9-") and len(name) == len("grpo_pp-general-s0-9-") + 8
    assert name == results.run_name("grpo_pp", "general", 0, 9, ["data.eval_n=4", "data.eval_problems=16"])


def test_ensure_runs_raises_when_run_does_not_finish(tmp_path):
    with pytest.raises(RuntimeError, match="without writing DONE"):
        results.ensure_runs(_recipes(tmp_path), ["general"], [0], 2, tmp_path, launcher=lambda *a: None)


def test_ensure_runs_rejects_mislabelled_recipe(tmp_path):
    recipes = _recipes(tmp_path)
    with pytest.raises(ValueError, match="trains method 'grpo_pp' but is listed as 'fr3e'"):
        results.ensure_runs({"fr3e": recipes["grpo_pp"]}, ["general"], [0], 2, tmp_path, launcher=lambda *a: None)


def test_accelerate_command():
    cmd = results.accelerate_command("acc.yaml", Path("r.yaml"), ["seed=1", "steps=2"], Path("runs/x"), "cache")
    assert cmd[1:4] == ["-m", "accelerate.commands.launch", "--config_file"]
    assert cmd[cmd.index("-m", 2) + 1] == "fr3e.cli.train"
    assert cmd[-4:] == ["--set", "seed=1", "--set", "steps=2"]


def test_recipes_tiny_exist():
    paths = results.recipes("tiny")
    assert list(paths) == ["grpo_pp", "fr3e"] and all(p.exists() for p in paths.values())
    with pytest.raises(ValueError, match="unknown profile"):
        results.recipes("huge")


def test_base_evals_cached_and_shaped_like_eval_rows(tmp_path):
    recipes = _recipes(tmp_path)
    calls = []

    def fake_eval(model_dir, **kw):
        calls.append((model_dir, kw))
        n = kw["n"]
        bench = {b: {f"avg@{n}": 0.5, "pass@1": 0.5, f"pass@{n}": 0.9, "greedy": 1.0, "num_problems": 16,
                     "ci": {f"avg@{n}": [0.4, 0.6]}} for b in kw["benchmarks"]}
        return {"benchmarks": bench, "config": {"n": n}}

    base = results.base_evals(["general"], recipes["fr3e"], tmp_path, eval_n=4, evaluator=fake_eval,
                              warm_starter=lambda name, **kw: tmp_path / f"model-{name}")
    assert len(calls) == 1 and calls[0][0] == tmp_path / "model-general" and calls[0][1]["n"] == 4
    assert set(base["benchmark"]) == {"easy", "medium", "hard"} and (base["method"] == "base").all()
    assert base["pass@4"].tolist() == [0.9] * 3 and base["avg_lo"].tolist() == [0.4] * 3
    results.base_evals(["general"], recipes["fr3e"], tmp_path, eval_n=4, evaluator=fake_eval,
                       warm_starter=lambda name, **kw: tmp_path)
    assert len(calls) == 1  # cached


# -------------------------------------------------------------------------------------------- artefacts
def test_write_artefact_writes_four_files(tmp_path, final):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    out = results.write_artefact(tmp_path / "table1", data=results.table1_summary(final),
                                 summary={"table": results.table1(final), "x": np.float64(1.5), "nan": float("nan")},
                                 figure=fig, provenance=results.provenance(RUN_DIRS[:2], "tiny", results.Clock()),
                                 dpi=300)
    plt.close(fig)
    assert sorted(p.name for p in out.iterdir()) == ["data.csv", "figure.png", "provenance.json", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["x"] == 1.5 and summary["nan"] is None and summary["table"][0]["model"] == "general"
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["profile"] == "tiny" and len(prov["run_dirs"]) == 2 and prov["git_sha"]
    assert prov["packages"]["pandas"] == pd.__version__ and prov["wall_seconds"] >= 0
    assert len(pd.read_csv(out / "data.csv")) == len(results.table1_summary(final))
    from PIL import Image

    with Image.open(out / "figure.png") as im:
        assert im.info["dpi"][0] == pytest.approx(110, abs=0.5)  # asked for 300, capped at 110
    assert not list(out.glob(".*.tmp"))


# ------------------------------------------------------------------------------------------ walkthrough
def test_walkthrough_on_a_fresh_tiny_model(tmp_path):
    """One FR3E step by hand on an untrained tiny model: shapes and the maths' identities hold."""
    from fr3e.tasks.model import build_tiny, save_tiny

    model, tokenizer = build_tiny(seed=0)
    save_tiny(model, tokenizer, tmp_path / "model")
    sample = results.walkthrough(tmp_path / "model", problem_index=1, k=2, m=4, seed=0, max_new_tokens=16)
    traj = sample["trajectories"][0]
    assert len(traj["tokens"]) == len(traj["entropy"]) <= 16
    assert traj["anchors"] == sorted(traj["anchors"]) and 1 <= len(traj["anchors"]) <= 2
    assert 0 not in traj["anchors"]
    h = np.asarray(traj["entropy"])
    others = np.delete(h[1:], [a - 1 for a in traj["anchors"]])
    if traj["tokens"][-1] == "</s>":
        others = others[:-1]
    assert h[traj["anchors"]].min() >= (others.max() if others.size else 0.0)  # top-k entropy
    states = sample["states"]
    assert len(states) == 1 + len(traj["anchors"])
    assert [s["key"] for s in states] == [[0, -1, 0]] + [[0, 0, j] for j in range(1, len(states))]
    assert [s["anchor"] for s in states] == [0, *traj["anchors"]]
    prev = None
    for s in states:
        r = np.asarray(s["rewards"])
        assert r.shape == (4,) and s["value"] == pytest.approx(r.mean())
        assert s["value_ci"][0] <= s["value"] <= s["value_ci"][1]
        expected_alpha = 1.0 if prev is None else math.exp(-(s["value"] - prev))
        assert s["alpha"]["paper"] == pytest.approx(expected_alpha, rel=1e-5)
        assert s["advantages"] == pytest.approx((s["alpha"]["paper"] * (r - r.mean())).tolist(), abs=1e-5)
        prev = s["value"]


def test_claims_without_measurements_say_not_measured(metrics):
    # a step with no trained rollouts logs entropy NaN; a method with only such steps cannot be compared
    spec = claims.SPECS[0]
    blank = metrics.assign(entropy=np.where(metrics["method"] == "grpo_pp", np.nan, metrics["entropy"]))
    rows = claims.level_claim(spec, blank)
    assert [r["verdict"] for r in rows] == ["inconclusive (no interval: not measured)"] * 2
    half = metrics.assign(entropy=np.where(metrics["model"] == "math", np.nan, metrics["entropy"]))
    assert [r["verdict"].split(" (")[0] for r in claims.level_claim(spec, half)] == ["not testable here", "inconclusive"]


def test_results_readme_is_built_from_summaries(tmp_path):
    (tmp_path / "entropy").mkdir()
    claim = {"claim": "FR3E entropy higher", "model": "general", "paper": "Fig. 3", "ours": "0.20 vs 0.10 nats",
             "verdict": "holds (+0.10 [+0.05, +0.15])"}
    (tmp_path / "entropy" / "summary.json").write_text(json.dumps({"claims": [claim]}))
    (tmp_path / "reproduce.json").write_text(json.dumps({"profile": "tiny", "profile_reason": "test",
                                                         "git_sha": "abc", "total_seconds": 61.0}))
    text = results.results_readme(tmp_path)
    assert "## Entropy dynamics (Fig. 3)" in text
    assert "| FR3E entropy higher | general | Fig. 3 | 0.20 vs 0.10 nats | holds (+0.10 [+0.05, +0.15]) |" in text
    assert "total wall time 61 s" in text and "Table 1" not in text


def test_results_readme_keeps_a_control_world_with_its_table_and_commit(tmp_path):
    control = tmp_path / "arithmetic"
    (control / "table1").mkdir(parents=True)
    row = {"model": "general", "system": "FR3E", "easy": "70.1", "medium": "40.2", "hard": "3.0", "avg": "37.8",
           "seeds": 5}
    (control / "table1" / "summary.json").write_text(json.dumps({"table": [row]}))
    (control / "reproduce.json").write_text(json.dumps({"git_sha": "abc123"}))  # written before worlds existed
    (control / "README.md").write_text("# control\n")
    (tmp_path / "reproduce.json").write_text(json.dumps({"profile": "tiny", "profile_reason": "test",
                                                         "git_sha": "def", "world": "paths"}))
    text = results.results_readme(tmp_path)
    assert text.startswith("# Results of the tiny-profile reproduction: the paths world")
    assert "## Control: the arithmetic world" in text and "git `abc123`" in text
    assert "| general | FR3E | 70.1 | 40.2 | 3.0 | 37.8 | 5 |" in text


def test_claims_from_committed_results(tmp_path, final):
    # table1: rebuilt from the stored deltas (the paired intervals), no run directories needed
    table1 = tmp_path / "table1"
    table1.mkdir()
    (table1 / "summary.json").write_text(json.dumps({"deltas": artefacts._jsonable(results.deltas(final))}))
    rows = committed.claims_from_committed(table1)
    assert [r["verdict"] for r in rows] == [r["verdict"] for r in claims.claim_table1(final)]
    # a training-curve artefact: data.csv holds seed means per step, so the verdict cannot be computed
    entropy = tmp_path / "entropy"
    entropy.mkdir()
    (entropy / "summary.json").write_text(json.dumps({"claims": []}))
    data = pd.DataFrame([{"model": "general", "method": m, "step": t, "entropy_mean": v, "entropy_base_mean": v}
                         for m, base in (("fr3e", 0.2), ("grpo_pp", 0.1)) for t, v in ((1, 0.3), (2, 0.3),
                                                                                       (3, base), (4, base))])
    data.to_csv(entropy / "data.csv", index=False)
    rows = committed.claims_from_committed(entropy)
    assert len(rows) == 4 and all(r["verdict"].startswith("inconclusive (") for r in rows)
    assert "probe-set entropy is not in these committed results" in rows[2]["verdict"]  # runs without probe.jsonl
    # last quarter = step 4: FR3E 0.2 vs GRPO++ 0.1; ratio end / start of the mean curve 0.2/0.3 vs 0.1/0.3
    assert rows[0]["ours"].startswith("FR3E 0.200 vs GRPO++ 0.100 nats")
    assert rows[0]["verdict"] == "inconclusive (+0.100, no interval: per-seed values not committed)"
    assert rows[0]["interval"] == "none: " + committed.NOT_COMMITTED
    assert rows[3]["ours"].startswith("FR3E 0.67 vs GRPO++ 0.33")
    assert committed.recompute_committed_claims(tmp_path) == {"table1": 3, "entropy": 4}
    stored = json.loads((entropy / "summary.json").read_text())
    assert stored["claims"][0]["verdict"] == rows[0]["verdict"] and stored["claims"][0]["ci_low"] is None


@pytest.mark.parametrize("folder", ["results", "results/arithmetic"])
def test_committed_readme_verdicts_are_verdicts_and_say_their_role(folder):
    readme = Path(__file__).resolve().parent.parent / folder / "README.md"
    if not readme.exists():
        pytest.skip(f"no committed {folder}/README.md")
    text = readme.read_text()
    header = "| claim | model | paper | ours | verdict | role |"
    assert header in text and "## Primary claims" in text
    rows = [line for block in text.split(header)[1:] for line in block.split("\n\n")[0].splitlines()[2:]]
    cells = [r.rstrip(" |").rsplit(" | ", 2) for r in rows]
    assert rows and all(any(c[1].startswith(v) for v in stats.VERDICTS) for c in cells)
    assert {c[2] for c in cells} <= {claims.PRIMARY, claims.EXPLORATORY} and claims.PRIMARY in {c[2] for c in cells}


# --------------------------------------------------------------------------------- controls and precision
def _study() -> pd.DataFrame:
    """general, one split ("easy"), 3 seeds: GRPO++ .30/.40/.35, FR3E .40/.30/.40, matched GRPO++ .40/.40/.40,
    coin GRPO++ .20/.25 (2 seeds); every run's bootstrap CI is ± 3.92 points (standard error 2 points)."""
    values = {"grpo_pp": (0.30, 0.40, 0.35), "fr3e": (0.40, 0.30, 0.40), "grpo_pp_matched": (0.40, 0.40, 0.40),
              "grpo_pp_coin": (0.20, 0.25)}
    return pd.DataFrame([{"model": "general", "method": "fr3e" if arm == "fr3e" else "grpo_pp", "arm": arm,
                          "seed": s, "benchmark": "easy", "avg": v, "avg_lo": v - 0.0392, "avg_hi": v + 0.0392,
                          "num_problems": 512}
                         for arm, vals in values.items() for s, v in enumerate(vals)])


def test_table1_shows_control_rows_in_order():
    base = pd.DataFrame([{"model": "general", "method": "base", "seed": 0, "benchmark": "easy", "avg": 0.25}])
    table = results.table1(_study(), base)
    assert list(table.index) == [("general", s) for s in ("base", "GRPO++", "GRPO++ (matched rollouts)",
                                                          "GRPO++ (coin reward)", "FR3E")]
    assert table.loc[("general", "GRPO++ (coin reward)"), "avg"] == "22.5 ± 3.5"  # 20, 25
    assert table.loc[("general", "GRPO++ (coin reward)"), "seeds"] == 2
    gains = results.gains_over_base(_study(), base).set_index("arm")
    # coin: 20 − 25 = −5, 25 − 25 = 0 -> −2.5, sd 3.536, half 12.7062 · 2.5 = 31.77
    assert gains.loc["grpo_pp_coin", "gain"] == pytest.approx(-2.5)
    assert gains.loc["grpo_pp_coin", "ci_high"] == pytest.approx(-2.5 + 31.7655, abs=1e-3)
    assert results.seeds_per_arm(_study()) == {"general": {"GRPO++": 3, "FR3E": 3, "GRPO++ (matched rollouts)": 3,
                                                           "GRPO++ (coin reward)": 2}}
    assert results.problems_per_split(_study()) == {"easy": 512}


def test_deltas_against_both_grpo_rows_and_their_verdicts():
    d = results.deltas(_study()).set_index(["baseline", "benchmark"])
    # vs GRPO++: +10, −10, +5 -> +1.67, half 25.86 (see test_claim_table1_interval_contains_zero)
    assert d.loc[("grpo_pp", "avg"), "half_width"] == pytest.approx(25.856, abs=1e-3)
    # vs matched: 0, −10, 0 -> −3.33, s = 5.7735, half 4.3027 · 5.7735 / √3 = 14.34
    assert d.loc[("grpo_pp_matched", "avg"), "delta"] == pytest.approx(-10 / 3)
    assert d.loc[("grpo_pp_matched", "avg"), "half_width"] == pytest.approx(14.3424, abs=1e-3)
    rows = claims.claim_table1(_study())
    assert [r["claim"] for r in rows] == [claims.TABLE1_CLAIM,
                                          "FR3E ≥ GRPO++ (matched rollouts) on avg@n (mean over the splits)"]
    assert rows[1]["verdict"] == "inconclusive (−3.3 [−17.7, +11.0])"
    assert "vs GRPO++ (matched rollouts) 40.0 %" in rows[1]["ours"]


def test_delta_precision_splits_the_noise_and_says_what_halves_it():
    p = results.delta_precision(_study()).set_index("baseline").loc["grpo_pp"]
    # per-seed differences: sd 10.408 (variance 108.33); evaluation: each run's se 2 points -> 4 + 4 = 8 per
    # difference (eval sd 2.83), seeds: √(108.33 − 8) = 10.02 -> the seeds dominate
    assert p["sd"] == pytest.approx(10.4083, abs=1e-4) and p["eval_sd"] == pytest.approx(math.sqrt(8), abs=1e-3)
    assert p["seed_sd"] == pytest.approx(math.sqrt(108.3333 - 8), abs=1e-3) and p["dominant"] == "seeds"
    # half 25.856 -> target 12.928: n = 4 gives 3.1824 · 10.408 / 2 = 16.56, n = 5 gives 2.7764 · 10.408 / √5 = 12.92
    assert p["seeds_to_halve"] == 5 and not p["meets_target"]
    study = results.table1_study(_study())
    assert study["problems_per_split"] == {"easy": 512} and len(study["delta_half_widths"]) == 2


def test_results_readme_shows_the_study_numbers(tmp_path):
    (tmp_path / "table1").mkdir()
    base = pd.DataFrame([{"model": "general", "method": "base", "seed": 0, "benchmark": "easy", "avg": 0.25}])
    summary = {"table": results.table1(_study(), base), "deltas": results.deltas(_study()),
               **results.table1_study(_study(), base)}
    (tmp_path / "table1" / "summary.json").write_text(json.dumps(artefacts._jsonable(summary)))
    text = results.results_readme(tmp_path)
    assert "Problems per split: easy 512." in text
    assert "general: GRPO++ 3, FR3E 3, GRPO++ (matched rollouts) 3, GRPO++ (coin reward) 2" in text
    assert "| general | GRPO++ (coin reward) | −2.5 | [−34.3, +29.3] | 2 |".replace("−", "-") in text
    assert "| general | GRPO++ (matched rollouts) | avg | -3.3 | [-17.7, +11.0] | 14.3 | 3 |" in text
    assert "| general | GRPO++ | 3 | 25.9 | missed (> 2) | 10.4 | 2.8 | 10.0 | seeds | 5 |" in text


def test_primary_claims_are_named_once_per_artefact_and_holm_corrected_in_the_readme(tmp_path):
    assert set(claims.PRIMARY_CLAIMS) == set(claims.ARTEFACTS)  # one per paper artefact
    t1 = dict(claim=claims.TABLE1_CLAIM, paper="", ours="", direction=1, interval="95% paired t-interval over 5 seeds")
    rows = [dict(t1, model="general", estimate=2.0, ci_low=0.2, ci_high=3.8),  # t = 2 / (1.8 / 2.7764) = 3.085
            dict(t1, model="math", estimate=1.0, ci_low=-0.4, ci_high=2.4),
            dict(t1, claim=claims.TABLE1_CLAIM.replace("GRPO++", "GRPO++ (matched rollouts)"), model="general",
                 estimate=5.0, ci_low=4.0, ci_high=6.0)]  # exploratory: another baseline
    length = dict(claim=claims.PRIMARY_CLAIMS["length"], model="general", paper="", ours="", estimate=0.0, ci_low=0.0,
                  ci_high=0.0, direction=1, interval="95% paired t-interval over 5 seeds")
    family = claims.holm_family(rows + [length])
    assert [r["model"] for r in family] == ["general", "math", "general"]
    p_general = stats.t_two_sided_p(2.0 / (1.8 / stats.t_quantile_975(4)), 4)
    assert family[0]["p_value"] == pytest.approx(p_general)
    # three primary p-values: general ~0.037, math ~0.16, length 1.0 -> Holm multiplies the smallest by 3
    assert family[0]["p_holm"] == pytest.approx(min(1.0, 3 * p_general))
    assert family[0]["p_holm"] > 0.05 and family[0]["verdict_holm"] == stats.INCONCLUSIVE  # holds alone, not after
    assert family[2]["verdict_holm"] == stats.NOT_TESTABLE
    assert claims.claim_role(rows[2]["claim"]) == claims.EXPLORATORY
    for name, claim_rows in (("table1", rows), ("length", [length])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps({"claims": claim_rows}))
    text = results.results_readme(tmp_path)
    assert "## Primary claims" in text and "3 tests, Holm-corrected together" in text
    assert "Every other verdict in this file is exploratory: 1 of them" in text
    assert "| table1 | FR3E ≥ GRPO++ on avg@n (mean over the splits) | general | +2 [+0.2, +3.8] |" in text


def test_probe_claim_reads_the_change_from_the_first_probe():
    spec = next(s for s in claims.SPECS if s.kind == "probe")
    assert claims.PRIMARY_CLAIMS["entropy"] == spec.claim
    rows = []
    for seed, (f_end, g_end) in enumerate([(0.9, 0.5), (0.8, 0.5), (0.85, 0.45)]):
        for method, end in (("fr3e", f_end), ("grpo_pp", g_end)):
            # both start at 1.0 + seed / 10 (one population, one base model); the level differs by seed only
            rows += [dict(model="general", method=method, arm=method, seed=seed, run=f"{method}-{seed}", step=0,
                          entropy=1.0 + seed / 10), dict(model="general", method=method, arm=method, seed=seed,
                          run=f"{method}-{seed}", step=4, entropy=end + seed / 10)]
    table = claims.claims_table(probe=pd.DataFrame(rows), artefacts=["entropy"], details=True)
    row = table[table["claim"] == spec.claim].iloc[0]
    # changes FR3E −0.1, −0.2, −0.15; GRPO++ −0.5, −0.5, −0.55 -> differences +0.4, +0.3, +0.4: mean 0.3667
    assert row["estimate"] == pytest.approx(0.3667, abs=1e-4) and row["verdict"].startswith("holds")
    assert row["n"] == 3 and row["role"] == claims.PRIMARY
    # without probe data the claim is left out, not failed
    assert spec.claim not in set(claims.claims_table(metrics=None, artefacts=["entropy"])["claim"])


def _fake_run(root: Path, method: str, seed: int) -> Path:
    """A run directory with the files the loaders read: 8 steps of entropy, a probe and a final evaluation."""
    d = root / "tiny-paths" / f"{method}-general-s{seed}-8-abc"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"method": method, "name": d.name, "seed": seed, "steps": 8,
                                               "model": {"base": "general"}, "profile": "tiny"}))
    (d / "env.json").write_text("{}")
    lift = 0.05 * seed + (0.1 if method == "fr3e" else 0.0)
    (d / "metrics.jsonl").write_text("".join(json.dumps({"step": t, "entropy": 0.7 - 0.03 * t + lift,
                                                         "entropy_base": 0.6 - 0.02 * t + lift}) + "\n"
                                             for t in range(1, 9)))
    (d / "probe.jsonl").write_text("".join(json.dumps({"step": t, "entropy": 0.8 - 0.05 * t + lift}) + "\n"
                                           for t in (0, 4, 8)))
    (d / "eval.jsonl").write_text("".join(json.dumps({"step": 8, "benchmark": b, "n": 16, "avg": 0.3 + lift + 0.01 * i,
                                                      "avg_ci": [0.2, 0.5], "pass": {"16": 0.8}, "greedy": 0.4,
                                                      "num_problems": 60}) + "\n"
                                          for i, b in enumerate(("easy", "medium", "hard"))))
    return d


def test_archived_run_logs_recompute_the_verdicts_exactly(tmp_path):
    from fr3e.study.reproduction import archive_artefact_runs

    dirs = [_fake_run(tmp_path / "runs", m, s) for m in ("grpo_pp", "fr3e") for s in range(3)]
    results_dir = tmp_path / "results"
    for artefact in ("table1", "entropy"):
        (results_dir / artefact).mkdir(parents=True)
        (results_dir / artefact / "summary.json").write_text(json.dumps({"claims": []}))
        (results_dir / artefact / "provenance.json").write_text(json.dumps({"run_dirs": [str(d) for d in dirs]}))
    archived = archive_artefact_runs(results_dir, ["table1", "entropy"])
    assert len(archived) == 6 and (archived[0] / "metrics.jsonl.gz").exists()
    assert not (archived[0] / "metrics.jsonl").exists() and (archived[0] / "probe.jsonl").exists()
    live = claims.claims_table(loaders.load_metrics(dirs), loaders.load_final_evals(dirs), artefacts=["entropy"],
                               probe=loaders.load_probe(dirs), details=True).to_dict("records")
    assert committed.claims_from_committed(results_dir / "entropy") == live
    assert committed.claims_from_committed(results_dir / "table1") == claims.claim_table1(loaders.load_final_evals(dirs))
    assert any(r["ci_low"] == r["ci_low"] for r in live)  # intervals, not the "not committed" rows
    # a run whose archive is missing: back to the committed summary (no interval), never a silent partial set
    shutil.rmtree(archived[0])
    assert committed.committed_runs(results_dir / "entropy") is None


def test_committed_verdicts_recompute_from_the_committed_run_logs():
    """Every committed artefact whose runs are archived in results/runs/ gives the same verdicts when recomputed
    from those logs alone (seconds, no training)."""
    root = Path(__file__).resolve().parent.parent / "results"
    checked = 0
    for name in ("table1", "entropy", "length", "advantage", "all_right"):
        folder = root / name
        if not (folder / "summary.json").exists() or committed.committed_runs(folder) is None:
            continue
        stored = json.loads((folder / "summary.json").read_text())["claims"]
        again = committed.claims_from_committed(folder)
        assert [(r["claim"], r["model"], r["verdict"]) for r in again] == \
            [(r["claim"], r["model"], r["verdict"]) for r in stored], name
        checked += 1
    if not checked:
        pytest.skip("no committed results with archived run logs")


def test_committed_table1_runs_carry_each_problems_correct_count():
    """The committed Table 1 runs' final evaluations hold one correct count per problem, in the evaluation set's
    order, and they give back every avg@n cell: a paired per-problem comparison needs nothing but the repository."""
    import numpy as np

    from fr3e.study.loaders import load_final_evals, load_problem_counts

    root = Path(__file__).resolve().parent.parent / "results"
    runs = committed.committed_runs(root / "table1")
    assert runs, "results/table1 names no archived run"
    counts = load_problem_counts(runs)
    final = load_final_evals(runs)
    assert set(counts["run"]) == set(final["run"]) == {Path(r).name for r in runs}
    for row in final.itertuples():
        mine = counts[(counts["run"] == row.run) & (counts["benchmark"] == row.benchmark)]
        assert len(mine) == row.num_problems
        assert np.isclose(mine["correct"].sum() / (row.n * row.num_problems), row.avg)
    # paired: the same problems, in the same order, for every run of a split
    sizes = counts.groupby(["run", "benchmark"])["problem"].max().unstack()
    assert (sizes.nunique() == 1).all()
