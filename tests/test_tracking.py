"""Live dashboards (`report_to`): config parsing, the flattening helpers, and a tiny run whose TensorBoard event
files, read back with TensorBoard's own reader, hold the metrics rows and evaluations at their steps."""

import importlib.util
import math
from pathlib import Path

import pytest

from fr3e.training.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    diff_configs,
    from_dict,
    load_config,
)
from fr3e.training.tracking import eval_scalars, flatten, scalars, targets
from fr3e.utils.errors import UserError
from fr3e.utils.io import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "runs" / "cache"

TINY = ["steps=3", "eval_every=2", "checkpoint_every=3", "sample_every=0", "data.prompts_per_step=4",
        "data.eval_problems=4", "data.eval_n=2", "data.max_response_tokens=24", "grpo.max_refill_rounds=0",
        "name=tb"]


def test_report_to_accepts_a_name_a_list_or_commas_and_rejects_typos():
    assert TrainConfig().report_to == "none" and targets("none") == []
    assert from_dict(TrainConfig, {"report_to": ["tensorboard", "wandb"]}).report_to == "tensorboard,wandb"
    assert apply_overrides(TrainConfig(), ["report_to=wandb, tensorboard"]).report_to == "wandb,tensorboard"
    assert targets("tensorboard,wandb,tensorboard") == ["tensorboard", "wandb"]
    with pytest.raises(ConfigError, match="'tensorbord'.*'none' or any of"):
        TrainConfig(report_to="tensorbord")
    with pytest.raises(ConfigError):
        TrainConfig(report_to="none,wandb")


def test_report_to_is_not_part_of_the_run_identity():
    # A finished run reused, or an interrupted one resumed, with a dashboard added (or from before the field).
    old = TrainConfig().to_dict()
    del old["report_to"]
    assert diff_configs(old, TrainConfig(report_to="tensorboard").to_dict()) == []
    assert diff_configs(old, TrainConfig(seed=1).to_dict()) == ["seed: 0 -> 1"]


def test_flatten_and_scalars_by_hand():
    flat = flatten(TrainConfig())
    assert flat["optim.lr"] == 2e-6 and flat["fr3e.num_anchors"] == 4 and flat["method"] == "fr3e"
    assert flat["data.eval_benchmarks"] == "['easy', 'medium', 'hard']" and flat["data.local_files"] == "{}"
    assert all(isinstance(v, (bool, int, float, str)) for v in flat.values())
    row = {"loss": 0.5, "entropy": float("nan"), "base_length": None, "adv_hist": [1, 2, 3], "refill_rounds": 2,
           "note": "text"}
    assert scalars(row, "train") == {"train/loss": 0.5, "train/refill_rounds": 2.0}
    evals = [{"step": 2, "benchmark": "easy", "n": 2, "avg": 0.25, "avg_ci": [0.0, 0.5], "pass": {"1": 0.25, "2": 0.5},
              "greedy": None, "num_problems": 4}]
    assert eval_scalars(evals) == {"eval/easy/n": 2.0, "eval/easy/avg": 0.25, "eval/easy/avg_ci_low": 0.0,
                                   "eval/easy/avg_ci_high": 0.5, "eval/easy/num_problems": 4.0,
                                   "eval/easy/pass@1": 0.25, "eval/easy/pass@2": 0.5}


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_missing_wandb_is_one_line_naming_the_extra(tmp_path):
    from fr3e.training.trainer import train

    config = load_config(ROOT / "reproduce/configs/tiny-fr3e.yaml", TINY + ["report_to=tensorboard,wandb"])
    with pytest.raises(UserError, match=r"report_to=wandb needs the wandb package.*\.\[wandb\]") as info:
        train(config, tmp_path / "run", progress=False, cache_dir=CACHE)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()  # refused before anything was loaded or written


def test_tiny_run_writes_tensorboard_scalars_at_their_steps(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from fr3e.training.trainer import train

    config = load_config(ROOT / "reproduce/configs/tiny-fr3e.yaml", TINY + ["report_to=tensorboard"])
    run = train(config, tmp_path / "run", progress=False, cache_dir=CACHE)
    logdir = Path(run) / "tensorboard" / "tb"
    assert list(logdir.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    rows = read_jsonl(Path(run) / "metrics.jsonl")
    for key in ("reward_all_mean", "gen_tokens", "time_step", "lr", "wall"):
        assert f"train/{key}" in tags, key
        logged = [(e.step, e.value) for e in events.Scalars(f"train/{key}")]
        assert [s for s, _ in logged] == [1, 2, 3]
        for (step, value), row in zip(logged, rows):
            assert step == row["step"] and math.isclose(value, row[key], rel_tol=1e-6, abs_tol=1e-6), key
    assert not any(t.startswith("train/adv_hist") for t in tags)  # lists stay in metrics.jsonl
    evals = read_jsonl(Path(run) / "eval.jsonl")
    for bench in ("easy", "medium", "hard"):
        logged = events.Scalars(f"eval/{bench}/avg")
        assert [e.step for e in logged] == [2, 3]  # eval_every=2, then the final evaluation
        expected = [e["avg"] for e in evals if e["benchmark"] == bench]
        assert [e.value for e in logged] == pytest.approx(expected)
        assert {f"eval/{bench}/avg_ci_low", f"eval/{bench}/avg_ci_high", f"eval/{bench}/pass@2"} <= tags


def test_no_dashboard_writes_no_tensorboard_directory(tmp_path):
    from fr3e.training.trainer import train

    config = load_config(ROOT / "reproduce/configs/tiny-fr3e.yaml", TINY + ["steps=1", "eval_every=0"])
    run = train(config, tmp_path / "run", progress=False, cache_dir=CACHE)
    assert not (Path(run) / "tensorboard").exists() and (Path(run) / "DONE").exists()


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb not installed (extra 'wandb')")
def test_wandb_offline_run_holds_the_metrics_and_the_config(tmp_path, monkeypatch):
    from fr3e.training.trainer import train

    monkeypatch.setenv("WANDB_MODE", "offline")  # no network, no account: wandb writes a local run to sync later
    monkeypatch.setenv("WANDB_SILENT", "true")
    config = load_config(ROOT / "reproduce/configs/tiny-fr3e.yaml", TINY + ["report_to=wandb"])
    run = Path(train(config, tmp_path / "run", progress=False, cache_dir=CACHE))
    files = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1
    data = files[0].read_bytes()  # wandb's record log (protobuf records; keys are stored as text)
    for key in (b"train/reward_all_mean", b"eval/easy/avg", b"optim.lr"):
        assert key in data, key
