"""Smoke runs of the trainer on the tiny profile: determinism, 2 processes, errors.

Interrupted runs (kill -9, SIGTERM / Ctrl-C, corrupted or failed checkpoints) and their resume: test_faults.py.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fr3e.training.config import ConfigError, load_config
from fr3e.training.trainer import TIMING_KEYS, TrainingError, train
from fr3e.utils.io import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "runs" / "cache"
pytestmark = pytest.mark.slow

SMALL = ["steps=4", "checkpoint_every=2", "sample_every=2", "data.prompts_per_step=4", "data.eval_problems=8",
         "data.eval_n=2", "data.max_response_tokens=48", "grpo.max_refill_rounds=1", "probe_every=2",
         "probe_prompts=4", "probe_n=2"]


def small_config(method="fr3e", extra=()):
    return load_config(ROOT / f"reproduce/configs/tiny-{method}.yaml", SMALL + list(extra))


def comparable(rows):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def final_weights(run_dir):
    return load_file(str(Path(run_dir) / "model" / "model.safetensors"))


def assert_same_run(a, b):
    ma, mb = read_jsonl(Path(a) / "metrics.jsonl"), read_jsonl(Path(b) / "metrics.jsonl")
    assert len(ma) == len(mb) > 0
    assert json.dumps(comparable(ma), sort_keys=True) == json.dumps(comparable(mb), sort_keys=True)
    wa, wb = final_weights(a), final_weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert read_jsonl(Path(a) / "eval.jsonl") == read_jsonl(Path(b) / "eval.jsonl")
    probes = [[{k: v for k, v in r.items() if k != "seconds"} for r in read_jsonl(Path(d) / "probe.jsonl")] for d in (a, b)]
    assert probes[0] == probes[1]


def one_thread(fn, *args, **kwargs):
    """`fn(...)` with 1 torch thread, as the reference run trained (CPU float sums depend on the thread count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(*args, **kwargs)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def reference_run(small_reference_run):
    """The uninterrupted run of `small_config()` (tests/conftest.py: trained once, shared with test_faults.py)."""
    return small_reference_run


def test_run_directory_describes_itself(reference_run):
    run = reference_run
    for name in ("config.json", "env.json", "metrics.jsonl", "eval.jsonl", "samples.jsonl", "DONE", "model"):
        assert (run / name).exists(), name
    rows = read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    r = rows[-1]
    assert r["groups_all_right"] + r["groups_all_wrong"] + r["groups_mixed"] > 0
    assert len(r["adv_hist"]) == 40 and len(r["adv_hist_edges"]) == 41
    assert r["gen_tokens"] > 0 and r["time_generate"] > 0
    assert all(r[k] >= 0 for k in ("time_score", "time_forward", "time_backward"))
    env = json.loads((run / "env.json").read_text())
    assert env["packages"]["torch"] and env["world_size"] == 1
    evals = read_jsonl(run / "eval.jsonl")
    assert {e["benchmark"] for e in evals} == {"easy", "medium", "hard"}
    samples = read_jsonl(run / "samples.jsonl")
    assert samples and samples[0]["states"][0]["key"][1] == -1  # the shared S_0 comes first
    for s in samples:
        for t in s["trajectories"]:
            assert len(t["tokens"]) == len(t["entropy"]) and all(0 < a < len(t["tokens"]) for a in t["anchors"])


def test_same_seed_same_metrics_and_weights(reference_run, tmp_path):
    again = one_thread(train, small_config(), tmp_path / "again", progress=False, cache_dir=CACHE)
    assert_same_run(reference_run, again)


def test_finished_run_is_reused_and_other_config_refused(reference_run):
    mtime = (reference_run / "metrics.jsonl").stat().st_mtime
    train(small_config(), reference_run, progress=False, cache_dir=CACHE)
    assert (reference_run / "metrics.jsonl").stat().st_mtime == mtime
    with pytest.raises(ConfigError, match="fr3e.num_anchors: 2 -> 1"):
        train(small_config(extra=["fr3e.num_anchors=1"]), reference_run, progress=False, cache_dir=CACHE)


def test_grpo_pp_is_the_same_loop_with_one_state(tmp_path):
    run = train(small_config("grpo_pp"), tmp_path / "g", progress=False, cache_dir=CACHE)
    rows = read_jsonl(run / "metrics.jsonl")
    for r in rows:
        assert r["value_by_state"] and len(r["value_by_state"]) == 1  # S_0 only
        assert r["alpha_min"] == r["alpha_max"] == 1.0
        assert r["groups_mixed"] == r["prompts_mixed"]


def test_nan_reward_stops_with_a_clear_message(tmp_path, monkeypatch):
    from fr3e.training import trainer as trainer_mod

    monkeypatch.setattr(trainer_mod.Trainer, "_reward", lambda self, text, answer: float("nan"))
    with pytest.raises(TrainingError, match=r"step 1: a reward is NaN"):
        train(small_config(), tmp_path / "nan", progress=False, cache_dir=CACHE)
    assert read_jsonl(tmp_path / "nan" / "metrics.jsonl") == []


def test_nan_loss_stops_with_a_clear_message(tmp_path, monkeypatch):
    from fr3e.training import trainer as trainer_mod

    real = trainer_mod.policy_loss

    def broken(*args, **kwargs):
        loss, stats = real(*args, **kwargs)
        return loss * float("nan"), stats

    monkeypatch.setattr(trainer_mod, "policy_loss", broken)
    with pytest.raises(TrainingError, match=r"step \d+: the policy loss is nan.*optim.lr"):
        train(small_config(), tmp_path / "nanloss", progress=False, cache_dir=CACHE)


def test_two_processes(tmp_path):
    run = tmp_path / "ddp"
    with socket.socket() as sock:  # a free port, so concurrent runs never meet on the default 29500
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(port),
           "-m", "fr3e.cli.train", "--config", str(ROOT / "reproduce/configs/tiny-grpo_pp.yaml"),
           "--run-dir", str(run), "--cache-dir", str(CACHE), "--no-progress"]
    # 2 steps: the two-process plumbing (updates, the step-2 checkpoint, probes, the final evaluation)
    cmd += sum((["--set", s] for s in SMALL if not s.startswith("steps=")), ["--set", "steps=2"])
    # a token cap on micro-batches: the two processes run different numbers of them, padded to the larger
    cmd += ["--set", "optim.micro_batch_tokens=160"]
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((run / "env.json").read_text())["world_size"] == 2
    rows = read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    # each process samples its own half of the prompts: 4 prompts per round in total, counted globally
    assert all(r["prompts_kept"] <= 4 for r in rows)
    assert (run / "DONE").exists()


def test_newline_scorer_branches_at_the_tasks_step_delimiter(tmp_path):
    # The tiny world writes one "\n" per step: the newline scorer anchors at step starts and FR3E branches.
    run = train(small_config(extra=["fr3e.scorer=newline", "steps=1", "data.eval_problems=2"]), tmp_path / "nl",
                progress=False, cache_dir=CACHE)
    row = read_jsonl(run / "metrics.jsonl")[0]
    assert row["anchors_per_trajectory"] > 1 and row["trajectories_without_anchor"] < 0.5
    states = [s for sample in read_jsonl(run / "samples.jsonl") for s in sample["states"]]
    assert any(s["key"][2] > 0 and s["prefix_text"].endswith("\n") for s in states)  # S_j ends at a step boundary


def test_a_scorer_that_finds_no_anchor_stops_the_run(tmp_path):
    # "Q" never occurs in the arithmetic world's solutions: no boundary, no anchor, no branching -> one clear error
    config = small_config(extra=["fr3e.scorer=newline", "fr3e.step_delimiter=Q", "steps=1"])
    with pytest.raises(TrainingError, match=r"'newline' scorer found no anchor on 100% of the base trajectories.*"
                                            r"fr3e.step_delimiter"):
        train(config, tmp_path / "none", progress=False, cache_dir=CACHE)


def test_probe_measures_both_methods_on_one_population(reference_run, tmp_path):
    """The probe set is the same prompts, n and sampling seeds for FR3E and GRPO++ of one seed: before any update
    (step 0) both policies are the base model, so their probe rows are identical there."""
    fr3e = read_jsonl(reference_run / "probe.jsonl")
    assert [r["step"] for r in fr3e] == [0, 2, 4]  # before training, every probe_every steps, after the last
    assert all(r["responses"] == 4 * 2 and r["tokens"] > 0 and 0 < r["entropy"] < 5 for r in fr3e)
    grpo = one_thread(train, small_config("grpo_pp", ["steps=2"]), tmp_path / "grpo", progress=False, cache_dir=CACHE)
    grpo_rows = read_jsonl(grpo / "probe.jsonl")
    assert [r["step"] for r in grpo_rows] == [0, 2]
    same = ("entropy", "tokens", "responses", "response_length")
    assert {k: grpo_rows[0][k] for k in same} == {k: fr3e[0][k] for k in same}
