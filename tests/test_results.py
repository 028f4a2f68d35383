"""fr3e.results: loaders on fabricated run directories, aggregations with hand-computed expectations.

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
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from fr3e import results  # noqa: E402

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
def test_t_quantile_and_paired_interval():
    assert results.t_quantile_975(2) == pytest.approx(4.3027, abs=1e-4)
    assert 1.96 < results.t_quantile_975(1000) < results.t_quantile_975(120)
    assert results.t_quantile_975(22) == pytest.approx(2.0739, abs=2e-3)  # interpolated; exact 2.0739
    # diffs 1, 2, 3: mean 2, sd 1, se 1/sqrt(3) = 0.57735, half = 4.3027 * 0.57735 = 2.4842
    m, lo, hi = results.paired_t_interval([1.0, 2.0, 3.0])
    assert (m, lo, hi) == pytest.approx((2.0, -0.4842, 4.4842), abs=1e-3)
    m, lo, hi = results.paired_t_interval([5.0])
    assert m == 5.0 and math.isnan(lo) and math.isnan(hi)


def test_mean_std_and_format():
    # 40, 50, 60: mean 50, sample std sqrt((100 + 0 + 100) / 2) = 10
    assert results.mean_std([40, 50, 60]) == (50.0, 10.0, 3)
    assert results.fmt_mean_std(50.0, 10.0) == "50.0 ± 10.0"
    assert results.fmt_mean_std(41.25, float("nan")) == "41.2"  # one seed: no ±
    assert results.fmt_mean_std(float("nan"), float("nan")) == "–"


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
def test_claims_table_rows_and_verdicts(metrics, final):
    claims = results.claims_table(metrics, final)
    assert list(claims.columns) == ["claim", "paper", "ours", "holds?"]
    by = dict(zip(claims["claim"], claims["holds?"]))
    assert by["FR3E ≥ GRPO++ avg (avg@n over the splits)"] == "yes"
    assert by["FR3E's gain smaller on the math-specialised base model"] == "yes"  # +5.0 vs +3.3
    # end-of-training entropy: general FR3E 0.705 > 0.405, math FR3E 0.305 < 0.405 -> partly
    assert by["FR3E entropy higher than GRPO++ at the end of training (trained tokens)"] == "partly (1/2 models)"
    assert by["FR3E advantages more tightly centred (smaller std)"] == "yes"  # 0.3 < 0.5
    assert by["FR3E raises All-Right share and lowers All-Wrong share (more than GRPO++)"] == "yes"
    assert by["FR3E responses longer than GRPO++ (trained rollouts, prefix + continuation)"] == "yes"  # 33 > 24


def test_claim_table1_reports_ci_and_flags_zero():
    rows = []
    for seed, (g, f) in enumerate([(0.30, 0.40), (0.40, 0.30), (0.35, 0.40)]):
        for method, v in (("grpo_pp", g), ("fr3e", f)):
            rows += [{"model": "general", "method": method, "seed": seed, "benchmark": b, "avg": v}
                     for b in ("easy", "medium", "hard")]
    claim = results.claim_table1(pd.DataFrame(rows))[0]
    # per-seed diffs +10, -10, +5 -> mean +1.7, CI includes 0
    assert claim["ours"].startswith("general: +1.7 [")
    assert claim["holds?"] == "yes (CI includes 0)"


def test_composition_claim_hand_computed(metrics):
    shares = results.composition_shares(metrics)
    first = shares[(shares["run"] == "fr3e-general-s0-4") & (shares["step"] == 1)].iloc[0]
    assert (first["all_right"], first["all_wrong"], first["mixed"]) == pytest.approx((0.25, 0.5, 0.25))
    # FR3E All-Right 2/8 -> 5/8 (+37.5 pts) vs GRPO++ 2/8 -> 3/8 (+12.5)
    row = results.claim_composition(metrics)[0]
    assert "All-Right +38 vs +12 pts" in row["ours"] and row["holds?"] == "yes"


def test_claim_verdict_when_reversed(metrics):
    swapped = metrics.assign(method=metrics["method"].map({"fr3e": "grpo_pp", "grpo_pp": "fr3e"}))
    assert results.claim_advantage(swapped)[0]["holds?"] == "no"


def test_eval_claims_missing_columns_say_so(final):
    rows = results.claim_eval_length(final.drop(columns=["mean_response_tokens"]))
    assert rows[0]["holds?"] == "n/a" and "not logged" in rows[0]["ours"]


def test_walkthrough_claims_on_fixture_sample():
    sample = results.first_sample(FIXTURE / "fr3e-general-s0-4")
    rows = results.claims_table(sample=sample, artefacts=["walkthrough"])
    assert rows["holds?"].tolist() == ["yes", "yes"]
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
    with caplog.at_level(logging.INFO, logger="fr3e.results"):
        runs = results.ensure_runs(recipes, ["general", "math"], [0, 1], steps=3, runs_root=tmp_path / "runs",
                                   launcher=fake_train)
    assert len(runs) == 8 and len(calls) == 8
    assert [r.method for r in runs[:4]] == ["grpo_pp"] * 4
    assert runs[0].run_dir == tmp_path / "runs" / "tiny" / "grpo_pp-general-s0-3"
    assert calls[0][:5] == ("grpo_pp", "general", 0, 3, "grpo_pp-general-s0-3")
    assert "run 8/8 fr3e-math-s1-3: training" in caplog.text
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
    assert cmd[cmd.index("-m", 2) + 1] == "fr3e.train"
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
    blank = metrics.assign(entropy=np.where(metrics["method"] == "grpo_pp", np.nan, metrics["entropy"]))
    assert results.claim_entropy(blank)[0]["holds?"] == "n/a (not measured)"
    half = metrics.assign(entropy=np.where(metrics["model"] == "math", np.nan, metrics["entropy"]))
    assert results.claim_entropy(half)[0]["holds?"] == "yes (not measured: math)"


def test_results_readme_is_built_from_summaries(tmp_path):
    import json as _json

    from fr3e.results import results_readme

    (tmp_path / "entropy").mkdir()
    claim = {"claim": "FR3E entropy higher", "paper": "Fig. 3", "ours": "0.20 vs 0.10 nats", "holds?": "yes"}
    (tmp_path / "entropy" / "summary.json").write_text(_json.dumps({"claims": [claim]}))
    (tmp_path / "reproduce.json").write_text(_json.dumps({"profile": "tiny", "profile_reason": "test",
                                                          "git_sha": "abc", "total_seconds": 61.0}))
    text = results_readme(tmp_path)
    assert "## Entropy dynamics (Fig. 3)" in text and "| FR3E entropy higher | Fig. 3 | 0.20 vs 0.10 nats | yes |" in text
    assert "total wall time 61 s" in text and "Table 1" not in text
