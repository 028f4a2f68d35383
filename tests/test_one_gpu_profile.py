"""The one-GPU profile: recipes, its plan, its requirement check, and two real steps of its FR3E recipe on CPU with
the rehearsal's fixture model (a Qwen2 model served from a local hub cache by id, the paper data path)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fr3e.study import reproduction, runs
from fr3e.training.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def test_recipes_parameters_and_requirements():
    paths = runs.recipes("1gpu")
    assert list(paths) == ["grpo_pp", "fr3e"]
    fr3e = load_config(paths["fr3e"]["Qwen/Qwen2.5-Math-1.5B"])
    grpo = load_config(paths["grpo_pp"]["Qwen/Qwen2.5-Math-1.5B"])
    assert fr3e.rollout.engine == "hf" and fr3e.data.eval_benchmarks == ["gsm8k", "math500"]
    assert fr3e.max_sequence_tokens <= 4096  # Qwen2.5-Math-1.5B's context
    assert (fr3e.fr3e, fr3e.optim, fr3e.data) == (grpo.fr3e, grpo.optim, grpo.data)  # only name and method differ
    params = reproduction.parameters_for("1gpu", smoke=False)
    assert params["models"] == ["Qwen/Qwen2.5-Math-1.5B"] and params["results_dir"] == "../results/1gpu"
    assert params["accelerate_config"] is None
    assert reproduction.select_profile("1gpu", device_count=1, memory_gb=80)[0] == "1gpu"
    with pytest.raises(SystemExit, match="at least 60 GB.*device 0 has 24 GB"):
        reproduction.select_profile("1gpu", device_count=1, memory_gb=24)
    with pytest.raises(SystemExit, match="one CUDA GPU"):
        reproduction.select_profile("1gpu", device_count=0, memory_gb=0)
    assert reproduction.select_profile("auto", device_count=1)[0] == "tiny"  # auto never picks a GPU profile it cannot run


def test_the_plan_of_the_profile(capsys):
    from fr3e.cli.plan import main

    assert main(["--profile", "1gpu"]) == 0
    out = capsys.readouterr().out
    assert "1gpu-qwen2.5-math-1.5b-fr3e" in out and "1gpu-qwen2.5-math-1.5b-grpo_pp" in out
    assert "Memory per GPU by phase on 1 × 80 GB" in out
    fits = [line for line in out.splitlines() if line.strip().startswith("1gpu-") and " hf " in line]
    assert len(fits) == 2 and all(line.rstrip().endswith("yes") for line in fits)
    total = next(line for line in out.splitlines() if line.startswith("TOTAL"))
    assert 1 < float(total.split()[-2]) < 8  # a few hours on one GPU


@pytest.mark.slow
def test_two_fr3e_steps_of_the_one_gpu_recipe_on_cpu(tmp_path):
    from fr3e.rehearsal import fixtures, launch

    hf_home = tmp_path / "hf"
    fixtures.install_hub_cache(fixtures.build_fixture_model(), hf_home)
    recipe = ROOT / "reproduce/configs/1gpu/qwen2.5-math-1.5b-fr3e.yaml"
    sets = launch.size_overrides(launch.QUICK_SIZES) + ["steps=2", "checkpoint_every=1", "data.eval_n=2",
                                                         "data.eval_problems=2", "probe_every=0"]
    cmd = [sys.executable, "-m", "fr3e.cli.train", "--config", str(recipe), "--run-dir", str(tmp_path / "run"),
           "--no-progress"] + sum((["--set", s] for s in sets), [])
    env = {**fixtures.hub_env(hf_home), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["fr3e"]["num_anchors"] == 2 and config["fr3e"]["continuations_per_state"] == 8
    assert config["model"]["base"] == fixtures.HUB_ID and config["profile"] == "paper"
    evals = {json.loads(line)["benchmark"] for line in (tmp_path / "run" / "eval.jsonl").read_text().splitlines()}
    assert evals == {"gsm8k", "math500"} and (tmp_path / "run" / "DONE").exists()
