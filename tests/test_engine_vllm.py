"""fr3e.engines.vllm: seeds, EOS ids, TP gather and helpers on CPU without vLLM; the engine-interface tests
on a CUDA GPU with vLLM (skipped otherwise; the same interface runs on CPU in tests/test_engine_vllm_cpu.py
under `make test-vllm-cpu`).

The GPU tests use a randomly initialised 2-layer Qwen2 model saved to a temporary folder (no hub), and
check what the trainer relies on: same seed -> same samples, a greedy continuation of a prefix reproduces
the rest, finish reasons, log-probs close to a teacher-forced HF forward, weights loaded in place.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from fr3e.engines import vllm as vllm_engine
from fr3e.engines.base import Completion, Engine
from fr3e.utils.seeds import derive_seed

sys.path.insert(0, str(Path(__file__).parent))
import vllm_fakes  # noqa: E402


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


def _chat_tokenizer(template: str | None):
    """A 5-token WordLevel tokenizer with Qwen's special tokens: <|endoftext|>=0, <|im_start|>=1, <|im_end|>=2."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2, "a": 3, "[UNK]": 4}
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="[UNK]")),
                                  eos_token="<|endoftext|>", unk_token="[UNK]")
    tok.chat_template = template
    return tok


QWEN_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_eos_ids_hold_every_declared_eos_and_the_end_of_turn():
    # tokenizer EOS <|endoftext|>=0; generation_config [0, 5] adds 5; the chat template ends turns with
    # <|im_end|>=2 -> [0, 5, 2]. Without a chat template the end-of-turn token is not a stop token.
    chat = _chat_tokenizer(QWEN_TEMPLATE)
    assert vllm_engine.eos_ids(chat, None, [0, 5]) == [0, 5, 2]
    assert vllm_engine.eos_ids(_chat_tokenizer(None), None, [0, 5]) == [0, 5]
    # An explicit id comes first and nothing repeats.
    assert vllm_engine.eos_ids(chat, 9, [9, 0]) == [9, 0, 2]


def test_config_eos_ids_read_generation_config_then_config(tmp_path):
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [7, 3]}))
    (tmp_path / "config.json").write_text(json.dumps({"eos_token_id": 3}))
    assert vllm_engine.config_eos_ids(str(tmp_path)) == [7, 3]
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": 11}))
    assert vllm_engine.config_eos_ids(str(tmp_path)) == [11, 3]
    assert vllm_engine.config_eos_ids("Qwen/Qwen2.5-7B") == []  # a hub id: nothing read locally


def test_engine_submits_every_eos_id_as_a_stop_token():
    engine = vllm_fakes.fake_engine(stop_token_ids=[0, 5, 2])
    engine.generate([[1, 3]], n=2, max_new_tokens=4, seed=0)
    [[(_, kwargs)]] = engine.llm.calls
    assert kwargs["stop_token_ids"] == [0, 5, 2]


# ------------------------------------------------------------------------------------------ seeds
def test_old_seed_scheme_shared_streams_across_prompts():
    # The former scheme: prompt i seeded with seed + i, and vLLM seeds child k with request seed + k, so
    # sample 1 of prompt 0 (0 + 1) and sample 0 of prompt 1 (1 + 0) drew the same stream.
    old = [vllm_engine.Request((1,), n=4, seed=i, max_new_tokens=4, temperature=1.0, top_p=1.0) for i in range(3)]
    streams = vllm_engine.child_seeds(old)
    assert streams == [[0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5]]
    assert len({s for row in streams for s in row}) == 6  # 12 samples, only 6 streams


def test_every_prompt_and_sample_gets_its_own_stream():
    requests = vllm_engine.sampling_requests([[1, 2], [1, 2], [3]], n=4, max_new_tokens=8, temperature=1.0,
                                             top_p=0.9, seed=0)
    assert [r.seed for r in requests] == [derive_seed(0, 0), derive_seed(0, 1), derive_seed(0, 2)]
    streams = [s for row in vllm_engine.child_seeds(requests) for s in row]
    assert len(streams) == 12 and len(set(streams)) == 12  # identical prompts 0 and 1 included
    again = vllm_engine.sampling_requests([[1, 2], [1, 2], [3]], n=4, max_new_tokens=8, temperature=1.0,
                                          top_p=0.9, seed=0)
    assert again == requests  # same seed, same requests
    other = vllm_engine.sampling_requests([[1, 2]], n=4, max_new_tokens=8, temperature=1.0, top_p=0.9, seed=1)
    assert not set(vllm_engine.child_seeds(other)[0]) & set(streams)


def test_engine_builds_independent_seeds_for_3_prompts_by_4_samples():
    engine = vllm_fakes.fake_engine()
    out = engine.generate([[1, 2], [3], [4, 5, 6]], n=4, max_new_tokens=4, seed=0)
    [call] = engine.llm.calls
    seeds = [kw["seed"] for _, kw in call]
    assert seeds == [derive_seed(0, i) for i in range(3)] and [kw["n"] for _, kw in call] == [4, 4, 4]
    streams = {s + k for s in seeds for k in range(4)}  # vLLM's child rule
    assert len(streams) == 12
    assert [[c.token_ids[1] for c in row] for row in out] == [[0, 1, 2, 3]] * 3  # result[i][k] is sample k


def test_greedy_draws_once_and_copies_unseeded_requests_stay_unseeded():
    engine = vllm_fakes.fake_engine()
    [row] = engine.generate([[1, 2]], n=3, max_new_tokens=4, temperature=0.0, top_p=0.5, seed=None)
    [[(_, kwargs)]] = engine.llm.calls
    assert kwargs["n"] == 1 and kwargs["seed"] is None and kwargs["top_p"] == 1.0 and kwargs["temperature"] == 0.0
    assert [c.token_ids for c in row] == [[3, 0, -1]] * 3


def test_sampling_kwargs_clip_to_the_context():
    request = vllm_engine.Request((1, 2, 3, 4), n=2, seed=5, max_new_tokens=8, temperature=1.0, top_p=1.0)
    kwargs = vllm_engine.sampling_kwargs(request, [2], max_model_len=10)  # 10 - 4 = 6 tokens of room
    assert kwargs == dict(n=2, temperature=1.0, top_p=1.0, max_tokens=6, seed=5, logprobs=0, detokenize=False,
                          stop_token_ids=[2])
    assert vllm_engine.sampling_kwargs(request, [2], max_model_len=None)["max_tokens"] == 8
    with pytest.raises(ValueError, match="max_prompt_tokens"):
        vllm_engine.sampling_kwargs(request, [2], max_model_len=4)


def test_engine_counts_context_clipping_and_tokens():
    engine = vllm_fakes.fake_engine(max_model_len=6)
    engine.generate([[1, 2, 3, 4], [1]], n=2, max_new_tokens=4, seed=0)  # room 2 (clipped) and 5
    assert engine.counters.extra["clipped_to_context"] == 1
    assert engine.counters.prompt_tokens == 2 * 5 and engine.counters.generated_tokens == 4 * 3
    assert engine.generate([], n=2, max_new_tokens=4, seed=0) == [] and len(engine.llm.calls) == 1


# ------------------------------------------------------------------------------------------ tensor parallel
def test_tp_groups_are_consecutive_ranks():
    assert vllm_engine.tp_groups(8, 4) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert vllm_engine.tp_groups(2, 1) == [[0], [1]]
    with pytest.raises(ValueError, match="must divide"):
        vllm_engine.tp_groups(6, 4)


def test_split_counts():
    assert vllm_engine.split_counts(["a", "b", "c"], [2, 0, 1]) == [["a", "b"], [], ["c"]]
    assert vllm_engine.split_counts([], [0, 0]) == [[], []]
    with pytest.raises(ValueError, match="partition"):
        vllm_engine.split_counts(["a"], [2])


def test_tp_needs_torch_distributed(monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)  # vLLM, if it ran, initialised it
    with pytest.raises(RuntimeError, match="accelerate launch"):
        vllm_engine.tp_process_group(2)
    assert vllm_engine.tp_process_group(1) is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tp_group_submits_identical_requests_and_each_rank_gets_its_slice(tmp_path):
    """2 gloo ranks form one TP=2 group; each generate() gathers both ranks' prompts (uneven counts, none on
    one rank, none on both), submits the same concatenation on both ranks, and returns each rank its own."""
    port = _free_port()
    tests_dir = str(Path(__file__).parent)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = []
    for rank in range(2):
        code = (f"import sys; sys.path.insert(0, {tests_dir!r}); import vllm_fakes; "
                f"vllm_fakes.tp_worker({rank}, 2, {port}, {str(tmp_path / f'rank{rank}.json')!r})")
        procs.append(subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=60)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(logs)
    got = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    rounds = vllm_fakes.TP_ROUNDS
    for rank in range(2):
        seed = vllm_fakes.tp_seed(rank)
        for j, prompts in enumerate(rounds[rank]):
            expected = [[vllm_fakes.fake_answer(p, k, derive_seed(seed, i)) for k in range(vllm_fakes.TP_N)]
                        for i, p in enumerate(prompts)]
            assert got[rank]["results"][j] == expected, (rank, j)
        assert got[rank]["results"] == got[rank]["alone"]  # the same samples as without TP
    # Both ranks submitted the same requests per call: rank 0's prompts then rank 1's, each with its own seed;
    # the last round (no prompts anywhere) submits nothing.
    assert got[0]["submitted"] == got[1]["submitted"]
    assert len(got[0]["submitted"]) == 3
    for j, call in enumerate(got[0]["submitted"]):
        want = [(p, derive_seed(vllm_fakes.tp_seed(r), i), vllm_fakes.TP_N)
                for r in range(2) for i, p in enumerate(rounds[r][j])]
        assert [tuple(x) for x in call] == want, j
    assert got[0]["prompt_tokens"] == 2 * (3 + 2 + 1 + 2)  # counters hold this rank's prompts only


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


def test_cpu_kv_cache_is_sized_from_what_the_machine_has():
    """On vLLM's CPU platform the KV cache is a share of the RAM, capped by half the memory free now split over
    the node's tensor-parallel ranks, never below a floor: a 0.05 share of a 10 GiB machine whose process already
    holds more than that no longer asks for a negative cache, and two ranks no longer ask for more than is free."""
    from fr3e.engines.vllm import CPU_KV_MIN_BYTES, cpu_kv_cache_bytes

    gib = 2**30
    assert cpu_kv_cache_bytes(0.05, 10 * gib, int(6.46 * gib), 2) == int(0.05 * 10 * gib)  # 0.5 GiB, positive
    assert cpu_kv_cache_bytes(0.3, 10 * gib, 2 * gib, 2) == gib // 2  # 3 GiB asked, 0.5 GiB per rank is free
    assert cpu_kv_cache_bytes(0.3, 10 * gib, 10 * 2**20, 1) == CPU_KV_MIN_BYTES  # almost nothing free: the floor
