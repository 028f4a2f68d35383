"""Half-precision recipes learn: fp32 master weights and optimizer states under a half-precision forward (outside
FSDP), against the pure-bf16 AdamW that rounds small updates away; training forwards build no KV cache; the
gradients are freed after the update."""

import contextlib
from pathlib import Path

import pytest
import torch

from fr3e.training.config import load_config
from fr3e.training.policy import precision, token_logprobs

ROOT = Path(__file__).resolve().parents[1]


def test_half_precision_keeps_fp32_master_weights_outside_fsdp(monkeypatch):
    bf16 = load_config(ROOT / "reproduce/configs/tiny-paths-fr3e.yaml", ["model.dtype=bfloat16"])
    assert precision(bf16) == (torch.float32, torch.bfloat16)
    assert precision(load_config(ROOT / "reproduce/configs/tiny-paths-fr3e.yaml")) == (torch.float32, None)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # FSDP's mixed precision keeps fp32 shards itself
    assert precision(bf16) == (torch.bfloat16, None)


def test_at_the_papers_learning_rate_bf16_adamw_stalls_and_master_weights_move_like_fp32():
    """One linear layer, 20 AdamW steps at lr 2e-6: pure bf16 weights barely move (updates round away); fp32 master
    weights under a bf16 autocast forward move like the fp32 reference."""
    torch.manual_seed(0)
    w0 = torch.randn(64, 64) * 0.02
    x, y = torch.randn(256, 64), torch.randn(256, 64)

    def train(weight_dtype, autocast):
        layer = torch.nn.Linear(64, 64, bias=False)
        layer.weight.data = w0.clone().to(weight_dtype)
        opt = torch.optim.AdamW(layer.parameters(), lr=2e-6, weight_decay=0.0)
        for _ in range(20):
            ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
            with ctx:
                loss = ((layer(x.to(weight_dtype)) - y.to(weight_dtype)) ** 2).float().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return layer.weight.data.float() - w0.to(weight_dtype).float()

    ref = train(torch.float32, False)
    master = train(torch.float32, True)
    pure = train(torch.bfloat16, False)
    assert ref.abs().mean() > 3e-5  # 20 steps of ~2e-6 each
    assert (pure == 0).float().mean() > 0.5  # most bf16 weights never moved
    cos = torch.nn.functional.cosine_similarity(master.flatten(), ref.flatten(), dim=0)
    assert cos > 0.95 and (master.abs().mean() / ref.abs().mean() - 1).abs() < 0.05


def test_scoring_forwards_build_no_kv_cache():
    seen = {}

    class Model(torch.nn.Module):
        def forward(self, input_ids, attention_mask, **kw):
            seen.update(kw)
            return type("Out", (), {"logits": torch.zeros(*input_ids.shape, 5, requires_grad=True)})()

    token_logprobs(Model(), torch.tensor([[1, 2, 3]]), torch.ones(1, 3, dtype=torch.bool))
    assert seen == {"use_cache": False}


@pytest.mark.slow
def test_a_bf16_recipe_trains_fp32_master_weights_and_frees_its_gradients(tmp_path, monkeypatch):
    """Also the memory order of a step: the engine sleeps for the update; after it the gradients are gone and
    PyTorch's cache is released before the engine takes the new weights (a vLLM engine wakes its weights for the
    sync and its KV cache only at the next generation)."""
    from fr3e.training import trainer as trainer_mod
    from fr3e.training.trainer import Trainer

    calls = []
    monkeypatch.setattr(trainer_mod, "release_cached_memory", lambda: calls.append(
        ("release", all(p.grad is None for p in trainer.model.parameters()))))

    config = load_config(ROOT / "reproduce/configs/tiny-paths-grpo_pp.yaml", [
        "model.dtype=bfloat16", "steps=1", "eval_every=0", "probe_every=0", "data.prompts_per_step=4",
        "grpo.max_refill_rounds=0", "grpo.dynamic_sampling=false"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = Trainer(config, tmp_path / "run", progress=False, cache_dir=ROOT / "runs" / "cache")
        try:
            params = list(trainer.model.parameters())
            before = [p.detach().clone() for p in params]
            engine = trainer.engine
            engine.wake_up, engine.sleep = (lambda: calls.append(("wake_up",))), (lambda: calls.append(("sleep",)))
            sync = engine.sync_weights
            engine.sync_weights = lambda model: (calls.append(("sync",)), sync(model))
            row = trainer.step()
        finally:
            trainer.lock.release()
    finally:
        torch.set_num_threads(threads)
    assert all(p.dtype == torch.float32 for p in params) and row["trained_tokens"] > 0
    assert all(p.grad is None for p in params)  # freed after the update, not held through the next generation
    assert any(not torch.equal(a, p.detach()) for a, p in zip(before, params))
    assert calls[-3:] == [("sleep",), ("release", True), ("sync",)] and ("wake_up",) not in calls[-3:]


def test_vllm_is_sized_for_the_recipes_longest_sequence_not_the_models_context(monkeypatch):
    import fr3e.engines.vllm as vllm_engine
    from fr3e.training.policy import build_engine

    seen = {}
    monkeypatch.setattr(vllm_engine, "VLLMEngine", lambda *a, **kw: seen.update(kw))
    for method, longest in (("fr3e", 1024 + 3072 + 3072), ("grpo_pp", 1024 + 3072)):
        config = load_config(ROOT / f"reproduce/configs/table1/qwen2.5-7b-{method}.yaml")
        assert config.max_sequence_tokens == longest  # prompt, base response up to an anchor, continuation
        build_engine(config, None, None, "model-dir")
        assert seen["max_model_len"] == config.max_sequence_tokens


def _count_checkpointed_layers(model) -> list[int]:
    """Wrap every decoder layer's checkpoint function with a counter (one list entry per call)."""
    calls = []
    for module in model.modules():
        func = getattr(module, "_gradient_checkpointing_func", None)
        if func is not None:
            module._gradient_checkpointing_func = lambda *a, _f=func, **k: (calls.append(1), _f(*a, **k))[1]
    return calls


def test_gradient_checkpointing_acts_because_the_policy_trains_in_training_mode(tmp_path):
    """`from_pretrained` returns a model in eval mode, where transformers skips gradient checkpointing: a
    checkpointed recipe then kept every activation. `training_mode` puts the policy in training mode with its
    dropout at 0, so checkpointing acts and the log-probs stay those of the eval-mode model."""
    from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from fr3e.training.policy import training_mode

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, attention_dropout=0.5)
    Qwen2ForCausalLM(config).save_pretrained(tmp_path)
    ids = torch.randint(0, 64, (2, 12))

    model = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    model.gradient_checkpointing_enable()
    assert not model.training
    calls = _count_checkpointed_layers(model)
    reference = model(ids).logits.detach()
    assert calls == []  # eval mode: no layer is checkpointed, every activation is kept

    assert training_mode(model) is model and model.training
    assert model.config.attention_dropout == 0.5  # the saved config stays the base model's
    out = model(ids).logits
    assert len(calls) == config.num_hidden_layers  # each layer recomputed in the backward
    assert torch.equal(out.detach(), reference)  # no dropout: the same log-probs as in eval mode
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_load_policy_returns_a_checkpointed_policy_in_training_mode():
    from fr3e.training.policy import load_policy

    config = load_config(ROOT / "reproduce/configs/tiny-paths-grpo_pp.yaml", ["model.gradient_checkpointing=true"])
    model, _, _ = load_policy(config, cache_dir=ROOT / "runs" / "cache", progress=False)
    calls = _count_checkpointed_layers(model)
    model(torch.tensor([[1, 2, 3, 4]])).logits.sum().backward()
    assert model.training and len(calls) == model.config.num_hidden_layers
