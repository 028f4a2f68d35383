"""The Table 1 recipes and accelerate configs: they load, validate, pair up, and cite a source per value."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fr3e.data.paper import BENCHMARKS, PAPER_TRAIN
from fr3e.training.config import diff_configs, load_config

ROOT = Path(__file__).resolve().parents[1]
TABLE1 = ROOT / "reproduce" / "configs" / "table1"
ACCELERATE = ROOT / "reproduce" / "accelerate"
MODELS = {"qwen2.5-7b": "Qwen/Qwen2.5-7B", "qwen2.5-math-7b": "Qwen/Qwen2.5-Math-7B",
          "qwen2.5-32b": "Qwen/Qwen2.5-32B"}
METHODS = ("grpo_pp", "fr3e")
RECIPES = sorted(TABLE1.glob("*.yaml"))


def test_one_recipe_per_model_and_method():
    expected = {f"{model}-{method}.yaml" for model in MODELS for method in METHODS}
    assert {p.name for p in RECIPES} == expected


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_is_a_valid_paper_profile(path):
    config = load_config(path)
    model, method = path.stem.rsplit("-", 1)
    assert config.profile == "paper"
    assert config.method == method
    assert config.name == f"table1-{path.stem}"
    assert config.model.base == MODELS[model]
    assert config.model.dtype == "bfloat16"
    assert config.rollout.engine == "vllm"
    assert config.data.train == PAPER_TRAIN
    assert config.data.eval_benchmarks == list(BENCHMARKS)
    # The authors' run script (the defaults of the official code).
    assert config.data.prompts_per_step == 32
    assert (config.data.max_prompt_tokens, config.data.max_response_tokens) == (1024, 3072)
    assert (config.fr3e.base_per_prompt, config.fr3e.num_anchors, config.fr3e.continuations_per_state) == (4, 4, 16)
    assert config.grpo.rollouts_per_prompt == 4  # paper appendix D.1
    assert config.optim.lr == 2e-6 and config.optim.weight_decay == 0.01
    assert (config.optim.eps_low, config.optim.eps_high, config.optim.dual_clip) == (0.2, 0.3, 3.0)
    assert (config.data.eval_n, config.data.eval_temperature, config.data.eval_top_p) == (16, 1.0, 0.95)
    assert config.grpo.dynamic_sampling and config.grpo.advantage_scale == "none"


def test_context_fits_qwen_math():
    # Qwen2.5-Math-7B has a 4096-token context: prompt + response must fit in it.
    config = load_config(TABLE1 / "qwen2.5-math-7b-fr3e.yaml")
    assert config.data.max_prompt_tokens + config.data.max_response_tokens <= 4096
    assert config.continuation_budget <= 4096 - config.data.max_prompt_tokens


@pytest.mark.parametrize("model", sorted(MODELS))
def test_pairs_differ_only_in_method(model):
    grpo = load_config(TABLE1 / f"{model}-grpo_pp.yaml").to_dict()
    fr3e = load_config(TABLE1 / f"{model}-fr3e.yaml").to_dict()
    changed = {line.split(":")[0] for line in diff_configs(grpo, fr3e)}
    assert changed == {"name", "method"}


def test_models_differ_only_in_model_and_memory_fields():
    base = load_config(TABLE1 / "qwen2.5-7b-fr3e.yaml").to_dict()
    allowed = {"name", "model.base", "model.gradient_checkpointing", "rollout.tensor_parallel_size",
               "rollout.gpu_memory_utilization", "rollout.batch_size", "optim.micro_batch_size",
               "optim.micro_batch_tokens"}
    for model in MODELS:
        other = load_config(TABLE1 / f"{model}-fr3e.yaml").to_dict()
        changed = {line.split(":")[0] for line in diff_configs(base, other)}
        assert changed <= allowed, changed - allowed


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_value_cites_a_source(path):
    sources = ("paper", "authors'", "our choice", "DAPO")
    for number, line in enumerate(path.read_text().splitlines(), 1):
        code = line.split(" # ")[0]
        if not code.strip() or code.lstrip().startswith("#") or code.rstrip().endswith(":"):
            continue  # comment, blank line or section header
        assert " # " in line, f"{path.name}:{number} has no source comment: {line!r}"
        comment = line.split(" # ", 1)[1]
        assert any(s in comment for s in sources), f"{path.name}:{number} cites no source: {comment!r}"


def test_accelerate_configs():
    ddp = yaml.safe_load((ACCELERATE / "ddp-8gpu.yaml").read_text())
    fsdp = yaml.safe_load((ACCELERATE / "fsdp-8gpu.yaml").read_text())
    for cfg in (ddp, fsdp):
        assert cfg["num_processes"] == 8 and cfg["num_machines"] == 1 and cfg["machine_rank"] == 0
        assert cfg["mixed_precision"] == "bf16"
    assert ddp["distributed_type"] == "MULTI_GPU"
    assert fsdp["distributed_type"] == "FSDP"
    f = fsdp["fsdp_config"]
    assert f["fsdp_version"] == 2 and f["fsdp_reshard_after_forward"] is True  # FSDP2 spelling of FULL_SHARD
    assert f["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert f["fsdp_transformer_layer_cls_to_wrap"] == "Qwen2DecoderLayer"
    readme = (ACCELERATE / "README.md").read_text()
    for needle in ("num_machines", "machine_rank", "main_process_ip", "tensor_parallel_size", "Qwen2.5-32B"):
        assert needle in readme


def test_accelerate_configs_parse_with_accelerate():
    """accelerate's own loader accepts the files (fields and enums it knows)."""
    from accelerate.commands.config.config_args import load_config_from_file

    for name in ("ddp-8gpu.yaml", "fsdp-8gpu.yaml"):
        cfg = load_config_from_file(str(ACCELERATE / name))
        assert cfg.num_processes == 8


def test_readme_says_where_clipping_acts():
    """A recipe with one update per batch runs on-policy (ratio 1: Clip-Higher and the dual clip never act); the
    README's deviations table must say so for the tiny profile, and the paper recipes must let clipping act."""
    from fr3e.training.config import load_config

    readme = (ROOT / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| updates per batch |"))
    tiny = {p.name: load_config(p) for p in (ROOT / "reproduce/configs").glob("tiny-*.yaml")}
    paper = {load_config(p).optim.updates_per_batch for p in (ROOT / "reproduce/configs/table1").glob("*.yaml")}
    assert min(paper) >= 2
    arithmetic = {c.optim.updates_per_batch for c in tiny.values() if c.data.world == "arithmetic"}
    paths = {c.optim.updates_per_batch for c in tiny.values() if c.data.world == "paths"}
    if arithmetic == {1}:
        assert "arithmetic tiny recipes 1" in row and "on-policy" in row and "never act" in row
    if paths:
        assert f"path-world tiny recipes {max(paths)}" in row
