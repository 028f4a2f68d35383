"""fr3e.study.plan: hand-computed cost of a toy GRPO++ and FR3E run, and the CLI on the real recipes."""

from __future__ import annotations

from pathlib import Path

import pytest

from fr3e.cli import plan as plan_cli
from fr3e.study import plan
from fr3e.study.plan import Assumptions, estimate_run
from fr3e.training.config import TrainConfig, from_dict

ROOT = Path(__file__).resolve().parents[1]

# A toy world a reader can redo on paper: L = 100 response tokens, p = 20 prompt tokens, 1B parameters.
TOY = Assumptions(
    mean_response_tokens={}, default_response_tokens=100.0, mean_prompt_tokens=20.0, continuation_fraction=0.5,
    refill_fraction=0.5, throughput={"1b": 1000.0}, peak_flops=1e12, mfu=0.5, gpu_memory_gb=10.0,
    memory_headroom=1.0, activation_gb=2.0, kv_cache_gb=1.0, checkpoints_kept=2, vocab_size=0,
    benchmark_sizes={"a": 10, "b": 5}, gpus_per_node=2)


def toy_config(method: str) -> TrainConfig:
    return from_dict(TrainConfig, {
        "name": f"toy-{method}", "profile": "paper", "method": method, "steps": 10, "eval_every": 0,
        "model": {"base": "toy-1B", "gradient_checkpointing": False},
        "data": {"prompts_per_step": 2, "eval_benchmarks": ["a", "b"], "eval_problems": 0, "eval_n": 2},
        "rollout": {"tensor_parallel_size": 1},
        "grpo": {"rollouts_per_prompt": 4, "dynamic_sampling": True},
        "fr3e": {"base_per_prompt": 4, "keep_right": 1, "keep_wrong": 1, "num_anchors": 2,
                 "continuations_per_state": 4},
    })


def test_grpo_pp_hand_computed():
    r = estimate_run(toy_config("grpo_pp"), TOY)
    # generated = steps 10 × prompts 2 × G 4 × L 100 × (1 + refill 0.5) = 12,000
    assert r["train_generated_tokens"] == pytest.approx(12_000)
    # eval = (10 + 5 problems) × n 2 × L 100 × 1 evaluation (eval_every 0 = final only) = 3,000
    assert r["eval_generated_tokens"] == pytest.approx(3_000)
    assert r["generated_tokens"] == pytest.approx(15_000)
    # trained = 10 × 2 × 4 sequences × (p 20 + L 100) = 9,600 tokens; flops = (6 + 2) × 1e9 × 9,600
    assert r["trained_tokens"] == pytest.approx(9_600)
    assert r["train_flops"] == pytest.approx(7.68e13)
    # rollout: 15,000 tok / 1,000 tok/s = 15 s; train: 7.68e13 / (1e12 × 0.5) = 153.6 s
    assert r["rollout_gpu_hours"] == pytest.approx(15 / 3600)
    assert r["train_gpu_hours"] == pytest.approx(153.6 / 3600)
    assert r["gpu_hours"] == pytest.approx(168.6 / 3600)
    # memory per GPU = 16 B × 1e9 / n + max(activations 2, vLLM 2 GB weights + 1 GB KV) ≤ 10 GB:
    # n = 2 gives 8 + 3 = 11 (too much), n = 4 gives 4 + 3 = 7 -> 4 GPUs (multiples of gpus_per_node 2)
    assert (r["gpus"], r["per_gpu_gb"]) == (4, pytest.approx(7.0))
    assert r["wall_hours"] == pytest.approx(168.6 / 3600 / 4)
    # disk = 1e9 × 4 B × (1 + 2 Adam states) × 2 kept + 1e9 × 2 B export = 26 GB
    assert r["disk_gb"] == pytest.approx(26.0)


def test_fr3e_hand_computed():
    r = estimate_run(toy_config("fr3e"), TOY)
    # per prompt: B·L + k·K·M·c·L + M·L = 4·100 + 2·2·4·0.5·100 + 4·100 = 400 + 800 + 400 = 1,600
    assert r["generated_tokens_per_prompt"] == pytest.approx(1_600)
    assert r["train_generated_tokens"] == pytest.approx(10 * 2 * 1_600 * 1.5)  # 48,000
    # trained: (k·K + 1)·M = 5 · 4 = 20 sequences per prompt of 120 tokens: 10 × 2 × 20 × 120 = 48,000
    assert r["trained_tokens"] == pytest.approx(48_000)
    # + entropy forward over kept base trajectories: 10 × 2 × 2 × 120 = 4,800 tokens at 2 flops/param
    assert r["train_flops"] == pytest.approx(8 * 1e9 * 48_000 + 2 * 1e9 * 4_800)
    assert r["eval_generated_tokens"] == pytest.approx(3_000)  # evaluation does not depend on the method


def test_no_dynamic_sampling_no_refill_and_checkpointing_costs_a_forward():
    config = toy_config("grpo_pp")
    config.grpo.dynamic_sampling = False
    config.model.gradient_checkpointing = True
    r = estimate_run(config, TOY)
    assert r["train_generated_tokens"] == pytest.approx(8_000)  # 10 × 2 × 4 × 100
    assert r["train_flops"] == pytest.approx(10 * 1e9 * 9_600)  # 6 + 2 (recompute) + 2 (log-prob forward)


def test_helpers():
    assert plan.evaluations(500, 100) == 5 and plan.evaluations(510, 100) == 6 and plan.evaluations(10, 0) == 1
    assert plan.model_params("Qwen/Qwen2.5-32B") == 32.5e9
    assert plan.model_params("my-org/Model-14B-Instruct") == 14e9
    with pytest.raises(ValueError, match="MODEL_PARAMS"):
        plan.model_params("gpt2")
    assert plan.size_class(7.61e9, {"7b": 1.0, "32b": 1.0}) == "7b"
    assert plan.size_class(32.5e9, {"7b": 1.0, "32b": 1.0}) == "32b"
    with pytest.raises(ValueError, match="does not fit"):
        plan.gpus_needed(1e12, 1, TOY, 2)


def test_table1_recipes_plan():
    rows = {r["run"]: r for r in (estimate_run(c) for c in plan.load_recipes(ROOT / plan.DEFAULT_CONFIG_DIR))}
    assert len(rows) == 6
    fr3e, grpo = rows["table1-qwen2.5-7b-fr3e"], rows["table1-qwen2.5-7b-grpo_pp"]
    # Authors' settings: FR3E generates 4L + 2·4·16·L/2 + 16L = 84L per prompt, GRPO++ 4L: 21× more.
    assert fr3e["generated_tokens_per_prompt"] / grpo["generated_tokens_per_prompt"] == pytest.approx(21)
    assert fr3e["gpus"] == grpo["gpus"] == 8
    assert rows["table1-qwen2.5-32b-fr3e"]["gpus"] == 16  # 520 GB of training state needs 2 nodes
    assert fr3e["eval_problems"] == 30 + 1319 + 500 + 272 + 385 + 674


def test_main_prints_table(capsys):
    assert plan_cli.main(["--gpus", "8", "--throughput", "7b=1000,32b=100", "--mfu", "0.4"]) == 0
    out = capsys.readouterr().out
    assert "TOTAL" in out and "table1-qwen2.5-math-7b-fr3e" in out
    assert "7b: 1,000 tok/s" in out and "40% MFU" in out


def test_logits_memory_hand_computed():
    # Qwen2.5-7B recipe micro-batch: 4 rows × (1024 + 3072) tokens × 152,064 vocab, slices of 512 positions:
    # one slice is 4·512·152064 = 311.4M elements; 12 B each without gradients = 3.737 GB, 22 B with = 6.851 GB
    assert plan.logits_gb(4, 4096, 152064, 512, grad=False) == pytest.approx(3.737, abs=1e-3)
    assert plan.logits_gb(4, 4096, 152064, 512, grad=True) == pytest.approx(6.851, abs=1e-3)
    # the sequence length no longer matters once it exceeds a slice (no full-length logits exist)
    assert plan.logits_gb(4, 8192, 152064, 512, grad=True) == plan.logits_gb(4, 4096, 152064, 512, grad=True)
    # a sequence shorter than the slice: the slice is the sequence
    assert plan.logits_gb(1, 100, 1000, 512, grad=False) == pytest.approx(100 * 1000 * 12 / 1e9)


def test_paper_recipes_fit_with_the_logits_peak():
    for config in plan.load_recipes(ROOT / plan.DEFAULT_CONFIG_DIR):
        r = estimate_run(config)
        assert r["logits_gb_nograd"] < r["logits_gb_train"] < 12  # micro-batched, sliced: no 50 GB pass
        assert r["per_gpu_gb"] <= 80 * 0.9, r["run"]


def test_phase_memory_by_hand_and_the_binding_phase():
    """Qwen2.5-7B FR3E on 8 GPUs: every term of each phase from the recipe, and the phase that binds."""
    from fr3e.training.config import load_config

    config = load_config(ROOT / plan.DEFAULT_CONFIG_DIR / "qwen2.5-7b-fr3e.yaml")
    P, N = plan.MODEL_PARAMS["Qwen/Qwen2.5-7B"], 8
    seq = config.max_sequence_tokens
    rows = min(config.optim.micro_batch_size, config.optim.micro_batch_tokens // seq)
    m = plan.phase_memory(config, "vllm", N)
    collect = m["phases"]["collect"]
    assert collect["weights + Adam (fp32, sharded)"] == pytest.approx(12 * P / N / 1e9)
    assert collect["vLLM (weights + KV cache + activations)"] == pytest.approx(0.35 * 80)
    assert collect["entropy pass (no grad, one micro-batch)"] == pytest.approx(
        plan.logits_gb(rows, seq, 152064, 512, grad=False))
    update = m["phases"]["update"]
    assert update["gradients (fp32, sharded)"] == pytest.approx(4 * P / N / 1e9)
    assert m["phases"]["wake-up"]["one gathered full tensor (fp32)"] == pytest.approx(152064 * 3584 * 4 / 1e9)
    assert m["totals"]["collect"] == pytest.approx(sum(collect.values()))
    assert m["binding"] == max(m["totals"], key=m["totals"].get) and m["fits"]
    hf = plan.phase_memory(config, "hf", N)
    kv = plan.kv_bytes_per_token(plan.MODEL_SHAPES["Qwen/Qwen2.5-7B"])
    assert kv == 2 * 28 * 4 * 128 * 2  # 57 KB of keys and values per token in bf16
    assert hf["phases"]["collect"]["HF engine copy (bf16, unsharded)"] == pytest.approx(2 * P / 1e9)
    assert hf["phases"]["collect"]["HF engine KV cache (one chunk)"] == config.rollout.kv_cache_gb == 16
    # without a KV budget the HF engine's chunk of batch_size rows at the longest sequence does not fit
    from dataclasses import replace

    unbounded = replace(config, rollout=replace(config.rollout, kv_cache_gb=0.0))
    assert not plan.phase_memory(unbounded, "hf", N)["fits"]
    # the 32B model's unsharded HF copy alone is 65 GB: it needs vLLM's tensor parallelism
    big = load_config(ROOT / plan.DEFAULT_CONFIG_DIR / "qwen2.5-32b-fr3e.yaml")
    assert not plan.phase_memory(big, "hf", 16)["fits"]
    with pytest.raises(ValueError, match="engine 'sglang'"):
        plan.phase_memory(config, "sglang", N)


def test_the_plan_command_prints_the_phases(capsys):
    from fr3e.cli.plan import main

    assert main([]) == 0
    out = capsys.readouterr().out
    assert "Memory per GPU by phase on 8 × 80 GB" in out
    assert out.count(" vllm ") >= 6 and out.count(" hf ") >= 6 and "binds" in out
