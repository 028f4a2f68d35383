"""A stand-in for `vllm.LLM` that lets `VLLMEngine.generate` run without vLLM (CPU unit tests, 2-process TP).

`fake_engine()` builds a `VLLMEngine` without calling its constructor and plugs in `FakeLLM`, which records
every request it receives and answers deterministically: sample k of a prompt with seed s is the token ids
[sum(prompt) % 1000, k, s % 1000] (log-prob -1.0 each, finish reason "length"), so a test can tell which
prompt, sample and seed each completion came from.
"""

from __future__ import annotations

from types import SimpleNamespace

from fr3e.engines import vllm as vllm_engine
from fr3e.engines.base import EngineCounters


def fake_answer(prompt: list[int], k: int, seed: int | None) -> list[int]:
    """The token ids FakeLLM returns for sample k of `prompt` requested with `seed`."""
    return [sum(prompt) % 1000, k, -1 if seed is None else seed % 1000]


class FakeLLM:
    def __init__(self):
        self.calls: list[list[tuple[list[int], dict]]] = []  # per generate call: (prompt ids, sampling kwargs)

    def generate(self, prompts, sampling_params, use_tqdm=False):
        self.calls.append([(list(p["prompt_token_ids"]), dict(vars(sp))) for p, sp in zip(prompts, sampling_params)])
        outputs = []
        for prompt, sp in zip(prompts, sampling_params):
            ids = list(prompt["prompt_token_ids"])
            samples = []
            for k in range(sp.n):
                tokens = fake_answer(ids, k, sp.seed)
                steps = [{t: SimpleNamespace(logprob=-1.0)} for t in tokens]
                samples.append(SimpleNamespace(token_ids=tokens, logprobs=steps, finish_reason="length"))
            outputs.append(SimpleNamespace(outputs=samples, num_cached_tokens=0))
        return outputs

    def reset_prefix_cache(self):
        return True


def fake_engine(stop_token_ids=(2,), max_model_len: int | None = 64, tp_group=None) -> vllm_engine.VLLMEngine:
    """A VLLMEngine whose `llm` is a FakeLLM and whose SamplingParams is a plain namespace."""
    engine = object.__new__(vllm_engine.VLLMEngine)
    engine._vllm = SimpleNamespace(SamplingParams=lambda **kw: SimpleNamespace(**kw))
    engine._tokens_prompt = lambda prompt_token_ids: {"prompt_token_ids": prompt_token_ids}
    engine.llm = FakeLLM()
    engine.tp_group = tp_group
    engine.stop_token_ids = list(stop_token_ids)
    engine.max_model_len = max_model_len
    engine.enable_sleep_mode = False
    engine.sleep_level = 1
    engine._weights_asleep = engine._kv_asleep = False
    engine.counters = EngineCounters()
    return engine


# ------------------------------------------------------------------------ 2-process tensor-parallel worker
# Prompts per rank and round: uneven counts, a rank with none, and a round where no rank has any.
TP_ROUNDS = {
    0: [[[1, 2, 3], [4, 5], [6]], [], [[7, 7]], []],
    1: [[], [[10, 11], [12]], [[13], [14, 15, 16]], []],
}
TP_N = 2


def tp_seed(rank: int) -> int:
    """Rank-dependent generate seed, as the trainer passes."""
    return 100 + rank


def tp_worker(rank: int, world_size: int, port: int, out_path: str) -> None:
    """One gloo rank of a TP=2 group: run TP_ROUNDS through `generate`, write what it got and submitted."""
    import datetime
    import json

    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=20))
    try:
        engine = fake_engine(tp_group=vllm_engine.tp_process_group(world_size))
        solo = fake_engine()
        ids = lambda out: [[c.token_ids for c in row] for row in out]  # noqa: E731
        results, alone = [], []
        for prompts in TP_ROUNDS[rank]:
            results.append(ids(engine.generate(prompts, n=TP_N, max_new_tokens=4, seed=tp_seed(rank))))
            alone.append(ids(solo.generate(prompts, n=TP_N, max_new_tokens=4, seed=tp_seed(rank))))
        submitted = [[(p, kw["seed"], kw["n"]) for p, kw in call] for call in engine.llm.calls]
        with open(out_path, "w") as f:
            json.dump({"results": results, "alone": alone, "submitted": submitted,
                       "prompt_tokens": engine.counters.prompt_tokens}, f)
    finally:
        dist.destroy_process_group()
