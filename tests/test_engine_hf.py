"""HFEngine: token-exact continuations, seeding, finish reasons, log-probs against a teacher-forced pass."""

import math

import pytest
import torch

from fr3e.engines.base import Completion, Engine
from fr3e.engines.hf import HFEngine, exponential_race, sample_next, sample_with_logprob

pytestmark = pytest.mark.usefixtures("cpu_threads")

PROMPTS = ["12*3+45=?\n", "57*8+19=?\n", "23*47=?\n", "99*99=?\n", "123*45=?\n"]


@pytest.fixture
def engine(tiny_sft):
    model, tok = tiny_sft
    return HFEngine(model, tok, batch_size=64)


def ids_of(tok, prompts=PROMPTS):
    return [tok(p).input_ids for p in prompts]


def test_implements_the_engine_interface(engine):
    assert isinstance(engine, Engine)


def test_greedy_continuation_from_a_prefix_reproduces_the_trajectory(engine, tiny_sft):
    _, tok = tiny_sft
    prompts = ids_of(tok)
    budget = 60
    full = [row[0] for row in engine.generate(prompts, n=1, max_new_tokens=budget, temperature=0.0)]
    assert any(c.finish_reason == "stop" for c in full)
    # Restart from several cut points of every trajectory. All states in one batch: different lengths, so
    # the batch is ragged and left-padded on purpose; the rest must come back token for token.
    states, expected = [], []
    for p, c in zip(prompts, full):
        for a in (1, len(c.token_ids) // 2, len(c.token_ids) - 1):
            states.append(p + c.token_ids[:a])
            expected.append(c.token_ids[a:])
    rest = engine.generate(states, n=1, max_new_tokens=budget, temperature=0.0)
    for [r], e in zip(rest, expected):
        assert r.token_ids[: len(e)] == e
    # One state alone, with exactly the remaining budget: same tokens, log-probs and finish reason.
    for p, c in zip(prompts, full):
        a = len(c.token_ids) // 2
        [[r]] = engine.generate([p + c.token_ids[:a]], n=1, max_new_tokens=budget - a, temperature=0.0)
        assert r.token_ids == c.token_ids[a:] and r.finish_reason == c.finish_reason
        torch.testing.assert_close(torch.tensor(r.logprobs), torch.tensor(c.logprobs[a:]), atol=1e-4, rtol=0)


def test_same_seed_same_samples_other_seed_other_samples(engine, tiny_sft):
    prompts = ids_of(tiny_sft[1])
    a = engine.generate(prompts, n=4, max_new_tokens=40, temperature=1.0, seed=7)
    b = engine.generate(prompts, n=4, max_new_tokens=40, temperature=1.0, seed=7)
    c = engine.generate(prompts, n=4, max_new_tokens=40, temperature=1.0, seed=8)
    assert a == b
    assert [x.token_ids for r in a for x in r] != [x.token_ids for r in c for x in r]
    torch.manual_seed(0)  # seed=None follows the global RNG
    d = engine.generate(prompts, n=2, max_new_tokens=20, seed=None)
    torch.manual_seed(0)
    assert engine.generate(prompts, n=2, max_new_tokens=20, seed=None) == d


def test_chunking_does_not_change_greedy_results(tiny_sft):
    model, tok = tiny_sft
    prompts = ids_of(tok)
    big = HFEngine(model, tok, batch_size=256).generate(prompts, n=3, max_new_tokens=50, temperature=0.0)
    small = HFEngine(model, tok, batch_size=2).generate(prompts, n=3, max_new_tokens=50, temperature=0.0)
    assert [[x.token_ids for x in r] for r in big] == [[x.token_ids for x in r] for r in small]
    assert all(len(r) == 3 and r[0] == r[1] == r[2] for r in big)  # greedy n copies


def test_finish_reasons_and_shapes(engine, tiny_sft):
    _, tok = tiny_sft
    eos = tok.eos_token_id
    out = engine.generate(ids_of(tok), n=8, max_new_tokens=60, temperature=1.0, seed=0)
    assert len(out) == len(PROMPTS) and all(len(r) == 8 for r in out)
    reasons = {c.finish_reason for r in out for c in r}
    assert "stop" in reasons
    for c in (c for r in out for c in r):
        assert isinstance(c, Completion) and len(c.logprobs) == len(c.token_ids)
        assert tok.pad_token_id not in c.token_ids
        if c.finish_reason == "stop":
            assert c.token_ids[-1] == eos and eos not in c.token_ids[:-1]
        else:
            assert len(c.token_ids) == 60 and eos not in c.token_ids
    short = engine.generate(ids_of(tok), n=2, max_new_tokens=3, temperature=1.0, seed=0)
    assert all(c.finish_reason == "length" and len(c.token_ids) == 3 for r in short for c in r)


def test_logprobs_match_a_teacher_forced_forward_pass(engine, tiny_sft):
    model, tok = tiny_sft
    prompts = ids_of(tok)
    for temperature, top_p in [(1.0, 1.0), (0.7, 0.9), (0.0, 1.0)]:
        out = engine.generate(prompts, n=2, max_new_tokens=40, temperature=temperature, top_p=top_p, seed=1)
        for p, row in zip(prompts, out):
            for c in row:
                ids = torch.tensor([p + c.token_ids])
                with torch.no_grad():
                    logits = model(ids).logits[0, len(p) - 1 : -1]  # (T, V) predicting each generated token
                # Log-probs of the raw logits (before temperature / top-p), as documented.
                expected = torch.log_softmax(logits, -1).gather(-1, torch.tensor(c.token_ids)[:, None]).squeeze(-1)
                torch.testing.assert_close(torch.tensor(c.logprobs), expected, atol=1e-4, rtol=1e-4)


def test_counters(tiny_sft):
    model, tok = tiny_sft
    engine = HFEngine(model, tok)
    prompts = ids_of(tok)
    out = engine.generate(prompts, n=3, max_new_tokens=20, seed=0)
    c = engine.counters
    assert c.calls == 1 and c.seconds > 0
    assert c.prompt_tokens == 3 * sum(len(p) for p in prompts)
    assert c.generated_tokens == sum(len(x.token_ids) for r in out for x in r)
    assert c.extra["prefill_computed_tokens"] == sum(len(p) for p in prompts)  # each prompt prefilled once
    assert c.extra["prefix_shared_tokens"] == 0  # no prompt is a prefix of another


def test_sync_weights_points_at_the_new_model(tiny_sft):
    model, tok = tiny_sft
    engine = HFEngine(model, tok)
    other = type(model)(model.config).eval()

    class Wrapped(torch.nn.Module):  # like DDP / accelerate: the real module under .module
        def __init__(self, module):
            super().__init__()
            self.module = module

    engine.sync_weights(Wrapped(other))
    assert engine.model is other  # shared, not copied
    engine.sync_weights(model)
    assert engine.model is model


def test_generate_restores_training_mode(tiny_sft):
    model, tok = tiny_sft
    model.train()
    try:
        HFEngine(model, tok).generate(ids_of(tok)[:1], n=1, max_new_tokens=2)
        assert model.training
    finally:
        model.eval()


def test_bad_arguments_say_what_is_wrong(engine):
    with pytest.raises(ValueError, match="at least one token"):
        engine.generate([[]], n=1, max_new_tokens=4)
    with pytest.raises(ValueError, match="top_p"):
        engine.generate([[1]], n=1, max_new_tokens=4, top_p=0.0)
    with pytest.raises(ValueError, match="n and max_new_tokens"):
        engine.generate([[1]], n=0, max_new_tokens=4)


def test_sample_next_top_p_keeps_the_nucleus():
    # probs ∝ exp(logits) = [0.5, 0.3, 0.15, 0.05]: the mass before token 2 is 0.8 >= top_p 0.8, so tokens
    # 2 and 3 are dropped and only 0 and 1 can be drawn (in ratio 5:3).
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(4000, 1)
    g = torch.Generator().manual_seed(0)
    draws = sample_next(logits, temperature=1.0, top_p=0.8, generator=g)
    assert set(draws.tolist()) == {0, 1}
    assert abs((draws == 0).float().mean().item() - 0.5 / 0.8) < 0.03
    # top_p below the top token's mass: greedy-like, only token 0.
    assert set(sample_next(logits, 1.0, 0.4, g).tolist()) == {0}
    assert sample_next(logits[:2], 0.0, 1.0, None).tolist() == [0, 0]
    # temperature 0.5 sharpens: p ∝ [.5^2, .3^2, .15^2, .05^2] / Σ = [0.7003, 0.2521, 0.0630, 0.0070]
    draws = sample_next(logits, temperature=0.5, top_p=1.0, generator=g)
    assert abs((draws == 0).float().mean().item() - 0.25 / 0.357) < 0.03
    assert math.isclose(0.25 / 0.357, 0.7003, abs_tol=1e-3)


def test_exponential_race_is_multinomial():
    # The GPU draw (no read-back) gives exactly torch.multinomial's sample for the same generator state.
    probs = torch.softmax(torch.randn(64, 50, generator=torch.Generator().manual_seed(0)), -1)
    a = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(5)).squeeze(-1)
    b = exponential_race(probs, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def nested_states(engine, prompts):
    """FR3E-shaped prompts: each prompt and three nested cut points of its greedy trajectory."""
    full = engine.generate(prompts, n=1, max_new_tokens=40, temperature=0.0)
    return [p + row[0].token_ids[:a] for p, row in zip(prompts, full)
            for a in (0, 3, len(row[0].token_ids) // 2, len(row[0].token_ids) - 1)]


def test_static_loop_and_prefix_sharing_match_the_eager_loop(tiny_sft):
    """The fixed-shape loop (what CUDA graphs replay; here run eagerly on the CPU) and the shared-prefix prefill
    give the eager loop's greedy tokens, log-probs within round-off, and the same finish reasons."""
    model, tok = tiny_sft
    states = nested_states(HFEngine(model, tok, batch_size=64), ids_of(tok))
    eager = HFEngine(model, tok, batch_size=64, decode="eager")
    ref = HFEngine(model, tok, batch_size=64, decode="eager", share_prefixes=False)
    expected = ref.generate(states, n=2, max_new_tokens=40, temperature=0.0)
    assert ref.counters.extra["prefix_shared_tokens"] == 0
    for engine in (eager, HFEngine(model, tok, batch_size=64, decode="static"),
                   HFEngine(model, tok, batch_size=7, decode="static")):  # several chunks, prefixes split
        got = engine.generate(states, n=2, max_new_tokens=40, temperature=0.0)
        assert [[c.token_ids for c in r] for r in got] == [[c.token_ids for c in r] for r in expected]
        assert [[c.finish_reason for c in r] for r in got] == [[c.finish_reason for c in r] for r in expected]
        torch.testing.assert_close(torch.tensor([x for r in got for c in r for x in c.logprobs]),
                                   torch.tensor([x for r in expected for c in r for x in c.logprobs]),
                                   atol=1e-4, rtol=0)
    # Nested states were served from their trajectory's keys and values: less prefill than without sharing.
    shared, computed = eager.counters.extra["prefix_shared_tokens"], eager.counters.extra["prefill_computed_tokens"]
    assert shared > 0 and computed + shared == ref.counters.extra["prefill_computed_tokens"]


def test_delayed_read_backs_and_compaction_match_the_eager_loop(tiny_sft):
    """The GPU schedule of the static loop, run on the CPU: finished rows counted only every `check_every`
    steps (rows that finished in between keep decoding, cut by their length) and compacted into smaller
    batch sizes. Greedy tokens, log-probs and finish reasons equal the eager loop's on nested states."""
    model, tok = tiny_sft
    states = nested_states(HFEngine(model, tok, batch_size=64), ids_of(tok))
    expected = HFEngine(model, tok, batch_size=64, decode="eager").generate(states, n=1, max_new_tokens=40,
                                                                           temperature=0.0)
    for every in (1, 5, 16):
        engine = HFEngine(model, tok, batch_size=64, decode="static", check_every=every)
        got = engine.generate(states, n=1, max_new_tokens=40, temperature=0.0)
        assert [[c.token_ids for c in r] for r in got] == [[c.token_ids for c in r] for r in expected], every
        assert [[c.finish_reason for c in r] for r in got] == [[c.finish_reason for c in r] for r in expected]
        torch.testing.assert_close(torch.tensor([x for r in got for c in r for x in c.logprobs]),
                                   torch.tensor([x for r in expected for c in r for x in c.logprobs]),
                                   atol=1e-4, rtol=0)
        assert engine.counters.extra.get("compactions", 0) > 0, every  # rows were moved to smaller batches


def test_the_legacy_loop_for_sliding_window_models_matches_the_eager_loop(tiny_sft):
    """A model with sliding-window layers takes the former loop (its cache keeps only part of the prefix); with a
    window wider than every sequence it must give the full-attention model's greedy tokens and log-probs."""
    model, tok = tiny_sft
    config = model.config.to_dict()
    config.update(use_sliding_window=True, sliding_window=4096, max_window_layers=0, layer_types=None)
    windowed = type(model)(type(model.config).from_dict(config)).eval()
    windowed.load_state_dict(model.state_dict())
    engine = HFEngine(windowed, tok, batch_size=64)
    assert engine._decoder(torch.device("cpu")) == "legacy"
    states = nested_states(HFEngine(model, tok, batch_size=64), ids_of(tok))
    expected = HFEngine(model, tok, batch_size=64).generate(states, n=2, max_new_tokens=30, temperature=0.0)
    got = engine.generate(states, n=2, max_new_tokens=30, temperature=0.0)
    assert engine.counters.extra.get("chunks_legacy", 0) > 0
    assert [[c.token_ids for c in r] for r in got] == [[c.token_ids for c in r] for r in expected]
    torch.testing.assert_close(torch.tensor([x for r in got for c in r for x in c.logprobs]),
                               torch.tensor([x for r in expected for c in r for x in c.logprobs]), atol=1e-4, rtol=0)
    sampled = engine.generate(states[:3], n=3, max_new_tokens=20, temperature=1.0, seed=5)
    again = engine.generate(states[:3], n=3, max_new_tokens=20, temperature=1.0, seed=5)
    assert [[c.token_ids for c in r] for r in sampled] == [[c.token_ids for c in r] for r in again]  # seeded


def test_static_loop_sampling_is_seeded_and_its_logprobs_are_the_policys(tiny_sft):
    model, tok = tiny_sft
    engine = HFEngine(model, tok, batch_size=64, decode="static")
    states = nested_states(engine, ids_of(tok))
    a = engine.generate(states, n=4, max_new_tokens=40, temperature=1.0, seed=3)
    assert a == engine.generate(states, n=4, max_new_tokens=40, temperature=1.0, seed=3)
    assert a != engine.generate(states, n=4, max_new_tokens=40, temperature=1.0, seed=4)
    eos = tok.eos_token_id
    lengths = [len(c.token_ids) for r in a for c in r]
    assert len(set(lengths)) > 3  # rows stop at different steps: the loop compacts them into smaller batches
    for p, row in zip(states, a):
        for c in row:
            assert len(c.logprobs) == len(c.token_ids) and (c.finish_reason == "stop") == (c.token_ids[-1:] == [eos])
            assert eos not in c.token_ids[:-1]
            with torch.no_grad():
                logits = model(torch.tensor([p + c.token_ids])).logits[0, len(p) - 1 : -1]
            expected = torch.log_softmax(logits, -1).gather(-1, torch.tensor(c.token_ids)[:, None]).squeeze(-1)
            torch.testing.assert_close(torch.tensor(c.logprobs), expected, atol=1e-4, rtol=1e-4)


def test_decode_choice_is_checked_and_auto_is_eager_on_a_cpu(tiny_sft):
    model, tok = tiny_sft
    with pytest.raises(ValueError, match="decode must be one of"):
        HFEngine(model, tok, decode="fast")
    engine = HFEngine(model, tok)
    assert engine._decoder(torch.device("cpu")) == "eager"
    assert HFEngine(model, tok, decode="graph")._decoder(torch.device("cpu")) == "static"  # no graphs on a CPU


def test_gpu_sampler_draws_from_the_policy_and_returns_raw_logprobs():
    """The GPU sampling path (one log-softmax read by the draw and the log-prob), run on the CPU."""
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(4000, 1) + 2.0
    g = torch.Generator().manual_seed(0)
    nxt, logp = sample_with_logprob(logits, 1.0, 1.0, g, fused=True)
    freq = torch.bincount(nxt, minlength=4).float() / len(nxt)
    torch.testing.assert_close(freq, torch.tensor([0.5, 0.3, 0.15, 0.05]), atol=0.03, rtol=0)
    torch.testing.assert_close(logp, torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))[nxt])
    for temperature, top_p in [(0.5, 1.0), (1.0, 0.8), (0.0, 1.0)]:  # the general path; log-probs stay raw
        nxt, logp = sample_with_logprob(logits, temperature, top_p, g, fused=True)
        torch.testing.assert_close(logp, torch.log_softmax(logits, -1).gather(-1, nxt[:, None]).squeeze(-1))
    assert set(sample_with_logprob(logits, 1.0, 0.8, g, fused=True)[0].tolist()) == {0, 1}
    assert set(sample_with_logprob(logits, 0.0, 1.0, g, fused=True)[0].tolist()) == {0}
    a = sample_with_logprob(logits, 1.0, 1.0, torch.Generator().manual_seed(3), fused=True)[0]
    assert torch.equal(a, sample_with_logprob(logits, 1.0, 1.0, torch.Generator().manual_seed(3), fused=True)[0])


class _PastKeyValuesModel(torch.nn.Module):
    """A transformers < 5.2x style model: its forward takes the cache as `past_key_values` and swallows any
    other keyword (such as `cache=`) into **kwargs."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.config, self.generation_config = inner, inner.config, inner.generation_config

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None, use_cache=None,
                logits_to_keep=0, **kwargs):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          cache=past_key_values, use_cache=use_cache, logits_to_keep=logits_to_keep)


@pytest.mark.parametrize("decode", ["eager", "static"])
def test_the_cache_goes_under_the_keyword_the_model_takes(tiny_sft, decode):
    from fr3e.engines.hf import cache_kwarg

    model, tok = tiny_sft
    old_api = _PastKeyValuesModel(model)
    assert cache_kwarg(model) == "cache" and cache_kwarg(old_api) == "past_key_values"
    states = nested_states(HFEngine(model, tok, batch_size=64), ids_of(tok))
    expected = HFEngine(model, tok, batch_size=64, decode=decode).generate(states, n=2, max_new_tokens=24,
                                                                          temperature=0.0)
    got = HFEngine(old_api, tok, batch_size=64, decode=decode).generate(states, n=2, max_new_tokens=24,
                                                                       temperature=0.0)
    assert [[c.token_ids for c in r] for r in got] == [[c.token_ids for c in r] for r in expected]


# ------------------------------------------------------------------ memory: sharded copies, KV budget, context
def test_a_sharded_model_is_copied_tensor_by_tensor_in_the_copy_dtype_and_freed_by_sleep(tiny_sft, monkeypatch):
    """The copy a sharded model is sampled from: built on the model's device in `copy_dtype`, filled one gathered
    tensor at a time (never a whole gathered state dict), freed by `sleep`, rebuilt by the next sync."""
    import fr3e.engines.hf as hf

    model, tok = tiny_sft
    gathered = []

    def one_at_a_time(m):
        for name, value in m.state_dict().items():
            gathered.append(name)
            yield name, value.clone()

    monkeypatch.setattr(hf, "is_sharded", lambda m: True)
    monkeypatch.setattr(hf, "full_weights", one_at_a_time)
    engine = HFEngine(model, tok, copy_dtype=torch.bfloat16)
    assert engine.model is not model and next(engine.model.parameters()).dtype == torch.bfloat16
    assert len(gathered) == len(model.state_dict())
    for name, value in model.state_dict().items():
        torch.testing.assert_close(engine.model.state_dict()[name], value.to(torch.bfloat16))
    engine.sleep()
    assert engine.model is None
    with pytest.raises(RuntimeError, match="asleep.*sync_weights"):
        engine.generate(ids_of(tok)[:1], n=1, max_new_tokens=4)
    engine.sync_weights(model)
    out = engine.generate(ids_of(tok)[:2], n=2, max_new_tokens=4, seed=0)
    assert len(out) == 2 and all(len(row) == 2 for row in out)


def test_a_kv_budget_bounds_rows_per_chunk_by_bytes(tiny_sft):
    model, tok = tiny_sft
    cfg = model.config
    per_position = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * 4  # fp32 keys + values
    engine = HFEngine(model, tok, batch_size=64, kv_budget_bytes=per_position * 40 * 3)
    assert engine.kv_rows(40) == 3 and engine.kv_rows(400) == 1
    prompts = ids_of(tok)
    longest = max(len(p) for p in prompts)
    seen = []
    real = engine._generate_chunk
    engine._generate_chunk = lambda p, chunk, *a: seen.append(len(chunk)) or real(p, chunk, *a)
    out = engine.generate(prompts, n=4, max_new_tokens=40 - longest, temperature=0.0)
    assert max(seen) == 3 and sum(seen) == 1 * len(prompts)  # greedy draws once per prompt
    assert [c.token_ids for row in out for c in row[:1]] == [c.token_ids for row in HFEngine(model, tok).generate(
        prompts, n=1, max_new_tokens=40 - longest, temperature=0.0) for c in row]  # chunking does not change tokens
    with pytest.raises(ValueError, match="kv_budget_bytes must be >= 0"):
        HFEngine(model, tok, kv_budget_bytes=-1)


def test_generation_is_clipped_to_the_models_context_with_a_warning(tiny_sft, caplog):
    model, tok = tiny_sft
    engine = HFEngine(model, tok)
    limit = model.config.max_position_embeddings
    prompt = ids_of(tok)[:1]
    assert engine.context_clip(prompt, 10) == 10
    with caplog.at_level("WARNING", logger="fr3e.engines.hf"):
        assert engine.context_clip(prompt, limit) == limit - len(prompt[0])
    assert "clipped" in caplog.text and str(limit) in caplog.text
    with pytest.raises(ValueError, match="fills the model's context"):
        engine.context_clip([[1] * limit], 1)


def test_outside_the_tested_transformers_range_the_engine_says_so_and_decodes_eagerly(tiny_sft, monkeypatch, caplog):
    import tomllib
    from pathlib import Path

    import fr3e.engines.hf as hf

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    spec = next(d for d in pyproject["project"]["dependencies"] if d.startswith("transformers"))
    assert spec.replace(" ", "") == f"transformers>={hf.TESTED_TRANSFORMERS[0]},<{hf.TESTED_TRANSFORMERS[1]}"
    assert hf.transformers_supported()  # the pinned version is inside
    assert not hf.transformers_supported("4.56.0") and not hf.transformers_supported("6.0.0")
    model, tok = tiny_sft
    monkeypatch.setattr(hf, "transformers_supported", lambda version=None: False)
    with caplog.at_level("WARNING", logger="fr3e.engines.hf"):
        engine = HFEngine(model, tok, decode="static")
    assert "outside the range" in caplog.text and len(caplog.records) == 1
    assert engine._decoder(torch.device("cpu")) == "eager"
    assert engine.generate(ids_of(tok)[:1], n=1, max_new_tokens=4, temperature=0.0)[0][0].token_ids
