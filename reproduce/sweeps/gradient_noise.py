"""How much of one RL step's gradient is signal: cosines between gradients of independent batches.

    python reproduce/sweeps/gradient_noise.py [--model DIR] [--batches 4]

Two independent batches estimate the same expected gradient; their cosine similarity is about
|E g|^2 / (|E g|^2 + noise^2), so a cosine near 0 means a step is almost all noise. Compared here, on
the same model: the GRPO++ loss of the trainer (8 training prompts x 8 rollouts at T=1, advantages
r - mean, token-mean, ratio 1) and the SFT loss on 32 gold worked solutions (the warm start's loss).
1 thread; prints the pairwise cosines.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from first_step import batch, load_warm_start, logprobs, rollouts  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="warm-start directory (default: the cached `general`)")
    parser.add_argument("--batches", type=int, default=4, help="independent batches per loss")
    args = parser.parse_args(argv)
    from fr3e.engines.hf import HFEngine
    from fr3e.method.losses import policy_loss
    from fr3e.tasks.arithmetic import make_split
    from fr3e.tasks.warm_start import collate, completion_loss, encode_example

    path, tok, model = load_warm_start(args.model, train=True)
    train = make_split("train", 4096, seed=0)
    engine = HFEngine(model, tok)

    def flat_grad(loss):
        model.zero_grad(set_to_none=True)
        loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()]).clone()

    def rl_grad(k):  # batch k: prompts 8k..8k+7, 8 rollouts each
        rows, r, starts = rollouts(engine, tok, [train[i] for i in range(8 * k, 8 * k + 8)], 8, seed=k)
        adv = (r - r.mean(-1, keepdim=True)).flatten()  # (B,)
        ids, mask, tmask = batch(rows, starts, tok.pad_token_id)
        lp = logprobs(model, ids, mask).gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, L-1)
        return flat_grad(policy_loss(lp, lp.detach(), adv, tmask, 0.2, 0.28, 3.0)[0])

    def sft_grad(k):  # batch k: 32 gold solutions from another part of the training set
        ex = [encode_example(tok, train[i]["prompt"], train[i]["solution"]) for i in range(500 + 32 * k, 532 + 32 * k)]
        ids, mask, labels = collate(ex, tok.pad_token_id)
        return flat_grad(completion_loss(model(input_ids=ids, attention_mask=mask).logits, labels))

    cos = torch.nn.functional.cosine_similarity
    n = args.batches
    for name, fn in (("GRPO++ loss, 8 prompts x 8 rollouts", rl_grad), ("SFT loss, 32 gold solutions", sft_grad)):
        grads = [fn(k) for k in range(n)]
        values = [cos(grads[i], grads[j], 0).item() for i in range(n) for j in range(i + 1, n)]
        sys.stdout.write(f"{name}: pairwise cosines {[round(v, 3) for v in values]}, mean "
                         f"{sum(values) / len(values):+.3f}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
