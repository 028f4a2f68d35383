"""Single-process checks of the paper path's defects: EOS ids, chunked log-probs, one prompt builder, seeds
per refill round, the newline scorer. (Multi-process defects: tests/test_distributed.py.)"""

import copy
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from fr3e.engines.base import Completion, EngineCounters, stop_token_ids
from fr3e.engines.hf import HFEngine
from fr3e.method import anchors, entropy
from fr3e.training.policy import token_logprobs

pytestmark = pytest.mark.usefixtures("cpu_threads")
ROOT = Path(__file__).resolve().parents[1]

QWEN_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


class FakeQwenTokenizer:
    """What stop_token_ids reads of a Qwen2.5 base tokenizer: eos `<|endoftext|>` (151643), `<|im_end|>`
    (151645) only inside the chat template."""

    eos_token_id = 151643
    unk_token_id = None
    chat_template = QWEN_TEMPLATE

    def convert_tokens_to_ids(self, token):
        return {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645}.get(token)


# ------------------------------------------------------------------------------- EOS ids
def test_stop_token_ids_of_a_qwen_base_model():
    gen = SimpleNamespace(eos_token_id=151643)  # Qwen2.5-7B generation_config.json
    assert stop_token_ids(FakeQwenTokenizer(), gen) == [151643, 151645]
    instruct = SimpleNamespace(eos_token_id=[151645, 151643])  # Qwen2.5-Instruct declares both
    assert stop_token_ids(FakeQwenTokenizer(), instruct) == [151643, 151645]
    plain = SimpleNamespace(eos_token_id=2, chat_template=None)
    assert stop_token_ids(plain, SimpleNamespace(eos_token_id=None), extra=7) == [7, 2]


def test_hf_engine_stops_on_every_eos_id_of_the_generation_config(tiny_sft):
    model, tok = tiny_sft
    model = copy.deepcopy(model)
    newline = tok.convert_tokens_to_ids("\n")
    model.generation_config.eos_token_id = [tok.eos_token_id, newline]  # a second end token, as Qwen declares
    engine = HFEngine(model, tok, batch_size=64)
    assert engine.eos_token_ids == [tok.eos_token_id, newline]
    out = engine.generate([tok("12*3+45=?\n").input_ids, tok("23*47=?\n").input_ids], n=4, max_new_tokens=60,
                          temperature=1.0, seed=0)
    for row in out:
        for c in row:
            # a worked solution has several lines: every sample now ends at its first newline
            assert newline not in c.token_ids[:-1]
            assert c.finish_reason == "length" or c.token_ids[-1] in (tok.eos_token_id, newline)
    assert sum(c.token_ids[-1] == newline for row in out for c in row) >= 4


# ---------------------------------------------------------------------- chunked log-probs
class LogitsModel(torch.nn.Module):
    """A stand-in causal LM: logits = embedding of the input ids (B, L, V) in a chosen dtype."""

    def __init__(self, vocab=50, dtype=torch.float32):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, vocab, dtype=dtype)

    def forward(self, input_ids, attention_mask=None, use_cache=None):
        return SimpleNamespace(logits=self.emb(input_ids) * 3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_logprobs_and_entropy_equal_the_full_vocabulary_reference(dtype):
    torch.manual_seed(0)
    model = LogitsModel(dtype=dtype)
    ids = torch.randint(0, 50, (3, 11))
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[2, 7:] = False
    ref_logits = model(ids).logits[:, :-1].float()
    ref = torch.log_softmax(ref_logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, L-1)
    ref.sum().backward()
    ref_grad = model.emb.weight.grad.clone()
    model.emb.weight.grad = None
    logp, ent = token_logprobs(model, ids, mask, want_entropy=True, chunk=3)  # 10 targets in slices of 3
    logp.sum().backward()
    torch.testing.assert_close(logp, ref.detach())
    torch.testing.assert_close(model.emb.weight.grad.float(), ref_grad.float())
    ref_ent = -(torch.softmax(ref_logits, -1) * torch.log_softmax(ref_logits, -1)).sum(-1)
    torch.testing.assert_close(ent, ref_ent.masked_fill(~mask[:, 1:], 0.0).detach())


def test_logprobs_never_build_a_full_fp32_copy_of_the_logits(monkeypatch):
    """The fp32 temporaries are slices: the largest `.float()` of logits has `chunk` positions, not L-1."""
    from fr3e.training import policy

    seen = []
    real = policy._chunk_logprobs

    def spy(logits, targets):
        seen.append(tuple(logits.shape))
        return real(logits, targets)

    monkeypatch.setattr(policy, "_chunk_logprobs", spy)
    model = LogitsModel(dtype=torch.bfloat16)
    ids = torch.randint(0, 50, (2, 21))
    with torch.no_grad():
        token_logprobs(model, ids, torch.ones_like(ids, dtype=torch.bool), chunk=8)
    assert [s[1] for s in seen] == [8, 8, 4] and all(s[2] == 50 for s in seen)


# ---------------------------------------------------------------- one prompt builder
class RecordingEngine:
    """Returns a fixed completion and records every prompt it was given."""

    def __init__(self, tok):
        self.tok, self.prompts, self.counters = tok, [], EngineCounters()

    def generate(self, prompt_ids, n, max_new_tokens, temperature=1.0, top_p=1.0, seed=None):
        self.prompts.extend(prompt_ids)
        ids = self.tok("\\boxed{0}", add_special_tokens=False).input_ids
        return [[Completion(list(ids), [0.0] * len(ids), "stop") for _ in range(n)] for _ in prompt_ids]

    def sync_weights(self, model):
        pass


def test_evaluation_prompts_use_the_chat_template_training_uses(tiny_sft):
    from fr3e.data.paper import encode_prompt
    from fr3e.evaluation.evaluate import evaluate
    from fr3e.tasks.arithmetic import make_split

    model, tok = tiny_sft
    tok = copy.deepcopy(tok)
    tok.chat_template = "{% for m in messages %}U:{{ m['content'] }}\n{% endfor %}A:"
    engine = RecordingEngine(tok)
    evaluate(model, benchmarks=["easy"], n=2, num_problems=3, engine=engine, tokenizer=tok, greedy=False,
             progress=False)
    problems = make_split("easy", 3, seed=0)["prompt"]
    assert engine.prompts == [encode_prompt(tok, p) for p in problems]
    assert all(tok.decode(p).startswith("U:") for p in engine.prompts)  # templated, not the raw text


def test_sharded_evaluation_equals_the_single_process_one(tiny_sft):
    """Two shards (simulated in one process) gathered give the same report as one process."""
    from fr3e.evaluation.evaluate import evaluate

    model, tok = tiny_sft
    kw = dict(benchmarks=["easy", "medium"], n=3, num_problems=5, max_new_tokens=40, progress=False,
              tokenizer=tok, temperature=0.0)
    whole = evaluate(model, **kw)
    shard1 = []
    evaluate(model, rank=1, world=2, gather=lambda recs: shard1.append(recs) or recs, **kw)
    calls = iter(shard1)
    both = evaluate(model, rank=0, world=2, gather=lambda recs: recs + next(calls), **kw)
    for name in ("easy", "medium"):
        a, b = whole["benchmarks"][name], both["benchmarks"][name]
        assert a["num_problems"] == b["num_problems"] == 5
        assert a["avg@3"] == b["avg@3"] and a["greedy"] == b["greedy"]  # greedy: shard-independent samples


# ------------------------------------------------------------- seeds per refill round
def test_refill_rounds_and_random_scorer_draw_new_seeds(tmp_path):
    from fr3e.training.config import load_config
    from fr3e.training.trainer import Trainer

    config = load_config(ROOT / "reproduce/configs/tiny-fr3e.yaml", [
        "steps=1", "data.prompts_per_step=2", "data.max_response_tokens=16", "grpo.max_refill_rounds=2",
        "fr3e.scorer=random", "rehearsal_zero_reward_rank=0"])  # every reward 0: no signal, so every refill runs
    trainer = Trainer(config, tmp_path / "run", progress=False, cache_dir=ROOT / "runs" / "cache")
    seeds = []
    real = trainer.engine.generate

    def spy(prompt_ids, n, max_new_tokens, temperature=1.0, top_p=1.0, seed=None):
        seeds.append(seed)
        return real(prompt_ids, n, max_new_tokens, temperature, top_p, seed)

    trainer.engine.generate = spy
    scorer_seeds = []
    real_scores = entropy.uncertainty_scores

    def scores_spy(scorer, **kw):
        scorer_seeds.append(kw["generator"].initial_seed())
        return real_scores(scorer, **kw)

    import fr3e.training.exploration as exploration_mod

    exploration_mod.entropy_mod.uncertainty_scores = scores_spy
    try:
        row = trainer.step()
    finally:
        exploration_mod.entropy_mod.uncertainty_scores = real_scores
    assert row["refill_rounds"] == 2
    assert len(seeds) == 6 and len(set(seeds)) == 6  # base + explore in each of 3 rounds, all distinct
    assert len(scorer_seeds) == 3 and len(set(scorer_seeds)) == 3


# ---------------------------------------------------------------- the newline scorer
def test_newline_scorer_gives_fewer_anchors_than_k_when_boundaries_are_few():
    nl = 9
    # response: a b \n \n c d e f  -> one boundary, at position 4 (the token after "\n\n")
    ids = torch.tensor([[1, 2, nl, nl, 3, 4, 5, 6]])
    mask = torch.ones_like(ids, dtype=torch.bool)
    scores = entropy.uncertainty_scores("newline", mask=mask, response_ids=ids, newline_id=nl)
    eligible = anchors.eligible_positions(mask) & entropy.scored_positions("newline", scores)
    assert anchors.select_anchors(scores, eligible, k=3).tolist() == [[4, -1, -1]]
    # dense scorers keep every eligible position
    assert entropy.scored_positions("entropy", torch.zeros(1, 8)).all()


# ------------------------------------------------------------------ control: the coin reward
def test_coin_reward_ignores_the_answer_and_is_seeded(tmp_path):
    from fr3e.training.config import load_config
    from fr3e.training.trainer import Trainer

    config = load_config(ROOT / "reproduce/configs/tiny-grpo_pp.yaml", ["steps=1", "reward=coin"])
    trainer = Trainer(config, tmp_path / "run", progress=False, cache_dir=ROOT / "runs" / "cache")
    draws = [trainer._reward("\\boxed{4}", "4") for _ in range(400)]
    assert set(draws) == {0.0, 1.0} and 0.4 < sum(draws) / 400 < 0.6  # a fair coin, right answer or not
    trainer._coin = None
    assert [trainer._reward("x", "4") for _ in range(400)] == draws  # same (seed, step): same flips


# ------------------------------------------------------- paper-profile base-model rows
def test_evaluate_reads_paper_benchmarks_from_local_files(tiny_sft):
    from fr3e.evaluation.evaluate import evaluate

    model, tok = tiny_sft
    fixture = ROOT / "tests" / "fixtures" / "data" / "gsm8k.jsonl"
    report = evaluate(model, benchmarks=["gsm8k"], local_files={"gsm8k": str(fixture)}, n=2,
                      engine=RecordingEngine(tok), tokenizer=tok, greedy=False, progress=False)
    rows = sum(1 for line in fixture.read_text().splitlines() if line.strip())
    assert report["benchmarks"]["gsm8k"]["num_problems"] == rows


def test_paper_base_rows_are_evaluated_like_the_trainer_evaluates(tiny_sft, tmp_path, monkeypatch):
    """base_evals on the paper profile: the trainer's loader and engine, the recipe's data files, labelled by
    the model actually evaluated."""
    from fr3e.study import report as results
    from fr3e.training import trainer

    model, tok = tiny_sft
    seen = {}
    monkeypatch.setattr(trainer, "load_policy", lambda config, cache_dir, progress: (model, tok, "org/base"))

    def fake_eval(model_arg, **kw):
        seen.update(kw, model=model_arg)
        return {"config": {"n": 2}, "benchmarks": {"gsm8k": {
            "avg@2": 0.5, "ci": {"avg@2": [0.4, 0.6]}, "pass@1": 0.5, "pass@2": 0.7, "greedy": None,
            "num_problems": 4, "all_right": 0.25, "all_wrong": 0.25, "mean_response_tokens": 10.0}}}

    recipe = ROOT / "reproduce/configs/table1/qwen2.5-7b-fr3e.yaml"
    df = results.base_evals(["Qwen/Qwen2.5-7B"], recipe, tmp_path, evaluator=fake_eval, overrides=[
        "model.base=org/base", "rollout.engine=hf", "data.eval_benchmarks=[gsm8k]",
        "data.local_files.gsm8k=/data/gsm8k.jsonl"], eval_n=2)
    assert seen["model"] is model and seen["tokenizer"] is tok and seen["engine"] is not None
    assert seen["local_files"] == {"gsm8k": "/data/gsm8k.jsonl"}
    assert set(df["model"]) == {"base"} and set(df["method"]) == {"base"}
