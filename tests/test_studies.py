"""Compute and ablation studies (fr3e.study.studies): curves, interpolation, paired comparisons at
equal x, cost and plans, with the arithmetic done by hand in the comments."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from fr3e.study import costs, curves, jobs, launch, loaders, runs, studies
from fr3e.training.config import TrainConfig


# ------------------------------------------------------------------------------------------ interpolation
def test_interpolate_is_piecewise_linear_and_never_extrapolates():
    x, y = [0, 10, 20], [0, 5, 15]
    # 5 is halfway 0 -> 10: 2.5; 15 is halfway 10 -> 20: (5 + 15) / 2 = 10
    np.testing.assert_allclose(curves.interpolate(x, y, [5, 15, 0, 20]), [2.5, 10.0, 0.0, 15.0])
    assert np.isnan(curves.interpolate(x, y, 25)) and np.isnan(curves.interpolate(x, y, -1))


def test_interpolate_repeated_x_keeps_the_last_point():
    # x = 10 twice (a step that generated nothing): keep y = 6; at 15: 6 + (16 - 6) / 2 = 11
    np.testing.assert_allclose(curves.interpolate([0, 10, 10, 20], [0, 4, 6, 16], [10, 15]), [6.0, 11.0])


def test_interpolate_rejects_decreasing_x():
    with pytest.raises(ValueError, match="non-decreasing"):
        curves.interpolate([0, 5, 3], [1, 2, 3], 1)


# ----------------------------------------------------------------------------------------------- curves
def _metrics(arm: str, seed: int, gen: list, prefill: list, seconds: list, model: str = "general") -> pd.DataFrame:
    n = len(gen)
    return pd.DataFrame({"model": model, "arm": arm, "method": arm.split("_")[0] if arm.startswith("fr3e") else
                         "grpo_pp", "seed": seed, "run": f"{arm}-{model}-s{seed}", "step": range(1, n + 1),
                         "gen_tokens": gen, "prefill_tokens": prefill, "time_step": seconds})


def test_cumulative_costs_start_at_zero_and_sum_each_step():
    m = _metrics("fr3e", 0, [10, 20], [5, 5], [1.0, 2.0])
    c = curves.cumulative_costs(m)
    assert c["step"].tolist() == [0, 1, 2]
    assert c["gen_tokens"].tolist() == [0, 10, 30]  # 10, 10 + 20
    assert c["gen_prefill_tokens"].tolist() == [0, 15, 40]  # (10 + 5), + (20 + 5)
    assert c["train_seconds"].tolist() == [0.0, 1.0, 3.0]


def test_curves_join_evaluations_with_costs_and_put_the_base_model_at_zero():
    m = _metrics("fr3e", 0, [10, 20], [5, 5], [1.0, 2.0])
    evals = pd.DataFrame({"model": "general", "arm": "fr3e", "seed": 0, "run": "fr3e-general-s0",
                          "step": [2, 2], "benchmark": ["easy", "hard"], "avg": [0.5, 0.1]})
    base = pd.DataFrame({"model": "general", "benchmark": ["easy", "hard"], "avg": [0.4, 0.0]})
    c = curves.curves(m, evals, base)
    assert c["step"].tolist() == [0, 2]
    np.testing.assert_allclose(c["acc"], [20.0, 30.0])  # base (40 + 0) / 2; step 2 (50 + 10) / 2
    assert c["gen_tokens"].tolist() == [0, 30] and c["train_seconds"].tolist() == [0.0, 3.0]


def _curve(arm, seed, xs, accs, model="general"):
    return pd.DataFrame({"model": model, "arm": arm, "seed": seed, "run": f"{arm}-s{seed}", "step": range(len(xs)),
                         "acc": accs, "gen_tokens": xs})


def test_paired_at_equal_x_interpolates_each_seed_at_the_largest_common_x():
    c = pd.concat([_curve("fr3e", 0, [0, 100, 200], [10, 20, 30]), _curve("fr3e", 1, [0, 100, 200], [10, 30, 40]),
                   _curve("grpo_pp", 0, [0, 50, 150], [10, 15, 25]), _curve("grpo_pp", 1, [0, 50, 120], [10, 20, 22])])
    r = curves.paired_at_equal_x(c, "gen_tokens", "fr3e", "grpo_pp").iloc[0]
    # common x = min(200, 200, 150, 120) = 120. FR3E: 20 + 0.2·10 = 22 and 30 + 0.2·10 = 32; GRPO++: 15 + 0.7·10 = 22
    # and 22 (its last point). Differences 0 and 10: mean 5, sd √50 = 7.0711, t(1) = 12.7062,
    # half-width 12.7062 · 7.0711 / √2 = 63.531.
    assert r["at"] == 120 and r["seeds"] == 2 and r["wins"] == 1
    assert r["arm_acc"] == pytest.approx(27.0) and r["baseline_acc"] == pytest.approx(22.0)
    assert r["delta"] == pytest.approx(5.0)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((5 - 63.531, 5 + 63.531), abs=1e-3)


def test_paired_at_equal_x_at_a_given_x_leaves_out_seeds_that_do_not_reach_it():
    c = pd.concat([_curve("fr3e", 0, [0, 100], [10, 20]), _curve("fr3e", 1, [0, 300], [10, 40]),
                   _curve("grpo_pp", 0, [0, 300], [10, 13]), _curve("grpo_pp", 1, [0, 300], [10, 16])])
    r = curves.paired_at_equal_x(c, "gen_tokens", "fr3e", "grpo_pp", at=150).iloc[0]
    # seed 0 of FR3E stops at 100 < 150: only seed 1 is paired: FR3E 10 + 0.5·30 = 25, GRPO++ 10 + 0.5·6 = 13
    assert r["seeds"] == 1 and r["delta"] == pytest.approx(12.0) and math.isnan(r["ci_low"])


def test_compare_paired_and_the_verdict_from_its_interval():
    # differences 1, 2, 3: mean 2, sd 1, t(2) = 4.3027, half-width 4.3027 / √3 = 2.4842 -> contains 0
    r = curves.compare_paired("general", "step", 100, "fr3e", "grpo_pp", {0: 11, 1: 12, 2: 13}, {0: 10, 1: 10, 2: 10})
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((2 - 2.4842, 2 + 2.4842), abs=1e-4)
    rows = studies.verdict_rows(pd.DataFrame([r]), "{arm} ≥ {baseline} at equal {x}", "paper")
    assert rows[0]["verdict"].startswith("inconclusive (+2.0 [")
    assert rows[0]["claim"] == "FR3E ≥ GRPO++ at equal training steps"
    # differences 2, 3, 4: low 3 − 2.4842 = +0.52 > 0 -> holds; the same numbers with the claim reversed: contradicted
    r = curves.compare_paired("general", "step", 100, "fr3e", "grpo_pp", {0: 12, 1: 13, 2: 14}, {0: 10, 1: 10, 2: 10})
    assert studies.verdict_rows(pd.DataFrame([r]), "c", "p")[0]["verdict"] == "holds (+3.0 [+0.5, +5.5])"
    assert studies.verdict_rows(pd.DataFrame([r]), "c", "p", direction=-1)[0]["verdict"].startswith("contradicted")
    assert curves.compare_paired("general", "step", 1, "a", "b", {0: 1.0}, {1: 2.0}) is None  # no common seed


def test_paired_final_pairs_the_final_evaluations_by_seed():
    final = pd.DataFrame({"model": "general", "arm": ["fr3e"] * 4 + ["grpo_pp"] * 4, "seed": [0, 0, 1, 1] * 2,
                          "run": ["f0", "f0", "f1", "f1", "g0", "g0", "g1", "g1"], "step": 100,
                          "benchmark": ["easy", "hard"] * 4, "avg": [0.6, 0.2, 0.5, 0.1, 0.5, 0.1, 0.5, 0.1]})
    r = curves.paired_final(final, "fr3e", "grpo_pp").iloc[0]
    # seed 0: FR3E 40, GRPO++ 30 -> +10; seed 1: 30 vs 30 -> 0; mean +5
    assert r["x"] == "step" and r["at"] == 100 and r["delta"] == pytest.approx(5.0) and r["seeds"] == 2


def test_mean_curve_stops_at_the_largest_x_every_seed_reaches():
    c = pd.concat([_curve("fr3e", 0, [0, 10], [0, 10]), _curve("fr3e", 1, [0, 20], [0, 40])])
    m = curves.mean_curve(c, "gen_tokens", points=3)  # grid 0, 5, 10: seed 0 ends at 10
    # at 5: seed 0 gives 5, seed 1 gives 10 -> 7.5; at 10: 10 and 20 -> 15; every point averages both seeds
    assert m["x"].tolist() == pytest.approx([0.0, 5.0, 10.0])
    assert m["mean"].tolist() == pytest.approx([0.0, 7.5, 15.0]) and m["seeds"].tolist() == [2, 2, 2]
    assert m["std"].iloc[2] == pytest.approx(np.std([10.0, 20.0], ddof=1))


# ------------------------------------------------------------------------------------------------- cost
def test_phase_seconds_mean_per_step_then_over_seeds():
    m = pd.concat([_metrics("fr3e", 0, [1, 1], [0, 0], [3.0, 5.0]), _metrics("fr3e", 1, [1, 1], [0, 0], [6.0, 6.0])])
    m["time_generate"] = [1.0, 3.0, 2.0, 2.0]
    out = costs.phase_seconds(m).iloc[0]
    # seed 0: generate (1 + 3) / 2 = 2, step 4; seed 1: 2 and 6 -> means 2 and 5
    assert out["time_generate"] == pytest.approx(2.0) and out["time_step"] == pytest.approx(5.0) and out["seeds"] == 2


def test_prefill_split_uses_the_steps_where_it_is_known():
    m = _metrics("fr3e", 0, [10, 10, 10], [100, 100, 100], [1.0, 1.0, 1.0])
    m["prefill_computed_tokens"] = [20, None, 30]
    m["prefill_cached_tokens"] = [80, None, 70]
    r = costs.prefill_split(m).iloc[0]
    # known steps 1 and 3: computed (20 + 30) / 2 = 25, cached 75, share 75 / 100
    assert r["prefill_computed_tokens"] == 25 and r["cached_share"] == pytest.approx(0.75) and r["steps_measured"] == 2


def test_estimate_seconds_adds_training_evaluations_and_warm_starts():
    unit = costs.Costs(grpo_step_s=0.5, relative=(("grpo_pp", 1.0), ("fr3e", 3.5)), eval_problem_s=0.05,
                       warm_start_s=250.0, startup_s=5.0)
    est = costs.estimate_seconds([("grpo_pp", 100), ("fr3e", 100)], eval_every=20, curve_problems=64,
                                   final_problems=512, warm_starts=1, workers=2, costs=unit)
    # training 100·0.5 + 5 + 100·0.5·3.5 + 5 = 235; curve points 5 + 5 (step 100 is one of them) × 64 × 0.05
    # = 32; final 2 × 512 × 0.05 = 51.2; warm start 250; total 568.2 core-seconds, 284.1 s on 2 workers
    assert est["train_s"] == pytest.approx(235.0) and est["curve_eval_s"] == pytest.approx(32.0)
    assert est["final_eval_s"] == pytest.approx(51.2) and est["core_s"] == pytest.approx(568.2)
    assert est["wall_s"] == pytest.approx(284.1)
    # 50 steps every 20: points at 20, 40 and the final 50 = 3
    assert costs.estimate_seconds([("fr3e", 50)], 20, 10, 0, 0, 1, unit)["curve_eval_s"] == pytest.approx(3 * 10 * 0.05)


def test_full_study_parameters_fit_the_hour_by_the_measured_costs():
    from fr3e.study import reproduction as reproduce

    p = reproduce.STUDY_PARAMETERS
    arms = ["grpo_pp", "fr3e", "grpo_pp_matched", "fr3e_adaptive"]
    compute = costs.estimate_seconds(studies.plan(arms, ["general", "math"], p["study_seeds"], p["study_steps"]),
                                       p["eval_every"], p["curve_problems"], p["final_problems"], 2, 2)
    defaults = studies.recipe_defaults(runs.recipes("tiny")["fr3e"])
    ablation_arms = ["fr3e"] + [c.arm for c in studies.ablation_controls(defaults)]
    ablations = costs.estimate_seconds(
        studies.plan(ablation_arms, p["ablation_models"], p["study_seeds"], p["ablation_steps"]),
        p["ablation_eval_every"], p["curve_problems"], p["final_problems"], 1, 2, studies.ablation_costs(defaults))
    assert compute["wall_s"] < 3600 and ablations["wall_s"] < 3600, (compute["wall_s"], ablations["wall_s"])


def test_fr3e_relative_cost_scales_with_states_times_continuations():
    assert costs.fr3e_relative_cost(2, 8, base_cost=3.5) == pytest.approx(3.5)
    # K = 1: (1 + 2) · 8 / ((1 + 4) · 8) = 0.6 of the continuations: 3.5 · (0.15 + 0.85 · 0.6) = 2.31
    assert costs.fr3e_relative_cost(1, 8, base_cost=3.5) == pytest.approx(2.31)


# -------------------------------------------------------------------------------------------------- arms
def test_ablation_arms_skip_the_recipe_value():
    defaults = studies.recipe_defaults(runs.recipes("tiny")["fr3e"])
    assert defaults == {"fr3e.num_anchors": 2, "fr3e.continuations_per_state": 8, "fr3e.scorer": "entropy",
                        "fr3e.modulation": "paper"}
    arms = [c.arm for c in studies.ablation_controls(defaults)]
    assert arms == ["fr3e_k_1", "fr3e_k_4", "fr3e_m_4", "fr3e_m_16", "fr3e_scorer_surprisal", "fr3e_scorer_random",
                    "fr3e_scorer_newline", "fr3e_modulation_official", "fr3e_modulation_none"]
    assert all(runs.arm_of(runs.run_name("fr3e", "general", 0, 50, c.overrides, arm=c.arm), "fr3e") == c.arm
               for c in studies.ablation_controls(defaults))
    # a factor `values` does not name keeps the recipe's value (the smoke parameters try two factors)
    assert [c.arm for c in studies.ablation_controls(defaults, values={"K": [1, 2], "scorer": ["random"]})] \
        == ["fr3e_k_1", "fr3e_scorer_random"]


def test_factor_values_are_accepted_by_the_config():
    from fr3e.training.config import MODULATIONS, SCORERS

    by_name = {f.name: f for f in studies.FACTORS}
    assert set(by_name["scorer"].values) == set(SCORERS) and set(by_name["modulation"].values) == set(MODULATIONS)


def test_compute_controls_add_the_adaptive_arm_when_asked():
    assert [c.arm for c in studies.compute_controls(adaptive=False)] == ["grpo_pp_matched"]
    assert [c.arm for c in studies.compute_controls(adaptive=True)] == ["grpo_pp_matched", "fr3e_adaptive"]
    assert studies.ADAPTIVE.overrides == ("fr3e.adaptive_budget=true",)
    # a tiny world adds the two fixes for entropy collapse, the bonus with that world's target
    arms = studies.compute_controls(adaptive=True, world="paths")
    assert [c.arm for c in arms] == ["grpo_pp_matched", "grpo_pp_entbonus", "grpo_pp_top20", "fr3e_adaptive"]
    assert arms[1].overrides_for("general") == ("optim.adaptive_entropy=true", "optim.entropy_target=0.7")
    assert arms[1].overrides_for("math") == ("optim.adaptive_entropy=true", "optim.entropy_target=0.6")
    assert arms[2].overrides == ("optim.top_entropy_quantile=0.2",) and arms[1].method == arms[2].method == "grpo_pp"
    assert {"grpo_pp_entbonus", "grpo_pp_top20"} <= set(studies.labels())


def test_entropy_bonus_targets_each_base_models_own_early_entropy(tmp_path):
    """Each base model's runs of an arm carry that model's overrides (the bonus: a target above a model's early
    entropy raises its entropy from step 1); runs keep the names they had when the overrides were shared."""
    from fr3e.study.jobs import plan_jobs
    from fr3e.study.runs import Control, recipes, run_name

    bonus = studies.entropy_bonus("paths")
    assert bonus.matched_to == "fr3e" and studies.TOP_ENTROPY.matched_to == "fr3e"  # equal tokens at every step
    targets = studies.ENTROPY_TARGETS["paths"]
    assert targets["math"] < targets["general"]
    arm = Control("grpo_pp_x", "grpo_pp", "x", bonus.overrides, per_model=bonus.per_model)
    jobs = plan_jobs(recipes("tiny"), ["general", "math"], [0], 2, tmp_path, ["data.world=paths"], controls=[arm],
                     warm_starts=False)
    runs = {j.model: j for j in jobs if j.kind == "run" and j.info.arm == "grpo_pp_x"}
    assert "optim.entropy_target=0.7" in runs["general"].overrides
    assert "optim.entropy_target=0.6" in runs["math"].overrides
    shared = run_name("grpo_pp", "general", 0, 2, ["data.world=paths", "optim.adaptive_entropy=true",
                                                   "optim.entropy_target=0.7"], arm="grpo_pp_x")
    assert runs["general"].info.run_dir.name == shared


def test_studies_refuse_the_paper_profile():
    with pytest.raises(ValueError, match="tiny profile only"):
        studies.compute_runs(["general"], [0], profile="paper")


def test_ablation_table_and_claims_compare_each_value_with_the_recipe():
    defaults = {f.key: v for f, v in zip(studies.FACTORS, (2, 8, "entropy", "paper"))}
    k = studies.FACTORS[0]
    final = pd.DataFrame({"model": "general", "arm": ["fr3e"] * 3 + ["fr3e_k_1"] * 3, "seed": [0, 1, 2] * 2,
                          "run": [f"r{i}" for i in range(6)], "step": 50, "benchmark": "easy",
                          "avg": [0.5, 0.6, 0.7, 0.4, 0.5, 0.6]})
    c = pd.concat([_curve("fr3e", s, [0, 100], [0, 50 + 10 * s]) for s in range(3)]
                  + [_curve("fr3e_k_1", s, [0, 50], [0, 20 + 10 * s]) for s in range(3)])
    metrics = pd.DataFrame({"arm": ["fr3e", "fr3e_k_1"], "seed": 0, "gen_tokens": [100.0, 50.0]})
    table = studies.ablation_table(final, c, metrics, k, defaults, warmup_steps=0)
    assert table["value"].tolist() == [1, 2] and table["recipe"].tolist() == [False, True]
    one = table.iloc[0]
    # equal steps: 50/60/70 vs 40/50/60 -> +10 each seed, sd 0 -> interval [10, 10]
    assert one["delta_steps"] == pytest.approx(10.0) and one["ci_low_steps"] == pytest.approx(10.0)
    # equal tokens at 50 (K=1's last point): the recipe's seed s halfway to 50 + 10s -> 25 + 5s; K=1 20 + 10s;
    # differences 5, 0, −5 -> mean 0
    assert one["at_tokens"] == 50 and one["delta_tokens"] == pytest.approx(0.0)
    assert one["gen_tokens_per_step"] == 50.0
    claims = studies.ablation_claims(final, c, k, defaults, warmup_steps=0)
    assert [r["verdict"].split(" (")[0] for r in claims] == ["not testable here", "inconclusive"]  # sd 0: no width
    # the same comparison with the recipes' 20-step warm-up: the equal-token read (steps < 3 here) is not testable
    late = studies.ablation_claims(final, c, k, defaults)
    assert [r["verdict"].split(" (")[0] for r in late] == ["not testable here", "not testable here"]
    assert claims[0]["claim"] == "K=2 (recipe) ≥ K=1, at equal training steps"


# ------------------------------------------------------------------------------------- final evaluations
def _run_dir(tmp_path, name="fr3e-general-s0-4", done=True):
    d = tmp_path / name
    d.mkdir()
    config = TrainConfig(name=name, steps=4).to_dict()
    (d / "config.json").write_text(json.dumps(config))
    if done:
        (d / "DONE").write_text("{}")
    return d


def test_final_eval_writes_rows_with_the_runs_settings_and_the_loader_reads_them(tmp_path):
    d = _run_dir(tmp_path)
    seen = {}

    def fake(model, **kw):
        seen.update(kw, model=model)
        n = kw["n"]
        return {"config": {"n": n}, "benchmarks": {
            b: {f"avg@{n}": 0.25, "ci": {f"avg@{n}": [0.2, 0.3]}, f"pass@{n}": 0.5, "num_problems": kw["num_problems"]}
            for b in kw["benchmarks"]}}

    path = loaders.final_eval(d, 32, evaluator=fake)
    assert path == d / "final_eval-p32.json" and seen["num_problems"] == 32 and seen["model"] == d / "model"
    df = loaders.load_final_eval([d], 32)
    assert set(df["benchmark"]) == {"easy", "medium", "hard"} and (df["step"] == 4).all() and (df["arm"] == "fr3e").all()


def test_final_eval_refuses_an_unfinished_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="DONE"):
        loaders.final_eval(_run_dir(tmp_path, done=False), 8)


def test_plan_adds_one_final_evaluation_per_run_after_it(tmp_path):
    planned = jobs.plan_jobs(runs.recipes("tiny"), ["general"], [0, 1], 4, tmp_path, [], ["matched"],
                             tmp_path / "cache", warm_starts=False, final_eval_problems=64)
    evals = [j for j in planned if j.kind == "eval"]
    assert sorted(j.key for j in evals) == sorted(f"eval-{a}-general-s{s}" for a in ("grpo_pp", "fr3e",
                                                                                      "grpo_pp_matched")
                                                  for s in (0, 1))
    matched = next(j for j in evals if j.key == "eval-grpo_pp_matched-general-s0")
    assert matched.deps == ["grpo_pp_matched-general-s0"] and matched.info is None and matched.resolve is not None
    assert not any(j.kind == "eval" for j in jobs.plan_jobs(runs.recipes("tiny"), ["general"], [0], 4, tmp_path, [],
                                                            (), tmp_path / "cache", warm_starts=False))


def test_progress_line_counts_final_evaluations():
    status = {"jobs": {"a": {"kind": "run", "state": "done", "steps": 4, "steps_done": 4},
                       "eval-a": {"kind": "eval", "state": "done"}, "eval-b": {"kind": "eval", "state": "pending"}}}
    assert "final evaluations 1/2 done" in launch.progress_line(status, 0.0)


# ------------------------------------------------------------------------------------------------ figures
def test_study_figures_have_a_panel_per_axis_model_and_factor():
    import matplotlib

    matplotlib.use("Agg")
    from fr3e.study import plots

    c = pd.concat([_curve("fr3e", s, [0, 100], [10, 20 + s]) for s in range(2)]
                  + [_curve("grpo_pp", s, [0, 50], [10, 15]) for s in range(2)])
    c["train_seconds"] = c["gen_tokens"] / 10
    mc = {x: curves.mean_curve(c, x, points=5) for x in ("gen_tokens", "train_seconds")}
    comp = curves.paired_at_equal_x(c, "gen_tokens", "fr3e", "grpo_pp")
    fig = plots.plot_compute_curves(mc, comp)
    assert len(fig.axes) == 2 and any(line.get_linestyle() == ":" for line in fig.axes[0].lines)
    phases = pd.DataFrame({"model": ["general", "math"], "arm": "fr3e", **{p: [1.0, 2.0] for p in costs.PHASES}})
    fig = plots.plot_phases(phases)
    assert len(fig.axes) == 2 and len(fig.axes[0].patches) == len(costs.PHASES)  # one stacked bar, 5 parts
    table = pd.DataFrame({"factor": ["K", "K", "M"], "value": [1, 2, 8], "recipe": [False, True, True],
                          "acc": [30.0, 32.0, 32.0], "acc_std": [1.0, 1.0, 1.0], "gen_tokens_per_step": [3e4, 4e4, 4e4],
                          "seeds": 3})
    assert len(plots.plot_ablation(table).axes) == 4  # 2 factors × (accuracy, tokens per step)


# ------------------------------------------------------------------------------------ trainer's prefill split
@pytest.mark.slow
def test_trainer_splits_prefill_into_computed_and_cached_except_after_an_evaluation(tmp_path):
    from pathlib import Path

    from fr3e.training.config import load_config
    from fr3e.training.trainer import train
    from fr3e.utils.io import read_jsonl

    root = Path(__file__).resolve().parents[1]
    config = load_config(root / "reproduce/configs/tiny-fr3e.yaml",
                         ["steps=3", "eval_every=2", "checkpoint_every=3", "sample_every=0", "data.prompts_per_step=2",
                          "data.eval_problems=2", "data.eval_n=2", "data.max_response_tokens=32",
                          "grpo.max_refill_rounds=0"])
    train(config, tmp_path / "run", progress=False, cache_dir=root / "runs" / "cache")
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    # step 3 follows the evaluation after step 2, which used the same engine: its share cannot be told apart
    assert [r["prefill_computed_tokens"] is None for r in rows] == [False, False, True]
    for r in rows[:2]:
        # the HF engine computes a prompt once for all its samples: computed + cached = submitted, cached > 0
        assert r["prefill_computed_tokens"] + r["prefill_cached_tokens"] == r["prefill_tokens"]
        assert 0 < r["prefill_computed_tokens"] < r["prefill_tokens"]


def test_work_seconds_reads_the_run_directories_and_the_note_says_it(tmp_path):
    infos = []
    for i, (wall, final) in enumerate([(100.0, 40.0), (200.0, None)]):
        d = tmp_path / f"run{i}"
        d.mkdir()
        (d / "DONE").write_text(json.dumps({"steps": 50, "wall": wall}))
        if final is not None:
            runs.final_eval_path(d, 512).write_text(json.dumps({"seconds": final}))
        infos.append(runs.RunInfo("fr3e", "general", i, 50, d, tmp_path / "r.yaml"))
    infos.append(runs.RunInfo("fr3e", "general", 2, 50, tmp_path / "missing", tmp_path / "r.yaml"))  # not trained
    w = studies.work_seconds(infos, 512)
    # training 100 + 200 = 300; final evaluations 40 (the second run has none yet); 340 core-seconds
    assert (w["train_s"], w["final_eval_s"], w["core_s"], w["runs"]) == (300.0, 40.0, 340.0, 3)
    note = studies.timing_note({"wall_s": 3000.0, "workers": 2}, 120.0, {**w, "core_s": 6000.0})
    assert note.startswith("Estimated 50 min on 2 workers before training; measured: 2 min for this notebook;")
    assert "took 100 core-min of training and final evaluation, ≈ 50 min on 2 workers" in note


def test_token_saving_pairs_seeds_and_reads_the_adaptive_counters():
    fr3e = pd.concat([_metrics("fr3e", s, [100, 100], [0, 0], [1.0, 1.0]) for s in (0, 1)])
    adaptive = pd.concat([_metrics("fr3e_adaptive", 0, [90, 90], [0, 0], [1.0, 1.0]),
                          _metrics("fr3e_adaptive", 1, [110, 110], [0, 0], [1.0, 1.0])])
    m = pd.concat([fr3e, adaptive], ignore_index=True)
    m["groups_all_right"], m["groups_all_wrong"], m["groups_mixed"] = 2, 2, 6  # 10 states per step
    m["states_settled_early"] = [0, 0, 0, 0, 4, 6, 6, 4]  # adaptive: 40%, 60%, 60%, 40% -> 50%
    m["continuations_saved_frac"] = 0.0
    m["rollouts_trained"] = [50, 50, 50, 50, 70, 80, 80, 70]
    r = studies.token_saving(m).iloc[0]
    # savings per seed: 1 − 90/100 = +10%, 1 − 110/100 = −10% -> mean 0 with a wide interval
    assert r["saving"] == pytest.approx(0.0) and r["ci_low"] < -10 and r["ci_high"] > 10 and r["seeds"] == 2
    assert r["settled_share"] == pytest.approx(0.5) and r["unspent_share"] == 0.0
    assert (r["arm_rollouts"], r["baseline_rollouts"]) == (pytest.approx(75.0), pytest.approx(50.0))
    # counters absent (an older run): nan, and the README cell reads "–"
    bare = studies.token_saving(pd.concat([fr3e, adaptive], ignore_index=True)).iloc[0]
    assert math.isnan(bare["settled_share"]) and math.isnan(bare["arm_rollouts"])
    table = studies.compute_readme(pd.DataFrame(columns=curves.COMPARISON_COLUMNS), pd.DataFrame(),
                                   pd.DataFrame(columns=["model", "arm", "gen_tokens", "prefill_tokens",
                                                         "prefill_computed_tokens", "prefill_cached_tokens",
                                                         "cached_share"]), studies.token_saving(m))[1]
    assert table["rows"][0]["states settled early"] == "50%" and table["rows"][0]["budget unspent"] == "0%"


def test_a_study_arm_that_never_branched_is_refused():
    metrics = pd.DataFrame({"arm": ["fr3e", "fr3e", "fr3e_scorer_newline", "grpo_pp"], "method": ["fr3e"] * 3 + ["grpo_pp"],
                            "anchors_per_trajectory": [2.0, 1.5, 0.0, None]})
    with pytest.raises(ValueError, match=r"\['fr3e_scorer_newline'\] found no anchor"):
        studies.check_arms_branch(metrics)
    studies.check_arms_branch(metrics[metrics["arm"] != "fr3e_scorer_newline"])  # GRPO++ logs None: not judged
    studies.check_arms_branch(metrics.drop(columns="anchors_per_trajectory"))  # runs from before the column


def test_an_equal_token_read_inside_the_warm_up_is_not_testable():
    # steps 0, 1, 2 at tokens 0, 100, 200 (FR3E) and 0, 50, 150 (GRPO++): common x = 150 tokens, where FR3E is at
    # step 1.5 and GRPO++ at step 2. With a 1-step warm-up both are past it; with a 2-step warm-up both are inside.
    c = pd.concat([_curve("fr3e", s, [0, 100, 200], [10, 20 + s, 30]) for s in (0, 1)]
                  + [_curve("grpo_pp", s, [0, 50, 150], [10, 15, 25 + s]) for s in (0, 1)])
    past = curves.paired_at_equal_x(c, "gen_tokens", "fr3e", "grpo_pp", warmup_steps=1).iloc[0]
    assert past["testable"] and past["ci_low"] < past["ci_high"]
    inside = curves.paired_at_equal_x(c, "gen_tokens", "fr3e", "grpo_pp", warmup_steps=2).iloc[0]
    assert not inside["testable"] and math.isnan(inside["ci_low"])
    assert "fr3e at step 1.5, grpo_pp at step 2, inside the 2-step learning-rate warm-up" in inside["interval"]
    assert inside["delta"] == pytest.approx(past["delta"])  # the numbers stay; only the verdict goes
    rows = studies.verdict_rows(pd.DataFrame([inside]), "{arm} ≥ {baseline} at equal {x}", "paper")
    assert rows[0]["verdict"].startswith("not testable here (") and "warm-up" in rows[0]["verdict"]
    assert studies.recipe_warmup_steps() == 20  # the tiny recipes warm up over 20 steps


def test_diversity_claims_pair_seeds_and_collapse_rows_divide_by_the_base():
    from fr3e.study import diversity

    rows = [{"arm": "base", "model": "general", "seed": 0, "step_entropy": 1.0, "distinct_correct_median": 2.0,
             "pass": 0.8}]
    for seed, (g, f) in enumerate(((0.30, 0.50), (0.40, 0.55), (0.35, 0.60))):
        rows.append({"arm": "grpo_pp", "model": "general", "seed": seed, "step_entropy": g,
                     "distinct_correct_median": 1.0, "pass": 0.7})
        rows.append({"arm": "fr3e", "model": "general", "seed": seed, "step_entropy": f,
                     "distinct_correct_median": 1.0 + seed, "pass": 0.7})
    cards = pd.DataFrame(rows)
    claims = {r["claim"]: r for r in diversity.diversity_claims(cards)}
    ent = claims[diversity.CLAIMS["step_entropy"]]
    # differences 0.20, 0.15, 0.25: mean 0.20, sd 0.05, t(2) 4.303 · 0.05 / √3 = 0.124
    assert ent["estimate"] == pytest.approx(0.20) and ent["ci_low"] == pytest.approx(0.20 - 0.1242, abs=1e-3)
    assert ent["verdict"].startswith("holds")
    assert claims[diversity.CLAIMS["pass"]]["verdict"].startswith("not testable")  # identical: no spread
    shares = {r["arm"]: r for r in diversity.collapse_rows(cards)}
    assert shares["grpo_pp"]["step_entropy / base"] == 0.35 and shares["fr3e"]["distinct_correct_median / base"] == 1.0


def test_an_arm_with_per_model_overrides_refuses_a_model_it_has_none_for():
    bonus = studies.entropy_bonus("paths")
    with pytest.raises(ValueError, match="per-model overrides"):
        bonus.overrides_for("Qwen/Qwen2.5-7B")
    assert studies.TOP_ENTROPY.overrides_for("anything") == ("optim.top_entropy_quantile=0.2",)
