"""One rank of a real tensor-parallel VLLMEngine (TP=2, `external_launcher`, gloo), for test_engine_vllm_cpu.py.

Usage: python vllm_tp_worker.py RANK PORT MODEL_DIR OUT_JSON. Both ranks build one engine over the same model
(vLLM splits it over the two processes), call `generate` with their own prompts (uneven counts, none on
rank 1 in the first call) and write what they got back.
"""

from __future__ import annotations

import datetime
import json
import os
import sys

# Per rank, one list of prompts per generate call.
TP_PROMPTS = {
    0: [[[1, 17, 40, 99], [1, 300, 5]], [[1, 9, 9]]],
    1: [[], [[1, 7], [1, 8, 8], [1, 6, 250, 14]]],
}
N = 3


def tp_seed(rank: int, call: int) -> int:
    """The generate seed of a rank's call (rank-dependent, as the trainer passes)."""
    return 1000 * call + rank


def main(rank: int, port: int, model_dir: str, out_path: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    import torch.distributed as dist
    from transformers import PreTrainedTokenizerFast

    from fr3e.engines.vllm import VLLMEngine

    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)  # for the EOS / end-of-turn ids
    engine = VLLMEngine(model_dir, tokenizer=tokenizer, dtype="float32", gpu_memory_utilization=0.05, tensor_parallel_size=2,
                        external_launcher=True, max_model_len=512, enforce_eager=True, block_size=32)
    results = []
    for call, prompts in enumerate(TP_PROMPTS[rank]):
        out = engine.generate(prompts, n=N, max_new_tokens=8, seed=tp_seed(rank, call))
        results.append([[{"token_ids": c.token_ids, "logprobs": c.logprobs} for c in row] for row in out])
    with open(out_path, "w") as f:
        json.dump(results, f)
    # No destroy_process_group here: vLLM's own shutdown at exit tears down its groups and needs the default one.


if __name__ == "__main__":  # vLLM may spawn processes: keep the entry point guarded
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
