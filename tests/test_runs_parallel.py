"""fr3e.study.runs: parallel, resumable runs (fake training processes), control arms, matched rollouts, progress line.

The fake "training" is a tiny Python script (no torch) that records when it started and ended, writes the
files a run directory needs and `DONE`, so the scheduler is tested for real processes in well under 30 s.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from fr3e.study import jobs, launch, loaders, runs

RECIPE = "method: {method}\nprofile: tiny\nsteps: 3\n"

FAKE_TRAIN = r'''
import json, sys, time
from pathlib import Path
run_dir, method, model, seed, name, sleep, fail = sys.argv[1:8]
start = time.time()
if fail == "1":
    print("boom: the fake run failed on purpose")
    sys.exit(3)
time.sleep(float(sleep))
run = Path(run_dir)
run.mkdir(parents=True, exist_ok=True)
(run / "config.json").write_text(json.dumps({"method": method, "name": name, "seed": int(seed), "steps": 3,
    "model": {"base": model}, "fr3e": {"continuations_per_state": 8}, "grpo": {"rollouts_per_prompt": 8}}))
# FR3E per step: 1200 generated tokens for 2 prompts whose base trajectories are 50 tokens long (12 per prompt)
rows = [{"step": t, "gen_tokens": 1200, "prompts_used": 2, "base_length": 50.0} for t in (1, 2, 3)]
(run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
(run / "times.json").write_text(json.dumps([start, time.time()]))
(run / "DONE").write_text("")
'''


def _recipes(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for method in ("grpo_pp", "fr3e"):
        path = tmp_path / f"tiny-{method}.yaml"
        path.write_text(RECIPE.format(method=method))
        out[method] = path
    return out


def _fake(tmp_path: Path, sleep: float = 0.0, fail: str = "") -> tuple[list, callable]:
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    calls = []

    def command(job: jobs.Job) -> list[str]:
        calls.append(job)
        if job.kind == "warm_start":
            return [sys.executable, "-c", f"import time; open({str(tmp_path / 'warm.time')!r}, 'w')"
                                          ".write(str(time.time()))"]
        i = job.info
        return [sys.executable, str(script), str(i.run_dir), i.method, i.model, str(i.seed), i.run_dir.name,
                str(sleep), "1" if fail and job.key == fail else "0"]

    return calls, command


def test_two_runs_execute_concurrently_and_a_finished_one_is_not_redone(tmp_path):
    calls, command = _fake(tmp_path, sleep=1.0)
    recipes = {"grpo_pp": _recipes(tmp_path)["grpo_pp"]}
    kw = dict(runs_root=tmp_path / "runs", cache_dir=tmp_path / "cache", workers=2, command=command)
    # seed 2 finished earlier: it must be reused, not launched
    done = tmp_path / "runs" / "tiny" / "grpo_pp-general-s2-3"
    done.mkdir(parents=True)
    (done / "DONE").write_text("")
    infos = launch.ensure_runs(recipes, ["general"], [0, 1, 2], **kw)
    assert [i.run_dir.name for i in infos] == ["grpo_pp-general-s0-3", "grpo_pp-general-s1-3", "grpo_pp-general-s2-3"]
    assert [j.key for j in calls] == ["warm-start-general", "grpo_pp-general-s0", "grpo_pp-general-s1"]
    (a0, a1), (b0, b1) = (json.loads((i.run_dir / "times.json").read_text()) for i in infos[:2])
    assert a0 < b1 and b0 < a1, "the two runs did not overlap in time"
    warm = float((tmp_path / "warm.time").read_text())
    assert warm <= min(a0, b0), "a run started before its base model's warm start finished"
    status = json.loads((tmp_path / "runs" / "progress.json").read_text())
    assert {k: v["state"] for k, v in status["jobs"].items()} == {
        "warm-start-general": "done", "grpo_pp-general-s0": "done", "grpo_pp-general-s1": "done",
        "grpo_pp-general-s2": "reused"}
    assert launch.progress_line(status, now=status["updated"]).startswith("runs 3/3 done (1 reused), steps 6/6")
    # again: everything is finished, nothing is launched
    calls.clear()
    again = launch.ensure_runs(recipes, ["general"], [0, 1, 2], **kw)
    assert [i.run_dir for i in again] == [i.run_dir for i in infos] and [j.key for j in calls] == []


def test_a_failed_run_stops_with_its_log_tail(tmp_path):
    _, command = _fake(tmp_path, sleep=0.0, fail="grpo_pp-general-s0")
    with pytest.raises(RuntimeError, match=r"(?s)grpo_pp-general-s0 exited with status 3.*boom: the fake run"):
        launch.ensure_runs({"grpo_pp": _recipes(tmp_path)["grpo_pp"]}, ["general"], [0], runs_root=tmp_path / "runs",
                         cache_dir=tmp_path / "cache", workers=2, command=command)
    status = json.loads((tmp_path / "runs" / "progress.json").read_text())
    assert status["jobs"]["grpo_pp-general-s0"]["state"] == "failed"


def test_controls_coin_and_matched_rollouts(tmp_path):
    calls, command = _fake(tmp_path)
    infos = launch.ensure_runs(_recipes(tmp_path), ["general", "math"], [0, 1, 2, 3], runs_root=tmp_path / "runs",
                             cache_dir=tmp_path / "cache", workers=2, command=command, controls=["coin", "matched"])
    arms = [(i.arm, i.model, i.seed) for i in infos]
    # main arms: 2 methods × 2 models × 4 seeds; coin: general only, first 3 seeds; matched: every model and seed
    assert len(infos) == 16 + 3 + 8
    assert [a for a in arms if a[0] == "grpo_pp_coin"] == [("grpo_pp_coin", "general", s) for s in (0, 1, 2)]
    assert sum(a[0] == "grpo_pp_matched" for a in arms) == 8
    by_key = {j.key: j for j in calls}
    coin = by_key["grpo_pp_coin-general-s0"]
    assert "reward=coin" in coin.overrides and coin.info.run_dir.name.startswith("grpo_pp_coin-general-s0-3-")
    # FR3E generated 1200 tokens per 2 prompts of 50-token responses per step: 12 responses' worth -> G = 12
    matched = by_key["grpo_pp_matched-math-s1"]
    assert "grpo.rollouts_per_prompt=12" in matched.overrides
    order = [j.key for j in calls]
    assert all(order.index(f"fr3e-math-s{s}") < order.index("grpo_pp_matched-math-s0") for s in range(4))
    # the loaders tag every row with its arm
    evals = loaders.load_metrics(infos)
    assert set(evals["arm"]) == {"grpo_pp", "fr3e", "grpo_pp_coin", "grpo_pp_matched"}
    assert set(evals.loc[evals["arm"] == "grpo_pp_matched", "method"]) == {"grpo_pp"}


def test_matched_group_size_hand_computed():
    # Σ gen = 1200 + 1800 = 3000; Σ prompts · length = 2·50 + 3·40 = 220 -> 13.64 full responses -> G = 14
    m = pd.DataFrame({"gen_tokens": [1200, 1800], "prompts_used": [2, 3], "base_length": [50.0, 40.0]})
    g, ratio = runs.matched_group_size(m)
    assert g == 14 and ratio == pytest.approx(3000 / 220)
    assert runs.matched_group_size(m.assign(gen_tokens=[10, 10]))[0] == 2  # never below a pair
    with pytest.raises(ValueError, match="base_length"):
        runs.matched_group_size(m.drop(columns=["base_length"]))


def test_arm_and_run_names():
    assert runs.arm_of("grpo_pp_coin-general-s0-60-1a2b3c4d", "grpo_pp") == "grpo_pp_coin"
    assert runs.arm_of("fr3e-general-s0-60", "fr3e") == "fr3e"
    assert runs.arm_of("lr=3e-04", "grpo_pp") == "grpo_pp"  # a sweep run named otherwise
    assert runs.run_name("grpo_pp", "general", 0, 60) == "grpo_pp-general-s0-60"
    assert runs.run_name("grpo_pp", "general", 0, 60, ["reward=coin"], arm="grpo_pp_coin").startswith(
        "grpo_pp_coin-general-s0-60-")
    assert runs.ARM_LABELS["grpo_pp_matched"] == "GRPO++ (matched rollouts)"


def test_progress_line_hand_computed():
    # 4 runs of 100 steps: one reused, one done (trained 100 steps from 0), one running at step 50 having resumed
    # from 30 (20 trained now), one pending. Trained now: 120 steps in 600 s; left: 300 − 150 = 150 steps -> 750 s
    status = {"jobs": {
        "a": {"kind": "run", "state": "reused", "steps": 100, "steps_done": 100},
        "b": {"kind": "run", "state": "done", "steps": 100, "steps_done": 100, "steps_at_start": 0, "started": 1000},
        "c": {"kind": "run", "state": "running", "steps": 100, "steps_done": 50, "steps_at_start": 30,
              "started": 1300},
        "d": {"kind": "run", "state": "pending", "steps": 100},
        "w": {"kind": "warm_start", "state": "done", "started": 1200}}}
    assert launch.progress_line(status, now=1600) == \
        "runs 2/4 done (1 reused), 1 running, steps 150/300, about 12 min 30 s left"
    # a warm start that began earlier trains no steps: the rate counts from the first run's start
    status["jobs"]["w"]["started"] = 400
    assert launch.progress_line(status, now=1600).endswith("about 12 min 30 s left")
    assert launch.progress_line({"jobs": {}}, now=0) == "runs 0/0 done, nothing left to train"
    assert launch.format_duration(3725) == "1 h 02 min" and launch.format_duration(42) == "42 s"


def test_an_unresolved_matched_run_counts_its_expected_steps(tmp_path):
    # a matched-rollouts run is resolved (its G) only after FR3E's runs: until then the progress line counts the
    # steps of the runs it is matched to, so the total and the time left do not omit it
    status = launch.Status(tmp_path / "progress.json")
    status.set(jobs.Job("grpo_pp_matched-general-s0", "run", "general", expected_steps=50), "pending")
    status.set(jobs.Job("fr3e-general-s0", "run", "general"), "pending")
    assert status.jobs["grpo_pp_matched-general-s0"]["steps"] == 50 and "steps" not in status.jobs["fr3e-general-s0"]
    assert "steps 0/50" in launch.progress_line({"jobs": status.jobs}, now=0)


def test_a_world_has_its_own_run_folder_and_warm_start(tmp_path):
    """A recipe of the path world plans its runs under <runs_root>/tiny-paths/ and its warm start in that world, so
    the two worlds never share a run directory or a base model."""
    recipes = {}
    for method in ("grpo_pp", "fr3e"):
        path = tmp_path / f"tiny-paths-{method}.yaml"
        path.write_text(RECIPE.format(method=method) + "data:\n  world: paths\n")
        recipes[method] = path
    planned = jobs.plan_jobs(recipes, ["general"], [0], None, tmp_path / "runs", [], cache_dir=tmp_path / "cache")
    warm = [j for j in planned if j.kind == "warm_start"]
    assert [(j.model, j.world) for j in warm] == [("general", "paths")]
    assert "world='paths'" in jobs._default_command(warm[0], None, tmp_path / "cache")[-1]
    assert {j.info.run_dir.parent for j in planned if j.kind == "run"} == {tmp_path / "runs" / "tiny-paths"}
    assert all(j.deps == ["warm-start-general"] for j in planned if j.kind == "run")


def test_recipes_and_folders_of_each_world():
    assert runs.recipes("tiny")["fr3e"].name == "tiny-fr3e.yaml"
    assert runs.recipes("tiny", "paths")["grpo_pp"].name == "tiny-paths-grpo_pp.yaml"
    assert (runs.profile_dir("tiny"), runs.profile_dir("tiny", "paths"), runs.profile_dir("paper", "paths")) == \
        ("tiny", "tiny-paths", "paper")
    with pytest.raises(ValueError, match="unknown tiny world 'maze'"):
        runs.recipes("tiny", "maze")
