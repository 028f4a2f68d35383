"""fr3e.engines.vllm: helpers on CPU; the engine-interface tests on a GPU with vLLM (skipped otherwise).

The GPU tests use a randomly initialised 2-layer Qwen2 model saved to a temporary folder (no hub), and
check what the trainer relies on: same seed -> same samples, a greedy continuation of a prefix reproduces
the rest, finish reasons, log-probs close to a teacher-forced HF forward, weights loaded in place.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
import torch

from fr3e.engines import vllm as vllm_engine
from fr3e.engines.base import Completion, Engine


# ------------------------------------------------------------------------------------------ CPU
def test_missing_vllm_names_the_install_command(monkeypatch):
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # import_vllm sets it; restored after the test
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError
    with pytest.raises(ImportError, match=r"pip install -e '\.\[gpu\]'"):
        vllm_engine.import_vllm()
    with pytest.raises(ImportError, match="rollout.engine=hf"):
        vllm_engine.VLLMEngine("/nonexistent/model")


def test_param_names_lose_wrapper_prefixes():
    assert vllm_engine.vllm_param_name("module.model.layers.0._checkpoint_wrapped_module.mlp.up_proj.weight") == (
        "model.layers.0.mlp.up_proj.weight")
    assert vllm_engine.vllm_param_name("_orig_mod.lm_head.weight") == "lm_head.weight"


def test_iter_weights_from_module_state_dict_and_pairs():
    module = torch.nn.Sequential(torch.nn.Linear(2, 3))
    names = [name for name, _ in vllm_engine.iter_weights(module)]
    assert names == ["0.weight", "0.bias"]
    state = {"module.a": torch.ones(2)}
    [(name, tensor)] = list(vllm_engine.iter_weights(state))
    assert name == "a" and torch.equal(tensor, torch.ones(2))
    assert [n for n, _ in vllm_engine.iter_weights([("x", torch.zeros(1))])] == ["x"]


def test_eos_ids():
    assert vllm_engine.eos_ids(SimpleNamespace(eos_token_id=7)) == [7]
    assert vllm_engine.eos_ids(None, [1, 2]) == [1, 2]
    assert vllm_engine.eos_ids(SimpleNamespace(eos_token_id=None)) == []


def _fake_output(token_ids, logprob_values, reason):
    steps = [{t: SimpleNamespace(logprob=lp, rank=1)} for t, lp in zip(token_ids, logprob_values)]
    return SimpleNamespace(token_ids=token_ids, logprobs=steps, finish_reason=reason)


def test_to_completion():
    c = vllm_engine.to_completion(_fake_output([5, 2], [-0.5, -1.25], "stop"))
    assert c == Completion(token_ids=[5, 2], logprobs=[-0.5, -1.25], finish_reason="stop")
    with pytest.raises(RuntimeError, match="abort"):
        vllm_engine.to_completion(_fake_output([5], [-0.5], "abort"))
    missing = SimpleNamespace(token_ids=[5, 6], logprobs=None, finish_reason="length")
    with pytest.raises(RuntimeError, match="logprobs=0"):
        vllm_engine.to_completion(missing)


# ------------------------------------------------------------------------------------------ GPU
EOS = 2


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory):
    """A random 2-layer Qwen2 (head_dim 64, vocab 512) saved in float16 to a temporary folder."""
    pytest.importorskip("vllm")
    if not torch.cuda.is_available():
        pytest.skip("vLLM engine tests need a CUDA GPU")
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         tie_word_embeddings=False, bos_token_id=1, eos_token_id=EOS)
    model = Qwen2ForCausalLM(config).to(torch.float16)
    path = tmp_path_factory.mktemp("tiny-qwen2")
    model.save_pretrained(path)
    return path, model


@pytest.fixture(scope="module")
def engine(tiny_qwen):
    path, _ = tiny_qwen
    return vllm_engine.VLLMEngine(str(path), dtype="float16", gpu_memory_utilization=0.2, eos_token_id=EOS,
                                  enable_sleep_mode=False, max_model_len=512, skip_tokenizer_init=True,
                                  enforce_eager=True)


PROMPTS = [[1, 17, 40, 99], [1, 300, 5], [1, 8, 8, 8, 8, 8, 250]]


@pytest.mark.gpu
def test_engine_implements_the_interface(engine):
    assert isinstance(engine, Engine)
    out = engine.generate(PROMPTS, n=3, max_new_tokens=8, temperature=1.0, top_p=1.0, seed=0)
    assert [len(r) for r in out] == [3, 3, 3]
    for row in out:
        for c in row:
            assert len(c.token_ids) == len(c.logprobs) >= 1
            assert c.finish_reason in ("stop", "length")
            assert c.finish_reason == "length" or c.token_ids[-1] == EOS
            assert c.finish_reason == "stop" or len(c.token_ids) == 8
            assert all(lp <= 0 for lp in c.logprobs)


@pytest.mark.gpu
def test_same_seed_same_samples(engine):
    a = engine.generate(PROMPTS, n=4, max_new_tokens=16, seed=7)
    b = engine.generate(PROMPTS, n=4, max_new_tokens=16, seed=7)
    c = engine.generate(PROMPTS, n=4, max_new_tokens=16, seed=8)
    ids = lambda out: [[x.token_ids for x in row] for row in out]  # noqa: E731
    assert ids(a) == ids(b)
    assert ids(a) != ids(c)


@pytest.mark.gpu
def test_greedy_continuation_of_a_prefix_reproduces_the_rest(engine):
    prompt = PROMPTS[0]
    [[full]] = engine.generate([prompt], n=1, max_new_tokens=24, temperature=0.0)
    for k in (1, 5, 12):
        if k >= len(full.token_ids):
            continue
        [[rest]] = engine.generate([prompt + full.token_ids[:k]], n=1, max_new_tokens=24 - k, temperature=0.0)
        assert rest.token_ids == full.token_ids[k:], k


@pytest.mark.gpu
def test_stop_on_eos_and_greedy_copies(engine):
    [[first]] = engine.generate([PROMPTS[1]], n=1, max_new_tokens=4, temperature=0.0)
    saved = engine.stop_token_ids
    engine.stop_token_ids = [first.token_ids[0]]  # the greedy token becomes the stop token
    try:
        [row] = engine.generate([PROMPTS[1]], n=3, max_new_tokens=4, temperature=0.0)
    finally:
        engine.stop_token_ids = saved
    assert [c.finish_reason for c in row] == ["stop"] * 3
    assert [c.token_ids for c in row] == [[first.token_ids[0]]] * 3


@pytest.mark.gpu
def test_logprobs_match_a_teacher_forced_hf_forward(engine, tiny_qwen):
    _, model = tiny_qwen
    hf = model.to("cuda", torch.float32).eval()
    out = engine.generate(PROMPTS, n=2, max_new_tokens=12, seed=3)
    for prompt, row in zip(PROMPTS, out):
        for c in row:
            ids = torch.tensor([prompt + c.token_ids], device="cuda")
            with torch.no_grad():
                logp = torch.log_softmax(hf(ids).logits.float(), dim=-1)[0]  # (T, V)
            start = len(prompt) - 1
            ref = logp[start : start + len(c.token_ids)].gather(-1, ids[0, len(prompt):, None])[:, 0]
            torch.testing.assert_close(torch.tensor(c.logprobs, device="cuda"), ref, atol=0.05, rtol=0.0)


@pytest.mark.gpu
def test_sync_weights_loads_in_place_and_resets_the_cache(engine, tiny_qwen):
    _, model = tiny_qwen
    edited = {k: v.clone() for k, v in model.state_dict().items()}
    # Only two non-zero rows in lm_head: logits are +h_0 for token 123, -h_0 for token 321, 0 elsewhere,
    # so every greedy token is 123 or 321 (whatever the sign of the first hidden unit h_0).
    edited["lm_head.weight"].zero_()
    edited["lm_head.weight"][123, 0] = 1.0
    edited["lm_head.weight"][321, 0] = -1.0
    before = engine.counters.generated_tokens
    engine.sync_weights(edited)
    [[c]] = engine.generate([PROMPTS[0]], n=1, max_new_tokens=6, temperature=0.0)
    engine.sync_weights(model)  # restore for other tests
    [[restored]] = engine.generate([PROMPTS[0]], n=1, max_new_tokens=6, temperature=0.0)
    assert set(c.token_ids) <= {123, 321}
    assert not set(restored.token_ids) <= {123, 321}  # the random model is back (and not a stale cache)
    assert engine.counters.extra["weight_syncs"] >= 2
    assert engine.counters.generated_tokens > before
